"""Shared fixtures: one local stack (moto + the real template, ASL and handlers) per test process, and
the provider simulators on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


def load_event(relative: str) -> Any:
    """One helper loads every event fixture, so tests and ``sam local invoke -e`` share them."""
    return json.loads((EVENTS / relative).read_text())


@dataclass(frozen=True)
class EmfDocument:
    """One CloudWatch embedded-metric-format document as a function printed it."""

    namespace: str
    dimensions: dict[str, str]
    values: dict[str, Any]  # metric name -> value (a list when the document holds several)
    units: dict[str, str]
    metadata: dict[str, Any]  # the other top-level keys: not dimensions, not metrics

    def total(self, name: str) -> float:
        value = self.values.get(name, 0)
        return float(sum(value) if isinstance(value, list) else value)


def _one(value: Any) -> Any:
    """Powertools writes each value as a list; one value reads as itself."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def emf_documents(text: str) -> list[EmfDocument]:
    """The EMF documents among printed lines (other lines are skipped)."""
    documents = []
    for line in text.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        doc = json.loads(line)
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        (dimension_names,) = directive["Dimensions"]
        names = [m["Name"] for m in directive["Metrics"]]
        documents.append(
            EmfDocument(
                namespace=directive["Namespace"],
                dimensions={d: doc[d] for d in dimension_names},
                values={n: _one(doc[n]) for n in names},
                units={m["Name"]: m.get("Unit", "None") for m in directive["Metrics"]},
                metadata={k: v for k, v in doc.items() if k not in {"_aws", *names, *dimension_names}},
            )
        )
    return documents


@pytest.fixture
def emitted(monkeypatch: Any, capsys: Any) -> Iterator[Callable[[], list[EmfDocument]]]:
    """Metrics switched on for the test; calling the result flushes the handlers' shared metrics and
    returns every EMF document printed since the test began."""
    from batchbridge.observability import metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")
    metrics.clear_metrics()
    capsys.readouterr()
    seen: list[EmfDocument] = []

    def read() -> list[EmfDocument]:
        if metrics.metric_set:
            metrics.flush_metrics()
        seen.extend(emf_documents(capsys.readouterr().out))
        return list(seen)

    yield read
    metrics.clear_metrics()


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from batchbridge_local.stack import LocalStack

    # S3 on loopback too: pre-signed upload and download URLs work as they do from a client.
    with LocalStack(serve_s3=True) as local:
        yield local


@pytest.fixture(scope="session")
def ivvy_sim() -> Iterator[Any]:
    from batchbridge_local.simulators.ivvy import IvvySimulator

    with IvvySimulator(job_seconds=1.5) as sim:
        yield sim


@pytest.fixture
def ivvy(ivvy_sim: Any) -> Iterator[Any]:
    """The iVvy simulator reset before and after the test, its jobs taking half a second."""
    ivvy_sim.reset()
    ivvy_sim.job_seconds = 0.5
    yield ivvy_sim
    ivvy_sim.reset()


@pytest.fixture(scope="session")
def ivvy_connection(stack: Any, ivvy_sim: Any) -> str:
    stack.add_connection(
        "ivvy-test", "ivvy", ivvy_sim.base_url, {"apiKey": ivvy_sim.api_key, "apiSecret": ivvy_sim.api_secret}
    )
    return "ivvy-test"


class Snapshot:
    """Counts of everything the stack holds, to prove a rejected request wrote nothing."""

    def __init__(self, stack: Any) -> None:
        import time

        import boto3

        # Batches an earlier test left running would keep writing: wait for them to end first.
        sfn = boto3.client("stepfunctions")
        deadline = time.monotonic() + 120
        running = {"stateMachineArn": stack.state_machine_arn, "statusFilter": "RUNNING"}
        while sfn.list_executions(**running)["executions"]:
            if time.monotonic() > deadline:
                raise TimeoutError("executions left running by earlier tests did not end")
            time.sleep(0.2)
        self.items = sum(1 for _ in stack.all_items())
        self.objects = sum(1 for _ in stack.all_objects())
        self.executions = len(sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"Snapshot({vars(self)})"


@pytest.fixture
def snapshot(stack: Any) -> Any:
    return lambda: Snapshot(stack)


@pytest.fixture(scope="session")
def willsuite_sim() -> Iterator[Any]:
    from batchbridge_local.simulators.willsuite import WillSuiteSimulator

    with WillSuiteSimulator(job_seconds=1.0) as sim:
        yield sim


@pytest.fixture(scope="session")
def willsuite_connection(stack: Any, willsuite_sim: Any) -> str:
    stack.add_connection(
        "willsuite-test",
        "willsuite",
        willsuite_sim.api_base_url,
        {"clientId": willsuite_sim.client_id, "clientSecret": willsuite_sim.client_secret},
    )
    return "willsuite-test"


@pytest.fixture(scope="session")
def superoffice_sim() -> Iterator[Any]:
    from batchbridge_local.simulators.superoffice import SuperOfficeSimulator

    with SuperOfficeSimulator(job_seconds=1.0) as sim:
        yield sim


def add_superoffice(stack: Any, sim: Any, name: str, *, clear_cache: bool = True, **settings: Any) -> str:
    """A SuperOffice connection to the simulator's tenant with its current ticket; returns its name."""
    stack.add_connection(
        name,
        "superoffice",
        sim.base_url,
        {"ticket": sim.ticket, "appToken": sim.app_token},
        {"contextIdentifier": sim.context_identifier, **settings},
        clear_cache=clear_cache,
    )
    return name


@pytest.fixture(scope="session")
def superoffice_connection(stack: Any, superoffice_sim: Any) -> str:
    return add_superoffice(stack, superoffice_sim, "superoffice-test", notRunningWaitSeconds=100)


@pytest.fixture(scope="session")
def superoffice_listing_connection(stack: Any, superoffice_sim: Any) -> str:
    """The same tenant, with the associate whose batch tasks the adapter may list to find a submission."""
    return add_superoffice(
        stack, superoffice_sim, "superoffice-listing", associateId=superoffice_sim.associate_id
    )


@pytest.fixture(scope="session")
def os1_sim() -> Iterator[Any]:
    from batchbridge_local.simulators.os1 import OS1Simulator

    with OS1Simulator(batch_seconds=1.0) as sim:
        yield sim


@pytest.fixture(scope="session")
def os1_connection(stack: Any, os1_sim: Any) -> str:
    stack.add_connection(
        "os1-test",
        "os1",
        os1_sim.base_url,
        {
            "clientId": os1_sim.client_id,
            "clientSecret": os1_sim.client_secret,
            "originToken": os1_sim.origin_token,
        },
        {"tenantId": os1_sim.tenant_id},
    )
    return "os1-test"
