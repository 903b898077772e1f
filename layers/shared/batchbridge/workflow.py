"""The one gateway to Step Functions: start a batch's execution, stop it, start its cancel run, and
resume a workflow parked on a callback's task token.

Executions are named after the batch (``<id>``, and ``<id>-cancel`` for the run a cancel starts), so
starting one twice is harmless (``ExecutionAlreadyExists``) and stopping one needs no lookup.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from batchbridge import aws

CANCEL_SUFFIX = "-cancel"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class WorkflowGateway:
    def __init__(self, state_machine_arn: str, *, client: Any = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def sfn(self) -> Any:
        return self._client if self._client is not None else aws.client("stepfunctions")

    def execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def start(self, batch_id: str, *, cancel: bool = False) -> bool:
        """Start the batch's execution (or its cancel run); False when it was already started."""
        try:
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=batch_id + (CANCEL_SUFFIX if cancel else ""),
                input=json.dumps({"batchId": batch_id, "error": None, "cancel": cancel}),
            )
        except ClientError as exc:
            if _code(exc) == "ExecutionAlreadyExists":
                return False
            raise
        return True

    def stop(self, batch_id: str, cause: str) -> bool:
        """Stop the batch's execution; False when there is none (it never started, or has ended)."""
        try:
            self.sfn.stop_execution(executionArn=self.execution_arn(batch_id), cause=cause)
        except ClientError as exc:
            if _code(exc) in ("ExecutionDoesNotExist",):
                return False
            raise
        return True

    def resume(self, task_token: str) -> bool:
        """End a callback wait now; False when it had already ended (its timeout ran, or another
        callback resumed it)."""
        try:
            self.sfn.send_task_success(taskToken=task_token, output="{}")
        except ClientError as exc:
            if _code(exc) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
                return False
            raise
        return True
