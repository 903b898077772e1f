"""Typed records of what BatchBridge keeps in its table: the batch, its chunks, and the map between them
and DynamoDB items (in one place: :meth:`Record.to_item` and :meth:`Record.from_item`).

Attribute names in the table are the fields' camelCase aliases; they are also what the listing indexes
project and what the state machine's direct DynamoDB steps name (``status``, ``error``, ``provider``,
``connection``, ``eventClaimedBy``). Only :mod:`batchbridge.repository` reads or writes items.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from batchbridge.models import BatchStatus, ChunkState, Counts, ErrorInfo, OutcomeKind


class Record(BaseModel):
    """A typed record with a fixed mapping to a DynamoDB item."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_item(self) -> dict[str, Any]:
        """The record as item attributes (camelCase names; absent values left out)."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Self:
        return cls.model_validate(plain(item))


class Settlement(BaseModel):
    """How a chunk's outcomes are settled, decided once (by the conditional move to ``COLLECTING``) so
    that whoever writes them, first time or after a crash, writes the same ones."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    from_results: bool  # True: from the provider's per-job results; False: every job gets ``outcome``
    outcome: OutcomeKind | None = None
    error: ErrorInfo | None = None


class CancelAttempt(BaseModel):
    """What happened when BatchBridge asked the provider to cancel a running chunk."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    confirmed: bool
    error: str | None = None


class RetrySource(BaseModel):
    """Where a retry batch's jobs come from: the jobs of another batch that ended with these outcomes."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    batch_id: str
    outcomes: list[OutcomeKind]


class JoinState(BaseModel):
    """Where joining the chunks' outcome objects into the results files stands (see tasks/join.py)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    uploads: dict[str, str]  # file -> its multipart upload id
    parts: dict[str, int]  # file -> parts sent so far
    next: int = 0  # the first chunk not yet joined
    tails: dict[str, int] = Field(default_factory=dict)  # file -> the chunk index its saved tail ends at
    done: bool = False


class Batch(Record):
    """The batch record (``pk = BATCH#<id>``, ``sk = META``)."""

    batch_id: str
    status: BatchStatus
    provider: str
    connection: str
    job_count: int
    chunk_count: int
    jobs_key: str  # the batch's jobs, one JSON object per line, in the bucket
    options: dict[str, Any] = Field(default_factory=dict)
    client_reference: str | None = None
    created_at: str
    updated_at: str | None = None
    deadline_at: int  # epoch seconds
    # Rounds used (submit attempts and status checks): what costs transitions, capped per batch.
    rounds: int = Field(default=0, alias="pollCount")
    collect_rounds: int = 0
    api_base_url: str | None = None
    callback_url: str | None = None
    callback_token: str | None = None
    task_token: str | None = None
    callback_pending: bool = False
    callback_checked_at: float | None = None
    cancel_requested: bool = False
    deadline_reached: bool = False
    prepared: bool = False  # every chunk item exists
    submit_cursor: int = 0  # chunks below this index have had their submit settled
    ambiguous_chunks: list[int] = Field(default_factory=list)
    error: ErrorInfo | None = None
    progress: float | None = None
    poll_state: dict[str, Any] = Field(default_factory=dict)
    submitted_at: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    counts: Counts | None = None
    results_key: str | None = None
    outcome_keys: dict[str, str] = Field(default_factory=dict)  # outcome kind -> its file's key
    usage: dict[str, float] = Field(default_factory=dict)  # metered counters (see batchbridge.cost)
    cost: dict[str, Any] | None = None
    retry_of: str | None = None
    retries: list[str] = Field(default_factory=list)
    upload_id: str | None = None
    jobs_from: RetrySource | None = None  # a retry: its jobs file is written from this when it starts
    join: JoinState | None = None  # joining the results files, once every chunk is settled
    event_type: str | None = None  # the completion event's type, once finished
    event_claimed_by: str | None = None  # the execution that publishes the completion event

    @property
    def callback_expected(self) -> bool:
        return bool(self.callback_url)


class Chunk(Record):
    """One provider submission: a run of the batch's jobs (``pk = BATCH#<id>``, ``sk = CHUNK#<n>``)."""

    batch_id: str
    index: int
    first_job: int
    job_count: int
    byte_start: int  # the chunk's lines in the jobs file: [byte_start, byte_end)
    byte_end: int
    state: ChunkState = ChunkState.PENDING
    claimed_at: str | None = None
    claim_expires_at: float | None = None  # epoch seconds after which the claimer cannot still be running
    provider_ref: str | None = None
    submitted_at: str | None = None
    reconciled: bool = False
    progress: float | None = None
    provider_status: str | None = None
    checked_at: str | None = None  # the last status check that was recorded
    report: dict[str, Any] | None = None  # the last StatusReport, kept for collect
    error: ErrorInfo | None = None
    finished_at: str | None = None
    settlement: Settlement | None = None
    cancel: CancelAttempt | None = None
    counts: Counts | None = None
    collected_at: str | None = None


class Upload(Record):
    """An upload of a file of jobs (``pk = UPLOAD#<id>``, ``sk = META``). Its status is kept as
    ``uploadStatus``: ``status`` keys the batch listing index, which holds batch records only."""

    upload_id: str
    upload_status: str  # batchbridge.uploads.UploadStatus
    provider: str
    format: str
    source_key: str
    created_at: str
    ttl: int
    size_bytes: int | None = None
    options: dict[str, Any] | None = None
    multipart_upload_id: str | None = None
    part_size_bytes: int | None = None
    completed_at: str | None = None
    validated_at: str | None = None
    job_count: int | None = None
    jobs_key: str | None = None
    error: dict[str, Any] | None = None
    batch_id: str | None = None  # the batch it started (an upload starts one)


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; records take ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [plain(v) for v in value]
    return value


def dynamo(value: Any) -> Any:
    """Plain values as the DynamoDB resource layer takes them (floats as Decimal, None left out)."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [dynamo(v) for v in value]
    return value
