"""The upload routes on the local stack: POST /uploads, a real PUT to the pre-signed URL (S3 on loopback),
POST /uploads/{id}/complete starting the validator function asynchronously, GET /uploads/{id}; and the
rules a batch started from an upload meets (batchbridge.uploads.jobs_for_batch, claim_for_batch)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx
import pytest

from batchbridge import uploads
from batchbridge.errors import RequestError
from batchbridge_local.simulators.ivvy import booking_session_jobs

pytestmark = pytest.mark.xdist_group("stack")


def jsonl(jobs: list[Any]) -> bytes:
    return b"".join(json.dumps(job).encode() + b"\n" for job in jobs)


def create(stack: Any, **body: Any) -> dict[str, Any]:
    status, answer = stack.api("POST", "/uploads", {"provider": "ivvy", "format": "jsonl", **body})
    assert status == 201, answer
    return dict(answer)


def put(answer: dict[str, Any], data: bytes) -> None:
    upload = answer["upload"]
    response = httpx.put(upload["url"], content=data, headers=upload["headers"])
    assert response.status_code == 200, response.text


def settled(stack: Any, upload_id: str) -> dict[str, Any]:
    views: list[Any] = []

    def done() -> bool:
        views.append(stack.api("GET", f"/uploads/{upload_id}")[1])
        return views[-1]["status"] not in ("AWAITING_UPLOAD", "VALIDATING")

    stack.wait_until(done, timeout=30)
    return dict(views[-1])


def uploaded(stack: Any, data: bytes, **body: Any) -> dict[str, Any]:
    answer = create(stack, **body)
    put(answer, data)
    status, completed = stack.api("POST", f"/uploads/{answer['uploadId']}/complete", {})
    assert status == 202, completed
    return settled(stack, answer["uploadId"])


def jobs_file(stack: Any, upload_id: str) -> list[Any]:
    body = boto3.client("s3").get_object(Bucket=stack.bucket_name, Key=uploads.jobs_key(upload_id))["Body"]
    return [json.loads(line) for line in body.read().splitlines()]


def test_a_good_file_goes_from_awaiting_upload_to_valid_and_its_jobs_file_is_written(stack):
    jobs = booking_session_jobs(300)
    answer = create(stack, sizeBytes=len(jsonl(jobs)))
    assert answer["status"] == "AWAITING_UPLOAD"
    assert answer["upload"]["method"] == "PUT"
    assert answer["upload"]["url"].startswith(stack.s3_url)  # signed for S3 on loopback
    assert "X-Amz-Signature=" in answer["upload"]["url"]  # Signature Version 4
    upload_id = answer["uploadId"]
    assert stack.api("GET", f"/uploads/{upload_id}")[1]["status"] == "AWAITING_UPLOAD"
    put(answer, jsonl(jobs))
    status, completed = stack.api("POST", f"/uploads/{upload_id}/complete", {})
    assert (status, completed["status"]) == (202, "VALIDATING")
    view = settled(stack, upload_id)
    assert view["status"] == "VALID" and view["jobCount"] == 300
    assert view["validatedAt"] >= view["createdAt"]
    assert jobs_file(stack, upload_id) == jobs
    # completing again changes nothing and says where the upload stands
    assert stack.api("POST", f"/uploads/{upload_id}/complete")[1]["status"] == "VALID"


def test_a_refused_file_is_invalid_with_its_first_problems_and_no_jobs_file(stack):
    bad = jsonl(booking_session_jobs(2)) + b'{"namespace": "venue"}\n'
    view = uploaded(stack, bad)
    assert view["status"] == "INVALID"
    assert "jobCount" not in view
    assert view["error"]["code"] == "INVALID_FILE"
    assert view["error"]["details"] == [{"field": "line 3: action", "message": "Field required"}]
    keys = [key for key, _ in stack.all_objects() if key.startswith(f"uploads/{view['uploadId']}/")]
    assert keys == [uploads.source_key(view["uploadId"], "jsonl")]  # the jobs file was abandoned


def test_a_csv_upload_is_validated_and_mapped_to_jobs(stack):
    data = b"clientRef,namespace,action,params.bookingId\n1,venue,addOrUpdateBookingSession,15722\n"
    view = uploaded(stack, data, format="csv")
    assert view["status"] == "VALID", view
    assert jobs_file(stack, view["uploadId"]) == [
        {
            "clientRef": "1",
            "namespace": "venue",
            "action": "addOrUpdateBookingSession",
            "params": {"bookingId": 15722},
        }
    ]


def test_completing_before_the_file_is_there_is_refused_and_changes_nothing(stack):
    answer = create(stack)
    status, error = stack.api("POST", f"/uploads/{answer['uploadId']}/complete", {})
    assert status == 409 and error["error"]["code"] == "FILE_NOT_UPLOADED"
    assert stack.api("GET", f"/uploads/{answer['uploadId']}")[1]["status"] == "AWAITING_UPLOAD"
    status, error = stack.api(
        "POST", f"/uploads/{answer['uploadId']}/complete", {"parts": [{"partNumber": 1, "etag": "x"}]}
    )
    assert status == 400 and error["error"]["code"] == "NOT_MULTIPART"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"provider": "nobody", "format": "jsonl"}, 422, "UNKNOWN_PROVIDER"),
        ({"provider": "ivvy", "format": "xlsx"}, 422, "VALIDATION_FAILED"),
        ({"provider": "ivvy", "format": "jsonl", "sizeBytes": 6 * 1024**3}, 422, "VALIDATION_FAILED"),
        (
            {"provider": "os1", "format": "jsonl", "options": {"participantType": "no spaces"}},
            422,
            "VALIDATION_FAILED",
        ),
        ({"provider": "ivvy", "format": "jsonl", "extra": 1}, 422, "VALIDATION_FAILED"),
    ],
)
def test_a_bad_create_request_is_refused_and_writes_nothing(stack, snapshot, body, status, code):
    before = snapshot()
    answer = stack.api("POST", "/uploads", body)
    assert answer[0] == status and answer[1]["error"]["code"] == code, answer
    assert snapshot() == before


def test_unreadable_bodies_are_refused(stack):
    assert stack.api("POST", "/uploads", raw_body="{")[1]["error"]["code"] == "MALFORMED_JSON"
    assert stack.api("POST", "/uploads", raw_body="[]")[1]["error"]["code"] == "INVALID_BODY"


@pytest.mark.parametrize("upload_id", ["3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d", "not-a-uuid", "UPLOAD%23x"])
def test_an_unknown_upload_is_404(stack, upload_id):
    for method, path in (("GET", f"/uploads/{upload_id}"), ("POST", f"/uploads/{upload_id}/complete")):
        status, answer = stack.api(method, path)
        assert (status, answer["error"]["code"]) == (404, "UPLOAD_NOT_FOUND")


def test_a_multipart_upload_is_joined_from_its_parts_and_validated(stack, monkeypatch):
    monkeypatch.setattr(uploads, "SINGLE_PUT_MAX_BYTES", 1024)
    monkeypatch.setattr(uploads, "MIN_PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    data = jsonl(booking_session_jobs(9990))
    data += b"\n" * (11 * 1024 * 1024 - len(data))  # blank lines to the end: parts of 5, 5 and 1 MiB
    answer = create(stack, sizeBytes=len(data))
    upload = answer["upload"]
    assert upload["method"] == "MULTIPART" and len(upload["parts"]) == 3
    size = upload["partSizeBytes"]
    etags = []
    for part in upload["parts"]:
        start = (part["partNumber"] - 1) * size
        response = httpx.put(part["url"], content=data[start : start + size])
        assert response.status_code == 200, response.text
        etags.append({"partNumber": part["partNumber"], "etag": response.headers["ETag"]})
    upload_id = answer["uploadId"]
    status, error = stack.api("POST", f"/uploads/{upload_id}/complete", {})
    assert status == 400 and error["error"]["code"] == "PARTS_REQUIRED"
    wrong = [etags[0], {"partNumber": 2, "etag": '"0123"'}, etags[2]]
    status, error = stack.api("POST", f"/uploads/{upload_id}/complete", {"parts": wrong})
    assert status == 400 and error["error"]["code"] == "INVALID_PARTS"
    status, error = stack.api("POST", f"/uploads/{upload_id}/complete", {"parts": etags[::-1]})
    assert status == 400 and error["error"]["code"] == "INVALID_PARTS"
    assert stack.api("POST", f"/uploads/{upload_id}/complete", {"parts": etags})[0] == 202
    view = settled(stack, upload_id)
    assert view["status"] == "VALID" and view["jobCount"] == 9990, view


def test_a_validation_that_cannot_start_leaves_the_upload_open_to_complete_again(stack, monkeypatch):
    from botocore.exceptions import ClientError

    answer = create(stack)
    put(answer, jsonl(booking_session_jobs(1)))

    def refused(upload_id: str) -> None:
        raise ClientError({"Error": {"Code": "TooManyRequestsException"}}, "Invoke")

    with pytest.raises(RequestError) as caught:
        uploads.complete_upload(answer["uploadId"], "{}", start_validation=refused)
    assert (caught.value.status, caught.value.code) == (503, "VALIDATION_NOT_STARTED")
    assert stack.api("GET", f"/uploads/{answer['uploadId']}")[1]["status"] == "AWAITING_UPLOAD"
    assert stack.api("POST", f"/uploads/{answer['uploadId']}/complete")[0] == 202
    assert settled(stack, answer["uploadId"])["status"] == "VALID"


def test_a_second_delivery_of_the_validator_event_changes_nothing(stack):
    view = uploaded(stack, jsonl(booking_session_jobs(2)))
    again = stack.functions["ValidateUploadFunction"].invoke({"uploadId": view["uploadId"]})
    assert again == {"uploadId": view["uploadId"], "status": "VALID"}
    assert stack.api("GET", f"/uploads/{view['uploadId']}")[1] == view


# --- the rules for a batch started from an upload --------------------------------------------------------
def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value.status, caught.value.code


def test_only_a_valid_upload_of_the_same_provider_and_options_gives_its_jobs_once(stack):
    options = {"participantType": "drivers", "operation": "create"}
    good = uploaded(stack, jsonl([{"uniqueCode": "D-1", "name": "One"}]), provider="os1", options=options)
    upload_id = good["uploadId"]
    jobs = uploads.jobs_for_batch(upload_id, "os1", options)
    assert (jobs.job_count, jobs.key, jobs.options) == (1, uploads.jobs_key(upload_id), options)
    assert refused(lambda: uploads.jobs_for_batch(upload_id, "ivvy")) == (422, "UPLOAD_PROVIDER_MISMATCH")
    other = {**options, "operation": "update"}
    assert refused(lambda: uploads.jobs_for_batch(upload_id, "os1", other)) == (
        422,
        "UPLOAD_OPTIONS_MISMATCH",
    )

    records = uploads.UploadRecords()
    records.claim_for_batch(upload_id, "batch-1")
    records.claim_for_batch(upload_id, "batch-1")  # the same batch again: harmless
    assert refused(lambda: records.claim_for_batch(upload_id, "batch-2")) == (409, "UPLOAD_ALREADY_USED")
    assert refused(lambda: uploads.jobs_for_batch(upload_id, "os1", options)) == (409, "UPLOAD_ALREADY_USED")
    assert stack.api("GET", f"/uploads/{upload_id}")[1]["batchId"] == "batch-1"
    records.release_claim(upload_id, "batch-2")  # not its claim: nothing happens
    assert refused(lambda: records.claim_for_batch(upload_id, "batch-2")) == (409, "UPLOAD_ALREADY_USED")
    records.release_claim(upload_id, "batch-1")
    records.claim_for_batch(upload_id, "batch-2")


def test_an_upload_not_yet_valid_or_invalid_cannot_start_a_batch(stack):
    waiting = create(stack)["uploadId"]
    assert refused(lambda: uploads.jobs_for_batch(waiting, "ivvy")) == (409, "UPLOAD_NOT_READY")
    assert refused(lambda: uploads.UploadRecords().claim_for_batch(waiting, "b")) == (
        409,
        "UPLOAD_ALREADY_USED",
    )
    invalid = uploaded(stack, b"{}\n")["uploadId"]
    with pytest.raises(RequestError) as caught:
        uploads.jobs_for_batch(invalid, "ivvy")
    assert (caught.value.status, caught.value.code) == (422, "INVALID_FILE")
    assert caught.value.details[0]["field"] == "line 1: namespace"
    assert refused(lambda: uploads.jobs_for_batch("3f2b8c1e-9a4d-4e7b-8c21-5d6f7a8b9c0d", "ivvy")) == (
        422,
        "UPLOAD_NOT_FOUND",
    )


def test_upload_records_stay_out_of_the_batch_listing(stack):
    uploaded(stack, jsonl(booking_session_jobs(1)))
    for status in ("VALID", "INVALID", "AWAITING_UPLOAD"):
        assert stack.api("GET", "/batches", query={"status": status})[0] == 400
    listing = stack.api("GET", "/batches", query={"limit": "100"})[1]
    assert all("uploadId" not in item for item in listing["items"])
    table = boto3.resource("dynamodb").Table(stack.table_name)
    items = table.scan(FilterExpression="begins_with(pk, :u)", ExpressionAttributeValues={":u": "UPLOAD#"})[
        "Items"
    ]
    assert items and all("status" not in item and "kind" not in item for item in items)
