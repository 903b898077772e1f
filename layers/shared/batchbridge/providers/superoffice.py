"""SuperOffice CRM: mass updates run as BatchAgent batch tasks.

Dialect, in short (see ``PROVIDERS.md`` §3):

* **Tenant discovery.** The connection's ``baseUrl`` is the state service (``https://{env}.superoffice.com``)
  and its setting ``contextIdentifier`` names the tenant. ``GET {baseUrl}/api/state/{ContextIdentifier}``
  answers ``{ContextIdentifier, Endpoint, State, IsRunning, ValidUntil, Api}``; the tenant's API lives under
  ``Endpoint``. The answer is cached per connection (module level, so it survives across invocations in
  one container) until ``ValidUntil``. A tenant that moved host answers HTTP 421: the cache entry is
  dropped, the tenant rediscovered once and the call repeated once.
* **Tenant not running** (``IsRunning`` false: maintenance, suspended, upgrading) makes the batch wait,
  not fail. ``submit`` raises :class:`ProviderNotReadyError` (the core puts the chunk back and waits);
  ``check`` returns a RUNNING report with ``wait_hint_seconds`` -- the core fails closed on exceptions
  from ``check``, so a report is the only way to say "ask again later" there. ``collect`` and ``cancel``
  raise :class:`ProviderUnavailableError` (the workflow retries them with backoff).
* **Auth**, chosen by the connection's credentials: ``{"ticket", "appToken"}`` sends
  ``Authorization: SOTicket <ticket>`` plus ``SO-AppToken``; ``{"accessToken"}`` sends a Bearer token
  (plus ``SO-AppToken`` when an ``appToken`` is also given). Both come from the connection's secret; on
  a 401 the secret is read again (past the container's cache, so a ticket rotated into it is picked up)
  and the call repeated exactly once, then it fails with :class:`ProviderAuthError`. Obtaining a
  system-user ticket from SuperID (a signed system token exchanged for a ticket) is not built: whatever
  keeps the secret current does that.
* **Submit** is ``POST {tenant}/api/v1/Agents/BulkUpdate/ExecuteByEntityIds`` with
  ``{FieldValueInfos, TableName, Context, Ids: "1,2,3"}``; the answer is the batch task id (an int). One
  job is one entity id; the batch options carry ``tableName`` and ``fieldValueInfos``, so one chunk is
  one call.
* **Status** is ``POST Agents/Batch/GetBatchTaskInfo {Id}``; ``State`` travels as a string.
* **Results** are ``POST Agents/BulkUpdate/GetJobResultAsJsonFromBinaryObjectId {TableName,
  BinaryObjectId}``, a JSON *string*. Simulator decision (UNCONFIRMED): ``BinaryObjectId`` is the task's
  ``DetailsRecord`` and the string holds ``[{"Id", "Succeeded", "Error"}]``, one item per entity.
* **Cancel** is ``POST Agents/Batch/StopBatchJob {Id}`` -> bool, allowed when the task's
  ``CancellationBehaviour`` is ``CanCancel`` or ``CancelWithWarning``. Simulator decision: a stopped
  task ends ``Failed`` with ``Result`` "Stopped".
* **Errors** carry ``{Message, FriendlyText, ExceptionType, Source, Parameters}``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from batchbridge.errors import (
    BatchRejectedError,
    CancelNotSupportedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderNotReadyError,
    ProviderResponseError,
    ProviderUnavailableError,
    ResultsExpiredError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, ErrorInfo, Outcome, OutcomeKind
from batchbridge.observability import logger
from batchbridge.providers.base import Capabilities, ChunkInfo, Job, Provider, StatusReport, register
from batchbridge.providers.http import expect_dict, json_body, raise_for_transient, send

STATE_PATH = "/api/state/{context}"
EXECUTE_PATH = "/api/v1/Agents/BulkUpdate/ExecuteByEntityIds"
RESULT_PATH = "/api/v1/Agents/BulkUpdate/GetJobResultAsJsonFromBinaryObjectId"
TASK_INFO_PATH = "/api/v1/Agents/Batch/GetBatchTaskInfo"
TASKS_BY_ASSOCIATES_PATH = "/api/v1/Agents/Batch/GetBatchTaskInfosByAssociates"
STOP_PATH = "/api/v1/Agents/Batch/StopBatchJob"

MIN_POLL_SECONDS = 15
DEFAULT_NOT_RUNNING_WAIT = 300.0  # a tenant in maintenance: ask again after five minutes
MIN_NOT_RUNNING_WAIT = 15.0
DEFAULT_ENDPOINT_TTL = 600.0  # when the state service gives no ValidUntil

# Error codes written on outcomes.
ENTITY_FAILED = "SUPEROFFICE_ENTITY_FAILED"
NO_RESULT = "SUPEROFFICE_NO_RESULT"
TASK_FAILED = "SUPEROFFICE_TASK_FAILED"
TASK_STOPPED = "SUPEROFFICE_TASK_STOPPED"

RUNNING_STATES = frozenset({"New", "Aquired", "Started"})  # "Aquired" is the vendor's spelling
SUCCEEDED_STATES = frozenset({"Succeeded", "SucceededManualCleanup"})
FAILED_STATE = "Failed"
DOCUMENTED_STATES = RUNNING_STATES | SUCCEEDED_STATES | {FAILED_STATE}
# "Unknown" and "All" are documented values too, but neither describes a task's progress ("All" is a
# query filter), so they fail closed like any undocumented value.
STOPPED_RESULT = "Stopped"

CANCELLABLE = frozenset({"CanCancel", "CancelWithWarning"})
NOT_CANCELLABLE = "CannotCancel"

_MAX_TEXT = 1000


# --- job and options models -----------------------------------------------------------------------
class SuperOfficeJob(Job):
    """One entity to update: its id in the batch's table (e.g. a contact_id)."""

    id: StrictInt = Field(gt=0, le=2**31 - 1, description="the entity id (int32) in the batch's tableName")


