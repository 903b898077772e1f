"""The repository on DynamoDB: the lifecycle's writes as condition and update expressions.

Batch and chunk items go through the resource layer (they are few); outcome rows, which are many, are
written with the low-level client from attribute values built directly, so a row costs no more than its
own encoding (the resource layer's type walk costs several times the row's JSON).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from batchbridge import aws, cost
from batchbridge.errors import BatchNotFoundError, InvalidTokenError
from batchbridge.models import BatchStatus, ErrorInfo
from batchbridge.records import Batch, dynamo, plain
from batchbridge.repository import META, Expect, ListQuery, OutcomeRow, Repository, Write, pk

BY_STATUS = "ByStatus"
BY_CREATION = "ByCreation"
BY_REFERENCE = "ByReference"
BY_CLIENT_REF = "ByClientRef"
BATCH_KIND = "batch"
_ROW_BATCH = 25  # BatchWriteItem's limit
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_SERIALIZE = TypeSerializer().serialize


def _is_conditional(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Expressions:
    """Placeholders for one request's expressions (names ``#n0``, values ``:v0``)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, path: str) -> str:
        parts = []
        for part in path.split("."):
            key = next((k for k, v in self.names.items() if v == part), None)
            if key is None:
                key = f"#n{len(self.names)}"
                self.names[key] = part
            parts.append(key)
        return ".".join(parts)

    def value(self, value: Any) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = dynamo(value)
        return key

    def condition(self, expect: Sequence[Expect]) -> str:
        out = []
        for e in expect:
            n = self.name(e.attribute)
            if e.op == "present":
                out.append(f"attribute_exists({n})")
            elif e.op == "absent":
                out.append(f"attribute_not_exists({n})")
            elif e.op == "in":
                out.append(f"{n} IN ({', '.join(self.value(v) for v in e.values)})")
            elif e.op == "in_or_absent":
                values = ", ".join(self.value(v) for v in e.values)
                out.append(f"(attribute_not_exists({n}) OR {n} IN ({values}))")
            elif e.op == "not_in":
                out.append(f"NOT ({n} IN ({', '.join(self.value(v) for v in e.values)}))")
            elif e.op == "not_true":
                out.append(f"(attribute_not_exists({n}) OR {n} <> {self.value(True)})")
            elif e.op == "below_or_absent":
                out.append(f"(attribute_not_exists({n}) OR {n} < {self.value(e.values[0])})")
            else:  # pragma: no cover - Op is a closed Literal
                raise ValueError(e.op)
        return " AND ".join(out)

    def update(self, write: Write) -> str:
        sets = []
        removes = [self.name(r) for r in write.remove]
        for key, value in write.set.items():
            if value is None:
                removes.append(self.name(key))
            else:
                sets.append(f"{self.name(key)} = {self.value(value)}")
        for key, items in write.append.items():
            n = self.name(key)
            sets.append(f"{n} = list_append(if_not_exists({n}, {self.value([])}), {self.value(items)})")
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(sets))
        if write.add:
            clauses.append(
                "ADD " + ", ".join(f"{self.name(k)} {self.value(v)}" for k, v in write.add.items())
            )
        if removes:
            clauses.append("REMOVE " + ", ".join(removes))
        return " ".join(clauses)

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


