"""``POST /batches`` validates a plainly good body of inline jobs in one pass (pydantic's JSON reader, the
jobs' lines written once from what it validated) and every other body the careful way (json.loads, then
each check on its own). The one pass may only ever say "plainly good": for every body, good or bad, the
answer and what is stored are those of the careful way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)
from tests.fakes import MemoryObjects, RecordingWorkflow

from batchbridge import api
from batchbridge.config import Settings
from batchbridge.errors import IdempotencyConflictError, RequestError
from batchbridge.providers.base import Job, provider_class
from batchbridge.repository.memory import MemoryRepository
from batchbridge.tasks import Deps

CASE = "0f8fad5b-d9cb-469f-a165-70867728950e"
SO_OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


def ivvy_job(n: int = 0, **params: Any) -> dict[str, Any]:
    return {
        "clientRef": f"s-{n}",
        "namespace": "venue",
        "action": "addOrUpdateBookingSession",
        "params": {"bookingId": 15722, "name": f"Session {n}", "cost": 12.5, **params},
    }


def envelope(provider: str, jobs: list[Any], **fields: Any) -> str:
    return json.dumps({"provider": provider, "connection": "c", "jobs": jobs, **fields})


def ivvy_with(value: str) -> str:
    """An iVvy body whose one job carries ``value`` (raw JSON text) as a parameter."""
    return envelope("ivvy", [ivvy_job()]).replace('"cost": 12.5', f'"cost": {value}')


PLAIN = {
    "ivvy": envelope("ivvy", [ivvy_job(n) for n in range(5)]),
    "ivvy-keys-reordered": json.dumps(
        {
            "connection": "c",
            "jobs": [{"params": {"z": [1, {"y": None}], "a": "é✓"}, "action": "x", "namespace": "venue"}],
            "clientReference": "ref-1",
            "provider": "ivvy",
        },
        ensure_ascii=False,
    ),
    "ivvy-nested-to-the-limit": ivvy_with("[" * 30 + "]" * 30),  # the job, its params, 30 lists: 32
    "ivvy-card-number-as-text": envelope("ivvy", [ivvy_job(card="4111111111111111")]),
    "willsuite": envelope(
        "willsuite", [{"clientRef": "c-1", "id": CASE, "status": "reviewed", "score": 3, "tags": ["a"]}]
    ),
    "superoffice": envelope("superoffice", [{"id": 1}, {"clientRef": "x", "id": 2}], options=SO_OPTIONS),
    "os1": envelope(
        "os1",
        [{"clientRef": "d-1", "uniqueCode": "DRV-1", "name": "One", "properties": {"city": "Pune"}}],
        options={"participantType": "drivers"},
    ),
}

UNUSUAL = {
    # Not portable to a vendor, though pydantic's reader takes them: the one pass must hand them on.
    "number-beyond-a-double": ivvy_with("1e400"),
    "integer-beyond-2**53": ivvy_with(str(2**60)),
    "integer-beyond-2**53-in-a-list": ivvy_with(f"[1, {-(2**60)}]"),
    "nested-40-deep": ivvy_with("[" * 40 + "]" * 40),
    "nested-one-past-the-limit": ivvy_with("[" * 31 + "]" * 31),
    "a-job-over-64-KiB": ivvy_with(json.dumps("x" * 70_000)),
    "nan-in-a-job": ivvy_with("NaN"),
    "infinity-in-a-job": ivvy_with("-Infinity"),
    "nan-in-the-options": envelope("superoffice", [{"id": 1}], options=SO_OPTIONS).replace(
        '"contact"', '"contact", "n": NaN'
    ),
    "lone-surrogate-escape": ivvy_with('"\\ud800"'),
    "lone-surrogate-in-the-text": ivvy_with('"\ud800"'),
    "nested-20000-deep": ivvy_with("[" * 20_000 + "]" * 20_000),
    "byte-order-mark": "\ufeff" + PLAIN["ivvy"],
    "trailing-text": PLAIN["ivvy"] + " x",
    # Not valid for the provider's job model, or for the request.
    "a-job-without-action": envelope("ivvy", [{"namespace": "venue"}]),
    "ivvy-batch-namespace": envelope("ivvy", [{"namespace": "Batch", "action": "x"}]),
    "unknown-provider": envelope("nobody", [{"id": 1}]),
    "unknown-field": envelope("ivvy", [ivvy_job()], colour="red"),
    "jobs-and-upload": envelope("ivvy", [ivvy_job()], uploadId="u-1"),
    "no-jobs": envelope("ivvy", []),
    "not-an-object": json.dumps([ivvy_job()]),
    # A WillSuite job (whose own fields name "willsuite" first) in a SuperOffice batch.
    "a-job-only-the-guessed-provider-takes": json.dumps(
        {"jobs": [{"id": CASE, "note": {"provider": "willsuite"}}], "options": SO_OPTIONS}
    )[:-1]
    + ', "provider": "superoffice", "connection": "c"}',
}

INVALID_ELSEWHERE = {
    # Jobs their model takes, in a request refused for something else (after the one pass).
    "deadline-too-long": envelope("ivvy", [ivvy_job()], deadlineSeconds=10**9),
    "ivvy-options": envelope("ivvy", [ivvy_job()], options={"colour": "red"}),
    "superoffice-without-options": envelope("superoffice", [{"id": 1}]),
    "os1-update-job-in-a-create-batch": envelope(
        "os1",
        [{"id": "driver:8e0f7c1a-1d1b-4d5e-9a53-2f1f6f4e9b10", "properties": {}}],
        options={"participantType": "drivers"},
    ),
}

CAREFUL_BUT_GOOD = {
    # Good, but the client reference is named by the model's Python name, which only the model takes.
    "ivvy-client-ref-by-its-python-name": envelope(
        "ivvy", [{"client_ref": "s-1", "namespace": "venue", "action": "x"}]
    ),
    # Good, but the guess at the provider reads a job's own "provider" key first.
    "a-job-names-another-provider-first": json.dumps(
        {"jobs": [ivvy_job(provider="superoffice") | {"params": {"provider": "superoffice"}}]}
    )[:-1]
    + ', "provider": "ivvy", "connection": "c"}',
}


def deps() -> Deps:
    return Deps(
        repo=MemoryRepository(),
        objects=MemoryObjects(),
        workflow=RecordingWorkflow(),  # type: ignore[arg-type]
        settings=Settings(table_name="t", bucket_name="b"),
    )


@pytest.fixture(autouse=True)
def _any_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "_check_connection", lambda name, provider: None)


def answer(body: str, key: str | None = None, into: Deps | None = None) -> dict[str, Any]:
    """What POST /batches answers, and the jobs it stored (as records)."""
    store = into or deps()
    try:
        status, accepted = api.create_batch(body, key, "", deps=store)
    except RequestError as exc:
        return {"status": exc.status, "code": exc.code, "details": exc.details}
    stored = store.repo.get_batch(accepted["batchId"])
    assert isinstance(store.objects, MemoryObjects)
    return {"status": status, "jobs": store.objects.records(stored.jobs_key), "count": stored.job_count}


def careful(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    def undo() -> None:
        monkeypatch.undo()
        monkeypatch.setattr(api, "_check_connection", lambda name, provider: None)

    monkeypatch.setattr(api, "_inline_batch_in_one_pass", lambda text: None)
    return undo


@pytest.mark.parametrize("name", list(PLAIN))
def test_a_plain_body_of_each_provider_takes_the_one_pass_and_stores_its_jobs_as_sent(name):
    body = PLAIN[name]
    assert api._inline_batch_in_one_pass(body) is not None
    got = answer(body)
    assert got["status"] == 202, got
    assert got["jobs"] == json.loads(body)["jobs"]


EVERY = PLAIN | UNUSUAL | INVALID_ELSEWHERE | CAREFUL_BUT_GOOD


@pytest.mark.parametrize("name", list(EVERY))
def test_every_body_gets_the_careful_ways_answer(monkeypatch, name):
    body = EVERY[name]
    fast = answer(body)
    back = careful(monkeypatch)
    slow = answer(body)
    back()
    assert fast == slow
    if name in UNUSUAL:
        assert api._inline_batch_in_one_pass(body) is None
    if name in UNUSUAL or name in INVALID_ELSEWHERE:
        assert 400 <= fast["status"] < 500, fast
    if name in CAREFUL_BUT_GOOD:
        assert api._inline_batch_in_one_pass(body) is None and fast["status"] == 202


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("number-beyond-a-double", "jobs[0].params"),
        ("integer-beyond-2**53", "jobs[0].params"),
        ("integer-beyond-2**53-in-a-list", "jobs[0].params"),
        ("nested-40-deep", "jobs[0]"),
        ("a-job-over-64-KiB", "jobs[0]"),
        ("lone-surrogate-escape", "jobs[0]"),
    ],
)
def test_values_a_vendor_could_not_read_back_are_a_422_naming_the_job(name, field):
    got = answer(UNUSUAL[name])
    assert got["status"] == 422 and got["details"][0]["field"] == field, got


def test_a_replay_gets_the_same_batch_and_another_body_under_the_key_is_refused():
    store = deps()
    first = api.create_batch(PLAIN["ivvy"], "k-1", "", deps=store)
    again = api.create_batch(PLAIN["ivvy"], "k-1", "", deps=store)
    assert first[0] == 202 and again[0] == 200 and again[1]["batchId"] == first[1]["batchId"]
    other = envelope("ivvy", [ivvy_job(n) for n in range(4)])
    with pytest.raises(IdempotencyConflictError):
        api.create_batch(other, "k-1", "", deps=store)


@pytest.mark.parametrize(
    ("text", "too_large"),
    [("x" * 100, False), ("x" * 101, True), ("é" * 50, False), ("é" * 51, True), ("\ud800" * 34, True)],
)
def test_a_body_is_measured_in_utf8_bytes_not_characters(text, too_large):
    if too_large:
        with pytest.raises(RequestError) as caught:
            api.read_body(text, is_base64=False, max_bytes=100)
        assert caught.value.code == "BODY_TOO_LARGE"
    else:
        assert api.read_body(text, is_base64=False, max_bytes=100) == text


class _WholeJobCheck(Job):
    a: int = 0

    @model_validator(mode="after")
    def _check(self) -> _WholeJobCheck:
        return self


class _ReadsOtherFields(Job):
    a: int = 0
    b: int = 0

    @field_validator("b")
    @classmethod
    def _after_a(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("a", 0):
            raise ValueError("b before a")
        return value


class _TwoNames(Job):
    a: int = Field(0, validation_alias=AliasChoices("a", "alpha"))


class _Nested(Job):
    inner: Job


class _Open(Job):
    model_config = ConfigDict(extra="allow")


class _Derived(Job):
    a: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def twice(self) -> int:
        return 2 * self.a


@pytest.mark.parametrize("model", [_WholeJobCheck, _ReadsOtherFields, _TwoNames, _Nested, _Open, _Derived])
def test_a_job_model_with_checks_beyond_its_fields_own_is_validated_as_the_model(model):
    assert api._job_dict_schema(model) is None


@pytest.mark.parametrize("provider", ["ivvy", "superoffice"])
def test_the_job_dict_checks_agree_with_the_job_model(provider):
    # Portability aside: the dict checks leave it to the one pass's look at the lines (UNUSUAL above).
    model = provider_class(provider).job_model
    schema = api._job_dict_schema(model)
    assert schema is not None
    as_dicts = TypeAdapter(Annotated[dict[str, Any], api._Schema(schema)])
    jobs = [
        ivvy_job(),
        {"namespace": "venue", "action": "x"},
        {"namespace": "batch", "action": "x"},
        {"namespace": "1x", "action": "x"},
        {"namespace": "venue", "action": "x", "params": [], "clientRef": "r"},
        {"namespace": "venue", "action": "x", "colour": "red"},
        {"namespace": "venue", "action": 3},
        {"id": 1},
        {"id": 0},
        {"id": "1"},
        {"id": 1, "clientRef": "x" * 257},
        {"id": 1, "clientRef": None},
        {},
    ]
    if provider == "ivvy":  # the portability check is left out
        assert as_dicts.validate_json(json.dumps(ivvy_job(big=2**60)))["params"]["big"] == 2**60
    for job in jobs:
        text = json.dumps(job)
        try:
            model.model_validate_json(text)
        except ValidationError:
            with pytest.raises(ValidationError):
                as_dicts.validate_json(text)
        else:
            assert as_dicts.validate_json(text) == job
