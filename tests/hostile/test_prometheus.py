"""A hostile Prometheus: every bad answer is "unknown" with its kind, in bounded time, for one target only.

Why: the source's callers (the control loop, ``observe``, ``backtest``) rely on two promises:
nothing but :class:`~autoscaler.errors.MetricsError` comes out of it, and no call outlives
its timeout. Each test scripts the hostile server (``server.py``) to break one promise the
way a broken server, exporter or proxy would, and checks that it holds: the field named, the
kind right, the time bounded, the other targets unaffected.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest

from autoscaler.adapters.prometheus import PrometheusSource, answers
from autoscaler.adapters.prometheus.client import NotSent, PrometheusClient
from autoscaler.errors import MetricsMalformed, MetricsUnavailable
from autoscaler.policy.schema import Metrics, Target
from tests.hostile.server import (
    HostileServer,
    Reply,
    as_json,
    by_query,
    matrix,
    nested,
    success,
    vector,
)

T = Target(namespace="llm", deployment="vllm")
LABELS = {"namespace": "llm", "deployment": "vllm", "model_name": "m"}


# ------------------------------------------------------------------ the parsing boundary
def _instant(value: Any = None, **element: Any) -> list[Any]:
    base: dict[str, Any] = {"metric": dict(LABELS), "value": [1_700_000_000.5, "1"]}
    if value is not None:
        base["value"] = value
    base.update(element)
    return [base]


BAD_INSTANT = [
    ({"a": 1}, "result: expected a list of series, got a mapping"),
    ("vector", "result: expected a list of series, got 'vector'"),
    (["x"], "result[0]: expected a series (a mapping), got 'x'"),
    ([None], "result[0]: expected a series (a mapping), got null"),
    (_instant(metric="abc"), "result[0].metric: expected a mapping of labels, got 'abc'"),
    (_instant(metric=None), "result[0].metric: expected a mapping of labels, got null"),
    (_instant(metric={"a": 1}), "result[0].metric: label 'a' has the value the number 1"),
    (_instant(metric={"a": None}), "result[0].metric: label 'a' has the value null"),
    (_instant(metric={"a": {"b": "c"}}), "result[0].metric: label 'a' has the value a mapping"),
    ([{"metric": {}}], "result[0].value: expected [timestamp, value], got null"),
    (_instant([1.0]), "result[0].value: expected [timestamp, value], got a list"),
    (_instant([1.0, "1", 2]), "result[0].value: expected [timestamp, value], got a list"),
    (_instant("1"), "result[0].value: expected [timestamp, value], got '1'"),
    (_instant([None, "1"]), "result[0].value[0]: timestamp is null, not a number"),
    (_instant(["1700000000", "1"]), "result[0].value[0]: timestamp is '1700000000', not a number"),
    (_instant([True, "1"]), "result[0].value[0]: timestamp is a boolean, not a number"),
    (_instant([math.nan, "1"]), "result[0].value[0]: timestamp nan is not unix seconds"),
    (_instant([math.inf, "1"]), "result[0].value[0]: timestamp inf is not unix seconds"),
    (_instant([-5, "1"]), "result[0].value[0]: timestamp -5 is not unix seconds"),
    (_instant([1.7e15, "1"]), "result[0].value[0]: timestamp 1700000000000000.0 is not unix seconds"),
    (_instant([1.0, None]), "result[0].value[1]: value is null, not a number in a string"),
    (_instant([1.0, ""]), "result[0].value[1]: value is '', not a number in a string"),
    (_instant([1.0, "abc"]), "result[0].value[1]: value is 'abc', not a number in a string"),
    (_instant([1.0, "1_000"]), "result[0].value[1]: value is '1_000', not a number in a string"),
    (_instant([1.0, " 1"]), "result[0].value[1]: value is ' 1', not a number in a string"),
    (_instant([1.0, "0x10"]), "result[0].value[1]: value is '0x10', not a number in a string"),
    (_instant([1.0, 5]), "result[0].value[1]: value is the number 5, not a number in a string"),
    (_instant([1.0, math.nan]), "result[0].value[1]: value is the number nan, not a number in a string"),
    (_instant([1.0, ["1"]]), "result[0].value[1]: value is a list, not a number in a string"),
    (_instant([1.0, "x" * 500]), "value is 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'…, not"),  # quoted, shortened
]


@pytest.mark.parametrize(("result", "message"), BAD_INSTANT, ids=[m[:48] for _, m in BAD_INSTANT])
def test_instant_answer_fields_are_checked(result: Any, message: str) -> None:
    """Each malformed field of an instant answer is refused with its place in the answer."""
    with pytest.raises(MetricsMalformed) as err:
        answers.instant_samples("running", result)
    assert message in str(err.value)
    assert str(err.value).startswith("running: malformed answer: ")
    assert err.value.kind == "metrics_malformed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1.0), ("-0.25", -0.25), (".5", 0.5), ("1e-3", 0.001), ("2.5E+2", 250.0), ("+Inf", math.inf),
     ("-Inf", -math.inf), ("NaN", math.nan)],
)  # fmt: skip
def test_prometheus_float_syntax_is_kept(text: str, expected: float) -> None:
    """Prometheus' own special values survive the boundary: what they mean is decided per signal."""
    (sample,) = answers.instant_samples("x", _instant([1_700_000_000, text]))
    assert sample.value == expected or (math.isnan(expected) and math.isnan(sample.value))
    assert sample.labels == LABELS and sample.time == 1_700_000_000


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([{"metric": LABELS}], "result[0].values: expected a list of points, got null"),
        ([{"metric": LABELS, "values": "x"}], "result[0].values: expected a list of points, got 'x'"),
        ([{"metric": LABELS, "values": [[1, "1"], [2, "2"], [None, "3"]]}],
         "result[0].values[2][0]: timestamp is null"),
        ([{"metric": LABELS, "values": [[1, "1"], [2]]}], "result[0].values[1]: expected [timestamp, value]"),
        ([{"metric": "x", "values": []}], "result[0].metric: expected a mapping of labels"),
    ],
)  # fmt: skip
def test_range_answer_fields_are_checked(result: Any, message: str) -> None:
    """A range answer's points are checked one by one; the bad one is named."""
    with pytest.raises(MetricsMalformed, match=message.replace("[", r"\[").replace("]", r"\]")):
        answers.range_series("load_history", result)


