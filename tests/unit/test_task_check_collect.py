"""The check, collect and finalize tasks' rules, on the in-memory repository."""

from __future__ import annotations

import pytest
from tests.fakes import BATCH_ID, add_batch, make_world

from batchbridge import errors
from batchbridge.models import BatchStatus, ChunkState, ErrorInfo, Outcome, OutcomeKind
from batchbridge.providers.base import StatusReport
from batchbridge.records import Settlement
from batchbridge.repository import Write
from batchbridge.tasks import MAX_ROUNDS, Failure
from batchbridge.tasks.check import check_batch
from batchbridge.tasks.collect import collect_batch
from batchbridge.tasks.finalize import finalize_batch
from batchbridge.tasks.submit import submit_batch

PLENTY = lambda: 300.0  # noqa: E731

RUNNING = StatusReport(state=ChunkState.RUNNING, provider_status="busy", progress=40.0)


@pytest.fixture
def world():
    return make_world()


def submitted(world, jobs: int = 7):
    add_batch(world, jobs)
    submit_batch(BATCH_ID, PLENTY, world.deps)
    return world


def settle(world, failure: Failure | None = None) -> dict:
    while not collect_batch(BATCH_ID, failure, PLENTY, world.deps).done:
        pass
    return finalize_batch(BATCH_ID, failure, world.deps)


# --- check ------------------------------------------------------------------------------------------
def test_a_check_records_each_chunk_and_ends_the_loop_when_none_runs(world):
    submitted(world)
    world.provider.will("check", RUNNING, RUNNING, RUNNING)
    step = check_batch(BATCH_ID, PLENTY, world.deps)
    assert not step.done and world.batch().progress == 40.0 and world.batch().rounds == 2
    step = check_batch(BATCH_ID, PLENTY, world.deps)
    assert step.done and world.chunk_states() == [ChunkState.COMPLETED] * 3


def test_a_throttled_check_waits_at_least_as_long_as_the_provider_asks(world):
    submitted(world)
    throttled = errors.ProviderThrottledError("429", retry_after=600)
    world.provider.will("check", throttled, throttled, throttled)
    step = check_batch(BATCH_ID, PLENTY, world.deps)
    assert step.wait_seconds >= 600
    assert world.chunk_states() == [ChunkState.RUNNING] * 3


def test_a_check_that_could_check_nothing_for_transient_reasons_fails_for_the_retry(world):
    submitted(world, 3)
    world.provider.will("check", errors.ProviderUnavailableError("503"))
    with pytest.raises(errors.ProviderUnavailableError):
        check_batch(BATCH_ID, PLENTY, world.deps)


def test_an_unknown_status_fails_closed(world):
    submitted(world, 3)
    world.provider.will("check", errors.UnknownProviderStatusError("'maybe'"))
    with pytest.raises(errors.UnknownProviderStatusError):
        check_batch(BATCH_ID, PLENTY, world.deps)


def test_a_check_after_a_cancel_asks_the_provider_nothing(world):
    submitted(world)
    world.repo.request_cancel(BATCH_ID)
    assert check_batch(BATCH_ID, PLENTY, world.deps).done
    assert world.provider.operations("check") == []


def test_the_round_budget_ends_the_poll_loop(world):
    submitted(world)
    for _ in range(MAX_ROUNDS - 1):
        world.repo.add_round(BATCH_ID)
    assert check_batch(BATCH_ID, PLENTY, world.deps).done
    assert world.batch().deadline_reached and world.provider.operations("check") == []


def test_a_report_for_a_chunk_settled_meanwhile_is_not_recorded(world):
    submitted(world, 3)

    def settled_meanwhile(chunk):
        current = world.repo.get_chunk(BATCH_ID, 0)
        world.repo.begin_settling(
            BATCH_ID, current, Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED)
        )
        return StatusReport(state=ChunkState.COMPLETED, provider_status="done")

    world.provider.will("check", settled_meanwhile)
    check_batch(BATCH_ID, PLENTY, world.deps)
    assert world.chunk_states() == [ChunkState.COLLECTING]


