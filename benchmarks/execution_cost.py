"""What one whole execution of the batch workflow costs, read off the real state machine definition.

The polling loop is not the whole bill: every execution also passes the states on the way in (the cancel
check, the submit and its Choice) and out (collect, finalize, the event's claim and publish, the end
state), and where the provider calls back, each round parks on a task token through a Lambda. Rather
than hard-code those counts, :func:`walk` runs the definition (``statemachine/batch.asl.json``) from
``StartAt`` along the path a normal, successful batch takes: each Task returns what the real task returns
on that path (the real :class:`batchbridge.tasks.Step`), each Choice is evaluated against the state, and
every state entered is one billed transition. Walking it for one, two and three rounds of status checks
gives the fixed part and the part per round (:func:`execution_shape`); the walk fails loudly on anything it
does not model (JSONata, Map, Parallel, a path it cannot read), so a change of definition cannot be
priced silently wrong.

Lambda memory sizes come from ``template.yaml``; Lambda durations cannot be read from anywhere, so the
billed milliseconds per invocation are stated assumptions (:data:`ASSUMED_BILLED_MS`), printed with every
figure. Prices are :mod:`batchbridge.pricing`'s.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchbridge import pricing
from batchbridge.tasks import Step

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = ROOT / "statemachine" / "batch.asl.json"

#: The workflow tasks, by the definition substitution that names their function.
TASK_BY_SUBSTITUTION = {
    "SubmitBatchFunctionArn": "submit",
    "CheckStatusFunctionArn": "check",
    "AwaitCallbackFunctionArn": "await",
    "CollectResultsFunctionArn": "collect",
    "FinalizeBatchFunctionArn": "finalize",
}
#: Billed milliseconds per invocation, assumed (one provider call for submit and check, a DynamoDB
#: update for the callback wait, one chunk's outcomes for collect). They move the Lambda share only.
ASSUMED_BILLED_MS = {"submit": 800, "check": 300, "await": 60, "collect": 1000, "finalize": 500}
#: DynamoDB request units per invocation of the tasks that run every round, assumed for a one-chunk batch:
#: check reads the batch and its chunks and writes the chunk's status, the poll and the usage; the
#: callback wait swaps the task token and writes the usage. (Collect's outcome rows and the results files
#: depend on the batch's size, not on the poller, and are left out of every figure.)
ASSUMED_DYNAMODB_UNITS = {"check": {"write": 4, "read": 2}, "await": {"write": 3, "read": 0}}
#: Write units of a Step Functions DynamoDB step (one small item), SNS publishes of a publish step.
UNITS_PER_SERVICE_STEP = 1
MAX_STATES_ENTERED = 10_000


class NotModelled(ValueError):
    """The definition uses something the walk does not model: fix the walk, do not guess."""


@dataclass(frozen=True)
class Walk:
    """One execution's path: the states entered in order, and what they invoked."""

    entered: tuple[str, ...]
    lambdas: Counter[str]  # task -> invocations
    service_steps: Counter[str]  # "dynamodb:updateItem", "sns:publish", ...

    @property
    def transitions(self) -> int:
        return len(self.entered)


@dataclass(frozen=True)
class ExecutionShape:
    """A normal successful execution: what it costs whatever the poller, and what each round adds."""

    fixed_transitions: int
    transitions_per_round: int
    fixed_lambdas: Counter[str]
    lambdas_per_round: Counter[str]
    fixed_service_steps: Counter[str]
    loop_states: tuple[str, ...]  # the states one round passes through

    def transitions(self, rounds: int) -> int:
        return self.fixed_transitions + self.transitions_per_round * rounds


def load_definition(path: Path = DEFINITION) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


# --- the walk -----------------------------------------------------------------------------------------
def walk(definition: Mapping[str, Any], *, rounds: int, callback: bool) -> Walk:
    """Run the definition for a batch that is submitted in one call, is seen finished by the
    ``rounds``-th status check, is collected in one call and finalizes SUCCEEDED."""
    if rounds < 1:
        raise ValueError("a batch is checked at least once")
    if definition.get("QueryLanguage", "JSONPath") != "JSONPath":
        raise NotModelled("the walk reads JSONPath definitions only")
    states: Mapping[str, Any] = definition["States"]
    data: dict[str, Any] = {"batchId": "b", "error": None, "cancel": False}
    checks = 0
    entered: list[str] = []
    lambdas: Counter[str] = Counter()
    services: Counter[str] = Counter()
    name: str | None = definition["StartAt"]
    while name is not None:
        if len(entered) >= MAX_STATES_ENTERED:
            raise NotModelled(f"no end after {MAX_STATES_ENTERED} states: the walk loops at {name!r}")
        state = states[name]
        entered.append(name)
        kind = state["Type"]
        if kind == "Choice":
            name = _choose(name, state, data)
            continue
        if kind in ("Succeed", "Fail"):
            break
        if kind == "Wait":
            pass
        elif kind == "Pass":
            if "Result" in state:
                data = _put(data, state.get("ResultPath", "$"), state["Result"])
        elif kind == "Task":
            task = _task_of(state)
            if task is not None:
                lambdas[task] += 1
                if task == "check":
                    checks += 1
                result = _result(task, checks=checks, rounds=rounds, callback=callback)
            else:
                services[_service_of(name, state)] += 1
                result = {}
            data = _put(data, state.get("ResultPath", "$"), result)
        else:
            raise NotModelled(f"state {name!r} is a {kind}, which the walk does not model")
        following = state.get("Next")
        if following is None and not state.get("End"):
            raise NotModelled(f"state {name!r} has neither Next nor End")
        name = following
    return Walk(tuple(entered), lambdas, services)


