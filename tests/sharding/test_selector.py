"""The shard definition: selector parsing and matching, target selection, start-up errors. Pure.

Why: a selector that silently parses differently from ``kubectl -l`` (or from the API
server's semantics for ``!=``/``notin`` on a missing key) would hand a target to the wrong
shard or to none; a bad selector must stop the controller at start-up with one clear line
(exit 2), never run with a guess. The CLI cases run ``autoscaler run`` in-process: the
flags are checked before any server is contacted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.cli.main import main
from autoscaler.errors import ConfigError
from autoscaler.kube.sharding import (
    CLAIMS_TRUNCATED,
    LabelSelector,
    Requirement,
    SelectorError,
    Shard,
    decode_claims,
    encode_claims,
    parse_shard,
    select_targets,
)
from autoscaler.policy.schema import Policy, Target

LABELS = {"team": "x", "tier": "a", "example.com/gpu": "t4", "empty": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("team=x", True),
        ("team==x", True),
        ("team = x", True),
        ("team=y", False),
        ("team!=y", True),
        ("team!=x", False),
        ("missing!=x", True),  # API server semantics: absent key matches !=
        ("tier in (a,b)", True),
        ("tier in (b, c)", False),
        ("tier notin (b,c)", True),
        ("missing notin (b)", True),
        ("missing in (b)", False),
        ("team", True),
        ("missing", False),
        ("!missing", True),
        ("!team", False),
        ("example.com/gpu=t4", True),
        ("empty=", True),
        ("empty", True),
        ("team=x,tier in (a,b)", True),
        ("team=x, tier in (a,b), !canary", True),
        ("team=x,tier notin (a)", False),
        ("team=x,team=y", False),  # ANDed, not ORed
    ],
)
def test_selector_matches_like_the_api_server(text: str, expected: bool) -> None:
    """Each supported form matches (or not) as ``kubectl -l`` would on the same labels."""
    assert LabelSelector.parse(text).matches(LABELS) is expected


def test_selector_canonical_text_and_structure() -> None:
    """Parsed requirements keep their order; set values are sorted and de-duplicated."""
    sel = LabelSelector.parse(" team==x ,tier in (b,a,b),!canary,gpu ")
    assert sel.requirements == (
        Requirement("team", "=", ("x",)),
        Requirement("tier", "in", ("a", "b")),
        Requirement("canary", "!"),
        Requirement("gpu", "exists"),
    )
    assert str(sel) == "team=x,tier in (a,b),!canary,gpu"
    assert LabelSelector.parse(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty selector"),
        ("   ", "empty selector"),
        ("team=x,", "expected a label key"),
        ("tier in ()", "expected a value in the set of tier"),
        ("tier in (a,b", "expected ',' or ')'"),
        ("tier in a", "expected '(' after tier in"),
        ("team=x tier=y", "expected ',' between requirements"),
        ("team>3", "unexpected character '>'"),
        ("team=x;y", "unexpected character ';'"),
        ("-team=x", "label key '-team'"),
        ("Bad_Prefix/key=x", "prefix must be a DNS subdomain"),
        ("team=" + "v" * 64, "label value"),
        ("team=x(", "expected ',' between requirements"),
        ("team foo", "unexpected 'foo' after label key 'team'"),
        ("!", "expected a label key after '!'"),
    ],
)
def test_bad_selectors_are_refused_with_a_reason(text: str, message: str) -> None:
    """Every syntax or naming error raises SelectorError naming the problem."""
    with pytest.raises(SelectorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LabelSelector.parse(text)


def test_parse_shard_flags() -> None:
    """Both flags, either, or neither; errors carry the flag as their path."""
    assert parse_shard(None, None) is None
    shard = parse_shard("a, b", "team=x")
    assert shard is not None and shard.namespaces == {"a", "b"} and str(shard.selector) == "team=x"
    assert shard.describe() == {"namespaces": ["a", "b"], "selector": "team=x"}
    assert parse_shard("a", None) == Shard(namespaces=frozenset({"a"}))
    for namespaces, selector, path in (("", None, "--shard-namespaces"), ("a,,b", None, "--shard-namespaces"),
                                       ("Bad_NS", None, "--shard-namespaces"), (None, "x in", "--shard-selector")):
        with pytest.raises(ConfigError) as err:
            parse_shard(namespaces, selector)
        assert err.value.path == path


def _policy(*keys: str) -> Policy:
    return Policy(targets=tuple(Target(namespace=k.split("/")[0], deployment=k.split("/")[1]) for k in keys),
                  loop_interval_seconds=15)


def test_select_targets_by_namespace_and_labels() -> None:
    """Namespaces need no labels; a selector needs them, and a target whose labels are unknown is skipped."""
    policy = _policy("a/one", "b/two", "b/three", "c/four")
    by_ns = select_targets(policy, Shard(namespaces=frozenset({"b"})), {})
    assert by_ns.owned == ("b/two", "b/three") and by_ns.total == 4 and not by_ns.unreadable
    assert by_ns.policy.loop_interval_seconds == 15  # everything but the targets is kept

    shard = Shard(namespaces=frozenset({"b", "c"}), selector=LabelSelector.parse("team=x"))
    labels = {"b/two": {"team": "x"}, "b/three": {"team": "y"}, "a/one": {"team": "x"}}  # c/four unreadable
    sel = select_targets(policy, shard, labels)
    assert sel.owned == ("b/two",) and sel.claimed == ("b/two",)
    assert sel.unreadable == ("c/four",)  # a/one is outside the namespaces: never read, not "unreadable"

    nothing = select_targets(policy, Shard(namespaces=frozenset({"zzz"})), {})
    assert nothing.owned == () and nothing.policy.targets == ()


def test_overlapping_claims_are_yielded_to_the_first_lease_name() -> None:
    """Two shards claiming one target: exactly one keeps it, deterministically (the Lease name sorting first)."""
    policy = _policy("a/one", "a/two")
    shard = Shard(namespaces=frozenset({"a"}))
    claims = {"shard-a": ["a/one"], "shard-z": ["a/two"], "shard-m": ["a/one"]}
    as_m = select_targets(policy, shard, {}, claims=claims, own_lease="shard-m")
    assert as_m.claimed == ("a/one", "a/two")  # what it publishes: before yielding
    assert as_m.yielded == ("a/one",) and as_m.owned == ("a/two",)
    assert as_m.overlaps == {"a/one": ("shard-a",), "a/two": ("shard-z",)}
    as_a = select_targets(policy, shard, {}, claims=claims, own_lease="shard-a")
    assert as_a.owned == ("a/one", "a/two") and as_a.yielded == ()
    assert as_a.overlaps == {"a/one": ("shard-m",), "a/two": ("shard-z",)}


def test_claims_round_trip_and_truncation() -> None:
    """The Lease annotation is a sorted JSON list; an oversized one is marked, never cut mid-list."""
    assert decode_claims(encode_claims(["b/x", "a/y"])) == ("a/y", "b/x")
    huge = [f"namespace-{i}/deployment-{i}" for i in range(10_000)]
    assert encode_claims(huge) == CLAIMS_TRUNCATED
    assert decode_claims(CLAIMS_TRUNCATED) is None
    assert decode_claims("{not json") is None and decode_claims('{"a": 1}') is None and decode_claims(None) is None


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    policy = tmp_path / "p.yaml"
    policy.write_text("targets: [{namespace: a, deployment: b}]\n")
    code = main(["run", "--policy", str(policy), "--prometheus-url", "http://127.0.0.1:9",
                 "--kubeconfig", str(tmp_path / "none"), "--lease-namespace", "ns", "--log-format", "console",
                 *flags])
    return code, capsys.readouterr().err


def test_bad_shard_flags_stop_start_up_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad selector, a bad namespace list, or a shard without its own Lease: one clear line, exit 2."""
    code, err = _run(tmp_path, capsys, "--shard-selector", "team in (a", "--lease-name", "s")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: --shard-selector: expected ',' or ')'")
    code, err = _run(tmp_path, capsys, "--shard-namespaces", "A_B", "--lease-name", "s")
    assert code == 2 and "error: --shard-namespaces: 'A_B' is not a valid namespace name" in err
    code, err = _run(tmp_path, capsys, "--shard-namespaces", "a")
    assert code == 2 and "error: --lease-name: a shard needs its own Lease" in err
    code, err = _run(tmp_path, capsys, "--shard-namespaces", "a", "--lease-name", "gpu-predictive-autoscaler")
    assert code == 2 and "a shard needs its own Lease" in err
    # The flags are fine: start-up gets as far as the (missing) kubeconfig.
    code, err = _run(tmp_path, capsys, "--shard-namespaces", "a", "--lease-name", "shard-a")
    assert code == 2 and "kubeconfig" in err.strip().splitlines()[-1]
