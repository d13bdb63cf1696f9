"""The ConfigMap fit-state store against a real API server: parts, the size limit, junk, outages.

Why: the saved state must survive what a real API server does (the 1 MiB object limit,
optimistic concurrency on replace, names only) and a restarted controller must get
it back; a broken or unreachable store must cost the controller its saved fits, never a
cycle.
"""

from __future__ import annotations

import base64
from typing import Any

import kubernetes.client
import numpy as np
import pytest
import yaml
from kubernetes.client import ApiClient

from autoscaler.errors import ClusterUnavailable
from autoscaler.forecasting.fit_state import MAX_PART_BYTES, decode, encode
from autoscaler.kube.client import KubeApi, from_api_client
from autoscaler.kube.fit_store import MAX_PARTS, PART_KEY, PART_LABEL, SET_LABEL, ConfigMapFitStore, fit_store_prefix
from autoscaler.policy.schema import Policy
from autoscaler.runtime.controller import Controller
from tests.sim.test_restart import START, world

from .conftest import REPO_ROOT, make_target

pytestmark = pytest.mark.cluster

PREFIX = fit_store_prefix("gpu-predictive-autoscaler")


def test_the_role_names_every_part_of_the_default_lease_and_long_leases_still_fit() -> None:
    documents = yaml.safe_load_all((REPO_ROOT / "deploy" / "rbac.yaml").read_text())
    role = next(d for d in documents if d and d["kind"] == "Role")
    named = [r["resourceNames"] for r in role["rules"] if "resourceNames" in r and "update" in r["verbs"]]
    assert [f"{PREFIX}-{i}" for i in range(MAX_PARTS)] in named
    assert len(fit_store_prefix("x" * 63)) <= 50


def states(n: int, size: int, seed: int = 1) -> dict[str, dict[str, list[float]]]:
    rng = np.random.default_rng(seed)
    return {f"ns/t{i}": {"w": rng.normal(size=size).tolist()} for i in range(n)}


def names(core: kubernetes.client.CoreV1Api, namespace: str) -> list[str]:
    items = core.list_namespaced_config_map(namespace, label_selector=f"{SET_LABEL}={PREFIX}").items
    return sorted(cm.metadata.name for cm in items)


def test_parts_round_trip_and_a_smaller_save_deletes_the_rest(
    admin: KubeApi, core: kubernetes.client.CoreV1Api, namespace: str
) -> None:
    store = ConfigMapFitStore(admin, namespace=namespace, prefix=PREFIX)
    assert store.load() == []
    many = encode(states(60, 100), max_part_bytes=8 * 1024)
    assert len(many) >= 3
    store.save(many)
    assert names(core, namespace) == sorted(f"{PREFIX}-{i}" for i in range(len(many)))
    assert store.load() == many
    store.save(many)  # replace in place
    one = encode(states(2, 10))
    store.save(one)
    assert names(core, namespace) == [f"{PREFIX}-0"]
    assert decode(store.load()).states == states(2, 10)


