"""The polling policy: its hard rules, its behaviour with and without progress, what it learns from a
connection's finished batches, and the benchmark that measures its cost.

The policy is a pure function, so these tests call it directly over grids of inputs; the benchmark
tests run its virtual-time simulation on small mixes of jobs (deterministic, no clock involved) and its
walk of the real state machine definition.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random

import pytest
from benchmarks import execution_cost, polling_cost, polling_mixes

from batchbridge import cost, polling, pricing
from batchbridge.polling import DurationHistory, PollBounds, PollState, learn, next_wait
from batchbridge.tasks import Step

BOUNDS = PollBounds(min_seconds=10, max_seconds=1800)
DAY = 24 * 3600.0


def wait_for(
    state: PollState | None = None,
    *,
    elapsed: float,
    remaining: float = DAY,
    progress: float | None = None,
    retry_after: float | None = None,
    bounds: PollBounds = BOUNDS,
    seed: str = "batch-1",
    history: DurationHistory | None = None,
) -> tuple[float, PollState]:
    return next_wait(
        state=state or PollState(),
        elapsed=elapsed,
        remaining=remaining,
        progress=progress,
        retry_after=retry_after,
        bounds=bounds,
        seed=seed,
        history=history,
    )


def run(readings: list[tuple[float, float | None]], **kwargs: object) -> tuple[list[float], PollState]:
    """Feed a series of (elapsed, progress) readings through the policy; return its waits."""
    state, waits = PollState(), []
    for elapsed, progress in readings:
        wait, state = wait_for(state, elapsed=elapsed, progress=progress, **kwargs)  # type: ignore[arg-type]
        waits.append(wait)
    return waits, state


def histories() -> list[tuple[str, PollState, float, float | None]]:
    """States the policy can meet: fresh, no progress, moving progress, stuck progress, at 100 %."""
    cases: list[tuple[str, PollState, float, float | None]] = []
    for name, series in {
        "no progress": [(t, None) for t in (0, 50, 100, 200)],
        "steady": [(0, None), (50, 1.0), (300, 6.0), (1200, 24.0)],
        "stuck at 95": [(0, None), (600, 60.0), (900, 95.0), (1000, 95.0)],
        "at 100 but running": [(0, None), (100, 50.0), (200, 100.0)],
    }.items():
        _, state = run(series)
        last_at = series[-1][0]
        for later, progress in ((last_at + 1, None), (last_at + 60, 96.0), (last_at * 3 + 10, 99.0)):
            cases.append((name, state, later, progress))
    cases.append(("fresh", PollState(), 0.0, None))
    return cases


def learned(durations: list[float], *, step: float = 0.1) -> DurationHistory:
    """A connection's history after batches of these durations, each last seen running ``step`` of its
    duration before the check that saw it finished."""
    history = None
    for d in durations:
        history = learn(history, state=PollState(checked_at=d * (1 - step)), finished_by=d)
    assert history is not None
    return history


def tight(typical: float = 3600.0, n: int = 30, spread: float = 0.1, seed: str = "tight") -> list[float]:
    rng = random.Random(seed)
    return [typical * math.exp(rng.gauss(0, spread)) for _ in range(n)]


def wide(n: int = 40, seed: str = "wide") -> list[float]:
    rng = random.Random(seed)
    return [math.exp(rng.uniform(math.log(60), math.log(6 * 3600))) for _ in range(n)]


LEARNED = {
    "no history": None,
    "hour-long batches": learned(tight()),
    "half-minute batches": learned(tight(30.0, spread=0.3)),
    "wide batches": learned(wide()),
}

GRID = list(
    itertools.product(
        histories(),
        list(LEARNED),
        [5.0, 45.0, 600.0, DAY],  # remaining
        [None, 0.5, 120.0, 4000.0],  # retry_after
        [
            PollBounds(min_seconds=10, max_seconds=1800),
            PollBounds(min_seconds=300, max_seconds=600),
            PollBounds(min_seconds=0, max_seconds=30),
        ],
    )
)


@pytest.mark.parametrize(("history", "learned_from", "remaining", "retry_after", "bounds"), GRID)
def test_hard_rules_hold_everywhere(history, learned_from, remaining, retry_after, bounds):
    # Given any state of the batch, anything learned from its connection, deadline, Retry-After and bounds
    _, state, elapsed, progress = history
    # When the policy chooses the next wait
    wait, _ = wait_for(
        state,
        elapsed=elapsed,
        remaining=remaining,
        progress=progress,
        retry_after=retry_after,
        bounds=bounds,
        history=LEARNED[learned_from],
    )
    # Then it never waits past the deadline,
    assert 0 < wait <= remaining
    # never polls earlier than the provider's Retry-After or minimum interval (unless the deadline is sooner),
    assert wait >= min(remaining, max(bounds.min_seconds, retry_after or 0.0))
    # and never waits longer than the maximum unless Retry-After asks for it.
    assert wait <= max(bounds.max_seconds, retry_after or 0.0)


@pytest.mark.parametrize("remaining", [0.0, -1.0, -3600.0])
def test_once_the_deadline_has_passed_the_wait_is_zero(remaining):
    wait, state = wait_for(elapsed=600, remaining=remaining, progress=40.0, retry_after=300)
    assert wait == 0.0
    assert state.polls == 1


def test_retry_after_longer_than_the_maximum_is_still_honoured():
    wait, _ = wait_for(elapsed=100, retry_after=7200)
    assert wait == 7200


def test_the_deadline_wins_over_retry_after_and_the_minimum():
    assert wait_for(elapsed=100, remaining=90, retry_after=300)[0] == 90
    assert wait_for(elapsed=100, remaining=4, bounds=PollBounds(min_seconds=10, max_seconds=60))[0] == 4


def test_same_seed_same_waits_and_the_seed_spreads_batches():
    series = [(0.0, None), (60.0, 2.0), (400.0, 14.0), (900.0, 30.0), (2000.0, None)]
    first, state_a = run(series, seed="batch-a")
    again, state_b = run(series, seed="batch-a")
    assert first == again and state_a == state_b
    others = {tuple(run(series, seed=f"batch-{n}")[0]) for n in range(20)}
    assert len(others) > 1  # the jitter differs between batches


@pytest.mark.parametrize("progress", [None, 0.0])
def test_with_nothing_moving_the_waits_grow(progress):
    # Given a job that reports nothing (or 0 %) at every check
    elapsed, state, waits = 0.0, PollState(), []
    for _ in range(40):
        wait, state = wait_for(state, elapsed=elapsed, progress=None if elapsed == 0 else progress)
        waits.append(wait)
        elapsed += wait
    # Then the waits never shrink much (jitter only) and grow steadily to the maximum
    assert all(b >= a * (1 - polling.JITTER_FRACTION) for a, b in itertools.pairwise(waits))
    assert waits[-1] == BOUNDS.max_seconds
    assert waits[10] > 2 * waits[0]
    # and each wait stays within the no-information bound: at most 20 % of the time run so far (or the floor)
    run_time = 0.0
    for wait in waits:
        assert wait <= max(polling.FLOOR_SECONDS, polling.BACKOFF_FRACTION * run_time) + 1e-6
        run_time += wait


def test_steady_progress_aims_near_the_estimated_finish():
    # Given a job at 21 %, 41 %, 61 % after 10, 20, 30 minutes (it will end at about 50 minutes; readings
    # of exactly 20, 40, 60 would look like a provider counting fifths)
    waits, _ = run([(0, None), (600, 21.0), (1200, 41.0), (1800, 61.0)])
    # Then the next wait is close to the 20 minutes left, and far beyond the no-information wait
    assert 0.85 * 1200 <= waits[-1] <= 1.1 * 1200
    assert waits[-1] > 2 * polling.BACKOFF_FRACTION * 1800


def test_near_the_end_the_wait_lands_just_past_the_finish():
    # Given the same job at 91 % after 45 minutes: about 5 minutes left
    waits, _ = run([(0, None), (600, 21.0), (1200, 41.0), (1800, 61.0), (2700, 91.0)])
    assert 300 <= waits[-1] <= 300 + 0.05 * 3000


def test_a_long_job_with_steady_progress_is_skipped_ahead_to_the_maximum():
    waits, _ = run([(0, None), (300, 2.0), (3000, 20.0)])
    assert waits[-1] == BOUNDS.max_seconds


def test_a_job_stuck_at_95_percent_backs_off_without_a_tight_loop_and_within_the_maximum():
    # Given a job that reached 95 % after an hour and stays there for three more hours
    state = run([(0, None), (1200, 30.0), (2400, 65.0), (3600, 95.0)])[1]
    elapsed, waits = 3600.0, []
    while elapsed < 4 * 3600:
        wait, state = wait_for(state, elapsed=elapsed, progress=95.0)
        waits.append(wait)
        elapsed += wait
    # Then the waits grow, reach the maximum and never pass it
    assert waits[3] > waits[0]
    assert max(waits) == BOUNDS.max_seconds
    # and three hours of being stuck cost only a handful of polls
    assert len(waits) <= 12


def test_a_stall_is_not_mistaken_for_the_end():
    # Progress that stops moving must not make the policy jump to the maximum at once either
    state = run([(0, None), (60, 10.0), (120, 50.0), (180, 95.0)])[1]
    wait, _ = wait_for(state, elapsed=240, progress=95.0)
    assert wait <= polling.BACKOFF_FRACTION * 240 + polling.FLOOR_SECONDS


def test_progress_reported_at_100_while_still_running_does_not_loop_tightly():
    elapsed, state = 0.0, PollState()
    wait, state = wait_for(state, elapsed=elapsed)
    elapsed += wait
    waits = []
    for _ in range(12):
        wait, state = wait_for(state, elapsed=elapsed, progress=100.0)
        waits.append(wait)
        elapsed += wait
    assert all(w >= BOUNDS.min_seconds for w in waits)
    assert waits[-1] > 4 * waits[0]


def densest_history() -> DurationHistory:
    """Batches of every length from seconds to a day, each seen finished within a hair: the history that
    asks for the most polls."""
    durations = [5 * 1.05**i for i in range(200) if 5 * 1.05**i < DAY]
    history = None
    for d in durations * 3:
        history = learn(history, state=PollState(checked_at=d), finished_by=d)
    assert history is not None
    return history


@pytest.mark.parametrize(
    "learned_from", ["no history", "hour-long batches", "half-minute batches", "densest"]
)
@pytest.mark.parametrize("progress", [None, 0.0, 42.0, 100.0])
def test_a_batch_never_comes_near_the_poll_cap_before_a_day_long_deadline(progress, learned_from):
    # Given the most eager provider bounds, any history, and a job that never finishes
    bounds = PollBounds(min_seconds=0, max_seconds=1800)
    history = densest_history() if learned_from == "densest" else LEARNED[learned_from]
    elapsed, state, polls = 0.0, PollState(), 0
    while elapsed < DAY:
        wait, state = wait_for(
            state,
            elapsed=elapsed,
            remaining=DAY - elapsed,
            progress=None if elapsed == 0 else progress,
            bounds=bounds,
            history=history,
        )
        assert wait > 0
        elapsed += wait
        polls += 1
    assert polls < polling.MAX_POLLS / 2


def test_past_the_poll_cap_the_next_check_is_at_the_deadline():
    state = PollState(polls=polling.MAX_POLLS - 1)
    wait, _ = wait_for(state, elapsed=3000, remaining=5000)
    assert wait == 5000


def test_the_state_is_a_small_json_map_of_numbers():
    _, state = run([(0, None), (60, 3.0), (400, 21.5), (900, 21.5)])
    stored = json.loads(json.dumps(state.model_dump()))
    assert len(stored) <= 11
    assert all(v is None or isinstance(v, int | float) for v in stored.values())
    assert PollState.model_validate(stored) == state
    assert PollState.model_validate({}) == PollState()  # a batch that has not polled yet


def test_bounds_must_be_ordered():
    with pytest.raises(ValueError, match="max_seconds"):
        PollBounds(min_seconds=600, max_seconds=300)


# --- coarse and paused progress --------------------------------------------------------------------------
def test_readings_on_coarse_steps_are_taken_as_that_imprecise():
    # Given a provider that reports quarters: 25 % after 5 minutes, 50 % after 10 (it may be at 74 %)
    coarse, _ = run([(0, None), (300, 25.0), (600, 50.0)])
    # and one that reports percent: 26 % and 51 %
    fine, _ = run([(0, None), (300, 26.0), (600, 51.0)])
    # Then the coarse job is not aimed at its likely finish 10 minutes on (it may end within 5); the fine
    # one is
    assert fine[-1] >= 0.85 * 600
    at_most = (100 - 74) / (50 / 600)  # 50 % may be 74 %: at its pace so far it could end in 312 s
    assert coarse[-1] < at_most < fine[-1]


def test_a_pause_is_not_taken_for_the_new_speed():
    # Given a job that did 40 % in its first 400 s, then only 2 points in the next 200 s (a pause)
    waits, _ = run([(0, None), (400, 40.0), (600, 42.0)])
    # Then the next check comes no later than the end would be if it resumed at its earlier speed
    resumed_end = (100 - 42 - polling.PROGRESS_SLACK) / (40 / 400)
    assert waits[-1] <= resumed_end + polling.OVERSHOOT_FRACTION * (600 + resumed_end) + 1e-6
    # (without the pause rule, the slow stretch makes it wait several times longer)
    assert waits[-1] < 1000


# --- learning from a connection's finished batches ---------------------------------------------------------
def test_a_finished_batch_adds_one_unit_of_weight_over_the_time_it_could_have_ended():
    history = learn(None, state=PollState(checked_at=600.0), finished_by=720.0)
    assert history.weight == pytest.approx(1.0, abs=0.01)
    bins = [i for i, w in enumerate(history.weights) if w > 0]
    assert polling._edge(bins[0]) <= 600 < polling._edge(bins[0] + 1)
    assert polling._edge(bins[-1]) <= 720 < polling._edge(bins[-1] + 1)


def test_older_batches_decay():
    history = learned([600.0] * 3)
    assert history.weight == pytest.approx(1 + polling.HISTORY_DECAY + polling.HISTORY_DECAY**2, abs=0.01)
    for _ in range(200):
        history = learn(history, state=PollState(checked_at=5400.0), finished_by=6000.0)
    early = sum(w for i, w in enumerate(history.weights) if polling._edge(i) < 1000)
    assert early == 0  # a connection whose batches changed is followed
    assert history.weight == pytest.approx(1 / (1 - polling.HISTORY_DECAY), rel=0.01)


def test_a_batch_seen_finished_at_its_first_check_weighs_just_before_it():
    history = learn(None, state=PollState(), finished_by=400.0)  # never seen running
    bins = [i for i, w in enumerate(history.weights) if w > 0]
    assert polling._edge(bins[0] + 1) > polling.LEFT_CENSORED_FRACTION * 400
    assert polling._edge(bins[-1]) <= 400


def test_the_history_is_a_small_item_of_plain_numbers():
    # Given a connection that ran a thousand batches of every kind
    rng = random.Random(7)
    history = None
    for _ in range(1000):
        d = math.exp(rng.uniform(math.log(5), math.log(2 * DAY)))
        state = PollState(checked_at=d * rng.uniform(0, 1), first_at=d / 10, first_pct=rng.uniform(1, 30))
        history = learn(history, state=state, finished_by=d)
    assert history is not None
    # Then it serialises to well under a kilobyte of plain numbers, and reads back the same
    stored = json.loads(json.dumps(history.model_dump()))
    assert len(json.dumps(stored)) < 1024
    assert all(isinstance(w, int | float) for w in stored["weights"]) and len(stored["weights"]) == 64
    assert all(isinstance(stored[k], int | float) for k in ("accel", "accel_weight"))
    assert DurationHistory.model_validate(stored) == history
    assert DurationHistory.model_validate({}) == DurationHistory()  # a connection with no batch yet


@pytest.mark.parametrize("weights", [(1.0,) * 10, (-1.0,) + (0.0,) * 63, (math.inf,) + (0.0,) * 63])
def test_a_malformed_history_is_refused(weights):
    with pytest.raises(ValueError, match="weights"):
        DurationHistory(weights=weights)


def test_a_history_of_too_few_batches_changes_nothing():
    thin = learned([3600.0, 3500.0])  # less than MIN_HISTORY_WEIGHT
    assert thin.weight < polling.MIN_HISTORY_WEIGHT
    series = [(0.0, None), (50.0, None), (100.0, None), (300.0, None)]
    state_a, state_b = PollState(), PollState()
    for elapsed, progress in series:
        a, state_a = wait_for(state_a, elapsed=elapsed, progress=progress, history=thin)
        b, state_b = wait_for(state_b, elapsed=elapsed, progress=progress)
        assert a == b


def schedule(history: DurationHistory | None, until: float, bounds: PollBounds = BOUNDS) -> list[float]:
    """The check times of a job that reports nothing and does not end before ``until``."""
    elapsed, state, times = 0.0, PollState(), []
    while elapsed < until:
        wait, state = wait_for(state, elapsed=elapsed, history=history, bounds=bounds)
        elapsed += wait
        times.append(elapsed)
    return times


def test_a_learned_connection_is_first_checked_near_where_its_batches_end():
    # Given a connection whose batches take about an hour
    history = LEARNED["hour-long batches"]
    times = schedule(history, 2 * 3600)
    # Then the first check is well into the hour (not after 50 s, as with nothing learned)
    assert 0.5 * 3600 <= times[0] < 3600 * math.exp(-2 * 0.1)
    assert schedule(None, 60)[0] == pytest.approx(polling.FLOOR_SECONDS, rel=polling.JITTER_FRACTION)
    # and around the hour it checks densely, so most ends are seen within 5 %
    around = [b - a for a, b in itertools.pairwise(times) if 0.9 * 3600 <= a <= 1.1 * 3600]
    assert around and all(gap <= polling.DENSE_FRACTION * 1.1 * 3600 + 1e-6 for gap in around)
    # and a batch that takes its usual hour costs fewer checks than backing off from the start, and is
    # seen finished sooner
    for duration in (0.9 * 3600, 3600, 1.1 * 3600):
        taught, cold = schedule(history, duration), schedule(None, duration)
        assert len(taught) < len(cold) - 5
        assert taught[-1] - duration <= polling.DENSE_FRACTION * duration + 1e-6 < cold[-1] - duration


def test_a_connection_of_short_batches_is_checked_early_and_often():
    history = LEARNED["half-minute batches"]
    times = schedule(history, 60)
    assert times[0] <= 20  # not 50 s
    assert len(times) >= 3


def test_widely_spread_durations_are_not_checked_densely():
    # Given a connection whose batches take anything from a minute to six hours
    history = LEARNED["wide batches"]
    times = schedule(history, 6 * 3600)
    # Then no stretch is checked every 5 % (that would cost tens of checks a batch); it backs off
    ratios = [b / a for a, b in itertools.pairwise(times) if a >= 100 and b - a < BOUNDS.max_seconds - 1]
    assert ratios and min(ratios) > 1 + polling.DENSE_FRACTION * 2
    # and it still checks within 20 % of the running time wherever those batches end
    assert max(ratios) <= 1 + polling.BACKOFF_FRACTION + 1e-6


def test_past_the_longest_batch_learned_the_no_history_rule_takes_over():
    history = LEARNED["hour-long batches"]
    elapsed = 5 * 3600.0  # far past every batch of the connection
    with_history = wait_for(elapsed=elapsed, history=history, seed="s")[0]
    without = wait_for(elapsed=elapsed, seed="s")[0]
    assert with_history == without


def test_a_learned_schedule_is_deterministic():
    history = LEARNED["hour-long batches"]
    assert schedule(history, 7200) == schedule(copy.deepcopy(history), 7200)


def linear_history(n: int = 10) -> DurationHistory:
    """A connection whose batches (an hour each) report steady progress from the start."""
    history = None
    for i in range(n):
        d = 3600.0 + 60 * i
        state = PollState(checked_at=d * 0.95, first_at=50.0, first_pct=math.floor(100 * 50 / d))
        history = learn(history, state=state, finished_by=d)
    assert history is not None
    return history


def test_the_connection_teaches_how_fast_progress_can_end():
    history = linear_history()
    assert history.accel is not None and history.accel <= 1.2  # steady progress: about t^1
    # Given the first reading of the next batch, 1 % after 50 s
    cold, _ = run([(0, None), (50, 1.0)])
    taught, _ = run([(0, None), (50, 1.0)], history=history)
    # Then it skips further ahead than without the lesson (which must allow a t^2 slow start) ...
    assert taught[-1] > 3 * cold[-1]
    # ... but not past the earliest end steady progress allows (1 % may be 2.5 %: 2,000 s)
    assert 50 + taught[-1] <= 50 * 100 / (1 + polling.PROGRESS_SLACK)


def test_a_job_that_has_not_started_is_not_checked_before_it_could_end():
    # Given a connection of steady progress, and a job at 0 % after 30 s
    history = linear_history()
    taught, _ = run([(0, None), (30, 0.0)], history=history)
    cold, _ = run([(0, None), (30, 0.0)])
    # Then it waits at least until the job could have reached 100 % at the connection's fastest pace
    k = polling._acceleration_bound(history)
    earliest = 30 * ((100 / polling.PROGRESS_SLACK) ** (1 / k) - 1)
    assert taught[-1] >= min(earliest, BOUNDS.max_seconds) - 1e-6
    # while with nothing learned - or learned from too few batches - 0 % says nothing (it may be queued)
    assert cold[-1] <= polling.FLOOR_SECONDS
    barely = linear_history(n=2)
    assert barely.accel is not None and barely.accel_weight < polling.MIN_HISTORY_WEIGHT
    assert run([(0, None), (30, 0.0)], history=barely)[0][-1] <= polling.FLOOR_SECONDS


# --- the benchmark ----------------------------------------------------------------------------------------
def test_the_fixed_pollers_closed_form_equals_polling_step_by_step():
    mix = polling_mixes.short_mix(50)
    for job in mix.jobs[:25] + polling_mixes.long_mix(10).jobs:
        for poller in (polling_cost.FixedPoller(30), polling_cost.FixedPoller(None, "fixed at the minimum")):
            step = poller.interval(mix.bounds)
            closed = poller.run(job, mix.bounds, polling_cost.deadline_of(job))
            stepped = polling_cost.simulate(job, mix.bounds, fixed=step)
            assert closed.polls == stepped.polls
            assert closed.delay == pytest.approx(stepped.delay, abs=1e-6)


def test_the_learning_simulation_feeds_only_what_the_engine_sees(monkeypatch):
    # Each history update gets the last check that saw the batch running and the one that saw it done,
    # and the true end lies between them; never the true duration itself.
    seen = []
    real_learn = polling.learn

    def spy(history, *, state, finished_by, ran_at_least=None):
        seen.append((state.checked_at, finished_by))
        return real_learn(history, state=state, finished_by=finished_by, ran_at_least=ran_at_least)

    monkeypatch.setattr(polling, "learn", spy)
    mix = polling_mixes.connections_mix(60)
    results = polling_cost.run_jobs(polling_cost.PolicyPoller(learning=True), mix)
    assert len(seen) == len(results)
    durations = {job.key: job.duration for job, _ in results}
    by_order = [job for job, _ in results]
    for (running_at, done_at), job in zip(seen, by_order, strict=True):
        assert running_at < durations[job.key] <= done_at


def test_learning_pays_on_connections_whose_batches_are_alike():
    mix = polling_mixes.connections_mix(300)
    costing = polling_cost.Costing.from_definition()
    chosen = [polling_cost.FixedPoller(30), polling_cost.PolicyPoller(False), polling_cost.PolicyPoller(True)]
    fixed, cold, taught = polling_cost.run_mix(mix, costing, chosen)
    assert taught.polls_per_job < 0.8 * cold.polls_per_job
    assert taught.median_delay_pct < cold.median_delay_pct
    assert fixed.loop_transitions_per_job / taught.loop_transitions_per_job >= 15


def test_learning_a_spread_out_connection_covers_what_the_p95_needs_and_no_more():
    # Jobs reporting nothing on connections spread from a minute to six hours: the learned plan covers
    # enough of them at the backoff to see 95 % within 20 % of their duration, and skips the stretch
    # where covering the last few would cost most (their first minutes).
    mix = polling_mixes.standard_mix(400)
    (row,) = polling_cost.run_mix(
        mix, polling_cost.Costing.from_definition(), [polling_cost.PolicyPoller(True)]
    )
    (_, _, _, _), (label, polls, _, p95) = row.by_progress
    assert label == "reporting none"
    assert p95 <= 20.0
    assert polls <= 18.3  # covering 99 % of them: 19.0 polls


@pytest.mark.parametrize("make_mix", [polling_mixes.stall_mix, polling_mixes.nonlinear_mix])
def test_stalls_and_uneven_progress_stay_cheap_and_timely(make_mix):
    mix = make_mix(200)
    costing = polling_cost.Costing.from_definition()
    for policy in (polling_cost.PolicyPoller(False), polling_cost.PolicyPoller(True)):
        fixed_30, summary = polling_cost.run_mix(mix, costing, [polling_cost.FixedPoller(30), policy])
        assert fixed_30.loop_transitions_per_job / summary.loop_transitions_per_job >= 12
        assert summary.median_delay_pct <= 7.5
        assert summary.p95_delay_pct <= 20


def test_the_dollar_figures_are_the_counted_transitions_and_invocations_at_list_price():
    costing = polling_cost.Costing.from_definition()
    mix = polling_mixes.standard_mix(40)
    (row,) = polling_cost.run_mix(mix, costing, [polling_cost.FixedPoller(60)])
    polls = row.polls_per_job
    memory = costing.memory_mb
    by_hand = row.whole_transitions_per_job * pricing.SFN_USD_PER_TRANSITION
    for task, invocations in (("submit", 1), ("collect", 1), ("finalize", 1), ("check", polls)):
        gb_s = memory[task] / 1024 * execution_cost.ASSUMED_BILLED_MS[task] / 1000
        units = execution_cost.ASSUMED_DYNAMODB_UNITS.get(task, {"write": 0, "read": 0})
        by_hand += invocations * (
            pricing.LAMBDA_USD_PER_REQUEST
            + gb_s * pricing.LAMBDA_USD_PER_GB_SECOND_ARM64
            + units["write"] * pricing.DYNAMODB_USD_PER_WRITE_UNIT
            + units["read"] * pricing.DYNAMODB_USD_PER_READ_UNIT
        )
    by_hand += pricing.DYNAMODB_USD_PER_WRITE_UNIT + pricing.SNS_USD_PER_PUBLISH  # claim and publish steps
    assert row.usd_per_1000_polled == pytest.approx(1000 * by_hand)
    assert row.whole_transitions_per_job == pytest.approx(
        costing.polled.fixed_transitions + costing.polled.transitions_per_round * polls
    )


def test_the_split_by_progress_adds_up_to_the_whole():
    mix = polling_mixes.standard_mix(80)
    costing = polling_cost.Costing.from_definition()
    (row,) = polling_cost.run_mix(mix, costing, [polling_cost.PolicyPoller(True)])
    reporting = sum(1 for job in mix.jobs if job.shape is not None)
    (label_p, polls_p, *_), (label_n, polls_n, *_) = row.by_progress
    assert (label_p, label_n) == ("reporting progress", "reporting none")
    weighted = (polls_p * reporting + polls_n * (len(mix.jobs) - reporting)) / len(mix.jobs)
    assert weighted == pytest.approx(row.polls_per_job)


def test_the_benchmark_prints_its_tables_and_exits_zero(capsys):
    assert polling_cost.main(["--jobs", "12"]) == 0
    out = capsys.readouterr().out
    for mix in polling_mixes.all_mixes(2):
        assert f"### {mix.name} ({mix.group})" in out
    assert "| policy, learned" in out and "| policy, cold" in out and "fixed 30 s" in out
    assert "### Targets per mix" in out


# --- the whole execution, walked on the real definition ---------------------------------------------------
@pytest.mark.parametrize("callback", [False, True])
@pytest.mark.parametrize("rounds", [1, 2, 7])
def test_the_walk_agrees_with_the_metered_cost_of_a_batch(rounds, callback):
    # The cost a batch reports counts, task by task, the transitions its result leads through
    # (batchbridge.cost, held equal to real execution histories by tests/workflow/test_cost.py). Along a
    # normal batch's path the two independent derivations must agree.
    walk = execution_cost.walk(execution_cost.load_definition(), rounds=rounds, callback=callback)
    metered = cost.transitions_after("start", {})
    metered += cost.transitions_after("submit", Step(wait_seconds=60, poll_count=1, callback=callback).dump())
    for n in range(1, rounds + 1):
        if callback:
            metered += cost.transitions_after("await", {})
        last = n == rounds
        step = Step(
            done=last, wait_seconds=0 if last else 60, poll_count=1 + n, callback=callback and not last
        )
        metered += cost.transitions_after("check", step.dump())
    metered += cost.transitions_after("collect", Step(collect_rounds=1).dump())
    metered += cost.transitions_after("finalize", {})
    assert walk.transitions == metered
    assert walk.lambdas["check"] == rounds and walk.lambdas["await"] == (rounds if callback else 0)


def with_state(definition: dict, after: str, name: str, state: dict) -> dict:
    """The definition with ``state`` inserted between ``after`` and what followed it."""
    changed = copy.deepcopy(definition)
    states = changed["States"]
    states[name] = {**state, "Next": states[after]["Next"]}
    states[after]["Next"] = name
    return changed


def test_the_walk_follows_changes_to_the_definition():
    definition = execution_cost.load_definition()
    base = execution_cost.execution_shape(definition, callback=False)
    # a state added on the way out is fixed cost
    out = with_state(definition, "Finalize Batch", "Audit", {"Type": "Pass"})
    assert execution_cost.execution_shape(out, callback=False).fixed_transitions == base.fixed_transitions + 1
    # a state added in the loop costs every round
    loop = with_state(definition, "Check Batch Status", "Note Poll", {"Type": "Pass"})
    shape = execution_cost.execution_shape(loop, callback=False)
    assert shape.transitions_per_round == base.transitions_per_round + 1
    assert shape.fixed_transitions == base.fixed_transitions
    assert "Note Poll" in shape.loop_states


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(QueryLanguage="JSONata"), "JSONPath"),
        (lambda d: d["States"]["Collect Results"].update(Type="Map"), "Map"),
        (lambda d: d["States"]["Batch Finished?"]["Choices"][0].update(Variable="$.step.finished"), "never"),
        (lambda d: d["States"]["Collect Results"].update(Resource="${ExportFunctionArn}"), "does not know"),
    ],
)
def test_the_walk_refuses_what_it_does_not_model(change, message):
    definition = execution_cost.load_definition()
    change(definition)
    with pytest.raises(execution_cost.NotModelled, match=message):
        execution_cost.execution_shape(definition, callback=False)
