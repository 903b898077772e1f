"""Does the collect step stream? Peak memory of collect + finalize at two batch sizes, in one run.

Run it from the repository root::

    PYTHONPATH=layers/shared:local:. python -m benchmarks.collect_memory            # 1,000 and 10,000
    PYTHONPATH=layers/shared:local:. python -m benchmarks.collect_memory --sizes 2000 20000 --json
    PYTHONPATH=layers/shared:local:. python -m benchmarks.collect_memory --quick    # CI's small form

For each size, a batch of iVvy booking-session jobs (every seventh invalid) is taken through the real
engine: ``submit_batch`` sends its chunks to the iVvy simulator, which finishes them at once,
``check_batch`` records them COMPLETED, and then the measured part runs: ``collect_batch`` (in a
single invocation with time to spare, so one process handles every chunk, the worst case for memory)
and ``finalize_batch``. The peak is what :mod:`tracemalloc` saw allocated, in this process, between
the start of collect and the end of finalize. A small warm-up batch runs first, so imports and
one-time caches are not charged to the smaller size. The benchmark prints both peaks, their ratio,
and PASS or FAIL against the target: the larger batch may use at most 1.3 times the memory of the
smaller, i.e. memory does not grow with the number of outcomes.

The outside world runs in a child process: moto in server mode (S3, DynamoDB, Secrets Manager) and
the iVvy simulator, both on loopback. That matters: an in-process moto keeps every row and object the
collect step writes in this process's heap, so its growth would be the database's, not the collect
step's (``moto[server]`` is in requirements/dev.in for this).

``--quick`` (``make bench-smoke``) runs the same path at 200 and 1,000 outcomes without a warm-up: it
fails if anything breaks or an outcome goes missing, and prints the ratio without judging it (at those
sizes the fixed costs, imports among them, are most of the peak).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

TARGET_RATIO = 1.3
# The larger size is the most one batch may hold (every provider's max_jobs_per_batch is 10,000): the
# batch is accepted through the API's own logic, which refuses more.
DEFAULT_SIZES = (1_000, 10_000)
WARMUP_JOBS = 400
QUICK_SIZES = (200, 1_000)
INVALID_EVERY = 7
REGION = "us-east-1"
TABLE = "bench-batches"
BUCKET = "bench-results"
CONNECTION = "ivvy-bench"
ENOUGH_TIME = 10_000.0  # seconds: one invocation does every chunk


@dataclass(frozen=True)
class Measurement:
    jobs: int
    chunks: int
    peak_bytes: int
    collect_seconds: float
    status: str
    lines: int


# --- the outside world, in a child process --------------------------------------------------------------
def _serve_world(pipe: Connection) -> None:
    """Child process: moto's server and the iVvy simulator, until the parent says stop."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    from batchbridge_local.simulators.ivvy import IvvySimulator

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    with IvvySimulator(job_seconds=0.0) as sim:
        pipe.send(
            {
                "endpoint": f"http://{host}:{port}",
                "ivvy": sim.base_url,
                "apiKey": sim.api_key,
                "apiSecret": sim.api_secret,
            }
        )
        pipe.recv()  # any message: stop
    moto.stop()


@contextmanager
def world() -> Iterator[dict[str, str]]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_world, args=(child,), name="collect-memory-world", daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + 60
        while not parent.poll(0.2):
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the child process with moto and the iVvy simulator did not start")
        yield parent.recv()
    finally:
        with suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)


@contextmanager
def environment(endpoint: str) -> Iterator[None]:
    """Point boto3 and the package's settings at the child's moto; restore everything afterwards."""
    values = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's fake credentials
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "TABLE_NAME": TABLE,
        "BUCKET_NAME": BUCKET,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "PROVIDER_READ_TIMEOUT": "20",
    }
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    _reset_caches()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reset_caches()


def _reset_caches() -> None:
    from batchbridge import aws, connections
    from batchbridge.config import get_settings

    aws.reset()
    connections.clear_cache()
    get_settings.cache_clear()
    from batchbridge.tasks import reset_default_deps

    reset_default_deps()


def _create_resources(ivvy: dict[str, str]) -> None:
    """The table as the template defines it (indexes included, as the local stack creates it), the
    bucket, and the iVvy connection secret."""
    import boto3

    from batchbridge.config import get_settings
    from batchbridge_local import template
    from batchbridge_local.stack import create_table

    table = next(
        r["Properties"]
        for r in template.load(template.TEMPLATE)["Resources"].values()
        if r["Type"] == "AWS::DynamoDB::Table"
    )
    create_table(boto3.client("dynamodb"), TABLE, table)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    secret = {
        "provider": "ivvy",
        "baseUrl": ivvy["ivvy"],
        "credentials": {"apiKey": ivvy["apiKey"], "apiSecret": ivvy["apiSecret"]},
        "settings": {},
    }
    boto3.client("secretsmanager").create_secret(
        Name=get_settings().connection_secret_prefix + CONNECTION, SecretString=json.dumps(secret)
    )


