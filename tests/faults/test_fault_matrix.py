"""The fault matrix: one row per fault, one test that judges every row the same way.

Why: the controller scales GPU capacity that takes 15 minutes to come back, so a fault must
never make it release capacity, crash it, or pass unnoticed, and it must act normally again
as soon as the fault is gone. Each :class:`Fault` row says how to inject and clear one fault
against the real servers of ``conftest.py`` and which evidence must name it; the single test
:func:`test_fault` then, for every row:

1. runs a normal cycle on the steady state (3 serving replicas and 3 placeholder pods that
   the observed load and the forecast ramp justify): data ok, forecast available, no hold;
2. injects the fault and runs ``cycles`` cycles, asserting across the injection and each
   cycle that the spec's serving replicas and total capacity (serving + placeholders) did
   not decrease (:func:`assert_capacity_kept`), that the cycle did not crash (no
   ``cycle_failed``, no ``unexpected`` error), that the decision itself lowers nothing, and
   the row's expectation (:class:`During`: a data hold, a named error kind, standing by, or
   a normal decision);
3. clears the fault and runs one cycle that must be normal again (no error, data ok, no
   hold, the decision's signals known, the write not refused);
4. finds every piece of evidence the row names: a structured log event with its ``kind``,
   a metric of :mod:`autoscaler.runtime.telemetry`, or a Kubernetes Event, produced after injection.

Controllers run in-process through :meth:`autoscaler.runtime.service.Service.cycle` (which calls
:meth:`Controller.reconcile_once`) with the real ``PrometheusSource`` and ``KubeCluster``, an
offset clock for clock jumps and a hand-advanced clock for lease expiry. Only the SIGKILL and
two-replica rows start ``autoscaler run`` processes. Adding a fault is adding a row.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoscaler.core.types import Reason
from autoscaler.kube.fit_store import ConfigMapFitStore
from autoscaler.kube.leader import LeaseElector
from autoscaler.kube.policy_source import ConfigMapPolicySource
from autoscaler.kube.scale_writer import SCALE_WRITE_ATTEMPTS
from autoscaler.policy.schema import Policy
from autoscaler.runtime.controller import Controller, TargetResult
from autoscaler.runtime.service import Service, stall_seconds
from autoscaler.runtime.telemetry import Health
from tests.cluster.fixtures import settled_deployment
from tests.prom.faultproxy import DEFAULT_GARBAGE
from tests.prom.server import free_port

from .conftest import (
    DEPLOYMENT,
    KUBE_TIMEOUT,
    MODEL,
    PROMETHEUS_TIMEOUT,
    Cycle,
    Rig,
    policy_text,
    serving_deployment,
    write_kubeconfig,
)
from .harness import (
    Counts,
    Evidence,
    KubeEvent,
    LogEvent,
    MetricSample,
    json_events,
    parse_sample,
    scrape_metrics,
    spawn_controller,
    wait_until,
)

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

Step = Callable[[Rig], None]
HOLDS = {Reason.MISSING_DATA_HOLD.value, Reason.STALE_DATA_HOLD.value}
#: Snapshot signals the matrix's policy decides from (mean-latency SLO).
USED_SIGNALS = ("load", "waiting", "latency_mean")


@dataclass(frozen=True)
class During:
    """What every cycle under the fault must show (default: a normal decision, data ok)."""

    #: The target fails with this error kind (nothing is written).
    error: str | None = None
    #: The decision holds for missing or stale data (this reason among its steps).
    hold: Reason | None = None
    #: This replica stands by (another one holds the lease).
    standby: bool = False


@dataclass(frozen=True)
class Fault:
    """One row of the matrix."""

    name: str
    inject: Step
    clear: Step
    evidence: tuple[Evidence, ...]
    during: During = During()
    cycles: int = 2
    #: Before the normal cycle (e.g. switch the policy source).
    setup: Step | None = None
    check_during: Callable[[Rig, list[Cycle]], None] | None = None
    check_after: Callable[[Rig, Cycle], None] | None = None
    #: A known product bug that makes the forecast unavailable after the fault clears.
    known_issue: str | None = None
    #: ``autoscaler run`` processes the row starts (started ahead of time, see ``launcher.py``).
    processes: int = 0
    #: The injection itself lowers the spec (an operator's edit is part of the fault), so
    #: capacity is not compared across it.
    inject_lowers: bool = False
    doc: str = field(default="", compare=False)


# ------------------------------------------------------------------------------ Prometheus
def _prometheus(mode: str, **kwargs: Any) -> Step:
    def inject(rig: Rig) -> None:
        rig.world.prom_proxy.arm(mode, **kwargs)

    return inject


def _prometheus_answer(answer: Callable[[Rig], str], query: str | None = None) -> Step:
    """Prometheus answers ``answer(rig)`` (a valid JSON body) to instant queries matching ``query``."""

    def inject(rig: Rig) -> None:
        rig.world.prom_proxy.arm("garbage", body=answer(rig), only_paths=r"/api/v1/query$", query=query)

    return inject


def _vector(*series: tuple[str, str]) -> Callable[[Rig], str]:
    """An instant-query answer with one sample per ``(model_name, value)`` for the target."""

    def body(rig: Rig) -> str:
        labels = {"namespace": rig.world.namespace, "deployment": rig.world.deployment}
        result: list[dict[str, Any]] = [
            {"metric": {**labels, "model_name": m}, "value": [time.time(), v]} for m, v in series
        ]
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})

    return body


def _prometheus_passthrough(rig: Rig) -> None:
    rig.world.prom_proxy.passthrough()


def _stop_prometheus_port(rig: Rig) -> None:
    rig.world.prom_proxy.stop()


def _start_prometheus_port(rig: Rig) -> None:
    rig.world.prom_proxy.start()


def _newest_sample(rig: Rig) -> float | None:
    ns = rig.world.namespace
    return rig.world.server.query_value(f'max(timestamp(vllm:num_requests_running{{namespace="{ns}"}}))')


def _serve_stale_samples(rig: Rig) -> None:
    """The live pod stops answering scrapes; a pod whose samples are 240 s old answers instead."""
    rig.world.main.set_http_status(500)
    rig.world.lagging.set_http_status(200)
    wait_until(
        lambda: (newest := _newest_sample(rig)) is not None and newest < time.time() - 200,
        timeout=30,
        what="Prometheus to hold only stale samples",
    )


def _serve_live_samples(rig: Rig) -> None:
    rig.world.lagging.set_http_status(500)
    rig.world.main.set_http_status(200)
    wait_until(rig.world.fresh_data, timeout=30, what="fresh samples again")


def _prometheus_unavailable(contains: str, kind: str = "metrics_unavailable") -> tuple[Evidence, ...]:
    return (
        LogEvent("prometheus_query_failed", {"kind": kind}, contains=contains),
        MetricSample("autoscaler_errors_total", {"kind": kind}),
        MetricSample("autoscaler_metrics_query_failures_total", {"signal": "load_requests", "kind": kind}),
        MetricSample("autoscaler_metrics_problems_total", {"signal": "load", "kind": kind}, per_target=True),
    )


def _signal_unknown(signal: str, kind: str) -> tuple[Evidence, ...]:
    return (
        LogEvent("decision", {f"observation.problems.{signal}": kind}),
        MetricSample("autoscaler_metrics_problems_total", {"signal": signal, "kind": kind}, per_target=True),
    )


MISSING = During(hold=Reason.MISSING_DATA_HOLD)
#: Samples this far ahead of the controller's clock are future-dated (beyond the 60 s allowance).
FUTURE_SECONDS = 3600.0


def _future_newest(rig: Rig) -> str:
    """The newest-sample query answered an hour ahead (a Prometheus or exporter with a skewed clock)."""
    ahead = time.time() + FUTURE_SECONDS
    labels = {"namespace": rig.world.namespace, "deployment": rig.world.deployment, "model_name": MODEL}
    return json.dumps({"status": "success", "data": {"resultType": "vector",
                                                     "result": [{"metric": labels, "value": [ahead, str(ahead)]}]}})


def _check_trickle_bounded(rig: Rig, cycles: list[Cycle]) -> None:
    """Each loop cost one timeout: the first trickled answer was cut at the deadline, the rest not sent."""
    loop = rig.metrics.last_loop
    assert loop.queries == 1 and loop.seconds < PROMETHEUS_TIMEOUT + 1.0, loop


# A second target whose start-up history answer is bad, next to the matrix's own (good) one.
OTHER = "vllm-fm-b"


class _Policies:
    """A policy source whose policy a row changes (each change a new generation)."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.generation = policy, 1

    def set(self, policy: Policy) -> None:
        """Switch to ``policy``."""
        self.policy, self.generation = policy, self.generation + 1

    def current(self) -> tuple[Policy, int]:
        """The policy and its generation."""
        return self.policy, self.generation


