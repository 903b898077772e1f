"""CPU per record of collecting a chunk, against the least any collector must do with the same records.

    python -m benchmarks.collect_cpu            # iVvy (200 jobs a chunk) and OS1 (1,024 a chunk)
    python -m benchmarks.collect_cpu --quick    # the small form CI runs

What is timed is what a collect call does for one finished chunk, with real clients throughout: the
adapter asks the vendor (its simulator on loopback) for the chunk's results and turns them into outcomes
(``Provider.collect``), the exactly-once guard, the two encodings of each outcome (a results line with
the job beside it, a table row), and the writes through the real boto3 clients (the table's rows by
``BatchWriteItem``, the chunk's object by ``PutObject``) whose transport is stubbed: botocore builds,
serialises and signs every request, and an answer comes back without a network. The clock is this
thread's CPU time (``time.thread_time``), so the simulator's own work, in its threads, is not counted.

The baseline, measured in the same run on the same records, is ``json.loads`` of each record's vendor
JSON plus ``json.dumps`` of the outcome: reading a record and writing it once. Target: at most 3x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TARGET_RATIO = 3.0


@contextmanager
def stubbed_aws() -> Iterator[tuple[Any, Any]]:
    """Real boto3 DynamoDB and S3 clients whose requests are built, serialised and signed, then answered
    at once without a network."""
    import boto3
    from botocore.awsrequest import AWSResponse

    from batchbridge import aws

    class Raw:
        def __init__(self, body: bytes) -> None:
            self._body = body

        def stream(self, **kwargs: Any) -> Iterator[bytes]:
            yield self._body

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        if "dynamodb" in request.url:
            body = b'{"UnprocessedItems":{}}'
            headers = {"Content-Type": "application/x-amz-json-1.0"}
        else:
            body = b""
            headers = {"ETag": '"etag"'}
        return AWSResponse(request.url, 200, headers, Raw(body))

    session = boto3.session.Session(
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - a stub: nothing is sent
        region_name="us-east-1",
    )
    # configured as the functions' own clients are (aws.client, aws.bulk_client)
    dynamodb = session.client("dynamodb", config=aws.CLIENT_CONFIG)
    bulk = session.client("dynamodb", config=aws.CLIENT_CONFIG.merge(aws.BULK_CONFIG))
    bulk.meta.events.register("before-call.dynamodb", aws._use_prepared_body)  # as aws.bulk_client does
    s3 = session.client("s3", config=aws.CLIENT_CONFIG)
    for client in (dynamodb, bulk, s3):
        client.meta.events.register("before-send", answer)
    yield dynamodb, s3, bulk


def finished_chunk(provider_name: str) -> tuple[Any, Any, list[Any], Any, Any]:
    """The provider, the chunk, its jobs, its last status report, and the running simulator."""
    import httpx

    from batchbridge.models import ChunkState, Connection
    from batchbridge.providers.base import ChunkInfo, provider_class
    from batchbridge.tasks.outcomes import Job

    if provider_name == "ivvy":
        from batchbridge_local.simulators.ivvy import IvvySimulator, booking_session_jobs

        sim: Any = IvvySimulator(job_seconds=0.05).start()
        connection = Connection(
            name="bench",
            provider="ivvy",
            baseUrl=sim.base_url,
            credentials={"apiKey": sim.api_key, "apiSecret": sim.api_secret},
        )
        values = booking_session_jobs(200, invalid_every=7)
        options: dict[str, Any] = {}
    else:
        from batchbridge_local.simulators.os1 import OS1Simulator

        sim = OS1Simulator(batch_seconds=0.05).start()
        connection = Connection(
            name="bench",
            provider="os1",
            baseUrl=sim.base_url,
            credentials={
                "clientId": sim.client_id,
                "clientSecret": sim.client_secret,
                "originToken": sim.origin_token,
            },
            settings={"tenantId": sim.tenant_id},
        )
        values = [
            {"clientRef": f"d-{i}", "uniqueCode": f"DRV-{i:05d}", "name": f"Driver {i}"} for i in range(1024)
        ]
        options = {"participantType": "drivers"}
    cls = provider_class(provider_name)
    provider = cls(connection, httpx.Client(timeout=30))
    info = ChunkInfo(
        batch_id="7c9e6679-7425-40de-944b-e07fc1f90ae7", index=0, first_job_index=0, options=options
    )
    info.provider_ref = provider.submit(info, values)
    while (report := provider.check(info)).state is ChunkState.RUNNING:
        time.sleep(0.05)
    jobs = [
        Job(index=i, line=json.dumps(v, separators=(",", ":")).encode(), value=v)
        for i, v in enumerate(values)
    ]
    return provider, info, jobs, report, sim


def measure(provider_name: str, repeats: int) -> dict[str, Any]:
    from batchbridge.models import Counts
    from batchbridge.objects import ObjectStore
    from batchbridge.repository.dynamo import DynamoRepository
    from batchbridge.tasks.outcomes import encode, exactly_once

    provider, info, jobs, report, sim = finished_chunk(provider_name)
    try:
        with stubbed_aws() as (dynamodb, s3, bulk):
            repo = DynamoRepository("bench", table=object(), client=dynamodb, bulk=bulk)
            objects = ObjectStore("bench-bucket", client=s3)
            values = [j.value for j in jobs]
            collect_times, base_times = [], []
            for _ in range(repeats):
                started = time.thread_time()
                outcomes = exactly_once(provider.collect(info, values, report), jobs)
                data, rows = encode(outcomes, jobs, Counts())
                objects.put_bytes("batches/x/outcomes/00000.jsonl", data)
                repo.write_outcomes(info.batch_id, rows, expires_at=1_900_000_000)
                collect_times.append((time.thread_time() - started) / len(jobs))
                # the baseline: the same records read once and written once
                texts = [
                    json.dumps(o.response if o.response is not None else {"index": o.index}) for o in outcomes
                ]
                started = time.thread_time()
                for text, outcome in zip(texts, outcomes, strict=True):
                    json.dumps(
                        {
                            "index": outcome.index,
                            "outcome": outcome.outcome.value,
                            "response": json.loads(text),
                        }
                    )
                base_times.append((time.thread_time() - started) / len(jobs))
    finally:
        sim.stop()
    per_record = statistics.median(collect_times)
    baseline = statistics.median(base_times)
    return {
        "provider": provider_name,
        "jobsPerChunk": len(jobs),
        "collectMicrosPerRecord": round(per_record * 1e6, 2),
        "baselineMicrosPerRecord": round(baseline * 1e6, 2),
        "ratio": round(per_record / baseline, 2),
        "target": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few repeats (CI)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [measure(p, 5 if args.quick else 30) for p in ("ivvy", "os1")]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("| provider | jobs per chunk | collect µs/record | baseline µs/record | ratio | target |")
        print("|---|--:|--:|--:|--:|--:|")
        for r in results:
            print(
                f"| {r['provider']} | {r['jobsPerChunk']} | {r['collectMicrosPerRecord']} "
                f"| {r['baselineMicrosPerRecord']} | {r['ratio']}x | ≤ {r['target']}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
