"""The polling policy: how long the workflow waits before it checks a running batch again.

After every status check the check task calls :func:`next_wait`; the state machine's Wait state then
does the waiting (Lambdas never sleep). The function is pure and deterministic: the same inputs give
the same wait. The little it remembers between polls is a :class:`PollState`, a handful of numbers
persisted with the batch; what it knows of the connection's earlier batches is a
:class:`DurationHistory`, a small item per connection that :func:`learn` updates when a batch finishes.

How the wait is chosen
----------------------
* **Nothing known, nothing learned** (no progress reported, or 0 %, and no history yet): wait
  ``BACKOFF_FRACTION`` of the time the job has run so far, and at least ``FLOOR_SECONDS``. The waits grow
  geometrically, so a long job costs few polls, and its end is seen at most that fraction of its
  running time late.
* **Nothing known, but the connection's durations learned**: the history (a decayed histogram of its
  finished batches' durations over log-time, smoothed as a kernel density) says how likely the job is
  to end soon. Polls go where that likelihood - the hazard, per unit of log-time, given the job is still
  running - is highest: there every ``DENSE_FRACTION`` of the running time over ``DENSE_COVERAGE`` of the
  connection's jobs, when that costs at most ``DENSE_BUDGET`` polls a job more than the backoff (a
  connection whose batches take about the same time); then every ``BACKOFF_FRACTION`` until
  ``LEARNED_COVERAGE`` of its jobs are covered; stretches where hardly any job ends are skipped (before
  the connection's shortest batches, that is one first poll where they begin). Past the longest
  durations learned, the no-history rule takes over. While a job that reports progress still reports
  next to nothing, it is not polled before it could have finished at the fastest rate the connection's
  batches have shown.
* **Progress reported and moving**: progress is modelled as a power of the running time (``t^1`` steady,
  ``t^2`` a slow start, ``t^0.5`` fast then slow), fitted to the readings. That gives a *likely* finish
  and, taking the readings at the edge of their precision and the power at its largest plausible value,
  an *earliest plausible* finish. The largest plausible power is ``MAX_ACCELERATION`` until the
  connection's finished batches have shown how fast their progress really ends (the history's
  ``accel``). A job moving at less than 1/``SLOWDOWN`` of its fastest speed so far may be paused and
  resume at that speed: its earliest plausible finish assumes so. Readings that all fall on a coarse
  step (halves, thirds, quarters ... tenths) are taken to be that imprecise. The next poll is aimed
  ``APPROACH_MARGIN`` of the running time past the likely finish, but no further than
  ``OVERSHOOT_FRACTION`` past the earliest plausible one (or the no-history wait, if that is longer).
* **Progress stuck** (a reading no higher than the best one before, e.g. a job sitting at 95 %): the
  wait is the time it has been stuck, so the waits double while it stays stuck - never a tight loop -
  and never exceed the wait with nothing known.
* Every wait is at least ``APPROACH_MARGIN`` of the running time and at least ``MIN_WAIT_SECONDS``, so
  the polls of one batch grow with the logarithm of its running time whatever the provider reports.

Hard rules, in order of precedence: never past the deadline (at most ``remaining``; 0 once it has
passed); never earlier than the provider's Retry-After; never below ``bounds.min_seconds``; never above
``bounds.max_seconds`` (unless Retry-After asks for longer, or the batch used up ``MAX_POLLS``). The
seeded jitter (``JITTER_FRACTION``) only shortens a backoff wait, only moves the margin of an aimed
wait, and only moves the landing of a skip within the first half-step of the stretch it skips to, so it
never weakens the delay bounds above; it is applied before the hard rules, so it never breaks them.

``python -m benchmarks.polling_cost`` measures the policy, cold and learned, against fixed-interval
polling on many mixes of jobs, counting the whole execution's transitions from the state machine's
definition.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The policy's own cap on polls per batch; past it, the next check is at the deadline. The state
#: machine's "Batch Finished?" guard is the backstop above it. Every wait is at least
#: ``MIN_WAIT_SECONDS`` and ``APPROACH_MARGIN`` of the running time, so a batch with a deadline of a
#: day makes fewer than 500 polls whatever the provider reports: the cap is a safety net.
MAX_POLLS = 380

#: With nothing to go on, wait this fraction of the time the job has run so far: the end of a job is
#: then seen at most 20 % of its duration late.
BACKOFF_FRACTION = 0.2
#: ... and never less than this. Checking a job more often in its first few minutes costs a poll on
#: every batch to save seconds on the few that end that soon (a history that shows such batches lifts it).
FLOOR_SECONDS = 50.0
#: Aim this fraction of the (likely) finish time past the likely finish; also the smallest wait, as a
#: fraction of the running time.
APPROACH_MARGIN = 0.02
#: Never aim further than this fraction of the earliest plausible finish time past that finish.
OVERSHOOT_FRACTION = 0.06
#: How far a progress reading may be from the truth, in percentage points (integers, rounding, noise).
PROGRESS_SLACK = 1.5
#: Readings below this percentage are too coarse to estimate from.
MIN_USEFUL_PROGRESS = 1.0
#: Bounds on the power of the progress curve; 2 allows a slow start like t^2 (or time spent queued).
MAX_ACCELERATION = 2.0
MIN_ACCELERATION = 0.5
#: A connection's history may show faster ends than ``MAX_ACCELERATION`` (a queue before the work), up
#: to this.
LEARNED_MAX_ACCELERATION = 4.0
#: Progress moving this many times slower than its fastest stretch is taken as a pause: the job may
#: resume at that speed, so the earliest plausible finish assumes it does.
SLOWDOWN = 2.0
#: Coarse progress: a provider that reports ``100 / n`` steps for one of these ``n`` (halves ... tenths).
#: A reading less than ``GRAIN_TOLERANCE`` points from a step counts as on it (a third may be 33 or 34).
STEP_COUNTS = (2, 3, 4, 5, 6, 7, 8, 10)
GRAIN_TOLERANCE = 1.0
#: Seeded jitter: backoff waits are shortened by up to this fraction, aimed margins moved by it.
JITTER_FRACTION = 0.05
#: Step Functions Wait states count whole seconds; nothing is gained below one.
MIN_WAIT_SECONDS = 1.0

# --- the learned history -------------------------------------------------------------------------------
#: The histogram's bins: bin ``i`` holds durations from ``HISTORY_FIRST_EDGE * 2 ** (i / 4)`` seconds to
#: the next edge (the first also holds anything shorter, the last anything longer): a quarter octave
#: each, 4 s to about 73 h.
HISTORY_FIRST_EDGE = 4.0
HISTORY_BINS_PER_OCTAVE = 4
HISTORY_BINS = 64
#: Each finished batch multiplies the weight of the ones before by this: the history is about the last
#: twenty batches, and follows a connection whose batches change.
HISTORY_DECAY = 0.95
#: The history is used once it holds this much weight (about three batches).
MIN_HISTORY_WEIGHT = 3.0
#: Poll every ``DENSE_FRACTION`` of the running time where the learned hazard (the chance to end per unit
#: of log-time, given the job is still running) is highest, over ``DENSE_COVERAGE`` of the history's
#: jobs - enough to see most of them that little late - when that costs at most ``DENSE_BUDGET`` polls
#: per job more than the backoff (a connection whose durations are consistent; for one whose durations
#: spread over hours, seeing most ends within 5 % would cost tens of polls per job).
DENSE_FRACTION = 0.05
DENSE_COVERAGE = 0.65
DENSE_BUDGET = 5.0
#: A batch seen finished at its first check (never seen running) is taken to have run at least this
#: fraction of the time to that check: its weight goes just before the first check, where polls would
#: have seen it, not over every shorter duration.
LEFT_CENSORED_FRACTION = 0.5
#: At least this share of the history's jobs lie in stretches polled at least every
#: ``BACKOFF_FRACTION``; the rest (where the hazard is lowest) are skipped. The p95 target asks for 95 %
#: seen within ``BACKOFF_FRACTION``; the history is an estimate, so a little more is covered (at 95 %, the
#: jobs of a connection spread over hours came out 24 % late at the p95 after fifty batches). Covering
#: much more costs polls where a poll is least likely to see an end: for such a connection, its first
#: minutes. A job ending in a stretch skipped is seen by the first check past it.
LEARNED_COVERAGE = 0.97
#: The learned acceleration bound is used with this margin (once ``MIN_HISTORY_WEIGHT`` progress batches
#: taught it).
ACCEL_MARGIN = 1.1
#: The smoothing's cap (a width of about six bins), and how far it may spread past the durations seen.
MAX_SMOOTHING_PASSES = 72
SUPPORT_MARGIN_BINS = 2
#: Weights are kept to this many decimals (the item stays small and its numbers short).
WEIGHT_DECIMALS = 3


class PollBounds(BaseModel):
    """How often a provider may be polled: its declared minimum interval and our maximum."""

    model_config = ConfigDict(frozen=True)

    min_seconds: float = Field(ge=0)
    max_seconds: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> PollBounds:
        if self.max_seconds < self.min_seconds:
            raise ValueError("max_seconds must not be below min_seconds")
        return self


class PollState(BaseModel):
    """What the policy remembers between polls, persisted with the batch as a small map of numbers.

    Times are seconds since the provider job started; progress is percent.
    """

    polls: int = Field(default=0, ge=0)
    checked_at: float | None = None  # the latest check (the job was still running then)
    first_at: float | None = None  # the first useful progress reading
    first_pct: float | None = None
    last_at: float | None = None  # the previous progress reading
    last_pct: float | None = None
    moved_at: float | None = None  # when the highest reading so far was first seen
    top_pct: float | None = None
    steps: int | None = None  # bit n set: every reading so far fell on a step of 100 / STEP_COUNTS[n]
    fastest: float | None = None  # the fastest progress between two readings, percent per second


class DurationHistory(BaseModel):
    """What a connection's finished batches taught: a decayed histogram of their durations over log-time
    (:data:`HISTORY_BINS` weights, see :data:`HISTORY_FIRST_EDGE`), and how fast their progress ended.

    One small item per connection, plain numbers only (under 1 KB as JSON); build it with :func:`learn`.
    """

    model_config = ConfigDict(frozen=True)

    weights: tuple[float, ...] = ()  # empty: nothing learned yet
    accel: float | None = Field(default=None, ge=MIN_ACCELERATION, le=LEARNED_MAX_ACCELERATION)
    accel_weight: float = Field(default=0.0, ge=0)  # decayed count of the batches behind ``accel``

    @field_validator("weights")
    @classmethod
    def _shape(cls, weights: tuple[float, ...]) -> tuple[float, ...]:
        if weights and len(weights) != HISTORY_BINS:
            raise ValueError(f"weights must hold {HISTORY_BINS} numbers (or none)")
        if any(not math.isfinite(w) or w < 0 for w in weights):
            raise ValueError("weights must be finite and not negative")
        return weights

    @property
    def weight(self) -> float:
        """How many batches' worth the histogram holds (decayed)."""
        return sum(self.weights)


