"""iVvy: any API action, run as an asynchronous batch of up to 200 jobs.

Dialect, in short (``docs/providers/ivvy.md`` has the whole of it):

* Every call is a signed ``POST {baseUrl}/api/1.0/{namespace}?action={action}`` with a JSON body
  (HMAC-SHA1, :mod:`batchbridge.providers.ivvy_signing`). There is no token, so nothing is cached
  across invocations.
* ``batch?action=run`` takes ``{"jobs": [{namespace, action, params}], "callbackUrl"}`` and answers
  ``{"asyncId": <32 hex>}``; ``progress`` answers ``{"progress": 0..100}``; ``results`` answers one
  result per job, each echoing the job's ``request`` and holding that action's own response or error body.
* Errors are ``{errorCode, message, specificCode, additionalMessages}``. An error body is one whatever
  HTTP status carries it (a 200 included), and ``errorCode`` -- which may be one of iVvy's own 460-463 --
  is what the adapter decides on, then ``specificCode`` where iVvy documents one.
* Results are kept for two days. There is no cancel.

Error mapping (the shared table, with iVvy's exceptions):

==========================================  ===================================================
iVvy answer                                 BatchBridge error
==========================================  ===================================================
429                                         ProviderThrottledError (with Retry-After)
5xx, 460 unknown, 461 failed request        ProviderUnavailableError (retried); on a submit that
                                            went out, SubmitUnconfirmedError (never resent)
401, 403, 462 session expired, 463 revoked  ProviderAuthError (names the specificCode, e.g. 23005)
submit: any other 4xx (24092, 24093,        BatchRejectedError, code ``IVVY_<specificCode>``
24091, 24448, ...)
404 without an iVvy error body              ConfigurationError (no iVvy API at that baseUrl)
progress: 24105 could not find batch        ResultsExpiredError (the batch is gone)
results: 24115 could not find batch         ResultsExpiredError
results: 24114 batch job not completed      ProviderUnavailableError (retried: see ``collect``)
a body outside the documented shape         ProviderResponseError
==========================================  ===================================================

460 and 461 are listed by iVvy with no more words than "Unknown" and "Failed Request". Neither says the
request was refused for its content (400) or its credentials (401, 403, 462, 463), so both are read as
failures on iVvy's side, like a 5xx: a read is asked again, and a submit that got one may or may not
have saved the batch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from pydantic import Field, StrictStr, field_validator

from batchbridge import limits
from batchbridge.errors import (
    ConfigurationError,
    ProviderAuthError,
    ProviderResponseError,
    ProviderUnavailableError,
    ResultsExpiredError,
)
from batchbridge.models import ChunkState, ErrorInfo, Outcome, OutcomeKind
from batchbridge.observability import logger
from batchbridge.providers.base import Capabilities, ChunkInfo, Job, Provider, StatusReport, register
from batchbridge.providers.http import expect_dict
from batchbridge.providers.ivvy_signing import API_VERSION, signed_headers
from batchbridge.providers.protocol import Phase, Problem, Rule, clip
from batchbridge.providers.values import PortableObject

MAX_JOBS_PER_RUN = 200
RETENTION_SECONDS = 2 * 24 * 3600  # "the data will not be available after 2 days"

# iVvy specific codes the adapter acts on.
STALE_REQUEST = 23005
BATCH_NOT_FOUND_PROGRESS = 24105
BATCH_NOT_COMPLETED = 24114
BATCH_NOT_FOUND_RESULTS = 24115
AUTH_STATUSES = frozenset({401, 403, 462, 463})  # 462 session expired, 463 key revoked
SERVER_SIDE_STATUSES = frozenset({460, 461})  # "Unknown", "Failed Request"
UNKNOWN_STATUS = 460

NO_RESULT = "IVVY_NO_RESULT"
AMBIGUOUS_RESULT = "IVVY_AMBIGUOUS_RESULT"
NO_RESPONSE = "IVVY_NO_RESPONSE"
JOB_FAILED = "IVVY_JOB_FAILED"

_ASYNC_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
MAX_KEPT_RESPONSE_BYTES = 8 * 1024  # a per-job response larger than this is not copied into the outcome


# --- job model --------------------------------------------------------------------------------------
class IvvyJob(Job):
    """One iVvy API call inside a batch: ``namespace``, ``action`` and the action's ``params``.

    ``params`` are the action's own and pass through untouched; they must be portable JSON (no NaN or
    Infinity, integers of at most 15 digits). iVvy echoes them back with each result, which is how a
    result is matched to its job.
    """

    namespace: StrictStr = Field(
        min_length=1, max_length=64, pattern=_NAME, description="the iVvy namespace, e.g. 'venue'"
    )
    action: StrictStr = Field(
        min_length=1,
        max_length=128,
        pattern=_NAME,
        description="the action in that namespace, e.g. 'addOrUpdateBookingSession'",
    )
    params: PortableObject = Field(default_factory=dict, description="the action's own parameters")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "clientRef": "s-1",
                    "namespace": "venue",
                    "action": "addOrUpdateBookingSession",
                    "params": {
                        "spaceVenueId": 1,
                        "bookingId": 15722,
                        "contactId": 10,
                        "name": "Keynote",
                        "startDate": "2026-03-02",
                    },
                }
            ]
        }
    }

    @field_validator("namespace")
    @classmethod
    def _not_batch(cls, value: str) -> str:
        if value.lower() == "batch":
            raise ValueError("a batch job cannot call iVvy's own batch namespace")
        return value


# --- iVvy's error body ------------------------------------------------------------------------------
@dataclass
class IvvyError:
    """iVvy's ``{errorCode, message, specificCode, additionalMessages}``, as far as it is present."""

    error_code: int | None = None
    specific_code: int | None = None
    message: str = ""
    additional: list[str] = field(default_factory=list)

    @classmethod
    def from_body(cls, body: Any) -> IvvyError | None:
        """The error a body holds, or None when it is not an iVvy error body."""
        if not isinstance(body, dict) or (body.get("errorCode") is None and body.get("specificCode") is None):
            return None
        error = cls(
            error_code=_as_int(body.get("errorCode")), specific_code=_as_int(body.get("specificCode"))
        )
        message = body.get("message")
        if isinstance(message, str):
            error.message = message.strip()
        extra = body.get("additionalMessages")
        if isinstance(extra, str):
            extra = [extra]
        if isinstance(extra, list):
            error.additional = [
                e if isinstance(e, str) else json.dumps(e) for e in extra if e not in (None, "")
            ]
        elif isinstance(extra, dict):
            error.additional = [f"{k}: {v}" for k, v in extra.items()]
        return error

    @property
    def code(self) -> str:
        """``IVVY_<specificCode>``, else ``IVVY_HTTP_<errorCode>``."""
        if self.specific_code is not None:
            return f"IVVY_{self.specific_code}"
        return f"IVVY_HTTP_{self.error_code}" if self.error_code is not None else JOB_FAILED

    @property
    def text(self) -> str:
        """iVvy's message followed by its additional messages."""
        text = self.message or "iVvy gave no message"
        if self.additional:
            text += f" ({'; '.join(self.additional)})"
        return clip(text)

    def problem(self, status: int) -> Problem:
        """As a :class:`Problem`: decided on ``errorCode`` when it is an error status, else on ``status``
        when that is one, else as iVvy's 460 "unknown"."""
        decided = self.error_code if self.error_code is not None and self.error_code >= 400 else status
        if decided < 400:
            decided = UNKNOWN_STATUS
        words = self.text
        if self.specific_code is not None:
            words = f"specificCode {self.specific_code}: {words}"
        return Problem(decided, self.code, words, detail=self.specific_code)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _kept(outcome: Outcome) -> Outcome:
    """The outcome with its response when the response's JSON is small enough to keep, else without it
    and with a note saying so."""
    text = outcome.response_json()
    if text is None:
        return outcome
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size <= MAX_KEPT_RESPONSE_BYTES:
        return outcome
    outcome.response = None
    outcome.detail = f"iVvy's response ({size} bytes) was too large to keep"
    return outcome


