"""The submit task's rules, on the in-memory repository: each chunk sent exactly once, only a provable
refusal sent again, ambiguity named, and a cancel honoured at every moment."""

from __future__ import annotations

import httpx
import pytest
from tests.fakes import BATCH_ID, add_batch, make_world

from batchbridge import errors
from batchbridge.models import BatchStatus, ChunkState
from batchbridge.repository import Write
from batchbridge.tasks import MAX_ROUNDS
from batchbridge.tasks.submit import submit_batch

PLENTY = lambda: 300.0  # noqa: E731 - seconds left in the invocation


@pytest.fixture
def world():
    return make_world()


def test_every_chunk_is_sent_once_and_the_batch_runs(world):
    # Given a batch of seven jobs (three chunks of at most three)
    add_batch(world, 7)
    # When the submit task runs
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    # Then each chunk went to the provider once, in order, and the batch is running with its first wait
    assert world.provider.submitted == {0: 1, 1: 1, 2: 1}
    assert world.chunk_states() == [ChunkState.RUNNING] * 3
    assert [c.provider_ref for c in world.repo.iter_chunks(BATCH_ID)] == ["ref-0", "ref-1", "ref-2"]
    batch = world.batch()
    assert (batch.status, batch.submit_cursor, batch.rounds) == (BatchStatus.RUNNING, 3, 1)
    assert step.wait_seconds >= 1 and not step.done and step.remaining == 0


def test_a_retry_after_everything_was_sent_sends_nothing(world):
    add_batch(world, 7)
    submit_batch(BATCH_ID, PLENTY, world.deps)
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    assert step.done and world.provider.submitted == {0: 1, 1: 1, 2: 1}


def test_a_throttled_submit_waits_as_long_as_asked_then_sends_the_chunk_once(world):
    add_batch(world, 4)
    world.provider.will("submit", errors.ProviderThrottledError("429", retry_after=900))
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    assert (step.remaining, step.wait_seconds) == (2, 900)
    assert world.chunk_states() == [ChunkState.PENDING, ChunkState.PENDING]
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    assert world.provider.submitted == {0: 1, 1: 1}


def test_a_throttle_without_a_hint_and_a_connection_never_made_are_the_workflows_to_retry(world):
    add_batch(world, 2)
    for refusal in (errors.ProviderThrottledError("429"), errors.ProviderUnavailableError("refused")):
        world.provider.will("submit", refusal)
        with pytest.raises(type(refusal)):
            submit_batch(BATCH_ID, PLENTY, world.deps)
        assert world.chunk_states() == [ChunkState.PENDING]  # released: safe to send again
    submit_batch(BATCH_ID, PLENTY, world.deps)
    assert world.provider.submitted == {0: 1}


@pytest.mark.parametrize(
    "lost",
    [
        errors.SubmitUnconfirmedError("502 after the request went out"),
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("dropped"),
        errors.ProviderResponseError("cut short"),
    ],
    ids=["5xx", "timeout", "dropped", "truncated"],
)
def test_an_answer_that_does_not_prove_a_refusal_is_never_sent_again(world, lost):
    # Given the provider takes the chunk and the answer is lost
    add_batch(world, 2)
    world.provider.will("submit", world.provider.took_then(lost))
    # When the submit task runs, then the submit is named ambiguous
    with pytest.raises(errors.AmbiguousSubmitError, match="chunk 0"):
        submit_batch(BATCH_ID, PLENTY, world.deps)
    # and the chunk is UNCONFIRMED, named on the batch, and was taken once only
    assert world.chunk_states() == [ChunkState.UNCONFIRMED]
    assert world.batch().ambiguous_chunks == [0]
    assert world.provider.operations("find") == [0]
    # and however often the task runs again, it is never resent
    submit_batch(BATCH_ID, PLENTY, world.deps)
    assert world.provider.submitted == {0: 1}


def test_a_lost_answer_is_reconciled_where_the_provider_shows_what_it_holds(world):
    add_batch(world, 2)
    world.provider.will("submit", world.provider.took_then(errors.SubmitUnconfirmedError("503")))
    world.provider.found[0] = "found-0"
    submit_batch(BATCH_ID, PLENTY, world.deps)
    chunk = world.repo.get_chunk(BATCH_ID, 0)
    assert (chunk.state, chunk.provider_ref, chunk.reconciled) == (ChunkState.RUNNING, "found-0", True)
    assert world.batch().status is BatchStatus.RUNNING


def test_a_refused_chunk_fails_alone_and_the_others_are_sent(world):
    add_batch(world, 7)
    world.provider.will("submit", "ref-0", errors.BatchRejectedError("24448 too many", code="IVVY_24448"))
    submit_batch(BATCH_ID, PLENTY, world.deps)
    assert world.chunk_states() == [ChunkState.RUNNING, ChunkState.FAILED, ChunkState.RUNNING]
    assert world.batch().error.code == "IVVY_24448"


def test_a_cancel_before_the_first_submit_sends_nothing(world):
    add_batch(world, 4)
    world.repo.request_cancel(BATCH_ID)
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    assert step.done and world.provider.submitted == {}
    assert world.batch().status is BatchStatus.ACCEPTED  # a stale submit never writes SUBMITTING over it


