"""What a batch costs on AWS, whole: metered while it runs, priced at the list prices of
:mod:`batchbridge.pricing`.

Every invocation that works for a batch (the api function creating it, each workflow task) runs inside
:func:`metering`. While it runs, every AWS call it makes is counted by hooks on the boto3 clients
(:mod:`batchbridge.aws` installs them): DynamoDB read and write units, worked out from the items as
DynamoDB's own sizing rules do (the repository counts them, knowing the items); S3 requests by price
class. When it ends, its Lambda request and
GB-seconds, and the state transitions the step it returned leads the state machine through (read off the
definition's shape, :func:`transitions_after`), are added to the batch's usage in one write.

Not counted: what clients do with the API after creating a batch (GET requests, downloads of results
files), Step Functions' own direct DynamoDB and SNS steps beyond the ones every batch takes (the
completion event's claim and publish are added by finalize), data transfer, and storage over time.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from batchbridge import pricing

# --- usage counters --------------------------------------------------------------------------------
TRANSITIONS = "sfnTransitions"
LAMBDA_REQUESTS = "lambdaRequests"
LAMBDA_GB_SECONDS = "lambdaGbSeconds"
DDB_WRITE_UNITS = "dynamodbWriteUnits"
DDB_READ_UNITS = "dynamodbReadUnits"
S3_PUTS = "s3Puts"
S3_GETS = "s3Gets"
SNS_PUBLISHES = "snsPublishes"
KEYS = (
    TRANSITIONS,
    LAMBDA_REQUESTS,
    LAMBDA_GB_SECONDS,
    DDB_WRITE_UNITS,
    DDB_READ_UNITS,
    S3_PUTS,
    S3_GETS,
    SNS_PUBLISHES,
)

#: S3 operations priced as PUT (PUT, COPY, POST, LIST); every other S3 request is priced as GET.
S3_PUT_CLASS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "ListObjects",
        "ListObjectsV2",
        "ListMultipartUploads",
    }
)


class Meter:
    """Counters of one invocation; safe to add to from several threads."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.requests: dict[str, int] = {}  # "service.Operation" -> calls, for tests and logs
        self.started = time.monotonic()
        self.memory_mb = 128
        self.recorded = False  # the invocation recorded its usage itself (finalize does)
        self._lock = threading.Lock()

    def add(self, key: str, amount: float) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0.0) + amount

    def called(self, service: str, operation: str) -> None:
        with self._lock:
            name = f"{service}.{operation}"
            self.requests[name] = self.requests.get(name, 0) + 1


_current: contextvars.ContextVar[Meter | None] = contextvars.ContextVar("batchbridge_meter", default=None)


def current() -> Meter | None:
    return _current.get()


@contextmanager
def metering() -> Iterator[Meter]:
    """Count what the code in the block costs (AWS calls made in this context, and threads started
    with :func:`in_context`)."""
    meter = Meter()
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)


def in_context[T, R](fn: Callable[[T], R]) -> Callable[[T], R]:
    """``fn`` run in a copy of the caller's context: pool threads then count into the caller's meter."""
    context = contextvars.copy_context()
    return lambda item: context.copy().run(fn, item)


def lambda_invocation(meter: Meter) -> None:
    """One Lambda request and its duration so far (billed by the millisecond) at its memory size."""
    billed_ms = max(1, math.ceil((time.monotonic() - meter.started) * 1000))
    meter.add(LAMBDA_REQUESTS, 1)
    meter.add(LAMBDA_GB_SECONDS, billed_ms / 1000 * meter.memory_mb / 1024)


def close_invocation(task: str, step: dict[str, Any] | None) -> dict[str, float]:
    """End the current invocation's metering early and return its counts (its request and duration so
    far, and the transitions its result leads through), for a task that records the batch's final cost
    itself; the invocation's wrapper then records nothing more."""
    meter = _current.get()
    if meter is None:
        return {}
    if not meter.recorded:
        lambda_invocation(meter)
        meter.add(TRANSITIONS, transitions_after(task, step))
        meter.recorded = True
    return dict(meter.counts)


def combined(*usages: dict[str, float]) -> dict[str, float]:
    total: dict[str, float] = {}
    for usage in usages:
        for key, value in usage.items():
            total[key] = round(total.get(key, 0.0) + value, 6)
    return total


# --- counting AWS calls ------------------------------------------------------------------------------
def install(client: Any) -> None:
    """Count this client's S3 calls into the current meter (DynamoDB units are counted by the
    repository, which knows the items it reads and writes)."""
    if client.meta.service_model.service_name == "s3":
        client.meta.events.register("after-call.s3", _s3)


def _s3(model: Any = None, **kwargs: Any) -> None:
    meter = _current.get()
    if meter is None or model is None:
        return
    meter.called("s3", model.name)
    meter.add(S3_PUTS if model.name in S3_PUT_CLASS else S3_GETS, 1)


def dynamodb(*, reads: float = 0.0, writes: float = 0.0, operation: str = "") -> None:
    """Count DynamoDB request units into the current meter."""
    meter = _current.get()
    if meter is None:
        return
    if operation:
        meter.called("dynamodb", operation)
    if reads:
        meter.add(DDB_READ_UNITS, reads)
    if writes:
        meter.add(DDB_WRITE_UNITS, writes)


