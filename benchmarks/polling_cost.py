"""What waiting costs: the polling policy against fixed-interval pollers, in virtual time, per mix of jobs.

Run it from the repository root (``make bench``; ``make bench ARGS=--quick`` for the quick form CI runs)::

    PYTHONPATH=layers/shared:local:. python -m benchmarks.polling_cost [--quick] [--jobs N]

Each job of a seeded mix (:mod:`benchmarks.polling_mixes`) runs from t = 0 to its duration. A poller is
asked for a wait before its first check and after every check; a check before the end sees the job
running (and, for jobs that report it, the provider's percent), and the first check at or after the end
sees it finished. The policy runs twice: **cold** (no history, as a connection's first batch) and
**learned** (each connection's jobs in order, each finished batch fed to :func:`batchbridge.polling.learn`
from what the engine would see - the last check that found it running and the one that found it done -
and the history passed to the next batch of that connection).

Per poller and mix it prints polls per job; state transitions per job for the polling loop alone and
for the whole execution (the fixed states on the way in and out, counted by walking
``statemachine/batch.asl.json``, see :mod:`benchmarks.execution_cost`); dollars per 1,000 batches for
the whole execution, for a provider that is polled and for one that calls back (whose every round also
invokes the callback-wait Lambda); how late the end was seen, as a percentage of the job's duration
(median and 95th percentile); and ratios against fixed 30 s and 60 s pollers measured in the same run.
Two reference rows bracket what any poller can do: "fixed at the minimum" polls at the provider's
minimum interval (the delays the minimum allows), "fixed at the maximum" at our maximum wait (the fewest
polls possible: every wait is at most that long). Beside them, the mix's **ceiling**
(:mod:`benchmarks.polling_ceiling`): a lower bound on the polls per job of any poller that meets the
delay targets on the mix, even one told each job's duration distribution (and, for a job reporting
progress, its exact duration from its first check on). A cost target missed where the ceiling is below
it is out of any poller's reach; where the ceiling is above it, the policy leaves the difference.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from batchbridge import polling
from benchmarks import execution_cost, polling_ceiling
from benchmarks.polling_mixes import Job, Mix, all_mixes

#: The targets, per mix: fewer loop transitions than fixed 30 s, and how late the end may be seen.
TARGET_FEWER_TRANSITIONS = 15.0
TARGET_MEDIAN_DELAY_PCT = 5.0
TARGET_P95_DELAY_PCT = 20.0
QUICK_JOBS_PER_MIX = 60


# --- pollers ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    polls: int
    delay: float  # seconds between the end of the job and the check that saw it
    state: polling.PollState | None = None  # the policy's state after its last wait (None: fixed)
    seen_done_at: float = 0.0


@dataclass(frozen=True)
class FixedPoller:
    """Polls every ``seconds`` (None: at the provider's minimum interval; infinity: at our maximum),
    whatever the job says."""

    seconds: float | None
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"fixed {self.seconds:g} s"

    def interval(self, bounds: polling.PollBounds) -> float:
        if self.seconds == math.inf:
            return bounds.max_seconds
        return max(self.seconds or 0.0, bounds.min_seconds, polling.MIN_WAIT_SECONDS)

    def run(self, job: Job, bounds: polling.PollBounds, deadline: float) -> Run:
        """Closed form of :func:`simulate` for a fixed interval (tests hold the two equal)."""
        step = self.interval(bounds)
        polls = max(1, math.ceil(min(job.duration, deadline) / step - 1e-12))
        return Run(polls, max(0.0, polls * step - job.duration), None, polls * step)


@dataclass(frozen=True)
class PolicyPoller:
    """The real policy; ``learning``: each connection's finished batches teach the next ones."""

    learning: bool

    @property
    def name(self) -> str:
        return "policy, learned" if self.learning else "policy, cold"


Poller = FixedPoller | PolicyPoller


# --- simulation ------------------------------------------------------------------------------------------
def reported_progress(job: Job, at: float) -> float | None:
    """What the provider says at time ``at`` of a running job: an integer percent, 0-99, or nothing."""
    if job.shape is None:
        return None
    noise = 0.0
    if job.noise:
        digest = hashlib.blake2b(f"{job.key}@{at:.3f}".encode(), digest_size=8).digest()
        noise = random.Random(digest).gauss(0.0, job.noise)
    return float(min(99, max(0, math.floor(100 * job.shape(at / job.duration) + noise))))


def deadline_of(job: Job) -> float:
    return max(24 * 3600.0, 4 * job.duration)


def simulate(
    job: Job,
    bounds: polling.PollBounds,
    history: polling.DurationHistory | None = None,
    fixed: float | None = None,
) -> Run:
    """Poll one job in virtual time until a check sees it finished (or the deadline passes), with the
    policy (``fixed`` None) or every ``fixed`` seconds."""
    deadline = deadline_of(job)
    state = polling.PollState()

    def ask(now: float, progress: float | None) -> float:
        nonlocal state
        if fixed is not None:
            return min(fixed, max(deadline - now, 0.0))
        wait, state = polling.next_wait(
            state=state,
            elapsed=now,
            remaining=deadline - now,
            progress=progress,
            retry_after=None,
            bounds=bounds,
            seed=job.key,
            history=history,
        )
        return wait

    now, polls = 0.0, 0
    wait = ask(0.0, None)  # asked once before the first check, as the workflow does
    while True:
        if wait <= 0 and now < deadline:
            raise RuntimeError(f"the poller asked for a wait of {wait} s at t={now:.0f} s ({job.key})")
        now += wait
        polls += 1
        if now >= job.duration or now >= deadline:
            return Run(polls, max(0.0, now - job.duration), state if fixed is None else None, now)
        wait = ask(now, reported_progress(job, now))


def run_jobs(poller: Poller, mix: Mix) -> list[tuple[Job, Run]]:
    """Every job of the mix, connection by connection, in order; the learned policy carries each
    connection's history from one batch to the next."""
    results = []
    for jobs in mix.connections().values():
        history: polling.DurationHistory | None = None
        for job in jobs:
            if isinstance(poller, FixedPoller):
                results.append((job, poller.run(job, mix.bounds, deadline_of(job))))
                continue
            run = simulate(job, mix.bounds, history if poller.learning else None)
            results.append((job, run))
            if poller.learning and run.state is not None:
                history = polling.learn(history, state=run.state, finished_by=run.seen_done_at)
    return results


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- costs -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Costing:
    """What one execution costs apart from its rounds, and per round, read off the definition."""

    polled: execution_cost.ExecutionShape
    called_back: execution_cost.ExecutionShape
    polled_usd: execution_cost.Prices
    called_back_usd: execution_cost.Prices
    memory_mb: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def from_definition() -> Costing:
        definition = execution_cost.load_definition()
        memory = execution_cost.lambda_memory_mb()
        polled = execution_cost.execution_shape(definition, callback=False)
        called_back = execution_cost.execution_shape(definition, callback=True)
        return Costing(
            polled,
            called_back,
            execution_cost.prices(polled, memory),
            execution_cost.prices(called_back, memory),
            memory,
        )


@dataclass(frozen=True)
class Summary:
    poller: str
    polls_per_job: float
    loop_transitions_per_job: float
    whole_transitions_per_job: float
    usd_per_1000_polled: float
    usd_per_1000_called_back: float
    median_delay_pct: float
    p95_delay_pct: float
    #: (jobs that report progress or not, polls per job, median and p95 delay) when the mix has both
    by_progress: tuple[tuple[str, float, float, float], ...] = ()


def summarise(poller: Poller, mix: Mix, costing: Costing) -> Summary:
    results = run_jobs(poller, mix)
    polls = sum(r.polls for _, r in results) / len(results)
    delays = [100 * r.delay / job.duration for job, r in results]
    per_round = costing.polled.transitions_per_round
    groups = []
    for label, reports in (("reporting progress", True), ("reporting none", False)):
        part = [(job, r) for job, r in results if (job.shape is not None) == reports]
        if part and len(part) < len(results):
            late = [100 * r.delay / job.duration for job, r in part]
            average = sum(r.polls for _, r in part) / len(part)
            groups.append((label, average, percentile(late, 50), percentile(late, 95)))
    return Summary(
        poller=poller.name,
        polls_per_job=polls,
        loop_transitions_per_job=per_round * polls,
        whole_transitions_per_job=costing.polled.fixed_transitions + per_round * polls,
        usd_per_1000_polled=1000 * costing.polled_usd.usd(polls),
        usd_per_1000_called_back=1000 * costing.called_back_usd.usd(polls),
        median_delay_pct=percentile(delays, 50),
        p95_delay_pct=percentile(delays, 95),
        by_progress=tuple(groups),
    )


def pollers() -> list[Poller]:
    """The baselines first (fixed 30 s is the one the ratios use), then the policy."""
    return [
        FixedPoller(30),
        FixedPoller(60),
        FixedPoller(None, "fixed at the minimum"),
        FixedPoller(math.inf, "fixed at the maximum"),
        PolicyPoller(learning=False),
        PolicyPoller(learning=True),
    ]


def run_mix(mix: Mix, costing: Costing, chosen: Sequence[Poller] | None = None) -> list[Summary]:
    """Summaries for each poller, in order."""
    return [summarise(p, mix, costing) for p in (chosen or pollers())]


# --- report ----------------------------------------------------------------------------------------------
HEADERS = (
    "poller",
    "polls/job",
    "loop transitions/job",
    "whole transitions/job",
    "$ /1,000 polled",
    "$ /1,000 callback",
    "median delay",
    "p95 delay",
    "loop vs 30 s / 60 s",
    "whole vs 30 s / 60 s",
    "$ polled vs 30 s / 60 s",
    "$ callback vs 30 s / 60 s",
)


def _ratios(base30: float, base60: float, value: float) -> str:
    return f"{base30 / value:.1f}x / {base60 / value:.1f}x" if value else "-"


def table(rows: Sequence[Summary]) -> str:
    by_name = {r.poller: r for r in rows}
    b30, b60 = by_name["fixed 30 s"], by_name["fixed 60 s"]
    cells = [HEADERS]
    for r in rows:
        cells.append(
            (
                r.poller,
                f"{r.polls_per_job:.1f}",
                f"{r.loop_transitions_per_job:.1f}",
                f"{r.whole_transitions_per_job:.1f}",
                f"{r.usd_per_1000_polled:.2f}",
                f"{r.usd_per_1000_called_back:.2f}",
                f"{r.median_delay_pct:.1f} %",
                f"{r.p95_delay_pct:.1f} %",
                _ratios(
                    b30.loop_transitions_per_job, b60.loop_transitions_per_job, r.loop_transitions_per_job
                ),
                _ratios(
                    b30.whole_transitions_per_job, b60.whole_transitions_per_job, r.whole_transitions_per_job
                ),
                _ratios(b30.usd_per_1000_polled, b60.usd_per_1000_polled, r.usd_per_1000_polled),
                _ratios(
                    b30.usd_per_1000_called_back, b60.usd_per_1000_called_back, r.usd_per_1000_called_back
                ),
            )
        )
    return markdown(cells)


def markdown(cells: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        lines.append("| " + " | ".join(padded) + " |")
        if n == 0:
            lines.append(
                "|"
                + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths))
                + "|"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    fewer: float
    median: float
    p95: float

    @property
    def met(self) -> tuple[bool, bool, bool]:
        return (
            self.fewer >= TARGET_FEWER_TRANSITIONS,
            self.median <= TARGET_MEDIAN_DELAY_PCT,
            self.p95 <= TARGET_P95_DELAY_PCT,
        )


def verdict(rows: Sequence[Summary], poller: str) -> Verdict:
    by_name = {r.poller: r for r in rows}
    policy = by_name[poller]
    return Verdict(
        by_name["fixed 30 s"].loop_transitions_per_job / policy.loop_transitions_per_job,
        policy.median_delay_pct,
        policy.p95_delay_pct,
    )


def limits(mix: Mix, rows: Sequence[Summary]) -> list[str]:
    """What no poller can beat on this mix, from figures measured in the same run."""
    by_name = {r.poller: r for r in rows}
    notes = []
    fixed30 = by_name["fixed 30 s"].polls_per_job
    fewest = by_name["fixed at the maximum"].polls_per_job
    if fixed30 / fewest < TARGET_FEWER_TRANSITIONS:
        notes.append(
            f"no poller makes fewer than {fewest:.1f} polls per job here (at least one, and no wait is "
            f"longer than {mix.bounds.max_seconds:g} s), against {fixed30:.1f} for fixed 30 s: at most "
            f"{fixed30 / fewest:.1f}x fewer"
        )
    floor = by_name["fixed at the minimum"]
    for label, value, target in (
        ("median", floor.median_delay_pct, TARGET_MEDIAN_DELAY_PCT),
        ("p95", floor.p95_delay_pct, TARGET_P95_DELAY_PCT),
    ):
        if value > target:
            notes.append(
                f"even polling at the provider's minimum ({mix.bounds.min_seconds:g} s) all along sees the "
                f"end {value:.1f} % late at the {label} (target {target:g} %): the minimum interval, not "
                f"the policy, sets the delay here"
            )
    return notes


def missed(learned: Verdict, ceiling: polling_ceiling.Ceiling, fixed30_polls: float) -> str:
    """The targets the learned policy misses, each said against the ceiling: out of any poller's reach,
    or reachable and by how much the policy falls short."""
    notes = []
    cost, median, p95 = learned.met
    if not cost:
        most = ceiling.fewer(fixed30_polls)
        if most < TARGET_FEWER_TRANSITIONS:
            notes.append(f"cost (out of reach: ceiling {most:.1f}x)")
        else:
            notes.append(f"cost (ceiling {most:.1f}x: up to {most / learned.fewer:.1f}x left)")
    for name, ok, best in (("median", median, ceiling.best_median), ("p95", p95, ceiling.best_p95)):
        if not ok:
            notes.append(
                f"{name} (out of reach: no poller below {100 * best:.0f} %)" if best is not None else name
            )
    return "met" if not notes else "missed: " + ", ".join(notes)


def silent_part(mix: Mix) -> Mix | None:
    """The mix's jobs that report no progress, as a mix of their own; None unless it has both kinds."""
    jobs = tuple(job for job in mix.jobs if job.shape is None)
    if not jobs or len(jobs) == len(mix.jobs):
        return None
    return replace(mix, name=f"{mix.name}, reporting none", jobs=jobs)


def silent_ceiling_note(silent: Mix, quick: bool) -> str:
    """The ceiling of a mix's jobs that report nothing, on their own: under both targets and the p95 alone."""
    both = polling_ceiling.ceiling(silent, quick=quick)
    if both.best_p95 is not None:
        return f"no poller sees their p95 job within {100 * both.best_p95:.1f} %"
    p95 = polling_ceiling.Targets(median_delay=TARGET_P95_DELAY_PCT / 100)
    p95_only = polling_ceiling.ceiling(silent, quick=quick, targets=p95)
    meets = "both delay targets" if both.best_median is None else "the delay targets that can be met"
    return (
        f"{both.polls_per_job:.2f} polls per job to meet {meets} on them, "
        f"{p95_only.polls_per_job:.2f} to meet the p95 alone"
    )


def ceiling_note(ceiling: polling_ceiling.Ceiling, fixed30_polls: float) -> str:
    """The ceiling in a sentence: the fewest polls any poller meeting the delay targets makes, and the
    delays none can reach."""
    parts = [
        f"any poller meeting the delay targets makes at least {ceiling.polls_per_job:.2f} polls per job "
        f"({ceiling.fewer(fixed30_polls):.1f}x fewer than fixed 30 s)"
    ]
    for label, best, target in (
        ("median", ceiling.best_median, TARGET_MEDIAN_DELAY_PCT),
        ("p95", ceiling.best_p95, TARGET_P95_DELAY_PCT),
    ):
        if best is not None:
            parts.append(
                f"no poller sees the {label} job within {100 * best:.1f} % (target {target:g} %): the "
                f"bound is taken without that target"
            )
    return "; ".join(parts)


def summary_table(
    verdicts: Sequence[tuple[Mix, Verdict, Verdict, Summary, Summary, polling_ceiling.Ceiling]],
) -> str:
    cells = [
        (
            "mix",
            "group",
            "learned: loop vs 30 s",
            "whole vs 30 s",
            "median",
            "p95",
            "cold: loop vs 30 s",
            "median",
            "p95",
            "ceiling: loop vs 30 s",
            "targets (learned)",
        )
    ]
    for mix, learned, cold, learned_row, base, ceiling in verdicts:
        whole = base.whole_transitions_per_job / learned_row.whole_transitions_per_job
        cells.append(
            (
                mix.name,
                mix.group,
                f"{learned.fewer:.1f}x",
                f"{whole:.1f}x",
                f"{learned.median:.1f} %",
                f"{learned.p95:.1f} %",
                f"{cold.fewer:.1f}x",
                f"{cold.median:.1f} %",
                f"{cold.p95:.1f} %",
                f"{ceiling.fewer(base.polls_per_job):.1f}x",
                missed(learned, ceiling, base.polls_per_job),
            )
        )
    return markdown(cells)


def header(costing: Costing, jobs: int) -> str:
    polled, called = costing.polled, costing.called_back
    per_task = ", ".join(
        f"{task} {costing.memory_mb[task]} MB x {ms} ms"
        for task, ms in execution_cost.ASSUMED_BILLED_MS.items()
    )
    return "\n".join(
        [
            f"Polling cost, virtual time: {jobs} jobs per mix (fewer if a mix says so).",
            f"From statemachine/batch.asl.json: {polled.fixed_transitions} fixed transitions per execution, "
            f"{polled.transitions_per_round} per round ({' -> '.join(polled.loop_states)}); with a callback, "
            f"{called.fixed_transitions} fixed and {called.transitions_per_round} per round "
            f"({' -> '.join(called.loop_states)}), Lambdas per round: "
            f"{', '.join(f'{t} x{n}' for t, n in sorted(called.lambdas_per_round.items()))}.",
            f"Whole execution $: Step Functions, Lambda requests and GB-seconds (assumed billed durations: "
            f"{per_task}), the DynamoDB units assumed for the tasks run every round, and the direct DynamoDB "
            f"and SNS steps; not the outcome rows and files, which do not depend on the poller.",
            "Delay = how late the end is seen, as % of the job's duration. Ratios: fixed 30 s and 60 s of "
            "the same run (no fixed poller polls below the provider's minimum).",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_JOBS_PER_MIX} jobs per mix (CI smoke run)"
    )
    parser.add_argument("--jobs", type=int, default=None, help="jobs per mix")
    args = parser.parse_args(argv)
    jobs = args.jobs or (QUICK_JOBS_PER_MIX if args.quick else None)
    started = time.perf_counter()
    costing = Costing.from_definition()
    mixes = all_mixes(jobs) if jobs else all_mixes()
    print(header(costing, len(mixes[0].jobs)) + "\n")
    verdicts = []
    for mix in mixes:
        rows = run_mix(mix, costing)
        print(f"### {mix.name} ({mix.group}): {mix.about}\n")
        print(table(rows))
        for row in rows:
            if row.poller.startswith("policy") and row.by_progress:
                parts = "; ".join(
                    f"jobs {label}: {polls:.1f} polls, median {median:.1f} %, p95 {p95:.1f} %"
                    for label, polls, median, p95 in row.by_progress
                )
                print(f"\n- {row.poller}: {parts}")
        for note in limits(mix, rows):
            print(f"\n- limit: {note}")
        by_name = {r.poller: r for r in rows}
        ceiling = polling_ceiling.ceiling(mix, quick=args.quick)
        print(f"\n- ceiling: {ceiling_note(ceiling, by_name['fixed 30 s'].polls_per_job)}")
        silent = silent_part(mix)
        if silent is not None and not args.quick:  # (seconds the CI run does without)
            print(
                "\n- ceiling of the jobs reporting none, taken alone: "
                + silent_ceiling_note(silent, args.quick)
            )
        print()
        verdicts.append(
            (
                mix,
                verdict(rows, "policy, learned"),
                verdict(rows, "policy, cold"),
                by_name["policy, learned"],
                by_name["fixed 30 s"],
                ceiling,
            )
        )
    print(
        f"### Targets per mix: >= {TARGET_FEWER_TRANSITIONS:g}x fewer loop transitions than fixed 30 s, "
        f"median delay <= {TARGET_MEDIAN_DELAY_PCT:g} %, p95 <= {TARGET_P95_DELAY_PCT:g} %\n"
    )
    print(summary_table(verdicts))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
