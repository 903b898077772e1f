"""All persistence of batch state goes through here: the repository whose methods are the lifecycle.

Every change of a batch or a chunk is a conditional write from the states it may start in, so the rules
hold in the database, not by care: a terminal status never changes, a chunk is claimed for submission
once, a cancelled batch claims no chunk, and how a chunk's outcomes are settled is decided once. The
rules are written once, here, as :class:`Write` values (a condition and an update); the two storage
engines only carry them out: :class:`~batchbridge.repository.dynamo.DynamoRepository` (DynamoDB, deployed)
and :class:`~batchbridge.repository.memory.MemoryRepository` (a dict, for unit tests of the tasks).

Table layout (partition ``pk``, sort ``sk``):

============================  ===========================================  =======================
item                          key                                          record
============================  ===========================================  =======================
batch                         ``BATCH#<id>`` / ``META``                     :class:`Batch`
chunk                         ``BATCH#<id>`` / ``CHUNK#<00042>``            :class:`Chunk`
outcome row                   ``BATCH#<id>`` / ``OUTCOME#<kind>#<index>``   :class:`OutcomeRow`
idempotency key               ``IDEMPOTENCY#<key>`` / ``META``              :class:`IdempotencyRecord`
============================  ===========================================  =======================

Outcome rows sort by outcome kind, then by job index, so a page of one kind costs what the page holds.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from batchbridge import limits
from batchbridge.clock import now_iso
from batchbridge.errors import BatchNotFoundError, InvalidTokenError
from batchbridge.models import TERMINAL_STATUSES, BatchStatus, ChunkState, Counts, ErrorInfo, OutcomeKind
from batchbridge.polling import DurationHistory
from batchbridge.records import Batch, CancelAttempt, Chunk, JoinState, Settlement, Upload

META = "META"
TERMINAL = tuple(sorted(s.value for s in TERMINAL_STATUSES))
#: Statuses a batch may be finished from. Listed in full so a reader sees them, and checked against
#: the enum in the tests.
OPEN = (BatchStatus.ACCEPTED, BatchStatus.SUBMITTING, BatchStatus.RUNNING, BatchStatus.COLLECTING)

# --- the chunk lifecycle: each move and the states it may start from ---------------------------------
UNSETTLED = (
    ChunkState.PENDING,
    ChunkState.SUBMITTING,
    ChunkState.UNCONFIRMED,
    ChunkState.RUNNING,
    ChunkState.COMPLETED,
    ChunkState.FAILED,
)
CHUNK_MOVES: dict[str, tuple[tuple[ChunkState, ...], tuple[ChunkState, ...]]] = {
    # move: (from, to)
    "claim": ((ChunkState.PENDING,), (ChunkState.SUBMITTING,)),
    "release": ((ChunkState.SUBMITTING,), (ChunkState.PENDING,)),
    "record_submission": ((ChunkState.SUBMITTING, ChunkState.UNCONFIRMED), (ChunkState.RUNNING,)),
    "reject": ((ChunkState.SUBMITTING,), (ChunkState.FAILED,)),
    "mark_unconfirmed": ((ChunkState.SUBMITTING,), (ChunkState.UNCONFIRMED,)),
    "record_status": (
        (ChunkState.RUNNING,),
        (ChunkState.RUNNING, ChunkState.COMPLETED, ChunkState.FAILED),
    ),
    "begin_settling": (UNSETTLED, (ChunkState.COLLECTING,)),
    "settle": ((ChunkState.COLLECTING,), (ChunkState.COLLECTED, ChunkState.ABANDONED)),
}


def pk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def chunk_sk(index: int) -> str:
    return f"CHUNK#{index:05d}"


def outcome_sk(kind: OutcomeKind | str, index: int) -> str:
    return f"OUTCOME#{kind}#{index:08d}"


def encode_page_token(batch_id: str, sort_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([batch_id, sort_key]).encode()).decode()


def decode_page_token(token: str, batch_id: str, prefix: str) -> str:
    """The sort key a page token continues after, when it was issued for this batch and filter."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidTokenError("nextToken is not a token this API issued") from None
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(v, str) for v in data)):
        raise InvalidTokenError("nextToken is not a token this API issued")
    if data[0] != batch_id or not data[1].startswith(prefix):
        raise InvalidTokenError("nextToken belongs to another batch or another outcome filter")
    return str(data[1])


