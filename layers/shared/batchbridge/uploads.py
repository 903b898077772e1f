"""Uploads: a file of jobs (JSON Lines or CSV) put straight into S3 through a pre-signed upload, then
validated as a stream, never loaded whole, before any batch may start from it.

The life of an upload, kept in the batch table under ``UPLOAD#<id>`` / ``META`` and changed only by the
conditional writes of :class:`UploadRecords`::

    AWAITING_UPLOAD --(POST /uploads/{id}/complete)--> VALIDATING --(validate_upload)--> VALID | INVALID

The client's file lands at ``uploads/<id>/source.<format>``. Validation reads it once and writes what a
batch will read, ``uploads/<id>/jobs.jsonl``: exactly one job object per line, in file order, CSV rows
already mapped to jobs (see docs/uploads.md). The client's pre-signed URL can only ever write the source,
so a file changed after validation never reaches a batch.
"""

from __future__ import annotations

import csv
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from batchbridge import aws, limits
from batchbridge.clock import now_iso
from batchbridge.config import get_settings
from batchbridge.errors import BatchBridgeError, RequestError
from batchbridge.objects import ObjectStore
from batchbridge.observability import logger
from batchbridge.providers.base import Job, Provider, provider_class
from batchbridge.records import Upload
from batchbridge.repository import Repository
from batchbridge.tasks import Deps

MiB = 1024 * 1024
SINGLE_PUT_MAX_BYTES = 100 * MiB  # above this, POST /uploads answers with a multipart upload
MAX_UPLOAD_BYTES = limits.MAX_UPLOAD_BYTES  # the largest file taken, by format
MAX_BYTES = {"jsonl": limits.MAX_UPLOAD_BYTES, "csv": limits.MAX_CSV_UPLOAD_BYTES}
MIN_PART_BYTES = 16 * MiB
MAX_PARTS = 10_000  # S3's limit
MAX_LINE_BYTES = limits.MAX_JOB_BYTES  # one job
MAX_PROBLEMS = 20  # reported for a refused file; reading stops there
MAX_MESSAGE = 300  # longest problem message kept
MAX_JOBS = limits.MAX_JOBS_PER_BATCH  # whatever a provider declares, no batch holds more
BATCH_CHECK_WINDOW = 1000  # jobs handed to a provider's validate_batch at a time
CHUNK_BYTES = 1 * MiB  # read from S3 at a time
BUDGET_MARGIN_SECONDS = 20.0  # validation stops, refusing the file, when less is left of the invocation

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_JSON_START = frozenset('{["-0123456789tfn')
_BOM = b"\xef\xbb\xbf"


class UploadStatus(StrEnum):
    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    VALIDATING = "VALIDATING"
    VALID = "VALID"
    INVALID = "INVALID"


FORMATS = ("jsonl", "csv")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def source_key(upload_id: str, fmt: str) -> str:
    return f"uploads/{upload_id}/source.{fmt}"


def jobs_key(upload_id: str) -> str:
    return f"uploads/{upload_id}/jobs.jsonl"


