"""OS1 envelopes, job/options models and the chunk plan: pure functions, no network."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from batchbridge.errors import ProviderResponseError
from batchbridge.providers.auth import keep_seconds
from batchbridge.providers.os1 import (
    OS1Job,
    OS1Options,
    parse_error,
    parse_status,
    parse_success,
    plan_chunk,
)

UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
REQUEST = {
    "uri": "/core/api/v2/participants/drivers/batch/status",
    "method": "GET",
    "queryString": "",
    "body": {},
}


def status_body(status: str = "completed", **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "meta": {"status": status, "success": 1, "failed": 1, "total": 3},
        "success": [{"refID": "c-1", "id": f"driver:{UUID}"}],
        "errors": [{"refID": "c-2", "reason": "name is required"}],
    }
    body.update(data)
    return {"data": body, "request": REQUEST}


# --- success envelope --------------------------------------------------------------------------------
def test_success_envelope_of_the_seed_gives_its_data() -> None:
    # Given the seed's 200 shape {"data": {}, "request": {uri, method, queryString, body}}
    body = {"data": {}, "request": {"uri": "", "method": "", "queryString": "", "body": {}}}
    # Then its data is returned
    assert parse_success(body) == {}


def test_the_request_echo_is_neither_required_nor_read() -> None:
    # The seed's own body spells the echo's fields in lower case; other answers may leave it out
    assert parse_success({"data": {"id": "x"}}) == {"id": "x"}
    lowered = {"data": {}, "request": {"uri": "", "method": "", "querystring": "", "body": {}}}
    assert parse_success(lowered) == {}


@pytest.mark.parametrize(
    ("body", "named"), [({"request": REQUEST}, "data: missing"), ([], "expected a JSON object")]
)
def test_success_envelope_that_breaks_the_shape_names_the_problem(body: Any, named: str) -> None:
    with pytest.raises(ProviderResponseError) as caught:
        parse_success(body)
    assert named in caught.value.message


def test_an_error_envelope_under_a_success_status_is_not_taken_for_data() -> None:
    body = {"error": {"code": "400000000001", "description": "x", "additionalInfo": {}}, "request": REQUEST}
    with pytest.raises(ProviderResponseError, match="error envelope"):
        parse_success(body)


# --- error envelope ----------------------------------------------------------------------------------
def test_error_envelope_gives_code_description_and_additional_info() -> None:
    # Given an error envelope as the seed shows it, with a 12-digit code
    body = {
        "error": {
            "code": "400123456789",
            "description": "payload[0].name is required",
            "additionalInfo": {"i": 0},
        },
        "request": REQUEST,
    }
    # When it is parsed
    error = parse_error(body)
    # Then every field is kept
    assert (error.code, error.description, error.additional_info) == (
        "400123456789",
        "payload[0].name is required",
        {"i": 0},
    )
    assert error.text() == "OS1 error 400123456789: payload[0].name is required"


def test_an_error_envelope_with_the_seeds_empty_placeholders_is_still_an_error() -> None:
    # The seed's examples show {"code": "", "description": "", "additionalinfo": {}}
    error = parse_error({"error": {"code": "", "description": "", "additionalinfo": {}}, "request": REQUEST})
    assert error.code == ""
    assert error.text() == "no description"


@pytest.mark.parametrize(
    ("error", "named"),
    [
        ({"description": "d"}, "error.code: missing"),
        ({"code": 400123456789, "description": "d"}, "error.code"),
        ({"code": "400123456789", "description": {"text": "d"}}, "error.description"),
    ],
)
def test_error_envelope_that_breaks_the_shape_names_the_problem(error: dict[str, Any], named: str) -> None:
    with pytest.raises(ProviderResponseError) as caught:
        parse_error({"error": error, "request": REQUEST})
    assert named in caught.value.message


# --- status data ---------------------------------------------------------------------------------------
def test_status_body_is_read_into_meta_success_and_errors() -> None:
    status = parse_status(status_body())
    assert status.meta.status == "completed"
    assert (status.meta.success, status.meta.failed, status.meta.total) == (1, 1, 3)
    assert [(s.ref_id, s.id) for s in status.success or []] == [("c-1", f"driver:{UUID}")]
    assert [(e.ref_id, e.reason) for e in status.errors or []] == [("c-2", "name is required")]


def test_a_status_may_leave_out_the_lists() -> None:
    running = {"data": {"meta": {"status": "queued", "success": 0, "failed": 0, "total": 2}}}
    assert parse_status(running).success is None


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"meta": None}, "data.meta"),
        ({"meta": {"status": "completed", "success": "1", "failed": 1, "total": 3}}, "data.meta.success"),
        ({"meta": {"success": 1, "failed": 1, "total": 3}}, "data.meta.status: missing"),
        ({"success": [{"id": "x"}]}, "data.success.0.refID: missing"),
        ({"errors": [{"refID": "c-2", "reason": {"text": "no"}}]}, "data.errors.0.reason"),
    ],
)
def test_status_body_that_breaks_the_shape_names_the_problem(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ProviderResponseError) as caught:
        parse_status(status_body(**data))
    assert named in caught.value.message


# --- token lifetime ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expires_in", "keep"), [(3600, 3000.0), (1200, 600.0), (900, 450.0), (60, 30.0), (1, 0.5)]
)
def test_tokens_are_kept_for_expires_in_minus_600s_or_half_their_life(expires_in: int, keep: float) -> None:
    assert keep_seconds(expires_in, 600) == keep


# --- models ---------------------------------------------------------------------------------------------
def test_a_create_job_and_an_update_job_are_both_accepted() -> None:
    create = OS1Job.model_validate(
        {"uniqueCode": "D-1", "name": "Ann", "owner": "u1", "properties": {"a": 1}}
    )
    update = OS1Job.model_validate({"id": f"driver:{UUID}", "properties": {"a": 2}, "clientRef": "r"})
    assert (create.operation, create.ref_value("uniqueCode")) == ("create", "D-1")
    assert (update.operation, update.ref_value("id")) == ("update", f"driver:{UUID}")
    assert create.payload() == {"uniqueCode": "D-1", "name": "Ann", "owner": "u1", "properties": {"a": 1}}
    assert update.payload() == {"id": f"driver:{UUID}", "properties": {"a": 2}}


@pytest.mark.parametrize(
    ("job", "named"),
    [
        ({"name": "Ann"}, "uniqueCode"),
        ({"uniqueCode": "D-1"}, "name"),
        ({"id": f"driver:{UUID}", "name": "Ann"}, "not name"),
        ({"id": "driver-1"}, "id"),
        ({"id": UUID}, "id"),
        ({"id": f"driver:{UUID}\n"}, "participant id"),
        ({"uniqueCode": "D-1", "name": "Ann", "colour": "red"}, "colour"),
        ({"uniqueCode": "D-1", "name": "Ann", "properties": []}, "properties"),
        ({"uniqueCode": 7, "name": "Ann"}, "uniqueCode"),
        ({"unique_code": "D-1", "name": "Ann"}, "unique_code"),
    ],
)
def test_job_shapes_that_are_neither_create_nor_update_are_refused(job: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        OS1Job.model_validate(job)
    assert named in str(caught.value)


@pytest.mark.parametrize("participant_type", ["drivers", "vehicle_types", "Trucks-2"])
def test_participant_type_accepts_a_plain_plural_name(participant_type: str) -> None:
    options = OS1Options.model_validate({"participantType": participant_type})
    assert options.operation == "create"
    assert options.model_dump(by_alias=True) == {"participantType": participant_type, "operation": "create"}


@pytest.mark.parametrize(
    "participant_type", ["", "../aaa", "drivers/batch", "a b", "%2e%2e", ".", "x" * 129, "drivers\n"]
)
def test_participant_type_must_be_a_safe_path_segment(participant_type: str) -> None:
    with pytest.raises(ValidationError):
        OS1Options.model_validate({"participantType": participant_type})


def test_options_need_a_participant_type_and_a_known_operation() -> None:
    with pytest.raises(ValidationError, match="participantType"):
        OS1Options.model_validate({})
    with pytest.raises(ValidationError, match="operation"):
        OS1Options.model_validate({"participantType": "drivers", "operation": "delete"})


def test_the_plan_sends_first_occurrences_of_the_right_shape_only() -> None:
    # Given a create chunk with a duplicate uniqueCode and an update-shaped job
    jobs = [
        {"uniqueCode": "A", "name": "a"},
        {"id": f"driver:{UUID}"},
        {"uniqueCode": "A", "name": "a again"},
        {"uniqueCode": "B", "name": "b"},
    ]
    # When it is planned
    plan = plan_chunk(jobs, "create")
    # Then only the first A and B are sent; the update is refused; the second A names the first
    assert [p.kind for p in plan] == ["send", "shape", "duplicate", "send"]
    assert plan[2].first == 0
    assert "'update'" in (plan[1].reason or "")
