"""The repository in memory: the same lifecycle rules (they live in the base class), carried out on a dict
under one lock, so the workflow tasks' rules can be tested directly, quickly, with races staged at will.

>>> repo = MemoryRepository()                                       # doctest: +SKIP
>>> repo.create_batch(batch); repo.claim_chunk(batch.batch_id, 0, lease_until=...)
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from batchbridge.errors import BatchNotFoundError, InvalidTokenError
from batchbridge.records import Batch
from batchbridge.repository import META, Expect, ListQuery, OutcomeRow, Repository, Write, outcome_sk, pk


def holds(item: dict[str, Any] | None, expect: Sequence[Expect]) -> bool:
    """Whether every condition holds for ``item`` (None: no such item), as DynamoDB evaluates them."""
    for e in expect:
        present = item is not None and _get_path(item, e.attribute) is not None
        value = _get_path(item, e.attribute) if item is not None else None
        if e.op == "present" and not present:
            return False
        if e.op == "absent" and present:
            return False
        if e.op == "in" and (not present or value not in e.values):
            return False
        if e.op == "in_or_absent" and present and value not in e.values:
            return False
        if e.op == "not_in" and present and value in e.values:
            return False
        if e.op == "not_true" and value is True:
            return False
        if e.op == "below_or_absent" and present and not value < e.values[0]:
            return False
        if item is None and e.op != "absent":
            return False
    return True


def _get_path(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _set_path(item: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target = item
    for part in parents:
        target = target.setdefault(part, {})
    if value is None:
        target.pop(last, None)
    else:
        target[last] = copy.deepcopy(value)


class MemoryRepository(Repository):
    """A repository in a dict. ``before_write`` (tests) runs just before each conditional write is
    checked, with the write, to stage what another task does at that very moment."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.rows: dict[str, dict[str, OutcomeRow]] = {}  # partition -> sort key -> row
        self.writes = 0
        self.before_write: Callable[[Write], None] | None = None
        self._lock = threading.RLock()

    def _get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        with self._lock:
            item = self.items.get(key)
            return copy.deepcopy(item) if item is not None else None

    def _put_new(self, key: tuple[str, str], item: dict[str, Any]) -> bool:
        with self._lock:
            if key in self.items:
                return False
            self.items[key] = {**copy.deepcopy(item), "pk": key[0], "sk": key[1]}
            self.writes += 1
            return True

    def _delete(self, key: tuple[str, str]) -> None:
        with self._lock:
            self.items.pop(key, None)

    def _apply(self, write: Write) -> dict[str, Any] | None:
        if self.before_write is not None:
            self.before_write(write)
        with self._lock:
            item = self.items.get(write.key)
            if not holds(item, write.expect):
                return None
            assert item is not None  # every lifecycle write expects the item to exist
            self._update(item, write)
            self.writes += 1
            return copy.deepcopy(item)

    @staticmethod
    def _update(item: dict[str, Any], write: Write) -> None:
        for key, value in write.set.items():
            _set_path(item, key, value)
        for key, amount in write.add.items():
            _set_path(item, key, (_get_path(item, key) or 0) + amount)
        for key, values in write.append.items():
            _set_path(item, key, [*(_get_path(item, key) or []), *values])
        for key in write.remove:
            _set_path(item, key, None)

    def _swap(self, batch_id: str, *, set: dict[str, Any], remove: tuple[str, ...]) -> Batch:
        with self._lock:
            item = self.items.get((pk(batch_id), META))
            if item is None:
                raise BatchNotFoundError(f"no batch {batch_id!r}")
            before = copy.deepcopy(item)
            self._update(item, Write(key=(pk(batch_id), META), expect=(), set=set, remove=remove))
            return Batch.from_item(before)

    def _transact(
        self, *, checks: list[tuple[tuple[str, str], tuple[Expect, ...]]], write: Write
    ) -> bool | Literal["check", "write"]:
        if self.before_write is not None:
            self.before_write(write)
        with self._lock:
            if not all(holds(self.items.get(key), expect) for key, expect in checks):
                return "check"
            item = self.items.get(write.key)
            if not holds(item, write.expect):
                return "write"
            assert item is not None
            self._update(item, write)
            self.writes += 1
            return True

    def _query(self, partition: str, prefix: str, *, start: str, page_size: int) -> Iterator[dict[str, Any]]:
        with self._lock:
            keys = sorted(
                k for k in self.items if k[0] == partition and k[1].startswith(prefix) and k[1] >= start
            )
        for key in keys:
            item = self._get(key)
            if item is not None:
                yield item

    def _write_rows(self, batch_id: str, rows: Sequence[OutcomeRow], expires_at: int) -> None:
        with self._lock:
            partition = self.rows.setdefault(pk(batch_id), {})
            for row in rows:
                partition[outcome_sk(row.outcome, row.index)] = row
                self.writes += 1

    def _rows(
        self, partition: str, prefix: str, *, limit: int, after: str | None
    ) -> tuple[list[OutcomeRow], str | None]:
        with self._lock:
            keys = sorted(
                k
                for k in self.rows.get(partition, {})
                if k.startswith(prefix) and (after is None or k > after)
            )
            page = keys[:limit]
            rows = [self.rows[partition][k] for k in page]
        return rows, (page[-1] if len(keys) > limit else None)

    def _rows_by_ref(self, batch_id: str, client_ref: str) -> list[OutcomeRow]:
        with self._lock:
            found = [r for r in self.rows.get(pk(batch_id), {}).values() if r.client_ref == client_ref]
        return sorted(found, key=lambda r: r.index)

    def list_batches(
        self, query: ListQuery, *, limit: int, token: str | None
    ) -> tuple[list[Batch], str | None]:
        with self._lock:
            batches = [
                Batch.from_item(i) for k, i in self.items.items() if k[1] == META and i.get("kind") == "batch"
            ]
        wanted = [
            b
            for b in batches
            if (not query.statuses or b.status in query.statuses)
            and (query.provider is None or b.provider == query.provider)
            and (query.client_reference is None or b.client_reference == query.client_reference)
        ]
        wanted.sort(key=lambda b: (b.created_at, b.batch_id), reverse=True)
        if token is not None and not token.isdigit():
            raise InvalidTokenError("nextToken is not a token this API issued")
        start = int(token or 0)
        page = wanted[start : start + limit]
        return page, (str(start + limit) if start + limit < len(wanted) else None)
