"""The operations dashboard in template.yaml reads only metrics the code emits (names, namespace, dimension
names and values), every metric the code emits, the real resources' AWS metrics and every alarm, so the
dashboard and the code cannot drift apart."""

from __future__ import annotations

import json
import re

import pytest

from batchbridge import events, ops_metrics
from batchbridge.config import Settings
from batchbridge.models import BatchStatus
from batchbridge.observability import PROVIDER_ERRORS, provider_task
from batchbridge.providers.base import all_capabilities
from batchbridge.records import Batch
from batchbridge_local import template as tpl

TEMPLATE = tpl.load()
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]
PSEUDO = {"AWS::Region", "AWS::StackName", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"([^']*)', '(\w+)'(?:, (\d+))?\)")
STATES_METRICS = {
    "ExecutionsStarted",
    "ExecutionsSucceeded",
    "ExecutionsFailed",
    "ExecutionsAborted",
    "ExecutionsTimedOut",
    "ExecutionThrottled",
    "ExecutionTime",
}


def substituted(text: str) -> str:
    """The !Sub body with each reference replaced: a Number parameter by its default, anything else by
    ``REF(name)``; a reference to nothing in the template fails here."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        resource = name.split(".", 1)[0]
        assert name in PSEUDO or name in PARAMETERS or resource in RESOURCES, f"${{{name}}} names nothing"
        if PARAMETERS.get(name, {}).get("Type") == "Number":
            return str(PARAMETERS[name]["Default"])
        return f"REF({name})"

    return re.sub(r"\$\{([^}!]+)\}", one, text)


BODY_TEXT = RESOURCES["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
WIDGETS = json.loads(substituted(BODY_TEXT))["widgets"]
METRIC_WIDGETS = [w for w in WIDGETS if w["type"] == "metric"]


def reads() -> list[tuple[str, str, dict[str, str | None]]]:
    """Every metric the dashboard reads: (namespace, name, dimensions). A SEARCH reads the metrics with
    exactly its schema's dimension names (value None), narrowed by any Name="value" terms."""
    found: list[tuple[str, str, dict[str, str | None]]] = []
    for widget in METRIC_WIDGETS:
        for entry in widget["properties"]["metrics"]:
            if isinstance(entry[0], dict):
                for schema, name, terms, _stat, _period in SEARCH.findall(entry[0]["expression"]):
                    namespace, *dims = [part.strip() for part in schema.split(",")]
                    values: dict[str, str | None] = dict.fromkeys(dims)
                    values |= dict(re.findall(r'(\w+)="([^"]*)"', terms))
                    found.append((namespace, name, values))
            else:
                namespace, name, *rest = entry
                pairs = [x for x in rest if not isinstance(x, dict)]
                assert "." not in (namespace, name, *pairs), "no '.' shorthand: every entry names itself"
                found.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


@pytest.fixture
def code_emits(emitted) -> dict[tuple[str, str, frozenset[str]], dict[str, set[str]]]:
    """What the code really emits, found by running every emitting function once per case: for each
    (namespace, name, dimension names), the dimension values seen."""
    batch = {
        "batchId": "b-1",
        "connection": "c",
        "jobCount": 3,
        "chunkCount": 1,
        "jobsKey": "batches/b-1/jobs.jsonl",
        "createdAt": "2026-03-02T10:00:00Z",
        "deadlineAt": 1_800_000_000,
        "counts": {"total": 3, "succeeded": 2, "failed": 1, "notProcessed": 0},
        "durationSeconds": 12.5,
        "pollCount": 4,
        "cost": {"totalUsd": 0.0004},
    }
    settings = Settings(table_name="t", bucket_name="b")
    for capabilities in all_capabilities():
        ops_metrics.batch_accepted(202, {"batchId": "b-1", "provider": capabilities.name})
        for status in BatchStatus:
            if status.is_terminal:
                record = Batch.from_item({**batch, "provider": capabilities.name, "status": status.value})
                ops_metrics.batch_finished(events.sns_message(record, settings))
    for error in PROVIDER_ERRORS:
        with pytest.raises(error), provider_task():
            raise error("x")
    with provider_task():
        pass
    catalog: dict[tuple[str, str, frozenset[str]], dict[str, set[str]]] = {}
    for document in emitted():
        for name in document.values:
            seen = catalog.setdefault((document.namespace, name, frozenset(document.dimensions)), {})
            for key, value in document.dimensions.items():
                seen.setdefault(key, set()).add(value)
    return catalog


