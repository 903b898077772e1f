"""SuperOffice adapter against the SuperOffice simulator over loopback HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchbridge.errors import (
    BatchRejectedError,
    CancelNotSupportedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderNotReadyError,
    ProviderThrottledError,
    ProviderUnavailableError,
    ResultsExpiredError,
    SubmitUnconfirmedError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, Connection, OutcomeKind
from batchbridge.providers import superoffice
from batchbridge.providers.auth import clear_token_cache
from batchbridge.providers.base import ChunkInfo, StatusReport
from batchbridge.providers.http import new_client
from batchbridge.providers.superoffice import (
    CONFLICTING_RESULT,
    ENTITY_FAILED,
    NO_RESULT,
    TASK_FAILED,
    TASK_INFO_PATH,
    TASK_STOPPED,
    SuperOfficeProvider,
    clear_endpoint_cache,
)
from batchbridge_local.simulators.superoffice import SuperOfficeSimulator

OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


@pytest.fixture(scope="module")
def running_sim() -> Iterator[SuperOfficeSimulator]:
    with SuperOfficeSimulator(job_seconds=0.15) as simulator:
        yield simulator


@pytest.fixture
def sim(running_sim: SuperOfficeSimulator) -> SuperOfficeSimulator:
    running_sim.reset()
    return running_sim


@pytest.fixture(autouse=True)
def _fresh_endpoints() -> Iterator[None]:
    clear_endpoint_cache()
    clear_token_cache()
    yield
    clear_endpoint_cache()
    clear_token_cache()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with new_client(httpx.Timeout(2.0)) as client:
        yield client


def adapter(
    sim: SuperOfficeSimulator,
    http: httpx.Client,
    *,
    auth: str = "ticket",
    ticket: str | None = None,
    credentials: dict[str, str] | None = None,
    base_url: str | None = None,
    **settings: Any,
) -> SuperOfficeProvider:
    if credentials is None and auth == "ticket":
        credentials = {"ticket": ticket or sim.ticket, "appToken": sim.app_token}
    elif credentials is None:
        credentials = {"accessToken": sim.access_token}
    connection = Connection(
        name="superoffice-test",
        provider="superoffice",
        baseUrl=base_url or sim.base_url,
        credentials=credentials,
        settings={"contextIdentifier": sim.context_identifier, **settings},
    )
    return SuperOfficeProvider(connection, http)


def entities(*ids: int) -> list[dict[str, Any]]:
    return [{"id": i, "clientRef": f"ref-{i}"} for i in ids]


def chunk(ref: str | None = None, first: int = 0, **options: Any) -> ChunkInfo:
    return ChunkInfo(
        batch_id="b-1", index=0, first_job_index=first, provider_ref=ref, options={**OPTIONS, **options}
    )


def run_to_end(provider: SuperOfficeProvider, info: ChunkInfo) -> StatusReport:
    deadline = time.monotonic() + 3.0
    while True:
        report = provider.check(info)
        if report.state is not ChunkState.RUNNING or time.monotonic() > deadline:
            return report
        time.sleep(0.03)


# --- submit ----------------------------------------------------------------------------------------
def test_submit_sends_one_mass_update_per_chunk_and_returns_the_task_id(sim, http):
    # Given three entities, one of them named twice
    provider = adapter(sim, http)
    # When the chunk is submitted
    ref = provider.submit(chunk(), entities(11, 12, 13, 11))
    # Then one ExecuteByEntityIds call carried the table, the field changes and the ids, once each
    assert ref.isdigit()
    assert sim.submissions == 1
    (call,) = sim.requests_to("ExecuteByEntityIds")
    body = json.loads(call.body)
    assert body["Ids"] == "11,12,13"
    assert body["TableName"] == "contact"
    assert body["FieldValueInfos"] == OPTIONS["fieldValueInfos"]
    assert body["Context"] == "batchbridge:b-1:0"
    assert call.headers["authorization"] == f"SOTicket {sim.ticket}"
    assert call.headers["so-apptoken"] == sim.app_token
    assert call.path == f"/sod1/{sim.context_identifier}/api/v1/Agents/BulkUpdate/ExecuteByEntityIds"


def test_bearer_connection_sends_a_bearer_token(sim, http):
    provider = adapter(sim, http, auth="bearer")
    ref = provider.submit(chunk(), entities(1))
    assert run_to_end(provider, chunk(ref)).state is ChunkState.COMPLETED
    assert all(r.headers["authorization"] == f"Bearer {sim.access_token}" for r in sim.requests_to("Agents"))


def test_refused_mass_update_surfaces_the_vendor_message(sim, http):
    # Given SuperOffice takes at most two ids per call
    sim.max_ids = 2
    # When three are sent, Then the chunk is rejected with SuperOffice's own words
    with pytest.raises(BatchRejectedError, match="At most 2 ids per mass update"):
        adapter(sim, http).submit(chunk(), entities(1, 2, 3))
    assert sim.submissions == 0


def test_submit_without_valid_options_is_rejected_before_any_call(sim, http):
    info = ChunkInfo(batch_id="b", index=0, first_job_index=0, options={"tableName": "contact"})
    with pytest.raises(BatchRejectedError, match="fieldValueInfos"):
        adapter(sim, http).submit(info, entities(1))
    assert sim.requests == []


def test_throttled_submit_is_retryable_and_not_submitted(sim, http):
    sim.faults.throttle_next = 1
    sim.faults.retry_after_seconds = 7
    sim.faults.only_paths = ("ExecuteByEntityIds",)
    with pytest.raises(ProviderThrottledError) as caught:
        adapter(sim, http).submit(chunk(), entities(1))
    assert caught.value.retry_after == 7
    assert sim.submissions == 0


@pytest.mark.parametrize(
    "fault",
    [{"drop_after_handling_next": 1}, {"error_after_handling_next": 1, "error_after_handling_status": 503}],
)
def test_a_submit_whose_answer_is_lost_is_unconfirmed(sim, http, fault):
    # Given SuperOffice creates the task but the connection drops, or it answers 503, afterwards
    for knob, value in fault.items():
        setattr(sim.faults, knob, value)
    sim.faults.only_paths = ("ExecuteByEntityIds",)
    # Then the submit is unconfirmed (the core looks the task up, never resends), never retried here
    with pytest.raises(SubmitUnconfirmedError):
        adapter(sim, http).submit(chunk(), entities(1))
    assert sim.submissions == 1
    assert len(sim.requests_to("ExecuteByEntityIds")) == 1


def test_a_submit_answer_cut_short_to_another_tasks_id_is_unconfirmed_and_found_by_context(sim, http):
    # Given task 10 holds chunk 0, and chunk 1's submit creates task 1000 but its answer is cut to "10"
    provider = adapter(sim, http, associateId=sim.associate_id)
    sim._next_task = 10
    assert provider.submit(chunk(), entities(1)) == "10"
    sim._next_task = 1000
    sim.faults.truncated_next = 1
    sim.faults.only_paths = ("ExecuteByEntityIds",)
    second = ChunkInfo(batch_id="b-1", index=1, first_job_index=1, options=OPTIONS)
    # When chunk 1 is submitted, Then task 10 (chunk 0's) is not taken as chunk 1's
    with pytest.raises(SubmitUnconfirmedError, match="another Context"):
        provider.submit(second, entities(2))
    assert sim.submissions == 2
    # And the chunk's own task is found by its Context, without sending it again
    assert provider.find_submission(second) == "1000"
    assert sim.submissions == 2


def test_a_submit_whose_task_cannot_be_read_at_first_is_read_again_and_taken(sim, http):
    # Given the first reads of the task just created fail (a drop, a 500, an HTML page)
    sim.faults.drop_next = 1
    sim.faults.server_error_next = 1
    sim.faults.malformed_next = 1
    sim.faults.only_paths = (TASK_INFO_PATH,)
    # When the chunk is submitted, Then the task is read until it can be, and taken
    assert adapter(sim, http).submit(chunk(), entities(1)) == "1000"
    assert len([r for r in sim.requests if r.path.endswith(TASK_INFO_PATH)]) == 4
    assert sim.submissions == 1


def test_a_submit_answer_naming_a_task_that_does_not_exist_is_unconfirmed(sim, http, monkeypatch):
    # Given the task is created as 1000 but the answer is cut to "10", a task SuperOffice does not know
    monkeypatch.setattr(superoffice, "CONFIRM_WAITS", (0.0, 0.0))
    sim.faults.truncated_next = 1
    sim.faults.only_paths = ("ExecuteByEntityIds",)
    with pytest.raises(SubmitUnconfirmedError, match="could not be read back"):
        adapter(sim, http).submit(chunk(), entities(1))
    assert sim.submissions == 1


# --- status mapping ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vendor_state", "expected"),
    [
        ("New", ChunkState.RUNNING),
        ("Aquired", ChunkState.RUNNING),
        ("Started", ChunkState.RUNNING),
        ("Succeeded", ChunkState.COMPLETED),
        ("SucceededManualCleanup", ChunkState.COMPLETED),
        ("Failed", ChunkState.FAILED),
    ],
)
def test_every_documented_task_state_maps_to_a_canonical_state(sim, http, vendor_state, expected):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1, 2))
    sim.force_state(int(ref), vendor_state, progress=40, result="Failed", response="Disk full")
    report = provider.check(chunk(ref))
    assert report.state is expected
    assert report.provider_status == vendor_state
    if expected is ChunkState.RUNNING:
        assert report.progress == 40.0
    if expected is ChunkState.FAILED:
        assert report.error is not None
        assert report.error.code == TASK_FAILED
        assert "Disk full" in report.error.message


@pytest.mark.parametrize("vendor_state", ["Unknown", "All", "Paused", "started", ""])
def test_unknown_all_and_undocumented_states_fail_closed_naming_the_value(sim, http, vendor_state):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    sim.force_state(int(ref), vendor_state)
    with pytest.raises(UnknownProviderStatusError, match=repr(vendor_state)):
        provider.check(chunk(ref))


@pytest.mark.parametrize(("percent", "expected"), [(416, 100.0), (-3, 0.0), (0, 0.0), (73, 73.0)])
def test_progress_is_kept_within_0_and_100_and_described_in_detail(sim, http, percent, expected):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1, 2, 3))
    sim.force_state(int(ref), "Started", progress=percent)
    report = provider.check(chunk(ref))
    assert report.progress == expected
    assert report.detail["progressDescription"].startswith("Updated ")


def test_a_task_superoffice_no_longer_knows_fails_the_chunk(sim, http):
    with pytest.raises(ProviderJobFailedError, match="no longer knows"):
        adapter(sim, http).check(chunk("999999"))


def test_server_error_on_check_is_retryable(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    sim.faults.server_error_next = 1
    with pytest.raises(ProviderUnavailableError):
        provider.check(chunk(ref))


# --- endpoint discovery -------------------------------------------------------------------------------
def test_discovered_endpoint_is_cached_across_adapter_instances(sim, http):
    ref = adapter(sim, http).submit(chunk(), entities(1))
    adapter(sim, http).check(chunk(ref))
    assert sim.state_requests == 1


def test_endpoint_is_rediscovered_once_its_valid_until_has_passed(sim, http):
    # Given the state service says its answer is valid for no time at all
    sim.state_ttl_seconds = 0
    ref = adapter(sim, http).submit(chunk(), entities(1))
    adapter(sim, http).check(chunk(ref))
    # the submit, its read-back and the check each found the endpoint lapsed
    assert sim.state_requests == 3


def test_a_moved_tenant_answers_421_and_is_rediscovered_once(sim, http):
    # Given a task submitted while the tenant lived on sod1
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1, 2))
    # When the tenant moves to sod2
    sim.move_host()
    report = run_to_end(adapter(sim, http), chunk(ref))
    # Then the old host answered 421 once, the tenant was rediscovered once, and the check went to sod2
    assert report.state is ChunkState.COMPLETED
    assert sim.state_requests == 2
    assert len(sim.requests_to("/sod1/")) == 3  # the submit, its read-back and the one misdirected check
    assert sim.requests_to("/sod2/")


def test_submit_to_a_moved_tenant_is_sent_again_to_the_new_host_once(sim, http):
    provider = adapter(sim, http)
    provider.submit(chunk(), entities(1))
    sim.move_host()
    provider.submit(chunk(), entities(2))
    assert sim.submissions == 2  # the 421 was not a submission; the repeat was the only one
    sent_to_sod2 = [r for r in sim.requests_to("/sod2/") if r.path.endswith("ExecuteByEntityIds")]
    assert len(sent_to_sod2) == 1


def test_a_tenant_still_misdirected_after_rediscovery_is_retryable_and_forgotten(sim, http):
    # Given the state service still announces the old host right after a move
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    sim.move_host()
    sim.stale_state_next = 1
    # When the task is checked, Then the workflow is asked to retry (no third attempt here)
    with pytest.raises(ProviderUnavailableError, match="421"):
        provider.check(chunk(ref))
    assert len(sim.requests_to("GetBatchTaskInfo")) == 3  # the submit's read-back, then the check twice
    # And the stale endpoint was not kept: the next check rediscovers and reaches the new host
    assert provider.check(chunk(ref)).state in (ChunkState.RUNNING, ChunkState.COMPLETED)
    assert sim.state_requests == 3


def test_unknown_tenant_is_a_configuration_error(sim, http):
    with pytest.raises(ConfigurationError, match="contextIdentifier"):
        adapter(sim, http, contextIdentifier="Cust00000").submit(chunk(), entities(1))


def test_missing_context_identifier_is_a_configuration_error(sim, http):
    with pytest.raises(ConfigurationError, match="contextIdentifier"):
        adapter(sim, http, contextIdentifier="").check(chunk("1"))


# --- tenant not running ----------------------------------------------------------------------------
def test_submit_waits_while_the_tenant_is_in_maintenance(sim, http):
    # Given a tenant in an open-ended maintenance window
    sim.start_maintenance()
    # When a chunk is submitted, Then the workflow is asked to wait, and nothing was sent
    with pytest.raises(ProviderNotReadyError, match="InMaintenance") as caught:
        adapter(sim, http, notRunningWaitSeconds=120).submit(chunk(), entities(1))
    assert caught.value.wait_seconds == 120
    assert sim.submissions == 0


def test_check_during_maintenance_reports_running_with_a_wait_hint(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    clear_endpoint_cache()
    # Given a maintenance window that ends in 40 seconds
    sim.start_maintenance(40, state="Upgrading")
    report = adapter(sim, http).check(chunk(ref))
    # Then the chunk is still running and the hint points at the window's end
    assert report.state is ChunkState.RUNNING
    assert report.provider_status == "Upgrading"
    assert report.wait_hint_seconds is not None
    assert 30 <= report.wait_hint_seconds <= 40


def test_maintenance_seen_through_a_cached_endpoint_turns_into_a_wait(sim, http):
    # Given the endpoint was discovered before maintenance began
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    sim.start_maintenance()
    # When the tenant answers 503, Then this call is retried by the workflow...
    with pytest.raises(ProviderUnavailableError):
        provider.check(chunk(ref))
    # ...and the next one learns the tenant is not running
    report = provider.check(chunk(ref))
    assert report.state is ChunkState.RUNNING
    assert report.wait_hint_seconds
    sim.end_maintenance()
    assert run_to_end(provider, chunk(ref)).state is ChunkState.COMPLETED


def test_collect_during_maintenance_is_retryable(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    run_to_end(provider, chunk(ref))
    clear_endpoint_cache()
    sim.start_maintenance()
    with pytest.raises(ProviderUnavailableError, match="not running"):
        list(provider.collect(chunk(ref), entities(1), None))


# --- results ---------------------------------------------------------------------------------------
def test_mixed_batch_outcomes_match_the_simulators_truth(sim, http):
    # Given 20 entities, three that SuperOffice fails and one it leaves out of the result
    ids = list(range(100, 120))
    sim.failures = {103: "Field business_idx is read-only", 110: "Record is locked", 117: ""}
    sim.unreported = {115}
    provider = adapter(sim, http)
    info = chunk(first=500)
    ref = provider.submit(info, entities(*ids))
    info = chunk(ref, first=500)
    report = run_to_end(provider, info)
    assert report.state is ChunkState.COMPLETED
    # When the results are collected
    outcomes = list(provider.collect(info, entities(*ids), report))
    # Then there is one outcome per entity, in order, and the counts match what really happened
    truth = sim.truth(int(ref))
    assert [o.index for o in outcomes] == list(range(500, 520))
    assert [o.client_ref for o in outcomes] == [f"ref-{i}" for i in ids]
    assert [o.provider_ref for o in outcomes] == [str(i) for i in ids]
    by_kind = {kind: [int(o.provider_ref) for o in outcomes if o.outcome is kind] for kind in OutcomeKind}
    assert by_kind[OutcomeKind.SUCCEEDED] == truth.succeeded
    assert by_kind[OutcomeKind.FAILED] == sorted(truth.failed)
    assert by_kind[OutcomeKind.NOT_PROCESSED] == truth.unreported == [115]
    failed = {int(o.provider_ref): o for o in outcomes if o.outcome is OutcomeKind.FAILED}
    assert failed[103].error.code == ENTITY_FAILED
    assert failed[103].error.message == "Field business_idx is read-only"
    assert failed[117].error.message == "SuperOffice gave no reason"
    assert failed[110].response == {"Id": 110, "Succeeded": False, "Error": "Record is locked"}
    skipped = next(o for o in outcomes if o.outcome is OutcomeKind.NOT_PROCESSED)
    assert skipped.error.code == NO_RESULT


def test_a_failed_task_reports_what_it_handled_and_the_rest_as_not_processed(sim, http):
    sim.fail_next_tasks = 1
    sim.failures = {1: "Record is locked"}
    ids = list(range(1, 11))
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(*ids))
    report = run_to_end(provider, chunk(ref))
    assert report.state is ChunkState.FAILED
    assert report.error is not None
    assert "aborted by the server" in report.error.message
    outcomes = list(provider.collect(chunk(ref), entities(*ids), report))
    truth = sim.truth(int(ref))
    assert truth.not_handled
    assert [
        int(o.provider_ref) for o in outcomes if o.outcome is OutcomeKind.NOT_PROCESSED
    ] == truth.not_handled
    assert [int(o.provider_ref) for o in outcomes if o.outcome is OutcomeKind.SUCCEEDED] == truth.succeeded
    assert all(o.error.code == TASK_FAILED for o in outcomes if o.outcome is OutcomeKind.NOT_PROCESSED)


def test_results_that_are_gone_are_reported_as_expired(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1, 2))
    run_to_end(provider, chunk(ref))
    sim.delete_result(int(ref))
    with pytest.raises(ResultsExpiredError):
        list(provider.collect(chunk(ref), entities(1, 2), None))


# --- cancel ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("behaviour", ["CanCancel", "CancelWithWarning"])
def test_cancel_stops_a_task_that_allows_it(sim, http, behaviour):
    # Given a long task that may be stopped
    sim.job_seconds = 5.0
    sim.cancellation_behaviour = behaviour
    ids = list(range(1, 6))
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(*ids))
    # When it is cancelled
    assert provider.cancel(chunk(ref)) is True
    # Then it ends Failed/"Stopped", and entities it never reached are not processed
    report = provider.check(chunk(ref))
    assert report.state is ChunkState.FAILED
    assert report.error is not None
    assert report.error.code == TASK_STOPPED
    outcomes = list(provider.collect(chunk(ref), entities(*ids), report))
    truth = sim.truth(int(ref))
    assert [
        int(o.provider_ref) for o in outcomes if o.outcome is OutcomeKind.NOT_PROCESSED
    ] == truth.not_handled
    assert sim.requests_to("StopBatchJob")


def test_cancel_refuses_a_task_that_cannot_be_stopped(sim, http):
    sim.job_seconds = 5.0
    sim.cancellation_behaviour = "CannotCancel"
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    with pytest.raises(CancelNotSupportedError, match="CannotCancel"):
        provider.cancel(chunk(ref))
    assert not sim.requests_to("StopBatchJob")
    assert provider.check(chunk(ref)).state is ChunkState.RUNNING


def test_cancel_of_a_finished_task_is_a_no(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), entities(1))
    run_to_end(provider, chunk(ref))
    assert provider.cancel(chunk(ref)) is False
    assert not sim.requests_to("StopBatchJob")


# --- auth ------------------------------------------------------------------------------------------
def test_a_single_401_is_retried_once(sim, http):
    sim.unauthorized_next = 1
    ref = adapter(sim, http).submit(chunk(), entities(1))
    assert ref.isdigit()
    assert len(sim.requests_to("ExecuteByEntityIds")) == 2
    assert sim.submissions == 1


def test_a_second_401_is_an_auth_error_without_the_secret(sim, http):
    sim.unauthorized_next = 2
    with pytest.raises(ProviderAuthError) as caught:
        adapter(sim, http).submit(chunk(), entities(1))
    assert len(sim.requests_to("ExecuteByEntityIds")) == 2
    assert sim.submissions == 0
    assert sim.ticket not in str(caught.value)
    assert sim.app_token not in str(caught.value)


def test_a_401_re_reads_the_connection_and_retries_with_a_rotated_ticket(sim, http):
    # Given an adapter holding yesterday's ticket, whose secret now holds the ticket SuperOffice accepts
    reloads = []

    def reload() -> Connection:
        reloads.append(1)
        return adapter(sim, http).connection

    stale = adapter(sim, http, ticket="7T:yesterdays-ticket").connection
    provider = SuperOfficeProvider(stale, http, reload=reload)
    # When it submits
    ref = provider.submit(chunk(), entities(1))
    # Then the refused call was repeated once with the re-read ticket, and the task runs
    assert ref.isdigit()
    assert len(reloads) == 1
    sent = [r.headers["authorization"] for r in sim.requests_to("ExecuteByEntityIds")]
    assert sent == ["SOTicket 7T:yesterdays-ticket", f"SOTicket {sim.ticket}"]
    assert sim.submissions == 1


def test_a_wrong_ticket_is_refused(sim, http):
    with pytest.raises(ProviderAuthError, match="Authentication failed"):
        adapter(sim, http, ticket="7T:not-the-ticket").check(chunk("1000"))


def test_connection_without_usable_credentials_is_a_configuration_error(sim, http):
    connection = Connection(
        name="so",
        provider="superoffice",
        baseUrl=sim.base_url,
        credentials={"password": "x"},
        settings={"contextIdentifier": sim.context_identifier},
    )
    with pytest.raises(ConfigurationError, match="accessToken"):
        SuperOfficeProvider(connection, http).check(chunk("1"))


# --- system users, Basic auth, results by the connection's settings, clean-up -------------------------
def system_user(sim: SuperOfficeSimulator) -> dict[str, str]:
    return {
        "systemUserToken": sim.system_user_token,
        "privateKey": sim.private_key_pem,
        "appToken": sim.app_token,
    }


# --- system user ------------------------------------------------------------------------------------
def test_a_system_user_signs_its_token_and_the_ticket_is_cached(sim, http):
    # Given a system-user connection (no ticket in the secret at all)
    provider = adapter(sim, http, credentials=system_user(sim))
    # When it submits and checks twice, through two adapter instances
    ref = provider.submit(chunk(), entities(1, 2))
    adapter(sim, http, credentials=system_user(sim)).check(chunk(ref))
    # Then one ticket was obtained, with a signed token the simulator verified, and reused
    assert sim.tickets_issued == 1
    (sign_in,) = sim.requests_to("PartnerSystemUser")
    body = json.loads(sign_in.body)
    assert body["SignedSystemToken"].startswith(f"{sim.system_user_token}.")
    assert (body["ApplicationToken"], body["ContextIdentifier"], body["ReturnTokenType"]) == (
        sim.app_token,
        sim.context_identifier,
        "JWT",
    )
    ticket = next(iter(sim.issued_tickets))
    sent = sim.requests_to("ExecuteByEntityIds")[0].headers
    assert (sent["authorization"], sent["so-apptoken"]) == (f"SOTicket {ticket}", sim.app_token)


def test_a_lapsed_ticket_is_renewed_on_a_401_and_the_call_repeated_once(sim, http):
    provider = adapter(sim, http, credentials=system_user(sim))
    ref = provider.submit(chunk(), entities(1))
    sim.expire_tickets()
    provider.check(chunk(ref))
    assert sim.tickets_issued == 2


def test_a_ticket_is_renewed_before_its_lifetime_ends(sim, http):
    # Given tickets said to live 0.2 s (so renewed after half of that)
    provider = adapter(sim, http, credentials=system_user(sim), ticketLifetimeSeconds=0.2)
    ref = provider.submit(chunk(), entities(1))
    time.sleep(0.15)
    provider.check(chunk(ref))
    assert sim.tickets_issued == 2


def test_a_refused_system_user_sign_in_is_an_auth_error_without_any_secret(sim, http):
    credentials = {**system_user(sim), "systemUserToken": "not-ours-at-all"}
    with pytest.raises(ProviderAuthError, match="Unknown system user token") as caught:
        adapter(sim, http, credentials=credentials).submit(chunk(), entities(1))
    assert sim.private_key_pem not in str(caught.value)
    assert sim.app_token not in str(caught.value)
    assert sim.submissions == 0


def test_a_private_key_that_is_not_one_is_a_configuration_error_that_does_not_echo_it(sim, http):
    credentials = {
        **system_user(sim),
        "privateKey": "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----",
    }
    with pytest.raises(ConfigurationError, match="privateKey") as caught:
        adapter(sim, http, credentials=credentials).submit(chunk(), entities(1))
    assert "bm9wZQ" not in str(caught.value)


def test_credentials_of_two_schemes_without_auth_scheme_are_refused(sim, http):
    credentials = {**system_user(sim), "ticket": sim.ticket}
    with pytest.raises(ConfigurationError, match="authScheme"):
        adapter(sim, http, credentials=credentials).submit(chunk(), entities(1))
    adapter(sim, http, credentials=credentials, authScheme="SOTicket").submit(chunk(), entities(1))


# --- Basic (on-site) --------------------------------------------------------------------------------
def test_an_on_site_installation_takes_basic_auth_without_tenant_discovery(sim, http):
    credentials = {"username": sim.username, "password": sim.password}
    provider = adapter(sim, http, credentials=credentials, base_url=sim.endpoint, tenantDiscovery=False)
    ref = provider.submit(chunk(), entities(1))
    assert ref
    assert sim.state_requests == 0
    sent = sim.requests_to("ExecuteByEntityIds")[0].headers["authorization"]
    assert sent.startswith("Basic ")
    with pytest.raises(ProviderAuthError) as caught:
        adapter(
            sim,
            http,
            credentials={"username": sim.username, "password": "wrong-one"},
            base_url=sim.endpoint,
            tenantDiscovery=False,
        ).submit(chunk(), entities(1))
    assert "wrong-one" not in str(caught.value)


# --- results ------------------------------------------------------------------------------------------
def ticket(sim: SuperOfficeSimulator) -> dict[str, str]:
    return {"ticket": sim.ticket, "appToken": sim.app_token}


def collected(provider: SuperOfficeProvider, jobs: list[dict[str, Any]]) -> list[Any]:
    info = chunk(provider.submit(chunk(), jobs))
    run_to_end(provider, info)
    return list(provider.collect(info, jobs, None))


def test_where_the_result_lives_and_what_its_items_are_called_come_from_the_connection(sim, http):
    # Given a tenant whose task names its result in Response and whose items say EntityId/Ok/Message
    sim.result_binary_field = "Response"
    sim.result_fields = ("EntityId", "Ok", "Message")
    sim.failures = {2: "Locked"}
    provider = adapter(
        sim,
        http,
        credentials=ticket(sim),
        resultBinaryObjectField="Response",
        resultIdField="EntityId",
        resultSucceededField="Ok",
        resultErrorField="Message",
    )
    outcomes = collected(provider, entities(1, 2))
    assert [(o.outcome, o.error.message if o.error else None) for o in outcomes] == [
        (OutcomeKind.SUCCEEDED, None),
        (OutcomeKind.FAILED, "Locked"),
    ]


def test_results_are_matched_by_entity_id_whatever_their_order_or_repeats(sim, http):
    # Given a result that is reordered, repeats entity 1 word for word, contradicts itself on entity 2,
    # leaves out entity 3 and names an entity the chunk does not hold
    def answer(items: list[dict[str, Any]]) -> list[Any]:
        one, two, _three = items
        return [
            {**two, "Succeeded": False, "Error": "no"},
            one,
            two,
            one,
            {"Id": 99, "Succeeded": True, "Error": None},
        ]

    sim.results_transform = answer
    outcomes = collected(adapter(sim, http, credentials=ticket(sim)), entities(1, 2, 3))
    assert outcomes[0].outcome is OutcomeKind.SUCCEEDED
    assert (outcomes[1].outcome, outcomes[1].error.code) == (OutcomeKind.NOT_PROCESSED, CONFLICTING_RESULT)
    assert (outcomes[2].outcome, outcomes[2].error.code) == (OutcomeKind.NOT_PROCESSED, NO_RESULT)


# --- clean-up -----------------------------------------------------------------------------------------
def test_batch_tasks_are_deleted_after_collection_only_when_the_connection_asks(sim, http):
    kept = adapter(sim, http, credentials=ticket(sim))
    info = chunk(kept.submit(chunk(), entities(1)))
    kept.cleanup(info)
    assert sim.deleted == []
    deleting = adapter(sim, http, credentials=ticket(sim), deleteTasksAfterCollect=True)
    deleting.cleanup(info)
    assert sim.deleted == [int(info.provider_ref or 0)]
    deleting.cleanup(info)  # already gone: nothing to do
    assert sim.deleted == [int(info.provider_ref or 0)]
