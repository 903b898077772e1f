"""The workflow diagram: README.md's copy is what statemachine/batch.asl.json draws, and the drawing shows
every state and every edge of a definition, failure paths included."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchbridge_local import diagram

ROOT = Path(__file__).resolve().parents[2]
REAL = json.loads((ROOT / "statemachine" / "batch.asl.json").read_text())

NODE = re.compile(r'^\s*(?:subgraph )?(\w+)\s*(?:\{|\[/|\(\[|\[|>)\s*"(.*)"')
EDGE = re.compile(r'^\s*(\w+)(?:\(\( \)\))? (-->|-\.->)(?:\|"(.*)"\|)? (\w+)')

# A small definition of the test's own, with one of every construct the drawing handles.
SMALL: dict[str, Any] = {
    "StartAt": "Fetch Page",
    "States": {
        "Fetch Page": {
            "Type": "Task",
            "Resource": "${FetchFunctionArn}",
            "TimeoutSeconds": 60,
            "Retry": [
                {"ErrorEquals": ["Lambda.ServiceException", "Lambda.TooManyRequestsException"]},
                {"ErrorEquals": ["SlowDownError"], "MaxAttempts": 5},
            ],
            "Catch": [{"ErrorEquals": ["PageGoneError", "States.Timeout"], "Next": "Give Up"}],
            "Next": "More Pages?",
        },
        "More Pages?": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.page.next", "IsPresent": True, "Next": "Pause"},
                {
                    "Or": [
                        {"Variable": "$.page.kind", "StringEquals": "A"},
                        {"Variable": "$.page.kind", "StringEquals": "B"},
                    ],
                    "Next": "Split Work",
                },
                {"Variable": "$.page.count", "NumericGreaterThanEquals": 10, "Next": "Done"},
            ],
            "Default": "Give Up",
        },
        "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Fetch Page"},
        "Split Work": {
            "Type": "Map",
            "ItemProcessor": {
                "StartAt": "Do One",
                "States": {"Do One": {"Type": "Task", "Resource": "${OneFunctionArn}", "End": True}},
            },
            "Next": "Tidy Up",
        },
        "Tidy Up": {"Type": "Pass", "End": True},
        "Done": {"Type": "Succeed"},
        "Give Up": {"Type": "Fail", "Error": "PagesFailed"},
    },
}


def parse(block: str) -> tuple[dict[str, str], list[tuple[str, str, str | None, bool]], str]:
    """Nodes (id -> first label line) and edges (source, arrow kind, label, target) of a drawing."""
    assert block.startswith("```mermaid\nflowchart TD\n") and block.endswith("```\n")
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str | None, bool]] = []
    for line in block.splitlines()[2:-1]:
        if edge := EDGE.match(line):
            source, arrow, label, target = edge.groups()
            edges.append((source, target, label, arrow == "-.->"))
        elif node := NODE.match(line):
            nodes[node.group(1)] = node.group(2).split("<br/>")[0]
    return nodes, edges, block


def named_edges(block: str) -> set[tuple[str, str, str | None, bool]]:
    nodes, edges, _ = parse(block)
    name = {**nodes, "_start": "(start)", "_end": "(end)"}
    return {(name.get(s, s), name.get(t, t), label, catch) for s, t, label, catch in edges}


def walk(machine: dict[str, Any]) -> tuple[list[str], set[tuple[str, str, bool]]]:
    """Every state and every transition of a definition, read here independently of the drawing."""
    names: list[str] = []
    edges: set[tuple[str, str, bool]] = set()
    for name, state in machine["States"].items():
        names.append(name)
        targets = [rule["Next"] for rule in state.get("Choices", [])]
        targets += [state[key] for key in ("Next", "Default") if key in state]
        edges |= {(name, target, False) for target in targets}
        edges |= {(name, catcher["Next"], True) for catcher in state.get("Catch", [])}
        for inner in [*state.get("Branches", []), *filter(None, [state.get("ItemProcessor")])]:
            inner_names, inner_edges = walk(inner)
            names += inner_names
            edges |= inner_edges
    return names, edges


# --- README -------------------------------------------------------------------------------------------
def test_the_readme_diagram_is_the_one_the_definition_draws():
    readme = (ROOT / "README.md").read_text()
    assert diagram.current_block(readme) == diagram.drawn(), diagram.STALE


def test_the_check_fails_with_the_command_to_run_when_the_readme_is_stale(tmp_path, monkeypatch):
    # Given a README whose diagram was drawn from another definition than the one there now
    readme = tmp_path / "README.md"
    readme.write_text(
        diagram.replace_block(
            f"# x\n{diagram.BEGIN_MARK}\n{diagram.END_MARK}\nrest\n", diagram.mermaid(SMALL)
        )
    )
    monkeypatch.setattr(diagram, "README", readme)
    # When the check runs, then it fails and says to run `make diagram`
    result = CliRunner().invoke(diagram.main, ["--check"])
    assert result.exit_code == 1
    assert "run `make diagram`" in result.output
    # and after `make diagram` (the command without --check) the check passes and the rest is untouched
    assert CliRunner().invoke(diagram.main, []).exit_code == 0
    assert CliRunner().invoke(diagram.main, ["--check"]).exit_code == 0
    assert readme.read_text().startswith("# x\n") and readme.read_text().endswith(
        f"{diagram.END_MARK}\nrest\n"
    )


def test_replacing_the_block_needs_both_markers_once():
    with pytest.raises(diagram.DiagramError):
        diagram.replace_block("no markers here", "x")
    with pytest.raises(diagram.DiagramError):
        diagram.replace_block(f"{diagram.END_MARK}\n{diagram.BEGIN_MARK}\n", "x")
    twice = f"{diagram.BEGIN_MARK}\n{diagram.END_MARK}\n" * 2
    with pytest.raises(diagram.DiagramError):
        diagram.replace_block(twice, "x")


# --- the real definition ------------------------------------------------------------------------------
def test_every_state_and_every_edge_of_the_real_definition_is_drawn():
    block = diagram.drawn()
    nodes, _, _ = parse(block)
    names, edges = walk(REAL)
    assert sorted(nodes.values()) == sorted(names)
    drawn = {(s, t, catch) for s, t, _, catch in named_edges(block) if s != "(start)"}
    assert drawn == edges
    assert ("(start)", REAL["StartAt"], None, False) in named_edges(block)


def test_every_retry_rule_of_the_real_definition_is_noted_on_its_state():
    block = diagram.drawn()
    for name, state in REAL["States"].items():
        line = next(line for line in block.splitlines() if f'"{name}<br/>' in line or f'"{name}"' in line)
        assert line.count("↻") == len(state.get("Retry", [])), name
        for retrier in state.get("Retry", []):
            for error in retrier["ErrorEquals"]:
                assert error.rpartition(".")[2] in line, (name, error)


# --- the drawing, on a definition of the test's own ---------------------------------------------------
def test_a_small_definition_is_drawn_with_every_state_edge_and_condition():
    block = diagram.mermaid(SMALL)
    nodes, _, _ = parse(block)
    assert sorted(nodes.values()) == sorted([*SMALL["States"], "Do One"])
    edges = named_edges(block)
    assert {e for e in edges if e[1] != "(end)" and e[0] in SMALL["States"]} == {
        ("Fetch Page", "More Pages?", None, False),
        ("Fetch Page", "Give Up", "catch PageGoneError, States.Timeout", True),
        ("More Pages?", "Pause", "page.next present", False),
        ("More Pages?", "Split Work", "page.kind ∈ {A, B}", False),
        ("More Pages?", "Done", "page.count ≥ 10", False),
        ("More Pages?", "Give Up", "otherwise", False),
        ("Pause", "Fetch Page", None, False),
        ("Split Work", "Tidy Up", None, False),
    }
    assert ("(start)", "Fetch Page", None, False) in edges
    assert ("Tidy Up", "(end)", None, False) in edges


def test_retries_timeouts_resources_and_waits_are_noted_in_their_nodes():
    block = diagram.mermaid(SMALL)
    fetch = next(line for line in block.splitlines() if '"Fetch Page<br/>' in line)
    assert "λ FetchFunction" in fetch
    assert "timeout 60 s" in fetch
    assert "↻ 3x Lambda.{ServiceException,<br/>TooManyRequestsException}" in fetch  # 3: the ASL default
    assert "↻ 5x SlowDownError" in fetch
    assert "wait 5 s" in next(line for line in block.splitlines() if '"Pause<br/>' in line)
    assert "error PagesFailed" in next(line for line in block.splitlines() if '"Give Up<br/>' in line)


def test_succeed_and_fail_states_are_styled_and_catch_edges_coloured():
    block = diagram.mermaid(SMALL)
    lines = block.splitlines()
    assert "    class Done succeed" in lines
    assert "    class GiveUp fail" in lines
    # linkStyle numbers edges in drawing order; the coloured ones must be exactly the dashed ones
    arrows = [line for line in lines if EDGE.match(line)]
    styled = next(line for line in lines if line.strip().startswith("linkStyle")).split()[1]
    assert [int(n) for n in styled.split(",")] == [i for i, a in enumerate(arrows) if " -.->" in a]


def test_the_drawing_is_deterministic_and_escapes_what_mermaid_would_read():
    tricky = copy.deepcopy(SMALL)
    tricky["States"]['Say "hi" <b> & #1'] = tricky["States"].pop("Tidy Up")
    tricky["States"]["Split Work"]["Next"] = 'Say "hi" <b> & #1'
    first = diagram.mermaid(tricky)
    assert first == diagram.mermaid(copy.deepcopy(tricky))
    assert "Say #quot;hi#quot; #lt;b> #amp; #35;1" in first
    assert '"hi"' not in first and "<b>" not in first


def test_state_names_that_make_the_same_id_get_distinct_ids():
    machine = {
        "StartAt": "Go!",
        "States": {"Go!": {"Type": "Pass", "Next": "Go?"}, "Go?": {"Type": "Succeed"}},
    }
    nodes, edges, _ = parse(diagram.mermaid(machine))
    assert nodes == {"Go": "Go!", "Go2": "Go?"}
    assert ("Go", "Go2", None, False) in edges


def test_jsonata_conditions_are_drawn_from_their_expression():
    machine = {
        "QueryLanguage": "JSONata",
        "StartAt": "Ready?",
        "States": {
            "Ready?": {
                "Type": "Choice",
                "Choices": [{"Condition": "{% $states.input.n   > 3 %}", "Next": "Yes"}],
                "Default": "No",
            },
            "Yes": {"Type": "Succeed"},
            "No": {"Type": "Fail"},
        },
    }
    assert ("Ready?", "Yes", "$states.input.n > 3", False) in named_edges(diagram.mermaid(machine))


def test_a_definition_it_cannot_draw_is_refused_by_name():
    broken = copy.deepcopy(SMALL)
    broken["States"]["Pause"]["Next"] = "Nowhere"
    with pytest.raises(diagram.DiagramError, match="Nowhere"):
        diagram.mermaid(broken)
    odd = copy.deepcopy(SMALL)
    odd["States"]["Pause"]["Type"] = "Teleport"
    with pytest.raises(diagram.DiagramError, match="Teleport"):
        diagram.mermaid(odd)
