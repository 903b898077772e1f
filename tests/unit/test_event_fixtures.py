"""Every file in events/ parses into the model its function expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import EVENTS, load_event

from batchbridge.tasks import TaskInput

TASK_DIRS = ["submit_batch", "check_status", "collect_results", "finalize_batch"]


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(EVENTS).as_posix() for d in TASK_DIRS for p in (EVENTS / d).glob("*.json"))
)
def test_task_events_parse(path):
    task = TaskInput.model_validate(load_event(path))
    assert task.batch_id


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(EVENTS).as_posix() for p in (EVENTS / "api").glob("*.json"))
)
def test_api_events_are_rest_proxy_events(path):
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    event = APIGatewayProxyEvent(load_event(path))
    assert event.http_method in {"GET", "POST"}
    assert event.path.startswith("/")


def test_await_callback_event_parses():
    from batchbridge.tasks import AwaitInput

    task = AwaitInput.model_validate(load_event("await_callback/park.json"))
    assert task.task_token


def test_validate_upload_events_parse():
    from batchbridge.uploads import ValidateUploadInput

    for path in sorted((EVENTS / "validate_upload").glob("*.json")):
        assert ValidateUploadInput.model_validate(load_event(path.relative_to(EVENTS).as_posix())).upload_id


def test_every_function_has_at_least_one_event():
    functions = {p.name for p in (Path(EVENTS).parent / "functions").iterdir() if p.is_dir()}
    assert functions == {p.name for p in EVENTS.iterdir() if p.is_dir()}
