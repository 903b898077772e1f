"""The batch metrics the operations dashboard reads: batches accepted, and batches finished with how long
they took, how many rounds and how much they cost.

Every metric is in the ``BatchBridge`` namespace, as CloudWatch embedded metric format (EMF) documents
printed to the function's log, and carries few, bounded dimensions, because each distinct combination of
dimension values is a custom metric CloudWatch bills by the month:

- ``service``: always ``batchbridge``, as on every BatchBridge metric (the alarms filter on it).
- ``provider``: a registered provider name (four today). The API refuses any other before a batch exists,
  and :func:`batch_finished` checks it again, so a value from anywhere else never becomes a metric.
- ``status``: one of the six terminal statuses, on ``BatchesFinished`` only.

Never a batch id, a connection or a client reference: those grow without bound (connections are named by
whoever creates the secrets). The batch id rides in each document as EMF metadata instead, which is not a
dimension: it costs nothing in metrics and lets a Logs Insights query find the document of one batch.

``BatchesFinished`` is counted by ``provider`` and ``status`` (at most 24 metrics); the values per batch
(time to finish, rounds, estimated cost, jobs by outcome) by ``provider`` alone (at most 4 each), since a
finished batch's status is already counted and splitting every value by it would multiply the bill by six.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from batchbridge.models import BatchStatus
from batchbridge.observability import logger
from batchbridge.providers import ADAPTER_MODULES

NAMESPACE: Final = "BatchBridge"
SERVICE: Final = "batchbridge"

BATCHES_ACCEPTED: Final = "BatchesAccepted"
BATCHES_FINISHED: Final = "BatchesFinished"
BATCH_DURATION: Final = "BatchDurationSeconds"
BATCH_ROUNDS: Final = "BatchRounds"
BATCH_COST: Final = "BatchEstimatedCostUsd"
#: Jobs of finished batches, by outcome: the completion event's ``counts`` key -> metric name.
JOBS: Final = {"succeeded": "JobsSucceeded", "failed": "JobsFailed", "notProcessed": "JobsNotProcessed"}


def _never_fails_the_work[**P](record: Callable[P, None]) -> Callable[P, None]:
    """A metric is never worth failing what it measures. These run after the work is done and recorded:
    an error escaping from the api handler would answer 500 to a batch that was accepted (and a client
    retrying without an Idempotency-Key would double it), and one escaping from the finalize task would
    make the workflow take its finalize-failed path for a batch that finished. So any error here is
    logged, the metric is lost, and the work goes on."""

    @functools.wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception as exc:  # deliberately every error: see above
            logger.warning(
                "metric not recorded", extra={"metric": record.__name__, "error": type(exc).__name__}
            )

    return guarded


@_never_fails_the_work
def batch_accepted(status: int, answer: Mapping[str, Any]) -> None:
    """Count one ``BatchesAccepted`` (dimensions ``service``, ``provider``) for a batch the API created.

    ``status`` and ``answer`` are what :func:`batchbridge.api.create_batch` returned. Only a 202 is a new
    batch: a replayed Idempotency-Key answers 200 with the batch it created before, which was counted then.
    The provider is the answer's ``provider``.

    >>> status, body = api.create_batch(event.body, key, base_path)   # doctest: +SKIP
    >>> ops_metrics.batch_accepted(status, body)                      # doctest: +SKIP
    """
    if status != 202:
        return
    batch_id = str(answer["batchId"])
    provider = answer.get("provider")
    if not _is_registered(provider):
        return
    emf = _document(batch_id, provider=str(provider))
    emf.add_metric(name=BATCHES_ACCEPTED, unit=MetricUnit.Count, value=1)
    emf.flush_metrics()


@_never_fails_the_work
def batch_finished(finalized: Mapping[str, Any]) -> None:
    """Record a finished batch, from what the finalize task returned.

    ``finalized`` is :func:`batchbridge.tasks.finalize.finalize_batch`'s answer; this reads only its
    ``message``, the completion event as JSON text, and of that event's ``data`` only: ``batchId``,
    ``provider``, ``status``, ``counts`` (``succeeded``, ``failed``, ``notProcessed``), ``polls`` (rounds
    used), ``timings.durationSeconds`` and ``cost.totalUsd`` (the batch's whole cost in US dollars; while
    ``cost`` is null, as it is until the batch's cost is computed, no cost is emitted). It emits

    - ``BatchesFinished`` = 1 (Count), dimensions ``service``, ``provider``, ``status``;
    - ``BatchDurationSeconds`` (Seconds), ``BatchRounds`` (Count), ``BatchEstimatedCostUsd`` (no unit;
      US dollars), ``JobsSucceeded``, ``JobsFailed``, ``JobsNotProcessed`` (Count), dimensions
      ``service``, ``provider``. A value the event does not have (null) is left out, never sent as 0.

    A status that is not terminal or a provider that is not registered is logged and nothing is emitted:
    it would be a dimension value outside the bounded sets above. Neither function ever raises.

    >>> message = finalize_batch(task.batch_id, task.error)           # doctest: +SKIP
    >>> ops_metrics.batch_finished(message)                           # doctest: +SKIP
    """
    if finalized.get("finishedNow") is False:  # another run (or an earlier attempt) finished it: counted then
        return
    data = json.loads(finalized["message"])["data"]
    batch_id, provider, status = str(data["batchId"]), data.get("provider"), data.get("status")
    if not _is_registered(provider) or not _is_terminal(status):
        logger.warning(
            "finished batch not counted: provider or status outside the metric's dimensions",
            extra={"provider": provider, "status": status},
        )
        return
    counted = _document(batch_id, provider=str(provider), status=str(status))
    counted.add_metric(name=BATCHES_FINISHED, unit=MetricUnit.Count, value=1)
    counted.flush_metrics()

    values = _document(batch_id, provider=str(provider))
    counts = data.get("counts") or {}
    for name, unit, value in (
        (BATCH_DURATION, MetricUnit.Seconds, (data.get("timings") or {}).get("durationSeconds")),
        (BATCH_ROUNDS, MetricUnit.Count, data.get("polls")),
        (BATCH_COST, MetricUnit.NoUnit, (data.get("cost") or {}).get("totalUsd")),
        *((name, MetricUnit.Count, counts.get(key)) for key, name in JOBS.items()),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool):
            values.add_metric(name=name, unit=unit, value=value)
    if values.metric_set:
        values.flush_metrics()


def _document(batch_id: str, **dimensions: str) -> EphemeralMetrics:
    """One EMF document of its own (never the handler's shared one, whose dimensions it would change),
    with the batch id as metadata."""
    emf = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    for name, value in dimensions.items():
        emf.add_dimension(name=name, value=value)
    emf.add_metadata(key="batchId", value=batch_id)
    return emf


def _is_registered(provider: Any) -> bool:
    """A provider the layer has an adapter for (each adapter's module is named as its provider). The
    adapter is not imported for this: finalize, which counts finished batches, never talks to a provider."""
    return isinstance(provider, str) and provider in ADAPTER_MODULES


def _is_terminal(status: Any) -> bool:
    return status in {s.value for s in BatchStatus if s.is_terminal}