# --- collect and finalize -------------------------------------------------------------------------
def test_finished_chunks_are_collected_and_the_files_split_by_kind(world):
    submitted(world)
    check_batch(BATCH_ID, PLENTY, world.deps)
    failed = Outcome(index=4, outcome=OutcomeKind.FAILED, error=ErrorInfo(code="E", message="bad"))
    world.provider.will(
        "collect",
        None,  # chunk 0: the default (all succeed)
        [
            Outcome(index=3, outcome=OutcomeKind.SUCCEEDED),
            failed,
            Outcome(index=5, outcome=OutcomeKind.SUCCEEDED),
        ],
    )
    world.provider.script["collect"][0] = lambda chunk, jobs: [
        Outcome(index=i, outcome=OutcomeKind.SUCCEEDED) for i in range(3)
    ]
    message = settle(world)
    batch = world.batch()
    assert batch.status is BatchStatus.PARTIALLY_SUCCEEDED
    assert batch.counts.model_dump() == {"total": 7, "succeeded": 6, "failed": 1, "not_processed": 0}
    lines = world.outcome_lines()
    assert [line["index"] for line in lines] == list(range(7))
    assert [line["job"]["clientRef"] for line in lines] == [f"job-{i}" for i in range(7)]
    failed_file = world.objects.records(batch.outcome_keys["failed"])
    assert [(line["index"], line["job"]["n"]) for line in failed_file] == [(4, 4)]
    assert len(world.objects.records(batch.outcome_keys["succeeded"])) == 6
    assert world.objects.records(batch.outcome_keys["not_processed"]) == []
    assert message["attributes"] == {
        "provider": "scripted",
        "status": "PARTIALLY_SUCCEEDED",
        "eventType": "batchbridge.batch.partially_succeeded",
        "connection": "scripted-test",
    }


def test_a_cancel_before_the_chunks_existed_still_gives_every_job_its_outcome(world):
    add_batch(world, 450)
    world.repo.request_cancel(BATCH_ID)
    settle(world)
    batch = world.batch()
    assert batch.status is BatchStatus.CANCELLED
    assert batch.counts.not_processed == 450 and batch.counts.total == 450
    assert {line["error"]["code"] for line in world.outcome_lines()} == {"CANCELLED"}


def test_a_cancel_of_running_work_cancels_it_at_the_provider_and_says_so(world):
    submitted(world, 3)
    world.repo.request_cancel(BATCH_ID)
    world.provider.will("check", RUNNING)  # the last look: still running
    settle(world)
    batch = world.batch()
    assert batch.status is BatchStatus.CANCELLED
    assert world.provider.operations("cancel") == [0]
    assert "ref-0" in batch.error.message and "cancel confirmed" in batch.error.message
    lines = world.outcome_lines()
    assert {line["providerRef"] for line in lines} == {"ref-0"}
    assert all("confirmed the cancel of ref-0" in line["error"]["message"] for line in lines)


def test_work_the_provider_finished_before_a_cancel_keeps_its_real_outcomes(world):
    submitted(world, 3)
    world.repo.request_cancel(BATCH_ID)
    settle(world)  # the last look says COMPLETED (the fake's default)
    assert world.batch().status is BatchStatus.CANCELLED
    assert {line["outcome"] for line in world.outcome_lines()} == {"succeeded"}
    assert world.provider.operations("cancel") == []


def test_a_cancel_run_waits_for_a_submit_in_flight_and_then_settles_by_its_answer(world):
    # Given a chunk claimed by a submit that is still talking to the provider when the cancel run collects
    add_batch(world, 3)
    world.repo.start_submitting(BATCH_ID, {})
    from batchbridge.tasks.chunks import prepare

    prepare(world.deps, world.batch(), 3)
    world.repo.claim_chunk(BATCH_ID, 0, lease_until=world.clock() + 30)
    world.repo.request_cancel(BATCH_ID)
    step = collect_batch(BATCH_ID, None, PLENTY, world.deps)
    assert (step.done, step.remaining) == (False, 1) and 1 <= step.wait_seconds <= 31
    # When the submit's answer arrives, the next collect cancels that chunk at the provider
    world.repo.record_submission(BATCH_ID, 0, "in-flight-ref")
    world.provider.will("check", RUNNING)
    settle(world)
    assert world.provider.operations("cancel") == [0]
    assert "in-flight-ref" in world.batch().error.message


def test_a_chunk_left_submitting_by_a_failed_run_is_ambiguous_and_needs_attention(world):
    add_batch(world, 3)
    world.repo.start_submitting(BATCH_ID, {})
    from batchbridge.tasks.chunks import prepare

    prepare(world.deps, world.batch(), 3)
    world.repo.claim_chunk(BATCH_ID, 0, lease_until=world.clock() + 30)
    failure = Failure.model_validate({"Error": "Lambda.Unknown", "Cause": "killed"})
    settle(world, failure)
    batch = world.batch()
    assert batch.status is BatchStatus.NEEDS_ATTENTION
    assert batch.error.code == "AMBIGUOUS_SUBMIT" and "chunk 0 " in batch.error.message
    assert {line["error"]["code"] for line in world.outcome_lines()} == {"AMBIGUOUS_SUBMIT"}


