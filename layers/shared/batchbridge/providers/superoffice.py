"""SuperOffice CRM: mass updates run as BatchAgent batch tasks.

Dialect, in short (``docs/providers/superoffice.md`` has the whole of it):

* **Tenant discovery.** Online, the connection's ``baseUrl`` is the state service
  (``https://{env}.superoffice.com``) and the setting ``contextIdentifier`` names the tenant.
  ``GET {baseUrl}/api/state/{ContextIdentifier}`` answers ``{ContextIdentifier, Endpoint, State, IsRunning,
  ValidUntil, Api}``; the tenant's API lives under ``Endpoint``. The answer is cached per connection
  (module level) until ``ValidUntil``. A tenant that moved host answers HTTP 421: the cache entry is dropped,
  the tenant rediscovered once and the call repeated once. On-site installations have no state service:
  with ``tenantDiscovery: false`` the ``baseUrl`` is the installation's own address.
* **Tenant not running** (``IsRunning`` false: maintenance, suspended, upgrading) makes the batch wait,
  not fail: ``submit`` raises :class:`ProviderNotReadyError`, ``check`` returns a RUNNING report with
  ``wait_hint_seconds``; ``collect`` and ``cancel`` raise :class:`ProviderUnavailableError`.
* **Auth**, chosen by the credentials (or the setting ``authScheme``): a system user (``systemUserToken``,
  ``privateKey``, ``appToken``) signs its system-user token and exchanges it for a ticket at SuperOffice's
  partner system-user service, cached and renewed before it lapses and on a 401; a ``ticket`` and
  ``appToken`` kept current elsewhere send ``SOTicket``; an ``accessToken`` sends ``Bearer``; a ``username``
  and ``password`` send ``Basic`` (on-site). A 401 obtains a new ticket, or re-reads the secret (a rotated
  ticket), and repeats the call once.
* **Submit** is ``POST Agents/BulkUpdate/ExecuteByEntityIds`` with ``{FieldValueInfos, TableName, Context,
  Ids: "1,2,3"}``, each FieldValueInfo ``{Key, CurrentOperationType, Values}``; the answer is the batch task
  id (an int), read back with ``GetBatchTaskInfo`` to check it carries the Context just sent (a cut-short
  integer is still an id, of another task). One job is one entity id; the batch options carry
  ``tableName`` and ``fieldValueInfos``.
* **Status** is ``POST Agents/Batch/GetBatchTaskInfo {Id}``; ``State`` travels as a string.
* **Results** are ``POST Agents/BulkUpdate/GetJobResultAsJsonFromBinaryObjectId {TableName,
  BinaryObjectId}``, a JSON *string*. Which BatchTaskInfo field holds the BinaryObjectId, and what the
  result's items are called, SuperOffice does not document: they come from the connection's settings
  (``resultBinaryObjectField``, ``resultIdField``, ``resultSucceededField``, ``resultErrorField``;
  defaults ``DetailsRecord``, ``Id``, ``Succeeded``, ``Error``).
* **Cancel** is ``POST Agents/Batch/StopBatchJob {Id}`` -> bool, allowed when the task's
  ``CancellationBehaviour`` is ``CanCancel`` or ``CancelWithWarning``.
* **Clean-up**: with ``deleteTasksAfterCollect``, ``POST Agents/Batch/DeleteBatchTask {BatchTaskId}`` once
  the chunk's outcomes are recorded.
* **Errors** carry ``{Message, FriendlyText, ExceptionType, Source, Parameters}``.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import threading
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from batchbridge.errors import (
    BatchBridgeError,
    BatchRejectedError,
    CancelNotSupportedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderNotReadyError,
    ProviderResponseError,
    ProviderUnavailableError,
    ResultsExpiredError,
    SubmitUnconfirmedError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, ErrorInfo, Outcome, OutcomeKind
from batchbridge.observability import logger
from batchbridge.providers.auth import Token, keep_seconds
from batchbridge.providers.base import Capabilities, ChunkInfo, Job, Provider, StatusReport, register
from batchbridge.providers.http import expect_dict
from batchbridge.providers.protocol import Phase, Problem, clip
from batchbridge.providers.settings import ProviderSettings
from batchbridge.providers.values import json_size

STATE_PATH = "/api/state/{context}"
#: Seconds between the reads of a task just submitted, when one fails (then the submit is unconfirmed).
CONFIRM_WAITS = (0.25, 0.5, 1.0, 2.0)
SYSTEM_USER_PATH = "/Login/api/PartnerSystemUser/Authenticate"
EXECUTE_PATH = "/api/v1/Agents/BulkUpdate/ExecuteByEntityIds"
RESULT_PATH = "/api/v1/Agents/BulkUpdate/GetJobResultAsJsonFromBinaryObjectId"
TASK_INFO_PATH = "/api/v1/Agents/Batch/GetBatchTaskInfo"
TASKS_BY_ASSOCIATES_PATH = "/api/v1/Agents/Batch/GetBatchTaskInfosByAssociates"
STOP_PATH = "/api/v1/Agents/Batch/StopBatchJob"
DELETE_PATH = "/api/v1/Agents/Batch/DeleteBatchTask"
TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"

MIN_POLL_SECONDS = 15
DEFAULT_NOT_RUNNING_WAIT = 300.0  # a tenant in maintenance: ask again after five minutes
MIN_NOT_RUNNING_WAIT = 15.0
DEFAULT_ENDPOINT_TTL = 600.0  # when the state service gives no ValidUntil
TICKET_SECONDS = 6 * 3600.0  # a system user ticket lives about six hours
TICKET_MARGIN_SECONDS = 3600.0  # and is renewed an hour before that
MAX_FIELD_VALUES_BYTES = 64 * 1024  # options travel in the batch's record and with every chunk

# Error codes written on outcomes.
ENTITY_FAILED = "SUPEROFFICE_ENTITY_FAILED"
NO_RESULT = "SUPEROFFICE_NO_RESULT"
CONFLICTING_RESULT = "SUPEROFFICE_CONFLICTING_RESULT"
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

# BatchTaskInfo fields that could hold the result's BinaryObjectId (as an int, or an int in a string).
TASK_FIELDS_FOR_RESULT = ("DetailsRecord", "Response", "Result", "Request")
AuthScheme = Literal["SystemUser", "SOTicket", "Bearer", "Basic"]
_SCHEME_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "SystemUser": ("systemUserToken", "privateKey", "appToken"),
    "SOTicket": ("ticket", "appToken"),
    "Bearer": ("accessToken",),
    "Basic": ("username", "password"),
}
_FIELD = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"


# --- job, options and settings models -------------------------------------------------------------
class SuperOfficeJob(Job):
    """One entity to update: its id in the batch's table (e.g. a contact_id)."""

    id: StrictInt = Field(gt=0, le=2**31 - 1, description="the entity id (int32) in the batch's tableName")

    model_config = {"json_schema_extra": {"examples": [{"clientRef": "contact-1", "id": 1234}]}}


