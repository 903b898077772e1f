"""The cost a batch reports is what it cost: its Step Functions transitions equal those of its real
execution history, its Lambda requests equal the invocations the history and the API made, and the event
and the status carry the same figures, by service."""

from __future__ import annotations

from typing import Any

import pytest

from batchbridge import cost, pricing
from batchbridge.providers import superoffice, willsuite
from batchbridge_local.simulators.ivvy import booking_session_jobs
from tests.workflow.helpers import submit, the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]


def transitions_in(history: list[dict[str, Any]]) -> int:
    """State transitions as Step Functions bills them: each state entered, and each retry of a task."""
    entered = sum(1 for e in history if e["type"].endswith("StateEntered"))
    attempts: dict[int, int] = {}
    current = 0
    for event in history:
        if event["type"] == "TaskStateEntered":
            current = event["id"]
        elif event["type"] in ("LambdaFunctionScheduled", "TaskScheduled"):
            attempts[current] = attempts.get(current, 0) + 1
    return entered + sum(n - 1 for n in attempts.values())


def lambda_invocations_in(history: list[dict[str, Any]]) -> int:
    scheduled = sum(1 for e in history if e["type"] == "LambdaFunctionScheduled")
    token_waits = sum(
        1
        for e in history
        if e["type"] == "TaskScheduled"
        and e["taskScheduledEventDetails"]["resource"] == "invoke.waitForTaskToken"
    )
    return scheduled + token_waits


def check(stack: Any, batch_id: str) -> dict[str, Any]:
    view = stack.wait_for_batch(batch_id, timeout=90)
    history = stack.execution_history(batch_id)
    reported = view["cost"]
    usage = reported["usage"]
    assert usage[cost.TRANSITIONS] == transitions_in(history), "reported transitions differ from the history"
    # every Lambda the workflow invoked, and the api function that created the batch
    assert usage[cost.LAMBDA_REQUESTS] == lambda_invocations_in(history) + 1
    assert usage[cost.SNS_PUBLISHES] == 1
    assert usage[cost.S3_PUTS] >= 1 + view["chunkCount"] + 4  # the jobs, each chunk's outcomes, the 4 files
    assert usage[cost.DDB_WRITE_UNITS] >= view["jobCount"]  # one row per job at least
    # priced at the list prices, by service, adding up
    assert reported["byServiceUsd"]["stepFunctions"] == pytest.approx(
        usage[cost.TRANSITIONS] * pricing.SFN_USD_PER_TRANSITION
    )
    assert reported["totalUsd"] == pytest.approx(sum(reported["byServiceUsd"].values()), abs=1e-7)
    assert reported["final"] is True and reported["pricesAsOf"] == pricing.PRICES_AS_OF
    # and the event says the same
    assert the_event(stack, batch_id)["event"]["data"]["cost"] == reported
    return reported


def test_an_ivvy_batch_reports_its_real_cost(stack, ivvy, ivvy_connection):
    check(stack, submit(stack, "ivvy", ivvy_connection, booking_session_jobs(20, invalid_every=4)))


def test_a_many_chunk_batch_reports_its_real_cost(stack, ivvy, ivvy_connection):
    reported = check(stack, submit(stack, "ivvy", ivvy_connection, booking_session_jobs(2_000)))
    assert reported["usage"][cost.DDB_WRITE_UNITS] >= 2_000


def test_a_willsuite_batch_reports_its_real_cost(stack, willsuite_sim, willsuite_connection):
    willsuite_sim.reset()
    willsuite.clear_token_cache()
    jobs = [
        {"clientRef": f"case-{i}", "id": f"0b7d4b2c-0000-4000-8000-{i:012d}", "status": "active"}
        for i in range(5)
    ]
    check(stack, submit(stack, "willsuite", willsuite_connection, jobs))


def test_a_superoffice_batch_reports_its_real_cost(stack, superoffice_sim, superoffice_connection):
    superoffice_sim.reset()
    superoffice.clear_endpoint_cache()
    superoffice_sim.job_seconds = 0.5
    options = {
        "tableName": "contact",
        "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
    }
    jobs = [{"clientRef": f"contact-{i}", "id": 4000 + i} for i in range(4)]
    check(stack, submit(stack, "superoffice", superoffice_connection, jobs, options=options))


def test_an_os1_batch_with_callbacks_reports_its_real_cost(stack, os1_sim, os1_connection):
    os1_sim.reset()
    os1_sim.batch_seconds = 1.0
    jobs = [{"uniqueCode": f"V-{i}", "name": f"Vehicle {i}"} for i in range(4)]
    check(stack, submit(stack, "os1", os1_connection, jobs, options={"participantType": "vehicles"}))
