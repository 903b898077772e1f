"""The parts of ``batchbridge local invoke`` that need no stack: the workflow cut short before a state,
the state that invokes a function, the names a function answers to, pinned ids, and the command's
refusals before it starts anything."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from tests.conftest import EVENTS, ROOT

from batchbridge_local import invoke
from batchbridge_local import template as tpl
from batchbridge_local.invoke import STOP_STATE, SeedError, definition_until, pinned, task_state

ASL = json.loads((ROOT / "statemachine" / "batch.asl.json").read_text())


def transitions(definition):
    """Every (state, target) edge: Next, Default, Choices and Catch."""
    for name, body in definition["States"].items():
        for key in ("Next", "Default"):
            if key in body:
                yield name, body[key]
        for rule in (*body.get("Choices", ()), *body.get("Catch", ())):
            yield name, rule["Next"]


@pytest.mark.parametrize("state", ["Submit Jobs To Provider", "Check Batch Status", "Collect Results"])
def test_the_cut_definition_stops_wherever_the_workflow_would_enter_the_state(state):
    cut = definition_until(ASL, state)
    original = list(transitions(ASL))
    assert any(target == state for _, target in original) or ASL["StartAt"] != state
    assert not [edge for edge in transitions(cut) if edge[1] == state]
    # every edge into the state now ends the run; every other edge is as it was
    expected = [(src, STOP_STATE if target == state else target) for src, target in original]
    assert list(transitions(cut)) == expected
    assert cut["States"][STOP_STATE]["Type"] == "Succeed"
    assert json.loads((ROOT / "statemachine" / "batch.asl.json").read_text()) == ASL  # not changed


def test_a_cut_before_the_first_task_ends_the_run_before_anything_is_sent():
    cut = definition_until(ASL, "Submit Jobs To Provider")
    assert cut["StartAt"] == ASL["StartAt"] == "Cancel Requested?"
    assert cut["States"]["Cancel Requested?"]["Default"] == STOP_STATE


def test_a_cut_before_a_state_the_workflow_does_not_have_is_refused():
    with pytest.raises(SeedError, match="no state"):
        definition_until(ASL, "Wait For Nothing")


def test_each_task_function_is_found_at_the_state_that_invokes_it():
    arns = {"${SubmitBatchFunctionArn}", "${AwaitCallbackFunctionArn}", "${FinalizeBatchFunctionArn}"}
    found = {arn: task_state(ASL, arn) for arn in arns}
    assert found == {
        "${SubmitBatchFunctionArn}": "Submit Jobs To Provider",
        "${AwaitCallbackFunctionArn}": "Wait For Callback Or Next Poll",  # a task-token wait
        "${FinalizeBatchFunctionArn}": "Finalize Batch",
    }
    with pytest.raises(SeedError):
        task_state(ASL, "${ApiFunctionArn}")


def test_a_function_answers_to_its_logical_id_and_to_its_folder():
    names = invoke.function_names(tpl.load(ROOT / "template.yaml"))
    assert names["api"] == names["ApiFunction"] == "ApiFunction"
    assert names["check_status"] == "CheckStatusFunction"
    assert set(invoke.event_folders(tpl.load(ROOT / "template.yaml"))) == {
        p.name for p in EVENTS.iterdir() if p.is_dir()
    }


# --- pinned ids ---------------------------------------------------------------------------------------
def owner_of(module: ModuleType) -> ModuleType:
    owner = ModuleType("owner")
    owner.uuid = module  # type: ignore[attr-defined]
    return owner


def test_a_pinned_module_draws_the_given_values_in_order_and_is_itself_otherwise():
    owner = owner_of(uuid)
    first, second = uuid.uuid4(), uuid.uuid4()
    with pinned(owner, "uuid", uuid4=[first, second]):
        assert owner.uuid.uuid4() == first
        assert owner.uuid.uuid4() == second
        assert owner.uuid.UUID(str(first)) == first  # not pinned: the module's own
    assert owner.uuid is uuid
    assert uuid.uuid4() not in (first, second)


def test_drawing_more_than_was_pinned_fails_loudly():
    owner = owner_of(uuid)
    with pinned(owner, "uuid", uuid4=[uuid.uuid4()]):
        owner.uuid.uuid4()
        with pytest.raises(SeedError, match="more often"):
            owner.uuid.uuid4()


def test_a_pinned_value_the_code_never_drew_fails_loudly():
    # If the code stops drawing the id where seeding pins it, seeding says so instead of making a
    # thing with another id than the event names.
    never_drawn = pinned(owner_of(uuid), "uuid", uuid4=[uuid.uuid4()])
    with pytest.raises(SeedError, match=r"never called uuid\.uuid4"), never_drawn:
        pass


def test_only_ids_the_code_could_have_drawn_are_pinned():
    value = str(uuid.uuid4())
    assert str(invoke._uuid(value)) == value
    assert invoke._uuid(value.replace("-", ""), hex_only=True).hex == value.replace("-", "")
    for wrong in ("not-an-id", value.upper(), value.replace("-", "")):
        with pytest.raises(SeedError):
            invoke._uuid(wrong)


# --- the command's refusals ---------------------------------------------------------------------------
def run(*args: str):
    from batchbridge_client.cli import main

    return CliRunner().invoke(main, ["local", "invoke", *args])


def test_an_unknown_function_is_a_usage_error_naming_the_functions(tmp_path: Path):
    result = run("NoSuchFunction", str(EVENTS / "check_status" / "poll.json"))
    assert result.exit_code == 2
    assert "no function 'NoSuchFunction'" in result.output and "CheckStatusFunction" in result.output


def test_an_event_that_is_not_a_json_object_is_a_usage_error(tmp_path: Path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"batchId": ')
    assert run("check_status", str(broken)).exit_code == 2
    broken.write_text("[1, 2]")
    result = run("check_status", str(broken))
    assert result.exit_code == 2 and "no JSON object" in result.output
