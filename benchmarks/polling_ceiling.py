"""The best any poller could do on a mix: the ceiling the polling benchmark prints beside the policy.

The poller bounded here is told more than any real one can know:

* each job's true duration distribution (the one the mix drew it from; :class:`polling_mixes.Job`), and
  the provider's bounds (no wait below the minimum interval - nor below a second - and none above our
  maximum, the first one included);
* for a job that reports progress, its exact duration from its first check on (the most progress could
  ever tell; before its first check nothing about the job itself can be seen).

A job that reports nothing is then polled by a schedule of check times chosen from its distribution
alone: the optimal one is found by dynamic programming over the schedule's last check. A job that
reports progress costs its first check (chosen from its distribution) and then exactly the checks its
remaining time needs. Seeing the end within 5 % (the median target) or 20 % (the p95 target) becomes a
count of jobs that must be seen that soon (500 and 950 of 1,000), and the fewest polls meeting both
counts are bounded by Lagrangian duality: for any prices ``alpha`` and ``beta`` on a job seen within 5 %
and within 20 %, the cheapest ``polls - alpha * within_5 - beta * within_20`` over every schedule, plus
the prices times the counts required, is at most the polls of any poller meeting the counts. The prices
are searched until that bound meets a (randomised) schedule that does meet them: what is printed is the
bound, so it is never above the truth.

The bound is on expectations: a job that reports nothing enters only through its distribution function
(no sampling; it is seen in time with some probability, and the counts add those up), one that reports
progress through its own duration. Where the dynamic programme must discretise - the check times fall
in cells of ``resolution`` of the running time (and at most a fraction of the maximum wait) - every
approximation is made in the poller's favour: a check anywhere in a cell sees every job that ends
before the cell's end, on time if it could be for some moment in the cell; two checks in one cell count
as one; and a gap between two cells is allowed if some moments in them are far enough apart (and close
enough). Finer cells make the favours smaller: ``tests/unit/test_polling_ceiling.py`` checks that the
bound moves by at most 2 % from the benchmark's resolution to one twice as fine, and that it is never
above a schedule found by brute force.

Two pools are coarser than a job's own distribution: jobs of one *regime* (a connection whose
distribution moves from job to job, see :attr:`polling_mixes.Job.regime`) are taken as draws from their
distributions' mixture, as a poller that knows the regime but not each job's exact distribution would.

Where a delay target cannot be met at any cost, the report gives the best that can be (no poller sees
the median or p95 job within less: bisected at the quick resolution, again in the poller's favour), and
the cost ceiling is taken under the delay targets that can be met.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from batchbridge import polling
from benchmarks.polling_mixes import Distribution, Mix

#: Check times are placed in cells this fraction of the running time wide, and at most 1/``n`` of the
#: maximum wait wide (where waits that long are what it takes): (fraction, n).
FINE_RESOLUTION = (0.002, 64)
QUICK_RESOLUTION = (0.01, 16)
#: The distributions' far tails (this much mass at each end) are taken as seen at once and on time.
TAIL = 1e-6
#: A price high enough that no number of polls outweighs a job seen on time: it gives the most jobs
#: any poller can see within a delay.
PRICELESS = 1e7
#: The price search stops when the bound is within this fraction of a schedule meeting the counts.
PRECISION = 5e-4


@dataclass(frozen=True)
class Targets:
    median_delay: float = 0.05  # as a fraction of the job's duration
    p95_delay: float = 0.20

    @staticmethod
    def required(jobs: int, quantile: float) -> int:
        """How many of ``jobs`` must be within a delay for its ``quantile`` (interpolated between closest
        ranks, as the benchmark reports it) to be within it: at least the lower of the two ranks."""
        return math.floor((jobs - 1) * quantile + 1e-9) + 1


@dataclass(frozen=True)
class Outcome:
    """Totals over the mix's jobs of one priced optimum (or a mixture of two)."""

    value: float  # polls - alpha * within_first - beta * within_second
    polls: float
    within_first: float
    within_second: float

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            self.value + other.value,
            self.polls + other.polls,
            self.within_first + other.within_first,
            self.within_second + other.within_second,
        )


