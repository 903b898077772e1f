"""WillSuite adapter against the WillSuite simulator over loopback HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchbridge.errors import (
    BatchRejectedError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderUnavailableError,
    ResultsExpiredError,
    SubmitUnconfirmedError,
    UnknownProviderStatusError,
)
from batchbridge.models import ChunkState, Connection, OutcomeKind
from batchbridge.providers.base import ChunkInfo
from batchbridge.providers.http import new_client
from batchbridge.providers.willsuite import (
    COUNTS_INCONSISTENT,
    NOT_COUNTED,
    PARTLY_APPLIED,
    RECORD_FAILED,
    WillSuiteProvider,
    clear_token_cache,
)
from batchbridge_local.simulators.willsuite import WillSuiteSimulator


@pytest.fixture(scope="module")
def running_sim() -> Iterator[WillSuiteSimulator]:
    with WillSuiteSimulator(job_seconds=0.0) as simulator:
        yield simulator


@pytest.fixture
def sim(running_sim: WillSuiteSimulator) -> WillSuiteSimulator:
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
    sim: WillSuiteSimulator, http: httpx.Client, *, secret: str | None = None, **settings: Any
) -> WillSuiteProvider:
    connection = Connection(
        name="willsuite-test",
        provider="willsuite",
        baseUrl=sim.api_base_url,
        credentials={"clientId": sim.client_id, "clientSecret": secret or sim.client_secret},
        settings=settings,
    )
    return WillSuiteProvider(connection, http)


def cases(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "clientRef": f"ref-{i}", **fields} for i in range(n)]


def chunk(ref: str | None = None, first: int = 0) -> ChunkInfo:
    return ChunkInfo(batch_id="b-1", index=0, first_job_index=first, provider_ref=ref)


def run_to_end(provider: WillSuiteProvider, info: ChunkInfo):
    deadline = time.monotonic() + 2.0
    while True:
        report = provider.check(info)
        if report.state is not ChunkState.RUNNING or time.monotonic() > deadline:
            return report
        time.sleep(0.02)


# --- submit ---------------------------------------------------------------------------------------
def test_submit_sends_the_cases_and_returns_the_api_job_id(sim, http):
    # Given three cases with extra fields and client references
    jobs = cases(3, status="closed")
    # When they are submitted
    ref = adapter(sim, http).submit(chunk(), jobs)
    # Then WillSuite received one bulk request with the cases (no clientRef) under a Bearer token
    assert ref in sim.jobs
    assert sim.submissions == 1
    (bulk,) = sim.requests_to("/cases/bulk-update")
    assert bulk.json() == {"cases": [{"id": j["id"], "status": "closed"} for j in jobs]}
    assert bulk.headers["authorization"].startswith("Bearer ")
    assert bulk.headers["content-type"] == "application/json"
    assert sim.truth(ref).cases == [j["id"] for j in jobs]


def test_submit_path_and_job_id_field_come_from_the_connection(sim, http):
    jobs = cases(1)
    # A path given without its leading slash still works
    assert adapter(sim, http, submitPath="cases/bulk-update").submit(chunk(), jobs) in sim.jobs
    # A wrong path is a clear rejection that names the setting
    with pytest.raises(BatchRejectedError, match="submitPath"):
        adapter(sim, http, submitPath="/cases/bulk-create").submit(chunk(), jobs)
    # An id field the answer does not carry leaves the submit unconfirmed (the job may exist)
    with pytest.raises(SubmitUnconfirmedError, match="job_id"):
        adapter(sim, http, jobIdField="job_id").submit(chunk(), jobs)
    assert sim.submissions == 2


def test_submit_refused_by_the_vendor_is_a_rejection_with_its_message(sim, http):
    sim.max_cases = 2
    with pytest.raises(BatchRejectedError, match="may not have more than 2 items"):
        adapter(sim, http).submit(chunk(), cases(3))
    assert sim.submissions == 0


def test_submit_throttled_is_retryable_and_down_is_unconfirmed(sim, http):
    sim.faults.only_paths = ("/cases/",)
    sim.faults.throttle_next = 1
    sim.faults.retry_after_seconds = 7
    with pytest.raises(ProviderThrottledError) as info:
        adapter(sim, http).submit(chunk(), cases(1))
    assert info.value.retry_after == 7
    # A 5xx proves nothing: the submit is unconfirmed, not retried
    sim.faults.server_error_next = 1
    with pytest.raises(SubmitUnconfirmedError, match="HTTP 500"):
        adapter(sim, http).submit(chunk(), cases(1))
    assert sim.submissions == 0


def test_a_lost_answer_to_a_submit_is_not_turned_into_a_retryable_error(sim, http):
    # Given WillSuite accepts the cases but the connection drops before the answer
    sim.faults.only_paths = ("/cases/",)
    sim.faults.drop_after_handling_next = 1
    # When the adapter submits, it is unconfirmed (the core never sends it again)
    with pytest.raises(SubmitUnconfirmedError):
        adapter(sim, http).submit(chunk(), cases(2))
    assert sim.submissions == 1


def test_a_garbled_token_answer_before_a_submit_is_safe_to_retry(sim, http):
    sim.faults.only_paths = ("/oauth/",)
    sim.faults.truncated_next = 1
    with pytest.raises(ProviderUnavailableError, match="token"):
        adapter(sim, http).submit(chunk(), cases(1))
    assert sim.submissions == 0


# --- auth -------------------------------------------------------------------------------------------
def test_the_token_is_cached_across_adapter_instances(sim, http):
    ref = adapter(sim, http).submit(chunk(), cases(1))
    adapter(sim, http).check(chunk(ref))
    adapter(sim, http).check(chunk(ref))
    assert sim.tokens_issued == 1
    (token_call,) = sim.requests_to("/oauth/token/")
    assert token_call.json()["grant_type"] == "client_credentials"


def test_the_token_is_renewed_shortly_before_it_expires(sim, http):
    # Given tokens that live a fifth of a second
    sim.token_ttl_seconds = 0.2
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    provider.check(chunk(ref))
    assert sim.tokens_issued == 1
    # When the adapter is used again once they are about to expire
    time.sleep(0.2)
    provider.check(chunk(ref))
    # Then it fetched a new one on its own, without being refused first (one call per check)
    assert sim.tokens_issued == 2
    assert len(sim.requests_to("/api-jobs/")) == 2


def test_a_token_expired_mid_batch_is_refreshed_once_then_the_call_succeeds(sim, http):
    # Given a submitted chunk, and every token WillSuite issued so far expired
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(2))
    sim.expire_tokens()
    # When the chunk is checked
    report = provider.check(chunk(ref))
    # Then one new token was fetched and the repeated call answered
    assert report.state is ChunkState.COMPLETED
    assert sim.tokens_issued == 2
    assert len(sim.requests_to("/api-jobs/")) == 2
    # And the next call uses the new token without another refresh
    provider.check(chunk(ref))
    assert sim.tokens_issued == 2


def test_a_submit_refused_for_its_token_is_sent_once_more_with_a_new_one(sim, http):
    sim.unauthorized_next = 1
    ref = adapter(sim, http).submit(chunk(), cases(1))
    assert ref in sim.jobs
    assert sim.submissions == 1
    assert sim.tokens_issued == 2


def test_a_second_401_is_an_auth_error_after_exactly_one_refresh(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    sim.unauthorized_next = 2
    with pytest.raises(ProviderAuthError, match="refused a fresh credential") as info:
        provider.check(chunk(ref))
    assert sim.tokens_issued == 2
    assert sim.client_secret not in str(info.value)
    # the refused token is not kept: the next call starts with a new one
    provider.check(chunk(ref))
    assert sim.tokens_issued == 3


def test_wrong_credentials_are_an_auth_error_that_does_not_leak_them(sim, http):
    with pytest.raises(ProviderAuthError, match="Client authentication failed") as info:
        adapter(sim, http, secret="wrong-secret-value").submit(chunk(), cases(1))
    assert "wrong-secret-value" not in str(info.value)
    assert sim.submissions == 0


def test_every_call_sends_json_content_type_get_included(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    provider.check(chunk(ref))
    list(provider.collect(chunk(ref), cases(1), None))
    assert len(sim.requests) == 4
    assert all(r.headers.get("content-type") == "application/json" for r in sim.requests)


# --- status -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "ended", "state"),
    [
        ("pending", False, ChunkState.RUNNING),
        ("processing", False, ChunkState.RUNNING),
        ("completed", True, ChunkState.COMPLETED),
        ("completed", False, ChunkState.COMPLETED),
        ("pending", True, ChunkState.COMPLETED),  # an end_time ends the wait too
        ("processing", True, ChunkState.COMPLETED),
        ("failed", True, ChunkState.FAILED),
    ],
)
def test_every_documented_status_maps_to_a_canonical_state(sim, http, status, ended, state):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    sim.force_status(ref, status, ended=ended)
    report = provider.check(chunk(ref))
    assert (report.state, report.provider_status) == (state, status)
    assert report.detail["totalRecords"] == 1


@pytest.mark.parametrize("status", ["archived", "Completed", "queued", ""])
def test_an_undocumented_status_fails_closed_naming_it(sim, http, status):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    sim.force_status(ref, status, ended=True)
    with pytest.raises(UnknownProviderStatusError, match=repr(status)):
        provider.check(chunk(ref))


def test_a_job_moves_from_pending_through_processing_to_completed(sim, http):
    sim.job_seconds = 0.3
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(2))
    seen = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        report = provider.check(chunk(ref))
        seen.append(report.provider_status)
        if report.state is not ChunkState.RUNNING:
            break
        assert report.progress is None
        time.sleep(0.03)
    assert seen[0] == "pending"
    assert "processing" in seen
    assert seen[-1] == "completed"
    assert report.progress == 100.0


@pytest.mark.parametrize("missing", ["status", "end_time", "effected_records", "company_id"])
def test_an_answer_missing_a_documented_field_is_a_response_error(sim, http, missing):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    sim.force_status(ref, None, omit_fields=(missing,))
    with pytest.raises(ProviderResponseError, match=f"{missing}: missing"):
        provider.check(chunk(ref))


def test_a_malformed_status_answer_is_a_response_error(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    sim.faults.only_paths = ("/api-jobs/",)
    sim.faults.malformed_next = 1
    with pytest.raises(ProviderResponseError, match="not JSON"):
        provider.check(chunk(ref))


def test_an_unknown_job_is_a_clear_terminal_error(sim, http):
    missing = str(uuid.uuid4())
    with pytest.raises(ProviderJobFailedError, match=f"{missing}.*HTTP 404"):
        adapter(sim, http).check(chunk(missing))


def test_a_status_check_throttled_or_down_is_retryable(sim, http):
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), cases(1))
    sim.faults.only_paths = ("/api-jobs/",)
    sim.faults.throttle_next = 1
    with pytest.raises(ProviderThrottledError):
        provider.check(chunk(ref))
    sim.faults.server_error_next = 1
    with pytest.raises(ProviderUnavailableError):
        provider.check(chunk(ref))


# --- results ----------------------------------------------------------------------------------------
def test_a_mixed_batch_matches_what_the_vendor_really_did(sim, http):
    # Given six cases: two WillSuite will refuse, one already up to date, three it will change,
    # and a failure block for a case that was never sent
    jobs = cases(6)
    sim.failures = {
        jobs[1]["id"]: "Case does not exist or record already updated.",
        jobs[4]["id"]: "Bad date.",
    }
    sim.unchanged = {jobs[2]["id"]}
    sim.stray_failures = {str(uuid.uuid4()): "Not yours."}
    provider = adapter(sim, http)
    info = chunk(first=500)
    info.provider_ref = provider.submit(info, jobs)
    # When it finishes and is collected
    report = run_to_end(provider, info)
    outcomes = list(provider.collect(info, jobs, report))
    truth = sim.truth(info.provider_ref)
    # Then there is one outcome per case, in order, with its index and client reference
    assert [o.index for o in outcomes] == list(range(500, 506))
    assert [o.client_ref for o in outcomes] == [j["clientRef"] for j in jobs]
    assert [o.provider_ref for o in outcomes] == [j["id"] for j in jobs]
    # And exactly the cases WillSuite failed are failed, with its reason
    failed = {o.provider_ref: o.error.message for o in outcomes if o.outcome is OutcomeKind.FAILED}
    assert failed == truth.failed
    assert {o.error.code for o in outcomes if o.error} == {RECORD_FAILED}
    # And every other case succeeded; which were effected is known only by count, and the detail says so
    succeeded = [o for o in outcomes if o.outcome is OutcomeKind.SUCCEEDED]
    assert {o.provider_ref for o in succeeded} == set(truth.effected) | set(truth.unchanged)
    assert {o.detail for o in succeeded} == {"effected_or_unchanged"}
    assert report.detail["effectedRecords"] == len(truth.effected) == 3
    assert len(failed) + len(succeeded) == len(jobs)


def test_when_every_accepted_case_was_effected_the_detail_says_so(sim, http):
    jobs = cases(4)
    sim.failures = {jobs[0]["id"]: "Locked."}
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    outcomes = list(provider.collect(chunk(ref), jobs, None))
    assert [o.outcome.value for o in outcomes] == ["failed", "succeeded", "succeeded", "succeeded"]
    assert [o.detail for o in outcomes[1:]] == ["effected"] * 3


def test_when_nothing_was_effected_every_accepted_case_is_unchanged(sim, http):
    jobs = cases(3)
    sim.unchanged = {j["id"] for j in jobs}
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    outcomes = list(provider.collect(chunk(ref), jobs, None))
    assert {(o.outcome, o.detail) for o in outcomes} == {(OutcomeKind.SUCCEEDED, "unchanged")}
    assert sim.truth(ref).effected == []


def test_a_failed_job_reports_failed_with_the_vendors_message_and_fails_every_case(sim, http):
    # Given WillSuite fails the whole job
    sim.fail_next_jobs = 1
    sim.job_failure_message = "Bulk update aborted: the company is locked."
    jobs = cases(3)
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    # When it is checked
    report = provider.check(chunk(ref))
    # Then the chunk failed with the vendor's words
    assert report.state is ChunkState.FAILED
    assert report.provider_status == "failed"
    assert report.error.code == ProviderJobFailedError.code
    assert report.error.message == "Bulk update aborted: the company is locked."
    # And every case failed with that message: none is claimed as succeeded
    outcomes = list(provider.collect(chunk(ref), jobs, report))
    assert {o.outcome for o in outcomes} == {OutcomeKind.FAILED}
    assert {o.error.message for o in outcomes} == {"Bulk update aborted: the company is locked."}
    assert sim.truth(ref).job_failed


def test_a_failed_job_that_names_cases_gives_those_their_own_reason(sim, http):
    sim.fail_next_jobs = 1
    sim.job_failure_message = "Aborted."
    jobs = cases(3)
    sim.failures = {jobs[2]["id"]: "Case does not exist."}
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    outcomes = list(provider.collect(chunk(ref), jobs, None))
    assert [(o.outcome.value, o.error.code) for o in outcomes] == [
        ("failed", ProviderJobFailedError.code),
        ("failed", ProviderJobFailedError.code),
        ("failed", RECORD_FAILED),
    ]
    assert outcomes[0].error.message == "the WillSuite job failed: Aborted."
    assert outcomes[2].error.message == "Case does not exist."


def test_collecting_a_job_the_vendor_no_longer_has_is_results_expired(sim, http):
    with pytest.raises(ResultsExpiredError, match="HTTP 404"):
        list(adapter(sim, http).collect(chunk(str(uuid.uuid4())), cases(1), None))


def test_a_job_ended_by_end_time_alone_is_collected_as_completed(sim, http):
    jobs = cases(2)
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    sim.force_status(ref, "processing", ended=True)
    outcomes = list(provider.collect(chunk(ref), jobs, None))
    assert [o.outcome for o in outcomes] == [OutcomeKind.SUCCEEDED] * 2


# --- what the counts prove --------------------------------------------------------------------------
def test_a_job_that_counted_fewer_cases_than_were_sent_credits_none_it_did_not_name(sim, http):
    # Given WillSuite silently leaves one of four cases out (total_records 3) and names one failure
    jobs = cases(4)
    sim.count_short_by = 1
    sim.failures = {jobs[0]["id"]: "Case does not exist."}
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    assert sim.truth(ref).uncounted == [jobs[3]["id"]]
    # When collected
    outcomes = list(provider.collect(chunk(ref), jobs, None))
    # Then the named case failed, and no other case is claimed: which one was left out is unknown
    assert (outcomes[0].outcome, outcomes[0].error.code) == (OutcomeKind.FAILED, RECORD_FAILED)
    assert {(o.outcome, o.error.code) for o in outcomes[1:]} == {(OutcomeKind.NOT_PROCESSED, NOT_COUNTED)}
    assert "accepted 3 of 4 cases" in outcomes[1].error.message


def test_counts_that_contradict_each_other_credit_no_unnamed_case(sim, http):
    jobs = cases(2)
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    original = sim._render

    def render(job):
        body = original(job)
        body["effected_records"] = 5  # more changed than were sent
        return body

    sim._render = render
    try:
        outcomes = list(provider.collect(chunk(ref), jobs, None))
    finally:
        del sim._render
    assert {(o.outcome, o.error.code) for o in outcomes} == {(OutcomeKind.NOT_PROCESSED, COUNTS_INCONSISTENT)}


def test_a_failed_job_that_changed_some_cases_says_which_are_unknown(sim, http):
    # Given the job fails after changing half of the four cases it did not name
    sim.fail_next_jobs = 1
    sim.failed_job_effected = 0.5
    jobs = cases(4)
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    assert len(sim.truth(ref).effected) == 2
    # When collected, Then none is claimed failed or succeeded: WillSuite does not say which changed
    outcomes = list(provider.collect(chunk(ref), jobs, None))
    assert {(o.outcome, o.error.code) for o in outcomes} == {(OutcomeKind.NOT_PROCESSED, PARTLY_APPLIED)}
    assert "changing 2 of the 4 cases" in outcomes[0].error.message


def test_a_failed_job_that_changed_every_unnamed_case_succeeded_them(sim, http):
    sim.fail_next_jobs = 1
    sim.failed_job_effected = 1.0
    jobs = cases(3)
    sim.failures = {jobs[0]["id"]: "Locked."}
    provider = adapter(sim, http)
    ref = provider.submit(chunk(), jobs)
    outcomes = list(provider.collect(chunk(ref), jobs, None))
    assert outcomes[0].outcome is OutcomeKind.FAILED
    assert [(o.outcome, o.detail) for o in outcomes[1:]] == [(OutcomeKind.SUCCEEDED, "effected")] * 2
