"""Submit: send each chunk to the provider exactly once.

A chunk is claimed (PENDING -> SUBMITTING, in one transaction with "the batch is open and not cancelled")
before it is sent, and what the provider answered decides where it goes:

==============================================  ===========================================================
the answer                                      the chunk
==============================================  ===========================================================
a reference                                     RUNNING, the reference recorded
429 (with or without Retry-After)               PENDING again: the workflow waits (as long as asked) or its
                                                Retry backs off, then sends it again
never sent (connection refused), not ready      PENDING again, likewise
a documented refusal of the chunk               FAILED: each of its jobs fails with the provider's error
credentials or configuration refused            PENDING again, and the task fails (nothing was taken)
anything else after the request went out        the provider is asked whether it holds the chunk
(5xx, timeout, dropped, cut short, malformed)   (``find_submission``); RUNNING if it does, else
                                                UNCONFIRMED: never sent again, and the batch ends
                                                NEEDS_ATTENTION naming the chunk
==============================================  ===========================================================

A chunk found SUBMITTING whose claim has lapsed (its submitter stopped mid-call) is treated like the
last row. Chunks are sent in index order; ``submit_cursor`` remembers where the settled ones end.
"""

from __future__ import annotations

import secrets

import httpx

from batchbridge import errors, polling
from batchbridge.models import BatchStatus, ChunkState, ErrorInfo
from batchbridge.observability import logger
from batchbridge.providers.base import Provider
from batchbridge.records import Batch, Chunk
from batchbridge.repository import Claim
from batchbridge.tasks import MAX_ROUNDS, SAFETY_MARGIN_SECONDS, Deps, Step, TimeLeft
from batchbridge.tasks.chunks import chunk_info, prepare, read_jobs
from batchbridge.tasks.timing import bounds, first_wait_state, policy_seconds, scaled_wait

#: What a submit may raise when the request went out and nothing proves the provider did not take it.
UNCONFIRMED = (errors.SubmitUnconfirmedError, httpx.TransportError, errors.ProviderResponseError)


def submit_batch(batch_id: str, time_left: TimeLeft, deps: Deps | None = None) -> Step:
    deps = deps or Deps.default()
    batch = deps.repo.get_batch(batch_id)
    if batch.status.is_terminal or batch.cancel_requested:
        return Step(done=True, poll_count=batch.rounds)
    provider = deps.providers(batch)
    if batch.status is BatchStatus.ACCEPTED:
        started = deps.repo.start_submitting(batch_id, _callback_fields(deps, batch, provider))
        if started is None:  # cancelled (or finished) since it was read
            return Step(done=True, poll_count=batch.rounds)
        batch = started
    if batch.status is not BatchStatus.SUBMITTING:
        return Step(done=True, poll_count=batch.rounds)  # a retry after every chunk was settled
    batch = prepare(deps, batch, provider.capabilities.max_jobs_per_submit)

    counted = deps.repo.add_round(batch_id)
    if counted is None:
        return Step(done=True, poll_count=batch.rounds)
    batch = counted
    if deps.clock() >= batch.deadline_at or batch.rounds >= MAX_ROUNDS:
        deps.repo.mark_deadline_reached(batch_id)
        return Step(done=True, poll_count=batch.rounds)

    wait = 0.0
    cursor = batch.submit_cursor
    sent = 0
    for chunk in deps.repo.iter_chunks(batch_id, start=cursor):
        if chunk.state is ChunkState.SUBMITTING:
            if not _take_over_lapsed_claim(deps, batch, provider, chunk):
                return Step(remaining=1, wait_seconds=_lease_wait(deps, chunk), poll_count=batch.rounds)
            chunk = deps.repo.get_chunk(batch_id, chunk.index)
        if chunk.state is ChunkState.PENDING:
            if sent and time_left() < SAFETY_MARGIN_SECONDS:  # at least one per call: rounds stay bounded
                break
            outcome = _submit_chunk(deps, batch, provider, chunk)
            if outcome == "closed":
                return Step(done=True, poll_count=batch.rounds)  # cancelled: the cancel run settles it
            if isinstance(outcome, float):
                wait = outcome
                break
            sent += 1
        cursor = chunk.index + 1
        deps.repo.advance_submit_cursor(batch_id, cursor)

    if cursor < batch.chunk_count:
        remaining = batch.chunk_count - cursor
        waited = scaled_wait(deps, wait, batch) if wait else 0
        return Step(remaining=remaining, wait_seconds=waited, poll_count=batch.rounds)
    return _all_submitted(deps, batch, provider)


