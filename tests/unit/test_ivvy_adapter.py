"""The iVvy adapter against the iVvy simulator over loopback HTTP: signing, submit, progress, results,
callbacks, and every documented failure mapped to BatchBridge's typed errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from batchbridge.errors import (
    BatchRejectedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderUnavailableError,
    ResultsExpiredError,
    SubmitUnconfirmedError,
)
from batchbridge.models import ChunkState, Connection, OutcomeKind
from batchbridge.providers.base import ChunkInfo, provider_class
from batchbridge.providers.ivvy import IvvyJob, IvvyProvider
from batchbridge.providers.protocol import current_operation
from batchbridge_local.simulators.ivvy import IvvySimulator, booking_session_jobs, expected_code


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running_sim() -> Iterator[IvvySimulator]:
    with IvvySimulator(job_seconds=0.2) as simulator:
        yield simulator


@pytest.fixture
def sim(running_sim: IvvySimulator) -> IvvySimulator:
    running_sim.reset()
    return running_sim


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(2.0)) as client:
        yield client


def adapter(
    sim: IvvySimulator, http: httpx.Client, *, secret: str | None = None, base_url: str | None = None
):
    connection = Connection(
        name="ivvy-test",
        provider="ivvy",
        baseUrl=base_url or sim.base_url,
        credentials={"apiKey": sim.api_key, "apiSecret": secret or sim.api_secret},
    )
    return IvvyProvider(connection, http)


def chunk(
    ref: str | None = None, *, index: int = 0, first: int = 0, callback: str | None = None
) -> ChunkInfo:
    return ChunkInfo(
        batch_id="b-1", index=index, first_job_index=first, provider_ref=ref, callback_url=callback
    )


def submitted(sim: IvvySimulator, http: httpx.Client, jobs: list[dict[str, Any]], **kw: Any) -> ChunkInfo:
    ref = adapter(sim, http).submit(chunk(**kw), jobs)
    return chunk(ref, **kw)


def finished(sim: IvvySimulator, http: httpx.Client, jobs: list[dict[str, Any]], **kw: Any) -> ChunkInfo:
    sim.job_seconds = 0
    return submitted(sim, http, jobs, **kw)


# --- capabilities and job model --------------------------------------------------------------------
def test_capabilities_are_declared_and_registered():
    caps = provider_class("ivvy").capabilities
    assert provider_class("ivvy") is IvvyProvider
    assert (caps.name, caps.title, caps.max_jobs_per_submit, caps.max_jobs_per_batch) == (
        "ivvy",
        "iVvy",
        200,
        1_000_000,
    )
    assert (caps.supports_callback, caps.supports_cancel, caps.min_poll_seconds) == (True, False, 10)
    assert caps.result_retention_seconds == 2 * 24 * 3600
    assert (caps.default_deadline_seconds, caps.max_deadline_seconds) == (6 * 3600, 44 * 3600)


def test_the_job_model_accepts_a_job_and_names_what_is_wrong():
    job = IvvyJob.model_validate(
        {"clientRef": "a", "namespace": "venue", "action": "addOrUpdateBookingSession"}
    )
    assert job.params == {}
    with pytest.raises(ValidationError) as caught:
        IvvyJob.model_validate({"namespace": "", "action": "x", "params": [], "extra": 1})
    assert {e["loc"][0] for e in caught.value.errors()} == {"namespace", "params", "extra"}
    with pytest.raises(ValidationError, match="batch namespace"):
        IvvyJob.model_validate({"namespace": "batch", "action": "run"})


# --- submit ---------------------------------------------------------------------------------------
def test_submit_signs_the_run_and_returns_the_async_id(sim, http):
    # Given three jobs with client references
    jobs = booking_session_jobs(3)
    # When they are submitted
    ref = adapter(sim, http).submit(chunk(), jobs)
    # Then the simulator verified the signature, accepted one run, and holds the jobs without clientRef
    assert ref in sim.batches
    assert sim.submissions == 1
    (run,) = sim.requests_to("/api/1.0/batch?action=run")
    assert run.headers["x-api-authorization"].startswith(f"IWS {sim.api_key}:")
    sent = run.json()
    assert "callbackUrl" not in sent
    assert sent["jobs"] == [{k: v for k, v in j.items() if k != "clientRef"} for j in jobs]


def test_submit_sends_the_callback_url_when_the_core_wants_one(sim, http):
    adapter(sim, http).submit(chunk(callback="http://127.0.0.1:9/cb/abc"), booking_session_jobs(1))
    (run,) = sim.requests_to("action=run")
    assert run.json()["callbackUrl"] == "http://127.0.0.1:9/cb/abc"


def test_a_stale_date_is_an_auth_error_naming_23005(sim, http):
    # Given iVvy's clock is six minutes ahead of ours
    sim.clock_offset_seconds = 360
    # When we submit, Then the refusal names the stale code and nothing was accepted
    with pytest.raises(ProviderAuthError, match="23005") as caught:
        adapter(sim, http).submit(chunk(), booking_session_jobs(1))
    assert "Request is stale" in caught.value.message
    assert sim.submissions == 0


def test_a_wrong_secret_is_an_auth_error_that_never_shows_the_secret(sim, http):
    with pytest.raises(ProviderAuthError) as caught:
        adapter(sim, http, secret="s3cr3t-value").submit(chunk(), booking_session_jobs(1))
    assert "23004" in caught.value.message
    assert "s3cr3t-value" not in str(caught.value)
    assert sim.api_secret not in str(caught.value)


def test_more_than_200_jobs_are_rejected_with_ivvys_code_and_message(sim, http):
    with pytest.raises(BatchRejectedError) as caught:
        adapter(sim, http).submit(chunk(), booking_session_jobs(201))
    assert caught.value.code == "IVVY_24448"
    assert "more than 200 jobs" in caught.value.message
    assert "jobs: 201 given" in caught.value.message  # iVvy's additionalMessages
    assert sim.submissions == 0


@pytest.mark.parametrize(
    ("jobs", "code"),
    [
        ([{"namespace": "", "action": "x"}], "IVVY_24092"),
        ([], "IVVY_24093"),
    ],
)
def test_jobs_ivvy_cannot_read_are_rejected(sim, http, jobs, code):
    with pytest.raises(BatchRejectedError) as caught:
        adapter(sim, http).submit(chunk(), jobs)
    assert caught.value.code == code


def test_a_batch_ivvy_could_not_save_is_rejected(sim, http):
    sim.not_saved_next = 1
    with pytest.raises(BatchRejectedError) as caught:
        adapter(sim, http).submit(chunk(), booking_session_jobs(1))
    assert caught.value.code == "IVVY_24091"


def test_a_429_with_retry_after_is_throttling(sim, http):
    sim.faults.throttle_next = 1
    sim.faults.retry_after_seconds = 7
    with pytest.raises(ProviderThrottledError) as caught:
        adapter(sim, http).submit(chunk(), booking_session_jobs(1))
    assert caught.value.retry_after == 7
    assert sim.submissions == 0


def test_a_server_error_on_a_read_is_unavailability_and_on_a_submit_is_unconfirmed(sim, http):
    info = submitted(sim, http, booking_session_jobs(1))
    sim.faults.server_error_next = 1
    with pytest.raises(ProviderUnavailableError):
        adapter(sim, http).check(info)
    sim.faults.server_error_next = 1
    with pytest.raises(SubmitUnconfirmedError, match="HTTP 500"):
        adapter(sim, http).submit(chunk(), booking_session_jobs(1))


@pytest.mark.parametrize("status", [460, 461])
def test_ivvys_unknown_and_failed_request_codes_are_failures_on_its_side(sim, http, status):
    # Given iVvy answers its own 460 (unknown) or 461 (failed request), which say nothing of the request
    info = submitted(sim, http, booking_session_jobs(1))
    sim.faults.server_error_next, sim.faults.server_error_status = 1, status
    # Then a read is asked again later, and a submit is not taken as refused
    with pytest.raises(ProviderUnavailableError, match=f"HTTP {status}"):
        adapter(sim, http).check(info)
    sim.faults.error_after_handling_next, sim.faults.error_after_handling_status = 1, status
    with pytest.raises(SubmitUnconfirmedError, match=f"HTTP {status}"):
        adapter(sim, http).submit(chunk(), booking_session_jobs(1))
    assert sim.submissions == 2


def test_an_error_body_in_a_200_is_an_error(sim, http):
    # Given iVvy answers its error bodies with HTTP 200
    sim.errors_with_status = 200
    sim.max_jobs = 1
    # When a run is refused (24448), Then it is a rejection with iVvy's code, not an accepted run
    with pytest.raises(BatchRejectedError) as caught:
        adapter(sim, http).submit(chunk(), booking_session_jobs(2))
    assert caught.value.code == "IVVY_24448"
    # And results not ready yet (24114) are still recognised as such
    sim.never_finish = True
    info = submitted(sim, http, booking_session_jobs(1))
    with pytest.raises(ProviderUnavailableError, match="24114"):
        list(adapter(sim, http).collect(info, booking_session_jobs(1), None))


def test_a_submit_whose_answer_is_lost_is_unconfirmed(sim, http):
    # Given iVvy accepts the run and then the connection drops before the answer
    sim.faults.drop_after_handling_next = 1
    # When we submit, Then it is unconfirmed: the core must not send it again
    with pytest.raises(SubmitUnconfirmedError, match="may have acted on it"):
        adapter(sim, http).submit(chunk(), booking_session_jobs(2))
    # And iVvy did accept it: this is exactly why it must not be retried blindly
    assert sim.submissions == 1


@pytest.mark.parametrize("answer", [{"asyncId": "12345"}, {"asyncId": "z" * 32}, {"asyncId": 7}, {}])
def test_an_async_id_that_is_not_32_hex_leaves_the_submit_unconfirmed(sim, http, answer):
    sim.run_answer = answer
    with pytest.raises(SubmitUnconfirmedError, match="32 hex"):
        adapter(sim, http).submit(chunk(), booking_session_jobs(1))


def test_a_truncated_run_answer_leaves_the_submit_unconfirmed(sim, http):
    sim.faults.truncated_next = 1
    with pytest.raises(SubmitUnconfirmedError, match="not JSON"):
        adapter(sim, http).submit(chunk(), booking_session_jobs(1))


def test_a_base_url_that_is_not_http_is_a_configuration_error(sim, http):
    with pytest.raises(ConfigurationError):
        adapter(sim, http, base_url="ftp://example").submit(chunk(), booking_session_jobs(1))


def test_a_base_url_with_the_api_path_is_accepted(sim, http):
    ref = adapter(sim, http, base_url=sim.base_url + "/api/1.0/").submit(chunk(), booking_session_jobs(1))
    assert ref in sim.batches


# --- check ----------------------------------------------------------------------------------------
def test_progress_maps_to_running_then_completed(sim, http):
    # Given a batch that takes 0.3 s
    sim.job_seconds = 0.3
    info = submitted(sim, http, booking_session_jobs(2))
    # When checked at once, Then it is running with iVvy's percentage
    report = adapter(sim, http).check(info)
    assert report.state is ChunkState.RUNNING
    assert report.progress is not None
    assert 0 <= report.progress < 100
    assert report.provider_status == f"progress {report.progress:g}"
    # When checked after it finished, Then it is completed
    time.sleep(0.32)
    report = adapter(sim, http).check(info)
    assert (report.state, report.progress, report.provider_status) == (
        ChunkState.COMPLETED,
        100.0,
        "progress 100",
    )


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"progress": "50"},
        {"progress": None},
        {"progress": True},
        {"progress": 101},
        {"progress": -1},
        [50],
    ],
)
def test_a_progress_outside_the_documented_shape_is_a_bad_response(sim, http, answer):
    info = submitted(sim, http, booking_session_jobs(1))
    sim.progress_answer = answer
    with pytest.raises(ProviderResponseError):
        adapter(sim, http).check(info)


def test_a_batch_ivvy_cannot_find_is_gone(sim, http):
    info = submitted(sim, http, booking_session_jobs(1))
    sim.expire(info.provider_ref)
    with pytest.raises(ResultsExpiredError, match="24105"):
        adapter(sim, http).check(info)


def test_a_malformed_progress_body_is_a_bad_response(sim, http):
    info = submitted(sim, http, booking_session_jobs(1))
    sim.faults.malformed_next = 1
    with pytest.raises(ProviderResponseError, match="not JSON"):
        adapter(sim, http).check(info)


def test_a_dropped_check_is_unavailability(sim, http):
    info = submitted(sim, http, booking_session_jobs(1))
    sim.faults.drop_next = 1
    with pytest.raises(ProviderUnavailableError):
        adapter(sim, http).check(info)


def test_a_throttled_check_carries_retry_after(sim, http):
    info = submitted(sim, http, booking_session_jobs(1))
    sim.faults.throttle_next = 1
    sim.faults.retry_after_seconds = 3
    with pytest.raises(ProviderThrottledError) as caught:
        adapter(sim, http).check(info)
    assert caught.value.retry_after == 3


# --- collect --------------------------------------------------------------------------------------
def test_mixed_results_map_to_one_outcome_per_job_in_order(sim, http):
    # Given a chunk starting at job 200, every third job invalid and one forced server error
    jobs = booking_session_jobs(12, invalid_every=3)
    sim.fail_jobs = lambda index, job: index == 4
    info = finished(sim, http, jobs, index=1, first=200)
    truth = sim.truth(info.provider_ref)
    # When the results are collected
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    # Then there is one outcome per job, in order, with iVvy's codes
    assert [o.index for o in outcomes] == list(range(200, 212))
    assert [o.client_ref for o in outcomes] == [j["clientRef"] for j in jobs]
    assert [None if o.outcome is OutcomeKind.SUCCEEDED else o.error.code for o in outcomes] == truth.codes
    assert truth.codes[4] == "IVVY_24335"
    assert [c for i, c in enumerate(truth.codes) if i != 4] == [
        expected_code(j) for i, j in enumerate(jobs) if i != 4
    ]
    succeeded = [o for o in outcomes if o.outcome is OutcomeKind.SUCCEEDED]
    assert [o.provider_ref for o in succeeded] == [str(i) for i in truth.ids if i is not None]
    assert succeeded[0].response == {"success": True, "id": int(succeeded[0].provider_ref), "warnings": None}
    invalid = outcomes[2]
    assert invalid.outcome is OutcomeKind.FAILED
    assert (
        invalid.error.message
        == "The request contains invalid data (name: *Value is required and can't be empty*)"
    )
    assert invalid.response["specificCode"] == 24337
    assert outcomes[11].error.code == "IVVY_24360"
    assert outcomes[11].error.message == "The booking does not exist"


def test_a_success_false_response_fails_the_job(sim, http):
    jobs = booking_session_jobs(2)

    def answer(results):
        results[1]["response"] = {"success": False}
        return results

    sim.results_transform = answer
    info = finished(sim, http, jobs)
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    assert outcomes[0].outcome is OutcomeKind.SUCCEEDED
    assert (outcomes[1].outcome, outcomes[1].error.code) == (OutcomeKind.FAILED, "IVVY_JOB_FAILED")


def test_jobs_without_a_result_are_not_processed(sim, http):
    jobs = booking_session_jobs(5)
    sim.drop_results = 2
    info = finished(sim, http, jobs)
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    assert [o.outcome for o in outcomes] == [OutcomeKind.SUCCEEDED] * 3 + [OutcomeKind.NOT_PROCESSED] * 2
    assert outcomes[4].error.code == "IVVY_NO_RESULT"


def test_a_result_missing_in_the_middle_credits_nobody_else(sim, http):
    # Given five jobs, the middle one refused by iVvy, and its result left out of the answer
    jobs = booking_session_jobs(5)
    jobs[2]["params"]["bookingId"] = 40404  # unknown booking: 24360
    info = finished(sim, http, jobs)
    truth = sim.truth(info.provider_ref)
    sim.results_transform = lambda results: [r for i, r in enumerate(results) if i != 2]
    # When collected
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    # Then the job without a result is not processed, and every other job has its own result
    assert outcomes[2].outcome is OutcomeKind.NOT_PROCESSED
    assert outcomes[2].error.code == "IVVY_NO_RESULT"
    others = [o for i, o in enumerate(outcomes) if i != 2]
    assert [o.provider_ref for o in others] == [str(truth.ids[i]) for i in (0, 1, 3, 4)]


def test_a_repeated_result_of_the_same_length_does_not_credit_the_refused_job(sim, http):
    # Given three jobs, the second refused, and iVvy's answer repeating the first in the second's place
    jobs = booking_session_jobs(3)
    jobs[1]["params"]["bookingId"] = 40404
    info = finished(sim, http, jobs)
    sim.results_transform = lambda results: [results[0], results[0], results[2]]
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    # Then the refused job is not reported succeeded with another job's id
    assert outcomes[1].outcome is OutcomeKind.NOT_PROCESSED
    assert outcomes[1].error.code == "IVVY_NO_RESULT"
    assert outcomes[1].provider_ref is None
    # and the repeated job keeps its one result (the repeat says the same)
    assert outcomes[0].outcome is OutcomeKind.SUCCEEDED


def test_reordered_results_are_matched_by_the_request_they_echo(sim, http):
    jobs = booking_session_jobs(4, invalid_every=2)
    info = finished(sim, http, jobs)
    truth = sim.truth(info.provider_ref)
    sim.results_transform = lambda results: list(reversed(results))
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    assert [None if o.outcome is OutcomeKind.SUCCEEDED else o.error.code for o in outcomes] == truth.codes


def test_a_result_belongs_to_a_job_only_when_it_echoes_the_same_json_value():
    from batchbridge.providers.ivvy import match_results

    params = {"id": 1, "tags": ["a", "b"], "room": {"floor": 2, "wing": "east"}, "on": True, "rate": 1.5}
    job = {"namespace": "venue", "action": "addOrUpdateBookingSession", "params": params}

    def result(request: object, **echo: str) -> dict[str, object]:
        names = {"namespace": "venue", "action": "addOrUpdateBookingSession"} | echo
        return {**names, "request": request, "response": {"id": 9}}

    # members in another order, names in another case: the same request
    same = {"rate": 1.5, "on": True, "room": {"wing": "east", "floor": 2}, "tags": ["a", "b"], "id": 1}
    assert match_results([result(same, namespace="VENUE")], [job]) == [result(same, namespace="VENUE")]
    # a value of another JSON type, or an array in another order, is another request
    for other in (
        {**params, "id": "1"},
        {**params, "id": 1.0},
        {**params, "id": True},
        {**params, "on": 1},
        {**params, "tags": ["b", "a"]},
        {**params, "room": {"floor": 2}},
        {**params, "extra": None},
    ):
        assert match_results([result(other)], [job]) == [
            ("IVVY_NO_RESULT", "iVvy returned no result that echoes this job's request")
        ], other


def test_a_request_echoed_with_two_different_answers_is_credited_to_nobody(sim, http):
    jobs = booking_session_jobs(2)
    info = finished(sim, http, jobs)

    def answer(results):
        twin = {**results[0], "response": {"errorCode": 400, "specificCode": 24337, "message": "invalid"}}
        return [results[0], twin, results[1]]

    sim.results_transform = answer
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    assert (outcomes[0].outcome, outcomes[0].error.code) == (
        OutcomeKind.NOT_PROCESSED,
        "IVVY_AMBIGUOUS_RESULT",
    )
    assert outcomes[1].outcome is OutcomeKind.SUCCEEDED


def test_jobs_that_sent_the_same_request_share_its_results_in_order(sim, http):
    jobs = booking_session_jobs(1) * 2
    info = finished(sim, http, jobs)
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    assert [o.outcome for o in outcomes] == [OutcomeKind.SUCCEEDED] * 2
    assert outcomes[0].provider_ref != outcomes[1].provider_ref


def test_a_result_for_another_action_credits_nobody(sim, http):
    jobs = booking_session_jobs(2)

    def answer(results):
        results[1]["action"] = "addOrUpdateContact"
        return results

    sim.results_transform = answer
    info = finished(sim, http, jobs)
    outcomes = list(adapter(sim, http).collect(info, jobs, None))
    assert outcomes[0].outcome is OutcomeKind.SUCCEEDED
    assert (outcomes[1].outcome, outcomes[1].error.code) == (OutcomeKind.NOT_PROCESSED, "IVVY_NO_RESULT")


def test_results_before_completion_are_retried_later(sim, http):
    sim.never_finish = True
    info = submitted(sim, http, booking_session_jobs(1))
    with pytest.raises(ProviderUnavailableError, match="24114"):
        list(adapter(sim, http).collect(info, booking_session_jobs(1), None))


def test_results_ivvy_no_longer_holds_are_expired(sim, http):
    info = finished(sim, http, booking_session_jobs(1))
    sim.results_expired = True
    with pytest.raises(ResultsExpiredError, match="24115"):
        list(adapter(sim, http).collect(info, booking_session_jobs(1), None))
    # an error leaving collect names the operation and its chunk, and the adapter's context is left
    with pytest.raises(ResultsExpiredError) as caught:
        list(adapter(sim, http).collect(info, booking_session_jobs(1), None))
    assert caught.value.message.startswith(f"iVvy results (chunk {info.index}, {info.provider_ref}): ")
    assert current_operation() is None


def test_a_results_body_without_results_is_a_bad_response(sim, http):
    info = finished(sim, http, booking_session_jobs(1))
    sim.faults.truncated_next = 1
    with pytest.raises(ProviderResponseError):
        list(adapter(sim, http).collect(info, booking_session_jobs(1), None))


def test_a_results_answer_in_a_shape_ivvy_does_not_document_is_a_bad_response_not_missing_results(sim, http):
    # Given a finished batch whose results answer comes 2xx with every field wrapped in a list
    info = finished(sim, http, booking_session_jobs(2))
    sim.faults.wrong_shape_next = 1
    # Then it fails closed (retried by the workflow), instead of crediting no job with a result
    with pytest.raises(ProviderResponseError, match="results"):
        list(adapter(sim, http).collect(info, booking_session_jobs(2), None))
    # and asked again, the results are there
    outcomes = list(adapter(sim, http).collect(info, booking_session_jobs(2), None))
    assert [o.outcome for o in outcomes] == [OutcomeKind.SUCCEEDED] * 2


# --- callbacks ------------------------------------------------------------------------------------
def test_a_callback_is_confirmed_through_results_not_its_body(sim, http):
    # Given a running batch
    sim.never_finish = True
    info = submitted(sim, http, booking_session_jobs(1))
    # When a callback claims it is done, Then results say otherwise and the claim is not believed
    assert adapter(sim, http).confirm_callback(info, {"asyncId": info.provider_ref, "results": []}) is False
    # When the batch really finishes, Then the callback is confirmed
    sim.never_finish = False
    sim.job_seconds = 0
    assert adapter(sim, http).confirm_callback(info, {"asyncId": info.provider_ref}) is True
    assert len(sim.requests_to("action=results")) == 2
    # And a body naming another batch is not believed at all
    assert adapter(sim, http).confirm_callback(info, {"asyncId": "f" * 32}) is False
