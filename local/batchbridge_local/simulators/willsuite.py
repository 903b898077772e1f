"""A WillSuite simulator: OAuth token endpoint, a bulk case-update endpoint and api jobs.

Answers like the vendor (``docs/providers/willsuite.md``) under ``/engine/api``: ``POST /oauth/token/`` issues
Bearer tokens that expire after ``token_ttl_seconds``; ``POST /cases/bulk-update`` answers 202
``{"api_job_id", "status": "pending"}``; ``GET /api-jobs/{id}`` returns the documented field set and moves
``pending -> processing -> completed`` over ``job_seconds``. Errors use the simulator's decided envelope
``{"message", "errors"}``; an unknown or expired token gets 401 ``{"message": "Unauthenticated."}``.

Knobs (attributes, change them between requests): ``job_seconds``, ``token_ttl_seconds``,
``failures`` (case id -> reason: those cases fail in any job that holds them), ``unchanged`` (case ids
accepted but already up to date), ``stray_failures`` (failure blocks for cases that were never sent),
``fail_next_jobs`` / ``job_failure_message`` (whole-job failure), ``unauthorized_next`` (answer 401 to
the next N authenticated calls whatever the token), ``max_cases``, ``count_short_by`` (the job silently
drops its last N cases: not applied, not counted in ``total_records``), ``failed_job_effected`` (the share of
the cases a failed job did not name that it changed before failing; 0 by default). Test helpers:
:meth:`truth`, :attr:`submissions`, :attr:`tokens_issued`, :meth:`secret_values` (the client secret and
every token issued), :meth:`expire_tokens`, :meth:`force_status`, :meth:`reset`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batchbridge_local.simulators.base import Faults, Request, Response, Simulator

PREFIX = "/engine/api"
TOKEN_PATH = "/oauth/token/"  # noqa: S105 - a path, not a secret
BULK_PATH = "/cases/bulk-update"
JOB_TYPE = "customer_case_bulk_update"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_JOB_PATH = re.compile(r"^/api-jobs/(?P<id>[^/]+)/?$")

OPEN_RULE = "-" * 27
BLOCK_RULE = "-" * 54


def failure_message(failures: list[tuple[str, str]]) -> str:
    """WillSuite's per-case failure text: blocks between dashed rules, as in the vendor's example."""
    if not failures:
        return ""
    blocks = [f"Case ID: {case} failed with the following errors:\n\n{reason}" for case, reason in failures]
    return f"{OPEN_RULE}\n" + f"\n{BLOCK_RULE}\n".join(blocks) + f"\n{OPEN_RULE}"


def _wall(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _plain(ts: float) -> str:  # "2024-02-21 10:21:31"
    return _wall(ts).strftime("%Y-%m-%d %H:%M:%S")


def _iso(ts: float) -> str:  # "2024-02-21T10:21:31.000000Z"
    return _wall(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class SimJob:
    id: str
    cases: list[str]
    created: float  # wall clock
    started: float  # monotonic
    duration: float
    failed: dict[str, str]  # case id -> reason (cases in this job)
    stray: dict[str, str]  # failure blocks for cases that are not in the job
    unchanged: list[str]
    job_failure: str | None = None
    dropped: int = 0  # the last N cases, silently not applied and not counted
    failed_effected: float = 0.0
    forced_status: str | None = None
    forced_end: bool | None = None
    omit_fields: tuple[str, ...] = ()

    @property
    def counted(self) -> list[str]:
        return self.cases[: len(self.cases) - self.dropped]

    @property
    def effected(self) -> list[str]:
        skip = set(self.failed) | set(self.unchanged)
        changed = [c for c in self.counted if c not in skip]
        if self.job_failure is not None:
            return changed[: int(len(changed) * self.failed_effected)]
        return changed


@dataclass
class _Token:
    expires_at: float  # monotonic


@dataclass
class Truth:
    """What really happened to a job's cases, for tests to compare outcomes against."""

    job_id: str
    cases: list[str]
    failed: dict[str, str]
    effected: list[str]
    unchanged: list[str]
    job_failed: bool = False
    uncounted: list[str] = field(default_factory=list)  # dropped silently: neither applied nor counted