def test_a_cancel_landing_while_the_submit_prepares_is_honoured_at_the_claim(world):
    # Given the cancel lands after the submit read the batch, while it is creating the chunks
    add_batch(world, 4)

    def cancel_when_prepared(write: Write) -> None:
        if write.set.get("prepared") and not world.batch().cancel_requested:
            world.repo.request_cancel(BATCH_ID)

    world.repo.before_write = cancel_when_prepared
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    # Then nothing was sent: the claim's transaction saw the cancel
    assert step.done and world.provider.submitted == {}
    assert world.chunk_states() == [ChunkState.PENDING, ChunkState.PENDING]


def test_a_submit_in_flight_when_a_cancel_lands_still_records_its_reference(world):
    add_batch(world, 4)

    def cancel_during_the_call(chunk, jobs):
        world.repo.request_cancel(BATCH_ID)
        return "ref-in-flight"

    world.provider.will("submit", cancel_during_the_call)
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    chunks = list(world.repo.iter_chunks(BATCH_ID))
    assert (chunks[0].state, chunks[0].provider_ref) == (ChunkState.RUNNING, "ref-in-flight")
    assert chunks[1].state is ChunkState.PENDING  # never claimed after the cancel
    assert step.done


def test_a_reference_that_arrives_after_its_chunk_was_settled_is_kept_named_and_cancelled(world):
    # Given the chunk's claim was settled by someone else (a cancel run, after the claim lapsed) while the
    # provider was taking it
    add_batch(world, 2)
    from batchbridge.models import OutcomeKind
    from batchbridge.records import Settlement

    def settled_meanwhile(chunk, jobs):
        current = world.repo.get_chunk(BATCH_ID, 0)
        world.repo.begin_settling(
            BATCH_ID, current, Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED)
        )
        return "late-ref"

    world.provider.will("submit", settled_meanwhile)
    with pytest.raises(errors.AmbiguousSubmitError, match="late-ref"):
        submit_batch(BATCH_ID, PLENTY, world.deps)
    assert world.repo.get_chunk(BATCH_ID, 0).provider_ref == "late-ref"
    assert world.provider.operations("cancel") == [0]
    assert "late-ref" in world.batch().error.message
    assert world.batch().ambiguous_chunks == [0]


def test_a_live_claim_is_waited_for_and_a_lapsed_one_is_never_resent(world):
    # Given a chunk claimed by an attempt that stopped mid-call
    add_batch(world, 2)
    world.repo.start_submitting(BATCH_ID, {})
    from batchbridge.tasks.chunks import prepare

    prepare(world.deps, world.batch(), 3)
    world.repo.claim_chunk(BATCH_ID, 0, lease_until=world.clock() + 100)
    # While its lease holds, the task waits for it
    step = submit_batch(BATCH_ID, PLENTY, world.deps)
    assert step.remaining == 1 and 90 <= step.wait_seconds <= 101
    assert world.provider.submitted == {}
    # Once the lease has passed, the provider is asked, and the chunk is taken as ambiguous
    world.clock.now += 101
    with pytest.raises(errors.AmbiguousSubmitError, match="earlier attempt stopped"):
        submit_batch(BATCH_ID, PLENTY, world.deps)
    assert world.chunk_states() == [ChunkState.UNCONFIRMED]
    assert world.provider.submitted == {}


def test_the_round_budget_ends_the_submit_loop(world):
    add_batch(world, 4)
    world.repo.start_submitting(BATCH_ID, {})
    for _ in range(MAX_ROUNDS - 1):
        world.repo.add_round(BATCH_ID)
    step = submit_batch(BATCH_ID, PLENTY, world.deps)  # round MAX_ROUNDS: over budget
    assert step.done and world.batch().deadline_reached
    assert world.provider.submitted == {}


def test_one_round_before_the_budget_still_submits(world):
    add_batch(world, 2)
    world.repo.start_submitting(BATCH_ID, {})
    for _ in range(MAX_ROUNDS - 2):
        world.repo.add_round(BATCH_ID)
    submit_batch(BATCH_ID, PLENTY, world.deps)
    assert world.provider.submitted == {0: 1}


def test_at_least_one_chunk_is_sent_per_call_whatever_the_time_left(world):
    add_batch(world, 7)
    step = submit_batch(BATCH_ID, lambda: 1.0, world.deps)
    assert world.provider.submitted == {0: 1} and step.remaining == 2


def test_a_callback_url_is_offered_only_when_the_api_is_reachable(world):
    add_batch(world, 1, api_base_url="https://api.example/v1")
    submit_batch(BATCH_ID, PLENTY, world.deps)
    batch = world.batch()
    assert batch.callback_url.startswith(f"https://api.example/v1/callbacks/{BATCH_ID}/")
    assert len(batch.callback_token) >= 40
    other = make_world()
    add_batch(other, 1)
    assert not submit_batch(BATCH_ID, PLENTY, other.deps).callback
