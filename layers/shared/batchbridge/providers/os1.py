"""OS1 Participant Service: batch create and update of participants (drivers, vehicles, ...).

Dialect, in short (see ``PROVIDERS.md`` §4):

* Auth is client credentials: ``POST {base}/core/api/v1/aaa/auth/client-credentials`` with
  ``{"clientId", "clientSecret", "audience"?}`` gives an access token that travels in
  ``X-COREOS-ACCESS`` (never ``Authorization``). Tokens are cached per connection (module level, so they
  survive across invocations in one container) for ``expiresIn - 600`` seconds, or half the lifetime
  when that is longer (short-lived tokens); a 401 on an API call fetches one new token and repeats the
  call once, then fails with :class:`ProviderAuthError`.
* Every request carries a fresh ``X-COREOS-REQUEST-ID`` (uuid4, new for every attempt) and the tenant
  in ``X-COREOS-TID``; writes also carry ``X-COREOS-ORIGIN-TOKEN`` when the connection has one, and a
  submit that asks for a callback carries ``X-COREOS-CALLBACK-SECRET`` when the connection has one.
* Submit is ``POST {base}/core/api/v2/participants/{participantType}/batch`` for creates; updates use
  the same path with the method from the connection setting ``updateMethod`` (default ``PUT``; the
  vendor does not document it). Body ``{"payload": [...], "callback": {"url"}}``; answer 202
  ``{"data": {"id": "batch:<uuid>"}, "request": {...}}``.
* Status is ``GET …/batch/status?batchId=…`` with ``data.meta.status`` in ``queued | processing |
  completed | failed`` and the per-record results inline (``success[]`` / ``errors[]``, keyed by refID).
* Every answer is an envelope: ``{"data", "request"}`` or ``{"error": {"code": <12 digits>,
  "description": <= 256 chars, "additionalInfo": {}}, "request"}``.

Connection: credentials ``clientId``, ``clientSecret`` and optionally ``originToken`` and
``callbackSecret`` (those two are also read from settings when not among the credentials); settings
``tenantId`` (required), ``audience`` and ``updateMethod`` (optional).

**refID.** OS1 keys its per-record results by a record reference. BatchBridge takes a job's refID to be
its ``uniqueCode`` for a create and its ``id`` (``<prefix>:<uuid>``) for an update; results are matched
to jobs by exact string equality.

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
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderResponseError,
    ProviderUnavailableError,
    ResultsExpiredError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, ErrorInfo, Outcome, OutcomeKind
from batchbridge.observability import logger
from batchbridge.providers.base import Capabilities, ChunkInfo, Job, Provider, StatusReport, register
from batchbridge.providers.http import expect_dict, json_body, raise_for_transient, send

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
UPDATE_METHODS = frozenset({"PUT", "POST", "PATCH"})

RUNNING_STATUSES = frozenset({"queued", "processing"})
TERMINAL_STATUSES = frozenset({"completed", "failed"})
DOCUMENTED_STATUSES = RUNNING_STATUSES | TERMINAL_STATUSES

RECORD_FAILED = "OS1_RECORD_FAILED"
NOT_REPORTED = "OS1_NOT_REPORTED"
DUPLICATE_REF = "OS1_DUPLICATE_REF"
JOB_SHAPE = "OS1_JOB_SHAPE"
CONFLICTING_RESULT = "OS1_CONFLICTING_RESULT"
BATCH_FAILED = "OS1_BATCH_FAILED"

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
PARTICIPANT_ID_PATTERN = rf"^[A-Za-z][A-Za-z0-9_-]{{0,63}}:{_UUID}$"
SAFE_SEGMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_MAX_MESSAGE = 1000  # longest vendor text copied into an error message


def vendor_code(code: str) -> str:
    """BatchBridge's error code for one of OS1's 12-digit codes: ``OS1_<code>``."""
    return f"OS1_{code}"


# --- job and options models -----------------------------------------------------------------------
class OS1Job(Job):
    """One participant record: a create (``uniqueCode``, ``name``, optional ``owner``) or an update
    (``id`` as ``<prefix>:<uuid>``), each with optional ``properties``. ``clientRef`` is BatchBridge's
    own and is never sent to OS1. Fields go by their documented names only (``uniqueCode``, not
    ``unique_code``), so what the client sent is exactly what OS1 gets."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    unique_code: StrictStr | None = Field(default=None, alias="uniqueCode", min_length=1, max_length=256)
    name: StrictStr | None = Field(default=None, min_length=1, max_length=256)
    owner: StrictStr | None = Field(default=None, min_length=1, max_length=256)
    id: StrictStr | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

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

    @property
    def ref_id(self) -> str:
        """OS1's reference for this record in its results: uniqueCode for a create, id for an update."""
        value = self.id if self.id is not None else self.unique_code
        assert value is not None  # guaranteed by _one_shape
        return value

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