ZERO = Outcome(0.0, 0.0, 0.0, 0.0)


# --- jobs that report nothing: a schedule from the distribution alone -----------------------------------
class Schedules:
    """The cheapest priced schedule of checks for ``count`` jobs drawn from ``cdf``, by dynamic programming
    over the cell of the latest check (see the module docstring for how cells favour the poller)."""

    def __init__(
        self,
        cdf: Callable[[float], float],
        support: tuple[float, float],
        count: float,
        bounds: polling.PollBounds,
        delays: tuple[float, float],
        resolution: tuple[float, int],
    ) -> None:
        self.count = count
        floor = max(bounds.min_seconds, polling.MIN_WAIT_SECONDS)
        longest = bounds.max_seconds
        low, high = _tails(cdf, support)
        fraction, widest = resolution[0], longest / resolution[1]
        edges = [floor]
        end = max(high * (1.0 + delays[1]) * 1.01, high + 2 * floor)
        while edges[-1] < end:
            t = edges[-1]
            edges.append(min(t + widest, low) if t < low else t + min(widest, fraction * t))
        g = edges
        cells = len(g) - 1
        first, second = 1.0 + delays[0], 1.0 + delays[1]
        self.seen = [cdf(g[b + 1]) for b in range(cells)]  # the jobs over by the end of cell b
        self.on_time_first = [self.seen[b] - cdf(g[b] / first) for b in range(cells)]
        self.on_time_second = [self.seen[b] - cdf(g[b] / second) for b in range(cells)]
        # From a check in cell a, the next may be in cells nearest..furthest; it sees the jobs that end
        # after cell a within the delays if it is at or past cell split_first / split_second.
        self.nearest = [max(a + 1, bisect.bisect_left(g, g[a] + floor) - 1) for a in range(cells)]
        self.furthest = [min(cells - 1, bisect.bisect_right(g, g[a + 1] + longest) - 1) for a in range(cells)]
        self.split_first = [bisect.bisect_left(g, first * g[a + 1]) for a in range(cells)]
        self.split_second = [bisect.bisect_left(g, second * g[a + 1]) for a in range(cells)]
        self.first_check_by = min(cells - 1, bisect.bisect_right(g, longest) - 1)
        self.cells = cells

    def solve(self, alpha: float, beta: float) -> Outcome:
        """The cheapest ``polls - alpha * within_first - beta * within_second`` (per job, times the count)."""
        cells, seen = self.cells, self.seen
        fa, fb = self.on_time_first, self.on_time_second
        nearest, furthest = self.nearest, self.furthest
        split_a, split_b = self.split_first, self.split_second
        both = alpha + beta
        inf = math.inf
        value, polls, within_a, within_b = [0.0] * cells, [0.0] * cells, [0.0] * cells, [0.0] * cells
        # The priced value of going on to check in cell b, by how many of the jobs seen there are on time
        # (all of them are seen after the cell of the check before, a):
        far = [inf] * cells  # from cell split_b[a] on: those that ended after 1/second of b's start
        mid = [inf] * cells  # before it: all are on time for the second delay; from split_a[a], ...
        near = [inf] * cells  # before that: on time for both
        # The three ranges of b slide towards 0 as a does: each keeps a window of candidate cells, the
        # best (and the first to leave) at the right.
        windows: tuple[deque[int], deque[int], deque[int]] = (deque(), deque(), deque())
        arrays = (far, mid, near)
        entered = [cells, cells, cells]
        for a in range(cells - 1, -1, -1):
            running = 1.0 - seen[a]
            if running <= 2 * TAIL:  # the tail: taken as seen at once, on time
                value[a], polls[a] = -both * running, 0.0
                within_a[a] = within_b[a] = running
            else:
                lo, hi = nearest[a], furthest[a]
                ranges = (
                    (max(lo, split_b[a]), hi),
                    (max(lo, split_a[a]), min(hi, split_b[a] - 1)),
                    (lo, min(hi, split_a[a] - 1)),
                )
                best, kind, to = inf, 0, -1
                for k in range(3):
                    left, right = ranges[k]
                    window, array = windows[k], arrays[k]
                    while entered[k] > left:
                        entered[k] -= 1
                        v = array[entered[k]]
                        while window and array[window[0]] >= v:
                            window.popleft()
                        window.appendleft(entered[k])
                    while window and window[-1] > right:
                        window.pop()
                    if window:
                        b = window[-1]
                        v = array[b] + (0.0 if k == 0 else beta * seen[a] if k == 1 else both * seen[a])
                        if v < best:
                            best, kind, to = v, k + 1, b
                if kind == 0:
                    value[a] = polls[a] = inf
                else:
                    value[a] = running + best
                    polls[a] = running + polls[to]
                    caught = seen[to] - seen[a]
                    within_a[a] = within_a[to] + (caught if kind == 3 else fa[to])
                    within_b[a] = within_b[to] + (fb[to] if kind == 1 else caught)
            v = value[a]
            far[a] = v - alpha * fa[a] - beta * fb[a]
            mid[a] = v - alpha * fa[a] - beta * seen[a]
            near[a] = v - both * seen[a]
        head = far[: self.first_check_by + 1]
        best = min(head)
        if best == inf:
            raise ValueError("no schedule respects the bounds")
        to = head.index(best)
        n = self.count
        return Outcome(
            n * (1.0 + best),
            n * (1.0 + polls[to]),
            n * (fa[to] + within_a[to]),
            n * (fb[to] + within_b[to]),
        )


