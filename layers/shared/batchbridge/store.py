"""Data access: the batch table (DynamoDB) and the batch objects (S3).

One table holds, under the partition ``BATCH#<id>``: the batch record (``META``), one item per chunk
(``CHUNK#<n>``) and one outcome row per job (``OUTCOME#<index>``). Idempotency keys live under
``IDEMPOTENCY#<key>``. Objects live under ``batches/<id>/`` in the bucket.

Two sparse indexes list batch records, newest first: ``ByStatus`` (``status``, ``createdAt``) and
``ByCreation`` (``kind`` = ``"batch"``, ``createdAt``). Only batch records carry ``status`` and ``kind``,
and the indexes project only fields that change when a batch starts or ends (not its progress or poll
count), so the many updates of a running batch write nothing to them.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import IO, Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError

from batchbridge import aws
from batchbridge.config import get_settings
from batchbridge.errors import BatchBridgeError, BatchNotFoundError, InvalidStateError
from batchbridge.models import BatchStatus, ChunkState, Outcome, OutcomeKind

META = "META"
BATCH_KIND = "batch"
BY_STATUS = "ByStatus"
BY_CREATION = "ByCreation"


def _pk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def chunk_sk(index: int) -> str:
    return f"CHUNK#{index:05d}"


def outcome_sk(index: int) -> str:
    return f"OUTCOME#{index:08d}"


def to_plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; give callers ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


# --- keys in S3 ------------------------------------------------------------------------------------
def request_key(batch_id: str) -> str:
    return f"batches/{batch_id}/request.json"


def chunk_jobs_key(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/chunks/{index:05d}.json"


def chunk_outcomes_key(batch_id: str, index: int) -> str:
    return f"batches/{batch_id}/outcomes/{index:05d}.jsonl"


def results_key(batch_id: str) -> str:
    return f"batches/{batch_id}/results.jsonl"


class Store:
    """Everything BatchBridge keeps, behind one small API."""

    def __init__(self, table: Any = None, s3: Any = None, bucket: str | None = None) -> None:
        settings = get_settings()
        self.table = table if table is not None else aws.table(settings.table_name)
        self.s3 = s3 if s3 is not None else aws.client("s3")
        self.bucket = bucket or settings.bucket_name
        self.outcome_ttl_seconds = settings.outcome_ttl_days * 86400

    # --- batch record ------------------------------------------------------------------------------
    def create_batch(self, record: dict[str, Any]) -> None:
        item = to_dynamo({"pk": _pk(record["batchId"]), "sk": META, "kind": BATCH_KIND, **record})
        self.table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        item = self.table.get_item(Key={"pk": _pk(batch_id), "sk": META}, ConsistentRead=True).get("Item")
        if not item:
            raise BatchNotFoundError(f"no batch {batch_id!r}")
        return dict(to_plain(item))

    def delete_batch(self, batch_id: str) -> None:
        self.table.delete_item(Key={"pk": _pk(batch_id), "sk": META})

    def update_batch(
        self,
        batch_id: str,
        *,
        set_: dict[str, Any] | None = None,
        add: dict[str, int] | None = None,
        only_if_not_terminal: bool = False,
    ) -> dict[str, Any]:
        """Update attributes of the batch record; returns the new record."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets: list[str] = []
        adds: list[str] = []
        for i, (key, value) in enumerate({**(set_ or {}), "updatedAt": now_iso()}.items()):
            names[f"#s{i}"] = key
            values[f":s{i}"] = to_dynamo(value)
            sets.append(f"#s{i} = :s{i}")
        for i, (key, value) in enumerate((add or {}).items()):
            names[f"#a{i}"] = key
            values[f":a{i}"] = value
            adds.append(f"#a{i} :a{i}")
        expression = "SET " + ", ".join(sets)
        if adds:
            expression += " ADD " + ", ".join(adds)
        condition: ConditionBase = Attr("pk").exists()
        if only_if_not_terminal:
            terminal = [s.value for s in BatchStatus if s.is_terminal]
            condition = condition & ~Attr("status").is_in(terminal)
        try:
            result = self.table.update_item(
                Key={"pk": _pk(batch_id), "sk": META},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                if only_if_not_terminal:
                    raise InvalidStateError(f"batch {batch_id} has already finished") from exc
                raise BatchNotFoundError(f"no batch {batch_id!r}") from exc
            raise
        return dict(to_plain(result["Attributes"]))

    def swap_batch_attribute(
        self, batch_id: str, *, set_name: str, set_value: Any, remove: str
    ) -> dict[str, Any]:
        """Set one attribute and remove another in one atomic write; returns the previous values."""
        result = self.table.update_item(
            Key={"pk": _pk(batch_id), "sk": META},
            UpdateExpression="SET #set = :value REMOVE #remove",
            ExpressionAttributeNames={"#set": set_name, "#remove": remove},
            ExpressionAttributeValues={":value": to_dynamo(set_value)},
            ConditionExpression=Attr("pk").exists(),
            ReturnValues="ALL_OLD",
        )
        return dict(to_plain(result.get("Attributes", {})))

    # --- chunks -------------------------------------------------------------------------------------
    def put_chunk(self, batch_id: str, chunk: dict[str, Any]) -> bool:
        """Create a chunk item unless it exists; False when it already did."""
        item = to_dynamo({"pk": _pk(batch_id), "sk": chunk_sk(chunk["index"]), **chunk})
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def list_chunks(self, batch_id: str) -> list[dict[str, Any]]:
        return list(self.iter_chunks(batch_id, page_size=None))

    def iter_chunks(self, batch_id: str, *, page_size: int | None = 25) -> Iterator[dict[str, Any]]:
        """The batch's chunk items in index order, read ``page_size`` at a time, so that a caller going
        through them one by one holds one page, whatever the chunk count (``None``: DynamoDB's 1 MB pages).
        Chunk items may be updated while this runs: pages continue from the last key read."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(batch_id)) & Key("sk").begins_with("CHUNK#"),
            "ConsistentRead": True,
        }
        if page_size is not None:
            kwargs["Limit"] = page_size
        while True:
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                yield to_plain(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def update_chunk(
        self,
        batch_id: str,
        index: int,
        values: dict[str, Any],
        *,
        expect_state: ChunkState | None = None,
    ) -> bool:
        """Set chunk attributes; with ``expect_state``, only if the chunk is in that state."""
        # Placeholders must not collide with the ones boto3's condition builder generates (#n0, :v0).
        names = {f"#c{i}": k for i, k in enumerate(values)}
        exprs = {f":c{i}": to_dynamo(v) for i, v in enumerate(values.values())}
        sets = ", ".join(f"#c{i} = :c{i}" for i in range(len(values)))
        kwargs: dict[str, Any] = {
            "Key": {"pk": _pk(batch_id), "sk": chunk_sk(index)},
            "UpdateExpression": f"SET {sets}",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": exprs,
        }
        if expect_state is not None:
            kwargs["ConditionExpression"] = Attr("state").eq(expect_state.value)
        try:
            self.table.update_item(**kwargs)
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    # --- outcomes -----------------------------------------------------------------------------------
    def write_outcome_rows(self, batch_id: str, records: Iterable[dict[str, Any]]) -> None:
        expires = int(time.time()) + self.outcome_ttl_seconds
        with self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as writer:
            for record in records:
                row = {
                    "pk": _pk(batch_id),
                    "sk": outcome_sk(record["index"]),
                    "ttl": expires,
                    **_row_fields(record),
                }
                writer.put_item(Item=to_dynamo(row))

    def query_outcomes(
        self,
        batch_id: str,
        *,
        limit: int,
        next_token: str | None = None,
        outcome: OutcomeKind | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(batch_id)) & Key("sk").begins_with("OUTCOME#"),
            "Limit": limit,
        }
        if outcome is not None:
            kwargs["FilterExpression"] = Attr("outcome").eq(outcome.value)
        if next_token:
            kwargs["ExclusiveStartKey"] = decode_token(next_token, batch_id)
        items, token = self._page(kwargs, limit)
        return [_row_to_outcome(i) for i in items], token

    def list_batches(
        self,
        *,
        limit: int,
        status: BatchStatus | None = None,
        provider: str | None = None,
        next_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Batch records, newest first, from the index that fits: ``ByStatus`` when a status is asked for,
        else ``ByCreation``; a provider narrows either. Items hold the projected fields only."""
        hash_key, hash_value = ("status", status.value) if status else ("kind", BATCH_KIND)
        kwargs: dict[str, Any] = {
            "IndexName": BY_STATUS if status else BY_CREATION,
            "KeyConditionExpression": Key(hash_key).eq(hash_value),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if provider is not None:
            kwargs["FilterExpression"] = Attr("provider").eq(provider)
        if next_token:
            kwargs["ExclusiveStartKey"] = decode_list_token(next_token, hash_key, hash_value)
        items, token = self._page(kwargs, limit)
        return [{k: v for k, v in i.items() if k not in ("pk", "sk", "kind")} for i in items], token

    def _page(self, kwargs: dict[str, Any], limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` items of a query and the token to go on from. A filter can make DynamoDB's page
        come back short: reading goes on until the page is full or the data ends."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            items.extend(to_plain(i) for i in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if last is None:
                return items, None
            if len(items) >= limit:
                return items[:limit], encode_token(last)
            kwargs["ExclusiveStartKey"] = last
            kwargs["Limit"] = limit - len(items)

    # --- objects ------------------------------------------------------------------------------------
    def put_json(self, key: str, value: Any) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def delete_object(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def put_lines(self, key: str, records: Iterable[dict[str, Any]]) -> int:
        """Stream records to a JSON Lines object through a temporary file; returns the count."""
        count = 0
        with tempfile.TemporaryFile() as spool:
            for record in records:
                spool.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
                count += 1
            self._put_spool(key, spool)
        return count

    def iter_lines(self, key: str) -> Iterator[dict[str, Any]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        for line in body.iter_lines():
            if line:
                yield json.loads(line)

    def concat_objects(self, keys: Iterable[str], target: str) -> None:
        """Join objects into one without holding them in memory."""
        with tempfile.TemporaryFile() as spool:
            for key in keys:
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
                for piece in body.iter_chunks(chunk_size=1 << 20):
                    spool.write(piece)
            self._put_spool(target, spool)

    def _put_spool(self, key: str, spool: IO[bytes]) -> None:
        """Upload a spooled JSON Lines file as one streamed PUT (a single PUT takes up to 5 GB). Not
        ``upload_fileobj``: above 8 MB it reads the file into memory in parts, up to ten at a time, so a
        100,000-outcome results file would cost some 35 MB of memory instead of a flat 2 MB."""
        spool.seek(0)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=spool, ContentType="application/x-ndjson")

    def object_exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def presigned_url(self, key: str, seconds: int) -> str:
        return str(
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
            )
        )

    # --- idempotency ----------------------------------------------------------------------------------
    def claim_idempotency_key(self, key: str, body_hash: str, batch_id: str) -> dict[str, Any] | None:
        """Record key -> batch; returns the existing record when the key was already used."""
        item = {
            "pk": f"IDEMPOTENCY#{key}",
            "sk": META,
            "batchId": batch_id,
            "bodyHash": body_hash,
            "ttl": int(time.time()) + 86400,
        }
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("pk").not_exists())
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            existing = self.table.get_item(
                Key={"pk": f"IDEMPOTENCY#{key}", "sk": META}, ConsistentRead=True
            ).get("Item")
            return dict(to_plain(existing)) if existing else {"batchId": None, "bodyHash": None}
        return None

    def release_idempotency_key(self, key: str) -> None:
        self.table.delete_item(Key={"pk": f"IDEMPOTENCY#{key}", "sk": META})


_ROW_RESPONSE_LIMIT = 4096


def _row_fields(record: dict[str, Any]) -> dict[str, Any]:
    """An outcome row keeps the response only when small; the S3 file always has it whole."""
    row = {k: v for k, v in record.items() if k != "response" and v is not None}
    if record.get("response") is not None:
        text = json.dumps(record["response"], separators=(",", ":"))
        if len(text) <= _ROW_RESPONSE_LIMIT:
            row["response"] = text
        else:
            row["responseTruncated"] = True
    return row


def _row_to_outcome(item: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in item.items() if k not in ("pk", "sk", "ttl")}
    if isinstance(out.get("response"), str):
        out["response"] = json.loads(out["response"])
    return Outcome.model_validate(out).to_record() | (
        {"responseTruncated": True} if out.get("responseTruncated") else {}
    )


def encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_token(token: str, batch_id: str) -> dict[str, Any]:
    key = _token_json(token)
    if (
        not isinstance(key, dict)
        or key.get("pk") != _pk(batch_id)
        or not str(key.get("sk", "")).startswith("OUTCOME#")
    ):
        raise BatchBridgeError("nextToken does not belong to this batch", code="INVALID_TOKEN")
    return {"pk": key["pk"], "sk": key["sk"]}


def decode_list_token(token: str, hash_key: str, hash_value: str) -> dict[str, Any]:
    """The position a batch listing token names, when it came from a listing with the same filter."""
    key = _token_json(token)
    expected = {"pk", "sk", hash_key, "createdAt"}
    if (
        not isinstance(key, dict)
        or set(key) != expected
        or not all(isinstance(v, str) for v in key.values())
        or key[hash_key] != hash_value
        or not key["pk"].startswith("BATCH#")
        or key["sk"] != META
    ):
        raise BatchBridgeError(
            "nextToken does not belong to this listing (a different status filter?)", code="INVALID_TOKEN"
        )
    return {k: key[k] for k in expected}


def _token_json(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BatchBridgeError("nextToken is not a token this API issued", code="INVALID_TOKEN") from exc


def now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
