"""The cost knob's trade-off curve in ``autoscaler simulate --tradeoff``.

Why: an operator chooses ``forecast.quantile`` from this curve, so every point must be the
same predictive policy with only the quantile changed, on the same load, labelled with the
cost ratio the newsvendor rule gives that quantile, next to the HPA and oracle.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from autoscaler.cli.main import main
from autoscaler.offline.sim.tradeoff import format_tradeoff, parse_quantiles, with_quantile
from autoscaler.offline.simulate import SimulateOptions, simulate
from autoscaler.policy.cost import cost_ratio_for_quantile
from autoscaler.policy.schema import Forecast, Target


def test_parse_quantiles_sorts_dedupes_and_keeps_to_the_policy_bounds() -> None:
    """Only quantiles a policy may hold ([0.5, 0.999]) are accepted."""
    assert parse_quantiles("0.9, 0.5,0.9,0.99") == (0.5, 0.9, 0.99)
    for bad, message in (("0.3", "outside"), ("1", "outside"), ("x", "not a number"), (" , ", "no quantiles")):
        with pytest.raises(ValueError, match=message):
            parse_quantiles(bad)


def test_with_quantile_changes_nothing_else() -> None:
    """The swept policy differs from the original in forecast.quantile only."""
    target = Target(namespace="llm", deployment="vllm", forecast=Forecast(quantile=0.9, model="holt_winters"))
    swept = with_quantile(target, 0.5)
    assert swept.forecast.quantile == 0.5 and swept.forecast.model == "holt_winters"
    assert with_quantile(swept, 0.9) == target


def test_simulate_tradeoff_curve(tmp_path: Path) -> None:
    """Half a day: one row per quantile with its cost ratio; HPA and oracle run as references.

    The policy sizes at the fixed default quantile (0.9), so its own run is reused as that point.
    """
    out = io.StringIO()
    policy = tmp_path / "fixed.yaml"
    policy.write_text("targets:\n  - {namespace: vllm, deployment: vllm-gpt2, capacity: {perReplica: 225}}\n")
    options = SimulateOptions(
        policy=policy,
        warmup_days=1.0,
        days=0.5,
        policies=("predictive",),
        tradeoff=(0.5, 0.9, 0.99),
        out=tmp_path,
        progress=False,
    )
    results = simulate(options, out=out)
    assert [r.name for r in results] == ["predictive"]
    doc = json.loads((tmp_path / "result.json").read_text())
    rows = doc["tradeoff"]
    assert [r["quantile"] for r in rows] == [0.5, 0.9, 0.99]
    for row in rows:
        assert row["cost_ratio"] == pytest.approx(cost_ratio_for_quantile(row["quantile"]), rel=1e-3)
    assert rows[0]["gpu_node_hours"] < rows[2]["gpu_node_hours"]
    predictive = doc["results"][0]
    assert rows[1]["gpu_node_hours"] == predictive["gpu_node_hours"]  # the policy's own quantile is reused
    assert rows[1]["slo_attainment_pct"] == predictive["slo_attainment_pct"]
    text = out.getvalue()
    assert "trade-off" in text and "hpa" in text and "oracle" in text
    png = tmp_path / "tradeoff.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000


def test_cli_rejects_a_bad_tradeoff_list(capsys: pytest.CaptureFixture[str]) -> None:
    """A quantile outside the policy bounds is a usage error with one line."""
    assert main(["simulate", "--tradeoff", "0.9,0.2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0.2" in err[0]


def test_format_tradeoff_lists_references_without_a_quantile() -> None:
    """Reference policies are rows with '-' for quantile and cost ratio."""
    rows = [
        {"quantile": 0.9, "cost_ratio": 0.15, "slo_attainment_pct": 99.1, "gpu_node_hours": 10.0, "scale_events": 3}
    ]
    table = format_tradeoff(
        rows, [{"policy": "hpa", "slo_attainment_pct": 88.0, "gpu_node_hours": 20.0, "scale_events": 40}]
    )
    lines = table.splitlines()
    assert "cost ratio" in lines[0] and "0.15" in lines[1]
    assert lines[2].split()[:3] == ["hpa", "-", "-"]
