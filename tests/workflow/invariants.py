"""BatchBridge's promises about one finished batch, checked in one place: the fault matrix runs this after
every cell, and any workflow test can call it.

:func:`check_invariants` returns what is broken (an empty list when every promise holds), so a caller can
show all of it at once:

1. **A terminal status that never changes again** -- read when every execution of the batch (its run and
   a cancel run) has ended, and again a few seconds later: the same status, finish time and counts, in the
   API's answer and in the table.
2. **Exactly one completion event**, valid against ``schemas/completion-event.v1.json``, carrying the four
   SNS attributes (provider, status, eventType, connection) with the batch's values.
3. **One outcome per job**: in ``results.jsonl``, in the per-kind files and in the table's outcome rows,
   every index once, its ``clientRef`` the submitted job's, the same outcome everywhere, and the counts
   the batch reports equal to them. ``AMBIGUOUS_SUBMIT`` only on jobs of a chunk the batch names as
   ambiguous.
4. **The vendor's side agrees** (when the simulator's view is given): every submission the vendor accepted
   holds exactly one chunk's jobs; a chunk with a recorded reference was accepted exactly once, under that
   reference; a chunk without one, not at all, unless the batch names it as ambiguous (then at most once);
   a job reported succeeded is one the vendor processed, with the reference the vendor gave it.
5. **No secret anywhere**: no credential or issued token, in clear, base64 or base64url (or as an HTTP
   Basic pair), in the execution histories, the API's answers, the batch's objects and items, its event,
   or the given handler logs.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import jsonschema
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from tests.workflow.helpers import SCHEMA

TERMINAL = {"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "NEEDS_ATTENTION"}
ATTRIBUTES = ("provider", "status", "eventType", "connection")
KINDS = ("succeeded", "failed", "not_processed")
COUNT_FIELDS = {"succeeded": "succeeded", "failed": "failed", "not_processed": "notProcessed"}


@dataclass
class VendorView:
    """What a simulator says it received: each submission it accepted (its reference and the indexes of
    the batch's jobs it held), and the reference it gave each job it processed successfully."""

    submissions: list[tuple[str, list[int]]]
    job_refs: dict[int, str] = field(default_factory=dict)


@dataclass
class Secrets:
    """Credential values (label -> value) and (id, secret) pairs a client may send as HTTP Basic auth."""

    values: dict[str, str] = field(default_factory=dict)
    basic_pairs: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, value: str) -> str:
        self.values[label] = value
        return value

    def forms(self) -> dict[str, str]:
        """Every encoding a leak could take, by label."""
        forms: dict[str, str] = {}
        for label, value in self.values.items():
            if len(value) < 8:  # too short to search for without matching by chance
                continue
            forms[label] = value
            forms[f"{label} (base64)"] = base64.b64encode(value.encode()).decode()
            forms[f"{label} (base64url)"] = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
        for client_id, secret in self.basic_pairs:
            forms[f"basic auth of {client_id[:12]}…"] = base64.b64encode(
                f"{client_id}:{secret}".encode()
            ).decode()
        return forms


def executions(stack: Any, batch_id: str) -> list[dict[str, Any]]:
    """The batch's executions that exist: its run and, after a cancel, its cancel run."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    base = stack.state_machine_arn.replace(":stateMachine:", ":execution:")
    found = []
    for name in (batch_id, f"{batch_id}-cancel"):
        try:
            found.append(dict(sfn.describe_execution(executionArn=f"{base}:{name}")))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
                raise
    return found


def wait_until_finished(stack: Any, batch_id: str, timeout: float = 240.0, interval: float = 0.5) -> None:
    """Until the batch is terminal in the table and none of its executions runs (cheap reads only)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if stack.repo.get_batch(batch_id).status.value in TERMINAL and all(
            e["status"] != "RUNNING" for e in executions(stack, batch_id)
        ):
            return
        time.sleep(interval)
    raise TimeoutError(f"batch {batch_id} did not finish within {timeout:.0f}s")


