"""Every file in events/ runs: each goes through its function's real handler on the local stack, after what
it names was made the way ``batchbridge local invoke`` makes it (batchbridge_local.invoke.Replay), and
its answer is checked -- status and body against the OpenAPI document for API events, the Step or message
for tasks -- together with what the answer claims (the batch it started ends, the token it parked is
kept, the outcomes it collected are there).

A file added to events/ needs a check here: test_every_event_file_is_checked fails until it has one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from batchbridge.errors import BatchNotFoundError
from batchbridge_local import template as tpl
from batchbridge_local.invoke import Replay, SeedError, event_folders
from tests.conftest import EVENTS, ROOT, load_event
from tests.integration.test_openapi_responses import conforms
from tests.workflow.helpers import SCHEMA

pytestmark = pytest.mark.workflow

FOLDERS = event_folders(tpl.load(ROOT / "template.yaml"))
EVENT_FILES = sorted(p.relative_to(EVENTS).as_posix() for p in EVENTS.glob("*/*.json"))
Check = Callable[[Any, dict[str, Any], Any], None]
CHECKS: dict[str, Check] = {}


def check(path: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[path] = fn
        return fn

    return register


def http(event: dict[str, Any], answer: dict[str, Any], status: int) -> Any:
    """The API answer's body, once its status is ``status`` and its body is what the document says."""
    body = json.loads(answer["body"])
    assert answer["statusCode"] == status, body
    assert answer["multiValueHeaders"]["Content-Type"] == ["application/json"]
    conforms(event["httpMethod"], event["resource"], status, body)
    return body


def step(answer: dict[str, Any], **expected: Any) -> None:
    assert set(answer) == {"remaining", "waitSeconds", "done", "pollCount", "collectRounds", "callback"}
    assert {k: answer[k] for k in expected} == expected, answer


# --- the batch API ------------------------------------------------------------------------------------
@check("api/create_batch.json")
def _(stack, event, answer):
    body = http(event, answer, 202)
    assert body["status"] == "ACCEPTED"
    view = stack.batch(body["batchId"])  # the execution it started has ended (the replay waited for it)
    assert view["status"] == "SUCCEEDED" and view["jobCount"] == 3
    assert view["clientReference"] == json.loads(event["body"])["clientReference"]


@check("api/create_batch_from_upload.json")
def _(stack, event, answer):
    body = http(event, answer, 202)
    upload_id = json.loads(event["body"])["uploadId"]
    assert stack.batch(body["batchId"])["status"] == "SUCCEEDED"
    assert stack.api("GET", f"/uploads/{upload_id}")[1]["batchId"] == body["batchId"]


@check("api/create_batch_malformed.json")
def _(stack, event, answer):
    assert http(event, answer, 400)["error"]["code"] == "MALFORMED_JSON"