def _tails(cdf: Callable[[float], float], support: tuple[float, float]) -> tuple[float, float]:
    """Where the distribution's mass begins and ends, bar ``TAIL`` at each end."""

    def where(mass: float) -> float:
        low, high = max(support[0], 1e-3), max(support[1], support[0] * 1.0001, 1e-3)
        if cdf(low) >= mass:
            return low
        for _ in range(80):
            middle = math.sqrt(low * high)
            low, high = (low, middle) if cdf(middle) >= mass else (middle, high)
        return high

    return where(TAIL), where(1.0 - TAIL)


# --- jobs that report progress: a first check, then exactly what the remaining time needs ---------------
class FirstChecks:
    """Jobs whose exact duration is known from their first check on: for every time of that first check
    (one for the group, chosen from its distribution), their polls and how many are seen on time."""

    def __init__(self, durations: Sequence[float], bounds: polling.PollBounds, delays: tuple[float, float]):
        floor = max(bounds.min_seconds, polling.MIN_WAIT_SECONDS)
        longest = bounds.max_seconds
        first, second = 1.0 + delays[0], 1.0 + delays[1]

        def outcome(d: float, t: float) -> tuple[float, float, float]:
            if t >= d:
                polls, late = 1.0, t - d
            else:
                more = max(1, math.ceil((d - t) / longest - 1e-9))
                polls, late = 1.0 + more, max(0.0, t + more * floor - d)
            return (
                polls,
                float(late <= delays[0] * d * (1 + 1e-12)),
                float(late <= delays[1] * d * (1 + 1e-12)),
            )

        def breaks(d: float) -> list[float]:
            points = {floor, longest, d, first * d, second * d}
            for more in range(max(1, math.floor((d - longest) / longest)), math.ceil(d / longest) + 2):
                points.update((d - more * longest, first * d - more * floor, second * d - more * floor))
            return sorted(p for p in points if floor <= p <= longest)

        own = [breaks(d) for d in durations]
        xs = sorted({p for points in own for p in points})
        index = {x: i for i, x in enumerate(xs)}
        size = 2 * len(xs) - 1  # even: a time in xs; odd: the times between two of them
        delta = [[0.0] * (size + 1) for _ in range(3)]

        def add(start: int, stop: int, values: tuple[float, float, float]) -> None:
            for column, v in zip(delta, values, strict=True):
                column[start] += v
                column[stop] -= v

        for d, points in zip(durations, own, strict=True):
            for k, x in enumerate(points):
                i = index[x]
                add(2 * i, 2 * i + 1, outcome(d, x))
                if k + 1 < len(points):
                    add(2 * i + 1, 2 * index[points[k + 1]], outcome(d, (x + points[k + 1]) / 2))
        self.polls, self.within_first, self.within_second = ([*_running_sum(c)][:size] for c in delta)

    def solve(self, alpha: float, beta: float) -> Outcome:
        values = [
            p - alpha * a - beta * b
            for p, a, b in zip(self.polls, self.within_first, self.within_second, strict=True)
        ]
        best = min(values)
        i = values.index(best)
        return Outcome(best, self.polls[i], self.within_first[i], self.within_second[i])


