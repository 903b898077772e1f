"""Workflow task: write one outcome per job, to S3 and DynamoDB, for every finished chunk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchbridge import cost
from batchbridge.observability import logger, metrics, provider_task, tracer
from batchbridge.tasks import TaskInput, time_left
from batchbridge.tasks.collect import collect_batch

if TYPE_CHECKING:  # an annotation only: nothing to import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="batchId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.debug("task input", extra={"task_input": event})  # ids and error names, never credentials
    task = TaskInput.model_validate(event)
    with provider_task():  # counts ProviderCalls and ProviderErrors, re-raises
        return cost.run_metered(
            "collect",
            task.batch_id,
            context,
            lambda: collect_batch(task.batch_id, task.error, time_left(context)).dump(),
        )