# --- envelopes --------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EnvelopeRequest(_Strict):
    """The ``request`` echo every OS1 answer carries."""

    uri: StrictStr
    method: StrictStr
    query_string: StrictStr | None = Field(alias="queryString")
    body: Any


class _SuccessEnvelope(_Strict):
    data: Any = Field()
    request: EnvelopeRequest


class VendorError(BaseModel):
    """OS1's ``error`` object."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    code: StrictStr = Field(pattern=r"^[0-9]{12}$")
    description: StrictStr = Field(max_length=256)
    additional_info: dict[str, Any] = Field(alias="additionalInfo")

    def text(self) -> str:
        return f"OS1 error {self.code}: {self.description}"


class _ErrorEnvelope(_Strict):
    error: VendorError
    request: EnvelopeRequest


class _TokenData(_Strict):
    access_token: StrictStr = Field(alias="accessToken", min_length=1)
    token_type: StrictStr = Field(alias="tokenType")
    expires_in: StrictInt | StrictFloat = Field(alias="expiresIn", gt=0)


class _SubmitData(_Strict):
    id: StrictStr = Field(min_length=1)


class _Meta(_Strict):
    status: StrictStr
    success: StrictInt = Field(ge=0)
    failed: StrictInt = Field(ge=0)
    total: StrictInt = Field(ge=0)


class _Success(_Strict):
    ref_id: StrictStr = Field(alias="refID")
    id: StrictStr


class _Failure(_Strict):
    ref_id: StrictStr = Field(alias="refID")
    reason: StrictStr


class BatchStatusData(_Strict):
    """``data`` of the status answer. ``success`` and ``errors`` may be absent while the batch runs;
    a finished batch must carry both lists (checked by :func:`parse_status`)."""

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


def parse_success(body: Any, *, what: str) -> Any:
    """The ``data`` of a ``{"data", "request"}`` envelope; :class:`ProviderResponseError` naming what is
    wrong when the body does not have that shape.

    >>> parse_success({"data": {"id": "x"}, "request": {"uri": "/", "method": "GET",
    ...                "queryString": "", "body": {}}}, what="t")
    {'id': 'x'}
    """
    body = expect_dict(body, what=what)
    if "error" in body:
        raise ProviderResponseError(f"{what}: a success status with an error envelope")
    try:
        return _SuccessEnvelope.model_validate(body).data
    except ValidationError as exc:
        raise ProviderResponseError(
            f"{what}: the answer breaks OS1's envelope ({_problems(exc, '')})"
        ) from None


def parse_error(body: Any, *, what: str) -> VendorError:
    """The ``error`` of a ``{"error": {code, description, additionalInfo}, "request"}`` envelope;
    :class:`ProviderResponseError` naming what is wrong when the body does not have that shape."""
    body = expect_dict(body, what=what)
    try:
        return _ErrorEnvelope.model_validate(body).error
    except ValidationError as exc:
        raise ProviderResponseError(
            f"{what}: the error answer breaks OS1's envelope ({_problems(exc, '')})"
        ) from None


def _data_model[M: BaseModel](model: type[M], data: Any, *, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProviderResponseError(
            f"{what}: the answer breaks OS1's documented shape ({_problems(exc, 'data')})"
        ) from None


def parse_status(body: Any, *, what: str) -> BatchStatusData:
    """The status answer's ``data``, checked; a finished batch must list ``success`` and ``errors``."""
    status = _data_model(BatchStatusData, parse_success(body, what=what), what=what)
    if status.meta.status in TERMINAL_STATUSES:
        missing = [name for name in ("success", "errors") if getattr(status, name) is None]
        if missing:
            raise ProviderResponseError(
                f"{what}: a {status.meta.status} batch without data.{' or data.'.join(missing)}"
            )
    return status


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


@dataclass(frozen=True)
class _Problem:
    """What an error answer said: OS1's code and words when the envelope held, else the HTTP status."""

    code: str
    text: str


