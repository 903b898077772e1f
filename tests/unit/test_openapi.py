"""The OpenAPI document is generated from the api function's routes and models: the committed copy
(schemas/openapi.v1.json) is what the code generates now, it is valid OpenAPI 3.1, it has the template's
routes with the template's auth, and the shapes it gives jobs are the providers' own models.
tests/integration/test_openapi_responses.py checks real answers against it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from batchbridge.api_models import ListBatchesQuery, ResultsQuery
from batchbridge.providers.base import all_capabilities, provider_class
from batchbridge_local import openapi, template
from batchbridge_local.template import ROOT

DOC = json.loads(openapi.DOCUMENT.read_text())
GENERATED = openapi.generate()
SCHEMAS = DOC["components"]["schemas"]
METHODS = {"get", "post", "put", "patch", "delete"}


def template_routes() -> dict[tuple[str, str], dict[str, Any]]:
    events = template.load()["Resources"]["ApiFunction"]["Properties"]["Events"]
    return {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"]): e["Properties"]
        for e in events.values()
        if e["Type"] == "Api"
    }


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_the_committed_document_is_the_generated_one():
    assert openapi.render(GENERATED) == openapi.DOCUMENT.read_text(), openapi.STALE


def test_the_document_is_valid_openapi_3_1():
    validate(GENERATED)
    assert GENERATED["openapi"].startswith("3.1")


def test_the_document_and_the_template_have_the_same_routes():
    assert {(method, path) for method, path, _ in operations()} == set(template_routes())


def test_only_the_provider_callback_is_open_and_the_template_agrees():
    open_in_document = {(m, p) for m, p, operation in operations() if operation.get("security") == []}
    open_in_template = {
        route
        for route, props in template_routes().items()
        if (props.get("Auth") or {}).get("Authorizer") == "NONE"
    }
    assert open_in_document == open_in_template == {("POST", "/callbacks/{batch_id}/{token}")}
    assert DOC["security"] == [{"sigv4": []}]


def test_path_parameters_are_declared_for_every_placeholder():
    for method, path, operation in operations():
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


def test_every_error_answer_is_the_error_body():
    for method, path, operation in operations():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    assert "HTTPValidationError" not in SCHEMAS


def test_query_parameters_keep_their_bounds():
    listing = {p["name"]: p for p in DOC["paths"]["/batches"]["get"]["parameters"]}
    assert listing["limit"]["schema"] == {"default": 25, "maximum": 100, "minimum": 1, "type": "integer"}
    results = {p["name"]: p for p in DOC["paths"]["/batches/{batch_id}/results"]["get"]["parameters"]}
    assert results["format"]["schema"]["enum"] == ["json", "file"]


def test_a_blank_query_parameter_is_an_absent_one():
    page = ResultsQuery.model_validate({"format": "", "outcome": "", "clientRef": "", "nextToken": ""})
    assert (page.format, page.outcome, page.client_ref, page.next_token) == ("json", None, None, None)
    listing = ListBatchesQuery.model_validate({"status": "", "provider": "", "clientReference": ""})
    assert (listing.status, listing.provider, listing.client_reference) == (None, None, None)
    assert listing.limit == 25


@pytest.mark.parametrize("name", [c.name for c in all_capabilities()])
def test_each_providers_jobs_and_options_are_its_own_models(name):
    cls = provider_class(name)
    request = SCHEMAS["CreateBatchRequest"]
    shape = request["discriminator"]["mapping"][name].rsplit("/", 1)[-1]
    properties = SCHEMAS[shape]["properties"]
    assert properties["provider"]["const"] == name
    jobs = next(s for s in properties["jobs"]["anyOf"] if s.get("type") == "array")
    assert jobs["items"] == {"$ref": f"#/components/schemas/{cls.job_model.__name__}"}
    assert set(SCHEMAS[cls.job_model.__name__]["properties"]) == {
        f.alias or n for n, f in cls.job_model.model_fields.items()
    }
    assert {"$ref": f"#/components/schemas/{cls.options_model.__name__}"} in properties["options"]["anyOf"]


def test_no_job_is_an_untyped_object_anywhere():
    text = json.dumps(DOC)
    assert '"items": {"type": "object"}' not in text


def test_the_document_names_no_file_outside_the_repository():
    # Every file name the document mentions (``docs/uploads.md``, ``template.yaml``) is one its readers have;
    # routes (``/openapi.json``) are not files.
    text = openapi.DOCUMENT.read_text()
    named = {n for n in re.findall(r"[\w./-]+\.(?:md|ya?ml|json|py)\b", text) if not n.startswith("/")}
    tracked = {
        path.relative_to(ROOT).as_posix()
        for folder in ("docs", "schemas", "statemachine", "layers", "events")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
    } | {"template.yaml", "README.md"}
    missing = {name for name in named if not any(t == name or t.endswith("/" + name) for t in tracked)}
    assert missing == set()
    assert str(ROOT) not in text  # nor a path of the machine that generated it
