"""The real state machine, executed by moto, with the real handlers and the iVvy simulator."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from batchbridge_local.simulators.ivvy import booking_session_jobs
from tests.workflow import helpers
from tests.workflow.helpers import the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]


@pytest.fixture
def sim(ivvy_sim):
    ivvy_sim.reset()
    yield ivvy_sim
    ivvy_sim.reset()


def submit(stack: Any, connection: str, jobs: list[dict[str, Any]], **extra: Any) -> str:
    return helpers.submit(stack, "ivvy", connection, jobs, **extra)


def test_a_450_job_batch_with_invalid_sessions_partially_succeeds(stack, sim, ivvy_connection):
    # Given 450 booking sessions, every ninth of them invalid in one of the ways iVvy refuses
    sim.job_seconds = 1.0
    jobs = booking_session_jobs(450, invalid_every=9)
    # When the batch runs through the real workflow
    batch_id = submit(stack, ivvy_connection, jobs, clientReference="march-sessions")
    view = stack.wait_for_batch(batch_id, timeout=120)
    # Then it is partially successful, in three chunks, and the counts match what the simulator decided
    assert view["status"] == "PARTIALLY_SUCCEEDED"
    assert view["chunkCount"] == 3
    assert sim.submissions == 3
    truths = [sim.truth(ref) for ref in sim.batches]
    expected_failed = sum(t.failed for t in truths)
    assert expected_failed == 50
    assert view["counts"] == {"total": 450, "succeeded": 400, "failed": 50, "notProcessed": 0}
    # and there is one line in S3 and one row in DynamoDB per job, in job order
    lines = stack.result_lines(batch_id)
    assert [line["index"] for line in lines] == list(range(450))
    assert [line["clientRef"] for line in lines] == [job["clientRef"] for job in jobs]
    rows = stack.outcome_rows(batch_id)
    assert len(rows) == 450
    assert Counter(r["outcome"] for r in rows) == {"succeeded": 400, "failed": 50}
    # and failed outcomes carry iVvy's specificCode and message
    failed = [line for line in lines if line["outcome"] == "failed"]
    codes = Counter(line["error"]["code"] for line in failed)
    assert set(codes) <= {"IVVY_24337", "IVVY_24360"} and codes["IVVY_24360"] > 0 and codes["IVVY_24337"] > 0
    assert all(line["error"]["message"] for line in failed)
    succeeded = [line for line in lines if line["outcome"] == "succeeded"]
    assert all(line["providerRef"] for line in succeeded)
    # and one event was published, with the attributes subscribers filter on
    received = the_event(stack, batch_id)
    assert received["attributes"] == {
        "provider": "ivvy",
        "status": "PARTIALLY_SUCCEEDED",
        "eventType": "batchbridge.batch.partially_succeeded",
        "connection": ivvy_connection,
    }
    data = received["event"]["data"]
    assert data["counts"] == view["counts"]
    assert data["clientReference"] == "march-sessions"
    assert data["results"]["key"] == view["results"]["key"]


def test_results_are_paged_and_filtered(stack, sim, ivvy_connection):
    sim.job_seconds = 0.2
    batch_id = submit(stack, ivvy_connection, booking_session_jobs(25, invalid_every=5))
    stack.wait_for_batch(batch_id, timeout=60)
    seen: list[dict[str, Any]] = []
    token = None
    while True:
        query = {"limit": "7", **({"nextToken": token} if token else {})}
        status, page = stack.api("GET", f"/batches/{batch_id}/results", query=query)
        assert status == 200
        seen.extend(page["items"])
        token = page.get("nextToken")
        if not token:
            break
    # Pages hold each outcome once, ordered by kind, then by job index (a page of one kind costs its size).
    failed_first = [4, 9, 14, 19, 24] + [i for i in range(25) if i % 5 != 4]
    assert [o["index"] for o in seen] == failed_first
    status, failed = stack.api("GET", f"/batches/{batch_id}/results", query={"outcome": "failed"})
    assert [o["index"] for o in failed["items"]] == [4, 9, 14, 19, 24]
    status, link = stack.api("GET", f"/batches/{batch_id}/results", query={"format": "file"})
    assert status == 200 and link["url"].startswith(stack.s3_url + "/")  # S3 as served on loopback


def test_a_batch_ivvy_rejects_fails_with_ivvys_error(stack, sim, ivvy_connection):
    # Given iVvy refuses batches over a limit lower than the chunk size
    sim.max_jobs = 5
    # When a batch of ten is submitted
    batch_id = submit(stack, ivvy_connection, booking_session_jobs(10))
    view = stack.wait_for_batch(batch_id, timeout=60)
    # Then the batch failed with iVvy's own code and message, every job has a failed outcome, and no batch ran
    assert view["status"] == "FAILED"
    assert view["error"]["code"] == "IVVY_24448"
    assert "200" not in view["error"]["message"] and "5" in view["error"]["message"]
    assert sim.submissions == 0
    lines = stack.result_lines(batch_id)
    assert len(lines) == 10 and {line["outcome"] for line in lines} == {"failed"}
    assert {line["error"]["code"] for line in lines} == {"IVVY_24448"}
    received = the_event(stack, batch_id)
    assert received["attributes"]["status"] == "FAILED"
    assert received["event"]["type"] == "batchbridge.batch.failed"
    assert received["event"]["data"]["error"]["code"] == "IVVY_24448"
    # and the execution itself failed, so the failed-executions alarm sees it
    assert stack.execution(batch_id)["status"] == "FAILED"


def test_a_batch_that_never_finishes_times_out_at_its_deadline(stack, sim, ivvy_connection):
    # Given iVvy never completes the batch
    sim.never_finish = True
    # When the batch has a four-second deadline
    batch_id = submit(stack, ivvy_connection, booking_session_jobs(3), deadlineSeconds=4)
    view = stack.wait_for_batch(batch_id, timeout=60)
    # Then it ends TIMED_OUT with every job not processed for that reason
    assert view["status"] == "TIMED_OUT"
    assert view["counts"] == {"total": 3, "succeeded": 0, "failed": 0, "notProcessed": 3}
    lines = stack.result_lines(batch_id)
    assert {line["error"]["code"] for line in lines} == {"DEADLINE_EXCEEDED"}
    # and it did not loop past the deadline: polls are bounded by deadline / minimum wait
    assert 1 <= view["polls"] <= 6
    history = stack.execution_history(batch_id)
    checks = sum(
        1
        for e in history
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Check Batch Status"
    )
    assert checks <= 6
    received = the_event(stack, batch_id)
    assert received["attributes"]["status"] == "TIMED_OUT"
    assert received["event"]["data"]["error"]["code"] == "DEADLINE_EXCEEDED"


def test_cancelling_a_running_batch_ends_it_cancelled_with_every_outcome(stack, sim, ivvy_connection):
    sim.never_finish = True
    batch_id = submit(stack, ivvy_connection, booking_session_jobs(4))
    stack.wait_until(lambda: stack.batch(batch_id)["status"] == "RUNNING", timeout=30)
    status, body = stack.api("POST", f"/batches/{batch_id}/cancel")
    assert (status, body["status"]) == (202, "CANCELLING")
    view = stack.wait_for_batch(batch_id, timeout=60)
    assert view["status"] == "CANCELLED"
    assert view["counts"]["notProcessed"] == 4
    assert {line["error"]["code"] for line in stack.result_lines(batch_id)} == {"CANCELLED"}
    assert the_event(stack, batch_id)["attributes"]["status"] == "CANCELLED"
    # and cancelling it again is a clear conflict
    status, body = stack.api("POST", f"/batches/{batch_id}/cancel")
    assert (status, body["error"]["code"]) == (409, "BATCH_FINISHED")


def test_a_chunk_ivvy_loses_fails_alone_and_the_rest_of_the_batch_completes(stack, sim, ivvy_connection):
    # Given a two-chunk batch that takes a few seconds
    sim.job_seconds = 4.0
    batch_id = submit(stack, ivvy_connection, booking_session_jobs(250))
    stack.wait_until(lambda: sim.submissions == 2, timeout=30)
    # When iVvy loses the first chunk's batch while it runs
    first = next(iter(sim.batches))
    sim.expire(first)
    view = stack.wait_for_batch(batch_id, timeout=90)
    # Then that chunk's 200 jobs are not processed, with the reason, and the other chunk's 50 succeed
    assert view["status"] == "PARTIALLY_SUCCEEDED"
    assert view["counts"] == {"total": 250, "succeeded": 50, "failed": 0, "notProcessed": 200}
    lines = stack.result_lines(batch_id)
    assert {line["error"]["code"] for line in lines[:200]} == {"RESULTS_EXPIRED"}
    assert {line["outcome"] for line in lines[200:]} == {"succeeded"}
