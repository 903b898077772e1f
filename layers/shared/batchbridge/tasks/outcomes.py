"""One outcome per job: the guard every adapter's results pass through, and the outcome's two encodings
(a line of the results files, with the job as submitted beside it; a row of the table), made together
so that each response is encoded to JSON once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from batchbridge import limits
from batchbridge.models import Counts, ErrorInfo, Outcome, OutcomeKind
from batchbridge.observability import logger
from batchbridge.redact import scrub
from batchbridge.repository import OutcomeRow

#: A row keeps the response when its JSON is at most this long; the results files keep it up to
#: ``limits.MAX_RESPONSE_BYTES`` (a longer one is replaced there by ``{"truncated": true, "bytes": n}``).
ROW_RESPONSE_LIMIT = limits.MAX_ROW_RESPONSE_BYTES
NO_RESULT = ErrorInfo(code="NO_RESULT", message="the provider returned no result for this job")
CONFLICTING = ErrorInfo(
    code="CONFLICTING_RESULTS",
    message="the provider returned more than one result for this job, and they disagree; none is credited",
)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class Job:
    """One submitted job: its line in the jobs file (kept to write beside its outcome) and its value."""

    index: int
    line: bytes
    value: dict[str, object]

    @property
    def client_ref(self) -> str | None:
        ref = self.value.get("clientRef")
        return ref if isinstance(ref, str) else None


def exactly_once(outcomes: Iterable[Outcome], jobs: Sequence[Job]) -> list[Outcome]:
    """Exactly one outcome per job, in job order, whatever an adapter yielded: outcomes for indexes
    outside the chunk are dropped, a job with two disagreeing outcomes gets neither (never credit a
    result that cannot be matched), and a job without one is ``not_processed`` (``NO_RESULT``)."""
    first = jobs[0].index if jobs else 0
    end = first + len(jobs)
    found: dict[int, Outcome] = {}
    conflicted: set[int] = set()
    for outcome in outcomes:
        if not first <= outcome.index < end:
            logger.warning("adapter yielded an outcome outside its chunk", extra={"index": outcome.index})
            continue
        seen = found.get(outcome.index)
        if seen is None:
            found[outcome.index] = outcome
        elif (seen.outcome, seen.provider_ref, seen.error) != (
            outcome.outcome,
            outcome.provider_ref,
            outcome.error,
        ):
            conflicted.add(outcome.index)
    settled = []
    for job in jobs:
        got = found.get(job.index)
        if got is None or job.index in conflicted:
            error = CONFLICTING if job.index in conflicted else NO_RESULT
            outcome = Outcome(
                index=job.index, client_ref=job.client_ref, outcome=OutcomeKind.NOT_PROCESSED, error=error
            )
        elif got.client_ref != job.client_ref:
            outcome = got.model_copy(update={"client_ref": job.client_ref})
        else:
            outcome = got
        settled.append(outcome)
    return settled


def uniform(
    jobs: Sequence[Job], kind: OutcomeKind, error: ErrorInfo | None, provider_ref: str | None
) -> list[Outcome]:
    """The same outcome for every job (a chunk refused whole, or never finished)."""
    return [
        Outcome(index=j.index, client_ref=j.client_ref, outcome=kind, error=error, provider_ref=provider_ref)
        for j in jobs
    ]


def encode(
    outcomes: Sequence[Outcome], jobs: Sequence[Job], counts: Counts
) -> tuple[bytes, list[OutcomeRow]]:
    """The chunk's results lines and table rows. Each line begins with its outcome kind
    (``{"outcome":"failed",...``), so the results files can be split by kind without parsing a line.
    Vendor text in errors is scrubbed of anything credential-shaped on the way."""
    lines: list[str] = []
    rows: list[OutcomeRow] = []
    tally = dict.fromkeys(OutcomeKind, 0)
    for outcome, job in zip(outcomes, jobs, strict=True):
        kind = outcome.outcome.value
        tally[outcome.outcome] += 1
        error = outcome.error
        error_json = "null"
        if error is not None:
            code, message = error.code[:200], scrub(error.message)[:2000]
            if code != error.code or message != error.message:
                error = ErrorInfo(code=code, message=message)
            error_json = f'{{"code":{_dumps(error.code)},"message":{_dumps(error.message)}}}'
        client_ref, provider_ref, detail = outcome.client_ref, outcome.provider_ref, outcome.detail
        response = outcome.response_json()
        cut = response is not None and len(response) > limits.MAX_RESPONSE_BYTES
        if cut:
            response = f'{{"truncated":true,"bytes":{len(str(response).encode())}}}'
        lines.append(
            f'{{"outcome":"{kind}","index":{outcome.index},'
            f'"clientRef":{"null" if client_ref is None else _dumps(client_ref)},'
            f'"providerRef":{"null" if provider_ref is None else _dumps(provider_ref)},'
            f'"error":{error_json},'
            f'"response":{"null" if response is None else response},'
            f'"detail":{"null" if detail is None else _dumps(detail)},"job":'
        )
        lines.append(job.line.decode("utf-8"))
        lines.append("}\n")
        small = response is not None and len(response) <= ROW_RESPONSE_LIMIT and not cut
        rows.append(
            OutcomeRow(
                index=outcome.index,
                outcome=kind,
                client_ref=client_ref,
                provider_ref=provider_ref,
                error=error,
                response=response if small else None,
                response_truncated=response is not None and not small,
                detail=detail,
            )
        )
    for tallied, n in tally.items():
        if n:
            counts.add(tallied, n)
    return "".join(lines).encode("utf-8"), rows