def _bad_history_for_a_new_target(rig: Rig) -> None:
    """A second target joins; Prometheus answers its history range query with a null timestamp."""
    w = rig.world
    w.apps.create_namespaced_deployment(w.namespace, serving_deployment(OTHER, 1))
    rig.cleanups.append(lambda: w.apps.delete_namespaced_deployment(OTHER, w.namespace))
    other = dataclasses.replace(w.policy.targets[0], deployment=OTHER, mode="enforce")
    source = _Policies(w.policy)
    source.set(dataclasses.replace(w.policy, targets=(*w.policy.targets, other)))
    rig.service.policy_source = source
    rig.notes["policies"] = source
    labels = {"namespace": w.namespace, "deployment": OTHER, "model_name": MODEL}
    bad = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": labels, "values": [[time.time() - 3600, "5"], [None, "6"]]}]}}  # fmt: skip
    # The pod selector holds the re.escape'd name ("vllm\\-fm\\-b" in the PromQL text).
    w.prom_proxy.arm("garbage", body=json.dumps(bad), only_paths=r"/api/v1/query_range$", query=r"fm\\+-b")


def _only_the_matrix_target_again(rig: Rig) -> None:
    rig.world.prom_proxy.passthrough()
    rig.notes["policies"].set(rig.world.policy)


def _check_other_target_held(rig: Rig, cycles: list[Cycle]) -> None:
    """The new target failed each cycle with metrics_malformed and nothing was written for it."""
    key = f"{rig.world.namespace}/{OTHER}"
    for cycle in cycles:
        assert cycle.result is not None
        (other,) = [r for r in cycle.result.results if r.target == key]
        assert other.error is not None and other.error.kind == "metrics_malformed", other.error
        assert other.decision is None and other.applied is None
    assert rig.world.apps.read_namespaced_deployment_scale(OTHER, rig.world.namespace).spec.replicas == 1

