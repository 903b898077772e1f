"""What polling costs: the polling policy against fixed-interval pollers, in virtual time.

Run it from the repository root::

    PYTHONPATH=layers/shared:local:. python -m benchmarks.polling_cost

Each job of a fixed, seeded mix runs from t = 0 to its duration. A poller is asked for a wait before
its first check and after every check; a check before the end sees the job running (and, for jobs
that report it, an integer percent with a little noise), and the first check at or after the end
detects completion. Per poller and mix it prints polls and state transitions per job, the price of
the polling loop for 1,000 batches at list price, and how late completion was seen as a percentage of
the job's duration (median and 95th percentile). The ratio columns compare with the fixed 30-second
poller measured in the same run. Pure Python, no AWS, no wall-clock waiting.

Counted: the poll loop only (Wait + Check + Choice per poll, see
``batchbridge.polling.TRANSITIONS_PER_POLL``); submit, collect and publish cost the same whatever the
poller and are left out so the ratios show what polling costs.
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from batchbridge import polling

# The provider modelled: an iVvy-like 10-second minimum interval, our 30-minute maximum.
BOUNDS = polling.PollBounds(min_seconds=10, max_seconds=1800)
JOBS_PER_MIX = 1000
PROGRESS_NOISE = 0.5  # standard deviation of the reported percent, before it is cut to an integer
# Targets for the policy on the standard mix (see DESIGN.md "Polling policy").
TARGET_FEWER_TRANSITIONS = 12.0
TARGET_MEDIAN_DELAY_PCT = 5.0
TARGET_P95_DELAY_PCT = 20.0

Shape = Callable[[float], float]  # fraction of the job's time -> fraction done


# --- jobs and mixes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    duration: float
    shape: Shape | None  # None: the provider reports no progress
    key: str  # seeds the job's progress noise


@dataclass(frozen=True)
class Mix:
    name: str
    about: str
    jobs: tuple[Job, ...]


def linear(x: float) -> float:
    return x


def slow_start(x: float) -> float:
    return x * x


def fast_then_slow(x: float) -> float:
    return 1 - (1 - x) ** 2


def queued(x: float) -> float:
    """Nothing for the first fifth of the time (waiting in the provider's queue), then steady."""
    return max(0.0, (x - 0.2) / 0.8)


def stalls_at(level: float, at: float) -> Shape:
    """Steady up to ``level`` at fraction ``at`` of the time, then stuck there until the end."""
    return lambda x: level * min(1.0, x / at)


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def standard_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("standard")
    jobs = tuple(
        Job(log_uniform(rng, 60, 6 * 3600), linear if i % 2 == 0 else None, f"standard-{i}") for i in range(n)
    )
    return Mix("standard", "1 min - 6 h log-uniform; half report steady progress, half report none", jobs)


def stall_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("stalls")
    jobs = []
    for i in range(n):
        duration = log_uniform(rng, 60, 6 * 3600)
        shape = stalls_at(rng.uniform(0.90, 0.99), rng.uniform(0.6, 0.95))
        jobs.append(Job(duration, shape, f"stalls-{i}"))
    return Mix(
        "stalls near the end",
        "1 min - 6 h; progress climbs to 90-99 % and sits there for the last 5-40 %",
        tuple(jobs),
    )


def nonlinear_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("nonlinear")
    shapes = (slow_start, fast_then_slow, queued, linear)
    jobs = tuple(
        Job(log_uniform(rng, 60, 6 * 3600), shapes[i % len(shapes)], f"nonlinear-{i}") for i in range(n)
    )
    return Mix(
        "non-linear progress",
        "1 min - 6 h; slow start (x^2), fast then slow, queued first 20 %, steady",
        jobs,
    )


def short_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("short")
    jobs = tuple(
        Job(log_uniform(rng, 10, 600), linear if i % 2 == 0 else None, f"short-{i}") for i in range(n)
    )
    return Mix("short jobs", "10 s - 10 min log-uniform; half report steady progress, half none", jobs)


def long_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("long")
    jobs = tuple(
        Job(log_uniform(rng, 3600, 20 * 3600), linear if i % 2 == 0 else None, f"long-{i}") for i in range(n)
    )
    return Mix("long jobs", "1 h - 20 h log-uniform; half report steady progress, half none", jobs)


def all_mixes(n: int = JOBS_PER_MIX) -> list[Mix]:
    return [standard_mix(n), stall_mix(n), nonlinear_mix(n), short_mix(n), long_mix(n)]


# --- pollers -----------------------------------------------------------------------------------------
class Session(Protocol):
    @property
    def reads_progress(self) -> bool: ...

    def wait(self, elapsed: float, remaining: float, progress: float | None) -> float: ...


class Poller(Protocol):
    @property
    def name(self) -> str: ...

    def start(self, key: str) -> Session: ...


@dataclass(frozen=True)
class FixedPoller:
    seconds: float
    reads_progress: bool = False

    @property
    def name(self) -> str:
        return f"fixed {self.seconds:g} s"

    def start(self, key: str) -> Session:
        return self

    def wait(self, elapsed: float, remaining: float, progress: float | None) -> float:
        return min(self.seconds, max(remaining, 0.0))


class _PolicySession:
    reads_progress = True

    def __init__(self, bounds: polling.PollBounds, seed: str) -> None:
        self.bounds, self.seed, self.state = bounds, seed, polling.PollState()

    def wait(self, elapsed: float, remaining: float, progress: float | None) -> float:
        wait, self.state = polling.next_wait(
            state=self.state,
            elapsed=elapsed,
            remaining=remaining,
            progress=progress,
            retry_after=None,
            bounds=self.bounds,
            seed=self.seed,
        )
        return wait


@dataclass(frozen=True)
class PolicyPoller:
    bounds: polling.PollBounds = BOUNDS
    name: str = "policy"

    def start(self, key: str) -> Session:
        return _PolicySession(self.bounds, key)


# --- simulation ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    polls: int
    delay: float  # seconds between the end of the job and the check that saw it


def reported_progress(job: Job, at: float) -> float | None:
    """What the provider says at time ``at`` of a running job: an integer percent, 0-99, or nothing."""
    if job.shape is None:
        return None
    digest = hashlib.blake2b(f"{job.key}@{at:.3f}".encode(), digest_size=8).digest()
    noise = random.Random(digest).gauss(0.0, PROGRESS_NOISE)
    return float(min(99, max(0, math.floor(100 * job.shape(at / job.duration) + noise))))


def simulate(poller: Poller, job: Job, deadline: float | None = None) -> Run:
    """Poll one job in virtual time until a check sees it finished (or the deadline passes)."""
    deadline = deadline if deadline is not None else max(24 * 3600.0, 4 * job.duration)
    session = poller.start(job.key)
    now, polls = 0.0, 0
    wait = session.wait(0.0, deadline, None)  # asked once before the first check, as the workflow does
    while True:
        if wait <= 0 and now < deadline:
            raise RuntimeError(f"{poller.name} asked for a wait of {wait} s at t={now:.0f} s")
        now += wait
        polls += 1
        if now >= job.duration or now >= deadline:
            return Run(polls, max(0.0, now - job.duration))
        progress = reported_progress(job, now) if session.reads_progress else None
        wait = session.wait(now, deadline - now, progress)


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    poller: str
    polls_per_job: float
    transitions_per_job: float
    usd_per_1000_batches: float
    median_delay_pct: float
    p95_delay_pct: float


def summarise(poller: Poller, jobs: Sequence[Job]) -> Summary:
    runs = [simulate(poller, job) for job in jobs]
    polls = sum(r.polls for r in runs)
    transitions = polling.TRANSITIONS_PER_POLL * polls
    delays = [100 * r.delay / job.duration for r, job in zip(runs, jobs, strict=True)]
    return Summary(
        poller=poller.name,
        polls_per_job=polls / len(jobs),
        transitions_per_job=transitions / len(jobs),
        usd_per_1000_batches=polling.estimated_cost_usd(transitions) * 1000 / len(jobs),
        median_delay_pct=percentile(delays, 50),
        p95_delay_pct=percentile(delays, 95),
    )


def pollers() -> list[Poller]:
    return [FixedPoller(30), FixedPoller(60), PolicyPoller()]


def run_mix(mix: Mix, chosen: Sequence[Poller] | None = None) -> list[Summary]:
    """Summaries for each poller; the first poller is the baseline for the ratios."""
    return [summarise(p, mix.jobs) for p in (chosen or pollers())]


# --- report ------------------------------------------------------------------------------------------
HEADERS = (
    "poller",
    "polls/job",
    "transitions/job",
    "$ per 1,000 batches",
    "median delay",
    "p95 delay",
    "transitions vs 30 s",
    "$ vs 30 s",
)


def table(rows: Sequence[Summary]) -> str:
    base = rows[0]
    cells = [HEADERS]
    for r in rows:
        fewer = base.transitions_per_job / r.transitions_per_job
        cells.append(
            (
                r.poller,
                f"{r.polls_per_job:.1f}",
                f"{r.transitions_per_job:.1f}",
                f"{r.usd_per_1000_batches:.2f}",
                f"{r.median_delay_pct:.1f} %",
                f"{r.p95_delay_pct:.1f} %",
                f"{fewer:.1f}x fewer" if r is not base else "1.0x (baseline)",
                f"{r.usd_per_1000_batches / base.usd_per_1000_batches:.3f}",
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )
        if n == 0:
            lines.append(
                "|"
                + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths))
                + "|"
            )
    return "\n".join(lines)


