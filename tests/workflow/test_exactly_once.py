"""Submit exactly once: a submit Lambda that stops after the provider accepted a chunk is run again by the
workflow, and the chunk is not sent a second time (the simulators count what they accepted).

The handlers run in this process, so a crash is injected where it hurts: the repository write that records the
provider's reference either happens and is followed by the crash, or is itself the crash. The injected
error is named ``Lambda.ServiceException`` -- what Step Functions reports when the Lambda service fails an
invoke, whether or not the function body ran, and one of the errors every task's ``Retry`` covers. (A
``ProviderUnavailableError`` would be retried too, but it claims the provider refused, which is not what
happened.) A crash the workflow does not retry -- a timeout, an out-of-memory kill -- is injected as a
plain ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from batchbridge.providers import superoffice
from batchbridge.repository import Repository
from batchbridge_local.simulators.ivvy import booking_session_jobs
from tests.workflow.helpers import assert_settled, submit

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]

# Step Functions matches a Lambda error by the errorType the invoke answered with: the class name.
LambdaServiceException = type("Lambda.ServiceException", (Exception,), {})
SO_OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


@pytest.fixture
def so(superoffice_sim: Any, superoffice_listing_connection: str) -> Iterator[tuple[Any, str]]:
    superoffice_sim.reset()
    superoffice_sim.job_seconds = 0.5
    superoffice.clear_endpoint_cache()
    yield superoffice_sim, superoffice_listing_connection
    superoffice_sim.reset()


def crash_on_recording_the_reference(
    monkeypatch: pytest.MonkeyPatch, *, after: bool, error: type
) -> list[int]:
    """The first repository write that records a provider reference crashes the invocation, either after
    the write went through (``after=True``) or instead of it. Returns the chunk indexes it crashed on."""
    original = Repository.record_submission
    crashed: list[int] = []

    def record_submission(self: Repository, batch_id: str, index: int, ref: str, **kwargs: Any) -> Any:
        if crashed:
            return original(self, batch_id, index, ref, **kwargs)
        crashed.append(index)
        if after:
            original(self, batch_id, index, ref, **kwargs)
        raise error(f"injected crash {'after' if after else 'before'} recording chunk {index}'s reference")

    monkeypatch.setattr(Repository, "record_submission", record_submission)
    return crashed


def test_a_crash_after_the_reference_was_recorded_does_not_resubmit(
    stack, ivvy, ivvy_connection, monkeypatch
):
    # Given a two-chunk batch (250 jobs; iVvy takes 200 per run), and the submit Lambda crashes right
    # after recording chunk 0's asyncId, before it reaches chunk 1
    crashed = crash_on_recording_the_reference(monkeypatch, after=True, error=LambdaServiceException)
    jobs = booking_session_jobs(250)
    batch_id = submit(stack, "ivvy", ivvy_connection, jobs)
    # Then the workflow retries the submit, which sends only chunk 1, and the batch completes
    view = assert_settled(stack, batch_id, len(jobs), "SUCCEEDED", timeout=90)
    assert crashed == [0]
    assert view["chunkCount"] == 2
    assert ivvy.submissions == 2  # one per chunk, never more
    assert len(ivvy.batches) == 2
    assert sorted(len(b.jobs) for b in ivvy.batches.values()) == [50, 200]
    # and the crash really happened and was retried
    failed = [
        e["lambdaFunctionFailedEventDetails"]["error"]
        for e in stack.execution_history(batch_id)
        if e["type"] == "LambdaFunctionFailed"
    ]
    assert failed == ["Lambda.ServiceException"]


def test_a_crash_before_the_reference_was_recorded_needs_attention(stack, ivvy, ivvy_connection, monkeypatch):
    # Given iVvy accepts chunk 0, and the submit Lambda crashes before it records the asyncId
    crashed = crash_on_recording_the_reference(monkeypatch, after=False, error=LambdaServiceException)
    jobs = booking_session_jobs(3)
    batch_id = submit(stack, "ivvy", ivvy_connection, jobs)
    # Then the retry finds the chunk half-submitted and does not send it again: a person must look
    view = assert_settled(stack, batch_id, len(jobs), "NEEDS_ATTENTION")
    assert crashed == [0]
    assert view["error"]["code"] == "AMBIGUOUS_SUBMIT"
    assert "chunk 0 " in view["error"]["message"]
    assert ivvy.submissions == 1
    lines = stack.result_lines(batch_id)
    assert {line["outcome"] for line in lines} == {"not_processed"}
    assert {line["error"]["code"] for line in lines} == {"AMBIGUOUS_SUBMIT"}


def test_a_crash_before_the_reference_was_recorded_is_reconciled_where_tasks_can_be_listed(
    stack, so, monkeypatch
):
    sim, connection = so
    # Given SuperOffice accepts the mass update and the submit Lambda crashes before recording its task id
    crashed = crash_on_recording_the_reference(monkeypatch, after=False, error=LambdaServiceException)
    jobs = [{"clientRef": f"contact-{i}", "id": 2000 + i} for i in range(4)]
    batch_id = submit(stack, "superoffice", connection, jobs, options=SO_OPTIONS)
    # Then the retry finds the task by the Context it carried, records it, and the batch completes
    assert_settled(stack, batch_id, len(jobs), "SUCCEEDED")
    assert crashed == [0]
    assert sim.submissions == 1
    assert {line["outcome"] for line in stack.result_lines(batch_id)} == {"succeeded"}
    assert sim.requests_to("GetBatchTaskInfosByAssociates")


def test_a_crash_the_workflow_does_not_retry_still_ends_needs_attention(
    stack, ivvy, ivvy_connection, monkeypatch
):
    # Given the submit Lambda dies (a timeout, say) after iVvy accepted the chunk, before recording it
    crash_on_recording_the_reference(monkeypatch, after=False, error=RuntimeError)
    jobs = booking_session_jobs(3)
    batch_id = submit(stack, "ivvy", ivvy_connection, jobs)
    # Then the batch is not reported FAILED as if nothing ran: the chunk may be running at iVvy
    view = assert_settled(stack, batch_id, len(jobs), "NEEDS_ATTENTION")
    assert view["error"]["code"] == "AMBIGUOUS_SUBMIT"
    assert "chunk 0" in view["error"]["message"]
    assert ivvy.submissions == 1
    assert {line["error"]["code"] for line in stack.result_lines(batch_id)} == {"AMBIGUOUS_SUBMIT"}
