"""OS1 Participant batches through the real workflow: inline per-record results, and records the vendor
never mentions become not_processed."""

from __future__ import annotations

import pytest

from tests.workflow.helpers import by_outcome, submit, the_event

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]


@pytest.fixture
def sim(os1_sim):
    os1_sim.reset()
    os1_sim.batch_seconds = 0.5
    yield os1_sim
    os1_sim.reset()


def drivers(n: int) -> list[dict[str, object]]:
    return [
        {
            "clientRef": f"d{i}",
            "uniqueCode": f"DRV-{i:04d}",
            "name": f"Driver {i}",
            "properties": {"hub": "north"},
        }
        for i in range(n)
    ]


def test_a_mixed_batch_matches_the_simulators_truth(stack, sim, os1_connection):
    # Given OS1 will refuse two drivers and silently drop two more
    sim.failures.update({"DRV-0004": "mobile number is not valid", "DRV-0010": "duplicate uniqueCode"})
    sim.dropped.update({"DRV-0006", "DRV-0015"})
    # When 20 drivers are created
    batch_id = submit(stack, "os1", os1_connection, drivers(20), options={"participantType": "drivers"})
    view = stack.wait_for_batch(batch_id, timeout=90)
    # Then every record has exactly one outcome, matching the simulator
    truth = sim.truth(next(iter(sim.batches)))
    assert view["status"] == "PARTIALLY_SUCCEEDED"
    assert view["counts"] == {
        "total": 20,
        "succeeded": len(truth.succeeded),
        "failed": len(truth.failed),
        "notProcessed": 2,
    }
    grouped = by_outcome(stack.result_lines(batch_id))
    assert {line["clientRef"] for line in grouped["not_processed"]} == {"d6", "d15"}
    assert {line["clientRef"] for line in grouped["failed"]} == {"d4", "d10"}
    assert (
        "mobile number"
        in next(line for line in grouped["failed"] if line["clientRef"] == "d4")["error"]["message"]
    )
    assert all(line["providerRef"] for line in grouped["succeeded"])
    # and every request carried the OS1 headers
    for request in sim.requests:
        assert request.headers.get("x-coreos-request-id")
        assert request.headers.get("x-coreos-tid") == sim.tenant_id or "aaa/auth" in request.path
    assert the_event(stack, batch_id)["attributes"]["provider"] == "os1"
