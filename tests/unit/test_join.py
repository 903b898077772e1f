"""Joining the results files a time budget at a time: however the work is cut into invocations, and
wherever one stops, every outcome is in the results file once, and in the file of its kind once."""

from __future__ import annotations

import pytest
from tests.fakes import BATCH_ID, add_batch, make_world

from batchbridge import objects
from batchbridge.tasks import join as join_module
from batchbridge.tasks.check import check_batch
from batchbridge.tasks.collect import collect_batch
from batchbridge.tasks.finalize import finalize_batch
from batchbridge.tasks.submit import submit_batch

PLENTY = lambda: 300.0  # noqa: E731
NO_TIME = lambda: 0.0  # noqa: E731 - each call does its one unit of work and stops


@pytest.fixture(params=[200, 1000], ids=["a-part-per-chunk", "parts-spanning-chunks"])
def world(request, monkeypatch):
    # Parts of a few lines, so joins span many parts: at 200 bytes each chunk's outcomes make a part of
    # their own; at 1,000 a part takes several chunks, so what an invocation has not yet sent is carried
    # to the next one as a tail.
    monkeypatch.setattr(objects, "PART_BYTES", request.param)
    monkeypatch.setattr(join_module, "PART_BYTES", request.param)
    world = make_world()
    add_batch(world, 20)  # 7 chunks of at most 3
    submit_batch(BATCH_ID, PLENTY, world.deps)
    check_batch(BATCH_ID, PLENTY, world.deps)
    return world


def expected_lines(world) -> list[bytes]:
    return [
        line
        for index in range(world.batch().chunk_count)
        for line in world.objects.read(objects.chunk_outcomes_key(BATCH_ID, index)).splitlines(keepends=True)
    ]


def test_a_join_cut_into_one_chunk_per_invocation_gives_each_outcome_once(world):
    calls = 0
    while not collect_batch(BATCH_ID, None, NO_TIME, world.deps).done:
        calls += 1
    assert calls >= 7  # the chunks, one per call, then the join, one chunk per call
    finalize_batch(BATCH_ID, None, world.deps)
    batch = world.batch()
    assert world.objects.read(batch.results_key).splitlines(keepends=True) == expected_lines(world)
    assert [line["index"] for line in world.outcome_lines()] == list(range(20))
    assert len(world.objects.records(batch.outcome_keys["succeeded"])) == 20
    assert not [k for k in world.objects.objects if "/join/" in k]  # no tail left behind
    assert not world.objects.uploads  # every upload completed or aborted


def test_an_invocation_that_stops_part_way_is_repeated_exactly(world, monkeypatch):
    # Given the join's invocations crash once after sending a part, before saving how far they came
    original = world.objects.upload_part
    crashed = []

    def upload_part(key, upload_id, number, body):
        etag = original(key, upload_id, number, body)
        if number == 2 and not crashed:
            crashed.append(key)
            raise RuntimeError("the invocation was stopped")
        return etag

    monkeypatch.setattr(world.objects, "upload_part", upload_part)
    # When collect runs again after the crash (the workflow's retry)
    while True:
        try:
            if collect_batch(BATCH_ID, None, NO_TIME, world.deps).done:
                break
        except RuntimeError:
            continue
    finalize_batch(BATCH_ID, None, world.deps)
    # Then the files are as if nothing had happened
    assert crashed
    batch = world.batch()
    assert world.objects.read(batch.results_key).splitlines(keepends=True) == expected_lines(world)
    assert len(world.objects.records(batch.outcome_keys["succeeded"])) == 20


def test_finalize_finishes_a_join_collect_could_not(world):
    collect_batch(BATCH_ID, None, NO_TIME, world.deps)  # settles one chunk, then the failure path
    finalize_batch(BATCH_ID, None, world.deps)
    batch = world.batch()
    assert batch.join.done
    assert [line["index"] for line in world.outcome_lines()] == list(range(20))
