"""The repository's lifecycle rules, held by both storage engines: DynamoDB (moto, the template's own table)
and memory. Each guard has a test that fails without it: a move from a state it may not start in is
refused, and of two attempts at once exactly one wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from batchbridge.errors import BatchNotFoundError, InvalidTokenError
from batchbridge.models import BatchStatus, ChunkState, Counts, ErrorInfo, OutcomeKind
from batchbridge.records import Batch, Chunk, Settlement
from batchbridge.repository import OPEN, Claim, ListQuery, OutcomeRow, Repository
from batchbridge.repository.memory import MemoryRepository

pytestmark = pytest.mark.xdist_group("stack")
LEASE = 4_000_000_000.0
_counter = iter(range(10**9))


@pytest.fixture(params=["dynamo", "memory"])
def repo(request: pytest.FixtureRequest) -> Iterator[Repository]:
    if request.param == "memory":
        yield MemoryRepository()
    else:
        yield request.getfixturevalue("stack").repo


def new_batch(repo: Repository, *, chunks: int = 2, prepared: bool = True, **fields: Any) -> Batch:
    n = next(_counter)
    batch_id = f"00000000-0000-4000-8000-{n:012d}"
    batch = Batch.model_validate(
        {
            "batchId": batch_id,
            "status": "ACCEPTED",
            "provider": "ivvy",
            "connection": "c",
            "jobCount": chunks * 2,
            "chunkCount": chunks,
            "jobsKey": f"batches/{batch_id}/jobs.jsonl",
            "createdAt": f"2027-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",  # n-th
            "deadlineAt": 2_000_000_000,
            **fields,
        }
    )
    repo.create_batch(batch)
    repo.create_chunks(
        Chunk(batch_id=batch_id, index=i, first_job=2 * i, job_count=2, byte_start=0, byte_end=0)
        for i in range(chunks)
    )
    if prepared:
        repo.mark_prepared(batch_id)
    return batch


def submitting(repo: Repository, **fields: Any) -> str:
    batch_id = new_batch(repo, **fields).batch_id
    assert repo.start_submitting(batch_id, {}) is not None
    return batch_id


def chunk_state(repo: Repository, batch_id: str, index: int = 0) -> ChunkState:
    return repo.get_chunk(batch_id, index).state


# --- batches --------------------------------------------------------------------------------------
def test_a_batch_is_created_once(repo):
    batch = new_batch(repo)
    with pytest.raises(ValueError, match="already exists"):
        repo.create_batch(batch)


def test_submitting_starts_only_from_accepted_and_never_after_a_cancel(repo):
    batch_id = new_batch(repo).batch_id
    assert repo.start_submitting(batch_id, {"callbackToken": "t"}).status is BatchStatus.SUBMITTING
    assert repo.start_submitting(batch_id, {}) is None  # a stale submit cannot start it twice
    cancelled = new_batch(repo).batch_id
    repo.request_cancel(cancelled)
    assert repo.start_submitting(cancelled, {}) is None
    assert repo.get_batch(cancelled).status is BatchStatus.ACCEPTED


def test_a_terminal_status_never_changes(repo):
    batch_id = submitting(repo)
    assert repo.finish(batch_id, BatchStatus.SUCCEEDED, {}).status is BatchStatus.SUCCEEDED
    for status in (BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.SUCCEEDED):
        assert repo.finish(batch_id, status, {}) is None
    assert repo.request_cancel(batch_id) is None
    assert repo.begin_collecting(batch_id) is None
    assert repo.add_round(batch_id) is None
    assert repo.record_poll(batch_id, progress=50.0, poll_state={}) is None
    assert repo.mark_running(batch_id, {}) is None
    assert repo.record_error(batch_id, ErrorInfo(code="X", message="y")) is None
    assert repo.get_batch(batch_id).status is BatchStatus.SUCCEEDED


def test_a_batch_whose_cancel_was_requested_ends_cancelled_or_needing_attention_only(repo):
    batch_id = submitting(repo)
    repo.request_cancel(batch_id)
    assert repo.finish(batch_id, BatchStatus.SUCCEEDED, {}) is None
    assert repo.finish(batch_id, BatchStatus.FAILED, {}) is None
    assert repo.finish(batch_id, BatchStatus.CANCELLED, {}).status is BatchStatus.CANCELLED
    other = submitting(repo)
    repo.request_cancel(other)
    assert repo.finish(other, BatchStatus.NEEDS_ATTENTION, {}).status is BatchStatus.NEEDS_ATTENTION


def test_finishing_records_the_event_type_with_the_status(repo):
    batch_id = submitting(repo)
    done = repo.finish(
        batch_id, BatchStatus.PARTIALLY_SUCCEEDED, {"counts": Counts(total=1).model_dump(by_alias=True)}
    )
    assert done.event_type == "batchbridge.batch.partially_succeeded"
    assert done.finished_at and done.counts == Counts(total=1)


def test_polls_are_recorded_only_for_a_running_batch_and_rounds_count_up(repo):
    batch_id = submitting(repo)
    assert repo.record_poll(batch_id, progress=1.0, poll_state={}) is None  # still submitting
    assert repo.add_round(batch_id).rounds == 1
    assert repo.mark_running(batch_id, {"polls": 1}).status is BatchStatus.RUNNING
    assert repo.mark_running(batch_id, {}) is None  # only from SUBMITTING
    polled = repo.record_poll(batch_id, progress=42.0, poll_state={"polls": 2})
    assert (polled.rounds, polled.progress, polled.poll_state) == (2, 42.0, {"polls": 2})


def test_open_statuses_are_every_non_terminal_status():
    assert set(OPEN) == {s for s in BatchStatus if not s.is_terminal}


def test_an_unknown_batch_is_named_not_found(repo):
    with pytest.raises(BatchNotFoundError):
        repo.get_batch("00000000-0000-4000-8000-ffffffffffff")
    with pytest.raises(BatchNotFoundError):
        repo.add_round("00000000-0000-4000-8000-ffffffffffff")


# --- chunks --------------------------------------------------------------------------------------
def test_chunk_items_are_never_overwritten(repo):
    batch_id = submitting(repo)
    assert repo.claim_chunk(batch_id, 0, lease_until=LEASE) is Claim.WON
    again = Chunk(batch_id=batch_id, index=0, first_job=0, job_count=2, byte_start=0, byte_end=0)
    assert repo.create_chunks([again]) == 0
    assert chunk_state(repo, batch_id) is ChunkState.SUBMITTING


def test_a_chunk_is_claimed_once(repo):
    batch_id = submitting(repo)
    assert repo.claim_chunk(batch_id, 0, lease_until=LEASE) is Claim.WON
    assert repo.claim_chunk(batch_id, 0, lease_until=LEASE) is Claim.TAKEN
    assert repo.get_chunk(batch_id, 0).claim_expires_at == LEASE


def test_two_claims_at_once_one_wins(repo):
    batch_id = submitting(repo)
    results: list[Claim] = []
    start = threading.Barrier(2)

    def claim() -> None:
        start.wait()
        results.append(repo.claim_chunk(batch_id, 1, lease_until=LEASE))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.value for r in results) == ["taken", "won"]


def test_no_chunk_is_claimed_after_a_cancel_or_before_every_chunk_exists_or_after_the_end(repo):
    cancelled = submitting(repo)
    repo.request_cancel(cancelled)
    assert repo.claim_chunk(cancelled, 0, lease_until=LEASE) is Claim.CLOSED
    assert chunk_state(repo, cancelled) is ChunkState.PENDING
    unprepared = new_batch(repo, prepared=False).batch_id
    repo.start_submitting(unprepared, {})
    assert repo.claim_chunk(unprepared, 0, lease_until=LEASE) is Claim.CLOSED
    finished = submitting(repo)
    repo.finish(finished, BatchStatus.FAILED, {})
    assert repo.claim_chunk(finished, 0, lease_until=LEASE) is Claim.CLOSED


def test_a_submission_is_recorded_only_for_a_claimed_chunk(repo):
    batch_id = submitting(repo)
    assert repo.record_submission(batch_id, 0, "A") is None  # PENDING: nobody sent it
    repo.claim_chunk(batch_id, 0, lease_until=LEASE)
    recorded = repo.record_submission(batch_id, 0, "A")
    assert (recorded.state, recorded.provider_ref) == (ChunkState.RUNNING, "A")
    assert repo.record_submission(batch_id, 0, "B") is None  # RUNNING: the first reference stands
    assert repo.get_chunk(batch_id, 0).provider_ref == "A"


def test_an_unconfirmed_chunk_takes_a_reference_the_provider_later_shows(repo):
    batch_id = submitting(repo)
    repo.claim_chunk(batch_id, 0, lease_until=LEASE)
    assert repo.mark_unconfirmed(batch_id, 0).state is ChunkState.UNCONFIRMED
    assert repo.release_chunk(batch_id, 0) is None  # never sent again
    assert repo.claim_chunk(batch_id, 0, lease_until=LEASE) is Claim.TAKEN
    assert repo.record_submission(batch_id, 0, "A", reconciled=True).reconciled is True


def test_a_live_claim_is_not_taken_over_a_lapsed_one_is(repo):
    batch_id = submitting(repo)
    repo.claim_chunk(batch_id, 0, lease_until=1000.0)
    assert repo.mark_unconfirmed(batch_id, 0, claim_expired_by=999.0) is None
    assert repo.mark_unconfirmed(batch_id, 0, claim_expired_by=1001.0).state is ChunkState.UNCONFIRMED


def test_only_a_claimed_chunk_is_released_or_rejected(repo):
    batch_id = submitting(repo)
    assert repo.release_chunk(batch_id, 0) is None
    assert repo.reject_chunk(batch_id, 0, ErrorInfo(code="X", message="no")) is None
    repo.claim_chunk(batch_id, 0, lease_until=LEASE)
    assert repo.release_chunk(batch_id, 0).state is ChunkState.PENDING
    assert repo.get_chunk(batch_id, 0).claim_expires_at is None
    repo.claim_chunk(batch_id, 0, lease_until=LEASE)
    rejected = repo.reject_chunk(batch_id, 0, ErrorInfo(code="X", message="no"))
    assert (rejected.state, rejected.error.code) == (ChunkState.FAILED, "X")


def test_status_is_recorded_only_for_a_running_chunk(repo):
    batch_id = submitting(repo)
    assert repo.record_status(batch_id, 0, ChunkState.COMPLETED) is None
    repo.claim_chunk(batch_id, 0, lease_until=LEASE)
    assert repo.record_status(batch_id, 0, ChunkState.COMPLETED) is None
    repo.record_submission(batch_id, 0, "A")
    assert repo.record_status(batch_id, 0, ChunkState.RUNNING, progress=50.0).progress == 50.0
    done = repo.record_status(batch_id, 0, ChunkState.COMPLETED, report={"state": "COMPLETED"})
    assert (done.state, done.report) == (ChunkState.COMPLETED, {"state": "COMPLETED"})
    assert repo.record_status(batch_id, 0, ChunkState.FAILED) is None  # finished: stays so
    with pytest.raises(ValueError, match="cannot move"):
        repo.record_status(batch_id, 0, ChunkState.COLLECTED)


def test_how_a_chunk_is_settled_is_decided_once_from_the_state_it_was_read_in(repo):
    batch_id = submitting(repo)
    repo.claim_chunk(batch_id, 0, lease_until=LEASE)
    read = repo.record_submission(batch_id, 0, "A")  # RUNNING, as a cancel run reads it
    repo.record_status(batch_id, 0, ChunkState.COMPLETED)  # meanwhile the check records it finished
    abandon = Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED)
    assert repo.begin_settling(batch_id, read, abandon) is None  # the decision from a stale read loses
    current = repo.get_chunk(batch_id, 0)
    settling = repo.begin_settling(batch_id, current, Settlement(from_results=True))
    assert (settling.state, settling.settlement.from_results) == (ChunkState.COLLECTING, True)
    assert repo.begin_settling(batch_id, current, abandon) is None  # decided: a second decision loses
    assert repo.begin_settling(batch_id, settling, abandon) is None


def test_two_settlements_at_once_one_wins(repo):
    batch_id = submitting(repo)
    chunk = repo.get_chunk(batch_id, 1)
    results: list[bool] = []
    start = threading.Barrier(2)

    def settle(from_results: bool) -> None:
        start.wait()
        results.append(
            repo.begin_settling(
                batch_id, chunk, Settlement(from_results=from_results, outcome=OutcomeKind.NOT_PROCESSED)
            )
            is not None
        )

    threads = [threading.Thread(target=settle, args=(flag,)) for flag in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]


def test_a_chunk_is_settled_only_after_its_settlement_was_decided_and_only_once(repo):
    batch_id = submitting(repo)
    assert repo.settle(batch_id, 0, ChunkState.ABANDONED, Counts(total=2, not_processed=2)) is None
    chunk = repo.get_chunk(batch_id, 0)
    repo.begin_settling(batch_id, chunk, Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED))
    settled = repo.settle(batch_id, 0, ChunkState.ABANDONED, Counts(total=2, not_processed=2))
    assert (settled.state, settled.counts.total) == (ChunkState.ABANDONED, 2)
    assert repo.settle(batch_id, 0, ChunkState.COLLECTED, Counts(total=2, succeeded=2)) is None
    assert repo.begin_settling(batch_id, settled, Settlement(from_results=True)) is None


def test_a_late_reference_is_kept_once_on_a_settled_chunk(repo):
    batch_id = submitting(repo)
    chunk = repo.get_chunk(batch_id, 0)
    repo.begin_settling(batch_id, chunk, Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED))
    assert repo.record_submission(batch_id, 0, "LATE") is None
    assert repo.record_late_reference(batch_id, 0, "LATE").provider_ref == "LATE"
    assert repo.record_late_reference(batch_id, 0, "OTHER") is None


def test_ambiguous_chunks_accumulate(repo):
    batch_id = submitting(repo)
    repo.add_ambiguous_chunk(batch_id, 1)
    assert repo.add_ambiguous_chunk(batch_id, 0).ambiguous_chunks == [1, 0]


def test_callback_checks_are_allowed_once_per_interval(repo):
    batch_id = submitting(repo)
    assert repo.claim_callback_check(batch_id, 100.0, not_before=90.0) is True
    assert repo.claim_callback_check(batch_id, 105.0, not_before=95.0) is False
    assert repo.claim_callback_check(batch_id, 111.0, not_before=101.0) is True


def test_park_and_wake_swap_atomically(repo):
    batch_id = submitting(repo)
    assert repo.wake_for_callback(batch_id).task_token is None  # no one waiting: word is left
    before = repo.park_for_callback(batch_id, "token-1")
    assert before.callback_pending is True
    assert repo.wake_for_callback(batch_id).task_token == "token-1"
    assert repo.get_batch(batch_id).task_token is None


# --- outcomes ---------------------------------------------------------------------------------------
def rows(n: int, failed: set[int]) -> list[OutcomeRow]:
    return [
        OutcomeRow(
            index=i,
            outcome="failed" if i in failed else "succeeded",
            client_ref=f"ref-{i}",
            error=ErrorInfo(code="E", message="m") if i in failed else None,
            response='{"ok":true}',
        )
        for i in range(n)
    ]


def test_a_page_of_one_kind_holds_only_that_kind_and_pages_continue_where_they_left(repo):
    batch_id = submitting(repo)
    repo.write_outcomes(batch_id, rows(60, failed={3, 17, 18, 40, 59}), expires_at=2_000_000_000)
    page, token = repo.outcomes(batch_id, kind=OutcomeKind.FAILED, limit=3)
    assert [r.index for r in page] == [3, 17, 18] and token
    page, token = repo.outcomes(batch_id, kind=OutcomeKind.FAILED, limit=3, token=token)
    assert [r.index for r in page] == [40, 59] and token is None
    seen: list[int] = []
    token = None
    while True:
        page, token = repo.outcomes(batch_id, kind=None, limit=7, token=token)
        seen.extend(r.index for r in page)
        if token is None:
            break
    assert sorted(seen) == list(range(60)) and len(seen) == 60
    assert page[-1].view()["response"] == {"ok": True}


def test_a_page_token_is_refused_for_another_batch_or_filter_and_when_it_is_not_ours(repo):
    batch_id = submitting(repo)
    other = submitting(repo)
    repo.write_outcomes(batch_id, rows(5, failed={1, 2}), expires_at=2_000_000_000)
    _, token = repo.outcomes(batch_id, kind=OutcomeKind.FAILED, limit=1)
    with pytest.raises(InvalidTokenError):
        repo.outcomes(other, kind=OutcomeKind.FAILED, limit=1, token=token)
    with pytest.raises(InvalidTokenError):
        repo.outcomes(batch_id, kind=OutcomeKind.SUCCEEDED, limit=1, token=token)
    import base64

    for bad in (
        "not-a-token",
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
        base64.urlsafe_b64encode(b'["x"]').decode(),
    ):
        with pytest.raises(InvalidTokenError):
            repo.outcomes(batch_id, kind=None, limit=1, token=bad)


def test_one_job_is_found_by_its_client_reference(repo):
    batch_id = submitting(repo)
    repo.write_outcomes(batch_id, rows(30, failed={7}), expires_at=2_000_000_000)
    found = repo.outcome_by_client_ref(batch_id, "ref-7")
    assert [(r.index, r.outcome) for r in found] == [(7, "failed")]
    assert repo.outcome_by_client_ref(batch_id, "nobody") == []


# --- listing ----------------------------------------------------------------------------------------
def test_listing_by_several_statuses_by_reference_and_by_provider_is_newest_first(repo):
    reference = f"ref-{next(_counter)}"
    made = []
    for status in ("FAILED", "TIMED_OUT", "SUCCEEDED", "FAILED"):
        batch_id = submitting(repo, clientReference=reference)
        repo.finish(batch_id, BatchStatus(status), {})
        made.append((batch_id, status))
    got, token = repo.list_batches(ListQuery(client_reference=reference), limit=10, token=None)
    assert [b.batch_id for b in got] == [m[0] for m in reversed(made)] and token is None
    wanted = {m[0] for m in made if m[1] in ("FAILED", "TIMED_OUT")}
    seen: list[str] = []
    token = None
    query = ListQuery(statuses=(BatchStatus.FAILED, BatchStatus.TIMED_OUT))
    while True:
        page, token = repo.list_batches(query, limit=1, token=token)
        seen.extend(b.batch_id for b in page)
        if token is None:
            break
    assert wanted <= set(seen)
    assert len(seen) == len(set(seen))
    assert all(b.status in query.statuses for b in repo.list_batches(query, limit=50, token=None)[0])


def test_a_connections_history_is_saved_over_the_version_read_only(repo):
    from batchbridge.polling import DurationHistory, PollState, learn

    name = f"conn-{next(_counter)}"
    assert repo.get_connection_history(name) == (None, 0)
    first = learn(None, state=PollState(checked_at=500.0), finished_by=600.0)
    assert repo.save_connection_history(name, first, version=0) is True
    assert repo.save_connection_history(name, first, version=0) is False  # someone saved first
    saved, version = repo.get_connection_history(name)
    assert version == 1 and isinstance(saved, DurationHistory)
    assert saved.weights == pytest.approx(first.weights)
    second = learn(saved, state=PollState(checked_at=900.0), finished_by=1000.0)
    assert repo.save_connection_history(name, second, version=1) is True
    assert repo.save_connection_history(name, second, version=1) is False
    assert repo.get_connection_history(name)[1] == 2