def next_wait(
    *,
    state: PollState,
    elapsed: float,
    remaining: float,
    progress: float | None,
    retry_after: float | None,
    bounds: PollBounds,
    seed: str,
    history: DurationHistory | None = None,
) -> tuple[float, PollState]:
    """The seconds to wait before the next status check, and the state to keep for the next call.

    ``elapsed``: seconds since the provider job started; ``remaining``: seconds until the batch
    deadline; ``progress``: percent complete when the provider reports it; ``retry_after``: the
    provider's Retry-After in seconds, if any; ``seed``: anything stable per batch (its id);
    ``history``: what the connection's finished batches taught (None: the no-history rules).

    >>> bounds = PollBounds(min_seconds=10, max_seconds=1800)
    >>> wait, state = next_wait(state=PollState(), elapsed=0, remaining=3600, progress=None,
    ...                         retry_after=None, bounds=bounds, seed="b-1")
    >>> 45 < wait <= 50, state.polls
    (True, 1)
    >>> wait, state = next_wait(state=state, elapsed=600, remaining=3000, progress=None,
    ...                         retry_after=900, bounds=bounds, seed="b-1")
    >>> wait
    900.0
    """
    elapsed = max(0.0, float(elapsed))
    new_state = _observe(state, elapsed, progress)
    if remaining <= 0:
        return 0.0, new_state

    jitter = _jitter(seed, new_state.polls)  # in [-1, 1)
    shorten = 1.0 - JITTER_FRACTION * (jitter + 1.0) / 2.0  # in (1 - JITTER_FRACTION, 1]
    backoff = _backoff(elapsed)
    plan = _plan(history.weights) if history is not None and history.weight >= MIN_HISTORY_WEIGHT else None
    learned = _learned_wait(plan, elapsed, jitter) if plan is not None else None
    estimate = _estimate(state, new_state, elapsed, progress, _acceleration_bound(history))
    if estimate is not None:
        earliest, likely = estimate
        margin = APPROACH_MARGIN * (elapsed + likely) * (1.0 + JITTER_FRACTION * jitter)
        furthest = max(backoff, earliest + OVERSHOOT_FRACTION * (elapsed + earliest))
        wait = min(likely + margin, furthest)
    elif _stalled(state, progress):
        # Just stuck (a job often sits at 95-99 % right before it ends): look again soon, then less and
        # less often - never a tight loop, and never less often than with nothing to go on.
        stuck = elapsed - (state.moved_at if state.moved_at is not None else 0.0)
        wait = min(learned if learned is not None else backoff * shorten, stuck * shorten)
    elif learned is not None:
        wait = learned
    else:
        wait = backoff * shorten

    if estimate is None and progress is not None and new_state.first_at is None:
        wait = max(wait, _not_started_wait(history, new_state, elapsed, progress))

    wait = max(wait, APPROACH_MARGIN * elapsed, MIN_WAIT_SECONDS, bounds.min_seconds)
    wait = min(wait, bounds.max_seconds)
    if retry_after is not None:
        wait = max(wait, float(retry_after))
    if new_state.polls >= MAX_POLLS:
        wait = remaining  # used up: the next check is at the deadline, which ends the loop
    return min(round(wait, 3), remaining), new_state