# --------------------------------------------------------------------------- deadlines
SLOW_BODY = bytes(as_json({"status": "success", "data": {"resultType": "vector", "result": []}}))


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=SLOW_BODY, interval=0.25),  # a valid body, one byte every 0.25 s (~15 s in all)
        Reply(body=SLOW_BODY, header_interval=0.25),  # the status line and headers trickled
        Reply(hang=True),  # the request is read, nothing is ever answered
        Reply(body=SLOW_BODY, delay=30.0),
    ],
    ids=["trickled-body", "trickled-headers", "hang", "late"],
)
def test_a_call_ends_by_its_timeout_whatever_the_server_does(hostile: HostileServer, reply: Reply) -> None:
    """No answer within the timeout is a timeout, measured on the whole call, not per socket read."""
    hostile.set(reply)
    client = PrometheusClient(hostile.url, timeout_seconds=1.0)
    began = time.monotonic()
    with pytest.raises(MetricsUnavailable, match=r"no answer within 1s"):
        client.instant("running", "x", at=time.time())
    assert time.monotonic() - began < 2.0
    # The breaker is open: the next call is not even sent.
    began = time.monotonic()
    with pytest.raises(NotSent, match="not sent"):
        client.instant("waiting", "y", at=time.time())
    assert time.monotonic() - began < 0.1
    assert len(hostile.requests) == 1
    client.reset_breaker()
    hostile.set(vector(LABELS, "3"))
    assert client.instant("running", "x", at=time.time())[0].value == 3.0  # and it recovers


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=b'{"status":"success","data":{"result":[' + b'{"metric":{},"value":[1,"1"]},' * 4000 + b"]}}"),
         "answer larger than 100000 bytes"),
        (Reply(body=b"[" * 2_000_000, unbounded=True), "answer larger than 100000 bytes"),
        (Reply(body=nested(20_000)), "nested too deeply"),
        (Reply(body=b"<html><body>Please log in</body></html>", content_type="text/html"), "malformed JSON"),
        (Reply(body=b'{"status":"success"}'), "no data.result"),
        (Reply(body=b'{"status":"success","data":null}'), "no data.result"),
        (Reply(body=b'{"status":"success","data":{"result":[{"metric":{},"value":[NaN,"1"]}]}}'), "not unix seconds"),
        (Reply(body=b'{"status":"success","data":{"result":[{"metric":{},"value":[1,Infinity]}]}}'),
         "not a number in a string"),
    ],
    ids=["large", "unbounded", "nested", "html", "no-data", "null-data", "nan-literal", "inf-literal"],
)  # fmt: skip
def test_junk_is_malformed_not_a_crash(hostile: HostileServer, reply: Reply, message: str) -> None:
    """Oversized, deeply nested, non-JSON and shapeless answers are MetricsMalformed; the breaker stays closed."""
    hostile.set(reply)
    client = PrometheusClient(hostile.url, timeout_seconds=5.0, max_answer_bytes=100_000)
    with pytest.raises(MetricsMalformed, match=message):
        client.instant("running", "x", at=time.time())
    hostile.set(vector(LABELS, "2"))
    assert client.instant("running", "x", at=time.time())[0].value == 2.0  # an answer is not an outage


def _overrides(n: int) -> tuple[Target, ...]:
    return tuple(
        Target(namespace="llm", deployment=f"vllm-{i}", metrics=Metrics(arrival_rate_query=f"sum(rate(gw_{i}[1m]))"))
        for i in range(n)
    )


