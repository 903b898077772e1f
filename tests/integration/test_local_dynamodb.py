"""The local runtime's DynamoDB behaves as DynamoDB does when many tasks use it at once."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from moto.dynamodb.models.dynamo_type import Item

from batchbridge_local.stack import REGION


@pytest.fixture
def unlocked_reads(stack: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time a stored item is turned into an answer without the table's lock held."""
    found: list[str] = []
    for name in ("describe_attrs", "to_json"):
        original = getattr(Item, name)

        def answer(item: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            if not stack.dynamodb_lock._is_owned():
                found.append(_name)
            return _original(item, *args, **kwargs)

        monkeypatch.setattr(Item, name, answer)
    return found


def test_an_answer_is_built_whole_never_while_another_task_changes_it(
    stack: Any, unlocked_reads: list[str]
) -> None:
    # moto hands a read the stored item itself and builds the answer after the backend call returns; a
    # task's update changes that item in place, so an answer built outside the lock can fail mid-way
    # ("dictionary changed size during iteration": once a 500 from GET /batches/{id}).
    ddb = boto3.client("dynamodb", region_name=REGION)
    key = {"pk": {"S": f"RACE#{uuid.uuid4()}"}, "sk": {"S": "RACE"}}
    ddb.put_item(TableName=stack.table_name, Item={**key, "a": {"M": {"b": {"S": "c"}}}})
    # When it is read every way the handlers read
    ddb.get_item(TableName=stack.table_name, Key=key)
    ddb.batch_get_item(RequestItems={stack.table_name: {"Keys": [key]}})
    ddb.transact_get_items(TransactItems=[{"Get": {"TableName": stack.table_name, "Key": key}}])
    ddb.query(
        TableName=stack.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": key["pk"]},
    )
    ddb.scan(TableName=stack.table_name, Limit=5)
    ddb.update_item(
        TableName=stack.table_name,
        Key=key,
        UpdateExpression="SET d = :d",
        ExpressionAttributeValues={":d": {"S": "e"}},
        ReturnValues="ALL_NEW",
    )
    # Then every answer was built from the item with the table's lock held
    assert unlocked_reads == []
