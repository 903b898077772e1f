"""The completion event: CloudEvents 1.0 JSON, published on SNS with filterable message attributes.

The schema is ``schemas/completion-event.v1.json`` at the repository root. Its ``$id``, and every event's
``dataschema``, is :data:`SCHEMA_ID`: a name the project gives itself (as the event ``source`` does), not
the address of a web site, because the project owns no domain to publish the schema under.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from batchbridge.clock import now_iso

if TYPE_CHECKING:
    from batchbridge.config import Settings
    from batchbridge.records import Batch

SCHEMA_VERSION = "1"
EVENT_TYPE_PREFIX = "batchbridge.batch."
#: The completion event schema's identifier: the ``$id`` of schemas/completion-event.v1.json.
SCHEMA_ID = "urn:batchbridge:schema:completion-event:v1"


def completion_event(batch: Batch, settings: Settings) -> dict[str, Any]:
    status = batch.status.value
    data = {
        "schemaVersion": SCHEMA_VERSION,
        "batchId": batch.batch_id,
        "provider": batch.provider,
        "connection": batch.connection,
        "status": status,
        "counts": batch.counts.model_dump(by_alias=True) if batch.counts else {},
        "results": {
            "bucket": settings.bucket_name,
            "key": batch.results_key,
            "byOutcome": batch.outcome_keys,
        },
        "timings": {
            "createdAt": batch.created_at,
            "finishedAt": batch.finished_at,
            "durationSeconds": batch.duration_seconds,
        },
        "polls": batch.rounds,
        "cost": batch.cost,
        "clientReference": batch.client_reference,
        "retryOf": batch.retry_of,
        "error": batch.error.model_dump() if batch.error else None,
    }
    return {
        "specversion": "1.0",
        "id": f"{batch.batch_id}:{status}",
        "source": settings.event_source,
        "type": EVENT_TYPE_PREFIX + status.lower(),
        "time": batch.finished_at or now_iso(),
        "subject": f"batches/{batch.batch_id}",
        "datacontenttype": "application/json",
        "dataschema": SCHEMA_ID,
        "data": data,
    }


def sns_message(batch: Batch, settings: Settings) -> dict[str, Any]:
    """What the workflow's SNS publish step sends: the event as text and its filter attributes."""
    event = completion_event(batch, settings)
    return {
        "status": batch.status.value,
        "message": json.dumps(event, separators=(",", ":")),
        "attributes": {
            "provider": batch.provider,
            "status": batch.status.value,
            "eventType": event["type"],
            "connection": batch.connection,
        },
    }