# --- the adapter ------------------------------------------------------------------------------------
_EXPIRED = Rule(
    ResultsExpiredError, "iVvy can no longer find this batch; its jobs' outcomes cannot be learned"
)


@register
class IvvyProvider(Provider):
    """iVvy batches: ``batch?action=run`` / ``progress`` / ``results``, signed with the connection's
    ``apiKey`` and ``apiSecret``.

    The deadline tops out at 44 hours: iVvy drops results 48 hours after the batch, and the last
    four hours are left for collecting (and the retries collecting may need).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        name="ivvy",
        title="iVvy",
        max_jobs_per_submit=MAX_JOBS_PER_RUN,
        max_jobs_per_batch=limits.MAX_JOBS_PER_BATCH,
        supports_callback=True,
        supports_cancel=False,
        min_poll_seconds=10,
        default_deadline_seconds=6 * 3600,
        max_deadline_seconds=44 * 3600,
        result_retention_seconds=RETENTION_SECONDS,
    )
    job_model: ClassVar[type[Job]] = IvvyJob

    # -- dialect: answers ----------------------------------------------------------------------------
    def vendor_problem(self, body: Any, status: int) -> Problem | None:
        error = IvvyError.from_body(body)
        return error.problem(status) if error is not None else None

    def error_in_success(self, body: Any, status: int) -> Problem | None:
        return self.vendor_problem(body, status)  # an iVvy error body is one whatever the status

    def decide(self, problem: Problem, phase: Phase) -> Rule:
        if problem.status in AUTH_STATUSES:
            hint = " (check the clock: iVvy allows five minutes)" if problem.detail == STALE_REQUEST else ""
            return Rule(
                ProviderAuthError,
                f"iVvy refused the credentials of connection {self.connection.name!r}{hint}",
            )
        if problem.status in SERVER_SIDE_STATUSES:
            return Rule(ProviderUnavailableError, "iVvy failed on its side")
        if problem.status == 404 and problem.code == self.http_code(404):
            return Rule(
                ConfigurationError,
                f"no iVvy API there; check the baseUrl of connection {self.connection.name!r}",
            )
        if phase is Phase.STATUS and problem.detail == BATCH_NOT_FOUND_PROGRESS:
            return _EXPIRED
        if phase is Phase.RESULTS and problem.detail == BATCH_NOT_FOUND_RESULTS:
            return Rule(
                ResultsExpiredError, "iVvy no longer holds this batch's results (it keeps them two days)"
            )
        return super().decide(problem, phase)

    # -- transport -----------------------------------------------------------------------------------
    @property
    def _api_base(self) -> str:
        base = self.base_url
        suffix = f"/api/{API_VERSION}"
        return base if base.endswith(suffix) else base + suffix

    def _post(
        self, namespace: str, action: str, body: dict[str, Any], *, commit: bool = False
    ) -> httpx.Response:
        """One signed call. The exact bytes sent are the bytes signed."""
        url = httpx.URL(f"{self._api_base}/{namespace}", params={"action": action})
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = signed_headers(
            api_key=self.connection.secret("apiKey"),
            secret=self.connection.secret("apiSecret"),
            body=content,
            request_uri=url.raw_path.decode("ascii"),
        )
        headers["Accept"] = "application/json"
        return self.request("POST", str(url), content=content, headers=headers, commit=commit)

    def _async_body(self, chunk: ChunkInfo) -> dict[str, str]:
        if not chunk.provider_ref:
            raise ConfigurationError(f"chunk {chunk.index} has no iVvy asyncId")
        return {"async": chunk.provider_ref}

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """``batch?action=run`` with the chunk's jobs; returns iVvy's asyncId.

        ``clientRef`` stays with BatchBridge. Every documented refusal (24092 incorrect job format, 24093
        empty job parameter, 24091 not saved, 24448 over 200 jobs) and any other 4xx rejects the chunk as
        :class:`BatchRejectedError` with code ``IVVY_<specificCode>``. An accepting answer without the
        documented 32-hex asyncId is unconfirmed: the batch may exist at iVvy.
        """
        body: dict[str, Any] = {
            "jobs": [
                {"namespace": job["namespace"], "action": job["action"], "params": job.get("params") or {}}
                for job in jobs
            ]
        }
        if chunk.callback_url:
            body["callbackUrl"] = chunk.callback_url
        response = self._post("batch", "run", body, commit=True)
        self.check_answer(response, Phase.SUBMIT)
        data = expect_dict(self.read_json(response))
        async_id = data.get("asyncId")
        if not isinstance(async_id, str) or not _ASYNC_ID.match(async_id):
            raise ProviderResponseError(
                f"asyncId {str(async_id)[:80]!r} is not the documented 32 hex characters"
            )
        return async_id.lower()

    # -- status --------------------------------------------------------------------------------------
    def check(self, chunk: ChunkInfo) -> StatusReport:
        """``batch?action=progress``: 100 is COMPLETED, anything from 0 to below 100 is RUNNING.

        iVvy has no status word, so ``provider_status`` reads ``progress <n>``. A batch iVvy cannot
        find (24105) was issued by iVvy itself, so it is gone (past its two-day retention, or removed):
        :class:`ResultsExpiredError`, terminal.
        """
        response = self._post("batch", "progress", self._async_body(chunk))
        self.check_answer(response, Phase.STATUS)
        progress = _progress(expect_dict(self.read_json(response)))
        state = ChunkState.COMPLETED if progress >= 100 else ChunkState.RUNNING
        return StatusReport(
            state=state,
            provider_status=f"progress {progress:g}",
            progress=progress,
            detail={"progress": progress},
        )

    # -- results -------------------------------------------------------------------------------------
    def _results(self, chunk: ChunkInfo) -> dict[str, Any] | None:
        """The results answer, or None while iVvy says the batch has not completed (24114)."""
        response = self._post("batch", "results", self._async_body(chunk))
        problem = self.answer_problem(response, Phase.RESULTS)
        if problem is not None and problem.detail == BATCH_NOT_COMPLETED:
            logger.info("iVvy batch not completed yet", extra={"chunk": chunk.index})
            return None
        self.check_answer(response, Phase.RESULTS)
        data = expect_dict(self.read_json(response))
        results = data.get("results")
        if not isinstance(results, list):
            raise ProviderResponseError(f"the answer has no results list (fields: {sorted(data)})")
        # Each result is an object (one echoes no job: it is ignored); anything else in the list is not an
        # answer iVvy documents, and taking it as "no result" would leave every job without its outcome.
        if not all(isinstance(result, dict) for result in results):
            raise ProviderResponseError("the answer's results are not all objects")
        answered = data.get("asyncId")
        if (
            isinstance(answered, str)
            and chunk.provider_ref
            and answered.lower() != chunk.provider_ref.lower()
        ):
            raise ProviderResponseError(f"asked for batch {chunk.provider_ref}, got {answered[:64]}")
        return data

    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """One outcome per job from ``batch?action=results``.

        * Each result is matched to its job by what it echoes: its namespace, action and ``request`` must
          equal the job's. Order is not trusted. Jobs that sent the very same request share that
          request's results in order, when there are exactly as many as jobs.
        * A job no result echoes is ``not_processed`` (``IVVY_NO_RESULT``). A request echoed more often
          than it was sent, or less, is ``not_processed`` for every job that sent it
          (``IVVY_AMBIGUOUS_RESULT``) unless the extra results all say the same: then they are one
          result, repeated. A result that echoes no job is logged and ignored; a ``results`` list holding
          anything but objects is not iVvy's answer: :class:`ProviderResponseError`, asked again.
        * A response that is an iVvy error body (``errorCode`` or ``specificCode``, or ``success:
          false``) fails the job with ``IVVY_<specificCode>`` and iVvy's message plus its additional
          messages; any other response succeeds, with ``providerRef`` from its ``id``.
        * 24114 (not completed) after progress said 100 is iVvy catching up: it is raised as
          :class:`ProviderUnavailableError` so the workflow's Retry backs off and asks again.
        * 24115 (gone) raises :class:`ResultsExpiredError`: the core records the chunk's jobs as
          ``not_processed``.
        """
        data = self._results(chunk)
        if data is None:
            raise ProviderUnavailableError(
                f"iVvy says the batch has not completed yet (specificCode {BATCH_NOT_COMPLETED}); "
                "asking again later"
            )
        matched = match_results(data["results"], jobs)
        for i, job in enumerate(jobs):
            index = chunk.first_job_index + i
            client_ref = job.get("clientRef")
            found = matched[i]
            if isinstance(found, dict):
                yield _outcome(index, client_ref, found)
            else:
                code, message = found
                yield Outcome(
                    index=index,
                    client_ref=client_ref,
                    outcome=OutcomeKind.NOT_PROCESSED,
                    error=ErrorInfo(code=code, message=message),
                )

    def callback_ref(self, body: Any) -> str | None:
        """iVvy posts ``{asyncId, results}``: the asyncId names the chunk."""
        ref = body.get("asyncId") if isinstance(body, dict) else None
        return ref.lower() if isinstance(ref, str) and ref else None

    def confirm_callback(self, chunk: ChunkInfo, body: Any) -> bool:
        """iVvy's callback is not signed, so its body is only a hint: the chunk is finished when
        ``results`` answers for its asyncId (24114 means not yet). A body naming another asyncId is
        ignored. A batch iVvy no longer knows raises :class:`ResultsExpiredError`."""
        if isinstance(body, dict):
            named = body.get("asyncId")
            if isinstance(named, str) and chunk.provider_ref and named.lower() != chunk.provider_ref.lower():
                logger.warning(
                    "iVvy callback names another batch; ignored",
                    extra={"chunk": chunk.index, "asyncId": named[:64]},
                )
                return False
        return self._results_ready(chunk)

    def _results_ready(self, chunk: ChunkInfo) -> bool:
        response = self._post("batch", "results", self._async_body(chunk))
        problem = self.answer_problem(response, Phase.RESULTS)
        if problem is not None and problem.detail == BATCH_NOT_COMPLETED:
            return False
        self.check_answer(response, Phase.RESULTS)
        return True


def _progress(data: dict[str, Any]) -> float:
    value = data.get("progress")
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = "missing" if "progress" not in data else f"{value!r:.60}"
        raise ProviderResponseError(f"progress is {shown}, not a number from 0 to 100")
    progress = float(value)
    if not math.isfinite(progress) or not 0 <= progress <= 100:
        raise ProviderResponseError(f"progress {value!r} is outside 0 to 100")
    return progress


_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def _echo_key(namespace: Any, action: Any, request: Any) -> Hashable:
    """What a result must echo to belong to a job: namespace and action (iVvy's names are not case
    sensitive) and the request, compared as JSON values (see :func:`_json_value_key`)."""
    return (str(namespace).lower(), str(action).lower(), _json_value_key(request))


def _json_value_key(value: Any) -> Hashable:
    """A JSON value as a key that equals another's exactly when the two are the same JSON: an object's
    members in any order, an array's in order, and every scalar with its type (``1``, ``1.0``, ``true``
    and ``"1"`` are four different values). Anything but JSON is compared by its text, as JSON would
    write it with ``default=str``."""
    kind = type(value)
    if kind is dict:
        return frozenset([(str(k), _json_value_key(v)) for k, v in value.items()])
    if kind is list:
        return (list, tuple([_json_value_key(v) for v in value]))
    if kind is str or kind is int or kind is bool or value is None:
        return (kind, value)
    if kind is float:
        return (float, repr(value))  # NaN is equal to itself here, as "NaN" is in JSON text
    return (str, str(value))


def match_results(
    results: list[Any], jobs: Sequence[dict[str, Any]]
) -> list[dict[str, Any] | tuple[str, str]]:
    """Per job: its result, or ``(code, reason)`` when none can be told to be its own (see ``collect``)."""
    wanted: dict[Hashable, list[int]] = {}
    for i, job in enumerate(jobs):
        wanted.setdefault(_echo_key(job["namespace"], job["action"], job.get("params") or {}), []).append(i)
    echoed: dict[Hashable, list[dict[str, Any]]] = {}
    strays = 0
    for result in results:
        if not isinstance(result, dict) or "request" not in result:
            strays += 1
            continue
        key = _echo_key(result.get("namespace"), result.get("action"), result.get("request"))
        if key not in wanted:
            strays += 1
            continue
        echoed.setdefault(key, []).append(result)
    if strays:
        logger.warning(
            "iVvy returned results that echo no job of the chunk; ignored",
            extra={"count": strays, "results": len(results), "jobs": len(jobs)},
        )
    matched: list[dict[str, Any] | tuple[str, str]] = [
        (NO_RESULT, "iVvy returned no result that echoes this job's request") for _ in jobs
    ]
    for key, positions in wanted.items():
        found = echoed.get(key, [])
        if not found:
            continue
        if len(found) != len(positions):
            distinct = {_canonical(r.get("response")) for r in found}
            if len(positions) == 1 and len(distinct) == 1:
                found = found[:1]  # one result, repeated word for word
            else:
                reason = (
                    f"iVvy returned {len(found)} results for the {len(positions)} "
                    f"job{'s' if len(positions) > 1 else ''} that sent this request; "
                    "which is whose cannot be told"
                )
                for i in positions:
                    matched[i] = (AMBIGUOUS_RESULT, reason)
                continue
        for i, result in zip(positions, found, strict=True):
            matched[i] = result
    return matched


def _is_error_body(response: dict[str, Any]) -> bool:
    return (
        response.get("errorCode") is not None
        or response.get("specificCode") is not None
        or response.get("success") is False
    )


def _outcome(index: int, client_ref: str | None, result: dict[str, Any]) -> Outcome:
    response = result.get("response")
    if response is None:
        return Outcome(
            index=index,
            client_ref=client_ref,
            outcome=OutcomeKind.NOT_PROCESSED,
            error=ErrorInfo(code=NO_RESPONSE, message="iVvy's result for this job has no response"),
        )
    if isinstance(response, dict) and _is_error_body(response):
        error = IvvyError.from_body(response)
        if error is None or not (error.message or error.additional):
            code = error.code if error is not None else JOB_FAILED
            message = "iVvy reported the job as failed"
        else:
            code, message = error.code, error.text
        return _kept(
            Outcome(
                index=index,
                client_ref=client_ref,
                outcome=OutcomeKind.FAILED,
                error=ErrorInfo(code=code, message=message),
                response=response,
            )
        )
    provider_ref = None
    if isinstance(response, dict):
        ref = response.get("id")
        if ref is not None and not isinstance(ref, bool | dict | list):
            provider_ref = str(ref)
    return _kept(
        Outcome(
            index=index,
            client_ref=client_ref,
            outcome=OutcomeKind.SUCCEEDED,
            provider_ref=provider_ref,
            response=response,
        )
    )
