"""The polling policy: how long the workflow waits before it checks a running batch again.

After every status check the check task calls :func:`next_wait`; the state machine's Wait state then
does the waiting (Lambdas never sleep). The function is pure and deterministic: the same inputs give
the same wait. The little it remembers between polls is a :class:`PollState`, a handful of numbers
persisted with the batch.

How the wait is chosen
----------------------
* **Nothing known** (no progress reported, or 0 %): wait ``BACKOFF_FRACTION`` of the time the job has
  run so far, and at least ``FLOOR_SECONDS``. The waits grow geometrically, so a long job costs few
  polls, and its end is seen at most that fraction of its running time late.
* **Progress reported and moving**: progress is modelled as a power of the running time (``t^1`` steady,
  ``t^2`` a slow start, ``t^0.5`` fast then slow), fitted to the readings. That gives a *likely* finish
  and, taking the readings at the edge of their precision and the power at its largest plausible value,
  an *earliest plausible* finish. The next poll is aimed ``APPROACH_MARGIN`` of the running time past
  the likely finish, but no further than ``OVERSHOOT_FRACTION`` past the earliest plausible one (or the
  no-information wait, if that is longer): a job that speeds up is not overshot by much, and a long
  job with steady progress is skipped ahead in a few large steps.
* **Progress stuck** (a reading no higher than the best one before, e.g. a job sitting at 95 %): the
  wait is the time it has been stuck, so the waits double while it stays stuck - never a tight loop -
  and never exceed the no-information wait.
* Every wait is at least ``APPROACH_MARGIN`` of the running time and at least ``MIN_WAIT_SECONDS``, so
  the polls of one batch grow with the logarithm of its running time whatever the provider reports.

Hard rules, in order of precedence: never past the deadline (at most ``remaining``; 0 once it has
passed); never earlier than the provider's Retry-After; never below ``bounds.min_seconds``; never above
``bounds.max_seconds`` (unless Retry-After asks for longer, or the batch used up ``MAX_POLLS``). The
seeded jitter (``JITTER_FRACTION``) only shortens a backoff wait, and only moves the margin of an
aimed wait, so it never weakens the delay bounds above; it is applied before the hard rules, so it
never breaks them.

Cost: every loop iteration of the state machine is :data:`TRANSITIONS_PER_POLL` state transitions,
priced by :func:`estimated_cost_usd`. ``python -m benchmarks.polling_cost`` measures the policy against
fixed-interval polling on several mixes of jobs.
"""

from __future__ import annotations

import hashlib
import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from batchbridge.pricing import SFN_USD_PER_TRANSITION

#: Wait + Check + Choice = 3 per loop iteration ("Wait For Provider" -> "Check Batch Status" ->
#: "Batch Finished?" in statemachine/batch.asl.json).
TRANSITIONS_PER_POLL = 3
#: Step Functions Standard list price per state transition (see :mod:`batchbridge.pricing`).
USD_PER_TRANSITION = SFN_USD_PER_TRANSITION
#: The policy's own cap on polls per batch; past it, the next check is at the deadline. The state
#: machine's "Batch Finished?" guard is the backstop above it. Every wait is at least
#: ``MIN_WAIT_SECONDS`` and ``APPROACH_MARGIN`` of the running time, so a batch with a deadline of a
#: day makes fewer than 500 polls whatever the provider reports: the cap is a safety net.
MAX_POLLS = 380

#: With nothing to go on, wait this fraction of the time the job has run so far: the end of a job is
#: then seen at most 20 % of its duration late.
BACKOFF_FRACTION = 0.2
#: ... and never less than this. Checking a job more often in its first few minutes costs a poll on
#: every batch to save seconds on the few that end that soon.
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
#: Seeded jitter: backoff waits are shortened by up to this fraction, aimed margins moved by it.
JITTER_FRACTION = 0.05
#: Step Functions Wait states count whole seconds; nothing is gained below one.
MIN_WAIT_SECONDS = 1.0


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
    first_at: float | None = None  # the first useful progress reading
    first_pct: float | None = None
    last_at: float | None = None  # the previous progress reading
    last_pct: float | None = None
    moved_at: float | None = None  # when the highest reading so far was first seen
    top_pct: float | None = None


def estimated_cost_usd(transitions: int) -> float:
    """List price of ``transitions`` Step Functions Standard state transitions, in US dollars.

    >>> estimated_cost_usd(40_000)
    1.0
    """
    return round(transitions * USD_PER_TRANSITION, 6)


