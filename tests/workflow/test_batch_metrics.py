"""The dashboard's batch metrics, emitted by the real handlers while a real batch runs through the real
workflow against the iVvy simulator, hold that batch's own figures."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from batchbridge_local.simulators.ivvy import booking_session_jobs
from tests.workflow.helpers import the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]

# A round is one run of the submit task or of the status-check task: the states that invoke them, found by
# the functions they invoke rather than by their names.
DEFINITION = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "batch.asl.json").read_text())
ROUND_STATES = {
    name
    for name, state in DEFINITION["States"].items()
    if state.get("Resource") in ("${SubmitBatchFunctionArn}", "${CheckStatusFunctionArn}")
}


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_real_batch_emits_its_own_counts_time_rounds_and_cost(stack, ivvy, ivvy_connection, emitted):
    # Given 250 booking sessions (two chunks), every fifth invalid
    jobs = booking_session_jobs(250, invalid_every=5)
    body = {"provider": "ivvy", "connection": ivvy_connection, "jobs": jobs}
    # When the batch is posted through the API handler and runs to its end
    status, accepted = stack.api("POST", "/batches", body, headers={"Idempotency-Key": "metrics-run-1"})
    assert status == 202, accepted
    batch_id = accepted["batchId"]
    view = stack.wait_for_batch(batch_id, timeout=180)  # generous: the machine may be busy
    # and the same request is retried with the same key (the API answers with the same batch)
    again, replay = stack.api("POST", "/batches", body, headers={"Idempotency-Key": "metrics-run-1"})
    assert (again, replay["batchId"]) == (200, batch_id)
    mine = [d for d in emitted() if d.metadata.get("batchId") == batch_id]

    # Then the batch was counted as accepted once, under its provider
    accepted_docs = [d for d in mine if "BatchesAccepted" in d.values]
    assert [(d.dimensions, d.values) for d in accepted_docs] == [
        ({"service": "batchbridge", "provider": "ivvy"}, {"BatchesAccepted": 1.0})
    ]
    # and as finished once, under its provider and the status it really ended with
    truths = [ivvy.truth(ref) for ref in ivvy.batches]
    failed = sum(t.failed for t in truths)
    assert failed == 50 and view["status"] == "PARTIALLY_SUCCEEDED"
    (finished,) = [d for d in mine if "BatchesFinished" in d.values]
    assert finished.dimensions == {
        "service": "batchbridge",
        "provider": "ivvy",
        "status": "PARTIALLY_SUCCEEDED",
    }
    # and its values are the batch's: jobs as the simulator decided them, the time from its creation to its
    # end, the rounds and the cost its record reports
    (values,) = [d for d in mine if "BatchDurationSeconds" in d.values]
    assert values.dimensions == {"service": "batchbridge", "provider": "ivvy"}
    assert values.values["JobsSucceeded"] == 250 - failed == view["counts"]["succeeded"]
    assert values.values["JobsFailed"] == failed == view["counts"]["failed"]
    assert values.values["JobsNotProcessed"] == 0
    took = seconds(view["finishedAt"]) - seconds(view["createdAt"])
    assert values.values["BatchDurationSeconds"] == pytest.approx(took, abs=0.002)
    assert took > 0
    assert values.values["BatchRounds"] == view["polls"]
    # and the cost is the whole cost the batch and its completion event report
    cost = view["cost"]["totalUsd"]
    assert cost > 0
    assert values.values["BatchEstimatedCostUsd"] == cost
    assert the_event(stack, batch_id)["event"]["data"]["cost"]["totalUsd"] == cost
    # and the rounds are the submit and status-check rounds the execution really went through
    rounds = [
        e
        for e in stack.execution_history(batch_id)
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] in ROUND_STATES
    ]
    assert values.values["BatchRounds"] == len(rounds)
