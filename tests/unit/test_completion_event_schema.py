"""The completion event names its schema by an identifier the project controls, and the schema agrees."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from batchbridge import events
from batchbridge.config import Settings
from batchbridge.records import Batch

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "completion-event.v1.json").read_text()
)
SETTINGS = Settings(table_name="t", bucket_name="b")


def finished(**changes) -> Batch:
    values = {
        "batch_id": "b-1",
        "status": "SUCCEEDED",
        "provider": "ivvy",
        "connection": "ivvy-prod",
        "job_count": 1,
        "chunk_count": 1,
        "jobs_key": "batches/b-1/jobs.jsonl",
        "created_at": "2026-03-02T09:59:00Z",
        "finished_at": "2026-03-02T10:00:00Z",
        "deadline_at": 1_800_000_000,
        "counts": {"total": 1, "succeeded": 1, "failed": 0, "notProcessed": 0},
    }
    return Batch.model_validate(values | changes)


def test_the_event_names_the_schema_by_its_id_which_is_no_web_address():
    event = events.completion_event(finished(), SETTINGS)
    assert event["dataschema"] == SCHEMA["$id"] == events.SCHEMA_ID
    assert SCHEMA["$id"].startswith("urn:batchbridge:")  # no domain the project would have to own
    jsonschema.validate(event, SCHEMA)


def test_an_event_naming_another_schema_does_not_validate():
    event = events.completion_event(finished(status="FAILED"), SETTINGS)
    event["dataschema"] = "https://batchbridge.dev/schemas/completion-event.v1.json"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, SCHEMA)
