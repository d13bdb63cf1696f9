"""The one place a Prometheus query answer is read: every field checked, anything else refused.

Why: ``prometheus_api_client`` hands back ``data.result`` as whatever JSON the server sent.
Reading it directly (``float(r["value"][1])``) lets a broken or hostile server, or a proxy in
front of it, reach the control loop with raw Python errors: a ``null`` timestamp is a
``TypeError``, ``"abc"`` a ``ValueError``, a metric given as a string an ``AttributeError``,
none of them ``MetricsError``, so one bad answer could fail a whole cycle for every target.
This module is to Prometheus answers what :func:`autoscaler.kube.client.translate` is to
API-server errors: it turns them into our types or into :class:`~autoscaler.errors.MetricsMalformed`
naming the field, e.g. ``load_history: result[0].values[17][0]: timestamp is null``.

The rules follow the HTTP API's documented shapes (``/api/v1/query`` and ``query_range``):

* ``result`` is a list; each element a mapping with ``metric`` (label names to label
  values, both strings) and ``value`` (instant) or ``values`` (range);
* a point is a two-element list ``[timestamp, "value"]``: the timestamp a JSON number of
  unix seconds, finite and within :data:`MAX_TIMESTAMP` (a microsecond or nanosecond
  timestamp is refused, not read as the year 50,000); the value a *string* in Prometheus'
  float syntax, so ``"NaN"`` and ``"+Inf"`` are kept (the split per target decides what they
  mean) while ``null``, ``""``, ``"abc"``, ``"1_000"`` or a bare number are refused.

Pure: no IO. The size and nesting depth of the JSON are bounded before it gets here (the
transport caps the body, and the parser's recursion limit is caught by the client).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.errors import MetricsError, MetricsMalformed

#: Latest plausible sample time (unix seconds; ~year 5138). Anything larger is another unit.
MAX_TIMESTAMP = 1e11
#: Prometheus' float syntax (Go's strconv.FormatFloat output, and the special values).
_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf|NaN)")
#: Longest value text quoted back in an error message.
_QUOTE = 40

Point = tuple[float, float]


@dataclass(frozen=True)
class Sample:
    """One element of an instant-query answer: its labels, sample time and value."""

    labels: Mapping[str, str]
    time: float
    value: float


#: A query's samples, or why there are none.
Answer = list[Sample] | MetricsError


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return repr(value[:_QUOTE]) + ("…" if len(value) > _QUOTE else "")
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _fail(name: str, where: str, reason: str) -> MetricsMalformed:
    return MetricsMalformed(f"{name}: malformed answer: {where}: {reason}")


def _labels(name: str, where: str, metric: Any) -> dict[str, str]:
    if not isinstance(metric, Mapping):
        raise _fail(name, f"{where}.metric", f"expected a mapping of labels, got {_describe(metric)}")
    labels: dict[str, str] = {}
    for key, value in metric.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise _fail(name, f"{where}.metric", f"label {_describe(key)} has the value {_describe(value)}")
        labels[key] = value
    return labels


def point(name: str, where: str, raw: Any) -> Point:
    """One ``[timestamp, "value"]`` pair as floats.

    Pure. Args:
        name: What the query is for (for the message).
        where: The pair's place in the answer, e.g. ``result[0].value``.
        raw: The decoded JSON.

    Returns:
        ``(timestamp, value)``; the value may be NaN or ±Inf (Prometheus' own special values).

    Raises:
        MetricsMalformed: naming the field and what it holds.
    """
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise _fail(name, where, f"expected [timestamp, value], got {_describe(raw)}")
    stamp, text = raw
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise _fail(name, f"{where}[0]", f"timestamp is {_describe(stamp)}, not a number")
    if not math.isfinite(stamp) or not 0 <= stamp <= MAX_TIMESTAMP:
        raise _fail(name, f"{where}[0]", f"timestamp {stamp!r} is not unix seconds")
    if not isinstance(text, str) or _FLOAT.fullmatch(text) is None:
        raise _fail(name, f"{where}[1]", f"value is {_describe(text)}, not a number in a string")
    return float(stamp), float(text)


def _series(name: str, result: Any) -> Sequence[Any]:
    if not isinstance(result, list):
        raise _fail(name, "result", f"expected a list of series, got {_describe(result)}")
    return result


def _element(name: str, where: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _fail(name, where, f"expected a series (a mapping), got {_describe(raw)}")
    return raw


def instant_samples(name: str, result: Any) -> list[Sample]:
    """The samples of an instant query's ``data.result`` (a vector).

    Pure. Args:
        name: What the query is for (for messages).
        result: ``data.result`` as decoded from JSON.

    Returns:
        One :class:`Sample` per series.

    Raises:
        MetricsMalformed: the first field that is not what the API documents.
    """
    samples = []
    for i, raw in enumerate(_series(name, result)):
        where = f"result[{i}]"
        element = _element(name, where, raw)
        labels = _labels(name, where, element.get("metric"))
        stamp, value = point(name, f"{where}.value", element.get("value"))
        samples.append(Sample(labels=labels, time=stamp, value=value))
    return samples


def range_series(name: str, result: Any) -> list[tuple[dict[str, str], list[Point]]]:
    """The series of a range query's ``data.result`` (a matrix).

    Pure. Args:
        name: What the query is for (for messages).
        result: ``data.result`` as decoded from JSON.

    Returns:
        ``(labels, [(timestamp, value), …])`` per series.

    Raises:
        MetricsMalformed: the first field that is not what the API documents.
    """
    out = []
    for i, raw in enumerate(_series(name, result)):
        where = f"result[{i}]"
        element = _element(name, where, raw)
        labels = _labels(name, where, element.get("metric"))
        values = element.get("values")
        if not isinstance(values, list):
            raise _fail(name, f"{where}.values", f"expected a list of points, got {_describe(values)}")
        out.append((labels, [point(name, f"{where}.values[{k}]", p) for k, p in enumerate(values)]))
    return out
