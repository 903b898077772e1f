"""Canonical vocabulary shared by every part of BatchBridge.

Providers speak their own dialects; everything outside ``batchbridge.providers`` sees only these types.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from batchbridge import limits


class BatchStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    SUBMITTING = "SUBMITTING"
    RUNNING = "RUNNING"
    COLLECTING = "COLLECTING"
    SUCCEEDED = "SUCCEEDED"
    PARTIALLY_SUCCEEDED = "PARTIALLY_SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        BatchStatus.SUCCEEDED,
        BatchStatus.PARTIALLY_SUCCEEDED,
        BatchStatus.FAILED,
        BatchStatus.TIMED_OUT,
        BatchStatus.CANCELLED,
        BatchStatus.NEEDS_ATTENTION,
    }
)


class OutcomeKind(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_PROCESSED = "not_processed"


class ChunkState(StrEnum):
    """Where one provider submission (a chunk of the batch's jobs) stands.

    The legal moves between these states are listed once, in ``batchbridge.repository.CHUNK_MOVES``.
    """

    PENDING = "PENDING"  # not yet sent
    SUBMITTING = "SUBMITTING"  # claimed by one submit attempt; its answer not yet recorded
    UNCONFIRMED = "UNCONFIRMED"  # sent, and no answer proved whether the provider took it: never resent
    RUNNING = "RUNNING"  # accepted by the provider (its reference recorded), not finished
    COMPLETED = "COMPLETED"  # provider says finished; results not yet collected
    FAILED = "FAILED"  # refused at submit, or the provider says the job failed as a whole
    COLLECTING = "COLLECTING"  # how its outcomes are settled has been decided once; being written
    COLLECTED = "COLLECTED"  # outcomes written from the provider's results (or its refusal)
    ABANDONED = "ABANDONED"  # never finished (deadline, cancel, ambiguity); outcomes written as not_processed

    @property
    def is_settled(self) -> bool:
        """Every job of the chunk has its one outcome written."""
        return self in (ChunkState.COLLECTED, ChunkState.ABANDONED)


class ErrorInfo(BaseModel):
    """An error as BatchBridge records it; its code and message are cut to bounded lengths (vendor text
    can be any length, and records have a size limit)."""

    code: str
    message: str

    @field_validator("code")
    @classmethod
    def _short_code(cls, value: str) -> str:
        return value[: limits.MAX_ERROR_CODE_CHARS]

    @field_validator("message")
    @classmethod
    def _short_message(cls, value: str) -> str:
        return value[: limits.MAX_ERROR_MESSAGE_CHARS]


class Outcome(BaseModel):
    """Exactly one per job the client submitted."""

    model_config = ConfigDict(populate_by_name=True)

    index: int
    client_ref: str | None = Field(default=None, alias="clientRef")
    outcome: OutcomeKind
    provider_ref: str | None = Field(default=None, alias="providerRef")
    error: ErrorInfo | None = None
    response: Any = None
    detail: str | None = None  # e.g. "unchanged" for an accepted record the provider did not need to touch
    # The response's JSON and the very object it encodes (a response replaced later is encoded again).
    _response_json: tuple[Any, str] | None = PrivateAttr(default=None)

    def response_json(self) -> str | None:
        """The response as compact JSON (non-ASCII kept as is), encoded once however often it is asked
        for: the adapter's size check, the credential scan and both encodings of the outcome read this one
        text. A response is not changed in place once it is on an outcome."""
        response = self.response
        if response is None:
            return None
        private = self.__pydantic_private__ or {}  # read directly: pydantic's attribute path costs more
        cached = private.get("_response_json")
        if cached is None or cached[0] is not response:
            cached = (response, _compact(response))
            self._response_json = cached
        text: str = cached[1]
        return text

    def to_record(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Counts(BaseModel):
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    not_processed: int = Field(default=0, alias="notProcessed")

    model_config = ConfigDict(populate_by_name=True)

    def add(self, kind: OutcomeKind, n: int = 1) -> None:
        if kind is OutcomeKind.SUCCEEDED:
            self.succeeded += n
        elif kind is OutcomeKind.FAILED:
            self.failed += n
        else:
            self.not_processed += n
        self.total += n


class Connection(BaseModel):
    """A named Secrets Manager secret: ``{"provider", "baseUrl", ...credentials and settings}``.

    Credentials are ``SecretStr`` so they never print, log or serialise by accident.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    provider: str
    base_url: str = Field(alias="baseUrl")
    credentials: dict[str, SecretStr] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)

    def secret(self, key: str) -> str:
        from batchbridge.errors import ConfigurationError

        try:
            return self.credentials[key].get_secret_value()
        except KeyError:
            raise ConfigurationError(f"connection {self.name!r} has no credential {key!r}") from None
