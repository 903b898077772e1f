"""The workflow's task logic: submit, check, collect, finalize.

Each function does a bounded amount of work and returns a small result telling the state machine what
to do next; all waiting happens in the state machine. Functions are idempotent under the workflow's
retries: progress lives in the chunk items, and every state change is a conditional write.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field

from batchbridge import errors, polling
from batchbridge.config import get_settings
from batchbridge.connections import build_provider, load_connection
from batchbridge.models import (
    BatchStatus,
    ChunkState,
    Counts,
    ErrorInfo,
    Outcome,
    OutcomeKind,
)
from batchbridge.observability import logger
from batchbridge.providers.base import ChunkInfo, Provider, StatusReport
from batchbridge.store import Store, chunk_jobs_key, chunk_outcomes_key, now_iso, request_key, results_key

TimeLeft = Callable[[], float]
# Stop starting new work when less than this many seconds of the invocation remain.
SAFETY_MARGIN_SECONDS = 10.0
# Rounds (submit attempts plus status checks) one batch may use. The state machine's own cap
# (statemachine/batch.asl.json, the "$.step.pollCount >= 450" guards) sits a little above it as the
# backstop, and tests/unit/test_history_bound.py derives from both that an execution stays under 25,000
# events.
MAX_ROUNDS = 430
UNFINISHED = (ChunkState.PENDING, ChunkState.SUBMITTING, ChunkState.RUNNING)
DONE = (ChunkState.COLLECTED, ChunkState.ABANDONED)


class Step(BaseModel):
    """What every looping task returns; the state machine reads only these fields."""

    remaining: int = 0  # units of work left for this task (chunks)
    wait_seconds: int = Field(default=0, alias="waitSeconds")
    done: bool = False
    poll_count: int = Field(default=0, alias="pollCount")
    # True when the provider will call back: the workflow then waits on a task token, with the next poll
    # interval as its timeout, instead of a plain Wait.
    callback: bool = False

    model_config = {"populate_by_name": True}

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class Failure(BaseModel):
    """The error a state machine ``Catch`` hands on: ``{"Error": name, "Cause": text}``."""

    error: str = Field(alias="Error")
    cause: str = Field(default="", alias="Cause")

    def info(self) -> ErrorInfo:
        message = self.cause
        try:
            parsed = json.loads(self.cause)
            if isinstance(parsed, dict) and parsed.get("errorMessage"):
                message = str(parsed["errorMessage"])
        except (json.JSONDecodeError, TypeError):
            pass
        cls = getattr(errors, self.error, None)
        code = cls.code if isinstance(cls, type) and issubclass(cls, errors.BatchBridgeError) else self.error
        return ErrorInfo(code=code, message=(message or self.error)[:1000])


# --- helpers --------------------------------------------------------------------------------------
def _epoch() -> float:
    return time.time()


def _chunk_info(batch: dict[str, Any], chunk: dict[str, Any]) -> ChunkInfo:
    return ChunkInfo(
        batch_id=batch["batchId"],
        index=chunk["index"],
        first_job_index=chunk["firstJob"],
        provider_ref=chunk.get("providerRef"),
        callback_url=batch.get("callbackUrl"),
        options=batch.get("options") or {},
    )


def _provider_for(batch: dict[str, Any]) -> Provider:
    return build_provider(load_connection(batch["connection"]))


def _ceil_seconds(value: float) -> int:
    return max(1, math.ceil(value))


# --- submit ---------------------------------------------------------------------------------------
def prepare(store: Store, batch: dict[str, Any], provider: Provider) -> list[dict[str, Any]]:
    """Split the stored request into chunk files and chunk items, once."""
    chunks = store.list_chunks(batch["batchId"])
    if len(chunks) == batch["chunkCount"]:
        return sorted(chunks, key=lambda c: c["index"])
    request = store.get_json(request_key(batch["batchId"]))
    jobs = request["jobs"]
    size = provider.capabilities.max_jobs_per_submit
    for index, first in enumerate(range(0, len(jobs), size)):
        part = jobs[first : first + size]
        store.put_json(chunk_jobs_key(batch["batchId"], index), part)
        store.put_chunk(
            batch["batchId"],
            {"index": index, "firstJob": first, "jobCount": len(part), "state": ChunkState.PENDING.value},
        )
    return sorted(store.list_chunks(batch["batchId"]), key=lambda c: c["index"])


def submit_batch(batch_id: str, time_left: TimeLeft, store: Store | None = None) -> Step:
    store = store or Store()
    batch = store.get_batch(batch_id)
    if BatchStatus(batch["status"]).is_terminal:
        return Step(done=True)
    provider = _provider_for(batch)
    chunks = prepare(store, batch, provider)
    if batch["status"] == BatchStatus.ACCEPTED:
        batch = store.update_batch(
            batch_id, set_={"status": BatchStatus.SUBMITTING.value, **_callback_fields(batch, provider)}
        )

    # A chunk left SUBMITTING by an attempt that stopped may have been accepted: never send it again.
    # Where the provider can show what it holds, the chunk is recorded and the batch carries on.
    stuck = [
        c["index"]
        for c in chunks
        if c["state"] == ChunkState.SUBMITTING and not _reconcile(store, batch, provider, c)
    ]
    if stuck:
        store.update_batch(batch_id, set_={"ambiguousChunk": stuck[0]})
        raise errors.AmbiguousSubmitError(
            f"chunk(s) {stuck} of batch {batch_id} were being submitted when an earlier attempt stopped; "
            "the provider may have accepted them, so they are not sent again"
        )

    rounds = int(store.update_batch(batch_id, add={"pollCount": 1}).get("pollCount", 0))
    if _epoch() >= batch["deadlineAt"] or rounds >= MAX_ROUNDS:
        store.update_batch(batch_id, set_={"deadlineReached": True})
        return Step(done=True, poll_count=rounds)
    pending = [c for c in chunks if c["state"] == ChunkState.PENDING]
    not_ready_wait = 0.0
    for n, chunk in enumerate(pending):
        if n and time_left() < SAFETY_MARGIN_SECONDS:  # always at least one per call: rounds stay bounded
            break
        if store.get_batch(batch_id).get("cancelRequested"):
            return Step(done=True)  # the cancel run collects what was sent
        wait = _submit_chunk(store, batch, provider, chunk)
        if wait:
            not_ready_wait = wait
            break

    remaining = sum(1 for c in store.list_chunks(batch_id) if c["state"] == ChunkState.PENDING)
    if remaining:
        return Step(
            remaining=remaining,
            wait_seconds=_scaled_wait(not_ready_wait, batch) if not_ready_wait else 0,
            poll_count=rounds,
        )
    store.update_batch(
        batch_id,
        set_={"status": BatchStatus.RUNNING.value, "submittedAt": now_iso()},
        only_if_not_terminal=True,
    )
    first_wait, state = polling.next_wait(
        state=polling.PollState(),
        elapsed=0.0,
        remaining=_policy_seconds(batch["deadlineAt"] - _epoch()),
        progress=None,
        retry_after=None,
        bounds=_bounds(batch, provider),
        seed=batch_id,
    )
    store.update_batch(batch_id, set_={"pollState": state.model_dump()})
    return Step(
        wait_seconds=_scaled_wait(first_wait, batch),
        poll_count=rounds,
        callback=bool(batch.get("callbackUrl")),
    )


def _callback_fields(batch: dict[str, Any], provider: Provider) -> dict[str, Any]:
    """An unguessable per-batch callback URL, when the provider calls back and the API is reachable.

    The base is the configured ``CALLBACK_BASE_URL`` or else the API's own URL as the api function saw it.
    """
    base = (get_settings().callback_base_url or batch.get("apiBaseUrl") or "").rstrip("/")
    if not (base and provider.capabilities.supports_callback):
        return {}
    token = secrets.token_urlsafe(32)
    return {"callbackToken": token, "callbackUrl": f"{base}/callbacks/{batch['batchId']}/{token}"}


def _submit_chunk(store: Store, batch: dict[str, Any], provider: Provider, chunk: dict[str, Any]) -> float:
    """Submit one chunk exactly once. Returns a wait in seconds when the provider is not ready (or
    throttled the submit and said for how long)."""
    batch_id, index = batch["batchId"], chunk["index"]
    if not store.update_chunk(
        batch_id,
        index,
        {"state": ChunkState.SUBMITTING.value, "claimedAt": now_iso()},
        expect_state=ChunkState.PENDING,
    ):
        return 0.0  # another attempt owns it
    jobs = store.get_json(chunk_jobs_key(batch_id, index))
    info = _chunk_info(batch, chunk)
    try:
        ref = provider.submit(info, jobs)
    except errors.ProviderThrottledError as exc:
        # "Not accepted, come back later": safe to send again. When the provider said how much later, the
        # workflow waits exactly that (a Wait state, within the deadline); otherwise its Retry backs off.
        store.update_chunk(batch_id, index, {"state": ChunkState.PENDING.value})
        if exc.retry_after:
            logger.info("provider throttled the submit", extra={"chunk": index, "wait": exc.retry_after})
            return exc.retry_after
        raise
    except errors.ProviderUnavailableError:
        # Not accepted (or never reached): safe to send again after the workflow's Retry.
        store.update_chunk(batch_id, index, {"state": ChunkState.PENDING.value})
        raise
    except errors.ProviderNotReadyError as exc:
        store.update_chunk(batch_id, index, {"state": ChunkState.PENDING.value})
        logger.info("provider not ready", extra={"chunk": index, "wait": exc.wait_seconds})
        return exc.wait_seconds
    except errors.BatchRejectedError as exc:
        error = ErrorInfo(code=exc.code, message=exc.message)
        logger.warning("chunk rejected", extra={"chunk": index, "code": exc.code})
        store.update_chunk(
            batch_id,
            index,
            {"state": ChunkState.FAILED.value, "error": error.model_dump(), "finishedAt": now_iso()},
        )
        store.update_batch(batch_id, set_={"error": error.model_dump()})
        return 0.0
    except (errors.SubmitUnconfirmedError, httpx.TransportError, errors.ProviderResponseError) as exc:
        # The request went out and no usable answer came back: it may have been accepted.
        if _reconcile(store, batch, provider, chunk):
            return 0.0
        store.update_batch(batch_id, set_={"ambiguousChunk": index})
        raise errors.AmbiguousSubmitError(
            f"chunk {index} of batch {batch_id}: the provider's answer to the submit was lost "
            f"({type(exc).__name__}); it may have been accepted, so it is not sent again"
        ) from exc
    except errors.BatchBridgeError:
        # Any other typed error is an explicit refusal (credentials, configuration): nothing was accepted.
        store.update_chunk(batch_id, index, {"state": ChunkState.PENDING.value})
        raise
    recorded = store.update_chunk(
        batch_id,
        index,
        {"state": ChunkState.RUNNING.value, "providerRef": ref, "submittedAt": now_iso()},
        expect_state=ChunkState.SUBMITTING,
    )
    if not recorded:  # someone else changed the claim: the provider reference must not be lost
        store.update_batch(batch_id, set_={f"orphanRef{index}": ref})
        raise errors.AmbiguousSubmitError(
            f"chunk {index} of batch {batch_id} was accepted as {ref!r} but its claim had changed"
        )
    return 0.0


def _reconcile(store: Store, batch: dict[str, Any], provider: Provider, chunk: dict[str, Any]) -> bool:
    """Ask the provider whether it holds a chunk whose submit may or may not have arrived.

    True when it named the chunk's reference and that was recorded (the chunk is RUNNING); False when
    it cannot tell, and then the caller declares the submit ambiguous. Nothing is ever sent again.
    """
    batch_id, index = batch["batchId"], chunk["index"]
    try:
        ref = provider.find_submission(_chunk_info(batch, chunk))
    except (errors.BatchBridgeError, httpx.HTTPError) as exc:
        logger.warning(
            "could not look the chunk up at the provider", extra={"chunk": index, "error": str(exc)}
        )
        return False
    if ref is None:
        return False
    recorded = store.update_chunk(
        batch_id,
        index,
        {"state": ChunkState.RUNNING.value, "providerRef": ref, "submittedAt": now_iso(), "reconciled": True},
        expect_state=ChunkState.SUBMITTING,
    )
    if not recorded:
        return False
    logger.info("the provider already held the chunk; recorded", extra={"chunk": index})
    return True


# --- check ------------------------------------------------------------------------------------------
def _bounds(batch: dict[str, Any], provider: Provider) -> polling.PollBounds:
    caps = provider.capabilities
    override = (batch.get("options") or {}).get("pollIntervalSeconds")
    low = max(caps.min_poll_seconds, float(override)) if override else caps.min_poll_seconds
    return polling.PollBounds(min_seconds=min(low, caps.max_poll_seconds), max_seconds=caps.max_poll_seconds)


def _policy_seconds(real: float) -> float:
    """Real seconds as the policy should see them: under a time scale (the local runtime) the policy
    reasons in provider time, and :func:`_scaled_wait` scales its answer back."""
    return real / get_settings().poll_time_scale


def _scaled_wait(seconds: float, batch: dict[str, Any]) -> int:
    """Apply the time scale, and never wait past the deadline by more than the one second Wait allows."""
    scaled = seconds * get_settings().poll_time_scale
    to_deadline = batch["deadlineAt"] - _epoch()
    return _ceil_seconds(min(scaled, max(to_deadline, 0.0) + 1.0))


def check_batch(batch_id: str, time_left: TimeLeft, store: Store | None = None) -> Step:
    store = store or Store()
    batch = store.get_batch(batch_id)
    poll_count = int(batch.get("pollCount", 0))
    if BatchStatus(batch["status"]).is_terminal or batch.get("cancelRequested"):
        return Step(done=True, poll_count=poll_count)
    if _epoch() >= batch["deadlineAt"] or poll_count >= MAX_ROUNDS:
        store.update_batch(batch_id, set_={"deadlineReached": True})
        logger.info("deadline or round budget reached", extra={"polls": poll_count})
        return Step(done=True, poll_count=poll_count)

    provider = _provider_for(batch)
    chunks = store.list_chunks(batch_id)
    running = [c for c in chunks if c["state"] == ChunkState.RUNNING]
    reports = _check_chunks(batch, provider, running, time_left)

    retry_after: float | None = None
    transient: errors.BatchBridgeError | None = None
    wait_hint: float | None = None
    for chunk, result in zip(running, reports, strict=True):
        if isinstance(result, errors.ProviderThrottledError):
            retry_after = max(retry_after or 0.0, result.retry_after or 0.0)
            transient = transient or result
            continue
        if isinstance(result, errors.RETRYABLE_ERRORS):
            transient = transient or result
            continue
        if isinstance(result, errors.ProviderJobFailedError | errors.ResultsExpiredError):
            # This chunk's job is gone at the provider: it fails alone; collect records why.
            error = ErrorInfo(code=result.code, message=result.message)
            chunk["state"] = ChunkState.FAILED.value
            store.update_chunk(
                batch_id,
                chunk["index"],
                {"state": ChunkState.FAILED.value, "error": error.model_dump(), "finishedAt": now_iso()},
            )
            continue
        if isinstance(result, BaseException):
            raise result  # fail closed: unknown status, credentials, configuration
        if result is None:
            continue  # not checked this round (time budget)
        chunk["progress"] = result.progress
        if result.wait_hint_seconds:
            wait_hint = max(wait_hint or 0.0, result.wait_hint_seconds)
        update: dict[str, Any] = {"providerStatus": result.provider_status, "progress": result.progress}
        if result.state is not ChunkState.RUNNING:
            chunk["state"] = result.state.value
            update |= {
                "state": result.state.value,
                "finishedAt": now_iso(),
                "report": result.model_dump(mode="json"),
            }
            if result.error:
                update["error"] = result.error.model_dump()
        store.update_chunk(batch_id, chunk["index"], update)

    checked_any = any(isinstance(r, StatusReport) for r in reports)
    if running and not checked_any and transient is not None and retry_after is None:
        raise transient  # nothing could be checked: let the workflow's Retry back off

    still_running = [c for c in chunks if c["state"] == ChunkState.RUNNING]
    progress = _overall_progress(chunks)
    poll_count += 1
    if not still_running:
        store.update_batch(batch_id, set_={"progress": 100.0}, add={"pollCount": 1})
        return Step(done=True, poll_count=poll_count)

    state = polling.PollState.model_validate(batch.get("pollState") or {})
    started = _parse_time(batch.get("submittedAt") or batch["createdAt"])
    wait, state = polling.next_wait(
        state=state,
        elapsed=_policy_seconds(_epoch() - started),
        remaining=_policy_seconds(batch["deadlineAt"] - _epoch()),
        progress=progress,
        retry_after=retry_after,
        bounds=_bounds(batch, provider),
        seed=batch_id,
    )
    if wait_hint:
        wait = max(wait, min(wait_hint, _policy_seconds(batch["deadlineAt"] - _epoch())))
    store.update_batch(
        batch_id,
        set_={"progress": progress, "pollState": state.model_dump(), "status": BatchStatus.RUNNING.value},
        add={"pollCount": 1},
        only_if_not_terminal=True,
    )
    return Step(
        wait_seconds=_scaled_wait(wait, batch), poll_count=poll_count, callback=bool(batch.get("callbackUrl"))
    )


# --- callbacks ---------------------------------------------------------------------------------------
def park_for_callback(batch_id: str, task_token: str, store: Store | None = None) -> None:
    """Record the waiting workflow's task token. If a callback arrived first, resume at once.

    The token and the ``callbackPending`` flag are swapped atomically on both sides (here and in
    :func:`wake_for_callback`), so whichever comes second sees the other and resumes the workflow.
    """
    store = store or Store()
    old = store.swap_batch_attribute(
        batch_id, set_name="taskToken", set_value=task_token, remove="callbackPending"
    )
    if old.get("callbackPending") or BatchStatus(old.get("status", "RUNNING")).is_terminal:
        _resume(task_token)


def wake_for_callback(batch_id: str, store: Store | None = None) -> bool:
    """A confirmed callback: resume the waiting workflow now (its poll timeout stays the safety net)."""
    store = store or Store()
    old = store.swap_batch_attribute(batch_id, set_name="callbackPending", set_value=True, remove="taskToken")
    token = old.get("taskToken")
    return bool(token) and _resume(str(token))


def _resume(task_token: str) -> bool:
    from botocore.exceptions import ClientError

    from batchbridge import aws

    try:
        aws.client("stepfunctions").send_task_success(taskToken=task_token, output="{}")
    except ClientError as exc:
        # The wait already timed out (the poll ran) or another callback resumed it: nothing to do.
        if exc.response.get("Error", {}).get("Code") in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            return False
        raise
    return True


def _check_chunks(
    batch: dict[str, Any], provider: Provider, running: Sequence[dict[str, Any]], time_left: TimeLeft
) -> list[StatusReport | BaseException | None]:
    def one(chunk: dict[str, Any]) -> StatusReport | BaseException | None:
        if time_left() < SAFETY_MARGIN_SECONDS:
            return None
        try:
            return provider.check(_chunk_info(batch, chunk))
        except errors.BatchBridgeError as exc:
            return exc

    workers = max(1, min(provider.capabilities.max_concurrency, len(running)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, running))


def _overall_progress(chunks: Sequence[dict[str, Any]]) -> float | None:
    """Job-weighted percent complete; None while no running chunk reports progress."""
    total = sum(c["jobCount"] for c in chunks) or 1
    done = 0.0
    known = False
    for c in chunks:
        if c["state"] == ChunkState.RUNNING:
            if c.get("progress") is not None:
                known = True
                done += c["jobCount"] * float(c["progress"]) / 100.0
        else:
            done += c["jobCount"]
    return round(100.0 * done / total, 2) if known else None


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- collect ----------------------------------------------------------------------------------------
def collect_batch(
    batch_id: str, failure: Failure | None, time_left: TimeLeft, store: Store | None = None
) -> Step:
    store = store or Store()
    batch = store.get_batch(batch_id)
    if not BatchStatus(batch["status"]).is_terminal:
        store.update_batch(batch_id, set_={"status": BatchStatus.COLLECTING.value})
    reason = _abandon_reason(batch, failure)
    provider: Provider | None = None
    worked = False
    left = 0
    # One pass over the chunks, read a page at a time in index order: memory stays flat whatever the
    # chunk count. Every chunk worked on here ends COLLECTED or ABANDONED (or the call raises), so the
    # chunks left are those not reached in this call's time budget.
    for chunk in store.iter_chunks(batch_id):
        if chunk["state"] in DONE:
            continue
        if worked and time_left() < SAFETY_MARGIN_SECONDS:  # at least one chunk per call
            left += 1
            continue
        worked = True
        if chunk["state"] in (ChunkState.COMPLETED, ChunkState.FAILED) and chunk.get("providerRef"):
            provider = provider or _provider_for(batch)
            _collect_chunk(store, batch, provider, chunk)
        elif chunk["state"] == ChunkState.FAILED:  # refused at submit: every job failed with that error
            error = ErrorInfo.model_validate(chunk["error"])
            _write_chunk(
                store,
                batch,
                chunk,
                ChunkState.COLLECTED,
                _uniform(store, batch, chunk, OutcomeKind.FAILED, error),
            )
        else:
            if chunk["state"] == ChunkState.RUNNING:
                provider = provider or _try_provider(batch)
                _cancel_quietly(provider, batch, chunk)
            error = _left_over_error(store, batch, chunk, reason)
            _write_chunk(
                store,
                batch,
                chunk,
                ChunkState.ABANDONED,
                _uniform(store, batch, chunk, OutcomeKind.NOT_PROCESSED, error),
            )
    return Step(remaining=left, done=left == 0)


def _left_over_error(
    store: Store, batch: dict[str, Any], chunk: dict[str, Any], reason: tuple[str, str]
) -> ErrorInfo:
    """Why an unfinished chunk's jobs are not processed. A chunk still SUBMITTING was being sent when a
    run stopped (a crash or timeout the workflow did not retry): the provider may hold it, so it is not
    sent again and the batch is marked for a person (it ends NEEDS_ATTENTION, naming the chunk)."""
    if chunk["state"] != ChunkState.SUBMITTING:
        return ErrorInfo(code=reason[0], message=reason[1])
    batch["ambiguousChunk"] = chunk["index"]
    store.update_batch(batch["batchId"], set_={"ambiguousChunk": chunk["index"]})
    return ErrorInfo(
        code=errors.AmbiguousSubmitError.code,
        message=(
            f"chunk {chunk['index']} was being submitted when the batch stopped; the provider may have "
            "accepted it, so it was not sent again and this job's outcome is unknown"
        ),
    )


def _abandon_reason(batch: dict[str, Any], failure: Failure | None) -> tuple[str, str]:
    if batch.get("cancelRequested") or batch["status"] == BatchStatus.CANCELLED:
        return "CANCELLED", "the batch was cancelled before this job finished"
    if failure is not None:
        info = failure.info()
        return info.code, f"the batch stopped before this job finished: {info.message}"
    if batch.get("deadlineReached"):
        return "DEADLINE_EXCEEDED", "the batch deadline passed before the provider finished this job"
    return "NOT_PROCESSED", "the provider did not process this job"


def _try_provider(batch: dict[str, Any]) -> Provider | None:
    try:
        return _provider_for(batch)
    except errors.BatchBridgeError:
        return None


def _cancel_quietly(provider: Provider | None, batch: dict[str, Any], chunk: dict[str, Any]) -> None:
    if provider is None or not provider.capabilities.supports_cancel:
        return
    try:
        provider.cancel(_chunk_info(batch, chunk))
    except errors.BatchBridgeError as exc:
        logger.warning("cancel at provider failed", extra={"chunk": chunk["index"], "code": exc.code})


def _uniform(
    store: Store, batch: dict[str, Any], chunk: dict[str, Any], kind: OutcomeKind, error: ErrorInfo
) -> Iterator[Outcome]:
    jobs = store.get_json(chunk_jobs_key(batch["batchId"], chunk["index"]))
    for i, job in enumerate(jobs):
        yield Outcome(index=chunk["firstJob"] + i, client_ref=job.get("clientRef"), outcome=kind, error=error)


def _collect_chunk(store: Store, batch: dict[str, Any], provider: Provider, chunk: dict[str, Any]) -> None:
    jobs = store.get_json(chunk_jobs_key(batch["batchId"], chunk["index"]))
    report = StatusReport.model_validate(chunk["report"]) if chunk.get("report") else None
    try:
        outcomes = list_exactly_once(
            provider.collect(_chunk_info(batch, chunk), jobs, report), chunk["firstJob"], jobs
        )
        _write_chunk(store, batch, chunk, ChunkState.COLLECTED, outcomes)
    except (errors.ResultsExpiredError, errors.ProviderJobFailedError) as exc:
        # No per-record results can be had: whether the provider applied these jobs is unknown.
        error = ErrorInfo(code=exc.code, message=exc.message)
        # Recorded on the batch too, so a batch whose results are all gone says so, not "no job succeeded".
        store.update_batch(batch["batchId"], set_={"error": error.model_dump()})
        _write_chunk(
            store,
            batch,
            chunk,
            ChunkState.ABANDONED,
            _uniform(store, batch, chunk, OutcomeKind.NOT_PROCESSED, error),
        )


def list_exactly_once(
    outcomes: Iterable[Outcome], first: int, jobs: Sequence[dict[str, Any]]
) -> Iterator[Outcome]:
    """Guard the one-outcome-per-job promise whatever an adapter yields.

    Strays and repeats are dropped; gaps are filled with ``not_processed``.
    """
    expected = first
    end = first + len(jobs)
    for outcome in outcomes:
        if outcome.index != expected or outcome.index >= end:
            if expected <= outcome.index < end:
                yield from _gap(expected, outcome.index, first, jobs)
                expected = outcome.index
            else:
                logger.warning("adapter yielded an unexpected outcome", extra={"index": outcome.index})
                continue
        yield outcome
        expected += 1
    yield from _gap(expected, end, first, jobs)


def _gap(start: int, stop: int, first: int, jobs: Sequence[dict[str, Any]]) -> Iterator[Outcome]:
    for index in range(start, stop):
        yield Outcome(
            index=index,
            client_ref=jobs[index - first].get("clientRef"),
            outcome=OutcomeKind.NOT_PROCESSED,
            error=ErrorInfo(code="NO_RESULT", message="the provider returned no result for this job"),
        )


def _write_chunk(
    store: Store, batch: dict[str, Any], chunk: dict[str, Any], state: ChunkState, outcomes: Iterable[Outcome]
) -> dict[str, int]:
    """Write a chunk's outcomes and mark it ``state``; returns the counts it recorded on the chunk."""
    counts = Counts()

    def records() -> Iterator[dict[str, Any]]:
        for outcome in outcomes:
            counts.add(outcome.outcome)
            yield outcome.to_record()

    batch_id = batch["batchId"]
    # One pass over the outcomes feeds both sinks: rows are buffered by the batch writer (25 at a time)
    # while lines spool to a temporary file, so memory stays flat whatever the chunk size.
    store.put_lines(chunk_outcomes_key(batch_id, chunk["index"]), _tee_rows(store, batch_id, records()))
    recorded = counts.model_dump(by_alias=True)
    store.update_chunk(
        batch_id, chunk["index"], {"state": state.value, "counts": recorded, "collectedAt": now_iso()}
    )
    return recorded


