"""The inputs of ``sam local invoke``: every file in events/ is an event its function really receives, and
events/env.json holds exactly each function's environment.

API events are whole API Gateway REST proxy events (Powertools' own model accepts them) for a route the
template declares; task events carry exactly what the state machine's ``Parameters`` pass the task.
tests/workflow/test_events_replay.py runs every one of them through its handler on the local stack."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import EVENTS, ROOT, load_event

from batchbridge import errors
from batchbridge_local import template as tpl
from batchbridge_local.invoke import event_folders

TEMPLATE = tpl.load(ROOT / "template.yaml")
ASL = json.loads((ROOT / "statemachine" / "batch.asl.json").read_text())
FUNCTIONS = event_folders(TEMPLATE)  # folder under functions/ and events/ -> logical id
API_EVENTS = sorted(p.relative_to(EVENTS).as_posix() for p in (EVENTS / "api").glob("*.json"))
TASK_EVENTS = sorted(
    p.relative_to(EVENTS).as_posix()
    for p in EVENTS.glob("*/*.json")
    if p.parent.name not in ("api", "validate_upload")
)


def template_routes() -> set[tuple[str, str]]:
    """(method, path) of every API event of the api function in template.yaml."""
    events = TEMPLATE["Resources"]["ApiFunction"]["Properties"]["Events"]
    return {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events.values()}


def invoking_state(logical_id: str) -> tuple[str, dict[str, Any]]:
    """The state that invokes the function, and what its Parameters pass the function."""
    arn = "${" + logical_id + "Arn}"
    for name, state in ASL["States"].items():
        params = state.get("Parameters", {})
        if state.get("Resource") == arn:
            return name, params
        if params.get("FunctionName") == arn:
            return name, params["Payload"]
    raise AssertionError(f"no state invokes {logical_id}")


def states_that_may_see_an_error() -> set[str]:
    """Every state reachable after a Catch that writes ``$.error``: only they can be passed an error
    (every execution starts with ``"error": null``)."""
    edges: dict[str, set[str]] = {}
    seen: list[str] = []
    for name, state in ASL["States"].items():
        targets = {state[k] for k in ("Next", "Default") if k in state}
        targets |= {r["Next"] for r in (*state.get("Choices", ()), *state.get("Catch", ()))}
        edges[name] = targets
        seen += [c["Next"] for c in state.get("Catch", ()) if c.get("ResultPath") == "$.error"]
    reached: set[str] = set()
    while seen:
        name = seen.pop()
        if name not in reached:
            reached.add(name)
            seen.extend(edges[name])
    return reached


# --- API events ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", API_EVENTS)
def test_api_events_are_rest_proxy_events_powertools_accepts(path):
    from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel

    event = APIGatewayProxyEventModel.model_validate(load_event(path))
    assert event.requestContext.protocol and event.requestContext.requestTime
    assert event.requestContext.domainName and event.requestContext.requestTimeEpoch


@pytest.mark.parametrize("path", API_EVENTS)
def test_api_events_say_the_same_thing_everywhere_api_gateway_repeats_it(path):
    event = load_event(path)
    context = event["requestContext"]
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    query = event["queryStringParameters"]
    assert event["multiValueQueryStringParameters"] == ({k: [v] for k, v in query.items()} if query else None)
    assert (context["resourcePath"], context["httpMethod"]) == (event["resource"], event["httpMethod"])
    assert context["path"] == f"/{context['stage']}{event['path']}"
    assert event["headers"]["Host"] == context["domainName"]
    # the path is the resource with the path parameters filled in
    filled = re.sub(r"\{(\w+)\}", lambda m: event["pathParameters"][m.group(1)], event["resource"])
    assert filled == event["path"]
    if event["body"] is not None and "Content-Type" in event["headers"]:
        assert event["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", API_EVENTS)
def test_api_events_are_for_a_route_the_template_declares(path):
    event = load_event(path)
    assert (event["httpMethod"], event["resource"]) in template_routes()


def test_every_route_has_an_event():
    covered = {(load_event(p)["httpMethod"], load_event(p)["resource"]) for p in API_EVENTS}
    assert template_routes() <= covered


def test_only_the_callback_route_is_called_without_aws_credentials():
    for path in API_EVENTS:
        event = load_event(path)
        signed = event["requestContext"]["identity"]["userArn"] is not None
        assert signed == (event["resource"] != "/callbacks/{batch_id}/{token}"), path


# --- task events --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", TASK_EVENTS)
def test_task_events_carry_exactly_what_the_state_machine_passes(path):
    event = load_event(path)
    state, passed = invoking_state(FUNCTIONS[Path(path).parent.name])
    assert set(event) == {key.removesuffix(".$") for key in passed}, state


@pytest.mark.parametrize("path", TASK_EVENTS)
def test_task_events_parse_into_the_model_their_handler_reads(path):
    from batchbridge.tasks import AwaitInput, TaskInput

    model = AwaitInput if Path(path).parent.name == "await_callback" else TaskInput
    assert model.model_validate(load_event(path)).batch_id == load_event(path)["batchId"]


@pytest.mark.parametrize("path", [p for p in TASK_EVENTS if "error" in load_event(p)])
def test_an_error_is_only_where_a_catch_can_have_put_one_and_names_a_real_exception(path):
    event = load_event(path)
    state, _ = invoking_state(FUNCTIONS[Path(path).parent.name])
    if state not in states_that_may_see_an_error():
        assert event["error"] is None, f"{state} is never passed an error"
    elif event["error"] is not None:
        assert set(event["error"]) == {"Error", "Cause"}
        assert isinstance(getattr(errors, event["error"]["Error"], None), type)
        cause = json.loads(event["error"]["Cause"])  # as Lambda reports an unhandled error
        assert cause["errorType"] == event["error"]["Error"] and cause["errorMessage"]


def test_the_states_that_are_never_passed_an_error_are_the_first_ones():
    # What the previous test leans on, checked against the definition itself.
    may = states_that_may_see_an_error()
    assert {"Collect Results", "Finalize Batch"} <= may
    assert not may & {"Submit Jobs To Provider", "Check Batch Status", "Wait For Callback Or Next Poll"}


def test_validate_upload_events_are_what_complete_sends():
    from batchbridge.uploads import ValidateUploadInput

    sent = {field.alias or name for name, field in ValidateUploadInput.model_fields.items()}
    for path in sorted((EVENTS / "validate_upload").glob("*.json")):
        event = load_event(path.relative_to(EVENTS).as_posix())
        assert set(event) == sent == {"uploadId"}  # uploads._invoke_validator's payload
        assert ValidateUploadInput.model_validate(event).upload_id


def test_every_function_has_its_events_and_every_folder_a_function():
    assert set(FUNCTIONS) == {p.name for p in EVENTS.iterdir() if p.is_dir()}
    assert all(any((EVENTS / folder).glob("*.json")) for folder in FUNCTIONS)


def test_no_two_events_that_make_their_batch_anew_name_the_same_one():
    # A task event's batch is made by running the workflow up to its task, so it is its own; API events
    # may share a finished batch (they only read it, or retry it).
    named = [load_event(p)["batchId"] for p in TASK_EVENTS]
    assert len(named) == len(set(named))
    for path in API_EVENTS:
        params = load_event(path)["pathParameters"] or {}
        assert params.get("batch_id") not in named, path


# --- events/env.json ----------------------------------------------------------------------------------
ENV = json.loads((EVENTS / "env.json").read_text())
PARAMETER_DEFAULTS = {k: str(v.get("Default", "")) for k, v in TEMPLATE["Parameters"].items()}


def environment(logical_id: str) -> dict[str, Any]:
    """A function's environment as template.yaml writes it: the globals and its own."""
    glob = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    own = TEMPLATE["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {**glob, **own}


def resource_named(value: Any) -> str | None:
    """The resource a template value refers to (``!Ref Resource`` or ``!GetAtt Resource.Attr``)."""
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in TEMPLATE["Resources"]:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def test_env_json_holds_every_function_and_exactly_its_environment():
    assert set(ENV) == set(FUNCTIONS.values())
    for logical_id, variables in ENV.items():
        assert set(variables) == set(environment(logical_id)), logical_id
        assert all(isinstance(v, str) for v in variables.values()), logical_id


def test_env_json_values_are_the_template_defaults_with_placeholders_for_the_stack_resources():
    pseudo = {
        **PARAMETER_DEFAULTS,
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::StackName": "batchbridge",  # samconfig.toml's stack
    }
    resolve = tpl.Resolver({}, {}, pseudo)
    for logical_id, variables in ENV.items():
        for name, declared in environment(logical_id).items():
            resource = resource_named(declared)
            if resource is not None:  # a name or ARN only a deployed stack has
                assert resource.lower() in variables[name].lower(), (logical_id, name)
                assert "example" in variables[name].lower(), (logical_id, name)
            else:
                assert variables[name] == str(resolve(declared)), (logical_id, name)
