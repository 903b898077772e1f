"""Workflow task: park the workflow until the provider calls back or the next poll is due.

Invoked with ``.waitForTaskToken``: records the task token for the callback route and returns at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchbridge import cost
from batchbridge.observability import logger, tracer
from batchbridge.tasks import AwaitInput
from batchbridge.tasks.callbacks import park_for_callback

if TYPE_CHECKING:  # an annotation only: nothing to import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="batchId")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = AwaitInput.model_validate(event)
    return cost.run_metered("await", task.batch_id, context, lambda: _park(task))


def _park(task: AwaitInput) -> dict[str, Any]:
    park_for_callback(task.batch_id, task.task_token)
    return {"parked": True}