@check("api/get_batch.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    assert body["batchId"] == event["pathParameters"]["batch_id"]
    assert body["status"] == "PARTIALLY_SUCCEEDED"
    assert body["counts"] == {"total": 6, "succeeded": 4, "failed": 2, "notProcessed": 0}


@check("api/list_batches_by_status.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    asked = set(event["queryStringParameters"]["status"].split(","))
    assert {item["status"] for item in body["items"]} == asked  # one of each was made just before
    assert {item["provider"] for item in body["items"]} == {"ivvy"}
    assert len(body["items"]) <= int(event["queryStringParameters"]["limit"])


@check("api/list_batches_by_reference.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    reference = event["queryStringParameters"]["clientReference"]
    assert body["items"] and {item["clientReference"] for item in body["items"]} == {reference}


@check("api/get_results_page.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    assert [item["outcome"] for item in body["items"]] == ["failed"]
    assert body["nextToken"]  # the batch has two failed jobs: a page of one leaves one


@check("api/get_results_by_client_ref.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    (item,) = body["items"]
    assert item["clientRef"] == event["queryStringParameters"]["clientRef"]
    assert item["outcome"] == "failed" and item["error"]["code"] == "IVVY_24337"


@check("api/get_results_file.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    lines = [
        json.loads(line) for line in httpx.get(body["url"], timeout=30).raise_for_status().text.splitlines()
    ]
    assert [line["outcome"] for line in lines] == ["failed", "failed"]
    assert all(line["job"]["clientRef"] == line["clientRef"] for line in lines)


@check("api/retry_batch.json")
def _(stack, event, answer):
    body = http(event, answer, 202)
    original = event["pathParameters"]["batch_id"]
    assert body["retryOf"] == original and body["jobCount"] == 2
    assert stack.batch(body["batchId"])["status"] == "FAILED"  # the same two invalid jobs, unfixed
    assert body["batchId"] in stack.batch(original)["retries"]


@check("api/cancel_batch.json")
def _(stack, event, answer):
    body = http(event, answer, 202)
    assert body["status"] == "CANCELLING"
    view = stack.batch(event["pathParameters"]["batch_id"])
    assert view["status"] == "CANCELLED" and view["counts"]["notProcessed"] == 3


@check("api/provider_callback.json")
def _(stack, event, answer):
    assert http(event, answer, 200) == {"accepted": True}
    assert stack.repo.get_batch(event["pathParameters"]["batch_id"]).callback_pending


@check("api/list_providers.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    assert {p["name"] for p in body["providers"]} == {"ivvy", "willsuite", "superoffice", "os1"}


@check("api/get_openapi.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    assert body["openapi"].startswith("3.1") and "/batches" in body["paths"]


# --- uploads ------------------------------------------------------------------------------------------
@check("api/create_upload.json")
def _(stack, event, answer):
    body = http(event, answer, 201)
    assert body["status"] == "AWAITING_UPLOAD" and body["upload"]["method"] == "PUT"


@check("api/complete_upload.json")
def _(stack, event, answer):
    assert http(event, answer, 202)["status"] == "VALIDATING"
    upload = f"/uploads/{event['pathParameters']['upload_id']}"
    stack.wait_until(lambda: stack.api("GET", upload)[1]["status"] == "VALID", timeout=60)


@check("api/get_upload.json")
def _(stack, event, answer):
    body = http(event, answer, 200)
    assert body["uploadId"] == event["pathParameters"]["upload_id"]
    assert body["status"] == "VALID" and body["jobCount"] == 3


@check("validate_upload/completed.json")
def _(stack, event, answer):
    assert answer == {"uploadId": event["uploadId"], "status": "VALID", "jobCount": 3}


# --- the workflow's tasks -----------------------------------------------------------------------------
@check("submit_batch/start.json")
def _(stack, event, answer):
    step(answer, remaining=0, done=False, pollCount=1, callback=True)
    assert stack.repo.get_batch(event["batchId"]).status.value == "RUNNING"
    chunks = list(stack.repo.iter_chunks(event["batchId"]))
    assert [c.state.value for c in chunks] == ["RUNNING"] and chunks[0].provider_ref


@check("check_status/poll.json")
def _(stack, event, answer):
    step(answer, done=True)  # the vendor finished while the workflow waited
    assert [c.state.value for c in stack.repo.iter_chunks(event["batchId"])] == ["COMPLETED"]


@check("await_callback/park.json")
def _(stack, event, answer):
    assert answer == {"parked": True}
    assert stack.repo.get_batch(event["batchId"]).task_token == event["taskToken"]


@check("collect_results/after_provider_finished.json")
def _(stack, event, answer):
    step(answer, remaining=0, done=True)
    outcomes = sorted((int(r["index"]), r["outcome"]) for r in stack.outcome_rows(event["batchId"]))
    assert outcomes == [(0, "succeeded"), (1, "succeeded"), (2, "failed")]
    assert len(stack.result_lines(event["batchId"])) == 3  # and the results file is joined


@check("collect_results/after_credentials_refused.json")
def _(stack, event, answer):
    step(answer, remaining=0, done=True)
    rows = stack.outcome_rows(event["batchId"])
    assert len(rows) == 3
    assert {(r["outcome"], r["error"]["code"]) for r in rows} == {("not_processed", "PROVIDER_AUTH_FAILED")}


@check("finalize_batch/after_collect.json")
def _(stack, event, answer):
    assert answer["status"] == "PARTIALLY_SUCCEEDED" and answer["finishedNow"] is True
    message = json.loads(answer["message"])
    jsonschema.validate(message, SCHEMA)
    assert message["data"]["counts"] == {"total": 3, "succeeded": 2, "failed": 1, "notProcessed": 0}
    assert answer["attributes"]["eventType"] == "batchbridge.batch.partially_succeeded"


@check("finalize_batch/after_ambiguous_submit.json")
def _(stack, event, answer):
    assert answer["status"] == "NEEDS_ATTENTION" and answer["finishedNow"] is True
    message = json.loads(answer["message"])
    jsonschema.validate(message, SCHEMA)
    assert message["data"]["error"]["code"] == "AMBIGUOUS_SUBMIT"
    assert "chunk 0" in message["data"]["error"]["message"]
    assert message["data"]["counts"]["notProcessed"] == 3


# --- the tests ------------------------------------------------------------------------------------------
def test_every_event_file_is_checked():
    assert set(CHECKS) == set(EVENT_FILES)


@pytest.mark.parametrize("path", EVENT_FILES)
def test_every_event_runs_through_its_handler_on_the_local_stack(stack, path):
    event = load_event(path)
    with Replay(stack) as replay:
        answer = replay.run(FOLDERS[Path(path).parent.name], event)
    CHECKS[path](stack, event, answer)  # after the replay: whatever the event started has ended


def test_a_listing_of_the_other_terminal_statuses_finds_one_batch_made_for_each(stack):
    # The listing events ask for two statuses; the recipes for the others are checked here.
    asked = "SUCCEEDED,TIMED_OUT,NEEDS_ATTENTION,CANCELLED"
    event = load_event("api/list_batches_by_status.json")
    event["queryStringParameters"] |= {"status": asked}
    event["multiValueQueryStringParameters"] |= {"status": [asked]}
    with Replay(stack) as replay:
        body = http(event, replay.run("ApiFunction", event), 200)
    assert {item["status"] for item in body["items"]} == set(asked.split(","))


def test_a_task_event_whose_error_no_run_can_be_made_to_fail_with_is_refused(stack):
    event = {"batchId": str(uuid.uuid4()), "error": {"Error": "BatchRejectedError", "Cause": "{}"}}
    with Replay(stack) as replay, pytest.raises(SeedError, match="ProviderAuthError"):
        replay.seed("CollectResultsFunction", event)
    with pytest.raises(BatchNotFoundError):  # nothing was made
        stack.repo.get_batch(event["batchId"])


def test_a_task_event_naming_a_batch_that_exists_is_refused(stack):
    event = load_event("submit_batch/start.json") | {"batchId": str(uuid.uuid4())}
    with Replay(stack) as replay:
        replay.seed("SubmitBatchFunction", event)
        with pytest.raises(SeedError, match="exists already"):
            replay.seed("SubmitBatchFunction", event)


COMMAND = Path(sys.executable).parent / "batchbridge"


def test_the_command_makes_what_the_event_names_and_prints_only_the_answer():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(  # noqa: S603 - the command this checkout installed
        [str(COMMAND), "local", "invoke", "check_status", str(EVENTS / "check_status" / "poll.json")],
        capture_output=True,
        text=True,
        timeout=280,
        env={**env, "AWS_EC2_METADATA_DISABLED": "true"},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # stdout is the answer alone
    assert answer["done"] is True and answer["pollCount"] == 2
    assert f"made batch {load_event('check_status/poll.json')['batchId']}" in done.stderr
