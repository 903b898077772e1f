"""OS1 Participant Service: batch create and update of participants (drivers, vehicles, ...).

Dialect, in short (``docs/providers/os1.md`` has the whole of it):

* Auth is client credentials: ``POST {base}/core/api/v1/aaa/auth/client-credentials`` with
  ``{"clientId", "clientSecret", "audience"?}`` gives an access token that travels in
  ``X-COREOS-ACCESS`` (never ``Authorization``). The provider base caches it per connection for
  ``expiresIn - 600`` seconds (as the vendor's sample app does), or half its lifetime when that is longer;
  a 401 on an API call obtains one new token and repeats the call once, then fails.
* Every request carries a fresh ``X-COREOS-REQUEST-ID`` (uuid4, new for every attempt) and the tenant
  in ``X-COREOS-TID``; writes carry ``X-COREOS-ORIGIN-TOKEN`` (documented as required: a connection
  without an ``originToken`` cannot submit), and a submit that asks for a callback carries
  ``X-COREOS-CALLBACK-SECRET`` when the connection has one.
* Submit is ``POST {base}/core/api/v2/participants/{participantType}/batch`` for creates; updates use
  the same path with the method from the connection setting ``updateMethod`` (default ``PUT``; the
  vendor does not document it). Body ``{"payload": [...], "callback": {"url"}}``; answer 202
  ``{"data": {"id": "batch:<uuid>"}, "request": {...}}``.
* Status is ``GET …/batch/status?batchId=…`` with ``data.meta.status`` and the per-record results inline
  (``success[]`` / ``errors[]``, keyed by refID). The status words and what a refID is are not documented:
  they come from the connection's settings (``runningStatuses``, ``completedStatuses``,
  ``failedStatuses``, ``createRefField``, ``updateRefField``), the defaults being ``queued``/``processing``,
  ``completed``, ``failed``, ``uniqueCode`` and ``id``.
* Every answer is an envelope: ``{"data", "request"}`` or ``{"error": {"code", "description",
  "additionalInfo"}, "request"}``. The ``request`` echo is not used and not required; an error's code is
  kept as ``OS1_<code>`` when it is OS1's 12 digits.

**Where jobs are checked.** :class:`OS1Job` validates each job on its own when the batch is posted: it
must be a create (``uniqueCode`` + ``name``, optional ``owner``) or an update (``id``) and never a mix.
Whether its shape matches the batch's ``operation`` needs the options, which the job model does not
see, so that check happens per chunk in :meth:`OS1Provider.submit` (such jobs are not sent) and
:meth:`OS1Provider.collect` reports each of them ``failed`` with code ``OS1_JOB_SHAPE``.

**Duplicate refIDs in a chunk.** OS1 could not tell two records with the same refID apart, so only the
first job with a given refID is sent; every later one is ``not_processed`` with code
``OS1_DUPLICATE_REF`` naming the job that was sent in its place. (Nothing is applied twice, and every
job still gets exactly one outcome.)
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from batchbridge.errors import (
    BatchRejectedError,
    ConfigurationError,
    ProviderResponseError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, ErrorInfo, Outcome, OutcomeKind
from batchbridge.observability import logger
from batchbridge.providers.auth import Token, clear_token_cache
from batchbridge.providers.base import Capabilities, ChunkInfo, Job, Provider, StatusReport, register
from batchbridge.providers.http import expect_dict
from batchbridge.providers.protocol import Phase, Problem, Rule, clip
from batchbridge.providers.settings import ProviderSettings
from batchbridge.providers.values import PortableObject

__all__ = ["OS1Provider", "clear_token_cache", "parse_error", "parse_status", "parse_success", "plan_chunk"]

AUTH_PATH = "/core/api/v1/aaa/auth/client-credentials"
BATCH_PATH = "/core/api/v2/participants/{type}/batch"
STATUS_PATH = "/core/api/v2/participants/{type}/batch/status"

H_REQUEST_ID = "X-COREOS-REQUEST-ID"
H_TENANT = "X-COREOS-TID"
H_ACCESS = "X-COREOS-ACCESS"
H_ORIGIN = "X-COREOS-ORIGIN-TOKEN"
H_CALLBACK_SECRET = "X-COREOS-CALLBACK-SECRET"  # noqa: S105 - a header name, not a secret

MIN_POLL_SECONDS = 5
MAX_POLL_SECONDS = 300
MAX_JOBS_PER_SUBMIT = 1024  # the sibling container API's cap; the participant cap is not published
TOKEN_MARGIN_SECONDS = 600  # the vendor's sample app renews this long before expiry
DEFAULT_UPDATE_METHOD = "PUT"
DEFAULT_REF_FIELDS = {"create": "uniqueCode", "update": "id"}
DEFAULT_RUNNING = ("queued", "processing")
DEFAULT_COMPLETED = ("completed",)
DEFAULT_FAILED = ("failed",)

RECORD_FAILED = "OS1_RECORD_FAILED"
NOT_REPORTED = "OS1_NOT_REPORTED"
DUPLICATE_REF = "OS1_DUPLICATE_REF"
JOB_SHAPE = "OS1_JOB_SHAPE"
CONFLICTING_RESULT = "OS1_CONFLICTING_RESULT"
BATCH_FAILED = "OS1_BATCH_FAILED"

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
PARTICIPANT_ID_PATTERN = rf"^[A-Za-z][A-Za-z0-9_-]{{0,63}}:{_UUID}$"
SAFE_SEGMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_CODE = re.compile(r"^[0-9]{12}$")
_WORD = r"^[A-Za-z][A-Za-z0-9_ -]{0,63}$"


def vendor_code(code: str) -> str:
    """BatchBridge's error code for one of OS1's 12-digit codes: ``OS1_<code>``."""
    return f"OS1_{code}"


# --- job and options models -----------------------------------------------------------------------
class OS1Job(Job):
    """One participant record: a create (``uniqueCode``, ``name``, optional ``owner``) or an update
    (``id`` as ``<prefix>:<uuid>``), each with optional ``properties``. ``clientRef`` is BatchBridge's
    own and is never sent to OS1. Fields go by their documented names only (``uniqueCode``, not
    ``unique_code``), so what the client sent is exactly what OS1 gets."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=False,
        json_schema_extra={
            "examples": [
                {
                    "clientRef": "d-1",
                    "uniqueCode": "DRV-0001",
                    "name": "Driver One",
                    "properties": {"city": "Pune"},
                },
                {
                    "clientRef": "d-2",
                    "id": "driver:8e0f7c1a-1d1b-4d5e-9a53-2f1f6f4e9b10",
                    "properties": {"city": "Goa"},
                },
            ]
        },
    )

    unique_code: StrictStr | None = Field(default=None, alias="uniqueCode", min_length=1, max_length=256)
    name: StrictStr | None = Field(default=None, min_length=1, max_length=256)
    owner: StrictStr | None = Field(default=None, min_length=1, max_length=256)
    id: StrictStr | None = None
    properties: PortableObject = Field(default_factory=dict, description="the participant's properties")

    @field_validator("id")
    @classmethod
    def _participant_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(PARTICIPANT_ID_PATTERN, value):
            raise ValueError("must be an OS1 participant id '<prefix>:<uuid>', e.g. 'driver:<uuid>'")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> OS1Job:
        if self.id is not None:
            extra = [
                alias
                for alias, value in (
                    ("uniqueCode", self.unique_code),
                    ("name", self.name),
                    ("owner", self.owner),
                )
                if value is not None
            ]
            if extra:
                raise ValueError(
                    f"an update job (with id) carries only id and properties, not {', '.join(extra)}"
                )
            return self
        missing = [
            alias for alias, value in (("uniqueCode", self.unique_code), ("name", self.name)) if not value
        ]
        if missing:
            raise ValueError(
                f"a create job needs uniqueCode and name (missing {', '.join(missing)}); "
                "to update a participant give its id instead"
            )
        return self

    @property
    def operation(self) -> Literal["create", "update"]:
        return "update" if self.id is not None else "create"

    def ref_value(self, field: str) -> str | None:
        """The value of ``field`` (``uniqueCode``, ``name`` or ``id``) that OS1's results would name."""
        return {"uniqueCode": self.unique_code, "name": self.name, "id": self.id}.get(field)

    def payload(self) -> dict[str, Any]:
        if self.id is not None:
            return {"id": self.id, "properties": self.properties}
        record: dict[str, Any] = {"uniqueCode": self.unique_code, "name": self.name}
        if self.owner is not None:
            record["owner"] = self.owner
        record["properties"] = self.properties
        return record


