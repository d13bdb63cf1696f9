"""String formats of the policy fields that end up in an object name, a pod spec or a query.

Why: such a field is checked when the policy loads, the way the receiving side would check
it, so a mistake is one clear rejection naming the field instead of a cycle that fails
forever (an HTTP 422 from the API server, an HTTP 400 from Prometheus) or, worse, a query
rewritten by the value (``rateWindow: "2m]) * 0 or vector(1) #"``). A field declares its
format once, in :func:`autoscaler.policy.fields.spec` (``format=``); the loader, the policy
reference and the fuzzer's strategies all read it from there.

The rules, each from its source:

* ``dns-label`` (namespaces): RFC 1123 label as the API server's ``IsDNS1123Label``:
  lower-case alphanumerics and ``-``, alphanumeric at both ends, at most 63 characters.
* ``deployment-name``: a DNS-1123 subdomain (``IsDNS1123Subdomain``: labels joined by
  dots, at most 253 characters) that is also at most 63 characters, because it is the value
  of the placeholder pods' ``autoscaler.gpu/target`` label (label values are at most 63).
* ``priority-class``: a DNS-1123 subdomain not starting with ``system-`` (reserved for the
  built-in classes; the API server refuses to create one).
* ``image``: the OCI/Docker reference grammar of ``distribution/reference``
  (``[domain/]path[:tag][@digest]``, the name at most 255 characters).
* ``model-name``: vLLM's ``--served-model-name`` as it appears in a label value: 1-256
  printable characters, no control characters, no surrounding whitespace.
* ``duration``: a Prometheus duration (``2m``, ``90s``, ``1h30m``: whole numbers, units
  from ``y`` down to ``ms`` in that order), bounded by the field's ``minimum``/``maximum``
  in seconds. The PromQL is built from the parsed seconds, never from the text.
* ``promql``: an expression that can be embedded in another one: no comment (``#`` outside
  a string would swallow what follows it), every string closed, brackets balanced, no
  control characters. Whether it is valid PromQL is Prometheus' to say.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Suffix of a target's placeholder Deployment (``autoscaler.kube.placeholders.SUFFIX``).
PLACEHOLDER_SUFFIX = "-capacity"

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(_LABEL)
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_UNITS = (31536000.0, 604800.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)

# distribution/reference's grammar, written out (reference.go, v0.5.0).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE = re.compile(rf"(?P<name>(?:{_DOMAIN}/)?{_PATH})(?::{_TAG})?(?:@{_DIGEST})?")
_IMAGE_NAME_MAX = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROMQL_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OPEN, _CLOSE = "([{", ")]}"


def duration_seconds(text: str) -> float | None:
    """Seconds in a Prometheus duration, or ``None`` if ``text`` is not one. Pure."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        return None
    return sum(float(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n is not None)


def _dns_label(value: str, _meta: Mapping[str, Any]) -> str | None:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a valid name: a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return None


def _dns_subdomain(value: str) -> str | None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return (
            f"{value!r} is not a valid name: a DNS-1123 subdomain (DNS-1123 labels joined by '.', "
            "at most 253 characters)"
        )
    return None


def _deployment_name(value: str, _meta: Mapping[str, Any]) -> str | None:
    reason = _dns_subdomain(value)
    if reason is None and len(value) > 63:
        return (
            f"{value!r} is longer than 63 characters: it is the value of the placeholder pods' "
            "autoscaler.gpu/target label, and label values are at most 63 characters"
        )
    return reason


def _priority_class(value: str, _meta: Mapping[str, Any]) -> str | None:
    reason = _dns_subdomain(value)
    if reason is None and value.startswith("system-"):
        return f"{value!r} starts with 'system-', which is reserved for the built-in priority classes"
    return reason


def _image(value: str, _meta: Mapping[str, Any]) -> str | None:
    match = _IMAGE.fullmatch(value)
    if match is None:
        return (
            f"{value!r} is not an image reference ([registry[:port]/]path[:tag][@digest], e.g. "
            "vllm/vllm-openai:v0.6.3; the path is lower-case)"
        )
    if len(match.group("name")) > _IMAGE_NAME_MAX:
        return f"the image name is longer than {_IMAGE_NAME_MAX} characters"
    return None


def _model_name(value: str, _meta: Mapping[str, Any]) -> str | None:
    if not value.strip():
        return "must not be empty or only whitespace"
    if value != value.strip():
        return f"{value!r} has leading or trailing whitespace (vLLM's served model name has none)"
    if len(value) > 256:
        return "longer than 256 characters"
    if _CONTROL.search(value):
        return f"{value!r} contains a control character"
    return None


def _duration(value: str, meta: Mapping[str, Any]) -> str | None:
    seconds = duration_seconds(value)
    if seconds is None:
        return f"{value!r} is not a Prometheus duration (whole numbers with units y, w, d, h, m, s, ms: 2m, 90s, 1m30s)"
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None and seconds < lo:
        return f"{value!r} is shorter than {render_duration(lo)}"
    if hi is not None and seconds > hi:
        return f"{value!r} is longer than {render_duration(hi)}"
    return None


def _promql(value: str, _meta: Mapping[str, Any]) -> str | None:
    if not value.strip():
        return "must not be empty"
    if _PROMQL_CONTROL.search(value):
        return "contains a control character"
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(value):
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\" and quote != "`":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'`":
            quote = ch
        elif ch == "#":
            return f"has a comment at character {i + 1} ('#' outside a string hides the rest of the query)"
        elif ch in _OPEN:
            stack.append(_CLOSE[_OPEN.index(ch)])
        elif ch in _CLOSE and (not stack or stack.pop() != ch):
            return f"unbalanced {ch!r} at character {i + 1}"
    if quote is not None:
        return "has a string that is never closed"
    if stack:
        return f"{len(stack)} bracket(s) never closed (expected {''.join(reversed(stack))!r})"
    return None


@dataclass(frozen=True)
class Format:
    """A string format: its check (a reason, or ``None`` when valid) and its description for the reference."""

    check: Callable[[str, Mapping[str, Any]], str | None]
    describe: Callable[[Mapping[str, Any]], str]


def _bounds(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("minimum"), meta.get("maximum")
    parts = [f"≥ {render_duration(lo)}" if lo is not None else "", f"≤ {render_duration(hi)}" if hi is not None else ""]
    return "Prometheus duration" + (" " + ", ".join(p for p in parts if p) if any(parts) else "")


FORMATS: dict[str, Format] = {
    "dns-label": Format(_dns_label, lambda _m: "DNS-1123 label (≤ 63 characters)"),
    "dns-subdomain": Format(lambda v, _m: _dns_subdomain(v), lambda _m: "DNS-1123 subdomain"),
    "deployment-name": Format(_deployment_name, lambda _m: "DNS-1123 subdomain, ≤ 63 characters"),
    "priority-class": Format(_priority_class, lambda _m: "DNS-1123 subdomain, not `system-*`"),
    "image": Format(_image, lambda _m: "OCI image reference"),
    "model-name": Format(_model_name, lambda _m: "1-256 printable characters"),
    "duration": Format(_duration, _bounds),
    "promql": Format(_promql, lambda _m: "PromQL expression (no comments, balanced brackets)"),
}


def check(fmt: str, value: str, meta: Mapping[str, Any]) -> str | None:
    """Why ``value`` is not in format ``fmt`` (``None`` when it is). Pure.

    Raises:
        KeyError: an unknown format (a schema bug, found by the tests).
    """
    return FORMATS[fmt].check(value, meta)


def render_duration(seconds: float) -> str:
    """A Prometheus duration for ``seconds``: whole seconds, else whole milliseconds. Pure."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"
