"""WillSuite: bulk case updates run as asynchronous "api jobs".

Dialect, in short (see ``PROVIDERS.md`` §2):

* Auth is OAuth client credentials: ``POST {base}/oauth/token/`` gives a Bearer token. Tokens are cached
  per connection (module level, so they survive across invocations in one container) until shortly
  before they expire; a 401 on an API call fetches one new token and repeats the call once, then fails
  with :class:`ProviderAuthError`. Every call carries ``Content-Type: application/json``, GET included.
* Submit posts ``{"cases": [{"id": <uuid>, ...fields}]}`` to the bulk endpoint (path and job-id field
  come from the connection settings ``submitPath`` and ``jobIdField``) and expects 202 with the job id.
* Status is ``GET {base}/api-jobs/{id}``: ``pending | processing | completed | failed``, and a non-null
  ``end_time`` also means the job is over. WillSuite asks to be polled every 5-10 minutes.
* Results are counts plus free text: ``message`` holds one block per failed case, and
  ``effected_records`` says how many cases were changed. There are no per-case results otherwise.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

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

MIN_POLL_SECONDS = 300  # WillSuite: "checking every 5-10 minutes should be sufficient"
MAX_POLL_SECONDS = 600

DEFAULT_SUBMIT_PATH = "/cases/bulk-update"
DEFAULT_JOB_ID_FIELD = "api_job_id"
TOKEN_PATH = "/oauth/token/"  # noqa: S105 - a path, not a secret
STATUS_PATH = "/api-jobs/{id}"

RECORD_FAILED = "WILLSUITE_RECORD_FAILED"
JOB_NOT_FOUND = "WILLSUITE_JOB_NOT_FOUND"

# Outcome ``detail`` for a case WillSuite accepted and did not name as failed.
EFFECTED = "effected"
UNCHANGED = "unchanged"
EFFECTED_OR_UNCHANGED = "effected_or_unchanged"

RUNNING_STATUSES = frozenset({"pending", "processing"})
DOCUMENTED_STATUSES = RUNNING_STATUSES | {"completed", "failed"}

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_MAX_MESSAGE = 1000  # longest vendor text copied into an error message


# --- job and options models -----------------------------------------------------------------------
class WillSuiteJob(Job):
    """One case to update: its WillSuite ``id`` plus any case fields to set.

    Case fields are WillSuite's and pass through untouched, so unknown fields are allowed here (unlike
    most providers). ``clientRef`` remains BatchBridge's own field and is never sent to WillSuite; it
    is matched by that name only, so a case field called ``client_ref`` stays a case field.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=False)

    id: StrictStr = Field(pattern=f"^{_UUID}$", description="the WillSuite case id (a UUID)")


