"""The lifecycle on the real state machine where it used to break: finalize failing every attempt, and a
cancel landing while the first submit prepares, before the chunks exist, and while a submit is in flight.
Each ends in one terminal status, one outcome per job, and exactly one event with all four attributes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from batchbridge.models import ChunkState
from batchbridge.providers import superoffice
from batchbridge.tasks import chunks as chunk_module
from batchbridge.tasks import finalize as finalize_module
from batchbridge_local.simulators.ivvy import booking_session_jobs
from tests.workflow.helpers import assert_settled, submit, the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]
SO_OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


def states_entered(stack: Any, batch_id: str) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in stack.execution_history(batch_id)
        if e["type"].endswith("StateEntered")
    ]


def test_a_finalize_that_fails_every_attempt_still_ends_the_batch_failed_with_one_event(
    stack, ivvy, ivvy_connection, monkeypatch
):
    # Given finalize fails on every attempt, before it records anything
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the final status could not be decided")

    monkeypatch.setattr(finalize_module, "final_status", broken)
    batch_id = submit(stack, "ivvy", ivvy_connection, booking_session_jobs(3))
    view = stack.wait_for_batch(batch_id, timeout=60)
    # Then the state machine recorded FAILED itself, and published the event with all four attributes
    assert view["status"] == "FAILED" and view["error"]["code"] == "FINALIZE_FAILED"
    assert "RuntimeError" in view["error"]["message"]
    received = the_event(stack, batch_id)
    assert received["attributes"] == {
        "provider": "ivvy",
        "status": "FAILED",
        "eventType": "batchbridge.batch.failed",
        "connection": ivvy_connection,
    }
    assert received["event"]["data"]["provider"] == "ivvy"
    assert "Record Unexpected Failure" in states_entered(stack, batch_id)
    assert stack.execution(batch_id)["status"] == "FAILED"
    # and a subscriber with the README's filter (provider + status) would have received it


def test_a_finalize_that_fails_after_recording_the_status_publishes_that_status(
    stack, ivvy, ivvy_connection, monkeypatch
):
    # Given finalize records the terminal status, then fails building the event, on every attempt
    def broken(batch: Any, settings: Any) -> dict[str, Any]:
        raise RuntimeError("the event could not be built")

    monkeypatch.setattr(finalize_module, "sns_message", broken)
    batch_id = submit(stack, "ivvy", ivvy_connection, booking_session_jobs(3))
    view = stack.wait_for_batch(batch_id, timeout=60)
    # Then the recorded status stands, and the event the state machine built says it
    assert view["status"] == "SUCCEEDED"
    received = the_event(stack, batch_id)
    assert received["attributes"]["status"] == "SUCCEEDED"
    assert received["attributes"]["eventType"] == "batchbridge.batch.succeeded"
    assert received["attributes"]["provider"] == "ivvy"
    assert "Read Finished Batch" in states_entered(stack, batch_id)


def cancel_from_inside(stack: Any, monkeypatch: pytest.MonkeyPatch, where: str) -> list[str]:
    """Cancel the batch through the API at ``where`` inside the first submit ("prepare": while it creates
    the chunks; "before-chunks": before any chunk item exists). Returns the batch ids cancelled."""
    original = chunk_module.prepare
    cancelled: list[str] = []

    def prepare(deps: Any, batch: Any, size: int) -> Any:
        if not cancelled:
            cancelled.append(batch.batch_id)
            if where == "before-chunks":
                status, body = stack.api("POST", f"/batches/{batch.batch_id}/cancel")
                assert status == 202, body
                return original(deps, batch, size)
            result = original(deps, batch, size)
            status, body = stack.api("POST", f"/batches/{batch.batch_id}/cancel")
            assert status == 202, body
            return result
        return original(deps, batch, size)

    monkeypatch.setattr(chunk_module, "prepare", prepare)
    from batchbridge.tasks import collect
    from batchbridge.tasks import submit as submit_module

    monkeypatch.setattr(submit_module, "prepare", prepare)
    monkeypatch.setattr(collect, "prepare", prepare)
    return cancelled


@pytest.mark.parametrize("where", ["prepare", "before-chunks"])
def test_a_cancel_during_the_first_submit_ends_cancelled_with_every_outcome_and_nothing_sent(
    stack, ivvy, ivvy_connection, monkeypatch, where
):
    cancelled = cancel_from_inside(stack, monkeypatch, where)
    jobs = booking_session_jobs(450)
    batch_id = submit(stack, "ivvy", ivvy_connection, jobs)
    view = assert_settled(stack, batch_id, 450, "CANCELLED", timeout=60)
    assert cancelled == [batch_id]
    assert view["counts"]["notProcessed"] == 450
    assert ivvy.submissions == 0
    # The stale submit never wrote over the cancel: the status stays CANCELLED
    time.sleep(1)
    assert stack.batch(batch_id)["status"] == "CANCELLED"
    assert len(stack.received_events(batch_id, wait=1)) == 1


@pytest.fixture
def so(superoffice_sim: Any, superoffice_connection: str) -> Any:
    superoffice_sim.reset()
    superoffice.clear_endpoint_cache()
    superoffice_sim.job_seconds = 30.0
    yield superoffice_sim, superoffice_connection
    superoffice_sim.reset()


def test_a_cancel_while_a_submit_is_in_flight_cancels_it_at_the_provider_and_names_it(stack, so):
    sim, connection = so
    # Given SuperOffice takes two seconds to answer the mass update
    sim.faults.latency_seconds = 2.0
    sim.faults.only_paths = ("ExecuteByEntityIds",)
    jobs = [{"clientRef": f"contact-{i}", "id": 3000 + i} for i in range(4)]
    batch_id = submit(stack, "superoffice", connection, jobs, options=SO_OPTIONS)
    # When the batch is cancelled while that call is in flight
    stack.wait_until(
        lambda: any(c.state is ChunkState.SUBMITTING for c in stack.repo.iter_chunks(batch_id)), timeout=20
    )
    canceller = threading.Thread(target=lambda: stack.api("POST", f"/batches/{batch_id}/cancel"))
    canceller.start()
    canceller.join()
    view = assert_settled(stack, batch_id, len(jobs), "CANCELLED", timeout=60)
    # Then the task SuperOffice created was recorded, cancelled there, and named in the batch's error
    ref = stack.repo.get_chunk(batch_id, 0).provider_ref
    assert ref and sim.submissions == 1
    assert sim.requests_to("StopBatchJob")
    assert ref in view["error"]["message"] and "cancel" in view["error"]["message"]
    assert {line["providerRef"] for line in stack.result_lines(batch_id)} == {ref}