class FieldValueInfo(BaseModel):
    """One field change of the mass update, as SuperOffice documents ``FieldValueInfo``: ``Key`` names the
    field (a UDF's progid, an extra field's name), ``CurrentOperationType`` the operation (``Set``,
    ``Clear``, ``Toggle``, ``AddItems``...), ``Values`` the operation's parameters, as strings at the
    positions the operation reads. The descriptive properties SuperOffice's field listings carry
    (``ValueType``, ``DisplayValues``...) are accepted and passed on; nothing else is."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: StrictStr = Field(alias="Key", min_length=1, max_length=200, description="the field's key")
    current_operation_type: StrictStr = Field(
        alias="CurrentOperationType",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="the bulk update operation, e.g. 'Set'",
    )
    values: list[StrictStr] = Field(
        default_factory=list, alias="Values", max_length=64, description="the operation's parameters"
    )
    display_values: list[StrictStr] | None = Field(default=None, alias="DisplayValues", max_length=64)
    value_type: StrictStr | None = Field(default=None, alias="ValueType", max_length=200)
    can_support_multi_use: StrictBool | None = Field(default=None, alias="CanSupportMultiUse")
    default_show_in_gui: StrictBool | None = Field(default=None, alias="DefaultShowInGui")
    default_show_in_selector: StrictBool | None = Field(default=None, alias="DefaultShowInSelector")
    is_active: StrictBool | None = Field(default=None, alias="IsActive")
    mandatory: StrictBool | None = Field(default=None, alias="Mandatory")
    encoded_display_name: StrictStr | None = Field(default=None, alias="EncodedDisplayName", max_length=1000)
    encoded_display_description: StrictStr | None = Field(
        default=None, alias="EncodedDisplayDescription", max_length=1000
    )
    icon_hint: StrictStr | None = Field(default=None, alias="IconHint", max_length=200)
    encoded_data_caption: StrictStr | None = Field(default=None, alias="EncodedDataCaption", max_length=1000)
    encoded_data_caption_description: StrictStr | None = Field(
        default=None, alias="EncodedDataCaptionDescription", max_length=1000
    )


class SuperOfficeOptions(BaseModel):
    """Per-batch options: which table the entity ids belong to and what to set on every one of them."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "tableName": "contact",
                    "fieldValueInfos": [
                        {"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}
                    ],
                }
            ]
        },
    )

    table_name: StrictStr = Field(alias="tableName", pattern=_FIELD, description="e.g. 'contact', 'person'")
    field_value_infos: list[FieldValueInfo] = Field(
        alias="fieldValueInfos",
        min_length=1,
        max_length=100,
        description=f"the field changes; at most {MAX_FIELD_VALUES_BYTES // 1024} KiB of JSON together",
    )
    context: StrictStr | None = Field(
        default=None,
        max_length=200,
        description="the Context sent with the mass update; default 'batchbridge:<batch id>:<chunk index>'",
    )

    @model_validator(mode="after")
    def _small_enough(self) -> SuperOfficeOptions:
        size = json_size([f.model_dump(by_alias=True, exclude_none=True) for f in self.field_value_infos])
        if size > MAX_FIELD_VALUES_BYTES:
            raise ValueError(
                f"fieldValueInfos hold {size} bytes of JSON; at most {MAX_FIELD_VALUES_BYTES} "
                "(they are stored with the batch and sent with every chunk)"
            )
        return self


