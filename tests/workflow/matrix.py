"""The fault matrix: BatchBridge's promises against every fault, enumerated rather than sampled.

A **fault cell** is one provider x one outbound call x one fault x when. Each runs as a small batch (two
chunks) on the local stack, against a simulator of its own (the simulators' fault knobs are global per
instance) and a connection of its own, with credentials no other cell has; then
:func:`tests.workflow.invariants.check_invariants` checks every promise, and the cell's expected outcome
-- taken from the contract, below, not from watching the code -- is checked too.

Cells that do not exist are left out by rule:

* **calls** -- what a provider's adapter sends (:data:`VENDORS`, each call an endpoint of the adapter):
  ``token`` where the adapter exchanges the connection's credentials for a token (WillSuite, OS1; iVvy
  signs every request, SuperOffice sends the ticket the secret holds); ``discovery`` where it looks the
  tenant up first (SuperOffice's state service); ``submit`` and ``status`` everywhere; ``results`` where
  the results have an endpoint of their own (iVvy, SuperOffice; WillSuite's and OS1's come with the
  status); ``cancel`` where the provider declares one (SuperOffice). Calls made only in answer to another
  fault (SuperOffice's task lookup after an ambiguous submit) are not cells of their own, and the vendors'
  completion callbacks are lost in every cell (their confirmation calls have tests of their own), so that
  each call is made by the one task that owns it.
* **faults** -- :data:`FAULTS`, all nine on every call, except ``401`` on a call that carries no
  credentials (the state service).
* **when** -- :data:`WHENS`: the call's first request of the batch, or a later one, as
  :data:`MID` says per call.

Beside the fault cells: a **baseline** per provider (no fault), **cancel** at every phase
(:data:`PHASES`) per provider, and two **races** (:data:`RACES`) per provider.

The contract (:func:`expected`):

* a submit fault that proves the vendor did not take the chunk (``refused`` before sending, ``429``) ->
  the chunk is sent again and the batch ends as without the fault: SUCCEEDED;
* any other submit fault after the request went out -> never sent again: reconciled where the vendor can
  list what it holds (SuperOffice lists batch tasks by the chunk's Context when the connection names its
  ``associateId``), else NEEDS_ATTENTION naming the chunk;
* a transient fault on a token, discovery, status or results call -> ridden out by the retries: SUCCEEDED;
* a ``401`` once -> healed by one fresh authentication where there is one to make (WillSuite and OS1 fetch a
  token, SuperOffice re-reads its secret): SUCCEEDED; where there is none it is permanent: iVvy signs
  each request with the key itself, and a token endpoint's 401 refuses the client credentials themselves
  -> FAILED with ``PROVIDER_AUTH_FAILED``;
* any fault on a cancel -> the batch still ends CANCELLED, and its error names the chunk's stop as not
  confirmed (a 401 once is healed, and the stop confirmed).

Run ``python -m tests.workflow.matrix`` to print the enumeration.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from batchbridge.errors import BatchBridgeError
from batchbridge.providers import os1 as os1_adapter
from batchbridge.providers import superoffice as so_adapter
from batchbridge.providers import willsuite as ws_adapter
from batchbridge.providers.base import provider_class
from batchbridge_local.client_faults import ClientFaults
from batchbridge_local.simulators.base import Simulator
from tests.workflow.invariants import Secrets, VendorView, check_invariants, wait_until_finished

CALLS = ("token", "discovery", "submit", "status", "results", "cancel")
FAULTS: dict[str, str] = {
    "refused": "the connection is refused before anything is sent",
    "timeout": "the vendor acts on the request, and no answer comes before the read timeout",
    "5xx": "the vendor acts on the request, then answers its own 5xx",
    "429": "the vendor answers 429 with Retry-After, before acting",
    "dropped": "the vendor acts on the request, then the connection drops before any answer",
    "truncated": "the vendor acts on the request, then its answer is cut in half",
    "malformed": "the vendor acts on the request, then answers an HTML page where JSON belongs",
    "wrong-shape": "the vendor acts on the request, then answers 2xx in a shape its documentation forbids",
    "401": "the vendor refuses the credentials once, before acting",
}
WHENS = ("first", "mid")
MID: dict[str, str] = {
    "token": "the second token request: the simulator issues tokens that live 2-3 s, so the adapter asks "
    "for a new one while it polls",
    "discovery": "the second look-up: the state service's ValidUntil lies 1.5 s ahead, so the adapter looks "
    "the tenant up again while it polls",
    "submit": "chunk 1's submit (chunk 0 was accepted)",
    "status": "the first status request of the second poll round (every chunk was checked once)",
    "results": "chunk 1's results (chunk 0's were collected)",
    "cancel": "chunk 1's stop (chunk 0 was stopped)",
}
PHASES: dict[str, str] = {
    "accepted": "before the first submit claims the batch (it is still ACCEPTED)",
    "submitting": "while chunk 0's submit is in flight (the vendor takes 2 s to answer)",
    "running": "once every chunk runs at the vendor",
    "collecting": "just after collect started (the batch is COLLECTING)",
    "finished": "after the batch ended: 409, and nothing changes",
}
RACES: dict[str, str] = {
    "two-submits": "two more submit invocations at once, while the workflow's own submit of chunk 0 is out",
    "check-and-cancel": "a status check in flight (the vendor takes 2 s to answer) while a cancel run's "
    "collect settles the same chunks",
}
#: Faults that prove the vendor did not take the request.
SENT_NOTHING = frozenset({"refused", "429"})
PROVIDER_READ_TIMEOUT = 3.0  # the local stack's (LOCAL_ENV)
RETRY_AFTER = 100  # seconds, as the vendor says it: one second on the local time scale (0.01)


# --- vendors ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """Which requests are one call: path fragments (query included) and, where a path serves two calls,
    methods."""

    paths: tuple[str, ...]
    methods: tuple[str, ...] = ()

    def matches(self, method: str, raw_path: str) -> str | None:
        """The fragment this request matches, if it is this call."""
        if self.methods and method.upper() not in self.methods:
            return None
        return next((p for p in self.paths if p in raw_path), None)


@dataclass
class Vendor:
    """How the matrix drives one provider: its simulator, connection, jobs, and what the vendor saw."""

    name: str
    endpoints: dict[str, Endpoint]  # the calls it makes
    follow_ups: dict[str, Endpoint]  # calls it makes only in answer to another fault
    refreshes_on_401: bool  # there is a fresh authentication to make after a 401
    lists_submissions: bool  # can show that it holds a chunk whose submit answer was lost
    credentialed: frozenset[str]  # the calls that carry credentials
    options: dict[str, Any] | None
    duration_knob: str
    job: Callable[[int], dict[str, Any]]
    make: Callable[[Secrets], Simulator]
    connect: Callable[[Any, str, Any], None]
    submissions: Callable[[Any], list[tuple[str, list[int]]]]
    job_refs: Callable[[Any], dict[int, str]]
    issued: Callable[[Any], list[str]]
    later_calls: Callable[[Any, str], None] = lambda sim, call: None  # make a second request of a call come
    finish: Callable[[Any], None] = lambda sim: None  # every job the vendor holds, and later ones, ends now
    status_reads_per_submit: int = 0  # status calls a submit makes itself (SuperOffice reads its task back)

    @property
    def chunk_size(self) -> int:
        return provider_class(self.name).capabilities.max_jobs_per_submit

    @property
    def supports_cancel(self) -> bool:
        return provider_class(self.name).capabilities.supports_cancel

    @property
    def calls(self) -> tuple[str, ...]:
        return tuple(c for c in CALLS if c in self.endpoints)

    def jobs(self, n: int) -> list[dict[str, Any]]:
        return [self.job(i) for i in range(n)]

    def view(self, sim: Any) -> VendorView:
        with sim._lock:
            return VendorView(self.submissions(sim), self.job_refs(sim))


def canary(label: str) -> str:
    """A credential value that occurs nowhere by chance (letters and digits: no encoding changes it)."""
    return f"CANARY{re.sub('[^A-Za-z]', '', label)}{uuid.uuid4().hex}"


def _ivvy() -> Vendor:
    from batchbridge_local.simulators.ivvy import IvvySimulator, booking_session_jobs

    def make(secrets: Secrets) -> Simulator:
        return IvvySimulator(
            api_key=secrets.add("apiKey", canary("key")),
            api_secret=secrets.add("apiSecret", canary("secret")),
        )

    def connect(stack: Any, name: str, sim: Any) -> None:
        stack.add_connection(
            name,
            "ivvy",
            sim.base_url,
            {"apiKey": sim.api_key, "apiSecret": sim.api_secret},
            clear_cache=False,
        )

    def submissions(sim: Any) -> list[tuple[str, list[int]]]:
        return [
            (ref, [int(j["params"]["name"].split()[-1]) for j in b.jobs]) for ref, b in sim.batches.items()
        ]

    def job_refs(sim: Any) -> dict[int, str]:
        refs: dict[int, str] = {}
        for batch in sim.batches.values():
            for job, response in zip(batch.jobs, batch.responses, strict=True):
                if "id" in response:
                    refs[int(job["params"]["name"].split()[-1])] = str(response["id"])
        return refs

    return Vendor(
        name="ivvy",
        endpoints={
            "submit": Endpoint(("batch?action=run",)),
            "status": Endpoint(("batch?action=progress",)),
            "results": Endpoint(("batch?action=results",)),
        },
        follow_ups={},
        refreshes_on_401=False,
        lists_submissions=False,
        credentialed=frozenset({"submit", "status", "results"}),
        options=None,
        duration_knob="job_seconds",
        job=lambda i: booking_session_jobs(1, start=i)[0],
        make=make,
        connect=connect,
        submissions=submissions,
        job_refs=job_refs,
        issued=lambda sim: [],
        finish=lambda sim: setattr(sim, "job_seconds", 0.0),
    )


def _finish_all(jobs: Any) -> None:
    for job in jobs:
        job.duration = 0.0


def _willsuite() -> Vendor:
    from batchbridge_local.simulators.willsuite import WillSuiteSimulator

    def make(secrets: Secrets) -> Simulator:
        client_id, secret = canary("clientid"), canary("clientsecret")
        secrets.add("clientId", client_id)
        secrets.add("clientSecret", secret)
        secrets.basic_pairs.append((client_id, secret))
        return WillSuiteSimulator(client_id=client_id, client_secret=secret)

    def connect(stack: Any, name: str, sim: Any) -> None:
        stack.add_connection(
            name,
            "willsuite",
            sim.api_base_url,
            {"clientId": sim.client_id, "clientSecret": sim.client_secret},
            clear_cache=False,
        )

    def later_calls(sim: Any, call: str) -> None:
        if call == "token":
            sim.token_ttl_seconds = 2  # renewed 0.2 s before it lapses: at the first poll (3 s)

    return Vendor(
        name="willsuite",
        endpoints={
            "token": Endpoint((ws_adapter.TOKEN_PATH,)),
            "submit": Endpoint((ws_adapter.DEFAULT_SUBMIT_PATH,)),
            "status": Endpoint((ws_adapter.STATUS_PATH.split("{")[0],)),
        },
        follow_ups={},
        refreshes_on_401=True,
        lists_submissions=False,
        credentialed=frozenset({"token", "submit", "status"}),
        options=None,
        duration_knob="job_seconds",
        job=lambda i: {"clientRef": f"case-{i}", "id": str(uuid.UUID(int=i + 1)), "status": "reviewed"},
        make=make,
        connect=connect,
        submissions=lambda sim: [
            (ref, [uuid.UUID(c).int - 1 for c in j.cases]) for ref, j in sim.jobs.items()
        ],
        job_refs=lambda sim: {
            uuid.UUID(c).int - 1: c for j in sim.jobs.values() for c in j.cases if c not in j.failed
        },
        issued=lambda sim: list(sim.tokens),
        later_calls=later_calls,
        finish=lambda sim: (setattr(sim, "job_seconds", 0.0), _finish_all(sim.jobs.values())),
    )


#: One place to change when SuperOffice's FieldValueInfo shape changes.
SUPEROFFICE_OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}
SUPEROFFICE_FIRST_ID = 1000


def _superoffice() -> Vendor:
    from batchbridge_local.simulators.superoffice import SuperOfficeSimulator

    def make(secrets: Secrets) -> Simulator:
        sim = SuperOfficeSimulator()
        sim.ticket = "7T:" + secrets.add("ticket", canary("ticket"))
        sim.app_token = secrets.add("appToken", canary("apptoken"))
        sim.access_token = secrets.add("accessToken", canary("accesstoken"))
        return sim

    def connect(stack: Any, name: str, sim: Any) -> None:
        stack.add_connection(
            name,
            "superoffice",
            sim.base_url,
            {"ticket": sim.ticket, "appToken": sim.app_token},
            {"contextIdentifier": sim.context_identifier, "associateId": sim.associate_id},
            clear_cache=False,
        )

    def later_calls(sim: Any, call: str) -> None:
        if call == "discovery":
            sim.state_ttl_seconds = 1.5

    def entity(e: int) -> int:
        return e - SUPEROFFICE_FIRST_ID

    return Vendor(
        name="superoffice",
        endpoints={
            "discovery": Endpoint(("/api/state/",)),
            "submit": Endpoint((so_adapter.EXECUTE_PATH,)),
            "status": Endpoint((so_adapter.TASK_INFO_PATH,)),
            "results": Endpoint((so_adapter.RESULT_PATH,)),
            "cancel": Endpoint((so_adapter.STOP_PATH,)),
        },
        follow_ups={"lookup": Endpoint((so_adapter.TASKS_BY_ASSOCIATES_PATH,))},
        refreshes_on_401=True,
        lists_submissions=True,
        credentialed=frozenset({"submit", "status", "results", "cancel"}),
        options=SUPEROFFICE_OPTIONS,
        duration_knob="job_seconds",
        status_reads_per_submit=1,
        job=lambda i: {"clientRef": f"contact-{i}", "id": SUPEROFFICE_FIRST_ID + i},
        make=make,
        connect=connect,
        submissions=lambda sim: [(str(t.id), [entity(e) for e in t.entities]) for t in sim.tasks.values()],
        job_refs=lambda sim: {entity(e): str(e) for t in sim.tasks.values() for e in t.entities},
        issued=lambda sim: [],
        later_calls=later_calls,
        finish=lambda sim: (setattr(sim, "job_seconds", 0.0), _finish_all(sim.tasks.values())),
    )


def _os1() -> Vendor:
    from batchbridge_local.simulators.os1 import OS1Simulator

    def make(secrets: Secrets) -> Simulator:
        client_id, secret = canary("clientid"), canary("clientsecret")
        secrets.add("clientId", client_id)
        secrets.add("clientSecret", secret)
        secrets.basic_pairs.append((client_id, secret))
        return OS1Simulator(
            client_id=client_id,
            client_secret=secret,
            origin_token=secrets.add("originToken", canary("origin")),
        )

    def connect(stack: Any, name: str, sim: Any) -> None:
        stack.add_connection(
            name,
            "os1",
            sim.base_url,
            {"clientId": sim.client_id, "clientSecret": sim.client_secret, "originToken": sim.origin_token},
            {"tenantId": sim.tenant_id},
            clear_cache=False,
        )

    def later_calls(sim: Any, call: str) -> None:
        if call == "token":
            sim.token_ttl_seconds = 3  # kept for half its life: renewed while the batch is polled

    def index(ref: str) -> int:
        return int(ref.rpartition("-")[2])

    return Vendor(
        name="os1",
        endpoints={
            "token": Endpoint((os1_adapter.AUTH_PATH,)),
            "submit": Endpoint(("/participants/",), ("POST",)),
            "status": Endpoint(("/batch/status",), ("GET",)),
        },
        follow_ups={},
        refreshes_on_401=True,
        lists_submissions=False,
        credentialed=frozenset({"token", "submit", "status"}),
        options={"participantType": "drivers"},
        duration_knob="batch_seconds",
        job=lambda i: {"clientRef": f"driver-{i}", "uniqueCode": f"DRV-{i}", "name": f"Driver {i}"},
        make=make,
        connect=connect,
        submissions=lambda sim: [(ref, [index(r.ref) for r in b.records]) for ref, b in sim.batches.items()],
        job_refs=lambda sim: {
            index(r.ref): str(r.id) for b in sim.batches.values() for r in b.records if r.fate == "succeeded"
        },
        issued=lambda sim: list(sim.tokens),
        later_calls=later_calls,
        finish=lambda sim: (setattr(sim, "batch_seconds", 0.0), _finish_all(sim.batches.values())),
    )


VENDORS: dict[str, Vendor] = {v.name: v for v in (_ivvy(), _willsuite(), _superoffice(), _os1())}


# --- the enumeration -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultCell:
    provider: str
    call: str
    fault: str
    when: str

    @property
    def id(self) -> str:
        return f"{self.provider}-{self.call}-{self.fault}-{self.when}"


@dataclass(frozen=True)
class Baseline:
    provider: str

    @property
    def id(self) -> str:
        return f"{self.provider}-baseline"


@dataclass(frozen=True)
class CancelCell:
    provider: str
    phase: str

    @property
    def id(self) -> str:
        return f"{self.provider}-cancel-{self.phase}"


@dataclass(frozen=True)
class RaceCell:
    provider: str
    race: str

    @property
    def id(self) -> str:
        return f"{self.provider}-race-{self.race}"


Cell = FaultCell | Baseline | CancelCell | RaceCell


def exists(provider: str, call: str, fault: str) -> bool:
    """The rule that leaves cells out: a provider makes the call, and a 401 needs credentials to refuse."""
    vendor = VENDORS[provider]
    return call in vendor.endpoints and (fault != "401" or call in vendor.credentialed)


def fault_cells() -> list[FaultCell]:
    return [
        FaultCell(p, c, f, w)
        for p in VENDORS
        for c in CALLS
        for f in FAULTS
        for w in WHENS
        if exists(p, c, f)
    ]


def all_cells() -> list[Cell]:
    """The whole matrix: every fault cell, and per provider its baseline, cancels and races."""
    cells: list[Cell] = [Baseline(p) for p in VENDORS]
    cells += fault_cells()
    cells += [CancelCell(p, phase) for p in VENDORS for phase in PHASES]
    cells += [RaceCell(p, race) for p in VENDORS for race in RACES]
    return cells


#: Cells the cross-section always holds beside its rotation: faults that once found a bug.
REGRESSIONS: tuple[Cell, ...] = (
    # The running chunk's jobs were tagged AMBIGUOUS_SUBMIT when the next chunk's answer was lost.
    FaultCell("ivvy", "submit", "timeout", "mid"),
)
#: Cells known to fail, with what is wrong (the test marks them xfail, strict: one that passes is news).
KNOWN_FAILURES: dict[str, str] = {}
#: Providers the cancels and races of the cross-section take turns on: those whose two chunks are a few
#: hundred jobs (OS1's are 1,025, and its cells are its baseline and one per call).
LIGHT_PROVIDERS = ("ivvy", "willsuite", "superoffice")


def cross_section() -> list[Cell]:
    """A fixed part of the matrix for every ``make test``: each provider's baseline; one fault cell per
    call of each provider, the faults and whens taken in turn (so every call of every provider, every
    fault and both whens come up); each cancel phase and each race once; a cell for each rule of the
    contract the rotation left out; and :data:`REGRESSIONS`."""
    cells: list[Cell] = [Baseline(p) for p in VENDORS]
    faults, turn = list(FAULTS), 0
    for n, (provider, call) in enumerate((p, c) for p, v in VENDORS.items() for c in v.calls):
        while not exists(provider, call, faults[turn % len(faults)]):
            turn += 1
        cells.append(FaultCell(provider, call, faults[turn % len(faults)], WHENS[n % len(WHENS)]))
        turn += 1
    light = LIGHT_PROVIDERS
    cells += [CancelCell(light[i % len(light)], phase) for i, phase in enumerate(PHASES)]
    cells += [RaceCell(light[(i + 1) % len(light)], race) for i, race in enumerate(RACES)]
    # every rule of the contract decides at least one cell (the first such cell on a light provider)
    ruled = {expected(c).rule for c in cells if isinstance(c, FaultCell)}
    for cell in fault_cells():
        if cell.provider in light and expected(cell).rule not in ruled:
            ruled.add(expected(cell).rule)
            cells.append(cell)
    cells += [c for c in REGRESSIONS if c not in cells]
    return cells


# --- the contract ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expected:
    status: str
    code: str | None = None  # the batch error's code
    ambiguous: tuple[int, ...] = ()  # chunks the batch must name as ambiguous
    reconciled: tuple[int, ...] = ()  # chunks recorded from the vendor's own listing
    stops: bool = False  # whether each running chunk's stop is confirmed is part of the expectation
    unconfirmed_stops: tuple[int, ...] = ()  # then: chunks whose stop the vendor did not confirm
    rule: str = ""


def faulted_chunk(cell: FaultCell) -> int:
    return 0 if cell.when == "first" else 1


def expected(cell: FaultCell) -> Expected:
    """What the contract says the cell ends as (see the module doc)."""
    vendor = VENDORS[cell.provider]
    chunk = faulted_chunk(cell)
    if cell.fault == "401":
        if cell.call == "token":
            return Expected(
                "FAILED", "PROVIDER_AUTH_FAILED", rule="the token endpoint refused the credentials"
            )
        if not vendor.refreshes_on_401:
            return Expected("FAILED", "PROVIDER_AUTH_FAILED", rule="no fresh authentication to make")
        if cell.call == "cancel":
            return Expected(
                "CANCELLED", "CANCELLED", stops=True, rule="a 401 once is healed; the stop confirmed"
            )
        return Expected("SUCCEEDED", rule="a 401 once is healed by one fresh authentication")
    if cell.call == "submit":
        if cell.fault in SENT_NOTHING:
            return Expected("SUCCEEDED", rule="not taken, so sent again")
        if vendor.lists_submissions:
            return Expected("SUCCEEDED", reconciled=(chunk,), rule="never resent; found in the vendor's list")
        return Expected(
            "NEEDS_ATTENTION", "AMBIGUOUS_SUBMIT", ambiguous=(chunk,), rule="never resent; the chunk is named"
        )
    if cell.call == "cancel":
        return Expected(
            "CANCELLED", "CANCELLED", stops=True, unconfirmed_stops=(chunk,), rule="the stop is not confirmed"
        )
    return Expected("SUCCEEDED", rule="transient: ridden out by the retries")


# --- running cells ---------------------------------------------------------------------------------------
@dataclass
class CellResult:
    cell: Cell
    problems: list[str] = field(default_factory=list)
    batch_id: str | None = None
    seconds: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    credentials: list[str] = field(default_factory=list, repr=False)

    def report(self) -> str:
        lines = [f"{self.cell.id} (batch {self.batch_id}, {self.seconds:.0f} s):"]
        lines += [f"  - {p}" for p in self.problems]
        lines += [f"  {k}: {v}" for k, v in self.evidence.items()]
        return "\n".join(lines)


class LogCapture:
    """Every handler log record (Powertools' JSON at DEBUG, formatted as Lambda would ship it) and every
    httpx request line, for the no-secret check. Lines are filed under the batch ids, connection names and
    vendor addresses they mention, so a cell takes those that concern it without reading everything."""

    _KEYS = re.compile(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|fm-[a-z0-9]+-[0-9a-f]{12}|:\d+/"
    )

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.filed: dict[str, list[str]] = {}
        self._saved: list[tuple[logging.Logger, list[logging.Handler], int, bool]] = []
        capture = self

        class Filing(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                line = self.format(record)
                with capture._lock:
                    capture.lines.append(line)
                    for key in set(capture._KEYS.findall(line)):
                        capture.filed.setdefault(key, []).append(line)

        self._lock = threading.Lock()
        self._handler_type = Filing

    def __enter__(self) -> LogCapture:
        from batchbridge.observability import logger

        powertools = self._handler_type()
        powertools.setFormatter(logger.registered_formatter)
        plain = self._handler_type()
        plain.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        for target, handler, level in (
            (logging.getLogger(logger.name), powertools, logging.DEBUG),
            (logging.getLogger("httpx"), plain, logging.INFO),
        ):
            self._saved.append((target, list(target.handlers), target.level, target.propagate))
            target.handlers = [handler]  # instead of stdout: the same text, kept
            target.setLevel(level)
            target.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        for target, handlers, level, propagate in self._saved:
            target.handlers = handlers
            target.setLevel(level)
            target.propagate = propagate

    def lines_about(self, *keys: str) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(line for key in keys for line in self.filed.get(key, [])))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


class Hooks:
    """Per-connection hooks on repository steps (a cell's batch is known by its connection before its id
    is): ``before_start_submitting`` and ``after_begin_collecting`` run once, in the task's own thread."""

    def __init__(self) -> None:
        self.before_start_submitting: dict[str, Callable[[str], None]] = {}
        self.after_begin_collecting: dict[str, Callable[[str], None]] = {}
        self._lock = threading.Lock()

    def _pop(self, table: dict[str, Callable[[str], None]], connection: str) -> Callable[[str], None] | None:
        with self._lock:
            return table.pop(connection, None)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Hooks]:
        from batchbridge.repository import Repository

        start, begin = Repository.start_submitting, Repository.begin_collecting
        hooks = self

        def start_submitting(repo: Any, batch_id: str, callback: dict[str, str]) -> Any:
            if hooks.before_start_submitting:
                hook = hooks._pop(hooks.before_start_submitting, repo.get_batch(batch_id).connection)
                if hook is not None:
                    hook(batch_id)
            return start(repo, batch_id, callback)

        def begin_collecting(repo: Any, batch_id: str) -> Any:
            batch = begin(repo, batch_id)
            if batch is not None and hooks.after_begin_collecting:
                hook = hooks._pop(hooks.after_begin_collecting, batch.connection)
                if hook is not None:
                    hook(batch_id)
            return batch

        Repository.start_submitting = start_submitting  # type: ignore[method-assign]
        Repository.begin_collecting = begin_collecting  # type: ignore[method-assign]
        try:
            yield self
        finally:
            Repository.start_submitting = start  # type: ignore[method-assign]
            Repository.begin_collecting = begin  # type: ignore[method-assign]


