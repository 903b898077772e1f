"""``batchbridge local invoke FUNCTION EVENT``: one file of ``events/`` through its function's real handler
on the local stack, after making what the event names, as ``sam local invoke`` runs a function on an event.

An event names things that must exist for its answer to mean anything: the batch a task event carries,
the batch, upload or callback token in an API path, the upload a ``POST /batches`` starts from, the
statuses a listing asks for. :class:`Replay` makes them on a running local stack -- through the real
API, the real workflow and the vendor's simulator -- with the ids the event names, then invokes the
handler with the event exactly as the file holds it and returns what the handler returned.

How things are made
-------------------
* **Ids.** The API draws a new batch's or upload's id at random, the submit task a batch's callback
  token, and the iVvy simulator the reference of each submission. While a thing an event names is made,
  those draws are pinned to the event's values (:func:`pinned`); nothing else is changed.
* **A task event** replays one state of the workflow. Its batch (iVvy, three booking sessions, one of
  them invalid) is created through the API, and its execution runs the real definition cut short just
  before that state (:func:`definition_until`): the batch is left exactly as the workflow hands it to
  the task. An event that carries an error (a ``Catch`` handed it on) is made by a run that really fails
  with that error (:data:`FAILURES`), and the seeding checks that it did.
* **An API event** gets what its route reads: a finished batch (``GET /batches/{id}``, its results, a
  retry), a running one (a cancel), one parked for the vendor's callback with the path's token and the
  body's reference (a callback), one finished batch per status a listing asks for, an upload at the step
  its route expects. Finished and running batches run on the real workflow; a batch that exists already
  in the state wanted is used as it is, so several events may name one batch.

One :class:`Replay` serves one event: the simulator's speed is set for it, and leaving the replay waits
for every execution the event started (a create, a retry, a cancel) to end before the simulator stops.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import boto3

#: The Succeed state a cut-short definition ends in.
STOP_STATE = "Replay Stops Here"
#: How long the simulated vendor takes per run while seeding, unless the event needs it still running.
JOB_SECONDS = 0.2
#: ... and when it must still be running when the event arrives.
STILL_RUNNING_SECONDS = 3600.0
CONNECTION = "ivvy-local"  # the name `batchbridge local serve` gives its iVvy connection
REFERENCE = "replayed-event"
SETTLE_SECONDS = 120.0


class SeedError(Exception):
    """What the event names could not be made (or would not mean what the event says)."""


# --- pinning the ids the code draws ------------------------------------------------------------------
class _Drawn:
    """A module as another module sees it, except that the named functions return the given values, one
    per call and in order; every other name is the module's own."""

    def __init__(self, module: ModuleType, values: dict[str, list[Any]]) -> None:
        self._module = module
        self._left = {name: list(v) for name, v in values.items()}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name not in self._left:
            return getattr(self._module, name)

        def draw(*_: Any, **__: Any) -> Any:
            with self._lock:
                if not self._left[name]:
                    raise SeedError(
                        f"{self._module.__name__}.{name} was called more often than seeding expects"
                    )
                return self._left[name].pop(0)

        return draw

    def undrawn(self) -> list[str]:
        return [name for name, left in self._left.items() if left]


@contextmanager
def pinned(owner: ModuleType, name: str, **values: list[Any]) -> Iterator[None]:
    """While inside, the module ``owner`` imported as ``name`` answers ``values`` from the named
    functions (``pinned(api, "uuid", uuid4=[UUID(...)])``); every value must have been drawn by the end.

    Only ``owner``'s view changes, but for every thread: pin only while nothing else runs on the stack.
    """
    stand_in = _Drawn(getattr(owner, name), values)
    with mock.patch.object(owner, name, stand_in):
        yield
    if stand_in.undrawn():
        raise SeedError(
            f"{owner.__name__} never called {name}.{', '.join(stand_in.undrawn())}: it no longer draws that "
            f"id where {__name__} pins it"
        )


