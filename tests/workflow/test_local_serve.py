"""``batchbridge local serve`` in a subprocess, driven by the CLI in other subprocesses, as a newcomer
would on one machine: the API, uploads to S3 on loopback, download links, and a clean stop.

The newcomer's whole walk (submit a file --wait, download the failed records, fix them, retry) needs the
core's create-from-upload, outcome files and retry; its steps run here as soon as those exist."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchbridge_client import BatchBridgeClient
from batchbridge_local.simulators.ivvy import booking_session_jobs

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("serve")]

COMMAND = Path(sys.executable).parent / "batchbridge"


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    server = subprocess.Popen(  # noqa: S603 - the command this checkout installed
        [str(COMMAND), "local", "serve", "--port", "0", "--job-seconds", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 90)
        assert ready, "local serve printed no URL within 90 s"
        first = server.stdout.readline().strip()
        assert first.startswith("BATCHBRIDGE_API_URL=http://127.0.0.1:"), first
        yield first.split("=", 1)[1]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def cli(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # a newcomer has no AWS setup
    return subprocess.run(  # noqa: S603 - the command this checkout installed
        [str(COMMAND), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "BATCHBRIDGE_API_URL": url, "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"},
    )


def write_jsonl(path: Path, jobs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def test_the_served_stack_has_every_provider_and_its_connection(served):
    result = cli(served, "providers", "--json")
    assert result.returncode == 0, result.stderr
    assert {p["name"] for p in json.loads(result.stdout)} == {"ivvy", "willsuite", "superoffice", "os1"}


def test_a_file_is_uploaded_to_s3_on_loopback_and_a_refusal_names_its_line(served, tmp_path):
    bad = tmp_path / "sessions.csv"
    bad.write_text("clientRef,namespace,action,params.name\n1,venue,addOrUpdateBookingSession,A\n2,,x,B\n")
    result = cli(served, "submit", str(bad), "-p", "ivvy", "-c", "ivvy-local")
    assert result.returncode == 3
    assert result.stderr.splitlines()[0].startswith(f"{bad}:line 3: namespace: ")


def test_a_batch_is_followed_and_its_results_downloaded_from_another_process(served, tmp_path):
    jobs = booking_session_jobs(30, invalid_every=10)
    # inline, through the client library: the CLI starts batches from files only
    batch_id = BatchBridgeClient(served).create_batch("ivvy", "ivvy-local", jobs=jobs)["batchId"]
    waited = cli(served, "wait", batch_id, "--interval", "0.3")
    assert waited.returncode == 1, waited.stderr  # three invalid sessions: PARTIALLY_SUCCEEDED
    assert "27 succeeded, 3 failed" in waited.stdout
    output = tmp_path / "results.jsonl"
    assert cli(served, "results", batch_id, "--output", str(output)).returncode == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["outcome"] for line in lines).count("failed") == 3


def test_the_newcomers_walk_submit_wait_download_failed_fix_retry(served, tmp_path):
    # Serve the stack, submit a file of 2,000 sessions (20 invalid) and wait for it
    path = write_jsonl(tmp_path / "sessions.jsonl", booking_session_jobs(2000, invalid_every=100))
    started = time.monotonic()
    submitted = cli(
        served, "submit", str(path), "-p", "ivvy", "-c", "ivvy-local", "--wait", "--interval", "0.5"
    )
    assert submitted.returncode == 1, submitted.stderr  # it did not fully succeed
    batch_id = submitted.stdout.splitlines()[0]
    # Download the failed records as a jobs file, fix them, and submit them as a retry of the batch
    to_fix = tmp_path / "to-fix.jsonl"
    downloaded = cli(served, "results", batch_id, "--outcome", "failed", "--jobs", "--output", str(to_fix))
    assert downloaded.returncode == 0, downloaded.stderr
    jobs = [json.loads(line) for line in to_fix.read_text().splitlines()]
    assert len(jobs) == 20 and all(job["clientRef"] for job in jobs)
    good = booking_session_jobs(1)[0]["params"]
    fixed = write_jsonl(
        tmp_path / "fixed.jsonl", [{**job, "params": {**good, "name": job["clientRef"]}} for job in jobs]
    )
    retried = cli(
        served,
        "submit",
        str(fixed),
        "-p",
        "ivvy",
        "-c",
        "ivvy-local",
        "--retry-of",
        batch_id,
        "--wait",
        "--interval",
        "0.5",
    )
    assert retried.returncode == 0, retried.stderr
    retry_id = retried.stdout.splitlines()[0]
    status = json.loads(cli(served, "status", batch_id, "--json").stdout)
    assert status["retries"] == [retry_id]
    assert time.monotonic() - started < 300
