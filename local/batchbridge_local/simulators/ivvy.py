"""An iVvy simulator: signed ``POST /api/1.0/{namespace}?action=…`` calls, the batch namespace and ping.

Answers like the vendor (``docs/providers/ivvy.md``): every request must be signed as iVvy signs
(:mod:`batchbridge.providers.ivvy_signing`), and errors are ``{errorCode, message, specificCode,
additionalMessages}`` with the HTTP status equal to ``errorCode``.

Endpoints: ``test?action=ping`` -> ``{"ack": "<yyyy-mm-dd HH:mm:ss>"}``; ``batch?action=run`` ->
``{"asyncId"}``; ``progress`` -> ``{"progress": 0..100}`` rising with time over ``job_seconds``;
``results`` -> ``{"asyncId", "results": [{namespace, action, request, response}]}``; ``restart`` ->
``{"restarted": true}`` (progress starts again from 0; the jobs' responses stay as first computed);
``repost`` -> ``{"reposted": true}`` (sends the callback again now if the batch has completed).
When a batch completes and it had a ``callbackUrl``, ``{asyncId, results}`` is POSTed there from a
background thread, best effort (outcomes land in :attr:`IvvySimulator.callbacks`).

Simulator decisions where iVvy publishes no code (all 401 unless noted):

======  ==========================================================================================
23001   ``X-Api-Authorization`` missing or not ``IWS <key>:<signature>``
23002   ``Content-MD5`` missing or not the MD5 of the body
23004   unknown key or wrong signature (one code, so a caller cannot probe for valid keys)
23005   ``IVVY-Date`` (or ``Date``) more than five minutes off the simulator's clock (iVvy's own code)
23006   no ``IVVY-Date`` or ``Date`` header, or one that cannot be read
23016   400: the body is not a JSON object, or ``callbackUrl`` is not an http(s) URL (iVvy's code)
23017   400: ``async`` missing (iVvy's code)
24093   400: ``jobs`` missing or empty (read as "empty job parameter")
24092   400: ``jobs`` not a list, or a job that is not ``{namespace, action, params?}``
24448   400: more than ``max_jobs`` (200) jobs
24091   400: batch not saved (only with the ``not_saved_next`` knob)
24105   400: progress of an unknown batch; 24115: results of an unknown batch
24114   400: results of a batch that has not completed
======  ==========================================================================================

Per-job responses, for ``venue?action=addOrUpdateBookingSession`` (see the seed): required
``spaceVenueId``, ``bookingId``, ``contactId``, ``name``, ``startDate`` (``yyyy-mm-dd``); integer
fields take integers or integer strings, times ``HH:mm:ss``, ``cost`` a number, flags a boolean or 0/1,
``excludedTaxIds`` a list of integers; ``bookingPackageId``, ``tariffId`` and ``roomHireType`` are
required when ``includeInPackage`` is true, and with ``strict_new_sessions`` a new session (no ``id``)
also needs ``minAttendeesGuaranteed`` and ``costcenterId``. Invalid data gives a 400 body with
specificCode 24337 and one additional message per field; a ``bookingId`` in ``unknown_booking_ids``
gives 404 / 24360, an ``id`` in ``unknown_session_ids`` 404 / 24361; success is
``{"success": true, "id": <new int>, "warnings": null}``. Every other action answers
``{"success": true}``. A job picked by ``fail_jobs`` answers 500 / 24335 "An error has occurred".

Knobs (attributes; change them between requests): ``job_seconds``, ``fail_jobs`` (a predicate
``(index, job) -> bool`` or a rate between 0 and 1, seeded so runs repeat), ``never_finish`` (progress
stops at 99), ``results_expired`` (every batch is gone: 24105 / 24115), ``drop_results`` (leave the
last N results out), ``results_transform`` (rewrite the results list, e.g. to reorder it),
``progress_answer`` / ``run_answer`` (answer this body to ``progress``, or to an accepted ``run``),
``clock_offset_seconds`` (the simulator's clock runs this far ahead), ``unknown_booking_ids``,
``unknown_session_ids``, ``strict_new_sessions``, ``max_jobs``, ``not_saved_next``, ``errors_with_status``
(answer every error body with this HTTP status instead, e.g. 200: iVvy's error body is what counts).

Test helpers: :attr:`submissions` (``run`` calls accepted), :meth:`secret_values`, :meth:`accepted_jobs`
(how many accepted runs held a job with these params), :meth:`truth` (per-job expected codes and
succeeded/failed counts), :meth:`expire`, :attr:`callbacks`, :meth:`reset`; :func:`booking_session_jobs`
builds valid and invalid booking-session jobs deterministically, :func:`expected_code` says what each gets.
"""

