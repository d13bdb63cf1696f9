"""One set of Prometheus connection options, the same on ``run``, ``observe`` and ``backtest``.

The older ``observe``/``backtest`` spellings still parse into the same value, after one
warning line on stderr that names the new flag.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from autoscaler.adapters.prometheus import PrometheusConnection
from autoscaler.cli import options
from autoscaler.cli.main import build_parser

URL = "http://prometheus.test:9090"
NEW = (
    "--prometheus-url",
    "--prometheus-bearer-token-file",
    "--prometheus-ca-file",
    "--prometheus-insecure-skip-tls-verify",
    "--prometheus-timeout",
)
OLD = {
    "--bearer-token-file": "--prometheus-bearer-token-file",
    "--ca-file": "--prometheus-ca-file",
    "--insecure-skip-tls-verify": "--prometheus-insecure-skip-tls-verify",
    "--timeout": "--prometheus-timeout",
}


#: The least each command needs besides the Prometheus options.
REQUIRED = {
    "run": ["--policy", "policy.yaml"],
    "observe": ["--target", "llm/vllm"],
    "backtest": ["--target", "llm/vllm"],
}


def _parse(*argv: str, timeout: float = 10.0) -> PrometheusConnection:
    parser = argparse.ArgumentParser()
    options.add_prometheus_options(parser, timeout=timeout)
    return options.prometheus_connection(parser.parse_args(argv))


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_every_command_takes_the_same_prometheus_flags(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "token"
    file.write_text("t")
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    assert all(flag in text for flag in NEW)
    for old, new in OLD.items():
        value = [] if "insecure" in old else ["3"] if "timeout" in old else [str(file)]
        args = build_parser().parse_args([command, *REQUIRED[command], "--prometheus-url", URL, old, *value])
        got = options.prometheus_connection(args)
        assert got == options.prometheus_connection(
            build_parser().parse_args([command, *REQUIRED[command], "--prometheus-url", URL, new, *value])
        )
        assert capsys.readouterr().err == f"warning: {old} is deprecated; use {new}\n"


def test_defaults() -> None:
    assert _parse("--prometheus-url", URL) == PrometheusConnection(URL, timeout_seconds=10.0)
    assert _parse("--prometheus-url", URL, timeout=30.0).timeout_seconds == 30.0


def test_new_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.pem"
    token.write_text("t")
    ca.write_text("c")
    got = _parse(
        "--prometheus-url", URL, "--prometheus-bearer-token-file", str(token), "--prometheus-ca-file", str(ca),
        "--prometheus-insecure-skip-tls-verify", "--prometheus-timeout", "3",
    )  # fmt: skip
    assert got == PrometheusConnection(URL, bearer_token_file=token, ca_file=ca, verify_tls=False, timeout_seconds=3.0)
    assert capsys.readouterr().err == ""


def test_old_spellings_still_work_with_one_warning_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.pem"
    token.write_text("t")
    ca.write_text("c")
    got = _parse(
        "--prometheus-url", URL, "--bearer-token-file", str(token), "--ca-file", str(ca),
        "--insecure-skip-tls-verify", "--timeout", "3",
    )  # fmt: skip
    assert got == PrometheusConnection(URL, bearer_token_file=token, ca_file=ca, verify_tls=False, timeout_seconds=3.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"warning: {old} is deprecated; use {new}" for old, new in OLD.items()]


def test_old_spellings_are_checked_like_the_new_ones() -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    options.add_prometheus_options(parser, timeout=10.0)
    with pytest.raises(argparse.ArgumentError, match="must be a finite number"):
        parser.parse_args(["--prometheus-url", URL, "--timeout", "inf"])


def test_old_spellings_are_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["observe", "--help"])
    text = capsys.readouterr().out.replace("--prometheus-", "")
    assert not any(f"{old} " in text for old in OLD)
