"""A batch of the largest size (1,000,000 jobs) stays inside every AWS quota it meets, for every provider's
chunk size: derived from the state machine's definition, the template's timeouts and the code's limits
(batchbridge.limits), not sampled.

Where a bound needs a rate (how fast S3 is read from Lambda), the rate is a stated, conservative
assumption (:data:`S3_BYTES_PER_SECOND`); everything else is a count.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from tests.unit.test_history_bound import HISTORY_LIMIT, PAYLOAD_LIMIT, round_cap, worst_case_events

from batchbridge import cost, limits, tasks
from batchbridge.config import Settings
from batchbridge.events import sns_message
from batchbridge.models import ErrorInfo, OutcomeKind
from batchbridge.objects import PART_BYTES
from batchbridge.providers.base import all_capabilities
from batchbridge.records import Batch, Chunk, JoinState, Settlement, Upload

ROOT = Path(__file__).resolve().parents[2]
JOBS = limits.MAX_JOBS_PER_BATCH
ITEM_LIMIT = 400 * 1024  # DynamoDB's largest item
SNS_LIMIT = 256 * 1024
MULTIPART_PARTS = 10_000  # S3's most parts in one upload
#: S3 as read (or written) by one Lambda, one stream at a time: a conservative 50 MB/s.
S3_BYTES_PER_SECOND = 50 * 1000 * 1000
#: The slowest a provider's call may be before it times out: connect plus read.
PROVIDER_CALL_SECONDS = 5 + Settings.model_fields["provider_read_timeout"].default


def template_timeouts() -> dict[str, int]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506
    default = template["Globals"]["Function"]["Timeout"]
    return {
        name: resource["Properties"].get("Timeout", default)
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def chunks_at_most(jobs: int = JOBS) -> dict[str, int]:
    return {c.name: math.ceil(jobs / c.max_jobs_per_submit) for c in all_capabilities()}


def test_every_provider_takes_a_million_jobs():
    assert {c.name: c.max_jobs_per_batch for c in all_capabilities()} == dict.fromkeys(chunks_at_most(), JOBS)


def test_history_and_state_do_not_grow_with_the_batch():
    # The loops are capped in the definition, and each task works through as many chunks as its time allows:
    # the worst-case history is the same at 1,000,000 jobs as at ten.
    assert worst_case_events() < HISTORY_LIMIT
    step = tasks.Step(remaining=max(chunks_at_most().values()), wait_seconds=10**6, poll_count=10**6)
    assert len(json.dumps(step.dump())) < 200


def largest_batch(chunks: int) -> Batch:
    """A batch record with every field at its largest."""
    n = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    return Batch.model_validate(
        {
            "batchId": n,
            "status": "NEEDS_ATTENTION",
            "provider": "p" * 64,
            "connection": "c" * 64,
            "jobCount": JOBS,
            "chunkCount": chunks,
            "jobsKey": f"uploads/{n}/jobs.jsonl",
            "options": {"k": "v" * (limits.MAX_OPTIONS_BYTES - 20)},
            "clientReference": "r" * 256,
            "createdAt": "2026-11-22T06:00:00.000Z",
            "deadlineAt": 1_800_000_000,
            "pollCount": 450,
            "collectRounds": 64,
            "apiBaseUrl": "https://" + "a" * 200,
            "callbackUrl": "https://" + "a" * 200 + f"/callbacks/{n}/" + "t" * 43,
            "callbackToken": "t" * 43,
            "taskToken": "x" * 2048,
            "ambiguousChunks": list(range(chunks)) * 2,  # named twice over, as retries may
            "error": ErrorInfo(code="E" * 500, message="m" * 5000).model_dump(),
            "pollState": {
                "polls": 450,
                "first_at": 1e9,
                "first_pct": 1.0,
                "last_at": 1e9,
                "last_pct": 99.9,
                "moved_at": 1e9,
                "top_pct": 99.9,
            },
            "counts": {"total": JOBS, "succeeded": JOBS, "failed": JOBS, "notProcessed": JOBS},
            "resultsKey": f"batches/{n}/results.jsonl",
            "outcomeKeys": {k.value: f"batches/{n}/results/{k.value}.jsonl" for k in OutcomeKind},
            "usage": dict.fromkeys(cost.KEYS, 1e12),
            "cost": cost.price(dict.fromkeys(cost.KEYS, 1e12)) | {"final": True},
            "retryOf": n,
            "retries": [n] * limits.MAX_RETRIES,
            "uploadId": n,
            "join": JoinState(
                uploads={t: "u" * 200 for t in ("all", *OutcomeKind)},
                parts={t: MULTIPART_PARTS for t in ("all", *OutcomeKind)},
                next=chunks,
                tails={t: chunks for t in ("all", *OutcomeKind)},
            ).model_dump(by_alias=True),
            "eventType": "batchbridge.batch.needs_attention",
            "eventClaimedBy": "arn:aws:states:us-east-1:123456789012:execution:" + "s" * 80 + ":" + n,
        }
    )


@pytest.mark.parametrize("provider", sorted(chunks_at_most()))
def test_the_batch_record_and_its_event_stay_within_dynamodb_sns_and_step_functions_limits(
    provider, monkeypatch
):
    batch = largest_batch(chunks_at_most()[provider])
    size = cost.item_size(batch.to_item())
    assert size < ITEM_LIMIT, f"{provider}: the batch record may reach {size} bytes"
    monkeypatch.setenv("EVENT_SOURCE", "urn:batchbridge:" + "s" * 200)
    message = sns_message(batch, Settings(table_name="t", bucket_name="b" * 63))
    assert len(message["message"].encode()) < SNS_LIMIT
    state = {
        "batchId": batch.batch_id,
        "error": {"Error": "E" * 256, "Cause": "c" * 32_768},
        "final": message,
    }
    assert len(json.dumps(state).encode()) < PAYLOAD_LIMIT


def test_a_chunk_record_stays_within_dynamodbs_limit():
    chunk = Chunk(
        batch_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
        index=99_999,
        first_job=JOBS,
        job_count=1024,
        byte_start=limits.MAX_UPLOAD_BYTES,
        byte_end=limits.MAX_UPLOAD_BYTES,
        provider_ref="r" * 1000,
        provider_status="s" * limits.MAX_PROVIDER_STATUS_CHARS,
        report={"state": "COMPLETED", "detail": {"d": "x" * limits.MAX_REPORT_BYTES}},
        error=ErrorInfo(code="E" * 500, message="m" * 5000),
        settlement=Settlement(
            from_results=False,
            outcome=OutcomeKind.NOT_PROCESSED,
            error=ErrorInfo(code="E", message="m" * 5000),
        ),
    )
    assert cost.item_size(chunk.to_item()) < ITEM_LIMIT


def test_an_upload_record_stays_within_dynamodbs_limit():
    details = [{"field": "line 1000000: " + "f" * 200, "message": "m" * 300}] * 20
    upload = Upload(
        upload_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
        upload_status="INVALID",
        provider="p" * 64,
        format="jsonl",
        source_key="uploads/x/source.jsonl",
        created_at="2026-11-22T06:00:00.000Z",
        ttl=1_800_000_000,
        options={"k": "v" * limits.MAX_OPTIONS_BYTES},
        error={"code": "INVALID_FILE", "message": "m" * 300, "details": details},
    )
    assert cost.item_size(upload.to_item()) < ITEM_LIMIT


def test_an_outcome_row_stays_within_dynamodbs_limit():
    row = {
        "pk": "BATCH#" + "b" * 36,
        "sk": "OUTCOME#not_processed#00999999",
        "index": JOBS,
        "outcome": "not_processed",
        "ttl": 1_800_000_000,
        "clientRef": "c" * 256,
        "refKey": "b" * 37 + "c" * 256,
        "providerRef": "r" * 1000,
        "error": {"code": "E" * limits.MAX_ERROR_CODE_CHARS, "message": "m" * limits.MAX_ERROR_MESSAGE_CHARS},
        "response": "x" * limits.MAX_ROW_RESPONSE_BYTES,
        "detail": "d" * 100,
    }
    assert cost.item_size(row) < ITEM_LIMIT


def largest_results_bytes() -> int:
    """The results of the largest batch: every job as submitted (the jobs file is at most an upload's
    size), each job's response at its longest, and each line's own fields."""
    return limits.MAX_UPLOAD_BYTES + JOBS * (limits.MAX_RESPONSE_BYTES + 2 * 1024)


def test_every_step_that_reads_a_whole_file_fits_its_functions_timeout():
    timeouts = template_timeouts()
    margin = tasks.SAFETY_MARGIN_SECONDS
    # Submit's first call reads the jobs file once to split it (and a retry's, its source's outcome files),
    # then sends at least one chunk.
    reading = max(limits.MAX_UPLOAD_BYTES, largest_results_bytes()) / S3_BYTES_PER_SECOND
    creating = max(chunks_at_most().values()) / 8 * 0.05  # chunk items, eight at a time, 50 ms each at worst
    assert reading + creating + PROVIDER_CALL_SECONDS + margin < timeouts["SubmitBatchFunction"]
    # Finalize may have to finish a whole join (a failure path): read every outcome once, write it twice.
    joining = 3 * largest_results_bytes() / S3_BYTES_PER_SECOND
    assert joining + margin < timeouts["FinalizeBatchFunction"]
    # The validator reads an upload once and writes its jobs file, at rates well below what
    # `make bench-uploads` measures (JSON Lines: 30 MB/s and more; CSV: 2 MB/s and more).
    assert timeouts["ValidateUploadFunction"] > limits.MAX_UPLOAD_BYTES / (10 * 1000 * 1000)
    assert timeouts["ValidateUploadFunction"] > limits.MAX_CSV_UPLOAD_BYTES / (1.5 * 1000 * 1000)


def test_the_collect_loop_joins_the_largest_results_within_its_rounds_and_s3s_part_limit():
    timeouts = template_timeouts()
    per_call = (timeouts["CollectResultsFunction"] - tasks.SAFETY_MARGIN_SECONDS) * S3_BYTES_PER_SECOND / 3
    assert tasks.MAX_COLLECT_ROUNDS * per_call > largest_results_bytes()
    assert largest_results_bytes() / PART_BYTES < MULTIPART_PARTS


def test_every_loop_step_does_one_unit_past_its_budget_at_most_and_a_unit_fits_its_timeout():
    timeouts = template_timeouts()
    largest_chunk = max(c.max_jobs_per_submit for c in all_capabilities())
    unit = {
        # one chunk sent: the provider's call (the request body is at most a chunk of jobs)
        "SubmitBatchFunction": PROVIDER_CALL_SECONDS
        + largest_chunk * limits.MAX_JOB_BYTES / S3_BYTES_PER_SECOND,
        # one round of checks is cut by the budget per chunk
        "CheckStatusFunction": PROVIDER_CALL_SECONDS,
        # one chunk settled: its results read, its outcomes written (25 rows a request, 20 ms each)
        "CollectResultsFunction": PROVIDER_CALL_SECONDS
        + largest_chunk / 25 * 0.02
        + largest_chunk * (limits.MAX_JOB_BYTES + limits.MAX_RESPONSE_BYTES) * 2 / S3_BYTES_PER_SECOND,
    }
    for function, seconds in unit.items():
        assert seconds + tasks.SAFETY_MARGIN_SECONDS < timeouts[function], function
    # and a claim's lease outlives the submit function that holds it
    assert Settings.model_fields["claim_lease_seconds"].default > timeouts["SubmitBatchFunction"]


@pytest.mark.parametrize("provider", sorted(chunks_at_most()))
def test_how_fast_submits_must_answer_for_a_million_jobs_to_be_sent_within_the_round_budget(provider):
    """Not a quota (a slower provider makes the batch end TIMED_OUT, inside every quota), but the figure an
    operator needs: the mean seconds per submit call at which every chunk is sent with half the round
    budget left for polling."""
    chunks = chunks_at_most()[provider]
    per_call = template_timeouts()["SubmitBatchFunction"] - tasks.SAFETY_MARGIN_SECONDS
    rounds_for_submits = round_cap() // 2
    seconds_per_submit = per_call * rounds_for_submits / chunks
    print(f"{provider}: {chunks} chunks; sent in time if a submit answers within {seconds_per_submit:.1f} s")
    assert seconds_per_submit > 1.0