class UploadRecords:
    """The uploads' lifecycle, as the API speaks of it, over the repository (which holds every write:
    each change of status is a conditional write from the one status it may start in)."""

    def __init__(self, repo: Repository | None = None) -> None:
        self.repo = repo if repo is not None else Deps.default().repo

    def create(self, upload: Upload) -> None:
        self.repo.create_upload(upload)

    def get(self, upload_id: str) -> Upload:
        """The upload; :class:`RequestError` 404 when there is none (or the id is not one we issue)."""
        upload = self.repo.get_upload(upload_id) if _UUID.match(upload_id) else None
        if upload is None:
            raise RequestError(404, "UPLOAD_NOT_FOUND", "no upload has that id")
        return upload

    def start_validation(self, upload_id: str) -> bool:
        return self.repo.move_upload(
            upload_id, UploadStatus.AWAITING_UPLOAD, UploadStatus.VALIDATING, set={"completedAt": now_iso()}
        )

    def reopen(self, upload_id: str) -> bool:
        """VALIDATING -> AWAITING_UPLOAD, when validation could not be started: the client may complete
        again."""
        return self.repo.move_upload(
            upload_id, UploadStatus.VALIDATING, UploadStatus.AWAITING_UPLOAD, remove=("completedAt",)
        )

    def mark_valid(self, upload_id: str, job_count: int) -> bool:
        values = {"jobCount": job_count, "jobsKey": jobs_key(upload_id), "validatedAt": now_iso()}
        return self.repo.move_upload(upload_id, UploadStatus.VALIDATING, UploadStatus.VALID, set=values)

    def mark_invalid(self, upload_id: str, error: dict[str, Any]) -> bool:
        values = {"error": error, "validatedAt": now_iso()}
        return self.repo.move_upload(upload_id, UploadStatus.VALIDATING, UploadStatus.INVALID, set=values)

    def claim_for_batch(self, upload_id: str, batch_id: str) -> None:
        """Record that ``batch_id`` starts from this VALID upload; an upload starts one batch only.
        Claiming again for the same batch id is harmless. :class:`RequestError` 409 otherwise."""
        if not self.repo.claim_upload(upload_id, batch_id, valid=UploadStatus.VALID):
            raise RequestError(
                409,
                "UPLOAD_ALREADY_USED",
                "this upload has already started a batch; upload the file again for another batch",
                [{"field": "uploadId", "message": "already used"}],
            )

    def release_claim(self, upload_id: str, batch_id: str) -> None:
        """Undo :meth:`claim_for_batch` (the batch could not be accepted after all)."""
        self.repo.release_upload(upload_id, batch_id)


# --- requests ----------------------------------------------------------------------------------------
class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str = Field(min_length=1, max_length=64)
    format: Literal["jsonl", "csv"]
    size_bytes: int | None = Field(default=None, alias="sizeBytes", ge=1, le=MAX_UPLOAD_BYTES)
    # The batch's options, when known now: the provider's batch-wide checks then run on the file too,
    # and a batch started from the upload must use the same options.
    options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _not_too_large(self) -> CreateUploadRequest:
        most = MAX_BYTES[self.format]
        if self.size_bytes is not None and self.size_bytes > most:
            raise ValueError(
                f"a {self.format} file may be at most {most // MiB} MiB; split the work into batches"
            )
        return self


