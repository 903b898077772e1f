"""Which parts of the real-sized-work API the core has landed, read from the code itself, so tests of the
client's commands that need them run as soon as they exist and are skipped, saying why, until then."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchbridge.api import CreateBatchRequest

_API_ROUTES = (Path(__file__).resolve().parents[1] / "functions" / "api" / "app.py").read_text()

CREATE_FROM_UPLOAD = any(
    (field.alias or name) == "uploadId" for name, field in CreateBatchRequest.model_fields.items()
)
RETRY = '"/batches/<batch_id>/retry"' in _API_ROUTES

needs_create_from_upload = pytest.mark.skipif(
    not CREATE_FROM_UPLOAD,
    reason="waits on the core: POST /batches with an uploadId (create-from-upload) is not built yet",
)
needs_retry = pytest.mark.skipif(
    not RETRY, reason="waits on the core: POST /batches/{id}/retry is not built yet"
)
OUTCOME_FILES_PENDING = "waits on the core: GET /batches/{id}/results?format=file&outcome=... (outcome files)"
