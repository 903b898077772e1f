"""The iVvy simulator answers like iVvy: signed requests only, the batch namespace's envelopes and codes,
progress that rises with time, per-job responses for booking sessions, and callbacks on completion."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from batchbridge.providers.ivvy_signing import content_md5, sign_request, signed_headers
from batchbridge_local.simulators.ivvy import (
    UNKNOWN_BOOKING_ID,
    IvvySimulator,
    booking_session_jobs,
    expected_code,
)


@pytest.fixture(scope="module")
def running_sim() -> Iterator[IvvySimulator]:
    with IvvySimulator(job_seconds=0.2) as simulator:
        yield simulator


@pytest.fixture
def sim(running_sim: IvvySimulator) -> IvvySimulator:
    running_sim.reset()
    return running_sim


_http = httpx.Client(timeout=5)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return _http.post(url, **kwargs)


def call(
    sim: IvvySimulator,
    namespace: str,
    action: str,
    body: Any = None,
    *,
    secret: str | None = None,
    now: datetime | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    """One properly signed request, unless told otherwise."""
    uri = f"/api/1.0/{namespace}?action={action}"
    content = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    headers = signed_headers(
        api_key=sim.api_key, secret=secret or sim.api_secret, body=content, request_uri=uri, now=now
    )
    return post(sim.base_url + uri, content=content, headers=headers)


def session(**params: Any) -> dict[str, Any]:
    base = {
        "spaceVenueId": 1,
        "bookingId": 15722,
        "contactId": 10,
        "name": "Keynote",
        "startDate": "2026-03-02",
    }
    return {"namespace": "venue", "action": "addOrUpdateBookingSession", "params": {**base, **params}}


def run_and_finish(sim: IvvySimulator, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    sim.job_seconds = 0
    async_id = call(sim, "batch", "run", {"jobs": jobs}).json()["asyncId"]
    return call(sim, "batch", "results", {"async": async_id}).json()


# --- signing --------------------------------------------------------------------------------------
def test_a_signed_ping_is_acknowledged(sim):
    response = call(sim, "test", "ping")
    assert response.status_code == 200
    datetime.strptime(response.json()["ack"], "%Y-%m-%d %H:%M:%S")


def test_a_wrong_secret_is_refused(sim):
    response = call(sim, "test", "ping", secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["specificCode"] == 23004


def test_a_body_that_does_not_match_its_md5_is_refused(sim):
    # Given headers signed for one body
    uri = "/api/1.0/test?action=ping"
    headers = signed_headers(api_key=sim.api_key, secret=sim.api_secret, body=b"{}", request_uri=uri)
    # When another body is sent with them
    response = post(sim.base_url + uri, content=b'{"x":1}', headers=headers)
    # Then the MD5 check refuses it
    assert (response.status_code, response.json()["specificCode"]) == (401, 23002)


def test_a_missing_authorization_header_is_refused(sim):
    response = post(sim.base_url + "/api/1.0/test?action=ping", content=b"{}")
    assert (response.status_code, response.json()["specificCode"]) == (401, 23001)


def test_a_request_more_than_five_minutes_old_is_stale(sim):
    response = call(sim, "test", "ping", now=datetime.now(UTC) - timedelta(minutes=6))
    assert response.status_code == 401
    assert response.json() == {
        "errorCode": 401,
        "message": "Request is stale",
        "specificCode": 23005,
        "additionalMessages": [],
    }


def test_a_skewed_simulator_clock_makes_fresh_requests_stale(sim):
    sim.clock_offset_seconds = 301
    assert call(sim, "test", "ping").json()["specificCode"] == 23005
    sim.clock_offset_seconds = 200
    assert call(sim, "test", "ping").status_code == 200


def test_an_rfc1123_date_header_signs_the_date_component(sim):
    # Given a request dated with Date (not IVVY-Date): the date is part of the string to sign
    uri = "/api/1.0/test?action=ping"
    body = b"{}"
    when = format_datetime(datetime.now(UTC), usegmt=True)
    signature = sign_request(
        secret=sim.api_secret, body=body, content_type="application/json", request_uri=uri,
        ivvy_headers={}, date=when,
    )  # fmt: skip
    headers = {
        "Content-Type": "application/json",
        "Content-MD5": content_md5(body),
        "Date": when,
        "X-Api-Authorization": f"IWS {sim.api_key}:{signature}",
    }
    # When it is sent, Then it is accepted
    assert post(sim.base_url + uri, content=body, headers=headers).status_code == 200


def test_an_ivvy_date_with_a_utc_suffix_is_accepted(sim):
    uri = "/api/1.0/test?action=ping"
    body = b"{}"
    ivvy = {"IVVY-Date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S") + " UTC"}
    signature = sign_request(
        secret=sim.api_secret, body=body, content_type="application/json", request_uri=uri, ivvy_headers=ivvy
    )
    headers = {
        "Content-Type": "application/json",
        "Content-MD5": content_md5(body),
        **ivvy,
        "X-Api-Authorization": f"IWS {sim.api_key}:{signature}",
    }
    assert post(sim.base_url + uri, content=body, headers=headers).status_code == 200


# --- batch run ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 24093),
        ({"jobs": []}, 24093),
        ({"jobs": "all"}, 24092),
        ({"jobs": [{"namespace": "venue"}]}, 24092),
        ({"jobs": [{"namespace": "venue", "action": "x", "params": [1]}]}, 24092),
        ({"jobs": [session()], "callbackUrl": "ftp://nope"}, 23016),
    ],
)
def test_badly_formed_runs_are_refused_with_ivvy_codes(sim, body, code):
    response = call(sim, "batch", "run", body)
    assert (response.status_code, response.json()["specificCode"]) == (400, code)
    assert sim.submissions == 0


def test_more_than_200_jobs_are_refused(sim):
    response = call(sim, "batch", "run", {"jobs": [session()] * 201})
    assert (response.status_code, response.json()["specificCode"]) == (400, 24448)
    assert call(sim, "batch", "run", {"jobs": [session()] * 200}).status_code == 200
    assert sim.submissions == 1


def test_a_run_answers_a_32_hex_async_id_and_is_counted(sim):
    response = call(sim, "batch", "run", {"jobs": [session()]})
    assert response.status_code == 200
    async_id = response.json()["asyncId"]
    assert len(async_id) == 32
    assert int(async_id, 16) >= 0
    assert sim.submissions == 1


def test_not_saved_refuses_the_next_run(sim):
    sim.not_saved_next = 1
    assert call(sim, "batch", "run", {"jobs": [session()]}).json()["specificCode"] == 24091
    assert call(sim, "batch", "run", {"jobs": [session()]}).status_code == 200


# --- progress and results -------------------------------------------------------------------------
def test_progress_rises_to_100_and_results_wait_for_it(sim):
    # Given a batch just run
    sim.job_seconds = 0.3
    async_id = call(sim, "batch", "run", {"jobs": [session()]}).json()["asyncId"]
    # When asked at once, Then it is under way and its results are not ready
    first = call(sim, "batch", "progress", {"async": async_id}).json()["progress"]
    assert 0 <= first < 100
    assert call(sim, "batch", "results", {"async": async_id}).json()["specificCode"] == 24114
    # When asked after job_seconds, Then it is at 100 and results answer
    time.sleep(0.32)
    assert call(sim, "batch", "progress", {"async": async_id}).json() == {"progress": 100}
    results = call(sim, "batch", "results", {"async": async_id}).json()
    assert results["asyncId"] == async_id
    assert results["results"][0]["namespace"] == "venue"
    assert results["results"][0]["request"] == session()["params"]


def test_unknown_batches_answer_24105_and_24115(sim):
    unknown = {"async": "0" * 32}
    assert call(sim, "batch", "progress", unknown).json()["specificCode"] == 24105
    assert call(sim, "batch", "results", unknown).json()["specificCode"] == 24115
    assert call(sim, "batch", "progress", {}).json()["specificCode"] == 23017


def test_expired_batches_are_gone(sim):
    sim.job_seconds = 0
    async_id = call(sim, "batch", "run", {"jobs": [session()]}).json()["asyncId"]
    sim.expire(async_id)
    assert call(sim, "batch", "results", {"async": async_id}).json()["specificCode"] == 24115
    sim.results_expired = True
    other = call(sim, "batch", "run", {"jobs": [session()]}).json()["asyncId"]
    assert call(sim, "batch", "progress", {"async": other}).json()["specificCode"] == 24105


def test_a_batch_that_never_finishes_stops_at_99(sim):
    sim.job_seconds = 0
    sim.never_finish = True
    async_id = call(sim, "batch", "run", {"jobs": [session()]}).json()["asyncId"]
    assert call(sim, "batch", "progress", {"async": async_id}).json() == {"progress": 99}
    assert call(sim, "batch", "results", {"async": async_id}).json()["specificCode"] == 24114


def test_restart_starts_progress_again(sim):
    sim.job_seconds = 0.2
    async_id = call(sim, "batch", "run", {"jobs": [session()]}).json()["asyncId"]
    time.sleep(0.22)
    assert call(sim, "batch", "progress", {"async": async_id}).json() == {"progress": 100}
    assert call(sim, "batch", "restart", {"async": async_id}).json() == {"restarted": True}
    assert call(sim, "batch", "progress", {"async": async_id}).json()["progress"] < 100


# --- per-job responses ----------------------------------------------------------------------------
def test_a_valid_booking_session_gets_a_new_id(sim):
    results = run_and_finish(sim, [session(), session(setupTime="60", cost="400", includeInPackage=0)])
    responses = [r["response"] for r in results["results"]]
    assert responses[0] == {"success": True, "id": 8821, "warnings": None}
    assert responses[1]["id"] == 8822


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": ""}, "name: *Value is required and can't be empty*"),
        ({"bookingId": None}, "bookingId: *Value is required and can't be empty*"),
        ({"contactId": "ten"}, "contactId: *Value is not a valid integer*"),
        ({"startDate": "2026-02-30"}, "startDate: *Value is not a valid date (yyyy-mm-dd)*"),
        ({"startDate": "02/03/2026"}, "startDate: *Value is not a valid date (yyyy-mm-dd)*"),
        ({"startTime": "9am"}, "startTime: *Value is not a valid time (HH:mm:ss)*"),
        ({"cost": "lots"}, "cost: *Value is not a valid number*"),
        ({"excludedTaxIds": ["a"]}, "excludedTaxIds: *Value must be a list of integers*"),
        ({"includeInPackage": True}, "bookingPackageId: *Value is required and can't be empty*"),
    ],
)
def test_invalid_booking_sessions_fail_with_24337_naming_the_field(sim, params, message):
    response = run_and_finish(sim, [session(**params)])["results"][0]["response"]
    assert response["errorCode"] == 400
    assert response["specificCode"] == 24337
    assert response["message"] == "The request contains invalid data"
    assert message in response["additionalMessages"]


def test_strict_new_sessions_need_cost_centre_and_attendees(sim):
    sim.strict_new_sessions = True
    response = run_and_finish(sim, [session()])["results"][0]["response"]
    assert response["specificCode"] == 24337
    assert "costcenterId: *Value is required and can't be empty*" in response["additionalMessages"]
    update = run_and_finish(sim, [session(id="77")])["results"][0]["response"]
    assert update == {"success": True, "id": 77, "warnings": None}


def test_an_unknown_booking_fails_with_24360(sim):
    response = run_and_finish(sim, [session(bookingId=str(UNKNOWN_BOOKING_ID))])["results"][0]["response"]
    assert (response["specificCode"], response["message"]) == (24360, "The booking does not exist")


def test_other_actions_are_accepted_generically(sim):
    results = run_and_finish(sim, [{"namespace": "contact", "action": "addOrUpdateContact", "params": {}}])
    assert results["results"][0]["response"] == {"success": True}


def test_fail_jobs_by_predicate_and_truth_agree(sim):
    sim.fail_jobs = lambda index, job: index == 1
    sim.job_seconds = 0
    jobs = [session(), session(), {"namespace": "venue", "action": "addOrUpdateBookingSession", "params": {}}]
    async_id = call(sim, "batch", "run", {"jobs": jobs}).json()["asyncId"]
    truth = sim.truth(async_id)
    assert truth.codes == [None, "IVVY_24335", "IVVY_24337"]
    assert (truth.succeeded, truth.failed) == (1, 2)
    responses = [r["response"] for r in call(sim, "batch", "results", {"async": async_id}).json()["results"]]
    assert responses[1]["errorCode"] == 500


def test_a_failure_rate_is_repeatable(sim):
    jobs = [session() for _ in range(100)]
    codes = []
    for _ in range(2):
        sim.reset()
        sim.fail_jobs = 0.3
        async_id = call(sim, "batch", "run", {"jobs": jobs}).json()["asyncId"]
        codes.append(sim.truth(async_id).codes)
    assert codes[0] == codes[1]
    assert 15 <= codes[0].count("IVVY_24335") <= 45


def test_booking_session_jobs_are_deterministic_and_mixed():
    jobs = booking_session_jobs(12, invalid_every=3)
    assert jobs == booking_session_jobs(12, invalid_every=3)
    assert [j["clientRef"] for j in jobs[:2]] == ["session-0", "session-1"]
    codes = [expected_code(j) for j in jobs]
    assert codes == [None, None, "IVVY_24337"] * 3 + [None, None, "IVVY_24360"]
    assert all(c is None for c in map(expected_code, booking_session_jobs(30)))


def test_the_simulator_agrees_with_expected_code(sim):
    jobs = booking_session_jobs(24, invalid_every=4)
    sim.job_seconds = 0
    async_id = call(
        sim, "batch", "run", {"jobs": [{k: v for k, v in j.items() if k != "clientRef"} for j in jobs]}
    )
    assert sim.truth(async_id.json()["asyncId"]).codes == [expected_code(j) for j in jobs]


# --- callbacks ------------------------------------------------------------------------------------
class Receiver:
    """A tiny HTTP endpoint on loopback that records what is POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[Any] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.arrived.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def running_receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def receiver(running_receiver: Receiver) -> Receiver:
    running_receiver.bodies.clear()
    running_receiver.arrived.clear()
    return running_receiver


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/callback"