def _problem(response: httpx.Response, *, what: str) -> _Problem:
    try:
        error = parse_error(json_body(response, what=what), what=what)
    except ProviderResponseError as exc:
        # A 4xx/5xx is still a refusal even when its body is off-shape: keep the status, say why.
        return _Problem(
            f"OS1_HTTP_{response.status_code}", _clip(f"HTTP {response.status_code} ({exc.message})")
        )
    return _Problem(vendor_code(error.code), f"HTTP {response.status_code}, {error.text()}")


# --- token cache ------------------------------------------------------------------------------------
@dataclass
class _Token:
    value: str
    renew_at: float  # time.monotonic()


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    token: _Token | None = None


_tokens: dict[tuple[str, str], _Slot] = {}
_tokens_lock = threading.Lock()


def clear_token_cache() -> None:
    """Forget every cached token (tests; a rotated secret)."""
    with _tokens_lock:
        _tokens.clear()


def _slot(key: tuple[str, str]) -> _Slot:
    with _tokens_lock:
        return _tokens.setdefault(key, _Slot())


def token_keep_seconds(expires_in: float) -> float:
    """How long to use a token: ``expiresIn - 600`` as the vendor's sample app does, but at least half
    its lifetime, so a short-lived token is still used (and renewed well before it lapses).

    >>> token_keep_seconds(3600), token_keep_seconds(300)
    (3000.0, 150.0)
    """
    return max(float(expires_in) - TOKEN_MARGIN_SECONDS, float(expires_in) / 2)


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


