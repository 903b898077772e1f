"""The HTTP API's logic: create a batch, read its status and outcomes, list batches and providers, cancel.

Everything here goes through the repository, the object store and the workflow gateway (:class:`Deps`);
nothing reaches into the workflow tasks but the one callback entry point.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, model_validator
from pydantic_core import SchemaSerializer, core_schema

from batchbridge import cost, limits
from batchbridge.api_models import ListBatchesQuery, ResultsQuery, RetryQuery
from batchbridge.clock import now_iso
from batchbridge.connections import load_connection
from batchbridge.errors import BatchBridgeError, IdempotencyConflictError, InvalidTokenError, RequestError
from batchbridge.models import BatchStatus, OutcomeKind
from batchbridge.objects import jobs_key
from batchbridge.observability import logger
from batchbridge.providers import values
from batchbridge.providers.base import Capabilities, Provider, all_capabilities, provider_class
from batchbridge.records import Batch, RetrySource
from batchbridge.repository import OPEN, ListQuery
from batchbridge.tasks import Deps

MAX_ERRORS_REPORTED = 10
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
#: How deep a job's values may nest. Real job payloads nest a few levels; deeper is a mistake or an
#: attack, and would reach the providers' encoders (and Python's recursion limit) before anything else.
MAX_JOB_DEPTH = limits.MAX_JOB_DEPTH


def invalid(details: list[dict[str, Any]], code: str = "VALIDATION_FAILED") -> RequestError:
    details = details[:MAX_ERRORS_REPORTED]
    return RequestError(422, code, "; ".join(f"{d['field']}: {d['message']}" for d in details), details)


class CreateBatchRequest(BaseModel):
    """``POST /batches``: the jobs inline (small batches) or the id of a validated upload, not both."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str = Field(min_length=1, max_length=64)
    connection: str = Field(min_length=1, max_length=64)
    jobs: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    upload_id: str | None = Field(default=None, alias="uploadId", min_length=1, max_length=64)
    options: dict[str, Any] = Field(default_factory=dict)
    client_reference: str | None = Field(default=None, alias="clientReference", min_length=1, max_length=256)
    deadline_seconds: int | None = Field(default=None, alias="deadlineSeconds", ge=1)
    retry_of: str | None = Field(default=None, alias="retryOf", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_source(self) -> CreateBatchRequest:
        if (self.jobs is None) == (self.upload_id is None):
            raise ValueError(
                "give the jobs inline (jobs) or the id of a validated upload (uploadId), not both"
            )
        return self


def _details(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:MAX_ERRORS_REPORTED]:
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append({"field": path or "body", "message": err["msg"]})
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_body(body: str | None, *, is_base64: bool, max_bytes: int) -> str:
    """A request body as text, or a 4xx saying why not (none, not base64 as marked, too large, not UTF-8)."""
    if body is None or body == "":
        raise RequestError(400, "EMPTY_BODY", "the request has no body; send a JSON object")
    if is_base64:
        import base64
        import binascii

        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "MALFORMED_BODY", "the body is marked base64 but is not") from None
        if len(raw) > max_bytes:
            raise RequestError(
                413, "BODY_TOO_LARGE", f"the body is larger than {max_bytes} bytes; split the batch"
            )
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(400, "MALFORMED_JSON", "the body is not UTF-8 text") from None
    # ASCII text (known without reading it) is as many bytes as characters.
    if len(body) > max_bytes or (
        not body.isascii() and len(body.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        raise RequestError(
            413, "BODY_TOO_LARGE", f"the body is larger than {max_bytes} bytes; split the batch"
        )
    return body


def read_json_object(body: str | None, *, is_base64: bool, max_bytes: int) -> dict[str, Any]:
    """A request body as a JSON object, or a 4xx naming what is wrong with it."""
    return _json_object(read_body(body, is_base64=is_base64, max_bytes=max_bytes))


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, "MALFORMED_JSON", f"the body is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    except ValueError as exc:  # NaN, Infinity
        raise RequestError(400, "MALFORMED_JSON", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "MALFORMED_JSON", "the body nests too deeply") from None
    if not isinstance(data, dict):
        raise RequestError(400, "INVALID_BODY", "the body must be a JSON object")
    return data


def parse_create(body: str | None, *, is_base64: bool = False, max_bytes: int) -> CreateBatchRequest:
    return _create_request(read_json_object(body, is_base64=is_base64, max_bytes=max_bytes))


def _create_request(data: dict[str, Any]) -> CreateBatchRequest:
    try:
        return CreateBatchRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid(_details(exc)) from None


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def validate_for_provider(
    request: CreateBatchRequest, job_count: int
) -> tuple[type[Provider], dict[str, Any], int]:
    """Check provider, job count, options and deadline. Returns the provider class, the clean options
    and the deadline in seconds."""
    try:
        cls = provider_class(request.provider)
    except BatchBridgeError as exc:
        raise RequestError(
            422, exc.code, exc.message, [{"field": "provider", "message": exc.message}]
        ) from None
    caps: Capabilities = cls.capabilities
    if job_count > caps.max_jobs_per_batch:
        most = caps.max_jobs_per_batch
        message = f"{job_count} jobs is more than {caps.name}'s maximum of {most} per batch"
        field = "jobs" if request.jobs is not None else "uploadId"
        raise RequestError(422, "TOO_MANY_JOBS", message, [{"field": field, "message": message}])
    details: list[dict[str, Any]] = []
    if len(json.dumps(request.options)) > limits.MAX_OPTIONS_BYTES:
        most = limits.MAX_OPTIONS_BYTES // 1024
        raise invalid([{"field": "options", "message": f"larger than {most} KiB"}])
    try:
        options = cls.options_model.model_validate(request.options).model_dump(
            by_alias=True, exclude_none=True
        )
    except ValidationError as exc:
        details.extend(_details(exc, "options"))
        options = {}
    deadline = request.deadline_seconds or caps.default_deadline_seconds
    if deadline > caps.max_deadline_seconds:
        details.append(
            {
                "field": "deadlineSeconds",
                "message": f"at most {caps.max_deadline_seconds} seconds for {caps.name}",
            }
        )
    if details:
        raise invalid(details)
    return cls, options, deadline


def inline_jobs(cls: type[Provider], options: dict[str, Any], jobs: list[dict[str, Any]]) -> list[bytes]:
    """Check inline jobs for the provider; they become the lines of the batch's jobs file.

    Each job is written once, as its line; the checks read the lines where they can: a line whose
    brackets number no more than the depth limit cannot nest deeper (only the rare others are walked).
    The provider's model then validates the jobs in one call."""
    details: list[dict[str, Any]] = []
    lines: list[bytes] = []
    good: list[int] = []  # cleared by their lines: validated without walking their values again
    doubtful: list[int] = []  # a long number or many brackets: validated with every check
    for i, job in enumerate(jobs):
        try:
            line = _dumps(job).encode("utf-8")
        except UnicodeEncodeError:
            details.append(
                {"field": f"jobs[{i}]", "message": "holds a lone surrogate (\\ud800-\\udfff), not text"}
            )
            continue
        except ValueError:  # a number beyond a double (1e400), read as Infinity: the model's check names it
            doubtful.append(i)
            continue
        if len(line) > limits.MAX_JOB_BYTES:
            details.append(
                {"field": f"jobs[{i}]", "message": f"is larger than {limits.MAX_JOB_BYTES // 1024} KiB"}
            )
        elif values.may_not_be_portable(line) and _too_deep(job, MAX_JOB_DEPTH):
            details.append({"field": f"jobs[{i}]", "message": f"nests deeper than {MAX_JOB_DEPTH} levels"})
        else:
            lines.append(line)
            (doubtful if values.may_not_be_portable(line) else good).append(i)
        if len(details) >= MAX_ERRORS_REPORTED:
            raise invalid(details)
    try:
        _jobs_adapter(cls).validate_python([jobs[i] for i in good], context=values.CHECKED)
    except ValidationError as exc:
        for err in exc.errors()[:MAX_ERRORS_REPORTED]:
            index, *rest = err["loc"]
            path = f"jobs[{good[int(index)]}]"
            for part in rest:
                path += f"[{part}]" if isinstance(part, int) else f".{part}"
            details.append({"field": path, "message": err["msg"]})
    for i in doubtful:
        try:
            cls.job_model.model_validate(jobs[i])
        except ValidationError as exc:
            details.extend(_details(exc, f"jobs[{i}]"))
    if not details:
        details.extend(cls.validate_batch(options, jobs))
    if details:
        raise invalid(sorted(details, key=lambda d: _job_index(d["field"])))
    return lines


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


@functools.cache
def _jobs_adapter(cls: type[Provider]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[cls.job_model])  # type: ignore[name-defined]


def _job_index(field: str) -> int:
    match = re.match(r"jobs\[(\d+)\]", field)
    return int(match.group(1)) if match else -1


# --- the common case in one pass -------------------------------------------------------------------
# A body of inline jobs is usually plain: a known provider, jobs its model takes, nothing a vendor could
# not read back. Such a body is validated in one pass, envelope and jobs together, by pydantic's JSON
# reader (in Rust), and each job written once, as its line, from what was validated (a dict where the job
# model's checks are all its fields' own, see _job_dict_schema); the portability checks then read the jobs
# file's bytes. Anything else (invalid, unusual, or only possibly not portable) goes the careful way,
# json.loads and the checks one by one, which names each problem: the one pass only ever decides that a
# body is plainly good, never that it is bad.

#: Where the body names its provider. Only a guess to pick the provider's model: that model takes
#: ``provider`` as exactly the guessed name, so a wrong guess (say a job's own "provider" key) fails the one
#: pass and the body goes the careful way.
_PROVIDER_NAMED = re.compile(r'"provider"\s*:\s*"([A-Za-z0-9_-]{1,64})"')
#: Every digit as "0", every other byte as ".": a run of 16 zeros in the translation is a run of 16 digits.
_DIGITS_AS_ZEROS = bytes(48 if 48 <= b <= 57 else 46 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 16
#: The jobs file less everything but its newlines and the brackets that open an object or a list, each as
#: "{": a line that nests deeper than the limit has more brackets than that, so a run longer than it.
_ALL_BUT_BRACKETS = bytes(b for b in range(256) if b not in b"{[\n")
_BRACKETS_AS_ONE = bytes(ord("{") if b == ord("[") else b for b in range(256))
_TOO_MANY_BRACKETS = b"{" * (MAX_JOB_DEPTH + 1)


@dataclass(frozen=True)
class _OnePass:
    request: CreateBatchRequest
    lines: list[bytes]
    jobs_file: bytes


@functools.cache
def _request_for(cls: type[Provider], name: str) -> type[CreateBatchRequest]:
    """``CreateBatchRequest`` for one provider: ``provider`` is ``name`` and each job is checked as the
    provider's job model (see :func:`_job_dict_schema`), so one call validates the whole body."""
    provider: Any = Literal[name]
    as_dicts = _job_dict_schema(cls.job_model)
    job: Any = cls.job_model if as_dicts is None else Annotated[dict[str, Any], _Schema(as_dicts)]
    return create_model(
        f"{cls.__name__}CreateBatchRequest",
        __base__=CreateBatchRequest,
        provider=(provider, ...),
        jobs=(list[job] | None, Field(default=None, min_length=1)),
    )


@dataclass(frozen=True)
class _Schema:
    """A ready pydantic-core schema as the type of a field."""

    schema: core_schema.CoreSchema

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return self.schema


def _job_dict_schema(model: type[BaseModel]) -> core_schema.CoreSchema | None:
    """The job model's checks, field by field, keeping each job the dict it was sent as (building a model
    instance per job costs more than the checks do). Only for a model all of whose checks are its fields'
    own, each field under one name, no unknown field allowed; any other model (a check of the whole job, a
    nested model, a field with a second name) gets None and jobs are validated as the model itself.

    A field with a default is optional here and left out when not sent; a field sent under its Python name
    (``client_ref`` for ``clientRef``) is unknown here and the body goes the careful way."""
    schema: Any = model.__pydantic_core_schema__
    config = schema.get("config", {})
    if (
        schema["type"] != "model"
        or schema.get("root_model")
        or schema.get("post_init")
        or schema.get("custom_init")
        or schema["schema"].get("computed_fields")
        or config.get("extra_fields_behavior") != "forbid"
        or not _checks_are_fields_own(schema["schema"]["fields"])
    ):
        return None
    fields: dict[str, core_schema.TypedDictField] = {}
    for name, field in schema["schema"]["fields"].items():
        key = field.get("validation_alias", name)
        if not isinstance(key, str):
            return None
        value = field["schema"]
        required = value["type"] != "default"
        value = _without_portability_check(value if required else value["schema"])
        fields[key] = core_schema.typed_dict_field(value, required=required)
    return core_schema.typed_dict_schema(fields, extra_behavior="forbid", config=config)


def _without_portability_check(node: Any) -> Any:
    """A schema less the values' portability check, which the one pass makes on the jobs' lines instead."""
    if isinstance(node, dict):
        if node.get("type") == "function-after" and node["function"].get("function") is values.check_portable:
            return _without_portability_check(node["schema"])
        return {key: _without_portability_check(item) for key, item in node.items()}
    if isinstance(node, list):
        return [_without_portability_check(item) for item in node]
    return node


def _checks_are_fields_own(node: Any) -> bool:
    """Whether a schema holds no nested model and no check that reads the other fields (only the values'
    portability check, which reads the validation's context, is known not to)."""
    if isinstance(node, dict):
        if node.get("type") in {"model", "definitions", "definition-ref", "dataclass"}:
            return False
        if node.get("type") == "with-info" and node.get("function") is not values.check_portable:
            return False
        return all(_checks_are_fields_own(item) for item in node.values())
    if isinstance(node, list | tuple):
        return all(_checks_are_fields_own(item) for item in node)
    return True


@functools.cache
def _line_writer(cls: type[Provider]) -> Callable[[Any], bytes]:
    """How a validated job becomes its line: a dict as it is, a model instance by its fields' JSON names and
    only the fields sent. NaN and Infinity are written as such (the model's own writer makes them null), so
    that a number too large for a double (``1e400``) shows in the line instead of vanishing."""
    if _job_dict_schema(cls.job_model) is not None:
        return pydantic_core.to_json
    writer = SchemaSerializer(cls.job_model.__pydantic_core_schema__, {"ser_json_inf_nan": "constants"})
    return functools.partial(writer.to_json, by_alias=True, exclude_unset=True)


def _inline_batch_in_one_pass(text: str) -> _OnePass | None:
    """The request and its jobs file's lines when the body is a plainly good batch of inline jobs; None
    when anything in it asks for the careful way (which then names what is wrong, if anything is)."""
    named = _PROVIDER_NAMED.search(text)
    if named is None:
        return None
    try:
        cls = provider_class(named.group(1))
    except BatchBridgeError:
        return None
    try:
        # The jobs' portability is checked below, on their lines, instead of value by value.
        request = _request_for(cls, named.group(1)).model_validate_json(text, context=values.CHECKED)
    except ValidationError:
        return None
    if request.jobs is None:
        return None
    try:
        json.dumps(request.options, allow_nan=False)
    except ValueError:  # NaN or Infinity in the options: not JSON, refused the careful way
        return None
    lines = list(map(_line_writer(cls), request.jobs))
    jobs_file = b"\n".join([*lines, b""])
    if (
        b"NaN" in jobs_file
        or b"Infinity" in jobs_file
        or max(map(len, lines)) > limits.MAX_JOB_BYTES
        or _TOO_MANY_BRACKETS in jobs_file.translate(_BRACKETS_AS_ONE, _ALL_BUT_BRACKETS)
        or (
            _LONG_DIGIT_RUN in jobs_file.translate(_DIGITS_AS_ZEROS)
            and any(values.may_not_be_portable(line) for line in lines)
        )
    ):
        return None
    return _OnePass(request, lines, jobs_file)


def _checks_batches(cls: type[Provider]) -> bool:
    """Whether the provider has checks of its own over a batch's jobs together."""
    return cls.validate_batch.__func__ is not Provider.validate_batch.__func__  # type: ignore[attr-defined]


def create_batch(
    body: str | None,
    idempotency_key: str | None,
    base_path: str,
    *,
    is_base64: bool = False,
    api_base_url: str | None = None,
    deps: Deps | None = None,
) -> tuple[int, dict[str, Any]]:
    deps = deps or Deps.default()
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise RequestError(
            400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-128 letters, digits or _.:-"
        )
    text = read_body(body, is_base64=is_base64, max_bytes=deps.settings.max_body_bytes)
    upload = None
    jobs_file: bytes | None = None
    one_pass = _inline_batch_in_one_pass(text)
    if one_pass is not None:
        request, lines, jobs_file = one_pass.request, one_pass.lines, one_pass.jobs_file
        cls, options, deadline = validate_for_provider(request, len(lines))
        if _checks_batches(cls):
            found = cls.validate_batch(options, [json.loads(line) for line in lines])
            if found:
                raise invalid(sorted(found, key=lambda d: _job_index(d["field"])))
    else:
        request = _create_request(_json_object(text))
        if request.upload_id is not None:
            from batchbridge import uploads

            cls, options, deadline = validate_for_provider(request, 0)
            upload = uploads.jobs_for_batch(
                request.upload_id, request.provider, options, uploads.UploadRecords(deps.repo)
            )
            cls, options, deadline = validate_for_provider(request, upload.job_count)
        else:
            assert request.jobs is not None
            cls, options, deadline = validate_for_provider(request, len(request.jobs))
            lines = inline_jobs(cls, options, request.jobs)
            jobs_file = b"\n".join(lines) + b"\n"
    _check_connection(request.connection, request.provider)
    if request.retry_of is not None:
        _check_retried(deps, request)

    digest = hashlib.sha256(
        json.dumps(
            [
                request.provider,
                request.connection,
                options,
                request.client_reference,
                request.deadline_seconds,
                request.upload_id,
                request.retry_of,
            ],
            sort_keys=True,
        ).encode()
    )
    if jobs_file is not None:  # every line and its newline: the jobs file itself
        digest.update(jobs_file)
    batch = new_batch(
        deps,
        cls,
        provider=request.provider,
        connection=request.connection,
        job_count=upload.job_count if upload else len(lines),
        options=options,
        client_reference=request.client_reference,
        deadline=deadline,
        api_base_url=api_base_url,
        retry_of=request.retry_of,
        upload_id=request.upload_id,
    )
    if upload is not None:
        batch.jobs_key = upload.key
    return start_batch(
        deps,
        batch,
        idempotency_key,
        digest.hexdigest(),
        base_path,
        jobs=jobs_file,
    )


def _check_retried(deps: Deps, request: CreateBatchRequest) -> None:
    """A new batch that retries another (its jobs fixed by the client) names a finished batch of the
    same provider and connection."""
    field = [
        {"field": "retryOf", "message": "must name a finished batch of the same provider and connection"}
    ]
    try:
        old = deps.repo.get_batch(str(request.retry_of))
    except BatchBridgeError:
        raise RequestError(422, "UNKNOWN_BATCH", f"no batch {request.retry_of!r} to retry", field) from None
    if not old.status.is_terminal:
        raise RequestError(409, "BATCH_NOT_FINISHED", f"batch {old.batch_id} is {old.status.value}", field)
    if len(old.retries) >= limits.MAX_RETRIES:
        raise RequestError(
            422,
            "TOO_MANY_RETRIES",
            f"batch {old.batch_id} has been retried {len(old.retries)} times already",
            field,
        )
    if (old.provider, old.connection) != (request.provider, request.connection):
        raise RequestError(
            422, "RETRY_MISMATCH", f"batch {old.batch_id} ran on another provider or connection", field
        )


def new_batch(
    deps: Deps,
    cls: type[Provider],
    *,
    provider: str,
    connection: str,
    job_count: int,
    options: dict[str, Any],
    client_reference: str | None,
    deadline: int,
    api_base_url: str | None,
    **fields: Any,
) -> Batch:
    """The record of a batch about to be accepted (ACCEPTED, its jobs file under its own id)."""
    batch_id = str(uuid.uuid4())
    created = now_iso()
    return Batch(
        batch_id=batch_id,
        status=BatchStatus.ACCEPTED,
        provider=provider,
        connection=connection,
        job_count=job_count,
        chunk_count=-(-job_count // cls.capabilities.max_jobs_per_submit),
        jobs_key=jobs_key(batch_id),
        options=options,
        client_reference=client_reference,
        created_at=created,
        updated_at=created,
        deadline_at=int(deps.clock()) + deadline,
        api_base_url=api_base_url,
        **fields,
    )


def start_batch(
    deps: Deps,
    batch: Batch,
    idempotency_key: str | None,
    body_hash: str,
    base_path: str,
    *,
    jobs: bytes | None,
) -> tuple[int, dict[str, Any]]:
    """Accept a batch: claim its Idempotency-Key (a replay answers the batch the key made), write its jobs
    file (unless the workflow writes it: a retry) and its record, and start its execution; then link a retry
    to the batch it retries. Anything that fails before the start undoes what was written."""
    if idempotency_key is not None:
        existing = deps.repo.claim_idempotency_key(
            idempotency_key, body_hash, batch.batch_id, expires_at=int(deps.clock()) + 86400
        )
        if existing is not None:
            return _replay(deps, existing.batch_id, existing.body_hash, body_hash, base_path)
    written: list[str] = []
    try:
        if batch.upload_id is not None:
            from batchbridge import uploads

            uploads.UploadRecords(deps.repo).claim_for_batch(batch.upload_id, batch.batch_id)
            written.append("upload")
        if jobs is not None:
            deps.objects.put_bytes(batch.jobs_key, jobs)
            written.append("jobs")
        deps.repo.create_batch(batch)
        written.append("batch")
        deps.workflow.start(batch.batch_id)
    except Exception:
        logger.exception("could not accept the batch; undoing what was written", extra={"written": written})
        _undo(deps, batch, written, idempotency_key)
        raise
    if batch.retry_of is not None:  # linked once it exists for good (a link is never undone)
        deps.repo.add_retry(batch.retry_of, batch.batch_id)
    logger.info("batch accepted", extra={"batch_id": batch.batch_id, "jobs": batch.job_count})
    _meter_creation(batch.batch_id)
    body = _accepted(batch.batch_id, base_path, batch.provider)
    if batch.retry_of is not None:
        body |= {"retryOf": batch.retry_of, "jobCount": batch.job_count}
    return 202, body


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    outcomes: list[OutcomeKind] = Field(
        default_factory=lambda: [OutcomeKind.FAILED, OutcomeKind.NOT_PROCESSED], min_length=1
    )
    client_reference: str | None = Field(default=None, alias="clientReference", min_length=1, max_length=256)
    deadline_seconds: int | None = Field(default=None, alias="deadlineSeconds", ge=1)


def retry_batch(
    batch_id: str,
    query: RetryQuery,
    body: str | None,
    idempotency_key: str | None,
    base_path: str,
    *,
    is_base64: bool = False,
    api_base_url: str | None = None,
    deps: Deps | None = None,
) -> tuple[int, dict[str, Any]]:
    """``POST /batches/{id}/retry``: a new batch of exactly the jobs of a finished batch that ended with the
    chosen outcomes (default failed and not processed), as they were submitted, in their order, linked both
    ways (``retryOf``, ``retries``). Its jobs file is written by the workflow's first step."""
    deps = deps or Deps.default()
    if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
        raise RequestError(
            400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-128 letters, digits or _.:-"
        )
    data = read_json_object(body, is_base64=is_base64, max_bytes=64 * 1024) if body else {}
    if query.outcomes:
        if "outcomes" in data:
            raise RequestError(
                400, "INVALID_PARAMETER", "give outcomes in the query or in the body, not both"
            )
        data["outcomes"] = [p.strip() for p in query.outcomes.split(",")]
    try:
        request = RetryRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid(_details(exc)) from None
    old = deps.repo.get_batch(batch_id)
    if len(old.retries) >= limits.MAX_RETRIES:
        raise RequestError(
            422, "TOO_MANY_RETRIES", f"batch {batch_id} has been retried {len(old.retries)} times already"
        )
    if not old.status.is_terminal or old.counts is None:
        raise RequestError(
            409,
            "BATCH_NOT_FINISHED",
            f"batch {batch_id} is {old.status.value}; retry it once it has finished",
        )
    kinds = list(dict.fromkeys(request.outcomes))
    by_kind = old.counts.model_dump()
    count = sum(by_kind[k.value] for k in kinds)
    if count == 0:
        named = ", ".join(k.value for k in kinds)
        raise RequestError(422, "NOTHING_TO_RETRY", f"batch {batch_id} has no job whose outcome is {named}")
    cls = provider_class(old.provider)
    _check_connection(old.connection, old.provider)
    caps = cls.capabilities
    deadline = request.deadline_seconds or caps.default_deadline_seconds
    if deadline > caps.max_deadline_seconds:
        raise invalid(
            [
                {
                    "field": "deadlineSeconds",
                    "message": f"at most {caps.max_deadline_seconds} seconds for {caps.name}",
                }
            ]
        )
    reference = request.client_reference or old.client_reference
    digest = hashlib.sha256(
        json.dumps(["retry", batch_id, [k.value for k in kinds], reference, deadline]).encode()
    )
    batch = new_batch(
        deps,
        cls,
        provider=old.provider,
        connection=old.connection,
        job_count=count,
        options=old.options,
        client_reference=reference,
        deadline=deadline,
        api_base_url=api_base_url,
        retry_of=batch_id,
        jobs_from=RetrySource(batch_id=batch_id, outcomes=kinds),
    )
    return start_batch(deps, batch, idempotency_key, digest.hexdigest(), base_path, jobs=None)


def _meter_creation(batch_id: str) -> None:
    """What creating the batch cost, as its first usage: this invocation (when metered) and the state
    machine's first transition ("Cancel Requested?")."""
    meter = cost.current()
    if meter is None:
        return
    meter.add(cost.TRANSITIONS, cost.transitions_after("start", None))
    cost.lambda_invocation(meter)
    cost.flush(batch_id, meter)
    meter.recorded = True


def _check_connection(name: str, provider: str) -> None:
    try:
        connection = load_connection(name)
    except BatchBridgeError as exc:
        raise RequestError(
            422, exc.code, exc.message, [{"field": "connection", "message": exc.message}]
        ) from None
    if connection.provider != provider:
        message = f"connection {name!r} is for provider {connection.provider!r}, not {provider!r}"
        raise RequestError(
            422, "CONNECTION_PROVIDER_MISMATCH", message, [{"field": "connection", "message": message}]
        )


def _replay(
    deps: Deps, batch_id: str | None, stored_hash: str | None, body_hash: str, base_path: str
) -> tuple[int, dict[str, Any]]:
    """A key seen before: the same body gets the same batch; a different body is refused."""
    if stored_hash is None or batch_id is None:  # the first request gave the key back (it failed)
        raise RequestError(
            409, "IDEMPOTENCY_KEY_IN_USE", "a request with this Idempotency-Key just failed; retry"
        )
    if stored_hash != body_hash:
        raise IdempotencyConflictError(
            "this Idempotency-Key was used for a different request body; use a new key for a new batch"
        )
    try:
        existing = deps.repo.get_batch(batch_id)
    except BatchBridgeError:
        # The first request with this key is still being accepted (or is being undone): never hand out an
        # id that may not come to exist.
        raise RequestError(
            409,
            "IDEMPOTENCY_KEY_IN_USE",
            "a request with this Idempotency-Key is still being accepted; retry",
        ) from None
    return 200, _accepted(batch_id, base_path, existing.provider, replay=True)


def _undo(deps: Deps, batch: Batch, written: list[str], idempotency_key: str | None) -> None:
    try:
        if "batch" in written:
            deps.repo.delete_batch(batch.batch_id)

        if "jobs" in written:
            deps.objects.delete(batch.jobs_key)
        if "upload" in written and batch.upload_id is not None:
            from batchbridge import uploads

            uploads.UploadRecords(deps.repo).release_claim(batch.upload_id, batch.batch_id)
        if idempotency_key is not None:
            deps.repo.release_idempotency_key(idempotency_key)
    except Exception:
        logger.exception("undo failed", extra={"batch_id": batch.batch_id})


def _links(batch_id: str, base_path: str) -> dict[str, str]:
    return {
        "self": f"{base_path}/batches/{batch_id}",
        "results": f"{base_path}/batches/{batch_id}/results",
        "cancel": f"{base_path}/batches/{batch_id}/cancel",
    }


def _accepted(batch_id: str, base_path: str, provider: str, *, replay: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": provider,
        "batchId": batch_id,
        "status": BatchStatus.ACCEPTED.value,
        "links": _links(batch_id, base_path),
    }
    if replay:
        body["replayed"] = True
    return body


def batch_view(batch_id: str, base_path: str, deps: Deps | None = None) -> dict[str, Any]:
    deps = deps or Deps.default()
    batch = deps.repo.get_batch(batch_id)
    view: dict[str, Any] = {
        "batchId": batch.batch_id,
        "status": batch.status.value,
        "provider": batch.provider,
        "connection": batch.connection,
        "clientReference": batch.client_reference,
        "jobCount": batch.job_count,
        "chunkCount": batch.chunk_count,
        "progress": batch.progress,
        "counts": batch.counts.model_dump(by_alias=True) if batch.counts else None,
        "error": batch.error.model_dump() if batch.error else None,
        "polls": batch.rounds,
        "cost": batch.cost or (cost.price(batch.usage) | {"final": False} if batch.usage else None),
        "createdAt": batch.created_at,
        "updatedAt": batch.updated_at,
        "finishedAt": batch.finished_at,
        "deadlineAt": batch.deadline_at,
        "retryOf": batch.retry_of,
        "retries": batch.retries or None,
        "links": _links(batch_id, base_path),
    }
    if batch.results_key:
        view["results"] = {
            "bucket": deps.objects.bucket,
            "key": batch.results_key,
            "byOutcome": batch.outcome_keys,
        }
    return {k: v for k, v in view.items() if v is not None}


def outcomes_page(batch_id: str, query: ResultsQuery, deps: Deps | None = None) -> dict[str, Any]:
    """``GET /batches/{id}/results``: a page of outcomes, the outcomes of one client reference, or (once the
    batch has finished) a link to a results file. ``query`` was validated by the event handler."""
    deps = deps or Deps.default()
    batch = deps.repo.get_batch(batch_id)
    if query.format == "file":
        return _results_file(deps, batch, query.outcome)
    page: dict[str, Any] = {"batchId": batch_id, "status": batch.status.value}
    if query.client_ref:
        if query.next_token or query.outcome is not None:
            raise RequestError(
                400, "INVALID_PARAMETER", "clientRef cannot be combined with outcome or nextToken"
            )
        page["items"] = [r.view() for r in deps.repo.outcome_by_client_ref(batch_id, query.client_ref)]
        return page
    try:
        rows, token = deps.repo.outcomes(
            batch_id, kind=query.outcome, limit=query.limit, token=query.next_token
        )
    except InvalidTokenError as exc:
        raise RequestError(400, exc.code, exc.message) from None
    page["items"] = [r.view() for r in rows]
    if token:
        page["nextToken"] = token
    return page


def _results_file(deps: Deps, batch: Batch, outcome: OutcomeKind | None) -> dict[str, Any]:
    if not batch.results_key:
        raise RequestError(
            409,
            "RESULTS_NOT_READY",
            f"batch {batch.batch_id} is {batch.status.value}; its results files are written when it finishes",
        )
    key = batch.results_key if outcome is None else batch.outcome_keys.get(outcome.value)
    if key is None:
        raise RequestError(
            409, "RESULTS_NOT_READY", f"batch {batch.batch_id} has no file of {outcome} outcomes"
        )
    seconds = deps.settings.results_url_seconds
    name = f"{batch.batch_id}-{outcome.value if outcome else 'results'}.jsonl"
    return {
        "batchId": batch.batch_id,
        "format": "jsonl",
        "outcome": outcome.value if outcome else None,
        "url": deps.objects.presigned_get(key, seconds, filename=name),
        "expiresIn": seconds,
    }


def list_batches(query: ListBatchesQuery, base_path: str, deps: Deps | None = None) -> dict[str, Any]:
    """``GET /batches``: summaries, newest first, of one or several statuses (or ``active``), one
    provider, or one client reference. ``query`` was validated by the event handler."""
    deps = deps or Deps.default()
    statuses = _statuses(query.status or "")
    if query.client_reference is not None and statuses:
        raise RequestError(400, "INVALID_PARAMETER", "clientReference cannot be combined with status")
    listing = ListQuery(statuses=statuses, provider=query.provider, client_reference=query.client_reference)
    try:
        batches, token = deps.repo.list_batches(listing, limit=query.limit, token=query.next_token)
    except InvalidTokenError as exc:
        raise RequestError(400, exc.code, exc.message) from None
    page: dict[str, Any] = {"items": [_summary(b, base_path) for b in batches]}
    if token:
        page["nextToken"] = token
    return page


def _statuses(value: str) -> tuple[BatchStatus, ...]:
    """``status=FAILED,TIMED_OUT`` or ``status=active`` (every status of a batch still going)."""
    if not value:
        return ()
    chosen: list[BatchStatus] = []
    for part in (p.strip() for p in value.split(",")):
        if part == "active":
            chosen.extend(OPEN)
            continue
        try:
            chosen.append(BatchStatus(part))
        except ValueError:
            allowed = ", ".join(["active", *(s.value for s in BatchStatus)])
            raise RequestError(
                400, "INVALID_PARAMETER", f"status must be one or more of: {allowed}"
            ) from None
    return tuple(dict.fromkeys(chosen))


def _summary(batch: Batch, base_path: str) -> dict[str, Any]:
    summary = {
        "batchId": batch.batch_id,
        "status": batch.status.value,
        "provider": batch.provider,
        "connection": batch.connection,
        "clientReference": batch.client_reference,
        "jobCount": batch.job_count,
        "counts": batch.counts.model_dump(by_alias=True) if batch.counts else None,
        "createdAt": batch.created_at,
        "finishedAt": batch.finished_at,
        "links": _links(batch.batch_id, base_path),
    }
    return {k: v for k, v in summary.items() if v is not None}


def only_params(params: dict[str, str], allowed: set[str]) -> None:
    """A query parameter the route does not take is refused (400), never silently ignored."""
    unknown = set(params) - allowed
    if unknown:
        raise RequestError(
            400, "UNKNOWN_PARAMETER", f"unknown query parameter(s): {', '.join(sorted(unknown))[:200]}"
        )


def cancel_batch(batch_id: str, base_path: str, deps: Deps | None = None) -> dict[str, Any]:
    """Stop the batch's workflow and start the short cancel run that collects, finalizes and publishes.

    Jobs that already finished keep their real outcomes; running work is cancelled at the provider where
    the provider can, and every unfinished job gets a ``not_processed`` outcome.
    """
    deps = deps or Deps.default()
    batch = deps.repo.get_batch(batch_id)
    if batch.status.is_terminal:
        raise RequestError(
            409, "BATCH_FINISHED", f"batch {batch_id} already finished with status {batch.status.value}"
        )
    if deps.repo.request_cancel(batch_id) is None:
        raise RequestError(409, "BATCH_FINISHED", f"batch {batch_id} finished before it could be cancelled")
    deps.workflow.stop(batch_id, "cancelled through POST /batches/{id}/cancel")
    deps.workflow.start(batch_id, cancel=True)
    logger.info("batch cancel requested", extra={"batch_id": batch_id})
    return {"batchId": batch_id, "status": "CANCELLING", "links": _links(batch_id, base_path)}


def receive_callback(batch_id: str, token: str, body: str | None, deps: Deps | None = None) -> dict[str, Any]:
    """A provider's completion callback (see :mod:`batchbridge.tasks.callbacks`). The body is parsed
    defensively: a body that is not JSON, or nests too deeply, is passed on as None."""
    from batchbridge.tasks import callbacks

    parsed: Any = None
    if body:
        try:
            parsed = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            parsed = None
        if _too_deep(parsed, MAX_JOB_DEPTH):
            parsed = None
    return callbacks.receive(batch_id, token, parsed, deps)


def providers_view() -> dict[str, Any]:
    return {"providers": [c.model_dump(by_alias=True) for c in all_capabilities()]}
