"""The mixes of jobs the polling benchmark runs: seeded, deterministic, each job tied to a connection.

A mix is a sequence of jobs; each job belongs to a connection, and a connection's jobs run in the order
they appear, so a poller that learns from a connection's finished batches sees them one after another.

Three groups:

* **repository** - the five mixes the benchmark has always had (same seeds, same durations), their jobs
  dealt to eight connections in turn. Their durations are independent draws over a wide range, so a
  connection's history can teach the range but not an individual job's length.
* **tuning** - mixes shaped like real connections (each with its own typical duration and spread), with
  short-heavy traffic, long tails to 24 hours, progress that stalls and progress in coarse steps. The
  policy's constants were chosen looking at the repository and tuning mixes.
* **held out** - other seeds and other shapes (Weibull, bimodal, gamma and Pareto durations, durations
  that drift or change abruptly, full exports among deltas, linear-uniform durations, progress counted
  in parts or noisy, other providers' bounds). None of the policy's constants was chosen looking at
  them (the first six were written before the tuning, the last four after it): they show how the policy
  does on mixes it was not fitted to.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from batchbridge.polling import PollBounds

Shape = Callable[[float], float]  # fraction of the job's time -> fraction done

#: An iVvy-like provider: a 10-second minimum interval, our 30-minute maximum.
IVVY_LIKE = PollBounds(min_seconds=10, max_seconds=1800)
#: SuperOffice-like: 15 s minimum, 15 min maximum.
SUPEROFFICE_LIKE = PollBounds(min_seconds=15, max_seconds=900)
#: WillSuite-like: 5 min minimum, 10 min maximum.
WILLSUITE_LIKE = PollBounds(min_seconds=300, max_seconds=600)
#: Standard deviation of a reported percent, before it is cut to an integer.
PROGRESS_NOISE = 0.5
DAY = 24 * 3600.0

JOBS_PER_MIX = 1000


# --- duration distributions ------------------------------------------------------------------------
# Each job's duration is drawn from one of these, and the job keeps it: the benchmark's ceiling
# (:mod:`benchmarks.polling_ceiling`) is what a poller told that distribution could do at best.
class Distribution:
    """Where a job's duration comes from: ``draw`` it (the mix's random stream), ``cdf`` the chance it is
    at most so many seconds, ``support`` the interval that holds every draw."""

    def draw(self, rng: random.Random) -> float:
        raise NotImplementedError

    def cdf(self, seconds: float) -> float:
        raise NotImplementedError

    @property
    def support(self) -> tuple[float, float]:
        raise NotImplementedError


@dataclass(frozen=True)
class LogUniform(Distribution):
    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))

    def cdf(self, seconds: float) -> float:
        if seconds <= self.low:
            return 0.0
        return min(1.0, math.log(seconds / self.low) / math.log(self.high / self.low))

    @property
    def support(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class Uniform(Distribution):
    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def cdf(self, seconds: float) -> float:
        return min(1.0, max(0.0, (seconds - self.low) / (self.high - self.low)))

    @property
    def support(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class Clamped(Distribution):
    """A draw kept within ``[low, high]`` (a job takes a few seconds at least and at most a day)."""

    low: float
    high: float

    def unclamped(self, rng: random.Random) -> float:
        raise NotImplementedError

    def unclamped_cdf(self, seconds: float) -> float:
        raise NotImplementedError

    def draw(self, rng: random.Random) -> float:
        return min(self.high, max(self.low, self.unclamped(rng)))

    def cdf(self, seconds: float) -> float:
        if seconds < self.low:
            return 0.0
        return 1.0 if seconds >= self.high else self.unclamped_cdf(seconds)

    @property
    def support(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class LogNormal(Clamped):
    typical: float = 0.0
    sigma: float = 0.0

    def unclamped(self, rng: random.Random) -> float:
        return self.typical * math.exp(rng.gauss(0.0, self.sigma))

    def unclamped_cdf(self, seconds: float) -> float:
        return 0.5 * math.erfc(-math.log(seconds / self.typical) / (self.sigma * math.sqrt(2.0)))


@dataclass(frozen=True)
class Weibull(Clamped):
    scale: float = 0.0
    shape: float = 0.0

    def unclamped(self, rng: random.Random) -> float:
        return rng.weibullvariate(self.scale, self.shape)

    def unclamped_cdf(self, seconds: float) -> float:
        return -math.expm1(-((seconds / self.scale) ** self.shape))


@dataclass(frozen=True)
class Erlang(Clamped):
    """Gamma with a whole-number shape (its distribution function has a closed form)."""

    shape: int = 1
    scale: float = 0.0

    def unclamped(self, rng: random.Random) -> float:
        return rng.gammavariate(float(self.shape), self.scale)

    def unclamped_cdf(self, seconds: float) -> float:
        x = seconds / self.scale
        return 1.0 - math.exp(-x) * sum(x**i / math.factorial(i) for i in range(self.shape))


@dataclass(frozen=True)
class Pareto(Clamped):
    scale: float = 0.0
    alpha: float = 0.0

    def unclamped(self, rng: random.Random) -> float:
        return self.scale * rng.paretovariate(self.alpha)

    def unclamped_cdf(self, seconds: float) -> float:
        return 0.0 if seconds <= self.scale else 1.0 - (self.scale / seconds) ** self.alpha


@dataclass(frozen=True)
class Mixture(Distribution):
    """One of ``parts`` (weight, distribution), picked by a uniform draw against the weights in order."""

    parts: tuple[tuple[float, Distribution], ...]

    def draw(self, rng: random.Random) -> float:
        pick, running = rng.random(), 0.0
        for weight, part in self.parts:
            running += weight
            if pick < running:
                return part.draw(rng)
        return self.parts[-1][1].draw(rng)

    def cdf(self, seconds: float) -> float:
        return sum(weight * part.cdf(seconds) for weight, part in self.parts)

    @property
    def support(self) -> tuple[float, float]:
        return min(p.support[0] for _, p in self.parts), max(p.support[1] for _, p in self.parts)


@dataclass(frozen=True)
class Job:
    duration: float
    shape: Shape | None  # None: the provider reports no progress
    key: str  # seeds the job's progress noise and the policy's jitter
    connection: str = "default"
    noise: float = PROGRESS_NOISE  # 0 for providers that report exact steps
    #: The distribution the duration was drawn from (None: unknown, the ceiling is not computed).
    distribution: Distribution | None = None
    #: Jobs of one regime are pooled by the ceiling as draws from their distributions' mixture (None: pooled
    #: with the jobs of the same distribution); a mix whose distribution moves from job to job names them.
    regime: str | None = None


@dataclass(frozen=True)
class Mix:
    name: str
    about: str
    jobs: tuple[Job, ...]
    group: str  # "repository", "tuning" or "held out"
    bounds: PollBounds = IVVY_LIKE

    def connections(self) -> dict[str, list[Job]]:
        """Each connection's jobs in the order they run."""
        by: dict[str, list[Job]] = {}
        for job in self.jobs:
            by.setdefault(job.connection, []).append(job)
        return by


