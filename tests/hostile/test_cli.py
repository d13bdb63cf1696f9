"""Hostile input to every subcommand: one line naming the option or field, the right exit code, no traceback.

Why: operators meet the CLI first, and a broken server or a typo must not greet them with a
Python traceback or a raw message ("cannot convert float NaN to integer") where the option
should be named. Each row of :data:`CASES` runs the real entry point (:func:`autoscaler.cli.main.main`,
in-process) against files in a temporary directory and the hostile server of ``server.py``
(as Prometheus and, for ``run``, as the API server), and checks, the same way for every row:

* the exit code (2 for bad input, 1 for a runtime failure);
* no ``Traceback`` anywhere on stderr, and nothing on stdout when the command failed;
* the last line of stderr is the error: ``error: ...`` (or, for ``run``, whose logs are JSON,
  a JSON object with ``"event": "cli_error"``) containing the row's text, which names the
  option, the policy field or what the server did;
* the command ended within the row's time bound (a hung or trickling server included).

The rows cover the issue's examples (``--timeout inf``, a bad ``--listen`` port and one in
use, ``/dev/zero`` as a policy, microsecond timestamps in a trace, ``--days 0``,
``--policies ,``, ``--out`` at an existing file, ``backtest --since 1000y``, ``--until 1e300``,
``--saturation-rps 0``) and go beyond them: every option with a bound, every policy rule, and
every way the hostile server can answer (hang, trickled body and headers, junk, deep nesting,
NaN/Inf/null values and timestamps, 429/500/403/404, malformed API objects).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoscaler.cli.main import main
from tests.hostile.server import (
    HostileServer,
    Reply,
    Request,
    Respond,
    as_json,
    by_query,
    matrix,
    nested,
    success,
    vector,
)

NS, DEP = "llm", "vllm"
LABELS = {"namespace": NS, "deployment": DEP, "model_name": "m"}
VALID_POLICY = f"targets: [{{namespace: {NS}, deployment: {DEP}, mode: dry-run}}]\n"
EMPTY = success([])
STATUS_404 = Reply(
    status=404,
    body=as_json({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "not found",
                  "reason": "NotFound", "code": 404}),
)  # fmt: skip


def status(code: int, message: str = "hostile") -> Reply:
    """A Kubernetes Status answer."""
    return Reply(status=code, body=as_json({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "message": message, "code": code}))  # fmt: skip


@dataclass
class Ctx:
    """What a row's command line is built from: a temporary directory and the hostile server."""

    tmp: Path
    server: HostileServer

    @property
    def url(self) -> str:
        """The hostile server's URL (as Prometheus)."""
        return self.server.url

    def file(self, name: str, content: str | bytes) -> str:
        """Write ``content`` to ``name`` in the temporary directory; its path."""
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)

    @property
    def policy(self) -> str:
        """A valid one-target policy file."""
        return self.file("policy.yaml", VALID_POLICY)

    @property
    def kubeconfig(self) -> str:
        """A kubeconfig whose API server is the hostile server."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "h",
            "clusters": [{"name": "h", "cluster": {"server": self.server.url}}],
            "users": [{"name": "h", "user": {"token": "hostile-token"}}],
            "contexts": [{"name": "h", "context": {"cluster": "h", "user": "h"}}],
        }  # fmt: skip
        return self.file("kubeconfig", json.dumps(config))

    def fifo(self) -> str:
        """A FIFO nobody writes to (opening it for reading would block)."""
        path = self.tmp / "fifo"
        if not path.exists():
            os.mkfifo(path)
        return str(path)

    def policy_with(self, extra: str) -> str:
        """A policy file whose target has ``extra`` (flow-style fields) added."""
        return self.file("p.yaml", f"targets: [{{namespace: {NS}, deployment: {DEP}, {extra}}}]\n")


Argv = Callable[[Ctx], list[str]]


@dataclass(frozen=True)
class Case:
    """One hostile input and what the CLI must answer."""

    id: str
    argv: Argv
    code: int
    says: str
    server: Reply | Respond | None = None
    seconds: float = 30.0


def validate(content: str | bytes) -> Argv:
    """``validate-policy`` of a file holding ``content``."""
    return lambda c: ["validate-policy", c.file("bad.yaml", content)]


def simulate(*extra: str) -> Argv:
    """``simulate`` with quick settings plus ``extra``."""
    return lambda c: ["simulate", "--no-progress", "--no-plot", "--out", str(c.tmp / "out"), *extra]


def observe(*extra: str, timeout: str = "1") -> Argv:
    """``observe`` of llm/vllm through the hostile server plus ``extra``."""
    return lambda c: ["observe", "--prometheus-url", c.url, "--target", f"{NS}/{DEP}", "--prometheus-timeout", timeout,
                      *extra]  # fmt: skip


def backtest(*extra: str) -> Argv:
    """``backtest`` of llm/vllm through the hostile server plus ``extra``."""
    return lambda c: ["backtest", "--prometheus-url", c.url, "--target", f"{NS}/{DEP}", "--no-progress",
                      "--no-plot", "--out", str(c.tmp / "bt"), "--prometheus-timeout", "1", *extra]  # fmt: skip


def run_once(*extra: str) -> Argv:
    """``run --once`` of the valid policy, Prometheus and the API server both the hostile server."""
    return lambda c: ["run", "--once", "--no-leader-election", "--policy", c.policy, "--prometheus-url", c.url,
                      "--kubeconfig", c.kubeconfig, "--prometheus-timeout", "1", *extra]  # fmt: skip


def run_flags(*extra: str) -> Argv:
    """``run`` with required flags (a local policy and kubeconfig) plus ``extra``; fails before any server."""
    return lambda c: ["run", "--policy", c.policy, "--prometheus-url", c.url, "--kubeconfig", c.kubeconfig, *extra]


def prometheus_then_kube(kube: Reply) -> Respond:
    """Prometheus answers every query with no series; every other path (the API server) gets ``kube``."""

    def respond(request: Request) -> Reply:
        return EMPTY if request.path.startswith("/api/v1/query") else kube

    return respond


MICROSECOND_TRACE = "timestamp_seconds,requests_per_second\n1.000001,5\n1.000002,5\n86400,5\n"
NOW = time.time()
POINT = [NOW - 600, "1"]

CASES = [
    # ---------------------------------------------------------------- validate-policy: files
    Case("policy-dev-zero", lambda _: ["validate-policy", "/dev/zero"], 2, "/dev/zero is not a regular file"),
    Case("policy-dev-null", lambda _: ["validate-policy", "/dev/null"], 2, "is not a regular file"),
    Case("policy-fifo", lambda c: ["validate-policy", c.fifo()], 2, "is not a regular file", seconds=5),
    Case("policy-directory", lambda c: ["validate-policy", str(c.tmp)], 2, "cannot read"),
    Case("policy-missing", lambda c: ["validate-policy", str(c.tmp / "nope.yaml")], 2, "No such file"),
    Case("policy-binary", validate(b"\x00\xff\xfe\x01" * 64), 2, "not valid YAML"),
    Case("policy-invalid-utf8", validate(b"targets: [{namespace: \xff}]"), 2, "not valid YAML"),
    Case("policy-huge", validate(b"#" * (1024 * 1024)), 2, "larger than the 262144-byte limit"),
    Case("policy-empty", validate(""), 2, "must be a YAML mapping"),
    Case("policy-list", validate("- a\n- b\n"), 2, "must be a YAML mapping"),
    Case("policy-no-targets", validate("targets: []\n"), 2, "targets: at least one target"),
    Case("policy-duplicate-key", validate(f"targets: [{{namespace: {NS}, deployment: a, deployment: b}}]"), 2,
         "duplicate key 'deployment'"),
    Case("policy-anchor", validate("x: &a 1\ntargets: [{namespace: a, deployment: b}]\n"), 2, "anchors"),
    Case("policy-python-tag", validate("targets: !!python/object/apply:os.system ['true']\n"), 2, "not valid YAML"),
    Case("policy-deep", validate("targets: " + "[" * 500 + "]" * 500), 2, "nesting"),
    Case("policy-unknown-field", validate(f"targets: [{{namespace: {NS}, deployment: {DEP}, replicas: 3}}]"), 2,
         "targets[0].replicas: unknown field"),
    Case("policy-rate-window-abc", lambda c: ["validate-policy", c.policy_with("metrics: {rateWindow: abc}")], 2,
         "targets[0].metrics.rateWindow"),
    Case("policy-rate-window-injection",
         lambda c: ["validate-policy", c.policy_with("metrics: {rateWindow: '2m]) * 0 or vector(1) #'}")], 2,
         "targets[0].metrics.rateWindow"),
    Case("policy-rate-window-zero", lambda c: ["validate-policy", c.policy_with("metrics: {rateWindow: 0s}")], 2,
         "shorter than 5s"),
    Case("policy-arrival-comment",
         lambda c: ["validate-policy", c.policy_with("metrics: {arrivalRateQuery: 'sum(x) # y'}")], 2,
         "targets[0].metrics.arrivalRateQuery: has a comment"),
    Case("policy-candidates-empty", lambda c: ["validate-policy", c.policy_with("forecast: {candidates: []}")], 2,
         "targets[0].forecast.candidates"),
    Case("policy-candidates-duplicate",
         lambda c: ["validate-policy", c.policy_with("forecast: {candidates: [naive, naive]}")], 2,
         "targets[0].forecast.candidates[1]"),
    Case("policy-seasonal-without-season",
         lambda c: ["validate-policy", c.policy_with("forecast: {model: holt_winters, seasons: []}")], 2,
         "targets[0].forecast.seasons"),
    Case("policy-namespace-dot", validate("targets: [{namespace: vllm.prod, deployment: v}]"), 2,
         "targets[0].namespace"),
    Case("policy-deployment-dots", validate("targets: [{namespace: a, deployment: a..b}]"), 2,
         "targets[0].deployment"),
    Case("policy-priority-system",
         lambda c: ["validate-policy", c.policy_with("placeholders: {priorityClass: system-cluster-critical}")], 2,
         "targets[0].placeholders.priorityClass"),
    Case("policy-image-upper", lambda c: ["validate-policy", c.policy_with("placeholders: {image: 'A/B:1'}")], 2,
         "targets[0].placeholders.image"),
    Case("policy-model-name-empty", lambda c: ["validate-policy", c.policy_with("modelName: ''")], 2,
         "targets[0].modelName"),
    Case("policy-max-replicas-negative", lambda c: ["validate-policy", c.policy_with("scaling: {maxReplicas: -3}")],
         2, "targets[0].scaling.maxReplicas"),
    Case("policy-nan", lambda c: ["validate-policy", c.policy_with("slo: {latencySeconds: .nan}")], 2,
         "targets[0].slo.latencySeconds"),
    Case("policy-huge-int", lambda c: ["validate-policy", c.policy_with("scaling: {maxReplicas: 1" + "0" * 5000 + "}")],
         2, "targets[0].scaling.maxReplicas"),
    Case("policy-loop-interval-string", validate("loopIntervalSeconds: soon\ntargets: [{namespace: a, deployment: b}]"),
         2, "loopIntervalSeconds: expected a number"),
    # ---------------------------------------------------------------------- simulate
    Case("simulate-days-0", simulate("--days", "0"), 2, "argument --days"),
    Case("simulate-days-negative", simulate("--days", "-1"), 2, "argument --days"),
    Case("simulate-days-nan", simulate("--days", "nan"), 2, "argument --days"),
    Case("simulate-days-inf", simulate("--days", "inf"), 2, "argument --days"),
    Case("simulate-days-text", simulate("--days", "two"), 2, "argument --days: expected a number"),
    Case("simulate-peak-0", simulate("--peak-replicas", "0"), 2, "argument --peak-replicas"),
    Case("simulate-peak-huge", simulate("--peak-replicas", "1e309"), 2, "argument --peak-replicas"),
    Case("simulate-warmup-inf", simulate("--warmup-days", "inf"), 2, "argument --warmup-days"),
    Case("simulate-warmup-negative", simulate("--warmup-days", "-2"), 2, "argument --warmup-days"),
    Case("simulate-policies-comma", simulate("--policies", ","), 2, "--policies: names no policy"),
    Case("simulate-policies-unknown", simulate("--policies", "predictive,magic"), 2, "--policies: unknown policy"),
    Case("simulate-out-file", lambda c: ["simulate", "--out", c.file("taken", "x")], 2, "argument --out"),
    Case("simulate-out-under-file", lambda c: ["simulate", "--out", c.file("taken", "x") + "/sub"], 2,
         "argument --out"),
    Case("simulate-seed-negative", simulate("--seed", "-1"), 2, "argument --seed"),
    Case("simulate-seed-fraction", simulate("--seed", "1.5"), 2, "argument --seed"),
    Case("simulate-seed-huge", simulate("--seed", "1e20"), 2, "argument --seed"),
    Case("simulate-tradeoff-bad", simulate("--tradeoff", "2"), 2, "--tradeoff"),
    Case("simulate-tradeoff-text", simulate("--tradeoff", "a,b"), 2, "--tradeoff"),
    Case("simulate-cold-start", simulate("--cold-start", "5min"), 2, "argument --cold-start: invalid choice"),
    Case("simulate-latency-curve", simulate("--latency-curve", "wavy"), 2, "argument --latency-curve"),
    Case("simulate-unknown-option", simulate("--speed", "11"), 2, "unrecognized arguments: --speed"),
    Case("simulate-trace-missing", simulate("--trace", "/nonexistent/trace.csv"), 2, "--trace"),
    Case("simulate-trace-dev-zero", simulate("--trace", "/dev/zero"), 2, "--trace: /dev/zero: not a regular file"),
    Case("simulate-trace-microseconds", lambda c: simulate("--trace", c.file("us.csv", MICROSECOND_TRACE))(c), 2,
         "are the timestamps in seconds"),
    Case("simulate-trace-garbage", lambda c: simulate("--trace", c.file("g.csv", "\x00\x01garbage\n"))(c), 2,
         "--trace"),
    Case("simulate-trace-header-only",
         lambda c: simulate("--trace", c.file("h.csv", "timestamp_seconds,requests_per_second\n"))(c), 2,
         "need at least two data rows"),
    Case("simulate-trace-negative-rate",
         lambda c: simulate("--trace", c.file("n.csv", "timestamp_seconds,requests_per_second\n0,1\n60,-5\n"))(c),
         2, "must be >= 0"),
    Case("simulate-policy-dev-zero", simulate("--policy", "/dev/zero"), 2, "--policy: /dev/zero is not a regular"),
    Case("simulate-policy-invalid", lambda c: simulate("--policy", c.policy_with("scaling: {minReplicas: 9, "
                                                                                 "maxReplicas: 2}"))(c), 2,
         "targets[0].scaling.minReplicas"),
    # ------------------------------------------------------------------ observe: options
    Case("observe-timeout-inf", observe(timeout="inf"), 2, "argument --prometheus-timeout: must be a finite number"),
    Case("observe-timeout-nan", observe(timeout="nan"), 2, "argument --prometheus-timeout"),
    Case("observe-timeout-0", observe(timeout="0"), 2, "argument --prometheus-timeout"),
    Case("observe-timeout-negative", observe(timeout="-1"), 2, "argument --prometheus-timeout"),
    Case("observe-timeout-huge", observe(timeout="1e9"), 2, "argument --prometheus-timeout"),
    Case("observe-target-no-slash", lambda c: ["observe", "--prometheus-url", c.url, "--target", "vllm"], 2,
         "argument --target: expected NAMESPACE/DEPLOYMENT"),
    Case("observe-target-empty-name", lambda c: ["observe", "--prometheus-url", c.url, "--target", "llm/"], 2,
         "argument --target"),
    Case("observe-target-upper", lambda c: ["observe", "--prometheus-url", c.url, "--target", "LLM/x"], 2,
         "argument --target: 'LLM' is not a valid name"),
    Case("observe-target-dots", lambda c: ["observe", "--prometheus-url", c.url, "--target", "llm/a..b"], 2,
         "argument --target: 'a..b'"),
    Case("observe-url-scheme", lambda _: ["observe", "--prometheus-url", "ftp://x", "--target", "a/b"], 2,
         "argument --prometheus-url"),
    Case("observe-url-text", lambda _: ["observe", "--prometheus-url", "prometheus", "--target", "a/b"], 2,
         "argument --prometheus-url"),
    Case("observe-url-port", lambda _: ["observe", "--prometheus-url", "http://p:99999", "--target", "a/b"], 2,
         "argument --prometheus-url"),
    Case("observe-policy-dev-zero", observe("--policy", "/dev/zero"), 2, "--policy: /dev/zero is not a regular file"),
    Case("observe-policy-fifo", lambda c: observe("--policy", c.fifo())(c), 2, "--policy", seconds=5),
    Case("observe-target-not-in-policy",
         lambda c: ["observe", "--prometheus-url", c.url, "--target", "llm/other", "--policy", c.policy], 2,
         "--target: llm/other is not a target of"),
    Case("observe-token-missing", observe("--prometheus-bearer-token-file", "/nonexistent/token"), 2,
         "argument --prometheus-bearer-token-file: /nonexistent/token does not exist"),
    Case("observe-ca-directory", lambda c: observe("--prometheus-ca-file", str(c.tmp))(c), 2,
         "argument --prometheus-ca-file"),
    # the deprecated spellings are refused under their own name
    Case("observe-old-timeout-inf", observe("--timeout", "inf"), 2, "argument --timeout: must be a finite number"),
    Case("observe-old-token-missing", observe("--bearer-token-file", "/nonexistent/token"), 2,
         "argument --bearer-token-file: /nonexistent/token does not exist"),
    Case("observe-old-ca-directory", lambda c: observe("--ca-file", str(c.tmp))(c), 2, "argument --ca-file"),
    # ---------------------------------------------------------- observe: a hostile Prometheus
    Case("observe-closed-port", lambda _: ["observe", "--prometheus-url", "http://127.0.0.1:9", "--target", "a/b",
                                           "--prometheus-timeout", "1"], 1, "did not answer any query", seconds=10),
    Case("observe-hang", observe(), 1, "did not answer any query", Reply(hang=True), seconds=5),
    Case("observe-trickled-body", observe(), 1, "no answer within 1s", Reply(body=EMPTY.body, interval=0.5),
         seconds=5),
    Case("observe-trickled-headers", observe(), 1, "no answer within 1s",
         Reply(body=EMPTY.body, header_interval=0.5), seconds=5),
    Case("observe-drop", observe(), 1, "did not answer any query", Reply(close=True), seconds=10),
    Case("observe-500", observe(), 1, "answered every query with an error", Reply(status=500, body=b"boom")),
    Case("observe-503-json", observe(), 1, "answered every query with an error",
         Reply(status=503, body=b'{"status":"error","errorType":"unavailable","error":"x"}')),
    Case("observe-429", observe(), 1, "answered every query with an error",
         Reply(status=429, body=b"slow down", headers={"Retry-After": "5"})),
    Case("observe-401", observe(), 1, "HTTP 401", Reply(status=401, body=b"who are you")),
    Case("observe-html", observe(), 1, "malformed JSON",
         Reply(body=b"<html>log in</html>", content_type="text/html")),
    Case("observe-truncated-json", observe(), 1, "malformed JSON", Reply(body=b'{"status":"success","data":{')),
    Case("observe-deep-nesting", observe(), 1, "nested too deeply", Reply(body=nested(100_000))),
    Case("observe-no-data", observe(), 1, "no data.result", Reply(body=b'{"status":"success"}')),
    Case("observe-result-string", observe(), 1, "result: expected a list of series", success("vector")),
    Case("observe-metric-string", observe(), 1, "metric: expected a mapping", success([{"metric": "x",
                                                                                        "value": POINT}])),
    Case("observe-pair-null", observe(), 1, "value: expected [timestamp, value], got null",
         success([{"metric": LABELS, "value": None}])),
    Case("observe-value-null", observe(), 1, "value[1]: value is null", success([{"metric": LABELS,
                                                                                 "value": [NOW, None]}])),
    Case("observe-one-element-pair", observe(), 1, "expected [timestamp, value]",
         success([{"metric": LABELS, "value": [NOW]}])),
    Case("observe-timestamp-null", observe(), 1, "timestamp is null",
         success([{"metric": LABELS, "value": [None, "1"]}])),
    Case("observe-timestamp-nan", observe(), 1, "not unix seconds",
         Reply(body=b'{"status":"success","data":{"result":[{"metric":{},"value":[NaN,"1"]}]}}')),
    Case("observe-timestamp-inf", observe(), 1, "not unix seconds",
         Reply(body=b'{"status":"success","data":{"result":[{"metric":{},"value":[Infinity,"1"]}]}}')),
    Case("observe-timestamp-micro", observe(), 1, "not unix seconds", vector(LABELS, "1", at=NOW * 1e6)),
    Case("observe-value-abc", observe(), 1, "value is 'abc'", vector(LABELS, "abc")),
    Case("observe-value-empty", observe(), 1, "value is ''", vector(LABELS, "")),
    Case("observe-value-bare-number", observe(), 1, "value is the number 5", vector(LABELS, 5)),
    # --------------------------------------------------------------- backtest: options
    Case("backtest-since-1000y", backtest("--since", "1000y"), 2, "argument --since"),
    Case("backtest-since-text", backtest("--since", "forever"), 2, "argument --since"),
    Case("backtest-since-0", backtest("--since", "0s"), 2, "argument --since"),
    Case("backtest-since-negative", backtest("--since", "-5m"), 2, "argument --since"),
    Case("backtest-since-before-1970", backtest("--since", "30d", "--until", "1000"), 2,
         "--since: 30d before 1970-01-01T00:16Z reaches back before 1970"),
    Case("backtest-until-1e300", backtest("--until", "1e300"), 2, "argument --until"),
    Case("backtest-until-nan", backtest("--until", "nan"), 2, "argument --until"),
    Case("backtest-until-negative", backtest("--until", "-1"), 2, "argument --until"),
    Case("backtest-until-text", backtest("--until", "yesterday"), 2, "argument --until"),
    Case("backtest-saturation-0", backtest("--saturation-rps", "0"), 2, "argument --saturation-rps"),
    Case("backtest-saturation-inf", backtest("--saturation-rps", "inf"), 2, "argument --saturation-rps"),
    Case("backtest-step-0", backtest("--step", "0"), 2, "argument --step"),
    Case("backtest-step-fraction", backtest("--step", "1.5"), 2, "argument --step"),
    Case("backtest-step-huge", backtest("--step", "1e9"), 2, "argument --step"),
    Case("backtest-step-not-dividing", backtest("--step", "7"), 2, "--step 7 must divide"),
    Case("backtest-nodes-0", backtest("--nodes-per-replica", "0"), 2, "argument --nodes-per-replica"),
    Case("backtest-nodes-inf", backtest("--nodes-per-replica", "inf"), 2, "argument --nodes-per-replica"),
    Case("backtest-warmup-inf", backtest("--warmup-days", "inf"), 2, "argument --warmup-days"),
    Case("backtest-timeout-inf", backtest("--prometheus-timeout", "inf"), 2, "argument --prometheus-timeout"),
    Case("backtest-old-timeout-inf", backtest("--timeout", "inf"), 2, "argument --timeout"),
    Case("backtest-tradeoff-bad", backtest("--tradeoff", "1.5"), 2, "--tradeoff"),
    Case("backtest-seed-negative", backtest("--seed", "-3"), 2, "argument --seed"),
    Case("backtest-out-file", lambda c: backtest("--out", c.file("taken", "x"))(c), 2, "argument --out"),
    Case("backtest-target-bad", lambda c: ["backtest", "--prometheus-url", c.url, "--target", "a/b/c"], 2,
         "argument --target"),
    Case("backtest-policy-dev-zero", backtest("--policy", "/dev/zero"), 2, "--policy: /dev/zero is not a regular"),
    Case("backtest-running-policy-other-target", lambda c: backtest("--running-policy", c.file(
        "r.yaml", "targets: [{namespace: x, deployment: y}]"))(c), 2, "is not a target of --running-policy"),
    Case("backtest-token-missing", backtest("--prometheus-bearer-token-file", "/nonexistent"), 2,
         "argument --prometheus-bearer-token-file"),
    Case("backtest-old-token-missing", backtest("--bearer-token-file", "/nonexistent"), 2,
         "argument --bearer-token-file"),
    # -------------------------------------------------------- backtest: a hostile Prometheus
    Case("backtest-hang", backtest(), 1, "no answer within 1s", Reply(hang=True), seconds=10),
    Case("backtest-trickle", backtest(), 1, "no answer within 1s", Reply(body=EMPTY.body, interval=0.5), seconds=10),
    Case("backtest-closed-port", lambda _: ["backtest", "--prometheus-url", "http://127.0.0.1:9", "--target", "a/b",
                                            "--no-progress", "--no-plot", "--prometheus-timeout", "1"], 1,
         "cannot connect",
         seconds=10),
    Case("backtest-500", backtest(), 1, "HTTP 500", Reply(status=500, body=b"boom")),
    Case("backtest-429", backtest(), 1, "HTTP 429", Reply(status=429, body=b"later", headers={"Retry-After": "1"})),
    Case("backtest-no-load", backtest(), 1, "no recorded load for llm/vllm", success([], "matrix")),
    Case("backtest-range-null-timestamp", backtest(), 1, r"values[1][0]: timestamp is null",
         matrix(LABELS, [POINT, [None, "1"]])),
    Case("backtest-range-microseconds", backtest(), 1, "not unix seconds", matrix(LABELS, [[NOW * 1e6, "1"]])),
    Case("backtest-range-value-null", backtest(), 1, "value is null", matrix(LABELS, [[NOW - 600, None]])),
    Case("backtest-range-values-missing", backtest(), 1, "values: expected a list of points",
         success([{"metric": LABELS}], "matrix")),
    Case("backtest-range-deep", backtest(), 1, "nested too deeply", Reply(body=nested(100_000))),
    Case("backtest-range-junk", backtest(), 1, "malformed JSON", Reply(body=b"\x00\x01\x02")),
    # ----------------------------------------------------------------------- run: options
    Case("run-listen-port-big", run_flags("--listen", ":99999"), 2, "argument --listen: port must be 1-65535"),
    Case("run-listen-port-0", run_flags("--listen", "127.0.0.1:0"), 2, "argument --listen"),
    Case("run-listen-no-port", run_flags("--listen", "localhost"), 2, "argument --listen: expected HOST:PORT"),
    Case("run-listen-text-port", run_flags("--listen", "localhost:http"), 2, "argument --listen"),
    Case("run-timeout-inf", run_flags("--prometheus-timeout", "inf"), 2, "argument --prometheus-timeout"),
    Case("run-timeout-0", run_flags("--prometheus-timeout", "0"), 2, "argument --prometheus-timeout"),
    Case("run-url-bad", lambda c: ["run", "--policy", c.policy, "--prometheus-url", "localhost:9090"], 2,
         "argument --prometheus-url"),
    Case("run-configmap-ref", lambda c: ["run", "--policy-configmap", "nonamespace", "--prometheus-url", c.url], 2,
         "argument --policy-configmap: expected NAMESPACE/NAME"),
    Case("run-configmap-upper", lambda c: ["run", "--policy-configmap", "NS/x", "--prometheus-url", c.url], 2,
         "argument --policy-configmap"),
    Case("run-policy-key", run_flags("--policy-key", "a/b"), 2, "argument --policy-key"),
    Case("run-lease-name", run_flags("--lease-name", "Lease_1"), 2, "argument --lease-name"),
    Case("run-lease-namespace", run_flags("--lease-namespace", "a.b"), 2, "argument --lease-namespace"),
    Case("run-identity-empty", run_flags("--identity", " "), 2, "argument --identity"),
    Case("run-log-level", run_flags("--log-level", "verbose"), 2, "argument --log-level: invalid choice"),
    Case("run-no-policy", lambda c: ["run", "--prometheus-url", c.url], 2, "one of the arguments --policy"),
    Case("run-both-policies", lambda c: ["run", "--policy", "a", "--policy-configmap", "a/b", "--prometheus-url",
                                         c.url], 2, "not allowed with argument"),
    Case("run-token-missing", run_flags("--prometheus-bearer-token-file", "/nonexistent"), 2,
         "argument --prometheus-bearer-token-file"),
    Case("run-no-lease-namespace", run_flags(), 2, "--lease-namespace: required with --policy"),
    Case("run-policy-dev-zero", lambda c: ["run", "--once", "--policy", "/dev/zero", "--prometheus-url", c.url], 2,
         "--policy: /dev/zero is not a regular file"),
    Case("run-policy-fifo", lambda c: ["run", "--once", "--policy", c.fifo(), "--prometheus-url", c.url], 2,
         "--policy", seconds=5),
    Case("run-policy-invalid", lambda c: ["run", "--once", "--policy", c.policy_with("metrics: {rateWindow: x}"),
                                          "--prometheus-url", c.url], 2, "targets[0].metrics.rateWindow"),
    Case("run-kubeconfig-garbage", lambda c: ["run", "--once", "--no-leader-election", "--policy", c.policy,
                                              "--prometheus-url", c.url, "--kubeconfig", c.file("k", "a: [")], 2,
         "--kubeconfig"),
    Case("run-kubeconfig-missing", lambda c: ["run", "--once", "--no-leader-election", "--policy", c.policy,
                                              "--prometheus-url", c.url, "--kubeconfig", "/nonexistent"], 2,
         "--kubeconfig"),
    Case("run-shard-selector", run_flags("--shard-selector", "team in (a", "--lease-name", "s",
                                         "--lease-namespace", "ns"), 2, "--shard-selector"),
    # --------------------------------------------------- run --once: hostile Prometheus, API server
    Case("run-prometheus-hang", run_once(), 1, "did not answer any query", Reply(hang=True), seconds=5),
    Case("run-prometheus-trickle", run_once(), 1, "no answer within 1s", Reply(body=EMPTY.body, interval=0.5),
         seconds=5),
    Case("run-prometheus-500", run_once(), 1, "answered every query with an error", Reply(status=500, body=b"x")),
    Case("run-prometheus-429", run_once(), 1, "answered every query with an error",
         Reply(status=429, body=b"x", headers={"Retry-After": "2"})),
    Case("run-prometheus-junk", run_once(), 1, "malformed JSON", Reply(body=b"]]]")),
    Case("run-prometheus-shapeless", run_once(), 1, "expected a list of series", success({"a": 1})),
    Case("run-prometheus-nan-timestamps", run_once(), 1, "not unix seconds",
         Reply(body=b'{"status":"success","data":{"result":[{"metric":{},"value":[NaN,"1"]}]}}')),
    Case("run-target-404", run_once(), 1, "1 of 1 target(s) failed; llm/vllm", prometheus_then_kube(STATUS_404)),
    Case("run-api-429", run_once(), 1, "API server is throttling requests",
         prometheus_then_kube(Reply(status=429, body=status(429, "too many").body, headers={"Retry-After": "1"}))),
    Case("run-api-500", run_once(), 1, "HTTP 500", prometheus_then_kube(status(500))),
    Case("run-api-403", run_once(), 1, "RBAC denies reading llm/vllm", prometheus_then_kube(status(403))),
    Case("run-api-junk", run_once(), 1, "unreadable answer from the API server",
         prometheus_then_kube(Reply(body=b'{"spec": {"replicas": "many"}}'))),
    Case("run-api-deep", run_once(), 1, "unreadable answer from the API server",
         prometheus_then_kube(Reply(body=nested(100_000)))),
    Case("run-api-html", run_once(), 1, "llm/vllm",
         prometheus_then_kube(Reply(body=b"<html>", content_type="text/html"))),
]


@pytest.fixture
def ctx(tmp_path: Path, hostile: HostileServer) -> Iterator[Ctx]:
    """The row's directory and hostile server."""
    yield Ctx(tmp_path, hostile)


