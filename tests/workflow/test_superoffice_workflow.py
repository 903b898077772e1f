"""SuperOffice through the real workflow: mixed outcomes against the simulator's truth, and a tenant in
maintenance makes the workflow wait rather than fail."""

from __future__ import annotations

import pytest

from tests.workflow.helpers import by_outcome, submit, the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]
OPTIONS = {"tableName": "contact", "fieldValueInfos": [{"FieldName": "business_idx", "Values": ["3"]}]}


@pytest.fixture
def sim(superoffice_sim):
    superoffice_sim.reset()
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