# --- progress shapes -----------------------------------------------------------------------------------
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


def pauses(start: float, length: float) -> Shape:
    """Steady, but stopped between fractions ``start`` and ``start + length`` of the time."""

    def shape(x: float) -> float:
        moving = x - max(0.0, min(x, start + length) - start)
        return moving / (1.0 - length)

    return shape


def steps(count: int, inner: Shape = linear) -> Shape:
    """Progress reported in ``count`` equal steps (a provider counting finished parts)."""
    return lambda x: math.floor(inner(x) * count) / count


# --- helpers ------------------------------------------------------------------------------------------
def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def lognormal(typical: float, sigma: float, low: float = 5.0, high: float = DAY) -> LogNormal:
    return LogNormal(low, high, typical, sigma)


def drawn(
    rng: random.Random, distribution: Distribution, shape: Shape | None, key: str, **fields: object
) -> Job:
    """A job whose duration is drawn from ``distribution``, which it keeps."""
    return Job(distribution.draw(rng), shape, key, distribution=distribution, **fields)  # type: ignore[arg-type]


def dealt(jobs: Sequence[Job], connections: int, prefix: str) -> tuple[Job, ...]:
    """The jobs dealt to ``connections`` connections in turn."""
    return tuple(replace(j, connection=f"{prefix}-{n % connections}") for n, j in enumerate(jobs))


# --- the repository's mixes (unchanged durations and progress; dealt to eight connections) -------------
def standard_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("standard")
    durations = LogUniform(60, 6 * 3600)
    jobs = [drawn(rng, durations, linear if i % 2 == 0 else None, f"standard-{i}") for i in range(n)]
    return Mix(
        "standard",
        "1 min - 6 h log-uniform; half report steady progress, half report none",
        dealt(jobs, 8, "standard"),
        "repository",
    )


