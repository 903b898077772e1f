"""Pure rules of the workflow tasks: the exactly-once outcome guard, the two encodings of an outcome,
failure parsing, and the final status."""

from __future__ import annotations

import json

import httpx

from batchbridge.models import BatchStatus, Connection, Counts, ErrorInfo, Outcome, OutcomeKind
from batchbridge.providers.ivvy import IvvyProvider
from batchbridge.records import Batch
from batchbridge.tasks import Failure
from batchbridge.tasks.finalize import final_status
from batchbridge.tasks.outcomes import ROW_RESPONSE_LIMIT, Job, encode, exactly_once

JOBS = [
    Job(index=10 + i, line=json.dumps({"clientRef": f"c{i}"}).encode(), value={"clientRef": f"c{i}"})
    for i in range(4)
]


def ok(index: int, **extra: object) -> Outcome:
    return Outcome(index=index, outcome=OutcomeKind.SUCCEEDED, **extra)


def test_a_complete_set_of_outcomes_passes_through_in_job_order():
    got = exactly_once([ok(13), ok(10), ok(12), ok(11)], JOBS)
    assert [o.index for o in got] == [10, 11, 12, 13]
    assert all(o.outcome is OutcomeKind.SUCCEEDED for o in got)


def test_missing_outcomes_become_not_processed_with_the_clients_reference():
    got = exactly_once([ok(10), ok(13)], JOBS)
    assert [(o.index, o.outcome) for o in got] == [
        (10, OutcomeKind.SUCCEEDED),
        (11, OutcomeKind.NOT_PROCESSED),
        (12, OutcomeKind.NOT_PROCESSED),
        (13, OutcomeKind.SUCCEEDED),
    ]
    assert got[1].client_ref == "c1" and got[1].error.code == "NO_RESULT"


def test_stray_outcomes_are_dropped_and_identical_repeats_count_once():
    got = exactly_once([ok(10), ok(10), ok(99), ok(9), ok(11), ok(12), ok(13), ok(14)], JOBS)
    assert [o.index for o in got] == [10, 11, 12, 13]
    assert all(o.outcome is OutcomeKind.SUCCEEDED for o in got)


def test_a_job_with_two_disagreeing_outcomes_is_credited_with_neither():
    failed = Outcome(index=11, outcome=OutcomeKind.FAILED, error=ErrorInfo(code="X", message="no"))
    got = exactly_once([ok(10), ok(11), failed, ok(12), ok(13)], JOBS)
    assert got[1].outcome is OutcomeKind.NOT_PROCESSED
    assert got[1].error.code == "CONFLICTING_RESULTS"


def test_the_clients_reference_comes_from_the_job_not_the_adapter():
    got = exactly_once([ok(10, client_ref="someone-else"), ok(11), ok(12), ok(13)], JOBS)
    assert [o.client_ref for o in got] == ["c0", "c1", "c2", "c3"]


def test_each_line_carries_the_job_and_begins_with_its_kind_and_rows_keep_small_responses_only():
    big = {"blob": "x" * ROW_RESPONSE_LIMIT}
    outcomes = [ok(10, response={"id": 1}), ok(11, response=big), ok(12), ok(13)]
    counts = Counts()
    data, rows = encode(outcomes, JOBS, counts)
    lines = data.decode().splitlines()
    assert all(line.startswith('{"outcome":"succeeded"') for line in lines)
    parsed = [json.loads(line) for line in lines]
    assert [p["job"] for p in parsed] == [j.value for j in JOBS]
    assert parsed[1]["response"] == {"truncated": True, "bytes": len(json.dumps(big, separators=(",", ":")))}
    assert (rows[0].response, rows[0].response_truncated) == ('{"id":1}', False)
    assert (rows[1].response, rows[1].response_truncated) == (None, True)
    assert counts.model_dump() == {"total": 4, "succeeded": 4, "failed": 0, "not_processed": 0}


def test_vendor_text_in_an_error_is_scrubbed_of_tokens_on_its_way_into_records():
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiYXRjaGJyaWRnZSJ9.c2lnbmF0dXJlLWJ5dGVz"
    leaked = Outcome(index=10, outcome=OutcomeKind.FAILED, error=ErrorInfo(code="E", message=f"bad {token}"))
    data, rows = encode([leaked, ok(11), ok(12), ok(13)], JOBS, Counts())
    assert token not in data.decode()
    assert rows[0].error is not None and token not in rows[0].error.message


def test_failure_takes_the_message_from_the_lambda_error_payload():
    failure = Failure.model_validate(
        {
            "Error": "BatchRejectedError",
            "Cause": json.dumps({"errorType": "BatchRejectedError", "errorMessage": "iVvy said no"}),
        }
    )
    info = failure.info()
    assert (info.code, info.message) == ("BATCH_REJECTED", "iVvy said no")


def test_failure_with_a_states_error_keeps_its_name():
    info = Failure.model_validate({"Error": "States.Timeout", "Cause": ""}).info()
    assert (info.code, info.message) == ("States.Timeout", "States.Timeout")


