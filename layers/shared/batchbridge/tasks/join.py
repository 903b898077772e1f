"""Joining the chunks' outcome objects into the results files, a time budget at a time.

``results.jsonl`` holds every outcome, chunk by chunk; ``results/<kind>.jsonl`` those of one kind. Each is
a multipart upload fed from the chunk objects in index order: a line goes to the results file and to the
file of its kind, told apart by its first bytes (each begins ``{"outcome":"<kind>"``), so no line is
parsed. A part goes up whenever a file has gathered :data:`PART_BYTES`; what is left over when an
invocation's time runs short is kept as a small "tail" object, and where the join stands (the next chunk,
the parts each file has, the tails) is saved on the batch record. The next invocation picks up there: a
million outcomes are joined in as many invocations as their size needs, and an invocation that stopped
part-way is repeated exactly (parts are re-sent under the same numbers, which S3 overwrites).
"""

from __future__ import annotations

import tempfile
from typing import IO

from batchbridge.models import OutcomeKind
from batchbridge.objects import PART_BYTES, chunk_outcomes_key, outcome_file_key, results_key
from batchbridge.records import Batch, JoinState
from batchbridge.tasks import SAFETY_MARGIN_SECONDS, Deps, TimeLeft

_PREFIXES = {kind.value: f'{{"outcome":"{kind.value}"'.encode() for kind in OutcomeKind}
ALL = "all"


def targets(batch_id: str) -> dict[str, str]:
    """Each file the join writes: ``all`` and one per outcome kind, by its key."""
    return {ALL: results_key(batch_id)} | {k: outcome_file_key(batch_id, k) for k in _PREFIXES}


def tail_key(batch_id: str, target: str, at: int) -> str:
    return f"batches/{batch_id}/join/{target}.{at:05d}.tail"


def join(deps: Deps, batch: Batch, time_left: TimeLeft) -> bool:
    """Join as much as the time allows (at least one chunk); True once every file is complete."""
    if batch.join is not None and batch.join.done:
        return True
    objects, batch_id = deps.objects, batch.batch_id
    keys = targets(batch_id)
    state = batch.join
    if state is None:
        uploads = {name: objects.start_upload(key) for name, key in keys.items()}
        state = JoinState(uploads=uploads, parts=dict.fromkeys(keys, 0))
        saved = deps.repo.save_join(batch_id, state, previous=None)
        if saved is None:  # another invocation started the join first: abort ours, carry on with theirs
            for name, upload_id in uploads.items():
                objects.abort_upload(keys[name], upload_id)
            return join(deps, deps.repo.get_batch(batch_id), time_left)
        state = saved
    buffers: dict[str, IO[bytes]] = {name: tempfile.TemporaryFile() for name in keys}  # noqa: SIM115
    try:
        for name, at in state.tails.items():
            buffers[name].write(deps.objects.read(tail_key(batch_id, name, at)))
        parts = dict(state.parts)
        index = state.next
        while index < batch.chunk_count and (index == state.next or time_left() > SAFETY_MARGIN_SECONDS):
            data = deps.objects.read(chunk_outcomes_key(batch_id, index))
            buffers[ALL].write(data)
            for line in data.splitlines(keepends=True):
                for kind, prefix in _PREFIXES.items():
                    if line.startswith(prefix):
                        buffers[kind].write(line)
                        break
            index += 1
            for name, buffer in buffers.items():
                if buffer.tell() >= PART_BYTES:
                    parts[name] += 1
                    objects.upload_part(keys[name], state.uploads[name], parts[name], buffer)
                    buffers[name] = tempfile.TemporaryFile()  # noqa: SIM115
        if index >= batch.chunk_count:
            _complete(deps, batch_id, keys, state, parts, buffers)
            return True
        tails = {}
        for name, buffer in buffers.items():
            if buffer.tell():
                buffer.seek(0)
                deps.objects.put_bytes(tail_key(batch_id, name, index), buffer.read())
                tails[name] = index
        moved = deps.repo.save_join(
            batch_id, JoinState(uploads=state.uploads, parts=parts, next=index, tails=tails), previous=state
        )
        for name, at in state.tails.items():  # the tails this invocation read are no longer needed
            if moved is not None:
                deps.objects.delete(tail_key(batch_id, name, at))
        return False
    finally:
        for buffer in buffers.values():
            buffer.close()


def _complete(
    deps: Deps,
    batch_id: str,
    keys: dict[str, str],
    state: JoinState,
    parts: dict[str, int],
    buffers: dict[str, IO[bytes]],
) -> None:
    """Send each file's last part (or, for a file with no part yet, the whole file in one PUT) and
    complete the uploads; repeating this after a stop part-way through completes what is left."""
    objects = deps.objects
    for name, key in keys.items():
        buffer = buffers[name]
        if not objects.upload_open(key, state.uploads[name]):
            continue  # completed by an attempt that stopped before it could say so
        if parts[name] == 0:
            buffer.seek(0)
            objects.put_bytes(key, buffer)
            objects.abort_upload(key, state.uploads[name])
            continue
        if buffer.tell():
            parts[name] += 1
            objects.upload_part(key, state.uploads[name], parts[name], buffer)
        objects.complete_upload(key, state.uploads[name], parts[name])
    done = JoinState(uploads=state.uploads, parts=parts, next=state.next, done=True)
    deps.repo.save_join(batch_id, done, previous=state)
    for name, at in state.tails.items():
        deps.objects.delete(tail_key(batch_id, name, at))
