"""Transport and protocol faults, for every provider, through the real workflow.

Each scenario aims the simulators' shared fault knobs (``Faults`` with ``only_paths``) at one kind of call
-- submit, status or results -- and checks the same three promises: the batch ends in the right terminal
status, every submitted job has exactly one outcome (S3 line and DynamoDB row), and exactly one event
with that status was published. Where a submit's answer is lost, the chunk is never sent twice: the
batch ends NEEDS_ATTENTION naming the chunk, unless the provider can show that it holds it (SuperOffice
lists its batch tasks, so there the batch carries on).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from batchbridge.providers import os1, superoffice, willsuite
from batchbridge_local.simulators.ivvy import _error as ivvy_error
from batchbridge_local.simulators.ivvy import booking_session_jobs
from tests.workflow.helpers import assert_settled, by_outcome, submit

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]

Jobs = Callable[[int], list[dict[str, Any]]]


def _cases(n: int) -> list[dict[str, Any]]:
    return [
        {"clientRef": f"case-{i}", "id": str(uuid.UUID(int=i + 1)), "status": "reviewed"} for i in range(n)
    ]


def _entities(n: int) -> list[dict[str, Any]]:
    return [{"clientRef": f"contact-{i}", "id": 1000 + i} for i in range(n)]


def _drivers(n: int) -> list[dict[str, Any]]:
    return [{"clientRef": f"d{i}", "uniqueCode": f"DRV-{i:04d}", "name": f"Driver {i}"} for i in range(n)]


@dataclass(frozen=True)
class Calls:
    """Which requests a fault is aimed at: path fragments (query included) and, if needed, methods."""

    paths: tuple[str, ...]
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    """How to drive one provider: its jobs and options, and which calls submit, poll and fetch results."""

    jobs: Jobs
    options: dict[str, Any] | None
    duration_knob: str  # the simulator attribute that sets how long a job runs
    submit: Calls
    status: Calls
    results: Calls | None  # None where results come from the status call itself
    refreshes_on_401: bool  # one fresh authentication (or one repeat) heals a single 401


SPECS = {
    "ivvy": Spec(
        jobs=booking_session_jobs,
        options=None,
        duration_knob="job_seconds",
        submit=Calls(("action=run",)),
        status=Calls(("action=progress",)),
        results=Calls(("action=results",)),
        refreshes_on_401=False,  # requests are signed; a 401 is final
    ),
    "willsuite": Spec(
        jobs=_cases,
        options=None,
        duration_knob="job_seconds",
        submit=Calls(("/cases/bulk-update",)),
        status=Calls(("/api-jobs/",)),
        results=None,
        refreshes_on_401=True,
    ),
    "superoffice": Spec(
        jobs=_entities,
        options={
            "tableName": "contact",
            "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
        },
        duration_knob="job_seconds",
        submit=Calls(("ExecuteByEntityIds",)),
        status=Calls(("Agents/Batch/GetBatchTaskInfo",)),
        results=Calls(("GetJobResultAsJsonFromBinaryObjectId",)),
        refreshes_on_401=True,
    ),
    "os1": Spec(
        jobs=_drivers,
        options={"participantType": "drivers"},
        duration_knob="batch_seconds",
        submit=Calls(("/participants/",), ("POST",)),
        status=Calls(("/batch/status",)),
        results=None,
        refreshes_on_401=True,
    ),
}
ALL = list(SPECS)
CAN_LIST_SUBMISSIONS = {"superoffice"}


@dataclass
class Target:
    name: str
    spec: Spec
    sim: Any
    connection: str
    stack: Any

    def aim(self, calls: Calls, **knobs: Any) -> None:
        """Arm fault knobs for the given calls only."""
        self.sim.faults.only_paths = calls.paths
        self.sim.faults.only_methods = calls.methods
        for knob, value in knobs.items():
            setattr(self.sim.faults, knob, value)

    def run(self, n: int = 3) -> tuple[str, list[dict[str, Any]]]:
        jobs = self.spec.jobs(n)
        extra = {"options": self.spec.options} if self.spec.options else {}
        return submit(self.stack, self.name, self.connection, jobs, **extra), jobs

    def wait_running(self, batch_id: str) -> None:
        self.stack.wait_until(lambda: self.sim.submissions >= 1, timeout=30)
        self.stack.wait_until(lambda: self.stack.batch(batch_id)["status"] == "RUNNING", timeout=30)

    def calls_to(self, calls: Calls) -> int:
        with self.sim._lock:
            sent = list(self.sim.requests)
        return sum(
            1
            for r in sent
            if any(p in r.raw_path for p in calls.paths) and (not calls.methods or r.method in calls.methods)
        )


@pytest.fixture
def target(request: pytest.FixtureRequest, stack: Any) -> Iterator[Target]:
    name = request.param
    spec = SPECS[name]
    sim = request.getfixturevalue(f"{name}_sim")
    sim.reset()
    # A reset simulator forgets the tokens it issued: start with fresh ones, so that a fault aimed at a
    # call meets that call and not a 401 on a stale token.
    os1.clear_token_cache()
    willsuite.clear_token_cache()
    superoffice.clear_endpoint_cache()
    setattr(sim, spec.duration_knob, 1.0)
    fixture = "superoffice_listing_connection" if name == "superoffice" else f"{name}_connection"
    connection = request.getfixturevalue(fixture)
    yield Target(name, spec, sim, connection, stack)
    sim.reset()


def providers(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("target", list(names), indirect=True)


# --- transient faults: retried, nothing doubled ------------------------------------------------------
@providers(*ALL)
def test_a_429_on_submit_is_retried_and_the_chunk_is_sent_once(target: Target) -> None:
    # Given the provider throttles the first submit (with Retry-After): proof that it took nothing
    target.aim(target.spec.submit, throttle_next=1, retry_after_seconds=1)
    # When a batch runs
    batch_id, jobs = target.run()
    # Then it succeeds after the workflow's retry, and the provider accepted exactly one submission
    assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
    assert target.sim.submissions == 1
    assert target.calls_to(target.spec.submit) == 2
    assert {line["outcome"] for line in target.stack.result_lines(batch_id)} == {"succeeded"}


@providers(*ALL)
def test_a_5xx_on_submit_is_never_resent(target: Target) -> None:
    # Given the provider answers the submit with a 5xx before acting on it -- which the client cannot know
    target.aim(target.spec.submit, server_error_next=1)
    batch_id, jobs = target.run()
    # Then the chunk is not sent again: the batch needs a person, naming the chunk
    view = assert_settled(target.stack, batch_id, len(jobs), "NEEDS_ATTENTION")
    assert view["error"]["code"] == "AMBIGUOUS_SUBMIT" and "chunk 0" in view["error"]["message"]
    assert target.calls_to(target.spec.submit) == 1
    assert target.sim.submissions == 0


@pytest.mark.parametrize(
    ("target", "status"),
    [("ivvy", 502), ("willsuite", 502), ("superoffice", 503), ("os1", 503), ("ivvy", 460)],
    indirect=["target"],
)
def test_a_submit_accepted_and_then_answered_with_an_error_is_never_sent_twice(
    target: Target, status: int
) -> None:
    # Given the provider takes the chunk and then answers 5xx (or iVvy's own 460 "unknown")
    target.aim(target.spec.submit, error_after_handling_next=1, error_after_handling_status=status)
    batch_id, jobs = target.run()
    # Then the provider holds the chunk exactly once, and the batch either found it there or names it
    if target.name in CAN_LIST_SUBMISSIONS:
        assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
    else:
        view = assert_settled(target.stack, batch_id, len(jobs), "NEEDS_ATTENTION")
        assert view["error"]["code"] == "AMBIGUOUS_SUBMIT" and "chunk 0" in view["error"]["message"]
    assert target.sim.submissions == 1
    assert target.calls_to(target.spec.submit) == 1


@providers(*ALL)
def test_a_submit_throttled_longer_than_the_retries_last_waits_as_long_as_the_provider_asks(
    target: Target,
) -> None:
    # Given the provider throttles five submits in a row, more than the workflow's Retry would try, each
    # time saying "Retry-After: 100" (one second on the local stack's time scale of 0.01)
    target.aim(target.spec.submit, throttle_next=5, retry_after_seconds=100)
    # When a batch runs
    batch_id, jobs = target.run()
    # Then it succeeds with one submission: each 429 was met by a wait of the length the provider asked
    # for, in the workflow's Wait state, not by the Retry's guesses
    assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
    assert target.sim.submissions == 1
    assert target.calls_to(target.spec.submit) == 6
    waits = [
        e["stateEnteredEventDetails"]
        for e in target.stack.execution_history(batch_id)
        if e["type"] == "WaitStateEntered"
        and e["stateEnteredEventDetails"]["name"] == "Wait Until Provider Is Ready"
    ]
    assert len(waits) == 5
    assert all(json.loads(w["input"])["step"]["waitSeconds"] == 1 for w in waits)


@providers(*ALL)
def test_dropped_throttled_failing_and_malformed_status_answers_are_ridden_out(target: Target) -> None:
    # Given four status calls in a row fail: a dropped connection, a 429, a 500 and an HTML body
    target.aim(target.spec.status, drop_next=1, throttle_next=1, server_error_next=1, malformed_next=1)
    # When a batch runs
    batch_id, jobs = target.run()
    # Then every fault was met and retried, and the batch still succeeded with one submission
    assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
    faults = target.sim.faults
    assert (faults.drop_next, faults.throttle_next, faults.server_error_next, faults.malformed_next) == (
        0,
    ) * 4
    assert target.calls_to(target.spec.status) >= 5
    assert target.sim.submissions == 1


@providers(*ALL)
def test_a_status_read_that_times_out_is_retried(target: Target) -> None:
    # Given the provider answers the first status call slower than the read timeout (3 s locally)
    target.aim(target.spec.status, latency_seconds=4.0)
    batch_id, jobs = target.run()
    target.stack.wait_until(lambda: target.calls_to(target.spec.status) >= 1, timeout=30)
    target.sim.faults.latency_seconds = 0.0  # only the first one is slow
    # Then the timed-out call was retried and the batch succeeded
    assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
    assert target.calls_to(target.spec.status) >= 2
    assert target.sim.submissions == 1


@providers("ivvy", "superoffice")
def test_a_truncated_and_a_failed_results_answer_are_retried(target: Target) -> None:
    # Given the results call first answers 500, then a body cut in half
    assert target.spec.results is not None
    target.aim(target.spec.results, server_error_next=1, truncated_next=1)
    batch_id, jobs = target.run()
    # Then the results were fetched again and every job has its real outcome
    assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
    assert (target.sim.faults.server_error_next, target.sim.faults.truncated_next) == (0, 0)
    assert target.calls_to(target.spec.results) >= 3


# --- ambiguous submits: never sent twice ------------------------------------------------------------
@providers(*ALL)
def test_a_submit_whose_answer_is_lost_is_not_sent_again(target: Target) -> None:
    # Given the provider accepts the submit but the connection drops before its answer arrives
    target.aim(target.spec.submit, drop_after_handling_next=1)
    batch_id, jobs = target.run()
    if target.name in CAN_LIST_SUBMISSIONS:
        # Then a provider that lists its tasks shows the chunk: it is recorded and the batch carries on
        assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
        assert {line["outcome"] for line in target.stack.result_lines(batch_id)} == {"succeeded"}
    else:
        # Then elsewhere the batch needs a person: it says which chunk, and nothing was resubmitted
        view = assert_settled(target.stack, batch_id, len(jobs), "NEEDS_ATTENTION")
        assert view["error"]["code"] == "AMBIGUOUS_SUBMIT"
        assert "chunk 0" in view["error"]["message"]
        lines = target.stack.result_lines(batch_id)
        assert {line["outcome"] for line in lines} == {"not_processed"}
        assert {line["error"]["code"] for line in lines} == {"AMBIGUOUS_SUBMIT"}
    assert target.sim.submissions == 1
    assert target.calls_to(target.spec.submit) == 1


@pytest.mark.parametrize(
    ("target", "fault"),
    [
        ("willsuite", {"drop_next": 1}),  # dropped before the provider read it: the client cannot tell
        ("os1", {"malformed_next": 1}),  # an answer that is not the provider's: accepted or not, unknown
        ("ivvy", {"latency_seconds": 4.0}),  # the answer comes after the read timeout
        # SuperOffice can list its tasks, but a submit still in flight is not listed yet: not found is
        # not proof, so it is not sent again either.
        ("superoffice", {"latency_seconds": 4.5}),
    ],
    indirect=["target"],
)
def test_other_lost_submit_answers_end_needs_attention(target: Target, fault: dict[str, Any]) -> None:
    target.aim(target.spec.submit, **fault)
    batch_id, jobs = target.run()
    view = assert_settled(target.stack, batch_id, len(jobs), "NEEDS_ATTENTION")
    assert view["error"]["code"] == "AMBIGUOUS_SUBMIT" and "chunk 0" in view["error"]["message"]
    assert target.calls_to(target.spec.submit) == 1
    if "drop_next" in fault:
        assert target.sim.submissions == 0
    else:  # a slow provider acts on the request after the client gave up on it: once
        target.stack.wait_until(lambda: target.sim.submissions == 1, timeout=10)


# --- credentials refused mid-batch -----------------------------------------------------------------
def _refuse(target: Target, times: int) -> None:
    if target.name == "ivvy":
        target.sim.clock_offset_seconds = 600.0  # every signed request is now stale: 401 23005
    else:
        target.sim.unauthorized_next = times


@providers("willsuite", "superoffice", "os1")
def test_one_401_in_the_middle_of_a_batch_is_healed_by_one_fresh_authentication(target: Target) -> None:
    target.sim.__setattr__(target.spec.duration_knob, 2.0)
    batch_id, jobs = target.run()
    target.wait_running(batch_id)
    # When the provider refuses the credentials once while the batch runs
    _refuse(target, times=1)
    # Then the adapter authenticates again (or repeats once) and the batch succeeds
    assert_settled(target.stack, batch_id, len(jobs), "SUCCEEDED")
    assert target.sim.unauthorized_next == 0
    assert target.sim.submissions == 1


@providers(*ALL)
def test_credentials_refused_for_good_in_the_middle_of_a_batch_fail_it(target: Target) -> None:
    target.sim.__setattr__(target.spec.duration_knob, 2.0)
    batch_id, jobs = target.run()
    target.wait_running(batch_id)
    # When the provider refuses every call from now on
    _refuse(target, times=1000)
    # Then the batch fails closed with the auth error, and every job is accounted for as not processed
    view = assert_settled(target.stack, batch_id, len(jobs), "FAILED")
    assert view["error"]["code"] == "PROVIDER_AUTH_FAILED"
    lines = target.stack.result_lines(batch_id)
    assert {line["outcome"] for line in lines} == {"not_processed"}
    assert {line["error"]["code"] for line in lines} == {"PROVIDER_AUTH_FAILED"}
    assert target.sim.submissions == 1


# --- results the provider no longer holds (iVvy keeps them two days) ---------------------------------
@providers("ivvy")
def test_results_that_expired_before_collection_are_not_processed(target: Target, monkeypatch) -> None:
    # Given iVvy no longer finds the batch when its results are asked for (past the two days)
    monkeypatch.setattr(
        target.sim, "_results_action", lambda body: ivvy_error(400, "Could not find batch", 24115)
    )
    batch_id, jobs = target.run()
    # Then nothing succeeded, and every job says why
    view = assert_settled(target.stack, batch_id, len(jobs), "FAILED")
    assert view["error"]["code"] == "RESULTS_EXPIRED"
    grouped = by_outcome(target.stack.result_lines(batch_id))
    assert len(grouped["not_processed"]) == len(jobs)
    assert {line["error"]["code"] for line in grouped["not_processed"]} == {"RESULTS_EXPIRED"}


@providers("ivvy")
def test_a_batch_that_expired_while_running_fails_closed(target: Target) -> None:
    target.sim.job_seconds = 3.0
    batch_id, jobs = target.run()
    target.wait_running(batch_id)
    # When iVvy forgets the batch while it is being polled
    target.sim.expire(next(iter(target.sim.batches)))
    # Then the batch fails on the next poll instead of polling until its deadline
    view = assert_settled(target.stack, batch_id, len(jobs), "FAILED")
    assert view["error"]["code"] == "RESULTS_EXPIRED"
    assert view["polls"] <= 3
    assert {line["error"]["code"] for line in target.stack.result_lines(batch_id)} == {"RESULTS_EXPIRED"}