# --- DynamoDB's sizing rules ---------------------------------------------------------------------------
def item_size(item: dict[str, Any]) -> int:
    """Bytes of an item as DynamoDB sizes it: attribute names plus values; strings and binaries by their
    UTF-8 length, numbers about one byte per two significant digits plus one, booleans and nulls one
    byte, each map or list three bytes plus one per element plus its elements."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float) or hasattr(value, "as_tuple"):  # numbers, Decimal included
        digits = len(str(value).lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if isinstance(value, dict):
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(value_size(v) + 1 for v in value)
    return len(str(value).encode())


def write_units(size: int, *, transactional: bool = False) -> float:
    """Write request units for one item of ``size`` bytes: per KB rounded up, at least one (a write
    whose condition failed costs the same); twice in a transaction."""
    return float(max(1, math.ceil(size / 1024))) * (2 if transactional else 1)


def read_units(size: int, *, consistent: bool) -> float:
    """Read request units for ``size`` bytes read at once (one item, or one query page): per 4 KB
    rounded up; half for an eventually consistent read."""
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


# --- the state machine's transitions -----------------------------------------------------------------
def transitions_after(task: str, step: dict[str, Any] | None) -> int:
    """State transitions one invocation of ``task`` accounts for: its own Task state, and the Choice and
    plain Wait states its result leads through until the next Lambda task (which counts itself).
    ``step`` is what the task returned (None: it raised, and the attempt is one transition).

    Mirrors statemachine/batch.asl.json; tests/workflow/test_cost.py holds it equal to real histories.
    """
    if step is None:
        return 1
    done, remaining, wait = step.get("done"), step.get("remaining", 0), step.get("waitSeconds", 0)
    if task == "submit":  # Submit + "All Chunks Submitted?" (+ a Wait, unless a task or Collect is next)
        if done or step.get("pollCount", 0) >= 450 or (remaining and not wait):
            return 2
        if remaining or not step.get("callback"):
            return 3
        return 2
    if task == "check":  # Check + "Batch Finished?" (+ "Wait For Provider")
        if done or step.get("pollCount", 0) >= 450 or step.get("callback"):
            return 2
        return 3
    if task == "await":  # "Wait For Callback Or Next Poll"
        return 1
    if task == "collect":  # Collect + "All Results Collected?" (+ "Wait For In-Flight Submit")
        if step.get("collectRounds", 0) < 64 and remaining and wait:
            return 3
        return 2
    if task == "finalize":  # Finalize + Claim + Publish + "Batch Succeeded?" + its end state
        return 5
    if task == "start":  # "Cancel Requested?"
        return 1
    raise ValueError(task)


# --- pricing ---------------------------------------------------------------------------------------
def price(usage: dict[str, float]) -> dict[str, Any]:
    """The usage at list prices, by service, in US dollars."""
    by_service = {
        "stepFunctions": usage.get(TRANSITIONS, 0) * pricing.SFN_USD_PER_TRANSITION,
        "lambda": usage.get(LAMBDA_REQUESTS, 0) * pricing.LAMBDA_USD_PER_REQUEST
        + usage.get(LAMBDA_GB_SECONDS, 0) * pricing.LAMBDA_USD_PER_GB_SECOND_ARM64,
        "dynamodb": usage.get(DDB_WRITE_UNITS, 0) * pricing.DYNAMODB_USD_PER_WRITE_UNIT
        + usage.get(DDB_READ_UNITS, 0) * pricing.DYNAMODB_USD_PER_READ_UNIT,
        "s3": usage.get(S3_PUTS, 0) * pricing.S3_USD_PER_PUT + usage.get(S3_GETS, 0) * pricing.S3_USD_PER_GET,
        "sns": usage.get(SNS_PUBLISHES, 0) * pricing.SNS_USD_PER_PUBLISH,
    }
    return {
        "totalUsd": round(sum(by_service.values()), 8),
        "byServiceUsd": {k: round(v, 8) for k, v in by_service.items()},
        "usage": {k: round(usage.get(k, 0), 4) for k in KEYS},
        "pricesAsOf": pricing.PRICES_AS_OF,
        "region": pricing.REGION,
    }


def dominant(cost: dict[str, Any]) -> str:
    """The service that cost the most."""
    services: Iterable[tuple[str, float]] = cost["byServiceUsd"].items()
    return max(services, key=lambda kv: kv[1])[0]


# --- one invocation, metered ---------------------------------------------------------------------------
def run_metered[R](task: str, batch_id: str, context: Any, work: Callable[[], R]) -> R:
    """Run one workflow task for a batch, and add what it cost to the batch's usage (one write). The
    task's result (a Step's dict) says which states it leads the workflow through; an attempt that
    raised counts as one transition."""
    result: Any = None
    with metering() as meter:
        meter.memory_mb = int(getattr(context, "memory_limit_in_mb", 128))
        try:
            result = work()
            return result  # type: ignore[no-any-return]
        finally:
            if not meter.recorded:
                meter.add(TRANSITIONS, transitions_after(task, result if isinstance(result, dict) else None))
                lambda_invocation(meter)
                flush(batch_id, meter)


def flush(batch_id: str, meter: Meter) -> None:
    """Add the meter's counts to the batch's usage (the write itself is counted too, as one unit)."""
    from batchbridge.tasks import Deps

    meter.add(DDB_WRITE_UNITS, 1)
    try:
        Deps.default().repo.meter(batch_id, dict(meter.counts))
    except Exception:
        from batchbridge.observability import logger

        logger.warning("could not record the invocation's usage", exc_info=True)
