"""OS1 adapter against the OS1 simulator over loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchbridge.errors import (
    BatchRejectedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderUnavailableError,
    ResultsExpiredError,
    SubmitUnconfirmedError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, Connection, Outcome, OutcomeKind
from batchbridge.providers.base import ChunkInfo, StatusReport
from batchbridge.providers.http import new_client
from batchbridge.providers.os1 import (
    CONFLICTING_RESULT,
    DUPLICATE_REF,
    JOB_SHAPE,
    NOT_REPORTED,
    RECORD_FAILED,
    OS1Provider,
    clear_token_cache,
)
from batchbridge_local.simulators import os1 as simmod
from batchbridge_local.simulators.base import Request, Response, Simulator
from batchbridge_local.simulators.os1 import OS1Simulator

TYPE = "drivers"


@pytest.fixture(scope="module")
def running_sim() -> Iterator[OS1Simulator]:
    with OS1Simulator(batch_seconds=0.0) as simulator:
        yield simulator


@pytest.fixture
def sim(running_sim: OS1Simulator) -> OS1Simulator:
    running_sim.reset()
    return running_sim


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    clear_token_cache()
    yield
    clear_token_cache()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with new_client(httpx.Timeout(2.0)) as client:
        yield client


def adapter(
    sim: OS1Simulator,
    http: httpx.Client,
    *,
    secret: str | None = None,
    credentials: dict[str, str] | None = None,
    **settings: Any,
) -> OS1Provider:
    connection = Connection(
        name="os1-test",
        provider="os1",
        baseUrl=sim.base_url,
        credentials={
            "clientId": sim.client_id,
            "clientSecret": secret or sim.client_secret,
            "originToken": sim.origin_token,
            **(credentials or {}),
        },
        settings={"tenantId": sim.tenant_id, **settings},
    )
    return OS1Provider(connection, http)


def creates(n: int, prefix: str = "D") -> list[dict[str, Any]]:
    return [
        {
            "uniqueCode": f"{prefix}-{i}",
            "name": f"Driver {i}",
            "properties": {"n": i},
            "clientRef": f"ref-{i}",
        }
        for i in range(n)
    ]


def chunk(
    ref: str | None = None, *, first: int = 0, operation: str = "create", callback: str | None = None
) -> ChunkInfo:
    return ChunkInfo(
        batch_id="b-1",
        index=0,
        first_job_index=first,
        provider_ref=ref,
        callback_url=callback,
        options={"participantType": TYPE, "operation": operation},
    )


def run_to_end(provider: OS1Provider, info: ChunkInfo, timeout: float = 1.0) -> StatusReport:
    deadline = time.monotonic() + timeout
    while True:
        report = provider.check(info)
        if report.state is not ChunkState.RUNNING or time.monotonic() > deadline:
            return report
        time.sleep(0.02)


def submit_and_collect(
    provider: OS1Provider, jobs: list[dict[str, Any]], **chunk_args: Any
) -> tuple[str, StatusReport, list[Outcome]]:
    info = chunk(**chunk_args)
    info.provider_ref = provider.submit(info, jobs)
    report = run_to_end(provider, info)
    return info.provider_ref, report, list(provider.collect(info, jobs, report))


# --- headers ----------------------------------------------------------------------------------------
def test_every_request_carries_a_fresh_request_id_and_the_tenant(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    # Given a connection with an origin token and a callback secret
    provider = adapter(sim, http, credentials={"originToken": "origin-1", "callbackSecret": "cb-1"})
    sim.origin_token = "origin-1"
    # When a batch is submitted (with a callback), checked and collected
    submit_and_collect(provider, creates(3), callback="http://127.0.0.1:9/never")
    # Then every request (auth included) had a unique request id and the tenant id
    assert len(sim.requests) >= 4
    ids = [r.headers.get("x-coreos-request-id") for r in sim.requests]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    assert all(r.headers.get("x-coreos-tid") == sim.tenant_id for r in sim.requests)
    # And every API call had the token in X-COREOS-ACCESS, never in Authorization
    api = [r for r in sim.requests if "/participants/" in r.path]
    assert all(r.headers.get("x-coreos-access") for r in api)
    assert not any("authorization" in r.headers for r in sim.requests)
    # And only the write had the origin token, and the submit had the callback secret
    writes = [r for r in api if r.method == "POST"]
    reads = [r for r in api if r.method == "GET"]
    assert len(writes) == 1
    assert writes[0].headers.get("x-coreos-origin-token") == "origin-1"
    assert writes[0].headers.get("x-coreos-callback-secret") == "cb-1"
    assert reads
    assert not any("x-coreos-origin-token" in r.headers for r in reads)
    # And the body held the payload without clientRef, and the callback URL
    body = writes[0].json()
    assert body["callback"] == {"url": "http://127.0.0.1:9/never"}
    assert body["payload"][0] == {"uniqueCode": "D-0", "name": "Driver 0", "properties": {"n": 0}}


def test_origin_token_may_sit_in_settings_and_no_callback_means_no_callback_fields(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    provider = adapter(sim, http, originToken="origin-2", callbackSecret="cb-2")
    provider.connection.credentials.pop("originToken")
    sim.origin_token = "origin-2"
    provider.submit(chunk(), creates(1))
    (write,) = sim.requests_to("/batch")
    assert write.headers.get("x-coreos-origin-token") == "origin-2"
    assert "x-coreos-callback-secret" not in write.headers
    assert "callback" not in write.json()


def test_a_connection_without_tenant_id_is_a_configuration_error(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    provider = adapter(sim, http)
    provider.connection.settings.pop("tenantId")
    with pytest.raises(ConfigurationError, match="tenantId"):
        provider.submit(chunk(), creates(1))
    assert sim.requests == []


# --- tokens -----------------------------------------------------------------------------------------
def test_token_is_fetched_once_and_reused_across_adapter_instances(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    ref = adapter(sim, http).submit(chunk(), creates(1))
    adapter(sim, http).check(chunk(ref))
    assert sim.tokens_issued == 1
    (auth,) = sim.requests_to("/aaa/auth/client-credentials")
    assert auth.json() == {"clientId": sim.client_id, "clientSecret": sim.client_secret}


def test_audience_is_sent_when_configured(sim: OS1Simulator, http: httpx.Client) -> None:
    sim.audience = "participants"
    adapter(sim, http, audience="participants").submit(chunk(), creates(1))
    (auth,) = sim.requests_to("/aaa/auth/client-credentials")
    assert auth.json()["audience"] == "participants"


def test_token_is_renewed_before_it_expires(sim: OS1Simulator, http: httpx.Client) -> None:
    # Given tokens that live 0.4 s (kept for half of that)
    sim.token_ttl_seconds = 0.4
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), creates(1))
    # When the adapter is used again after the keep time, but before the token lapses
    time.sleep(0.25)
    provider.check(chunk(ref))
    # Then it fetched a new token first and was never refused
    assert sim.tokens_issued == 2
    assert sim.denied == 0


def test_a_refused_token_is_replaced_once_and_the_call_repeated(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), creates(1))
    # Given the cached token is no longer valid at OS1
    sim.expire_tokens()
    # When the adapter checks
    report = provider.check(chunk(ref))
    # Then it got one 401, fetched a new token, and the repeat succeeded
    assert report.state is ChunkState.COMPLETED
    assert (sim.tokens_issued, sim.denied) == (2, 1)


def test_a_submit_refused_with_401_is_repeated_once_and_sent_once(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    provider = adapter(sim, http)
    sim.unauthorized_next = 1
    provider.submit(chunk(), creates(2))
    assert sim.submissions == 1
    assert len(sim.requests_to("/batch")) == 2


def test_a_second_401_is_an_auth_error_with_the_vendor_code(sim: OS1Simulator, http: httpx.Client) -> None:
    sim.unauthorized_next = 2
    with pytest.raises(ProviderAuthError) as caught:
        adapter(sim, http).submit(chunk(), creates(1))
    assert caught.value.code == f"OS1_{simmod.E_BAD_ACCESS}"
    assert simmod.E_BAD_ACCESS in caught.value.message
    assert sim.tokens_issued == 2
    assert sim.submissions == 0


def test_wrong_client_secret_is_an_auth_error_that_never_shows_the_secret(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    with pytest.raises(ProviderAuthError) as caught:
        adapter(sim, http, secret="s3cr3t-wrong").submit(chunk(), creates(1))
    assert caught.value.code == f"OS1_{simmod.E_BAD_CLIENT}"
    assert "s3cr3t-wrong" not in str(caught.value)
    assert sim.client_secret not in str(caught.value)


# --- a mixed batch ------------------------------------------------------------------------------------
def test_mixed_batch_outcomes_match_the_simulators_truth(sim: OS1Simulator, http: httpx.Client) -> None:
    # Given a chunk of 12 creates where 3 fail, 2 are silently dropped, and one uniqueCode already exists
    jobs = creates(12)
    sim.failures = {"D-1": "name is too long", "D-4": "owner unknown", "D-9": "bad properties"}
    sim.dropped = {"D-2", "D-7"}
    sim.add_participant(TYPE, "D-11")
    # When it runs to the end (as chunk 3, jobs 200..211)
    ref, report, outcomes = submit_and_collect(adapter(sim, http), jobs, first=200)
    truth = sim.truth(ref)
    # Then there is one outcome per job, in order, with the client's refs
    assert report.state is ChunkState.COMPLETED
    assert [o.index for o in outcomes] == list(range(200, 212))
    assert [o.client_ref for o in outcomes] == [j["clientRef"] for j in jobs]
    by_code = {j["uniqueCode"]: o for j, o in zip(jobs, outcomes, strict=True)}
    # And the counts and each record match what OS1 (the simulator) really did
    succeeded = {c for c, o in by_code.items() if o.outcome is OutcomeKind.SUCCEEDED}
    failed = {c for c, o in by_code.items() if o.outcome is OutcomeKind.FAILED}
    skipped = {c for c, o in by_code.items() if o.outcome is OutcomeKind.NOT_PROCESSED}
    assert succeeded == set(truth.succeeded)
    assert failed == set(truth.failed) == {"D-1", "D-4", "D-9", "D-11"}
    assert skipped == set(truth.dropped) == {"D-2", "D-7"}
    for code in succeeded:
        assert by_code[code].provider_ref == truth.succeeded[code]
        assert by_code[code].response == {"refID": code, "id": truth.succeeded[code]}
    assert by_code["D-4"].error is not None
    assert (by_code["D-4"].error.code, by_code["D-4"].error.message) == (RECORD_FAILED, "owner unknown")
    assert by_code["D-11"].error is not None
    assert "already exists" in by_code["D-11"].error.message
    assert all(
        o.error is not None and o.error.code == NOT_REPORTED for c, o in by_code.items() if c in skipped
    )
    # And the status report kept only the counts
    assert report.detail == {"success": 6, "failed": 4, "total": 12}


def test_updates_go_by_put_and_are_keyed_by_id(sim: OS1Simulator, http: httpx.Client) -> None:
    # Given two participants OS1 has, and one id it does not
    known = [sim.add_participant(TYPE), sim.add_participant(TYPE)]
    missing = "driver:00000000-0000-4000-8000-000000000000"
    jobs = [
        {"id": pid, "properties": {"status": "active"}, "clientRef": pid[-4:]} for pid in [*known, missing]
    ]
    # When they are sent as an update batch
    _, _, outcomes = submit_and_collect(adapter(sim, http), jobs, operation="update")
    # Then the batch went by PUT with id+properties only, and each record has its result
    (write,) = [r for r in sim.requests_to("/batch") if "/status" not in r.path]
    assert write.method == "PUT"
    assert write.json()["payload"][0] == {"id": known[0], "properties": {"status": "active"}}
    assert [o.outcome for o in outcomes] == [OutcomeKind.SUCCEEDED, OutcomeKind.SUCCEEDED, OutcomeKind.FAILED]
    assert [o.provider_ref for o in outcomes[:2]] == known


def test_update_method_comes_from_the_connection(sim: OS1Simulator, http: httpx.Client) -> None:
    sim.update_method = "PATCH"
    pid = sim.add_participant(TYPE)
    _, _, outcomes = submit_and_collect(
        adapter(sim, http, updateMethod="patch"), [{"id": pid}], operation="update"
    )
    assert outcomes[0].outcome is OutcomeKind.SUCCEEDED
    # And a method OS1 does not take rejects the chunk with a hint
    with pytest.raises(BatchRejectedError, match="updateMethod") as caught:
        adapter(sim, http).submit(chunk(operation="update"), [{"id": pid}])
    assert caught.value.code == f"OS1_{simmod.E_METHOD}"
    with pytest.raises(ConfigurationError, match="updateMethod"):
        adapter(sim, http, updateMethod="DELETE").submit(chunk(operation="update"), [{"id": pid}])


def test_wrong_shapes_and_duplicate_refs_are_not_sent_and_each_gets_one_outcome(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    # Given a create chunk holding an update-shaped job and a repeated uniqueCode
    jobs = [
        {"uniqueCode": "A", "name": "a", "clientRef": "0"},
        {"id": "driver:00000000-0000-4000-8000-000000000001", "clientRef": "1"},
        {"uniqueCode": "A", "name": "a again", "clientRef": "2"},
        {"uniqueCode": "B", "name": "b", "clientRef": "3"},
    ]
    _, _, outcomes = submit_and_collect(adapter(sim, http), jobs, first=10)
    # Then OS1 saw only A and B
    (write,) = [r for r in sim.requests_to("/batch") if "/status" not in r.path]
    assert [p["uniqueCode"] for p in write.json()["payload"]] == ["A", "B"]
    # And the other two have their own outcome
    kinds = [(o.outcome, o.error.code if o.error else None) for o in outcomes]
    assert kinds == [
        (OutcomeKind.SUCCEEDED, None),
        (OutcomeKind.FAILED, JOB_SHAPE),
        (OutcomeKind.NOT_PROCESSED, DUPLICATE_REF),
        (OutcomeKind.SUCCEEDED, None),
    ]
    assert outcomes[2].error is not None
    assert "job 10" in outcomes[2].error.message


def test_a_chunk_with_nothing_to_send_is_rejected_without_a_call(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    with pytest.raises(BatchRejectedError) as caught:
        adapter(sim, http).submit(chunk(operation="update"), creates(2))
    assert caught.value.code == JOB_SHAPE
    assert sim.submissions == 0


def test_records_the_chunk_does_not_hold_are_ignored(sim: OS1Simulator, http: httpx.Client) -> None:
    # Given OS1 reports on three records but the chunk (as the core knows it) holds two of them
    provider = adapter(sim, http)
    jobs = creates(3)
    info = chunk()
    info.provider_ref = provider.submit(info, jobs)
    report = run_to_end(provider, info)
    # When the results are collected for those two
    outcomes = list(provider.collect(info, jobs[:2], report))
    # Then there are exactly two outcomes, never an extra one
    assert [o.client_ref for o in outcomes] == ["ref-0", "ref-1"]


def test_a_record_in_both_lists_is_not_claimed_as_succeeded(
    sim: OS1Simulator, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = adapter(sim, http)
    jobs = creates(2)
    info = chunk()
    info.provider_ref = provider.submit(info, jobs)
    run_to_end(provider, info)
    # Given OS1's answer names D-0 as succeeded and as failed
    original = sim.route

    def contradicting(request: Request) -> Response:
        response = original(request)
        if request.path.endswith("/status") and isinstance(response.body, dict):
            response.body["data"]["errors"].append({"refID": "D-0", "reason": "late failure"})
        return response

    monkeypatch.setattr(sim, "route", contradicting)
    outcomes = list(provider.collect(info, jobs, None))
    assert outcomes[0].outcome is OutcomeKind.NOT_PROCESSED
    assert outcomes[0].error is not None
    assert outcomes[0].error.code == CONFLICTING_RESULT
    assert outcomes[0].provider_ref is None
    assert outcomes[1].outcome is OutcomeKind.SUCCEEDED


# --- status ----------------------------------------------------------------------------------------------
def test_progress_is_reported_while_the_batch_runs(sim: OS1Simulator, http: httpx.Client) -> None:
    # Given a batch of 10 that takes 0.4 s, queued for the first 0.1 s
    sim.batch_seconds, sim.queued_share = 0.4, 0.25
    provider = adapter(sim, http)
    info = chunk(ref=provider.submit(chunk(), creates(10)))
    # Then it is first queued, then processing with partial progress, then completed
    first = provider.check(info)
    assert (first.state, first.provider_status, first.progress) == (ChunkState.RUNNING, "queued", 0.0)
    time.sleep(0.25)
    middle = provider.check(info)
    assert (middle.state, middle.provider_status) == (ChunkState.RUNNING, "processing")
    assert middle.progress is not None
    assert 0 < middle.progress < 100
    final = run_to_end(provider, info)
    assert (final.state, final.progress) == (ChunkState.COMPLETED, 100.0)


@pytest.mark.parametrize("word", ["paused", "COMPLETED", "done", ""])
def test_an_unknown_meta_status_fails_closed(sim: OS1Simulator, http: httpx.Client, word: str) -> None:
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), creates(2))
    sim.force_status(ref, word)
    with pytest.raises(UnknownProviderStatusError, match=repr(word)):
        provider.check(chunk(ref))
    with pytest.raises(UnknownProviderStatusError):
        list(provider.collect(chunk(ref), creates(2), None))


def test_a_failed_batch_keeps_what_os1_reported_and_the_rest_is_not_processed(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    # Given OS1 fails the batch after half its records (one of which failed)
    sim.fail_next_batches = 1
    sim.failures = {"D-1": "bad name"}
    ref, report, outcomes = submit_and_collect(adapter(sim, http), creates(6))
    truth = sim.truth(ref)
    # Then the chunk is FAILED with counts in the message
    assert report.state is ChunkState.FAILED
    assert report.provider_status == "failed"
    assert report.error is not None
    assert "2 of 6 records succeeded" in report.error.message
    # And the reported records keep their results, the others are not processed
    assert [o.outcome for o in outcomes[:3]] == [
        OutcomeKind.SUCCEEDED,
        OutcomeKind.FAILED,
        OutcomeKind.SUCCEEDED,
    ]
    assert truth.unprocessed == ["D-3", "D-4", "D-5"]
    assert all(o.outcome is OutcomeKind.NOT_PROCESSED for o in outcomes[3:])
    assert outcomes[3].error is not None
    assert "failed before" in outcomes[3].error.message


def test_collect_refuses_a_batch_that_runs_again(sim: OS1Simulator, http: httpx.Client) -> None:
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), creates(1))
    sim.force_status(ref, "processing")
    with pytest.raises(ProviderResponseError, match="again"):
        list(provider.collect(chunk(ref), creates(1), None))


def test_an_unknown_batch_fails_the_check_and_expires_the_results(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    info = chunk("batch:00000000-0000-4000-8000-000000000000")
    with pytest.raises(ProviderJobFailedError) as caught:
        adapter(sim, http).check(info)
    assert simmod.E_NO_BATCH in caught.value.message
    with pytest.raises(ResultsExpiredError):
        list(adapter(sim, http).collect(info, creates(1), None))


# --- vendor errors and transport ----------------------------------------------------------------------
def test_a_refused_batch_carries_the_vendors_code_and_description(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    sim.max_items = 2
    with pytest.raises(BatchRejectedError) as caught:
        adapter(sim, http).submit(chunk(), creates(3))
    assert caught.value.code == f"OS1_{simmod.E_TOO_MANY}"
    assert "at most 2 items" in caught.value.message


def test_an_unknown_participant_type_rejects_the_chunk(sim: OS1Simulator, http: httpx.Client) -> None:
    sim.participant_types = {"vehicles"}
    with pytest.raises(BatchRejectedError, match="participant type") as caught:
        adapter(sim, http).submit(chunk(), creates(1))
    assert caught.value.code == f"OS1_{simmod.E_NO_TYPE}"


def test_a_connection_without_an_origin_token_cannot_submit(sim: OS1Simulator, http: httpx.Client) -> None:
    # OS1 marks X-COREOS-ORIGIN-TOKEN required on batch writes: without one nothing is sent at all
    provider = adapter(sim, http)
    provider.connection.credentials.pop("originToken")
    with pytest.raises(ConfigurationError, match="originToken"):
        provider.submit(chunk(), creates(1))
    assert sim.requests_to("/participants/") == []


def test_a_refused_origin_token_is_an_auth_error(sim: OS1Simulator, http: httpx.Client) -> None:
    with pytest.raises(ProviderAuthError) as caught:
        adapter(sim, http, credentials={"originToken": "not-the-one"}).submit(chunk(), creates(1))
    assert caught.value.code == f"OS1_{simmod.E_ORIGIN_REFUSED}"


def test_503_is_unavailable_with_the_vendors_words_and_429_is_throttled(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), creates(1))
    sim.faults.server_error_next = 1
    with pytest.raises(ProviderUnavailableError, match=simmod.E_UNAVAILABLE):
        provider.check(chunk(ref))
    sim.faults.throttle_next, sim.faults.retry_after_seconds = 1, 7
    with pytest.raises(ProviderThrottledError) as caught:
        provider.check(chunk(ref))
    assert caught.value.retry_after == 7
    assert sim.submissions == 1


@pytest.mark.parametrize("fault", ["malformed_next", "truncated_next"])
def test_a_body_that_breaks_the_envelope_is_a_response_error(
    sim: OS1Simulator, http: httpx.Client, fault: str
) -> None:
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), creates(1))
    setattr(sim.faults, fault, 1)
    sim.faults.only_paths = ("/batch/status",)
    with pytest.raises(ProviderResponseError):
        provider.check(chunk(ref))


def test_a_submit_whose_answer_is_lost_is_not_made_retryable(sim: OS1Simulator, http: httpx.Client) -> None:
    # Given OS1 takes the batch and then the connection drops
    provider = adapter(sim, http)
    sim.faults.drop_after_handling_next = 1
    sim.faults.only_paths = ("/participants/",)
    # Then the submit is unconfirmed: the core never sends it again
    with pytest.raises(SubmitUnconfirmedError):
        provider.submit(chunk(), creates(1))
    assert sim.submissions == 1


def test_a_garbled_token_answer_before_a_submit_is_retryable_not_ambiguous(
    sim: OS1Simulator, http: httpx.Client
) -> None:
    # Given the token endpoint answers with a body outside the envelope
    sim.faults.malformed_next = 1
    sim.faults.only_paths = ("/aaa/auth/",)
    # Then the submit fails as unavailable (nothing was sent), and sends nothing
    with pytest.raises(ProviderUnavailableError, match="not JSON"):
        adapter(sim, http).submit(chunk(), creates(1))
    assert sim.submissions == 0
    # While a status check reports the broken body as it is
    sim.faults.malformed_next = 1
    with pytest.raises(ProviderResponseError):
        adapter(sim, http).check(chunk("batch:00000000-0000-4000-8000-000000000000"))


# --- callbacks -------------------------------------------------------------------------------------------
class _Receiver(Simulator):
    name = "callback-receiver"

    def route(self, request: Request) -> Response:
        return Response(200, {"ok": True})


@pytest.fixture(scope="module")
def receiver() -> Iterator[_Receiver]:
    with _Receiver() as running:
        yield running


def test_os1_calls_back_when_the_batch_ends(
    sim: OS1Simulator, http: httpx.Client, receiver: _Receiver
) -> None:
    receiver.requests.clear()
    # Given a submit that asks for a callback, with a callback secret
    provider = adapter(sim, http, credentials={"callbackSecret": "cb-secret"})
    url = f"{receiver.base_url}/callbacks/os1/token-123"
    ref = provider.submit(chunk(callback=url), creates(2))
    # When the batch ends
    (delivery,) = sim.wait_for_callbacks(1)
    # Then OS1 POSTed our decided body to the URL, with the secret
    assert (delivery.status, delivery.error) == (200, None)
    (call,) = receiver.requests
    assert (call.method, call.path) == ("POST", "/callbacks/os1/token-123")
    assert call.json() == {"batchId": ref, "status": "completed"}
    assert call.headers.get("x-coreos-callback-secret") == "cb-secret"
    assert call.headers.get("x-coreos-tid") == sim.tenant_id
    # And the adapter confirms the callback by asking OS1, not by trusting the body
    before = len(sim.requests)
    assert provider.confirm_callback(chunk(ref), call.json()) is True
    assert len(sim.requests) == before + 1


def test_a_batch_without_callback_url_calls_nobody(sim: OS1Simulator, http: httpx.Client) -> None:
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), creates(1))
    run_to_end(provider, chunk(ref))
    assert sim.wait_for_callbacks(1, timeout=0.1) == []
