"""Credentials a vendor issues (OAuth access tokens, SuperOffice tickets), cached per connection.

The cache lives at module level, so an issued token outlives one invocation and serves every later one
in the same container until shortly before it expires. A refused token is forgotten only if it is still
the cached one: another thread may already have renewed it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Token:
    """An issued credential and the moment (``time.monotonic()``) to stop using it."""

    value: str
    renew_at: float


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    token: Token | None = None


class TokenCache:
    """Issued credentials by key (provider, connection, endpoint...), one fetch at a time per key."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, _Slot] = {}
        self._lock = threading.Lock()

    def _slot(self, key: Hashable) -> _Slot:
        with self._lock:
            return self._slots.setdefault(key, _Slot())

    def get(self, key: Hashable, fetch: Callable[[], Token]) -> str:
        """The cached credential, or a new one from ``fetch`` when there is none or it is due for renewal."""
        slot = self._slot(key)
        with slot.lock:
            token = slot.token
            if token is None or token.renew_at <= time.monotonic():
                token = fetch()
                slot.token = token
            return token.value

    def forget(self, key: Hashable, used: str) -> None:
        """Drop the cached credential if it is still ``used`` (the one the vendor just refused)."""
        slot = self._slot(key)
        with slot.lock:
            if slot.token is not None and slot.token.value == used:
                slot.token = None

    def live(self, key: Hashable) -> str | None:
        """The credential cached for ``key`` now, if any: it must be scrubbed from every text."""
        slot = self._slot(key)
        token = slot.token
        return token.value if token is not None else None

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()


TOKENS = TokenCache()


def clear_token_cache() -> None:
    """Forget every cached token and ticket (tests; a rotated secret)."""
    TOKENS.clear()


def keep_seconds(expires_in: float, margin: float) -> float:
    """How long to use a credential that lives ``expires_in`` seconds: until ``margin`` seconds before it
    expires, but at least half its life, so a short-lived one is still used and renewed in good time.

    >>> keep_seconds(3600, 600), keep_seconds(300, 600), keep_seconds(3600, 60)
    (3000.0, 150.0, 3540.0)
    """
    return max(float(expires_in) - margin, float(expires_in) / 2)
