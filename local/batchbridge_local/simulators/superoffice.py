"""A SuperOffice simulator: the tenant state service, the BulkUpdate agent and the Batch agent.

Answers like the vendor (``docs/providers/superoffice.md``):

* ``GET /api/state/{ContextIdentifier}`` -> ``{ContextIdentifier, Endpoint, State, IsRunning, ValidUntil,
  Api}``. The tenant lives under ``/{host}/{ContextIdentifier}`` on the same server, where ``host`` plays
  the numbered host (``sod1``, ``sod2``…). :meth:`move_host` moves the tenant: from then on the old prefix
  answers HTTP 421 until the client rediscovers it.
* Tenant calls need ``Authorization: SOTicket <ticket>`` with ``SO-AppToken: <appToken>`` (the configured
  :attr:`ticket`, or one the system-user service issued and that has not lapsed), ``Authorization: Bearer
  <accessToken>`` or ``Authorization: Basic <username:password>`` (on-site); anything else gets 401.
* ``POST /Login/api/PartnerSystemUser/Authenticate {SignedSystemToken, ApplicationToken,
  ContextIdentifier, ReturnTokenType}`` checks the signed system-user token (the :attr:`system_user_token`,
  a UTC ``yyyyMMddHHmm`` within five minutes, an RSA-SHA256 signature by :attr:`private_key_pem`'s key)
  and answers ``{IsSuccessful, Token, ErrorMessage}``, the Token a JWT whose
  ``http://schemes.superoffice.net/identity/ticket`` claim is a new ticket valid ``ticket_ttl_seconds``.
* ``POST …/api/v1/Agents/BulkUpdate/ExecuteByEntityIds`` -> the new batch task id (int);
  ``POST …/api/v1/Agents/Batch/GetBatchTaskInfo {Id}`` -> a BatchTaskInfo with all 24 documented fields,
  enums as strings and dates in ISO 8601 with an offset; ``GetBatchTaskInfosByAssociates {AssociateIds}``
  -> an array of them; ``StopBatchJob {Id}`` -> bool;
  ``POST …/Agents/BulkUpdate/GetJobResultAsJsonFromBinaryObjectId {TableName, BinaryObjectId}`` -> a JSON
  string.
* ``POST …/Agents/Batch/DeleteBatchTask {BatchTaskId}`` -> 204, the task and its result gone.
* A mass update's ``FieldValueInfos`` are ``[{Key, CurrentOperationType, Values}]`` as documented; one
  without a ``Key`` or an operation, or with ``Values`` that are not strings, is a 400.
* Simulator decisions, each a knob because SuperOffice does not document it: the task field that holds
  the result's BinaryObjectId (``result_binary_field``, default ``DetailsRecord``; 0 until the task
  ends), the result's item fields (``result_fields``, default ``("Id", "Succeeded", "Error")``), a
  stopped task ends ``Failed`` with
  ``Result`` "Stopped" and its result lists the entities handled before the stop. Errors use the
  exception carrier ``{Message, FriendlyText, ExceptionType, Source, Parameters}``. An unknown task or
  binary object answers 404.

A task moves ``New -> Aquired -> Started -> Succeeded`` over ``job_seconds``; entities are handled in
order while it is ``Started``.

Knobs (attributes, change them between requests): ``job_seconds``, ``failures`` (entity id -> error:
those entities fail in any task that holds them), ``unreported`` (entity ids left out of results),
``fail_next_tasks`` / ``task_failure`` (whole-task failure), ``cancellation_behaviour``,
``unauthorized_next``, ``stale_state_next`` (the state service lags behind a host move),
``state_ttl_seconds`` (how far ahead ``ValidUntil`` lies), ``max_ids``, ``ticket_ttl_seconds``,
``result_binary_field``, ``result_fields``, ``results_transform`` (rewrite a result's item list: reorder,
repeat, drop). Host moves: :meth:`move_host`. Maintenance windows: :meth:`start_maintenance` /
:meth:`end_maintenance`. Test helpers: :meth:`truth`, :attr:`submissions`, :attr:`state_requests`,
:attr:`tickets_issued`, :attr:`deleted`, :meth:`secret_values`, :meth:`force_state`, :meth:`delete_result`,
:meth:`reset`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from batchbridge_local.simulators.base import Faults, Request, Response, Simulator

STATE_PREFIX = "/api/state/"
API = "/api/v1/"
EXECUTE = "Agents/BulkUpdate/ExecuteByEntityIds"
RESULT = "Agents/BulkUpdate/GetJobResultAsJsonFromBinaryObjectId"
TASK_INFO = "Agents/Batch/GetBatchTaskInfo"
BY_ASSOCIATES = "Agents/Batch/GetBatchTaskInfosByAssociates"
STOP = "Agents/Batch/StopBatchJob"
DELETE = "Agents/Batch/DeleteBatchTask"
SYSTEM_USER_PATH = "/Login/api/PartnerSystemUser/Authenticate"
TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"
SIGNED_TOKEN_SLACK_SECONDS = 300

BINARY_OBJECT_TABLE = 94  # simulator decision: the table id DetailsTable names once a result exists
TERMINAL = frozenset({"Succeeded", "Failed", "SucceededManualCleanup"})
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_OFFSET = timezone(timedelta(hours=2))  # the tenant's clock, so dates carry a non-UTC offset


def _iso(ts: float) -> str:
    """``2024-02-21T10:21:31.1234567+02:00``: seven fractional digits, as .NET writes them."""
    moment = datetime.fromtimestamp(ts, UTC).astimezone(_OFFSET)
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
        + "0"
        + moment.strftime("%z")[:3]
        + ":"
        + moment.strftime("%z")[3:]
    )


@dataclass
class SimTask:
    id: int
    table: str
    context: str
    entities: list[int]
    field_value_infos: list[Any]
    created: float  # wall clock
    started: float  # monotonic
    duration: float
    failures: dict[int, str]  # entity id -> error, for entities of this task
    unreported: set[int]
    cancellation: str
    task_failure: str | None = None
    stopped_at: float | None = None  # monotonic
    binary_object_id: int = 0
    forced_state: str | None = None
    forced_progress: int | None = None
    forced_result: tuple[str | None, str | None] | None = None  # (Result, Response)

    def fraction(self, now: float) -> float:
        end = self.stopped_at if self.stopped_at is not None else now
        if self.duration <= 0:
            return 1.0
        return max(0.0, min(1.0, (end - self.started) / self.duration))

    def handled(self, now: float) -> list[int]:
        """Entities worked on so far (all of them once the task has run its course)."""
        share = self.fraction(now)
        if self.task_failure is not None and share >= 1.0:
            share = 0.5  # a failed task gave up half-way
        if share >= 1.0:
            return list(self.entities)
        # Entities are handled while Started, i.e. over the last 80% of the duration.
        return self.entities[: int(len(self.entities) * max(0.0, share - 0.2) / 0.8)]

    def state(self, now: float) -> str:
        if self.forced_state is not None:
            return self.forced_state
        if self.stopped_at is not None:
            return "Failed"
        share = self.fraction(now)
        if share >= 1.0:
            return "Failed" if self.task_failure is not None else "Succeeded"
        if share < 0.1:
            return "New"
        if share < 0.2:
            return "Aquired"
        return "Started"


@dataclass
class Truth:
    """What really happened to a task's entities, for tests to compare outcomes against: ``succeeded`` and
    ``failed`` are the entities its result reports, ``unreported`` were handled but left out of the result,
    ``not_handled`` were never reached (a stopped or failed task)."""

    task_id: int
    entities: list[int]
    succeeded: list[int]
    failed: dict[int, str]
    unreported: list[int]
    not_handled: list[int] = field(default_factory=list)


class SuperOfficeSimulator(Simulator):
    name = "superoffice"

    def __init__(
        self,
        *,
        job_seconds: float = 0.3,
        context_identifier: str = "Cust12345",
        associate_id: int = 5,
    ) -> None:
        super().__init__()
        self.context_identifier = context_identifier
        self.associate_id = associate_id
        self.ticket = "7T:" + secrets.token_urlsafe(24)
        self.app_token = secrets.token_hex(16)
        self.access_token = secrets.token_urlsafe(32)
        self.username = "tje0"  # the documentation's own sample user
        self.password = secrets.token_urlsafe(12)
        self.system_user_token = f"BatchBridgeSim-{secrets.token_hex(6)}"
        self._default_job_seconds = job_seconds
        self.reset()

    def reset(self) -> None:
        """Back to a fresh simulator (knobs, tasks, host, counters, request log), keeping the socket and the
        credentials: lets one running simulator serve many tests."""
        with self._lock:
            self.faults = Faults()
            self.requests.clear()
            # knobs
            self.job_seconds: float = self._default_job_seconds
            self.failures: dict[int, str] = {}
            self.unreported: set[int] = set()
            self.fail_next_tasks = 0
            self.task_failure = "The mass update was aborted by the server."
            self.cancellation_behaviour = "CanCancel"
            self.unauthorized_next = 0
            self.state_ttl_seconds: float = 3600.0
            self.max_ids = 5000
            self.ticket_ttl_seconds: float = 6 * 3600.0
            self.result_binary_field = "DetailsRecord"
            self.result_fields: tuple[str, str, str] = ("Id", "Succeeded", "Error")
            self.results_transform: Callable[[list[dict[str, Any]]], list[Any]] | None = None
            # tenant
            self.host_number = 1
            self.stale_state_next = 0  # the next N state answers still announce the previous host
            self.tenant_state = "Running"
            self.maintenance_until: float | None = None  # wall clock; None while running
            # state
            self.tasks: dict[int, SimTask] = {}
            self.results: dict[int, int] = {}  # binary object id -> task id
            self._next_task = 1000
            self._next_binary = 5000
            self.submissions = 0
            self.state_requests = 0
            self.issued_tickets: dict[str, float] = {}  # ticket -> monotonic expiry
            self.issued_jwts: list[str] = []
            self.tickets_issued = 0
            self.deleted: list[int] = []

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"sod{self.host_number}"

    @property
    def endpoint(self) -> str:
        """The tenant's current base URL, as the state service announces it."""
        return f"{self.base_url}/{self.host}/{self.context_identifier}"

    # -- system users --------------------------------------------------------------------------------
    @cached_property
    def _keys(self) -> tuple[Any, Any]:
        """The partner application's RSA key pair and SuperOffice's own (which signs the JWTs), made on
        first use: only system-user tests pay for them."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        return (
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    @property
    def private_key_pem(self) -> str:
        """The partner application's private key (PEM): a system-user connection's ``privateKey``."""
        from cryptography.hazmat.primitives import serialization

        return (
            self._keys[0]
            .private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            .decode()
        )

    def expire_tickets(self) -> None:
        """Every ticket the system-user service issued stops working."""
        with self._lock:
            self.issued_tickets.clear()

    def secret_values(self) -> list[str]:
        with self._lock:
            values = [self.ticket, self.app_token, self.access_token, self.password, self.system_user_token]
            values.append(base64.b64encode(f"{self.username}:{self.password}".encode()).decode())
            values += [*self.issued_tickets, *self.issued_jwts]
        if "_keys" in self.__dict__:
            values.append(self.private_key_pem)
        return values

    def _system_user(self, request: Request) -> Response:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def refused(why: str) -> Response:
            return Response(200, {"IsSuccessful": False, "Token": None, "ErrorMessage": why})

        try:
            body = request.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON", kind="ArgumentException")
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object", kind="ArgumentException")
        signed = body.get("SignedSystemToken")
        if body.get("ApplicationToken") != self.app_token:
            return refused("Unknown application")
        if body.get("ContextIdentifier") != self.context_identifier:
            return refused("Unknown customer")
        parts = signed.rsplit(".", 2) if isinstance(signed, str) else []
        if len(parts) != 3 or parts[0] != self.system_user_token:
            return refused("Unknown system user token")
        try:
            stamp = datetime.strptime(parts[1], "%Y%m%d%H%M").replace(tzinfo=UTC)
            signature = base64.b64decode(parts[2], validate=True)
        except ValueError:
            return refused("The signed system user token is malformed")
        if abs((datetime.now(UTC) - stamp).total_seconds()) > SIGNED_TOKEN_SLACK_SECONDS:
            return refused("The signed system user token is too old")
        try:
            self._keys[0].public_key().verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return refused("The signature does not verify")
        ticket = "7T:" + secrets.token_urlsafe(24)
        jwt = self._jwt(
            {TICKET_CLAIM: ticket, "http://schemes.superoffice.net/identity/ctx": self.context_identifier}
        )
        with self._lock:
            self.issued_tickets[ticket] = time.monotonic() + self.ticket_ttl_seconds
            self.issued_jwts.append(jwt)
            self.tickets_issued += 1
        return Response(200, {"IsSuccessful": True, "Token": jwt, "ErrorMessage": ""})

    def _jwt(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def part(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = part(json.dumps({"typ": "JWT", "alg": "RS256"}).encode())
        payload = part(json.dumps({**claims, "iat": now, "exp": now + 60}).encode())
        signature = self._keys[1].sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{part(signature)}"

    # -- helpers for tests ---------------------------------------------------------------------------
    def move_host(self) -> None:
        """Move the tenant to the next numbered host; the old one answers 421 from now on."""
        with self._lock:
            self.host_number += 1

    def start_maintenance(self, seconds: float | None = None, state: str = "InMaintenance") -> None:
        """Take the tenant out of service (``IsRunning`` false); tenant calls answer 503 meanwhile.
        With ``seconds`` the window ends by itself and ``ValidUntil`` announces its end."""
        with self._lock:
            self.tenant_state = state
            self.maintenance_until = time.time() + (seconds if seconds is not None else 365 * 86400.0)

    def end_maintenance(self) -> None:
        with self._lock:
            self.tenant_state = "Running"
            self.maintenance_until = None

    def force_state(
        self,
        task_id: int,
        state: str | None,
        *,
        progress: int | None = None,
        result: str | None = None,
        response: str | None = None,
    ) -> None:
        """Make a task report ``state`` (any word, documented or not), and optionally a ``ProgressPercent``
        and a ``Result`` / ``Response`` text."""
        with self._lock:
            task = self.tasks[task_id]
            task.forced_state = state
            task.forced_progress = progress
            task.forced_result = (result, response) if result is not None or response is not None else None

    def delete_result(self, task_id: int) -> None:
        """Remove a finished task's result binary object (as if it were cleaned up)."""
        with self._lock:
            task = self.tasks[task_id]
            self.results.pop(task.binary_object_id, None)

    def truth(self, task_id: int) -> Truth:
        with self._lock:
            task = self.tasks[task_id]
            handled = task.handled(time.monotonic())
            done = set(handled)
            reported = [e for e in handled if e not in task.unreported]
            return Truth(
                task_id=task.id,
                entities=list(task.entities),
                succeeded=[e for e in reported if e not in task.failures],
                failed={e: task.failures[e] for e in reported if e in task.failures},
                unreported=sorted(task.unreported & done),
                not_handled=[e for e in task.entities if e not in done],
            )

    def _running(self) -> bool:
        if self.maintenance_until is not None and time.time() >= self.maintenance_until:
            self.end_maintenance()
        return self.maintenance_until is None

    # -- vendor errors -------------------------------------------------------------------------------
    @staticmethod
    def error(
        status: int, message: str, *, kind: str = "SoException", friendly: str | None = None
    ) -> Response:
        return Response(
            status,
            {
                "Message": message,
                "FriendlyText": friendly if friendly is not None else message,
                "ExceptionType": kind,
                "Source": "SuperOffice.WebApi",
                "Parameters": {},
            },
        )

    def throttled_response(self, retry_after: int) -> Response:
        response = self.error(429, "Too many requests", kind="RateLimitExceededException")
        response.headers["Retry-After"] = str(retry_after)
        return response

    def server_error_response(self, status: int = 500) -> Response:
        return self.error(status, "An error has occurred.", kind="Exception")

    def unauthorized_response(self, request: Request) -> Response:
        return self.error(401, "Authentication failed", kind="SoAuthenticationException")

    # -- routing -------------------------------------------------------------------------------------
    def route(self, request: Request) -> Response:
        if request.path.rstrip("/") == SYSTEM_USER_PATH:
            if request.method != "POST":
                return self.error(405, "Method not allowed")
            return self._system_user(request)
        with self._lock:
            if request.path.startswith(STATE_PREFIX):
                if request.method != "GET":
                    return self.error(405, "Method not allowed")
                return self._state(request.path[len(STATE_PREFIX) :])
            parts = request.path.split("/", 3)  # "", host, context, rest
            if len(parts) < 4 or parts[2].lower() != self.context_identifier.lower():
                return self.error(404, "Not found")
            if not re.fullmatch(r"sod\d+", parts[1]):
                return self.error(404, "Not found")
            if parts[1] != self.host:
                return self.error(
                    421,
                    f"Tenant {self.context_identifier} is not served by this host",
                    kind="MisdirectedRequestException",
                )
            if not self._running():
                return self.error(
                    503,
                    f"Tenant {self.context_identifier} is {self.tenant_state}",
                    kind="TenantNotRunningException",
                )
            unauthorized = self._authenticate(request)
            if unauthorized is not None:
                return unauthorized
            rest = "/" + parts[3]
            if not rest.startswith(API):
                return self.error(404, "Not found")
            method = rest[len(API) :]
            if request.method != "POST":
                return self.error(405, "Method not allowed")
            try:
                body = request.json()
            except ValueError:
                return self.error(400, "The request body is not valid JSON", kind="ArgumentException")
            handlers = {
                EXECUTE: self._execute,
                TASK_INFO: self._task_info,
                BY_ASSOCIATES: self._by_associates,
                STOP: self._stop,
                DELETE: self._delete,
                RESULT: self._result,
            }
            handler = handlers.get(method)
            if handler is None:
                return self.error(404, f"No agent method {method}")
            if not isinstance(body, dict):
                return self.error(400, "The request body must be a JSON object", kind="ArgumentException")
            return handler(body)

    def _state(self, context: str) -> Response:
        self.state_requests += 1
        if context.lower() != self.context_identifier.lower():
            return self.error(404, f"Unknown tenant {context}", kind="TenantNotFoundException")
        running = self._running()
        endpoint = self.endpoint
        if self.stale_state_next > 0:
            self.stale_state_next -= 1
            endpoint = f"{self.base_url}/sod{max(1, self.host_number - 1)}/{self.context_identifier}"
        until = self.maintenance_until if not running else time.time() + self.state_ttl_seconds
        return Response(
            200,
            {
                "ContextIdentifier": self.context_identifier,
                "Endpoint": endpoint,
                "State": self.tenant_state,
                "IsRunning": running,
                "ValidUntil": _iso(until or time.time()),
                "Api": endpoint + "/api",
            },
        )

    def _authenticate(self, request: Request) -> Response | None:
        denied = self.error(401, "Authentication failed", kind="SoAuthenticationException")
        if self.unauthorized_next > 0:
            self.unauthorized_next -= 1
            return denied
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "soticket":
            issued = self.issued_tickets.get(value)
            known = secrets.compare_digest(value, self.ticket) or (
                issued is not None and issued > time.monotonic()
            )
            ok = known and secrets.compare_digest(request.headers.get("so-apptoken", ""), self.app_token)
        elif scheme.lower() == "bearer":
            ok = secrets.compare_digest(value, self.access_token)
        elif scheme.lower() == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            ok = secrets.compare_digest(value, expected)
        else:
            ok = False
        return None if ok else denied

    # -- BulkUpdate ----------------------------------------------------------------------------------
    def _execute(self, body: dict[str, Any]) -> Response:
        table, infos, ids, context = (body.get(k) for k in ("TableName", "FieldValueInfos", "Ids", "Context"))
        if not isinstance(table, str) or not _TABLE.match(table):
            return self.error(400, f"Unknown table {table!r}", kind="ArgumentException")
        if not isinstance(infos, list) or not infos:
            return self.error(400, "FieldValueInfos must name at least one field", kind="ArgumentException")
        for n, info in enumerate(infos):
            problem = _field_value_info_problem(info)
            if problem:
                return self.error(400, f"FieldValueInfos[{n}]: {problem}", kind="ArgumentException")
        if not isinstance(ids, str) or not ids.strip():
            return self.error(
                400, "Ids must be a comma separated list of entity ids", kind="ArgumentException"
            )
        try:
            entities = [int(part) for part in ids.split(",")]
        except ValueError:
            return self.error(
                400, f"Ids {ids[:60]!r} holds something that is not an id", kind="ArgumentException"
            )
        if any(e <= 0 for e in entities):
            return self.error(400, "Entity ids must be positive", kind="ArgumentException")
        if len(entities) > self.max_ids:
            return self.error(400, f"At most {self.max_ids} ids per mass update", kind="ArgumentException")
        if context is not None and not isinstance(context, str):
            return self.error(400, "Context must be a string", kind="ArgumentException")
        entities = list(dict.fromkeys(entities))
        task_failure = None
        if self.fail_next_tasks > 0:
            self.fail_next_tasks -= 1
            task_failure = self.task_failure
        task = SimTask(
            id=self._next_task,
            table=table,
            context=context or "",
            entities=entities,
            field_value_infos=infos,
            created=time.time(),
            started=time.monotonic(),
            duration=self.job_seconds,
            failures={e: r for e, r in self.failures.items() if e in set(entities)},
            unreported={e for e in self.unreported if e in set(entities)},
            cancellation=self.cancellation_behaviour,
            task_failure=task_failure,
        )
        self._next_task += 1
        self.tasks[task.id] = task
        self.submissions += 1
        return Response(200, task.id)

    def _result(self, body: dict[str, Any]) -> Response:
        table, binary = body.get("TableName"), body.get("BinaryObjectId")
        if isinstance(binary, bool) or not isinstance(binary, int):
            return self.error(400, "BinaryObjectId must be an integer", kind="ArgumentException")
        task_id = self.results.get(binary)
        if task_id is None:
            return self.error(404, f"BinaryObject {binary} not found", kind="EntityNotFoundException")
        task = self.tasks[task_id]
        if not isinstance(table, str) or table.lower() != task.table.lower():
            return self.error(
                400,
                f"BinaryObject {binary} does not hold a result for table {table!r}",
                kind="ArgumentException",
            )
        id_field, ok_field, error_field = self.result_fields
        items: list[Any] = [
            {id_field: e, ok_field: e not in task.failures, error_field: task.failures.get(e)}
            for e in task.handled(time.monotonic())
            if e not in task.unreported
        ]
        if self.results_transform is not None:
            items = self.results_transform(items)
        return Response(200, json.dumps(items))

    # -- Batch agent ---------------------------------------------------------------------------------
    def _task(self, body: dict[str, Any]) -> SimTask | Response:
        task_id = body.get("Id")
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            return self.error(400, "Id must be an integer", kind="ArgumentException")
        task = self.tasks.get(task_id)
        if task is None:
            return self.error(404, f"BatchTask {task_id} not found", kind="EntityNotFoundException")
        return task

    def _info(self, task: SimTask) -> dict[str, Any]:
        now = time.monotonic()
        state = task.state(now)
        ended = state in TERMINAL
        if ended and not task.binary_object_id:
            task.binary_object_id = self._next_binary
            self._next_binary += 1
            self.results[task.binary_object_id] = task.id
        handled = len(task.handled(now))
        if task.forced_progress is not None:
            percent = task.forced_progress
        else:
            percent = 100 if ended else int(100 * handled / max(1, len(task.entities)))
        result = None
        response = None
        if task.stopped_at is not None:
            result = "Stopped"
            response = f"Stopped after {handled} of {len(task.entities)} entities"
        elif ended and task.task_failure is not None:
            result = "Failed"
            response = task.task_failure
        elif ended:
            result = f"Updated {handled - len(task.failures)} of {len(task.entities)} entities"
        if task.forced_result is not None:
            result, response = task.forced_result
        began = task.created + min(task.duration * 0.2, now - task.started)
        return {
            "Id": task.id,
            "Name": f"BulkUpdate {task.table}",
            "AssociateId": self.associate_id,
            "DetailsTable": BINARY_OBJECT_TABLE if task.binary_object_id else 0,
            "DetailsRecord": task.binary_object_id if self.result_binary_field == "DetailsRecord" else 0,
            "IsSystemTask": False,
            "IsInternalTask": False,
            "ParameterObject": {"TableName": task.table, "Count": len(task.entities)},
            "LastStarted": _iso(began) if state not in ("New", "Aquired") else None,
            "Created": _iso(task.created),
            "StartCount": 0 if state in ("New", "Aquired") else 1,
            "DatabaseSerialNumber": "1446363",
            "Context": task.context,
            "Result": result,
            "State": state,
            "Description": f"Mass update of {len(task.entities)} {task.table} records",
            "Response": response,
            **(
                {self.result_binary_field: str(task.binary_object_id) if task.binary_object_id else None}
                if self.result_binary_field != "DetailsRecord"
                else {}
            ),
            "Request": json.dumps({"TableName": task.table, "Ids": len(task.entities)}),
            "ProgressDescription": f"Updated {handled} of {len(task.entities)}",
            "ProgressPercent": percent,
            "FileName": None,
            "CancellationBehaviour": task.cancellation,
            "TableRight": None,
            "FieldProperties": {},
        }

    def _task_info(self, body: dict[str, Any]) -> Response:
        task = self._task(body)
        if isinstance(task, Response):
            return task
        return Response(200, self._info(task))

    def _by_associates(self, body: dict[str, Any]) -> Response:
        wanted = body.get("AssociateIds")
        if not isinstance(wanted, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in wanted
        ):
            return self.error(400, "AssociateIds must be an array of integers", kind="ArgumentException")
        if self.associate_id not in wanted:
            return Response(200, [])
        return Response(200, [self._info(task) for task in self.tasks.values()])

    def _delete(self, body: dict[str, Any]) -> Response:
        task_id = body.get("BatchTaskId")
        if isinstance(task_id, bool) or not isinstance(task_id, int):
            return self.error(400, "BatchTaskId must be an integer", kind="ArgumentException")
        task = self.tasks.pop(task_id, None)
        if task is None:
            return self.error(404, f"BatchTask {task_id} not found", kind="EntityNotFoundException")
        self.results.pop(task.binary_object_id, None)
        self.deleted.append(task_id)
        return Response(204, b"")

    def _stop(self, body: dict[str, Any]) -> Response:
        task = self._task(body)
        if isinstance(task, Response):
            return task
        now = time.monotonic()
        if task.state(now) in TERMINAL or task.cancellation == "CannotCancel":
            return Response(200, False)
        task.stopped_at = now
        return Response(200, True)


def _field_value_info_problem(info: Any) -> str | None:
    """Why a FieldValueInfo is not the documented ``{Key, CurrentOperationType, Values}``, or None."""
    if not isinstance(info, dict):
        return "must be an object"
    if not isinstance(info.get("Key"), str) or not info["Key"].strip():
        return "Key must name the field"
    if not isinstance(info.get("CurrentOperationType"), str) or not info["CurrentOperationType"].strip():
        return "CurrentOperationType must name the operation"
    values = info.get("Values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return "Values must be an array of strings"
    return None