def learn(
    history: DurationHistory | None,
    *,
    state: PollState,
    finished_by: float,
    ran_at_least: float | None = None,
) -> DurationHistory:
    """The history after a batch of this connection finished (the provider ended every job).

    ``state``: the batch's last :class:`PollState`; ``finished_by``: seconds from the provider job's start
    to the check that saw it finished; ``ran_at_least``: seconds it was last seen running (default: the
    state's latest check; pass ``finished_by`` when a callback told the moment it ended). The batch adds
    one unit of weight spread over that interval in log-time, after the older weights decay by
    :data:`HISTORY_DECAY`. Batches that did not finish (cancelled, past their deadline) teach nothing.

    >>> h = learn(None, state=PollState(checked_at=540.0), finished_by=600.0)
    >>> round(h.weight, 3), len(h.weights)
    (1.0, 64)
    """
    finished_by = max(0.0, float(finished_by))
    low = state.checked_at if ran_at_least is None else ran_at_least
    low = min(max(0.0, float(low or 0.0)), finished_by)
    if low <= 0.0:
        low = LEFT_CENSORED_FRACTION * finished_by
    before = history.weights if history is not None and history.weights else (0.0,) * HISTORY_BINS
    weights = [w * HISTORY_DECAY for w in before]
    for index, share in _spread(low, finished_by):
        weights[index] += share
    accel = history.accel if history is not None else None
    accel_weight = history.accel_weight * HISTORY_DECAY if history is not None else 0.0
    needed = _acceleration_needed(state, low)
    if needed is not None:
        accel = needed if accel is None else max(needed, HISTORY_DECAY * accel + (1 - HISTORY_DECAY) * needed)
        accel_weight += 1.0
    return DurationHistory(
        weights=tuple(_tidy(w) for w in weights),
        accel=None if accel is None else round(accel, 4),
        accel_weight=_tidy(accel_weight),
    )


