"""Collect: give every job of every chunk its one outcome, in S3 (one object per chunk) and DynamoDB.

Settling a chunk is two steps. First, how its outcomes are settled is decided and written with the move
to COLLECTING, conditional on the state the decision was made from (so a check recording that the chunk
finished, and a cancel abandoning it, cannot both win). Then its outcomes are written, and the chunk
moves to COLLECTED or ABANDONED. Writing is idempotent: whoever finds a chunk COLLECTING (a retry, the
cancel run, finalize) writes the same outcomes again from the recorded decision.

===========================================  =============================================================
the chunk                                    its outcomes
===========================================  =============================================================
COMPLETED, or FAILED at the provider         the provider's per-job results (``Provider.collect``)
FAILED at submit (refused)                   every job failed, with the provider's refusal
RUNNING (deadline, cancel, failure)          checked once more (finished: its results); else cancelled at
                                             the provider where it can be, and every job not processed,
                                             naming the provider's reference and what the cancel did
SUBMITTING (its claim lapsed) / UNCONFIRMED  not processed, ``AMBIGUOUS_SUBMIT``: the batch needs attention
PENDING                                      not processed, with the reason the batch stopped (when it is
                                             another chunk's ambiguous submit: ``BATCH_NEEDS_ATTENTION``)
===========================================  =============================================================
"""

from __future__ import annotations

from batchbridge import errors
from batchbridge.models import BatchStatus, ChunkState, Counts, ErrorInfo, OutcomeKind
from batchbridge.objects import chunk_outcomes_key
from batchbridge.observability import logger
from batchbridge.providers.base import Provider, StatusReport
from batchbridge.records import Batch, CancelAttempt, Chunk, Settlement
from batchbridge.tasks import MAX_COLLECT_ROUNDS, SAFETY_MARGIN_SECONDS, Deps, Failure, Step, TimeLeft
from batchbridge.tasks.chunks import chunk_info, prepare, read_jobs
from batchbridge.tasks.join import join
from batchbridge.tasks.outcomes import encode, exactly_once, uniform

#: Jobs of the chunks a batch left unfinished when it stopped on another chunk's ambiguous submit.
STOPPED_FOR_ATTENTION = "BATCH_NEEDS_ATTENTION"
NOT_COLLECTED = ErrorInfo(
    code="RESULTS_NOT_COLLECTED",
    message="the batch stopped before this job's results could be collected from the provider",
)


