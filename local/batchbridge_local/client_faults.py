"""Faults on the client side of a vendor call: a request refused before anything was sent.

A simulator can refuse, slow, break or drop a request once it has arrived; it cannot stop one from
leaving. The local stack builds the handlers' HTTP client through ``batchbridge.connections``' client
factory with a :class:`RefusingTransport`, which raises ``httpx.ConnectError`` -- what a refused connection
raises -- for the requests :class:`ClientFaults` aims at one vendor address, before any byte is sent.
Requests to other addresses, and every request while no fault is aimed, pass through untouched.

>>> faults = ClientFaults(refuse_next=1, only_paths=("action=run",))
>>> faults.take(httpx.Request("POST", "http://127.0.0.1:9/api/1.0/batch?action=run"))
True
>>> faults.refuse_next, faults.refused
(0, 1)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx


@dataclass
class ClientFaults:
    """Refuse the next ``refuse_next`` matching requests, after letting ``skip_next`` of them through.

    ``only_paths`` (fragments of the path, query string included) and ``only_methods`` narrow what
    matches, as the simulators' own fault knobs do. ``refused`` counts the requests refused so far."""

    refuse_next: int = 0
    skip_next: int = 0
    only_paths: tuple[str, ...] = ()
    only_methods: tuple[str, ...] = ()
    refused: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def applies(self, request: httpx.Request) -> bool:
        if self.only_methods and request.method.upper() not in self.only_methods:
            return False
        path = request.url.raw_path.decode("ascii", "replace")
        return not self.only_paths or any(p in path for p in self.only_paths)

    def take(self, request: httpx.Request) -> bool:
        """True when this request is to be refused (and counts it)."""
        with self._lock:
            if self.refuse_next <= 0 or not self.applies(request):
                return False
            if self.skip_next > 0:
                self.skip_next -= 1
                return False
            self.refuse_next -= 1
            self.refused += 1
            return True


def origin(url: httpx.URL | str) -> str:
    """``scheme://host:port`` of a URL: the one vendor address faults are aimed at."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


class ClientFaultRegistry:
    """The client-side faults of each vendor address (one simulator each)."""

    def __init__(self) -> None:
        self._faults: dict[str, ClientFaults] = {}
        self._lock = threading.Lock()

    def aim(self, base_url: str, faults: ClientFaults) -> ClientFaults:
        """Aim ``faults`` at every request to ``base_url``'s address (replacing what was aimed there)."""
        with self._lock:
            self._faults[origin(base_url)] = faults
        return faults

    def clear(self, base_url: str | None = None) -> None:
        with self._lock:
            if base_url is None:
                self._faults.clear()
            else:
                self._faults.pop(origin(base_url), None)

    def refuses(self, request: httpx.Request) -> bool:
        with self._lock:
            faults = self._faults.get(origin(request.url))
        return faults is not None and faults.take(request)


class RefusingTransport(httpx.BaseTransport):
    """An httpx transport that refuses the requests its registry aims at, and sends every other one."""

    def __init__(self, inner: httpx.BaseTransport, registry: ClientFaultRegistry) -> None:
        self.inner = inner
        self.registry = registry

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.registry.refuses(request):
            raise httpx.ConnectError(
                "[Errno 111] Connection refused (injected by the local runtime)", request=request
            )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def refusing_factory(
    factory: Callable[[httpx.Timeout], httpx.Client], registry: ClientFaultRegistry
) -> Callable[[httpx.Timeout], httpx.Client]:
    """A client factory like ``factory`` (same timeout, headers and redirect policy) whose clients send
    through a :class:`RefusingTransport`."""

    def new_client(timeout: httpx.Timeout) -> httpx.Client:
        template = factory(timeout)
        try:
            return httpx.Client(
                timeout=template.timeout,
                follow_redirects=template.follow_redirects,
                headers=template.headers,
                transport=RefusingTransport(httpx.HTTPTransport(), registry),
            )
        finally:
            template.close()

    return new_client