@dataclass
class Context:
    stack: Any
    logs: LogCapture
    hooks: Hooks


class CellRun:
    """One cell's batch: its simulator and connection, the batch, and the checks."""

    def __init__(self, ctx: Context, cell: Cell) -> None:
        self.ctx = ctx
        self.stack = ctx.stack
        self.cell = cell
        self.vendor = VENDORS[cell.provider]
        self.secrets = Secrets()
        self.sim: Any = self.vendor.make(self.secrets)
        self.connection = f"fm-{cell.provider[:3]}-{uuid.uuid4().hex[:12]}"
        self.result = CellResult(cell, credentials=list(self.secrets.values.values()))
        self.client_faults: ClientFaults | None = None
        self.jobs = self.vendor.jobs(self.vendor.chunk_size + 1)  # two chunks

    # -- the parts of a run -------------------------------------------------------------------------------
    def start(self, job_seconds: float) -> None:
        self.sim.start()
        setattr(self.sim, self.vendor.duration_knob, job_seconds)
        self.sim.faults.lose_callbacks = True
        self.vendor.connect(self.stack, self.connection, self.sim)

    def submit(self) -> str:
        body: dict[str, Any] = {
            "provider": self.vendor.name,
            "connection": self.connection,
            "jobs": self.jobs,
        }
        if self.vendor.options:
            body["options"] = self.vendor.options
        status, answer = self.stack.api("POST", "/batches", body)
        if status != 202:
            raise AssertionError(f"POST /batches answered {status}: {answer}")
        self.result.batch_id = answer["batchId"]
        return str(answer["batchId"])

    def aim(self, call: str, **knobs: Any) -> None:
        endpoint = self.vendor.endpoints[call]
        self.sim.faults.only_paths = endpoint.paths
        self.sim.faults.only_methods = endpoint.methods
        for knob, value in knobs.items():
            setattr(self.sim.faults, knob, value)

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"{what}: not within {timeout:.0f}s")
            time.sleep(0.2)

    def status(self, batch_id: str) -> str:
        return str(self.stack.repo.get_batch(batch_id).status.value)

    def cancel(self, batch_id: str) -> tuple[int, Any]:
        return self.stack.api("POST", f"/batches/{batch_id}/cancel")

    def check(self, batch_id: str) -> None:
        """Every invariant, then the batch as the cell expects it (the caller adds its own checks)."""
        wait_until_finished(self.stack, batch_id)  # the vendor's view is read once the batch is done
        self.result.problems += check_invariants(
            self.stack,
            batch_id,
            self.jobs,
            vendor=self.vendor.view(self.sim),
            secrets=self._secrets(),
            logs=self.ctx.logs.lines_about(
                batch_id, self.connection, f":{self.sim.base_url.rpartition(':')[2]}/"
            ),
        )
        view = self.stack.batch(batch_id)
        record = self.stack.repo.get_batch(batch_id)
        chunks = list(self.stack.repo.iter_chunks(batch_id))
        self.result.evidence.update(
            status=view["status"],
            error=view.get("error"),
            counts=view.get("counts"),
            polls=view.get("polls"),
            ambiguous=record.ambiguous_chunks,
            chunks=[(c.index, c.state.value, c.provider_ref, c.reconciled) for c in chunks],
            vendor=[(ref, f"jobs {min(ix)}-{max(ix)}") for ref, ix in self.vendor.view(self.sim).submissions],
        )
        self.view, self.record, self.chunks = view, record, chunks

    def _secrets(self) -> Secrets:
        secrets = Secrets(dict(self.secrets.values), list(self.secrets.basic_pairs))
        with self.sim._lock:
            issued = self.vendor.issued(self.sim)
            listed = getattr(self.sim, "secret_values", lambda: [])()
        for n, token in enumerate([*issued, *listed]):
            secrets.add(f"issued or held {n}", token)
        return secrets

    def expect(self, want: Expected) -> None:
        problems = self.result.problems
        view, record = self.view, self.record
        if view["status"] != want.status:
            problems.append(f"ended {view['status']}, the contract says {want.status} ({want.rule})")
        error = view.get("error") or {}
        if want.code is not None and error.get("code") != want.code:
            problems.append(f"error code {error.get('code')!r}, the contract says {want.code!r}")
        if want.status == "SUCCEEDED" and (view.get("counts") or {}).get("succeeded") != len(self.jobs):
            problems.append(
                f"{(view.get('counts') or {}).get('succeeded')} of {len(self.jobs)} jobs succeeded"
            )
        if sorted(set(record.ambiguous_chunks)) != list(want.ambiguous):
            problems.append(
                f"the batch names chunks {sorted(set(record.ambiguous_chunks))} as ambiguous, "
                f"not {list(want.ambiguous)}"
            )
        for index in want.ambiguous:
            if f"chunk {index}" not in str(error.get("message", "")):
                problems.append(f"the batch's error does not name chunk {index}: {error.get('message')!r}")
        for index in want.reconciled:
            chunk = next((c for c in self.chunks if c.index == index), None)
            if chunk is None or not chunk.reconciled:
                problems.append(f"chunk {index} was not recorded from the vendor's listing")
        if view["status"] == "CANCELLED":
            # Every chunk the vendor had taken and the batch left running is named, with what its stop did.
            for chunk in self.chunks:
                if chunk.provider_ref is None or chunk.state.value != "ABANDONED":
                    continue
                if chunk.cancel is None:
                    said = "no cancel sent"
                else:
                    said = "cancel confirmed" if chunk.cancel.confirmed else "cancel not confirmed"
                if f"chunk {chunk.index} ({chunk.provider_ref}: {said})" not in str(error.get("message", "")):
                    problems.append(f"the batch's error does not say chunk {chunk.index}: {said}")
                if want.stops and self.vendor.supports_cancel:
                    should = (
                        "cancel not confirmed"
                        if chunk.index in want.unconfirmed_stops
                        else "cancel confirmed"
                    )
                    if said != should:
                        problems.append(f"chunk {chunk.index}: {said}, the contract says {should}")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running: it never started
            self.stack.client_faults.clear(self.sim.base_url)
        self.sim.stop()


