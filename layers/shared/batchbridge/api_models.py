"""The HTTP API's shapes as pydantic models: the query parameters the event handler validates, and the
bodies and answers the OpenAPI document (``make openapi``) is generated from.

The answers are built as plain dicts by :mod:`batchbridge.api` and :mod:`batchbridge.uploads`; these models
describe them, and tests/integration/test_openapi_responses.py checks real answers against the generated
document, so a model and the answer it describes cannot drift apart.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model, field_validator

from batchbridge import limits
from batchbridge.models import BatchStatus, Counts, ErrorInfo, Outcome, OutcomeKind
from batchbridge.providers.base import Capabilities, all_capabilities, provider_class


class _Shape(BaseModel):
    """An answer's shape: the fields it may have and no others."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- errors -------------------------------------------------------------------------------------------


class FieldProblem(_Shape):
    field: str = Field(examples=["jobs[3].params.startDate"])
    message: str


class ErrorDetail(_Shape):
    code: str = Field(examples=["VALIDATION_FAILED"])
    message: str
    # 10 for a request; up to 20 problems of an uploaded file
    details: list[FieldProblem] | None = Field(default=None, max_length=20)


class ErrorBody(_Shape):
    """Every error, whatever its status."""

    error: ErrorDetail


# --- query parameters ---------------------------------------------------------------------------------


def _blank_is_absent(value: Any) -> Any:
    """``?outcome=`` means no filter, as an absent parameter does."""
    return None if value == "" else value


class ListBatchesQuery(_Shape):
    """``GET /batches``: one or several statuses (or ``active``), one provider, or one client reference."""

    status: str | None = Field(
        default=None,
        description=(
            "One status, several separated by commas, or `active` (every status of a batch still going)."
        ),
        examples=["FAILED,TIMED_OUT", "active"],
    )
    provider: str | None = Field(default=None, description="A provider name from GET /providers.")
    client_reference: str | None = Field(
        default=None,
        alias="clientReference",
        max_length=256,
        description="The batches of one piece of work (cannot be combined with status).",
    )
    limit: int = Field(default=25, ge=1, le=100)
    next_token: str | None = Field(
        default=None,
        alias="nextToken",
        description="From the previous page; only valid for the same listing (same filters).",
    )

    _blanks = field_validator("status", "provider", "client_reference", "next_token", mode="before")(
        _blank_is_absent
    )

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        known = [c.name for c in all_capabilities()]
        if value is not None and value not in known:
            raise ValueError(f"provider must be one of: {', '.join(known)}")
        return value


class ResultsQuery(_Shape):
    """``GET /batches/{id}/results``: a page of outcomes, one client reference's, or a link to a file."""

    outcome: OutcomeKind | None = Field(
        default=None, description="Only outcomes of this kind (with `format=file`, the file of that kind)."
    )
    client_ref: str | None = Field(
        default=None, alias="clientRef", description="The outcome of the job the client named so (one read)."
    )
    limit: int = Field(default=100, ge=1, le=1000)
    next_token: str | None = Field(
        default=None, alias="nextToken", description="From the previous page of the same listing."
    )
    format: Literal["json", "file"] = Field(
        default="json",
        description=(
            "`file`: a pre-signed link to the results file instead of a page (once the batch ended); each "
            "line is an outcome with the job as submitted beside it (`job`). Pages are ordered by outcome "
            "kind, then index."
        ),
    )

    _blanks = field_validator("outcome", "client_ref", "next_token", mode="before")(_blank_is_absent)

    @field_validator("format", mode="before")
    @classmethod
    def _blank_is_json(cls, value: Any) -> Any:
        return "json" if value in (None, "") else value


class RetryQuery(_Shape):
    outcomes: str | None = Field(
        default=None,
        description="Which outcomes to retry, separated by commas (default `failed,not_processed`).",
        examples=["failed", "failed,not_processed"],
    )

    _blanks = field_validator("outcomes", mode="before")(_blank_is_absent)


