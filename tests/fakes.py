"""In-memory stand-ins for what the workflow tasks use, so each task's rules are tested directly:
the bucket, the workflow gateway, and a provider whose every answer the test scripts. The repository's
in-memory engine is the real one (``batchbridge.repository.memory``): the rules live in its base class."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from batchbridge.config import Settings
from batchbridge.models import BatchStatus, ChunkState, Connection, Outcome, OutcomeKind
from batchbridge.objects import ObjectStore, jobs_key
from batchbridge.providers.base import Capabilities, ChunkInfo, Provider, StatusReport
from batchbridge.records import Batch
from batchbridge.repository.memory import MemoryRepository
from batchbridge.tasks import Deps

BATCH_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


class MemoryObjects(ObjectStore):
    def __init__(self) -> None:
        super().__init__("memory-bucket", client=object())
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, tuple[str, dict[int, bytes]]] = {}

    def put_bytes(self, key: str, body: bytes | IO[bytes], content_type: str = "") -> None:
        self.objects[key] = body if isinstance(body, bytes) else body.read()

    def read(self, key: str) -> bytes:
        return self.objects[key]

    def read_range(self, key: str, start: int, end: int) -> bytes:
        return self.objects[key][start:end]

    def stream(self, key: str, piece: int = 7) -> Iterator[bytes]:
        data = self.objects[key]  # small pieces, so that lines straddle them as they do in S3 streams
        for start in range(0, len(data), piece):
            yield data[start : start + piece]

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def presigned_get(self, key: str, seconds: int, filename: str | None = None) -> str:
        return f"memory://{key}?expires={seconds}"

    def writer(self, key: str) -> Any:
        return _Writer(self, key)

    def records(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.objects[key].splitlines() if line]

    def start_upload(self, key: str) -> str:
        upload_id = f"upload-{len(self.uploads)}"
        self.uploads[upload_id] = (key, {})
        return upload_id

    def upload_part(self, key: str, upload_id: str, number: int, body: IO[bytes]) -> str:
        body.seek(0)
        self.uploads[upload_id][1][number] = body.read()
        return f"etag-{number}"

    def complete_upload(self, key: str, upload_id: str, parts: int) -> None:
        if upload_id in self.uploads:
            _, sent = self.uploads.pop(upload_id)
            self.objects[key] = b"".join(sent[n] for n in range(1, parts + 1))

    def upload_open(self, key: str, upload_id: str) -> bool:
        return upload_id in self.uploads

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)


class _Writer:
    def __init__(self, store: MemoryObjects, key: str) -> None:
        self.store, self.key, self.buffer = store, key, io.BytesIO()

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def close(self) -> None:
        self.store.objects[self.key] = self.buffer.getvalue()

    def abort(self) -> None:
        self.buffer = io.BytesIO()


@dataclass
class RecordingWorkflow:
    """The workflow gateway, recording what it was asked to do."""

    started: list[tuple[str, bool]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    live_tokens: set[str] = field(default_factory=set)

    def start(self, batch_id: str, *, cancel: bool = False) -> bool:
        if (batch_id, cancel) in self.started:
            return False
        self.started.append((batch_id, cancel))
        return True

    def stop(self, batch_id: str, cause: str) -> bool:
        self.stopped.append(batch_id)
        return True

    def resume(self, task_token: str) -> bool:
        self.resumed.append(task_token)
        return True


Behaviour = Callable[..., Any]


class ScriptedProvider(Provider):
    """A provider whose answers a test scripts: each call pops the next scripted answer for that operation
    (an exception to raise, or a value; callables are called with the call's arguments), and falls back
    to a well-behaved vendor: submits answer ``ref-<chunk>``, checks say COMPLETED, results succeed."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        name="scripted",
        title="Scripted",
        max_jobs_per_submit=3,
        max_jobs_per_batch=1000,
        supports_callback=True,
        supports_cancel=True,
        min_poll_seconds=10,
        max_concurrency=2,
    )

    def __init__(self) -> None:
        super().__init__(
            Connection(name="scripted-test", provider="scripted", baseUrl="http://vendor.invalid"), None
        )  # type: ignore[arg-type]
        self.script: dict[str, list[Any]] = {}
        self.calls: list[tuple[str, int]] = []
        self.submitted: dict[int, int] = {}  # chunk index -> how many times the vendor took it
        self.found: dict[int, str] = {}  # what find_submission answers, by chunk
        self.callback_names: str | None = None

    def will(self, operation: str, *answers: Any) -> ScriptedProvider:
        self.script.setdefault(operation, []).extend(answers)
        return self

    def _answer(self, operation: str, default: Any, *args: Any) -> Any:
        queue = self.script.get(operation) or []
        if not queue:
            return default
        answer = queue.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, type) and issubclass(answer, BaseException):
            raise answer(f"scripted {operation}")
        return answer(*args) if callable(answer) else answer

    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        self.calls.append(("submit", chunk.index))
        ref = self._answer("submit", f"ref-{chunk.index}", chunk, jobs)
        self.submitted[chunk.index] = self.submitted.get(chunk.index, 0) + 1
        return str(ref)

    def check(self, chunk: ChunkInfo) -> StatusReport:
        self.calls.append(("check", chunk.index))
        done = StatusReport(state=ChunkState.COMPLETED, provider_status="done", progress=100.0)
        return self._answer("check", done, chunk)  # type: ignore[no-any-return]

    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        self.calls.append(("collect", chunk.index))
        default = [
            Outcome(index=chunk.first_job_index + i, outcome=OutcomeKind.SUCCEEDED, provider_ref=f"r{i}")
            for i in range(len(jobs))
        ]
        yield from self._answer("collect", default, chunk, jobs)

    def cancel(self, chunk: ChunkInfo) -> bool:
        self.calls.append(("cancel", chunk.index))
        return bool(self._answer("cancel", True, chunk))

    def find_submission(self, chunk: ChunkInfo) -> str | None:
        self.calls.append(("find", chunk.index))
        return self.found.get(chunk.index)

    def callback_ref(self, body: Any) -> str | None:
        return body.get("ref") if isinstance(body, dict) else None

    def took_then(self, error: BaseException) -> Behaviour:
        """A submit answer: the vendor takes the chunk, then the answer is lost as ``error``."""

        def answer(chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
            self.submitted[chunk.index] = self.submitted.get(chunk.index, 0) + 1
            raise error

        return answer

    def operations(self, name: str) -> list[int]:
        return [index for op, index in self.calls if op == name]


class Clock:
    """A clock the test moves; it starts at the real time (records carry real timestamps)."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """Everything a task test needs: the deps the task gets, and handles on each fake."""

    repo: MemoryRepository
    objects: MemoryObjects
    workflow: RecordingWorkflow
    provider: ScriptedProvider
    clock: Clock
    deps: Deps

    def batch(self, batch_id: str = BATCH_ID) -> Batch:
        return self.repo.get_batch(batch_id)

    def chunk_states(self, batch_id: str = BATCH_ID) -> list[ChunkState]:
        return [c.state for c in self.repo.iter_chunks(batch_id)]

    def outcome_lines(self, batch_id: str = BATCH_ID) -> list[dict[str, Any]]:
        return self.objects.records(f"batches/{batch_id}/results.jsonl")


def make_world(**settings: Any) -> World:
    repo, objects, workflow, provider, clock = (
        MemoryRepository(),
        MemoryObjects(),
        RecordingWorkflow(),
        ScriptedProvider(),
        Clock(),
    )
    values = {"table_name": "t", "bucket_name": "b", "claim_lease_seconds": 150.0, **settings}
    deps = Deps(
        repo=repo,
        objects=objects,
        workflow=workflow,  # type: ignore[arg-type]
        settings=Settings.model_validate(values),
        providers=lambda batch: provider,
        clock=clock,
    )
    return World(repo, objects, workflow, provider, clock, deps)


def add_batch(world: World, jobs: int = 7, *, batch_id: str = BATCH_ID, **fields: Any) -> Batch:
    """A batch of ``jobs`` jobs as the API accepts it: its jobs file and its record (ACCEPTED)."""
    lines = [json.dumps({"clientRef": f"job-{i}", "n": i}).encode() for i in range(jobs)]
    world.objects.put_bytes(jobs_key(batch_id), b"\n".join(lines) + b"\n")
    size = world.provider.capabilities.max_jobs_per_submit
    batch = Batch(
        batch_id=batch_id,
        status=BatchStatus.ACCEPTED,
        provider="scripted",
        connection="scripted-test",
        job_count=jobs,
        chunk_count=-(-jobs // size),
        jobs_key=jobs_key(batch_id),
        created_at="2027-01-15T08:00:00.000Z",
        deadline_at=int(world.clock()) + 3600,
        **fields,
    )
    world.repo.create_batch(batch)
    return batch
