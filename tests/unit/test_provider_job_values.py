"""Values that cannot travel to a vendor are refused at ``POST /batches`` with a 422 naming the field:
NaN, Infinity, integers beyond what JSON carries exactly, and SuperOffice field values too large to
store with the batch. And each provider's job and options models publish a JSON Schema that their own
examples meet (the OpenAPI document is generated from them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from batchbridge.api import RequestError, inline_jobs, parse_create, validate_for_provider
from batchbridge.providers.base import provider_class

SO_OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from batchbridge.config import get_settings

    monkeypatch.setenv("TABLE_NAME", "t")
    monkeypatch.setenv("BUCKET_NAME", "b")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def post(body: str) -> RequestError:
    """What POST /batches answers for this raw body (the checks before anything is stored)."""
    with pytest.raises(RequestError) as caught:
        accept(body)
    return caught.value


def accept(raw: str) -> None:
    """Every check POST /batches makes of a body before anything is stored."""
    request = parse(raw)
    cls, options, _ = validate_for_provider(request, len(request.jobs or []))
    inline_jobs(cls, options, request.jobs or [])


def parse(raw: str) -> Any:
    return parse_create(raw, max_bytes=5 * 1024 * 1024)


def body(provider: str, jobs: list[dict[str, Any]], options: dict[str, Any] | None = None) -> str:
    return json.dumps({"provider": provider, "connection": "c", "jobs": jobs, "options": options or {}})


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1" + "0" * 49])
@pytest.mark.parametrize(
    ("provider", "template", "options", "field"),
    [
        ("ivvy", '{"namespace": "venue", "action": "x", "params": {"cost": %s}}', None, "jobs[0].params"),
        ("willsuite", '{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "score": %s}', None, "jobs[0]"),
        (
            "os1",
            '{"uniqueCode": "A", "name": "a", "properties": {"n": [%s]}}',
            {"participantType": "drivers"},
            "jobs[0].properties",
        ),
    ],
)
def test_values_json_cannot_carry_are_refused_naming_the_field(literal, provider, template, options, field):
    raw = body(provider, [], options).replace('"jobs": []', f'"jobs": [{template % literal}]')
    error = post(raw)
    if literal.lstrip("-").isalpha():  # NaN, Infinity: not JSON at all, refused when the body is read
        assert error.status == 400
    else:
        assert error.status == 422
        assert any(d["field"] == field for d in error.details), error.details
    # And the job model refuses such a value however it arrived (an uploaded file, a Python caller)
    job = json.loads(template % literal)
    with pytest.raises(ValidationError, match="JSON"):
        provider_class(provider).job_model.model_validate(job)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ("[" + "9" * 50 + "]", "options.fieldValueInfos[0].Values[0]"),
        (json.dumps(["x" * 410_000]), "options"),
    ],
)
def test_superoffice_field_values_that_cannot_be_stored_or_sent_are_a_422(values, named):
    options = json.dumps(SO_OPTIONS).replace('["3"]', values)
    raw = (
        json.dumps({"provider": "superoffice", "connection": "c", "jobs": [{"id": 1}]})[:-1]
        + f', "options": {options}}}'
    )
    error = post(raw)
    assert error.status == 422
    assert any(d["field"].startswith(named) for d in error.details), error.details


def test_ordinary_values_pass():
    accept(body("superoffice", [{"id": 1}], SO_OPTIONS))
    accept(body("ivvy", [{"namespace": "venue", "action": "x", "params": {"n": 2**53 - 1, "f": 0.5}}]))


@pytest.mark.parametrize("name", ["ivvy", "willsuite", "superoffice", "os1"])
def test_each_job_models_json_schema_describes_its_own_examples(name):
    cls = provider_class(name)
    for model in (cls.job_model, cls.options_model):
        schema = model.model_json_schema(by_alias=True)
        for example in schema.get("examples", []):
            jsonschema.validate(example, schema)
            model.model_validate(example)
    assert provider_class(name).job_model.model_json_schema(by_alias=True).get("examples"), name