class ValidateUploadInput(BaseModel):
    """The validator's event, ``{"uploadId": ...}``, as ``POST /uploads/{id}/complete`` sends it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    upload_id: str = Field(alias="uploadId", pattern=_UUID.pattern)


class PartETag(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    part_number: int = Field(alias="partNumber", ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=256)


class CompleteUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[PartETag] | None = Field(default=None, min_length=1, max_length=MAX_PARTS)


def _field_path(loc: Iterable[Any], prefix: str = "") -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_body[M: BaseModel](body: str | None, model: type[M], *, is_base64: bool = False) -> M:
    """A small JSON request body as ``model``; :class:`RequestError` 400/422 naming what is wrong."""
    if is_base64 and body:
        import base64

        body = base64.b64decode(body).decode("utf-8", "replace")
    if len((body or "").encode()) > 64 * 1024:
        raise RequestError(413, "BODY_TOO_LARGE", "the body is larger than 64 KiB")
    try:
        data = json.loads(body) if body else {}
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, "MALFORMED_JSON", f"the body is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    if not isinstance(data, dict):
        raise RequestError(400, "INVALID_BODY", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [{"field": _field_path(e["loc"]) or "body", "message": e["msg"]} for e in exc.errors()]
        raise RequestError(
            422, "VALIDATION_FAILED", "; ".join(f"{d['field']}: {d['message']}" for d in details), details
        ) from None


def _provider(name: str) -> type[Provider]:
    try:
        return provider_class(name)
    except BatchBridgeError as exc:
        raise RequestError(
            422, exc.code, exc.message, [{"field": "provider", "message": exc.message}]
        ) from None


def _clean_options(cls: type[Provider], options: dict[str, Any]) -> dict[str, Any]:
    try:
        model = cls.options_model.model_validate(options)
    except ValidationError as exc:
        details = [{"field": _field_path(e["loc"], "options"), "message": e["msg"]} for e in exc.errors()]
        raise RequestError(
            422, "VALIDATION_FAILED", "; ".join(f"{d['field']}: {d['message']}" for d in details), details
        ) from None
    return model.model_dump(by_alias=True, exclude_none=True)


def part_size(size_bytes: int) -> int:
    """The part size for a multipart upload of ``size_bytes``: at least 16 MiB, in whole MiB, and large
    enough that the file needs at most S3's 10,000 parts.

    >>> part_size(200 * MiB) // MiB, part_size(5 * 1024 * MiB) // MiB
    (16, 16)
    """
    needed = -(-size_bytes // MAX_PARTS)
    return max(MIN_PART_BYTES, -(-needed // MiB) * MiB)


# --- the API: POST /uploads, POST /uploads/{id}/complete, GET /uploads/{id} --------------------------
def create_upload(
    body: str | None, *, is_base64: bool = False, records: UploadRecords | None = None, s3: Any = None
) -> tuple[int, dict[str, Any]]:
    """``POST /uploads``: a new upload record and the pre-signed upload the client sends its file with."""
    request = parse_body(body, CreateUploadRequest, is_base64=is_base64)
    cls = _provider(request.provider)
    options = None if request.options is None else _clean_options(cls, request.options)
    settings = get_settings()
    s3 = s3 if s3 is not None else aws.presigner()
    upload_id = str(uuid.uuid4())
    key = source_key(upload_id, request.format)
    content_type = CONTENT_TYPES[request.format]
    seconds = settings.upload_url_seconds
    record = Upload(
        upload_id=upload_id,
        upload_status=UploadStatus.AWAITING_UPLOAD,
        provider=request.provider,
        format=request.format,
        source_key=key,
        size_bytes=request.size_bytes,
        options=options,
        created_at=now_iso(),
        ttl=int(time.time()) + settings.outcome_ttl_days * 86400,
    )
    if request.size_bytes is not None and request.size_bytes > SINGLE_PUT_MAX_BYTES:
        size = part_size(request.size_bytes)
        multipart = s3.create_multipart_upload(Bucket=settings.bucket_name, Key=key, ContentType=content_type)
        record.multipart_upload_id = multipart["UploadId"]
        record.part_size_bytes = size
        upload: dict[str, Any] = {
            "method": "MULTIPART",
            "partSizeBytes": size,
            "parts": [
                {
                    "partNumber": number,
                    "url": s3.generate_presigned_url(
                        "upload_part",
                        Params={
                            "Bucket": settings.bucket_name,
                            "Key": key,
                            "UploadId": multipart["UploadId"],
                            "PartNumber": number,
                        },
                        ExpiresIn=seconds,
                    ),
                }
                for number in range(1, -(-request.size_bytes // size) + 1)
            ],
            "expiresIn": seconds,
        }
    else:
        upload = {
            "method": "PUT",
            "url": s3.generate_presigned_url(
                "put_object",
                Params={"Bucket": settings.bucket_name, "Key": key, "ContentType": content_type},
                ExpiresIn=seconds,
            ),
            "headers": {"Content-Type": content_type},
            "expiresIn": seconds,
        }
    (records or UploadRecords()).create(record)
    logger.info("upload created", extra={"upload_id": upload_id, "format": request.format})
    return 201, {
        "uploadId": upload_id,
        "status": UploadStatus.AWAITING_UPLOAD.value,
        "format": request.format,
        "provider": request.provider,
        "upload": upload,
    }


def complete_upload(
    upload_id: str,
    body: str | None,
    *,
    is_base64: bool = False,
    records: UploadRecords | None = None,
    s3: Any = None,
    start_validation: Callable[[str], None] | None = None,
) -> tuple[int, dict[str, Any]]:
    """``POST /uploads/{id}/complete``: the file is in place; validation starts, asynchronously.

    Completing again is harmless: an upload past AWAITING_UPLOAD answers its current status.
    """
    records = records or UploadRecords()
    record = records.get(upload_id)
    request = parse_body(body, CompleteUploadRequest, is_base64=is_base64)
    if record.upload_status != UploadStatus.AWAITING_UPLOAD:
        return 202, {"uploadId": upload_id, "status": record.upload_status}
    settings = get_settings()
    s3 = s3 if s3 is not None else aws.client("s3")
    if record.multipart_upload_id and not _object_size(s3, settings.bucket_name, record.source_key):
        if request.parts is None:
            raise RequestError(
                400,
                "PARTS_REQUIRED",
                "this is a multipart upload: send the ETag of every part you uploaded",
                [{"field": "parts", "message": "required for a multipart upload"}],
            )
        _complete_multipart(s3, settings.bucket_name, record, request.parts)
    elif not record.multipart_upload_id and request.parts is not None:
        raise RequestError(
            400,
            "NOT_MULTIPART",
            "this upload is a single PUT: complete it with an empty body",
            [{"field": "parts", "message": "only for a multipart upload"}],
        )
    size = _object_size(s3, settings.bucket_name, record.source_key)
    if size is None:
        raise RequestError(
            409, "FILE_NOT_UPLOADED", "no file has been uploaded yet: PUT it to the upload URL first"
        )
    if not records.start_validation(upload_id):  # another complete won the race
        return 202, {"uploadId": upload_id, "status": records.get(upload_id).upload_status}
    try:
        (start_validation or _invoke_validator)(upload_id)
    except ClientError:
        logger.exception("could not start the upload's validation", extra={"upload_id": upload_id})
        records.reopen(upload_id)
        raise RequestError(
            503, "VALIDATION_NOT_STARTED", "validation could not be started; complete the upload again"
        ) from None
    logger.info("upload complete", extra={"upload_id": upload_id, "bytes": size})
    return 202, {"uploadId": upload_id, "status": UploadStatus.VALIDATING.value}


def _object_size(s3: Any, bucket: str, key: str) -> int | None:
    try:
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _complete_multipart(s3: Any, bucket: str, record: Upload, parts: list[PartETag]) -> None:
    numbers = [p.part_number for p in parts]
    if numbers != sorted(set(numbers)):
        raise RequestError(
            400,
            "INVALID_PARTS",
            "parts must be listed once each, in ascending partNumber order",
            [{"field": "parts", "message": "not ascending or repeated"}],
        )
    try:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=record.source_key,
            UploadId=record.multipart_upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.part_number, "ETag": p.etag} for p in parts]},
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "NoSuchUpload", "InvalidRequest"):
            raise RequestError(
                400,
                "INVALID_PARTS",
                f"S3 refused the parts ({code}): upload every part to its URL and send each part's ETag",
                [{"field": "parts", "message": str(code)}],
            ) from None
        raise


def _invoke_validator(upload_id: str) -> None:
    aws.client("lambda").invoke(
        FunctionName=get_settings().validate_upload_function,
        InvocationType="Event",
        Payload=json.dumps({"uploadId": upload_id}).encode(),
    )


def upload_view(upload_id: str, records: UploadRecords | None = None) -> dict[str, Any]:
    """``GET /uploads/{id}``."""
    record = (records or UploadRecords()).get(upload_id)
    view = {
        "uploadId": upload_id,
        "provider": record.provider,
        "format": record.format,
        "status": record.upload_status,
        "sizeBytes": record.size_bytes,
        "jobCount": record.job_count,
        "error": record.error,
        "batchId": record.batch_id,
        "createdAt": record.created_at,
        "validatedAt": record.validated_at,
    }
    return {k: v for k, v in view.items() if v is not None}


# --- for POST /batches with an uploadId ---------------------------------------------------------------
@dataclass(frozen=True)
class UploadedJobs:
    """What a batch started from an upload reads: ``job_count`` jobs, one JSON object per line of
    ``key`` (in the results bucket), in the file's order."""

    upload_id: str
    job_count: int
    key: str
    options: dict[str, Any] | None  # the options the file was checked with, if it was


