"""The polling policy: its hard rules, its behaviour with and without progress, and its cost.

The policy is a pure function, so these tests call it directly over grids of inputs; the last tests run
the benchmark's virtual-time simulation on small mixes of jobs (deterministic, no clock involved).
"""

from __future__ import annotations

import itertools
import json

import pytest
from benchmarks import polling_cost

from batchbridge import polling
from batchbridge.polling import PollBounds, PollState, next_wait

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
) -> tuple[float, PollState]:
    return next_wait(
        state=state or PollState(),
        elapsed=elapsed,
        remaining=remaining,
        progress=progress,
        retry_after=retry_after,
        bounds=bounds,
        seed=seed,
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


GRID = list(
    itertools.product(
        histories(),
        [5.0, 45.0, 600.0, DAY],  # remaining
        [None, 0.5, 120.0, 4000.0],  # retry_after
        [
            PollBounds(min_seconds=10, max_seconds=1800),
            PollBounds(min_seconds=300, max_seconds=600),
            PollBounds(min_seconds=0, max_seconds=30),
        ],
    )
)


@pytest.mark.parametrize(("history", "remaining", "retry_after", "bounds"), GRID)
def test_hard_rules_hold_everywhere(history, remaining, retry_after, bounds):
    # Given any history, deadline, Retry-After and provider bounds
    _, state, elapsed, progress = history
    # When the policy chooses the next wait
    wait, _ = wait_for(
        state, elapsed=elapsed, remaining=remaining, progress=progress, retry_after=retry_after, bounds=bounds
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
    # Given a job at 20 %, 40 %, 60 % after 10, 20, 30 minutes (it will end at 50 minutes)
    waits, _ = run([(0, None), (600, 20.0), (1200, 40.0), (1800, 60.0)])
    # Then the next wait is close to the 20 minutes left, and far beyond the no-information wait
    assert 0.85 * 1200 <= waits[-1] <= 1.1 * 1200
    assert waits[-1] > 2 * polling.BACKOFF_FRACTION * 1800


def test_near_the_end_the_wait_lands_just_past_the_finish():
    # Given the same job at 90 % after 45 minutes: 5 minutes left
    waits, _ = run([(0, None), (600, 20.0), (1200, 40.0), (1800, 60.0), (2700, 90.0)])
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


@pytest.mark.parametrize("progress", [None, 0.0, 42.0, 100.0])
def test_a_batch_never_comes_near_the_poll_cap_before_a_day_long_deadline(progress):
    # Given the most eager provider bounds and a job that never finishes
    bounds = PollBounds(min_seconds=0, max_seconds=1800)
    elapsed, state, polls = 0.0, PollState(), 0
    while elapsed < DAY:
        wait, state = wait_for(
            state,
            elapsed=elapsed,
            remaining=DAY - elapsed,
            progress=None if elapsed == 0 else progress,
            bounds=bounds,
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
    assert len(stored) <= 8
    assert all(v is None or isinstance(v, int | float) for v in stored.values())
    assert PollState.model_validate(stored) == state
    assert PollState.model_validate({}) == PollState()  # a batch that has not polled yet


def test_cost_helpers():
    assert polling.TRANSITIONS_PER_POLL == 3
    assert polling.estimated_cost_usd(1000) == pytest.approx(0.025)
    assert polling.estimated_cost_usd(0) == 0


def test_bounds_must_be_ordered():
    with pytest.raises(ValueError, match="max_seconds"):
        PollBounds(min_seconds=600, max_seconds=300)


# --- the benchmark's simulation, on small mixes -------------------------------------------------------
def test_on_a_standard_mix_the_policy_meets_its_targets():
    mix = polling_cost.standard_mix(300)
    fixed_30, policy = polling_cost.run_mix(mix, [polling_cost.FixedPoller(30), polling_cost.PolicyPoller()])
    fewer = fixed_30.transitions_per_job / policy.transitions_per_job
    assert fewer >= polling_cost.TARGET_FEWER_TRANSITIONS
    assert policy.median_delay_pct <= polling_cost.TARGET_MEDIAN_DELAY_PCT
    assert policy.p95_delay_pct <= polling_cost.TARGET_P95_DELAY_PCT


@pytest.mark.parametrize("make_mix", [polling_cost.stall_mix, polling_cost.nonlinear_mix])
def test_stalls_and_uneven_progress_stay_cheap_and_timely(make_mix):
    mix = make_mix(200)
    fixed_30, policy = polling_cost.run_mix(mix, [polling_cost.FixedPoller(30), polling_cost.PolicyPoller()])
    assert fixed_30.transitions_per_job / policy.transitions_per_job >= 12
    assert policy.median_delay_pct <= 7.5
    assert policy.p95_delay_pct <= 20


def test_the_benchmark_prints_its_tables_and_exits_zero(capsys, monkeypatch):
    monkeypatch.setattr(polling_cost, "JOBS_PER_MIX", 40)
    assert polling_cost.main([]) == 0
    out = capsys.readouterr().out
    assert "| policy" in out and "fixed 30 s" in out and "stalls near the end" in out
