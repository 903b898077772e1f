"""The OS1 simulator itself: header checks and envelopes, spoken to with plain httpx (no adapter)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchbridge.providers.os1 import parse_error, parse_status, parse_success
from batchbridge_local.simulators import os1 as simmod
from batchbridge_local.simulators.os1 import AUTH_PATH, OS1Simulator

BATCH = "/core/api/v2/participants/drivers/batch"


@pytest.fixture(scope="module")
def running_sim() -> Iterator[OS1Simulator]:
    with OS1Simulator(batch_seconds=0.0) as simulator:
        yield simulator


@pytest.fixture
def sim(running_sim: OS1Simulator) -> OS1Simulator:
    running_sim.reset()
    return running_sim


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2.0) as client:
        yield client


def headers(sim: OS1Simulator, **overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "X-COREOS-REQUEST-ID": str(uuid.uuid4()),
        "X-COREOS-TID": sim.tenant_id,
        "X-COREOS-ORIGIN-TOKEN": sim.origin_token,  # documented as required on writes; ignored on reads
    }
    base.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return {k: v for k, v in base.items() if v is not None}


def token(sim: OS1Simulator, http: httpx.Client) -> str:
    answer = http.post(
        sim.base_url + AUTH_PATH,
        json={"clientId": sim.client_id, "clientSecret": sim.client_secret},
        headers=headers(sim),
    )
    assert answer.status_code == 200
    data = parse_success(answer.json())
    assert data["tokenType"] == "Bearer"
    assert data["expiresIn"] == sim.token_ttl_seconds
    assert sim.client_secret not in answer.text  # the request echo leaves the secret out
    return str(data["accessToken"])


def refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status
    error = parse_error(answer.json())  # the documented error envelope, exactly
    assert error.code == code


PAYLOAD: dict[str, Any] = {"payload": [{"uniqueCode": "A", "name": "a", "properties": {}}]}


def test_auth_needs_a_request_id_but_not_a_tenant(sim: OS1Simulator, http: httpx.Client) -> None:
    body = {"clientId": sim.client_id, "clientSecret": sim.client_secret}
    refused(http.post(sim.base_url + AUTH_PATH, json=body, headers={}), 400, simmod.E_MISSING_REQUEST_ID)
    answer = http.post(sim.base_url + AUTH_PATH, json=body, headers={"X-COREOS-REQUEST-ID": "r-1"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("override", "status", "code"),
    [
        ({"X-COREOS-REQUEST-ID": None}, 400, simmod.E_MISSING_REQUEST_ID),
        ({"X-COREOS-TID": None}, 400, simmod.E_MISSING_TENANT),
        ({"X-COREOS-TID": "another-tenant"}, 401, simmod.E_UNKNOWN_TENANT),
        ({"X-COREOS-ACCESS": None}, 401, simmod.E_MISSING_ACCESS),
        ({"X-COREOS-ACCESS": "forged"}, 401, simmod.E_BAD_ACCESS),
    ],
)
def test_api_calls_check_every_required_header(
    sim: OS1Simulator, http: httpx.Client, override: dict[str, str | None], status: int, code: str
) -> None:
    access = token(sim, http)
    sent = headers(sim, **{"X-COREOS-ACCESS": access, **override})
    refused(http.post(sim.base_url + BATCH, json=PAYLOAD, headers=sent), status, code)
    assert sim.submissions == 0


def test_the_token_in_authorization_is_not_accepted(sim: OS1Simulator, http: httpx.Client) -> None:
    access = token(sim, http)
    sent = {**headers(sim), "Authorization": f"Bearer {access}"}
    refused(http.post(sim.base_url + BATCH, json=PAYLOAD, headers=sent), 401, simmod.E_MISSING_ACCESS)


def test_a_request_id_cannot_be_used_twice(sim: OS1Simulator, http: httpx.Client) -> None:
    access = token(sim, http)
    sent = headers(sim, **{"X-COREOS-ACCESS": access})
    assert http.post(sim.base_url + BATCH, json=PAYLOAD, headers=sent).status_code == 202
    refused(http.post(sim.base_url + BATCH, json=PAYLOAD, headers=sent), 400, simmod.E_DUPLICATE_REQUEST_ID)
    assert sim.submissions == 1


def test_a_batch_is_accepted_and_reports_in_the_documented_envelope(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    access = token(sim, http)
    answer = http.post(
        sim.base_url + BATCH, json=PAYLOAD, headers=headers(sim, **{"X-COREOS-ACCESS": access})
    )
    assert answer.status_code == 202
    body = answer.json()
    batch_id = parse_success(body)["id"]
    assert batch_id.startswith("batch:")
    assert uuid.UUID(batch_id.removeprefix("batch:"))
    assert body["request"]["method"] == "POST"
    assert body["request"]["body"] == PAYLOAD
    status = http.get(
        sim.base_url + BATCH + "/status",
        params={"batchId": batch_id},
        headers=headers(sim, **{"X-COREOS-ACCESS": access}),
    )
    data = parse_status(status.json())
    assert data.meta.status == "completed"
    assert data.meta.total == 1
    assert [s.ref_id for s in data.success or []] == ["A"]
    assert status.json()["request"]["queryString"] == f"batchId={batch_id.replace(':', '%3A')}"


def test_errors_and_faults_use_the_vendor_envelope(sim: OS1Simulator, http: httpx.Client) -> None:
    access = token(sim, http)
    bad = {"payload": [{"uniqueCode": "A"}]}
    answer = http.post(sim.base_url + BATCH, json=bad, headers=headers(sim, **{"X-COREOS-ACCESS": access}))
    refused(answer, 400, simmod.E_BAD_PAYLOAD)
    assert parse_error(answer.json()).additional_info == {"payload[0]": "name is required"}
    sim.faults.server_error_next = 1
    refused(http.get(sim.base_url + "/anything", headers=headers(sim)), 503, simmod.E_UNAVAILABLE)
    refused(http.get(sim.base_url + "/anything", headers=headers(sim)), 404, simmod.E_NO_ROUTE)
