"""``autoscaler observe`` end to end, through the real command line, against the live test server.

Why: the command is how an operator checks, read-only, what the controller would see: the
signals (with the reason for every unknown one), the lead times and the forecast at the
cold-start horizon, seeded from Prometheus history. It runs here against the live server,
whose ``vllm-a`` pods also have two days of backfilled diurnal history.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from autoscaler.cli.main import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from autoscaler.core.leadtimes import LeadTimes
from autoscaler.policy.schema import ColdStart
from tests.prom.server import free_port

from .conftest import FEED_RATE, Live

pytestmark = pytest.mark.prometheus

POLICY = """
loopIntervalSeconds: 30
targets:
  - namespace: llm
    deployment: vllm-a
    modelName: model-a
    metrics: {rateWindow: 5s}
    forecast: {model: seasonal_naive, seasons: [daily], historyDays: 2, resolutionSeconds: 300}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    """The policy file of the vllm-a target."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_observe_prints_observation_lead_times_and_forecast(
    live: Live, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text output shows the live signals, the lead times and a forecast from the history."""
    argv = ["observe", "--prometheus-url", live.server.url, "--target", "llm/vllm-a", "--policy", str(policy)]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "target llm/vllm-a at " in out and "(14 queries" in out
    assert "running                 8 requests" in out
    assert "lead times (policy; 0 start-ups measured" in out
    assert "forecast (seasonal_naive" in out and "p90 " in out


def test_observe_json_values_match_the_served_load_and_the_diurnal_history(
    live: Live, policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON output's load is the fed rate and its forecast follows yesterday's diurnal pattern."""
    argv = ["observe", "--prometheus-url", live.server.url, "--target", "llm/vllm-a", "--policy", str(policy)]
    assert main([*argv, "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["signals"]["load"] == pytest.approx(FEED_RATE["a0"] + FEED_RATE["a1"], rel=0.1)
    assert result["signals"]["running"] == 8 and result["problems"] == {}
    lead = LeadTimes.from_policy(ColdStart())
    assert result["lead_times"]["total"] == lead.total and result["lead_times"]["source"] == "policy"
    forecast = result["forecast"]
    assert forecast["model"].startswith("seasonal_naive") and forecast["horizon_seconds"] == lead.total + 30
    # the history's arrival rate is 30 + 10 cos(2π(t - 14 h)/1 d): seasonal-naive repeats yesterday's bucket
    at = forecast["at"]
    bucket = at - at % 300
    expected = 30 + 10 * math.cos(2 * math.pi * (bucket + 150 - 14 * 3600) / 86400)
    assert forecast["mean"] == pytest.approx(expected, rel=0.05)
    assert forecast["p50"] <= forecast["p90"]


def test_observe_refuses_bad_target_and_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed target is a usage error (2); an unreachable Prometheus a runtime error (1)."""
    assert main(["observe", "--prometheus-url", "http://127.0.0.1:9", "--target", "vllm-a"]) == EXIT_USAGE
    assert "NAMESPACE/DEPLOYMENT" in capsys.readouterr().err
    url = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    argv = ["observe", "--prometheus-url", url, "--target", "llm/vllm-a", "--prometheus-timeout", "1"]
    assert main(argv) == EXIT_FAILURE
    assert "did not answer any query" in capsys.readouterr().err
    assert time.monotonic() - began < 10
