"""Workflow task: settle the terminal status and counts, join the results file, build the event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchbridge import cost, ops_metrics
from batchbridge.observability import logger, metrics, tracer
from batchbridge.tasks import TaskInput
from batchbridge.tasks.finalize import finalize_batch

if TYPE_CHECKING:  # an annotation only: nothing to import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="batchId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.debug("task input", extra={"task_input": event})  # ids and error names, never credentials
    task = TaskInput.model_validate(event)
    message = cost.run_metered(
        "finalize", task.batch_id, context, lambda: finalize_batch(task.batch_id, task.error)
    )
    ops_metrics.batch_finished(message)  # BatchesFinished by provider and status; duration, rounds, cost
    return message
