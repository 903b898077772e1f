"""Time as BatchBridge records it: ISO 8601 UTC with milliseconds, and epoch seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch() -> float:
    return time.time()


def parse_iso(value: str) -> float:
    """Epoch seconds of a timestamp written by :func:`now_iso`."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