class DynamoRepository(Repository):
    def __init__(self, table_name: str, *, table: Any = None, client: Any = None, bulk: Any = None) -> None:
        self.table_name = table_name
        self._table = table
        self._client = client
        self._bulk = bulk

    @property
    def table(self) -> Any:
        return self._table if self._table is not None else aws.table(self.table_name)

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else aws.client("dynamodb")

    # --- primitives --------------------------------------------------------------------------------
    def _get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"pk": key[0], "sk": key[1]}, ConsistentRead=True).get("Item")
        cost.dynamodb(reads=cost.read_units(cost.item_size(item or {}), consistent=True), operation="GetItem")
        return dict(plain(item)) if item else None

    def _put_new(self, key: tuple[str, str], item: dict[str, Any]) -> bool:
        full = dynamo({**item, "pk": key[0], "sk": key[1]})
        cost.dynamodb(writes=cost.write_units(cost.item_size(full)), operation="PutItem")
        try:
            self.table.put_item(Item=full, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if _is_conditional(exc):
                return False
            raise
        return True

    def _delete(self, key: tuple[str, str]) -> None:
        cost.dynamodb(writes=1, operation="DeleteItem")
        self.table.delete_item(Key={"pk": key[0], "sk": key[1]})

    def _apply(self, write: Write) -> dict[str, Any] | None:
        ex = Expressions()
        condition = ex.condition(write.expect)
        update = ex.update(write)
        try:
            result = self.table.update_item(
                Key={"pk": write.key[0], "sk": write.key[1]},
                UpdateExpression=update,
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                **ex.kwargs(),
            )
        except ClientError as exc:
            if _is_conditional(exc):
                cost.dynamodb(writes=1, operation="UpdateItem")  # a refused write costs at least one unit
                return None
            raise
        cost.dynamodb(writes=cost.write_units(cost.item_size(result["Attributes"])), operation="UpdateItem")
        return dict(plain(result["Attributes"]))

    def _swap(self, batch_id: str, *, set: dict[str, Any], remove: tuple[str, ...]) -> Batch:
        ex = Expressions()
        write = Write(key=(pk(batch_id), META), expect=(), set=set, remove=remove)
        try:
            result = self.table.update_item(
                Key={"pk": pk(batch_id), "sk": META},
                UpdateExpression=ex.update(write),
                ConditionExpression=ex.condition([Expect("pk", "present")]),
                ReturnValues="ALL_OLD",
                **ex.kwargs(),
            )
        except ClientError as exc:
            if _is_conditional(exc):
                raise BatchNotFoundError(f"no batch {batch_id!r}") from exc
            raise
        before = result.get("Attributes", {})
        cost.dynamodb(writes=cost.write_units(cost.item_size(before)), operation="UpdateItem")
        return Batch.from_item(before)

    def _transact(
        self, *, checks: list[tuple[tuple[str, str], tuple[Expect, ...]]], write: Write
    ) -> bool | Literal["check", "write"]:
        items: list[dict[str, Any]] = []
        for key, expect in checks:
            ex = Expressions()
            condition = ex.condition(expect)
            items.append({"ConditionCheck": {**self._low_level(key, ex), "ConditionExpression": condition}})
        ex = Expressions()
        condition = ex.condition(write.expect)
        update = ex.update(write)
        items.append(
            {
                "Update": {
                    **self._low_level(write.key, ex),
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                }
            }
        )
        # Each item of a transaction costs twice its units; the items are not returned, so each is taken
        # at its smallest (a batch record over 1 KB costs a little more than is counted).
        cost.dynamodb(
            writes=cost.write_units(0, transactional=True) * len(items), operation="TransactWriteItems"
        )
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            codes = [r.get("Code") for r in reasons]
            if any(c == "ConditionalCheckFailed" for c in codes[: len(checks)]):
                return "check"
            if codes and codes[-1] == "ConditionalCheckFailed":
                return "write"
            if not codes:  # some implementations leave the reasons out: tell them apart by reading
                return "write"
            raise
        return True

    def _low_level(self, key: tuple[str, str], ex: Expressions) -> dict[str, Any]:
        out: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            "ExpressionAttributeNames": ex.names,
        }
        if ex.values:
            out["ExpressionAttributeValues"] = {k: _SERIALIZE(v) for k, v in ex.values.items()}
        return out

    def _query(self, partition: str, prefix: str, *, start: str, page_size: int) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":p": partition, ":a": max(start, prefix), ":b": prefix + "\uffff"},
            "ConsistentRead": True,
            "Limit": page_size,
        }
        while True:
            page = self.table.query(**kwargs)
            _count_page(page, consistent=True)
            for item in page.get("Items", []):
                yield dict(plain(item))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- outcome rows ---------------------------------------------------------------------------------
    def _write_rows(self, batch_id: str, rows: Sequence[OutcomeRow], expires_at: int) -> None:
        """Outcome rows, 25 to a BatchWriteItem, each request's JSON written here directly from the rows
        (DynamoDB's attribute-value form, every string escaped once)."""
        from batchbridge.repository import outcome_sk

        head = f'{{"pk":{{"S":{_json(pk(batch_id))}}},"ttl":{{"N":"{expires_at}"}},'
        ref_prefix = batch_id + "#"
        items: list[str] = []
        units = 0.0
        for row in rows:
            parts = [
                head,
                f'"sk":{{"S":"{outcome_sk(row.outcome, row.index)}"}},"index":{{"N":"{row.index}"}},',
                f'"outcome":{{"S":"{row.outcome}"}}',
            ]
            if row.client_ref is not None:
                ref = _json(row.client_ref)
                parts.append(
                    f',"clientRef":{{"S":{ref}}},"refKey":{{"S":{_json(ref_prefix + row.client_ref)}}}'
                )
            if row.provider_ref is not None:
                parts.append(f',"providerRef":{{"S":{_json(row.provider_ref)}}}')
            if row.error is not None:
                code, message = _json(row.error.code), _json(row.error.message)
                parts.append(f',"error":{{"M":{{"code":{{"S":{code}}},"message":{{"S":{message}}}}}}}')
            if row.response is not None:
                parts.append(f',"response":{{"S":{_json(row.response)}}}')
            if row.response_truncated:
                parts.append(',"responseTruncated":{"BOOL":true}')
            if row.detail is not None:
                parts.append(f',"detail":{{"S":{_json(row.detail)}}}')
            parts.append("}")
            items.append("".join(parts))
            units += _row_units(row)
        cost.dynamodb(writes=units, operation="BatchWriteItem")
        table = _json(self.table_name)
        for start in range(0, len(items), _ROW_BATCH):
            requests = ",".join(
                '{"PutRequest":{"Item":' + item + "}}" for item in items[start : start + _ROW_BATCH]
            )
            body = f'{{"RequestItems":{{{table}:[{requests}]}}}}'.encode()
            self._batch_write_all(body)

    def _batch_write_all(self, body: bytes) -> None:
        """One BatchWriteItem, repeating what DynamoDB left unprocessed (throttling) with a short backoff;
        the SDK's own retries cover whole-call errors."""
        client = self._bulk if self._bulk is not None else aws.bulk_client("dynamodb")
        for attempt in range(8):
            answer = aws.send_prepared(client, "batch_write_item", body, RequestItems={})
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            body = json.dumps({"RequestItems": pending}, separators=(",", ":")).encode()
            time.sleep(min(1.0, 0.05 * 2**attempt))
        raise RuntimeError(f"DynamoDB left outcome rows unwritten: {len(pending.get(self.table_name, []))}")

    def _rows(
        self, partition: str, prefix: str, *, limit: int, after: str | None
    ) -> tuple[list[OutcomeRow], str | None]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
            "ExpressionAttributeValues": {":p": partition, ":s": prefix},
            "Limit": limit,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"pk": partition, "sk": after}
        page = self.table.query(**kwargs)
        _count_page(page, consistent=False)
        rows = [_row(plain(i)) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return rows, (str(last["sk"]) if last else None)

    def _rows_by_ref(self, batch_id: str, client_ref: str) -> list[OutcomeRow]:
        page = self.table.query(
            IndexName=BY_CLIENT_REF,
            KeyConditionExpression="refKey = :r",
            ExpressionAttributeValues={":r": f"{batch_id}#{client_ref}"},
            Limit=100,
        )
        _count_page(page, consistent=False)
        return sorted((_row(plain(i)) for i in page.get("Items", [])), key=lambda r: r.index)

    # --- listing -------------------------------------------------------------------------------------
    def list_batches(
        self, query: ListQuery, *, limit: int, token: str | None
    ) -> tuple[list[Batch], str | None]:
        """Newest first from the index that fits: ``ByReference`` for a client reference, ``ByStatus`` per
        status (several are merged), else ``ByCreation``; a provider narrows any of them."""
        if query.client_reference is not None:
            streams = [(BY_REFERENCE, "clientReference", query.client_reference)]
        elif query.statuses:
            streams = [(BY_STATUS, "status", s.value) for s in query.statuses]
        else:
            streams = [(BY_CREATION, "kind", BATCH_KIND)]
        positions = _decode_list_token(token, [s[2] for s in streams])
        candidates: list[tuple[str, dict[str, Any]]] = []
        ended: set[str] = set()
        for index, attribute, value in streams:
            if positions.get(value) == "end":
                ended.add(value)
                continue
            items, more = self._index_page(
                index, attribute, value, query.provider, limit, positions.get(value)
            )
            candidates.extend((value, i) for i in items)
            if not more:
                ended.add(value)
        candidates.sort(key=lambda c: (c[1]["createdAt"], c[1]["pk"]), reverse=True)
        taken = candidates[:limit]
        new_positions: dict[str, Any] = dict(positions)
        for value, item in taken:
            new_positions[value] = {k: item[k] for k in ("pk", "sk", "createdAt", _hash_attr(streams, value))}
        for _, _attribute, value in streams:
            left_behind = any(v == value for v, _ in candidates[limit:])
            if value in ended and not left_behind:
                new_positions[value] = "end"
        finished = all(new_positions.get(s[2]) == "end" for s in streams)
        batches = [Batch.model_validate(_listed(item)) for _, item in taken]
        return batches, (None if finished else _encode_list_token(new_positions))

    def _index_page(
        self, index: str, attribute: str, value: str, provider: str | None, limit: int, after: Any
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` items of one index partition after ``after``; True when more may follow. A
        provider filter can make DynamoDB's page come back short: reading goes on until it is full."""
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": "#h = :h",
            "ExpressionAttributeNames": {"#h": attribute},
            "ExpressionAttributeValues": {":h": value},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if provider is not None:
            kwargs["FilterExpression"] = "provider = :prov"
            kwargs["ExpressionAttributeValues"][":prov"] = provider
        if isinstance(after, dict):
            kwargs["ExclusiveStartKey"] = after
        items: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            _count_page(page, consistent=False)
            items.extend(dict(plain(i)) for i in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if last is None:
                return items, False
            if len(items) >= limit:
                return items[:limit], True
            kwargs["ExclusiveStartKey"] = last
            kwargs["Limit"] = limit - len(items)


def _count_page(page: dict[str, Any], *, consistent: bool) -> None:
    size = sum(cost.item_size(i) for i in page.get("Items", []))
    cost.dynamodb(reads=cost.read_units(size, consistent=consistent), operation="Query")


def _row_units(row: OutcomeRow) -> float:
    """An outcome row's write units. Its fixed attributes (keys, index, kind, ttl and the names) stay
    under 200 bytes; its strings are counted by their UTF-8 bytes (the client's reference twice: it is in
    the look-up key too)."""
    strings = [row.response, row.client_ref, row.client_ref, row.provider_ref, row.detail]
    if row.error is not None:
        strings += [row.error.code, row.error.message]
    return cost.write_units(200 + sum(_utf8_bytes(v) for v in strings if v))


def _utf8_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _hash_attr(streams: list[tuple[str, str, str]], value: str) -> str:
    return next(a for _, a, v in streams if v == value)


def _listed(item: dict[str, Any]) -> dict[str, Any]:
    """A listing index item as a (partial) batch record: the fields the index does not project default."""
    return {
        "jobsKey": "",
        "chunkCount": 0,
        "deadlineAt": 0,
        **{k: v for k, v in item.items() if k not in ("pk", "sk", "kind")},
    }


def _row(item: dict[str, Any]) -> OutcomeRow:
    error = item.get("error")
    return OutcomeRow(
        index=int(item["index"]),
        outcome=str(item["outcome"]),
        client_ref=item.get("clientRef"),
        provider_ref=item.get("providerRef"),
        error=ErrorInfo.model_validate(error) if error else None,
        response=item.get("response"),
        response_truncated=bool(item.get("responseTruncated")),
        detail=item.get("detail"),
    )


def _encode_list_token(positions: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(positions, separators=(",", ":")).encode()).decode()


def _decode_list_token(token: str | None, values: list[str]) -> dict[str, Any]:
    """The positions a listing token names, when it came from a listing of the same kind."""
    if not token:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidTokenError("nextToken is not a token this API issued") from None
    if not isinstance(data, dict) or set(data) - set(values) or not data:
        raise InvalidTokenError("nextToken does not belong to this listing (a different filter?)")
    for value, position in data.items():
        if position == "end":
            continue
        if (
            not isinstance(position, dict)
            or not all(isinstance(v, str) for v in position.values())
            or not str(position.get("pk", "")).startswith("BATCH#")
            or position.get("sk") != META
            or len(position) != 4
            or value not in position.values()
        ):
            raise InvalidTokenError("nextToken does not belong to this listing (a different filter?)")
    return dict(data)


__all__ = ["BY_CLIENT_REF", "BY_CREATION", "BY_REFERENCE", "BY_STATUS", "BatchStatus", "DynamoRepository"]
