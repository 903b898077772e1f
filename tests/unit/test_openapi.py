"""The OpenAPI document (schemas/openapi.v1.yaml) is valid and says what the code does: the same routes as
template.yaml and the api function, the same request fields as the request model, the same enums and
capabilities as the domain models. tests/integration/test_openapi_responses.py checks real answers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from pydantic import BaseModel

from batchbridge.api import CreateBatchRequest
from batchbridge.models import BatchStatus, Counts, Outcome, OutcomeKind
from batchbridge.providers.base import Capabilities
from batchbridge_local import template

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "schemas" / "openapi.v1.yaml").read_text())
SCHEMAS = DOC["components"]["schemas"]
METHODS = {"get", "post", "put", "patch", "delete"}


def document_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in DOC["paths"].items() for method in item if method in METHODS
    }


def template_routes() -> dict[tuple[str, str], dict[str, Any]]:
    events = template.load()["Resources"]["ApiFunction"]["Properties"]["Events"]
    return {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"]): e["Properties"]
        for e in events.values()
        if e["Type"] == "Api"
    }


def handler_routes() -> set[tuple[str, str]]:
    source = (ROOT / "functions" / "api" / "app.py").read_text()
    found = re.findall(r'@app\.(get|post|put|patch|delete)\("([^"]+)"\)', source)
    return {(method.upper(), re.sub(r"<(\w+)>", r"{\1}", path)) for method, path in found}


def aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_the_document_is_valid_openapi_3_1():
    validate(DOC)
    assert DOC["openapi"].startswith("3.1")


def test_the_document_the_template_and_the_handler_have_the_same_routes():
    assert document_routes() == set(template_routes()) == handler_routes()


def test_only_the_provider_callback_is_open_and_the_template_agrees():
    open_in_document = {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if method in METHODS and operation.get("security") == []
    }
    open_in_template = {
        route
        for route, props in template_routes().items()
        if (props.get("Auth") or {}).get("Authorizer") == "NONE"
    }
    assert open_in_document == open_in_template == {("POST", "/callbacks/{batch_id}/{token}")}
    assert DOC["security"] == [{"sigv4": []}]


def test_path_parameters_are_declared_for_every_placeholder():
    for path, item in DOC["paths"].items():
        placeholders = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = set()
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    parameter = DOC["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
                if parameter["in"] == "path":
                    declared.add(parameter["name"])
            assert declared == placeholders, (method, path)


def test_the_create_request_matches_the_request_model():
    schema = SCHEMAS["CreateBatchRequest"]
    assert set(schema["properties"]) == aliases(CreateBatchRequest)
    required = {
        field.alias or name for name, field in CreateBatchRequest.model_fields.items() if field.is_required()
    }
    assert set(schema["required"]) == required
    assert schema["additionalProperties"] is False  # the model forbids extra fields too


@pytest.mark.parametrize(
    ("schema", "model"),
    [("Capabilities", Capabilities), ("Counts", Counts)],
)
def test_response_objects_name_every_field_of_their_model(schema, model):
    assert set(SCHEMAS[schema]["properties"]) == aliases(model)


def test_an_outcome_has_the_models_fields_and_the_row_marker():
    assert set(SCHEMAS["Outcome"]["properties"]) == aliases(Outcome) | {"responseTruncated"}


def test_enums_are_the_domain_enums():
    assert SCHEMAS["BatchStatus"]["enum"] == [s.value for s in BatchStatus]
    assert SCHEMAS["OutcomeKind"]["enum"] == [k.value for k in OutcomeKind]
