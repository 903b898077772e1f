"""Worst-case execution history and state size, derived from the real state machine definition.

Step Functions Standard ends an execution that exceeds 25,000 history events, and refuses state larger
than 256 KiB. The bound below is computed, not sampled: it reads the definition's states, their Retry
policies and the round caps in its Choice states, and the providers' declared limits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from batchbridge import tasks
from batchbridge.events import sns_message
from batchbridge.providers.base import all_capabilities
from batchbridge.records import Batch

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "batch.asl.json").read_text())
STATES: dict[str, Any] = ASL["States"]
HISTORY_LIMIT = 25_000
PAYLOAD_LIMIT = 256 * 1024
# Events Step Functions records per visit of a state, by kind (entered + exited, plus the task's own).
LAMBDA_TASK = 5  # TaskStateEntered, LambdaFunctionScheduled, Started, Succeeded, TaskStateExited
TOKEN_TASK = 6  # TaskStateEntered, TaskScheduled, TaskStarted, TaskSubmitted, TaskSucceeded/TimedOut, Exited
SERVICE_TASK = 5  # TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited
PER_FAILED_ATTEMPT = 3  # ...Scheduled, ...Started, ...Failed for each attempt the Retry repeats
PASS_THROUGH = 2  # Choice and Wait: entered + exited


def visit_events(name: str) -> int:
    """The most events one visit of a state can record, counting every retry its Retry allows."""
    state = STATES[name]
    if state["Type"] != "Task":
        return PASS_THROUGH
    base = (
        TOKEN_TASK
        if state["Resource"].endswith(".waitForTaskToken")
        else (LAMBDA_TASK if state["Resource"].startswith("${") else SERVICE_TASK)
    )
    retries = sum(r.get("MaxAttempts", 3) for r in state.get("Retry", []))
    return base + retries * PER_FAILED_ATTEMPT


def round_cap() -> int:
    caps = {
        c["NumericGreaterThanEquals"]
        for s in STATES.values()
        if s["Type"] == "Choice"
        for c in s["Choices"]
        if c.get("Variable") == "$.step.pollCount"
    }
    assert len(caps) == 1, "both loops must share one round cap"
    return caps.pop()


def collect_cap() -> int:
    caps = {
        c["NumericGreaterThanEquals"]
        for c in STATES["All Results Collected?"]["Choices"]
        if c.get("Variable") == "$.step.collectRounds"
    }
    assert len(caps) == 1, "the collect loop must have one cap"
    return caps.pop()


def max_chunks() -> int:
    return max(math.ceil(c.max_jobs_per_batch / c.max_jobs_per_submit) for c in all_capabilities())


def worst_case_events() -> int:
    rounds = round_cap()
    # One round: a submit attempt or a status check, with its Choice and its (callback or plain) wait.
    submit_round = (
        visit_events("Submit Jobs To Provider")
        + visit_events("All Chunks Submitted?")
        + max(visit_events("Wait Until Provider Is Ready"), visit_events("Wait For Callback Or Next Poll"))
    )
    poll_round = (
        visit_events("Check Batch Status")
        + visit_events("Batch Finished?")
        + max(visit_events("Wait For Provider"), visit_events("Wait For Callback Or Next Poll"))
    )
    loops = rounds * max(submit_round, poll_round)
    # Collecting is capped in the definition itself (the engine stops a little before), each round perhaps
    # waiting for a submit in flight.
    collect = collect_cap() * (
        visit_events("Collect Results")
        + visit_events("All Results Collected?")
        + visit_events("Wait For In-Flight Submit")
    )
    tail = sum(
        visit_events(n)
        for n in (
            "Cancel Requested?",
            "Finalize Batch",
            "Record Unexpected Failure",
            "Read Finished Batch",
            "Build Failure Event",
            "Encode Failure Event",
            "Claim Completion Event",
            "Publish Completion Event",
            "Batch Succeeded?",
        )
    )
    execution = 2 + 2  # ExecutionStarted and the ending event, and the Succeed/Fail state
    return loops + collect + tail + execution


def test_the_python_round_budget_ends_the_loop_before_the_definitions_backstop():
    assert round_cap() > tasks.MAX_ROUNDS
    assert collect_cap() == tasks.COLLECT_ROUND_CAP > tasks.MAX_COLLECT_ROUNDS


def test_every_loop_is_guarded_by_the_round_cap_or_by_progress():
    # The wait loops leave through the round cap, the collect loop through its own.
    for name in ("All Chunks Submitted?", "Batch Finished?"):
        nexts = [c["Next"] for c in STATES[name]["Choices"] if c.get("Variable") == "$.step.pollCount"]
        assert nexts == ["Collect Results"], name
    first = STATES["All Results Collected?"]["Choices"][0]
    assert (first["Variable"], first["Next"]) == ("$.step.collectRounds", "Finalize Batch")


def test_worst_case_history_stays_under_the_limit_at_maximum_deadline_and_batch_size():
    worst = worst_case_events()
    print(f"worst case: {worst} events, {round_cap()} rounds, {max_chunks()} chunks")
    assert worst < HISTORY_LIMIT
    # The cap, not the deadline, bounds the loop: even the longest deadline at the shortest poll
    # interval is cut off by it, so this bound holds at the maximum deadline.
    longest = max(c.max_deadline_seconds / c.min_poll_seconds for c in all_capabilities())
    assert longest > round_cap()


def largest_batch_record() -> Batch:
    return Batch.model_validate(
        {
            "batchId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "status": "PARTIALLY_SUCCEEDED",
            "provider": "p" * 64,
            "connection": "c" * 64,
            "jobCount": 1_000_000,
            "chunkCount": 5_000,
            "jobsKey": "batches/7c9e6679-7425-40de-944b-e07fc1f90ae7/jobs.jsonl",
            "deadlineAt": 1_800_000_000,
            "clientReference": "r" * 256,
            "retryOf": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "counts": {"total": 1_000_000, "succeeded": 999_999, "failed": 1, "notProcessed": 0},
            "resultsKey": "batches/7c9e6679-7425-40de-944b-e07fc1f90ae7/results.jsonl",
            "outcomeKeys": {
                k: f"batches/7c9e6679-7425-40de-944b-e07fc1f90ae7/results/{k}.jsonl"
                for k in ("succeeded", "failed", "not_processed")
            },
            "createdAt": "2026-11-22T06:00:00.000Z",
            "finishedAt": "2026-11-24T02:00:00.000Z",
            "durationSeconds": 158400.0,
            "pollCount": 500,
            "error": {"code": "E" * 200, "message": "m" * 1000},
        }
    )


def test_largest_state_stays_under_the_payload_limit(monkeypatch):
    monkeypatch.setenv("TABLE_NAME", "batches")
    monkeypatch.setenv("BUCKET_NAME", "b" * 63)
    monkeypatch.setenv("EVENT_SOURCE", "urn:batchbridge:" + "s" * 200)
    from batchbridge.config import get_settings

    get_settings.cache_clear()
    # The state carries ids, the last step's small result, the caught error and the final event.
    caught_error = {"Error": "E" * 256, "Cause": "c" * 32_768}  # Step Functions' own caps on a caught error
    step = tasks.Step(
        remaining=max_chunks(),
        wait_seconds=10**6,
        done=False,
        poll_count=10**6,
        collect_rounds=10**6,
        callback=True,
    )
    state = {
        "batchId": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "error": caught_error,
        "cancel": False,
        "step": step.dump(),
        "final": sns_message(largest_batch_record(), get_settings()),
    }
    size = len(json.dumps(state).encode())
    get_settings.cache_clear()
    print(f"largest state: {size} bytes")
    assert size < PAYLOAD_LIMIT
