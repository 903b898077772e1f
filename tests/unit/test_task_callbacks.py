"""Callbacks: only a confirmed one wakes the workflow, and a flood of them costs neither rounds nor more
than one provider check per interval."""

from __future__ import annotations

import pytest
from tests.fakes import BATCH_ID, add_batch, make_world

from batchbridge import errors
from batchbridge.models import ChunkState
from batchbridge.providers.base import StatusReport
from batchbridge.tasks.callbacks import park_for_callback, receive
from batchbridge.tasks.submit import submit_batch

RUNNING = StatusReport(state=ChunkState.RUNNING, provider_status="busy")


@pytest.fixture
def world():
    world = make_world()
    add_batch(world, 6, api_base_url="https://api.example")
    submit_batch(BATCH_ID, lambda: 300.0, world.deps)
    park_for_callback(BATCH_ID, "token-1", world.deps)
    return world


def token(world) -> str:
    return world.batch().callback_token


def test_a_wrong_token_is_an_unknown_callback(world):
    with pytest.raises(errors.BatchNotFoundError):
        receive(BATCH_ID, "not-the-token", {}, world.deps)
    with pytest.raises(errors.BatchNotFoundError):
        receive("00000000-0000-4000-8000-000000000000", token(world), {}, world.deps)


def test_a_confirmed_callback_wakes_the_waiting_workflow(world):
    answer = receive(BATCH_ID, token(world), {"ref": "ref-1"}, world.deps)
    assert answer == {"accepted": True}
    assert world.workflow.resumed == ["token-1"]
    assert world.provider.operations("check") == [1]  # confirmed with the provider, for that chunk only


def test_a_callback_naming_no_running_chunk_is_ignored_without_asking(world):
    answer = receive(BATCH_ID, token(world), {"ref": "someone-elses"}, world.deps)
    assert answer["accepted"] is False and world.workflow.resumed == []


def test_a_callback_the_provider_does_not_confirm_wakes_nothing(world):
    world.provider.will("check", RUNNING)
    answer = receive(BATCH_ID, token(world), {"ref": "ref-0"}, world.deps)
    assert answer == {"accepted": False, "reason": "the provider does not confirm it"}
    assert world.workflow.resumed == []


def test_a_flood_of_empty_callbacks_burns_no_round_and_asks_the_provider_once_per_interval(world):
    # Given the provider's jobs are still running
    world.provider.will("check", *([RUNNING] * 10_000))
    rounds = world.batch().rounds
    # When 1,092 callbacks naming nothing arrive within one poll interval
    answers = [receive(BATCH_ID, token(world), {}, world.deps) for _ in range(1092)]
    # Then none woke the workflow, no round was spent, and the provider was asked about one interval's worth
    assert not any(a["accepted"] for a in answers)
    assert world.workflow.resumed == [] and world.batch().rounds == rounds
    assert len(world.provider.operations("check")) <= 4  # one check, of at most four running chunks
    # and after the interval, one more check is allowed
    world.clock.now += world.provider.capabilities.min_poll_seconds + 1
    receive(BATCH_ID, token(world), {}, world.deps)
    assert len(world.provider.operations("check")) <= 8


def test_a_callback_for_a_finished_or_cancelled_batch_is_answered_and_ignored(world):
    world.repo.request_cancel(BATCH_ID)
    answer = receive(BATCH_ID, token(world), {"ref": "ref-0"}, world.deps)
    assert answer["accepted"] is False and world.provider.operations("check") == []


def test_a_callback_that_arrives_before_the_workflow_parks_resumes_it_when_it_does(world):
    world.repo.wake_for_callback(BATCH_ID)  # takes token-1: the wait it ended is gone
    world.workflow.resumed.clear()
    receive(BATCH_ID, token(world), {"ref": "ref-2"}, world.deps)
    assert world.workflow.resumed == []  # nobody parked
    park_for_callback(BATCH_ID, "token-2", world.deps)
    assert world.workflow.resumed == ["token-2"]
