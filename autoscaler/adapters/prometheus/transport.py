"""HTTP for the Prometheus client: a deadline on the whole call and a bounded answer.

Why: ``requests`` (under ``prometheus_api_client``) applies its timeout to each socket
operation, not to the call. A server that trickles a valid body, one byte every half second,
never trips a 2 s read timeout and holds the call for as long as it likes; a control loop
stuck there scales nothing. And the body is read whole into memory before anyone looks at
it, however large. :class:`DeadlineAdapter` is a ``requests`` transport adapter (mounted on
the client's session, so ``PrometheusConnect`` keeps doing the requests) that:

* gives every call one deadline, the timeout it was called with: a watchdog timer shuts the
  call's socket down when it passes, which ends a blocked connect, TLS handshake, header or
  body read at once, and the call fails with :class:`DeadlineExceeded` (a ``requests``
  timeout, so callers treat it as "no answer");
* reads the body itself, in chunks, and refuses one above ``max_bytes`` with
  :class:`AnswerRejected` before reading the rest.

The sockets a call uses are found through a thread-local "current call" that the adapter's
own connection classes register their sockets with (on connect, and when a pooled
connection is reused for a response), so connection pooling and TLS stay ``urllib3``'s.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: Largest answer read from Prometheus (a 1,000-target batched answer is ~0.5 MB; a range
#: query of 11,000 points per series, with a few series, a few MB).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Bytes read per chunk (also bounds what one chunk of a compressed body can inflate to).
_CHUNK = 64 * 1024


class DeadlineExceeded(requests.Timeout):
    """The call did not complete (connect, send, headers and the whole body) within its deadline."""


class AnswerRejected(requests.RequestException):
    """The server answered, but the answer is unusable before parsing (too large)."""


class _Call:
    """One call's deadline and the sockets to shut down when it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: Any) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it already has)."""
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def expire(self) -> None:
        """The deadline passed: end every blocked operation of the call."""
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for a TLS socket: SSLSocket.shutdown would drop its
    # SSL object under a read in progress in the calling thread; this only wakes that read.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()


def _watch(sock: Any) -> None:
    call: _Call | None = getattr(_current, "call", None)
    if call is not None:
        call.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self) -> Any:
        _watch(self.sock)  # a reused keep-alive connection registers here
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # the TCP socket: covers the TLS handshake
        return sock

    def getresponse(self) -> Any:
        _watch(self.sock)  # the TLS socket (wrapping detaches the TCP one)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS: Mapping[str, Any] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A transport adapter whose calls end by their timeout, and whose answers are bounded.

    Args:
        max_bytes: Largest body accepted.
        connect_timeout: Longest TCP connect (never more than the call's deadline).
        **kwargs: Passed to :class:`requests.adapters.HTTPAdapter` (e.g. ``max_retries``).
    """

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, connect_timeout: float = 5.0, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager with connections that register their sockets."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Proxied calls (``HTTPS_PROXY``) get the same deadline."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    def send(  # noqa: PLR0917  # requests calls it with these positional parameters
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request``; ``timeout`` (seconds, or ``(connect, total)``) is the whole call's deadline.

        Raises:
            DeadlineExceeded: the deadline passed before the whole answer was read.
            AnswerRejected: the body is larger than ``max_bytes``.
            requests.RequestException: any other transport failure, as ``requests`` raises it.
        """
        total = _total_seconds(timeout)
        call = _Call(total)
        timer = threading.Timer(total, call.expire)
        timer.daemon = True
        previous = getattr(_current, "call", None)
        _current.call = call
        timer.start()
        try:
            try:
                response = super().send(
                    request,
                    stream=True,
                    timeout=(min(self.connect_timeout, total), total),
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
                body = self._read(response)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if call.expired:
                    raise DeadlineExceeded(f"no complete answer within {total:g}s", request=request) from exc
                if isinstance(exc, requests.RequestException):
                    raise
                raise requests.ConnectionError(exc, request=request) from exc
        finally:
            timer.cancel()
            _current.call = previous
        response._content = body
        response._content_consumed = True
        return response

    def _read(self, response: requests.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = response.raw.read(_CHUNK, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_bytes:
                response.close()
                raise AnswerRejected(f"answer larger than {self.max_bytes} bytes", response=response)
            chunks.append(chunk)
        response.raw.release_conn()  # read to the end: the connection can serve the next call
        return b"".join(chunks)


def _total_seconds(timeout: Any) -> float:
    """The call's deadline from what ``requests`` passes: seconds, or the last of a tuple."""
    if isinstance(timeout, tuple):
        timeout = timeout[-1]
    if isinstance(timeout, urllib3.Timeout):
        timeout = timeout.total if timeout.total is not None else timeout.read_timeout
    if not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
        raise ValueError(f"a Prometheus call needs a finite positive timeout, got {timeout!r}")
    return float(timeout)