def plan_chunk(jobs: Sequence[dict[str, Any]], operation: str) -> list[_Planned]:
    """Decide, deterministically from the jobs and the batch's operation, which jobs are sent.

    ``submit`` and ``collect`` both call this, so they agree on every job without storing anything.
    """
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
                    ref_id=job.ref_id,
                    reason=f"the batch's operation is {operation!r} but this job is shaped for "
                    f"{job.operation!r} ({_EXPECTED[operation]} expected)",
                )
            )
            continue
        ref = job.ref_id
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

    # -- configuration -----------------------------------------------------------------------------
    @property
    def _base(self) -> str:
        return self.connection.base_url.rstrip("/")

    def _setting(self, key: str, default: str | None = None) -> str | None:
        value = self.connection.settings.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                f"connection {self.connection.name!r}: setting {key!r} must be a non-empty string"
            )
        return value.strip()

    @property
    def _tenant(self) -> str:
        tenant = self._setting("tenantId")
        if tenant is None:
            raise ConfigurationError(
                f"connection {self.connection.name!r}: setting 'tenantId' is required (sent as {H_TENANT})"
            )
        return tenant

    def _optional_secret(self, key: str) -> str | None:
        """A credential that may also sit in settings; never logged."""
        if key in self.connection.credentials:
            return self.connection.secret(key)
        return self._setting(key)

    @property
    def _update_method(self) -> str:
        method = (self._setting("updateMethod", DEFAULT_UPDATE_METHOD) or DEFAULT_UPDATE_METHOD).upper()
        if method not in UPDATE_METHODS:
            raise ConfigurationError(
                f"connection {self.connection.name!r}: setting 'updateMethod' must be one of "
                f"{sorted(UPDATE_METHODS)}, not {method!r}"
            )
        return method

    def _options(self, chunk: ChunkInfo) -> OS1Options:
        try:
            return OS1Options.model_validate(chunk.options)
        except ValidationError as exc:
            raise ConfigurationError(
                f"OS1 chunk {chunk.index}: the batch options are not valid ({_problems(exc, 'options')})"
            ) from None

    def _base_headers(self) -> dict[str, str]:
        return {H_REQUEST_ID: str(uuid.uuid4()), H_TENANT: self._tenant, "Accept": "application/json"}

    # -- auth --------------------------------------------------------------------------------------
    def _key(self) -> tuple[str, str]:
        return (self.connection.name, self._base)

    def _token(self) -> str:
        slot = _slot(self._key())
        with slot.lock:
            token = slot.token
            if token is None or token.renew_at <= time.monotonic():
                token = self._fetch_token()
                slot.token = token
            return token.value

    def _forget_token(self, used: str) -> None:
        """Drop the cached token if it is still the refused one (another thread may have renewed it)."""
        slot = _slot(self._key())
        with slot.lock:
            if slot.token is not None and slot.token.value == used:
                slot.token = None

    def _fetch_token(self) -> _Token:
        what = "OS1 token"
        body: dict[str, str] = {
            "clientId": self.connection.secret("clientId"),
            "clientSecret": self.connection.secret("clientSecret"),
        }
        audience = self._setting("audience")
        if audience is not None:
            body["audience"] = audience
        url = f"{self._base}{AUTH_PATH}"
        headers = {**self._base_headers(), "Content-Type": "application/json"}
        content = json.dumps(body).encode()
        started = time.monotonic()
        response = send(lambda: self.client.post(url, content=content, headers=headers), what=what)
        self._raise_for_unavailable(response, what=what)
        status = response.status_code
        if status in (400, 401, 403):
            problem = _problem(response, what=what)
            raise ProviderAuthError(
                f"OS1 refused the client credentials of connection {self.connection.name!r} ({problem.text})",
                code=problem.code,
            )
        if status == 404:
            raise ConfigurationError(
                f"connection {self.connection.name!r}: no OS1 token endpoint at {url} (HTTP 404); "
                "check baseUrl"
            )
        if status != 200:
            raise ProviderResponseError(f"{what}: unexpected {_problem(response, what=what).text}")
        data = _data_model(_TokenData, parse_success(json_body(response, what=what), what=what), what=what)
        if data.token_type.lower() != "bearer":
            raise ProviderResponseError(f"{what}: data.tokenType {data.token_type!r} is not Bearer")
        return _Token(data.access_token, started + token_keep_seconds(data.expires_in))

    # -- one call ------------------------------------------------------------------------------------
    @staticmethod
    def _raise_for_unavailable(response: httpx.Response, *, what: str) -> None:
        """429 -> throttled; 5xx (OS1 documents 503) -> unavailable, with OS1's words when it gave some."""
        if response.status_code >= 500:
            raise ProviderUnavailableError(f"{what}: {_problem(response, what=what).text}")
        raise_for_transient(response, what=what)

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        write: bool = False,
        extra_headers: dict[str, str] | None = None,
        safe_to_repeat: bool = True,
    ) -> httpx.Response:
        """One authenticated call; on 401 one fresh token and one repeat, then ProviderAuthError.

        A 401 means OS1 did not act on the request, so repeating even a submit is safe. Every attempt
        carries its own request id.
        """
        url = f"{self._base}{path}"
        content = (
            None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        )
        origin = self._optional_secret("originToken") if write else None

        def attempt(token: str) -> httpx.Response:
            headers = {**self._base_headers(), H_ACCESS: token, **(extra_headers or {})}
            if content is not None:
                headers["Content-Type"] = "application/json"
            if origin is not None:
                headers[H_ORIGIN] = origin

            def call() -> httpx.Response:
                return self.client.request(method, url, params=params, headers=headers, content=content)

            return send(call, what=what, safe_to_repeat=safe_to_repeat)

        def token() -> str:
            try:
                return self._token()
            except ProviderResponseError as exc:
                if safe_to_repeat:
                    raise
                # A garbled token answer comes before the request is sent (or after OS1 refused it with
                # 401): nothing was accepted, so this must not read as an ambiguous submit.
                raise ProviderUnavailableError(f"{what}: {exc.message}") from exc

        used = token()
        response = attempt(used)
        if response.status_code != 401:
            return response
        self._forget_token(used)
        logger.info("OS1 refused the token; fetching a new one", extra={"connection": self.connection.name})
        used = token()
        response = attempt(used)
        if response.status_code == 401:
            self._forget_token(used)
            problem = _problem(response, what=what)
            raise ProviderAuthError(
                f"{what}: OS1 refused a freshly issued token for connection {self.connection.name!r} "
                f"({problem.text})",
                code=problem.code,
            )
        return response

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """Send the chunk's records as one OS1 batch; return OS1's batch id (``batch:<uuid>``).

        Jobs shaped for the other operation and repeated refIDs are left out (see the module doc); a
        chunk with nothing left to send is rejected. 400/404/405 and other client errors reject the
        chunk with OS1's code as ``OS1_<code>``; 403 is an auth failure. Any 2xx with a batch id is
        taken as acceptance (OS1 documents 202); a 2xx without one is a :class:`ProviderResponseError`,
        which the core treats as an ambiguous submit.
        """
        options = self._options(chunk)
        what = f"OS1 submit (chunk {chunk.index}, {options.operation} {options.participant_type})"
        planned = plan_chunk(jobs, options.operation)
        payload = [p.payload for p in planned if p.kind == "send"]
        if not payload:
            reasons = sorted({p.reason or "duplicate refID" for p in planned})
            raise BatchRejectedError(
                f"{what}: no job in the chunk can be sent ({_clip('; '.join(reasons))})", code=JOB_SHAPE
            )
        body: dict[str, Any] = {"payload": payload}
        extra: dict[str, str] = {}
        if chunk.callback_url:
            body["callback"] = {"url": chunk.callback_url}
            secret = self._optional_secret("callbackSecret")
            if secret is not None:
                extra[H_CALLBACK_SECRET] = secret
        method = "POST" if options.operation == "create" else self._update_method
        path = BATCH_PATH.format(type=quote(options.participant_type, safe=""))
        response = self._call(
            method, path, what=what, body=body, write=True, extra_headers=extra, safe_to_repeat=False
        )
        self._raise_for_unavailable(response, what=what)
        status = response.status_code
        if 400 <= status < 500:
            problem = _problem(response, what=what)
            if status == 403:
                raise ProviderAuthError(f"{what}: forbidden ({problem.text})", code=problem.code)
            hint = ""
            if status == 404:
                hint = f"; is {options.participant_type!r} a participant type of this tenant?"
            elif status == 405:
                hint = "; check the connection's updateMethod setting"
            raise BatchRejectedError(
                f"{what}: OS1 refused the batch ({problem.text}){hint}", code=problem.code
            )
        if not 200 <= status < 300:
            raise ProviderResponseError(f"{what}: unexpected {_problem(response, what=what).text}")
        if status != 202:
            logger.info("OS1 accepted a batch with an undocumented status", extra={"status": status})
        data = _data_model(_SubmitData, parse_success(json_body(response, what=what), what=what), what=what)
        return data.id

    # -- status --------------------------------------------------------------------------------------
    def _fetch_status(
        self, chunk: ChunkInfo, *, what: str, on_not_found: Callable[[str], Exception]
    ) -> BatchStatusData:
        if not chunk.provider_ref:
            raise ConfigurationError(f"{what}: chunk {chunk.index} has no OS1 batch id")
        options = self._options(chunk)
        path = STATUS_PATH.format(type=quote(options.participant_type, safe=""))
        response = self._call("GET", path, what=what, params={"batchId": chunk.provider_ref})
        self._raise_for_unavailable(response, what=what)
        status = response.status_code
        if status == 404:
            raise on_not_found(_problem(response, what=what).text)
        if status == 403:
            problem = _problem(response, what=what)
            raise ProviderAuthError(f"{what}: forbidden ({problem.text})", code=problem.code)
        if 400 <= status < 500:
            problem = _problem(response, what=what)
            raise ProviderJobFailedError(
                f"{what}: OS1 refused the status request ({problem.text})", code=problem.code
            )
        if status != 200:
            raise ProviderResponseError(f"{what}: unexpected {_problem(response, what=what).text}")
        return parse_status(json_body(response, what=what), what=what)

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
        """Map ``meta.status``: queued/processing -> RUNNING with progress (success+failed)/total,
        completed -> COMPLETED, failed -> FAILED; any other word fails closed. The report keeps only the
        counts: ``collect`` fetches the per-record lists again. A 404 for a batch OS1 itself issued is a
        terminal :class:`ProviderJobFailedError`: its outcome can never be learned."""
        what = f"OS1 status (chunk {chunk.index}, {chunk.provider_ref})"

        def not_found(text: str) -> Exception:
            return ProviderJobFailedError(f"{what}: OS1 has no such batch ({text})")

        data = self._fetch_status(chunk, what=what, on_not_found=not_found)
        meta = data.meta
        if meta.status not in DOCUMENTED_STATUSES:
            raise UnknownProviderStatusError(
                f"{what}: undocumented meta.status {meta.status!r} "
                f"(expected one of {sorted(DOCUMENTED_STATUSES)})"
            )
        detail = {"success": meta.success, "failed": meta.failed, "total": meta.total}
        if meta.status == "completed":
            return StatusReport(
                state=ChunkState.COMPLETED, provider_status=meta.status, progress=100.0, detail=detail
            )
        if meta.status == "failed":
            return StatusReport(
                state=ChunkState.FAILED,
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
        return StatusReport(
            state=ChunkState.RUNNING, provider_status=meta.status, progress=progress, detail=detail
        )

    # -- results -------------------------------------------------------------------------------------
    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """One outcome per job, from a fresh status answer (the report holds only counts).

        * refID in ``success[]`` -> succeeded, ``providerRef`` = OS1's id.
        * refID in ``errors[]`` -> failed with OS1's reason (code ``OS1_RECORD_FAILED``; several reasons
          for one refID are joined).
        * refID in both lists -> failed with ``OS1_CONFLICTING_RESULT`` (and OS1's id as providerRef):
          OS1 contradicts itself, so BatchBridge does not claim success.
        * refID in neither -> not_processed (``OS1_NOT_REPORTED``), in a completed or a failed batch.
        * refIDs OS1 names that are not in the chunk are logged and ignored.
        * Jobs never sent (shape, duplicates) get the outcome described in the module doc.
        * A batch OS1 no longer knows (404) raises :class:`ResultsExpiredError`.
        """
        what = f"OS1 results (chunk {chunk.index}, {chunk.provider_ref})"

        def expired(text: str) -> Exception:
            return ResultsExpiredError(f"{what}: OS1 no longer has this batch ({text}); outcomes are unknown")

        data = self._fetch_status(chunk, what=what, on_not_found=expired)
        status = data.meta.status
        if status not in DOCUMENTED_STATUSES:
            raise UnknownProviderStatusError(f"{what}: undocumented meta.status {status!r}")
        if status not in TERMINAL_STATUSES:
            raise ProviderResponseError(
                f"{what}: the batch is {status!r} again after it was reported finished"
            )

        options = self._options(chunk)
        planned = plan_chunk(jobs, options.operation)
        sent = {p.ref_id for p in planned if p.kind == "send"}
        successes: dict[str, _Success] = {}
        reasons: dict[str, list[str]] = {}
        strays: set[str] = set()
        for entry in data.success or []:
            if entry.ref_id not in sent:
                strays.add(entry.ref_id)
            elif entry.ref_id in successes:
                logger.warning(
                    "OS1 listed a record as succeeded twice; the first id is kept",
                    extra={"refID": entry.ref_id},
                )
            else:
                successes[entry.ref_id] = entry
        for bad in data.errors or []:
            if bad.ref_id not in sent:
                strays.add(bad.ref_id)
            else:
                reasons.setdefault(bad.ref_id, []).append(bad.reason)
        if strays:
            logger.warning(
                "OS1 reported records that were not in the chunk; ignored",
                extra={"batch": chunk.provider_ref, "refIDs": sorted(strays)[:20], "count": len(strays)},
            )
        silent = "OS1 completed the batch without reporting on this record"
        if status == "failed":
            silent = "OS1 reported the batch failed before reporting on this record"

        for i, (raw, plan) in enumerate(zip(jobs, planned, strict=True)):
            base: dict[str, Any] = {"index": chunk.first_job_index + i, "client_ref": raw.get("clientRef")}
            if plan.kind == "shape":
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.FAILED,
                    error=ErrorInfo(code=JOB_SHAPE, message=_clip(plan.reason or "not an OS1 record")),
                )
                continue
            if plan.kind == "duplicate":
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
                continue
            ref = plan.ref_id or ""
            ok = successes.get(ref)
            failures = reasons.get(ref)
            if failures and ok is not None:
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.FAILED,
                    provider_ref=ok.id,
                    error=ErrorInfo(
                        code=CONFLICTING_RESULT,
                        message=_clip(
                            f"OS1 listed this record as succeeded and as failed: {'; '.join(failures)}"
                        ),
                    ),
                    response={"refID": ref, "id": ok.id, "reasons": failures},
                )
            elif failures:
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.FAILED,
                    error=ErrorInfo(code=RECORD_FAILED, message=_clip("; ".join(failures))),
                    response={"refID": ref, "reason": failures[0]}
                    if len(failures) == 1
                    else {"refID": ref, "reasons": failures},
                )
            elif ok is not None:
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.SUCCEEDED,
                    provider_ref=ok.id,
                    response={"refID": ref, "id": ok.id},
                )
            else:
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.NOT_PROCESSED,
                    error=ErrorInfo(code=NOT_REPORTED, message=silent),
                )
