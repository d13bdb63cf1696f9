"""``PrometheusClient``: one Prometheus query, ended by its deadline and answered in our error types.

Why: every call the source makes must end by its timeout whatever the server does (see
:mod:`autoscaler.adapters.prometheus.transport`: a trickled body cannot stretch it), and
every way it can fail (refused, timed out, TLS, 4xx/5xx, junk) must reach the control loop
as an :mod:`autoscaler.errors` type, never as a library exception. The first transport
failure (refused, timed out) opens a breaker: every later call fails at once
(:class:`NotSent`) until the source's next loop closes it, so a hung server costs one
timeout per loop, not one per query, history load or lead-time query.

Talks to Prometheus with ``prometheus_api_client.PrometheusConnect`` without its retries
(the loop retries next cycle), TLS verification on by default (optionally a custom CA file)
and a bearer token re-read from its file when it changes (projected service-account tokens
rotate). The token is never logged. Every answer is read through
:mod:`autoscaler.adapters.prometheus.answers`, which refuses anything the HTTP API does not document.
"""

from __future__ import annotations

import math
import re
import ssl
import threading
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, cast

import requests
import urllib3
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from autoscaler.adapters.prometheus import answers
from autoscaler.adapters.prometheus.answers import Sample
from autoscaler.adapters.prometheus.transport import DEFAULT_MAX_BYTES, AnswerRejected, DeadlineAdapter
from autoscaler.errors import MetricsInvalid, MetricsMalformed, MetricsUnavailable

T = TypeVar("T")
_HTTP_STATUS = re.compile(r"HTTP Status Code (\d+)")


def transport_failure(exc: BaseException) -> bool:
    """True when Prometheus could not be reached at all (not merely a bad answer).

    Follows the ``__cause__`` chain, so a call refused by the open breaker (caused by the
    failure that opened it) counts too.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            return True
        cause = cause.__cause__
    return False


class NotSent(MetricsUnavailable):
    """A call that was not sent: the breaker was open, or the loop's budget was spent."""

    @property
    def kind(self) -> str:
        """Reported like any query Prometheus did not answer (``metrics_unavailable``)."""
        return "metrics_unavailable"


#: Largest bearer token file read (service-account tokens are ~1 KB).
_MAX_TOKEN_BYTES = 64 * 1024