# --- internals: the no-history rules and progress ------------------------------------------------------
def _backoff(elapsed: float) -> float:
    """The no-information wait after ``elapsed`` seconds of running."""
    return max(FLOOR_SECONDS, BACKOFF_FRACTION * elapsed)


def _observe(state: PollState, elapsed: float, progress: float | None) -> PollState:
    """The state after this check: one more poll, and the progress reading remembered."""
    values = state.model_dump()
    at = round(elapsed, 3)
    values["polls"] = state.polls + 1
    values["checked_at"] = at
    if progress is not None:
        pct = _clamp_pct(progress)
        if state.first_at is None and pct >= MIN_USEFUL_PROGRESS:
            values["first_at"], values["first_pct"] = at, pct
        values["last_at"], values["last_pct"] = at, pct
        if state.top_pct is None or pct > state.top_pct:
            values["moved_at"], values["top_pct"] = at, pct
        since, was = (state.last_at, state.last_pct) if state.last_at is not None else (0.0, 0.0)
        if was is not None and at > since and pct - was >= 2 * _slack(state):  # a rate, not noise
            rate = round((pct - was) / (at - since), 6)
            values["fastest"] = rate if state.fastest is None else max(state.fastest, rate)
        if 0 < pct < 100:
            on_steps = sum(1 << n for n, count in enumerate(STEP_COUNTS) if _on_step(pct, count))
            values["steps"] = on_steps if state.steps is None else state.steps & on_steps
    return PollState.model_validate(values)