class SuperOfficeSettings(ProviderSettings):
    """A SuperOffice connection's ``settings`` (see ``docs/providers/superoffice.md``)."""

    context_identifier: StrictStr | None = Field(
        default=None, alias="contextIdentifier", pattern=r"^[A-Za-z0-9_.-]{1,100}$"
    )
    tenant_discovery: StrictBool = Field(default=True, alias="tenantDiscovery")
    auth_scheme: AuthScheme | None = Field(default=None, alias="authScheme")
    not_running_wait_seconds: PositiveFloat = Field(
        default=DEFAULT_NOT_RUNNING_WAIT, alias="notRunningWaitSeconds"
    )
    associate_id: PositiveInt | None = Field(default=None, alias="associateId")
    result_binary_object_field: Literal["DetailsRecord", "Response", "Result", "Request"] = Field(
        default="DetailsRecord", alias="resultBinaryObjectField"
    )
    result_id_field: StrictStr = Field(default="Id", alias="resultIdField", pattern=_FIELD)
    result_succeeded_field: StrictStr = Field(
        default="Succeeded", alias="resultSucceededField", pattern=_FIELD
    )
    result_error_field: StrictStr = Field(default="Error", alias="resultErrorField", pattern=_FIELD)
    delete_tasks_after_collect: StrictBool = Field(default=False, alias="deleteTasksAfterCollect")
    ticket_lifetime_seconds: PositiveFloat = Field(default=TICKET_SECONDS, alias="ticketLifetimeSeconds")

    @model_validator(mode="after")
    def _tenant_named(self) -> SuperOfficeSettings:
        if self.tenant_discovery and self.context_identifier is None:
            raise ValueError("contextIdentifier must name the tenant (e.g. 'Cust12345') for tenant discovery")
        return self


class _TaskInfo(BaseModel):
    """The BatchTaskInfo fields this adapter reads. The others are tolerated in any form, because a
    ``$select`` or an older server may null them out."""

    model_config = ConfigDict(extra="allow")

    Id: StrictInt
    State: StrictStr
    Result: StrictStr | None = None
    Response: StrictStr | None = None
    Request: StrictStr | None = None
    Context: StrictStr | None = None
    DetailsTable: StrictInt | None = None
    DetailsRecord: StrictInt | None = None
    ProgressPercent: StrictInt | None = None
    ProgressDescription: StrictStr | None = None
    CancellationBehaviour: StrictStr | None = None


@dataclass(frozen=True)
class EntityResult:
    """One item of a task's result, read through the connection's field names."""

    id: int
    succeeded: bool
    error: str | None
    raw: dict[str, Any]


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


def vendor_error_text(body: Any) -> str:
    """``<FriendlyText> (<Message>; <ExceptionType>)`` from SuperOffice's error carrier, naming only what
    is present and not repeating itself.

    >>> vendor_error_text({"Message": "Bad table", "FriendlyText": "Bad table"})
    'Bad table'
    """
    if not isinstance(body, dict):
        return ""
    friendly, message, kind = (body.get(k) for k in ("FriendlyText", "Message", "ExceptionType"))
    main = friendly if isinstance(friendly, str) and friendly.strip() else message
    text = main.strip() if isinstance(main, str) else ""
    extra = [v.strip() for v in (message, kind) if isinstance(v, str) and v.strip() and v.strip() != text]
    if extra:
        text = f"{text} ({'; '.join(dict.fromkeys(extra))})" if text else "; ".join(dict.fromkeys(extra))
    return clip(text)


# --- system user sign-in ----------------------------------------------------------------------------
def _require_cryptography() -> None:
    """The cryptography package is in the signing layer, deployed only where system users are wanted."""
    if importlib.util.find_spec("cryptography") is None:
        raise ConfigurationError(
            "a SuperOffice system-user connection needs the signing layer to sign its token: deploy with "
            "SuperOfficeSystemUsers=true"
        )


