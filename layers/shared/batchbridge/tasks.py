"""The input every workflow task receives, and the invocation's time budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from batchbridge.engine import Failure

BATCH_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class TaskInput(BaseModel):
    """``{"batchId": ..., "error": null | {"Error": ..., "Cause": ...}}``; nothing else travels in state."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    batch_id: str = Field(alias="batchId", pattern=BATCH_ID_PATTERN)
    error: Failure | None = None


def time_left(context: Any) -> Callable[[], float]:
    """Seconds left in this invocation, as a callable the task logic checks between units of work."""
    return lambda: context.get_remaining_time_in_millis() / 1000.0


class AwaitInput(BaseModel):
    """``{"batchId": ..., "taskToken": ...}`` for the callback wait."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    batch_id: str = Field(alias="batchId", pattern=BATCH_ID_PATTERN)
    task_token: str = Field(alias="taskToken", min_length=1, max_length=2048)