def wait_for(condition: Any, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_completed_batch_posts_its_results_to_the_callback(sim, receiver):
    # Given a batch with a callbackUrl
    sim.job_seconds = 0.05
    async_id = call(sim, "batch", "run", {"jobs": [session()], "callbackUrl": receiver.url}).json()["asyncId"]
    # When it completes, Then {asyncId, results} arrives once
    assert receiver.arrived.wait(2)
    assert receiver.bodies[0]["asyncId"] == async_id
    assert receiver.bodies[0]["results"][0]["response"]["success"] is True
    assert wait_for(lambda: sim.callbacks_for(async_id))
    assert sim.callbacks_for(async_id)[0].status == 200
    # And repost sends it again
    receiver.arrived.clear()
    assert call(sim, "batch", "repost", {"async": async_id}).json() == {"reposted": True}
    assert receiver.arrived.wait(2)
    assert len(receiver.bodies) == 2


def test_a_failing_callback_does_not_break_the_simulator(sim):
    # Given a callback endpoint that is not there
    url = closed_port_url()
    sim.job_seconds = 0
    async_id = call(sim, "batch", "run", {"jobs": [session()], "callbackUrl": url}).json()["asyncId"]
    # When the callback fails, Then the failure is recorded and the simulator still answers
    assert wait_for(lambda: sim.callbacks_for(async_id))
    attempt = sim.callbacks_for(async_id)[0]
    assert attempt.status is None
    assert attempt.error
    assert call(sim, "batch", "results", {"async": async_id}).status_code == 200


def test_lost_callbacks_never_arrive(sim, receiver):
    # Given callbacks are lost on the way
    sim.faults.lose_callbacks = True
    sim.job_seconds = 0
    async_id = call(sim, "batch", "run", {"jobs": [session()], "callbackUrl": receiver.url}).json()["asyncId"]
    # When the batch completes, Then nothing arrives and nothing is attempted, and the results are there
    assert not receiver.arrived.wait(0.5)
    assert sim.callbacks_for(async_id) == []
    assert call(sim, "batch", "results", {"async": async_id}).status_code == 200


# --- vendor envelopes for faults -----------------------------------------------------------------------
def test_throttling_uses_ivvys_envelope_and_retry_after(sim):
    sim.faults.throttle_next = 1
    sim.faults.retry_after_seconds = 4
    response = call(sim, "test", "ping")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    assert response.json()["errorCode"] == 429


def test_reset_forgets_batches_and_knobs(sim):
    call(sim, "batch", "run", {"jobs": [session()]})
    sim.never_finish = True
    sim.reset()
    assert (sim.submissions, sim.batches, sim.never_finish) == (0, {}, False)
    assert call(sim, "test", "ping").status_code == 200
