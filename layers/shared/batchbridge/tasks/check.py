"""Check: ask the provider how each running chunk stands, once, and say how long to wait before asking again.

Chunks are checked a few at a time (the provider's declared concurrency) within the invocation's time
budget; each report is recorded by a conditional write from RUNNING, so a chunk that a cancel or a retry
settled meanwhile is left alone. A throttled check honours Retry-After; if nothing could be checked for
transient reasons the task fails and the workflow's Retry backs off; an unknown status fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from batchbridge import errors, polling
from batchbridge.clock import parse_iso
from batchbridge.models import ChunkState, ErrorInfo
from batchbridge.observability import logger
from batchbridge.providers.base import Provider, StatusReport
from batchbridge.records import Batch, Chunk
from batchbridge.tasks import MAX_ROUNDS, SAFETY_MARGIN_SECONDS, Deps, Step, TimeLeft
from batchbridge.tasks.chunks import chunk_info
from batchbridge.tasks.timing import bounds, history, learn, policy_seconds, scaled_wait

Result = StatusReport | errors.BatchBridgeError | None


def check_batch(batch_id: str, time_left: TimeLeft, deps: Deps | None = None) -> Step:
    deps = deps or Deps.default()
    batch = deps.repo.get_batch(batch_id)
    if batch.status.is_terminal or batch.cancel_requested:
        return Step(done=True, poll_count=batch.rounds)
    if deps.clock() >= batch.deadline_at or batch.rounds >= MAX_ROUNDS:
        deps.repo.mark_deadline_reached(batch_id)
        logger.info("deadline or round budget reached", extra={"rounds": batch.rounds})
        return Step(done=True, poll_count=batch.rounds)

    provider = deps.providers(batch)
    chunks = list(deps.repo.iter_chunks(batch_id))
    # The longest unchecked first: when the time budget cannot reach every running chunk in one round,
    # the next round starts with the ones this round left out.
    running = sorted((c for c in chunks if c.state is ChunkState.RUNNING), key=lambda c: c.checked_at or "")
    results = _check(batch, provider, running, time_left)

    retry_after: float | None = None
    transient: errors.BatchBridgeError | None = None
    wait_hint: float | None = None
    states = {c.index: c.state for c in chunks}
    for chunk, result in zip(running, results, strict=True):
        if isinstance(result, errors.ProviderThrottledError):
            retry_after = max(retry_after or 0.0, result.retry_after or 0.0)
            transient = transient or result
        elif isinstance(result, errors.RETRYABLE_ERRORS):
            transient = transient or result
        elif isinstance(result, errors.ProviderJobFailedError | errors.ResultsExpiredError):
            # This chunk's job is gone at the provider: it fails alone; collect records why.
            error = ErrorInfo(code=result.code, message=result.message)
            if deps.repo.record_status(batch_id, chunk.index, ChunkState.FAILED, error=error) is not None:
                states[chunk.index] = ChunkState.FAILED
        elif isinstance(result, BaseException):
            raise result  # fail closed: unknown status, credentials, configuration
        elif result is not None:
            if result.wait_hint_seconds:
                wait_hint = max(wait_hint or 0.0, result.wait_hint_seconds)
            recorded = deps.repo.record_status(
                batch_id,
                chunk.index,
                result.state,
                provider_status=result.provider_status,
                progress=result.progress,
                report=result.model_dump(mode="json"),
                error=result.error,
            )
            if recorded is not None:
                states[chunk.index] = recorded.state
                chunk.progress = recorded.progress

    checked_none = not any(isinstance(r, StatusReport) for r in results)
    if running and transient is not None and checked_none and retry_after is None:
        raise transient  # nothing could be checked: let the workflow's Retry back off

    progress = _overall_progress(chunks, states)
    if not any(state is ChunkState.RUNNING for state in states.values()):
        recorded_poll = deps.repo.record_poll(batch_id, progress=100.0, poll_state=None)
        if recorded_poll is not None:  # it finished on its own (not cancelled, not past its deadline)
            learn(deps, batch)
        return Step(done=True, poll_count=(recorded_poll or batch).rounds)

    wait, state = polling.next_wait(
        state=polling.PollState.model_validate(batch.poll_state or {}),
        elapsed=policy_seconds(deps, deps.clock() - parse_iso(batch.submitted_at or batch.created_at)),
        remaining=policy_seconds(deps, batch.deadline_at - deps.clock()),
        progress=progress,
        retry_after=retry_after,
        bounds=bounds(batch, provider),
        seed=batch_id,
        history=history(deps, batch),
    )
    if wait_hint:
        wait = max(wait, min(wait_hint, policy_seconds(deps, batch.deadline_at - deps.clock())))
    polled = deps.repo.record_poll(batch_id, progress=progress, poll_state=state.model_dump())
    if polled is None:  # finished or collecting meanwhile (a cancel)
        return Step(done=True, poll_count=batch.rounds)
    return Step(
        wait_seconds=scaled_wait(deps, wait, polled),
        poll_count=polled.rounds,
        callback=polled.callback_expected,
    )


def _check(batch: Batch, provider: Provider, running: Sequence[Chunk], time_left: TimeLeft) -> list[Result]:
    def one(chunk: Chunk) -> Result:
        if time_left() < SAFETY_MARGIN_SECONDS:
            return None  # not checked this round (time budget)
        try:
            return provider.check(chunk_info(batch, chunk))
        except errors.BatchBridgeError as exc:
            return exc

    if not running:
        return []
    workers = max(1, min(provider.capabilities.max_concurrency, len(running)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, running))


def _overall_progress(chunks: Sequence[Chunk], states: dict[int, ChunkState]) -> float | None:
    """Job-weighted percent complete; None while no running chunk reports progress."""
    total = sum(c.job_count for c in chunks) or 1
    done = 0.0
    known = False
    for c in chunks:
        if states[c.index] is ChunkState.RUNNING:
            if c.progress is not None:
                known = True
                done += c.job_count * float(c.progress) / 100.0
        elif states[c.index] is not ChunkState.PENDING:
            done += c.job_count
    return round(100.0 * done / total, 2) if known else None