def jobs_for_batch(
    upload_id: str, provider: str, options: dict[str, Any] | None = None, records: UploadRecords | None = None
) -> UploadedJobs:
    """The jobs of a VALID upload, for a batch of ``provider`` with ``options`` (already validated by the
    provider's options model). Read-only; :class:`RequestError` when the upload cannot start it:

    - 422 ``UPLOAD_NOT_FOUND`` (no such upload), 422 ``UPLOAD_PROVIDER_MISMATCH`` (uploaded for another
      provider), 409 ``UPLOAD_NOT_READY`` (AWAITING_UPLOAD or VALIDATING), 422 ``INVALID_FILE`` (with the
      file's problems as details), 409 ``UPLOAD_ALREADY_USED`` (it started a batch already), and
      422 ``UPLOAD_OPTIONS_MISMATCH`` when the file was checked with other options than ``options``.

    Then :meth:`UploadRecords.claim_for_batch` makes the upload the batch's, once.
    """
    try:
        record = (records or UploadRecords()).get(upload_id)
    except RequestError:
        raise RequestError(
            422, "UPLOAD_NOT_FOUND", "no upload has that id", [{"field": "uploadId", "message": "unknown"}]
        ) from None
    if record.provider != provider:
        message = f"upload {upload_id} holds {record.provider} jobs, not {provider} jobs"
        raise RequestError(
            422, "UPLOAD_PROVIDER_MISMATCH", message, [{"field": "uploadId", "message": message}]
        )
    status = record.upload_status
    if status in (UploadStatus.AWAITING_UPLOAD, UploadStatus.VALIDATING):
        raise RequestError(
            409,
            "UPLOAD_NOT_READY",
            f"upload {upload_id} is {status}; start the batch once GET /uploads/{upload_id} says VALID",
        )
    if status == UploadStatus.INVALID:
        error = record.error or {}
        raise RequestError(
            422, "INVALID_FILE", str(error.get("message", "the file is invalid")), error.get("details")
        )
    if record.batch_id:
        raise RequestError(
            409,
            "UPLOAD_ALREADY_USED",
            f"upload {upload_id} already started batch {record.batch_id}",
            [{"field": "uploadId", "message": "already used"}],
        )
    checked = record.options
    if checked is not None and checked != (options or {}):
        message = "the file was checked with other options than this batch's; send the same options"
        raise RequestError(
            422, "UPLOAD_OPTIONS_MISMATCH", message, [{"field": "options", "message": message}]
        )
    return UploadedJobs(upload_id, int(record.job_count or 0), str(record.jobs_key), checked)