def _fault_knobs(cell: FaultCell) -> dict[str, Any]:
    skip = 0
    if cell.when == "mid":
        skip = 2 if cell.call == "status" else 1  # the second round's first request; else the second request
    return {
        "refused": {},
        "timeout": {"hold_answer_next": 1, "hold_answer_seconds": PROVIDER_READ_TIMEOUT + 1.5},
        "5xx": {"error_after_handling_next": 1},
        "429": {"throttle_next": 1, "retry_after_seconds": RETRY_AFTER},
        "dropped": {"drop_after_handling_next": 1},
        "truncated": {"truncated_next": 1},
        "malformed": {"malformed_next": 1},
        "wrong-shape": {"wrong_shape_next": 1},
        "401": {"refuse_credentials_next": 1},
    }[cell.fault] | {"skip_next": skip}


#: Calls made while the jobs run: the jobs run until the fault has met its request, then end, so that a
#: later poll or a token renewal comes however slowly the machine runs.
WHILE_RUNNING = frozenset({"token", "discovery", "status"})


def run_fault_cell(run: CellRun, cell: FaultCell) -> None:
    vendor = run.vendor
    # Long jobs where the batch must stop while chunks still run: a cancel, and a submit the contract
    # ends at (chunk 0 is then certainly running, not finished, when the batch stops at chunk 1).
    hold = cell.call in WHILE_RUNNING
    long_jobs = hold or cell.call == "cancel" or expected(cell).status == "NEEDS_ATTENTION"
    run.start(job_seconds=60.0 if long_jobs else (4.5 if vendor.name == "willsuite" else 3.0))
    if cell.when == "mid":
        vendor.later_calls(run.sim, cell.call)
    knobs = _fault_knobs(cell)
    if cell.fault == "refused":
        endpoint = vendor.endpoints[cell.call]
        run.client_faults = run.stack.client_faults.aim(
            run.sim.base_url,
            ClientFaults(
                refuse_next=1,
                skip_next=knobs["skip_next"],
                only_paths=endpoint.paths,
                only_methods=endpoint.methods,
            ),
        )
    else:
        run.aim(cell.call, **knobs)

    def met() -> bool:
        if run.client_faults is not None:
            return run.client_faults.refused == 1
        return all(getattr(run.sim.faults, k) == 0 for k in knobs if k.endswith("_next"))

    done = threading.Event()
    if hold:

        def finish_when_met() -> None:
            while not done.wait(0.2):
                if met():
                    with run.sim._lock:
                        vendor.finish(run.sim)
                    return

        threading.Thread(target=finish_when_met, name=f"{cell.id}-finish", daemon=True).start()
    try:
        batch_id = run.submit()
        if cell.call == "cancel":
            run.wait_for("the batch running", lambda: run.status(batch_id) == "RUNNING")
            status, answer = run.cancel(batch_id)
            if status != 202:
                run.result.problems.append(f"the cancel was answered {status}: {answer}")
        run.check(batch_id)
    finally:
        done.set()
    run.expect(expected(cell))
    if not met():
        run.result.problems.append(
            f"the fault never met its request: {cell.fault} on {cell.call} ({cell.when})"
        )


