"""An OS1 Participant Service simulator: client-credentials auth, participant batches and their status.

Answers like the vendor (``docs/providers/os1.md``) at the tenant's root:

* ``POST /core/api/v1/aaa/auth/client-credentials`` issues access tokens that expire after
  ``token_ttl_seconds``.
* ``POST /core/api/v2/participants/{type}/batch`` creates participants; the update method (``PUT`` by
  default, knob ``update_method``) on the same path updates them. Both answer 202
  ``{"data": {"id": "batch:<uuid>"}, "request": {...}}``.
* ``GET /core/api/v2/participants/{type}/batch/status?batchId=…`` answers ``{"data": {"meta": {status,
  success, failed, total}, "success": [{refID, id}], "errors": [{refID, reason}]}, "request": {...}}``;
  the batch moves ``queued -> processing -> completed`` over ``batch_seconds``, reporting records in
  payload order as it goes.
* Every error is ``{"error": {"code": <12 digits>, "description", "additionalInfo"}, "request"}``.

Headers are checked on every request: a missing ``X-COREOS-REQUEST-ID`` (or one already used) is 400;
``X-COREOS-TID`` is required on API calls (missing 400, another tenant 401) and optional on the auth
call; a missing, unknown or expired ``X-COREOS-ACCESS`` is 401. ``X-COREOS-ORIGIN-TOKEN`` is required on
writes, as documented: without the simulator's :attr:`origin_token` a write is 403.

What a refID is and what ``meta.status`` says are not documented, so both are knobs: ``ref_fields`` (per
operation, the record field results name it by, or ``"index"`` for its position in the payload; default
``uniqueCode`` for a create, ``id`` for an update) and ``status_words`` (the word for each of ``queued``,
``processing``, ``completed``, ``failed``; default those words). ``results_transform`` rewrites the
``(success, errors)`` lists of a status answer (reorder, repeat, drop, add strays). A create for a
uniqueCode the tenant already has, or repeated in the batch, fails that record; an update of an id the
tenant does not have fails that record (seed participants with :meth:`add_participant`). ``failures`` and
``dropped`` name records by uniqueCode (create) or id (update) whatever ``ref_fields`` says.

**Callback** (body UNCONFIRMED; our decision): when a batch that carried ``callback.url`` finishes, a
background thread POSTs ``{"batchId": <id>, "status": "completed" | "failed"}`` to it once, best effort,
with ``X-COREOS-REQUEST-ID``, ``X-COREOS-TID`` and, when the submit carried one,
``X-COREOS-CALLBACK-SECRET``. Deliveries are recorded in :attr:`callbacks`.

Knobs (attributes; change them between requests): ``batch_seconds``, ``queued_share``,
``token_ttl_seconds``, ``failures`` (refID -> reason), ``dropped`` (refIDs processed but never named in
``success``/``errors``), ``fail_next_batches`` with ``failed_batch_share`` (a failed batch reports only
the first share of its records), ``unauthorized_next`` (401 to the next N authenticated calls whatever
the token), ``max_items``, ``participant_types`` (None: any type exists), ``update_method``,
``origin_token``, ``audience``, ``status_overrides`` via :meth:`force_status`. Test helpers:
:meth:`truth`, :attr:`submissions`, :attr:`tokens_issued`, :meth:`secret_values`,
:attr:`denied`, :attr:`callbacks`, :meth:`wait_for_callbacks`, :meth:`expire_tokens`, :meth:`reset`; the
base class logs every request with its headers (:attr:`requests`).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from batchbridge_local.simulators.base import Faults, Request, Response, Simulator

AUTH_PATH = "/core/api/v1/aaa/auth/client-credentials"
_BATCH = re.compile(r"^/core/api/v2/participants/(?P<type>[^/]+)/batch(?P<status>/status)?/?$")
_SAFE_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_ID = re.compile(
    r"^[A-Za-z][A-Za-z0-9_-]{0,63}:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

# The simulator's 12-digit error codes (the vendor's own table is not published).
E_MISSING_REQUEST_ID = "400100000001"
E_DUPLICATE_REQUEST_ID = "400100000002"
E_MISSING_TENANT = "400100000003"
E_BAD_BODY = "400100000010"
E_BAD_PAYLOAD = "400100000011"
E_TOO_MANY = "400100000012"
E_MISSING_BATCH_ID = "400100000013"
E_MISSING_ACCESS = "401100000001"
E_BAD_ACCESS = "401100000002"
E_BAD_CLIENT = "401100000003"
E_UNKNOWN_TENANT = "401100000004"
E_BAD_AUDIENCE = "401100000005"
E_ORIGIN_REFUSED = "403100000001"
E_NO_ROUTE = "404100000001"
E_NO_TYPE = "404100000002"
E_NO_BATCH = "404100000003"
E_METHOD = "405100000001"
E_THROTTLED = "429100000001"
E_UNAVAILABLE = "503100000001"


@dataclass
class _Record:
    ref: str
    fate: str  # succeeded | failed | dropped
    id: str | None = None
    reason: str | None = None


@dataclass
class SimBatch:
    id: str
    participant_type: str
    operation: str
    records: list[_Record]
    started: float  # monotonic
    duration: float
    queued_share: float
    fails_at: int | None = None  # a failed batch stops after this many records
    callback_url: str | None = None
    callback_secret: str | None = None
    forced_status: str | None = None
    finished: bool = False

    def progress(self, now: float) -> tuple[str, int]:
        """(status, records processed so far)."""
        n = len(self.records)
        elapsed = now - self.started
        end = n if self.fails_at is None else self.fails_at
        final = "completed" if self.fails_at is None else "failed"
        if elapsed >= self.duration:
            return final, end
        queued_for = self.duration * self.queued_share
        if elapsed < queued_for:
            return "queued", 0
        share = (elapsed - queued_for) / max(self.duration - queued_for, 1e-9)
        return "processing", min(end, int(n * share))


@dataclass
class Truth:
    """What really happened to a batch's records, for tests to compare outcomes against."""

    batch_id: str
    refs: list[str]
    succeeded: dict[str, str]  # refID -> participant id
    failed: dict[str, str]  # refID -> reason
    dropped: list[str]  # processed but never mentioned
    unprocessed: list[str]  # beyond the point where a failed batch stopped
    status: str