from __future__ import annotations

import hmac
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from batchbridge.providers.ivvy_signing import API_VERSION, content_md5, ivvy_date, sign_request
from batchbridge_local.simulators.base import Faults, Request, Response, Simulator

PREFIX = f"/api/{API_VERSION}/"
STALE_AFTER_SECONDS = 300
UNKNOWN_BOOKING_ID = 40404  # in the default unknown set; booking_session_jobs uses it
FIRST_SESSION_ID = 8821

REQUIRED = "*Value is required and can't be empty*"
NOT_INTEGER = "*Value is not a valid integer*"
NOT_NUMBER = "*Value is not a valid number*"
NOT_BOOLEAN = "*Value is not a valid boolean*"
NOT_STRING = "*Value must be text*"
NOT_DATE = "*Value is not a valid date (yyyy-mm-dd)*"
NOT_TIME = "*Value is not a valid time (HH:mm:ss)*"
NOT_ID_LIST = "*Value must be a list of integers*"

SESSION_INTEGERS = (
    "id", "venueId", "spaceVenueId", "bookingId", "contactId", "minAttendeesGuaranteed", "agreedAttendees",
    "expectedAttendees", "guaranteedAttendees", "setAttendees", "actualAttendees", "spaceId", "spaceLayout",
    "layoutType", "setupTime", "setdownTime", "bookingPackageId", "tariffId", "roomHireType", "costcenterId",
    "sessionTypeId",
)  # fmt: skip
SESSION_REQUIRED = ("spaceVenueId", "bookingId", "contactId", "name", "startDate")
SESSION_STRINGS = ("name", "customLayoutName", "signage")
SESSION_TIMES = ("startTime", "endTime")
SESSION_BOOLEANS = ("includeInPackage", "overridePax", "isSignageVisible")
IN_PACKAGE_REQUIRED = ("bookingPackageId", "tariffId", "roomHireType")
NEW_SESSION_REQUIRED = ("minAttendeesGuaranteed", "costcenterId")

_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT_TEXT = re.compile(r"^-?\d+$")
_AUTH = re.compile(r"^IWS (?P<key>[^:\s]+):(?P<signature>[0-9a-fA-F]{40})$")


def error_body(
    status: int, message: str, specific_code: int | None = None, additional: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"errorCode": status, "message": message}
    if specific_code is not None:
        body["specificCode"] = specific_code
    body["additionalMessages"] = additional or []
    return body


def _error(
    status: int, message: str, specific_code: int | None = None, additional: list[str] | None = None
) -> Response:
    return Response(status, error_body(status, message, specific_code, additional))


# --- booking-session jobs for demos and tests ----------------------------------------------------------
INVALID_KINDS = ("missing_name", "bad_date", "bad_booking_id", "unknown_booking")


