"""CPU of accepting a large inline batch, against parsing its body once.

    python -m benchmarks.post_speed            # 10,000 iVvy jobs
    python -m benchmarks.post_speed --quick    # the small form CI runs

What is timed is :func:`batchbridge.api.create_batch` for a body of 10,000 iVvy booking sessions: reading
the body, validating each job against the provider's model, writing the jobs file's lines, hashing the
request for its Idempotency-Key, and handing the lines to storage (an in-memory repository and an S3
client whose transport is stubbed, so the figure is the API's own work; the connection's secret, read
once per container and cached, is not in it). The baseline, timed in the same run on the same body, is
``json.loads`` of it. Target: at most 2x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

TARGET_RATIO = 2.0


class _NoWorkflow:
    def start(self, batch_id: str, *, cancel: bool = False) -> bool:
        return True


def measure(jobs: int, repeats: int) -> dict[str, Any]:
    import boto3
    from botocore.awsrequest import AWSResponse

    from batchbridge import api
    from batchbridge.config import Settings
    from batchbridge.objects import ObjectStore
    from batchbridge.repository.memory import MemoryRepository
    from batchbridge.tasks import Deps
    from batchbridge_local.simulators.ivvy import booking_session_jobs

    class Raw:
        def stream(self, **kwargs: Any) -> Any:
            yield b""

    session = boto3.session.Session(
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - a stub: nothing is sent
        region_name="us-east-1",
    )
    s3 = session.client("s3")
    s3.meta.events.register(
        "before-send", lambda request, **kw: AWSResponse(request.url, 200, {"ETag": '"e"'}, Raw())
    )
    body = json.dumps({"provider": "ivvy", "connection": "bench", "jobs": booking_session_jobs(jobs)})
    base = Deps(
        repo=MemoryRepository(),
        objects=ObjectStore("bench", client=s3),
        workflow=_NoWorkflow(),  # type: ignore[arg-type]
        settings=Settings(table_name="t", bucket_name="b"),
    )
    api._check_connection = lambda name, provider: None  # type: ignore[assignment]
    accept, parse = [], []
    for n in range(repeats):
        deps = replace(base, repo=MemoryRepository())
        started = time.thread_time()
        status, _ = api.create_batch(body, f"key-{n}", "", deps=deps)
        accept.append(time.thread_time() - started)
        assert status == 202
        started = time.thread_time()
        json.loads(body)
        parse.append(time.thread_time() - started)
    took, baseline = statistics.median(accept), statistics.median(parse)
    return {
        "jobs": jobs,
        "bodyBytes": len(body.encode()),
        "acceptMs": round(took * 1000, 1),
        "jsonLoadsMs": round(baseline * 1000, 1),
        "ratio": round(took / baseline, 2),
        "target": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(10_000, 3 if args.quick else 15)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("| jobs | body | create_batch | json.loads | ratio | target |")
        print("|--:|--:|--:|--:|--:|--:|")
        print(
            f"| {result['jobs']:,} | {result['bodyBytes'] / 1e6:.1f} MB | {result['acceptMs']} ms "
            f"| {result['jsonLoadsMs']} ms | {result['ratio']}x | ≤ {result['target']}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