# --- answers ------------------------------------------------------------------------------------------


class Links(_Shape):
    self: str
    results: str
    cancel: str


class Accepted(_Shape):
    batch_id: str = Field(alias="batchId", json_schema_extra={"format": "uuid"})
    provider: str | None = None
    status: Literal["ACCEPTED"]
    links: Links
    replayed: Literal[True] | None = None
    retry_of: str | None = Field(default=None, alias="retryOf", description="The batch this one retries.")
    job_count: int | None = Field(default=None, alias="jobCount", ge=1)


class ResultsLocation(_Shape):
    bucket: str
    key: str
    by_outcome: dict[str, str] | None = Field(
        default=None, alias="byOutcome", description="The key of the file of each outcome kind."
    )


class BatchSummary(_Shape):
    """One batch in a listing."""

    batch_id: str = Field(alias="batchId")
    status: BatchStatus
    provider: str
    connection: str
    client_reference: str | None = Field(default=None, alias="clientReference")
    job_count: int = Field(alias="jobCount", ge=1)
    counts: Counts | None = None
    created_at: str = Field(alias="createdAt", json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(
        default=None, alias="finishedAt", json_schema_extra={"format": "date-time"}
    )
    links: Links


class BatchView(BatchSummary):
    """``GET /batches/{id}``: the summary's fields and the rest of the record."""

    chunk_count: int = Field(alias="chunkCount", ge=1)
    progress: float | None = Field(
        default=None, ge=0, le=100, description="Percent, where the provider reports it."
    )
    error: ErrorInfo | None = None
    polls: int = Field(ge=0, description="Workflow rounds used (submit attempts and status checks).")
    cost: dict[str, Any] | None = Field(
        default=None, description="What the batch cost on AWS at list prices, by service."
    )
    updated_at: str | None = Field(default=None, alias="updatedAt", json_schema_extra={"format": "date-time"})
    deadline_at: int = Field(alias="deadlineAt", description="Unix time in seconds.")
    retry_of: str | None = Field(
        default=None, alias="retryOf", description="The batch whose jobs this one retried."
    )
    retries: list[str] | None = Field(
        default=None, description="Batches that retried this one's failed or unprocessed jobs."
    )
    results: ResultsLocation | None = None


class BatchList(_Shape):
    items: list[BatchSummary]
    next_token: str | None = Field(default=None, alias="nextToken")


class OutcomeView(Outcome):
    """One job's outcome as a page lists it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    response_truncated: Literal[True] | None = Field(
        default=None,
        alias="responseTruncated",
        description="The response was too large for a row; the results file holds it whole.",
    )


class OutcomePage(_Shape):
    batch_id: str = Field(alias="batchId")
    status: BatchStatus
    items: list[OutcomeView]
    next_token: str | None = Field(default=None, alias="nextToken")


class ResultsFile(_Shape):
    batch_id: str = Field(alias="batchId")
    format: Literal["jsonl"]
    outcome: OutcomeKind | None = None
    url: str = Field(json_schema_extra={"format": "uri"})
    expires_in: int = Field(alias="expiresIn", description="Seconds the link stays valid.")


class Results(RootModel[OutcomePage | ResultsFile]):
    """A page of outcomes, or the link to a results file (``format=file``)."""


class Cancelling(_Shape):
    batch_id: str = Field(alias="batchId")
    status: Literal["CANCELLING"]
    links: Links


class CallbackAnswer(_Shape):
    accepted: bool
    reason: str | None = None


class ProviderList(_Shape):
    providers: list[Capabilities]


# --- uploads ------------------------------------------------------------------------------------------

UploadStatus = Literal["AWAITING_UPLOAD", "VALIDATING", "VALID", "INVALID"]
UploadFormat = Literal["jsonl", "csv"]


class SinglePut(_Shape):
    method: Literal["PUT"]
    url: str
    headers: dict[str, str] = Field(
        description="Send these headers with the PUT (they are part of the signature)."
    )
    expires_in: int = Field(alias="expiresIn")


class PartUrl(_Shape):
    part_number: int = Field(alias="partNumber", ge=1)
    url: str = Field(description="PUT the part here; keep the answer's ETag header.")


class Multipart(_Shape):
    method: Literal["MULTIPART"]
    part_size_bytes: int = Field(
        alias="partSizeBytes",
        description="Part N is bytes (N-1)*partSizeBytes up to N*partSizeBytes of the file.",
    )
    parts: list[PartUrl]
    expires_in: int = Field(alias="expiresIn")


class UploadCreated(_Shape):
    upload_id: str = Field(alias="uploadId", json_schema_extra={"format": "uuid"})
    status: Literal["AWAITING_UPLOAD"]
    format: UploadFormat
    provider: str
    upload: Annotated[SinglePut | Multipart, Field(discriminator="method")]


class UploadCompleted(_Shape):
    upload_id: str = Field(alias="uploadId", json_schema_extra={"format": "uuid"})
    status: UploadStatus


class UploadView(_Shape):
    upload_id: str = Field(alias="uploadId", json_schema_extra={"format": "uuid"})
    provider: str
    format: UploadFormat
    status: UploadStatus
    size_bytes: int | None = Field(default=None, alias="sizeBytes")
    job_count: int | None = Field(default=None, alias="jobCount", description="When VALID.")
    error: ErrorDetail | None = Field(
        default=None,
        description="When INVALID: the first problems, at most 20, each field as `line N: field path`.",
    )
    batch_id: str | None = Field(
        default=None, alias="batchId", description="The batch started from this upload, once one has."
    )
    created_at: str = Field(alias="createdAt")
    validated_at: str | None = Field(default=None, alias="validatedAt")


# --- the create request, per provider -----------------------------------------------------------------


@functools.cache
def create_batch_request() -> type[RootModel[Any]]:
    """``POST /batches`` as the document describes it: one shape per provider, chosen by ``provider``,
    whose ``jobs`` and ``options`` are that provider's own models.

    Only the document uses it: the route reads the body itself (see ``batchbridge.api.create_batch``)."""
    from batchbridge.api import CreateBatchRequest

    common = {
        name: (field.annotation, field)
        for name, field in CreateBatchRequest.model_fields.items()
        if name not in ("provider", "jobs", "options")
    }
    make: Any = create_model  # the models are built from values (each provider's), not declared
    inline_mib = limits.MAX_BODY_BYTES // (1024 * 1024)
    shapes = []
    for capabilities in all_capabilities():
        cls = provider_class(capabilities.name)
        job: Any = cls.job_model
        options: Any = cls.options_model
        title = "".join(part.capitalize() for part in capabilities.name.split("_"))
        shapes.append(
            make(
                f"Create{title}Batch",
                __config__=ConfigDict(extra="forbid", populate_by_name=True),
                __doc__=(
                    f"A batch of at most {capabilities.max_jobs_per_batch:,} {capabilities.title} jobs: "
                    f"inline (`jobs`, in a body of at most {inline_mib} MiB unless the stack sets another "
                    "limit) or in a validated upload (`uploadId`), not both."
                ),
                provider=(Literal[capabilities.name], ...),
                jobs=(
                    list[job] | None,
                    Field(
                        default=None,
                        min_length=1,
                        description="Each job may carry a `clientRef` that its outcome repeats.",
                    ),
                ),
                options=(options | None, Field(default=None)),
                **common,
            )
        )
    union: Any = Annotated[_union(shapes), Field(discriminator="provider")]
    root: type[RootModel[Any]] = make("CreateBatchRequest", __base__=RootModel[union])
    return root


def _union(shapes: list[type[BaseModel]]) -> Any:
    from functools import reduce
    from operator import or_

    return reduce(or_, shapes)