PROMETHEUS_FAULTS = [
    Fault(
        "prometheus-down",
        _stop_prometheus_port,
        _start_prometheus_port,
        _prometheus_unavailable("cannot connect"),
        MISSING,
        doc="the port the controller queries is closed: connection refused",
    ),
    Fault(
        "prometheus-slow",
        _prometheus("delay", seconds=PROMETHEUS_TIMEOUT + 1.5),
        _prometheus_passthrough,
        _prometheus_unavailable(f"no answer within {PROMETHEUS_TIMEOUT:g}s"),
        MISSING,
        doc="every answer comes after the per-query timeout",
    ),
    Fault(
        "prometheus-5xx",
        _prometheus("status", code=503, body='{"status":"error","errorType":"unavailable","error":"injected"}'),
        _prometheus_passthrough,
        _prometheus_unavailable("HTTP 503"),
        MISSING,
    ),
    Fault(
        "prometheus-malformed-json",
        _prometheus("garbage", body=DEFAULT_GARBAGE),
        _prometheus_passthrough,
        _prometheus_unavailable("malformed JSON", kind="metrics_malformed"),
        MISSING,
        doc="200 with a JSON body cut off mid-object: an answer, not a usable one (its own kind)",
    ),
    Fault(
        "prometheus-empty",
        _prometheus_answer(lambda _rig: '{"status":"success","data":{"resultType":"vector","result":[]}}'),
        _prometheus_passthrough,
        _signal_unknown("load", "metrics_empty"),
        MISSING,
        doc="every query succeeds with no series",
    ),
    Fault(
        "prometheus-nan",
        _prometheus_answer(_vector((MODEL, "NaN")), query="request_success_total"),
        _prometheus_passthrough,
        _signal_unknown("load", "metrics_invalid"),
        MISSING,
        doc="the load query answers NaN",
    ),
    Fault(
        "prometheus-several-series",
        _prometheus_answer(_vector((MODEL, "0.12"), ("model-b", "0.9")), query="e2e_request_latency_seconds_sum"),
        _prometheus_passthrough,
        _signal_unknown("latency_mean", "metrics_invalid"),
        doc="the mean-latency query (one series expected) answers two: latency unknown, the load still decides",
    ),
    Fault(
        "prometheus-future-dated",
        _prometheus_answer(_future_newest, query=r"timestamp\("),
        _prometheus_passthrough,
        (
            *_signal_unknown("load", "future_dated"),
            MetricSample("autoscaler_decision_steps_total", {"reason": "StaleDataHold"}, per_target=True),
        ),
        During(hold=Reason.STALE_DATA_HOLD),
        doc="the newest samples are dated an hour after the controller's clock: unknown (future_dated), held",
    ),
    Fault(
        "prometheus-bad-range-answer",
        _bad_history_for_a_new_target,
        _only_the_matrix_target_again,
        (
            LogEvent("history_unavailable", {"kind": "metrics_malformed"}, contains="timestamp is null"),
            LogEvent("target_failed", {"kind": "metrics_malformed"}),
            MetricSample("autoscaler_errors_total", {"kind": "metrics_malformed"}),
        ),
        check_during=_check_other_target_held,
        doc="a new target's history answer has a null timestamp among good points: that target holds, "
        "the matrix's target decides normally",
    ),
    Fault(
        "prometheus-trickling",
        _prometheus("trickle", seconds=0.5),
        _prometheus_passthrough,
        _prometheus_unavailable(f"no answer within {PROMETHEUS_TIMEOUT:g}s"),
        MISSING,
        check_during=_check_trickle_bounded,
        doc="every answer is valid but sent one byte every 0.5 s: each call ends at its deadline, one per loop",
    ),
    Fault(
        "prometheus-stale-samples",
        _serve_stale_samples,
        _serve_live_samples,
        (
            *_signal_unknown("load", "metrics_invalid"),
            MetricSample("autoscaler_decision_steps_total", {"reason": "StaleDataHold"}, per_target=True),
        ),
        During(hold=Reason.STALE_DATA_HOLD),
        doc="real Prometheus holds only samples older than staleAfterSeconds",
    ),
]


# --------------------------------------------------------------------------- API server
STATUS = '{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected by the fault matrix","code":{}}}'


def _scale_path(rig: Rig) -> str:
    return f"/apis/apps/v1/namespaces/{rig.world.namespace}/deployments/{rig.world.deployment}/scale"


def _api(mode: str, **kwargs: Any) -> Step:
    def inject(rig: Rig) -> None:
        rig.world.api_proxy.arm(mode, **kwargs)

    return inject


def _api_status(code: int, only_paths: str | None = None) -> Step:
    return _api("status", code=code, body=STATUS.format(code), only_paths=only_paths)


def _api_passthrough(rig: Rig) -> None:
    rig.world.api_proxy.passthrough()


def _stop_api_port(rig: Rig) -> None:
    rig.world.api_proxy.stop()


def _start_api_port(rig: Rig) -> None:
    rig.world.api_proxy.start()


