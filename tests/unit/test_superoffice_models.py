"""SuperOffice job and options models, capabilities, and the simulator's documented shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from pydantic import ValidationError

from batchbridge.providers.superoffice import (
    SuperOfficeJob,
    SuperOfficeOptions,
    SuperOfficeProvider,
    vendor_error_text,
)
from batchbridge_local.simulators.superoffice import SuperOfficeSimulator

BATCH_TASK_INFO_FIELDS = {
    "Id", "Name", "AssociateId", "DetailsTable", "DetailsRecord", "IsSystemTask", "IsInternalTask",
    "ParameterObject", "LastStarted", "Created", "StartCount", "DatabaseSerialNumber", "Context", "Result",
    "State", "Description", "Response", "Request", "ProgressDescription", "ProgressPercent", "FileName",
    "CancellationBehaviour", "TableRight", "FieldProperties",
}  # fmt: skip


# --- models ----------------------------------------------------------------------------------------
def test_a_job_is_one_positive_entity_id():
    assert SuperOfficeJob.model_validate({"id": 42, "clientRef": "c-1"}).id == 42
    for bad in ({"id": "42"}, {"id": 0}, {"id": 2**31}, {"id": 1, "name": "x"}, {}):
        with pytest.raises(ValidationError):
            SuperOfficeJob.model_validate(bad)


def test_options_take_the_documented_field_value_info():
    # Given a FieldValueInfo as SuperOffice documents it: Key, CurrentOperationType, Values
    info = {"Key": "position_idx", "CurrentOperationType": "Set", "Values": ["4"]}
    options = SuperOfficeOptions.model_validate({"tableName": "person", "fieldValueInfos": [info]})
    # Then it is kept exactly, and nothing invented is added
    assert options.field_value_infos[0].model_dump(by_alias=True, exclude_none=True) == info
    # And the descriptive properties of SuperOffice's own listings are accepted too
    listed = {**info, "ValueType": "listAny", "DisplayValues": ["Manager"], "IsActive": True}
    SuperOfficeOptions.model_validate({"tableName": "person", "fieldValueInfos": [listed]})
    # And a Toggle needs no values
    SuperOfficeOptions.model_validate(
        {"tableName": "person", "fieldValueInfos": [{"Key": "x", "CurrentOperationType": "Toggle"}]}
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"fieldValueInfos": [{"Key": "x", "CurrentOperationType": "Set"}]},
        {"tableName": "person", "fieldValueInfos": []},
        {"tableName": "person", "fieldValueInfos": [{"FieldName": "x", "Values": ["4"]}]},  # not documented
        {"tableName": "person", "fieldValueInfos": [{"Key": "x", "Values": ["4"]}]},
        {
            "tableName": "person",
            "fieldValueInfos": [{"Key": "x", "CurrentOperationType": "Set", "Values": [4]}],
        },
        {"tableName": "person; drop", "fieldValueInfos": [{"Key": "x", "CurrentOperationType": "Set"}]},
        {"tableName": "person", "fieldValueInfos": [{"Key": "x", "CurrentOperationType": "Set"}], "extra": 1},
    ],
)
def test_options_that_break_the_documented_shape_are_refused(bad):
    with pytest.raises(ValidationError):
        SuperOfficeOptions.model_validate(bad)


def test_capabilities():
    caps = SuperOfficeProvider.capabilities
    assert (caps.name, caps.title) == ("superoffice", "SuperOffice")
    assert caps.supports_cancel
    assert not caps.supports_callback
    assert caps.max_jobs_per_submit == 500
    assert caps.min_poll_seconds == 15
    assert SuperOfficeProvider.job_model is SuperOfficeJob
    assert SuperOfficeProvider.options_model is SuperOfficeOptions


def test_vendor_error_prefers_friendly_text_and_keeps_the_technical_message():
    response = httpx.Response(
        400,
        json={
            "Message": "Table 'contactx' not found",
            "FriendlyText": "Unknown table",
            "ExceptionType": "ArgumentException",
            "Source": "x",
            "Parameters": {},
        },
    )
    assert (
        vendor_error_text(response.json()) == "Unknown table (Table 'contactx' not found; ArgumentException)"
    )
    assert vendor_error_text("<html>") == ""


# --- simulator shapes -----------------------------------------------------------------------------
@pytest.fixture
def sim() -> Iterator[SuperOfficeSimulator]:
    with SuperOfficeSimulator(job_seconds=0.05) as simulator:
        yield simulator


def test_simulator_state_and_batch_task_infos_have_the_documented_shape(sim):
    with httpx.Client(timeout=2.0) as http:
        state = http.get(f"{sim.base_url}/api/state/{sim.context_identifier}").json()
        assert set(state) == {"ContextIdentifier", "Endpoint", "State", "IsRunning", "ValidUntil", "Api"}
        assert state["IsRunning"] is True
        assert datetime.fromisoformat(state["ValidUntil"]).utcoffset() is not None
        headers = {"Authorization": f"Bearer {sim.access_token}"}
        task_id = http.post(
            f"{state['Endpoint']}/api/v1/Agents/BulkUpdate/ExecuteByEntityIds",
            json={
                "TableName": "contact",
                "FieldValueInfos": [{"Key": "x", "CurrentOperationType": "Set", "Values": ["1"]}],
                "Ids": "1,2",
                "Context": "",
            },
            headers=headers,
        ).json()
        infos = http.post(
            f"{state['Endpoint']}/api/v1/Agents/Batch/GetBatchTaskInfosByAssociates",
            json={"AssociateIds": [sim.associate_id, 30]},
            headers=headers,
        ).json()
        assert [i["Id"] for i in infos] == [task_id]
        (info,) = infos
        assert set(info) == BATCH_TASK_INFO_FIELDS
        assert info["State"] in {"New", "Aquired", "Started", "Succeeded"}
        assert info["CancellationBehaviour"] == "CanCancel"
        assert datetime.fromisoformat(info["Created"]).utcoffset() is not None
        none = http.post(
            f"{state['Endpoint']}/api/v1/Agents/Batch/GetBatchTaskInfosByAssociates",
            json={"AssociateIds": [30]},
            headers=headers,
        ).json()
        assert none == []


def test_simulator_errors_use_the_exception_carrier(sim):
    with httpx.Client(timeout=2.0) as http:
        response = http.post(
            f"{sim.endpoint}/api/v1/Agents/Batch/GetBatchTaskInfo",
            json={"Id": 1},
            headers={"Authorization": "x"},
        )
        assert response.status_code == 401
        assert set(response.json()) == {"Message", "FriendlyText", "ExceptionType", "Source", "Parameters"}
        sim.move_host()
        moved = http.post(
            f"{sim.base_url}/sod1/{sim.context_identifier}/api/v1/Agents/Batch/GetBatchTaskInfo"
        )
        assert moved.status_code == 421
        assert json.loads(moved.content)["ExceptionType"] == "MisdirectedRequestException"