class WillSuiteOptions(BaseModel):
    """Per-batch options. ``pollIntervalSeconds`` may only ask for a slower rhythm inside the vendor's
    5-10 minute window: the provider's declared poll bounds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    poll_interval_seconds: float | None = Field(default=None, alias="pollIntervalSeconds")

    @field_validator("poll_interval_seconds")
    @classmethod
    def _within_bounds(cls, value: float | None) -> float | None:
        if value is not None and not MIN_POLL_SECONDS <= value <= MAX_POLL_SECONDS:
            raise ValueError(
                f"must be between {MIN_POLL_SECONDS} and {MAX_POLL_SECONDS} seconds "
                "(WillSuite asks to be polled every 5 to 10 minutes)"
            )
        return value


class _ApiJob(BaseModel):
    """``GET /api-jobs/{id}``: every documented field must be present. ``end_time`` is null until the
    job ends; the other nullable fields are tolerated as null because the vendor's schema is loose about
    jobs that have not started, but they must have the documented type when present."""

    model_config = ConfigDict(extra="allow")

    id: StrictStr
    type: StrictStr
    company_id: StrictStr
    start_time: StrictStr | None
    end_time: StrictStr | None
    status: StrictStr
    message: StrictStr | None
    total_records: StrictInt | None
    effected_records: StrictInt | None
    created_at: StrictStr
    updated_at: StrictStr


# --- token cache ------------------------------------------------------------------------------------
@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()


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


def _refresh_margin(expires_in: float) -> float:
    """Renew a token this many seconds before it expires: a minute, or a tenth of a short lifetime."""
    return min(60.0, expires_in / 10.0)


# --- message parsing --------------------------------------------------------------------------------
_SEPARATOR = re.compile(r"^\s*-{3,}\s*$", re.MULTILINE)
_BLOCK = re.compile(
    r"\ACase ID:\s*(?P<case>\S+)\s+failed with the following errors:[ \t]*\n?(?P<reason>.*)\Z", re.S
)


@dataclass
class ParsedMessage:
    """A job ``message`` split into per-case failures (case id in lower case -> reason) and the rest."""

    failures: dict[str, str] = field(default_factory=dict)
    other: str = ""


def parse_message(message: str | None) -> ParsedMessage:
    """Split WillSuite's job message into failure blocks and any other text.

    Blocks look like ``Case ID: <uuid> failed with the following errors:\\n\\n<reason>`` and are
    separated by lines of dashes. A case named twice keeps both reasons, one per line.

    >>> parse_message("---\\nCase ID: AB-1 failed with the following errors:\\n\\nGone.\\n---").failures
    {'ab-1': 'Gone.'}
    """
    parsed = ParsedMessage()
    other: list[str] = []
    for segment in _SEPARATOR.split(message or ""):
        text = segment.strip()
        if not text:
            continue
        match = _BLOCK.match(text)
        if match is None:
            other.append(text)
            continue
        case = match["case"].lower()
        reason = match["reason"].strip() or "WillSuite gave no reason"
        previous = parsed.failures.get(case)
        parsed.failures[case] = f"{previous}\n{reason}" if previous else reason
    parsed.other = "\n".join(other)
    return parsed


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _vendor_error(response: httpx.Response) -> str:
    """``HTTP <status>: <message> (<field>: <reasons>; ...)`` from WillSuite's ``{message, errors}``."""
    text = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return text
    if not isinstance(body, dict):
        return text
    message = body.get("message")
    if isinstance(message, str) and message:
        text += f": {message}"
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        parts = []
        for name, reasons in errors.items():
            listed = reasons if isinstance(reasons, list) else [reasons]
            parts.append(f"{name}: {' '.join(str(r) for r in listed)}")
        text += f" ({'; '.join(parts)})"
    return _clip(text)