def _private_key(text: str) -> Any:
    """The RSA private key from a PEM text or SuperOffice's RSA XML (``<RSAKeyValue>``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    stripped = text.strip()
    try:
        if stripped.startswith("<"):
            root = ElementTree.fromstring(stripped)  # noqa: S314 - the connection's own secret

            def number(tag: str) -> int:
                node = root.find(tag)
                if node is None or not node.text:
                    raise ValueError(tag)
                return int.from_bytes(base64.b64decode(node.text.strip()), "big")

            public = rsa.RSAPublicNumbers(number("Exponent"), number("Modulus"))
            return rsa.RSAPrivateNumbers(
                number("P"), number("Q"), number("D"), number("DP"), number("DQ"), number("InverseQ"), public
            ).private_key()
        key = serialization.load_pem_private_key(stripped.encode(), password=None)
    except (ValueError, TypeError, ElementTree.ParseError, binascii.Error):
        raise ConfigurationError(
            "credential 'privateKey' is not an RSA private key (PEM, or SuperOffice's RSA XML)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("credential 'privateKey' is not an RSA key")
    return key


def signed_system_token(system_user_token: str, private_key: str, now: datetime | None = None) -> str:
    """``<token>.<yyyyMMddHHmm UTC>.<base64 RSA-SHA256 signature of the first two parts>``, as SuperOffice
    documents the SignedSystemToken."""
    _require_cryptography()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")
    data = f"{system_user_token}.{stamp}"
    signature = _private_key(private_key).sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{data}.{base64.b64encode(signature).decode()}"


def _ticket_from_jwt(token: Any) -> str:
    """The ticket claim of the JWT the system-user service returns. The JWT comes over TLS from the
    connection's own SuperOffice host and only its ticket is used -- presented back to SuperOffice, which
    refuses a forged one -- so its signature is not checked here."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise ProviderResponseError("the system-user answer's Token is not a JWT")
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        raise ProviderResponseError("the system-user answer's Token does not decode") from None
    ticket = claims.get(TICKET_CLAIM) if isinstance(claims, dict) else None
    if not isinstance(ticket, str) or not ticket:
        raise ProviderResponseError("the system-user answer's Token carries no ticket claim")
    return ticket