def execution_shape(definition: Mapping[str, Any] | None = None, *, callback: bool) -> ExecutionShape:
    """The fixed and per-round parts of a normal execution, from walks of one, two and three rounds."""
    definition = definition if definition is not None else load_definition()
    one, two, three = (walk(definition, rounds=r, callback=callback) for r in (1, 2, 3))
    per_round = two.transitions - one.transitions
    if (
        three.transitions - two.transitions != per_round
        or two.lambdas - one.lambdas != three.lambdas - two.lambdas
    ):
        raise NotModelled("a round does not cost the same each time: the walk's model of the loop is wrong")
    lambdas_per_round = two.lambdas - one.lambdas
    loop = _loop_states(one.entered, two.entered)
    return ExecutionShape(
        fixed_transitions=one.transitions - per_round,
        transitions_per_round=per_round,
        fixed_lambdas=one.lambdas - lambdas_per_round,
        lambdas_per_round=lambdas_per_round,
        fixed_service_steps=one.service_steps,
        loop_states=loop,
    )


def _loop_states(one: tuple[str, ...], two: tuple[str, ...]) -> tuple[str, ...]:
    """The states the second walk passes through that the first does not: one round."""
    start = next(i for i, (a, b) in enumerate(zip(one, two, strict=False)) if a != b)
    return two[start : start + len(two) - len(one)]


def _task_of(state: Mapping[str, Any]) -> str | None:
    """Which workflow task a Task state invokes, or None for a direct service integration."""
    target = state["Resource"]
    if target.startswith("arn:aws:states:::lambda:invoke"):
        target = state.get("Parameters", {}).get("FunctionName", "")
    match = re.fullmatch(r"\$\{(\w+)\}", target)
    if match is None:
        return None
    if match.group(1) not in TASK_BY_SUBSTITUTION:
        raise NotModelled(f"a Task invokes ${{{match.group(1)}}}, which the walk does not know")
    return TASK_BY_SUBSTITUTION[match.group(1)]


def _service_of(name: str, state: Mapping[str, Any]) -> str:
    match = re.fullmatch(r"arn:aws:states:::(\w+):(\w+)", state["Resource"])
    if match is None:
        raise NotModelled(f"state {name!r} calls {state['Resource']!r}, which the walk does not model")
    return f"{match.group(1)}:{match.group(2)}"


def _result(task: str, *, checks: int, rounds: int, callback: bool) -> dict[str, Any]:
    """What each task returns on a normal successful batch's path."""
    if task == "submit":  # every chunk sent in one call; the policy's first wait
        return Step(wait_seconds=60, poll_count=1, callback=callback).dump()
    if task == "check":
        if checks >= rounds:
            return Step(done=True, poll_count=1 + checks).dump()
        return Step(wait_seconds=60, poll_count=1 + checks, callback=callback).dump()
    if task == "collect":
        return Step(collect_rounds=1).dump()
    if task == "finalize":
        return {"status": "SUCCEEDED", "message": "{}", "attributes": {"status": "SUCCEEDED"}}
    return {}  # the callback wait's task token is answered with an empty result


# --- a minimal JSONPath and Choice evaluator -------------------------------------------------------------
_MISSING = object()


def _get(data: Any, path: str) -> Any:
    if not re.fullmatch(r"\$(\.\w+)*", path):
        raise NotModelled(f"the walk reads plain $.a.b paths only, not {path!r}")
    for part in path.split(".")[1:]:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _put(data: dict[str, Any], path: str | None, value: Any) -> dict[str, Any]:
    if path is None:
        return data
    if path == "$":
        return dict(value)
    if not re.fullmatch(r"\$(\.\w+)+", path):
        raise NotModelled(f"the walk writes plain $.a.b paths only, not {path!r}")
    out = dict(data)
    node = out
    parts = path.split(".")[1:]
    for part in parts[:-1]:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[parts[-1]] = value
    return out


