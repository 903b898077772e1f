"""The callback fast path: the provider's callback resumes the waiting workflow at once, the poll
interval stays the safety net, and duplicate, late or forged callbacks are harmless."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from batchbridge.config import get_settings
from batchbridge_local.simulators.ivvy import booking_session_jobs
from tests.workflow.helpers import submit, the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]


@pytest.fixture
def slow_polls(monkeypatch):
    """Poll intervals long enough (about ten seconds) that a poll cannot pass for a callback."""
    monkeypatch.setenv("POLL_TIME_SCALE", "0.2")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def sim(ivvy_sim):
    ivvy_sim.reset()
    ivvy_sim.job_seconds = 1.0
    yield ivvy_sim
    ivvy_sim.reset()


def seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_task_endings(stack: Any, batch_id: str) -> list[str]:
    """How each callback wait ended: TaskSucceeded (resumed by a callback) or TaskTimedOut (poll due)."""
    history = stack.execution_history(batch_id)
    by_id = {e["id"]: e for e in history}
    endings = []
    for event in history:
        if event["type"] in ("TaskSucceeded", "TaskTimedOut", "TaskFailed"):
            entered = by_id.get(event["previousEventId"])
            while entered and entered["type"] != "TaskStateEntered":
                entered = by_id.get(entered["previousEventId"])
            if entered and entered["stateEnteredEventDetails"]["name"] == "Wait For Callback Or Next Poll":
                endings.append(event["type"])
    return endings


def test_ivvys_callback_ends_the_wait_within_a_second(stack, sim, ivvy_connection, slow_polls):
    # Given polls about ten seconds apart and an iVvy batch that takes one second
    batch_id = submit(stack, "ivvy", ivvy_connection, booking_session_jobs(5))
    view = stack.wait_for_batch(batch_id, timeout=60)
    # Then the callback, confirmed through iVvy's results, ended the wait long before the poll was due
    assert view["status"] == "SUCCEEDED"
    assert sim.callbacks and all(c.status == 200 for c in sim.callbacks)
    assert wait_task_endings(stack, batch_id)[0] == "TaskSucceeded"
    chunk = stack.repo.get_chunk(batch_id, 0)
    delay = seconds(chunk.finished_at) - (seconds(chunk.submitted_at) + sim.job_seconds)
    assert delay <= 1.0, f"completion seen {delay:.2f}s after iVvy finished"
    checks = [
        e
        for e in stack.execution_history(batch_id)
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Check Batch Status"
    ]
    assert len(checks) == 1
    assert the_event(stack, batch_id)["attributes"]["status"] == "SUCCEEDED"


def test_a_lost_callback_costs_one_poll_not_the_batch(stack, sim, ivvy_connection, slow_polls, monkeypatch):
    # Given iVvy's callbacks never arrive
    monkeypatch.setattr(sim, "_send_callback", lambda batch: None)
    batch_id = submit(stack, "ivvy", ivvy_connection, booking_session_jobs(3))
    view = stack.wait_for_batch(batch_id, timeout=90)
    # Then the wait timed out into a normal poll, which found the batch done
    assert view["status"] == "SUCCEEDED"
    assert wait_task_endings(stack, batch_id)[0] == "TaskTimedOut"


def test_os1s_callback_ends_the_wait(stack, os1_sim, os1_connection, slow_polls):
    os1_sim.reset()
    os1_sim.batch_seconds = 1.0
    jobs = [{"uniqueCode": f"V-{i}", "name": f"Vehicle {i}"} for i in range(4)]
    batch_id = submit(stack, "os1", os1_connection, jobs, options={"participantType": "vehicles"})
    view = stack.wait_for_batch(batch_id, timeout=60)
    assert view["status"] == "SUCCEEDED"
    assert wait_task_endings(stack, batch_id)[0] == "TaskSucceeded"
    os1_sim.reset()


def test_forged_duplicate_and_late_callbacks_are_harmless(stack, sim, ivvy_connection):
    batch_id = submit(stack, "ivvy", ivvy_connection, booking_session_jobs(2))
    view = stack.wait_for_batch(batch_id, timeout=60)
    batch = stack.repo.get_batch(batch_id)
    # A wrong token is indistinguishable from an unknown batch
    status, body = stack.api("POST", f"/callbacks/{batch_id}/not-the-token", {"asyncId": "x"})
    assert (status, body["error"]["code"]) == (404, "UNKNOWN_CALLBACK")
    # The real URL after the batch finished: answered, ignored, nothing changes
    status, body = stack.api("POST", f"/callbacks/{batch_id}/{batch.callback_token}", {"asyncId": "x"})
    assert (status, body["accepted"]) == (200, False)
    assert stack.batch(batch_id)["status"] == view["status"]
    assert len(stack.received_events(batch_id, wait=1)) == 1
    # The callback URL never appears in what clients can read
    assert "callback" not in str(stack.batch(batch_id)).lower()