def _running_sum(values: Iterable[float]) -> Iterable[float]:
    total = 0.0
    for v in values:
        total += v
        yield total


# --- a mix --------------------------------------------------------------------------------------------
Group = Schedules | FirstChecks


def groups(mix: Mix, delays: tuple[float, float], resolution: tuple[float, int]) -> list[Group]:
    """The mix's jobs as the bounded poller sees them: those reporting nothing pooled by distribution (or
    regime), those reporting progress grouped the same way."""
    silent: dict[object, list[Distribution]] = {}
    talking: dict[object, list[float]] = {}
    for job in mix.jobs:
        if job.distribution is None:
            raise ValueError(f"{job.key} has no distribution: no ceiling for {mix.name}")
        key = job.regime or job.distribution
        if job.shape is None:
            silent.setdefault(key, []).append(job.distribution)
        else:
            talking.setdefault(key, []).append(job.duration)
    made: list[Group] = [FirstChecks(durations, mix.bounds, delays) for durations in talking.values()]
    for members in silent.values():
        cdf, support = _pooled(members)
        made.append(Schedules(cdf, support, len(members), mix.bounds, delays, resolution))
    return made


def _pooled(members: Sequence[Distribution]) -> tuple[Callable[[float], float], tuple[float, float]]:
    counts: dict[Distribution, int] = {}
    for d in members:
        counts[d] = counts.get(d, 0) + 1
    if len(counts) == 1:
        (only,) = counts
        return only.cdf, only.support
    total = len(members)
    parts = [(n / total, d) for d, n in counts.items()]
    support = (min(d.support[0] for d in counts), max(d.support[1] for d in counts))
    return (lambda x: sum(w * d.cdf(x) for w, d in parts)), support


def _evaluate(made: Sequence[Group], alpha: float, beta: float) -> Outcome:
    total = ZERO
    for group in made:
        total = total + group.solve(alpha, beta)
    return total


@dataclass(frozen=True)
class Bound:
    polls: float  # no poller meeting the counts makes fewer (in expectation)
    schedule_polls: float  # a (randomised) schedule of the bounded poller meeting them makes this many


