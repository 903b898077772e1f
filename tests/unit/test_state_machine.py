"""Structural checks of the real state machine definition (statemachine/batch.asl.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachine" / "batch.asl.json").read_text())
STATES = ASL["States"]
LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def lambda_tasks():
    return {name: s for name, s in STATES.items() if s["Type"] == "Task" and s["Resource"].startswith("${")}


def test_every_lambda_task_retries_lambda_service_errors():
    tasks = lambda_tasks()
    assert len(tasks) == 4
    for name, state in tasks.items():
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert retried >= LAMBDA_ERRORS, name


def test_every_lambda_task_retries_transient_provider_errors_but_not_terminal_ones():
    from batchbridge import errors

    for name, state in lambda_tasks().items():
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert {cls.__name__ for cls in errors.RETRYABLE_ERRORS} <= retried, name
        assert not retried & {
            "BatchRejectedError",
            "AmbiguousSubmitError",
            "UnknownProviderStatusError",
            "ProviderAuthError",
            "States.ALL",
        }, name


def test_retried_error_names_exist_in_the_error_vocabulary():
    from batchbridge import errors

    for state in lambda_tasks().values():
        for retry in state["Retry"]:
            for name in retry["ErrorEquals"]:
                builtin = name.startswith(("Lambda.", "States.", "Sandbox."))
                assert builtin or isinstance(getattr(errors, name, None), type), name


def test_every_failure_path_reaches_finalize_and_publish():
    # Every task that can fail catches into the collect -> finalize -> publish path (or the fallback).
    for name, state in STATES.items():
        if state["Type"] == "Task":
            assert state.get("Catch"), f"{name} has no Catch"
    assert STATES["Submit Jobs To Provider"]["Catch"][0]["Next"] == "Collect Results"
    assert STATES["Check Batch Status"]["Catch"][0]["Next"] == "Collect Results"
    assert STATES["Collect Results"]["Catch"][0]["Next"] == "Finalize Batch"
    assert STATES["Finalize Batch"]["Catch"][0]["Next"] == "Record Unexpected Failure"
    assert STATES["Record Unexpected Failure"]["Next"] == "Build Failure Event"
    assert STATES["Build Failure Event"]["Next"] == "Encode Failure Event"
    assert STATES["Encode Failure Event"]["Next"] == "Claim Completion Event"
    assert STATES["Finalize Batch"]["Next"] == "Claim Completion Event"
    assert STATES["Claim Completion Event"]["Next"] == "Publish Completion Event"


def test_the_poll_loop_is_bounded_in_the_definition_itself():
    from batchbridge import polling

    choice = STATES["Batch Finished?"]
    guard = next(c for c in choice["Choices"] if c.get("Variable") == "$.step.pollCount")
    assert guard["Next"] == "Collect Results"
    # The Python cap ends the loop gracefully first; the definition's cap is the backstop.
    assert guard["NumericGreaterThanEquals"] > polling.MAX_POLLS


def test_substitutions_in_the_definition_match_the_template():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506
    declared = set(template["Resources"]["BatchStateMachine"]["Properties"]["DefinitionSubstitutions"])
    used = set(re.findall(r"\$\{(\w+)\}", (ROOT / "statemachine" / "batch.asl.json").read_text()))
    assert used == declared


def test_the_failure_event_names_the_same_schema_as_every_other_event():
    from batchbridge.events import SCHEMA_ID

    assert STATES["Build Failure Event"]["Parameters"]["dataschema"] == SCHEMA_ID