# --- the workflow, cut short ---------------------------------------------------------------------------
def definition_until(definition: dict[str, Any], state: str) -> dict[str, Any]:
    """``definition`` with every transition into ``state`` ending the execution instead, in a Succeed
    state: an execution then leaves its batch exactly as the workflow hands it to ``state``, and its
    output is the input ``state`` would have been given."""
    if state not in definition["States"]:
        raise SeedError(f"the state machine has no state {state!r}")
    cut = copy.deepcopy(definition)

    def redirect(target: str) -> str:
        return STOP_STATE if target == state else target

    cut["StartAt"] = redirect(cut["StartAt"])
    for body in cut["States"].values():
        for key in ("Next", "Default"):
            if key in body:
                body[key] = redirect(body[key])
        for rule in (*body.get("Choices", ()), *body.get("Catch", ())):
            rule["Next"] = redirect(rule["Next"])
    cut["States"][STOP_STATE] = {
        "Type": "Succeed",
        "Comment": f"The replay of an event for {state!r} starts here.",
    }
    return cut


def task_state(definition: dict[str, Any], function_arn: str) -> str:
    """The state that invokes the function ``function_arn`` (as a task, or waiting on a task token)."""
    for name, body in definition["States"].items():
        if function_arn in (body.get("Resource"), body.get("Parameters", {}).get("FunctionName")):
            return str(name)
    raise SeedError(f"no state of the workflow invokes {function_arn}")


# --- how a run is made to fail ---------------------------------------------------------------------------
def _stale_clock(sim: Any) -> None:
    # iVvy refuses a request signed more than five minutes off its clock (401, specificCode 23005).
    sim.clock_offset_seconds = 3600


def _lost_submit_answer(sim: Any) -> None:
    # iVvy takes the run and the connection drops before its answer: nobody can tell whether it was taken.
    sim.faults.drop_after_handling_next = 1
    sim.faults.only_paths = ("action=run",)


#: The error a collect or finalize event carries -> what the iVvy simulator does so that the run fails
#: with it (the submit is refused, or its answer is lost).
FAILURES: dict[str, Callable[[Any], None]] = {
    "ProviderAuthError": _stale_clock,
    "AmbiguousSubmitError": _lost_submit_answer,
}


def _all_invalid(sim: Any) -> None:
    sim.fail_jobs = 1.0


def _never_finishes(sim: Any) -> None:
    sim.never_finish = True


#: How a finished batch of each status is made: (jobs invalid every n-th, a simulator setting, deadline).
FINISHES: dict[str, tuple[int, Callable[[Any], None] | None, int | None]] = {
    "SUCCEEDED": (0, None, None),
    "PARTIALLY_SUCCEEDED": (3, None, None),
    "FAILED": (0, _all_invalid, None),
    "TIMED_OUT": (0, _never_finishes, 3),
    "NEEDS_ATTENTION": (0, _lost_submit_answer, None),
    "CANCELLED": (0, None, None),  # cancelled through the API while it runs
}


@contextmanager
def _settings(sim: Any, change: Callable[[Any], None] | None) -> Iterator[None]:
    """The simulator changed by ``change`` while inside, then as it was."""
    from batchbridge_local.simulators.base import Faults

    saved = {k: getattr(sim, k) for k in ("clock_offset_seconds", "never_finish", "fail_jobs", "job_seconds")}
    faults = sim.faults
    sim.faults = Faults()
    if change is not None:
        change(sim)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(sim, key, value)
        sim.faults = faults