def _all_submitted(deps: Deps, batch: Batch, provider: Provider) -> Step:
    wait, state = first_wait_state(deps, batch, provider)
    running = deps.repo.mark_running(batch.batch_id, state)
    if running is None:  # cancelled or finished meanwhile
        return Step(done=True, poll_count=batch.rounds)
    return Step(
        wait_seconds=scaled_wait(deps, wait, running),
        poll_count=running.rounds,
        callback=running.callback_expected,
    )


def _callback_fields(deps: Deps, batch: Batch, provider: Provider) -> dict[str, str]:
    """An unguessable per-batch callback URL, when the provider calls back and the API is reachable.

    The base is the configured ``CALLBACK_BASE_URL`` or else the API's own URL as the api function saw it.
    """
    base = (deps.settings.callback_base_url or batch.api_base_url or "").rstrip("/")
    if not (base and provider.capabilities.supports_callback):
        return {}
    token = secrets.token_urlsafe(32)
    return {"callbackToken": token, "callbackUrl": f"{base}/callbacks/{batch.batch_id}/{token}"}


def _submit_chunk(deps: Deps, batch: Batch, provider: Provider, chunk: Chunk) -> str | float | None:
    """Claim and send one chunk. Returns ``"closed"`` when the batch was cancelled (nothing sent), a wait
    in seconds when the provider asked to be given time, else None."""
    repo, batch_id, index = deps.repo, batch.batch_id, chunk.index
    claim = repo.claim_chunk(batch_id, index, lease_until=deps.clock() + deps.settings.claim_lease_seconds)
    if claim is Claim.CLOSED:
        return "closed"
    if claim is Claim.TAKEN:
        return None  # another attempt owns it
    jobs = [job.value for job in read_jobs(deps, batch, chunk)]
    try:
        ref = provider.submit(chunk_info(batch, chunk), jobs)
    except errors.ProviderThrottledError as exc:
        # "Not accepted, come back later": safe to send again. When the provider said how much later, the
        # workflow waits exactly that (a Wait state, within the deadline); otherwise its Retry backs off.
        repo.release_chunk(batch_id, index)
        if exc.retry_after:
            logger.info("provider throttled the submit", extra={"chunk": index, "wait": exc.retry_after})
            return float(exc.retry_after)
        raise
    except errors.ProviderNotReadyError as exc:
        repo.release_chunk(batch_id, index)
        logger.info("provider not ready", extra={"chunk": index, "wait": exc.wait_seconds})
        return float(exc.wait_seconds)
    except errors.BatchRejectedError as exc:
        error = ErrorInfo(code=exc.code, message=exc.message)
        logger.warning("chunk rejected", extra={"chunk": index, "code": exc.code})
        repo.reject_chunk(batch_id, index, error)
        repo.record_error(batch_id, error)
        return None
    except UNCONFIRMED as exc:
        # The request went out and no answer proves whether the provider took it.
        if _reconcile(deps, batch, provider, chunk):
            return None
        repo.mark_unconfirmed(batch_id, index)
        repo.add_ambiguous_chunk(batch_id, index)
        raise errors.AmbiguousSubmitError(
            f"chunk {index} of batch {batch_id}: the provider's answer to the submit did not say whether it "
            f"took it ({type(exc).__name__}); it may have, so it is not sent again"
        ) from exc
    except errors.BatchBridgeError:
        # Never sent (ProviderUnavailableError: the connection failed before the request), or an explicit
        # refusal of credentials or configuration: nothing was taken.
        repo.release_chunk(batch_id, index)
        raise
    _record(deps, batch, provider, chunk, ref)
    return None