def _conflicting_scale_writes(times: int | None, *, concurrent_scale: int | None = None) -> Step:
    """Someone scales the target down by one, and the next scale writes meet HTTP 409.

    With ``concurrent_scale``, another writer sets the replicas to steady + that many while
    the first conflicting write is answered (between the controller's read and its re-read).
    """

    def inject(rig: Rig) -> None:
        w = rig.world
        w.set_replicas(w.deployment, w.steady.replicas - 1)
        # The Deployment controller's status writes after that scale would meet the guarded
        # write as real 409s on top of the injected ones: let them end first.
        settled_deployment(w.apps, w.namespace, w.deployment)
        hook = None
        if concurrent_scale is not None:
            replicas = w.steady.replicas + concurrent_scale

            def hook() -> None:
                w.set_replicas(w.deployment, replicas)

        w.api_proxy.arm(
            "status",
            code=409,
            body=STATUS.format(409),
            only_paths=re.escape(_scale_path(rig)) + "$",
            methods=["PATCH"],
            times=times,
            on_fault=hook,
        )

    return inject


def _check_conflicts_retried(rig: Rig, cycles: list[Cycle]) -> None:
    first = _only(cycles[0])
    assert first.applied is not None and first.applied.wrote_replicas, "the write succeeds after re-reads"
    assert cycles[0].after.replicas == rig.world.steady.replicas
    assert [e["attempt"] for e in rig.log.events("scale_conflict", rig.log_mark)] == [1, 2]


def _check_conflicts_bounded(rig: Rig, cycles: list[Cycle]) -> None:
    writes = rig.world.api_proxy.faulted[_scale_path(rig)]
    assert writes == len(cycles) * SCALE_WRITE_ATTEMPTS, f"{writes} scale writes in {len(cycles)} cycles"
    assert all(c.after.replicas == rig.world.steady.replicas - 1 for c in cycles)


def _check_other_writer_kept(rig: Rig, cycles: list[Cycle]) -> None:
    assert cycles[0].after.replicas == rig.world.steady.replicas + 1, "the other writer's value stands"
    assert rig.world.api_proxy.faulted[_scale_path(rig)] == 1, "no retry over another writer's change"


def _check_write_succeeds(rig: Rig, after: Cycle) -> None:
    result = _only(after)
    assert result.applied is not None and result.applied.wrote_replicas
    assert after.after.replicas == rig.world.steady.replicas


def _target_failed(kind: str, contains: str | None = None) -> tuple[Evidence, ...]:
    return (
        LogEvent("target_failed", {"kind": kind}, contains=contains),
        MetricSample("autoscaler_errors_total", {"kind": kind}),
        MetricSample("autoscaler_target_errors_total", {"kind": kind}, per_target=True),
    )


API_FAULTS = [
    Fault(
        "api-409-status-only",
        _conflicting_scale_writes(times=2),
        _api_passthrough,
        (LogEvent("scale_conflict", {"attempt": 2}), LogEvent("scale_patched"), KubeEvent("Scaled")),
        check_during=_check_conflicts_retried,
        inject_lowers=True,
        doc="the scale write meets 409 twice while the spec is unchanged: re-read and retried in the same cycle",
    ),
    Fault(
        "api-409-persistent",
        _conflicting_scale_writes(times=None),
        _api_passthrough,
        _target_failed("conflict", contains="409"),
        During(error="conflict"),
        check_during=_check_conflicts_bounded,
        check_after=_check_write_succeeds,
        inject_lowers=True,
        doc="every scale write meets 409: bounded retries, then named and deferred to the next loop",
    ),
    Fault(
        "api-409-concurrent-scale",
        _conflicting_scale_writes(times=1, concurrent_scale=1),
        _api_passthrough,
        _target_failed("conflict", contains="changed concurrently"),
        During(error="conflict"),
        cycles=1,
        check_during=_check_other_writer_kept,
        inject_lowers=True,
        doc="another writer scales the target between the read and the write: the stale decision is dropped",
    ),
    Fault("api-403", _api_status(403), _api_passthrough, _target_failed("forbidden", "HTTP 403"),
          During(error="forbidden")),
    Fault(
        "api-404",
        lambda rig: _api_status(404, only_paths=rf"/deployments/{rig.world.deployment}(/scale)?$")(rig),
        _api_passthrough,
        _target_failed("not_found", "HTTP 404"),
        During(error="not_found"),
    ),
    Fault("api-5xx", _api_status(503), _api_passthrough, _target_failed("cluster_unavailable", "HTTP 503"),
          During(error="cluster_unavailable")),
    Fault(
        "api-timeout",
        _api("delay", seconds=KUBE_TIMEOUT[1] + 1.5),
        _api_passthrough,
        _target_failed("cluster_unavailable", "timed out"),
        During(error="cluster_unavailable"),
    ),
    Fault(
        "api-down",
        _stop_api_port,
        _start_api_port,
        _target_failed("cluster_unavailable", "unreachable"),
        During(error="cluster_unavailable"),
        doc="the API server's port is closed: connection refused",
    ),
]  # fmt: skip


# -------------------------------------------------------------------------- policy ConfigMap
INVALID_POLICY = "targets: [{namespace: x, deployment: y, scaling: {maxReplicas: -3}}]\n"