def next_wait(
    *,
    state: PollState,
    elapsed: float,
    remaining: float,
    progress: float | None,
    retry_after: float | None,
    bounds: PollBounds,
    seed: str,
) -> tuple[float, PollState]:
    """The seconds to wait before the next status check, and the state to keep for the next call.

    ``elapsed``: seconds since the provider job started; ``remaining``: seconds until the batch
    deadline; ``progress``: percent complete when the provider reports it; ``retry_after``: the
    provider's Retry-After in seconds, if any; ``seed``: anything stable per batch (its id).

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
    estimate = _estimate(state, new_state, elapsed, progress)
    if estimate is not None:
        earliest, likely = estimate
        margin = APPROACH_MARGIN * (elapsed + likely) * (1.0 + JITTER_FRACTION * jitter)
        furthest = max(backoff, earliest + OVERSHOOT_FRACTION * (elapsed + earliest))
        wait = min(likely + margin, furthest)
    elif _stalled(state, progress):
        stuck = elapsed - (state.moved_at if state.moved_at is not None else 0.0)
        wait = min(backoff, stuck) * shorten
    else:
        wait = backoff * shorten

    wait = max(wait, APPROACH_MARGIN * elapsed, MIN_WAIT_SECONDS, bounds.min_seconds)
    wait = min(wait, bounds.max_seconds)
    if retry_after is not None:
        wait = max(wait, float(retry_after))
    if new_state.polls >= MAX_POLLS:
        wait = remaining  # used up: the next check is at the deadline, which ends the loop
    return round(min(wait, remaining), 3), new_state


# --- internals ---------------------------------------------------------------------------------------
def _backoff(elapsed: float) -> float:
    """The no-information wait after ``elapsed`` seconds of running."""
    return max(FLOOR_SECONDS, BACKOFF_FRACTION * elapsed)


def _observe(state: PollState, elapsed: float, progress: float | None) -> PollState:
    """The state after this check: one more poll, and the progress reading remembered."""
    values = state.model_dump()
    values["polls"] = state.polls + 1
    if progress is not None:
        pct = _clamp_pct(progress)
        at = round(elapsed, 3)
        if state.first_at is None and pct >= MIN_USEFUL_PROGRESS:
            values["first_at"], values["first_pct"] = at, pct
        values["last_at"], values["last_pct"] = at, pct
        if state.top_pct is None or pct > state.top_pct:
            values["moved_at"], values["top_pct"] = at, pct
    return PollState.model_validate(values)


def _stalled(before: PollState, progress: float | None) -> bool:
    """True when this reading is no higher than the highest one before it."""
    return progress is not None and before.top_pct is not None and _clamp_pct(progress) <= before.top_pct


def _estimate(
    before: PollState, after: PollState, elapsed: float, progress: float | None
) -> tuple[float, float] | None:
    """(earliest plausible, likely) seconds until the job finishes; None when progress says nothing.

    Progress is taken to grow like ``t^k`` of the running time ``t``. Each earlier reading gives ``k``
    (the most precise pair sets the likely ``k``) and an upper bound on it from the readings' slack;
    without a usable pair ``k`` may be as large as ``MAX_ACCELERATION``. The latest stretch taken as
    steady gives a second opinion near the end, where a power curve fits worst.
    """
    if progress is None or after.first_at is None:
        return None
    pct = _clamp_pct(progress)
    if pct < MIN_USEFUL_PROGRESS or _stalled(before, progress):
        return None  # nothing yet, or not moving: no rate to go on
    to_go = 100.0 - pct
    if to_go <= 0 or elapsed <= 0:
        return 0.0, 0.0
    k_high, k_likely, k_error = MAX_ACCELERATION, 1.0, math.inf
    for at, was in ((after.first_at, after.first_pct), (before.last_at, before.last_pct)):
        if at is None or was is None or was < MIN_USEFUL_PROGRESS or elapsed <= at * 1.05 or pct <= was:
            continue
        span = math.log(elapsed / at)
        error = (PROGRESS_SLACK / was + PROGRESS_SLACK / pct) / span  # how far off k may be
        if error < k_error:
            k_error = error
            k_likely = min(MAX_ACCELERATION, max(MIN_ACCELERATION, math.log(pct / was) / span))
        if was > PROGRESS_SLACK:
            bound = math.log((pct + PROGRESS_SLACK) / (was - PROGRESS_SLACK)) / span
            k_high = min(k_high, max(MIN_ACCELERATION, bound))
    earliest = elapsed * ((100.0 / min(100.0, pct + PROGRESS_SLACK)) ** (1.0 / k_high) - 1.0)
    likely = elapsed * ((100.0 / pct) ** (1.0 / k_likely) - 1.0)
    if before.last_at is not None and before.last_pct is not None and before.last_at < elapsed:
        span = elapsed - before.last_at
        moved = pct - before.last_pct
        if moved > 0:
            likely = min(likely, to_go / (moved / span))
            earliest = min(earliest, max(0.0, to_go - PROGRESS_SLACK) / ((moved + PROGRESS_SLACK) / span))
    return earliest, max(earliest, likely)


def _clamp_pct(progress: float) -> float:
    return min(100.0, max(0.0, float(progress)))


def _jitter(seed: str, polls: int) -> float:
    """A deterministic number in [-1, 1) from the seed and the poll count."""
    digest = hashlib.blake2b(f"{seed}:{polls}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0