def stall_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("stalls")
    durations, jobs = LogUniform(60, 6 * 3600), []
    for i in range(n):
        duration = durations.draw(rng)
        shape = stalls_at(rng.uniform(0.90, 0.99), rng.uniform(0.6, 0.95))
        jobs.append(Job(duration, shape, f"stalls-{i}", distribution=durations))
    return Mix(
        "stalls near the end",
        "1 min - 6 h; progress climbs to 90-99 % and sits there for the last 5-40 %",
        dealt(jobs, 8, "stalls"),
        "repository",
    )


def nonlinear_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("nonlinear")
    shapes = (slow_start, fast_then_slow, queued, linear)
    durations = LogUniform(60, 6 * 3600)
    jobs = [drawn(rng, durations, shapes[i % len(shapes)], f"nonlinear-{i}") for i in range(n)]
    return Mix(
        "non-linear progress",
        "1 min - 6 h; slow start (x^2), fast then slow, queued first 20 %, steady",
        dealt(jobs, 8, "nonlinear"),
        "repository",
    )


def short_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("short")
    durations = LogUniform(10, 600)
    jobs = [drawn(rng, durations, linear if i % 2 == 0 else None, f"short-{i}") for i in range(n)]
    return Mix(
        "short jobs",
        "10 s - 10 min log-uniform; half report steady progress, half none",
        dealt(jobs, 8, "short"),
        "repository",
    )


def long_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("long")
    durations = LogUniform(3600, 20 * 3600)
    jobs = [drawn(rng, durations, linear if i % 2 == 0 else None, f"long-{i}") for i in range(n)]
    return Mix(
        "long jobs",
        "1 h - 20 h log-uniform; half report steady progress, half none",
        dealt(jobs, 8, "long"),
        "repository",
    )


# --- tuning mixes: connections with their own typical durations ---------------------------------------
@dataclass(frozen=True)
class Profile:
    """One connection: how long its jobs typically take, how much they vary, what progress it reports."""

    name: str
    typical: float
    sigma: float
    shape: Shape | None
    noise: float = PROGRESS_NOISE
    weight: float = 1.0


def from_profiles(rng: random.Random, profiles: Sequence[Profile], n: int, prefix: str) -> tuple[Job, ...]:
    """``n`` jobs, each from a connection picked by weight, in arrival order."""
    weights = [p.weight for p in profiles]
    jobs = []
    for i in range(n):
        p = rng.choices(profiles, weights)[0]
        jobs.append(
            drawn(
                rng, lognormal(p.typical, p.sigma), p.shape, f"{prefix}-{i}", connection=p.name, noise=p.noise
            )
        )
    return tuple(jobs)


def connections_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("connections")
    profiles = [
        Profile(
            f"conn-{c}",
            log_uniform(rng, 120, 6 * 3600),
            rng.uniform(0.1, 0.5),
            linear if c % 2 == 0 else None,
        )
        for c in range(12)
    ]
    return Mix(
        "typical connections",
        "12 connections, each with its own typical duration (2 min - 6 h) and spread (10-50 %); "
        "half report steady progress",
        from_profiles(rng, profiles, n, "connections"),
        "tuning",
    )


def short_heavy_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("short-heavy")
    profiles = [
        Profile(
            f"quick-{c}",
            log_uniform(rng, 15, 180),
            rng.uniform(0.2, 0.6),
            linear if c % 3 == 0 else None,
            weight=7 / 6,
        )
        for c in range(6)
    ] + [
        Profile(
            f"slow-{c}",
            log_uniform(rng, 600, 7200),
            rng.uniform(0.2, 0.6),
            linear if c % 3 == 0 else None,
            weight=3 / 4,
        )
        for c in range(4)
    ]
    return Mix(
        "short-heavy",
        "70 % of jobs on connections typically 15 s - 3 min, 30 % on 10 min - 2 h; a third report progress",
        from_profiles(rng, profiles, n, "short-heavy"),
        "tuning",
    )


def long_tail_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("long-tail")
    profiles = [
        Profile(
            f"tail-{c}", log_uniform(rng, 1200, 3 * 3600), rng.uniform(0.7, 1.1), linear if c % 2 else None
        )
        for c in range(8)
    ]
    return Mix(
        "long tails to 24 h",
        "8 connections typically 20 min - 3 h with heavy tails (spread 70-110 %), up to 24 h; half progress",
        from_profiles(rng, profiles, n, "long-tail"),
        "tuning",
    )