@dataclass
class CallbackDelivery:
    url: str
    batch_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None


@dataclass
class _Token:
    expires_at: float  # monotonic


@dataclass
class _Participant:
    type: str
    unique_code: str
    id: str
    properties: dict[str, Any] = field(default_factory=dict)


class OS1Simulator(Simulator):
    name = "os1"

    def __init__(
        self,
        *,
        batch_seconds: float = 0.3,
        token_ttl_seconds: float = 3600,
        client_id: str = "sim-client",
        client_secret: str | None = None,
        tenant_id: str = "sim-tenant",
        origin_token: str | None = None,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.tenant_id = tenant_id
        self._origin_token = origin_token or secrets.token_urlsafe(24)
        self._defaults = {"batch_seconds": batch_seconds, "token_ttl_seconds": token_ttl_seconds}
        self._timers: list[threading.Timer] = []
        self.reset()

    def reset(self) -> None:
        """Back to a fresh simulator (knobs, batches, tokens, counters, request log), keeping the socket
        and the client credentials: lets one running simulator serve many tests."""
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers = []
            self.faults = Faults()
            self.requests.clear()
            # knobs
            self.batch_seconds: float = self._defaults["batch_seconds"]
            self.queued_share = 0.2
            self.token_ttl_seconds: float = self._defaults["token_ttl_seconds"]
            self.failures: dict[str, str] = {}
            self.dropped: set[str] = set()
            self.fail_next_batches = 0
            self.failed_batch_share = 0.5
            self.unauthorized_next = 0
            self.max_items = 1024
            self.participant_types: set[str] | None = None
            self.update_method = "PUT"
            self.origin_token: str = self._origin_token
            self.ref_fields: dict[str, str] = {"create": "uniqueCode", "update": "id"}
            self.status_words: dict[str, str] = {
                w: w for w in ("queued", "processing", "completed", "failed")
            }
            self.results_transform: (
                Callable[[list[dict[str, Any]], list[dict[str, Any]]], tuple[list[Any], list[Any]]] | None
            ) = None
            self.audience: str | None = None
            self.callback_timeout = 2.0
            # state
            self.batches: dict[str, SimBatch] = {}
            self.tokens: dict[str, _Token] = {}
            self.participants: dict[str, _Participant] = {}  # id -> participant
            self.request_ids: set[str] = set()
            self.callbacks: list[CallbackDelivery] = []
            self.submissions = 0
            self.tokens_issued = 0
            self.issued: list[str] = []
            self.denied = 0  # 401 answers
            self._callback_done = threading.Condition(self._lock)

    def stop(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
        super().stop()

    # -- helpers for tests ---------------------------------------------------------------------------
    def add_participant(self, participant_type: str, unique_code: str | None = None) -> str:
        """A participant the tenant already has (for update batches); returns its id."""
        code = unique_code or f"seed-{uuid.uuid4().hex[:8]}"
        pid = f"{_prefix(participant_type)}:{uuid.uuid4()}"
        with self._lock:
            self.participants[pid] = _Participant(participant_type, code, pid)
        return pid

    def truth(self, batch_id: str) -> Truth:
        with self._lock:
            batch = self.batches[batch_id]
            end = len(batch.records) if batch.fails_at is None else batch.fails_at
            done = batch.records[:end]
            return Truth(
                batch_id=batch.id,
                refs=[r.ref for r in batch.records],
                succeeded={r.ref: r.id or "" for r in done if r.fate == "succeeded"},
                failed={r.ref: r.reason or "" for r in done if r.fate == "failed"},
                dropped=[r.ref for r in done if r.fate == "dropped"],
                unprocessed=[r.ref for r in batch.records[end:]],
                status="completed" if batch.fails_at is None else "failed",
            )

    def secret_values(self) -> list[str]:
        with self._lock:
            received = [c.headers.get("X-COREOS-CALLBACK-SECRET", "") for c in self.callbacks]
            return [self.client_secret, self.origin_token, *self.issued, *(r for r in received if r)]

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as if they had all expired)."""
        with self._lock:
            self.tokens.clear()

    def force_status(self, batch_id: str, status: str | None) -> None:
        """Make a batch report ``status`` in ``meta.status`` (any word, documented or not)."""
        with self._lock:
            self.batches[batch_id].forced_status = status

    def wait_for_callbacks(self, count: int, timeout: float = 2.0) -> list[CallbackDelivery]:
        """Block until ``count`` callback deliveries were attempted (or the timeout); returns them."""
        with self._callback_done:
            self._callback_done.wait_for(lambda: len(self.callbacks) >= count, timeout=timeout)
            return list(self.callbacks)

    # -- vendor envelopes ----------------------------------------------------------------------------
    @staticmethod
    def _echo(request: Request | None) -> dict[str, Any]:
        if request is None:
            return {"uri": "", "method": "", "queryString": "", "body": {}}
        try:
            body = request.json()
        except ValueError:
            body = None
        return {
            "uri": request.path,
            "method": request.method,
            "queryString": urlsplit(request.raw_path).query,
            "body": body if body is not None else {},
        }

    def ok(self, status: int, data: Any, request: Request | None) -> Response:
        return Response(status, {"data": data, "request": self._echo(request)})

    def error(
        self,
        status: int,
        code: str,
        description: str,
        request: Request | None = None,
        info: dict[str, Any] | None = None,
    ) -> Response:
        if len(code) != 12 or not code.isdigit():
            raise ValueError(f"OS1 error codes have 12 digits, not {code!r}")
        if status == 401:
            with self._lock:
                self.denied += 1
        body = {
            "error": {"code": code, "description": description[:256], "additionalInfo": info or {}},
            "request": self._echo(request),
        }
        return Response(status, body)

    def throttled_response(self, retry_after: int) -> Response:
        response = self.error(429, E_THROTTLED, "Too many requests; slow down.")
        response.headers["Retry-After"] = str(retry_after)
        return response

    def server_error_response(self, status: int = 503) -> Response:
        return self.error(status, E_UNAVAILABLE, "The service is temporarily unavailable.")

    def unauthorized_response(self, request: Request) -> Response:
        if request.path.rstrip("/") == AUTH_PATH:
            return self.error(
                401, E_BAD_CLIENT, "The client id or secret is not valid for this tenant.", request
            )
        return self.error(401, E_BAD_ACCESS, "The access token is not valid or has expired.", request)

    # -- routing -------------------------------------------------------------------------------------
    def route(self, request: Request) -> Response:
        is_auth = request.path.rstrip("/") == AUTH_PATH
        match = None if is_auth else _BATCH.match(request.path)
        if not is_auth and match is None:
            return self.error(404, E_NO_ROUTE, "No such resource.", request)
        refused = self._check_common_headers(request, tenant_required=not is_auth)
        if refused is not None:
            return refused
        if is_auth:
            if request.method != "POST":
                return self.error(405, E_METHOD, "Method not allowed.", request)
            return self._issue_token(request)
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        assert match is not None
        participant_type = match["type"]
        if not _SAFE_TYPE.fullmatch(participant_type) or (
            self.participant_types is not None and participant_type not in self.participant_types
        ):
            return self.error(
                404, E_NO_TYPE, f"Participant type '{participant_type[:64]}' not found.", request
            )
        if match["status"]:
            if request.method != "GET":
                return self.error(405, E_METHOD, "Method not allowed.", request)
            return self._status(request, participant_type)
        if request.method == "POST":
            operation = "create"
        elif request.method == self.update_method:
            operation = "update"
        else:
            return self.error(405, E_METHOD, "Method not allowed.", request)
        if request.headers.get("x-coreos-origin-token") != self.origin_token:
            return self.error(403, E_ORIGIN_REFUSED, "The origin token is missing or not valid.", request)
        return self._submit(request, participant_type, operation)

    def _check_common_headers(self, request: Request, *, tenant_required: bool) -> Response | None:
        request_id = request.headers.get("x-coreos-request-id", "").strip()
        if not request_id:
            return self.error(
                400, E_MISSING_REQUEST_ID, "The X-COREOS-REQUEST-ID header is required.", request
            )
        with self._lock:
            if request_id in self.request_ids:
                return self.error(
                    400, E_DUPLICATE_REQUEST_ID, "The X-COREOS-REQUEST-ID was already used.", request
                )
            self.request_ids.add(request_id)
        tenant = request.headers.get("x-coreos-tid")
        if tenant is None or not tenant.strip():
            if tenant_required:
                return self.error(400, E_MISSING_TENANT, "The X-COREOS-TID header is required.", request)
            return None
        if tenant.strip() != self.tenant_id:
            return self.error(401, E_UNKNOWN_TENANT, "Unknown tenant; check the tenant id.", request)
        return None

    def _issue_token(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return self.error(400, E_BAD_BODY, "The request body is not valid JSON.", request)
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("clientId", "clientSecret")
        ):
            return self.error(400, E_BAD_BODY, "clientId and clientSecret are required.", request)
        if body["clientId"] != self.client_id or body["clientSecret"] != self.client_secret:
            return self.error(
                401, E_BAD_CLIENT, "The client id or secret is not valid for this tenant.", request
            )
        if self.audience is not None and body.get("audience") != self.audience:
            return self.error(401, E_BAD_AUDIENCE, "The audience is not valid for this client.", request)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = _Token(time.monotonic() + self.token_ttl_seconds)
            self.tokens_issued += 1
            self.issued.append(token)
        data = {"accessToken": token, "tokenType": "Bearer", "expiresIn": self.token_ttl_seconds}
        # Never echo the secret back in the request echo.
        echo = self._echo(request)
        echo["body"] = {k: v for k, v in body.items() if k != "clientSecret"}
        return Response(200, {"data": data, "request": echo})

    def _authenticate(self, request: Request) -> Response | None:
        token = request.headers.get("x-coreos-access", "").strip()
        if not token:
            return self.error(401, E_MISSING_ACCESS, "The X-COREOS-ACCESS header is required.", request)
        with self._lock:
            if self.unauthorized_next > 0:
                self.unauthorized_next -= 1
                known = None
            else:
                known = self.tokens.get(token)
            if known is None or known.expires_at <= time.monotonic():
                return self.error(401, E_BAD_ACCESS, "The access token is not valid or has expired.", request)
        return None

    # -- batches -------------------------------------------------------------------------------------
    def _submit(self, request: Request, participant_type: str, operation: str) -> Response:
        try:
            body = request.json()
        except ValueError:
            return self.error(400, E_BAD_BODY, "The request body is not valid JSON.", request)
        if not isinstance(body, dict) or not isinstance(body.get("payload"), list) or not body["payload"]:
            return self.error(400, E_BAD_PAYLOAD, "payload must be a non-empty array.", request)
        payload: list[Any] = body["payload"]
        if len(payload) > self.max_items:
            return self.error(
                400,
                E_TOO_MANY,
                f"A batch holds at most {self.max_items} items.",
                request,
                {"items": len(payload)},
            )
        callback = body.get("callback")
        callback_url = None
        if callback is not None:
            if not isinstance(callback, dict) or not isinstance(callback.get("url"), str):
                return self.error(400, E_BAD_PAYLOAD, "callback.url must be a string.", request)
            callback_url = callback["url"]
        unknown = set(body) - {"payload", "callback"}
        if unknown:
            return self.error(400, E_BAD_PAYLOAD, f"Unknown fields: {', '.join(sorted(unknown))}.", request)
        problems = {}
        for i, item in enumerate(payload):
            problem = _record_problem(item, operation)
            if problem:
                problems[f"payload[{i}]"] = problem
        if problems:
            return self.error(400, E_BAD_PAYLOAD, "Some records are not valid.", request, problems)

        with self._lock:
            records = self._decide(payload, participant_type, operation)
            batch_id = f"batch:{uuid.uuid4()}"
            fails_at = None
            if self.fail_next_batches > 0:
                self.fail_next_batches -= 1
                fails_at = int(len(records) * self.failed_batch_share)
            batch = SimBatch(
                id=batch_id,
                participant_type=participant_type,
                operation=operation,
                records=records,
                started=time.monotonic(),
                duration=self.batch_seconds,
                queued_share=self.queued_share,
                fails_at=fails_at,
                callback_url=callback_url,
                callback_secret=request.headers.get("x-coreos-callback-secret"),
            )
            self.batches[batch_id] = batch
            self.submissions += 1
            timer = threading.Timer(batch.duration, self._finish, args=(batch_id,))
            timer.daemon = True
            self._timers.append(timer)
        timer.start()
        return self.ok(202, {"id": batch_id}, request)

    def _decide(self, payload: list[dict[str, Any]], participant_type: str, operation: str) -> list[_Record]:
        """Each record's fate, fixed at submit (under the lock); participants change at once."""
        records: list[_Record] = []
        codes = {p.unique_code for p in self.participants.values() if p.type == participant_type}
        field_name = self.ref_fields[operation]
        for position, item in enumerate(payload):
            natural = item["uniqueCode"] if operation == "create" else item["id"]
            ref = str(position) if field_name == "index" else str(item.get(field_name))
            if natural in self.failures:
                records.append(_Record(ref, "failed", reason=self.failures[natural]))
                continue
            if operation == "create":
                if natural in codes:
                    records.append(_Record(ref, "failed", reason=f"uniqueCode '{natural}' already exists"))
                    continue
                pid = f"{_prefix(participant_type)}:{uuid.uuid4()}"
                self.participants[pid] = _Participant(
                    participant_type, natural, pid, dict(item.get("properties", {}))
                )
                codes.add(natural)
            else:
                existing = self.participants.get(natural)
                if existing is None or existing.type != participant_type:
                    records.append(_Record(ref, "failed", reason=f"participant '{natural}' not found"))
                    continue
                existing.properties.update(item.get("properties", {}))
                pid = natural
            fate = "dropped" if natural in self.dropped else "succeeded"
            records.append(_Record(ref, fate, id=pid))
        return records

    def _status(self, request: Request, participant_type: str) -> Response:
        batch_id = request.query.get("batchId", "").strip()
        if not batch_id:
            return self.error(400, E_MISSING_BATCH_ID, "The batchId query parameter is required.", request)
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.participant_type != participant_type:
                return self.error(404, E_NO_BATCH, "Batch not found.", request)
            status, done = batch.progress(time.monotonic())
            status = self.status_words.get(status, status)
            if batch.forced_status is not None:
                status = batch.forced_status
            processed = batch.records[:done]
            transform = self.results_transform
        success: list[Any] = [{"refID": r.ref, "id": r.id} for r in processed if r.fate == "succeeded"]
        errors: list[Any] = [{"refID": r.ref, "reason": r.reason} for r in processed if r.fate == "failed"]
        if transform is not None:
            success, errors = transform(success, errors)
        meta = {"status": status, "success": len(success), "failed": len(errors), "total": len(batch.records)}
        return self.ok(200, {"meta": meta, "success": success, "errors": errors}, request)

    # -- callbacks -----------------------------------------------------------------------------------
    def _finish(self, batch_id: str) -> None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.finished:
                return
            batch.finished = True
            if not batch.callback_url or self.faults.lose_callbacks:
                return
            status = "completed" if batch.fails_at is None else "failed"
            headers = {
                "Content-Type": "application/json",
                "X-COREOS-REQUEST-ID": str(uuid.uuid4()),
                "X-COREOS-TID": self.tenant_id,
            }
            if batch.callback_secret:
                headers["X-COREOS-CALLBACK-SECRET"] = batch.callback_secret
            delivery = CallbackDelivery(
                batch.callback_url, batch_id, {"batchId": batch_id, "status": status}, headers
            )
            timeout = self.callback_timeout
        try:
            with httpx.Client(timeout=timeout) as client:
                answer = client.post(
                    delivery.url, content=json.dumps(delivery.body).encode(), headers=headers
                )
            delivery.status = answer.status_code
        except httpx.HTTPError as exc:  # best effort: recorded, never retried
            delivery.error = f"{type(exc).__name__}: {exc}"
        with self._callback_done:
            self.callbacks.append(delivery)
            self._callback_done.notify_all()


def _prefix(participant_type: str) -> str:
    """The id prefix for a participant type: its plural name without a final 's' ('drivers' -> 'driver')."""
    base = (
        participant_type[:-1]
        if participant_type.endswith("s") and len(participant_type) > 1
        else participant_type
    )
    return base if base[:1].isalpha() else f"p{base}"


def _record_problem(item: Any, operation: str) -> str | None:
    if not isinstance(item, dict):
        return "must be an object"
    properties = item.get("properties", {})
    if not isinstance(properties, dict):
        return "properties must be an object"
    if operation == "update":
        extra = set(item) - {"id", "properties"}
        if extra:
            return f"an update carries only id and properties, not {', '.join(sorted(extra))}"
        if not isinstance(item.get("id"), str) or not _ID.fullmatch(item["id"]):
            return "id must look like '<prefix>:<uuid>'"
        return None
    extra = set(item) - {"uniqueCode", "name", "owner", "properties"}
    if extra:
        return f"unknown fields {', '.join(sorted(extra))}"
    for key in ("uniqueCode", "name"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            return f"{key} is required"
    if "owner" in item and not isinstance(item["owner"], str):
        return "owner must be a string"
    return None
