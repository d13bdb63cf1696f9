"""Command-line option types: every value is checked where it is parsed, and refused with its name.

Why: an option that reaches the code unchecked fails far from where it was given, as a raw
Python message or a traceback (``--timeout inf`` became "cannot convert float infinity to
integer" inside the HTTP client; ``--until 1e300`` a ``datetime`` overflow; ``--listen
:99999`` an ``OverflowError`` in ``bind``). These are ``argparse`` ``type=`` callables:
``argparse`` turns their :class:`argparse.ArgumentTypeError` into ``argument --timeout:
<reason>``, which the CLI prints as one line (exit 2). Bounds are generous but finite: a
value outside them is a typo, not a setting.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autoscaler.adapters.prometheus import PrometheusConnection
from autoscaler.errors import ConfigError, PolicyRejected
from autoscaler.policy import formats

#: Latest accepted time: the end of year 9999 (``datetime`` cannot go further).
MAX_UNIX_SECONDS = 253402300799.0


def number(
    *, minimum: float, maximum: float, exclusive_minimum: bool = False, integer: bool = False
) -> Callable[[str], float]:
    """A finite number in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``exclusive_minimum``)."""
    low = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if integer and not value.is_integer():
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        if value < minimum or (exclusive_minimum and value == minimum) or value > maximum:
            raise argparse.ArgumentTypeError(f"must be {low} and <= {maximum:g}, got {text!r}")
        return value

    return parse


def whole(*, minimum: int, maximum: int) -> Callable[[str], int]:
    """A whole number in ``[minimum, maximum]``."""
    parse = number(minimum=minimum, maximum=maximum, integer=True)
    return lambda text: int(parse(text))


#: A per-call timeout in seconds.
timeout_seconds = number(minimum=0, maximum=600, exclusive_minimum=True)


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` = all interfaces, ``[::1]:PORT`` for IPv6) with a port 1-65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    number_ = int(port)
    if not 1 <= number_ <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, number_


def url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL with a host, got {text!r}")
    try:
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text


def split_ref(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` as ``(namespace, name)``: the one place such a reference is split.

    Raises:
        ValueError: a part is missing or empty, or there is more than one ``/``.
    """
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"expected NAMESPACE/NAME, got {text!r}")
    return namespace, name