def verdict(rows: Sequence[Summary]) -> list[str]:
    base, policy = rows[0], rows[-1]
    fewer = base.transitions_per_job / policy.transitions_per_job
    checks = [
        (
            f"{fewer:.1f}x fewer transitions than fixed 30 s (target >= {TARGET_FEWER_TRANSITIONS:g}x)",
            fewer >= TARGET_FEWER_TRANSITIONS,
        ),
        (
            f"median delay {policy.median_delay_pct:.1f} % (target <= {TARGET_MEDIAN_DELAY_PCT:g} %)",
            policy.median_delay_pct <= TARGET_MEDIAN_DELAY_PCT,
        ),
        (
            f"p95 delay {policy.p95_delay_pct:.1f} % (target <= {TARGET_P95_DELAY_PCT:g} %)",
            policy.p95_delay_pct <= TARGET_P95_DELAY_PCT,
        ),
    ]
    return [f"  [{'met' if ok else 'MISSED'}] {text}" for text, ok in checks]


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    print(
        f"Polling cost, virtual time: {JOBS_PER_MIX} jobs per mix, provider min {BOUNDS.min_seconds:g} s, "
        f"max {BOUNDS.max_seconds:g} s; {polling.TRANSITIONS_PER_POLL} transitions per poll; "
        f"${polling.USD_PER_TRANSITION * 1000:.3f} per 1,000 transitions."
    )
    print("Delay = how late completion is seen, as % of the job's duration. Poll loop only.\n")
    for n, mix in enumerate(all_mixes(JOBS_PER_MIX)):
        rows = run_mix(mix)
        print(f"### {mix.name}: {mix.about}\n")
        print(table(rows))
        if n == 0:
            print("\nTargets on the standard mix:")
            print("\n".join(verdict(rows)))
        print()
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
