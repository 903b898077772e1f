"""Shared fixtures: one local stack (moto + the real template, ASL and handlers) per test process, and
the provider simulators on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


def load_event(relative: str) -> Any:
    """One helper loads every event fixture, so tests and ``sam local invoke -e`` share them."""
    return json.loads((EVENTS / relative).read_text())


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from batchbridge_local.stack import LocalStack

    with LocalStack() as local:
        yield local


@pytest.fixture(scope="session")
def ivvy_sim() -> Iterator[Any]:
    from batchbridge_local.simulators.ivvy import IvvySimulator

    with IvvySimulator(job_seconds=1.5) as sim:
        yield sim


@pytest.fixture(scope="session")
def ivvy_connection(stack: Any, ivvy_sim: Any) -> str:
    stack.add_connection(
        "ivvy-test", "ivvy", ivvy_sim.base_url, {"apiKey": ivvy_sim.api_key, "apiSecret": ivvy_sim.api_secret}
    )
    return "ivvy-test"


class Snapshot:
    """Counts of everything the stack holds, to prove a rejected request wrote nothing."""

    def __init__(self, stack: Any) -> None:
        import boto3

        self.items = sum(1 for _ in stack.all_items())
        self.objects = sum(1 for _ in stack.all_objects())
        sfn = boto3.client("stepfunctions")
        self.executions = len(sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"Snapshot({vars(self)})"


@pytest.fixture
def snapshot(stack: Any) -> Any:
    return lambda: Snapshot(stack)