class Settler:
    """Settles chunks of one batch; builds the provider only if a chunk needs it."""

    def __init__(self, deps: Deps, batch: Batch, failure: Failure | None, *, quick: bool = False) -> None:
        self.deps = deps
        self.batch = batch
        self.failure = failure
        self.reason = abandon_reason(batch, failure)
        # Finalize settles what collect left without asking the provider anything (quick).
        self.quick = quick
        self._provider: Provider | None = None

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = self.deps.providers(self.batch)
        return self._provider

    def settle(self, chunk: Chunk) -> None:
        """Give every job of the chunk its outcome; a no-op for a settled chunk."""
        repo, batch_id = self.deps.repo, self.batch.batch_id
        for _ in range(4):  # a chunk that moves under us is read again, a few times at most
            if chunk.state.is_settled:
                return
            if chunk.state is not ChunkState.COLLECTING:
                if chunk.state is ChunkState.RUNNING and not self.quick:
                    chunk = self._last_look(chunk)
                    if chunk.state is not ChunkState.RUNNING:
                        continue
                settlement = self.decide(chunk)
                moved = repo.begin_settling(batch_id, chunk, settlement)
                if moved is None:
                    chunk = repo.get_chunk(batch_id, chunk.index)
                    continue
                chunk = moved
            self._write(chunk)
            return
        raise errors.ProviderUnavailableError(f"chunk {chunk.index} kept changing while being settled; retry")

    def decide(self, chunk: Chunk) -> Settlement:
        state = chunk.state
        if state in (ChunkState.COMPLETED, ChunkState.FAILED) and chunk.provider_ref:
            if self.quick:
                return Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED, error=NOT_COLLECTED)
            return Settlement(from_results=True)
        if state is ChunkState.FAILED:  # refused at submit: every job failed with that error
            return Settlement(from_results=False, outcome=OutcomeKind.FAILED, error=chunk.error)
        if state in (ChunkState.SUBMITTING, ChunkState.UNCONFIRMED):
            self.deps.repo.add_ambiguous_chunk(self.batch.batch_id, chunk.index)
            return Settlement(
                from_results=False,
                outcome=OutcomeKind.NOT_PROCESSED,
                error=ErrorInfo(
                    code=errors.AmbiguousSubmitError.code,
                    message=(
                        f"chunk {chunk.index} was sent, and no answer said whether the provider took it; "
                        "it was not sent again, and this job's outcome is unknown: check it at the provider"
                    ),
                ),
            )
        error = ErrorInfo(code=self.reason[0], message=self.reason[1])
        if state is ChunkState.RUNNING:
            error = self._cancel(chunk, error)
        return Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED, error=error)

    def _last_look(self, chunk: Chunk) -> Chunk:
        """Ask once more how a running chunk stands, so that work the provider finished is credited."""
        try:
            report = self.provider.check(chunk_info(self.batch, chunk))
        except errors.BatchBridgeError as exc:
            logger.info("last status check failed", extra={"chunk": chunk.index, "code": exc.code})
            return chunk
        if report.state is ChunkState.RUNNING:
            return chunk
        recorded = self.deps.repo.record_status(
            self.batch.batch_id,
            chunk.index,
            report.state,
            provider_status=report.provider_status,
            progress=report.progress,
            report=report.model_dump(mode="json"),
            error=report.error,
        )
        return recorded or self.deps.repo.get_chunk(self.batch.batch_id, chunk.index)

    def _cancel(self, chunk: Chunk, error: ErrorInfo) -> ErrorInfo:
        """Cancel a chunk the provider is still running, where it can; say so in the jobs' error."""
        ref = chunk.provider_ref
        if self.quick or not self.provider.capabilities.supports_cancel:
            note = f"the provider may still run it (its reference: {ref}); it has no cancel operation"
            if self.quick:
                note = f"the provider may still run it (its reference: {ref})"
            return ErrorInfo(code=error.code, message=f"{error.message}; {note}"[:1000])
        try:
            confirmed = bool(self.provider.cancel(chunk_info(self.batch, chunk)))
            attempt = CancelAttempt(confirmed=confirmed)
        except errors.BatchBridgeError as exc:
            attempt = CancelAttempt(confirmed=False, error=f"{exc.code}: {exc.message}"[:500])
        self.deps.repo.record_cancel(self.batch.batch_id, chunk.index, attempt)
        if attempt.confirmed:
            note = f"the provider confirmed the cancel of {ref}"
        else:
            note = f"the provider did not confirm the cancel of {ref} ({attempt.error or 'no confirmation'})"
        return ErrorInfo(code=error.code, message=f"{error.message}; {note}"[:1000])

    def _write(self, chunk: Chunk) -> None:
        assert chunk.settlement is not None
        deps, batch = self.deps, self.batch
        settlement = chunk.settlement
        jobs = read_jobs(deps, batch, chunk)
        if settlement.from_results:
            report = StatusReport.model_validate(chunk.report) if chunk.report else None
            try:
                values = [job.value for job in jobs]
                outcomes = exactly_once(self.provider.collect(chunk_info(batch, chunk), values, report), jobs)
            except (errors.ResultsExpiredError, errors.ProviderJobFailedError) as exc:
                # No per-record results can be had: whether the provider applied these jobs is unknown.
                error = ErrorInfo(code=exc.code, message=exc.message)
                deps.repo.record_error(batch.batch_id, error)
                settlement = Settlement(from_results=False, outcome=OutcomeKind.NOT_PROCESSED, error=error)
                deps.repo.revise_settlement(batch.batch_id, chunk.index, settlement)
        if not settlement.from_results:
            assert settlement.outcome is not None
            outcomes = uniform(jobs, settlement.outcome, settlement.error, chunk.provider_ref)
        counts = Counts()
        data, rows = encode(outcomes, jobs, counts)
        deps.objects.put_bytes(chunk_outcomes_key(batch.batch_id, chunk.index), data)
        expires = int(deps.clock()) + deps.settings.outcome_ttl_days * 86400
        deps.repo.write_outcomes(batch.batch_id, rows, expires_at=expires)
        credited = settlement.from_results or settlement.outcome is OutcomeKind.FAILED
        final = ChunkState.COLLECTED if credited else ChunkState.ABANDONED
        settled = deps.repo.settle(batch.batch_id, chunk.index, final, counts)
        if settled is not None and settlement.from_results:
            self._clean_up(chunk)

    def _clean_up(self, chunk: Chunk) -> None:
        """Let the provider drop what it keeps for a collected chunk (where the connection asks for it):
        only now that its outcomes are recorded, and best effort."""
        try:
            self.provider.cleanup(chunk_info(self.batch, chunk))
        except errors.BatchBridgeError as exc:
            logger.warning("provider clean-up failed", extra={"chunk": chunk.index, "code": exc.code})


