"""The fault matrix (:mod:`tests.workflow.matrix`): its enumeration, and its cells on the local stack.

``make test`` runs a fixed cross-section of the cells; ``make fault-matrix`` (``FAULT_MATRIX=full``) runs
every one. The cells of a run start together, a few at a time, on the process's one local stack, each with
its own simulator and connection: the first cell test of a group runs the whole group, and each test then
reports its own cell. Under xdist the cells are dealt to two groups, one per worker.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

from batchbridge.providers.base import all_capabilities
from batchbridge_local.simulators.ivvy import IvvySimulator, booking_session_jobs
from tests.workflow import matrix
from tests.workflow.helpers import submit
from tests.workflow.invariants import Secrets, VendorView, check_invariants, wait_until_finished

FULL = os.environ.get("FAULT_MATRIX") == "full"
CELLS = matrix.all_cells() if FULL else matrix.cross_section()
WORKERS = int(os.environ.get("FAULT_MATRIX_WORKERS", "16"))
GROUPS = 2
GROUP = {cell.id: f"fault-matrix-{n % GROUPS}" for n, cell in enumerate(CELLS)}

pytestmark = pytest.mark.workflow


# --- the enumeration ------------------------------------------------------------------------------------
def test_the_matrix_has_every_existing_cell_and_no_other():
    cells = matrix.fault_cells()
    # Every (provider, call, fault, when) that exists is in it once; nothing else is.
    assert len(set(cells)) == len(cells)
    every = {
        (p, c, f, w)
        for p in matrix.VENDORS
        for c in matrix.CALLS
        for f in matrix.FAULTS
        for w in matrix.WHENS
    }
    assert {(c.provider, c.call, c.fault, c.when) for c in cells} == {
        k for k in every if matrix.exists(*k[:3])
    }
    # The rules, stated independently of the table: cancel where the provider declares one; a token call
    # where the adapter exchanges the connection's credentials for a token; results apart from status only
    # where the vendor has a results endpoint; a 401 only where the call carries credentials.
    cancels = {c.name for c in all_capabilities() if c.supports_cancel}
    assert {p for p, v in matrix.VENDORS.items() if "cancel" in v.calls} == cancels == {"superoffice"}
    assert {p for p, v in matrix.VENDORS.items() if "token" in v.calls} == {"willsuite", "os1"}
    assert {p for p, v in matrix.VENDORS.items() if "results" in v.calls} == {"ivvy", "superoffice"}
    assert not matrix.exists("superoffice", "discovery", "401")
    # Its size: per provider, its calls x 9 faults x 2 whens, less the 401s of calls without credentials.
    assert Counter(c.provider for c in cells) == {"ivvy": 54, "willsuite": 54, "superoffice": 88, "os1": 54}
    assert len(cells) == 250
    assert len(matrix.all_cells()) == 250 + 4 * (1 + len(matrix.PHASES) + len(matrix.RACES)) == 282
    print(matrix.describe())


def test_the_contract_gives_every_cell_an_outcome():
    outcomes = Counter((matrix.expected(c).status, matrix.expected(c).rule) for c in matrix.fault_cells())
    assert sum(outcomes.values()) == 250
    # the lines of the contract that decide, and how many cells each decides
    assert outcomes == {
        ("SUCCEEDED", "transient: ridden out by the retries"): 144,
        ("SUCCEEDED", "not taken, so sent again"): 16,
        ("SUCCEEDED", "never resent; found in the vendor's list"): 12,
        ("NEEDS_ATTENTION", "never resent; the chunk is named"): 36,
        ("SUCCEEDED", "a 401 once is healed by one fresh authentication"): 14,
        ("FAILED", "no fresh authentication to make"): 6,
        ("FAILED", "the token endpoint refused the credentials"): 4,
        ("CANCELLED", "the stop is not confirmed"): 16,
        ("CANCELLED", "a 401 once is healed; the stop confirmed"): 2,
    }


def test_the_cross_section_is_fixed_and_touches_every_provider_call_fault_and_when():
    cells = matrix.cross_section()
    assert cells == matrix.cross_section()
    faults = [c for c in cells if isinstance(c, matrix.FaultCell)]
    assert {(c.provider, c.call) for c in faults} == {
        (p, c) for p, v in matrix.VENDORS.items() for c in v.calls
    }
    assert {c.fault for c in faults} == set(matrix.FAULTS)
    assert {c.when for c in faults} == set(matrix.WHENS)
    assert {c.phase for c in cells if isinstance(c, matrix.CancelCell)} == set(matrix.PHASES)
    assert {c.race for c in cells if isinstance(c, matrix.RaceCell)} == set(matrix.RACES)
    assert {c.provider for c in cells if isinstance(c, matrix.Baseline)} == set(matrix.VENDORS)
    assert set(matrix.REGRESSIONS) <= set(cells)
    assert set(matrix.KNOWN_FAILURES) <= {c.id for c in matrix.all_cells()}
    rules = {matrix.expected(c).rule for c in matrix.fault_cells()}
    assert {matrix.expected(c).rule for c in faults} == rules
    assert len(set(cells)) == len(cells) == 4 + 14 + 5 + 2 + 3 + 1
    # and every cell of it is a cell of the matrix
    assert set(cells) <= set(matrix.all_cells())


# --- the invariant check catches what it claims -----------------------------------------------------------
@pytest.mark.xdist_group(GROUP[CELLS[0].id])
def test_the_invariant_check_finds_each_broken_promise(stack):
    sim = IvvySimulator(
        job_seconds=0.3, api_key=matrix.canary("key"), api_secret=matrix.canary("secret")
    ).start()
    try:
        name = f"fm-inv-{uuid.uuid4().hex[:12]}"
        stack.add_connection(name, "ivvy", sim.base_url, {"apiKey": sim.api_key, "apiSecret": sim.api_secret})
        jobs = booking_session_jobs(3)
        batch_id = submit(stack, "ivvy", name, jobs)
        wait_until_finished(stack, batch_id)
        vendor = matrix.VENDORS["ivvy"].view(sim)
        ((ref, indexes),) = vendor.submissions
        holds = Secrets({"apiSecret": sim.api_secret})

        def problems(**changes: Any) -> list[str]:
            kwargs: dict[str, Any] = {"vendor": vendor, "secrets": holds, "settle_seconds": 0.0} | changes
            return check_invariants(stack, batch_id, kwargs.pop("jobs", jobs), **kwargs)

        # Given a batch that kept every promise, the check finds nothing
        assert problems() == []
        # and it finds each broken one: a chunk sent twice, or never, or under another reference,
        assert problems(vendor=VendorView([(ref, indexes), ("again", indexes)])) == [
            "chunk 0 was submitted 2 times (['" + ref + "', 'again'])"
        ]
        assert any("never accepted" in p for p in problems(vendor=VendorView([])))
        assert any("accepted it as 'other'" in p for p in problems(vendor=VendorView([("other", indexes)])))
        # a job credited with what the vendor gave another,
        swapped = VendorView([(ref, indexes)], {0: vendor.job_refs[1], 1: vendor.job_refs[0]})
        assert any("a reference the vendor did not give them" in p for p in problems(vendor=swapped))
        # an outcome that names another job's clientRef, a job without an outcome,
        renamed = [dict(jobs[0], clientRef="someone-else"), *jobs[1:]]
        assert any("names clientRef" in p for p in problems(jobs=renamed))
        assert any(
            "no outcome for 1 jobs" in p for p in problems(jobs=[*jobs, booking_session_jobs(1, start=3)[0]])
        )
        # and a secret that is somewhere it must not be (the connection's name is in every item)
        assert "conn in item META" in problems(secrets=Secrets({"conn": name}))
    finally:
        sim.stop()


# --- the cells ---------------------------------------------------------------------------------------------
class Runs:
    """Runs each group of cells once, the first time one of its cells is asked for."""

    def __init__(self, stack: Any, selected: list[matrix.Cell]) -> None:
        self.stack = stack
        self.selected = selected
        self.results: dict[str, matrix.CellResult] = {}
        self._lock = threading.Lock()

    def result(self, cell: matrix.Cell) -> matrix.CellResult:
        with self._lock:
            if cell.id not in self.results:
                # Under xdist a group stays on one worker: run the group. Alone, run everything at once.
                together = [
                    c
                    for c in self.selected
                    if "PYTEST_XDIST_WORKER" not in os.environ or GROUP[c.id] == GROUP[cell.id]
                ]
                self.results.update(matrix.run_cells(self.stack, together, workers=WORKERS))
            return self.results[cell.id]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, stack: Any) -> Runs:
    selected = [
        item.callspec.params["cell"]
        for item in request.session.items
        if item.module is request.module and getattr(item, "originalname", None) == "test_cell"
    ]
    return Runs(stack, selected)


@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    "cell",
    [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xdist_group(GROUP[c.id])]
            + [
                pytest.mark.xfail(strict=True, reason=why) for why in [matrix.KNOWN_FAILURES.get(c.id)] if why
            ],
        )
        for c in CELLS
    ],
)
def test_cell(cell: matrix.Cell, runs: Runs) -> None:
    result = runs.result(cell)
    assert result.problems == [], result.report()