def _record(
    deps: Deps, batch: Batch, provider: Provider, chunk: Chunk, ref: str, *, reconciled: bool = False
) -> None:
    """Record the provider's reference. If the chunk's claim had been settled meanwhile (its lease lapsed
    and it was taken as ambiguous, or a cancel settled it), the reference is still kept on the chunk and
    named in the batch's error, and the provider is asked to cancel it where it can."""
    batch_id, index = batch.batch_id, chunk.index
    if deps.repo.record_submission(batch_id, index, ref, reconciled=reconciled) is not None:
        return
    deps.repo.record_late_reference(batch_id, index, ref)
    cancelled = _try_cancel(provider, batch, chunk.model_copy(update={"provider_ref": ref}))
    message = (
        f"chunk {index} was accepted by the provider as {ref!r} after it had been settled without that "
        f"answer; {'the provider cancelled it' if cancelled else 'check it at the provider'}"
    )
    deps.repo.add_ambiguous_chunk(batch_id, index)
    deps.repo.record_error(batch_id, ErrorInfo(code=errors.AmbiguousSubmitError.code, message=message))
    raise errors.AmbiguousSubmitError(f"batch {batch_id}: {message}")


def _try_cancel(provider: Provider, batch: Batch, chunk: Chunk) -> bool:
    if not provider.capabilities.supports_cancel:
        return False
    try:
        return bool(provider.cancel(chunk_info(batch, chunk)))
    except errors.BatchBridgeError as exc:
        logger.warning("cancel at the provider failed", extra={"chunk": chunk.index, "code": exc.code})
        return False


def _reconcile(deps: Deps, batch: Batch, provider: Provider, chunk: Chunk) -> bool:
    """Ask the provider whether it holds a chunk whose submit may or may not have arrived. True when it
    named the chunk's reference and that was recorded; False when it cannot tell."""
    try:
        ref = provider.find_submission(chunk_info(batch, chunk))
    except (errors.BatchBridgeError, httpx.HTTPError) as exc:
        logger.warning(
            "could not look the chunk up at the provider",
            extra={"chunk": chunk.index, "error": type(exc).__name__},
        )
        return False
    if ref is None:
        return False
    _record(deps, batch, provider, chunk, ref, reconciled=True)
    logger.info("the provider already held the chunk; recorded", extra={"chunk": chunk.index})
    return True


def _take_over_lapsed_claim(deps: Deps, batch: Batch, provider: Provider, chunk: Chunk) -> bool:
    """A chunk left SUBMITTING: if its claim has lapsed, its submitter stopped mid-call and the provider may
    hold it. Reconcile, else mark it UNCONFIRMED and fail the task. False while the claim is live."""
    if (chunk.claim_expires_at or 0) > deps.clock():
        return False
    if _reconcile(deps, batch, provider, chunk):
        return True
    if deps.repo.mark_unconfirmed(batch.batch_id, chunk.index, claim_expired_by=deps.clock()) is None:
        return True  # it moved meanwhile: read it again
    deps.repo.add_ambiguous_chunk(batch.batch_id, chunk.index)
    raise errors.AmbiguousSubmitError(
        f"chunk {chunk.index} of batch {batch.batch_id} was being submitted when an earlier attempt stopped; "
        "the provider may have accepted it, so it is not sent again"
    )


def _lease_wait(deps: Deps, chunk: Chunk) -> int:
    """Seconds until a live claim lapses (at least one)."""
    return max(1, int((chunk.claim_expires_at or 0) - deps.clock()) + 1)


__all__ = ["bounds", "policy_seconds", "polling", "submit_batch"]