def booking_session_jobs(n: int, *, invalid_every: int = 0, start: int = 0) -> list[dict[str, Any]]:
    """``n`` addOrUpdateBookingSession jobs, ``clientRef`` ``session-<i>``; with ``invalid_every=k``
    every k-th job (i = k-1, 2k-1, …) is wrong in one of four ways, in turn: empty ``name`` (24337),
    impossible ``startDate`` (24337), a non-integer ``bookingId`` (24337), or an unknown booking
    (24360). The same arguments always give the same jobs; :func:`expected_code` says what each gets.

    >>> [expected_code(job) for job in booking_session_jobs(4, invalid_every=2)]
    [None, 'IVVY_24337', None, 'IVVY_24337']
    """
    jobs = []
    invalid_seen = 0
    for i in range(start, start + n):
        day = 1 + i % 28
        params: dict[str, Any] = {
            "spaceVenueId": 1,
            "bookingId": 15722 + i % 50,
            "contactId": 10 + i % 7,
            "name": f"Session {i}",
            "startDate": f"2026-03-{day:02d}",
            "startTime": f"{9 + i % 8:02d}:00:00",
            "endTime": f"{10 + i % 8:02d}:00:00",
            "minAttendeesGuaranteed": 10 + i % 40,
            "setupTime": "30",
            "costcenterId": "4",
        }
        if invalid_every and (i + 1) % invalid_every == 0:
            kind = INVALID_KINDS[invalid_seen % len(INVALID_KINDS)]
            invalid_seen += 1
            if kind == "missing_name":
                params["name"] = ""
            elif kind == "bad_date":
                params["startDate"] = f"2026-02-{30 + i % 2}"
            elif kind == "bad_booking_id":
                params["bookingId"] = f"booking-{i}"
            else:
                params["bookingId"] = UNKNOWN_BOOKING_ID
        jobs.append(
            {
                "clientRef": f"session-{i}",
                "namespace": "venue",
                "action": "addOrUpdateBookingSession",
                "params": params,
            }
        )
    return jobs


def expected_code(
    job: dict[str, Any], unknown_booking_ids: frozenset[int] = frozenset({UNKNOWN_BOOKING_ID})
) -> str | None:
    """What a default simulator answers for this job: None for success, else ``IVVY_<specificCode>``."""
    if (job.get("namespace"), job.get("action")) != ("venue", "addOrUpdateBookingSession"):
        return None
    response = _booking_session(job.get("params") or {}, unknown_booking_ids, frozenset(), False, lambda: 0)
    return f"IVVY_{response['specificCode']}" if "specificCode" in response else None


# --- validation of addOrUpdateBookingSession ------------------------------------------------------------
def _int_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and bool(_INT_TEXT.match(value.strip()))


def _number_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _session_problems(params: dict[str, Any], strict_new: bool) -> list[str]:
    problems: dict[str, str] = {}
    required = list(SESSION_REQUIRED)
    if _truthy(params.get("includeInPackage")):
        required += IN_PACKAGE_REQUIRED
    if strict_new and _empty(params.get("id")):
        required += NEW_SESSION_REQUIRED
    for name in required:
        if _empty(params.get(name)):
            problems[name] = REQUIRED
    for name in SESSION_INTEGERS:
        if name not in problems and not _empty(params.get(name)) and not _int_like(params[name]):
            problems[name] = NOT_INTEGER
    for name in SESSION_STRINGS:
        if (
            name not in problems
            and name in params
            and params[name] is not None
            and not isinstance(params[name], str)
        ):
            problems[name] = NOT_STRING
    start = params.get("startDate")
    if "startDate" not in problems and not _empty(start) and not _is_date(start):
        problems["startDate"] = NOT_DATE
    for name in SESSION_TIMES:
        value = params.get(name)
        if not _empty(value) and not (isinstance(value, str) and _TIME.match(value)):
            problems[name] = NOT_TIME
    for name in SESSION_BOOLEANS:
        value = params.get(name)
        if value is not None and value not in (True, False, 0, 1, "0", "1", "true", "false"):
            problems[name] = NOT_BOOLEAN
    if not _empty(params.get("cost")) and not _number_like(params["cost"]):
        problems["cost"] = NOT_NUMBER
    taxes = params.get("excludedTaxIds")
    if taxes is not None and not (isinstance(taxes, list) and all(_int_like(t) for t in taxes)):
        problems["excludedTaxIds"] = NOT_ID_LIST
    return [f"{name}: {reason}" for name, reason in problems.items()]