def events_of(stack: Any, batch_id: str, wait: float) -> list[dict[str, Any]]:
    """The completion events a subscriber received for the batch, waiting up to ``wait`` for the first."""
    end = time.monotonic() + wait
    while True:
        found = stack.received_events(batch_id)
        if found or time.monotonic() >= end:
            return found
        time.sleep(0.5)


def _lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _s3_objects(stack: Any, batch_id: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name="us-east-1")
    objects: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.bucket_name, Prefix=f"batches/{batch_id}/"
    ):
        for obj in page.get("Contents", []):
            objects[obj["Key"]] = s3.get_object(Bucket=stack.bucket_name, Key=obj["Key"])["Body"].read()
    return objects


def _items(stack: Any, batch_id: str) -> list[dict[str, Any]]:
    """Every item of the batch in the table (its record, chunks and outcome rows), every page of them."""
    pages = (
        boto3.client("dynamodb", region_name="us-east-1")
        .get_paginator("query")
        .paginate(
            TableName=stack.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"BATCH#{batch_id}"}},
        )
    )
    read = TypeDeserializer().deserialize
    return [{name: read(value) for name, value in item.items()} for page in pages for item in page["Items"]]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else json.dumps(value, default=str)


def check_invariants(
    stack: Any,
    batch_id: str,
    jobs: list[dict[str, Any]],
    *,
    vendor: VendorView | None = None,
    secrets: Secrets | None = None,
    logs: Iterable[str] = (),
    settle_seconds: float = 3.0,
) -> list[str]:
    """Everything broken about a batch that is finishing or has finished (see the module doc); ``[]``
    when every promise holds. Waits for its executions to end first. ``logs`` are the handler log lines
    to search for secrets (the caller picks those that concern this batch)."""
    problems: list[str] = []
    wait_until_finished(stack, batch_id)

    # 1. terminal, and it stays so
    first_view = stack.batch(batch_id)
    first_record = stack.repo.get_batch(batch_id)
    time.sleep(settle_seconds)
    if any(e["status"] == "RUNNING" for e in executions(stack, batch_id)):
        problems.append("an execution of the batch started again after it had finished")
    view = stack.batch(batch_id)
    record = stack.repo.get_batch(batch_id)
    status = view["status"]
    if status not in TERMINAL:
        problems.append(f"status {status} is not terminal after every execution ended")
    for label, before, after in (
        ("status", first_view["status"], status),
        ("finishedAt", first_view.get("finishedAt"), view.get("finishedAt")),
        ("counts", first_view.get("counts"), view.get("counts")),
        ("recorded status", first_record.status.value, record.status.value),
    ):
        if before != after:
            problems.append(f"{label} changed after the batch finished: {before!r} -> {after!r}")
    if record.status.value != status:
        problems.append(f"the API says {status} but the table says {record.status.value}")

    # 2. exactly one event, valid, with the four attributes
    events = events_of(stack, batch_id, wait=15)
    if len(events) != 1:
        problems.append(f"{len(events)} completion events were published, not one")
    for received in events:
        try:
            jsonschema.validate(received["event"], SCHEMA)
        except jsonschema.ValidationError as exc:
            problems.append(f"the event does not match the schema: {exc.message}")
        wanted = {
            "provider": record.provider,
            "status": status,
            "eventType": f"batchbridge.batch.{status.lower()}",
            "connection": record.connection,
        }
        if received["attributes"] != wanted:
            problems.append(f"event attributes {received['attributes']} are not {wanted}")
        if received["event"].get("data", {}).get("status") != status:
            problems.append(f"the event says {received['event'].get('data', {}).get('status')}, not {status}")

    # 3. one outcome per job, the same in every place
    objects = _s3_objects(stack, batch_id)
    items = _items(stack, batch_id)
    chunks = sorted((i for i in items if str(i["sk"]).startswith("CHUNK#")), key=lambda i: int(i["index"]))
    n = len(jobs)
    kinds_by_place: dict[str, dict[int, str]] = {}
    results = objects.get(f"batches/{batch_id}/results.jsonl")
    if results is None:
        problems.append("no results.jsonl")
        lines: list[dict[str, Any]] = []
    else:
        lines = _lines(results)
    kinds_by_place["results.jsonl"] = _one_per_job("results.jsonl", lines, jobs, problems)
    for line in lines:
        index = line.get("index")
        if isinstance(index, int) and 0 <= index < n and line.get("job") != jobs[index]:
            problems.append(f"results.jsonl: the job beside outcome {index} is not the job submitted")
            break
    by_kind: list[dict[str, Any]] = []
    for kind in KINDS:
        body = objects.get(f"batches/{batch_id}/results/{kind}.jsonl")
        if body is None:
            problems.append(f"no results/{kind}.jsonl")
            continue
        for line in _lines(body):
            if line.get("outcome") != kind:
                problems.append(
                    f"results/{kind}.jsonl holds a {line.get('outcome')} outcome ({line.get('index')})"
                )
            by_kind.append(line)
    kinds_by_place["results/<kind>.jsonl"] = _one_per_job("the per-kind files", by_kind, jobs, problems)
    rows = [
        {"index": int(i["index"]), "clientRef": i.get("clientRef"), "outcome": i.get("outcome")}
        for i in items
        if str(i["sk"]).startswith("OUTCOME#")
    ]
    kinds_by_place["table"] = _one_per_job("the outcome rows", rows, jobs, problems)
    reference = kinds_by_place["results.jsonl"]
    for place, kinds in kinds_by_place.items():
        differ = sorted(i for i in reference if kinds.get(i) not in (None, reference[i]))
        if differ:
            problems.append(f"{place} gives other outcomes than results.jsonl for jobs {differ[:10]}")
    counted = Counter(reference.values())
    counts = view.get("counts") or {}
    for kind, name in COUNT_FIELDS.items():
        if counts.get(name) != counted.get(kind, 0):
            problems.append(f"counts.{name} is {counts.get(name)} but {counted.get(kind, 0)} jobs are {kind}")
    if counts.get("total") != n:
        problems.append(f"counts.total is {counts.get('total')}, not the {n} jobs submitted")
    ambiguous = set(record.ambiguous_chunks)
    spans = {int(c["index"]): (int(c["firstJob"]), int(c["jobCount"])) for c in chunks}
    if sum(count for _, count in spans.values()) != n:
        problems.append(f"the chunks hold {sum(c for _, c in spans.values())} jobs, not {n}")

    def chunk_of(index: int) -> int | None:
        return next((c for c, (first, count) in spans.items() if first <= index < first + count), None)

    wrongly_ambiguous = sorted(
        {
            chunk_of(line["index"])
            for line in lines
            if (line.get("error") or {}).get("code") == "AMBIGUOUS_SUBMIT"
            and chunk_of(line["index"]) not in ambiguous
        },
        key=lambda c: -1 if c is None else c,
    )
    if wrongly_ambiguous:
        problems.append(
            f"jobs of chunks {wrongly_ambiguous} say AMBIGUOUS_SUBMIT, but the batch names only "
            f"{sorted(ambiguous)} as ambiguous"
        )

    # 4. the vendor's side
    if vendor is not None:
        problems += _vendor_agrees(vendor, chunks, spans, ambiguous, lines)

    # 5. no secret anywhere
    if secrets is not None:
        haystacks: list[tuple[str, str]] = []
        for execution in executions(stack, batch_id):
            name = execution["name"]
            haystacks.append((f"execution {name}", _text(execution)))
            haystacks.append((f"history of {name}", _text(stack.execution_history(name))))
        for path, query in (
            (f"/batches/{batch_id}", None),
            (f"/batches/{batch_id}/results", None),
            (f"/batches/{batch_id}/results", {"format": "file"}),
        ):
            answer = stack.api("GET", path, query=query)
            haystacks.append((f"GET {path} {query or ''}", _text(answer)))
        haystacks += [(f"s3://{key}", _text(body)) for key, body in objects.items()]
        haystacks += [(f"item {item['sk']}", _text(item)) for item in items]
        haystacks += [("the completion event", _text(e)) for e in events]
        haystacks.append(("the handler logs", "\n".join(logs)))
        forms = secrets.forms()
        problems += [
            f"{label} in {where}"
            for where, text in haystacks
            for label, form in forms.items()
            if form in text
        ]
    return problems


