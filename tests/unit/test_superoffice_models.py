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
    vendor_error,
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


def test_options_need_a_table_and_at_least_one_named_field():
    options = SuperOfficeOptions.model_validate(
        {"tableName": "person", "fieldValueInfos": [{"FieldName": "position_idx", "Values": ["4"]}]}
    )
    assert options.field_value_infos[0].model_dump(by_alias=True) == {
        "FieldName": "position_idx",
        "Values": ["4"],
    }
    for bad in (
        {"fieldValueInfos": [{"FieldName": "x"}]},
        {"tableName": "person", "fieldValueInfos": []},
        {"tableName": "person", "fieldValueInfos": [{"Values": ["4"]}]},
        {"tableName": "person; drop", "fieldValueInfos": [{"FieldName": "x"}]},
        {"tableName": "person", "fieldValueInfos": [{"FieldName": "x"}], "extra": 1},
    ):
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
    assert vendor_error(response) == "HTTP 400: Unknown table (Table 'contactx' not found; ArgumentException)"
    assert vendor_error(httpx.Response(502, content=b"<html>")) == "HTTP 502"


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
                "FieldValueInfos": [{"FieldName": "x"}],
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