def _booking_session(
    params: dict[str, Any],
    unknown_bookings: frozenset[int],
    unknown_sessions: frozenset[int],
    strict_new: bool,
    new_id: Callable[[], int],
) -> dict[str, Any]:
    problems = _session_problems(params, strict_new)
    if problems:
        return error_body(400, "The request contains invalid data", 24337, problems)
    booking: Any = params["bookingId"]
    if int(booking) in unknown_bookings:
        return error_body(404, "The booking does not exist", 24360)
    session: Any = params.get("id")
    if not _empty(session):
        if int(session) in unknown_sessions:
            return error_body(404, "The session does not exist", 24361)
        return {"success": True, "id": int(session), "warnings": None}
    return {"success": True, "id": new_id(), "warnings": None}


# --- simulator state ---------------------------------------------------------------------------------
@dataclass
class SimBatch:
    async_id: str
    jobs: list[dict[str, Any]]  # as received: {namespace, action, params}
    responses: list[dict[str, Any]]
    started: float  # monotonic
    callback_url: str | None
    callback_sent: bool = False
    expired: bool = False


@dataclass
class BatchTruth:
    """What the simulator decided for each job of a batch, for tests to compare outcomes against."""

    async_id: str
    codes: list[str | None]  # per job: None succeeded, else IVVY_<specificCode>
    ids: list[int | None]  # per job: the id a success returned

    @property
    def succeeded(self) -> int:
        return sum(1 for c in self.codes if c is None)

    @property
    def failed(self) -> int:
        return len(self.codes) - self.succeeded


@dataclass
class CallbackAttempt:
    async_id: str
    url: str
    status: int | None = None  # None when the POST itself failed
    error: str | None = None
    at: float = field(default_factory=time.time)