class FieldValueInfo(BaseModel):
    """One field change of the mass update. ``FieldName`` is required; every other SuperOffice property
    of a FieldValueInfo (value type, values, action) passes through as given."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    field_name: StrictStr = Field(alias="FieldName", min_length=1, max_length=200)


class SuperOfficeOptions(BaseModel):
    """Per-batch options: which table the entity ids belong to and what to set on every one of them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    table_name: StrictStr = Field(alias="tableName", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    field_value_infos: list[FieldValueInfo] = Field(alias="fieldValueInfos", min_length=1, max_length=100)
    context: StrictStr | None = Field(
        default=None,
        max_length=200,
        description="the Context sent with the mass update; default 'batchbridge:<batch id>:<chunk index>'",
    )


class _TaskInfo(BaseModel):
    """The BatchTaskInfo fields this adapter reads. The others are tolerated in any form, because a
    ``$select`` or an older server may null them out."""

    model_config = ConfigDict(extra="allow")

    Id: StrictInt
    State: StrictStr
    Result: StrictStr | None = None
    Response: StrictStr | None = None
    DetailsTable: StrictInt | None = None
    DetailsRecord: StrictInt | None = None
    ProgressPercent: StrictInt | None = None
    ProgressDescription: StrictStr | None = None
    CancellationBehaviour: StrictStr | None = None


class _EntityResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    Id: StrictInt
    Succeeded: bool = Field(strict=True)
    Error: StrictStr | None = None


# --- tenant endpoint cache --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tenant:
    endpoint: str  # tenant base URL without trailing slash, e.g. https://sod2.superoffice.com/Cust12345
    valid_until: float  # epoch seconds


_tenants: dict[tuple[str, str, str], _Tenant] = {}
_tenants_lock = threading.Lock()


def clear_endpoint_cache() -> None:
    """Forget every discovered tenant endpoint (tests; a connection that changed)."""
    with _tenants_lock:
        _tenants.clear()


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def vendor_error(response: httpx.Response) -> str:
    """``HTTP <status>: <FriendlyText> (<Message>; <ExceptionType>)`` from SuperOffice's error carrier,
    naming only what is present.

    >>> vendor_error(httpx.Response(400, json={"Message": "Bad table", "FriendlyText": "Bad table"}))
    'HTTP 400: Bad table'
    """
    text = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return text
    if not isinstance(body, dict):
        return text
    friendly, message, kind = (body.get(k) for k in ("FriendlyText", "Message", "ExceptionType"))
    main = friendly if isinstance(friendly, str) and friendly.strip() else message
    if isinstance(main, str) and main.strip():
        text += f": {main.strip()}"
    extra = [
        v.strip()
        for v in (message, kind)
        if isinstance(v, str) and v.strip() and v is not main and v.strip() != (main or "").strip()
    ]
    if extra:
        text += f" ({'; '.join(extra)})"
    return _clip(text)


# --- the adapter ------------------------------------------------------------------------------------
@register
class SuperOfficeProvider(Provider):
    """SuperOffice mass updates through the BulkUpdate and Batch agents.

    ``max_jobs_per_submit`` is 500: the agent's limit on ``Ids`` is not published, 500 ids keep the
    comma-separated list a few kilobytes, and the task's result JSON small. ``max_concurrency`` is 2
    because SuperOffice is said to allow about ten calls a second (UNCONFIRMED) and each check makes
    one call, sometimes two.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        name="superoffice",
        title="SuperOffice",
        max_jobs_per_submit=500,
        supports_callback=False,
        supports_cancel=True,
        min_poll_seconds=MIN_POLL_SECONDS,
        max_poll_seconds=900,
        result_retention_seconds=None,  # results stay until the batch task is deleted
        max_concurrency=2,
    )
    job_model: ClassVar[type[Job]] = SuperOfficeJob
    options_model: ClassVar[type[BaseModel]] = SuperOfficeOptions
    #: The state word of the last discovery that found the tenant not running.
    _tenant_state: str | None = None

    # -- configuration -----------------------------------------------------------------------------
    @property
    def _base(self) -> str:
        return self.connection.base_url.rstrip("/")

    @property
    def _context_identifier(self) -> str:
        value = self.connection.settings.get("contextIdentifier")
        if not isinstance(value, str) or not value.strip() or "/" in value:
            raise ConfigurationError(
                f"connection {self.connection.name!r}: setting 'contextIdentifier' must name the tenant "
                "(e.g. 'Cust12345')"
            )
        return value.strip()

    def _not_running_wait(self) -> float:
        value = self.connection.settings.get("notRunningWaitSeconds", DEFAULT_NOT_RUNNING_WAIT)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigurationError(
                f"connection {self.connection.name!r}: setting 'notRunningWaitSeconds' "
                "must be a positive number"
            )
        return float(value)

    def _auth_headers(self) -> dict[str, str]:
        creds = self.connection.credentials
        has_ticket, has_token = "ticket" in creds, "accessToken" in creds
        scheme = self.connection.settings.get("authScheme")
        if scheme is None:
            if has_ticket and has_token:
                raise ConfigurationError(
                    f"connection {self.connection.name!r} has both a ticket and an accessToken; "
                    "set settings.authScheme to 'SOTicket' or 'Bearer'"
                )
            scheme = "SOTicket" if has_ticket else "Bearer" if has_token else None
        if scheme == "SOTicket":
            return {
                "Authorization": f"SOTicket {self.connection.secret('ticket')}",
                "SO-AppToken": self.connection.secret("appToken"),
            }
        if scheme == "Bearer":
            headers = {"Authorization": f"Bearer {self.connection.secret('accessToken')}"}
            if "appToken" in creds:
                headers["SO-AppToken"] = self.connection.secret("appToken")
            return headers
        raise ConfigurationError(
            f"connection {self.connection.name!r}: give credentials 'ticket' and 'appToken' (SOTicket) "
            "or 'accessToken' (Bearer)"
        )

    # -- tenant discovery ----------------------------------------------------------------------------
    def _key(self) -> tuple[str, str, str]:
        return (self.connection.name, self._base, self._context_identifier)

    def _forget_tenant(self, used: _Tenant) -> None:
        with _tenants_lock:
            if _tenants.get(self._key()) == used:
                del _tenants[self._key()]

    def _tenant(self) -> _Tenant:
        """The tenant's endpoint, from the cache while ``ValidUntil`` holds, else from the state service.
        Raises :class:`ProviderNotReadyError` when the tenant is not running."""
        key = self._key()
        with _tenants_lock:
            cached = _tenants.get(key)
        if cached is not None and cached.valid_until > time.time():
            return cached
        tenant = self._discover()
        with _tenants_lock:
            _tenants[key] = tenant
        return tenant

    def _discover(self) -> _Tenant:
        context = self._context_identifier
        what = f"SuperOffice tenant state ({context})"
        url = f"{self._base}{STATE_PATH.format(context=quote(context, safe=''))}"
        response = send(lambda: self.client.get(url, headers={"Accept": "application/json"}), what=what)
        raise_for_transient(response, what=what)
        if response.status_code == 404:
            raise ConfigurationError(
                f"{what}: the state service at {self._base} does not know this tenant "
                f"({vendor_error(response)}); check the connection's contextIdentifier and baseUrl"
            )
        if response.status_code != 200:
            raise ProviderResponseError(f"{what}: unexpected {vendor_error(response)}")
        data = expect_dict(json_body(response, what=what), what=what)
        answered = data.get("ContextIdentifier")
        if not isinstance(answered, str) or answered.lower() != context.lower():
            raise ProviderResponseError(f"{what}: the answer is about tenant {answered!r}")
        state, running = data.get("State"), data.get("IsRunning")
        if not isinstance(running, bool):
            raise ProviderResponseError(f"{what}: IsRunning is {running!r}, not a boolean")
        if not isinstance(state, str):
            raise ProviderResponseError(f"{what}: State is {state!r}, not a string")
        valid_until = self._valid_until(data.get("ValidUntil"), what=what)
        if not running:
            self._tenant_state = state
            wait = self._not_running_wait()
            left = valid_until - time.time() if valid_until is not None else None
            if left is not None and left > 0:  # the state service says when to look again
                wait = min(wait, left)
            wait = max(MIN_NOT_RUNNING_WAIT, wait)
            logger.info("SuperOffice tenant not running", extra={"tenant": context, "state": state})
            raise ProviderNotReadyError(
                f"{what}: the tenant is not running (State {state!r}); asking again in {wait:.0f}s",
                wait_seconds=wait,
            )
        endpoint = data.get("Endpoint")
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise ProviderResponseError(f"{what}: a running tenant without an Endpoint")
        endpoint = endpoint.strip().rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProviderResponseError(f"{what}: Endpoint {endpoint!r} is not an http(s) URL")
        if urlsplit(self._base).scheme == "https" and parts.scheme != "https":
            raise ProviderResponseError(f"{what}: Endpoint {endpoint!r} would send credentials without TLS")
        if valid_until is None:  # no expiry given: keep it a while, 421 still catches a move
            valid_until = time.time() + DEFAULT_ENDPOINT_TTL
        return _Tenant(endpoint=endpoint, valid_until=valid_until)  # a past ValidUntil: use once, not cached

    @staticmethod
    def _valid_until(value: Any, *, what: str) -> float | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ProviderResponseError(f"{what}: ValidUntil is {value!r}, not a date")
        try:
            return _parse_time(value).timestamp()
        except ValueError:
            raise ProviderResponseError(f"{what}: ValidUntil {value!r} is not an ISO 8601 date") from None

    # -- calls ----------------------------------------------------------------------------------------
    def _post(self, path: str, body: Any, *, what: str, safe_to_repeat: bool = True) -> httpx.Response:
        """One authenticated POST to the tenant.

        HTTP 421 (the tenant moved host) drops the cached endpoint, rediscovers it and repeats once;
        401 repeats once and then raises :class:`ProviderAuthError`. SuperOffice acted on neither, so both
        repeats are safe even for a submit. A 503 drops the cached endpoint so that the next call learns
        whether the tenant went into maintenance.
        """
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

        def tenant() -> _Tenant:
            try:
                return self._tenant()
            except ProviderResponseError as exc:
                if safe_to_repeat:
                    raise
                # A garbled state answer comes before the submit is sent: nothing can have been accepted.
                raise ProviderUnavailableError(exc.message) from exc

        def attempt(at: _Tenant) -> httpx.Response:
            url = f"{at.endpoint}{path}"
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                **self._auth_headers(),
            }
            return send(
                lambda: self.client.post(url, content=content, headers=headers),
                what=what,
                safe_to_repeat=safe_to_repeat,
            )

        def authenticated(at: _Tenant) -> httpx.Response:
            response = attempt(at)
            if response.status_code != 401:
                return response
            logger.info(
                "SuperOffice refused the credentials; re-reading the connection and trying once more",
                extra={"connection": self.connection.name},
            )
            self.reload_connection()  # a ticket (valid ~6 h) may have been rotated into the secret
            response = attempt(at)
            if response.status_code == 401:
                raise ProviderAuthError(
                    f"{what}: SuperOffice refused the credentials of connection {self.connection.name!r} "
                    f"twice ({vendor_error(response)})"
                )
            return response

        at = tenant()
        response = authenticated(at)
        if response.status_code == 421:
            logger.info("SuperOffice tenant moved; rediscovering", extra={"connection": self.connection.name})
            self._forget_tenant(at)
            at = tenant()
            response = authenticated(at)
            if response.status_code == 421:
                self._forget_tenant(at)
                raise ProviderUnavailableError(
                    f"{what}: the tenant answered 421 (misdirected) even after rediscovery at {at.endpoint}"
                )
        if response.status_code == 503:
            self._forget_tenant(at)
        return response

    def _task_id(self, chunk: ChunkInfo, *, what: str) -> int:
        ref = chunk.provider_ref
        if not ref or not ref.isdigit():
            raise ConfigurationError(
                f"{what}: chunk {chunk.index} has no SuperOffice batch task id ({ref!r})"
            )
        return int(ref)

    def _options(self, chunk: ChunkInfo, *, what: str) -> SuperOfficeOptions:
        try:
            return SuperOfficeOptions.model_validate(chunk.options)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise BatchRejectedError(
                f"{what}: the batch options are not valid for SuperOffice ({problems})"
            ) from None

    def _task_info(self, task_id: int, *, what: str) -> _TaskInfo | None:
        """The batch task, or None when SuperOffice does not know it (404 or a null answer)."""
        response = self._post(TASK_INFO_PATH, {"Id": task_id}, what=what)
        raise_for_transient(response, what=what)
        if response.status_code == 404:
            return None
        if response.status_code == 403:
            raise ProviderAuthError(f"{what}: forbidden ({vendor_error(response)})")
        if response.status_code != 200:
            raise ProviderJobFailedError(
                f"{what}: SuperOffice refused the request ({vendor_error(response)})"
            )
        data = json_body(response, what=what)
        if data is None:
            return None
        try:
            info = _TaskInfo.model_validate(expect_dict(data, what=what))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {'missing' if e['type'] == 'missing' else e['msg']}"
                for e in exc.errors()
            )
            raise ProviderResponseError(
                f"{what}: the BatchTaskInfo breaks the documented shape ({problems})"
            ) from None
        if info.Id != task_id:
            raise ProviderResponseError(f"{what}: asked for batch task {task_id}, got {info.Id}")
        return info

    # -- submit ----------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        what = f"SuperOffice mass update (chunk {chunk.index})"
        options = self._options(chunk, what=what)
        ids = list(dict.fromkeys(int(job["id"]) for job in jobs))  # an entity named twice is updated once
        if not ids:
            raise BatchRejectedError(f"{what}: no entity ids")
        body = {
            "FieldValueInfos": [f.model_dump(by_alias=True) for f in options.field_value_infos],
            "TableName": options.table_name,
            "Context": options.context if options.context is not None else _default_context(chunk),
            "Ids": ",".join(str(i) for i in ids),
        }
        response = self._post(EXECUTE_PATH, body, what=what, safe_to_repeat=False)
        raise_for_transient(response, what=what)
        status = response.status_code
        if status == 403:
            raise ProviderAuthError(f"{what}: forbidden ({vendor_error(response)})")
        if 400 <= status < 500:
            raise BatchRejectedError(
                f"{what}: SuperOffice refused the mass update ({vendor_error(response)})"
            )
        if status != 200:
            raise ProviderResponseError(f"{what}: unexpected {vendor_error(response)}")
        task_id = json_body(response, what=what)
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id <= 0:
            raise ProviderResponseError(f"{what}: expected a batch task id (a positive int), got {task_id!r}")
        return str(task_id)

    def find_submission(self, chunk: ChunkInfo) -> str | None:
        """Find the batch task a lost submit answer would have named, by the ``Context`` it carried.

        Lists the tasks of the connection's ``associateId`` (setting: the associate whose credentials
        start the mass updates) with ``GetBatchTaskInfosByAssociates`` and picks the one whose Context is
        this chunk's ``batchbridge:<batch id>:<chunk index>``. None (cannot tell) without an
        ``associateId``, when the batch set its own ``context`` (shared by every chunk, so not proof),
        and unless exactly one task matches.
        """
        what = f"SuperOffice batch task lookup (chunk {chunk.index})"
        options = self._options(chunk, what=what)
        associate = self.connection.settings.get("associateId")
        if options.context is not None or isinstance(associate, bool) or not isinstance(associate, int):
            logger.info(
                "SuperOffice cannot look the chunk up (no associateId setting, or a custom context)",
                extra={"chunk": chunk.index},
            )
            return None
        try:
            response = self._post(TASKS_BY_ASSOCIATES_PATH, {"AssociateIds": [associate]}, what=what)
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        raise_for_transient(response, what=what)
        if response.status_code != 200:
            raise ProviderResponseError(f"{what}: unexpected {vendor_error(response)}")
        tasks = json_body(response, what=what)
        if not isinstance(tasks, list):
            raise ProviderResponseError(
                f"{what}: expected an array of BatchTaskInfo, got {type(tasks).__name__}"
            )
        wanted = _default_context(chunk)
        found = [task.get("Id") for task in tasks if isinstance(task, dict) and task.get("Context") == wanted]
        if len(found) != 1:
            if found:
                logger.warning(
                    "SuperOffice holds several batch tasks for one chunk", extra={"chunk": chunk.index}
                )
            return None
        task_id = found[0]
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id <= 0:
            raise ProviderResponseError(f"{what}: the matching task's Id is {task_id!r}, not a positive int")
        logger.info("SuperOffice already holds the chunk", extra={"chunk": chunk.index, "task": task_id})
        return str(task_id)

    # -- status ----------------------------------------------------------------------------------------
    def check(self, chunk: ChunkInfo) -> StatusReport:
        """Map the batch task's ``State``.

        ``New``/``Aquired``/``Started`` are RUNNING with ``ProgressPercent`` (clamped to 0..100);
        ``Succeeded``/``SucceededManualCleanup`` are COMPLETED; ``Failed`` is FAILED with the task's
        ``Response``/``Result`` text. ``Unknown``, ``All`` and anything else raise
        :class:`UnknownProviderStatusError`. A tenant that is not running gives a RUNNING report whose
        ``wait_hint_seconds`` says when to ask again.
        """
        what = f"SuperOffice batch task {chunk.provider_ref} (chunk {chunk.index})"
        task_id = self._task_id(chunk, what=what)
        try:
            info = self._task_info(task_id, what=what)
        except ProviderNotReadyError as exc:
            return StatusReport(
                state=ChunkState.RUNNING,
                provider_status=self._tenant_state or "NotRunning",
                wait_hint_seconds=exc.wait_seconds,
                detail={"tenantRunning": False, "batchTaskId": task_id},
            )
        if info is None:
            raise ProviderJobFailedError(
                f"{what}: SuperOffice has no such batch task; it may have been deleted, so its outcome "
                "cannot be learned"
            )
        state = info.State
        if state not in DOCUMENTED_STATES:
            raise UnknownProviderStatusError(
                f"{what}: batch task state {state!r} does not describe a task's progress "
                f"(expected one of {sorted(DOCUMENTED_STATES)})"
            )
        detail = {
            "batchTaskId": task_id,
            "progressDescription": info.ProgressDescription,
            "result": info.Result,
            "detailsTable": info.DetailsTable,
            "detailsRecord": info.DetailsRecord,
            "cancellationBehaviour": info.CancellationBehaviour,
        }
        if state in SUCCEEDED_STATES:
            return StatusReport(
                state=ChunkState.COMPLETED, provider_status=state, progress=100.0, detail=detail
            )
        if state == FAILED_STATE:
            return StatusReport(
                state=ChunkState.FAILED,
                provider_status=state,
                progress=100.0,
                error=ErrorInfo(code=_failure_code(info), message=_failure_text(info)),
                detail=detail,
            )
        return StatusReport(
            state=ChunkState.RUNNING, provider_status=state, progress=_progress(info), detail=detail
        )

    # -- results ---------------------------------------------------------------------------------------
    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """One outcome per entity, from the task's result JSON.

        * ``Succeeded: true`` -> succeeded; ``Succeeded: false`` -> failed with the entity's ``Error``
          (code ``SUPEROFFICE_ENTITY_FAILED``). ``providerRef`` is the entity id and ``response`` the
          vendor's item.
        * An entity the result never mentions is ``not_processed`` with a reason.
        * A ``Failed`` task (stopped, or failed as a whole) still reports what its result holds; the rest
          is ``not_processed`` with the task's reason (``SUPEROFFICE_TASK_STOPPED`` / ``_FAILED``).
        * A task or result SuperOffice no longer has raises :class:`ResultsExpiredError`.
        """
        what = f"SuperOffice results (batch task {chunk.provider_ref}, chunk {chunk.index})"
        task_id = self._task_id(chunk, what=what)
        options = self._options(chunk, what=what)
        try:
            info = self._task_info(task_id, what=what)
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        if info is None:
            raise ResultsExpiredError(f"{what}: SuperOffice no longer has this batch task")
        if info.State not in SUCCEEDED_STATES and info.State != FAILED_STATE:
            if info.State in RUNNING_STATES:
                raise ProviderResponseError(
                    f"{what}: the task is {info.State!r} again after it was reported finished"
                )
            raise UnknownProviderStatusError(f"{what}: batch task state {info.State!r}")
        failed_task = info.State == FAILED_STATE
        results: dict[int, _EntityResult] = {}
        if info.DetailsRecord:
            fetched = self._results(info.DetailsRecord, options.table_name, what=what)
            if fetched is None and not failed_task:
                raise ResultsExpiredError(f"{what}: SuperOffice no longer has result {info.DetailsRecord}")
            results = fetched or {}
        elif not failed_task:
            raise ProviderResponseError(
                f"{what}: a {info.State} task without a DetailsRecord to read results from"
            )

        known = {int(job["id"]) for job in jobs}
        strays = sorted(i for i in results if i not in known)
        if strays:
            logger.warning(
                "SuperOffice reported entities that were not in the chunk; ignored",
                extra={"task": task_id, "ids": strays[:20], "count": len(strays)},
            )
        if failed_task:
            missing = ErrorInfo(
                code=_failure_code(info),
                message=_clip(
                    f"SuperOffice batch task {task_id} ended before reporting this entity: "
                    f"{_failure_text(info)}"
                ),
            )
        else:
            missing = ErrorInfo(
                code=NO_RESULT, message=f"SuperOffice batch task {task_id} did not report this entity"
            )

        for i, job in enumerate(jobs):
            entity = int(job["id"])
            base = {
                "index": chunk.first_job_index + i,
                "client_ref": job.get("clientRef"),
                "provider_ref": str(entity),
            }
            item = results.get(entity)
            if item is None:
                yield Outcome(**base, outcome=OutcomeKind.NOT_PROCESSED, error=missing)
            elif item.Succeeded:
                yield Outcome(**base, outcome=OutcomeKind.SUCCEEDED, response=item.model_dump())
            else:
                reason = (
                    item.Error.strip() if item.Error and item.Error.strip() else "SuperOffice gave no reason"
                )
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.FAILED,
                    error=ErrorInfo(code=ENTITY_FAILED, message=_clip(reason)),
                    response=item.model_dump(),
                )

    def _results(self, binary_object_id: int, table: str, *, what: str) -> dict[int, _EntityResult] | None:
        """The per-entity results by entity id, or None when SuperOffice no longer has them."""
        body = {"TableName": table, "BinaryObjectId": binary_object_id}
        try:
            response = self._post(RESULT_PATH, body, what=what)
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        raise_for_transient(response, what=what)
        if response.status_code == 404:
            return None
        if response.status_code == 403:
            raise ProviderAuthError(f"{what}: forbidden ({vendor_error(response)})")
        if response.status_code != 200:
            raise ProviderJobFailedError(
                f"{what}: SuperOffice refused the result request ({vendor_error(response)})"
            )
        text = json_body(response, what=what)
        if text is None:
            return None
        if not isinstance(text, str):
            raise ProviderResponseError(
                f"{what}: expected the result as a JSON string, got {type(text).__name__}"
            )
        try:
            items = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise ProviderResponseError(f"{what}: the result string is not JSON ({exc.msg})") from None
        if not isinstance(items, list):
            raise ProviderResponseError(
                f"{what}: expected an array of entity results, got {type(items).__name__}"
            )
        results: dict[int, _EntityResult] = {}
        for n, raw in enumerate(items):
            try:
                item = _EntityResult.model_validate(raw)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()
                )
                raise ProviderResponseError(f"{what}: result item {n} is malformed ({problems})") from None
            results[item.Id] = item
        return results

    # -- cancel ----------------------------------------------------------------------------------------
    def cancel(self, chunk: ChunkInfo) -> bool:
        """Stop the batch task when its ``CancellationBehaviour`` allows it. True when SuperOffice
        confirmed the stop; False when the task had already ended or SuperOffice declined."""
        what = f"SuperOffice stop (batch task {chunk.provider_ref}, chunk {chunk.index})"
        task_id = self._task_id(chunk, what=what)
        try:
            info = self._task_info(task_id, what=what)
            if info is None or info.State not in RUNNING_STATES:
                return False
            behaviour = info.CancellationBehaviour
            if behaviour not in CANCELLABLE:
                if behaviour == NOT_CANCELLABLE:
                    raise CancelNotSupportedError(
                        f"{what}: SuperOffice marks this batch task CannotCancel; it will run to its end"
                    )
                raise CancelNotSupportedError(
                    f"{what}: CancellationBehaviour {behaviour!r} is not one that allows a stop"
                )
            response = self._post(STOP_PATH, {"Id": task_id}, what=what)
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        raise_for_transient(response, what=what)
        if response.status_code == 404:
            return False
        if response.status_code == 403:
            raise ProviderAuthError(f"{what}: forbidden ({vendor_error(response)})")
        if response.status_code != 200:
            raise ProviderJobFailedError(f"{what}: SuperOffice refused the stop ({vendor_error(response)})")
        stopped = json_body(response, what=what)
        if not isinstance(stopped, bool):
            raise ProviderResponseError(f"{what}: expected true or false, got {stopped!r}")
        if behaviour == "CancelWithWarning":
            logger.warning(
                "SuperOffice batch task stopped with a warning: part of it may already be applied",
                extra={"task": task_id},
            )
        return stopped


def _default_context(chunk: ChunkInfo) -> str:
    """The Context a mass update carries unless the batch names its own: unique per chunk."""
    return f"batchbridge:{chunk.batch_id}:{chunk.index}"


def _progress(info: _TaskInfo) -> float | None:
    value = info.ProgressPercent
    if value is None:
        return None
    if not 0 <= value <= 100:
        logger.warning(
            "SuperOffice progress out of range; clamped", extra={"task": info.Id, "percent": value}
        )
    return float(max(0, min(100, value)))


def _failure_code(info: _TaskInfo) -> str:
    return TASK_STOPPED if (info.Result or "").strip() == STOPPED_RESULT else TASK_FAILED


def _failure_text(info: _TaskInfo) -> str:
    result = (info.Result or "").strip()
    response = (info.Response or "").strip()
    if result == STOPPED_RESULT:
        return "the batch task was stopped" + (f": {response}" if response else "")
    parts = [p for p in (result, response) if p]
    if not parts:
        return "the SuperOffice batch task failed without a reason"
    return _clip(": ".join(dict.fromkeys(parts)))
