"""The completion event: CloudEvents 1.0 JSON, published on SNS with filterable message attributes.

The schema is ``schemas/completion-event.v1.json`` at the repository root.
"""

from __future__ import annotations

import json
from typing import Any

from batchbridge.config import get_settings
from batchbridge.store import now_iso

SCHEMA_VERSION = "1"
EVENT_TYPE_PREFIX = "batchbridge.batch."


def completion_event(batch: dict[str, Any]) -> dict[str, Any]:
    status = batch["status"]
    data = {
        "schemaVersion": SCHEMA_VERSION,
        "batchId": batch["batchId"],
        "provider": batch["provider"],
        "connection": batch["connection"],
        "status": status,
        "counts": batch.get("counts", {}),
        "results": {
            "bucket": get_settings().bucket_name,
            "key": batch.get("resultsKey"),
        },
        "timings": {
            "createdAt": batch.get("createdAt"),
            "finishedAt": batch.get("finishedAt"),
            "durationSeconds": batch.get("durationSeconds"),
        },
        "polls": batch.get("pollCount", 0),
        "estimatedStepFunctionsCostUsd": batch.get("estimatedCostUsd"),
        "clientReference": batch.get("clientReference"),
        "error": batch.get("error"),
    }
    return {
        "specversion": "1.0",
        "id": f"{batch['batchId']}:{status}",
        "source": get_settings().event_source,
        "type": EVENT_TYPE_PREFIX + status.lower(),
        "time": batch.get("finishedAt") or now_iso(),
        "subject": f"batches/{batch['batchId']}",
        "datacontenttype": "application/json",
        "dataschema": "https://batchbridge.dev/schemas/completion-event.v1.json",
        "data": data,
    }


def sns_message(batch: dict[str, Any]) -> dict[str, Any]:
    """What the workflow's SNS publish step sends: the event as text and its filter attributes."""
    event = completion_event(batch)
    return {
        "status": batch["status"],
        "message": json.dumps(event, separators=(",", ":")),
        "attributes": {
            "provider": batch["provider"],
            "status": batch["status"],
            "eventType": event["type"],
            "connection": batch["connection"],
        },
    }