class OS1Options(BaseModel):
    """Per-batch options: which participant type (its plural name, as in the URL) and whether the
    batch creates or updates participants."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    participant_type: StrictStr = Field(
        alias="participantType",
        description="plural name of the participant type, e.g. 'drivers' (letters, digits, '-' and '_')",
    )
    operation: Literal["create", "update"] = "create"

    @field_validator("participant_type")
    @classmethod
    def _safe_segment(cls, value: str) -> str:
        if not re.fullmatch(SAFE_SEGMENT_PATTERN, value):
            raise ValueError(
                "must be a participant type's plural name such as 'drivers': 1-128 letters, digits, "
                "'-' or '_', starting with a letter or digit"
            )
        return value


class OS1Settings(ProviderSettings):
    """An OS1 connection's ``settings`` (see ``docs/providers/os1.md``)."""

    tenant_id: StrictStr = Field(
        alias="tenantId", min_length=1, max_length=200, description=f"sent as {H_TENANT}"
    )
    audience: StrictStr | None = Field(default=None, min_length=1, max_length=500)
    update_method: Literal["PUT", "POST", "PATCH"] = Field(default="PUT", alias="updateMethod")
    create_ref_field: Literal["uniqueCode", "name", "index"] = Field(
        default="uniqueCode", alias="createRefField"
    )
    update_ref_field: Literal["id", "index"] = Field(default="id", alias="updateRefField")
    running_statuses: list[StrictStr] = Field(
        default=list(DEFAULT_RUNNING), alias="runningStatuses", min_length=1, max_length=20
    )
    completed_statuses: list[StrictStr] = Field(
        default=list(DEFAULT_COMPLETED), alias="completedStatuses", min_length=1, max_length=20
    )
    failed_statuses: list[StrictStr] = Field(
        default=list(DEFAULT_FAILED), alias="failedStatuses", min_length=1, max_length=20
    )
    # Older connections keep these two in settings; credentials are where they belong.
    origin_token: StrictStr | None = Field(default=None, alias="originToken", min_length=1)
    callback_secret: StrictStr | None = Field(default=None, alias="callbackSecret", min_length=1)

    @field_validator("update_method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _words_apart(self) -> OS1Settings:
        groups = (self.running_statuses, self.completed_statuses, self.failed_statuses)
        words = [w for group in groups for w in group]
        if len(set(words)) != len(words):
            raise ValueError("runningStatuses, completedStatuses and failedStatuses must not share a word")
        if any(not re.fullmatch(_WORD, w) for w in words):
            raise ValueError("status words are 1-64 letters, digits, spaces, '-' or '_'")
        return self

    def ref_field(self, operation: str) -> str:
        return self.create_ref_field if operation == "create" else self.update_ref_field

    def state_of(self, status: str) -> ChunkState | None:
        if status in self.running_statuses:
            return ChunkState.RUNNING
        if status in self.completed_statuses:
            return ChunkState.COMPLETED
        if status in self.failed_statuses:
            return ChunkState.FAILED
        return None

    @property
    def words(self) -> list[str]:
        return [*self.running_statuses, *self.completed_statuses, *self.failed_statuses]


# --- envelopes --------------------------------------------------------------------------------------
class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _SuccessEnvelope(_Loose):
    """``{"data", "request"}``; the ``request`` echo is tolerated in any form and not used."""

    data: Any = Field()


class VendorError(BaseModel):
    """OS1's ``error`` object. Its examples show empty placeholders, so only the presence of ``code``
    is required; a code that is not OS1's 12 digits is not kept as a code."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    code: StrictStr
    description: StrictStr = ""
    additional_info: Any = Field(default=None, alias="additionalInfo")

    def text(self) -> str:
        said = clip(self.description, 256) if self.description.strip() else "no description"
        return f"OS1 error {self.code}: {said}" if self.code else said


class _ErrorEnvelope(_Loose):
    error: VendorError


class _TokenData(_Loose):
    access_token: StrictStr = Field(alias="accessToken", min_length=1)
    token_type: StrictStr = Field(alias="tokenType")
    expires_in: StrictInt | StrictFloat = Field(alias="expiresIn", gt=0)


class _SubmitData(_Loose):
    id: StrictStr = Field(min_length=1)


class _Meta(_Loose):
    status: StrictStr
    success: StrictInt = Field(ge=0)
    failed: StrictInt = Field(ge=0)
    total: StrictInt = Field(ge=0)


class _Success(_Loose):
    ref_id: StrictStr = Field(alias="refID")
    id: StrictStr


class _Failure(_Loose):
    ref_id: StrictStr = Field(alias="refID")
    reason: StrictStr


class BatchStatusData(_Loose):
    """``data`` of the status answer. ``success`` and ``errors`` may be absent while the batch runs;
    a finished batch must carry both lists (checked by :meth:`OS1Provider._fetch_status`)."""

    meta: _Meta
    success: list[_Success] | None = None
    errors: list[_Failure] | None = None


def _problems(exc: ValidationError, prefix: str) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        parts.append(f"{where}: {'missing' if error['type'] == 'missing' else error['msg']}")
        if len(parts) == 5:
            parts.append("…")
            break
    return "; ".join(parts)


def parse_success(body: Any) -> Any:
    """The ``data`` of a ``{"data", "request"}`` envelope; :class:`ProviderResponseError` naming what is
    wrong when the body does not have that shape.

    >>> parse_success({"data": {"id": "x"}, "request": {"uri": "/", "method": "GET"}})
    {'id': 'x'}
    """
    body = expect_dict(body)
    if "error" in body and "data" not in body:
        raise ProviderResponseError("a success status with an error envelope")
    try:
        return _SuccessEnvelope.model_validate(body).data
    except ValidationError as exc:
        raise ProviderResponseError(f"the answer breaks OS1's envelope ({_problems(exc, '')})") from None


def parse_error(body: Any) -> VendorError:
    """The ``error`` of a ``{"error": {code, description, additionalInfo}, "request"}`` envelope;
    :class:`ProviderResponseError` naming what is wrong when the body does not have that shape."""
    body = expect_dict(body)
    try:
        return _ErrorEnvelope.model_validate(body).error
    except ValidationError as exc:
        raise ProviderResponseError(
            f"the error answer breaks OS1's envelope ({_problems(exc, '')})"
        ) from None


def _data_model[M: BaseModel](model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProviderResponseError(
            f"the answer breaks OS1's documented shape ({_problems(exc, 'data')})"
        ) from None


def parse_status(body: Any) -> BatchStatusData:
    """The status answer's ``data``, checked against the documented shape."""
    return _data_model(BatchStatusData, parse_success(body))


def _read_token(body: Any) -> tuple[str, float]:
    data = _data_model(_TokenData, parse_success(body))
    if data.token_type.lower() != "bearer":
        raise ProviderResponseError("data.tokenType is not Bearer")
    return data.access_token, float(data.expires_in)


# --- the adapter ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Planned:
    """What happens to one job of a chunk: sent, skipped as a duplicate, or refused for its shape."""

    kind: Literal["send", "duplicate", "shape"]
    ref_id: str | None = None
    payload: dict[str, Any] | None = None
    first: int | None = None  # for a duplicate: the chunk position of the job sent in its place
    reason: str | None = None


_EXPECTED = {"create": "uniqueCode and name", "update": "id"}


def plan_chunk(jobs: Sequence[dict[str, Any]], operation: str, ref_field: str = "") -> list[_Planned]:
    """Decide, deterministically from the jobs and the batch's operation, which jobs are sent and which
    refID OS1's results will name each by (``ref_field``: a record field, or ``index`` for the record's
    position in the payload; default ``uniqueCode`` for a create and ``id`` for an update).

    ``submit`` and ``collect`` both call this, so they agree on every job without storing anything.
    """
    ref_field = ref_field or DEFAULT_REF_FIELDS[operation]
    planned: list[_Planned] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(jobs):
        try:
            job = OS1Job.model_validate(raw)
        except ValidationError as exc:
            planned.append(
                _Planned("shape", reason=f"the job is not a valid OS1 record ({_problems(exc, '')})")
            )
            continue
        if job.operation != operation:
            planned.append(
                _Planned(
                    "shape",
                    reason=f"the batch's operation is {operation!r} but this job is shaped for "
                    f"{job.operation!r} ({_EXPECTED[operation]} expected)",
                )
            )
            continue
        ref = str(len(seen)) if ref_field == "index" else job.ref_value(ref_field)
        if ref is None:
            planned.append(
                _Planned("shape", reason=f"the record has no {ref_field} for OS1's results to name it by")
            )
            continue
        if ref in seen:
            planned.append(_Planned("duplicate", ref_id=ref, first=seen[ref]))
            continue
        seen[ref] = i
        planned.append(_Planned("send", ref_id=ref, payload=job.payload()))
    return planned


@register
class OS1Provider(Provider):
    """OS1 participant batches (create or update).

    ``max_jobs_per_submit`` is 1,024, the cap of OS1's sibling container batch API; the participant
    API's own cap is not published. OS1 calls back when a batch ends (``callback.url``); polling every
    5 seconds or slower remains the safety net.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        name="os1",
        title="OS1 Participant Service",
        max_jobs_per_submit=MAX_JOBS_PER_SUBMIT,
        supports_callback=True,
        supports_cancel=False,
        min_poll_seconds=MIN_POLL_SECONDS,
        max_poll_seconds=MAX_POLL_SECONDS,
        result_retention_seconds=None,  # not documented
    )
    job_model: ClassVar[type[Job]] = OS1Job
    options_model: ClassVar[type[BaseModel]] = OS1Options
    settings_model: ClassVar[type[ProviderSettings]] = OS1Settings
    secret_settings: ClassVar[tuple[str, ...]] = ("originToken", "callbackSecret")
    token_margin_seconds: ClassVar[float] = TOKEN_MARGIN_SECONDS

    @property
    def config(self) -> OS1Settings:
        return self.configured(OS1Settings)

    def _optional_secret(self, key: str) -> str | None:
        """A credential that older connections keep in settings; never logged."""
        if key in self.connection.credentials:
            return self.connection.secret(key)
        value = getattr(
            self.config, {"originToken": "origin_token", "callbackSecret": "callback_secret"}[key]
        )
        return value if isinstance(value, str) else None

    def _options(self, chunk: ChunkInfo) -> OS1Options:
        try:
            return OS1Options.model_validate(chunk.options)
        except ValidationError as exc:
            raise ConfigurationError(
                f"the batch options are not valid ({_problems(exc, 'options')})"
            ) from None

    def _base_headers(self) -> dict[str, str]:
        return {
            H_REQUEST_ID: str(uuid.uuid4()),
            H_TENANT: self.config.tenant_id,
            "Accept": "application/json",
        }

    # -- dialect: answers ----------------------------------------------------------------------------
    def vendor_problem(self, body: Any, status: int) -> Problem | None:
        try:
            error = parse_error(body)
        except ProviderResponseError:
            return None
        code = vendor_code(error.code) if _CODE.match(error.code) else self.http_code(status)
        return Problem(status, code, error.text())

    def decide(self, problem: Problem, phase: Phase) -> Rule:
        if phase is Phase.SUBMIT and problem.status == 404:
            return Rule(
                BatchRejectedError,
                "OS1 refused the batch; is the participant type one of this tenant's?",
                True,
            )
        if phase is Phase.SUBMIT and problem.status == 405:
            return Rule(
                BatchRejectedError,
                "OS1 refused the method; check the connection's updateMethod setting",
                True,
            )
        return super().decide(problem, phase)

    # -- auth ----------------------------------------------------------------------------------------
    def token_key(self) -> Hashable:
        return ("os1", self.connection.name, self.base_url, self.config.tenant_id)

    def fetch_token(self) -> Token:
        body: dict[str, str] = {
            "clientId": self.connection.secret("clientId"),
            "clientSecret": self.connection.secret("clientSecret"),
        }
        if self.config.audience is not None:
            body["audience"] = self.config.audience
        return self.client_credentials_token(
            f"{self.base_url}{AUTH_PATH}",
            content=json.dumps(body).encode(),
            headers={**self._base_headers(), "Content-Type": "application/json"},
            read=_read_token,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        extra_headers: dict[str, str] | None = None,
        commit: bool = False,
    ) -> httpx.Response:
        """One authenticated call; every attempt carries its own request id. A write (``commit``) carries
        the origin token, which OS1 documents as required on batch writes."""
        url = f"{self.base_url}{path}"
        content = (
            None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        )
        headers_extra = dict(extra_headers or {})
        if commit:
            origin = self._optional_secret("originToken")
            if origin is None:
                raise ConfigurationError(
                    f"connection {self.connection.name!r} has no 'originToken' credential; OS1 requires "
                    f"{H_ORIGIN} on batch writes"
                )
            headers_extra[H_ORIGIN] = origin

        def attempt(token: str) -> httpx.Response:
            headers = {**self._base_headers(), H_ACCESS: token, **headers_extra}
            if content is not None:
                headers["Content-Type"] = "application/json"
            return self.request(method, url, params=params, headers=headers, content=content, commit=commit)

        return self.authorized(attempt)

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """Send the chunk's records as one OS1 batch; return OS1's batch id (``batch:<uuid>``).

        Jobs shaped for the other operation and repeated refIDs are left out (see the module doc); a
        chunk with nothing left to send is rejected. 4xx answers reject the chunk with OS1's code as
        ``OS1_<code>``; 403 is an auth failure. Any 2xx with a batch id is taken as acceptance (OS1
        documents 202); a 2xx without one leaves the submit unconfirmed.
        """
        options = self._options(chunk)
        planned = plan_chunk(jobs, options.operation, self.config.ref_field(options.operation))
        payload = [p.payload for p in planned if p.kind == "send"]
        if not payload:
            reasons = sorted({p.reason or "duplicate refID" for p in planned})
            raise BatchRejectedError(
                f"no job in the chunk can be sent ({clip('; '.join(reasons))})", code=JOB_SHAPE
            )
        body: dict[str, Any] = {"payload": payload}
        extra: dict[str, str] = {}
        if chunk.callback_url:
            body["callback"] = {"url": chunk.callback_url}
            secret = self._optional_secret("callbackSecret")
            if secret is not None:
                extra[H_CALLBACK_SECRET] = secret
        method = "POST" if options.operation == "create" else self.config.update_method
        path = BATCH_PATH.format(type=quote(options.participant_type, safe=""))
        response = self._call(method, path, body=body, extra_headers=extra, commit=True)
        self.check_answer(response, Phase.SUBMIT, ok=frozenset(range(200, 300)))
        if response.status_code != 202:
            logger.info(
                "OS1 accepted a batch with an undocumented status", extra={"status": response.status_code}
            )
        return _data_model(_SubmitData, parse_success(self.read_json(response))).id

    # -- status --------------------------------------------------------------------------------------
    def _fetch_status(self, chunk: ChunkInfo, phase: Phase) -> tuple[BatchStatusData, ChunkState]:
        if not chunk.provider_ref:
            raise ConfigurationError(f"chunk {chunk.index} has no OS1 batch id")
        options = self._options(chunk)
        path = STATUS_PATH.format(type=quote(options.participant_type, safe=""))
        response = self._call("GET", path, params={"batchId": chunk.provider_ref})
        self.check_answer(response, phase)
        data = parse_status(self.read_json(response))
        state = self.config.state_of(data.meta.status)
        if state is None:
            raise UnknownProviderStatusError(
                f"undocumented meta.status {data.meta.status[:40]!r} (expected one of {self.config.words})"
            )
        if state is not ChunkState.RUNNING:
            missing = [name for name in ("success", "errors") if getattr(data, name) is None]
            if missing:
                raise ProviderResponseError(
                    f"a {data.meta.status} batch without data.{' or data.'.join(missing)}"
                )
        return data, state

    @classmethod
    def validate_batch(cls, options: dict[str, Any], jobs: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
        """Every job must have the shape of the batch's operation (create or update)."""
        operation = OS1Options.model_validate(options).operation
        return [
            {"field": f"jobs[{i}]", "message": plan.reason or "shaped for the other operation"}
            for i, plan in enumerate(plan_chunk(jobs, operation))
            if plan.kind == "shape"
        ][:10]

    def callback_ref(self, body: Any) -> str | None:
        """The simulator (and our reading of OS1) posts ``{"batchId", "status"}``; the body is only a hint."""
        ref = body.get("batchId") if isinstance(body, dict) else None
        return ref if isinstance(ref, str) and ref else None

    def check(self, chunk: ChunkInfo) -> StatusReport:
        """Map ``meta.status`` through the connection's status words: running -> RUNNING with progress
        (success+failed)/total, completed -> COMPLETED, failed -> FAILED; any other word fails closed. The
        report keeps only the counts: ``collect`` fetches the per-record lists again. A 404 for a batch
        OS1 itself issued is a terminal :class:`ProviderJobFailedError`: its outcome can never be learned."""
        data, state = self._fetch_status(chunk, Phase.STATUS)
        meta = data.meta
        detail = {"success": meta.success, "failed": meta.failed, "total": meta.total}
        if state is ChunkState.COMPLETED:
            return StatusReport(state=state, provider_status=meta.status, progress=100.0, detail=detail)
        if state is ChunkState.FAILED:
            return StatusReport(
                state=state,
                provider_status=meta.status,
                progress=100.0,
                error=ErrorInfo(
                    code=BATCH_FAILED,
                    message=f"OS1 reports the batch failed after {meta.success} of {meta.total} records "
                    f"succeeded and {meta.failed} failed",
                ),
                detail=detail,
            )
        progress = None
        if meta.total > 0:
            progress = round(min(100.0, 100.0 * (meta.success + meta.failed) / meta.total), 2)
        return StatusReport(state=state, provider_status=meta.status, progress=progress, detail=detail)

    # -- results -------------------------------------------------------------------------------------
    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """One outcome per job, from a fresh status answer (the report holds only counts).

        Records are matched by refID, never by position:

        * refID in ``success[]`` -> succeeded, ``providerRef`` = OS1's id (listed twice with the same id
          is one result).
        * refID in ``errors[]`` -> failed with OS1's reason (code ``OS1_RECORD_FAILED``; several reasons
          for one refID are joined).
        * refID in both lists, or in ``success[]`` with two different ids -> ``not_processed`` with
          ``OS1_CONFLICTING_RESULT``: OS1 contradicts itself, so nothing is claimed.
        * refID in neither -> ``not_processed`` (``OS1_NOT_REPORTED``), in a completed or a failed batch.
        * refIDs OS1 names that are not in the chunk are logged and ignored.
        * Jobs never sent (shape, duplicates) get the outcome described in the module doc.
        * A batch OS1 no longer knows (404) raises :class:`ResultsExpiredError`.
        """
        data, state = self._fetch_status(chunk, Phase.RESULTS)
        if state is ChunkState.RUNNING:
            raise ProviderResponseError(
                f"the batch is {data.meta.status!r} again after it was reported finished"
            )
        options = self._options(chunk)
        planned = plan_chunk(jobs, options.operation, self.config.ref_field(options.operation))
        sent = {p.ref_id for p in planned if p.kind == "send"}
        ids: dict[str, set[str]] = {}
        reasons: dict[str, list[str]] = {}
        strays: set[str] = set()
        for entry in data.success or []:
            if entry.ref_id in sent:
                ids.setdefault(entry.ref_id, set()).add(entry.id)
            else:
                strays.add(entry.ref_id)
        for bad in data.errors or []:
            if bad.ref_id in sent:
                reasons.setdefault(bad.ref_id, []).append(bad.reason)
            else:
                strays.add(bad.ref_id)
        if strays:
            logger.warning(
                "OS1 reported records that were not in the chunk; ignored",
                extra={"batch": chunk.provider_ref, "refIDs": sorted(strays)[:20], "count": len(strays)},
            )
        silent = "OS1 completed the batch without reporting on this record"
        if state is ChunkState.FAILED:
            silent = "OS1 reported the batch failed before reporting on this record"
        for i, (raw, plan) in enumerate(zip(jobs, planned, strict=True)):
            base: dict[str, Any] = {"index": chunk.first_job_index + i, "client_ref": raw.get("clientRef")}
            if plan.kind == "shape":
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.FAILED,
                    error=ErrorInfo(code=JOB_SHAPE, message=clip(plan.reason or "not an OS1 record")),
                )
            elif plan.kind == "duplicate":
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.NOT_PROCESSED,
                    error=ErrorInfo(
                        code=DUPLICATE_REF,
                        message=f"refID {plan.ref_id!r} repeats job "
                        f"{chunk.first_job_index + (plan.first or 0)} of the same chunk; "
                        "only that job was sent to OS1",
                    ),
                )
            else:
                yield _record_outcome(
                    base,
                    plan.ref_id or "",
                    ids.get(plan.ref_id or ""),
                    reasons.get(plan.ref_id or ""),
                    silent,
                )