def _policy_from_configmap(rig: Rig) -> None:
    """Follow the policy from a watched ConfigMap, as in the cluster (set up before the normal cycle)."""
    w = rig.world
    name = f"policy-{secrets.token_hex(3)}"
    w.core.create_namespaced_config_map(
        w.namespace, {"metadata": {"name": name}, "data": {"policy.yaml": policy_text(w.namespace)}}
    )
    source = ConfigMapPolicySource(
        w.admin_api,
        namespace=w.namespace,
        name=name,
        on_rejected=lambda _exc: rig.telemetry.policy_rejected.inc(),
        log=rig.log.bind(component="policy"),
    ).start()
    rig.cleanups.append(source.stop)
    rig.service.policy_source = source
    rig.notes["configmap"] = name


def _wait_log(rig: Rig, event: str, since: int) -> None:
    wait_until(lambda: rig.log.events(event, since), timeout=30, what=f"log event {event}")


def _delete_configmap(rig: Rig) -> None:
    mark = len(rig.log.records)
    rig.world.core.delete_namespaced_config_map(rig.notes["configmap"], rig.world.namespace)
    _wait_log(rig, "config_deleted", mark)


def _recreate_configmap(rig: Rig) -> None:
    mark = len(rig.log.records)
    body = {"metadata": {"name": rig.notes["configmap"]}, "data": {"policy.yaml": policy_text(rig.world.namespace)}}
    rig.world.core.create_namespaced_config_map(rig.world.namespace, body)
    _wait_log(rig, "config_accepted", mark)


def _write_configmap(text: str, wait_for: str) -> Step:
    def write(rig: Rig) -> None:
        mark = len(rig.log.records)
        body = {"data": {"policy.yaml": text}}
        rig.world.core.patch_namespaced_config_map(rig.notes["configmap"], rig.world.namespace, body)
        _wait_log(rig, wait_for, mark)

    return write


def _check_policy_kept(rig: Rig, cycles: list[Cycle]) -> None:
    assert rig.service.generation == 1
    assert rig.controller.policy == rig.world.policy


CONFIGMAP_FAULTS = [
    Fault(
        "configmap-deleted",
        _delete_configmap,
        _recreate_configmap,
        (LogEvent("config_deleted", {"keeping_generation": 1}),),
        setup=_policy_from_configmap,
        check_during=_check_policy_kept,
    ),
    Fault(
        "configmap-invalid",
        _write_configmap(INVALID_POLICY, "config_rejected"),
        lambda rig: _write_configmap(policy_text(rig.world.namespace), "config_accepted")(rig),
        (
            LogEvent("config_rejected", {"keeping_generation": 1}),
            KubeEvent("PolicyRejected", kind="ConfigMap", note="configmap", type_="Warning"),
            MetricSample("autoscaler_policy_rejected_total"),
        ),
        setup=_policy_from_configmap,
        check_during=_check_policy_kept,
    ),
]


# --------------------------------------------------------------------------- processes
def _subprocess_policy(rig: Rig) -> tuple[str, Path]:
    path = rig.tmp / "policy.yaml"
    path.write_text(policy_text(rig.world.namespace, interval=5))
    return f"fm-{secrets.token_hex(3)}", path


def _log_tail(rig: Rig, identity: str) -> str:
    return rig.process_logs[identity].read_text(errors="replace")[-3000:]


def _kill_leader_mid_cycle(rig: Rig) -> None:
    """A leading ``autoscaler run`` is SIGKILLed while its cycle waits for the scale read.

    Its API traffic goes through the proxy, which lets the start-up check's scale read pass
    and holds the next one (the first cycle's, after its Prometheus queries): the process is
    killed there. This replica then stands by as its successor, on a hand-advanced clock.
    """
    w = rig.world
    lease, policy = _subprocess_policy(rig)
    token = w.control_plane.admin_token
    kubeconfig = write_kubeconfig(rig.tmp / "proxy.kubeconfig", server=w.api_proxy.url, token=token)
    path = _scale_path(rig)
    w.api_proxy.arm("delay", seconds=600, only_paths=re.escape(path) + "$", methods=["GET"], skip=1)
    rig.process_logs["victim"] = rig.tmp / "victim.log"
    proc = spawn_controller(
        w.processes, policy=policy, prometheus_url=w.server.url, kubeconfig=kubeconfig, namespace=w.namespace,
        lease=lease, identity="victim", port=free_port(), log_path=rig.process_logs["victim"],
    )  # fmt: skip
    rig.processes.append(proc)
    wait_until(
        lambda: w.api_proxy.faulted[path] >= 1 or proc.poll() is not None,
        timeout=60,
        what="the victim's cycle to reach the held scale read",
    )
    assert proc.poll() is None, _log_tail(rig, "victim")
    proc.send_signal(signal.SIGKILL)
    rig.notes["victim_returncode"] = proc.wait(timeout=10)
    w.api_proxy.passthrough()
    rig.service.elector = LeaseElector(
        w.admin_api, namespace=w.namespace, name=lease, identity="successor", clock=rig.mono,
        log=rig.log.bind(component="leader"),
    )  # fmt: skip


def _lease_expires(rig: Rig) -> None:
    rig.mono.advance(16.0)  # > leaseDurationSeconds (15) on the successor's own clock