# --- making what an event names --------------------------------------------------------------------------
class Replay:
    """Makes what one event names on a running local stack, then runs the event through its handler.

    >>> event = json.loads(Path("events/check_status/poll.json").read_text())    # doctest: +SKIP
    >>> with LocalStack(serve_s3=True) as stack, Replay(stack) as replay:
    ...     answer = replay.run("CheckStatusFunction", event)
    """

    def __init__(self, stack: Any, *, log: Callable[[str], None] | None = None) -> None:
        self.stack = stack
        self.log = log or (lambda _: None)
        self._sims: dict[str, Any] = {}
        self._machines: dict[str, str] = {}
        self._definition: dict[str, Any] = json.loads(stack.definition)

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.settle()
        finally:
            for sim in self._sims.values():
                sim.stop()
            self._sims.clear()

    # --- the two steps ------------------------------------------------------------------------------
    def run(self, function: str, event: dict[str, Any]) -> Any:
        """Make what ``event`` names, then invoke ``function``'s handler with it; its answer."""
        self.seed(function, event)
        return self.invoke(function, event)

    def seed(self, function: str, event: dict[str, Any]) -> None:
        if function not in self.stack.functions:
            raise SeedError(f"no function {function!r} in the template")
        self.settle()  # ids are pinned while seeding: nothing else may be drawing them
        self._simulator()  # whatever the event starts runs on this replay's simulator
        if function == "ApiFunction":
            self._seed_request(event)
        elif function == "ValidateUploadFunction":
            self._upload(_field(event, "uploadId"), "completed")
        else:
            self._seed_task(function, event)

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """The handler's answer to a copy of ``event`` (what it raises, it raises)."""
        return self.stack.functions[function].invoke(json.loads(json.dumps(event)))

    def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Wait until no execution runs on the stack's state machines (the real one and the cut ones)."""
        sfn = boto3.client("stepfunctions")
        machines = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
        end = time.monotonic() + timeout
        while any(
            sfn.list_executions(stateMachineArn=m, statusFilter="RUNNING")["executions"] for m in machines
        ):
            if time.monotonic() > end:
                raise SeedError(f"executions still running after {timeout:.0f} s")
            time.sleep(0.2)

    # --- task events -----------------------------------------------------------------------------------
    def _seed_task(self, function: str, event: dict[str, Any]) -> None:
        batch_id = _field(event, "batchId")
        failure = event.get("error")
        error = failure.get("Error") if isinstance(failure, dict) else None
        sim = self._simulator()
        if function == "AwaitCallbackFunction":
            sim.job_seconds = STILL_RUNNING_SECONDS  # no callback may have come before the workflow parks
        if error is not None:
            if error not in FAILURES:
                known = ", ".join(sorted(FAILURES))
                raise SeedError(f"no way to make a run fail with {error}; events may carry {known}")
            FAILURES[error](sim)
        state = task_state(self._definition, self._arn(function))
        machine = self._machine_until(state)
        self._create(batch_id, self._request(3, invalid_every=3), machine)
        output = self._finished_execution(machine, batch_id)
        got = (output.get("error") or {}).get("Error")
        if got != error:
            raise SeedError(
                f"the run that made batch {batch_id} reached {state!r} with error {got}, not {error}"
            )
        self.log(
            f"batch {batch_id}: run up to {state!r} ({self.stack.repo.get_batch(batch_id).status.value})"
        )

    # --- API events ----------------------------------------------------------------------------------
    def _seed_request(self, event: dict[str, Any]) -> None:
        method, resource = event.get("httpMethod"), event.get("resource")
        path = event.get("pathParameters") or {}
        query = event.get("queryStringParameters") or {}
        try:
            body = json.loads(event.get("body") or "null")
        except ValueError:
            body = None  # a malformed body names nothing
        if not isinstance(body, dict):
            body = {}
        if (method, resource) == ("POST", "/batches"):
            if body.get("uploadId"):
                self._upload(str(body["uploadId"]), "valid", provider=str(body.get("provider", "ivvy")))
            if body.get("provider") and body.get("connection"):
                self._simulator(str(body["provider"]), str(body["connection"]))
        elif (method, resource) == ("GET", "/batches"):
            self._listed(query)
        elif resource in ("/batches/{batch_id}", "/batches/{batch_id}/results", "/batches/{batch_id}/retry"):
            self._finished(_field(path, "batch_id"), "PARTIALLY_SUCCEEDED")
        elif resource == "/batches/{batch_id}/cancel":
            self._running(_field(path, "batch_id"))
        elif resource == "/callbacks/{batch_id}/{token}":
            self._awaiting_callback(_field(path, "batch_id"), _field(path, "token"), body.get("asyncId"))
        elif resource == "/uploads/{upload_id}/complete":
            self._upload(_field(path, "upload_id"), "uploaded")
        elif resource == "/uploads/{upload_id}":
            self._upload(_field(path, "upload_id"), "valid")
        # anything else (GET /providers, POST /uploads, an unknown route) names nothing

    def _listed(self, query: dict[str, str]) -> None:
        """One finished batch for each status the listing asks for, or one with its client reference."""
        provider = query.get("provider") or "ivvy"
        if provider != "ivvy":
            raise SeedError(f"listed batches are made with iVvy; the event asks for {provider}")
        reference = query.get("clientReference")
        statuses = [s.strip() for s in (query.get("status") or "").split(",") if s.strip()]
        for status in statuses or ["SUCCEEDED"]:
            self._finished(None, status, reference=reference)

    def _finished(self, batch_id: str | None, status: str, *, reference: str | None = None) -> str:
        """A batch that ended ``status`` on the real workflow (made, or found already finished)."""
        if status not in FINISHES:
            raise SeedError(f"no recipe for a {status} batch; known: {', '.join(FINISHES)}")
        existing = self._existing(batch_id) if batch_id else None
        if existing is not None:
            if not existing.status.is_terminal:
                raise SeedError(f"batch {batch_id} exists and is {existing.status.value}, not finished")
            return str(batch_id)
        invalid_every, change, deadline = FINISHES[status]
        sim = self._simulator()
        request = self._request(6, invalid_every=invalid_every, reference=reference, deadline=deadline)
        with _settings(sim, change):
            if status == "CANCELLED":
                sim.job_seconds = STILL_RUNNING_SECONDS
            made = self._create(batch_id, request, self.stack.state_machine_arn)
            if status == "CANCELLED":
                self._wait_status(made, "RUNNING")
                answer = self.stack.api("POST", f"/batches/{made}/cancel")
                if answer[0] != 202:
                    raise SeedError(f"could not cancel batch {made}: {answer}")
            view = self.stack.wait_for_batch(made, timeout=SETTLE_SECONDS)
        if view["status"] != status:
            raise SeedError(f"batch {made} ended {view['status']}, not {status}: {view.get('error')}")
        self.log(f"batch {made}: {status} on the workflow")
        return made

    def _running(self, batch_id: str) -> None:
        """A batch running on the real workflow, its vendor still at work."""
        self._simulator().job_seconds = STILL_RUNNING_SECONDS
        self._create(batch_id, self._request(3), self.stack.state_machine_arn)
        self._wait_status(batch_id, "RUNNING")
        self.log(f"batch {batch_id}: RUNNING on the workflow")

    def _awaiting_callback(self, batch_id: str, token: str, reference: Any) -> None:
        """A running batch whose callback token is ``token`` and whose chunk the vendor knows as
        ``reference``, finished at the vendor, the workflow about to park for its callback."""
        from batchbridge.config import get_settings
        from batchbridge.providers.base import provider_class
        from batchbridge.tasks import submit
        from batchbridge_local.simulators import ivvy

        if not isinstance(reference, str):
            raise SeedError("an iVvy callback names its run: the body needs an asyncId")
        machine = self._machine_until("Wait For Callback Or Next Poll")
        sim = self._simulator()
        with ExitStack() as pins:
            pins.enter_context(pinned(submit, "secrets", token_urlsafe=[token]))
            pins.enter_context(pinned(ivvy, "uuid", uuid4=[_uuid(reference, hex_only=True)]))
            self._create(batch_id, self._request(2), machine)
            self._finished_execution(machine, batch_id)
        # The simulator calls back by itself once the run is done; the event is that callback again. A
        # callback asks the vendor at most once per interval, so the event comes after the interval.
        self.stack.wait_until(
            lambda: any(a.status or a.error for a in sim.callbacks_for(reference)), timeout=SETTLE_SECONDS
        )
        interval = provider_class("ivvy").capabilities.min_poll_seconds * get_settings().poll_time_scale
        time.sleep(interval + 0.2)
        self.log(f"batch {batch_id}: RUNNING, parked for the callback of {reference}")

    # --- uploads -------------------------------------------------------------------------------------------
    def _upload(self, upload_id: str, stage: str, provider: str = "ivvy") -> None:
        """An upload of three iVvy jobs at ``stage``: ``uploaded`` (the file PUT), ``completed``
        (validation started, not yet run) or ``valid``."""
        import httpx

        from batchbridge import uploads
        from batchbridge_local.simulators.ivvy import booking_session_jobs

        wanted = {"uploaded": "AWAITING_UPLOAD", "completed": "VALIDATING", "valid": "VALID"}[stage]
        found = self.stack.repo.get_upload(upload_id) if _is_uuid(upload_id) else None
        if found is not None:
            if found.upload_status != wanted or found.batch_id:
                raise SeedError(f"upload {upload_id} exists and is {found.upload_status}, not {wanted}")
            return
        if provider != "ivvy":
            raise SeedError(f"uploads are made with iVvy jobs; the event asks for {provider}")
        if not self.stack.s3_url:
            raise SeedError("uploads need S3 on loopback: start the local stack with serve_s3=True")
        with pinned(uploads, "uuid", uuid4=[_uuid(upload_id)]):
            status, created = self.stack.api("POST", "/uploads", {"provider": provider, "format": "jsonl"})
        if status != 201:
            raise SeedError(f"POST /uploads answered {status}: {created}")
        lines = b"".join(json.dumps(job).encode() + b"\n" for job in booking_session_jobs(3))
        put = created["upload"]
        httpx.put(put["url"], content=lines, headers=put["headers"], timeout=30).raise_for_status()
        if stage == "completed":  # as POST .../complete leaves it, but with the validator not started
            uploads.complete_upload(upload_id, None, start_validation=lambda _: None)
        elif stage == "valid":
            self.stack.api("POST", f"/uploads/{upload_id}/complete", {})
            self.stack.wait_until(
                lambda: self.stack.api("GET", f"/uploads/{upload_id}")[1].get("status") == "VALID",
                timeout=SETTLE_SECONDS,
            )
        self.log(f"upload {upload_id}: {wanted}")

    # --- helpers ---------------------------------------------------------------------------------------
    def _simulator(self, provider: str = "ivvy", connection: str = CONNECTION) -> Any:
        """The replay's simulator of ``provider`` (started on first use), ``connection`` pointing at it."""
        from batchbridge_local.serve import connect, simulators

        if provider not in self._sims:
            try:
                sim = simulators(JOB_SECONDS)[provider]
            except KeyError:
                raise SeedError(f"no simulator for provider {provider!r}") from None
            self._sims[provider] = sim.start()
        connect(self.stack, provider, self._sims[provider], connection)
        return self._sims[provider]

    def _request(
        self, jobs: int, *, invalid_every: int = 0, reference: str | None = None, deadline: int | None = None
    ) -> dict[str, Any]:
        from batchbridge_local.simulators.ivvy import booking_session_jobs

        request: dict[str, Any] = {
            "provider": "ivvy",
            "connection": CONNECTION,
            "clientReference": reference or REFERENCE,
            "jobs": booking_session_jobs(jobs, invalid_every=invalid_every),
        }
        if deadline is not None:
            request["deadlineSeconds"] = deadline
        return request

    def _create(self, batch_id: str | None, request: dict[str, Any], machine_arn: str) -> str:
        """Accept ``request`` through the API as batch ``batch_id`` (any id when None), its execution
        started on the state machine ``machine_arn``; the batch id."""
        from batchbridge import api
        from batchbridge.tasks import Deps
        from batchbridge.workflow import WorkflowGateway

        if batch_id is not None and self._existing(batch_id) is not None:
            raise SeedError(f"batch {batch_id} exists already; this event needs it made anew")
        deps = replace(Deps.default(), workflow=WorkflowGateway(machine_arn))
        with ExitStack() as pins:
            if batch_id is not None:
                pins.enter_context(pinned(api, "uuid", uuid4=[_uuid(batch_id)]))
            status, answer = api.create_batch(json.dumps(request), None, "/v1", deps=deps)
        if status != 202:
            raise SeedError(f"the API answered {status} to the batch: {answer}")
        return str(answer["batchId"])

    def _existing(self, batch_id: str) -> Any:
        from batchbridge.errors import BatchNotFoundError

        try:
            return self.stack.repo.get_batch(batch_id)
        except BatchNotFoundError:
            return None

    def _wait_status(self, batch_id: str, status: str) -> None:
        self.stack.wait_until(
            lambda: self.stack.repo.get_batch(batch_id).status.value == status, timeout=SETTLE_SECONDS
        )

    def _arn(self, function: str) -> str:
        from batchbridge_local.stack import ACCOUNT, REGION

        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.stack.functions[function].name}"

    def _machine_until(self, state: str) -> str:
        """The ARN of the stack's definition cut short before ``state`` (created on first use)."""
        from batchbridge_local.stack import ACCOUNT, PREFIX

        if state not in self._machines:
            sfn = boto3.client("stepfunctions")
            name = f"{PREFIX}-until-" + "".join(c if c.isalnum() else "-" for c in state.lower()).strip("-")
            known = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
            self._machines[state] = (
                known.get(name)
                or sfn.create_state_machine(
                    name=name,
                    definition=json.dumps(definition_until(self._definition, state)),
                    roleArn=f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-states",
                )["stateMachineArn"]
            )
        return self._machines[state]

    def _finished_execution(self, machine_arn: str, name: str) -> dict[str, Any]:
        """The output of the execution ``name`` of ``machine_arn`` once it has succeeded."""
        sfn = boto3.client("stepfunctions")
        arn = machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        end = time.monotonic() + SETTLE_SECONDS
        while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > end:
                raise SeedError(f"execution {name} did not reach its stop within {SETTLE_SECONDS:.0f} s")
            time.sleep(0.1)
        if execution["status"] != "SUCCEEDED":
            raise SeedError(f"execution {name} ended {execution['status']}: {execution.get('cause', '')}")
        return dict(json.loads(execution.get("output") or "{}"))


