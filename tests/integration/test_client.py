"""batchbridge_client against the local stack's API served on loopback (the same HTTP a deployed API
answers, unsigned-checked): uploads, batches, waiting, listing, downloads, errors, signing and where the
API URL comes from."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import httpx
import pytest

from batchbridge import uploads
from batchbridge_client import (
    ApiError,
    BatchBridgeClient,
    BatchBridgeError,
    InvalidFileError,
    resolve_api_url,
)
from batchbridge_client.client import api_url_from_stack, format_of
from batchbridge_local.simulators.ivvy import booking_session_jobs

pytestmark = pytest.mark.xdist_group("stack")


def write_jsonl(path: Path, jobs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


@pytest.fixture
def sent() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(stack, sent) -> BatchBridgeClient:
    http = httpx.Client(event_hooks={"request": [sent.append]}, timeout=30)
    return BatchBridgeClient(stack.api_url, http=http)


def test_providers_are_the_apis(client, stack):
    assert client.providers() == stack.api("GET", "/providers")[1]["providers"]


def test_calls_are_signed_for_execute_api_with_the_credential_chain(stack, sent, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCLIENTTEST")  # the chain's first source: the environment
    client = BatchBridgeClient(stack.api_url, http=httpx.Client(event_hooks={"request": [sent.append]}))
    client.providers()
    authorization = sent[-1].headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDCLIENTTEST/")
    assert "/us-east-1/execute-api/aws4_request" in authorization
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token" in authorization


def test_without_credentials_a_loopback_api_is_called_unsigned_and_any_other_is_refused(stack, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    sent: list[httpx.Request] = []
    local = BatchBridgeClient(stack.api_url, http=httpx.Client(event_hooks={"request": [sent.append]}))
    assert local.providers()
    assert "Authorization" not in sent[-1].headers
    remote = BatchBridgeClient("https://abc123.execute-api.eu-west-1.amazonaws.com/v1")
    with pytest.raises(BatchBridgeError, match="no AWS credentials found"):
        remote.providers()
    assert remote.region == "eu-west-1"  # from the URL


def test_an_api_error_is_one_line_with_its_code_status_and_fields(client):
    with pytest.raises(ApiError) as caught:
        client.create_batch("ivvy", "nowhere", jobs=[{"namespace": 1}])
    assert caught.value.status == 422
    assert "\n" not in str(caught.value) and "(HTTP 422)" in str(caught.value)
    assert caught.value.details


def test_an_unreachable_api_says_so(stack):
    with pytest.raises(BatchBridgeError, match=re.escape("cannot reach the API at http://127.0.0.1:1")):
        BatchBridgeClient("http://127.0.0.1:1/v1").providers()


def test_a_file_is_uploaded_and_validated(client, tmp_path):
    view = client.upload_file(write_jsonl(tmp_path / "jobs.jsonl", booking_session_jobs(120)), "ivvy")
    assert (view["status"], view["jobCount"]) == ("VALID", 120)


def test_a_refused_file_names_the_file_the_line_and_the_field(client, tmp_path):
    jobs: list[Any] = booking_session_jobs(3)
    jobs[1] = {"namespace": "venue", "params": {}}
    path = write_jsonl(tmp_path / "bad.jsonl", jobs)
    with pytest.raises(InvalidFileError) as caught:
        client.upload_file(path, "ivvy")
    assert caught.value.problems == [f"{path}:line 2: action: Field required"]
    assert str(caught.value) == f"{path}:line 2: action: Field required"


def test_a_large_file_goes_up_in_parts(client, tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "SINGLE_PUT_MAX_BYTES", 1024)
    monkeypatch.setattr(uploads, "MIN_PART_BYTES", 5 * 1024 * 1024)
    path = tmp_path / "big.jsonl"
    write_jsonl(path, booking_session_jobs(10_000))  # some 3 MB
    with path.open("a") as handle:
        handle.write("\n" * (7 * 1024 * 1024))  # two parts
    sent_bytes: list[int] = []
    view = client.upload_file(path, "ivvy", on_bytes=sent_bytes.append)
    assert (view["status"], view["jobCount"]) == ("VALID", 10_000)
    assert sum(sent_bytes) == path.stat().st_size


def test_unknown_extensions_are_refused_before_any_call():
    assert format_of("a.CSV") == "csv" and format_of("a.ndjson") == "jsonl"
    with pytest.raises(BatchBridgeError, match="cannot tell the format"):
        format_of("jobs.xlsx")


def test_an_inline_batch_is_followed_listed_and_downloaded(client, ivvy, ivvy_connection, tmp_path):
    jobs = booking_session_jobs(6)
    jobs[2]["params"]["startDate"] = "not a date"
    accepted = client.create_batch("ivvy", ivvy_connection, jobs=jobs, client_reference="client-test")
    polls: list[str] = []
    view = client.wait(
        accepted["batchId"], interval=0.2, timeout=60, on_poll=lambda v: polls.append(v["status"])
    )
    assert view["status"] == "PARTIALLY_SUCCEEDED" and polls[-1] == view["status"]
    listed = [b["batchId"] for b in client.list_batches(status="PARTIALLY_SUCCEEDED", limit=200)]
    assert accepted["batchId"] in listed
    assert len(list(client.list_batches(limit=1))) == 1
    everything = tmp_path / "all.jsonl"
    assert client.download_results(accepted["batchId"], everything) == 6
    lines = [json.loads(line) for line in everything.read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(6))
    with pytest.raises(ApiError) as caught:
        client.cancel(accepted["batchId"])
    assert caught.value.code == "BATCH_FINISHED"

    failed = tmp_path / "failed.jsonl"
    count = client.download_results(accepted["batchId"], failed, outcome="failed")
    assert count == 1 and not list(tmp_path.glob("*.part"))
    (line,) = [json.loads(text) for text in failed.read_text().splitlines()]
    assert line["outcome"] == "failed" and line["job"] == jobs[2]


def test_the_api_url_comes_from_the_argument_then_the_stack_then_the_environment(stack, monkeypatch):
    cloudformation = boto3.client("cloudformation")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ApiUrl": {"Value": "https://from-stack.example/v1"}},
    }
    cloudformation.create_stack(StackName="bb-client-test", TemplateBody=json.dumps(template))
    monkeypatch.setenv("BATCHBRIDGE_API_URL", "https://from-env.example/v1")
    assert resolve_api_url("https://given.example/v1", "bb-client-test") == "https://given.example/v1"
    assert resolve_api_url(None, "bb-client-test") == "https://from-stack.example/v1"
    assert resolve_api_url() == "https://from-env.example/v1"
    monkeypatch.delenv("BATCHBRIDGE_API_URL")
    with pytest.raises(BatchBridgeError, match="no API URL"):
        resolve_api_url()
    with pytest.raises(BatchBridgeError, match="cannot read stack 'nope'"):
        api_url_from_stack("nope", session=botocore.session.get_session())


def test_a_file_submitted_becomes_a_batch_that_runs_to_its_end(client, ivvy, ivvy_connection, tmp_path):
    path = write_jsonl(tmp_path / "jobs.jsonl", booking_session_jobs(450, invalid_every=9))
    accepted = client.submit_file(path, "ivvy", ivvy_connection, client_reference="file-test")
    view = client.wait(accepted["batchId"], interval=0.5, timeout=120)
    assert view["jobCount"] == 450 and view["status"] == "PARTIALLY_SUCCEEDED"
    assert view["counts"]["failed"] == 50


def test_a_retry_is_a_new_batch_of_the_failed_jobs_linked_to_the_old(client, ivvy, ivvy_connection):
    jobs = booking_session_jobs(4)
    jobs[1]["params"]["startDate"] = "not a date"
    first = client.create_batch("ivvy", ivvy_connection, jobs=jobs)["batchId"]
    client.wait(first, interval=0.2, timeout=60)
    again = client.retry(first)
    assert again["retryOf"] == first and again["jobCount"] == 1
    assert client.get_batch(first)["retries"] == [again["batchId"]]


def test_failed_records_are_downloaded_fixed_and_resubmitted_as_a_linked_batch(
    client, ivvy, ivvy_connection, tmp_path
):
    # Given a file batch in which two sessions have a date iVvy refuses
    jobs = booking_session_jobs(6)
    for i in (1, 4):
        jobs[i]["params"]["startDate"] = "2026-13-40"
    first = client.submit_file(write_jsonl(tmp_path / "jobs.jsonl", jobs), "ivvy", ivvy_connection)["batchId"]
    assert client.wait(first, interval=0.2, timeout=60)["counts"]["failed"] == 2
    # When the failed jobs are downloaded as a jobs file, fixed, and submitted as a retry of the batch
    to_fix = tmp_path / "to-fix.jsonl"
    assert client.download_results(first, to_fix, outcome="failed", jobs_only=True) == 2
    fixed = [json.loads(line) for line in to_fix.read_text().splitlines()]
    assert fixed == [jobs[1], jobs[4]]
    for job in fixed:
        job["params"]["startDate"] = "2026-03-02"
    second = client.submit_file(
        write_jsonl(tmp_path / "fixed.jsonl", fixed), "ivvy", ivvy_connection, retry_of=first
    )
    # Then the new batch succeeds, and the two are linked both ways
    view = client.wait(second["batchId"], interval=0.2, timeout=60)
    assert (view["status"], view["retryOf"]) == ("SUCCEEDED", first)
    assert client.get_batch(first)["retries"] == [second["batchId"]]