def _on_step(pct: float, count: int) -> bool:
    step = 100.0 / count
    return abs(pct - step * round(pct / step)) < GRAIN_TOLERANCE


def _slack(state: PollState) -> float:
    """How far the readings may be from the truth: a step, when every reading so far fell on one."""
    if not state.steps:
        return PROGRESS_SLACK
    coarsest = min(n for n in range(len(STEP_COUNTS)) if state.steps & (1 << n))
    return max(PROGRESS_SLACK, 100.0 / STEP_COUNTS[coarsest])


def _stalled(before: PollState, progress: float | None) -> bool:
    """True when this reading is no higher than the highest one before it."""
    return progress is not None and before.top_pct is not None and _clamp_pct(progress) <= before.top_pct


def _acceleration_bound(history: DurationHistory | None) -> float:
    """The largest plausible power of the progress curve: learned, once enough batches showed it."""
    if history is None or history.accel is None or history.accel_weight < MIN_HISTORY_WEIGHT:
        return MAX_ACCELERATION
    return min(LEARNED_MAX_ACCELERATION, max(1.0, history.accel * ACCEL_MARGIN))


def _not_started_wait(
    history: DurationHistory | None, state: PollState, elapsed: float, progress: float
) -> float:
    """While a job reports (next to) nothing done, the time it needs at least to finish - once the
    connection's history has shown how fast its progress can end; 0 before that (without it, a job
    that waits in a queue before it starts would be overshot)."""
    if history is None or history.accel is None or history.accel_weight < MIN_HISTORY_WEIGHT:
        return 0.0
    reachable = min(100.0, _clamp_pct(progress) + _slack(state))
    return elapsed * (math.pow(100.0 / reachable, 1.0 / _acceleration_bound(history)) - 1.0)


def _acceleration_needed(state: PollState, ran_at_least: float) -> float | None:
    """The power the earliest-plausible rule would have needed, from this batch's first useful reading,
    not to aim past its end; None when the batch reported no usable progress."""
    if state.first_at is None or state.first_pct is None or ran_at_least <= state.first_at * 1.05:
        return None
    reachable = min(100.0, state.first_pct + PROGRESS_SLACK)
    if reachable >= 100.0:
        return None
    needed = math.log(100.0 / reachable) / math.log(ran_at_least / state.first_at)
    return min(LEARNED_MAX_ACCELERATION, max(MIN_ACCELERATION, needed))


def _estimate(
    before: PollState, after: PollState, elapsed: float, progress: float | None, k_max: float
) -> tuple[float, float] | None:
    """(earliest plausible, likely) seconds until the job finishes; None when progress says nothing.

    Progress is taken to grow like ``t^k`` of the running time ``t``. Each earlier reading gives ``k``
    (the most precise pair sets the likely ``k``) and an upper bound on it from the readings' slack;
    without a usable pair ``k`` may be as large as ``k_max``. The latest stretch taken as steady gives
    a second opinion near the end, where a power curve fits worst.
    """
    if progress is None or after.first_at is None:
        return None
    pct = _clamp_pct(progress)
    if pct < MIN_USEFUL_PROGRESS or _stalled(before, progress):
        return None  # nothing yet, or not moving: no rate to go on
    to_go = 100.0 - pct
    if to_go <= 0 or elapsed <= 0:
        return 0.0, 0.0
    slack = _slack(after)
    k_high, k_likely, k_error = k_max, 1.0, math.inf
    for at, was in ((after.first_at, after.first_pct), (before.last_at, before.last_pct)):
        if at is None or was is None or was < MIN_USEFUL_PROGRESS or elapsed <= at * 1.05 or pct <= was:
            continue
        span = math.log(elapsed / at)
        error = (slack / was + slack / pct) / span  # how far off k may be
        if error < k_error:
            k_error = error
            k_likely = min(k_max, max(MIN_ACCELERATION, math.log(pct / was) / span))
        if was > slack:
            bound = math.log((pct + slack) / (was - slack)) / span
            k_high = min(k_high, max(MIN_ACCELERATION, bound))
    earliest = elapsed * ((100.0 / min(100.0, pct + slack)) ** (1.0 / k_high) - 1.0)
    likely = elapsed * ((100.0 / pct) ** (1.0 / k_likely) - 1.0)
    if before.last_at is not None and before.last_pct is not None and before.last_at < elapsed:
        span = elapsed - before.last_at
        moved = pct - before.last_pct
        if moved > 0:
            likely = min(likely, to_go / (moved / span))
            earliest = min(earliest, max(0.0, to_go - slack) / ((moved + slack) / span))
        fastest = before.fastest
        if fastest is not None and moved / span < fastest / SLOWDOWN:
            # Much slower than it has been: a pause, and it may go on at its earlier speed.
            earliest = min(earliest, max(0.0, to_go - slack) / fastest)
    return earliest, max(earliest, likely)


