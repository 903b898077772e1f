"""Finalize: settle whatever collect left, join the results files, record the terminal status once, and
build the completion event.

The results files are joined by the collect loop (tasks/join.py); finalize finishes a join collect could
not (a failure path).
"""

from __future__ import annotations

from typing import Any

from batchbridge import cost, errors
from batchbridge.clock import now_iso, parse_iso
from batchbridge.events import sns_message
from batchbridge.models import BatchStatus, ChunkState, Counts, ErrorInfo, OutcomeKind
from batchbridge.objects import results_key
from batchbridge.observability import logger
from batchbridge.records import Batch
from batchbridge.tasks import Deps, Failure
from batchbridge.tasks.collect import Settler
from batchbridge.tasks.join import ALL, join, targets

_PREFIXES = {kind: f'{{"outcome":"{kind.value}"'.encode() for kind in OutcomeKind}


def finalize_batch(batch_id: str, failure: Failure | None, deps: Deps | None = None) -> dict[str, Any]:
    deps = deps or Deps.default()
    batch = deps.repo.get_batch(batch_id)
    if batch.status.is_terminal and batch.finished_at:
        return sns_message(batch, deps.settings) | {"finishedNow": False}  # a retry, or another run

    settler = Settler(deps, batch, failure, quick=True)
    counts = Counts()
    indexes: list[int] = []
    left_running: list[str] = []  # chunks the provider had taken when the batch stopped short of them
    for chunk in deps.repo.iter_chunks(batch_id):
        if not chunk.state.is_settled:  # collect could not finish: every job still gets one outcome
            settler.settle(chunk)
            chunk = deps.repo.get_chunk(batch_id, chunk.index)
        indexes.append(chunk.index)
        if chunk.state is ChunkState.ABANDONED and chunk.provider_ref:
            what = "no cancel sent"
            if chunk.cancel is not None:
                what = "cancel confirmed" if chunk.cancel.confirmed else "cancel not confirmed"
            left_running.append(f"chunk {chunk.index} ({chunk.provider_ref}: {what})")
        part = chunk.counts or Counts()
        counts.succeeded += part.succeeded
        counts.failed += part.failed
        counts.not_processed += part.not_processed
        counts.total += part.total
    while not join(deps, deps.repo.get_batch(batch_id), lambda: float("inf")):  # collect could not finish it
        pass
    keys = {name: key for name, key in targets(batch_id).items() if name != ALL}

    # This invocation's own usage, and what is left after it: this finish write and the completion event's
    # claim (one unit each), and the publish.
    own = cost.combined(
        cost.close_invocation("finalize", {}), {cost.DDB_WRITE_UNITS: 2, cost.SNS_PUBLISHES: 1}
    )
    for _ in range(2):  # read again once if a cancel landed since: its status then wins
        batch = deps.repo.get_batch(batch_id)
        if batch.status.is_terminal:
            return sns_message(batch, deps.settings) | {"finishedNow": False}
        status, error = final_status(batch, failure, counts, left_running)
        finished = now_iso()
        values: dict[str, Any] = {
            "counts": counts.model_dump(by_alias=True),
            "resultsKey": results_key(batch_id),
            "outcomeKeys": keys,
            "durationSeconds": round(parse_iso(finished) - parse_iso(batch.created_at), 3),
        }
        if error is not None:
            values["error"] = error.model_dump()
        values["usage"] = cost.combined(batch.usage, own)
        values["cost"] = cost.price(values["usage"]) | {"final": True}
        done = deps.repo.finish(batch_id, status, values)
        if done is not None:
            logger.info("batch finished", extra={"status": done.status, "counts": values["counts"]})
            return sns_message(done, deps.settings) | {"finishedNow": True}
    raise errors.ProviderUnavailableError(f"batch {batch_id} kept changing while being finalized; retry")


def final_status(
    batch: Batch, failure: Failure | None, counts: Counts, left_running: list[str] | None = None
) -> tuple[BatchStatus, ErrorInfo | None]:
    """The terminal status the outcomes and the run's history call for, and the error it carries.
    ``left_running`` names the chunks the provider had taken when the batch stopped short of them."""
    recorded = batch.error
    ambiguous = sorted(set(batch.ambiguous_chunks))
    if ambiguous or (failure is not None and failure.ambiguous_submit):
        named = ", ".join(str(i) for i in ambiguous) or "?"
        message = (
            f"chunk{'s' if len(ambiguous) > 1 else ''} {named} may have been taken by the provider although "
            "no answer said so; not sent again: check at the provider"
        )
        if recorded is not None and recorded.code == errors.AmbiguousSubmitError.code:
            message = recorded.message
        if failure is not None and not failure.ambiguous_submit:
            message += f" (the run stopped: {failure.info().message})"
        return BatchStatus.NEEDS_ATTENTION, ErrorInfo(
            code=errors.AmbiguousSubmitError.code, message=message[:1000]
        )
    if batch.cancel_requested:
        message = "the batch was cancelled"
        if left_running:
            message += "; the provider had taken " + ", ".join(left_running)
        return BatchStatus.CANCELLED, ErrorInfo(code="CANCELLED", message=message[:1000])
    if failure is not None:
        return BatchStatus.FAILED, failure.info()
    if batch.deadline_reached:
        return BatchStatus.TIMED_OUT, ErrorInfo(
            code="DEADLINE_EXCEEDED", message="the batch deadline passed before the provider finished"
        )
    if counts.total and counts.succeeded == counts.total:
        return BatchStatus.SUCCEEDED, None
    if counts.succeeded == 0:
        return BatchStatus.FAILED, recorded or ErrorInfo(code="ALL_JOBS_FAILED", message="no job succeeded")
    return BatchStatus.PARTIALLY_SUCCEEDED, recorded