def collect_batch(
    batch_id: str, failure: Failure | None, time_left: TimeLeft, deps: Deps | None = None
) -> Step:
    deps = deps or Deps.default()
    batch = deps.repo.get_batch(batch_id)
    if batch.status.is_terminal:
        return Step(done=True, poll_count=batch.rounds)
    batch = deps.repo.begin_collecting(batch_id) or deps.repo.get_batch(batch_id)
    if batch.status.is_terminal:
        return Step(done=True, poll_count=batch.rounds)
    if batch.collect_rounds > MAX_COLLECT_ROUNDS:
        logger.warning("collect round budget spent; finalize settles what is left")
        return Step(done=True, poll_count=batch.rounds, collect_rounds=batch.collect_rounds)
    settler = Settler(deps, batch, failure)
    if not batch.prepared:  # stopped (a cancel, a failure) before its chunks existed
        batch = prepare(deps, batch, settler.provider.capabilities.max_jobs_per_submit)
        settler.batch = batch
    left = 0
    wait = 0
    worked = False
    for chunk in deps.repo.iter_chunks(batch_id):
        if chunk.state.is_settled:
            continue
        if worked and time_left() < SAFETY_MARGIN_SECONDS:  # at least one chunk per call
            left += 1
            continue
        if (
            chunk.state is ChunkState.SUBMITTING
            and failure is None
            and (chunk.claim_expires_at or 0) > deps.clock()
        ):
            # A submit is in flight (a cancel run started while it was being sent): its answer decides.
            left += 1
            wait = max(wait, max(1, int((chunk.claim_expires_at or 0) - deps.clock()) + 1))
            continue
        settler.settle(chunk)
        worked = True
    if left == 0 and not (worked and time_left() < SAFETY_MARGIN_SECONDS):
        # Every chunk is settled: join the results files (in as many calls as their size needs).
        if not join(deps, deps.repo.get_batch(batch_id), time_left):
            left = 1
    elif left == 0:
        left = 1  # the join starts in the next call
    return Step(
        remaining=left,
        done=left == 0,
        wait_seconds=wait if not worked else 0,
        poll_count=batch.rounds,
        collect_rounds=batch.collect_rounds,
    )


def abandon_reason(batch: Batch, failure: Failure | None) -> tuple[str, str]:
    """Why a chunk that never finished has its jobs not processed."""
    if batch.cancel_requested or batch.status is BatchStatus.CANCELLED:
        return "CANCELLED", "the batch was cancelled before this job finished"
    if failure is not None and failure.ambiguous_submit:
        # AMBIGUOUS_SUBMIT tells a person to check these very jobs at the provider before resending them:
        # it belongs to the chunk whose answer was lost (:meth:`Settler.decide`), not to the others.
        return (
            STOPPED_FOR_ATTENTION,
            f"the batch stopped before this job finished, because another chunk's submit answer was lost: "
            f"{failure.info().message}",
        )
    if failure is not None:
        info = failure.info()
        return info.code, f"the batch stopped before this job finished: {info.message}"
    if batch.deadline_reached:
        return "DEADLINE_EXCEEDED", "the batch deadline passed before the provider finished this job"
    if batch.collect_rounds > MAX_COLLECT_ROUNDS:
        return "COLLECT_BUDGET_SPENT", "the batch used its collect budget before this job was collected"
    return "NOT_PROCESSED", "the provider did not process this job"
