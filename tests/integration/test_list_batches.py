"""GET /batches on the local stack: batch summaries newest first, narrowed by status and provider through
the table's listing indexes, paged with tokens that only fit the listing they came from.

The stack is shared by the whole test session, so other tests' batches are listed too: each test tells its
own batches apart by a client reference of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from batchbridge_local.simulators.ivvy import booking_session_jobs

pytestmark = pytest.mark.xdist_group("stack")


def create(stack: Any, connection: str, reference: str, n: int = 2) -> str:
    status, body = stack.api(
        "POST",
        "/batches",
        {
            "provider": "ivvy",
            "connection": connection,
            "jobs": booking_session_jobs(n),
            "clientReference": reference,
        },
    )
    assert status == 202, body
    return str(body["batchId"])


def pages(stack: Any, **params: str) -> Iterator[dict[str, Any]]:
    """Every page of a listing, following nextToken."""
    query = dict(params)
    while True:
        status, page = stack.api("GET", "/batches", query=query)
        assert status == 200, page
        yield page
        if "nextToken" not in page:
            return
        query["nextToken"] = page["nextToken"]


def listed(stack: Any, **params: str) -> list[dict[str, Any]]:
    return [item for page in pages(stack, **params) for item in page["items"]]


def settle(stack: Any, ids: Any) -> None:
    """Let the batches finish, so that no workflow of this test still writes while the next one runs."""
    for batch_id in ids:
        stack.wait_for_batch(batch_id, timeout=60)


def test_batches_are_listed_newest_first_with_their_summary_and_links(stack, ivvy, ivvy_connection):
    # Given three batches created one after another
    reference = f"list-{uuid.uuid4()}"
    ids = [create(stack, ivvy_connection, reference) for _ in range(3)]
    # When the whole listing is read
    items = listed(stack)
    # Then they appear once each, the newest first, with what a list of batches needs
    mine = [item for item in items if item.get("clientReference") == reference]
    assert [item["batchId"] for item in mine] == ids[::-1]
    first = mine[0]
    assert first["provider"] == "ivvy" and first["connection"] == ivvy_connection
    assert first["jobCount"] == 2
    assert first["links"]["self"] == f"/v1/batches/{ids[-1]}"
    created = [item["createdAt"] for item in items]
    assert created == sorted(created, reverse=True)
    assert len({item["batchId"] for item in items}) == len(items)
    settle(stack, ids)


def test_a_status_filter_lists_only_batches_in_that_status(stack, ivvy, ivvy_connection):
    # Given two batches that have finished
    reference = f"status-{uuid.uuid4()}"
    ids = [create(stack, ivvy_connection, reference) for _ in range(2)]
    for batch_id in ids:
        assert stack.wait_for_batch(batch_id, timeout=60)["status"] == "SUCCEEDED"
    # When the SUCCEEDED batches are listed, a page of three at a time
    items = listed(stack, status="SUCCEEDED", limit="3")
    # Then both are there, with their final counts, and nothing in another status is
    mine = {item["batchId"]: item for item in items if item.get("clientReference") == reference}
    assert set(mine) == set(ids)
    assert all(item["counts"]["succeeded"] == 2 for item in mine.values())
    assert all("finishedAt" in item for item in mine.values())
    assert {item["status"] for item in items} == {"SUCCEEDED"}
    # and a status they are no longer in does not list them
    assert not {item["batchId"] for item in listed(stack, status="ACCEPTED")} & set(ids)


def test_a_provider_filter_pages_through_only_that_providers_batches(stack, ivvy, ivvy_connection):
    reference = f"provider-{uuid.uuid4()}"
    ids = {create(stack, ivvy_connection, reference) for _ in range(3)}
    # When iVvy's batches are listed one per page
    seen = [page["items"] for page in pages(stack, provider="ivvy", limit="1")]
    # Then every page but the last holds exactly one iVvy batch, and ours are all among them
    assert all(len(items) == 1 for items in seen[:-1])
    flat = [item for items in seen for item in items]
    assert {item["provider"] for item in flat} == {"ivvy"}
    assert ids <= {item["batchId"] for item in flat}
    # and no other provider's batch shows up when listing another provider's
    assert not ids & {item["batchId"] for item in listed(stack, provider="os1")}
    settle(stack, ids)


@pytest.mark.parametrize(
    ("query", "code", "named"),
    [
        ({"status": "DONE"}, "INVALID_PARAMETER", "SUCCEEDED"),
        ({"provider": "acme"}, "INVALID_PARAMETER", "ivvy"),
        ({"limit": "0"}, "INVALID_PARAMETER", "limit"),
        ({"limit": "101"}, "INVALID_PARAMETER", "limit"),
        ({"limit": "ten"}, "INVALID_PARAMETER", "limit"),
        ({"sort": "asc"}, "UNKNOWN_PARAMETER", "sort"),
        ({"nextToken": "not a token"}, "INVALID_TOKEN", "nextToken"),
    ],
)
def test_bad_listing_parameters_are_named(stack, query, code, named):
    status, body = stack.api("GET", "/batches", query=query)
    assert status == 400
    assert body["error"]["code"] == code
    assert named in body["error"]["message"]


def test_a_token_only_continues_the_listing_it_came_from(stack, ivvy, ivvy_connection):
    # Given a token from a listing of SUCCEEDED batches
    reference = f"token-{uuid.uuid4()}"
    ids = [create(stack, ivvy_connection, reference) for _ in range(2)]
    for batch_id in ids:
        stack.wait_for_batch(batch_id, timeout=60)
    status, page = stack.api("GET", "/batches", query={"status": "SUCCEEDED", "limit": "1"})
    assert status == 200 and "nextToken" in page
    # When it is used to continue a listing of another status, or of all batches
    for other in ({"status": "FAILED"}, {}):
        status, body = stack.api("GET", "/batches", query={**other, "nextToken": page["nextToken"]})
        # Then it is refused, not misread
        assert status == 400
        assert body["error"]["code"] == "INVALID_TOKEN"
