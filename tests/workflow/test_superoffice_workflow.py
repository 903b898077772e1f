"""SuperOffice through the real workflow: mixed outcomes against the simulator's truth, a tenant in
maintenance makes the workflow wait rather than fail, and a ticket rotated into the connection's secret
is picked up by a running batch."""

from __future__ import annotations

import secrets

import pytest

from batchbridge.providers import superoffice
from tests.conftest import add_superoffice
from tests.workflow.helpers import by_outcome, submit, the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]
OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


@pytest.fixture
def sim(superoffice_sim):
    superoffice_sim.reset()
    superoffice.clear_endpoint_cache()  # each test discovers the tenant afresh
    superoffice_sim.job_seconds = 0.5
    yield superoffice_sim
    superoffice_sim.reset()


def entities(n: int) -> list[dict[str, object]]:
    return [{"clientRef": f"contact-{i}", "id": 1000 + i} for i in range(n)]


def test_a_mixed_mass_update_matches_the_simulators_truth(stack, sim, superoffice_connection):
    sim.failures.update({1003: "Contact is locked by another user", 1011: "No write access to contact"})
    batch_id = submit(stack, "superoffice", superoffice_connection, entities(20), options=OPTIONS)
    view = stack.wait_for_batch(batch_id, timeout=90)
    truth = sim.truth(next(iter(sim.tasks)))
    assert view["status"] == "PARTIALLY_SUCCEEDED"
    assert view["counts"] == {
        "total": 20,
        "succeeded": len(truth.succeeded),
        "failed": len(truth.failed),
        "notProcessed": len(truth.unreported) + len(truth.not_handled),
    }
    assert view["counts"]["failed"] == 2
    grouped = by_outcome(stack.result_lines(batch_id))
    assert {int(line["providerRef"]) for line in grouped["failed"]} == {1003, 1011}
    assert the_event(stack, batch_id)["attributes"]["provider"] == "superoffice"


def test_a_tenant_in_maintenance_makes_the_workflow_wait_not_fail(stack, sim, superoffice_connection):
    # Given the tenant is in a maintenance window that ends by itself in six seconds
    sim.start_maintenance(seconds=6)
    # When a batch is submitted meanwhile
    batch_id = submit(stack, "superoffice", superoffice_connection, entities(3), options=OPTIONS)
    view = stack.wait_for_batch(batch_id, timeout=90)
    # Then it waited, submitted once the tenant was back, and succeeded
    assert view["status"] == "SUCCEEDED"
    assert sim.submissions == 1
    history = stack.execution_history(batch_id)
    waits = [
        e
        for e in history
        if e["type"] == "WaitStateEntered"
        and e["stateEnteredEventDetails"]["name"] == "Wait Until Provider Is Ready"
    ]
    assert waits, "the workflow should have waited for the tenant"


def test_a_ticket_rotated_into_the_secret_mid_batch_is_picked_up_on_the_first_401(stack, sim):
    # Given a batch running on a connection whose ticket the handlers have read and cached
    add_superoffice(stack, sim, "superoffice-rotation")
    old_ticket = sim.ticket
    sim.job_seconds = 3.0
    batch_id = submit(stack, "superoffice", "superoffice-rotation", entities(3), options=OPTIONS)
    stack.wait_until(lambda: stack.batch(batch_id)["status"] == "RUNNING", timeout=30)
    try:
        # When SuperOffice moves to a new ticket and the secret is updated -- behind the cache's back
        sim.ticket = "7T:" + secrets.token_urlsafe(24)
        add_superoffice(stack, sim, "superoffice-rotation", clear_cache=False)
        view = stack.wait_for_batch(batch_id, timeout=90)
    finally:
        new_ticket, sim.ticket = sim.ticket, old_ticket
    # Then the first refused status read made the handler re-read the secret, and the batch carried on
    assert view["status"] == "SUCCEEDED", view
    assert sim.submissions == 1
    tickets = [r.headers["authorization"] for r in sim.requests_to("GetBatchTaskInfo")]
    assert f"SOTicket {old_ticket}" in tickets
    assert tickets[-1] == f"SOTicket {new_ticket}"


def test_a_connection_that_asks_for_it_has_its_batch_tasks_deleted_once_their_outcomes_are_recorded(
    stack, sim
):
    connection = add_superoffice(stack, sim, "superoffice-tidy", deleteTasksAfterCollect=True)
    batch_id = submit(stack, "superoffice", connection, entities(3), options=OPTIONS)
    view = stack.wait_for_batch(batch_id, timeout=60)
    assert view["status"] == "SUCCEEDED"
    task = int(stack.repo.get_chunk(batch_id, 0).provider_ref)
    assert sim.deleted == [task]
    assert len(stack.result_lines(batch_id)) == 3  # the outcomes were recorded first