# --- writes as values -----------------------------------------------------------------------------
Op = Literal["present", "absent", "in", "in_or_absent", "not_in", "not_true", "below_or_absent"]


@dataclass(frozen=True)
class Expect:
    """One condition on one attribute of the item about to be written."""

    attribute: str
    op: Op
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Write:
    """A conditional update of one item: every ``expect`` must hold, else nothing is written."""

    key: tuple[str, str]
    expect: tuple[Expect, ...]
    set: dict[str, Any] = field(default_factory=dict)
    add: dict[str, int | float] = field(default_factory=dict)
    append: dict[str, list[Any]] = field(default_factory=dict)  # list attributes to extend
    remove: tuple[str, ...] = ()


EXISTS = Expect("pk", "present")
NOT_TERMINAL = Expect("status", "not_in", TERMINAL)
NOT_CANCELLED = Expect("cancelRequested", "not_true")


class Claim(Enum):
    """What came of an attempt to claim a chunk for submission."""

    WON = "won"
    TAKEN = "taken"  # the chunk was not PENDING: another attempt owns it, or it is settled
    CLOSED = "closed"  # the batch is cancelled or finished: nothing more is sent


class IdempotencyRecord(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    batch_id: str | None = None
    body_hash: str | None = None


@dataclass(frozen=True)
class OutcomeRow:
    """One job's outcome as the table keeps it. ``response`` is already JSON text (encoded once, shared
    with the results file); rows keep it only when small (``response_truncated`` otherwise)."""

    index: int
    outcome: str
    client_ref: str | None = None
    provider_ref: str | None = None
    error: ErrorInfo | None = None
    response: str | None = None
    response_truncated: bool = False
    detail: str | None = None

    def view(self) -> dict[str, Any]:
        """The outcome as the API answers it."""
        import json

        out: dict[str, Any] = {
            "index": self.index,
            "clientRef": self.client_ref,
            "outcome": self.outcome,
            "providerRef": self.provider_ref,
            "error": self.error.model_dump() if self.error else None,
            "response": json.loads(self.response) if self.response is not None else None,
            "detail": self.detail,
        }
        if self.response_truncated:
            out["responseTruncated"] = True
        return out


class ListQuery(BaseModel):
    """Which batches ``GET /batches`` asks for."""

    statuses: tuple[BatchStatus, ...] = ()
    provider: str | None = None
    client_reference: str | None = None


class Repository(ABC):
    """The lifecycle of batches and chunks as conditional writes; storage engines implement the
    primitives at the bottom. Methods return the record as written, or ``None``/``False`` when the record
    was not in a state the move may start from (the caller decides what that means: usually that a
    retry, a cancel or another task got there first)."""

    # --- batches ---------------------------------------------------------------------------------
    def create_batch(self, batch: Batch) -> None:
        """Write a new batch record; refused (ValueError) if one with that id exists."""
        if not self._put_new((pk(batch.batch_id), META), {"kind": "batch", **batch.to_item()}):
            raise ValueError(f"batch {batch.batch_id} already exists")

    def get_batch(self, batch_id: str) -> Batch:
        item = self._get((pk(batch_id), META))
        if item is None:
            raise BatchNotFoundError(f"no batch {batch_id!r}")
        return Batch.from_item(item)

    def delete_batch(self, batch_id: str) -> None:
        """Remove a batch record that never started (the API undoing a failed create)."""
        self._delete((pk(batch_id), META))

    def start_submitting(self, batch_id: str, callback: dict[str, str]) -> Batch | None:
        """ACCEPTED -> SUBMITTING, unless cancelled meanwhile; records the callback URL and token."""
        return self._batch_write(
            batch_id,
            (Expect("status", "in", (BatchStatus.ACCEPTED.value,)), NOT_CANCELLED),
            set={"status": BatchStatus.SUBMITTING.value, **callback},
        )

    def mark_prepared(self, batch_id: str) -> Batch | None:
        return self._batch_write(batch_id, (NOT_TERMINAL,), set={"prepared": True})

    def add_round(self, batch_id: str) -> Batch | None:
        """Count one round (a submit attempt or a status check) of a batch that has not finished."""
        return self._batch_write(batch_id, (NOT_TERMINAL,), add={"pollCount": 1})

    def advance_submit_cursor(self, batch_id: str, to: int) -> Batch | None:
        return self._batch_write(batch_id, (NOT_TERMINAL,), set={"submitCursor": to})

    def mark_running(self, batch_id: str, poll_state: dict[str, Any]) -> Batch | None:
        """SUBMITTING -> RUNNING: every chunk's submit is settled."""
        return self._batch_write(
            batch_id,
            (Expect("status", "in", (BatchStatus.SUBMITTING.value,)),),
            set={"status": BatchStatus.RUNNING.value, "submittedAt": now_iso(), "pollState": poll_state},
        )

    def record_poll(
        self, batch_id: str, *, progress: float | None, poll_state: dict[str, Any] | None
    ) -> Batch | None:
        """One status check of a running batch: a round counted, progress and the policy's memory kept."""
        values: dict[str, Any] = {"progress": progress}
        if poll_state is not None:
            values["pollState"] = poll_state
        return self._batch_write(
            batch_id,
            (Expect("status", "in", (BatchStatus.RUNNING.value,)),),
            set=values,
            add={"pollCount": 1},
        )

    def mark_deadline_reached(self, batch_id: str) -> Batch | None:
        return self._batch_write(batch_id, (NOT_TERMINAL,), set={"deadlineReached": True})

    def record_error(self, batch_id: str, error: ErrorInfo) -> Batch | None:
        """The batch's error (a chunk refused, results gone), kept for its final status."""
        return self._batch_write(batch_id, (NOT_TERMINAL,), set={"error": error.model_dump()})

    def add_ambiguous_chunk(self, batch_id: str, index: int) -> Batch | None:
        """Name a chunk whose submit may have been taken: the batch will end NEEDS_ATTENTION."""
        return self._batch_write(batch_id, (EXISTS,), append={"ambiguousChunks": [index]})

    def add_retry(self, batch_id: str, retry_id: str) -> Batch | None:
        """Link a finished batch to a batch that retries some of its jobs."""
        return self._batch_write(batch_id, (EXISTS,), append={"retries": [retry_id]})

    def request_cancel(self, batch_id: str) -> Batch | None:
        """Flag a batch that has not finished as cancelled; from now on no chunk can be claimed."""
        return self._batch_write(batch_id, (NOT_TERMINAL,), set={"cancelRequested": True})

    def begin_collecting(self, batch_id: str) -> Batch | None:
        return self._batch_write(
            batch_id,
            (Expect("status", "in", tuple(s.value for s in OPEN)),),
            set={"status": BatchStatus.COLLECTING.value},
            add={"collectRounds": 1},
        )

    def finish(self, batch_id: str, status: BatchStatus, values: dict[str, Any]) -> Batch | None:
        """Open -> terminal, once. A batch whose cancel was requested can only end CANCELLED (or
        NEEDS_ATTENTION, when a submit is ambiguous): a task that missed the cancel cannot overwrite it."""
        assert status.is_terminal
        expect: tuple[Expect, ...] = (Expect("status", "in", tuple(s.value for s in OPEN)),)
        if status not in (BatchStatus.CANCELLED, BatchStatus.NEEDS_ATTENTION):
            expect += (NOT_CANCELLED,)
        from batchbridge.events import EVENT_TYPE_PREFIX

        finished = {
            "status": status.value,
            "finishedAt": now_iso(),
            "eventType": EVENT_TYPE_PREFIX + status.lower(),
        }
        return self._batch_write(batch_id, expect, set={**finished, **values})

    def save_join(self, batch_id: str, state: JoinState, *, previous: JoinState | None) -> JoinState | None:
        """Record how far joining the results files has come, if it still stands where ``previous`` left it
        (None: not started); None when another invocation moved it first."""
        if previous is None:
            expect: tuple[Expect, ...] = (Expect("join", "absent"),)
        else:
            expect = (Expect("join.next", "in", (previous.next,)), Expect("join.done", "not_true"))
        written = self._batch_write(batch_id, expect, set={"join": state.model_dump(by_alias=True)})
        return None if written is None else written.join

    def meter(self, batch_id: str, usage: dict[str, float]) -> None:
        """Add to the batch's metered counters (see :mod:`batchbridge.cost`), whatever its status."""
        if usage:
            self._batch_write(batch_id, (EXISTS,), add={f"usage.{k}": round(v, 6) for k, v in usage.items()})

    # --- callbacks ---------------------------------------------------------------------------------
    def park_for_callback(self, batch_id: str, task_token: str) -> Batch:
        """Keep the waiting workflow's task token; returns the record as it was before."""
        return self._swap(batch_id, set={"taskToken": task_token}, remove=("callbackPending",))

    def wake_for_callback(self, batch_id: str) -> Batch:
        """Take the parked task token (if any) and leave word that a callback came; returns the record
        as it was before."""
        return self._swap(batch_id, set={"callbackPending": True}, remove=("taskToken",))

    def claim_callback_check(self, batch_id: str, at: float, not_before: float) -> bool:
        """Allow one provider check on behalf of callbacks per interval: True for the caller that won."""
        written = self._batch_write(
            batch_id,
            (NOT_TERMINAL, Expect("callbackCheckedAt", "below_or_absent", (not_before,))),
            set={"callbackCheckedAt": at},
        )
        return written is not None

    # --- chunks --------------------------------------------------------------------------------------
    def create_chunks(self, chunks: Iterable[Chunk]) -> int:
        """Create chunk items that do not exist yet (never overwriting one); returns how many were new."""
        return sum(1 for c in chunks if self._put_new((pk(c.batch_id), chunk_sk(c.index)), c.to_item()))

    def get_chunk(self, batch_id: str, index: int) -> Chunk:
        item = self._get((pk(batch_id), chunk_sk(index)))
        if item is None:
            raise BatchNotFoundError(f"batch {batch_id} has no chunk {index}")
        return Chunk.from_item(item)

    def iter_chunks(self, batch_id: str, *, start: int = 0, page_size: int = 100) -> Iterator[Chunk]:
        """The batch's chunks from index ``start`` on, in index order, read a page at a time."""
        for item in self._query(pk(batch_id), "CHUNK#", start=chunk_sk(start), page_size=page_size):
            yield Chunk.from_item(item)

    def claim_chunk(self, batch_id: str, index: int, *, lease_until: float) -> Claim:
        """PENDING -> SUBMITTING, in one transaction with a check that the batch is still open and not
        cancelled: a chunk is claimed once, and never after a cancel."""
        batch_ok = (pk(batch_id), META), (NOT_TERMINAL, NOT_CANCELLED, Expect("prepared", "in", (True,)))
        won = self._transact(
            checks=[batch_ok],
            write=self._chunk_move(
                batch_id, index, "claim", set={"claimedAt": now_iso(), "claimExpiresAt": lease_until}
            ),
        )
        if won is True:
            return Claim.WON
        return Claim.CLOSED if won == "check" else Claim.TAKEN

    def release_chunk(self, batch_id: str, index: int) -> Chunk | None:
        """SUBMITTING -> PENDING: the provider proved it did not take the chunk (throttled, refused to
        connect, not ready); it may be sent again."""
        return self._chunk_write(
            self._chunk_move(batch_id, index, "release", remove=("claimedAt", "claimExpiresAt"))
        )

    def record_submission(
        self, batch_id: str, index: int, provider_ref: str, *, reconciled: bool = False
    ) -> Chunk | None:
        """SUBMITTING (or UNCONFIRMED, when the provider later shows it holds the chunk) -> RUNNING."""
        values = {"providerRef": provider_ref, "submittedAt": now_iso(), "reconciled": reconciled}
        return self._chunk_write(self._chunk_move(batch_id, index, "record_submission", set=values))

    def record_late_reference(self, batch_id: str, index: int, provider_ref: str) -> Chunk | None:
        """Keep the provider's reference of a chunk that was settled before its submit answered, so the
        reference a person needs is on the chunk (and named in the batch error), never lost."""
        return self._chunk_write(
            Write(
                key=(pk(batch_id), chunk_sk(index)),
                expect=(EXISTS, Expect("providerRef", "absent")),
                set={"providerRef": provider_ref, "submittedAt": now_iso()},
            )
        )

    def reject_chunk(self, batch_id: str, index: int, error: ErrorInfo) -> Chunk | None:
        """SUBMITTING -> FAILED: the provider refused the chunk; every job of it fails with that error."""
        values = {"error": error.model_dump(), "finishedAt": now_iso()}
        return self._chunk_write(self._chunk_move(batch_id, index, "reject", set=values))

    def mark_unconfirmed(
        self, batch_id: str, index: int, *, claim_expired_by: float | None = None
    ) -> Chunk | None:
        """SUBMITTING -> UNCONFIRMED: sent, and nothing proves whether the provider took it. With
        ``claim_expired_by``, only a claim whose holder cannot still be running (its lease has passed)."""
        move = self._chunk_move(batch_id, index, "mark_unconfirmed")
        if claim_expired_by is not None:
            move = Write(
                key=move.key,
                expect=(*move.expect, Expect("claimExpiresAt", "below_or_absent", (claim_expired_by,))),
                set=move.set,
            )
        return self._chunk_write(move)

    def record_status(
        self,
        batch_id: str,
        index: int,
        state: ChunkState,
        *,
        provider_status: str | None = None,
        progress: float | None = None,
        report: dict[str, Any] | None = None,
        error: ErrorInfo | None = None,
    ) -> Chunk | None:
        """RUNNING -> RUNNING (progress) | COMPLETED | FAILED, from one status check."""
        if report is not None and len(json.dumps(report)) > limits.MAX_REPORT_BYTES:
            report = {k: v for k, v in report.items() if k != "detail"}  # keep the report, not its facts
        values: dict[str, Any] = {
            "state": state.value,
            "providerStatus": None
            if provider_status is None
            else provider_status[: limits.MAX_PROVIDER_STATUS_CHARS],
            "progress": progress,
            "checkedAt": now_iso(),
        }
        if state is not ChunkState.RUNNING:
            values["finishedAt"] = now_iso()
            values["report"] = report
        if error is not None:
            values["error"] = error.model_dump()
        move = self._chunk_move(batch_id, index, "record_status", set=values, to=state)
        return self._chunk_write(move)

    def begin_settling(self, batch_id: str, chunk: Chunk, settlement: Settlement) -> Chunk | None:
        """``chunk.state`` -> COLLECTING with how its outcomes are settled, decided here once. Refused
        when the chunk is no longer in the state the caller read (it moved meanwhile)."""
        if chunk.state not in CHUNK_MOVES["begin_settling"][0]:
            return None
        write = Write(
            key=(pk(batch_id), chunk_sk(chunk.index)),
            expect=(Expect("state", "in", (chunk.state.value,)),),
            set={
                "state": ChunkState.COLLECTING.value,
                "settlement": settlement.model_dump(by_alias=True, mode="json"),
            },
        )
        return self._chunk_write(write)

    def revise_settlement(self, batch_id: str, index: int, settlement: Settlement) -> Chunk | None:
        """Change how a chunk being settled from the provider's results is settled, when those results
        turned out to be gone: from then on every writer writes the revised outcomes."""
        return self._chunk_write(
            Write(
                key=(pk(batch_id), chunk_sk(index)),
                expect=(
                    Expect("state", "in", (ChunkState.COLLECTING.value,)),
                    Expect("settlement.fromResults", "in", (True,)),
                ),
                set={"settlement": settlement.model_dump(by_alias=True, mode="json")},
            )
        )

    def record_cancel(self, batch_id: str, index: int, attempt: CancelAttempt) -> Chunk | None:
        return self._chunk_write(
            Write(
                key=(pk(batch_id), chunk_sk(index)),
                expect=(EXISTS,),
                set={"cancel": attempt.model_dump(by_alias=True)},
            )
        )

    def settle(self, batch_id: str, index: int, state: ChunkState, counts: Counts) -> Chunk | None:
        """COLLECTING -> COLLECTED | ABANDONED, after every outcome of the chunk was written."""
        values = {"state": state.value, "counts": counts.model_dump(by_alias=True), "collectedAt": now_iso()}
        return self._chunk_write(self._chunk_move(batch_id, index, "settle", set=values, to=state))

    def _chunk_move(
        self,
        batch_id: str,
        index: int,
        move: str,
        *,
        set: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
        to: ChunkState | None = None,
    ) -> Write:
        sources, targets = CHUNK_MOVES[move]
        target = to or targets[0]
        if target not in targets:
            raise ValueError(f"{move} cannot move a chunk to {target}")
        return Write(
            key=(pk(batch_id), chunk_sk(index)),
            expect=(Expect("state", "in", tuple(s.value for s in sources)),),
            set={"state": target.value, **(set or {})},
            remove=remove,
        )

    # --- outcomes --------------------------------------------------------------------------------------
    def write_outcomes(self, batch_id: str, rows: Sequence[OutcomeRow], *, expires_at: int) -> None:
        """Write (or write again, identically) outcome rows; they expire with the batch's results."""
        self._write_rows(batch_id, rows, expires_at)

    def outcomes(
        self, batch_id: str, *, kind: OutcomeKind | None, limit: int, token: str | None = None
    ) -> tuple[list[OutcomeRow], str | None]:
        """A page of outcome rows, by kind then index, and the token of the next page (None at the end).
        The page costs what it holds, whatever the batch's size. A token names its batch and filter and
        is refused (InvalidTokenError) anywhere else."""
        prefix = f"OUTCOME#{kind}#" if kind else "OUTCOME#"
        after = decode_page_token(token, batch_id, prefix) if token else None
        rows, last = self._rows(pk(batch_id), prefix, limit=limit, after=after)
        return rows, (encode_page_token(batch_id, last) if last else None)

    def outcome_by_client_ref(self, batch_id: str, client_ref: str) -> list[OutcomeRow]:
        """The outcome(s) of the job(s) the client named ``client_ref``, in one read."""
        return self._rows_by_ref(batch_id, client_ref)

    # --- idempotency ------------------------------------------------------------------------------
    def claim_idempotency_key(
        self, key: str, body_hash: str, batch_id: str, *, expires_at: int
    ) -> IdempotencyRecord | None:
        """Record key -> batch; None when this call claimed it, else what the key already holds."""
        item = {"batchId": batch_id, "bodyHash": body_hash, "ttl": expires_at}
        if self._put_new((f"IDEMPOTENCY#{key}", META), item):
            return None
        existing = self._get((f"IDEMPOTENCY#{key}", META))
        return IdempotencyRecord.model_validate(existing or {})

    def release_idempotency_key(self, key: str) -> None:
        self._delete((f"IDEMPOTENCY#{key}", META))

    # --- uploads ------------------------------------------------------------------------------------
    def create_upload(self, upload: Upload) -> None:
        if not self._put_new((f"UPLOAD#{upload.upload_id}", META), upload.to_item()):
            raise ValueError(f"upload {upload.upload_id} already exists")

    def get_upload(self, upload_id: str) -> Upload | None:
        item = self._get((f"UPLOAD#{upload_id}", META))
        return Upload.from_item(item) if item else None

    def move_upload(
        self,
        upload_id: str,
        start: str,
        end: str,
        *,
        set: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
    ) -> bool:
        """``start`` -> ``end`` (upload statuses); False when the upload was not in ``start``."""
        write = Write(
            key=(f"UPLOAD#{upload_id}", META),
            expect=(Expect("uploadStatus", "in", (start,)),),
            set={"uploadStatus": end, **(set or {})},
            remove=remove,
        )
        return self._apply(write) is not None

    def claim_upload(self, upload_id: str, batch_id: str, *, valid: str) -> bool:
        """Make a ``valid`` upload the batch's; True also when it already is that batch's (a retry)."""
        write = Write(
            key=(f"UPLOAD#{upload_id}", META),
            expect=(Expect("uploadStatus", "in", (valid,)), Expect("batchId", "in_or_absent", (batch_id,))),
            set={"batchId": batch_id},
        )
        return self._apply(write) is not None

    def release_upload(self, upload_id: str, batch_id: str) -> bool:
        """Undo :meth:`claim_upload` (the batch could not be accepted after all), only for that batch."""
        write = Write(
            key=(f"UPLOAD#{upload_id}", META),
            expect=(Expect("batchId", "in", (batch_id,)),),
            remove=("batchId",),
        )
        return self._apply(write) is not None

    # --- what the polling policy learns per connection --------------------------------------------
    def get_connection_history(self, connection: str) -> tuple[DurationHistory | None, int]:
        """The connection's learned batch durations and the version to save the next one over."""
        item = self._get((f"CONNECTION#{connection}", "POLLING"))
        if not item:
            return None, 0
        return DurationHistory.model_validate(item.get("history") or {}), int(item.get("version", 0))

    def save_connection_history(self, connection: str, history: DurationHistory, *, version: int) -> bool:
        """Save the connection's history over ``version`` (0: none saved yet); False when another batch
        saved one first (the caller reads it again and learns once more)."""
        key = (f"CONNECTION#{connection}", "POLLING")
        values = {"history": history.model_dump(), "version": version + 1}
        if version == 0:
            return self._put_new(key, values)
        return (
            self._apply(Write(key=key, expect=(Expect("version", "in", (version,)),), set=values)) is not None
        )

    # --- listing ------------------------------------------------------------------------------------
    @abstractmethod
    def list_batches(
        self, query: ListQuery, *, limit: int, token: str | None
    ) -> tuple[list[Batch], str | None]:
        """Batch records, newest first (only the fields the listing indexes hold)."""

    # --- the primitives a storage engine provides -------------------------------------------------------
    @abstractmethod
    def _get(self, key: tuple[str, str]) -> dict[str, Any] | None: ...

    @abstractmethod
    def _put_new(self, key: tuple[str, str], item: dict[str, Any]) -> bool:
        """Create the item unless one with this key exists; True when created."""

    @abstractmethod
    def _delete(self, key: tuple[str, str]) -> None: ...

    @abstractmethod
    def _apply(self, write: Write) -> dict[str, Any] | None:
        """Carry out a conditional write; the item after it, or None when a condition did not hold."""

    @abstractmethod
    def _swap(self, batch_id: str, *, set: dict[str, Any], remove: tuple[str, ...]) -> Batch:
        """Set and remove attributes of an existing batch record in one write; the record before it."""

    @abstractmethod
    def _transact(
        self, *, checks: list[tuple[tuple[str, str], tuple[Expect, ...]]], write: Write
    ) -> bool | Literal["check", "write"]:
        """Conditions on other items and one write, all or nothing; True, or which part did not hold."""

    @abstractmethod
    def _query(self, partition: str, prefix: str, *, start: str, page_size: int) -> Iterator[dict[str, Any]]:
        """Items of a partition whose sort key starts with ``prefix``, from ``start`` on, in order."""

    @abstractmethod
    def _write_rows(self, batch_id: str, rows: Sequence[OutcomeRow], expires_at: int) -> None: ...

    @abstractmethod
    def _rows(
        self, partition: str, prefix: str, *, limit: int, after: str | None
    ) -> tuple[list[OutcomeRow], str | None]: ...

    @abstractmethod
    def _rows_by_ref(self, batch_id: str, client_ref: str) -> list[OutcomeRow]: ...

    # --- helpers --------------------------------------------------------------------------------------
    def _batch_write(
        self,
        batch_id: str,
        expect: tuple[Expect, ...],
        *,
        set: dict[str, Any] | None = None,
        add: dict[str, int | float] | None = None,
        append: dict[str, list[Any]] | None = None,
    ) -> Batch | None:
        write = Write(
            key=(pk(batch_id), META),
            expect=(EXISTS, *expect),
            set={**(set or {}), "updatedAt": now_iso()},
            add=add or {},
            append=append or {},
        )
        item = self._apply(write)
        if item is None:
            if self._get(write.key) is None:
                raise BatchNotFoundError(f"no batch {batch_id!r}")
            return None
        return Batch.from_item(item)

    def _chunk_write(self, write: Write) -> Chunk | None:
        item = self._apply(write)
        return None if item is None else Chunk.from_item(item)