def _tee_rows(store: Store, batch_id: str, records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    buffer: list[dict[str, Any]] = []
    for record in records:
        buffer.append(record)
        if len(buffer) >= 500:
            store.write_outcome_rows(batch_id, buffer)
            buffer = []
        yield record
    if buffer:
        store.write_outcome_rows(batch_id, buffer)


# --- finalize ---------------------------------------------------------------------------------------
def finalize_batch(batch_id: str, failure: Failure | None, store: Store | None = None) -> dict[str, Any]:
    from batchbridge.events import sns_message

    store = store or Store()
    batch = store.get_batch(batch_id)
    if BatchStatus(batch["status"]).is_terminal and batch.get("finishedAt"):
        return sns_message(batch)  # a retry after success: same event again

    # One pass over the chunks, read a page at a time: memory does not grow with their number (only the
    # list of chunk indexes does, a few bytes each).
    reason = _abandon_reason(batch, failure)
    counts = Counts()
    indexes: list[int] = []
    for chunk in store.iter_chunks(batch_id):
        if chunk["state"] not in DONE:  # collect could not finish: every job still gets exactly one outcome
            why = _left_over_error(store, batch, chunk, reason)
            chunk["counts"] = _write_chunk(
                store,
                batch,
                chunk,
                ChunkState.ABANDONED,
                _uniform(store, batch, chunk, OutcomeKind.NOT_PROCESSED, why),
            )
        indexes.append(chunk["index"])
        part = Counts.model_validate(chunk.get("counts") or {})
        counts.succeeded += part.succeeded
        counts.failed += part.failed
        counts.not_processed += part.not_processed
        counts.total += part.total
    if indexes:
        store.concat_objects((chunk_outcomes_key(batch_id, i) for i in indexes), results_key(batch_id))
    else:
        store.put_lines(results_key(batch_id), [])

    status, error = _final_status(batch, failure, counts)
    finished = now_iso()
    duration = round(_parse_time(finished) - _parse_time(batch["createdAt"]), 3)
    polls = int(batch.get("pollCount", 0))
    values: dict[str, Any] = {
        "status": status.value,
        "counts": counts.model_dump(by_alias=True),
        "resultsKey": results_key(batch_id),
        "finishedAt": finished,
        "durationSeconds": duration,
        "estimatedCostUsd": polling.estimated_cost_usd(estimated_transitions(polls, len(indexes))),
    }
    if error is not None:
        values["error"] = error.model_dump()
    try:
        batch = store.update_batch(batch_id, set_=values, only_if_not_terminal=True)
    except errors.InvalidStateError:
        batch = store.get_batch(batch_id)  # cancelled meanwhile: its own status stands
    logger.info("batch finished", extra={"status": batch["status"], "counts": batch.get("counts")})
    return sns_message(batch)


def _final_status(
    batch: dict[str, Any], failure: Failure | None, counts: Counts
) -> tuple[BatchStatus, ErrorInfo | None]:
    recorded = ErrorInfo.model_validate(batch["error"]) if batch.get("error") else None
    if batch.get("cancelRequested"):
        return BatchStatus.CANCELLED, recorded
    if failure is not None:
        info = failure.info()
        if failure.error == errors.AmbiguousSubmitError.__name__:
            return BatchStatus.NEEDS_ATTENTION, info
    if batch.get("ambiguousChunk") is not None:  # a run stopped while a chunk was being sent
        message = (
            f"chunk {batch['ambiguousChunk']} may have been accepted by the provider; it was not sent again"
        )
        if failure is not None:
            message += f" (the run stopped: {failure.info().message})"
        return BatchStatus.NEEDS_ATTENTION, ErrorInfo(
            code=errors.AmbiguousSubmitError.code, message=message[:1000]
        )
    if failure is not None:
        return BatchStatus.FAILED, failure.info()
    if batch.get("deadlineReached"):
        return BatchStatus.TIMED_OUT, ErrorInfo(
            code="DEADLINE_EXCEEDED", message="the batch deadline passed before the provider finished"
        )
    if counts.total and counts.succeeded == counts.total:
        return BatchStatus.SUCCEEDED, None
    if counts.succeeded == 0:
        return BatchStatus.FAILED, recorded or ErrorInfo(code="ALL_JOBS_FAILED", message="no job succeeded")
    return BatchStatus.PARTIALLY_SUCCEEDED, recorded


def estimated_transitions(polls: int, chunks: int) -> int:
    """State transitions one execution used, from the shape of the state machine (see polling.py)."""
    submit_rounds = max(1, chunks)  # at worst one Submit + Choice per chunk
    return 2 * submit_rounds + polling.TRANSITIONS_PER_POLL * polls + 2 * max(1, chunks) + 4