def test_only_the_ambiguous_chunk_s_jobs_say_ambiguous_submit(world):
    # Given a batch of three chunks: the first taken, the second's answer lost, the third never sent
    add_batch(world, 7)
    world.provider.will("submit", "ref-0", world.provider.took_then(errors.SubmitUnconfirmedError("502")))
    with pytest.raises(errors.AmbiguousSubmitError) as lost:
        submit_batch(BATCH_ID, PLENTY, world.deps)
    world.provider.will("check", RUNNING)  # the first is still running when the batch stops
    # When the batch is settled on that failure
    failure = Failure.model_validate({"Error": "AmbiguousSubmitError", "Cause": str(lost.value)})
    settle(world, failure)
    batch = world.batch()
    assert batch.status is BatchStatus.NEEDS_ATTENTION and set(batch.ambiguous_chunks) == {1}
    # Then only the jobs whose submit was lost say so: the others say the batch stopped for attention
    # (the running one naming its reference), so a client checking AMBIGUOUS_SUBMIT at the vendor checks
    # the right jobs
    codes = {line["index"]: line["error"]["code"] for line in world.outcome_lines()}
    assert {i for i, code in codes.items() if code == "AMBIGUOUS_SUBMIT"} == {3, 4, 5}
    assert {codes[i] for i in (0, 1, 2, 6)} == {"BATCH_NEEDS_ATTENTION"}
    running = next(line for line in world.outcome_lines() if line["index"] == 0)
    assert "ref-0" in running["error"]["message"]


def test_results_that_are_gone_are_not_processed_and_say_why(world):
    submitted(world, 3)
    check_batch(BATCH_ID, PLENTY, world.deps)
    world.provider.will("collect", errors.ResultsExpiredError("gone after two days"))
    settle(world)
    batch = world.batch()
    assert batch.counts.not_processed == 3 and batch.error.code == "RESULTS_EXPIRED"
    assert world.repo.get_chunk(BATCH_ID, 0).settlement.from_results is False


def test_a_collector_that_finds_a_chunk_being_settled_writes_the_same_outcomes(world):
    # Given a collect that decided a chunk's settlement and stopped before writing it
    submitted(world, 3)
    check_batch(BATCH_ID, PLENTY, world.deps)
    chunk = world.repo.get_chunk(BATCH_ID, 0)
    world.repo.begin_settling(BATCH_ID, chunk, Settlement(from_results=True))
    # When another collect runs, it carries out that decision
    settle(world)
    assert world.chunk_states() == [ChunkState.COLLECTED]
    assert {line["outcome"] for line in world.outcome_lines()} == {"succeeded"}


def test_two_collectors_racing_for_a_chunk_settle_it_once(world):
    submitted(world, 3)
    check_batch(BATCH_ID, PLENTY, world.deps)
    raced = []

    def another_collector_first(write: Write) -> None:
        if write.set.get("state") == ChunkState.COLLECTING.value and not raced:
            raced.append(True)
            current = world.repo.get_chunk(BATCH_ID, 0)
            world.repo.begin_settling(BATCH_ID, current, Settlement(from_results=True))

    world.repo.before_write = another_collector_first
    settle(world)
    assert raced and world.chunk_states() == [ChunkState.COLLECTED]
    assert len(world.outcome_lines()) == 3


def test_finalize_is_idempotent_and_never_overwrites_a_terminal_status(world, monkeypatch):
    submitted(world, 3)
    check_batch(BATCH_ID, PLENTY, world.deps)
    first = settle(world)
    written: list[str] = []  # a replay on a finished batch rewrites no results file and reads no chunk
    monkeypatch.setattr(world.objects, "put_bytes", lambda key, *a, **k: written.append(key))
    monkeypatch.setattr(world.objects, "writer", lambda key: written.append(key))
    monkeypatch.setattr(world.repo, "iter_chunks", lambda *a, **k: written.append("chunks") or iter(()))
    again = finalize_batch(BATCH_ID, Failure.model_validate({"Error": "States.Timeout"}), world.deps)
    assert written == []
    assert (first.pop("finishedNow"), again.pop("finishedNow")) == (True, False)  # counted once
    assert again == first and world.batch().status is BatchStatus.SUCCEEDED


