"""A hostile HTTP server on loopback: answers as a broken Prometheus (or API server) would.

Why: the fault proxy in ``tests/prom`` breaks a real server in the ways networks break
(5xx, hangs, drops, a cut-off body). A hostile *server* does more: it trickles a valid
answer one byte at a time, trickles its headers, never answers, sends deeply nested or
huge JSON, NaN/Inf/null values and timestamps, wrong types in every field, 429 with
``Retry-After``, an HTML login page. The product must turn each of those into "unknown" or
one clear error, in bounded time, without a traceback.

A :class:`HostileServer` answers every request with the :class:`Reply` its ``respond``
function returns for that :class:`Request` (path, decoded query parameters), so a test
scripts it per query (``by_query``): e.g. good answers for every query except the one
whose PromQL mentions ``timestamp(``. Helpers build valid Prometheus answers
(:func:`vector`, :func:`matrix`) and the usual bad ones. Requests are recorded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

#: Longest any single reply may keep a connection (a hang ends here at the latest).
MAX_HOLD_SECONDS = 60.0


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    params: Mapping[str, str]
    time: float

    @property
    def query(self) -> str:
        """The PromQL of a query request (``""`` for other requests)."""
        return self.params.get("query", "")


@dataclass(frozen=True)
class Reply:
    """How to answer one request.

    ``body`` is sent after ``delay`` seconds, ``chunk`` bytes every ``interval`` seconds
    (all at once when ``interval`` is 0); ``header_interval`` trickles the status line and
    headers too. ``hang`` never answers (until the server stops or :data:`MAX_HOLD_SECONDS`);
    ``close`` drops the connection without a byte.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    interval: float = 0.0
    chunk: int = 1
    header_interval: float = 0.0
    hang: bool = False
    close: bool = False
    #: Send no Content-Length, only close the connection at the end (an unbounded body).
    unbounded: bool = False


Respond = Callable[[Request], Reply]


def as_json(obj: Any) -> bytes:
    """``obj`` as JSON bytes (NaN/Infinity written as JSON's non-standard literals when present)."""
    return json.dumps(obj, allow_nan=True).encode()


def success(result: Any, result_type: str = "vector") -> Reply:
    """A 200 query answer whose ``data.result`` is ``result`` (any JSON, valid or not)."""
    return Reply(body=as_json({"status": "success", "data": {"resultType": result_type, "result": result}}))


def vector(labels: Mapping[str, str], value: Any = "1", *, at: Any = None) -> Reply:
    """A one-series instant answer: ``labels``, ``value`` (normally a string) at ``at`` (default now)."""
    stamp = time.time() if at is None else at
    return success([{"metric": dict(labels), "value": [stamp, value]}])


def matrix(labels: Mapping[str, str], points: Sequence[Sequence[Any]]) -> Reply:
    """A one-series range answer with the given ``[time, value]`` points."""
    return success([{"metric": dict(labels), "values": [list(p) for p in points]}], "matrix")


def nested(depth: int) -> bytes:
    """A syntactically valid JSON document nested ``depth`` levels deep."""
    return b'{"status":"success","data":{"resultType":"vector","result":' + b"[" * depth + b"]" * depth + b"}}"


def by_query(default: Reply | Respond, **rules: Reply | Respond) -> Respond:
    """Answer ``rules[k]`` to queries whose PromQL contains ``k`` (first match), else ``default``.

    Keys are substrings of the query (``timestamp`` for the newest-sample query); a
    ``range`` key matches range queries. A rule (or the default) may be a function of the request.
    """

    def respond(request: Request) -> Reply:
        for needle, rule in rules.items():
            if (needle == "range" and request.path.endswith("query_range")) or (
                needle != "range" and needle in request.query
            ):
                return rule(request) if callable(rule) else rule
        return default(request) if callable(default) else default

    return respond


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are written apart: no 40 ms wait for the ACK
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
            if "form-urlencoded" in self.headers.get("Content-Type", ""):
                params.update({k: v[-1] for k, v in parse_qs(body.decode("latin-1")).items()})
        request = Request(self.command, parts.path, params, time.time())
        hostile = self.server.hostile
        with hostile.lock:
            hostile.requests.append(request)
        reply = hostile.respond(request)
        try:
            self._send(reply)
        except OSError:
            self.close_connection = True

    def _wait(self, seconds: float) -> bool:
        """Sleep; False when the server is stopping (then the connection is dropped)."""
        return not self.server.hostile.stopping.wait(seconds)

    def _write(self, data: bytes, interval: float, chunk: int) -> bool:
        if interval <= 0:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        for i in range(0, len(data), chunk):
            if not self._wait(interval):
                return False
            self.wfile.write(data[i : i + chunk])
            self.wfile.flush()
        return True

    def _send(self, reply: Reply) -> None:
        if reply.hang:
            self._wait(MAX_HOLD_SECONDS)
            self.close_connection = True
            return
        if reply.close:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.delay and not self._wait(reply.delay):
            self.close_connection = True
            return
        head = [f"HTTP/1.1 {reply.status} Hostile", f"Content-Type: {reply.content_type}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.unbounded:
            head.append("Connection: close")
            self.close_connection = True
        else:
            head.append(f"Content-Length: {len(reply.body)}")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if not self._write(raw_head, reply.header_interval, 1):
            self.close_connection = True
            return
        if not self._write(reply.body, reply.interval, reply.chunk):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hostile: HostileServer


class HostileServer:
    """A scripted HTTP server on 127.0.0.1 (a random port)."""

    def __init__(self, respond: Respond | Reply | None = None) -> None:
        self.respond: Respond = _as_respond(respond or Reply(status=404, body=b"{}"))
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: _Server | None = None

    def set(self, respond: Respond | Reply) -> None:
        """Answer every later request with ``respond``."""
        self.respond = _as_respond(respond)

    def start(self) -> Self:
        """Listen and serve in a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hostile = self
        self._server = server
        threading.Thread(target=server.serve_forever, name="hostile", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving; held connections are released."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _as_respond(respond: Respond | Reply) -> Respond:
    if isinstance(respond, Reply):
        reply = respond
        return lambda _request: reply
    return respond