def stalling_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("stalling")
    jobs = []
    typical = [log_uniform(rng, 300, 4 * 3600) for _ in range(8)]
    for i in range(n):
        c = rng.randrange(8)
        durations = lognormal(typical[c], 0.35)
        duration = durations.draw(rng)
        if c % 2 == 0:
            shape = pauses(rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.4))  # stops mid-way, then resumes
        else:
            shape = stalls_at(0.99, rng.uniform(0.7, 0.95))  # sits at 99 % for the last 5-30 %
        jobs.append(Job(duration, shape, f"stalling-{i}", f"stalling-{c}", distribution=durations))
    return Mix(
        "progress that stalls",
        "8 connections (5 min - 4 h, spread 35 %); progress pauses mid-way for 10-40 % of the time, "
        "or sits at 99 % for the last 5-30 %",
        tuple(jobs),
        "tuning",
    )


def coarse_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("coarse")
    profiles = [
        Profile(f"coarse-{c}", log_uniform(rng, 300, 4 * 3600), rng.uniform(0.2, 0.5), steps(count), noise=0)
        for c, count in enumerate((2, 4, 10, 4, 10, 3, 5, 20))
    ]
    return Mix(
        "coarse progress",
        "8 connections (5 min - 4 h, spread 20-50 %); progress in steps of 50, 33, 25, 20, 10 or 5 %",
        from_profiles(rng, profiles, n, "coarse"),
        "tuning",
    )


# --- held-out mixes: not looked at while tuning ------------------------------------------------------
def weibull_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/weibull")
    scales = [log_uniform(rng, 300, 4 * 3600) for _ in range(6)]
    jobs = []
    for i in range(n):
        c = rng.randrange(6)
        shape = fast_then_slow if c % 2 == 0 else None
        jobs.append(
            drawn(rng, Weibull(5.0, DAY, scales[c], 1.6), shape, f"weibull-{i}", connection=f"weibull-{c}")
        )
    return Mix(
        "Weibull durations",
        "6 connections, Weibull (shape 1.6) durations with scales 5 min - 4 h; half report fast-then-slow "
        "progress",
        tuple(jobs),
        "held out",
    )


def bimodal_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/bimodal")
    durations = Mixture(
        ((0.35, Uniform(60, 180)), (0.65, Uniform(45 * 60, 90 * 60)))
    )  # a delta, or a full export
    jobs = []
    for i in range(n):
        c = rng.randrange(4)
        jobs.append(drawn(rng, durations, None, f"bimodal-{i}", connection=f"bimodal-{c}"))
    return Mix(
        "bimodal, no progress",
        "4 connections; 35 % of jobs take 1-3 min, 65 % take 45-90 min; no progress reported",
        tuple(jobs),
        "held out",
    )


