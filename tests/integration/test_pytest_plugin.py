"""The pytest plugin as a project built on BatchBridge uses it: a test file of its own, in a directory of
its own, run by pytest in a subprocess, the plugin found through its entry point (nothing imports it)."""

from __future__ import annotations

USERS_TESTS = """
import httpx


def test_a_fault_knob_makes_the_vendor_throttle(ivvy_simulator):
    ivvy_simulator.faults.throttle_next = 1
    answer = httpx.post(ivvy_simulator.base_url + "/api/1.0/venue?action=ping", json={})
    assert answer.status_code == 429
    assert len(ivvy_simulator.requests) == 1


def test_each_test_gets_a_reset_simulator(ivvy_simulator):
    assert ivvy_simulator.faults.throttle_next == 0 and ivvy_simulator.requests == []


def test_all_four_vendors_are_there(
    ivvy_simulator, willsuite_simulator, superoffice_simulator, os1_simulator
):
    sims = (ivvy_simulator, willsuite_simulator, superoffice_simulator, os1_simulator)
    for sim in sims:
        assert sim.base_url.startswith("http://127.0.0.1:")


def test_my_jobs_run_through_the_local_stack(batchbridge_client, ivvy_simulator):
    ivvy_simulator.fail_jobs = lambda index, job: index == 2  # the third job of its run
    jobs = [
        {"clientRef": f"mine-{i}", "namespace": "venue", "action": "addOrUpdateBookingSession",
         "params": {"spaceVenueId": 1, "bookingId": 15722, "contactId": 10, "name": f"Talk {i}",
                    "startDate": "2026-03-02"}}
        for i in range(4)
    ]
    accepted = batchbridge_client.create_batch("ivvy", "ivvy-local", jobs=jobs)
    view = batchbridge_client.wait(accepted["batchId"], interval=0.2, timeout=120)
    assert view["status"] == "PARTIALLY_SUCCEEDED"
    assert view["counts"]["failed"] == 1 and view["counts"]["succeeded"] == 3


def test_my_os1_drivers_run_through_the_local_stack(batchbridge_client, os1_simulator):
    # OS1 takes writes only with the origin token: the os1-local connection must carry it
    drivers = [{"clientRef": f"d{i}", "uniqueCode": f"DRV-{i:04d}", "name": f"Driver {i}"} for i in range(3)]
    accepted = batchbridge_client.create_batch(
        "os1", "os1-local", jobs=drivers, options={"participantType": "drivers"}
    )
    view = batchbridge_client.wait(accepted["batchId"], interval=0.2, timeout=120)
    assert view["status"] == "SUCCEEDED", view.get("error")
"""


def test_a_users_project_gets_the_simulators_and_the_stack_as_fixtures(pytester):
    pytester.makepyfile(test_my_jobs=USERS_TESTS)
    pytester.makeini("[pytest]\nbatchbridge_job_seconds = 0.2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=240)
    result.assert_outcomes(passed=5)