def test_a_save_writes_only_the_parts_that_changed(
    admin: KubeApi, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller changes one group's part per save: only that part is sent again.

    (The API server would take an identical replace as a no-op anyway, but only after
    the request carried the part: ~150 KB per part at 1,000 targets.)
    """
    store = ConfigMapFitStore(admin, namespace=namespace, prefix=PREFIX)
    parts = encode(states(30, 100), max_part_bytes=8 * 1024)
    assert 2 <= len(parts) < MAX_PARTS
    store.save(parts)
    calls: list[str] = []
    call = admin.call

    def recording(fn: Any, *args: Any, what: str) -> Any:
        calls.append(what)
        return call(fn, *args, what=what)

    monkeypatch.setattr(admin, "call", recording)
    changed = list(parts)
    changed[1] = encode({"ns/t1": {"w": [1.0]}})[0]
    store.save(changed)
    n = len(parts)
    assert calls == [f"replace configmap {namespace}/{PREFIX}-1", f"delete configmap {namespace}/{PREFIX}-{n}"]
    assert store.load() == changed


def test_a_full_size_part_fits_in_one_object(admin: KubeApi, namespace: str) -> None:
    """A part just under MAX_PART_BYTES (random weights barely compress) is taken by the API server."""
    size, parts = 60_000, encode(states(1, 60_000, seed=2))
    for _ in range(3):  # grow the state until its one part is within 5 % of the limit
        size = int(size * 0.97 * MAX_PART_BYTES / max(1, len(parts[0]) if parts else MAX_PART_BYTES))
        parts = encode(states(1, size, seed=2))
    assert len(parts) == 1 and 0.9 * MAX_PART_BYTES < len(parts[0]) <= MAX_PART_BYTES
    store = ConfigMapFitStore(admin, namespace=namespace, prefix=PREFIX)
    store.save(parts)
    assert decode(store.load()).states == states(1, size, seed=2)


def test_junk_in_the_set_is_skipped_and_reported_not_fatal(
    admin: KubeApi, core: kubernetes.client.CoreV1Api, namespace: str
) -> None:
    good = encode(states(3, 5))
    store = ConfigMapFitStore(admin, namespace=namespace, prefix=PREFIX)
    store.save(good)
    labels = {SET_LABEL: PREFIX, PART_LABEL: "1"}
    junk = base64.b64encode(b"not a gzip document").decode()
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": f"{PREFIX}-1", "labels": labels}, "binaryData": {PART_KEY: junk}}
    )
    no_data = {SET_LABEL: PREFIX, PART_LABEL: "2"}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": f"{PREFIX}-2", "labels": no_data}})
    foreign = {SET_LABEL: PREFIX, PART_LABEL: "x"}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": f"{PREFIX}-x", "labels": foreign}})
    out = decode(store.load())
    assert out.states == states(3, 5)
    assert len(out.ignored) == 1 and "unreadable" in out.ignored[0]
    store.save(good)  # the junk parts after the set are deleted, the foreign name left alone
    assert names(core, namespace) == [f"{PREFIX}-0", f"{PREFIX}-x"]


def test_more_parts_than_the_role_names_keeps_the_first_ones(
    admin: KubeApi, core: kubernetes.client.CoreV1Api, namespace: str
) -> None:
    many = encode(states(200, 100), max_part_bytes=4 * 1024)
    assert len(many) > MAX_PARTS
    store = ConfigMapFitStore(admin, namespace=namespace, prefix=PREFIX)
    store.save(many)
    assert names(core, namespace) == sorted(f"{PREFIX}-{i}" for i in range(MAX_PARTS))
    assert store.load() == many[:MAX_PARTS]


def test_a_restarted_controller_restores_its_fits_from_the_configmaps(admin: KubeApi, namespace: str) -> None:
    w = world()
    target = make_target("llm", "vllm-0")
    policy = Policy(targets=(target,))
    store = ConfigMapFitStore(admin, namespace=namespace, prefix=PREFIX)

    def controller() -> Controller:
        return Controller(policy=policy, metrics=w.metrics, cluster=w.port, clock=w.clock, fit_store=store)

    first = controller()
    for i in range(3):
        first.reconcile_once(START + 30.0 * i)
    fitted = first.forecaster(target.key).prediction
    assert fitted is not None and fitted.model.startswith("auto(")
    first.save_fit_state(START + 90.0)
    second = controller()
    second.reconcile_once(START + 120.0)
    restored = second.forecaster(target.key).prediction
    assert restored is not None and restored.model == fitted.model


def test_an_unreachable_store_costs_the_saved_fits_not_the_cycle() -> None:
    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:1"  # nothing listens: connection refused
    api = from_api_client(ApiClient(configuration=cfg), timeout=(1.0, 1.0))
    store = ConfigMapFitStore(api, namespace="gpu-autoscaler", prefix=PREFIX)
    with pytest.raises(ClusterUnavailable):
        store.load()
    with pytest.raises(ClusterUnavailable):
        store.save([b"x"])
    w = world()
    events: list[str] = []

    class Log:
        def info(self, event: str, **_: object) -> None:
            events.append(event)

        warning = error = info

    target = make_target("llm", "vllm-0")
    c = Controller(
        policy=Policy(targets=(target,)), metrics=w.metrics, cluster=w.port, clock=w.clock, fit_store=store, log=Log()
    )
    result = c.reconcile_once(START)
    assert result.results[0].decision is not None
    c.save_fit_state(START + 30.0)
    assert "fit_state_unavailable" in events and "fit_state_save_failed" in events
