"""What the workflow tests share: submit through the API, and read the one event a batch published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "completion-event.v1.json").read_text()
)


def submit(stack: Any, provider: str, connection: str, jobs: list[dict[str, Any]], **extra: Any) -> str:
    body = {"provider": provider, "connection": connection, "jobs": jobs, **extra}
    status, answer = stack.api("POST", "/batches", body)
    assert status == 202, answer
    return str(answer["batchId"])


def the_event(stack: Any, batch_id: str) -> dict[str, Any]:
    """Exactly one event reached the subscriber for this batch, and it matches the published schema."""
    received = stack.received_events(batch_id, wait=10)
    assert len(received) == 1, received
    jsonschema.validate(received[0]["event"], SCHEMA)
    return dict(received[0])


def by_outcome(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {"succeeded": [], "failed": [], "not_processed": []}
    for line in lines:
        grouped[line["outcome"]].append(line)
    return grouped