def _check_victim_died_mid_cycle(rig: Rig, cycles: list[Cycle]) -> None:
    assert rig.notes["victim_returncode"] == -signal.SIGKILL
    events = {e.get("event") for e in json_events(rig.process_logs["victim"])}
    assert "leader_changed" in events, _log_tail(rig, "victim")
    assert not events & {"decision", "scale_patched", "placeholders_written"}, "killed before deciding"


def _start_second_replica(rig: Rig) -> None:
    """This replica leads a Lease; a second ``autoscaler run`` (enforcing too) starts next to it."""
    w = rig.world
    lease, policy = _subprocess_policy(rig)
    leader = LeaseElector(
        w.admin_api, namespace=w.namespace, name=lease, identity="replica-a", clock=rig.mono,
        log=rig.log.bind(component="leader"),
    )  # fmt: skip
    assert leader.step()
    rig.service.elector = leader
    port = free_port()
    rig.process_logs["replica-b"] = rig.tmp / "replica-b.log"
    proc = spawn_controller(
        w.processes, policy=policy, prometheus_url=w.server.url, kubeconfig=w.control_plane.kubeconfig_path,
        namespace=w.namespace, lease=lease, identity="replica-b", port=port, log_path=rig.process_logs["replica-b"],
    )  # fmt: skip
    rig.processes.append(proc)
    rig.notes["replica-b"] = (proc, port)

    def standing_by() -> bool:
        leader.step()  # keep renewing while the other one starts
        assert proc.poll() is None, _log_tail(rig, "replica-b")
        text = scrape_metrics(port)
        standby = any(e.get("event") == "standby" for e in json_events(rig.process_logs["replica-b"]))
        if standby and parse_sample(text, "autoscaler_leader", {}) == 0.0:
            rig.process_metrics["replica-b"] = text
            return True
        return False

    wait_until(standing_by, timeout=60, interval=0.5, what="the second replica to stand by")