def fewest_polls(made: Sequence[Group], need_first: float | None, need_second: float | None) -> Bound:
    """The fewest polls that see at least ``need_first`` jobs within the first delay and ``need_second``
    within the second (None: no such need)."""

    def lagrangian(alpha: float, beta: float) -> tuple[float, Outcome]:
        o = _evaluate(made, alpha, beta)
        return o.value + alpha * (need_first or 0.0) + beta * (need_second or 0.0), o

    if need_first is None and need_second is None:
        o = _evaluate(made, 0.0, 0.0)
        return Bound(o.polls, o.polls)
    if need_first is None or need_second is None:
        on_first = need_second is None
        need = need_first if on_first else need_second
        assert need is not None
        return _one_price(
            lambda price: lagrangian(price, 0.0) if on_first else lagrangian(0.0, price), need, on_first
        )
    # Both: often one of them binds alone; else search both prices. Every price pair gives a bound, so
    # the best of those found is kept.
    found = -math.inf
    for on_first in (False, True):
        bound, mixed = _one_price_mixture(
            (lambda p: lagrangian(p, 0.0)) if on_first else (lambda p: lagrangian(0.0, p)),
            need_first if on_first else need_second,
            on_first,
        )
        if mixed.within_first >= need_first - 1e-6 and mixed.within_second >= need_second - 1e-6:
            return Bound(bound, mixed.polls)
        found = max(found, bound)
    both = _two_prices(lagrangian, need_first, need_second)
    return Bound(max(found, both.polls), both.schedule_polls)


def _one_price(lagrangian: Callable[[float], tuple[float, Outcome]], need: float, on_first: bool) -> Bound:
    bound, mixed = _one_price_mixture(lagrangian, need, on_first)
    return Bound(bound, mixed.polls)


def _one_price_mixture(
    lagrangian: Callable[[float], tuple[float, Outcome]], need: float, on_first: bool
) -> tuple[float, Outcome]:
    """Bisect the one price until the bound meets a mixture of the two schedules around the need."""

    def seen(o: Outcome) -> float:
        return o.within_first if on_first else o.within_second

    bound, below = lagrangian(0.0)
    if seen(below) >= need:
        return bound, below
    low, high = 0.0, 1.0
    while True:
        value, above = lagrangian(high)
        bound = max(bound, value)
        if seen(above) >= need:
            break
        low, below = high, above
        high *= 4.0
        if high > PRICELESS:
            raise ValueError("the need cannot be met")
    mixed = _mixture(below, above, need, seen)
    for _ in range(60):
        if mixed.polls - bound <= PRECISION * mixed.polls:
            break
        price = (low + high) / 2
        value, o = lagrangian(price)
        bound = max(bound, value)
        if seen(o) >= need:
            high, above = price, o
        else:
            low, below = price, o
        mixed = _mixture(below, above, need, seen)
    return bound, mixed


def _mixture(below: Outcome, above: Outcome, need: float, seen: Callable[[Outcome], float]) -> Outcome:
    """The two schedules mixed (each batch drawing one) so that exactly ``need`` are seen in time."""
    gap = seen(above) - seen(below)
    share = 1.0 if gap <= 0 else min(1.0, max(0.0, (need - seen(below)) / gap))
    return Outcome(
        below.value + share * (above.value - below.value),
        below.polls + share * (above.polls - below.polls),
        below.within_first + share * (above.within_first - below.within_first),
        below.within_second + share * (above.within_second - below.within_second),
    )


def _two_prices(
    lagrangian: Callable[[float, float], tuple[float, Outcome]], need_first: float, need_second: float
) -> Bound:
    """Both prices, by cutting a polygon of candidate prices at its centroid (the bound is concave)."""
    top = 1.0
    while True:  # prices high enough that both needs are met at them ...
        _, o = lagrangian(top, top)
        if o.within_first >= need_first and o.within_second >= need_second:
            break
        top *= 4.0
        if top > PRICELESS:
            raise ValueError("the needs cannot be met together")
    top *= (
        16.0  # ... and a box well past them to search (any prices give a bound: the box only sets how good)
    )
    polygon = [(0.0, 0.0), (top, 0.0), (top, top), (0.0, top)]
    bound = -math.inf
    # Each cut through the centroid leaves at most 5/9 of the polygon: 60 of them, a 1e-15 part of it.
    for _ in range(60):
        cx, cy = _centroid(polygon)
        value, o = lagrangian(cx, cy)
        bound = max(bound, value)
        gx, gy = need_first - o.within_first, need_second - o.within_second
        if gx == 0 and gy == 0:
            break  # no better prices anywhere
        # Better prices lie where this cut's plane is above the best bound found.
        polygon = _clip(polygon, gx, gy, bound - value + gx * cx + gy * cy)
        if len(polygon) < 3 or abs(_area(polygon)) <= 1e-15 * top * top:
            break
    return Bound(bound, math.nan)


