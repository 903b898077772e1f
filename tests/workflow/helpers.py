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


def assert_settled(
    stack: Any, batch_id: str, job_count: int, status: str, timeout: float = 60
) -> dict[str, Any]:
    """The batch ended with ``status``, every job has exactly one outcome (S3 line and DynamoDB row, indexes
    0..n-1 once each), and exactly one event with that status was published. Returns the final view."""
    view = stack.wait_for_batch(batch_id, timeout=timeout)
    assert view["status"] == status, view
    lines = stack.result_lines(batch_id)
    assert sorted(line["index"] for line in lines) == list(range(job_count)), lines
    rows = stack.outcome_rows(batch_id)
    assert sorted(int(row["index"]) for row in rows) == list(range(job_count))
    assert view["counts"]["total"] == job_count
    received = the_event(stack, batch_id)
    assert received["attributes"]["status"] == status
    assert received["event"]["data"]["status"] == status
    return dict(view)