_COMPARISONS = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "GreaterThan": lambda a, b: a > b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThanEquals": lambda a, b: a >= b,
}
_TYPES = {"String": str, "Numeric": (int, float), "Boolean": bool}


def _choose(name: str, state: Mapping[str, Any], data: dict[str, Any]) -> str:
    for rule in state["Choices"]:
        if _holds(name, rule, data):
            return str(rule["Next"])
    if "Default" not in state:
        raise NotModelled(f"no choice of {name!r} matched and it has no Default")
    return str(state["Default"])


def _holds(name: str, rule: Mapping[str, Any], data: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(_holds(name, r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_holds(name, r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _holds(name, rule["Not"], data)
    value = _get(data, rule["Variable"])
    if "IsPresent" in rule:
        return (value is not _MISSING) == rule["IsPresent"]
    for key, expected in rule.items():
        match = re.fullmatch(
            r"(String|Numeric|Boolean)(Equals|LessThan|GreaterThan|LessThanEquals|GreaterThanEquals)(Path)?",
            key,
        )
        if match is None:
            continue
        kind, comparison, by_path = match.groups()
        if value is _MISSING:
            raise NotModelled(f"choice of {name!r} reads {rule['Variable']}, which this path never sets")
        other = _get(data, expected) if by_path else expected
        wanted = _TYPES[kind]
        if isinstance(value, bool) != (kind == "Boolean") or not isinstance(value, wanted):
            return False  # Step Functions treats a comparison of the wrong type as not matching
        return bool(_COMPARISONS[comparison](value, other))
    raise NotModelled(f"choice of {name!r} uses a rule the walk does not model: {sorted(rule)}")


# --- prices ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prices:
    """Dollars per execution: the fixed part and each round, for one provider kind."""

    fixed_usd: float
    per_round_usd: float

    def usd(self, rounds: float) -> float:
        return self.fixed_usd + self.per_round_usd * rounds


def lambda_memory_mb(template: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Each task's memory size, from template.yaml (its own MemorySize, else the Globals')."""
    if template is None:
        from batchbridge_local import template as tpl

        template = tpl.load()
    default = int(template.get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    resources = template["Resources"]
    machine = next(r for r in resources.values() if r["Type"] == "AWS::Serverless::StateMachine")
    memory = {}
    for substitution, target in machine["Properties"]["DefinitionSubstitutions"].items():
        if substitution in TASK_BY_SUBSTITUTION:
            logical_id = target["Fn::GetAtt"][0]
            size = resources[logical_id]["Properties"].get("MemorySize", default)
            memory[TASK_BY_SUBSTITUTION[substitution]] = int(size)
    return memory


def task_usd(task: str, invocations: float, memory: Mapping[str, int]) -> float:
    """List price of ``invocations`` of ``task``: requests plus GB-seconds at the assumed duration, and
    the DynamoDB units assumed for the tasks that run every round."""
    gb_seconds = memory[task] / 1024 * ASSUMED_BILLED_MS[task] / 1000
    units = ASSUMED_DYNAMODB_UNITS.get(task, {"write": 0, "read": 0})
    return invocations * (
        pricing.LAMBDA_USD_PER_REQUEST
        + gb_seconds * pricing.LAMBDA_USD_PER_GB_SECOND_ARM64
        + units["write"] * pricing.DYNAMODB_USD_PER_WRITE_UNIT
        + units["read"] * pricing.DYNAMODB_USD_PER_READ_UNIT
    )


def service_usd(step: str, count: float) -> float:
    service = step.split(":", 1)[0]
    if service == "dynamodb":
        return count * UNITS_PER_SERVICE_STEP * pricing.DYNAMODB_USD_PER_WRITE_UNIT
    if service == "sns":
        return count * UNITS_PER_SERVICE_STEP * pricing.SNS_USD_PER_PUBLISH
    raise NotModelled(f"no price for the service step {step!r}")


def prices(shape: ExecutionShape, memory: Mapping[str, int]) -> Prices:
    """Step Functions transitions, Lambda requests and GB-seconds (and the per-round tasks' DynamoDB
    units), and the direct service steps."""
    fixed = shape.fixed_transitions * pricing.SFN_USD_PER_TRANSITION
    fixed += sum(task_usd(t, n, memory) for t, n in shape.fixed_lambdas.items())
    fixed += sum(service_usd(s, n) for s, n in shape.fixed_service_steps.items())
    per_round = shape.transitions_per_round * pricing.SFN_USD_PER_TRANSITION
    per_round += sum(task_usd(t, n, memory) for t, n in shape.lambdas_per_round.items())
    return Prices(fixed, per_round)
