"""The local runtime's own shortcuts answer as the services they stand in for."""

from __future__ import annotations

from decimal import Decimal

import boto3
import httpx
import pytest
from boto3.dynamodb.types import Binary

from batchbridge_local.client_faults import ClientFaults

pytestmark = pytest.mark.xdist_group("stack")


def test_every_dynamodb_attribute_type_reads_back_as_it_was_written(stack):
    # Given an item holding every attribute type, nested ones and binary included
    item = {
        "pk": "TEST#attribute-types",
        "sk": "EVERY",
        "s": "text é",
        "n": Decimal("-12.5"),
        "b": Binary(b"\x00\xffbytes"),
        "ss": {"a", "b"},
        "ns": {Decimal(1), Decimal("2.5")},
        "bs": {Binary(b"\x01"), Binary(b"\x02")},
        "null": None,
        "bool": False,
        "m": {"inner": {"deep": [Decimal(1), "two", None, True, Binary(b"\x03"), {"x": {"y"}}]}},
        "l": [[], {}, "", Decimal(0)],
    }
    table = boto3.resource("dynamodb").Table(stack.table_name)
    table.put_item(Item=item)
    key = {"pk": item["pk"], "sk": item["sk"]}
    # When it is read back by a get, a query, a scan and a batch get
    got = table.get_item(Key=key)["Item"]
    queried = table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": item["pk"]})
    scanned = table.scan(FilterExpression="pk = :pk", ExpressionAttributeValues={":pk": item["pk"]})
    batch = boto3.resource("dynamodb").batch_get_item(RequestItems={stack.table_name: {"Keys": [key]}})
    # Then every read gives the item exactly as written
    assert got == item
    assert queried["Items"] == [item]
    assert scanned["Items"] == [item]
    assert batch["Responses"][stack.table_name] == [item]
    table.delete_item(Key=key)


def test_a_refused_connection_is_raised_before_anything_is_sent_and_only_where_aimed(stack):
    from batchbridge import connections

    connections.clear_cache()
    client = connections.new_client(httpx.Timeout(2.0))
    aimed = stack.client_faults.aim(
        "http://127.0.0.1:9", ClientFaults(refuse_next=1, skip_next=1, only_paths=("/submit",))
    )
    try:
        def refused(url: str) -> bool:
            return stack.client_faults.refuses(httpx.Request("POST", url))

        assert not refused("http://127.0.0.1:9/status")  # another call
        assert not refused("http://127.0.0.1:10/submit")  # another vendor
        assert not refused("http://127.0.0.1:9/submit")  # the one let through first
        with pytest.raises(httpx.ConnectError, match="injected by the local runtime"):
            client.post("http://127.0.0.1:9/submit", content=b"{}")
        assert (aimed.refused, aimed.refuse_next) == (1, 0)
    finally:
        stack.client_faults.clear()
        client.close()
