"""Pure rules of the workflow tasks: the exactly-once outcome guard, failure parsing, final status."""

from __future__ import annotations

import json

from batchbridge.engine import Failure, _final_status, list_exactly_once
from batchbridge.models import BatchStatus, Counts, Outcome, OutcomeKind

JOBS = [{"clientRef": f"c{i}"} for i in range(4)]


def ok(index: int) -> Outcome:
    return Outcome(index=index, outcome=OutcomeKind.SUCCEEDED)


def test_a_complete_set_of_outcomes_passes_through_unchanged():
    got = list(list_exactly_once([ok(10), ok(11), ok(12), ok(13)], 10, JOBS))
    assert [o.index for o in got] == [10, 11, 12, 13]
    assert all(o.outcome is OutcomeKind.SUCCEEDED for o in got)


def test_missing_outcomes_become_not_processed_with_the_clients_reference():
    got = list(list_exactly_once([ok(10), ok(13)], 10, JOBS))
    assert [(o.index, o.outcome) for o in got] == [
        (10, OutcomeKind.SUCCEEDED),
        (11, OutcomeKind.NOT_PROCESSED),
        (12, OutcomeKind.NOT_PROCESSED),
        (13, OutcomeKind.SUCCEEDED),
    ]
    assert got[1].client_ref == "c1" and got[1].error.code == "NO_RESULT"


def test_repeated_and_stray_outcomes_are_dropped():
    got = list(list_exactly_once([ok(10), ok(10), ok(99), ok(11), ok(12), ok(13), ok(14)], 10, JOBS))
    assert [o.index for o in got] == [10, 11, 12, 13]


def test_failure_takes_the_message_from_the_lambda_error_payload():
    failure = Failure.model_validate(
        {
            "Error": "BatchRejectedError",
            "Cause": json.dumps({"errorType": "BatchRejectedError", "errorMessage": "iVvy said no"}),
        }
    )
    info = failure.info()
    assert (info.code, info.message) == ("BATCH_REJECTED", "iVvy said no")


def test_failure_with_a_states_error_keeps_its_name():
    info = Failure.model_validate({"Error": "States.Timeout", "Cause": ""}).info()
    assert (info.code, info.message) == ("States.Timeout", "States.Timeout")


def counts(s: int, f: int, n: int) -> Counts:
    return Counts(total=s + f + n, succeeded=s, failed=f, not_processed=n)


def test_final_status_follows_the_outcomes():
    batch = {"status": "COLLECTING"}
    assert _final_status(batch, None, counts(5, 0, 0))[0] is BatchStatus.SUCCEEDED
    assert _final_status(batch, None, counts(3, 2, 0))[0] is BatchStatus.PARTIALLY_SUCCEEDED
    status, error = _final_status(batch, None, counts(0, 5, 0))
    assert status is BatchStatus.FAILED and error.code == "ALL_JOBS_FAILED"


def test_final_status_for_deadline_cancel_and_ambiguity():
    assert _final_status({"deadlineReached": True}, None, counts(3, 0, 2))[0] is BatchStatus.TIMED_OUT
    assert _final_status({"cancelRequested": True}, None, counts(3, 0, 2))[0] is BatchStatus.CANCELLED
    ambiguous = Failure.model_validate({"Error": "AmbiguousSubmitError", "Cause": "lost"})
    assert _final_status({}, ambiguous, counts(0, 0, 5))[0] is BatchStatus.NEEDS_ATTENTION


def test_a_rejection_recorded_on_the_batch_is_the_failure_reason():
    batch = {"error": {"code": "IVVY_24092", "message": "incorrect job format"}}
    status, error = _final_status(batch, None, counts(0, 5, 0))
    assert status is BatchStatus.FAILED
    assert error.code == "IVVY_24092"
