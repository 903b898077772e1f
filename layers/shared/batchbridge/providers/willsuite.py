"""WillSuite: bulk case updates run as asynchronous "api jobs".

Dialect, in short (``docs/providers/willsuite.md`` has the whole of it):

* Auth is OAuth client credentials: ``POST {base}/oauth/token/`` gives a Bearer token, cached per
  connection by the provider base until shortly before it expires; a 401 on an API call obtains one new
  token and repeats the call once, then fails with :class:`ProviderAuthError`. Every call carries
  ``Content-Type: application/json``, GET included.
* Submit posts ``{"cases": [{"id": <uuid>, ...fields}]}`` to the bulk endpoint (path and job-id field
  come from the connection settings ``submitPath`` and ``jobIdField``) and expects 202 with the job id.
* Status is ``GET {base}/api-jobs/{id}``: ``pending | processing | completed | failed``, and a non-null
  ``end_time`` also means the job is over. WillSuite asks to be polled every 5-10 minutes.
* Results are counts plus free text: ``message`` holds one block per failed case, ``total_records`` says
  how many cases the job accepted and ``effected_records`` how many it changed. There are no per-case
  results otherwise, so a case is credited only as far as the counts prove (see ``collect``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from batchbridge.errors import (
    BatchRejectedError,
    ProviderJobFailedError,
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
from batchbridge.providers.values import portable_problem

__all__ = ["WillSuiteProvider", "clear_token_cache", "parse_message"]

MIN_POLL_SECONDS = 300  # WillSuite: "checking every 5-10 minutes should be sufficient"
MAX_POLL_SECONDS = 600

DEFAULT_SUBMIT_PATH = "/cases/bulk-update"
DEFAULT_JOB_ID_FIELD = "api_job_id"
TOKEN_PATH = "/oauth/token/"  # noqa: S105 - a path, not a secret
STATUS_PATH = "/api-jobs/{id}"
DEFAULT_TOKEN_SECONDS = 600  # the token lifetime is not documented: without expires_in, assume a short one

RECORD_FAILED = "WILLSUITE_RECORD_FAILED"
JOB_NOT_FOUND = "WILLSUITE_JOB_NOT_FOUND"
NOT_COUNTED = "WILLSUITE_NOT_COUNTED"
COUNTS_INCONSISTENT = "WILLSUITE_COUNTS_INCONSISTENT"
PARTLY_APPLIED = "WILLSUITE_PARTLY_APPLIED"

# Outcome ``detail`` for a case WillSuite accepted and did not name as failed.
EFFECTED = "effected"
UNCHANGED = "unchanged"
EFFECTED_OR_UNCHANGED = "effected_or_unchanged"

RUNNING_STATUSES = frozenset({"pending", "processing"})
DOCUMENTED_STATUSES = RUNNING_STATUSES | {"completed", "failed"}

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PATH = r"^/?[A-Za-z0-9._~/-]{1,200}$"


class WillSuiteSettings(ProviderSettings):
    """A WillSuite connection's ``settings``. The bulk endpoint is not documented, so where it lives and
    which field of its answer names the api job are taken from here."""

    submit_path: StrictStr = Field(
        default=DEFAULT_SUBMIT_PATH,
        alias="submitPath",
        pattern=_PATH,
        description="path of the bulk endpoint under baseUrl",
    )
    job_id_field: StrictStr = Field(
        default=DEFAULT_JOB_ID_FIELD,
        alias="jobIdField",
        min_length=1,
        max_length=100,
        description="the field of the bulk endpoint's answer that holds the api job id",
    )

    @property
    def path(self) -> str:
        return self.submit_path if self.submit_path.startswith("/") else f"/{self.submit_path}"


# --- job and options models -----------------------------------------------------------------------
class WillSuiteJob(Job):
    """One case to update: its WillSuite ``id`` plus any case fields to set.

    Case fields are WillSuite's and pass through untouched, so unknown fields are allowed here (unlike
    most providers). ``clientRef`` remains BatchBridge's own field and is never sent to WillSuite; it
    is matched by that name only, so a case field called ``client_ref`` stays a case field.
    """

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=False,
        json_schema_extra={
            "additionalProperties": True,
            "examples": [
                {"clientRef": "c-1", "id": "4528a261-917d-4cbc-939e-7ea48cffca69", "status": "reviewed"}
            ],
        },
    )

    id: StrictStr = Field(pattern=f"^{_UUID}$", description="the WillSuite case id (a UUID)")

    @model_validator(mode="after")
    def _portable_fields(self) -> WillSuiteJob:
        problem = portable_problem(self.model_extra or {})
        if problem is not None:
            raise ValueError(problem)
        return self


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


def _read_token(data: Any) -> tuple[str, float]:
    """The access token and its lifetime from the token answer (its values never enter a message)."""
    data = expect_dict(data, what="the token answer")
    access = data.get("access_token")
    token_type = data.get("token_type", "Bearer")
    expires_in = data.get("expires_in", DEFAULT_TOKEN_SECONDS)
    if not isinstance(access, str) or not access:
        raise ProviderResponseError("the token answer has no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ProviderResponseError("the token answer's token_type is not Bearer")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise ProviderResponseError("the token answer's expires_in is not a positive number")
    return access, float(expires_in)


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
    settings_model: ClassVar[type[ProviderSettings]] = WillSuiteSettings

    @property
    def config(self) -> WillSuiteSettings:
        return self.configured(WillSuiteSettings)

    # -- dialect: answers ----------------------------------------------------------------------------
    def vendor_problem(self, body: Any, status: int) -> Problem | None:
        """``<message> (<field>: <reasons>; ...)`` from WillSuite's ``{message, errors}``."""
        if not isinstance(body, dict):
            return None
        text = body.get("message") if isinstance(body.get("message"), str) else ""
        errors = body.get("errors")
        if isinstance(errors, dict) and errors:
            parts = []
            for name, reasons in errors.items():
                listed = reasons if isinstance(reasons, list) else [reasons]
                parts.append(f"{name}: {' '.join(str(r) for r in listed)}")
            text = f"{text} ({'; '.join(parts)})" if text else "; ".join(parts)
        return Problem(status, self.http_code(status), clip(str(text))) if text else None

    def decide(self, problem: Problem, phase: Phase) -> Rule:
        if phase is Phase.SUBMIT and problem.status in (404, 405):
            return Rule(
                BatchRejectedError,
                f"WillSuite has no bulk endpoint at {self.config.path}; check the connection's submitPath",
            )
        return super().decide(problem, phase)

    # -- auth ----------------------------------------------------------------------------------------
    def token_key(self) -> Hashable:
        return ("willsuite", self.connection.name, self.base_url)

    def fetch_token(self) -> Token:
        body = {
            "grant_type": "client_credentials",
            "client_id": self.connection.secret("clientId"),
            "client_secret": self.connection.secret("clientSecret"),
        }
        return self.client_credentials_token(
            f"{self.base_url}{TOKEN_PATH}",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            read=_read_token,
        )

    def _call(self, method: str, path: str, *, body: Any = None, commit: bool = False) -> httpx.Response:
        """One authenticated call (see :meth:`Provider.authorized` for the one repeat after a 401)."""
        url = f"{self.base_url}{path}"
        content = (
            None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        )

        def attempt(token: str) -> httpx.Response:
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",  # required by WillSuite on every call, GET too
                "Accept": "application/json",
            }
            return self.request(method, url, headers=headers, content=content, commit=commit)

        return self.authorized(attempt)

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """POST the chunk's cases to the bulk endpoint; return the api job id.

        WillSuite answers 202; 200 and 201 with a job id are taken as acceptance too, since the endpoint
        is not documented. Client errors reject the chunk (404/405 point at the ``submitPath``
        setting); an accepting answer without the job id leaves the submit unconfirmed.
        """
        config = self.config
        cases = [{k: v for k, v in job.items() if k != "clientRef"} for job in jobs]
        response = self._call("POST", config.path, body={"cases": cases}, commit=True)
        self.check_answer(response, Phase.SUBMIT, ok=frozenset({200, 201, 202}))
        data = expect_dict(self.read_json(response))
        job_id = data.get(config.job_id_field)
        if isinstance(job_id, bool) or not isinstance(job_id, str | int) or not str(job_id).strip():
            raise ProviderResponseError(
                f"HTTP {response.status_code} without a job id in {config.job_id_field!r} "
                f"(fields: {sorted(data)[:20]})"
            )
        return str(job_id).strip()

    # -- status --------------------------------------------------------------------------------------
    def _get_job(self, chunk: ChunkInfo, phase: Phase) -> _ApiJob:
        if not chunk.provider_ref:
            raise ProviderJobFailedError(f"chunk {chunk.index} has no WillSuite job id")
        response = self._call("GET", STATUS_PATH.format(id=quote(chunk.provider_ref, safe="")))
        self.check_answer(response, phase)
        data = expect_dict(self.read_json(response))
        try:
            job = _ApiJob.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {'missing' if e['type'] == 'missing' else e['msg']}"
                for e in exc.errors()
            )
            raise ProviderResponseError(
                f"the api job breaks WillSuite's documented shape ({problems})"
            ) from None
        if job.id.lower() != chunk.provider_ref.lower():
            raise ProviderResponseError(f"asked for api job {chunk.provider_ref}, got {job.id[:64]}")
        if job.status not in DOCUMENTED_STATUSES:
            raise UnknownProviderStatusError(
                f"undocumented status {job.status[:40]!r} (expected one of {sorted(DOCUMENTED_STATUSES)})"
            )
        return job

    def check(self, chunk: ChunkInfo) -> StatusReport:
        """Map the api job's status.

        ``pending``/``processing`` are RUNNING unless ``end_time`` is set (the vendor's other "stop
        polling" signal), which reads as COMPLETED; ``completed`` is COMPLETED; ``failed`` is FAILED
        with the vendor's message. Any other status fails closed. A 404 for a job id WillSuite itself
        issued is a terminal :class:`ProviderJobFailedError`: its outcome can never be learned.
        """
        job = self._get_job(chunk, Phase.STATUS)
        detail = {
            "totalRecords": job.total_records,
            "effectedRecords": job.effected_records,
            "endTime": job.end_time,
        }
        if job.status == "failed":
            return StatusReport(
                state=ChunkState.FAILED,
                provider_status=job.status,
                progress=100.0,
                error=ErrorInfo(code=ProviderJobFailedError.code, message=_job_failure_text(job.message)),
                detail=detail,
            )
        if job.status == "completed" or job.end_time is not None:
            return StatusReport(
                state=ChunkState.COMPLETED, provider_status=job.status, progress=100.0, detail=detail
            )
        return StatusReport(state=ChunkState.RUNNING, provider_status=job.status, detail=detail)

    # -- results -------------------------------------------------------------------------------------
    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """One outcome per case, from the job's counts and its message; see :func:`attribute`."""
        job = self._get_job(chunk, Phase.RESULTS)
        if job.status in RUNNING_STATUSES and job.end_time is None:
            raise ProviderResponseError(f"the job is {job.status!r} again after it was reported finished")
        parsed = parse_message(job.message)
        ids = [str(j.get("id", "")).lower() for j in jobs]
        strays = sorted(c for c in parsed.failures if c not in set(ids))
        if strays:
            logger.warning(
                "WillSuite named cases that were not in the chunk; ignored",
                extra={"job": job.id, "cases": strays[:20], "count": len(strays)},
            )
        verdict = attribute(job, parsed, ids)
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
                    error=ErrorInfo(code=RECORD_FAILED, message=clip(reason)),
                )
            else:
                yield Outcome(**base, outcome=verdict.kind, error=verdict.error, detail=verdict.detail)