def test_every_batchbridge_metric_the_dashboard_reads_is_one_the_code_emits(code_emits):
    ours = [r for r in reads() if r[0] == ops_metrics.NAMESPACE]
    assert ours
    for namespace, name, dims in ours:
        key = (namespace, name, frozenset(dims))
        assert key in code_emits, f"the dashboard reads {name} {sorted(dims)}, which no code emits"
        for dim, value in dims.items():
            assert value is None or value in code_emits[key][dim], f"{name}: {dim}={value!r} is never emitted"


def test_every_metric_the_code_emits_is_on_the_dashboard(code_emits):
    read = {(ns, name, frozenset(dims)) for ns, name, dims in reads()}
    assert set(code_emits) <= read, set(code_emits) - read


def test_the_emitted_dimension_values_are_the_bounded_sets(code_emits):
    allowed = {
        "service": {ops_metrics.SERVICE},
        "provider": {c.name for c in all_capabilities()},
        "status": {s.value for s in BatchStatus if s.is_terminal},
        "ErrorType": {e.__name__ for e in PROVIDER_ERRORS},
    }
    for (_, name, _), seen in code_emits.items():
        for dim, values in seen.items():
            assert values <= allowed[dim], (name, dim, values - allowed[dim])


def test_the_alarms_metrics_are_ones_the_code_emits(code_emits):
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for query in resource["Properties"].get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                dims = frozenset(d["Name"] for d in metric["Dimensions"])
                assert (metric["Namespace"], metric["MetricName"], dims) in code_emits, logical_id


def test_the_workflow_and_function_metrics_are_this_stacks_own():
    machines = {f"REF({k})" for k, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::StateMachine"}
    functions = {f"REF({k})" for k, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
    lambda_reads: dict[str, set[str | None]] = {}
    for namespace, name, dims in reads():
        if namespace == "AWS/States":
            assert name in STATES_METRICS, name
            assert set(dims) == {"StateMachineArn"} and dims["StateMachineArn"] in machines, dims
        elif namespace == "AWS/Lambda":
            assert set(dims) == {"FunctionName"}, dims
            lambda_reads.setdefault(name, set()).add(dims["FunctionName"])
        else:
            assert namespace == ops_metrics.NAMESPACE, namespace
    # every function's errors and duration, not some of them
    assert lambda_reads == {"Errors": functions, "Duration": functions}


def test_the_alarm_widget_shows_every_alarm_of_the_template():
    alarms = {f"REF({k}.Arn)" for k, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    (widget,) = [w for w in WIDGETS if w["type"] == "alarm"]
    assert alarms
    assert set(widget["properties"]["alarms"]) == alarms


def test_every_metric_widget_is_in_the_stacks_region_and_its_math_names_only_its_own_ids():
    for widget in METRIC_WIDGETS:
        props = widget["properties"]
        assert props["region"] == "REF(AWS::Region)", props["title"]
        ids: list[str] = []
        expressions: list[str] = []
        for entry in props["metrics"]:
            options = (
                entry[0]
                if isinstance(entry[0], dict)
                else next((x for x in entry if isinstance(x, dict)), {})
            )
            if "id" in options:
                ids.append(options["id"])
            if "expression" in options:
                expressions.append(options["expression"])
        assert len(ids) == len(set(ids)), props["title"]
        for expression in expressions:
            outside_search = SEARCH.sub("", expression)
            named = set(re.findall(r"\b[a-z]\w*\b", outside_search))
            assert named <= set(ids), (props["title"], named - set(ids))


def test_widgets_stay_on_the_grid_without_overlapping():
    cells: set[tuple[int, int]] = set()
    for widget in WIDGETS:
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24, widget
        mine = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not mine & cells, widget
        cells |= mine


def test_the_stack_outputs_the_dashboards_url():
    url = TEMPLATE["Outputs"]["OperationsDashboardUrl"]["Value"]["Fn::Sub"]
    assert "#dashboards/dashboard/${OperationsDashboard}" in url
    assert url.startswith(
        "https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}"
    )
