"""HTTP plumbing every adapter shares: one client factory, and one place where transport failures
and HTTP statuses become BatchBridge's typed errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from batchbridge.errors import (
    ProviderResponseError,
    ProviderThrottledError,
    ProviderUnavailableError,
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)


def new_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.Client:
    return httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": "BatchBridge/0.1"})


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Parse Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def send(call: Callable[[], httpx.Response], *, what: str, safe_to_repeat: bool = True) -> httpx.Response:
    """Run one HTTP call, turning transport failures into typed errors.

    ``safe_to_repeat=False`` marks a call whose effect may have happened even though no answer came
    back (a submit); a read timeout or dropped connection then re-raises as-is so the caller can decide
    it is ambiguous rather than let the workflow retry it blindly.
    """
    try:
        return call()
    except httpx.ConnectError as exc:  # never reached the provider: always safe to repeat
        raise ProviderUnavailableError(f"{what}: cannot connect ({exc})") from exc
    except httpx.ConnectTimeout as exc:
        raise ProviderUnavailableError(f"{what}: connect timed out") from exc
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if not safe_to_repeat:
            raise
        raise ProviderUnavailableError(f"{what}: {type(exc).__name__} ({exc})") from exc
    except httpx.TransportError as exc:
        if not safe_to_repeat:
            raise
        raise ProviderUnavailableError(f"{what}: {type(exc).__name__} ({exc})") from exc


def raise_for_transient(response: httpx.Response, *, what: str) -> None:
    """429 and 5xx become retryable errors; every other status is the adapter's to interpret."""
    if response.status_code == 429:
        raise ProviderThrottledError(
            f"{what}: throttled (HTTP 429)", retry_after=retry_after_seconds(response)
        )
    if response.status_code >= 500:
        raise ProviderUnavailableError(f"{what}: HTTP {response.status_code}")


def json_body(response: httpx.Response, *, what: str) -> Any:
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        snippet = response.content[:120].decode("utf-8", "replace")
        raise ProviderResponseError(
            f"{what}: HTTP {response.status_code} with a body that is not JSON: {snippet!r}"
        ) from exc


def expect_dict(value: Any, *, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderResponseError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value
