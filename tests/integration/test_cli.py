"""The batchbridge command against the local stack's API on loopback: with click's CliRunner, and as an
installed command in a subprocess. Exit codes: 0 done, 1 the batch did not succeed, 3 refused or an API
error; every error is one line naming the file, the line and the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchbridge_client.cli import main
from batchbridge_local.simulators.ivvy import booking_session_jobs

pytestmark = pytest.mark.xdist_group("stack")

COMMANDS = [
    "submit",
    "status",
    "wait",
    "list",
    "results",
    "retry",
    "cancel",
    "providers",
    "local",
    "local serve",
]


def run(stack: Any, *args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(
        main, ["--api-url", stack.api_url, *args], catch_exceptions=False
    )


def write_jsonl(path: Path, jobs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def finished_batch(stack: Any, connection: str, jobs: list[Any]) -> str:
    status, accepted = stack.api(
        "POST", "/batches", {"provider": "ivvy", "connection": connection, "jobs": jobs}
    )
    assert status == 202, accepted
    stack.wait_for_batch(accepted["batchId"], timeout=60)
    return str(accepted["batchId"])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_providers(stack):
    result = run(stack, "providers", "--json")
    assert result.exit_code == 0, result.stderr
    assert {p["name"] for p in json.loads(result.stdout)} == {"ivvy", "os1", "superoffice", "willsuite"}


def test_a_refused_file_is_one_line_per_problem_and_exit_3(stack, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("clientRef,namespace,action\n1,venue,addOrUpdateBookingSession\n2,venue\n3,batch,x\n")
    result = run(stack, "submit", str(path), "-p", "ivvy", "-c", "ivvy-test")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        f"{path}:line 3: the row has 2 cells; the header has 3",
        f"{path}:line 4: namespace: Value error, a batch job cannot call iVvy's own batch namespace",
        f"error: {path} was refused (2 problem(s) above)",
    ]


def test_status_wait_list_and_results_of_a_finished_batch(stack, ivvy, ivvy_connection, tmp_path):
    jobs = booking_session_jobs(4)
    jobs[3]["params"]["name"] = ""
    batch_id = finished_batch(stack, ivvy_connection, jobs)

    status = run(stack, "status", batch_id)
    assert status.exit_code == 0 and "PARTIALLY_SUCCEEDED" in status.stdout
    assert json.loads(run(stack, "status", batch_id, "--json").stdout)["batchId"] == batch_id

    waited = run(stack, "wait", batch_id, "--interval", "0.1")
    assert waited.exit_code == 1  # it ended, but not SUCCEEDED
    assert f"batch {batch_id} PARTIALLY_SUCCEEDED: 3 succeeded, 1 failed, 0 not processed" in waited.stdout

    listed = run(stack, "list", "--status", "PARTIALLY_SUCCEEDED", "--limit", "100", "--json")
    assert batch_id in [json.loads(line)["batchId"] for line in listed.stdout.splitlines()]

    output = tmp_path / "all.jsonl"
    downloaded = run(stack, "results", batch_id, "--output", str(output))
    assert downloaded.exit_code == 0 and "4 outcome(s) written" in downloaded.stderr
    assert len(output.read_text().splitlines()) == 4
    to_stdout = run(stack, "results", batch_id)
    assert sorted(json.loads(line)["index"] for line in to_stdout.stdout.splitlines()) == [0, 1, 2, 3]

    refused = run(stack, "cancel", batch_id)
    assert refused.exit_code == 3
    assert refused.stderr.startswith("error: BATCH_FINISHED: ")

    failed = run(
        stack, "results", batch_id, "--outcome", "failed", "--output", str(tmp_path / "failed.jsonl")
    )
    assert failed.exit_code == 0, failed.stderr


def test_a_succeeded_batch_waits_with_exit_0(stack, ivvy, ivvy_connection):
    batch_id = finished_batch(stack, ivvy_connection, booking_session_jobs(2))
    assert run(stack, "wait", batch_id).exit_code == 0


def test_usage_errors_and_a_missing_api_url(stack, tmp_path, monkeypatch):
    monkeypatch.delenv("BATCHBRIDGE_API_URL", raising=False)
    result = CliRunner(mix_stderr=False).invoke(main, ["providers"])
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        "error: no API URL: pass --api-url, set BATCHBRIDGE_API_URL, or name the stack with --stack"
    )
    assert run(stack, "retry", "x", "--outcomes", "failed,lost").exit_code == 2
    assert run(stack, "submit", str(tmp_path / "missing.jsonl"), "-p", "ivvy", "-c", "c").exit_code == 2
    bad_options = run(
        stack,
        "submit",
        str(write_jsonl(tmp_path / "a.jsonl", [])),
        "-p",
        "os1",
        "-c",
        "c",
        "--options",
        "[1]",
    )
    assert bad_options.exit_code == 2 and "must be a JSON object" in bad_options.stderr
    wrong = run(stack, "submit", str(write_jsonl(tmp_path / "a.xlsx", [])), "-p", "ivvy", "-c", "c")
    assert wrong.exit_code == 3 and "cannot tell the format" in wrong.stderr


def test_the_installed_command_runs_in_a_subprocess(stack, tmp_path):
    command = Path(sys.executable).parent / "batchbridge"
    env = {**os.environ, "BATCHBRIDGE_API_URL": stack.api_url}
    result = subprocess.run(  # noqa: S603 - the command this checkout installed
        [str(command), "providers", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 4
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"namespace": "venue", "action": "a", "params": []}])
    result = subprocess.run(  # noqa: S603 - the command this checkout installed
        [str(command), "submit", str(bad), "-p", "ivvy", "-c", "ivvy-test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.splitlines()[0] == f"{bad}:line 1: params: Input should be an object"


def test_submit_wait_runs_a_file_to_its_end(stack, ivvy, ivvy_connection, tmp_path):
    path = write_jsonl(tmp_path / "jobs.jsonl", booking_session_jobs(300, invalid_every=10))
    result = run(
        stack, "submit", str(path), "-p", "ivvy", "-c", ivvy_connection, "--wait", "--interval", "0.3"
    )
    assert result.exit_code == 1, result.stderr  # 30 jobs fail: PARTIALLY_SUCCEEDED
    assert "270 succeeded, 30 failed" in result.stdout


def test_retry_runs_the_failed_jobs_again(stack, ivvy, ivvy_connection):
    jobs = booking_session_jobs(3)
    jobs[0]["params"]["name"] = ""
    batch_id = finished_batch(stack, ivvy_connection, jobs)
    result = run(stack, "retry", batch_id, "--wait", "--interval", "0.2")
    assert "retrying 1 job(s)" in result.stderr