def counts(s: int, f: int, n: int) -> Counts:
    return Counts(total=s + f + n, succeeded=s, failed=f, not_processed=n)


def batch(**fields: object) -> Batch:
    return Batch.model_validate(
        {
            "batchId": "b",
            "status": "COLLECTING",
            "provider": "ivvy",
            "connection": "c",
            "jobCount": 5,
            "chunkCount": 1,
            "jobsKey": "k",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "deadlineAt": 0,
            **fields,
        }
    )


def test_final_status_follows_the_outcomes():
    assert final_status(batch(), None, counts(5, 0, 0))[0] is BatchStatus.SUCCEEDED
    assert final_status(batch(), None, counts(3, 2, 0))[0] is BatchStatus.PARTIALLY_SUCCEEDED
    status, error = final_status(batch(), None, counts(0, 5, 0))
    assert status is BatchStatus.FAILED and error.code == "ALL_JOBS_FAILED"


def test_final_status_for_deadline_cancel_and_ambiguity():
    assert final_status(batch(deadlineReached=True), None, counts(3, 0, 2))[0] is BatchStatus.TIMED_OUT
    assert final_status(batch(cancelRequested=True), None, counts(3, 0, 2))[0] is BatchStatus.CANCELLED
    ambiguous = Failure.model_validate({"Error": "AmbiguousSubmitError", "Cause": "lost"})
    assert final_status(batch(), ambiguous, counts(0, 0, 5))[0] is BatchStatus.NEEDS_ATTENTION
    # an ambiguous chunk outranks a cancel: a person must check the provider either way
    status, error = final_status(batch(cancelRequested=True, ambiguousChunks=[2, 2]), None, counts(3, 0, 2))
    assert status is BatchStatus.NEEDS_ATTENTION and "chunk 2 " in error.message


def test_a_cancel_names_the_chunks_the_provider_had_taken():
    status, error = final_status(
        batch(cancelRequested=True), None, counts(0, 0, 5), ["chunk 0 (A1: cancel confirmed)"]
    )
    assert status is BatchStatus.CANCELLED
    assert "A1: cancel confirmed" in error.message


def test_a_rejection_recorded_on_the_batch_is_the_failure_reason():
    rejected = batch(error={"code": "IVVY_24092", "message": "incorrect job format"})
    status, error = final_status(rejected, None, counts(0, 5, 0))
    assert status is BatchStatus.FAILED
    assert error.code == "IVVY_24092"


def _provider(secret: str) -> IvvyProvider:
    """An iVvy adapter that is never asked anything."""
    connection = Connection(
        name="c",
        provider="ivvy",
        baseUrl="https://ivvy.invalid",
        credentials={"apiKey": "k", "apiSecret": secret},
    )
    return IvvyProvider(connection, httpx.Client())


def _strings(value: object) -> list[str]:
    """Every string in a JSON value, its keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_a_secret_a_response_echoes_is_redacted_however_json_writes_it_even_in_a_key():
    for secret in ('se"cr\\et-1', "sécrét-ünicode", "line\nbreak-secret"):
        provider = _provider(secret)
        response = {"echo": f"you sent {secret}", secret: [secret, 1], "other": "fine"}
        got = provider.finish_outcome(ok(10, response=response), provider.secret_values())
        assert not any(secret in text for text in _strings(got.response))
        assert json.loads(got.response_json() or "") == got.response
        assert got.response["other"] == "fine" and got.response["echo"].startswith("you sent ")


def test_a_response_without_a_secret_is_kept_as_it_is_and_encoded_once():
    provider = _provider("s3cr3t-value")
    response = {"id": 7, "name": "Élise"}
    outcome = ok(10, response=response)
    text = outcome.response_json()
    got = provider.finish_outcome(outcome, provider.secret_values())
    assert got.response is response and got.response_json() is text
    assert text == '{"id":7,"name":"Élise"}'


def test_a_replaced_response_is_encoded_again():
    outcome = ok(10, response={"id": 1})
    assert outcome.response_json() == '{"id":1}'
    outcome.response = {"id": 2}
    assert outcome.response_json() == '{"id":2}'
    outcome.response = None
    assert outcome.response_json() is None


def test_ivvy_keeps_a_response_up_to_its_limit_in_utf8_bytes_and_says_so_when_it_drops_one():
    from batchbridge.providers.ivvy import MAX_KEPT_RESPONSE_BYTES, _outcome

    fits = {"n": "é" * ((MAX_KEPT_RESPONSE_BYTES - 8) // 2)}  # 2 bytes a character: just within
    kept = _outcome(10, "c0", {"request": {}, "response": fits})
    assert kept.response == fits and kept.detail is None
    over = {"n": "é" * (MAX_KEPT_RESPONSE_BYTES // 2)}
    dropped = _outcome(11, "c1", {"request": {}, "response": over})
    size = len(json.dumps(over, separators=(",", ":"), ensure_ascii=False).encode())
    assert dropped.response is None and dropped.outcome is OutcomeKind.SUCCEEDED
    assert dropped.detail == f"iVvy's response ({size} bytes) was too large to keep"
