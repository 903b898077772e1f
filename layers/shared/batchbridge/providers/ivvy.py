"""iVvy: any API action, run as an asynchronous batch of up to 200 jobs.

Dialect, in short (see ``PROVIDERS.md`` §1):

* Every call is a signed ``POST {baseUrl}/api/1.0/{namespace}?action={action}`` with a JSON body
  (HMAC-SHA1, :mod:`batchbridge.providers.ivvy_signing`). There is no token, so nothing is cached
  across invocations.
* ``batch?action=run`` takes ``{"jobs": [{namespace, action, params}], "callbackUrl"}`` and answers
  ``{"asyncId": <32 hex>}``; ``progress`` answers ``{"progress": 0..100}``; ``results`` answers one
  result per job, in job order, each holding that action's own response or its own error body.
* Errors are ``{errorCode, message, specificCode, additionalMessages}`` with the HTTP status equal to
  ``errorCode``. The adapter decides on ``specificCode`` where iVvy documents one, else on the status.
* Results are kept for two days. There is no cancel.

Error mapping:

==========================================  ===================================================
iVvy answer                                 BatchBridge error
==========================================  ===================================================
429                                         ProviderThrottledError (with Retry-After)
5xx, connection refused                     ProviderUnavailableError
401, 403, 462 session expired, 463 revoked  ProviderAuthError (names the specificCode, e.g. 23005)
submit: any other 4xx (24092, 24093,        BatchRejectedError, code ``IVVY_<specificCode>``
24091, 24448, ...)
progress: 24105 could not find batch        ResultsExpiredError (the batch is gone)
results: 24115 could not find batch         ResultsExpiredError
results: 24114 batch job not completed      ProviderUnavailableError (retried: see ``collect``)
a body outside the documented shape         ProviderResponseError
==========================================  ===================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from pydantic import Field, StrictStr, field_validator

from batchbridge import limits
from batchbridge.errors import (
    BatchRejectedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderResponseError,
    ProviderUnavailableError,
    ResultsExpiredError,
)
from batchbridge.models import ChunkState, ErrorInfo, Outcome, OutcomeKind
from batchbridge.observability import logger
from batchbridge.providers.base import Capabilities, ChunkInfo, Job, Provider, StatusReport, register
from batchbridge.providers.http import expect_dict, json_body, raise_for_transient, send
from batchbridge.providers.ivvy_signing import API_VERSION, signed_headers

MAX_JOBS_PER_RUN = 200
RETENTION_SECONDS = 2 * 24 * 3600  # "the data will not be available after 2 days"

# iVvy specific codes the adapter acts on.
STALE_REQUEST = 23005
BATCH_NOT_FOUND_PROGRESS = 24105
BATCH_NOT_COMPLETED = 24114
BATCH_NOT_FOUND_RESULTS = 24115
AUTH_STATUSES = frozenset({401, 403, 462, 463})  # 462 session expired, 463 key revoked

NO_RESULT = "IVVY_NO_RESULT"
NO_RESPONSE = "IVVY_NO_RESPONSE"
JOB_FAILED = "IVVY_JOB_FAILED"

_ASYNC_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
_MAX_MESSAGE = 1000  # longest vendor text copied into an error message
MAX_KEPT_RESPONSE_BYTES = 8 * 1024  # a per-job response larger than this is not copied into the outcome


# --- job model --------------------------------------------------------------------------------------
class IvvyJob(Job):
    """One iVvy API call inside a batch: ``namespace``, ``action`` and the action's ``params``.

    Example: ``{"clientRef": "s-1", "namespace": "venue", "action": "addOrUpdateBookingSession",
    "params": {"spaceVenueId": 1, "bookingId": 15722, "contactId": 10, "name": "Keynote",
    "startDate": "2026-03-02"}}``. ``params`` are the action's own and pass through untouched.
    """

    namespace: StrictStr = Field(min_length=1, max_length=64, pattern=_NAME)
    action: StrictStr = Field(min_length=1, max_length=128, pattern=_NAME)
    params: dict[str, Any] = Field(default_factory=dict)

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

    status: int | None = None  # HTTP status, for top-level errors
    error_code: int | None = None
    specific_code: int | None = None
    message: str = ""
    additional: list[str] = field(default_factory=list)

    @classmethod
    def from_body(cls, body: Any, status: int | None = None) -> IvvyError:
        error = cls(status=status)
        if not isinstance(body, dict):
            return error
        error.error_code = _as_int(body.get("errorCode"))
        error.specific_code = _as_int(body.get("specificCode"))
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

    @classmethod
    def from_response(cls, response: httpx.Response) -> IvvyError:
        try:
            body = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        return cls.from_body(body, response.status_code)

    @property
    def code(self) -> str:
        """``IVVY_<specificCode>``, else ``IVVY_HTTP_<status or errorCode>``."""
        if self.specific_code is not None:
            return f"IVVY_{self.specific_code}"
        status = self.error_code if self.error_code is not None else self.status
        return f"IVVY_HTTP_{status}" if status is not None else JOB_FAILED

    @property
    def text(self) -> str:
        """iVvy's message followed by its additional messages."""
        text = self.message or "iVvy gave no message"
        if self.additional:
            text += f" ({'; '.join(self.additional)})"
        return _clip(text)

    def describe(self) -> str:
        """For exception messages: ``HTTP 400, specificCode 24092: Incorrect job format (...)``."""
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.specific_code is not None:
            parts.append(f"specificCode {self.specific_code}")
        return f"{', '.join(parts)}: {self.text}" if parts else self.text


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _is_error_body(response: dict[str, Any]) -> bool:
    return (
        response.get("errorCode") is not None
        or response.get("specificCode") is not None
        or response.get("success") is False
    )