def last_error(err: str, *, as_json: bool) -> str:
    """The error text of stderr's last line, checking its form (``error: ...`` or a ``cli_error`` JSON line)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    last = lines[-1]
    if as_json:
        record = json.loads(last)
        assert record["event"] == "cli_error" and record["level"] == "error", record
        return str(record["error"]) + (f" [{record['field']}]" if "field" in record else "")
    assert last.startswith("error: "), last
    return last


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """The row's command fails with its exit code and one line naming what was wrong, in bounded time."""
    if case.server is not None:
        ctx.server.set(case.server)
    argv = case.argv(ctx)
    capsys.readouterr()
    began = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - began
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    assert code == case.code, (code, err[-2000:])
    assert out == "", out[-2000:]
    message = last_error(err, as_json=argv[0] == "run")
    assert case.says in message, message
    assert elapsed < case.seconds, f"{elapsed:.1f}s"


def test_the_table_is_broad() -> None:
    """Every subcommand is driven, with well over the ~20 tracebacks the probe found."""
    commands = {c.id.split("-")[0] for c in CASES}
    assert commands == {"policy", "simulate", "observe", "backtest", "run"}  # policy = validate-policy
    assert len(CASES) >= 150


def test_a_port_in_use_is_named(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """``run`` listens before it talks to any server: a taken --listen port ends it at once, named."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["run", "--no-leader-election", "--policy", ctx.policy, "--prometheus-url", ctx.url,
                     "--kubeconfig", ctx.kubeconfig, "--listen", f"127.0.0.1:{port}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"--listen 127.0.0.1:{port}: cannot listen there" in last_error(err, as_json=True)
    assert ctx.server.requests == [], "nothing was asked of Prometheus or the API server"


def test_debug_shows_the_traceback(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """``--debug`` adds the traceback; the error line stays the last line."""
    assert main(["validate-policy", "/dev/zero", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "error: /dev/zero is not a regular file"


def test_console_format_errors_are_plain_lines(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """``run --log-format console`` prints ``error: ...``, not JSON."""
    assert main(["run", "--log-format", "console", "--policy", ctx.policy, "--prometheus-url", "ftp://x"]) == 2
    assert last_error(capsys.readouterr().err, as_json=False).startswith("error: autoscaler run: argument")


def _no_nan(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "1e308"])
def test_observe_json_is_valid_json_whatever_the_values(ctx: Ctx, capsys: pytest.CaptureFixture[str], value: str
                                                        ) -> None:  # fmt: skip
    """Every query answers ``value``: ``observe --json`` prints strict JSON (unknown is null, never NaN)."""
    ctx.server.set(by_query(vector(LABELS, value), range=matrix(LABELS, [[NOW - 3600, value], [NOW - 1800, value]])))
    code = main(observe("--json")(ctx))
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    result = _no_nan(out)
    assert result["target"] == f"{NS}/{DEP}"
    for name, signal in result["signals"].items():
        assert signal is None or math.isfinite(signal), (name, signal)


def test_observe_reports_future_dated_samples(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """Samples an hour ahead of the clock: the load is unknown with kind future_dated (and exit 0: it answered)."""
    ahead = time.time() + 3600

    def respond(request: Request) -> Reply:
        return vector(LABELS, str(ahead) if "timestamp(" in request.query else "3", at=ahead)

    ctx.server.set(by_query(respond, range=success([], "matrix")))
    assert main(observe("--json")(ctx)) == 0
    result = _no_nan(capsys.readouterr().out)
    assert result["signals"]["load"] is None and result["problems"]["load"] == "future_dated"