def run_baseline(run: CellRun, cell: Baseline) -> None:
    run.start(job_seconds=2.0)
    batch_id = run.submit()
    run.check(batch_id)
    run.expect(Expected("SUCCEEDED", rule="no fault"))
    # Every call listed for the vendor but cancel is one a batch makes: none is listed in vain.
    seen = classify(run.vendor, run.sim)
    unseen = [c for c in run.vendor.calls if c != "cancel" and not seen.get(c)]
    if unseen:
        run.result.problems.append(f"a batch made none of the listed calls {unseen}")


def run_cancel_cell(run: CellRun, cell: CancelCell) -> None:
    cancels: list[tuple[int, Any]] = []

    def cancel_now(batch_id: str) -> None:
        cancels.append(run.cancel(batch_id))

    long_jobs = cell.phase in ("submitting", "running")
    run.start(job_seconds=30.0 if long_jobs else 2.0)
    if cell.phase == "accepted":
        run.ctx.hooks.before_start_submitting[run.connection] = cancel_now
    elif cell.phase == "collecting":
        run.ctx.hooks.after_begin_collecting[run.connection] = cancel_now
    elif cell.phase == "submitting":
        run.aim("submit", latency_seconds=2.0)
    batch_id = run.submit()
    if cell.phase == "submitting":
        run.wait_for(
            "a submit in flight",
            lambda: any(c.state.value == "SUBMITTING" for c in run.stack.repo.iter_chunks(batch_id)),
        )
        cancel_now(batch_id)
        # Claims stop once the cancel is recorded: if chunk 1 was claimed by then (the cancel answered
        # slowly on a busy machine), the cancel came after chunk 0's submit, and chunk 1 may reach the vendor.
        chunk_1 = run.stack.repo.get_chunk(batch_id, 1)
        late = chunk_1.state.value == "SUBMITTING" or chunk_1.provider_ref is not None
        run.result.evidence["chunk 1 claimed before the cancel"] = late
    elif cell.phase == "running":
        run.wait_for("the batch running", lambda: run.status(batch_id) == "RUNNING")
        cancel_now(batch_id)
    elif cell.phase == "finished":
        wait_until_finished(run.stack, batch_id)
        cancel_now(batch_id)
    else:
        run.wait_for(f"the {cell.phase} hook", lambda: bool(cancels))
    run.result.evidence["cancel answers"] = cancels
    run.check(batch_id)
    if cell.phase == "finished":
        if [c[0] for c in cancels] != [409] or cancels[0][1].get("error", {}).get("code") != "BATCH_FINISHED":
            run.result.problems.append(
                f"a cancel after the end was answered {cancels}, not 409 BATCH_FINISHED"
            )
        run.expect(Expected("SUCCEEDED", rule="a finished batch stays as it ended"))
        return
    if [c[0] for c in cancels] != [202]:
        run.result.problems.append(f"the cancel was answered {cancels}, not 202")
    run.expect(
        Expected(
            "CANCELLED", "CANCELLED", stops=cell.phase != "collecting", rule=f"cancelled {PHASES[cell.phase]}"
        )
    )
    sent = {c.index for c in run.chunks if c.provider_ref is not None}
    wanted = {"accepted": set(), "submitting": {0}, "running": {0, 1}}.get(cell.phase)
    if cell.phase == "submitting" and run.result.evidence.get("chunk 1 claimed before the cancel"):
        wanted = {0, 1}
    if wanted is not None and sent != wanted:
        run.result.problems.append(
            f"chunks {sorted(sent)} reached the vendor; a cancel {PHASES[cell.phase]} allows {sorted(wanted)}"
        )