def _small(value: Any) -> tuple[Any, str | None]:
    """The value when its JSON is small enough to keep in an outcome, else None and a note saying so."""
    size = len(json.dumps(value, separators=(",", ":"), default=str))
    if size <= MAX_KEPT_RESPONSE_BYTES:
        return value, None
    return None, f"iVvy's response ({size} bytes) was too large to keep"


# --- the adapter ------------------------------------------------------------------------------------
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

    # -- transport -----------------------------------------------------------------------------------
    @property
    def _api_base(self) -> str:
        base = self.connection.base_url.strip().rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise ConfigurationError(
                f"connection {self.connection.name!r}: baseUrl must be an http(s) URL, e.g. "
                "https://api.ap-southeast-2.ivvy.com"
            )
        suffix = f"/api/{API_VERSION}"
        return base if base.endswith(suffix) else base + suffix

    def _post(
        self, namespace: str, action: str, body: dict[str, Any], *, what: str, safe_to_repeat: bool = True
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
        return send(
            lambda: self.client.post(url, content=content, headers=headers),
            what=what,
            safe_to_repeat=safe_to_repeat,
        )

    def _raise_common(self, response: httpx.Response, *, what: str) -> IvvyError | None:
        """Throttling, server errors and refused credentials; any other error body is returned for the
        caller to interpret, and None means HTTP 2xx."""
        raise_for_transient(response, what=what)
        if 200 <= response.status_code < 300:
            return None
        error = IvvyError.from_response(response)
        if response.status_code in AUTH_STATUSES or error.error_code in AUTH_STATUSES:
            hint = (
                " (check the clock: iVvy allows five minutes)" if error.specific_code == STALE_REQUEST else ""
            )
            raise ProviderAuthError(
                f"{what}: iVvy refused the credentials of connection {self.connection.name!r} "
                f"({error.describe()}){hint}"
            )
        if response.status_code == 404 and error.error_code is None:
            raise ConfigurationError(
                f"{what}: no iVvy API at {response.request.url.copy_with(query=None)} (HTTP 404); "
                f"check the baseUrl of connection {self.connection.name!r}"
            )
        return error

    def _async_body(self, chunk: ChunkInfo, *, what: str) -> dict[str, str]:
        if not chunk.provider_ref:
            raise ConfigurationError(f"{what}: chunk {chunk.index} has no iVvy asyncId")
        return {"async": chunk.provider_ref}

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """``batch?action=run`` with the chunk's jobs; returns iVvy's asyncId.

        ``clientRef`` stays with BatchBridge. The call is not repeated on a lost answer (the transport
        error escapes for the core to record as ambiguous). Every documented refusal (24092 incorrect
        job format, 24093 empty job parameter, 24091 not saved, 24448 over 200 jobs) and any other 4xx
        rejects the chunk as :class:`BatchRejectedError` with code ``IVVY_<specificCode>``.
        """
        what = f"iVvy batch run (chunk {chunk.index})"
        body: dict[str, Any] = {
            "jobs": [
                {"namespace": job["namespace"], "action": job["action"], "params": job.get("params") or {}}
                for job in jobs
            ]
        }
        if chunk.callback_url:
            body["callbackUrl"] = chunk.callback_url
        response = self._post("batch", "run", body, what=what, safe_to_repeat=False)
        error = self._raise_common(response, what=what)
        if error is not None:
            if 400 <= response.status_code < 500:
                raise BatchRejectedError(
                    f"{what}: iVvy refused the jobs ({error.describe()})", code=error.code
                )
            raise ProviderResponseError(f"{what}: unexpected {error.describe()}")
        data = expect_dict(json_body(response, what=what), what=what)
        async_id = data.get("asyncId")
        if not isinstance(async_id, str) or not _ASYNC_ID.match(async_id):
            raise ProviderResponseError(
                f"{what}: asyncId {str(async_id)[:80]!r} is not the documented 32 hex characters"
            )
        return async_id.lower()

    # -- status --------------------------------------------------------------------------------------
    def check(self, chunk: ChunkInfo) -> StatusReport:
        """``batch?action=progress``: 100 is COMPLETED, anything from 0 to below 100 is RUNNING.

        iVvy has no status word, so ``provider_status`` reads ``progress <n>``. A batch iVvy cannot
        find (24105) was issued by iVvy itself, so it is gone (past its two-day retention, or removed):
        :class:`ResultsExpiredError`, terminal.
        """
        what = f"iVvy batch progress (chunk {chunk.index}, asyncId {chunk.provider_ref})"
        response = self._post("batch", "progress", self._async_body(chunk, what=what), what=what)
        error = self._raise_common(response, what=what)
        if error is not None:
            if error.specific_code == BATCH_NOT_FOUND_PROGRESS:
                raise ResultsExpiredError(
                    f"{what}: iVvy can no longer find this batch ({error.describe()}); "
                    "its jobs' outcomes cannot be learned"
                )
            raise ProviderJobFailedError(f"{what}: iVvy refused the progress request ({error.describe()})")
        data = expect_dict(json_body(response, what=what), what=what)
        progress = _progress(data, what=what)
        state = ChunkState.COMPLETED if progress >= 100 else ChunkState.RUNNING
        return StatusReport(
            state=state,
            provider_status=f"progress {progress:g}",
            progress=progress,
            detail={"progress": progress},
        )

    # -- results -------------------------------------------------------------------------------------
    def _results(self, chunk: ChunkInfo, *, what: str) -> dict[str, Any] | None:
        """The results answer, or None while iVvy says the batch has not completed (24114)."""
        response = self._post("batch", "results", self._async_body(chunk, what=what), what=what)
        error = self._raise_common(response, what=what)
        if error is not None:
            if error.specific_code == BATCH_NOT_FOUND_RESULTS:
                raise ResultsExpiredError(
                    f"{what}: iVvy no longer holds this batch's results ({error.describe()}); "
                    "they are kept for two days"
                )
            if error.specific_code == BATCH_NOT_COMPLETED:
                logger.info("iVvy batch not completed yet", extra={"chunk": chunk.index})
                return None
            raise ProviderJobFailedError(f"{what}: iVvy refused the results request ({error.describe()})")
        data = expect_dict(json_body(response, what=what), what=what)
        results = data.get("results")
        if not isinstance(results, list):
            raise ProviderResponseError(f"{what}: the answer has no results list (fields: {sorted(data)})")
        answered = data.get("asyncId")
        if (
            isinstance(answered, str)
            and chunk.provider_ref
            and answered.lower() != chunk.provider_ref.lower()
        ):
            raise ProviderResponseError(f"{what}: asked for batch {chunk.provider_ref}, got {answered}")
        return data

    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """One outcome per job from ``batch?action=results``.

        * Results come in job order, so ``results[i]`` belongs to ``jobs[i]``. Each pairing is checked:
          a result naming another namespace or action means the order cannot be trusted, and the
          chunk's results are refused as :class:`ProviderResponseError` rather than misattributed.
        * Fewer results than jobs: the jobs without one are ``not_processed`` (``IVVY_NO_RESULT``).
          More results than jobs: kept only if every result paired with a job echoes that job's own
          request (so the order is proven), the extras are then logged and ignored; otherwise the
          chunk is refused as :class:`ProviderResponseError`.
        * A response that is an iVvy error body (``errorCode`` or ``specificCode``, or ``success:
          false``) fails the job with ``IVVY_<specificCode>`` and iVvy's message plus its additional
          messages; any other response succeeds, with ``providerRef`` from its ``id``.
        * 24114 (not completed) after progress said 100 is iVvy catching up: it is raised as
          :class:`ProviderUnavailableError` so the workflow's Retry backs off and asks again, instead
          of the batch failing or being reported before its results exist.
        * 24115 (gone) raises :class:`ResultsExpiredError`: the core records the chunk's jobs as
          ``not_processed``.
        """
        what = f"iVvy batch results (chunk {chunk.index}, asyncId {chunk.provider_ref})"
        data = self._results(chunk, what=what)
        if data is None:
            raise ProviderUnavailableError(
                f"{what}: iVvy says the batch has not completed yet (specificCode {BATCH_NOT_COMPLETED}); "
                "asking again later"
            )
        results = data["results"]
        _check_alignment(results, jobs, what=what)
        for i, job in enumerate(jobs):
            index = chunk.first_job_index + i
            client_ref = job.get("clientRef")
            if i >= len(results):
                yield Outcome(
                    index=index,
                    client_ref=client_ref,
                    outcome=OutcomeKind.NOT_PROCESSED,
                    error=ErrorInfo(
                        code=NO_RESULT,
                        message=(
                            f"iVvy returned {len(results)} results for {len(jobs)} jobs; none for this one"
                        ),
                    ),
                )
                continue
            yield _outcome(index, client_ref, results[i])

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
        what = f"iVvy callback confirmation (chunk {chunk.index}, asyncId {chunk.provider_ref})"
        return self._results(chunk, what=what) is not None


def _progress(data: dict[str, Any], *, what: str) -> float:
    value = data.get("progress")
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = "missing" if "progress" not in data else f"{value!r:.60}"
        raise ProviderResponseError(f"{what}: progress is {shown}, not a number from 0 to 100")
    progress = float(value)
    if not math.isfinite(progress) or not 0 <= progress <= 100:
        raise ProviderResponseError(f"{what}: progress {value!r} is outside 0 to 100")
    return progress


def _check_alignment(results: list[Any], jobs: Sequence[dict[str, Any]], *, what: str) -> None:
    """Refuse results whose order cannot be matched to the jobs (see :meth:`IvvyProvider.collect`)."""
    for i, (result, job) in enumerate(zip(results, jobs, strict=False)):
        if not isinstance(result, dict):
            raise ProviderResponseError(f"{what}: result {i} is a {type(result).__name__}, not an object")
        for key in ("namespace", "action"):
            got = result.get(key)
            if got is not None and str(got).lower() != str(job[key]).lower():
                raise ProviderResponseError(
                    f"{what}: result {i} is for {key} {str(got)[:60]!r} but job {i} has {job[key]!r}; "
                    "the results cannot be matched to the jobs"
                )
    if len(results) > len(jobs):
        proven = all(
            result.get("request") == (job.get("params") or {})
            for result, job in zip(results, jobs, strict=False)
        )
        if not proven:
            raise ProviderResponseError(
                f"{what}: iVvy returned {len(results)} results for {len(jobs)} jobs and their requests "
                "do not match the jobs in order; the results cannot be matched to the jobs"
            )
        logger.warning(
            "iVvy returned more results than jobs; the extra ones are ignored",
            extra={"jobs": len(jobs), "results": len(results)},
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
    kept, note = _small(response)
    if isinstance(response, dict) and _is_error_body(response):
        error = IvvyError.from_body(response)
        message = error.text if (error.message or error.additional) else "iVvy reported the job as failed"
        return Outcome(
            index=index,
            client_ref=client_ref,
            outcome=OutcomeKind.FAILED,
            error=ErrorInfo(code=error.code, message=message),
            response=kept,
            detail=note,
        )
    provider_ref = None
    if isinstance(response, dict):
        ref = response.get("id")
        if ref is not None and not isinstance(ref, bool | dict | list):
            provider_ref = str(ref)
    return Outcome(
        index=index,
        client_ref=client_ref,
        outcome=OutcomeKind.SUCCEEDED,
        provider_ref=provider_ref,
        response=kept,
        detail=note,
    )