def _one_per_job(
    place: str, lines: list[dict[str, Any]], jobs: list[dict[str, Any]], problems: list[str]
) -> dict[int, str]:
    """index -> outcome kind, noting every index missing, repeated, out of range or credited to another
    job's clientRef."""
    found: dict[int, str] = {}
    repeated: list[int] = []
    foreign: list[int] = []
    for line in lines:
        index = line.get("index")
        if not isinstance(index, int) or not 0 <= index < len(jobs):
            foreign.append(index)  # type: ignore[arg-type]
            continue
        if index in found:
            repeated.append(index)
        found[index] = str(line.get("outcome"))
        if line.get("clientRef") != jobs[index].get("clientRef"):
            problems.append(
                f"{place}: outcome {index} names clientRef {line.get('clientRef')!r}, "
                f"not {jobs[index].get('clientRef')!r}"
            )
    missing = [i for i in range(len(jobs)) if i not in found]
    if missing:
        problems.append(f"{place}: no outcome for {len(missing)} jobs ({missing[:10]})")
    if repeated:
        problems.append(f"{place}: more than one outcome for jobs {repeated[:10]}")
    if foreign:
        problems.append(f"{place}: outcomes for indexes no job has ({foreign[:10]})")
    return found


def _vendor_agrees(
    vendor: VendorView,
    chunks: list[dict[str, Any]],
    spans: Mapping[int, tuple[int, int]],
    ambiguous: set[int],
    lines: list[dict[str, Any]],
) -> list[str]:
    problems: list[str] = []
    held: dict[int, list[str]] = {c: [] for c in spans}
    for ref, indexes in vendor.submissions:
        match = [
            c for c, (first, count) in spans.items() if sorted(indexes) == list(range(first, first + count))
        ]
        if not match:
            problems.append(f"the vendor accepted submission {ref} holding jobs that are no one chunk's")
            continue
        held[match[0]].append(ref)
    for chunk in chunks:
        index = int(chunk["index"])
        refs = held.get(index, [])
        recorded = chunk.get("providerRef")
        if len(refs) > 1:
            problems.append(f"chunk {index} was submitted {len(refs)} times ({refs})")
        elif recorded is not None:
            if not refs:
                problems.append(f"chunk {index} has reference {recorded!r}, but the vendor never accepted it")
            elif refs[0] != recorded:
                problems.append(
                    f"chunk {index} has reference {recorded!r}, but the vendor accepted it as {refs[0]!r}"
                )
        elif refs and index not in ambiguous:
            problems.append(
                f"the vendor accepted chunk {index} as {refs[0]!r}, but the batch has no reference for it "
                "and does not name it as ambiguous"
            )
    taken = {i for c, (first, count) in spans.items() if held.get(c) for i in range(first, first + count)}
    never: list[int] = []
    miscredited: list[str] = []
    for line in lines:
        if line.get("outcome") != "succeeded":
            continue
        index = line["index"]
        if index not in taken:
            never.append(index)
        elif index in vendor.job_refs and str(line.get("providerRef")) != vendor.job_refs[index]:
            miscredited.append(
                f"{index}: {line.get('providerRef')!r}, the vendor's {vendor.job_refs[index]!r}"
            )
    if never:
        problems.append(
            f"{len(never)} jobs are reported succeeded that the vendor never received ({never[:10]})"
        )
    if miscredited:
        problems.append(
            f"{len(miscredited)} jobs carry a reference the vendor did not give them ({miscredited[:5]})"
        )
    return problems
