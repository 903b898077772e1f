"""The simulators' shared fault knobs that aim at one exact call: each does what it says to the request it
meets, acts or does not act on it as it says, and is spent after it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchbridge_local.simulators.base import Request, Response, Simulator
from batchbridge_local.simulators.ivvy import IvvySimulator
from batchbridge_local.simulators.os1 import OS1Simulator
from batchbridge_local.simulators.superoffice import SuperOfficeSimulator
from batchbridge_local.simulators.willsuite import WillSuiteSimulator


class Counter(Simulator):
    """Acts on every request by counting it, and answers the count."""

    name = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.acted = 0

    def route(self, request: Request) -> Response:
        with self._lock:
            self.acted += 1
            return Response(200, {"acted": self.acted, "ok": True})


@pytest.fixture
def sim() -> Iterator[Counter]:
    with Counter() as running:
        yield running  # type: ignore[misc]


def call(sim: Simulator, path: str = "/submit", timeout: float = 2.0) -> httpx.Response:
    return httpx.post(sim.base_url + path, content=b"{}", timeout=timeout)


def test_skip_next_lets_matching_requests_through_before_a_knob_applies(sim: Counter) -> None:
    sim.faults.only_paths = ("/submit",)
    sim.faults.skip_next = 1
    sim.faults.error_after_handling_next = 1
    assert call(sim, "/status").status_code == 200  # not matching: neither skipped nor faulted
    assert call(sim).status_code == 200  # the one let through
    assert call(sim).status_code == 502  # the knob meets the next
    assert call(sim).status_code == 200  # and is spent
    assert (sim.faults.skip_next, sim.faults.error_after_handling_next, sim.acted) == (0, 0, 4)


def test_refuse_credentials_answers_401_without_acting(sim: Counter) -> None:
    sim.faults.refuse_credentials_next = 1
    assert call(sim).status_code == 401
    assert sim.acted == 0
    assert call(sim).status_code == 200


def test_a_held_answer_acts_and_never_answers(sim: Counter) -> None:
    sim.faults.hold_answer_next = 1
    sim.faults.hold_answer_seconds = 1.5
    with pytest.raises(httpx.ReadTimeout):
        call(sim, timeout=0.5)
    assert sim.acted == 1
    sim.faults.hold_answer_seconds = 0.1
    sim.faults.hold_answer_next = 1
    with pytest.raises(httpx.RemoteProtocolError):  # held, then the connection closes without an answer
        call(sim, timeout=2.0)


def test_a_wrong_shape_acts_and_answers_2xx_in_another_shape(sim: Counter) -> None:
    sim.faults.wrong_shape_next = 1
    answer = call(sim)
    assert answer.status_code == 200
    assert answer.json() == {
        "acted": [1],
        "ok": [True],
    }  # every value wrapped: no documented field is as documented
    assert sim.acted == 1


@pytest.mark.parametrize(
    ("body", "broken"),
    [(1000, "1000"), (True, "true"), ("[1]", ["[1]"]), ([1, 2], {"items": [1, 2]}), ({"id": 1}, {"id": [1]})],
)
def test_every_json_answer_has_a_wrong_shape(body: Any, broken: Any) -> None:
    request = Request("POST", "/", {}, {}, b"", "/")
    assert Counter().wrong_shape_response(request, Response(200, body)).body == broken


@pytest.mark.parametrize(
    ("simulator", "path"),
    [
        (IvvySimulator, "/api/1.0/batch?action=run"),
        (WillSuiteSimulator, "/engine/api/cases/bulk-update"),
        (WillSuiteSimulator, "/engine/api/oauth/token/"),
        (SuperOfficeSimulator, "/sod1/Cust12345/api/v1/Agents/Batch/GetBatchTaskInfo"),
        (OS1Simulator, "/core/api/v1/aaa/auth/client-credentials"),
        (OS1Simulator, "/core/api/v2/participants/drivers/batch"),
    ],
)
def test_each_vendor_refuses_credentials_in_its_own_words(simulator: type[Simulator], path: str) -> None:
    with simulator() as sim:
        sim.faults.refuse_credentials_next = 1
        answer = httpx.post(sim.base_url + path, content=b"{}", timeout=2.0)
    assert answer.status_code == 401
    body = answer.json()
    text = json.dumps(body)
    assert {
        "ivvy": "23004" in text,
        "willsuite": body.get("message") in ("Unauthenticated.", "Client authentication failed."),
        "superoffice": body.get("ExceptionType") == "SoAuthenticationException",
        "os1": str(body.get("error", {}).get("code", "")).startswith("401"),
    }[sim.name]


def test_a_stopped_simulator_serves_no_connection_a_client_kept_alive():
    # Given a client that keeps its connection to a simulator alive between requests
    first = Counter().start()
    url = first.base_url
    with httpx.Client() as client:
        assert client.get(url).json()["acted"] == 1
        # When the simulator stops (and another may be given its port)
        first.stop()
        # Then the kept-alive connection is closed, not answered by the stopped simulator
        with pytest.raises(httpx.TransportError):
            client.get(url)
    assert first.acted == 1