def drift_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/drift")
    jobs = []
    per = max(1, n // 6)
    for i in range(n):
        c = i % 6
        k = i // 6  # this connection's k-th job
        # Three grow (the typical duration triples over the run); three change once, half-way, from 2 h
        # exports to 5 min deltas.
        typical = 600 * 3 ** (k / per) if c < 3 else (7200 if k < per / 2 else 300)
        shape = linear if c in (0, 3) else None
        # A poller told each job's distribution could know it only job by job; the ceiling pools the growing
        # connections' jobs a twelfth of the run at a time (their typical duration moves 10 % in one).
        regime = f"drift-growing-{12 * k // per}" if c < 3 else None
        job = drawn(rng, lognormal(typical, 0.2), shape, f"drift-{i}", connection=f"drift-{c}", regime=regime)
        jobs.append(job)
    return Mix(
        "drifting connections",
        "6 connections; three grow from 10 min to 30 min over the run, three drop from 2 h to 5 min "
        "half-way; a third report progress",
        tuple(jobs),
        "held out",
    )


def uniform_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/uniform")
    durations, jobs = Uniform(300, 3 * 3600), []
    for i in range(n):
        duration = durations.draw(rng)
        shape: Shape | None
        if i % 3 == 0:
            shape, noise = steps(7), 0.0  # seven parts, counted as they finish
        elif i % 3 == 1:
            shape, noise = linear, 2.0  # noisy percent
        else:
            shape, noise = None, 0.0
        jobs.append(Job(duration, shape, f"uniform-{i}", f"uniform-{i % 3}", noise, durations))
    return Mix(
        "uniform durations",
        "5 min - 3 h uniform (not log-uniform); a third count 7 parts, a third a noisy percent, "
        "a third nothing",
        tuple(jobs),
        "held out",
    )


def superoffice_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/superoffice")
    durations = LogUniform(120, 12 * 3600)
    jobs = []
    for i in range(n):
        duration = durations.draw(rng)  # before the draw that says whether it reports progress
        jobs.append(Job(duration, linear if rng.random() < 0.3 else None, f"so-{i}", distribution=durations))
    return Mix(
        "wide, 15 s / 15 min bounds",
        "2 min - 12 h log-uniform, 30 % report progress; SuperOffice-like bounds (15 s min, 15 min max)",
        dealt(jobs, 5, "so"),
        "held out",
        SUPEROFFICE_LIKE,
    )


def willsuite_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/willsuite")
    profiles = [Profile(f"ws-{c}", log_uniform(rng, 120, 8 * 3600), 0.3, None) for c in range(6)]
    return Mix(
        "5 min minimum, no progress",
        "6 connections typically 2 min - 8 h (spread 30 %), no progress; WillSuite-like bounds (5 min min, "
        "10 min max)",
        from_profiles(rng, profiles, n, "ws"),
        "held out",
        WILLSUITE_LIKE,
    )


def gamma_parts_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/gamma-parts")
    means = [log_uniform(rng, 180, 3 * 3600) for _ in range(6)]
    jobs = []
    for i in range(n):
        c = rng.randrange(6)
        durations = Erlang(5.0, DAY, 3, means[c] / 3.0)
        duration = durations.draw(rng)
        shape, noise = (steps(12), 0.0) if c % 2 == 0 else (None, 0.0)
        jobs.append(Job(duration, shape, f"gamma-{i}", f"gamma-{c}", noise, durations))
    return Mix(
        "gamma durations, 12 parts",
        "6 connections, gamma (shape 3) durations averaging 3 min - 3 h; half count 12 parts, half nothing",
        tuple(jobs),
        "held out",
    )


def pareto_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/pareto")
    typical = [log_uniform(rng, 300, 2 * 3600) for _ in range(5)]
    jobs = []
    for i in range(n):
        c = rng.randrange(5)
        jobs.append(
            drawn(rng, Pareto(0.0, DAY, typical[c], 1.5), None, f"pareto-{i}", connection=f"pareto-{c}")
        )
    return Mix(
        "Pareto tails, no progress",
        "5 connections, durations from 5 min - 2 h with a Pareto tail (alpha 1.5) up to 24 h; no progress",
        tuple(jobs),
        "held out",
    )


def nightly_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/nightly")
    jobs = []
    for i in range(n):
        c = i % 4
        k = i // 4
        full = k % 6 == 0  # a full export, then five deltas
        typical = 4 * 3600 if full else 600
        shape = (lambda x: x**1.5) if c < 2 else None
        jobs.append(
            drawn(rng, lognormal(typical, 0.15), shape, f"nightly-{i}", connection=f"nightly-{c}", noise=3.0)
        )
    return Mix(
        "full exports among deltas",
        "4 connections alternating one 4 h export with five 10 min deltas; half report noisy accelerating "
        "progress (t^1.5, noise 3 points)",
        tuple(jobs),
        "held out",
    )


def os1_mix(n: int = JOBS_PER_MIX) -> Mix:
    rng = random.Random("held-out/os1")
    profiles = [
        Profile(
            f"os1-{c}", log_uniform(rng, 60, 1800), rng.uniform(0.1, 0.8), queued if c % 3 == 0 else linear
        )
        for c in range(6)
    ]
    return Mix(
        "5 s / 5 min bounds, progress",
        "6 connections typically 1 - 30 min (spread 10-80 %), all report progress, a third queue first; "
        "OS1-like bounds (5 s min, 5 min max)",
        from_profiles(rng, profiles, n, "os1"),
        "held out",
        PollBounds(min_seconds=5, max_seconds=300),
    )


REPOSITORY = (standard_mix, stall_mix, nonlinear_mix, short_mix, long_mix)
TUNING = (connections_mix, short_heavy_mix, long_tail_mix, stalling_mix, coarse_mix)
HELD_OUT = (
    weibull_mix,
    bimodal_mix,
    drift_mix,
    uniform_mix,
    superoffice_mix,
    willsuite_mix,
    gamma_parts_mix,
    pareto_mix,
    nightly_mix,
    os1_mix,
)


def all_mixes(n: int = JOBS_PER_MIX, *, held_out: bool = True) -> list[Mix]:
    makers = REPOSITORY + TUNING + (HELD_OUT if held_out else ())
    return [make(n) for make in makers]
