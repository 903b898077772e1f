"""Draw a state machine definition as a Mermaid flowchart, and keep README.md's copy of it current.

``make diagram`` writes the drawing of ``statemachine/batch.asl.json`` between the two marker comments in
README.md, and ``tests/unit/test_diagram.py`` fails when the README's copy differs from what this module
draws from the definition as it is now.

The drawing knows the Amazon States Language, not this workflow: no state name appears here. Every state
is a node (its type decides the shape; Succeed and Fail are coloured), every ``Next``, ``Default`` and
Choice rule is a solid edge (a rule's is labelled with its condition), every ``Catch`` is a dashed red edge
labelled with the errors it catches, and a state's ``Retry`` rules, timeout, resource and wait are noted
inside its node. Parallel and Map states become subgraphs holding their own states. The output is a
function of the definition alone, in the definition's own order, so the same file always draws the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "statemachine" / "batch.asl.json"
README = ROOT / "README.md"
BEGIN_MARK = "<!-- workflow-diagram:begin (generated from statemachine/batch.asl.json by `make diagram`) -->"
END_MARK = "<!-- workflow-diagram:end -->"
STALE = (
    "README.md's workflow diagram differs from statemachine/batch.asl.json: run `make diagram` "
    "and commit README.md"
)

# Long notes are broken into lines of about this many characters, so nodes stay narrow.
LINE_WIDTH = 52
# A JSONata condition longer than this is cut short on its edge (the definition has the whole of it).
CONDITION_WIDTH = 90
# Step Functions' default when a retrier gives no MaxAttempts.
DEFAULT_MAX_ATTEMPTS = 3

_COMPARISONS = {
    "Equals": "=",
    "LessThan": "<",
    "GreaterThan": ">",
    "LessThanEquals": "≤",
    "GreaterThanEquals": "≥",
}
_KINDS = ("String", "Numeric", "Boolean", "Timestamp")
_SHAPES = {
    "Choice": ('{"', '"}'),
    "Wait": ('[/"', '"/]'),
    "Pass": ('>"', '"]'),
    "Succeed": ('(["', '"])'),
    "Fail": ('(["', '"])'),
}
_STYLES = {
    "succeed": "fill:#dcf5df,stroke:#2e7d32,color:#1b5e20",
    "fail": "fill:#fde3e1,stroke:#c62828,color:#8e0000",
}
CATCH_EDGE_STYLE = "stroke:#c62828,color:#c62828"


class DiagramError(Exception):
    """The definition or the README is not in a shape this module can draw or update."""


# --- text ---------------------------------------------------------------------------------------------
def _escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label: entity codes for the characters that would end the label
    or open markup (``>`` alone is harmless and stays readable)."""
    out = []
    for char in text:
        if char == "#":
            out.append("#35;")
        elif char == '"':
            out.append("#quot;")
        elif char == "<":
            out.append("#lt;")
        elif char == "&":
            out.append("#amp;")
        else:
            out.append(char)
    return "".join(out)