def _clamp_pct(progress: float) -> float:
    return min(100.0, max(0.0, float(progress)))


def _jitter(seed: str, polls: int) -> float:
    """A deterministic number in [-1, 1) from the seed and the poll count."""
    digest = hashlib.blake2b(f"{seed}:{polls}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


# --- internals: the learned schedule ---------------------------------------------------------------------
SKIP = 0.0  # a tier: no poll here, go on to the next stretch that is polled
BEYOND = -1.0  # a tier: past what the history knows, the no-history rules apply
_BIN_LOG_WIDTH = math.log(2.0) / HISTORY_BINS_PER_OCTAVE
#: Polls a job spends crossing one bin at the dense step, beyond those it spends at the backoff.
_DENSE_EXTRA_POLLS_PER_BIN = _BIN_LOG_WIDTH * (
    1 / math.log1p(DENSE_FRACTION) - 1 / math.log1p(BACKOFF_FRACTION)
)


def _edge(index: int) -> float:
    """Where bin ``index`` starts, in seconds."""
    return HISTORY_FIRST_EDGE * math.pow(2.0, index / HISTORY_BINS_PER_OCTAVE)


def _position(seconds: float) -> float:
    """Where ``seconds`` falls on the bins' scale (bin ``i`` spans ``[i, i + 1)``), clamped to them."""
    if seconds <= HISTORY_FIRST_EDGE:
        return 0.0
    return min(float(HISTORY_BINS) - 1e-9, HISTORY_BINS_PER_OCTAVE * math.log2(seconds / HISTORY_FIRST_EDGE))


def _spread(low: float, high: float) -> list[tuple[int, float]]:
    """One unit of weight spread evenly in log-time over ``[low, high]``, as (bin, share) pairs."""
    start, end = _position(low), _position(high)
    if end - start < 1e-9:
        return [(int(end), 1.0)]
    shares = []
    for index in range(int(start), int(end) + 1):
        overlap = min(end, index + 1.0) - max(start, float(index))
        if overlap > 0:
            shares.append((index, overlap / (end - start)))
    return shares


def _tidy(weight: float) -> float:
    """The weight kept to ``WEIGHT_DECIMALS`` decimals, rounded down so that decay takes it to 0."""
    scale = 10.0**WEIGHT_DECIMALS
    return math.floor(weight * scale + 1e-9) / scale


@functools.lru_cache(maxsize=512)
def _plan(weights: tuple[float, ...]) -> tuple[float, ...]:
    """The learned schedule: for each bin, the wait as a fraction of the running time (``DENSE_FRACTION``
    or ``BACKOFF_FRACTION``), ``SKIP`` or ``BEYOND``. Pure: the same history gives the same plan.

    Bins are taken in order of their hazard, highest first (where a poll is most likely to be the one
    that sees the end, polls are best spent). The first ones holding ``DENSE_COVERAGE`` of the jobs are
    polled densely if that costs at most ``DENSE_BUDGET`` polls per job more than the backoff would; the
    next ones, up to ``LEARNED_COVERAGE`` of the jobs, at the backoff; the rest are skipped.
    """
    total = sum(weights)
    mass = [w / total for w in _smoothed(weights)]
    last = max(i for i, m in enumerate(mass) if m > 0)
    reach, hazard = [], []  # the chance a job is still running in the bin (on average), the hazard
    survival = 1.0
    for m in mass:
        hazard.append(m / survival / _BIN_LOG_WIDTH if survival > 1e-12 else 0.0)
        reach.append(max(0.0, survival - m / 2))
        survival -= m
    order = sorted(range(last + 1), key=lambda i: (-hazard[i], i))
    tiers = [BEYOND] * HISTORY_BINS
    for i in range(last + 1):
        tiers[i] = SKIP
    dense, covered, extra = [], 0.0, 0.0
    for i in order:
        if covered >= DENSE_COVERAGE:
            break
        dense.append(i)
        covered += mass[i]
        extra += reach[i] * _DENSE_EXTRA_POLLS_PER_BIN
    if extra <= DENSE_BUDGET:
        for i in dense:
            tiers[i] = DENSE_FRACTION
    else:
        covered = 0.0
    for i in order:
        if covered >= LEARNED_COVERAGE:
            break
        if tiers[i] == SKIP:
            tiers[i] = BACKOFF_FRACTION
            covered += mass[i]
    return tuple(tiers)


def _smoothed(weights: Sequence[float]) -> list[float]:
    """The histogram smoothed as a kernel density estimate: a Gaussian (repeated 1-2-1 passes) whose width
    follows Silverman's rule from the weights' spread and effective count. A few batches of a
    connection whose durations spread widely stand for a wide smooth range, not for their exact
    quarter-octaves (whose gaps are chance); a consistent connection keeps its peak."""
    total = sum(weights)
    effective = total * total / sum(w * w for w in weights)
    centre = sum(i * w for i, w in enumerate(weights)) / total
    spread = math.sqrt(sum((i - centre) ** 2 * w for i, w in enumerate(weights)) / total)
    quartiles = _quantile(weights, 0.75) - _quantile(weights, 0.25)
    width = 0.9 * min(spread, quartiles / 1.34 if quartiles > 0 else spread) * effective**-0.2
    values = list(weights)
    for _ in range(min(MAX_SMOOTHING_PASSES, max(1, round(2 * width * width)))):
        padded = [values[0], *values, values[-1]]
        values = [(padded[i] + 2 * padded[i + 1] + padded[i + 2]) / 4 for i in range(len(values))]
    # ... but no further than SUPPORT_MARGIN_BINS beyond the durations seen (bar the outermost 1 %):
    # the estimate does not invent jobs much shorter or longer than any this connection ran.
    low = max(0, math.floor(_quantile(weights, 0.01)) - SUPPORT_MARGIN_BINS)
    high = min(len(values) - 1, math.floor(_quantile(weights, 0.99)) + SUPPORT_MARGIN_BINS)
    kept = [v if low <= i <= high else 0.0 for i, v in enumerate(values)]
    scale = total / sum(kept)
    return [v * scale for v in kept]


def _quantile(weights: Sequence[float], q: float) -> float:
    """Where (in bins, interpolated) a fraction ``q`` of the weight lies below."""
    target, running = q * sum(weights), 0.0
    for i, w in enumerate(weights):
        if w > 0 and running + w >= target:
            return i + (target - running) / w
        running += w
    return float(len(weights))


def _learned_wait(plan: tuple[float, ...], elapsed: float, jitter: float) -> float | None:
    """The wait the learned schedule gives at ``elapsed``; None past what the history knows."""
    here = int(_position(elapsed))
    tier = plan[here]
    if tier == BEYOND:
        return None
    if tier == SKIP:
        ahead = next((i for i in range(here + 1, HISTORY_BINS) if plan[i] != SKIP), None)
        if ahead is None or plan[ahead] == BEYOND:
            return None
        # Land just inside the next polled stretch: jitter spreads batches over up to half of its step.
        landing = _edge(ahead) * (1.0 + plan[ahead] * (jitter + 1.0) / 4.0)
        return landing - elapsed
    wait = tier * elapsed * (1.0 - JITTER_FRACTION * (jitter + 1.0) / 2.0)
    # Never wait past the start of a stretch polled more often.
    for i in range(here + 1, HISTORY_BINS):
        if _edge(i) >= elapsed + wait:
            break
        if 0 < plan[i] < tier:
            return _edge(i) - elapsed
    return wait