# --- the adapter ------------------------------------------------------------------------------------
@register
class SuperOfficeProvider(Provider):
    """SuperOffice mass updates through the BulkUpdate and Batch agents.

    ``max_jobs_per_submit`` is 500: the agent's limit on ``Ids`` is not published, 500 ids keep the
    comma-separated list a few kilobytes, and the task's result JSON small. ``max_concurrency`` is 2
    because SuperOffice is said to allow about ten calls a second (not confirmed) and each check makes
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
    settings_model: ClassVar[type[ProviderSettings]] = SuperOfficeSettings
    not_taken_statuses: ClassVar[frozenset[int]] = frozenset({401, 421, 429})  # 421: misdirected, not read
    #: The state word of the last discovery that found the tenant not running.
    _tenant_state: str | None = None

    @property
    def config(self) -> SuperOfficeSettings:
        return self.configured(SuperOfficeSettings)

    @property
    def _context(self) -> str:
        return self.config.context_identifier or ""

    # -- dialect: answers ----------------------------------------------------------------------------
    def vendor_problem(self, body: Any, status: int) -> Problem | None:
        text = vendor_error_text(body)
        return Problem(status, self.http_code(status), text) if text else None

    # -- auth ----------------------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        """The auth scheme: ``authScheme``, else the one the credentials name (exactly one must)."""
        chosen = self.config.auth_scheme
        if chosen is None:
            named = [s for s, needs in _SCHEME_CREDENTIALS.items() if needs[0] in self.connection.credentials]
            if len(named) != 1:
                raise ConfigurationError(
                    f"connection {self.connection.name!r}: give the credentials of one auth scheme -- "
                    "'systemUserToken', 'privateKey' and 'appToken' (system user), 'ticket' and 'appToken' "
                    "(SOTicket), 'accessToken' (Bearer) or 'username' and 'password' (Basic) -- or set "
                    "settings.authScheme"
                )
            chosen = named[0]  # type: ignore[assignment]
        assert chosen is not None
        return chosen

    def token_key(self) -> Hashable | None:
        if self.scheme != "SystemUser":
            return None
        return ("superoffice", self.connection.name, self.base_url, self._context)

    def credential(self) -> str:
        scheme = self.scheme
        if scheme == "SystemUser":
            return super().credential()
        if scheme == "SOTicket":
            return self.connection.secret("ticket")
        if scheme == "Bearer":
            return self.connection.secret("accessToken")
        pair = f"{self.connection.secret('username')}:{self.connection.secret('password')}"
        return base64.b64encode(pair.encode()).decode()

    def forget_credential(self, used: str) -> None:
        if self.scheme == "SystemUser":
            super().forget_credential(used)
            return
        logger.info(
            "SuperOffice refused the credentials; re-reading the connection",
            extra={"connection": self.connection.name},
        )
        self.reload_connection()  # a ticket kept current elsewhere may have been rotated into the secret

    def live_credentials(self) -> list[str]:
        live = super().live_credentials()
        if self.scheme == "Basic":
            live.append(self.credential())  # the encoded pair is as secret as its parts
        return live

    def fetch_token(self) -> Token:
        """Sign the system-user token and exchange it for a ticket at the partner system-user service."""
        body = {
            "SignedSystemToken": signed_system_token(
                self.connection.secret("systemUserToken"), self.connection.secret("privateKey")
            ),
            "ApplicationToken": self.connection.secret("appToken"),
            "ContextIdentifier": self._context,
            "ReturnTokenType": "JWT",
        }
        started = time.monotonic()
        response = self.request(
            "POST",
            f"{self.base_url}{SYSTEM_USER_PATH}",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        self.check_answer(response, Phase.AUTH, step="system-user sign-in")
        answer = expect_dict(self.read_json(response, auth=True), what="the system-user answer")
        if answer.get("IsSuccessful") is not True:
            said = answer.get("ErrorMessage")
            reason = clip(said, 300) if isinstance(said, str) and said.strip() else "no reason given"
            raise ProviderAuthError(f"SuperOffice refused the system user's sign-in ({reason})")
        ticket = _ticket_from_jwt(answer.get("Token"))
        lifetime = self.config.ticket_lifetime_seconds
        return Token(ticket, started + keep_seconds(lifetime, TICKET_MARGIN_SECONDS))

    def _auth_headers(self, credential: str) -> dict[str, str]:
        scheme = self.scheme
        if scheme in ("SystemUser", "SOTicket"):
            return {
                "Authorization": f"SOTicket {credential}",
                "SO-AppToken": self.connection.secret("appToken"),
            }
        if scheme == "Bearer":
            headers = {"Authorization": f"Bearer {credential}"}
            if "appToken" in self.connection.credentials:
                headers["SO-AppToken"] = self.connection.secret("appToken")
            return headers
        return {"Authorization": f"Basic {credential}"}

    # -- tenant discovery ----------------------------------------------------------------------------
    def _key(self) -> tuple[str, str, str]:
        return (self.connection.name, self.base_url, self._context)

    def _forget_tenant(self, used: _Tenant) -> None:
        with _tenants_lock:
            if _tenants.get(self._key()) == used:
                del _tenants[self._key()]

    def _tenant(self) -> _Tenant:
        """The tenant's endpoint, from the cache while ``ValidUntil`` holds, else from the state service.
        Raises :class:`ProviderNotReadyError` when the tenant is not running."""
        if not self.config.tenant_discovery:
            return _Tenant(self.base_url, float("inf"))
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
        context = self._context
        url = f"{self.base_url}{STATE_PATH.format(context=quote(context, safe=''))}"
        response = self.request("GET", url, headers={"Accept": "application/json"})
        if response.status_code == 404:
            raise ConfigurationError(
                f"the state service at {self.base_url} does not know tenant {context!r} "
                f"({self.problem(response).describe()}); check the connection's contextIdentifier and baseUrl"
            )
        self.check_answer(response, Phase.AUTH, step=f"tenant state ({context})")
        data = expect_dict(self.read_json(response))
        answered = data.get("ContextIdentifier")
        if not isinstance(answered, str) or answered.lower() != context.lower():
            raise ProviderResponseError(f"the state service answered about tenant {str(answered)[:64]!r}")
        state, running = data.get("State"), data.get("IsRunning")
        if not isinstance(running, bool):
            raise ProviderResponseError(f"IsRunning is {running!r:.40}, not a boolean")
        if not isinstance(state, str):
            raise ProviderResponseError(f"State is {state!r:.40}, not a string")
        valid_until = self._valid_until(data.get("ValidUntil"))
        if not running:
            self._tenant_state = state
            wait = self.config.not_running_wait_seconds
            left = valid_until - time.time() if valid_until is not None else None
            if left is not None and left > 0:  # the state service says when to look again
                wait = min(wait, left)
            wait = max(MIN_NOT_RUNNING_WAIT, wait)
            logger.info("SuperOffice tenant not running", extra={"tenant": context, "state": state[:40]})
            raise ProviderNotReadyError(
                f"the tenant is not running (State {state[:40]!r}); asking again in {wait:.0f}s",
                wait_seconds=wait,
            )
        endpoint = data.get("Endpoint")
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise ProviderResponseError("a running tenant without an Endpoint")
        endpoint = endpoint.strip().rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProviderResponseError(f"Endpoint {endpoint[:100]!r} is not an http(s) URL")
        if urlsplit(self.base_url).scheme == "https" and parts.scheme != "https":
            raise ProviderResponseError(f"Endpoint {endpoint[:100]!r} would send credentials without TLS")
        if valid_until is None:  # no expiry given: keep it a while, 421 still catches a move
            valid_until = time.time() + DEFAULT_ENDPOINT_TTL
        return _Tenant(endpoint=endpoint, valid_until=valid_until)  # a past ValidUntil: use once, not cached

    @staticmethod
    def _valid_until(value: Any) -> float | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ProviderResponseError(f"ValidUntil is {value!r:.40}, not a date")
        try:
            return _parse_time(value).timestamp()
        except ValueError:
            raise ProviderResponseError(f"ValidUntil {value[:40]!r} is not an ISO 8601 date") from None

    # -- calls ---------------------------------------------------------------------------------------
    def _post(self, path: str, body: Any, *, commit: bool = False) -> httpx.Response:
        """One authenticated POST to the tenant.

        HTTP 421 (the tenant moved host) drops the cached endpoint, rediscovers it and repeats once; a 401
        repeats once with a new credential (:meth:`Provider.authorized`). SuperOffice acted on neither, so
        both repeats are safe even for a submit. A 503 drops the cached endpoint so that the next call
        learns whether the tenant went into maintenance.
        """
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

        def call(at: _Tenant) -> httpx.Response:
            def attempt(credential: str) -> httpx.Response:
                headers = {
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    **self._auth_headers(credential),
                }
                return self.request(
                    "POST", f"{at.endpoint}{path}", content=content, headers=headers, commit=commit
                )

            return self.authorized(attempt)

        at = self._tenant()
        response = call(at)
        if response.status_code == 421 and self.config.tenant_discovery:
            logger.info("SuperOffice tenant moved; rediscovering", extra={"connection": self.connection.name})
            self._forget_tenant(at)
            at = self._tenant()
            response = call(at)
            if response.status_code == 421:
                self._forget_tenant(at)
                raise ProviderUnavailableError(
                    f"the tenant answered 421 (misdirected) even after rediscovery at {at.endpoint}"
                )
        if response.status_code == 503:
            self._forget_tenant(at)
        return response

    def _task_id(self, chunk: ChunkInfo) -> int:
        ref = chunk.provider_ref
        if not ref or not ref.isdigit():
            raise ConfigurationError(f"chunk {chunk.index} has no SuperOffice batch task id ({ref!r:.40})")
        return int(ref)

    def _options(self, chunk: ChunkInfo) -> SuperOfficeOptions:
        try:
            return SuperOfficeOptions.model_validate(chunk.options)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise BatchRejectedError(
                f"the batch options are not valid for SuperOffice ({problems})"
            ) from None

    def _task_info(self, task_id: int, phase: Phase) -> _TaskInfo:
        """The batch task. A task SuperOffice does not know (404, or a null answer) is decided by
        ``phase``: gone for a status check, results expired for a collection."""
        response = self._post(TASK_INFO_PATH, {"Id": task_id})
        self.check_answer(response, phase)
        data = self.read_json(response)
        if data is None:
            gone = Problem(404, self.http_code(404), "a null BatchTaskInfo")
            raise self.decide(gone, phase).build(gone)
        try:
            info = _TaskInfo.model_validate(expect_dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {'missing' if e['type'] == 'missing' else e['msg']}"
                for e in exc.errors()
            )
            raise ProviderResponseError(
                f"the BatchTaskInfo breaks the documented shape ({problems})"
            ) from None
        if info.Id != task_id:
            raise ProviderResponseError(f"asked for batch task {task_id}, got {info.Id}")
        return info

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """One ``ExecuteByEntityIds`` per chunk; returns the batch task id. An entity named twice is
        updated once. An accepting answer that is not a positive int leaves the submit unconfirmed."""
        options = self._options(chunk)
        ids = list(dict.fromkeys(int(job["id"]) for job in jobs))
        if not ids:
            raise BatchRejectedError("no entity ids")
        context = options.context if options.context is not None else _default_context(chunk)
        body = {
            "FieldValueInfos": [
                f.model_dump(by_alias=True, exclude_none=True) for f in options.field_value_infos
            ],
            "TableName": options.table_name,
            "Context": context,
            "Ids": ",".join(str(i) for i in ids),
        }
        response = self._post(EXECUTE_PATH, body, commit=True)
        self.check_answer(response, Phase.SUBMIT)
        task_id = self.read_json(response)
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id <= 0:
            raise ProviderResponseError(f"expected a batch task id (a positive int), got {task_id!r:.40}")
        self._confirm_task(task_id, context)
        return str(task_id)

    def _confirm_task(self, task_id: int, context: str) -> None:
        """Read the task the submit answer named and check it carries the Context just sent.

        The answer is a bare integer, so one cut short (``1000`` read as ``10``) is still a valid id, of
        another task: recorded, it would credit this chunk with that task's results. The read is safe to
        repeat, so a failed one is asked again (:data:`CONFIRM_WAITS`). A task that carries another
        Context, or that cannot be read at all, leaves the submit unconfirmed: the core then looks the
        chunk up by its Context and never sends it again.
        """
        failure: Exception | None = None
        for wait in (*CONFIRM_WAITS, None):
            try:
                info = self._task_info(task_id, Phase.STATUS)
            except (BatchBridgeError, httpx.TransportError) as exc:
                failure = exc
                if wait is not None:
                    time.sleep(wait)
                continue
            if info.Context != context:
                raise SubmitUnconfirmedError(
                    f"the submit answered batch task {task_id}, which carries another Context: the answer "
                    "does not name this chunk's task"
                )
            return
        raise SubmitUnconfirmedError(
            f"the submit answered batch task {task_id}, which could not be read back "
            f"({type(failure).__name__})"
        ) from failure

    def find_submission(self, chunk: ChunkInfo) -> str | None:
        """Find the batch task a lost submit answer would have named, by the ``Context`` it carried.

        Lists the tasks of the connection's ``associateId`` (setting: the associate whose credentials
        start the mass updates) with ``GetBatchTaskInfosByAssociates`` and picks the one whose Context is
        this chunk's ``batchbridge:<batch id>:<chunk index>``. None (cannot tell) without an
        ``associateId``, when the batch set its own ``context`` (shared by every chunk, so not proof),
        and unless exactly one task matches.
        """
        options = self._options(chunk)
        associate = self.config.associate_id
        if options.context is not None or associate is None:
            logger.info(
                "SuperOffice cannot look the chunk up (no associateId setting, or a custom context)",
                extra={"chunk": chunk.index},
            )
            return None
        try:
            response = self._post(TASKS_BY_ASSOCIATES_PATH, {"AssociateIds": [associate]})
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        self.check_answer(response, Phase.LOOKUP)
        tasks = self.read_json(response)
        if not isinstance(tasks, list):
            raise ProviderResponseError(f"expected an array of BatchTaskInfo, got {type(tasks).__name__}")
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
            raise ProviderResponseError(f"the matching task's Id is {task_id!r:.40}, not a positive int")
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
        task_id = self._task_id(chunk)
        try:
            info = self._task_info(task_id, Phase.STATUS)
        except ProviderNotReadyError as exc:
            return StatusReport(
                state=ChunkState.RUNNING,
                provider_status=self._tenant_state or "NotRunning",
                wait_hint_seconds=exc.wait_seconds,
                detail={"tenantRunning": False, "batchTaskId": task_id},
            )
        state = info.State
        if state not in DOCUMENTED_STATES:
            raise UnknownProviderStatusError(
                f"batch task state {state[:40]!r} does not describe a task's progress "
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

        * An item saying it succeeded -> succeeded; saying it failed -> failed with its error (code
          ``SUPEROFFICE_ENTITY_FAILED``). ``providerRef`` is the entity id and ``response`` the vendor's item.
        * Items are matched by the entity id they name, never by position. An entity named twice with the
          same verdict is one result; named twice with different verdicts it is ``not_processed``
          (``SUPEROFFICE_CONFLICTING_RESULT``). An entity the result never names is ``not_processed``;
          items naming entities not in the chunk are logged and ignored.
        * A ``Failed`` task (stopped, or failed as a whole) still reports what its result holds; the rest
          is ``not_processed`` with the task's reason (``SUPEROFFICE_TASK_STOPPED`` / ``_FAILED``).
        * A task or result SuperOffice no longer has raises :class:`ResultsExpiredError`.
        """
        task_id = self._task_id(chunk)
        options = self._options(chunk)
        try:
            info = self._task_info(task_id, Phase.RESULTS)
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        if info.State not in SUCCEEDED_STATES and info.State != FAILED_STATE:
            if info.State in RUNNING_STATES:
                raise ProviderResponseError(
                    f"the task is {info.State!r} again after it was reported finished"
                )
            raise UnknownProviderStatusError(f"batch task state {info.State[:40]!r}")
        failed_task = info.State == FAILED_STATE
        items: list[EntityResult] = []
        binary_object_id = self._binary_object_id(info)
        if binary_object_id:
            fetched = self._results(binary_object_id, options.table_name)
            if fetched is None and not failed_task:
                raise ResultsExpiredError(f"SuperOffice no longer has result {binary_object_id}")
            items = fetched or []
        elif not failed_task:
            raise ProviderResponseError(
                f"a {info.State} task without a {self.config.result_binary_object_field} to read results from"
            )
        results = self._by_entity(items, {int(job["id"]) for job in jobs}, task_id)
        if failed_task:
            missing = ErrorInfo(
                code=_failure_code(info),
                message=clip(
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
            elif isinstance(item, ErrorInfo):
                yield Outcome(**base, outcome=OutcomeKind.NOT_PROCESSED, error=item)
            elif item.succeeded:
                yield Outcome(**base, outcome=OutcomeKind.SUCCEEDED, response=item.raw)
            else:
                reason = (
                    item.error.strip() if item.error and item.error.strip() else "SuperOffice gave no reason"
                )
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.FAILED,
                    error=ErrorInfo(code=ENTITY_FAILED, message=clip(reason)),
                    response=item.raw,
                )

    @staticmethod
    def _by_entity(
        items: Sequence[EntityResult], known: set[int], task_id: int
    ) -> dict[int, EntityResult | ErrorInfo]:
        """Result items by the entity they name; a conflict in place of an entity named with two verdicts."""
        results: dict[int, EntityResult | ErrorInfo] = {}
        strays: set[int] = set()
        for item in items:
            if item.id not in known:
                strays.add(item.id)
                continue
            seen = results.get(item.id)
            if seen is None:
                results[item.id] = item
            elif isinstance(seen, EntityResult) and (seen.succeeded, seen.error) != (
                item.succeeded,
                item.error,
            ):
                results[item.id] = ErrorInfo(
                    code=CONFLICTING_RESULT,
                    message=f"SuperOffice batch task {task_id} reported this entity twice, "
                    "with different results",
                )
        if strays:
            logger.warning(
                "SuperOffice reported entities that were not in the chunk; ignored",
                extra={"task": task_id, "ids": sorted(strays)[:20], "count": len(strays)},
            )
        return results

    def _binary_object_id(self, info: _TaskInfo) -> int | None:
        """The result's BinaryObjectId from the task field the connection names (an int, or a string of
        digits); None when the field is empty."""
        name = self.config.result_binary_object_field
        value = getattr(info, name, None)
        if value is None or value == 0 or value == "":
            return None
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        raise ProviderResponseError(f"the task's {name} does not hold a BinaryObjectId")

    def _results(self, binary_object_id: int, table: str) -> list[EntityResult] | None:
        """The result's items, or None when SuperOffice no longer has them."""
        response = self._post(RESULT_PATH, {"TableName": table, "BinaryObjectId": binary_object_id})
        if response.status_code == 404:
            return None
        self.check_answer(response, Phase.RESULTS)
        text = self.read_json(response)
        if text is None:
            return None
        if not isinstance(text, str):
            raise ProviderResponseError(f"expected the result as a JSON string, got {type(text).__name__}")
        try:
            items = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise ProviderResponseError(f"the result string is not JSON ({exc.msg})") from None
        if not isinstance(items, list):
            raise ProviderResponseError(f"expected an array of entity results, got {type(items).__name__}")
        return [self._entity_result(n, raw) for n, raw in enumerate(items)]

    def _entity_result(self, n: int, raw: Any) -> EntityResult:
        config = self.config
        id_field, ok_field, error_field = (
            config.result_id_field,
            config.result_succeeded_field,
            config.result_error_field,
        )
        if not isinstance(raw, dict):
            raise ProviderResponseError(f"result item {n} is a {type(raw).__name__}, not an object")
        entity, succeeded, error = raw.get(id_field), raw.get(ok_field), raw.get(error_field)
        if isinstance(entity, bool) or not isinstance(entity, int):
            raise ProviderResponseError(f"result item {n}: {id_field} is not an entity id")
        if not isinstance(succeeded, bool):
            raise ProviderResponseError(f"result item {n}: {ok_field} is not true or false")
        if error is not None and not isinstance(error, str):
            raise ProviderResponseError(f"result item {n}: {error_field} is not text")
        return EntityResult(entity, succeeded, error, raw)

    # -- cancel and clean-up ---------------------------------------------------------------------------
    def cancel(self, chunk: ChunkInfo) -> bool:
        """Stop the batch task when its ``CancellationBehaviour`` allows it. True when SuperOffice
        confirmed the stop; False when the task had already ended or SuperOffice declined."""
        task_id = self._task_id(chunk)
        try:
            try:
                info = self._task_info(task_id, Phase.CANCEL)
            except ProviderJobFailedError:
                return False
            if info.State not in RUNNING_STATES:
                return False
            behaviour = info.CancellationBehaviour
            if behaviour not in CANCELLABLE:
                if behaviour == NOT_CANCELLABLE:
                    raise CancelNotSupportedError(
                        "SuperOffice marks this batch task CannotCancel; it will run to its end"
                    )
                raise CancelNotSupportedError(
                    f"CancellationBehaviour {str(behaviour)[:40]!r} is not one that allows a stop"
                )
            response = self._post(STOP_PATH, {"Id": task_id})
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        if response.status_code == 404:
            return False
        self.check_answer(response, Phase.CANCEL)
        stopped = self.read_json(response)
        if not isinstance(stopped, bool):
            raise ProviderResponseError(f"expected true or false, got {stopped!r:.40}")
        if behaviour == "CancelWithWarning":
            logger.warning(
                "SuperOffice batch task stopped with a warning: part of it may already be applied",
                extra={"task": task_id},
            )
        return stopped

    def cleanup(self, chunk: ChunkInfo) -> None:
        """With ``deleteTasksAfterCollect``, delete the chunk's batch task (and so its result) at
        SuperOffice. A task already gone is fine."""
        if not self.config.delete_tasks_after_collect or not chunk.provider_ref:
            return
        task_id = self._task_id(chunk)
        try:
            response = self._post(DELETE_PATH, {"BatchTaskId": task_id})
        except ProviderNotReadyError as exc:
            raise ProviderUnavailableError(exc.message) from exc
        if response.status_code == 404:
            return
        self.check_answer(response, Phase.CLEANUP, ok=frozenset({200, 204}))
        logger.info("SuperOffice batch task deleted", extra={"task": task_id})


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
    return clip(": ".join(dict.fromkeys(parts)))