@dataclass(frozen=True)
class Verdict:
    """What can be said of every case a job did not name as failed."""

    kind: OutcomeKind
    error: ErrorInfo | None = None
    detail: str | None = None


def attribute(job: _ApiJob, parsed: ParsedMessage, ids: Sequence[str]) -> Verdict:
    """The outcome of the cases a finished job did not name, as far as its counts prove it.

    ``total_records`` is "the exact number of items accepted" and ``effected_records`` the number it
    changed; WillSuite never says which ones.

    * **Completed job.** When it accepted as many cases as were sent, every unnamed case succeeded; the
      detail says ``effected`` when all of them were changed, ``unchanged`` when none was (already up to
      date), else ``effected_or_unchanged``. When it counted fewer (or more, or none), which cases it
      left out cannot be told: no unnamed case is credited (``not_processed``, ``WILLSUITE_NOT_COUNTED``).
      Counts that contradict each other (more changed than accepted) are ``WILLSUITE_COUNTS_INCONSISTENT``.
    * **Failed job.** Nothing changed (``effected_records`` 0): every unnamed case failed with the job's
      message. Every unnamed case changed, with all cases accepted: they succeeded (``effected``) before
      the job failed. Some changed: which ones is unknown, so each is ``not_processed``
      (``WILLSUITE_PARTLY_APPLIED``).
    """
    sent = len(ids)
    unnamed = sum(1 for c in ids if c not in parsed.failures)
    total, effected = job.total_records, job.effected_records
    counted = total == sent
    if job.status == "failed":
        if effected == 0:
            return Verdict(
                OutcomeKind.FAILED,
                ErrorInfo(code=ProviderJobFailedError.code, message=_job_failure_text(job.message, parsed)),
            )
        if counted and effected == unnamed:
            return Verdict(OutcomeKind.SUCCEEDED, detail=EFFECTED)
        if effected is not None and counted and 0 < effected < unnamed:
            return Verdict(
                OutcomeKind.NOT_PROCESSED,
                ErrorInfo(
                    code=PARTLY_APPLIED,
                    message=f"the WillSuite job failed after changing {effected} of the {unnamed} cases "
                    "it did not name as failed, without saying which; this case may or may not have "
                    "been changed",
                ),
            )
        return Verdict(OutcomeKind.NOT_PROCESSED, _inconsistent(total, effected, sent, unnamed))
    if not counted:
        said = "did not count the cases it accepted" if total is None else f"accepted {total} of {sent} cases"
        return Verdict(
            OutcomeKind.NOT_PROCESSED,
            ErrorInfo(
                code=NOT_COUNTED,
                message=f"WillSuite {said} and does not say which it left out; "
                "this case may not have been applied",
            ),
        )
    if effected is None:
        return Verdict(OutcomeKind.SUCCEEDED, detail=EFFECTED_OR_UNCHANGED)
    if not 0 <= effected <= unnamed:
        return Verdict(OutcomeKind.NOT_PROCESSED, _inconsistent(total, effected, sent, unnamed))
    if effected == unnamed:
        return Verdict(OutcomeKind.SUCCEEDED, detail=EFFECTED)
    if effected == 0:
        return Verdict(OutcomeKind.SUCCEEDED, detail=UNCHANGED)
    return Verdict(OutcomeKind.SUCCEEDED, detail=EFFECTED_OR_UNCHANGED)


def _inconsistent(total: int | None, effected: int | None, sent: int, unnamed: int) -> ErrorInfo:
    return ErrorInfo(
        code=COUNTS_INCONSISTENT,
        message=f"WillSuite's counts do not fit the {sent} cases sent ({unnamed} not named as failed): "
        f"total_records {total}, effected_records {effected}; this case's outcome cannot be told",
    )


def _job_failure_text(message: str | None, parsed: ParsedMessage | None = None) -> str:
    """The vendor's words for a failed job, for the cases it did not name: its text outside the
    failure blocks when there is some, else the whole message."""
    if parsed is not None and parsed.failures:
        if parsed.other:
            return clip(f"the WillSuite job failed: {parsed.other}")
        return "the WillSuite job failed; it gave reasons for other cases but none for this one"
    if message and message.strip():
        return clip(message.strip())
    return "the WillSuite job failed without a message"
