"""WillSuite through the real workflow: counts and per-case outcomes match the simulator's truth."""

from __future__ import annotations

import uuid

import pytest

from tests.workflow.helpers import by_outcome, submit, the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]


@pytest.fixture
def sim(willsuite_sim):
    willsuite_sim.reset()
    willsuite_sim.job_seconds = 0.5
    yield willsuite_sim
    willsuite_sim.reset()


def cases(n: int) -> list[dict[str, str]]:
    return [
        {"clientRef": f"case-{i}", "id": str(uuid.UUID(int=i + 1)), "status": "reviewed"} for i in range(n)
    ]


def test_a_mixed_bulk_update_matches_the_simulators_truth(stack, sim, willsuite_connection):
    # Given 30 cases, 4 of which WillSuite will refuse and 5 of which are already up to date
    jobs = cases(30)
    failing = {jobs[i]["id"]: "Case does not exist or record already updated." for i in (2, 7, 11, 29)}
    sim.failures.update(failing)
    sim.unchanged.update(jobs[i]["id"] for i in (0, 1, 3, 4, 5))
    # When the batch runs
    batch_id = submit(stack, "willsuite", willsuite_connection, jobs)
    view = stack.wait_for_batch(batch_id, timeout=90)
    # Then the counts add up to what was submitted and match the simulator
    truth = sim.truth(next(iter(sim.jobs)))
    assert len(truth.failed) == 4
    assert view["status"] == "PARTIALLY_SUCCEEDED"
    assert view["counts"] == {"total": 30, "succeeded": 26, "failed": 4, "notProcessed": 0}
    lines = stack.result_lines(batch_id)
    grouped = by_outcome(lines)
    assert {line["providerRef"] for line in grouped["failed"]} == set(truth.failed)
    assert {line["error"]["message"] for line in grouped["failed"]} == {
        "Case does not exist or record already updated."
    }
    # and succeeded cases say whether they were effected (by count, as WillSuite reports no ids)
    assert {line["detail"] for line in grouped["succeeded"]} <= {
        "effected",
        "unchanged",
        "effected_or_unchanged",
    }
    assert the_event(stack, batch_id)["attributes"]["status"] == "PARTIALLY_SUCCEEDED"


def test_a_failed_job_fails_the_batch_with_the_vendors_message(stack, sim, willsuite_connection):
    sim.fail_next_jobs = 1
    sim.job_failure_message = "Bulk update aborted: the import file could not be read."
    batch_id = submit(stack, "willsuite", willsuite_connection, cases(3))
    view = stack.wait_for_batch(batch_id, timeout=90)
    assert view["status"] == "FAILED"
    lines = stack.result_lines(batch_id)
    assert {line["outcome"] for line in lines} == {"failed"}
    assert all("Bulk update aborted" in line["error"]["message"] for line in lines)
    received = the_event(stack, batch_id)
    assert received["attributes"]["status"] == "FAILED"