def _wrap(text: str, width: int = LINE_WIDTH) -> list[str]:
    """Break ``text`` at spaces into lines of about ``width`` characters (a longer word keeps its line)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def _label(lines: Iterable[str]) -> str:
    return "<br/>".join(_escape(line) for line in lines)


def _short_path(path: str) -> str:
    return path[2:] if path.startswith("$.") else path


def _jsonata(text: str) -> str:
    """The expression inside a JSONata ``{% ... %}`` string, whitespace collapsed."""
    inner = text.strip()
    if inner.startswith("{%") and inner.endswith("%}"):
        inner = inner[2:-2]
    return " ".join(inner.split())


def error_names(names: Iterable[str]) -> str:
    """Error names as a short list: those sharing a prefix are grouped, ``Lambda.{A, B}``, order kept."""
    groups: dict[str, list[str]] = {}
    for name in names:
        prefix, dot, rest = name.partition(".")
        key = prefix if dot else name
        groups.setdefault(key, []).append(rest if dot else "")
    parts = []
    for key, rests in groups.items():
        if rests == [""]:
            parts.append(key)
        elif len(rests) == 1:
            parts.append(f"{key}.{rests[0]}")
        else:
            parts.append(f"{key}.{{{', '.join(rests)}}}")
    return ", ".join(parts)


# --- conditions ---------------------------------------------------------------------------------------
def condition(rule: dict[str, Any]) -> str:
    """A Choice rule (JSONPath or JSONata) as a short condition, e.g. ``step.pollCount ≥ 450``."""
    if "Condition" in rule:
        text = _jsonata(str(rule["Condition"]))
        return text if len(text) <= CONDITION_WIDTH else text[: CONDITION_WIDTH - 1] + "…"
    if "And" in rule:
        return " and ".join(_grouped(rule["And"]))
    if "Or" in rule:
        return _one_of(rule["Or"]) or " or ".join(_grouped(rule["Or"]))
    if "Not" in rule:
        return f"not ({condition(rule['Not'])})"
    return _comparison(rule)


def _grouped(rules: list[dict[str, Any]]) -> Iterator[str]:
    for rule in rules:
        text = condition(rule)
        yield f"({text})" if ("And" in rule or "Or" in rule) else text


def _one_of(rules: list[dict[str, Any]]) -> str | None:
    """``x = A or x = B or x = C`` as ``x ∈ {A, B, C}``; None when the rules are not of that form."""
    variables = {rule.get("Variable") for rule in rules}
    if len(variables) != 1 or None in variables:
        return None
    values = []
    for rule in rules:
        keys = set(rule) - {"Variable", "Next"}
        if len(keys) != 1 or not next(iter(keys)).endswith("Equals") or next(iter(keys)).endswith("Path"):
            return None
        values.append(str(rule[next(iter(keys))]))
    return f"{_short_path(str(variables.pop()))} ∈ {{{', '.join(values)}}}"


def _comparison(rule: dict[str, Any]) -> str:
    variable = _short_path(str(rule.get("Variable", "?")))
    for key, value in rule.items():
        if key in ("Variable", "Next", "Comment", "Assign", "Output"):
            continue
        if key == "IsPresent":
            return f"{variable} {'present' if value else 'absent'}"
        if key.startswith("Is"):  # IsNull, IsString, IsNumeric, IsBoolean, IsTimestamp
            kind = key[2:].lower()
            return f"{variable} {'is' if value else 'is not'} {kind}"
        if key == "StringMatches":
            return f"{variable} matches {json.dumps(value)}"
        if key == "BooleanEquals":
            return variable if value else f"not {variable}"
        if key == "BooleanEqualsPath":
            return f"{variable} = {_short_path(str(value))}"
        for kind in _KINDS:
            if key.startswith(kind):
                operator = key[len(kind) :]
                by_path = operator.endswith("Path")
                symbol = _COMPARISONS.get(operator.removesuffix("Path"))
                if symbol is None:
                    break
                shown = _short_path(str(value)) if by_path else _literal(value)
                return f"{variable} {symbol} {shown}"
        return f"{variable} {key} {_literal(value)}"
    raise DiagramError(f"a Choice rule with no comparison: {json.dumps(rule)}")


def _literal(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- notes inside a node ------------------------------------------------------------------------------
def _resource(state: dict[str, Any]) -> str | None:
    """What a Task runs: ``λ SubmitBatchFunction``, ``sns:publish``, ``λ X (waitForTaskToken)``."""
    resource = str(state.get("Resource", ""))
    if not resource:
        return None
    pattern = ""
    service = resource
    if resource.startswith("arn:") and ":::" in resource:
        service = resource.split(":::", 1)[1]
        service, _, pattern = service.partition(".")
        if service.startswith("lambda:invoke"):
            args = state.get("Parameters") or state.get("Arguments") or {}
            function = args.get("FunctionName") or args.get("FunctionName.$")
            if function:
                service = "λ " + _function_name(str(function))
    elif resource.startswith(("${", "arn:aws:lambda:", "arn:${AWS::Partition}:lambda:")):
        service = "λ " + _function_name(resource)
    return f"{service} ({pattern})" if pattern else service


def _function_name(reference: str) -> str:
    match = re.fullmatch(r"\$\{(\w+?)(Arn)?\}", reference)
    if match:
        return match.group(1)
    return reference.rsplit(":", 1)[-1]


def _timeout(state: dict[str, Any]) -> str | None:
    if "TimeoutSeconds" in state:
        value = state["TimeoutSeconds"]
        return f"timeout {value} s" if isinstance(value, int) else f"timeout {_jsonata(str(value))}"
    if "TimeoutSecondsPath" in state:
        return f"timeout {_short_path(state['TimeoutSecondsPath'])}"
    return None


def _wait(state: dict[str, Any]) -> str | None:
    if isinstance(state.get("Seconds"), int):
        return f"wait {state['Seconds']} s"
    for key in ("Seconds", "Timestamp"):
        prefix = "wait " if key == "Seconds" else "wait until "
        if key in state:
            return prefix + _jsonata(str(state[key]))
        if key + "Path" in state:
            return prefix + _short_path(str(state[key + "Path"]))
    return None


def _retries(state: dict[str, Any]) -> list[str]:
    lines = []
    for retrier in state.get("Retry", []):
        attempts = retrier.get("MaxAttempts", DEFAULT_MAX_ATTEMPTS)
        lines.extend(_wrap(f"↻ {attempts}x {error_names(retrier['ErrorEquals'])}"))
    return lines


def _notes(state: dict[str, Any]) -> list[str]:
    kind = state["Type"]
    notes: list[str] = []
    if kind == "Task":
        notes.extend(line for line in (_resource(state), _timeout(state)) if line)
    elif kind == "Wait":
        notes.extend(line for line in (_wait(state),) if line)
    elif kind == "Fail":
        if "Error" in state:
            notes.append(f"error {state['Error']}")
    elif kind == "Map" and "MaxConcurrency" in state:
        notes.append(f"at most {state['MaxConcurrency']} at once")
    notes.extend(_retries(state))
    return notes


# --- the graph ----------------------------------------------------------------------------------------
@dataclass
class _Graph:
    lines: list[str] = field(default_factory=list)
    edges: int = 0
    catch_edges: list[int] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=lambda: {"succeed": [], "fail": []})
    ids: set[str] = field(default_factory=lambda: {"_start", "_end"})
    ends: bool = False

    def node_id(self, prefix: str, name: str) -> str:
        """A Mermaid id for a state: its name in CamelCase (``Cancel Requested?`` -> ``CancelRequested``),
        after ``prefix``, numbered when taken, so ids read like the names and never clash."""
        words = re.findall(r"[A-Za-z0-9]+", name)
        base = prefix + ("".join(w[:1].upper() + w[1:] for w in words) or "State")
        if base[0].isdigit():
            base = "S" + base
        return self.unique(base)

    def unique(self, base: str) -> str:
        candidate, n = base, 2
        while candidate in self.ids:
            candidate, n = f"{base}{n}", n + 1
        self.ids.add(candidate)
        return candidate

    def edge(
        self, source: str, target: str, label: str | None = None, *, catch: bool = False, indent: str = "    "
    ) -> None:
        """Draw one edge, counted so that ``linkStyle`` can colour the Catch edges by number."""
        arrow = "-.->" if catch else "-->"
        text = f'|"{_label(_wrap(label))}"|' if label else ""
        self.lines.append(f"{indent}{source} {arrow}{text} {target}")
        if catch:
            self.catch_edges.append(self.edges)
        self.edges += 1


def _draw_states(graph: _Graph, machine: dict[str, Any], prefix: str, indent: str) -> tuple[str, list[str]]:
    """Declare ``machine``'s states (recursively for Parallel and Map) and draw their edges. Returns the id
    of its StartAt state and the ids of the states that end it (``End: true``)."""
    states: dict[str, Any] = machine.get("States") or {}
    if not states:
        raise DiagramError("a state machine (or branch) with no States")
    if machine.get("StartAt") not in states:
        raise DiagramError(f"StartAt {machine.get('StartAt')!r} names no state")
    ids = {name: graph.node_id(prefix, name) for name in states}
    ending: list[str] = []
    pending_edges: list[tuple[str, str, str | None, bool]] = []
    for name, state in states.items():
        node = ids[name]
        kind = state.get("Type")
        lines = [name, *_notes(state)]
        if kind in ("Parallel", "Map"):
            branches = state.get("Branches") if kind == "Parallel" else None
            if branches is None:
                processor = state.get("ItemProcessor") or state.get("Iterator")
                branches = [processor] if processor else []
            graph.lines.append(f'{indent}subgraph {node} ["{_label(lines)}"]')
            graph.lines.append(f"{indent}    direction TB")
            for number, branch in enumerate(branches, start=1):
                inner_prefix = f"{node}_{number}_" if kind == "Parallel" else f"{node}_"
                start, inner_ends = _draw_states(graph, branch, inner_prefix, indent + "    ")
                entry, exit_ = graph.unique(f"{node}_in{number}"), graph.unique(f"{node}_out{number}")
                graph.edge(f"{entry}(( ))", start, indent=indent + "    ")
                for end in inner_ends:
                    graph.edge(end, f"{exit_}(( ))", indent=indent + "    ")
            graph.lines.append(f"{indent}end")
        else:
            if kind not in ("Task", "Choice", "Wait", "Pass", "Succeed", "Fail"):
                raise DiagramError(f"state {name!r} has a type this module does not draw: {kind!r}")
            opening, closing = _SHAPES.get(kind, ('["', '"]'))
            graph.lines.append(f"{indent}{node}{opening}{_label(lines)}{closing}")
            if kind in ("Succeed", "Fail"):
                graph.classes[kind.lower()].append(node)
        for rule in state.get("Choices", []):
            pending_edges.append((node, rule["Next"], condition(rule), False))
        if "Default" in state:
            pending_edges.append((node, state["Default"], "otherwise", False))
        if "Next" in state:
            pending_edges.append((node, state["Next"], None, False))
        for catcher in state.get("Catch", []):
            pending_edges.append(
                (node, catcher["Next"], "catch " + error_names(catcher["ErrorEquals"]), True)
            )
        if state.get("End"):
            ending.append(node)
    for source, target, label, catch in pending_edges:
        if target not in ids:
            raise DiagramError(f"an edge to {target!r}, which is no state here")
        graph.edge(source, ids[target], label, catch=catch)
    return ids[machine["StartAt"]], ending


def mermaid(definition: dict[str, Any]) -> str:
    """The definition as a fenced Mermaid block (```` ```mermaid ... ``` ````), ending in a newline."""
    graph = _Graph()
    start, ending = _draw_states(graph, definition, "", "    ")
    body = list(graph.lines)
    head = ["```mermaid", "flowchart TD", "    _start((start))", f"    _start --> {start}"]
    tail = [f"    {node} --> _end((end))" for node in ending]
    for name, style in _STYLES.items():
        tail.append(f"    classDef {name} {style}")
        if graph.classes[name]:
            tail.append(f"    class {','.join(graph.classes[name])} {name}")
    if graph.catch_edges:
        # linkStyle counts every edge in the order drawn: the start edge is number 0.
        numbers = ",".join(str(n + 1) for n in graph.catch_edges)
        tail.append(f"    linkStyle {numbers} {CATCH_EDGE_STYLE}")
    return "\n".join([*head, *body, *tail, "```"]) + "\n"


# --- README -------------------------------------------------------------------------------------------
def replace_block(document: str, block: str) -> str:
    """``document`` with the text between the marker comments replaced by ``block``."""
    begin = document.find(BEGIN_MARK)
    end = document.find(END_MARK)
    if begin < 0 or end < 0 or end < begin or document.count(BEGIN_MARK) != 1:
        raise DiagramError(
            f"README.md needs exactly one {BEGIN_MARK!r} followed by {END_MARK!r} around the diagram"
        )
    return document[: begin + len(BEGIN_MARK)] + "\n" + block + document[end:]


def current_block(document: str) -> str:
    """The text between the marker comments, as :func:`replace_block` writes it."""
    begin = document.find(BEGIN_MARK)
    end = document.find(END_MARK)
    if begin < 0 or end < begin:
        raise DiagramError(f"README.md has no {BEGIN_MARK!r} ... {END_MARK!r} block")
    return document[begin + len(BEGIN_MARK) + 1 : end]


def drawn(definition_path: Path | None = None) -> str:
    """The drawing of the definition (``statemachine/batch.asl.json`` unless told otherwise)."""
    return mermaid(json.loads((definition_path or DEFINITION).read_text()))


def write_readme(readme: Path | None = None, definition_path: Path | None = None) -> bool:
    """Write the current drawing into the README; True when that changed the file."""
    readme = readme or README
    before = readme.read_text()
    after = replace_block(before, drawn(definition_path))
    if after != before:
        readme.write_text(after)
    return after != before


@click.command()
@click.option("--check", is_flag=True, help="change nothing; fail when README.md's diagram is out of date")
def main(check: bool) -> None:
    """Draw statemachine/batch.asl.json into README.md (``make diagram``)."""
    if check:
        if current_block(README.read_text()) != drawn():
            raise click.ClickException(STALE)
        click.echo("README.md's workflow diagram matches statemachine/batch.asl.json")
        return
    changed = write_readme()
    click.echo("README.md: workflow diagram " + ("redrawn" if changed else "already current"))


if __name__ == "__main__":
    main()