# --- the adapter ------------------------------------------------------------------------------------
@register
class WillSuiteProvider(Provider):
    """WillSuite bulk case updates.

    ``max_jobs_per_submit`` is 500: the bulk endpoint's limit is not published, the vendor's own
    example shows one job holding 773 records, and 500 cases keep a request body well under a
    megabyte and a job's failure text small, while fewer, larger jobs mean fewer polls at the
    vendor's 5-10 minute rhythm.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        name="willsuite",
        title="WillSuite",
        max_jobs_per_submit=500,
        supports_callback=False,
        supports_cancel=False,
        min_poll_seconds=MIN_POLL_SECONDS,
        max_poll_seconds=MAX_POLL_SECONDS,
        default_deadline_seconds=6 * 3600,
        max_deadline_seconds=24 * 3600,
        result_retention_seconds=None,  # not documented
    )
    job_model: ClassVar[type[Job]] = WillSuiteJob
    options_model: ClassVar[type[BaseModel]] = WillSuiteOptions

    # -- configuration -----------------------------------------------------------------------------
    @property
    def _base(self) -> str:
        return self.connection.base_url.rstrip("/")

    def _setting(self, key: str, default: str) -> str:
        value = self.connection.settings.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                f"connection {self.connection.name!r}: setting {key!r} must be a non-empty string"
            )
        return value.strip()

    @property
    def _submit_path(self) -> str:
        path = self._setting("submitPath", DEFAULT_SUBMIT_PATH)
        return path if path.startswith("/") else f"/{path}"

    @property
    def _job_id_field(self) -> str:
        return self._setting("jobIdField", DEFAULT_JOB_ID_FIELD)

    # -- auth --------------------------------------------------------------------------------------
    def _key(self) -> tuple[str, str]:
        return (self.connection.name, self._base)

    def _token(self) -> str:
        slot = _slot(self._key())
        with slot.lock:
            token = slot.token
            if token is None or token.expires_at <= time.monotonic():
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
        what = "WillSuite token"
        body = {
            "grant_type": "client_credentials",
            "client_id": self.connection.secret("clientId"),
            "client_secret": self.connection.secret("clientSecret"),
        }
        url = f"{self._base}{TOKEN_PATH}"
        started = time.monotonic()
        response = send(
            lambda: self.client.post(url, json=body, headers={"Accept": "application/json"}),
            what=what,
        )
        raise_for_transient(response, what=what)
        if response.status_code in (400, 401, 403):
            raise ProviderAuthError(
                f"WillSuite refused the client credentials of connection {self.connection.name!r} "
                f"({_vendor_error(response)})"
            )
        if response.status_code == 404:
            raise ConfigurationError(
                f"connection {self.connection.name!r}: no WillSuite token endpoint at {url} (HTTP 404); "
                "check baseUrl"
            )
        if response.status_code != 200:
            raise ProviderResponseError(f"{what}: unexpected {_vendor_error(response)}")
        data = expect_dict(json_body(response, what=what), what=what)
        access = data.get("access_token")
        token_type = data.get("token_type", "Bearer")
        expires_in = data.get("expires_in", 600)  # lifetime not documented: assume a short one
        if not isinstance(access, str) or not access:
            raise ProviderResponseError(f"{what}: the answer has no access_token")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ProviderResponseError(f"{what}: token_type {token_type!r} is not Bearer")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise ProviderResponseError(f"{what}: expires_in {expires_in!r} is not a positive number")
        return _Token(access, started + expires_in - _refresh_margin(float(expires_in)))

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: Any = None,
        safe_to_repeat: bool = True,
    ) -> httpx.Response:
        """One authenticated call; on 401 one fresh token and one repeat, then ProviderAuthError.

        A 401 means WillSuite did not act on the request, so repeating even a submit is safe.
        """
        url = f"{self._base}{path}"
        content = (
            None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        )

        def attempt(token: str) -> httpx.Response:
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",  # required by WillSuite on every call, GET too
                "Accept": "application/json",
            }

            def call() -> httpx.Response:
                return self.client.request(method, url, headers=headers, content=content)

            return send(call, what=what, safe_to_repeat=safe_to_repeat)

        def token() -> str:
            try:
                return self._token()
            except ProviderResponseError as exc:
                if safe_to_repeat:
                    raise
                # A garbled token answer comes before the request is sent (or after WillSuite refused it
                # with 401): nothing was accepted, so this is not an ambiguous submit.
                raise ProviderUnavailableError(f"{what}: {exc.message}") from exc

        used = token()
        response = attempt(used)
        if response.status_code != 401:
            return response
        self._forget_token(used)
        logger.info(
            "WillSuite refused the token; fetching a new one", extra={"connection": self.connection.name}
        )
        used = token()
        response = attempt(used)
        if response.status_code == 401:
            self._forget_token(used)
            raise ProviderAuthError(
                f"{what}: WillSuite refused a freshly issued token for connection "
                f"{self.connection.name!r} ({_vendor_error(response)})"
            )
        return response

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """POST the chunk's cases to the bulk endpoint; return the api job id.

        WillSuite answers 202; 200 and 201 with a job id are taken as acceptance too, since the endpoint
        is not documented. Client errors reject the chunk (404/405 point at the ``submitPath``
        setting); an accepted answer without the job id is a :class:`ProviderResponseError`, which the
        core treats as an ambiguous submit.
        """
        what = f"WillSuite submit (chunk {chunk.index})"
        path = self._submit_path
        id_field = self._job_id_field
        cases = [{k: v for k, v in job.items() if k != "clientRef"} for job in jobs]
        response = self._call("POST", path, what=what, body={"cases": cases}, safe_to_repeat=False)
        raise_for_transient(response, what=what)
        status = response.status_code
        if status == 403:
            raise ProviderAuthError(f"{what}: forbidden ({_vendor_error(response)})")
        if status in (404, 405):
            raise BatchRejectedError(
                f"{what}: WillSuite has no bulk endpoint at {path} ({_vendor_error(response)}); "
                f"check the connection's submitPath setting"
            )
        if 400 <= status < 500:
            raise BatchRejectedError(f"{what}: WillSuite refused the cases ({_vendor_error(response)})")
        if status not in (200, 201, 202):
            raise ProviderResponseError(f"{what}: unexpected {_vendor_error(response)}")
        data = expect_dict(json_body(response, what=what), what=what)
        job_id = data.get(id_field)
        if isinstance(job_id, bool) or not isinstance(job_id, str | int) or not str(job_id).strip():
            raise ProviderResponseError(
                f"{what}: HTTP {status} without a job id in {id_field!r} (fields: {sorted(data)})"
            )
        return str(job_id).strip()

    # -- status --------------------------------------------------------------------------------------
    def _get_job(self, chunk: ChunkInfo, *, what: str) -> _ApiJob | None:
        """The api job, or None when WillSuite answers 404."""
        if not chunk.provider_ref:
            raise ConfigurationError(f"{what}: chunk {chunk.index} has no WillSuite job id")
        path = STATUS_PATH.format(id=quote(chunk.provider_ref, safe=""))
        response = self._call("GET", path, what=what)
        raise_for_transient(response, what=what)
        if response.status_code == 404:
            return None
        if response.status_code == 403:
            raise ProviderAuthError(f"{what}: forbidden ({_vendor_error(response)})")
        if response.status_code != 200:
            raise ProviderJobFailedError(
                f"{what}: WillSuite refused the status request ({_vendor_error(response)})"
            )
        data = expect_dict(json_body(response, what=what), what=what)
        try:
            job = _ApiJob.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {'missing' if e['type'] == 'missing' else e['msg']}"
                for e in exc.errors()
            )
            raise ProviderResponseError(
                f"{what}: the api job breaks WillSuite's documented shape ({problems})"
            ) from None
        if job.id.lower() != chunk.provider_ref.lower():
            raise ProviderResponseError(f"{what}: asked for api job {chunk.provider_ref}, got {job.id}")
        return job

    def check(self, chunk: ChunkInfo) -> StatusReport:
        """Map the api job's status.

        ``pending``/``processing`` are RUNNING unless ``end_time`` is set (the vendor's other "stop
        polling" signal), which reads as COMPLETED; ``completed`` is COMPLETED; ``failed`` is FAILED
        with the vendor's message. Any other status fails closed. A 404 for a job id WillSuite itself
        issued is a terminal :class:`ProviderJobFailedError`: its outcome can never be learned.
        """
        what = f"WillSuite status (chunk {chunk.index}, job {chunk.provider_ref})"
        job = self._get_job(chunk, what=what)
        if job is None:
            raise ProviderJobFailedError(
                f"{what}: WillSuite has no such api job (HTTP 404); it may have been removed or belong to "
                "another account, so its outcome cannot be learned"
            )
        status = job.status
        if status not in DOCUMENTED_STATUSES:
            raise UnknownProviderStatusError(
                f"{what}: undocumented status {status!r} (expected one of {sorted(DOCUMENTED_STATUSES)})"
            )
        detail = {
            "totalRecords": job.total_records,
            "effectedRecords": job.effected_records,
            "endTime": job.end_time,
        }
        if status == "failed":
            return StatusReport(
                state=ChunkState.FAILED,
                provider_status=status,
                progress=100.0,
                error=ErrorInfo(code=ProviderJobFailedError.code, message=_job_failure_text(job.message)),
                detail=detail,
            )
        if status == "completed" or job.end_time is not None:
            return StatusReport(
                state=ChunkState.COMPLETED, provider_status=status, progress=100.0, detail=detail
            )
        return StatusReport(state=ChunkState.RUNNING, provider_status=status, detail=detail)

    # -- results -------------------------------------------------------------------------------------
    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """One outcome per case, from the job's counts and its message.

        * A case named in a failure block fails with that reason (code ``WILLSUITE_RECORD_FAILED``).
          Blocks naming a case that is not in this chunk are logged and ignored.
        * **Completed job:** every other case succeeded. WillSuite counts the cases it changed
          (``effected_records``) but never says which ones, and a case that was already up to date is
          accepted without being changed. So the attribution is by count, and only claims what the
          count proves: when every non-failed case was effected the detail is ``"effected"``, when none
          was it is ``"unchanged"``, and otherwise each gets ``"effected_or_unchanged"`` (the split is
          in the chunk's status report). Counts always add up to the cases submitted.
        * **Failed job:** WillSuite says the job as a whole did not succeed and does not say which of
          the other cases it applied, so no case is reported as succeeded: named cases fail with
          their own reason, every other case fails with the job's message (``PROVIDER_JOB_FAILED``).
        * A job WillSuite no longer knows (404) raises :class:`ResultsExpiredError`, which the core
          records as ``not_processed`` for the whole chunk.
        """
        what = f"WillSuite results (chunk {chunk.index}, job {chunk.provider_ref})"
        job = self._get_job(chunk, what=what)
        if job is None:
            raise ResultsExpiredError(
                f"{what}: WillSuite no longer has this api job (HTTP 404); the cases' outcomes are unknown"
            )
        if job.status not in DOCUMENTED_STATUSES:
            raise UnknownProviderStatusError(f"{what}: undocumented status {job.status!r}")
        failed_job = job.status == "failed"
        if not failed_job and job.status != "completed" and job.end_time is None:
            raise ProviderResponseError(
                f"{what}: the job is {job.status!r} again after it was reported finished"
            )

        parsed = parse_message(job.message)
        ids = [str(j.get("id", "")).lower() for j in jobs]
        known = set(ids)
        strays = sorted(c for c in parsed.failures if c not in known)
        if strays:
            logger.warning(
                "WillSuite named cases that were not in the chunk; ignored",
                extra={"job": job.id, "cases": strays[:20], "count": len(strays)},
            )
        failed_count = sum(1 for c in ids if c in parsed.failures)
        rest = len(ids) - failed_count
        if job.total_records is not None and job.total_records != len(ids):
            logger.warning(
                "WillSuite counted a different number of cases than were sent",
                extra={"job": job.id, "sent": len(ids), "totalRecords": job.total_records},
            )

        job_error: ErrorInfo | None = None
        success_detail = EFFECTED
        if failed_job:
            job_error = ErrorInfo(
                code=ProviderJobFailedError.code, message=_job_failure_text(job.message, parsed)
            )
        else:
            effected = job.effected_records if job.effected_records is not None else rest
            if effected > rest or effected < 0:
                logger.warning(
                    "WillSuite's effected count does not fit the cases it did not fail",
                    extra={"job": job.id, "effectedRecords": effected, "notFailed": rest},
                )
            effected = max(0, min(effected, rest))
            if effected == rest:
                success_detail = EFFECTED
            elif effected == 0:
                success_detail = UNCHANGED
            else:
                success_detail = EFFECTED_OR_UNCHANGED

        for i, (job_dict, case) in enumerate(zip(jobs, ids, strict=True)):
            base = {
                "index": chunk.first_job_index + i,
                "client_ref": job_dict.get("clientRef"),
                "provider_ref": job_dict.get("id"),
            }
            reason = parsed.failures.get(case)
            if reason is not None:
                yield Outcome(
                    **base,
                    outcome=OutcomeKind.FAILED,
                    error=ErrorInfo(code=RECORD_FAILED, message=_clip(reason)),
                )
            elif job_error is not None:
                yield Outcome(**base, outcome=OutcomeKind.FAILED, error=job_error)
            else:
                yield Outcome(**base, outcome=OutcomeKind.SUCCEEDED, detail=success_detail)


def _job_failure_text(message: str | None, parsed: ParsedMessage | None = None) -> str:
    """The vendor's words for a failed job, for the cases it did not name: its text outside the
    failure blocks when there is some, else the whole message."""
    if parsed is not None and parsed.failures:
        if parsed.other:
            return _clip(f"the WillSuite job failed: {parsed.other}")
        return "the WillSuite job failed; it gave reasons for other cases but none for this one"
    if message and message.strip():
        return _clip(message.strip())
    return "the WillSuite job failed without a message"
