"""The polling benchmark's ceiling: a lower bound on the polls of any poller meeting the delay targets.

A bound is only worth printing if it is never above what a real schedule achieves: these tests hold it
against schedules enumerated by brute force on tiny cases (for jobs that report nothing and for jobs that
report progress), check that the counts it turns the percentile targets into are the right ones, that
it settles as its cells get finer, and that the distributions the mixes now name are the ones their
durations were drawn from.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from benchmarks import polling_ceiling, polling_cost, polling_mixes

from batchbridge.polling import PollBounds

TINY = PollBounds(min_seconds=10, max_seconds=50)
DELAYS = (0.05, 0.20)
#: Check times the brute force picks from: irregular, so that none falls on the ceiling's cells.
CANDIDATES = (12.5, 23.0, 31.7, 44.0, 58.3, 61.9, 69.4, 77.7, 88.1, 97.3, 104.9, 113.2, 121.0, 131.6, 149.0)


def schedules(first_by: float, until: float, start: float = 0.0):
    """Every increasing run of CANDIDATES after ``start`` whose waits respect TINY (the first at most
    ``first_by`` after ``start``), ending at or past ``until``."""

    def extend(last: float, chosen: tuple[float, ...]):
        if last >= until:
            yield chosen
            return
        for t in CANDIDATES:
            wait = t - last
            limit = first_by if not chosen else TINY.max_seconds
            if wait >= TINY.min_seconds and wait <= limit:
                yield from extend(t, (*chosen, t))

    yield from extend(start, ())


def exact(cdf, schedule: tuple[float, ...], delays=DELAYS) -> tuple[float, float, float]:
    """Expected polls, and the chances the end is seen within each delay, for one schedule of checks."""
    polls = within_first = within_second = 0.0
    before = 0.0
    for t in schedule:
        polls += 1.0 - cdf(before)  # this check happens when the job is still running at the one before
        within_first += cdf(t) - cdf(max(before, t / (1 + delays[0])))
        within_second += cdf(t) - cdf(max(before, t / (1 + delays[1])))
        before = t
    return polls, within_first, within_second


PRICES = [(0.0, 0.0), (3.0, 0.0), (0.0, 3.0), (2.0, 5.0), (20.0, 1.0), (1.0, 40.0), (100.0, 100.0)]


@pytest.mark.parametrize(
    "distribution", [polling_mixes.Uniform(60, 120), polling_mixes.LogUniform(40, 130)], ids=str
)
def test_the_schedule_bound_is_never_above_a_schedule_found_by_brute_force(distribution):
    found = [exact(distribution.cdf, s) for s in schedules(TINY.max_seconds, distribution.high)]
    assert len(found) > 100
    for resolution in (polling_ceiling.QUICK_RESOLUTION, polling_ceiling.FINE_RESOLUTION):
        bounded = polling_ceiling.Schedules(
            distribution.cdf, distribution.support, 1.0, TINY, DELAYS, resolution
        )
        for alpha, beta in PRICES:
            best = min(p - alpha * a - beta * b for p, a, b in found)
            assert bounded.solve(alpha, beta).value <= best + 1e-6
    # ... and it is a bound worth having: within a few percent of the best of those schedules
    fine = polling_ceiling.Schedules(
        distribution.cdf, distribution.support, 1.0, TINY, DELAYS, polling_ceiling.FINE_RESOLUTION
    )
    cheapest = min(p for p, _, _ in found)
    assert fine.solve(0.0, 0.0).polls >= 0.9 * cheapest


def best_on_a_grid(cdf, high: float, alpha: float, beta: float, step: float = 0.5) -> float:
    """The cheapest priced schedule among every one whose checks fall on multiples of ``step`` seconds,
    each schedule valued exactly (plain dynamic programming, no approximation: these are real
    schedules, so the best of them is at least the true optimum)."""
    times = [step * k for k in range(1, math.ceil((high + TINY.max_seconds) / step) + 1)]
    value: dict[float, float] = {}
    for s in reversed(times):
        if s >= high:
            value[s] = 0.0
            continue
        value[s] = min(
            (1.0 - cdf(s))
            - alpha * (cdf(t) - cdf(max(s, t / (1 + DELAYS[0]))))
            - beta * (cdf(t) - cdf(max(s, t / (1 + DELAYS[1]))))
            + value[t]
            for t in times
            if TINY.min_seconds <= t - s <= TINY.max_seconds
        )
    return min(
        1.0
        - alpha * (cdf(t) - cdf(t / (1 + DELAYS[0])))
        - beta * (cdf(t) - cdf(t / (1 + DELAYS[1])))
        + value[t]
        for t in times
        if TINY.min_seconds <= t <= TINY.max_seconds
    )


@pytest.mark.parametrize(
    "distribution", [polling_mixes.Uniform(60, 120), polling_mixes.LogUniform(40, 130)], ids=str
)
def test_the_schedule_bound_is_never_above_the_best_schedule_on_a_fine_grid(distribution):
    # Near the optimum, where a bound that gave the poller too little would show.
    for resolution in (polling_ceiling.QUICK_RESOLUTION, polling_ceiling.FINE_RESOLUTION):
        bounded = polling_ceiling.Schedules(
            distribution.cdf, distribution.support, 1.0, TINY, DELAYS, resolution
        )
        for alpha, beta in PRICES:
            best = best_on_a_grid(distribution.cdf, distribution.high, alpha, beta)
            found = bounded.solve(alpha, beta).value
            assert found <= best + 1e-6
            if resolution == polling_ceiling.FINE_RESOLUTION:
                assert found >= best - 0.02 * (1 + alpha + beta)  # and close to it


def test_the_first_check_bound_is_never_above_a_schedule_found_by_brute_force():
    # Jobs reporting progress: one first check for all (nothing tells them apart before it), then any
    # schedule per job - the brute force, told each job's duration, picks the best for each.
    durations = [35.0, 52.0, 80.5, 99.0, 126.0]
    bounded = polling_ceiling.FirstChecks(durations, TINY, DELAYS)
    for alpha, beta in PRICES:
        best = math.inf
        for first in (t for t in CANDIDATES if TINY.min_seconds <= t <= TINY.max_seconds):
            total = 0.0
            for d in durations:
                options = [(first,)] if first >= d else [(first, *rest) for rest in schedules(0, d, first)]
                options = options or [(first,)]
                values = []
                for s in options:
                    if s[-1] < d:
                        continue  # never saw it end
                    late = s[-1] - d
                    values.append(len(s) - alpha * (late <= DELAYS[0] * d) - beta * (late <= DELAYS[1] * d))
                total += min(values) if values else math.inf
            best = min(best, total)
        assert bounded.solve(alpha, beta).value <= best + 1e-6


def test_the_ceiling_of_a_tiny_mix_is_not_above_the_best_schedule_meeting_the_targets():
    # (Targets a 10 s minimum interval lets schedules meet on jobs of one to two minutes.)
    targets = polling_ceiling.Targets(median_delay=0.10, p95_delay=0.30)
    distribution = polling_mixes.Uniform(60, 120)
    rng = random.Random("tiny")
    jobs = tuple(polling_mixes.drawn(rng, distribution, None, f"tiny-{i}") for i in range(20))
    mix = polling_mixes.Mix("tiny", "", jobs, "test", TINY)
    need_median = polling_ceiling.Targets.required(20, 0.5) / 20
    need_p95 = polling_ceiling.Targets.required(20, 0.95) / 20
    meeting = [
        polls
        for polls, within_first, within_second in (
            exact(distribution.cdf, s, (targets.median_delay, targets.p95_delay))
            for s in schedules(TINY.max_seconds, distribution.high)
        )
        if within_first >= need_median and within_second >= need_p95
    ]
    assert meeting
    found = polling_ceiling.ceiling(mix, targets=targets)
    assert found.best_median is None and found.best_p95 is None
    assert found.polls_per_job <= min(meeting) + 1e-6
    # not far below either (the brute force picks from a few times, and cannot mix two schedules)
    assert found.polls_per_job >= 0.7 * min(meeting)


def test_the_counts_are_what_the_benchmarks_percentiles_need():
    # Fewer jobs within a delay than the count, and the percentile the benchmark reports is past it (the
    # count is necessary, so the bound that uses it stays a bound); one more is always enough.
    for jobs, quantile in itertools.product((20, 60, 999, 1000), (0.5, 0.95)):
        need = polling_ceiling.Targets.required(jobs, quantile)
        short = [1.0] * (need - 1) + [50.0] * (jobs - need + 1)
        assert polling_cost.percentile(short, 100 * quantile) > 1.0
        enough = [1.0] * (need + 1) + [50.0] * (jobs - need - 1)
        assert polling_cost.percentile(enough, 100 * quantile) <= 1.0


def test_the_ceiling_settles_as_its_cells_get_finer():
    mix = polling_mixes.standard_mix()
    at_benchmark = polling_ceiling.ceiling(mix).polls_per_job
    finer = polling_ceiling.ceiling(mix, resolution=(0.001, 128)).polls_per_job
    assert finer == pytest.approx(at_benchmark, rel=0.02)
    quick = polling_ceiling.ceiling(mix, quick=True).polls_per_job
    assert quick == pytest.approx(at_benchmark, rel=0.05)


def test_a_delay_no_poller_reaches_is_said_and_the_cost_bound_drops_it():
    # Short jobs with a 10 s minimum: no poller sees 95 % of them within 20 %.
    found = polling_ceiling.ceiling(polling_mixes.short_mix(200), quick=True)
    assert found.most_within_p95 < 0.95
    assert found.best_p95 is not None and found.best_p95 > 0.2
    assert found.best_median is None
    # polling at the minimum all along does no better than the best said
    rows = polling_cost.run_mix(
        polling_mixes.short_mix(200),
        polling_cost.Costing.from_definition(),
        [polling_cost.FixedPoller(None, "fixed at the minimum")],
    )
    assert rows[0].p95_delay_pct >= 100 * found.best_p95


def test_the_verdict_says_whether_a_missed_cost_is_in_reach():
    def ceiling(polls: float) -> polling_ceiling.Ceiling:
        return polling_ceiling.Ceiling(polls, 1.0, 1.0, None, 0.31)

    learned = polling_cost.Verdict(fewer=10.0, median=3.0, p95=25.0)
    out_of_reach = polling_cost.missed(learned, ceiling(10.0), fixed30_polls=120.0)
    assert (
        out_of_reach == "missed: cost (out of reach: ceiling 12.0x), p95 (out of reach: no poller below 31 %)"
    )
    in_reach = polling_cost.missed(learned, ceiling(4.0), fixed30_polls=120.0)
    assert in_reach.startswith("missed: cost (ceiling 30.0x: up to 3.0x left)")
    assert polling_cost.missed(polling_cost.Verdict(20.0, 3.0, 10.0), ceiling(4.0), 120.0) == "met"


@pytest.mark.parametrize("make_mix", polling_mixes.REPOSITORY + polling_mixes.TUNING + polling_mixes.HELD_OUT)
def test_every_job_names_the_distribution_its_duration_was_drawn_from(make_mix):
    mix = make_mix()
    by_distribution: dict[object, list[float]] = {}
    for job in mix.jobs:
        assert job.distribution is not None
        low, high = job.distribution.support
        assert low <= job.duration <= high
        by_distribution.setdefault(job.distribution, []).append(job.duration)
    # Where enough jobs share one, their durations follow its distribution function (Kolmogorov-Smirnov at
    # a level of 1e-4: some forty samples are tested, and a draw the code makes is never a slightly wrong
    # one - a wrong distribution is off by far more).
    for distribution, durations in by_distribution.items():
        if len(durations) < 100:
            continue
        ordered = sorted(durations)
        n = len(ordered)
        gap = max(
            max(abs(distribution.cdf(d) - i / n), abs(distribution.cdf(d) - (i + 1) / n))
            for i, d in enumerate(ordered)
        )
        assert gap < 2.23 / math.sqrt(n), (mix.name, distribution)


def test_the_part_reporting_nothing_is_bounded_on_its_own():
    mix = polling_mixes.standard_mix(200)
    silent = polling_cost.silent_part(mix)
    assert silent is not None
    assert {job.key for job in silent.jobs} == {job.key for job in mix.jobs if job.shape is None}
    assert polling_cost.silent_part(polling_mixes.bimodal_mix(50)) is None  # nothing else to set apart
    # Alone, the jobs reporting nothing cannot lean on the others' being on time: their bound is higher.
    whole = polling_ceiling.ceiling(mix, quick=True).polls_per_job
    alone = polling_ceiling.ceiling(silent, quick=True).polls_per_job
    assert alone > whole
    note = polling_cost.silent_ceiling_note(silent, quick=True)
    assert "to meet both delay targets on them" in note


def test_both_prices_searched_together_still_give_a_bound():
    # When neither target's price alone reaches a schedule meeting both, both are searched at once; what
    # that search returns must stay below every schedule meeting both counts, and at or above what either
    # price alone proves.
    distribution = polling_mixes.Uniform(60, 120)
    found = [exact(distribution.cdf, s) for s in schedules(TINY.max_seconds, distribution.high)]
    need_first = 0.6 * max(a for _, a, _ in found)
    need_second = 0.97 * max(b for _, _, b in found)
    meeting = [p for p, a, b in found if a >= need_first and b >= need_second]
    assert meeting
    group = polling_ceiling.Schedules(
        distribution.cdf, distribution.support, 1.0, TINY, DELAYS, polling_ceiling.FINE_RESOLUTION
    )

    def lagrangian(alpha: float, beta: float):
        o = group.solve(alpha, beta)
        return o.value + alpha * need_first + beta * need_second, o

    both = polling_ceiling._two_prices(lagrangian, need_first, need_second)
    assert both.polls <= min(meeting) + 1e-6
    for alone in (
        polling_ceiling.fewest_polls([group], need_first, None),
        polling_ceiling.fewest_polls([group], None, need_second),
    ):
        assert both.polls >= alone.polls - 1e-3 * abs(alone.polls)