def run_race_cell(run: CellRun, cell: RaceCell) -> None:
    answers: list[str] = []
    if cell.race == "two-submits":
        run.start(job_seconds=2.0)
        run.aim("submit", latency_seconds=1.5)
        batch_id = run.submit()
        run.wait_for(
            "a submit in flight",
            lambda: any(c.state.value == "SUBMITTING" for c in run.stack.repo.iter_chunks(batch_id)),
        )
        barrier = threading.Barrier(2)

        def duplicate() -> None:
            barrier.wait()
            try:
                step = run.stack.functions["SubmitBatchFunction"].invoke({"batchId": batch_id, "error": None})
                answers.append(f"returned {step}")
            except BatchBridgeError as exc:  # typed: the workflow's Retry or Catch knows it
                answers.append(f"raised {type(exc).__name__}: {exc}")
            except Exception as exc:
                answers.append(f"raised {type(exc).__name__}: {exc}")
                run.result.problems.append(f"a duplicate submit failed with an untyped error: {exc!r}")

        threads = [threading.Thread(target=duplicate) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run.result.evidence["duplicate submits"] = answers
        run.check(batch_id)
        run.expect(Expected("SUCCEEDED", rule="each chunk sent once, whoever sends it"))
        return
    # check-and-cancel
    vendor = run.vendor
    run.start(job_seconds=4.5 if vendor.name == "willsuite" else 3.0)
    run.aim("status", latency_seconds=2.0)
    batch_id = run.submit()
    endpoint = vendor.endpoints["status"]
    submits_own = 2 * vendor.status_reads_per_submit  # the two chunks' own reads come first
    run.wait_for(
        "a status check in flight",
        lambda: (
            sum(endpoint.matches(r.method, r.raw_path) is not None for r in list(run.sim.requests))
            > submits_own
        ),
    )
    status, answer = run.cancel(batch_id)
    run.result.evidence["cancel answer"] = (status, answer)
    if status != 202:
        run.result.problems.append(f"the cancel was answered {status}: {answer}")
    run.check(batch_id)
    run.expect(Expected("CANCELLED", "CANCELLED", rule="a cancel requested before the end wins"))


def run_cell(ctx: Context, cell: Cell) -> CellResult:
    """Run one cell to its end and check it; never raises (a crash is a problem of the cell)."""
    started = time.monotonic()
    run = CellRun(ctx, cell)
    try:
        if isinstance(cell, FaultCell):
            run_fault_cell(run, cell)
        elif isinstance(cell, Baseline):
            run_baseline(run, cell)
        elif isinstance(cell, CancelCell):
            run_cancel_cell(run, cell)
        else:
            run_race_cell(run, cell)
    except Exception as exc:
        run.result.problems.append(f"the cell could not run: {type(exc).__name__}: {exc}")
        # The frames of this repository (where it went wrong), then the last ones (what raised).
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "site-packages" not in f.filename]
        run.result.evidence["traceback"] = "".join(
            traceback.format_list(ours[-8:] + [f for f in frames[-3:] if f not in ours])
            + traceback.format_exception_only(exc)
        )
    finally:
        with contextlib.suppress(Exception):
            requests = run.result.evidence["requests"] = classify(run.vendor, run.sim)
            if "?" in requests:
                run.result.problems.append(
                    f"{requests['?']} requests the simulator received are none of {run.vendor.name}'s calls"
                )
        run.stop()
    run.result.seconds = time.monotonic() - started
    return run.result


