"""A fault-injecting HTTP reverse proxy on 127.0.0.1, stdlib only.

Why: the product must survive a Prometheus (and later a Kubernetes API
server) that answers 5xx, hangs past the client timeout, returns a 200 with
malformed JSON, or drops the connection. Breaking a real server on demand is
impractical, so tests put this proxy between the product and the real server
and switch faults at run time; the rest of the time it forwards faithfully.

- Forwards method, path, query, headers (minus hop-by-hop ones) and body to
  an ``http://`` or ``https://`` upstream; HTTPS verification is off by
  default (test API servers use self-signed certs), or pass an
  ``ssl.SSLContext`` (e.g. with a client certificate).
- Responses without ``Content-Length`` (Kubernetes watches) are streamed on
  as chunked transfer encoding, so long-lived watches work through it.
- Modes: ``passthrough``, ``status`` (code + body), ``delay`` (sleep, then
  forward), ``garbage`` (200 + a malformed body), ``close`` (drop the
  connection without answering), ``trickle`` (forward, then send the answer's
  body one byte every ``seconds``). A fault can be limited to paths matching a
  regex (``only_paths``) and to the next ``times`` matching requests.
- Counts requests per path (and faults applied per path).
- Bounded: it listens on loopback only and, unless told otherwise, refuses
  upstreams that are not loopback addresses.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["DEFAULT_GARBAGE", "FaultProxy", "Mode", "RequestRecord"]

#: Default body for ``garbage``: a 200 whose JSON is cut off mid-object.
DEFAULT_GARBAGE = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":'

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
    }
)

MODES = ("passthrough", "status", "delay", "garbage", "close", "trickle")
Mode = str  # one of MODES


@dataclass(frozen=True)
class RequestRecord:
    """One request seen by the proxy and what was done with it."""

    time: float
    method: str
    path: str
    query: str
    mode: Mode


@dataclass
class ProxyFault:
    mode: Mode = "passthrough"
    code: int = 503
    body: bytes = b""
    content_type: str = "application/json"
    seconds: float = 0.0
    only_paths: re.Pattern[str] | None = None
    remaining: int | None = None


def _is_loopback_host(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections
    disable_nagle_algorithm = True  # a small response otherwise waits ~40 ms for its ACK
    server: ProxyHTTPServer

    # every method goes through the same path
    def do_GET(self) -> None:
        self.serve_request()

    def do_POST(self) -> None:
        self.serve_request()

    def do_PUT(self) -> None:
        self.serve_request()

    def do_PATCH(self) -> None:
        self.serve_request()

    def do_DELETE(self) -> None:
        self.serve_request()

    def do_HEAD(self) -> None:
        self.serve_request()

    def do_OPTIONS(self) -> None:
        self.serve_request()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send_simple(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def serve_request(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        parts = urlsplit(self.path)
        fault = proxy.take_fault(self.command, parts.path, parts.query)
        try:
            if fault is None:
                self._forward(body)
            elif fault.mode == "status":
                self._send_simple(fault.code, fault.body, fault.content_type)
            elif fault.mode == "garbage":
                self._send_simple(200, fault.body, fault.content_type)
            elif fault.mode == "close":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
            elif fault.mode == "delay":
                if proxy.stopping.wait(fault.seconds):
                    self.close_connection = True
                    return
                self._forward(body)
            elif fault.mode == "trickle":
                self._forward(body, trickle=fault.seconds)
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up (e.g. its timeout fired during a delay)
            self.close_connection = True

    def _forward(self, body: bytes, *, trickle: float = 0.0) -> None:
        proxy = self.server.proxy
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("host", "content-length")
        }
        headers["Host"] = proxy.upstream_netloc
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        try:
            conn = proxy.connect()
            conn.request(self.command, proxy.upstream_base + self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._send_simple(502, f"fault proxy: upstream error: {exc}\n".encode(), "text/plain")
            return
        try:
            self._relay(resp, trickle=trickle)
        finally:
            conn.close()

    def _relay(self, resp: http.client.HTTPResponse, *, trickle: float = 0.0) -> None:
        # upstream's own Date/Server headers are relayed, so don't add ours
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        length = resp.getheader("Content-Length")
        if no_body:
            if length is not None and self.command == "HEAD":
                self.send_header("Content-Length", length)
            self.end_headers()
            return
        if length is not None:
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if trickle <= 0:
                self.wfile.write(data)
                return
            for i in range(len(data)):  # a valid answer, one byte at a time
                if self.server.proxy.stopping.wait(trickle):
                    self.close_connection = True
                    return
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
            return
        # unknown length (chunked upstream, e.g. a watch): stream it on chunked
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class ProxyHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: FaultProxy, host: str) -> None:
        self.proxy = proxy
        super().__init__((host, 0), ProxyHandler)


class FaultProxy:
    """Reverse proxy ``http://127.0.0.1:<port>`` → ``upstream`` with switchable faults.

    ``upstream`` is a base URL (``http://127.0.0.1:9090`` or
    ``https://127.0.0.1:6443``; a path prefix is kept). Set faults with
    :meth:`passthrough`, :meth:`status`, :meth:`delay`, :meth:`garbage`,
    :meth:`close_connections` or :meth:`set_mode`; each takes ``only_paths``
    (regex searched in the request path) and ``times`` (apply to the next N
    matching requests, then pass through again).
    """

    def __init__(
        self,
        upstream: str,
        *,
        upstream_timeout: float = 300.0,
        ssl_context: ssl.SSLContext | None = None,
        allow_non_loopback_upstream: bool = False,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL: {upstream!r}")
        if not allow_non_loopback_upstream and not _is_loopback_host(parts.hostname):
            raise ValueError(f"upstream {parts.hostname!r} is not a loopback address")
        self.upstream = upstream
        self.upstream_scheme = parts.scheme
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self.upstream_netloc = parts.netloc
        self.upstream_base = parts.path.rstrip("/")
        self.upstream_timeout = upstream_timeout
        self.ssl_context = ssl_context or (_insecure_context() if parts.scheme == "https" else None)
        self._lock = threading.Lock()
        self._fault = ProxyFault()
        self.stopping = threading.Event()
        self.counts: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.records: list[RequestRecord] = []
        self._server: ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Listen on a random port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is None:
            self.stopping.clear()
            self._server = ProxyHTTPServer(self, "127.0.0.1")
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fault-proxy",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; pending delays end at once."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The listening port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("proxy not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — point the client here instead of the upstream."""
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- faults
    def set_mode(
        self,
        mode: Mode,
        *,
        code: int = 503,
        body: bytes | str = b"",
        content_type: str = "application/json",
        seconds: float = 0.0,
        only_paths: str | None = None,
        times: int | None = None,
    ) -> None:
        """Switch to ``mode``: ``passthrough``, ``status``, ``delay``, ``garbage``, ``close`` or ``trickle``."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        with self._lock:
            self._fault = ProxyFault(
                mode=mode,
                code=code,
                body=body.encode() if isinstance(body, str) else body,
                content_type=content_type,
                seconds=seconds,
                only_paths=re.compile(only_paths) if only_paths else None,
                remaining=times,
            )

    def passthrough(self) -> None:
        """Forward everything unchanged."""
        self.set_mode("passthrough")

    def status(
        self,
        code: int,
        body: bytes | str = b"",
        *,
        content_type: str = "application/json",
        only_paths: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer matching requests with ``code`` and ``body`` (not forwarded)."""
        self.set_mode("status", code=code, body=body, content_type=content_type, only_paths=only_paths, times=times)

    def delay(self, seconds: float, *, only_paths: str | None = None, times: int | None = None) -> None:
        """Hold matching requests ``seconds`` before forwarding them."""
        self.set_mode("delay", seconds=seconds, only_paths=only_paths, times=times)

    def garbage(
        self,
        body: bytes | str = DEFAULT_GARBAGE,
        *,
        content_type: str = "application/json",
        only_paths: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer matching requests 200 with a malformed ``body``."""
        self.set_mode("garbage", body=body, content_type=content_type, only_paths=only_paths, times=times)

    def trickle(self, seconds: float, *, only_paths: str | None = None, times: int | None = None) -> None:
        """Forward matching requests, then send each answer's body one byte every ``seconds``."""
        self.set_mode("trickle", seconds=seconds, only_paths=only_paths, times=times)

    def close_connections(self, *, only_paths: str | None = None, times: int | None = None) -> None:
        """Mode ``close``: drop matching connections without an answer."""
        self.set_mode("close", only_paths=only_paths, times=times)

    @property
    def mode(self) -> Mode:
        """The current mode."""
        with self._lock:
            return self._fault.mode

    def take_fault(self, method: str, path: str, query: str) -> ProxyFault | None:
        with self._lock:
            self.counts[path] += 1
            f = self._fault
            applies = (
                f.mode != "passthrough"
                and (f.only_paths is None or f.only_paths.search(path) is not None)
                and (f.remaining is None or f.remaining > 0)
            )
            if applies and f.remaining is not None:
                f.remaining -= 1
            mode = f.mode if applies else "passthrough"
            if applies:
                self.faulted[path] += 1
            self.records.append(RequestRecord(time.time(), method, path, query, mode))
            if not applies:
                return None
            return ProxyFault(f.mode, f.code, f.body, f.content_type, f.seconds, f.only_paths)

    # ---------------------------------------------------------------- counts
    def count(self, path: str | None = None) -> int:
        """Requests seen for ``path`` (exact), or in total."""
        with self._lock:
            return sum(self.counts.values()) if path is None else self.counts[path]

    def reset_counts(self) -> None:
        """Forget counts and records."""
        with self._lock:
            self.counts.clear()
            self.faulted.clear()
            self.records.clear()

    # -------------------------------------------------------------- upstream
    def connect(self) -> http.client.HTTPConnection:
        if self.upstream_scheme == "https":
            return http.client.HTTPSConnection(
                self.upstream_host,
                self.upstream_port,
                timeout=self.upstream_timeout,
                context=self.ssl_context,
            )
        return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.upstream_timeout)
