"""Every example payload of the vendors' documentation (``tests/fixtures/``), run through its adapter with
the meaning the documentation gives it. The vendor's answers are played by ``httpx.MockTransport``: the
adapter under test is real, only the far end of the wire is the documentation's example."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from batchbridge.errors import (
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderResponseError,
    ResultsExpiredError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, Connection, OutcomeKind
from batchbridge.providers.auth import clear_token_cache
from batchbridge.providers.base import ChunkInfo
from batchbridge.providers.ivvy import IvvyJob, IvvyProvider
from batchbridge.providers.os1 import OS1Provider
from batchbridge.providers.superoffice import SuperOfficeProvider, clear_endpoint_cache
from batchbridge.providers.willsuite import EFFECTED_OR_UNCHANGED, RECORD_FAILED, WillSuiteProvider
from batchbridge_local.simulators.ivvy import IvvySimulator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
Handler = Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def client(handler: Handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def chunk(ref: str | None = None, **options: Any) -> ChunkInfo:
    return ChunkInfo(batch_id="b-1", index=0, first_job_index=0, provider_ref=ref, options=options)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_token_cache()
    clear_endpoint_cache()


# --- iVvy ---------------------------------------------------------------------------------------------
def ivvy(handler: Handler) -> IvvyProvider:
    connection = Connection(
        name="ivvy-doc",
        provider="ivvy",
        baseUrl="https://api.example",
        credentials={"apiKey": "k", "apiSecret": "s"},
    )
    return IvvyProvider(connection, client(handler))


def test_ivvys_booking_session_example_is_a_valid_job_that_ivvy_accepts():
    params = fixture("ivvy/booking-session-request.json")
    job = IvvyJob.model_validate(
        {"namespace": "venue", "action": "addOrUpdateBookingSession", "params": params}
    )
    assert job.params == params  # passed through untouched, string numbers and 0/1 flags included
    with IvvySimulator(job_seconds=0) as sim:
        connection = Connection(
            name="ivvy-doc",
            provider="ivvy",
            baseUrl=sim.base_url,
            credentials={"apiKey": sim.api_key, "apiSecret": sim.api_secret},
        )
        jobs = [job.model_dump(by_alias=True, exclude_none=True)]
        provider = IvvyProvider(connection, httpx.Client())
        info = chunk(provider.submit(chunk(), jobs))
        (outcome,) = provider.collect(info, jobs, None)
    assert outcome.outcome is OutcomeKind.SUCCEEDED


@pytest.mark.parametrize(
    ("answer", "kind", "code", "ref", "words"),
    [
        ("success", OutcomeKind.SUCCEEDED, None, "8821", None),
        (
            "invalid",
            OutcomeKind.FAILED,
            "IVVY_24337",
            None,
            "costcenterId: *Value is required and can't be empty*",
        ),
        ("server_error", OutcomeKind.FAILED, "IVVY_24335", None, "An error has occurred"),
    ],
)
def test_ivvys_action_answers_are_that_jobs_outcome(answer, kind, code, ref, words):
    params = fixture("ivvy/booking-session-request.json")
    response = fixture("ivvy/booking-session-responses.json")[answer]
    job = {"namespace": "venue", "action": "addOrUpdateBookingSession", "params": params}
    result = {**job, "request": params, "response": response}
    del result["params"]
    body = {"asyncId": "e" * 32, "results": [result]}
    (outcome,) = ivvy(lambda request: httpx.Response(200, json=body)).collect(chunk("e" * 32), [job], None)
    assert (outcome.outcome, outcome.error.code if outcome.error else None, outcome.provider_ref) == (
        kind,
        code,
        ref,
    )
    if words:
        assert words in outcome.error.message


def test_ivvys_results_example_is_matched_to_its_jobs_by_the_requests_it_echoes():
    example = fixture("ivvy/batch-results.json")
    answer = example["answer"]
    sent: list[Any] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=answer)

    # Given the two inviteContacts jobs, in the other order than the answer lists them
    jobs = [
        {
            "clientRef": "second",
            "namespace": "event",
            "action": "inviteContacts",
            "params": {"event": 2, "contacts": [1, 2, 4]},
        },
        {
            "clientRef": "first",
            "namespace": "event",
            "action": "inviteContacts",
            "params": {"event": 1, "contacts": [1, 2, 3]},
        },
    ]
    outcomes = list(ivvy(vendor).collect(chunk(answer["asyncId"]), jobs, None))
    # Then each is credited with its own result (an empty response is no error), and the request is iVvy's
    assert [(o.client_ref, o.outcome) for o in outcomes] == [
        ("second", OutcomeKind.SUCCEEDED),
        ("first", OutcomeKind.SUCCEEDED),
    ]
    assert sent == [{"async": answer["asyncId"]}]
    # And the documentation's request names another batch than its answer: such an answer is refused
    with pytest.raises(ProviderResponseError, match="asked for batch"):
        list(ivvy(vendor).collect(chunk(example["request"]["async"]), jobs, None))


# --- OS1 ----------------------------------------------------------------------------------------------
def os1(status: int, body: Any) -> OS1Provider:
    def vendor(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/client-credentials"):
            token = {"accessToken": "doc-token-0123456789", "tokenType": "Bearer", "expiresIn": 3600}
            return httpx.Response(200, json={"data": token, "request": {}})
        return httpx.Response(status, json=body)

    connection = Connection(
        name="os1-doc",
        provider="os1",
        baseUrl="https://tenant.example",
        credentials={"clientId": "c", "clientSecret": "s", "originToken": "o"},
        settings={"tenantId": "t"},
    )
    return OS1Provider(connection, client(vendor))


def test_os1s_ok_example_is_a_valid_envelope_whose_empty_data_is_no_status():
    provider = os1(200, fixture("os1/batch-status.json")["200"])
    with pytest.raises(ProviderResponseError, match=r"data\.meta: missing"):
        provider.check(chunk("batch:x", participantType="drivers"))


@pytest.mark.parametrize(
    ("status", "phase", "error"),
    [
        ("400", "check", ProviderJobFailedError),
        ("404", "check", ProviderJobFailedError),
        ("404", "collect", ResultsExpiredError),
        ("401", "check", ProviderAuthError),
    ],
)
def test_os1s_error_examples_mean_what_their_status_says(status, phase, error):
    provider = os1(int(status), fixture("os1/batch-status.json")[status])
    info = chunk("batch:x", participantType="drivers")
    with pytest.raises(error) as caught:
        provider.check(info) if phase == "check" else list(provider.collect(info, [], None))
    # The placeholder code is not OS1's twelve digits: the HTTP status names the error
    assert f"HTTP {status}" in caught.value.message
    assert "OS1_" not in caught.value.code or caught.value.code == f"OS1_HTTP_{status}"


# --- SuperOffice ----------------------------------------------------------------------------------------
def test_superoffices_sample_credentials_are_basic_auth_as_an_on_site_connection_sends_it():
    example = fixture("superoffice/batch-task-infos-by-associates.json")
    seen: list[httpx.Request] = []

    def vendor(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=example["answer"])

    user, password = (
        base64.b64decode(example["request"]["headers"]["Authorization"].split()[1]).decode().split(":")
    )
    connection = Connection(
        name="so-doc",
        provider="superoffice",
        baseUrl="https://crm.example/SuperOffice",
        credentials={"username": user, "password": password},
        settings={"tenantDiscovery": False, "associateId": 491},
    )
    options = {
        "tableName": "contact",
        "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
    }
    provider = SuperOfficeProvider(connection, client(vendor))
    # The sample's one task carries another Context: it is not this chunk's
    assert provider.find_submission(chunk(**options)) is None
    (request,) = seen
    assert request.headers["authorization"] == example["request"]["headers"]["Authorization"]
    assert request.url.path == "/SuperOffice" + example["request"]["path"]
    assert json.loads(request.content) == {"AssociateIds": [491]}


def test_superoffices_sample_task_in_state_all_fails_closed():
    (task,) = fixture("superoffice/batch-task-infos-by-associates.json")["answer"]
    connection = Connection(
        name="so-doc",
        provider="superoffice",
        baseUrl="https://crm.example",
        credentials={"username": "u", "password": "p"},
        settings={"tenantDiscovery": False},
    )
    provider = SuperOfficeProvider(connection, client(lambda request: httpx.Response(200, json=task)))
    # "All" is a query filter, not a state a task can be in (and 416 is no percentage)
    with pytest.raises(UnknownProviderStatusError, match="'All'"):
        provider.check(chunk(str(task["Id"])))


# --- WillSuite --------------------------------------------------------------------------------------------
def test_willsuites_api_job_example_meets_its_own_schema_and_reads_as_documented():
    example = fixture("willsuite/api-job.json")
    answer = example["answer"]
    jsonschema.validate(answer, example["schema"])

    def vendor(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/token/"):
            return httpx.Response(200, json={"access_token": "doc-token-0123456789", "token_type": "Bearer"})
        return httpx.Response(200, json=answer)

    connection = Connection(
        name="ws-doc",
        provider="willsuite",
        baseUrl="https://client.example/engine/api",
        credentials={"clientId": "c", "clientSecret": "s"},
    )
    provider = WillSuiteProvider(connection, client(vendor))
    info = chunk(answer["id"])
    assert provider.check(info).state is ChunkState.COMPLETED
    # Given the 773 cases the job accepted, the two it names among them
    failed = ["4528a261-917d-4cbc-939e-7ea48cffca69", "53c3a84d-8eef-4015-8bc6-499f8eccd161"]
    jobs = [{"id": case} for case in failed] + [{"id": str(uuid.UUID(int=i + 1))} for i in range(771)]
    outcomes = list(provider.collect(info, jobs, None))
    # Then those two failed with the vendor's reason; the 771 others succeeded, 770 of them changed and
    # one already up to date -- which one, WillSuite does not say
    assert {(o.outcome, o.error.code) for o in outcomes[:2]} == {(OutcomeKind.FAILED, RECORD_FAILED)}
    assert outcomes[0].error.message == "Case does not exist or record already updated."
    assert {(o.outcome, o.detail) for o in outcomes[2:]} == {(OutcomeKind.SUCCEEDED, EFFECTED_OR_UNCHANGED)}
