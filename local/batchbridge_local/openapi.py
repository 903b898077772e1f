"""Write the API's OpenAPI document, generated from the api function's routes and models.

``make openapi`` writes ``schemas/openapi.v1.json``; ``tests/unit/test_openapi.py`` fails when the committed
file differs from what the code generates now, so the document cannot drift from the routes.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "schemas" / "openapi.v1.json"
STALE = (
    "schemas/openapi.v1.json differs from the document the code generates: run `make openapi` and commit it"
)


def api_module() -> ModuleType:
    """functions/api/app.py, loaded on its own (it is a Lambda handler file, not a package module)."""
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "batchbridge")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BatchBridge")
    spec = importlib.util.spec_from_file_location(
        "batchbridge_openapi_api", ROOT / "functions" / "api" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate() -> dict[str, Any]:
    document: dict[str, Any] = api_module().openapi_document()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    DOCUMENT.write_text(render(generate()))
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