def _stop_second_replica(rig: Rig) -> None:
    proc, port = rig.notes["replica-b"]
    rig.process_metrics["replica-b"] = scrape_metrics(port) or rig.process_metrics["replica-b"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, _log_tail(rig, "replica-b")


def _check_one_writer(rig: Rig, cycles: list[Cycle]) -> None:
    proc, _ = rig.notes["replica-b"]
    assert proc.poll() is None, _log_tail(rig, "replica-b")
    events = {e.get("event") for e in json_events(rig.process_logs["replica-b"])}
    assert not events & {"decision", "scale_patched", "placeholders_written"}, "the standby never acts"
    assert all(_only(c).error is None for c in cycles)


def _lead_with_a_lease(rig: Rig) -> None:
    """This replica leads a Lease through an elector tied to its loop's liveness (as autoscaler run does)."""
    w = rig.world
    health = Health(max_cycle_age=120.0, stall_seconds=stall_seconds(w.policy.loop_interval_seconds),
                    monotonic=rig.mono)  # fmt: skip
    rig.service.health = health
    lease = f"fm-{secrets.token_hex(3)}"
    rig.service.elector = LeaseElector(
        w.admin_api, namespace=w.namespace, name=lease, identity="replica-a", clock=rig.mono,
        log=rig.log.bind(component="leader"), healthy=lambda: health.alive()[0],
    )  # fmt: skip
    rig.notes["lease"] = lease


def _hang_the_loop(rig: Rig) -> None:
    """No cycle ends for longer than the stall limit (time passes, the loop does nothing); a standby waits."""
    w = rig.world
    standby = LeaseElector(
        w.admin_api, namespace=w.namespace, name=rig.notes["lease"], identity="replica-b", clock=rig.mono,
        log=rig.log.bind(component="leader-b"),
    )  # fmt: skip
    assert standby.step() is False
    rig.mono.advance(rig.service.health.stall_seconds + 1.0)
    rig.notes["alive"] = rig.service.health.alive()
    leader = rig.service.elector
    assert isinstance(leader, LeaseElector)
    assert leader.step() is False, "a stuck loop gives up leading at the elector's next attempt"
    rig.mono.advance(16.0)  # > leaseDurationSeconds on the standby's clock: never renewed meanwhile
    assert standby.step() is True
    rig.notes["standby"] = standby


def _standby_releases(rig: Rig) -> None:
    rig.notes["standby"].stop()


def _check_stuck_loop(rig: Rig, cycles: list[Cycle]) -> None:
    alive, why = rig.notes["alive"]
    assert not alive and "control loop made no progress" in why, why  # /healthz answers 503 with this
    assert all(c.result is None for c in cycles), "the replica whose loop was stuck writes nothing"


def _keep_fits_in_configmaps(rig: Rig) -> None:
    """The controller saves its fitted state in ConfigMaps of its namespace (as ``autoscaler run`` does)."""
    prefix = f"fm-{secrets.token_hex(3)}"
    rig.controller.fit_store = ConfigMapFitStore(rig.api, namespace=rig.world.namespace, prefix=prefix)


def _restart_mid_day(rig: Rig) -> None:
    """A clean stop (it saves) and a new controller process: fresh state, the same store and world."""
    old = rig.controller
    fc = old.forecaster(rig.world.key)
    if fc.export_state() is None:
        # The baseline cycle served the stand-in: a first model selection is expected at up to
        # FIRST_FIT_SECONDS, so it runs in a cycle of its own (the next one), within the budget.
        old.reconcile_once()
    served = fc.prediction.model if fc.prediction else None
    rig.notes["before"] = (served, fc.last_fit, old.last_decision(rig.world.key))
    assert fc.export_state() is not None, "the configured model fitted before the restart"
    old.save_fit_state(rig.clock.now())
    log = rig.log.bind(component="controller")
    rig.controller = Controller(policy=rig.world.policy, metrics=rig.metrics, cluster=rig.cluster, clock=rig.clock,
                                log=log, fit_store=old.fit_store)  # fmt: skip
    s = rig.service
    rig.service = Service(controller=rig.controller, policy_source=s.policy_source, elector=s.elector,
                          telemetry=rig.telemetry, health=s.health, log=log)  # fmt: skip


def _check_restored(rig: Rig, cycles: list[Cycle]) -> None:
    """The first cycle after the restart serves the saved fit (same model and fit time) and decides as before it."""
    model, last_fit, decision = rig.notes["before"]
    first = _only(cycles[0]).decision
    assert first is not None and decision is not None
    assert (first.replicas, first.placeholders) == (decision.replicas, decision.placeholders)
    fc = rig.controller.forecaster(rig.world.key)
    assert fc.prediction is not None and fc.prediction.model == model
    assert fc.last_fit == last_fit, "the refit cadence goes on from the saved fit, nothing refitted"


def _nothing(_rig: Rig) -> None:
    """Nothing to clear: the restarted controller simply runs on."""


PROCESS_FAULTS = [
    Fault(
        "restart-mid-day",
        _restart_mid_day,
        _nothing,
        (LogEvent("fit_state_saved", {"targets": 1}), LogEvent("fit_state_loaded", {"targets": 1, "parts": 1})),
        setup=_keep_fits_in_configmaps,
        check_during=_check_restored,
        doc="the controller restarts (an upgrade, a leader change): it restores its fits and recent decisions from "
        "its ConfigMaps and decides on at once as it did, without starting its models over",
    ),
    Fault(
        "controller-sigkill-mid-cycle",
        _kill_leader_mid_cycle,
        _lease_expires,
        (LogEvent("lease_acquired", {"previous": "victim"}),),
        During(standby=True),
        check_during=_check_victim_died_mid_cycle,
        processes=1,
        doc="the leader dies holding the Lease; its successor waits for expiry, then acts normally",
    ),
    Fault(
        "two-controller-replicas",
        _start_second_replica,
        _stop_second_replica,
        (
            LogEvent("standby", source="replica-b"),
            MetricSample("autoscaler_leader", at_least=0, at_most=0, source="replica-b"),
            # The in-process controller elects no Lease (AlwaysLeader): its lease label is empty.
            MetricSample("autoscaler_leader", {"lease": ""}, at_least=1, at_most=1, delta=False),
        ),
        check_during=_check_one_writer,
        processes=1,
        doc="a second enforcing replica runs: exactly one acts",
    ),
    Fault(
        "hung-loop",
        _hang_the_loop,
        _standby_releases,
        (
            LogEvent("lease_renewal_stopped", {"reason": "the control loop made no progress"}),
            LogEvent("lease_acquired", {"previous": "replica-a", "component": "leader-b"}),
            LogEvent("lease_renewal_resumed"),
        ),
        During(standby=True),
        setup=_lead_with_a_lease,
        check_during=_check_stuck_loop,
        doc="the leader's loop makes no progress past the stall limit: liveness fails, it stops renewing, the "
        "standby takes the Lease once it expires; back to leading when the standby lets go",
    ),
]


# -------------------------------------------------------------------------------- clocks
def _jump(seconds: float) -> Step:
    def inject(rig: Rig) -> None:
        rig.notes["series"] = rig.controller.forecaster(rig.world.key).series
        rig.clock.offset = seconds

    return inject


def _clock_back(rig: Rig) -> None:
    rig.clock.offset = 0.0


def _check_history_intact(rig: Rig, after: Cycle) -> None:
    """The forecaster's load series kept every bucket it had, on the same grid, not moved back."""
    old, new = rig.notes["series"], rig.controller.forecaster(rig.world.key).series
    assert old is not None and new is not None and new.step == old.step
    assert new.start >= old.start and new.end >= old.end, (old.start, old.end, new.start, new.end)
    assert (new.start - old.start) % old.step == 0, "same bucket grid"
    overlap = old.values[round((new.start - old.start) / old.step) :]
    np.testing.assert_array_equal(new.values[: len(overlap)], overlap)


def _clock_evidence(direction: str) -> tuple[Evidence, ...]:
    return (
        LogEvent("clock_jump", {"kind": "clock_jump", "direction": direction}),
        MetricSample("autoscaler_clock_jumps_total", {"direction": direction}),
    )


CLOCK_FAULTS = [
    Fault(
        "clock-jump-forward-2h",
        _jump(7200.0),
        _clock_back,
        (*_clock_evidence("forward"), *_signal_unknown("load", "metrics_empty")),
        MISSING,
        doc="Prometheus has no samples at the controller's time: hold, never scale down",
    ),
    Fault(
        "clock-jump-backward-10min",
        _jump(-600.0),
        _clock_back,
        _clock_evidence("backward"),
        check_after=_check_history_intact,
        doc="the controller sees the load of 10 minutes ago: decides normally, keeps its history",
    ),
]

# The clock rows run before the (slow) process rows: the backward jump reads backfilled data
# from 10 minutes before "now", which exists during the first 5 minutes of the module.
FAULTS = [*PROMETHEUS_FAULTS, *API_FAULTS, *CONFIGMAP_FAULTS, *CLOCK_FAULTS, *PROCESS_FAULTS]


# ------------------------------------------------------------------------------ the test
def _only(cycle: Cycle) -> TargetResult:
    """The result for the matrix's target (a row may add another target; its checks look at that one)."""
    assert cycle.result is not None, "the cycle stood by or failed"
    (result,) = [r for r in cycle.result.results if r.target.endswith(f"/{DEPLOYMENT}")]
    return result


def _last_problems(rig: Rig) -> dict[str, str]:
    decisions = rig.log.events("decision")
    assert decisions, "no decision logged"
    problems: dict[str, str] = decisions[-1]["observation"].get("problems", {})
    return problems


def assert_capacity_kept(cycle: Cycle, floor: Counts) -> None:
    """Serving replicas did not go down, nor did the total capacity (serving + placeholders).

    The total may only come down to ``floor`` (the steady state before the fault) when
    someone else had raised it: a replica an operator added stands in for a placeholder.
    """
    before, after = cycle.before, cycle.after
    assert after.replicas >= before.replicas, f"serving replicas went down: {before} -> {after}"
    assert after.total >= min(before.total, floor.total), f"capacity went down: {before} -> {after} (floor {floor})"


def assert_no_crash(rig: Rig) -> None:
    """No cycle raised out of the controller (the service logs and counts that as ``unexpected``)."""
    assert not rig.log.events("cycle_failed"), rig.log.events("cycle_failed")
    unexpected = rig.telemetry.registry.get_sample_value("autoscaler_errors_total", {"kind": "unexpected"})
    assert not unexpected


def assert_normal(rig: Rig, cycle: Cycle) -> None:
    """A normal decision: written (or nothing to write), data ok, no hold, its signals known."""
    result = _only(cycle)
    assert result.error is None, result.error
    d = result.decision
    assert d is not None
    assert d.data_ok and not HOLDS & set(d.reasons), d.to_dict()
    assert result.applied is not None and result.applied.refused is None
    unknown = {s: k for s, k in _last_problems(rig).items() if s in USED_SIGNALS}
    assert not unknown, f"signals still unknown: {unknown}"


def assert_during(rig: Rig, during: During, cycle: Cycle, mark: int) -> None:
    """The row's expectation for a cycle under the fault."""
    if during.standby:
        assert cycle.result is None, "a standby replica must not act"
        assert rig.log.events("standby", mark), "standing by is logged"
        return
    result = _only(cycle)
    if during.error is not None:
        assert result.error is not None and result.error.kind == during.error, result.error
        assert result.applied is None, "nothing is written on a state that could not be read or written"
        return
    assert result.error is None, result.error
    d = result.decision
    assert d is not None
    assert d.replicas >= d.current_replicas, d.to_dict()
    assert d.replicas + d.placeholders >= d.current_replicas + d.current_placeholders, d.to_dict()
    if during.hold is not None:
        assert not d.data_ok and during.hold.value in d.reasons, d.to_dict()
    else:
        assert d.data_ok and not HOLDS & set(d.reasons), d.to_dict()


def _forecast_available(cycle: Cycle) -> bool:
    d = _only(cycle).decision
    return d is not None and d.predicted_load_pod_horizon is not None and d.predicted_load_node_horizon is not None


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(fault: Fault, rig: Rig) -> None:
    """No capacity lost, no crash, evidence naming the fault, normal again one cycle after it clears."""
    if fault.setup is not None:
        fault.setup(rig)
    baseline = rig.cycle()
    assert_normal(rig, baseline)
    assert_capacity_kept(baseline, baseline.before)
    assert _forecast_available(baseline), _only(baseline).decision
    floor = baseline.after

    rig.mark()
    fault.inject(rig)
    if not fault.inject_lowers:
        assert_capacity_kept(Cycle(None, floor, rig.world.counts()), floor)
    cycles = []
    for _ in range(fault.cycles):
        mark = len(rig.log.records)
        cycle = rig.cycle()
        cycles.append(cycle)
        assert_capacity_kept(cycle, floor)
        assert_no_crash(rig)
        assert_during(rig, fault.during, cycle, mark)
    if fault.check_during is not None:
        fault.check_during(rig, cycles)

    fault.clear(rig)
    after = rig.cycle()
    assert_no_crash(rig)
    assert_capacity_kept(after, floor)
    assert_normal(rig, after)
    if fault.check_after is not None:
        fault.check_after(rig, after)

    missing = [m for evidence in fault.evidence if (m := evidence.missing(rig)) is not None]
    assert not missing, f"no evidence naming {fault.name}: {missing}"

    if not _forecast_available(after):
        if fault.known_issue is not None:
            pytest.xfail(f"known issue: {fault.known_issue}")
        raise AssertionError(f"the forecast is unavailable after {fault.name} cleared: {_only(after).decision}")
