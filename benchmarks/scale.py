"""Real-sized batches from a file, end to end on the local stack: time per phase, peak memory, outcomes
recorded, and what each batch cost on AWS per 1,000 jobs, by service.

    python -m benchmarks.scale                      # 1,000, 10,000 and 100,000 iVvy jobs (several minutes)
    python -m benchmarks.scale --sizes 2000 --json  # the small form CI runs

Each size is a JSON Lines file of iVvy booking sessions (every seventh invalid, so iVvy refuses it) that
the client uploads through a pre-signed URL (S3 on loopback); the validator checks it; the batch starts
from the upload and runs the real state machine against the iVvy simulator. Phases are read off the
batch's own timestamps and the client's clock: upload (client: PUT the file), validation (complete to
VALID), submit (created to RUNNING), provider (RUNNING to COLLECTING: iVvy running the jobs, the workflow
polling), collect (COLLECTING to the end: outcomes written, results joined, event published).

Checked, not only printed: every job has exactly one outcome in the results file and one row in the
table, and the failures are the ones iVvy was given. Cost is the batch's own report (see
batchbridge.cost), whose transitions tests/workflow/test_cost.py holds equal to the execution history;
the baseline is a batch of the smallest size measured in the same run, so the printed ratio says how the
cost per job changes with size. Peak memory is this process's (the whole local stack: moto, the handlers,
the simulator), as the high-water mark of its resident set.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_SIZES = (1_000, 10_000, 100_000)
INVALID_EVERY = 7


def _run(stack: Any, sim: Any, client: Any, jobs: int, folder: Path) -> dict[str, Any]:
    from batchbridge_local.simulators.ivvy import booking_session_jobs, expected_code

    sample = booking_session_jobs(jobs, invalid_every=INVALID_EVERY)
    failed = sum(1 for job in sample if expected_code(job) is not None)
    path = folder / f"jobs-{jobs}.jsonl"
    path.write_text("".join(json.dumps(job, separators=(",", ":")) + "\n" for job in sample))
    del sample
    began = time.monotonic()
    upload = client.upload_file(path, "ivvy")
    uploaded = time.monotonic()
    accepted = client.start_from_upload(
        upload["uploadId"], "ivvy", "ivvy-bench", client_reference=f"bench-{jobs}"
    )
    batch_id = accepted["batchId"]
    seen: dict[str, float] = {}

    def note(view: dict[str, Any]) -> None:
        seen.setdefault(view["status"], time.monotonic())

    view = stack.wait_for_batch(batch_id, timeout=3600, on_poll=note)
    ended = time.monotonic()
    lines = stack.result_lines(batch_id)
    rows = stack.outcome_rows(batch_id)
    indexes = sorted(line["index"] for line in lines)
    if indexes != list(range(jobs)) or sorted(int(r["index"]) for r in rows) != list(range(jobs)):
        raise RuntimeError(f"{jobs} jobs: outcomes are not one per job")
    if view["counts"]["failed"] != failed:
        raise RuntimeError(f"{jobs} jobs: {view['counts']['failed']} failed, iVvy refused {failed}")
    running = seen.get("RUNNING", seen.get("COLLECTING", ended))
    collecting = seen.get("COLLECTING", ended)
    cost = view["cost"]
    return {
        "jobs": jobs,
        "chunks": view["chunkCount"],
        "status": view["status"],
        "outcomes": len(lines),
        "phases": {
            "upload": round(uploaded - began, 2),  # PUT, complete, and validation
            "submit": round(running - uploaded, 2),
            "provider": round(collecting - running, 2),
            "collect": round(ended - collecting, 2),
        },
        "totalSeconds": round(ended - began, 2),
        "peakRssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "costUsd": cost["totalUsd"],
        "costPer1000JobsUsd": round(cost["totalUsd"] * 1000 / jobs, 6),
        "byServicePer1000JobsUsd": {k: round(v * 1000 / jobs, 7) for k, v in cost["byServiceUsd"].items()},
        "dominant": max(cost["byServiceUsd"].items(), key=lambda kv: kv[1])[0],
        "usage": cost["usage"],
    }


def measure(sizes: list[int], job_seconds: float) -> list[dict[str, Any]]:
    from batchbridge_client import BatchBridgeClient
    from batchbridge_local.simulators.ivvy import IvvySimulator
    from batchbridge_local.stack import LocalStack

    with IvvySimulator(job_seconds=job_seconds) as sim, LocalStack(serve_s3=True) as stack:
        stack.add_connection(
            "ivvy-bench", "ivvy", sim.base_url, {"apiKey": sim.api_key, "apiSecret": sim.api_secret}
        )
        client = BatchBridgeClient(stack.api_url)
        with tempfile.TemporaryDirectory() as folder:
            return [_run(stack, sim, client, n, Path(folder)) for n in sizes]


def report(results: list[dict[str, Any]]) -> str:
    base = results[0]["costPer1000JobsUsd"] or 1e-12
    out = [
        "| jobs | chunks | upload + validation | submit | provider | collect | total | peak RSS "
        "| $ per 1,000 jobs | vs smallest | dominant |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        p = r["phases"]
        out.append(
            f"| {r['jobs']:,} | {r['chunks']} | {p['upload']} s | {p['submit']} s | {p['provider']} s "
            f"| {p['collect']} s "
            f"| {r['totalSeconds']} s | {r['peakRssMiB']} MiB | {r['costPer1000JobsUsd']:.5f} "
            f"| {r['costPer1000JobsUsd'] / base:.2f}x | {r['dominant']} |"
        )
    out.append("")
    out.append("$ per 1,000 jobs by service:")
    for r in results:
        parts = ", ".join(f"{k} {v:.5f}" for k, v in r["byServicePer1000JobsUsd"].items())
        out.append(f"  {r['jobs']:,} jobs: {parts}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_SIZES))
    parser.add_argument("--job-seconds", type=float, default=2.0, help="how long iVvy takes per chunk")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    results = measure(args.sizes, args.job_seconds)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
