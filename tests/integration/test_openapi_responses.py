"""Real answers of the api function on the local stack, each checked against the generated OpenAPI
document's schema for its route and status: what the document promises is what a client gets, success and
error alike (the document is generated from models the answers are not built from, so this is what keeps
the two the same)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from batchbridge_local import openapi
from batchbridge_local.simulators.ivvy import booking_session_jobs

pytestmark = pytest.mark.xdist_group("stack")

DOC = json.loads(openapi.DOCUMENT.read_text())


def conforms(method: str, route: str, status: int, body: Any) -> None:
    """``body`` is valid against the document's JSON schema for ``method route`` answering ``status``."""
    response = DOC["paths"][route][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    schema = response["content"]["application/json"]["schema"]
    root = {"components": DOC["components"], **schema}  # so that "#/components/..." resolves
    Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(body)


def call(stack: Any, method: str, route: str, expected: int, path: str | None = None, **kwargs: Any) -> Any:
    status, body = stack.api(method, path or route, **kwargs)
    assert status == expected, body
    conforms(method, route, status, body)
    return body


def test_a_batch_from_creation_to_results_answers_as_documented(stack, ivvy, ivvy_connection):
    # A batch with one invalid job, created with an Idempotency-Key and then retried
    jobs = booking_session_jobs(4)
    jobs[2]["params"]["startDate"] = "not a date"
    request = {"provider": "ivvy", "connection": ivvy_connection, "jobs": jobs, "clientReference": "doc"}
    key = {"Idempotency-Key": f"doc-{uuid.uuid4()}"}
    batch_id = call(stack, "POST", "/batches", 202, body=request, headers=key)["batchId"]
    assert call(stack, "POST", "/batches", 200, body=request, headers=key)["replayed"] is True

    # While it runs, and once it has ended
    call(stack, "GET", "/batches/{batch_id}", 200, f"/batches/{batch_id}")
    stack.wait_for_batch(batch_id, timeout=60)
    view = call(stack, "GET", "/batches/{batch_id}", 200, f"/batches/{batch_id}")
    assert view["status"] == "PARTIALLY_SUCCEEDED"

    results = f"/batches/{batch_id}/results"
    page = call(stack, "GET", "/batches/{batch_id}/results", 200, results, query={"limit": "2"})
    assert len(page["items"]) == 2 and "nextToken" in page
    failed = call(stack, "GET", "/batches/{batch_id}/results", 200, results, query={"outcome": "failed"})
    assert failed["items"][0]["error"]["code"]
    link = call(stack, "GET", "/batches/{batch_id}/results", 200, results, query={"format": "file"})
    assert link["format"] == "jsonl"

    listing = call(stack, "GET", "/batches", 200, query={"status": "PARTIALLY_SUCCEEDED", "limit": "5"})
    assert listing["items"]
    call(stack, "GET", "/providers", 200)

    # and the errors it can meet on the way
    call(stack, "POST", "/batches/{batch_id}/cancel", 409, f"/batches/{batch_id}/cancel")
    call(stack, "GET", "/batches/{batch_id}/results", 400, results, query={"limit": "0"})
    call(stack, "GET", "/batches", 400, query={"status": "DONE"})
    call(stack, "GET", "/batches", 400, query={"limit": "ten"})
    call(stack, "GET", "/batches", 400, query={"colour": "red"})
    call(stack, "GET", "/batches/{batch_id}/results", 400, results, query={"format": "xml"})


def test_cancelling_a_running_batch_answers_as_documented(stack, ivvy, ivvy_connection):
    ivvy.job_seconds = 30
    request = {"provider": "ivvy", "connection": ivvy_connection, "jobs": booking_session_jobs(2)}
    batch_id = call(stack, "POST", "/batches", 202, body=request)["batchId"]
    stack.wait_until(lambda: stack.batch(batch_id)["status"] == "RUNNING", timeout=30)
    results = f"/batches/{batch_id}/results"
    call(stack, "GET", "/batches/{batch_id}/results", 409, results, query={"format": "file"})
    assert call(stack, "POST", "/batches/{batch_id}/cancel", 202, f"/batches/{batch_id}/cancel")[
        "status"
    ] == ("CANCELLING")
    assert stack.wait_for_batch(batch_id, timeout=60)["status"] == "CANCELLED"


@pytest.mark.parametrize(
    ("raw", "status"),
    [('{"provider": ', 400), ('{"provider": "ivvy", "jobs": []}', 422), ("x" * (7 * 1024 * 1024), 413)],
)
def test_refused_creates_answer_with_the_documented_error(stack, raw, status):
    call(stack, "POST", "/batches", status, raw_body=raw)


def test_unknown_batches_and_callbacks_answer_with_the_documented_error(stack):
    call(stack, "GET", "/batches/{batch_id}", 404, "/batches/no-such-batch")
    call(stack, "POST", "/callbacks/{batch_id}/{token}", 404, "/callbacks/no-such-batch/t0k3n", raw_body="{}")


def test_the_api_serves_the_committed_document(stack):
    assert call(stack, "GET", "/openapi.json", 200) == DOC


@pytest.mark.parametrize(
    ("route", "path", "query", "field"),
    [
        ("/batches", "/batches", {"limit": "ten"}, "limit"),
        ("/batches", "/batches", {"limit": "101"}, "limit"),
        ("/batches", "/batches", {"provider": "acme"}, "provider"),
        ("/batches/{batch_id}/results", "/batches/b-1/results", {"outcome": "maybe"}, "outcome"),
        ("/batches/{batch_id}/results", "/batches/b-1/results", {"limit": "0"}, "limit"),
    ],
)
def test_a_parameter_the_event_handler_refuses_is_a_400_naming_it(stack, route, path, query, field):
    body = call(stack, "GET", route, 400, path, query=query)
    assert body["error"]["code"] == "INVALID_PARAMETER"
    assert [d["field"] for d in body["error"]["details"]] == [field]
    assert body["error"]["message"].startswith(f"{field}: ")