def _area(polygon: Sequence[tuple[float, float]]) -> float:
    return 0.5 * sum(
        x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(polygon, [*polygon[1:], polygon[0]], strict=True)
    )


def _centroid(polygon: Sequence[tuple[float, float]]) -> tuple[float, float]:
    area = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        cross = x0 * y1 - x1 * y0
        area += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(area) < 1e-15:
        return sum(x for x, _ in polygon) / len(polygon), sum(y for _, y in polygon) / len(polygon)
    return cx / (3 * area), cy / (3 * area)


def _clip(polygon: Sequence[tuple[float, float]], a: float, b: float, c: float) -> list[tuple[float, float]]:
    """The part of the polygon where ``a * x + b * y >= c``."""
    kept: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        s0, s1 = a * x0 + b * y0 - c, a * x1 + b * y1 - c
        if s0 >= 0:
            kept.append((x0, y0))
        if (s0 >= 0) != (s1 >= 0):
            t = s0 / (s0 - s1)
            kept.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
    return kept


# --- the report -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ceiling:
    polls_per_job: float  # the fewest polls per job of any poller meeting the delay targets that can be met
    most_within_median: float  # the largest share of jobs any poller sees within the median target
    most_within_p95: float
    best_median: float | None  # when the median target cannot be met: the best any poller reaches
    best_p95: float | None

    def fewer(self, baseline_polls_per_job: float) -> float:
        return baseline_polls_per_job / self.polls_per_job


def ceiling(
    mix: Mix,
    *,
    quick: bool = False,
    targets: Targets = Targets(),
    resolution: tuple[float, int] | None = None,
) -> Ceiling:
    """The ceiling of ``mix``: see the module docstring. ``resolution`` (default: the quick or the fine
    one) sets the cells of the dynamic programme."""
    resolution = resolution or (QUICK_RESOLUTION if quick else FINE_RESOLUTION)
    delays = (targets.median_delay, targets.p95_delay)
    made = groups(mix, delays, resolution)
    n = len(mix.jobs)
    need_median, need_p95 = Targets.required(n, 0.5), Targets.required(n, 0.95)
    most_first = _evaluate(made, PRICELESS, 0.0).within_first
    most_second = _evaluate(made, 0.0, PRICELESS).within_second
    can_median, can_p95 = most_first >= need_median - 1e-6, most_second >= need_p95 - 1e-6
    bound = fewest_polls(made, need_median if can_median else None, need_p95 if can_p95 else None)
    best_median = None if can_median else _best_delay(mix, 0.5, targets.median_delay)
    best_p95 = None if can_p95 else _best_delay(mix, 0.95, targets.p95_delay)
    return Ceiling(bound.polls / n, most_first / n, most_second / n, best_median, best_p95)


def _best_delay(mix: Mix, quantile: float, above: float) -> float:
    """A delay (a fraction of the job's duration) that no poller sees a ``quantile`` of the jobs within:
    bisected to 2 % between ``above`` (the target, which cannot be met) and a delay that can, and the
    lower end returned (the bisection's error in the poller's favour, too)."""
    need = Targets.required(len(mix.jobs), quantile)

    def can(delay: float) -> bool:
        made = groups(mix, (delay, delay), QUICK_RESOLUTION)
        return _evaluate(made, PRICELESS, 0.0).within_first >= need - 1e-6

    low, high = above, max(2 * above, 0.5)
    while not can(high):
        low, high = high, high * 2
        if high > 1e4:
            return math.inf
    while high - low > 0.02 * high:
        middle = (low + high) / 2
        low, high = (low, middle) if can(middle) else (middle, high)
    return low
