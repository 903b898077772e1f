"""HTTP plumbing every adapter shares: one client factory, and one place where transport failures become
BatchBridge's typed errors.

The rule for a request that may take effect (a submit): only a failure that proves nothing was sent is
safe to repeat. A refused or timed-out *connect*, or a pool that never handed out a connection, sent
nothing: :class:`ProviderUnavailableError`. Anything after the request started to go out -- a write or read
timeout, a connection dropped mid-answer, a protocol error -- may have been acted on:
:class:`SubmitUnconfirmedError`. Every other request is a read and is always safe to repeat.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from batchbridge.errors import (
    ProviderResponseError,
    ProviderUnavailableError,
    SubmitUnconfirmedError,
)
from batchbridge.observability import tracer

# Vendor calls are traced (when tracing is on). The X-Ray SDK's patch replaces httpx.Client, so it is made
# here, before new_client builds one, and only where a vendor is called: functions that never call one do
# not import this module, nor httpx.
tracer.patch(("httpx",))

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)
SNIPPET_BYTES = 120  # how much of a body that is not JSON an error quotes (never for credential endpoints)

# Failures that prove the request never left: nothing can have been acted on.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


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


def send(call: Callable[[], httpx.Response], *, commit: bool = False) -> httpx.Response:
    """Run one HTTP call, turning transport failures into typed errors (see the module doc).

    ``commit=True`` marks the request that may take effect; its failures after sending raise
    :class:`SubmitUnconfirmedError`, never an error the workflow would retry.
    """
    try:
        return call()
    except NOT_SENT as exc:
        raise ProviderUnavailableError(f"{_transport(exc)}; nothing was sent") from exc
    except httpx.TransportError as exc:
        if commit:
            raise SubmitUnconfirmedError(
                f"{_transport(exc)} after the request was sent; the vendor may have acted on it"
            ) from exc
        raise ProviderUnavailableError(_transport(exc)) from exc


def _transport(exc: httpx.TransportError) -> str:
    return {
        httpx.ConnectError: "cannot connect",
        httpx.ConnectTimeout: "connect timed out",
        httpx.PoolTimeout: "no connection free in time",
        httpx.ReadTimeout: "no answer within the read timeout",
        httpx.WriteTimeout: "the request could not be written in time",
        httpx.RemoteProtocolError: "the connection was dropped or the answer broke HTTP",
        httpx.ReadError: "the connection failed while reading the answer",
        httpx.WriteError: "the connection failed while sending the request",
    }.get(type(exc), type(exc).__name__)


def decode_json(response: httpx.Response, *, quote: bool) -> Any:
    """The body as JSON, or :class:`ProviderResponseError` saying why not. ``quote=False`` (credential
    endpoints) never copies any of the body into the message: a cut-short token answer still holds the
    token. Quoted snippets are scrubbed by the operation that raises them."""
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        size = len(response.content)
        shown = ""
        if quote and size:
            shown = f": {response.content[:SNIPPET_BYTES].decode('utf-8', 'replace')!r}"
        reason = "an empty body" if not size else f"a body of {size} bytes that is not JSON{shown}"
        raise ProviderResponseError(f"HTTP {response.status_code} with {reason}") from exc


def expect_dict(value: Any, *, what: str = "the answer") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderResponseError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value