# --- one batch ----------------------------------------------------------------------------------------
class _NoWorkflow:
    """The benchmark drives the tasks itself: starting an execution is a no-op."""

    def start(self, batch_id: str, *, cancel: bool = False) -> bool:
        return True


def _deps() -> Any:
    from dataclasses import replace

    from batchbridge.tasks import Deps

    return replace(Deps.default(), workflow=_NoWorkflow())


def _completed_batch(jobs: int) -> str:
    """A batch whose chunks iVvy has finished, ready for collect: accepted through the API's logic, then
    submitted and checked by the workflow's own tasks."""
    from batchbridge import api
    from batchbridge.models import ChunkState
    from batchbridge.tasks.check import check_batch
    from batchbridge.tasks.submit import submit_batch
    from batchbridge_local.simulators.ivvy import booking_session_jobs

    deps = _deps()
    body = {
        "provider": "ivvy",
        "connection": CONNECTION,
        "jobs": booking_session_jobs(jobs, invalid_every=INVALID_EVERY),
    }
    status, answer = api.create_batch(json.dumps(body), None, "", deps=deps)
    if status != 202:
        raise RuntimeError(f"the batch was not accepted: {answer}")
    batch_id = str(answer["batchId"])
    step = submit_batch(batch_id, lambda: ENOUGH_TIME, deps)
    while step.remaining:
        step = submit_batch(batch_id, lambda: ENOUGH_TIME, deps)
    while not check_batch(batch_id, lambda: ENOUGH_TIME, deps).done:
        time.sleep(0.05)
    states = {c.state for c in deps.repo.iter_chunks(batch_id)}
    if states != {ChunkState.COMPLETED}:
        raise RuntimeError(f"the batch's chunks are {states}, expected all COMPLETED")
    return batch_id


def measure_one(jobs: int) -> Measurement:
    """Peak traced memory of collect + finalize for a batch of ``jobs`` completed jobs."""
    from batchbridge.objects import results_key
    from batchbridge.tasks.collect import collect_batch
    from batchbridge.tasks.finalize import finalize_batch

    batch_id = _completed_batch(jobs)
    deps = _deps()
    gc.collect()
    tracemalloc.start()
    began = time.perf_counter()
    try:
        while not collect_batch(batch_id, None, lambda: ENOUGH_TIME, deps).done:
            pass
        finalize_batch(batch_id, None, deps)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - began
    batch = deps.repo.get_batch(batch_id)
    lines = sum(1 for piece in deps.objects.stream(results_key(batch_id)) for _ in range(piece.count(b"\n")))
    total = batch.counts.total if batch.counts else 0
    if total != jobs or lines != jobs:
        raise RuntimeError(f"{jobs} jobs gave counts {batch.counts} and {lines} result lines")
    return Measurement(jobs, batch.chunk_count, peak, round(seconds, 2), batch.status.value, lines)


def measure(sizes: Sequence[int], warmup: int = WARMUP_JOBS) -> list[Measurement]:
    """Run the warm-up, then each size, against one child world; returns one measurement per size."""
    with world() as outside, environment(outside["endpoint"]):
        _create_resources(outside)
        if warmup:
            measure_one(warmup)
        return [measure_one(n) for n in sizes]


# --- report -------------------------------------------------------------------------------------------
def report(results: Sequence[Measurement]) -> tuple[float, bool]:
    small, large = results[0], results[-1]
    ratio = large.peak_bytes / small.peak_bytes
    return round(ratio, 3), ratio <= TARGET_RATIO


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=DEFAULT_SIZES, metavar=("SMALL", "LARGE"))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="CI's small form: runs, not judged")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    results = measure(QUICK_SIZES, warmup=0) if args.quick else measure(args.sizes)
    ratio, passed = report(results)
    if args.quick:
        passed = True  # every outcome was checked in measure_one; the ratio is not judged at these sizes
    if args.json:
        print(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "ratio": ratio,
                    "target": TARGET_RATIO,
                    "passed": passed,
                }
            )
        )
        return 0 if passed else 1
    print("Peak memory of collect + finalize (tracemalloc, this process; moto and iVvy in a child process)")
    print(f"{'outcomes':>10} {'chunks':>7} {'peak MiB':>9} {'seconds':>8}  status")
    for r in results:
        print(
            f"{r.jobs:>10,} {r.chunks:>7} {r.peak_bytes / 2**20:>9.2f} {r.collect_seconds:>8.1f}  {r.status}"
        )
    print(f"ratio {results[-1].jobs:,} / {results[0].jobs:,}: {ratio:.3f} (target <= {TARGET_RATIO})")
    if args.quick:
        print("quick: every outcome landed; the ratio is not judged at these sizes")
    else:
        verdict = "PASS: memory does not grow" if passed else "FAIL: memory grows"
        print(f"{verdict} with batch size")
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