class WillSuiteSimulator(Simulator):
    name = "willsuite"

    def __init__(
        self,
        *,
        job_seconds: float = 0.3,
        token_ttl_seconds: float = 3600,
        client_id: str = "sim-client",
        client_secret: str | None = None,
        company_id: str = "aff00be6-f734-4094-a8ae-62874485dac0",
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.company_id = company_id
        self._defaults = {"job_seconds": job_seconds, "token_ttl_seconds": token_ttl_seconds}
        self.reset()

    def reset(self) -> None:
        """Back to a fresh simulator (knobs, jobs, tokens, counters, request log), keeping the socket and
        the client credentials: lets one running simulator serve many tests."""
        with self._lock:
            self.faults = Faults()
            self.requests.clear()
            # knobs
            self.job_seconds: float = self._defaults["job_seconds"]
            self.pending_share = 0.3  # of job_seconds spent "pending" before "processing"
            self.token_ttl_seconds: float = self._defaults["token_ttl_seconds"]
            self.failures: dict[str, str] = {}
            self.unchanged: set[str] = set()
            self.stray_failures: dict[str, str] = {}
            self.fail_next_jobs = 0
            self.job_failure_message = "The bulk update could not be completed."
            self.unauthorized_next = 0
            self.max_cases = 1000
            self.count_short_by = 0
            self.failed_job_effected = 0.0
            # state
            self.jobs: dict[str, SimJob] = {}
            self.tokens: dict[str, _Token] = {}
            self.issued: list[str] = []
            self.submissions = 0
            self.tokens_issued = 0

    @property
    def api_base_url(self) -> str:
        """What a connection's ``baseUrl`` should be (the vendor's is ``https://…/engine/api``)."""
        return self.base_url + PREFIX

    # -- helpers for tests ---------------------------------------------------------------------------
    def truth(self, job_id: str) -> Truth:
        with self._lock:
            job = self.jobs[job_id]
            return Truth(
                job_id=job.id,
                cases=list(job.cases),
                failed=dict(job.failed),
                effected=job.effected,
                unchanged=list(job.unchanged),
                job_failed=job.job_failure is not None,
                uncounted=job.cases[len(job.counted) :],
            )

    def secret_values(self) -> list[str]:
        with self._lock:
            return [self.client_secret, *self.issued]

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as if they had all expired)."""
        with self._lock:
            self.tokens.clear()

    def force_status(
        self, job_id: str, status: str | None, *, ended: bool | None = None, omit_fields: tuple[str, ...] = ()
    ) -> None:
        """Make a job report ``status`` (any word, documented or not), optionally with or without an
        ``end_time``, and optionally leave fields out of its answer."""
        with self._lock:
            job = self.jobs[job_id]
            job.forced_status = status
            job.forced_end = ended
            job.omit_fields = omit_fields

    # -- vendor errors -------------------------------------------------------------------------------
    @staticmethod
    def error(status: int, message: str, errors: dict[str, list[str]] | None = None) -> Response:
        return Response(status, {"message": message, "errors": errors or {}})

    def throttled_response(self, retry_after: int) -> Response:
        response = self.error(429, "Too Many Attempts.")
        response.headers["Retry-After"] = str(retry_after)
        return response

    def server_error_response(self, status: int = 500) -> Response:
        return self.error(status, "Server Error")

    def unauthorized_response(self, request: Request) -> Response:
        if request.path.rstrip("/").endswith(TOKEN_PATH.rstrip("/")):
            return self.error(401, "Client authentication failed.")
        return Response(401, {"message": "Unauthenticated."})

    # -- routing -------------------------------------------------------------------------------------
    def route(self, request: Request) -> Response:
        if not request.path.startswith(PREFIX + "/"):
            return self.error(404, "Resource not found.")
        path = request.path[len(PREFIX) :]
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return self.error(400, "The Content-Type header must be application/json.")
        if path in (TOKEN_PATH, TOKEN_PATH.rstrip("/")):
            if request.method != "POST":
                return self.error(405, "Method not allowed.")
            return self._issue_token(request)
        unauthorized = self._authenticate(request)
        if unauthorized is not None:
            return unauthorized
        if path == BULK_PATH:
            if request.method != "POST":
                return self.error(405, "Method not allowed.")
            return self._bulk_update(request)
        match = _JOB_PATH.match(path)
        if match:
            if request.method != "GET":
                return self.error(405, "Method not allowed.")
            return self._api_job(match["id"])
        return self.error(404, "Resource not found.")

    def _issue_token(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON.")
        if not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
            return self.error(
                400, "The authorization grant type is not supported.", {"grant_type": ["unsupported"]}
            )
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            return self.error(401, "Client authentication failed.")
        token = _jwt_like()
        with self._lock:
            self.tokens[token] = _Token(time.monotonic() + self.token_ttl_seconds)
            self.issued.append(token)
            self.tokens_issued += 1
        return Response(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl_seconds}
        )

    def _authenticate(self, request: Request) -> Response | None:
        denied = Response(401, {"message": "Unauthenticated."})
        with self._lock:
            if self.unauthorized_next > 0:
                self.unauthorized_next -= 1
                return denied
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            known = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if known is None or known.expires_at <= time.monotonic():
                return denied
        return None

    def _bulk_update(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return self.error(400, "The request body is not valid JSON.")
        cases = body.get("cases") if isinstance(body, dict) else None
        if not isinstance(cases, list) or not cases:
            return self.error(422, "The given data was invalid.", {"cases": ["The cases field is required."]})
        if len(cases) > self.max_cases:
            return self.error(
                422,
                "The given data was invalid.",
                {"cases": [f"The cases may not have more than {self.max_cases} items."]},
            )
        problems: dict[str, list[str]] = {}
        ids: list[str] = []
        for i, case in enumerate(cases):
            case_id = case.get("id") if isinstance(case, dict) else None
            if not isinstance(case_id, str) or not _UUID.match(case_id):
                problems[f"cases.{i}.id"] = ["The id must be a valid UUID."]
            else:
                ids.append(case_id)
        if problems:
            return self.error(422, "The given data was invalid.", problems)
        with self._lock:
            job_failure = None
            if self.fail_next_jobs > 0:
                self.fail_next_jobs -= 1
                job_failure = self.job_failure_message
            in_job = {c.lower() for c in ids}
            job = SimJob(
                id=str(uuid.uuid4()),
                cases=ids,
                created=time.time(),
                started=time.monotonic(),
                duration=self.job_seconds,
                failed={c: self.failures[c] for c in ids if c in self.failures},
                stray={c: r for c, r in self.stray_failures.items() if c.lower() not in in_job},
                unchanged=[c for c in ids if c in self.unchanged and c not in self.failures],
                job_failure=job_failure,
                dropped=min(self.count_short_by, len(ids)),
                failed_effected=self.failed_job_effected,
            )
            self.jobs[job.id] = job
            self.submissions += 1
        return Response(202, {"api_job_id": job.id, "status": "pending"})

    def _api_job(self, job_id: str) -> Response:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return self.error(404, "Resource not found.")
            return Response(200, self._render(job))

    def _render(self, job: SimJob) -> dict[str, Any]:
        elapsed = time.monotonic() - job.started
        finished = elapsed >= job.duration
        if not finished:
            status = "pending" if elapsed < job.duration * self.pending_share else "processing"
        else:
            status = "failed" if job.job_failure is not None else "completed"
        ended = finished
        if job.forced_status is not None:
            status = job.forced_status
            ended = job.forced_end if job.forced_end is not None else status in ("completed", "failed")
        end_ts = job.created + job.duration
        updated = job.created + min(elapsed, job.duration)
        message = ""
        if finished or ended:
            blocks = failure_message([*job.failed.items(), *job.stray.items()])
            if job.job_failure is not None:
                message = f"{job.job_failure}\n{blocks}" if blocks else job.job_failure
            else:
                message = blocks
        body: dict[str, Any] = {
            "id": job.id,
            "type": JOB_TYPE,
            "company_id": self.company_id,
            "start_time": _plain(job.created),
            "end_time": _plain(end_ts) if ended else None,
            "status": status,
            "message": message,
            "total_records": len(job.counted),
            "effected_records": len(job.effected) if finished else 0,
            "created_at": _iso(job.created),
            "updated_at": _iso(updated),
        }
        for name in job.omit_fields:
            body.pop(name, None)
        return body


def _jwt_like() -> str:
    """RS256-looking JWT text (header.payload.signature); the simulator only ever compares it whole."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"typ": "JWT", "alg": "RS256"}).encode())
    payload = part(json.dumps({"jti": secrets.token_hex(16), "iat": int(time.time())}).encode())
    return f"{header}.{payload}.{part(secrets.token_bytes(64))}"
