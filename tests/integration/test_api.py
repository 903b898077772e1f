"""The API function on the local stack: bad input of every kind is refused with a clear 4xx naming the
problem, and leaves nothing behind; good input is accepted once, even when retried."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.xdist_group("stack")


def session_job(i: int, **override: Any) -> dict[str, Any]:
    params = {
        "spaceVenueId": 1,
        "bookingId": 15722,
        "contactId": 10,
        "name": f"Session {i}",
        "startDate": "2026-03-02",
    }
    return {
        "clientRef": f"s-{i}",
        "namespace": "venue",
        "action": "addOrUpdateBookingSession",
        "params": {**params, **override},
    }


def body(connection: str, n: int = 2, **extra: Any) -> dict[str, Any]:
    return {"provider": "ivvy", "connection": connection, "jobs": [session_job(i) for i in range(n)], **extra}


def field_names(response: dict[str, Any]) -> list[str]:
    return [d["field"] for d in response["error"].get("details", [])]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ('{"provider": "ivvy", ', 400, "MALFORMED_JSON"),
        ("[1, 2, 3]", 400, "INVALID_BODY"),
        ("", 400, "EMPTY_BODY"),
        ("null", 400, "INVALID_BODY"),
    ],
)
def test_unreadable_bodies_are_refused_and_nothing_is_written(stack, snapshot, raw, status, code):
    # Given the stack as it is
    before = snapshot()
    # When a body that is not a JSON object arrives
    got, response = stack.api("POST", "/batches", raw_body=raw)
    # Then the answer names the problem and nothing was written
    assert (got, response["error"]["code"]) == (status, code)
    assert snapshot() == before


def test_missing_and_mistyped_fields_are_each_named(stack, snapshot, ivvy_connection):
    before = snapshot()
    status, response = stack.api("POST", "/batches", {"provider": "ivvy", "jobs": "all of them"})
    assert status == 422
    assert set(field_names(response)) == {"connection", "jobs"}
    assert "connection" in response["error"]["message"]
    assert snapshot() == before


def test_unknown_fields_are_refused(stack, snapshot, ivvy_connection):
    before = snapshot()
    status, response = stack.api("POST", "/batches", body(ivvy_connection, surprise=True))
    assert status == 422
    assert field_names(response) == ["surprise"]
    assert snapshot() == before


def test_unknown_provider_is_named(stack, snapshot, ivvy_connection):
    before = snapshot()
    status, response = stack.api("POST", "/batches", {**body(ivvy_connection), "provider": "acme"})
    assert status == 422
    assert response["error"]["code"] == "UNKNOWN_PROVIDER"
    assert "acme" in response["error"]["message"] and "ivvy" in response["error"]["message"]
    assert snapshot() == before


def test_unknown_connection_is_named(stack, snapshot, ivvy_connection):
    before = snapshot()
    status, response = stack.api("POST", "/batches", body("no-such-connection"))
    assert status == 422
    assert response["error"]["code"] == "UNKNOWN_CONNECTION"
    assert "no-such-connection" in response["error"]["message"]
    assert snapshot() == before


def test_a_connection_for_another_provider_is_refused(stack, snapshot, ivvy_connection):
    stack.add_connection(
        "someone-elses", "willsuite", "http://127.0.0.1:9", {"clientId": "a", "clientSecret": "b"}
    )
    before = snapshot()
    status, response = stack.api("POST", "/batches", body("someone-elses"))
    assert status == 422
    assert response["error"]["code"] == "CONNECTION_PROVIDER_MISMATCH"
    assert snapshot() == before


def test_more_jobs_than_the_advertised_maximum_is_refused(stack, snapshot, ivvy_connection, monkeypatch):
    from batchbridge.providers.base import provider_class

    cls = provider_class("ivvy")
    # Given iVvy declared a maximum of 50 jobs per batch (the real one, 1,000,000, would not fit a body)
    monkeypatch.setattr(cls, "capabilities", cls.capabilities.model_copy(update={"max_jobs_per_batch": 50}))
    before = snapshot()
    jobs = [{"namespace": "venue", "action": "x"}] * 51
    status, response = stack.api(
        "POST", "/batches", {"provider": "ivvy", "connection": ivvy_connection, "jobs": jobs}
    )
    assert status == 422
    assert response["error"]["code"] == "TOO_MANY_JOBS"
    assert "50" in response["error"]["message"]
    assert snapshot() == before


def test_an_oversized_body_is_refused_before_parsing(stack, snapshot, ivvy_connection):
    from batchbridge.config import get_settings

    before = snapshot()
    padding = "x" * (get_settings().max_body_bytes + 1)
    status, response = stack.api("POST", "/batches", raw_body=json.dumps({"pad": padding}))
    assert status == 413
    assert response["error"]["code"] == "BODY_TOO_LARGE"
    assert snapshot() == before


def test_invalid_jobs_are_named_by_index(stack, snapshot, ivvy_connection):
    before = snapshot()
    jobs = [session_job(0), {"namespace": "", "action": "run"}, {"action": "x", "params": []}]
    status, response = stack.api(
        "POST", "/batches", {"provider": "ivvy", "connection": ivvy_connection, "jobs": jobs}
    )
    assert status == 422
    fields = field_names(response)
    assert "jobs[1].namespace" in fields
    assert "jobs[2].namespace" in fields and "jobs[2].params" in fields
    assert snapshot() == before


def test_an_empty_job_list_is_refused(stack, snapshot, ivvy_connection):
    before = snapshot()
    status, response = stack.api("POST", "/batches", body(ivvy_connection, n=0))
    assert status == 422
    assert field_names(response) == ["jobs"]
    assert snapshot() == before


def test_a_deadline_beyond_the_provider_maximum_is_refused(stack, snapshot, ivvy_connection):
    before = snapshot()
    status, response = stack.api("POST", "/batches", body(ivvy_connection, deadlineSeconds=10**7))
    assert status == 422
    assert field_names(response) == ["deadlineSeconds"]
    assert snapshot() == before


def test_the_same_idempotency_key_returns_the_same_batch(stack, ivvy_connection):
    payload = body(ivvy_connection)
    headers = {"Idempotency-Key": "retry-me-1"}
    first_status, first = stack.api("POST", "/batches", payload, headers=headers)
    second_status, second = stack.api("POST", "/batches", payload, headers=headers)
    assert (first_status, second_status) == (202, 200)
    assert second["batchId"] == first["batchId"]
    assert second["replayed"] is True
    stack.wait_for_batch(first["batchId"], timeout=90)


def test_reusing_an_idempotency_key_for_a_different_body_is_refused(stack, ivvy_connection):
    headers = {"Idempotency-Key": "retry-me-2"}
    status, first = stack.api("POST", "/batches", body(ivvy_connection, n=1), headers=headers)
    assert status == 202
    status, response = stack.api("POST", "/batches", body(ivvy_connection, n=2), headers=headers)
    assert status == 422
    assert response["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    stack.wait_for_batch(first["batchId"], timeout=90)


def test_an_unknown_batch_is_404(stack):
    status, response = stack.api("GET", f"/batches/{uuid.uuid4()}")  # an id no test creates
    assert status == 404
    assert response["error"]["code"] == "BATCH_NOT_FOUND"


def test_results_parameters_are_checked(stack, ivvy_connection):
    status, accepted = stack.api("POST", "/batches", body(ivvy_connection, n=1))
    batch_id = accepted["batchId"]
    for query, code in [
        ({"limit": "0"}, "INVALID_PARAMETER"),
        ({"outcome": "maybe"}, "INVALID_PARAMETER"),
        ({"nextToken": "not-a-token"}, "INVALID_TOKEN"),
        ({"colour": "red"}, "UNKNOWN_PARAMETER"),
    ]:
        status, response = stack.api("GET", f"/batches/{batch_id}/results", query=query)
        assert (status, response["error"]["code"]) == (400, code), query
    stack.wait_for_batch(batch_id, timeout=90)


def test_providers_lists_capabilities(stack):
    status, response = stack.api("GET", "/providers")
    assert status == 200
    ivvy = next(p for p in response["providers"] if p["name"] == "ivvy")
    assert ivvy["maxJobsPerSubmit"] == 200
    assert ivvy["supportsCallback"] is True


def test_jobs_shaped_for_another_operation_are_refused_before_anything_is_written(
    stack, snapshot, os1_connection
):
    # Given an "update" batch whose second job is shaped as a create
    before = snapshot()
    jobs = [
        {"id": "driver:7f1e0c1e-4a3b-4c55-9d7e-2b1f0e4c9a11", "properties": {"hub": "north"}},
        {"uniqueCode": "DRV-1", "name": "New driver"},
    ]
    body = {
        "provider": "os1",
        "connection": os1_connection,
        "jobs": jobs,
        "options": {"participantType": "drivers", "operation": "update"},
    }
    status, response = stack.api("POST", "/batches", body)
    # Then the API names the job and the reason, and writes nothing
    assert status == 422
    assert field_names(response) == ["jobs[1]"]
    assert "update" in response["error"]["message"]
    assert snapshot() == before
