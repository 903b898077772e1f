"""The same POST /batches sent many times at once with one Idempotency-Key makes one batch, one execution
and one provider submission.

The api handler runs in this process, so the requests really race: every thread waits at a barrier and
then calls the handler, and the key's conditional write is the only thing that tells them apart.

DynamoDB applies a conditional write to an item atomically; moto checks the condition and then stores
the item without a lock, so two threads can both pass the check. The ``atomic_writes`` fixture gives
moto's write operations the atomicity DynamoDB has (the fake is fixed, not the code under test); without
it these tests catch moto's race, about one run in three.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from tests.workflow.helpers import assert_settled

from batchbridge_local.simulators.ivvy import booking_session_jobs

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]
N = 8


def batch_records(stack: Any) -> set[str]:
    return {
        item["pk"] for item in stack.all_items() if item["sk"] == "META" and item["pk"].startswith("BATCH#")
    }


def executions(stack: Any) -> set[str]:
    sfn = boto3.client("stepfunctions")
    names: set[str] = set()
    kwargs: dict[str, Any] = {"stateMachineArn": stack.state_machine_arn}
    while True:
        page = sfn.list_executions(**kwargs)
        names.update(e["name"] for e in page["executions"])
        if not page.get("nextToken"):
            return names
        kwargs["nextToken"] = page["nextToken"]


def own_jobs(n: int) -> list[dict[str, Any]]:
    """``n`` iVvy jobs no other test sends (the simulator is shared by the session, and batches of earlier
    tests may still be running): :func:`submissions_of` counts this test's submissions alone."""
    tag = uuid.uuid4().hex[:8]
    jobs = booking_session_jobs(n)
    for job in jobs:
        job["params"]["name"] = f"{job['params']['name']} {tag}"
    return jobs


def submissions_of(ivvy: Any, jobs: list[dict[str, Any]]) -> int:
    """How many batches the simulator accepted that hold these jobs' first one."""
    return int(ivvy.accepted_jobs(jobs[0]["params"]))


def post_at_once(stack: Any, bodies: list[dict[str, Any]], key: str) -> list[tuple[int, Any]]:
    """POST every body at the same moment, each from its own thread; answers in the order of ``bodies``."""
    barrier = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> tuple[int, Any]:
        barrier.wait(timeout=10)
        # A request that races ahead of the first one's record is told to retry (409), as a client would.
        for _ in range(100):
            status, answer = stack.api("POST", "/batches", body, headers={"Idempotency-Key": key})
            if not (status == 409 and answer["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"):
                return status, answer
            time.sleep(0.02)
        return status, answer

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_concurrent_duplicates_make_one_batch_one_execution_one_submission(stack, ivvy, ivvy_connection):
    # Given N identical requests carrying the same key, sent at the same moment
    jobs = own_jobs(5)
    body = {"provider": "ivvy", "connection": ivvy_connection, "jobs": jobs}
    key = f"concurrent-{uuid.uuid4().hex}"
    records, started = batch_records(stack), executions(stack)
    answers = post_at_once(stack, [body] * N, key)
    # Then exactly one was accepted and every other one replays it
    assert Counter(status for status, _ in answers) == {202: 1, 200: N - 1}, answers
    batch_ids = {answer["batchId"] for _, answer in answers}
    assert len(batch_ids) == 1
    (batch_id,) = batch_ids
    assert all(answer.get("replayed") is True for status, answer in answers if status == 200)
    # and there is one batch record and one execution, named after the batch
    assert batch_records(stack) - records == {f"BATCH#{batch_id}"}
    assert executions(stack) - started == {batch_id}
    # and the batch runs to completion with one submission to the provider
    assert_settled(stack, batch_id, len(jobs), "SUCCEEDED")
    assert submissions_of(ivvy, jobs) == 1
    # and a late retry, after the batch finished, still gets the same batch
    status, again = stack.api("POST", "/batches", body, headers={"Idempotency-Key": key})
    assert (status, again["batchId"], again["replayed"]) == (200, batch_id, True)
    assert submissions_of(ivvy, jobs) == 1


def test_concurrent_requests_with_one_key_and_different_bodies_make_one_batch(stack, ivvy, ivvy_connection):
    # Given two different bodies sent at once under one key, several times each
    first = {"provider": "ivvy", "connection": ivvy_connection, "jobs": own_jobs(2)}
    second = {**first, "jobs": own_jobs(3)}
    key = f"conflict-{uuid.uuid4().hex}"
    started = executions(stack)
    bodies = [first, second] * (N // 2)
    answers = post_at_once(stack, bodies, key)
    # Then one body won: it was accepted once and replayed to its twins, and the other body is refused
    statuses = Counter(status for status, _ in answers)
    assert statuses[202] == 1 and statuses[200] == N // 2 - 1 and statuses[422] == N // 2, answers
    winner = next(body for body, (status, _) in zip(bodies, answers, strict=True) if status == 202)
    for body, (status, answer) in zip(bodies, answers, strict=True):
        if body is winner:
            assert status in (200, 202)
        else:
            assert (status, answer["error"]["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    loser = second if winner is first else first
    (batch_id,) = executions(stack) - started
    assert_settled(stack, batch_id, len(winner["jobs"]), "SUCCEEDED")
    assert submissions_of(ivvy, winner["jobs"]) == 1
    assert submissions_of(ivvy, loser["jobs"]) == 0
