"""Hostile input gets a clear 4xx and writes nothing: bodies nested to the recursion limit, lone
surrogates, NaN and Infinity, tokens that decode to deep nesting, callbacks built to hurt."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

pytestmark = pytest.mark.xdist_group("stack")


def job(**params: Any) -> dict[str, Any]:
    base = {"spaceVenueId": 1, "bookingId": 15722, "contactId": 10, "name": "S", "startDate": "2026-03-02"}
    return {
        "clientRef": "s-1",
        "namespace": "venue",
        "action": "addOrUpdateBookingSession",
        "params": {**base, **params},
    }


def post(stack, connection: str, raw: str, **headers: str) -> tuple[int, Any]:
    return stack.api("POST", "/batches", raw_body=raw, headers=headers or None)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ('{"provider": ' + nested(20_000) + "}", 400, "MALFORMED_JSON"),
        ('{"provider": "ivvy", "x": NaN}', 400, "MALFORMED_JSON"),
        ('{"provider": "ivvy", "x": Infinity}', 400, "MALFORMED_JSON"),
        ('{"provider": "ivvy", "x": -Infinity}', 400, "MALFORMED_JSON"),
    ],
    ids=["nested-20000", "nan", "infinity", "minus-infinity"],
)
def test_bodies_python_would_choke_on_are_refused(stack, snapshot, ivvy_connection, raw, status, code):
    before = snapshot()
    got, body = post(stack, ivvy_connection, raw)
    assert (got, body["error"]["code"]) == (status, code)
    assert snapshot() == before


def test_a_job_nested_hundreds_deep_is_refused_with_an_idempotency_key_and_the_key_stays_free(
    stack, snapshot, ivvy_connection
):
    before = snapshot()
    deep: Any = "leaf"
    for _ in range(300):
        deep = {"d": deep}
    raw = json.dumps({"provider": "ivvy", "connection": ivvy_connection, "jobs": [job(notes=deep)]})
    got, body = post(stack, ivvy_connection, raw, **{"Idempotency-Key": "deep-1"})
    assert got == 422 and body["error"]["details"][0]["field"] == "jobs[0]"
    assert "deeper" in body["error"]["details"][0]["message"]
    assert snapshot() == before
    # the same key is free for a good request
    good = json.dumps({"provider": "ivvy", "connection": ivvy_connection, "jobs": [job()]})
    got, body = post(stack, ivvy_connection, good, **{"Idempotency-Key": "deep-1"})
    assert got == 202


def test_a_lone_surrogate_is_refused_at_the_door_not_sent_to_the_vendor(stack, snapshot, ivvy_connection):
    before = snapshot()
    bad_job = json.dumps(job()).replace('"name": "S"', '"name": "S\\ud800"')
    raw = f'{{"provider": "ivvy", "connection": "{ivvy_connection}", "jobs": [{bad_job}]}}'
    got, body = post(stack, ivvy_connection, raw, **{"Idempotency-Key": "surrogate-1"})
    assert got == 422 and body["error"]["details"][0]["field"] == "jobs[0]"
    assert "surrogate" in body["error"]["details"][0]["message"]
    assert snapshot() == before


def test_a_results_token_that_decodes_to_deep_nesting_is_refused(stack, ivvy_connection):
    got, accepted = stack.api(
        "POST", "/batches", {"provider": "ivvy", "connection": ivvy_connection, "jobs": [job()]}
    )
    assert got == 202
    batch_id = accepted["batchId"]
    for token in (
        base64.urlsafe_b64encode(nested(50_000).encode()).decode(),
        "%%%",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ):
        for path in (f"/batches/{batch_id}/results", "/batches"):
            status, body = stack.api("GET", path, query={"nextToken": token})
            assert (status, body["error"]["code"]) == (400, "INVALID_TOKEN"), (path, token[:20])
    stack.wait_for_batch(batch_id, timeout=60)


def test_a_callback_built_to_hurt_is_answered_and_ignored_never_a_5xx_or_an_undocumented_409(
    stack, ivvy_connection
):
    _, accepted = stack.api(
        "POST", "/batches", {"provider": "ivvy", "connection": ivvy_connection, "jobs": [job()]}
    )
    batch_id = accepted["batchId"]
    stack.wait_for_batch(batch_id, timeout=60)
    token = stack.repo.get_batch(batch_id).callback_token
    for raw in ('{"asyncId": ' + nested(20_000) + "}", "not json", '{"asyncId": NaN}', "\x00\x01"):
        status, body = stack.api("POST", f"/callbacks/{batch_id}/{token}", raw_body=raw)
        assert (status, body["accepted"]) == (200, False)