def test_a_hung_server_costs_one_timeout_per_loop_whatever_the_targets(hostile: HostileServer) -> None:
    """14 batched queries and one override query per target: the first timeout ends them all."""
    hostile.set(Reply(hang=True))
    source = PrometheusSource(hostile.url, timeout_seconds=1.0)
    targets = _overrides(20)
    began = time.monotonic()
    snaps = source.observe(targets, time.time())
    elapsed = time.monotonic() - began
    assert elapsed < 2.0, elapsed
    assert source.last_loop.queries == 1 and len(hostile.requests) == 1
    assert all(s.load is None and s.problems["load"] == "metrics_unavailable" for s in snaps.values())
    # History and lead times of the same loop fail at once too (the controller's seeding, observe).
    began = time.monotonic()
    with pytest.raises(MetricsUnavailable):
        source.load_history(targets[0], start=time.time() - 3600, end=time.time() - 600, step=300)
    assert source.lead_times(targets[0], time.time()) is None
    assert time.monotonic() - began < 0.5
    problem = source.last_loop.problem(hostile.url)
    assert problem is not None and problem.startswith(f"Prometheus at {hostile.url} did not answer any query (")
    assert problem.endswith(": no answer within 1s)"), problem


def test_overrides_are_sent_a_few_at_a_time(hostile: HostileServer) -> None:
    """Per-target override queries run concurrently: 16 slow answers cost about two answer times, not 16."""
    slow = Reply(body=vector(LABELS).body, delay=0.5)
    hostile.set(by_query(success([]), gw_=slow))
    source = PrometheusSource(hostile.url, timeout_seconds=5.0)
    began = time.monotonic()
    snaps = source.observe(_overrides(16), time.time())
    elapsed = time.monotonic() - began
    assert 1.0 <= elapsed < 4.0, elapsed  # 16 / 8 at a time x 0.5 s, plus the batched queries
    assert all(s.load == 1.0 for s in snaps.values())  # each override's single series is its target's load


def test_the_loop_budget_bounds_a_slow_server(hostile: HostileServer) -> None:
    """Each answer takes 0.4 s (under the 1 s timeout): the 2 s budget stops the loop after ~5 of 14."""
    hostile.set(Reply(body=vector(LABELS).body, delay=0.4))
    source = PrometheusSource(hostile.url, timeout_seconds=1.0, loop_budget_seconds=2.0)
    began = time.monotonic()
    snap = source.observe([T], time.time())[T.key]
    assert time.monotonic() - began < 3.0
    assert 3 <= source.last_loop.queries <= 6, source.last_loop
    assert snap.problems.get("gpu_engine_active") == "metrics_unavailable"  # the last query was not sent
    assert "not sent" in source.last_loop.details[T.key]["gpu_engine_active"]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=500, body=b"internal error"),
        Reply(status=429, body=b"slow down", headers={"Retry-After": "30"}),
        Reply(body=b"not json at all"),
        success([{"metric": "junk", "value": None}]),
    ],
    ids=["500", "429", "200-junk", "200-shapeless"],
)
def test_an_answering_server_is_not_called_unreachable(hostile: HostileServer, reply: Reply) -> None:
    """A server that answers every query with errors or junk is reported as such, not as silent."""
    hostile.set(reply)
    source = PrometheusSource(hostile.url, timeout_seconds=2.0)
    source.observe([T], time.time())
    loop = source.last_loop
    assert loop.queries == 14 and loop.responded == 14 and loop.answered == 0
    assert not loop.unreachable and loop.useless
    problem = loop.problem(hostile.url)
    assert problem is not None and "answered every query with an error or an unusable answer" in problem
    assert "did not answer" not in problem


# ----------------------------------------------------------------------------- history
def test_history_refuses_bad_points_and_negative_load(hostile: HostileServer) -> None:
    """A null timestamp fails the history (named); negative, NaN and Inf buckets are refused, the rest kept."""
    now = time.time()
    start = math.floor((now - 7200) / 300) * 300

    def points(bad: Any) -> list[list[Any]]:
        return [[start + 300 * (k + 1), "5"] for k in range(10)] + [bad]

    source = PrometheusSource(hostile.url, timeout_seconds=2.0)
    hostile.set(matrix(LABELS, points([None, "5"])))
    with pytest.raises(MetricsMalformed, match=r"load_history: malformed answer: result\[0\]\.values\[10\]\[0\]"):
        source.load_history(T, start=start, end=now - 600, step=300)
    hostile.set(matrix(LABELS, [[start + 300, "-4"], [start + 600, "NaN"], [start + 900, "+Inf"], [start + 1200, "7"]]))
    history = source.load_history(T, start=start, end=now - 600, step=300)
    known = history.values[~np.isnan(history.values)]
    assert known.tolist() == [7.0]