class IvvySimulator(Simulator):
    name = "ivvy"

    def __init__(
        self,
        *,
        api_key: str = "sim-ivvy-key",
        api_secret: str | None = None,
        job_seconds: float = 0.3,
        fail_jobs: Callable[[int, dict[str, Any]], bool] | float | None = None,
        seed: int = 7,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.api_secret = api_secret or uuid.uuid4().hex
        self.seed = seed
        self._defaults: dict[str, Any] = {"job_seconds": job_seconds, "fail_jobs": fail_jobs}
        self._ticker_stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._callback_client: httpx.Client | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a fresh simulator (knobs, batches, counters, request log), keeping the socket and the
        credentials: lets one running simulator serve many tests."""
        with self._lock:
            self.faults = Faults()
            self.requests.clear()
            # knobs
            self.job_seconds: float = self._defaults["job_seconds"]
            self.fail_jobs: Callable[[int, dict[str, Any]], bool] | float | None = self._defaults["fail_jobs"]
            self.never_finish = False
            self.results_expired = False
            self.drop_results = 0
            self.results_transform: Callable[[list[dict[str, Any]]], list[Any]] | None = None
            self.progress_answer: Any = None
            self.run_answer: Any = None
            self.clock_offset_seconds = 0.0
            self.unknown_booking_ids: set[int] = {UNKNOWN_BOOKING_ID}
            self.unknown_session_ids: set[int] = set()
            self.strict_new_sessions = False
            self.max_jobs = 200
            self.not_saved_next = 0
            self.errors_with_status: int | None = None
            self.callback_timeout_seconds = 5.0
            # state
            self.batches: dict[str, SimBatch] = {}
            self.callbacks: list[CallbackAttempt] = []
            self.submissions = 0
            self._ids = itertools.count(FIRST_SESSION_ID)

    # -- lifecycle: a ticker sends callbacks when batches complete -----------------------------------
    def start(self) -> IvvySimulator:
        super().start()
        self._ticker_stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="ivvy-sim-callbacks", daemon=True)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        super().stop()
        with self._lock:
            client, self._callback_client = self._callback_client, None
        if client is not None:
            client.close()

    def __enter__(self) -> IvvySimulator:
        return self.start()

    def _tick(self) -> None:
        while not self._ticker_stop.wait(0.02):
            with self._lock:
                due = [
                    b for b in self.batches.values()
                    if b.callback_url and not b.callback_sent and not b.expired and self._complete(b)
                ]  # fmt: skip
                for batch in due:
                    batch.callback_sent = True
            for batch in due:
                self._send_callback(batch)

    def _send_callback(self, batch: SimBatch) -> None:
        """POST ``{asyncId, results}`` in its own thread; whatever happens is recorded, never raised."""
        url = batch.callback_url
        if not url or self.faults.lose_callbacks:
            return
        body = {"asyncId": batch.async_id, "results": self._results(batch)}
        with self._lock:
            if self._callback_client is None:
                self._callback_client = httpx.Client(follow_redirects=False)
            client = self._callback_client

        def post() -> None:
            attempt = CallbackAttempt(batch.async_id, url)
            try:
                response = client.post(url, json=body, timeout=self.callback_timeout_seconds)
                attempt.status = response.status_code
            except Exception as exc:  # best effort: a failing callback must never break the simulator
                attempt.error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.callbacks.append(attempt)

        threading.Thread(target=post, name="ivvy-sim-callback", daemon=True).start()

    # -- helpers for tests ---------------------------------------------------------------------------
    def truth(self, async_id: str) -> BatchTruth:
        with self._lock:
            batch = self.batches[async_id]
            codes: list[str | None] = []
            ids: list[int | None] = []
            for response in batch.responses:
                failed = "specificCode" in response or "errorCode" in response
                codes.append(f"IVVY_{response.get('specificCode')}" if failed else None)
                ids.append(None if failed else response.get("id"))
            return BatchTruth(async_id, codes, ids)

    def secret_values(self) -> list[str]:
        return [self.api_key, self.api_secret]

    def accepted_jobs(self, params: dict[str, Any]) -> int:
        """How many accepted ``run`` batches held a job with exactly these params."""
        with self._lock:
            return sum(1 for b in self.batches.values() for j in b.jobs if j["params"] == params)

    def expire(self, async_id: str) -> None:
        """This batch is gone, as after iVvy's two days."""
        with self._lock:
            self.batches[async_id].expired = True

    def callbacks_for(self, async_id: str) -> list[CallbackAttempt]:
        with self._lock:
            return [c for c in self.callbacks if c.async_id == async_id]

    # -- vendor envelopes ------------------------------------------------------------------------------
    def throttled_response(self, retry_after: int) -> Response:
        response = _error(429, "Too many requests")
        response.headers["Retry-After"] = str(retry_after)
        return response

    def server_error_response(self, status: int = 500) -> Response:
        """iVvy's error body for a failure on its side: 5xx, or its own 460 unknown / 461 failed request."""
        words = {460: "Unknown", 461: "Failed Request", 501: "Not Implemented"}.get(
            status, "An error has occurred"
        )
        return _error(status, words)

    def unauthorized_response(self, request: Request) -> Response:
        return _error(401, "Request signature is invalid", 23004)

    # -- signing -------------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.clock_offset_seconds, UTC)

    def _verify(self, request: Request) -> Response | None:
        """None when the request is properly signed and fresh, else iVvy's 401."""
        auth = _AUTH.match(request.headers.get("x-api-authorization", "").strip())
        if auth is None:
            return _error(401, "Authorization header is missing or malformed", 23001)
        md5 = request.headers.get("content-md5", "").strip().lower()
        if md5 != content_md5(request.body):
            return _error(401, "Content-MD5 does not match the request body", 23002)
        ivvy_headers = {k: v for k, v in request.headers.items() if k.startswith("ivvy")}
        date_header = ""
        if "ivvy-date" in request.headers:
            sent = _parse_ivvy_date(request.headers["ivvy-date"])
        elif "date" in request.headers:
            date_header = request.headers["date"]
            sent = _parse_http_date(date_header)
        else:
            return _error(401, "Request date is missing", 23006)
        if sent is None:
            return _error(401, "Request date cannot be read", 23006)
        expected = sign_request(
            secret=self.api_secret,
            body=request.body,
            content_type=request.headers.get("content-type", ""),
            request_uri=request.raw_path,
            ivvy_headers=ivvy_headers,
            date=date_header,
        )
        key_ok = hmac.compare_digest(auth["key"], self.api_key)
        signature_ok = hmac.compare_digest(auth["signature"].lower(), expected)
        if not (key_ok and signature_ok):
            return _error(401, "Request signature is invalid", 23004)
        if abs((self._now() - sent).total_seconds()) > STALE_AFTER_SECONDS:
            return _error(401, "Request is stale", 23005)
        return None

    # -- routing -------------------------------------------------------------------------------------
    def route(self, request: Request) -> Response:
        response = self._route(request)
        body = response.body
        if self.errors_with_status is not None and isinstance(body, dict) and "errorCode" in body:
            response.status = self.errors_with_status
        return response

    def _route(self, request: Request) -> Response:
        if not request.path.startswith(PREFIX):
            return _error(404, "Resource not found")
        if request.method != "POST":
            return _error(405, "Method not allowed")
        refused = self._verify(request)
        if refused is not None:
            return refused
        namespace = request.path[len(PREFIX) :].strip("/")
        action = request.query.get("action", "")
        try:
            body = request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if body is None and not request.body:
            body = {}
        if not isinstance(body, dict):
            return _error(400, "Parameter does not validate", 23016, ["The body must be a JSON object"])
        if namespace == "test" and action == "ping":
            return Response(200, {"ack": ivvy_date(self._now())})
        if namespace == "batch":
            handler = {
                "run": self._run,
                "progress": self._progress,
                "results": self._results_action,
                "restart": self._restart,
                "repost": self._repost,
            }.get(action)
            if handler is not None:
                return handler(body)
        return _error(404, f"Unknown action {namespace}?action={action}")

    # -- batch actions -------------------------------------------------------------------------------
    def _run(self, body: dict[str, Any]) -> Response:
        jobs = body.get("jobs")
        if jobs is None or jobs == []:
            return _error(400, "Empty job parameter", 24093)
        if not isinstance(jobs, list):
            return _error(400, "Incorrect job format", 24092, ["jobs: must be a list of jobs"])
        problems = [p for i, job in enumerate(jobs) if (p := _job_format_problem(i, job))]
        if problems:
            return _error(400, "Incorrect job format", 24092, problems[:20])
        if len(jobs) > self.max_jobs:
            return _error(
                400,
                f"A batch cannot hold more than {self.max_jobs} jobs",
                24448,
                [f"jobs: {len(jobs)} given"],
            )
        callback = body.get("callbackUrl")
        if callback is not None and not (
            isinstance(callback, str) and callback.startswith(("http://", "https://"))
        ):
            return _error(400, "Parameter does not validate", 23016, ["callbackUrl: must be an http(s) URL"])
        with self._lock:
            if self.not_saved_next > 0:
                self.not_saved_next -= 1
                return _error(400, "The batch could not be saved", 24091)
            async_id = uuid.uuid4().hex
            batch_no = self.submissions
            received = [
                {"namespace": j["namespace"], "action": j["action"], "params": j.get("params") or {}}
                for j in jobs
            ]
            responses = [self._respond(batch_no, i, job) for i, job in enumerate(received)]
            self.batches[async_id] = SimBatch(
                async_id=async_id,
                jobs=received,
                responses=responses,
                started=time.monotonic(),
                callback_url=callback or None,
            )
            self.submissions += 1
            answer = self.run_answer if self.run_answer is not None else {"asyncId": async_id}
        return Response(200, answer)

    def _respond(self, batch_no: int, index: int, job: dict[str, Any]) -> dict[str, Any]:
        if self._forced_failure(batch_no, index, job):
            return error_body(500, "An error has occurred", 24335)
        if (job["namespace"], job["action"]) == ("venue", "addOrUpdateBookingSession"):
            return _booking_session(
                job["params"],
                frozenset(self.unknown_booking_ids),
                frozenset(self.unknown_session_ids),
                self.strict_new_sessions,
                lambda: next(self._ids),
            )
        return {"success": True}

    def _forced_failure(self, batch_no: int, index: int, job: dict[str, Any]) -> bool:
        rule = self.fail_jobs
        if rule is None:
            return False
        if callable(rule):
            return bool(rule(index, job))
        return random.Random(f"{self.seed}:{batch_no}:{index}").random() < float(rule)

    def _find(self, body: dict[str, Any], missing_code: int) -> SimBatch | Response:
        async_id = body.get("async")
        if not isinstance(async_id, str) or not async_id:
            return _error(
                400, "Required parameter missing", 23017, ["async: *Value is required and can't be empty*"]
            )
        with self._lock:
            batch = self.batches.get(async_id.lower())
            if batch is None or batch.expired or self.results_expired:
                return _error(400, "Could not find batch", missing_code)
            return batch

    def _percent(self, batch: SimBatch) -> int:
        elapsed = time.monotonic() - batch.started
        percent = 100 if self.job_seconds <= 0 else min(100, int(100 * elapsed / self.job_seconds))
        return min(percent, 99) if self.never_finish else percent

    def _complete(self, batch: SimBatch) -> bool:
        return self._percent(batch) >= 100

    def _results(self, batch: SimBatch) -> list[dict[str, Any]]:
        results = [
            {
                "namespace": job["namespace"],
                "action": job["action"],
                "request": job["params"],
                "response": response,
            }
            for job, response in zip(batch.jobs, batch.responses, strict=True)
        ]
        results = results[: max(0, len(results) - self.drop_results)]
        transform = self.results_transform
        return transform(results) if transform is not None else results

    def _progress(self, body: dict[str, Any]) -> Response:
        found = self._find(body, 24105)
        if isinstance(found, Response):
            return found
        if self.progress_answer is not None:
            return Response(200, self.progress_answer)
        return Response(200, {"progress": self._percent(found)})

    def _results_action(self, body: dict[str, Any]) -> Response:
        found = self._find(body, 24115)
        if isinstance(found, Response):
            return found
        if not self._complete(found):
            return _error(400, "Batch job not completed", 24114)
        return Response(200, {"asyncId": found.async_id, "results": self._results(found)})

    def _restart(self, body: dict[str, Any]) -> Response:
        found = self._find(body, 24105)
        if isinstance(found, Response):
            return found
        with self._lock:
            found.started = time.monotonic()
            found.callback_sent = False
        return Response(200, {"restarted": True})

    def _repost(self, body: dict[str, Any]) -> Response:
        found = self._find(body, 24105)
        if isinstance(found, Response):
            return found
        if found.callback_url and self._complete(found):
            with self._lock:
                found.callback_sent = True
            self._send_callback(found)
        return Response(200, {"reposted": True})


def _job_format_problem(index: int, job: Any) -> str | None:
    if not isinstance(job, dict):
        return f"jobs[{index}]: must be an object with namespace, action and params"
    for key in ("namespace", "action"):
        if not isinstance(job.get(key), str) or not job[key].strip():
            return f"jobs[{index}].{key}: {REQUIRED}"
    if "params" in job and not isinstance(job["params"], dict | type(None)):
        return f"jobs[{index}].params: must be an object"
    unknown = sorted(set(job) - {"namespace", "action", "params"})
    if unknown:
        return f"jobs[{index}]: unknown keys {unknown}"
    return None


def _parse_ivvy_date(value: str) -> datetime | None:
    text = value.strip()
    if text.upper().endswith(" UTC"):
        text = text[:-4].rstrip()
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
