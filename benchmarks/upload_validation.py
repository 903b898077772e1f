"""How fast does an uploaded file validate, and does its memory stay flat?

Run it from the repository root::

    PYTHONPATH=layers/shared:local:. python -m benchmarks.upload_validation               # 100,000 lines
    PYTHONPATH=layers/shared:local:. python -m benchmarks.upload_validation --lines 1000000 --json

A file of iVvy booking-session jobs (JSON Lines, and the same jobs as CSV) is made in memory and fed to
:class:`batchbridge.uploads.FileCheck` in 1 MiB chunks, as the validator reads S3. The baseline, timed in
the same run on the same lines, is the least any reader must do: ``json.loads`` of every line. The
benchmark prints lines per second for both, their ratio, the time 1,000,000 lines would take at that rate,
and the peak memory (tracemalloc) of validating the file against a file a tenth its size (at least 50,000
lines, so that both are many chunks long): memory is flat when the ratio stays under 1.3. S3 transfer
is not in these figures (the validator reads and writes at S3's pace, some 100 MB/s or more from Lambda).

The largest batch a provider declares is lifted for the run, so that the whole file is checked.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import sys
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

from batchbridge.providers.base import Capabilities, provider_class
from batchbridge.uploads import CHUNK_BYTES, FileCheck
from batchbridge_local.simulators.ivvy import booking_session_jobs

TARGET_MEMORY_RATIO = 1.3
LAMBDA_SECONDS = 900
# The smaller file the peak is compared with: long enough (several 1 MiB chunks) to be in steady state.
SMALL_LINES = 50_000


def chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]


def make_files(lines: int) -> tuple[bytes, bytes]:
    jobs = booking_session_jobs(lines)
    jsonl = b"".join(json.dumps(job, separators=(",", ":")).encode() + b"\n" for job in jobs)
    columns = ["clientRef", "namespace", "action", *(f"params.{key}" for key in jobs[0]["params"])]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for job in jobs:
        params = job["params"]
        writer.writerow(
            [job["clientRef"], job["namespace"], job["action"]]
            + [json.dumps(v) if isinstance(v, str) and v.isdigit() else v for v in params.values()]
        )
    return jsonl, text.getvalue().encode()


def validate(fmt: str, data: bytes) -> tuple[float, int]:
    check = FileCheck(provider_class("ivvy"), fmt, max_jobs=10**9)
    started = time.perf_counter()
    written = sum(1 for _ in check.run(chunks(data)))
    seconds = time.perf_counter() - started
    assert not check.problems, check.error
    return seconds, written


def baseline(data: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(1 for line in data.split(b"\n") if line and json.loads(line) is not None)
    return time.perf_counter() - started, count


def peak(fmt: str, data: bytes) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        validate(fmt, data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(lines: int) -> dict[str, Any]:
    cls = provider_class("ivvy")
    cls.capabilities = Capabilities.model_validate(
        {**cls.capabilities.model_dump(), "max_jobs_per_batch": 10**9}
    )
    jsonl, csv_data = make_files(lines)
    small_jsonl, small_csv = make_files(min(lines, max(SMALL_LINES, lines // 10)))
    validate("jsonl", small_jsonl)  # warm-up: imports, pydantic's first validations
    base_seconds, count = baseline(jsonl)
    report: dict[str, Any] = {
        "smallerLines": min(lines, max(SMALL_LINES, lines // 10)),
        "lines": lines,
        "jsonlBytes": len(jsonl),
        "baselineLinesPerSecond": count / base_seconds,
    }
    for fmt, data, small in (("jsonl", jsonl, small_jsonl), ("csv", csv_data, small_csv)):
        seconds, written = validate(fmt, data)
        assert written == lines
        rate = lines / seconds
        large, little = peak(fmt, data), peak(fmt, small)
        report[fmt] = {
            "seconds": round(seconds, 3),
            "linesPerSecond": round(rate),
            "slowerThanJsonLoads": round(base_seconds and seconds / base_seconds, 2),
            "millionLinesSeconds": round(1_000_000 / rate, 1),
            "peakBytes": large,
            "peakBytesSmallerFile": little,
            "memoryRatio": round(large / little, 2),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    report = run(args.lines)
    if args.json:
        print(json.dumps(report, indent=2))
    ok = True
    print(
        f"{report['lines']:,} lines ({report['jsonlBytes'] / 2**20:.1f} MiB as JSON Lines); "
        f"json.loads alone: {report['baselineLinesPerSecond']:,.0f} lines/s"
    )
    for fmt in ("jsonl", "csv"):
        r = report[fmt]
        flat = r["memoryRatio"] <= TARGET_MEMORY_RATIO
        fits = r["millionLinesSeconds"] < LAMBDA_SECONDS / 5
        ok = ok and flat and fits
        print(
            f"  {fmt:<5} {r['linesPerSecond']:>9,} lines/s = {r['slowerThanJsonLoads']:.2f} x json.loads; "
            f"1,000,000 lines in {r['millionLinesSeconds']:.0f} s (a Lambda has {LAMBDA_SECONDS}); "
            f"peak {r['peakBytes'] / 2**20:.1f} MiB vs {r['peakBytesSmallerFile'] / 2**20:.1f} MiB for "
            f"{report['smallerLines']:,} lines (ratio {r['memoryRatio']:.2f}, "
            f"target <= {TARGET_MEMORY_RATIO}) "
            f"{'PASS' if flat and fits else 'FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
