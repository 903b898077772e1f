"""A small threaded HTTP server that every provider simulator builds on.

A simulator subclasses :class:`Simulator` and implements :meth:`Simulator.route`. The base class owns
the socket, the request log and the fault knobs shared by all vendors (latency, 429 with Retry-After,
5xx bursts before or after a request was acted on, dropped connections, malformed or cut-short bodies),
so the same fault scenarios run against every provider.

A simulator is meant to be used from tests, including a user's own: build it with keyword arguments
only, ``start()`` it (or use it as a context manager), point a connection's ``baseUrl`` at
:attr:`Simulator.base_url`, and change its knobs -- plain attributes -- between requests. Every simulator
also lists every credential value it holds or issued (:meth:`Simulator.secret_values`), so a test can
prove none of them was written anywhere.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    raw_path: str  # path plus query, as sent

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


@dataclass
class Faults:
    """Transport-level faults, applied to the next N matching requests, then spent.

    ``only_paths`` narrows every knob to requests whose path, query string included, contains one of the
    given fragments (so ``"action=run"`` picks one iVvy action); ``only_methods`` narrows them to those
    HTTP methods (``("POST",)`` tells an OS1 create from a status read on the same path).
    ``drop_after_handling`` drops the connection *after* the request was acted on (an ambiguous submit);
    ``error_after_handling_next`` answers ``error_after_handling_status`` (502 unless set) after the request
    was acted on, in the vendor's own error envelope; ``server_error_status`` is the status of
    ``server_error_next`` (the vendor's usual one unless set), which answers before the request is acted on.

    Knobs a fault matrix aims at one exact call (each is spent like the others):

    * ``skip_next``: the next N matching requests pass untouched; the other knobs apply from the one after
      (so a fault can hit a later chunk's submit, or a later poll).
    * ``refuse_credentials_next``: answer the vendor's own 401 (:meth:`Simulator.unauthorized_response`)
      before acting on the request.
    * ``hold_answer_next``: act on the request, then hold the answer ``hold_answer_seconds`` (longer than
      a client waits) and close the connection without one: a timeout before any answer.
    * ``wrong_shape_next``: act on the request, then answer 2xx in a shape the vendor's documentation does
      not allow (:meth:`Simulator.wrong_shape_response`).
    * ``lose_callbacks``: completion callbacks the vendor would send are lost on the way (never sent).
    """

    latency_seconds: float = 0.0
    throttle_next: int = 0
    retry_after_seconds: int = 1
    server_error_next: int = 0
    server_error_status: int | None = None  # None: the vendor's usual failure (500; OS1 documents 503)
    error_after_handling_next: int = 0
    error_after_handling_status: int = 502
    drop_next: int = 0
    drop_after_handling_next: int = 0
    malformed_next: int = 0
    truncated_next: int = 0
    only_paths: tuple[str, ...] = ()
    only_methods: tuple[str, ...] = ()
    skip_next: int = 0
    refuse_credentials_next: int = 0
    hold_answer_next: int = 0
    hold_answer_seconds: float = 5.0
    wrong_shape_next: int = 0
    lose_callbacks: bool = False

    def applies(self, path: str, method: str | None = None) -> bool:
        if self.only_methods and method is not None and method.upper() not in self.only_methods:
            return False
        return not self.only_paths or any(p in path for p in self.only_paths)


class _Dropped(Exception):
    pass


class Simulator:
    """Base class: start/stop, request log, fault injection. Subclasses implement :meth:`route`."""

    name = "simulator"

    def __init__(self) -> None:
        self.faults = Faults()
        self.requests: list[Request] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()  # the clients' connections, kept alive between requests

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.name} simulator is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Simulator:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.name}-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every connection a client keeps alive.

        A kept-alive connection would otherwise go on being served by this stopped simulator, and a client
        pooling connections by address would send a later simulator's requests (one that got this port)
        down it, to this one."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            still_open, self._open = self._open, set()
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- to implement --------------------------------------------------------------------------------
    def route(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers for tests ---------------------------------------------------------------------------
    def secret_values(self) -> list[str]:
        """Every credential value the simulator was configured with or issued (tokens, tickets), for
        tests that search what BatchBridge wrote. Subclasses list theirs."""
        return []

    def requests_to(self, fragment: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if fragment in r.raw_path]

    # -- internals -----------------------------------------------------------------------------------
    def _take(self, knob: str, request: Request) -> bool:
        with self._lock:
            if getattr(self.faults, knob) > 0 and self.faults.applies(request.raw_path, request.method):
                setattr(self.faults, knob, getattr(self.faults, knob) - 1)
                return True
            return False

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
        if self._take("skip_next", request):
            return self.route(request)
        if self.faults.latency_seconds and self.faults.applies(request.raw_path, request.method):
            time.sleep(self.faults.latency_seconds)
        if self._take("drop_next", request):
            raise _Dropped
        if self._take("throttle_next", request):
            return self.throttled_response(self.faults.retry_after_seconds)
        if self._take("server_error_next", request):
            status = self.faults.server_error_status
            return self.server_error_response() if status is None else self.server_error_response(status)
        if self._take("refuse_credentials_next", request):
            return self.unauthorized_response(request)
        response = self.route(request)
        if self._take("drop_after_handling_next", request):
            raise _Dropped
        if self._take("error_after_handling_next", request):
            return self.server_error_response(self.faults.error_after_handling_status)
        if self._take("hold_answer_next", request):
            time.sleep(self.faults.hold_answer_seconds)
            raise _Dropped
        if self._take("wrong_shape_next", request):
            return self.wrong_shape_response(request, response)
        if self._take("malformed_next", request):
            return Response(response.status, b"<html>502 Bad Gateway</html>", {"Content-Type": "text/html"})
        if self._take("truncated_next", request):
            body = response.encoded()
            return Response(response.status, body[: max(1, len(body) // 2)], response.headers)
        return response

    def throttled_response(self, retry_after: int) -> Response:
        """The vendor's 429; subclasses override to use the vendor's own error envelope."""
        return Response(429, {"message": "Too many requests"}, {"Retry-After": str(retry_after)})

    def server_error_response(self, status: int = 500) -> Response:
        """The vendor's own answer for a failure on its side; subclasses use the vendor's envelope."""
        return Response(status, {"message": "Internal server error"})

    def unauthorized_response(self, request: Request) -> Response:
        """The vendor's 401 for refused credentials; subclasses use the vendor's own error envelope."""
        return Response(401, {"message": "Unauthorized"})

    def wrong_shape_response(self, request: Request, response: Response) -> Response:
        """The answer ``response`` would have been, in a shape the vendor's documentation does not allow:
        every value of a JSON object wrapped in a list, a number or boolean sent as a string, a string as a
        list. The status stays (a 2xx for an accepted request), so only the shape says it is wrong."""
        body = response.body
        if isinstance(body, bytes):
            try:
                body = json.loads(body)
            except ValueError:
                return Response(response.status, [body.decode("utf-8", "replace")], response.headers)
        if isinstance(body, dict):
            broken: Any = {key: [value] for key, value in body.items()}
        elif isinstance(body, bool | int | float):
            broken = json.dumps(body)
        elif isinstance(body, str):
            broken = [body]
        elif isinstance(body, list):
            broken = {"items": body}
        else:
            broken = {"unexpected": True}
        return Response(response.status, broken, response.headers)


def _make_handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def setup(self) -> None:
            super().setup()
            with sim._lock:
                sim._open.add(self.connection)

        def finish(self) -> None:
            with sim._lock:
                sim._open.discard(self.connection)
            super().finish()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            request = Request(
                method=self.command,
                path=parts.path,
                query=query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                raw_path=self.path,
            )
            try:
                response = sim._dispatch(request)
            except _Dropped:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            payload = response.encoded()
            self.send_response(response.status)
            headers = {"Content-Type": "application/json", **response.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler
