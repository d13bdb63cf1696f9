"""``NAMESPACE/NAME`` references: split in one place, checked by the option types built on it."""

from __future__ import annotations

import argparse

import pytest

from autoscaler.cli import options
from autoscaler.offline.backtest.replay import parse_target


def test_split_ref() -> None:
    assert options.split_ref("llm/vllm-a") == ("llm", "vllm-a")


@pytest.mark.parametrize("text", ["vllm", "/vllm", "llm/", "llm/a/b", ""])
def test_split_ref_refuses_anything_but_two_parts(text: str) -> None:
    with pytest.raises(ValueError, match="expected NAMESPACE/NAME"):
        options.split_ref(text)
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAMESPACE/DEPLOYMENT"):
        options.target(text)
    with pytest.raises(argparse.ArgumentTypeError, match="expected NAMESPACE/NAME"):
        options.object_ref(text)
    with pytest.raises(ValueError, match="--target must be NAMESPACE/DEPLOYMENT"):
        parse_target(text)


def test_the_parts_are_checked_as_names() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="'LLM' is not a valid name"):
        options.target("LLM/x")
    assert options.object_ref("llm/policy.v1") == "llm/policy.v1"
    assert parse_target("llm/vllm") == "llm/vllm"
