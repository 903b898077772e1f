"""The workflow's tasks, one module each: submit, check, collect, finalize, and the callback side.

Each task does a bounded amount of work and returns a small :class:`Step` telling the state machine what
to do next; all waiting happens in the state machine. Tasks work through the repository (every state
change a conditional write) and get what they use from a :class:`Deps`, which tests replace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from batchbridge import errors
from batchbridge.clock import epoch
from batchbridge.models import ErrorInfo
from batchbridge.redact import scrub

if TYPE_CHECKING:
    from batchbridge.config import Settings
    from batchbridge.objects import ObjectStore
    from batchbridge.providers.base import Provider
    from batchbridge.records import Batch
    from batchbridge.repository import Repository
    from batchbridge.workflow import WorkflowGateway

BATCH_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
TimeLeft = Callable[[], float]
#: Stop starting new work when less than this many seconds of the invocation remain.
SAFETY_MARGIN_SECONDS = 10.0
#: Rounds (submit attempts plus status checks) one batch may use. The state machine's own cap (the
#: "$.step.pollCount >= 450" guards) sits a little above it as the backstop, and
#: tests/unit/test_history_bound.py derives from both that an execution stays under 25,000 events.
MAX_ROUNDS = 430
#: Collect calls one batch may use; each settles as many chunks as its time allows (at least one), and
#: what is left when the budget is spent is settled as not processed by finalize. The state machine caps
#: the collect loop at COLLECT_ROUND_CAP too.
MAX_COLLECT_ROUNDS = 60
COLLECT_ROUND_CAP = 64


class Step(BaseModel):
    """What every looping task returns; the state machine reads only these fields."""

    model_config = ConfigDict(populate_by_name=True)

    remaining: int = 0  # units of work left for this task (chunks)
    wait_seconds: int = Field(default=0, alias="waitSeconds")
    done: bool = False
    poll_count: int = Field(default=0, alias="pollCount")
    collect_rounds: int = Field(default=0, alias="collectRounds")
    # True when the provider will call back: the workflow then waits on a task token, with the next poll
    # interval as its timeout, instead of a plain Wait.
    callback: bool = False

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class Failure(BaseModel):
    """The error a state machine ``Catch`` hands on: ``{"Error": name, "Cause": text}``."""

    error: str = Field(alias="Error", max_length=256)
    cause: str = Field(default="", alias="Cause")

    def info(self) -> ErrorInfo:
        message = self.cause
        try:
            parsed = json.loads(self.cause)
            if isinstance(parsed, dict) and parsed.get("errorMessage"):
                message = str(parsed["errorMessage"])
        except (json.JSONDecodeError, TypeError, RecursionError):
            pass
        cls = getattr(errors, self.error, None)
        code = cls.code if isinstance(cls, type) and issubclass(cls, errors.BatchBridgeError) else self.error
        return ErrorInfo(code=code, message=scrub(message or self.error)[:1000])

    @property
    def ambiguous_submit(self) -> bool:
        return self.error == errors.AmbiguousSubmitError.__name__


class TaskInput(BaseModel):
    """``{"batchId": ..., "error": null | {"Error": ..., "Cause": ...}}``; nothing else travels in state."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    batch_id: str = Field(alias="batchId", pattern=BATCH_ID_PATTERN)
    error: Failure | None = None
    cancel: bool = False


class AwaitInput(BaseModel):
    """``{"batchId": ..., "taskToken": ...}`` for the callback wait."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    batch_id: str = Field(alias="batchId", pattern=BATCH_ID_PATTERN)
    task_token: str = Field(alias="taskToken", min_length=1, max_length=2048)


def time_left(context: Any) -> TimeLeft:
    """Seconds left in this invocation, as a callable the task logic checks between units of work."""
    return lambda: context.get_remaining_time_in_millis() / 1000.0


def _default_providers(batch: Batch) -> Provider:
    from batchbridge.connections import build_provider, load_connection

    return build_provider(load_connection(batch.connection))


@dataclass
class Deps:
    """What the tasks use: the repository, the bucket, providers by batch, the workflow gateway,
    settings and a clock. :meth:`default` builds the deployed ones, once per container."""

    repo: Repository
    objects: ObjectStore
    workflow: WorkflowGateway
    settings: Settings
    providers: Callable[[Batch], Provider] = _default_providers
    clock: Callable[[], float] = field(default=epoch)

    @staticmethod
    def default() -> Deps:
        """The deployed deps, built once per container (again when the settings were re-read)."""
        from batchbridge.config import get_settings

        settings = get_settings()
        deps = _DEFAULT.get("deps")
        if deps is None or deps.settings is not settings:
            deps = _DEFAULT["deps"] = _build(settings)
        return deps


_DEFAULT: dict[str, Deps] = {}


def _build(settings: Settings) -> Deps:
    from batchbridge.objects import ObjectStore
    from batchbridge.repository.dynamo import DynamoRepository
    from batchbridge.workflow import WorkflowGateway

    return Deps(
        repo=DynamoRepository(settings.table_name),
        objects=ObjectStore(settings.bucket_name),
        workflow=WorkflowGateway(settings.state_machine_arn),
        settings=settings,
    )


def reset_default_deps() -> None:
    """Forget the container's deps (the local runtime and tests call this between stacks)."""
    _DEFAULT.clear()
