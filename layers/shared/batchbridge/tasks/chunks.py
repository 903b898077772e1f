"""Chunks: a batch's jobs split by its provider's submit limit, each a run of lines of the jobs file.

Preparing a batch reads its jobs file once, as a stream, and creates one chunk item per run of lines
(never overwriting one: a chunk claimed by a submit keeps its claim). No chunk can be claimed before
every chunk exists (the batch's ``prepared`` flag, checked in the same transaction as the claim), so
preparing again after a crash is harmless.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from batchbridge.errors import ConfigurationError
from batchbridge.providers.base import ChunkInfo
from batchbridge.records import Batch, Chunk
from batchbridge.tasks import Deps
from batchbridge.tasks.outcomes import Job

#: Chunk items are created this many at a time, each a conditional put.
CREATE_WORKERS = 8


def plan(deps: Deps, batch: Batch, size: int) -> Iterator[Chunk]:
    """The batch's chunks, from one streaming pass over its jobs file."""
    index = first = start = offset = lines = 0
    tail = b""
    for piece in deps.objects.stream(batch.jobs_key):
        data = tail + piece
        base = offset - len(tail)
        position = 0
        while (newline := data.find(b"\n", position)) != -1:
            position = newline + 1
            lines += 1
            if lines - first == size:
                yield _chunk(batch, index, first, lines - first, start, base + position)
                index, first, start = index + 1, lines, base + position
        tail = data[position:]
        offset += len(piece)
    if tail.strip():
        lines += 1
    if lines > first:
        yield _chunk(batch, index, first, lines - first, start, offset)


def _chunk(batch: Batch, index: int, first: int, count: int, start: int, end: int) -> Chunk:
    return Chunk(
        batch_id=batch.batch_id, index=index, first_job=first, job_count=count, byte_start=start, byte_end=end
    )


def prepare(deps: Deps, batch: Batch, size: int) -> Batch:
    """Create the batch's chunk items (those that do not exist yet) and mark it prepared. A retry batch's
    jobs file is written first, from the batch it retries."""
    if batch.prepared:
        return batch
    if batch.jobs_from is not None and not deps.objects.exists(batch.jobs_key):
        write_retried_jobs(deps, batch)
    chunks = list(plan(deps, batch, size))
    jobs = sum(c.job_count for c in chunks)
    if len(chunks) != batch.chunk_count or jobs != batch.job_count:
        raise ConfigurationError(
            f"batch {batch.batch_id}: its jobs file holds {jobs} jobs in {len(chunks)} chunks, "
            f"not the {batch.job_count} jobs in {batch.chunk_count} chunks it was accepted with"
        )
    with ThreadPoolExecutor(max_workers=CREATE_WORKERS) as pool:
        list(pool.map(lambda c: deps.repo.create_chunks([c]), chunks))
    return deps.repo.mark_prepared(batch.batch_id) or deps.repo.get_batch(batch.batch_id)


def write_retried_jobs(deps: Deps, batch: Batch) -> int:
    """Write a retry batch's jobs file: the jobs of the retried batch that ended with the chosen outcomes,
    as they were submitted, in their original order (the outcome files are each in job order; they are
    merged by index). Returns how many jobs it wrote."""
    assert batch.jobs_from is not None
    source = deps.repo.get_batch(batch.jobs_from.batch_id)
    streams = [
        _indexed_jobs(deps, source.outcome_keys[kind.value])
        for kind in batch.jobs_from.outcomes
        if kind.value in source.outcome_keys
    ]
    written = 0
    with deps.objects.writer(batch.jobs_key) as out:
        for _, line in heapq.merge(*streams):
            out.write(line + b"\n")
            written += 1
    return written


def _indexed_jobs(deps: Deps, key: str) -> Iterator[tuple[int, bytes]]:
    """(index, job as submitted) of each line of an outcome file, streamed."""
    for line in deps.objects.lines(key):
        outcome = json.loads(line)
        job = json.dumps(outcome["job"], separators=(",", ":"), ensure_ascii=False).encode()
        yield int(outcome["index"]), job


def read_jobs(deps: Deps, batch: Batch, chunk: Chunk) -> list[Job]:
    """The chunk's jobs as they were accepted."""
    data = deps.objects.read_range(batch.jobs_key, chunk.byte_start, chunk.byte_end)
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) != chunk.job_count:
        raise ConfigurationError(
            f"batch {batch.batch_id} chunk {chunk.index}: {len(lines)} jobs in its part of the jobs file, "
            f"not {chunk.job_count}"
        )
    return [Job(index=chunk.first_job + i, line=line, value=json.loads(line)) for i, line in enumerate(lines)]


def chunk_info(batch: Batch, chunk: Chunk) -> ChunkInfo:
    """What a provider is told about the chunk it acts on."""
    return ChunkInfo(
        batch_id=batch.batch_id,
        index=chunk.index,
        first_job_index=chunk.first_job,
        provider_ref=chunk.provider_ref,
        callback_url=batch.callback_url,
        options=batch.options,
    )
