"""How the tasks turn the polling policy's answers into the workflow's waits."""

from __future__ import annotations

import math
from typing import Any

from batchbridge import polling
from batchbridge.clock import parse_iso
from batchbridge.observability import logger
from batchbridge.providers.base import Provider
from batchbridge.records import Batch
from batchbridge.tasks import Deps


def bounds(batch: Batch, provider: Provider) -> polling.PollBounds:
    caps = provider.capabilities
    override = batch.options.get("pollIntervalSeconds")
    low = max(caps.min_poll_seconds, float(override)) if override else caps.min_poll_seconds
    return polling.PollBounds(min_seconds=min(low, caps.max_poll_seconds), max_seconds=caps.max_poll_seconds)


def policy_seconds(deps: Deps, real: float) -> float:
    """Real seconds as the policy should see them: under a time scale (the local runtime) the policy
    reasons in provider time, and :func:`scaled_wait` scales its answer back."""
    return real / deps.settings.poll_time_scale


def scaled_wait(deps: Deps, seconds: float, batch: Batch) -> int:
    """Apply the time scale, and never wait past the deadline by more than the one second Wait allows."""
    scaled = seconds * deps.settings.poll_time_scale
    to_deadline = batch.deadline_at - deps.clock()
    return max(1, math.ceil(min(scaled, max(to_deadline, 0.0) + 1.0)))


def first_wait_state(deps: Deps, batch: Batch, provider: Provider) -> tuple[float, dict[str, Any]]:
    """The policy's first wait once every chunk is submitted, and the state it keeps."""
    wait, state = polling.next_wait(
        state=polling.PollState(),
        elapsed=0.0,
        remaining=policy_seconds(deps, batch.deadline_at - deps.clock()),
        progress=None,
        retry_after=None,
        bounds=bounds(batch, provider),
        seed=batch.batch_id,
        history=history(deps, batch),
    )
    return wait, state.model_dump()


def history(deps: Deps, batch: Batch) -> polling.DurationHistory | None:
    """What the connection's finished batches taught the policy; advisory: None when it cannot be read."""
    try:
        return deps.repo.get_connection_history(batch.connection)[0]
    except Exception:
        logger.warning("could not read the connection's polling history", exc_info=True)
        return None


def learn(deps: Deps, batch: Batch) -> None:
    """Teach the connection's history how long this batch ran (it finished on its own); best effort."""
    state = polling.PollState.model_validate(batch.poll_state or {})
    finished_by = policy_seconds(deps, deps.clock() - parse_iso(batch.submitted_at or batch.created_at))
    try:
        for _ in range(2):  # another batch of the connection may save first: read again, learn once more
            known, version = deps.repo.get_connection_history(batch.connection)
            taught = polling.learn(known, state=state, finished_by=finished_by)
            if deps.repo.save_connection_history(batch.connection, taught, version=version):
                return
    except Exception:
        logger.warning("could not save the connection's polling history", exc_info=True)