def _ref(kind: str, name_format: str) -> Callable[[str], str]:
    """``NAMESPACE/<kind>``: a valid namespace, then a valid name of format ``name_format``."""

    def parse(text: str) -> str:
        try:
            namespace, name = split_ref(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAMESPACE/{kind}, got {text!r}") from None
        reason = formats.check("dns-label", namespace, {}) or formats.check(name_format, name, {})
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return text

    parse.__doc__ = f"``NAMESPACE/{kind}``, each a valid name of its kind."
    return parse


#: ``NAMESPACE/DEPLOYMENT`` of a target.
target = _ref("DEPLOYMENT", "deployment-name")
#: ``NAMESPACE/NAME`` of a namespaced object (a ConfigMap).
object_ref = _ref("NAME", "dns-subdomain")


def namespace(text: str) -> str:
    """A namespace name (a DNS-1123 label)."""
    reason = formats.check("dns-label", text, {})
    if reason is not None:
        raise argparse.ArgumentTypeError(reason)
    return text


def object_name(text: str) -> str:
    """An object name (a DNS-1123 subdomain), e.g. a Lease."""
    reason = formats.check("dns-subdomain", text, {})
    if reason is not None:
        raise argparse.ArgumentTypeError(reason)
    return text


def duration(*, maximum_seconds: float) -> Callable[[str], str]:
    """A Prometheus duration of at least 1 s and at most ``maximum_seconds`` (kept as written)."""

    def parse(text: str) -> str:
        seconds = formats.duration_seconds(text)
        if seconds is None:
            raise argparse.ArgumentTypeError(f"expected a Prometheus duration such as 14d or 36h, got {text!r}")
        if not 1 <= seconds <= maximum_seconds:
            limit = formats.render_duration(maximum_seconds)
            raise argparse.ArgumentTypeError(f"must be between 1s and {limit}, got {text!r}")
        return text

    return parse


def instant(text: str) -> float:
    """Unix seconds or an ISO 8601 time (UTC when no offset is given), from 1970 to the end of 9999."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected unix seconds or an ISO 8601 time, got {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = moment.timestamp()
    if not 0 <= value <= MAX_UNIX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be a time between 1970 and 9999, got {text!r}")
    return value


def output_dir(text: str) -> Path:
    """A directory to write into: it may not exist yet, but must not be a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is not a directory")
            break
    return path


def readable_file(text: str) -> Path:
    """An existing regular file (a token, a CA bundle, a policy)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a regular file")
    return path


def named(option: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a whole-file problem of the policy it loads is reported as ``option``'s.

    Field problems keep their field path (``targets[0]...``); a problem with the file as a
    whole (unreadable, not a regular file, not YAML) has none, so it is given the option.
    """
    try:
        return fn()
    except PolicyRejected as exc:
        raise PolicyRejected([e if e.path else ConfigError(option, e.reason) for e in exc.errors]) from exc


# --------------------------------------------------------------------- option groups


class _Deprecated(argparse.Action):
    """An old spelling of an option: stores like the new one, after a one-line warning on stderr."""

    def __init__(self, option_strings: Any, dest: str, *, new: str, flag: bool = False, **kwargs: Any) -> None:
        if flag:
            kwargs.update(nargs=0, const=True)
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        """Warn that ``option`` is deprecated (naming the new flag) and store the value under the new flag's name."""
        print(f"warning: {option} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_prometheus_options(parser: argparse.ArgumentParser, *, timeout: float) -> None:
    """Declare the Prometheus connection options (``run``, ``observe`` and ``backtest`` alike).

    Read them back with :func:`prometheus_connection`. The spellings ``observe`` and
    ``backtest`` had before (``--bearer-token-file``, ``--ca-file``,
    ``--insecure-skip-tls-verify``, ``--timeout``) still work, with a warning on stderr.

    Args:
        parser: The subcommand's parser.
        timeout: The default of ``--prometheus-timeout`` in seconds.
    """
    group = parser.add_argument_group("Prometheus")
    group.add_argument("--prometheus-url", required=True, type=url, help="base URL of Prometheus")
    group.add_argument(
        "--prometheus-bearer-token-file", type=readable_file, default=None, help="file holding a bearer token"
    )
    group.add_argument(
        "--prometheus-ca-file", type=readable_file, default=None, help="CA bundle to verify Prometheus' certificate"
    )
    group.add_argument(
        "--prometheus-insecure-skip-tls-verify", action="store_true", help="do not verify Prometheus' certificate"
    )
    group.add_argument(
        "--prometheus-timeout",
        type=timeout_seconds,
        default=timeout,
        help="per-query timeout in seconds, the whole call (default: %(default)g)",
    )
    for old, new, kwargs in (
        ("--bearer-token-file", "--prometheus-bearer-token-file", {"type": readable_file}),
        ("--ca-file", "--prometheus-ca-file", {"type": readable_file}),
        ("--insecure-skip-tls-verify", "--prometheus-insecure-skip-tls-verify", {"flag": True}),
        ("--timeout", "--prometheus-timeout", {"type": timeout_seconds}),
    ):
        group.add_argument(old, action=_Deprecated, new=new, dest=new[2:].replace("-", "_"), **kwargs)


def prometheus_connection(args: argparse.Namespace) -> PrometheusConnection:
    """The connection options :func:`add_prometheus_options` declared, as parsed."""
    return PrometheusConnection(
        url=args.prometheus_url,
        bearer_token_file=args.prometheus_bearer_token_file,
        ca_file=args.prometheus_ca_file,
        verify_tls=not args.prometheus_insecure_skip_tls_verify,
        timeout_seconds=args.prometheus_timeout,
    )


def add_tradeoff_option(parser: argparse.ArgumentParser, *, what: str) -> None:
    """Declare ``--tradeoff [Q1,Q2,...]`` (``simulate`` and ``backtest``); read it with :func:`tradeoff_quantiles`.

    Args:
        parser: The subcommand's parser.
        what: What the command does at each quantile, e.g. "also sweep these forecast quantiles".
    """
    from autoscaler.offline.sim.tradeoff import DEFAULT_QUANTILES

    default = ",".join(f"{q:g}" for q in DEFAULT_QUANTILES)
    parser.add_argument(
        "--tradeoff",
        nargs="?",
        const=default,
        default=None,
        metavar="Q1,Q2,...",
        help=f"{what} (default {default}) and plot SLO attainment vs GPU node-hours",
    )


def tradeoff_quantiles(args: argparse.Namespace) -> tuple[float, ...]:
    """The quantiles ``--tradeoff`` names (none without it).

    Raises:
        ConfigError: a quantile is not a number in (0, 1), or the list is empty.
    """
    from autoscaler.offline.sim.tradeoff import parse_quantiles

    if args.tradeoff is None:
        return ()
    try:
        return parse_quantiles(args.tradeoff)
    except ValueError as exc:
        raise ConfigError("--tradeoff", str(exc)) from exc
