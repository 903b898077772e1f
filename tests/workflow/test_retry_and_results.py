"""Real-sized work out: results by outcome kind with the job beside each, one job found by its reference in
one read, pages that cost their size, and a retry of exactly the failed jobs as a linked batch."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from batchbridge_local.simulators.ivvy import booking_session_jobs, expected_code
from tests.workflow.helpers import assert_settled, submit

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]


def download(stack: Any, batch_id: str, outcome: str | None = None) -> list[dict[str, Any]]:
    query = {"format": "file", **({"outcome": outcome} if outcome else {})}
    status, link = stack.api("GET", f"/batches/{batch_id}/results", query=query)
    assert status == 200, link
    from urllib.parse import unquote, urlsplit

    key = unquote(urlsplit(link["url"]).path.lstrip("/")).removeprefix(stack.bucket_name + "/")
    body = boto3.client("s3").get_object(Bucket=stack.bucket_name, Key=key)["Body"].read()
    return [json.loads(line) for line in body.splitlines() if line]


def test_the_failed_records_come_back_with_their_jobs_and_retry_as_a_linked_batch(
    stack, ivvy, ivvy_connection
):
    # Given a batch of 30 booking sessions, every fifth one invalid
    jobs = booking_session_jobs(30, invalid_every=5)
    failed = [i for i, job in enumerate(jobs) if expected_code(job) is not None]
    batch_id = submit(stack, "ivvy", ivvy_connection, jobs)
    assert_settled(stack, batch_id, 30, "PARTIALLY_SUCCEEDED")
    # When the failed outcomes are downloaded, each carries the job as submitted
    lines = download(stack, batch_id, "failed")
    assert [line["index"] for line in lines] == failed
    assert [line["job"] for line in lines] == [jobs[i] for i in failed]
    assert {line["outcome"] for line in download(stack, batch_id, "succeeded")} == {"succeeded"}
    assert download(stack, batch_id, "not_processed") == []
    # and one job is found by its clientRef
    status, found = stack.api(
        "GET", f"/batches/{batch_id}/results", query={"clientRef": jobs[failed[0]]["clientRef"]}
    )
    assert status == 200 and [o["index"] for o in found["items"]] == [failed[0]]

    # When they are retried (after the invalid ones are fixed at the source: here iVvy is told they are fine)
    ivvy.unknown_booking_ids = set()
    status, accepted = stack.api(
        "POST",
        f"/batches/{batch_id}/retry",
        query={"outcomes": "failed"},
        headers={"Idempotency-Key": f"retry-{batch_id}"},
    )
    assert status == 202, accepted
    retry_id = accepted["batchId"]
    assert (accepted["retryOf"], accepted["jobCount"]) == (batch_id, len(failed))
    # Then the retry holds exactly those jobs in their order, linked both ways
    retried = stack.wait_for_batch(retry_id, timeout=60)
    assert retried["retryOf"] == batch_id and retried["jobCount"] == len(failed)
    assert stack.batch(batch_id)["retries"] == [retry_id]
    retried_lines = stack.result_lines(retry_id)
    assert [line["job"] for line in retried_lines] == [jobs[i] for i in failed]
    # and the same request again is the same batch
    status, again = stack.api(
        "POST",
        f"/batches/{batch_id}/retry",
        query={"outcomes": "failed"},
        headers={"Idempotency-Key": f"retry-{batch_id}"},
    )
    assert (status, again["batchId"], again.get("replayed")) == (200, retry_id, True)


def test_a_retry_is_refused_while_the_batch_runs_and_when_nothing_matches(stack, ivvy, ivvy_connection):
    ivvy.job_seconds = 3.0
    batch_id = submit(stack, "ivvy", ivvy_connection, booking_session_jobs(3))
    status, body = stack.api("POST", f"/batches/{batch_id}/retry")
    assert (status, body["error"]["code"]) == (409, "BATCH_NOT_FINISHED")
    stack.wait_for_batch(batch_id, timeout=60)
    status, body = stack.api("POST", f"/batches/{batch_id}/retry")
    assert (status, body["error"]["code"]) == (422, "NOTHING_TO_RETRY")
    status, body = stack.api("POST", f"/batches/{batch_id}/retry", query={"outcomes": "failed,lost"})
    assert (status, body["error"]["code"]) == (422, "VALIDATION_FAILED")
    # (an id drawn here: the repository tests create batches with ids like 00000000-...-000000000000 in the
    # same table)
    status, body = stack.api("POST", f"/batches/{uuid.uuid4()}/retry")
    assert (status, body["error"]["code"]) == (404, "BATCH_NOT_FOUND"), body


def test_a_page_of_failures_costs_its_size_not_the_batchs(stack, ivvy, ivvy_connection):
    # Given a 2,000-job batch with ten failures
    jobs = booking_session_jobs(2_000)
    for i in range(0, 2_000, 200):
        jobs[i]["params"]["bookingId"] = 40404  # iVvy answers 24360: unknown booking
    batch_id = submit(stack, "ivvy", ivvy_connection, jobs)
    view = assert_settled(stack, batch_id, 2_000, "PARTIALLY_SUCCEEDED", timeout=120)
    assert view["counts"]["failed"] == 10
    # When a filtered page is asked for, DynamoDB is asked once
    from batchbridge import cost

    with cost.metering() as meter:
        status, page = stack.api(
            "GET", f"/batches/{batch_id}/results", query={"outcome": "failed", "limit": "2"}
        )
    assert status == 200 and [o["index"] for o in page["items"]] == [0, 200]
    assert meter.requests == {"dynamodb.GetItem": 1, "dynamodb.Query": 1}
