"""The callback fast path: a workflow parked on a task token, and the provider's callback that wakes it.

Only a confirmed callback wakes the workflow: one the provider, asked, says is about a chunk that has
finished. An unconfirmed callback (a duplicate, a late one, one naming no chunk the provider confirms)
is answered and otherwise ignored, so callbacks can never cost more than the polling they replace: each
wake is a round that records a finished chunk, and the provider is asked on behalf of callbacks at most
once per its minimum poll interval.
"""

from __future__ import annotations

import hmac
from typing import Any

from batchbridge import errors
from batchbridge.models import ChunkState
from batchbridge.observability import logger
from batchbridge.tasks import Deps

#: Chunks a callback that names none may have checked on its behalf.
UNNAMED_CHECKS = 4


def park_for_callback(batch_id: str, task_token: str, deps: Deps | None = None) -> None:
    """Record the waiting workflow's task token. If a confirmed callback arrived first, resume at once.

    The token and the ``callbackPending`` flag are swapped atomically on both sides (here and in
    :func:`wake`), so whichever comes second sees the other and resumes the workflow.
    """
    deps = deps or Deps.default()
    before = deps.repo.park_for_callback(batch_id, task_token)
    if before.callback_pending or before.status.is_terminal or before.cancel_requested:
        deps.workflow.resume(task_token)


def wake(batch_id: str, deps: Deps) -> bool:
    """Resume the waiting workflow now (its poll timeout stays the safety net)."""
    before = deps.repo.wake_for_callback(batch_id)
    return bool(before.task_token) and deps.workflow.resume(before.task_token or "")


def receive(batch_id: str, token: str, body: Any, deps: Deps | None = None) -> dict[str, Any]:
    """A provider's completion callback, authenticated by the batch's unguessable token (an unknown
    batch or a wrong token: :class:`errors.BatchNotFoundError`, answered 404 with nothing revealed).

    Returns ``{"accepted": bool, "reason"?: str}``; never raises for a callback that is merely late,
    repeated, unconfirmed or malformed.
    """
    # The API's side alone, which asks the provider: the await task, which imports this module to park,
    # never talks to a provider, and does not load the provider machinery chunk_info brings.
    from batchbridge.tasks.chunks import chunk_info

    deps = deps or Deps.default()
    try:
        batch = deps.repo.get_batch(batch_id)
    except errors.BatchNotFoundError:
        raise errors.BatchNotFoundError("no such callback") from None
    expected = batch.callback_token or ""
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
        raise errors.BatchNotFoundError("no such callback")
    if batch.status.is_terminal or batch.cancel_requested:
        return {"accepted": False, "reason": "the batch has finished"}
    provider = deps.providers(batch)
    now = deps.clock()
    interval = provider.capabilities.min_poll_seconds * deps.settings.poll_time_scale
    if not deps.repo.claim_callback_check(batch_id, now, not_before=now - interval):
        return {"accepted": False, "reason": "the provider was asked on behalf of a callback moments ago"}
    ref = provider.callback_ref(body)
    running = [c for c in deps.repo.iter_chunks(batch_id) if c.state is ChunkState.RUNNING]
    if ref is not None:
        running = [c for c in running if c.provider_ref == ref]
        if not running:
            return {"accepted": False, "reason": "no running chunk has that reference"}
    confirmed = False
    for chunk in running[:UNNAMED_CHECKS]:
        try:
            confirmed = provider.confirm_callback(chunk_info(batch, chunk), body)
        except errors.BatchBridgeError as exc:
            logger.info("could not confirm a callback", extra={"chunk": chunk.index, "code": exc.code})
        if confirmed:
            break
    if not confirmed:
        return {"accepted": False, "reason": "the provider does not confirm it"}
    resumed = wake(batch_id, deps)
    logger.info("callback received", extra={"batch_id": batch_id, "resumed": resumed})
    return {"accepted": True}