# --- streaming validation --------------------------------------------------------------------------
@dataclass
class Problem:
    line: int | None  # None: the file as a whole
    path: str
    message: str

    def detail(self) -> dict[str, str]:
        where = "file" if self.line is None else f"line {self.line}"
        return {
            "field": f"{where}: {self.path}" if self.path else where,
            "message": self.message[:MAX_MESSAGE],
        }


class _Stop(Exception):
    """Reading ends: enough problems, too many jobs, or no time left."""


@dataclass
class FileCheck:
    """Validate a file of jobs as a stream of byte chunks: each job against the provider's job model and,
    when the batch's options are known, the provider's batch-wide checks a window of jobs at a time.

    :meth:`run` yields each valid job as one compact JSON line (bytes, no newline) for the jobs file;
    afterwards ``problems`` holds at most :data:`MAX_PROBLEMS` problems and ``job_count`` the jobs seen.
    """

    provider: type[Provider]
    fmt: str
    options: dict[str, Any] | None = None
    max_jobs: int = MAX_JOBS
    seconds_left: Callable[[], float] | None = None
    problems: list[Problem] = field(default_factory=list)
    job_count: int = 0
    stopped: str | None = None

    def __post_init__(self) -> None:
        self.model: type[Job] = self.provider.job_model
        self.max_jobs = min(self.max_jobs, self.provider.capabilities.max_jobs_per_batch)
        overrides = self.provider.validate_batch.__func__ is not Provider.validate_batch.__func__  # type: ignore[attr-defined]
        self.batch_checks = overrides and self.options is not None
        self._window: list[tuple[int, dict[str, Any]]] = []

    def run(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        lines = _lines(chunks, MAX_LINE_BYTES)
        try:
            yield from (self._jsonl(lines) if self.fmt == "jsonl" else self._csv(lines))
            yield from self._flush_window()
        except _Stop:
            return
        if self.job_count == 0 and not self.problems:
            self.problems.append(Problem(None, "", "the file has no jobs"))

    @property
    def error(self) -> dict[str, Any]:
        details = [p.detail() for p in self.problems[:MAX_PROBLEMS]]
        message = f"the file was refused: {len(details)} problem(s)"
        if self.stopped:
            message += f" ({self.stopped})"
        if details:
            message += f"; first: {details[0]['field']}: {details[0]['message']}"
        return {"code": "INVALID_FILE", "message": message, "details": details}

    # -- shared ----------------------------------------------------------------------------------------
    def _problem(self, line: int | None, path: str, message: str) -> None:
        self.problems.append(Problem(line, path, message))
        if len(self.problems) >= MAX_PROBLEMS:
            self.stopped = f"reading stopped after {MAX_PROBLEMS} problems"
            raise _Stop

    def _counted(self, number: int) -> None:
        self.job_count += 1
        if self.job_count > self.max_jobs:
            name = self.provider.capabilities.name
            self.stopped = "reading stopped: too many jobs"
            self.problems.append(
                Problem(
                    number, "", f"the file has more than {self.max_jobs} jobs, the most a {name} batch holds"
                )
            )
            raise _Stop
        budget = self.seconds_left
        if budget is not None and self.job_count % 1000 == 0 and budget() < BUDGET_MARGIN_SECONDS:
            self.stopped = "reading stopped: out of time"
            self.problems.append(
                Problem(number, "", "the file could not be validated in one run; split it into smaller files")
            )
            raise _Stop

    def _invalid(self, number: int, exc: ValidationError) -> None:
        for err in exc.errors(include_url=False):
            self._problem(number, _field_path(err["loc"]), err["msg"])

    def _checked(self, number: int, job: dict[str, Any], line: bytes) -> Iterator[bytes]:
        """A job that passed its model: straight out, or through the window of batch-wide checks."""
        if not self.batch_checks:
            yield line
            return
        self._window.append((number, job))
        if len(self._window) >= BATCH_CHECK_WINDOW:
            yield from self._flush_window()

    def _flush_window(self) -> Iterator[bytes]:
        window, self._window = self._window, []
        if not window:
            return
        assert self.options is not None
        found = self.provider.validate_batch(self.options, [job for _, job in window])
        for problem in found:
            match = re.match(r"^jobs\[(\d+)\]\.?(.*)$", problem.get("field", ""))
            number = window[int(match.group(1))][0] if match and int(match.group(1)) < len(window) else None
            self._problem(number, match.group(2) if match else problem.get("field", ""), problem["message"])
        if not self.problems:
            for _, job in window:
                yield _dump(job)

    # -- JSON Lines ------------------------------------------------------------------------------------
    def _jsonl(self, lines: Iterator[tuple[int, bytes | None]]) -> Iterator[bytes]:
        model = self.model
        for number, line in lines:
            if line is None:
                self._problem(number, "", f"the line is longer than {MAX_LINE_BYTES // 1024} KiB")
                continue
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if not line.strip():
                continue
            self._counted(number)
            try:
                model.model_validate_json(line)
            except ValidationError as exc:
                if exc.errors()[0]["type"] == "json_invalid":
                    self._problem(number, "", _json_problem(line, exc))
                else:
                    self._invalid(number, exc)
                continue
            if self.problems:  # the file is refused already: only more problems matter now
                continue
            if self.batch_checks:
                yield from self._checked(number, json.loads(line), b"")
            else:
                yield line.strip()

    # -- CSV -------------------------------------------------------------------------------------------
    def _csv(self, lines: Iterator[tuple[int, bytes | None]]) -> Iterator[bytes]:
        position = {"line": 0}

        def text() -> Iterator[str]:
            for number, line in lines:
                position["line"] = number
                if line is None:
                    self._problem(number, "", f"the line is longer than {MAX_LINE_BYTES // 1024} KiB")
                    continue
                if number == 1 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                try:
                    yield line.decode("utf-8") + "\n"
                except UnicodeDecodeError as exc:
                    self._problem(number, "", _encoding_problem(exc))

        reader = csv.reader(text(), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            self._problem(position["line"], "", f"not valid CSV: {exc}")
            return
        paths = self._header(header)
        text_fields = _text_fields(self.model)
        model = self.model
        end = position["line"]
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._problem(position["line"], "", f"not valid CSV: {exc}")
                end = position["line"]
                continue
            number, end = end + 1, position["line"]
            if not row or row == [""]:
                continue
            self._counted(number)
            if len(row) != len(paths):
                self._problem(number, "", f"the row has {len(row)} cells; the header has {len(paths)}")
                continue
            job: dict[str, Any] = {}
            for path, cell in zip(paths, row, strict=True):
                if cell != "":
                    _put(job, path, cell if path[0] in text_fields and len(path) == 1 else _cell(cell))
            try:
                model.model_validate(job)
            except ValidationError as exc:
                self._invalid(number, exc)
                continue
            if not self.problems:
                yield from self._checked(number, job, _dump(job))

    def _header(self, header: list[str]) -> list[tuple[str, ...]]:
        paths: list[tuple[str, ...]] = []
        seen: set[tuple[str, ...]] = set()
        for name in header:
            path = tuple(name.strip().split("."))
            if not all(_SEGMENT.match(segment) for segment in path):
                self._problem(
                    1, name, "a column name is a field path: names joined by dots, e.g. params.bookingId"
                )
            elif path in seen:
                self._problem(1, name, "the column appears twice")
            elif any(p[: len(path)] == path or path[: len(p)] == p for p in seen):
                self._problem(1, name, "a field and a field inside it cannot both be columns")
            seen.add(path)
            paths.append(path)
        if self.problems:
            self.stopped = "the header is wrong"
            raise _Stop
        return paths


def _lines(chunks: Iterable[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line)`` from a stream of byte chunks, the newline (and a CR before it) removed;
    a line longer than ``limit`` comes as None and is never held whole."""
    number = 0
    pending = b""
    skipping = False  # inside a line already known to be too long
    for chunk in chunks:
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                continue
            number += 1
            yield number, None
            skipping = False
            chunk = chunk[cut + 1 :]
        pieces = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
        pending = pieces.pop()
        for line in pieces:
            number += 1
            yield number, (line[:-1] if line.endswith(b"\r") else line) if len(line) <= limit else None
        if len(pending) > limit:
            pending = b""
            skipping = True
    if skipping:
        yield number + 1, None
    elif pending:
        yield number + 1, pending[:-1] if pending.endswith(b"\r") else pending


def _dump(job: dict[str, Any]) -> bytes:
    return json.dumps(job, separators=(",", ":"), ensure_ascii=False).encode()


def _cell(cell: str) -> Any:
    """A CSV cell's value: JSON when the cell is valid JSON, else the text as written."""
    if cell[0] in _JSON_START or cell[0] in " \t":
        try:
            return json.loads(cell)
        except ValueError:
            pass
    return cell


def _put(job: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = job
    for segment in path[:-1]:
        target = target.setdefault(segment, {})
    target[path[-1]] = value


def _text_fields(model: type[BaseModel]) -> frozenset[str]:
    """Top-level fields the job model declares as text (``str``, optionally ``None``): their CSV cells are
    taken as written, so that ``clientRef`` 1001 stays the text "1001"."""

    def is_text(annotation: Any) -> bool:
        if annotation is str:
            return True
        origin = get_origin(annotation)
        if origin is Annotated:
            return is_text(get_args(annotation)[0])
        if origin in (Union, UnionType):
            args = [a for a in get_args(annotation) if a is not NoneType]
            return len(args) == 1 and is_text(args[0])
        return False

    return frozenset(f.alias or name for name, f in model.model_fields.items() if is_text(f.annotation))


def _encoding_problem(exc: UnicodeDecodeError) -> str:
    return (
        f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at byte {exc.start + 1} of the line); "
        "save the file as UTF-8"
    )


def _json_problem(line: bytes, exc: ValidationError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _encoding_problem(bad)
    return "not valid JSON: " + exc.errors()[0]["msg"].removeprefix("Invalid JSON: ").replace(
        "line 1 column", "column"
    )


# --- the validator task --------------------------------------------------------------------------
def validate_upload(
    upload_id: str,
    seconds_left: Callable[[], float] | None = None,
    *,
    records: UploadRecords | None = None,
    s3: Any = None,
) -> dict[str, Any]:
    """The validator task: read the upload's file once, write its jobs file, and mark the upload VALID,
    or INVALID with its first problems. Runs on an upload in VALIDATING only, so a repeated delivery of
    the same invocation changes nothing."""
    records = records or UploadRecords()
    record = records.get(upload_id)
    if record.upload_status != UploadStatus.VALIDATING:
        return {"uploadId": upload_id, "status": record.upload_status}
    settings = get_settings()
    s3 = s3 if s3 is not None else aws.client("s3")
    bucket = settings.bucket_name
    check = FileCheck(
        provider_class(record.provider), record.format, record.options, seconds_left=seconds_left
    )
    size = _object_size(s3, bucket, record.source_key) or 0
    started = time.monotonic()
    most = MAX_BYTES[record.format]
    if size > most:
        check.problems.append(Problem(None, "", f"the {record.format} file is larger than {most // MiB} MiB"))
    else:
        objects = ObjectStore(bucket, client=s3)
        writer = objects.writer(jobs_key(upload_id))
        try:
            for line in check.run(objects.stream(record.source_key, CHUNK_BYTES)):
                writer.write(line + b"\n")
        except BaseException:
            writer.abort()
            raise
        if check.problems:
            writer.abort()  # a refused file leaves no jobs file
        else:
            writer.close()
    seconds = round(time.monotonic() - started, 3)
    if check.problems:
        records.mark_invalid(upload_id, check.error)
        status = UploadStatus.INVALID
    else:
        records.mark_valid(upload_id, check.job_count)
        status = UploadStatus.VALID
    logger.info(
        "upload validated",
        extra={
            "upload_id": upload_id,
            "status": status,
            "jobs": check.job_count,
            "bytes": size,
            "seconds": seconds,
        },
    )
    return {"uploadId": upload_id, "status": status.value, "jobCount": check.job_count}