class _BearerToken:
    """A bearer token read from a file, re-read when the file changes (rotation)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        # Empty until the token file is read (bandit B105 takes it for a hard-coded password).
        self._token = ""  # nosec B105
        self._lock = threading.Lock()

    def header(self) -> dict[str, str]:
        """``{"Authorization": "Bearer …"}`` with the file's current token.

        Raises:
            MetricsUnavailable: if the file cannot be read or is empty (content never shown).
        """
        with self._lock:
            try:
                st = self.path.stat()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp != self._stamp:
                    with self.path.open("rb") as f:
                        raw = f.read(_MAX_TOKEN_BYTES + 1)
                    if len(raw) > _MAX_TOKEN_BYTES:
                        raise MetricsUnavailable(f"the bearer token file {self.path} is larger than 64 KiB")
                    self._token = raw.decode("utf-8", "replace").strip()
                    self._stamp = stamp
            except OSError as exc:
                raise MetricsUnavailable(f"cannot read the bearer token file {self.path}: {exc.strerror}") from exc
            if not self._token:
                raise MetricsUnavailable(f"the bearer token file {self.path} is empty")
            return {"Authorization": f"Bearer {self._token}"}

    def scrub(self, text: str) -> str:
        """``text`` with the token masked (an error body may echo the request's headers)."""
        return text.replace(self._token, "***") if self._token else text


class PrometheusClient:
    """``PrometheusConnect`` with our deadlines, auth, breaker and error types, counting its queries.

    Thread-safe: the per-target override queries of a loop run a few at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        bearer_token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        verify_tls: bool = True,
        timeout_seconds: float = 10.0,
        max_answer_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if not 0 < timeout_seconds < math.inf:
            raise ValueError(f"timeout_seconds must be a finite number > 0, got {timeout_seconds!r}")
        session = requests.Session()
        # PrometheusConnect passes session.verify with every request, which (unlike a
        # session default) wins over REQUESTS_CA_BUNDLE from the environment.
        session.verify = str(ca_file) if ca_file is not None else verify_tls
        self._verify = bool(session.verify)
        self._token = _BearerToken(bearer_token_file) if bearer_token_file is not None else None
        self.timeout_seconds = timeout_seconds
        self.url = url.rstrip("/")
        self.queries = 0
        self._lock = threading.Lock()
        #: The transport failure that opened the breaker (``None``: closed).
        self._down: MetricsUnavailable | None = None
        self._prom = PrometheusConnect(
            url=self.url,
            session=session,
            retry=Retry(total=0, read=False, raise_on_status=False),
            # requests takes float seconds; the library annotates int
            timeout=cast("int", timeout_seconds),
        )
        # Replaces the adapter PrometheusConnect mounted: the same (absent) retries, plus a
        # deadline on the whole call and a bounded answer.
        session.mount(
            self.url,
            DeadlineAdapter(
                max_bytes=max_answer_bytes,
                connect_timeout=min(5.0, timeout_seconds),
                max_retries=Retry(total=0, read=False, raise_on_status=False),
            ),
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._prom.close()

    def reset_breaker(self) -> None:
        """Close the breaker: the next call is sent even if the last one found Prometheus down."""
        with self._lock:
            self._down = None

    def _server_timeout(self, seconds: float) -> str:
        """The server-side query timeout as a Prometheus duration.

        Whole milliseconds: Prometheus durations take no fractions ("1.5s" is refused with
        HTTP 400, which would fail every query of a controller run with a fractional
        ``--prometheus-timeout``).
        """
        return f"{max(1, round(seconds * 1000))}ms"

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout_seconds if timeout is None else max(0.001, min(self.timeout_seconds, timeout))

    def instant(self, name: str, expr: str, *, at: float, timeout: float | None = None) -> list[Sample]:
        """An instant query.

        Args:
            name: What the query is for (used in error messages and logs).
            expr: The PromQL expression.
            at: Evaluation time (unix seconds).
            timeout: Seconds for this call (default and upper bound: ``timeout_seconds``).

        Returns:
            The answer's samples (vector results), every field checked.

        Raises:
            MetricsUnavailable: no answer, 5xx/429, an auth failure, or the breaker is open.
            MetricsMalformed: an answer that is not a valid instant-query answer.
            MetricsInvalid: Prometheus rejected the query (4xx).
        """
        seconds = self._timeout(timeout)
        params = {"time": f"{at:.3f}", "timeout": self._server_timeout(seconds)}
        result = self._call(
            name, lambda: self._prom.custom_query(expr, params=params, timeout=cast("int", seconds)), seconds=seconds
        )
        return answers.instant_samples(name, result)

    def range_query(
        self, name: str, expr: str, *, start: float, end: float, step: int
    ) -> list[tuple[dict[str, str], list[answers.Point]]]:
        """A range query.

        Args:
            name: What the query is for (used in error messages and logs).
            expr: The PromQL expression.
            start: First evaluation time (unix seconds, whole seconds).
            end: Last evaluation time.
            step: Seconds between evaluations.

        Returns:
            ``(labels, [(time, value), …])`` per series, every field checked.

        Raises:
            MetricsUnavailable: as :meth:`instant`.
            MetricsMalformed: an answer that is not a valid range-query answer.
            MetricsInvalid: as :meth:`instant` (e.g. more than 11,000 points).
        """
        params = {"timeout": self._server_timeout(self.timeout_seconds)}
        result = self._call(
            name,
            lambda: self._prom.custom_query_range(
                expr,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=f"{step}s",
                params=params,
                timeout=cast("int", self.timeout_seconds),
            ),
            seconds=self.timeout_seconds,
        )
        return answers.range_series(name, result)

    def _call(self, name: str, fn: Callable[[], T], *, seconds: float) -> T:
        with self._lock:
            down = self._down
        if down is not None:
            raise NotSent(f"{name}: not sent: {down}") from down
        with self._lock:
            self.queries += 1
        if self._token is not None:
            self._prom.headers = self._token.header()
        try:
            with warnings.catch_warnings():
                if not self._verify:  # the operator chose --insecure-skip-tls-verify; say it once, not per query
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return fn()
        except requests.exceptions.JSONDecodeError as exc:
            raise MetricsMalformed(f"{name}: malformed JSON from Prometheus") from exc
        except RecursionError as exc:
            raise MetricsMalformed(f"{name}: JSON from Prometheus nested too deeply to read") from exc
        except AnswerRejected as exc:
            raise MetricsMalformed(f"{name}: {exc}") from exc
        except requests.Timeout as exc:
            raise self._open(MetricsUnavailable(f"{name}: no answer within {seconds:g}s"), exc) from exc
        except requests.exceptions.SSLError as exc:
            error = MetricsUnavailable(f"{name}: cannot connect to {self.url} (SSLError: {_ssl_reason(exc)})")
            raise self._open(error, exc) from exc
        except requests.ConnectionError as exc:
            error = MetricsUnavailable(f"{name}: cannot connect to {self.url} ({type(exc).__name__})")
            raise self._open(error, exc) from exc
        except requests.RequestException as exc:
            raise MetricsUnavailable(f"{name}: request failed ({type(exc).__name__})") from exc
        except PrometheusApiClientException as exc:
            text = str(exc)
            match = _HTTP_STATUS.match(text)
            code = int(match.group(1)) if match else 0
            body = text[match.end() if match else 0 :]
            body = self._token.scrub(body) if self._token is not None else body
            detail = f"{name}: Prometheus answered HTTP {code}:{body[:200]}"
            if 400 <= code < 500 and code not in (401, 403, 404, 408, 429):
                raise MetricsInvalid(detail) from exc
            raise MetricsUnavailable(detail) from exc
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # PrometheusConnect reads data.result itself: a body without it lands here.
            raise MetricsMalformed(f"{name}: malformed answer from Prometheus (no data.result)") from exc

    def _open(self, error: MetricsUnavailable, cause: BaseException) -> MetricsUnavailable:
        """Open the breaker with ``error`` (a transport failure) and return it, chained to ``cause``."""
        error.__cause__ = cause
        with self._lock:
            self._down = error
        return error


def _ssl_reason(exc: BaseException) -> str:
    """The innermost TLS reason of a ``requests`` SSL error (e.g. ``certificate verify failed``)."""
    cause: BaseException | None = exc
    while cause is not None:
        reason = getattr(cause, "reason", None)
        if isinstance(cause, ssl.SSLError) and isinstance(reason, str):
            return reason
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__
