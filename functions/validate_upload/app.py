"""Asynchronous task: validate an uploaded file of jobs as a stream; the upload ends VALID or INVALID."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batchbridge import uploads
from batchbridge.observability import logger, metrics, tracer
from batchbridge.tasks import time_left


@logger.inject_lambda_context(correlation_id_path="uploadId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = uploads.ValidateUploadInput.model_validate(event)
    return uploads.validate_upload(task.upload_id, time_left(context))