def classify(vendor: Vendor, sim: Any) -> dict[str, int]:
    """How many requests the simulator received per call (the longest matching fragment decides);
    ``?`` counts those that are none of the vendor's calls."""
    counts: dict[str, int] = {}
    known = {**vendor.endpoints, **vendor.follow_ups}
    with sim._lock:
        requests = list(sim.requests)
    for request in requests:
        matched = [
            (len(f), call) for call, e in known.items() if (f := e.matches(request.method, request.raw_path))
        ]
        call = max(matched)[1] if matched else "?"
        counts[call] = counts.get(call, 0) + 1
    return counts


def run_cells(stack: Any, cells: list[Cell], workers: int = 16) -> dict[str, CellResult]:
    """Run the cells concurrently on the one local stack, each with its own simulator and connection."""
    ctx = Context(stack, LogCapture(), Hooks())
    with ctx.logs, ctx.hooks.installed(), ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda c: run_cell(ctx, c), cells))
        everything = ctx.logs.text()
    # A credential of any cell anywhere in the logs, whatever line it is on, is that cell's leak.
    leaked = set(re.findall(r"CANARY[A-Za-z]*[0-9a-f]{32}", everything))
    for result in results:
        mine = sorted(leaked & set(result.credentials))
        if mine:
            result.problems.append(f"{len(mine)} of its credentials are in the handler logs")
    return {r.cell.id: r for r in results}


def describe() -> str:
    """The enumeration, as ``python -m tests.workflow.matrix`` prints it."""
    cells = fault_cells()
    out = [
        f"fault cells: {len(cells)} (per provider: its calls x 9 faults x 2 whens, "
        "less 401 on a call without credentials)"
    ]
    for provider, vendor in VENDORS.items():
        mine = [c for c in cells if c.provider == provider]
        out.append(f"  {provider:<12} {len(mine):>3}  calls: {', '.join(vendor.calls)}")
    everything = all_cells()
    out.append(
        f"with a baseline, {len(PHASES)} cancel phases and {len(RACES)} races per provider: "
        f"{len(everything)} cells; "
        f"cross-section (make test): {len(cross_section())}"
    )
    return "\n".join(out)


if __name__ == "__main__":
    print(describe())