def _field(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise SeedError(f"the event has no {name}")
    return str(value)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _uuid(value: str, *, hex_only: bool = False) -> uuid.UUID:
    """``value`` as the UUID the code would have drawn to make it (its ``.hex`` when ``hex_only``)."""
    try:
        drawn = uuid.UUID(hex=value)
    except ValueError:
        raise SeedError(f"{value!r} is not an id the code could have drawn") from None
    if (drawn.hex if hex_only else str(drawn)) != value:
        raise SeedError(f"{value!r} is not an id the code could have drawn (it writes {drawn})")
    return drawn


# --- the command ---------------------------------------------------------------------------------------
def event_folders(template: dict[str, Any]) -> dict[str, str]:
    """Each function's folder under ``functions/`` -- also its folder under ``events/`` -- to its
    logical id in ``template``."""
    return {
        Path(resource["Properties"]["CodeUri"]).name: logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def function_names(template: dict[str, Any]) -> dict[str, str]:
    """Every name a function may be called by (its logical id, or its folder) to its logical id."""
    folders = event_folders(template)
    return {**folders, **{logical_id: logical_id for logical_id in folders.values()}}


def main(function: str, event_path: Path, *, project_dir: Path | None, console: Any) -> int:
    """Run ``batchbridge local invoke``; the exit code (0 answered, 1 the handler raised, 2 a usage
    error, 3 what the event names could not be made). The answer alone goes to stdout, as
    ``sam local invoke`` prints it; what the stack and the handlers print goes to stderr."""
    from batchbridge_local import template as tpl

    root = project_dir or tpl.ROOT
    names = function_names(tpl.load(root / "template.yaml"))
    if function not in names:
        choices = ", ".join(sorted(n for n, lid in names.items() if n == lid))
        console.print(f"error: no function {function!r}; the template has {choices}", markup=False)
        return 2
    try:
        event = json.loads(event_path.read_text())
    except (OSError, ValueError) as exc:
        console.print(f"error: {event_path} is not a JSON event: {exc}", markup=False)
        return 2
    if not isinstance(event, dict):
        console.print(f"error: {event_path} holds no JSON object", markup=False)
        return 2
    stdout = sys.stdout
    # A workflow that ends in a Fail state on purpose (a batch that did not succeed) is no error here.
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            answer, raised = _replayed(names[function], event, event_path, root, console)
        except SeedError as exc:
            console.print(f"error: {exc}", markup=False)
            return 3
    stdout.write(json.dumps(answer, indent=2, default=str) + "\n")
    stdout.flush()
    return 1 if raised else 0


def _replayed(
    function: str, event: dict[str, Any], event_path: Path, root: Path, console: Any
) -> tuple[Any, bool]:
    """The handler's answer to ``event`` on a fresh local stack (or the error it raised, as Lambda
    reports one), and whether it raised."""
    from batchbridge_local.stack import LocalStack

    def log(line: str) -> None:
        console.print(f"made {line}", markup=False)

    console.print(f"starting the local stack ({root / 'template.yaml'})", markup=False)
    with (
        LocalStack(serve_s3=True, template_path=root / "template.yaml") as stack,
        Replay(stack, log=log) as replay,
    ):
        replay.seed(function, event)
        console.print(f"invoking {function} with {event_path}", markup=False)
        try:
            answer = replay.invoke(function, event)
        except Exception as exc:  # answered as Lambda answers an unhandled error
            return {"errorType": type(exc).__name__, "errorMessage": str(exc)}, True
        finally:
            console.print("waiting for the executions it started to end", markup=False)
    return answer, False