def _record_outcome(
    base: dict[str, Any], ref: str, ids: set[str] | None, failures: list[str] | None, silent: str
) -> Outcome:
    if (ids and failures) or (ids and len(ids) > 1):
        said = [f"succeeded as {', '.join(sorted(ids or []))}"] + [f"failed: {r}" for r in failures or []]
        return Outcome(
            **base,
            outcome=OutcomeKind.NOT_PROCESSED,
            error=ErrorInfo(
                code=CONFLICTING_RESULT,
                message=clip(f"OS1 contradicts itself about this record ({'; '.join(said)})"),
            ),
            response={"refID": ref, "ids": sorted(ids or []), "reasons": failures or []},
        )
    if failures:
        return Outcome(
            **base,
            outcome=OutcomeKind.FAILED,
            error=ErrorInfo(code=RECORD_FAILED, message=clip("; ".join(failures))),
            response={"refID": ref, "reason": failures[0]}
            if len(failures) == 1
            else {"refID": ref, "reasons": failures},
        )
    if ids:
        (participant,) = ids
        return Outcome(
            **base,
            outcome=OutcomeKind.SUCCEEDED,
            provider_ref=participant,
            response={"refID": ref, "id": participant},
        )
    return Outcome(
        **base, outcome=OutcomeKind.NOT_PROCESSED, error=ErrorInfo(code=NOT_REPORTED, message=silent)
    )
