"""Turn a policy document (YAML text, e.g. a ConfigMap key) into a validated ``Policy``.

Loading is all-or-nothing: any problem rejects the whole document with every field path
and reason (:class:`~autoscaler.errors.PolicyRejected`), so a running controller can keep
its last good policy. Input is untrusted: size is capped before parsing (a file is read
no further than the cap, and only if it is a regular file: ``/dev/zero`` or a FIFO is
refused, not read forever), YAML anchors and aliases are refused (no "billion laughs"), a
key given twice in one mapping is refused (YAML would silently keep the last), nesting
depth is capped, and only plain YAML types are built (``safe_load`` semantics).
"""

from __future__ import annotations

import copy
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from autoscaler.errors import ConfigError, PolicyRejected
from autoscaler.policy.fields import Problems, parse
from autoscaler.policy.schema import Policy

#: Largest policy document accepted. A ConfigMap holds at most 1 MiB in total.
MAX_POLICY_BYTES = 256 * 1024
#: Deepest nesting accepted (the schema needs 5).
MAX_DEPTH = 20


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases: a policy never needs them, bombs do."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.YAMLError(f"YAML anchors are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """SafeLoader's mapping, refusing a key that appears twice (merge keys aside)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: SafeLoader reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    """Like SafeLoader's int, but a literal past Python's digit limit becomes ±inf (reported at its field)."""
    try:
        return loader.construct_yaml_int(node)
    except ValueError:
        return float("-inf") if str(node.value).lstrip().startswith("-") else float("inf")


_NoAliasLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_policy(text: str | bytes) -> Policy:
    """Parse and validate a policy document.

    Pure (no IO). Args:
        text: The YAML document.

    Returns:
        The validated policy.

    Raises:
        PolicyRejected: listing every problem, each with its field path and reason.
    """
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyRejected([ConfigError("", f"document is {len(raw)} bytes; the limit is {MAX_POLICY_BYTES}")])
    try:
        # _NoAliasLoader is a SafeLoader subclass (bandit B506 / ruff S506 cannot tell).
        data = yaml.load(raw, Loader=_NoAliasLoader)  # noqa: S506  # nosec B506
    except yaml.YAMLError as exc:
        raise PolicyRejected([ConfigError("", f"not valid YAML: {exc}")]) from exc
    except RecursionError as exc:
        reason = f"not valid YAML: nesting too deep to parse (more than {MAX_DEPTH} levels are refused)"
        raise PolicyRejected([ConfigError("", reason)]) from exc
    except (ValueError, MemoryError) as exc:
        raise PolicyRejected([ConfigError("", f"not valid YAML: {exc!r}")]) from exc
    return build_policy(data)


def build_policy(data: Any) -> Policy:
    """Validate an already-parsed document (a mapping) into a ``Policy``.

    Pure. Raises:
        PolicyRejected: listing every problem.
    """
    problems = Problems()
    if _depth(data) > MAX_DEPTH:
        raise PolicyRejected([ConfigError("", f"nesting deeper than {MAX_DEPTH} levels")])
    if not isinstance(data, Mapping):
        raise PolicyRejected([ConfigError("", "the policy must be a YAML mapping with a 'targets' list")])
    data = dict(data)
    defaults = data.pop("defaults", None)
    targets = data.get("targets")
    if isinstance(targets, list):
        for i, t in enumerate(targets):
            if isinstance(t, Mapping):
                _check_cost_conflict(t, f"targets[{i}]", problems)
    if defaults is not None:
        if not isinstance(defaults, Mapping):
            problems.add("defaults", "expected a mapping of target fields")
        else:
            _check_cost_conflict(defaults, "defaults", problems)
            if isinstance(targets, list):
                data["targets"] = [_merge_target(defaults, t) if isinstance(t, Mapping) else t for t in targets]
    policy = parse(Policy, data, problems=problems)
    if problems.items or policy is None:
        raise PolicyRejected(problems.items or [ConfigError("", "invalid policy")])
    return policy


def read_policy_bytes(path: str | Path) -> bytes:
    """A policy file's bytes, read no further than the size cap, from a regular file only.

    Opened without blocking (a FIFO with no writer would otherwise hang the reader) and
    refused unless it is a regular file: a device such as ``/dev/zero`` never ends.

    Raises:
        OSError: the file cannot be opened or read.
        PolicyRejected: not a regular file, or larger than :data:`MAX_POLICY_BYTES`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PolicyRejected([ConfigError("", f"{path} is not a regular file")])
        raw = f.read(MAX_POLICY_BYTES + 1)
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyRejected([ConfigError("", f"{path} is larger than the {MAX_POLICY_BYTES}-byte limit of a policy")])
    return raw


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a policy file.

    Raises:
        PolicyRejected: on any problem, including an unreadable file.
    """
    try:
        raw = read_policy_bytes(path)
    except OSError as exc:
        raise PolicyRejected([ConfigError("", f"cannot read {path}: {exc.strerror}")]) from exc
    return load_policy(raw)


def _sets_cost(mapping: Mapping[str, Any]) -> bool:
    """Whether a target (or ``defaults``) mapping itself states the cost knob."""
    return mapping.get("cost") is not None


def _sets_quantile(mapping: Mapping[str, Any]) -> bool:
    """Whether a target (or ``defaults``) mapping itself states ``forecast.quantile``."""
    forecast = mapping.get("forecast")
    return isinstance(forecast, Mapping) and "quantile" in forecast


def _check_cost_conflict(mapping: Mapping[str, Any], path: str, problems: Problems) -> None:
    """Reject ``cost`` and ``forecast.quantile`` stated together at one level.

    Both decide the same number, so silently preferring one would hide a mistake.
    """
    if _sets_cost(mapping) and _sets_quantile(mapping):
        problems.add(
            f"{path}.cost",
            "cannot be combined with forecast.quantile: cost sets the quantile (remove one of them)",
        )


def _merge_target(defaults: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``defaults`` into one target; the target's own cost or quantile wins over the other's default.

    ``cost`` and ``forecast.quantile`` are two spellings of one setting, so a target that
    states one of them drops the other one inherited from ``defaults`` (as a target's own
    field wins over its default everywhere else).
    """
    merged = _merge(defaults, target)
    if _sets_cost(target) and not _sets_quantile(target):
        forecast = merged.get("forecast")
        if isinstance(forecast, dict):
            forecast.pop("quantile", None)
    elif _sets_quantile(target) and not _sets_cost(target):
        merged.pop("cost", None)
    return merged


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` onto ``base`` (mappings merge, everything else replaces)."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, Mapping):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