def test_a_cancel_that_lands_while_finalize_runs_wins(world):
    submitted(world, 3)
    check_batch(BATCH_ID, PLENTY, world.deps)
    while not collect_batch(BATCH_ID, None, PLENTY, world.deps).done:
        pass

    def cancel_at_the_finish(write: Write) -> None:
        if write.set.get("status") == "SUCCEEDED" and not world.batch().cancel_requested:
            world.repo.request_cancel(BATCH_ID)

    world.repo.before_write = cancel_at_the_finish
    message = finalize_batch(BATCH_ID, None, world.deps)
    assert message["status"] == "CANCELLED" and world.batch().status is BatchStatus.CANCELLED
    assert {line["outcome"] for line in world.outcome_lines()} == {"succeeded"}  # finished jobs keep theirs


def test_finalize_settles_what_collect_could_not_without_asking_the_provider(world):
    submitted(world, 7)
    check_batch(BATCH_ID, PLENTY, world.deps)
    calls = len(world.provider.calls)
    finalize_batch(BATCH_ID, Failure.model_validate({"Error": "States.Timeout"}), world.deps)
    batch = world.batch()
    assert batch.status is BatchStatus.FAILED and batch.counts.not_processed == 7
    assert len(world.provider.calls) == calls
    assert {line["error"]["code"] for line in world.outcome_lines()} == {"RESULTS_NOT_COLLECTED"}


def test_when_a_round_cannot_check_every_chunk_the_next_starts_with_those_left_out(world):
    # Given 18 jobs in six running chunks, and time in each round for two checks only
    submitted(world, 18)
    import itertools

    def rounds_of_two():
        counter = itertools.count()
        return lambda: 300.0 if next(counter) < 2 else 0.0

    world.provider.will("check", *([RUNNING] * 100))
    # one check at a time, so that which chunks the budget reaches depends on their order alone
    world.provider.capabilities = world.provider.capabilities.model_copy(update={"max_concurrency": 1})
    seen: list[list[int]] = []
    for _ in range(3):
        before = len(world.provider.calls)
        check_batch(BATCH_ID, rounds_of_two(), world.deps)
        seen.append(sorted(i for op, i in world.provider.calls[before:] if op == "check"))
    # Then three rounds checked every chunk once
    assert sorted(i for round_ in seen for i in round_) == list(range(6)), seen


def test_a_batch_that_finishes_on_its_own_teaches_its_connection_and_the_next_batch_starts_from_it(world):
    from batchbridge import polling

    submitted(world, 3)
    world.clock.now += 600  # it ran ten minutes
    world.provider.will("check", RUNNING)
    check_batch(BATCH_ID, PLENTY, world.deps)
    world.clock.now += 60
    assert check_batch(BATCH_ID, PLENTY, world.deps).done
    history, version = world.repo.get_connection_history("scripted-test")
    assert version == 1 and history is not None and history.weight == pytest.approx(1.0, abs=0.01)
    # after a few more like it, the next batch's first wait is aimed where this connection's batches end,
    # not at the cold floor
    for n in range(3, 3 + polling.MIN_HISTORY_WEIGHT.__ceil__()):
        batch_id = f"00000000-0000-4000-8000-{n:012d}"
        add_batch(world, 3, batch_id=batch_id)
        submit_batch(batch_id, PLENTY, world.deps)
        world.clock.now += 600
        world.provider.will("check", RUNNING)
        check_batch(batch_id, PLENTY, world.deps)
        world.clock.now += 60
        assert check_batch(batch_id, PLENTY, world.deps).done
    other = "00000000-0000-4000-8000-000000000002"
    add_batch(world, 3, batch_id=other)
    learned = submit_batch(other, PLENTY, world.deps).wait_seconds
    fresh = make_world()
    add_batch(fresh, 3, batch_id=other)
    cold = submit_batch(other, PLENTY, fresh.deps).wait_seconds
    assert learned > cold
    assert polling.PollState.model_validate(world.batch(other).poll_state).polls == 1


def test_a_cancelled_or_timed_out_batch_teaches_nothing(world):
    submitted(world, 3)
    world.repo.request_cancel(BATCH_ID)
    check_batch(BATCH_ID, PLENTY, world.deps)
    assert world.repo.get_connection_history("scripted-test") == (None, 0)
