"""A small declarative parser: YAML mappings -> frozen dataclasses, with field paths.

Why not a validation library: the policy is a handful of nested dataclasses whose fields
carry their own documentation (unit, bounds, default) in ``metadata``; the same metadata
produces the policy reference in ``docs/`` and the error messages, so the schema lives in
one place. Every problem is reported as ``ConfigError(path, reason)`` with a camelCase
path such as ``targets[0].scaling.maxReplicas``, and parsing collects all problems
instead of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from autoscaler.errors import ConfigError
from autoscaler.policy import formats

T = TypeVar("T")


def spec(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    choices: Callable[[], frozenset[str]] | None = None,
    format: str | None = None,  # the JSON-schema name of the same idea
) -> Any:
    """Declare a policy field with its documentation and bounds.

    Args:
        default: The default value; omit for a required field. Dataclass and tuple defaults
            are wrapped in a factory automatically.
        doc: One sentence for the policy reference: what the field does and why.
        unit: The unit shown in the reference (``s``, ``req/s``...).
        minimum: Inclusive lower bound for numbers (exclusive with ``exclusive_minimum``);
            for a ``duration`` string, in seconds.
        maximum: Inclusive upper bound for numbers (or seconds of a ``duration``).
        choices: A callable returning the allowed strings (for open registries).
        format: The string format a string field must follow (a name in
            :data:`autoscaler.policy.formats.FORMATS`: Kubernetes names, image references,
            durations, PromQL).

    Returns:
        A ``dataclasses.field`` carrying the metadata.
    """
    metadata = {
        "doc": doc,
        "unit": unit,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "choices": choices,
        "format": format,
    }
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    if dataclasses.is_dataclass(default) or isinstance(default, tuple | list | dict):
        frozen_default = default
        return dataclasses.field(default_factory=lambda: frozen_default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def camel(name: str) -> str:
    """``max_replicas`` -> ``maxReplicas`` (YAML keys follow Kubernetes conventions)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def join(path: str, key: str | int) -> str:
    """Extend a field path with a key or a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Problems:
    """Collects field problems during one parse."""

    def __init__(self) -> None:
        self.items: list[ConfigError] = []

    def add(self, path: str, reason: str) -> None:
        """Record one problem."""
        self.items.append(ConfigError(path, reason))


def parse(cls: type[T], data: Any, *, path: str = "", problems: Problems) -> T | None:
    """Parse ``data`` into the dataclass ``cls``; record problems instead of raising.

    Pure. Returns ``None`` when the value could not be built at all (problems recorded).
    """
    if not isinstance(data, Mapping):
        problems.add(path, f"expected a mapping, got {type_name(data)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {camel(f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.add(join(path, str(key) or '""'), f"unknown field (known: {known})")
    values: dict[str, Any] = {}
    before = len(problems.items)
    for key, f in fields.items():
        sub = join(path, key)
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.add(sub, "required field is missing")
            continue
        value = convert(hints[f.name], data[key], path=sub, problems=problems, meta=f.metadata)
        if value is not None or data[key] is None:
            values[f.name] = value
    if len(problems.items) > before:
        return None
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:  # pragma: no cover - guarded by the checks above
        problems.add(path, str(exc))
        return None
    check = getattr(obj, "check", None)
    if callable(check):
        for sub, reason in check():
            problems.add(join(path, sub), reason)
    return obj


def convert(hint: Any, value: Any, *, path: str, problems: Problems, meta: Mapping[str, Any]) -> Any:
    """Convert one YAML value to the annotated type, checking bounds and choices. Pure."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return convert(args[0], value, path=path, problems=problems, meta=meta)
    if value is None:
        problems.add(path, "must not be null")
        return None
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            problems.add(path, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
            return None
        return value
    if origin is tuple:
        item_hint = get_args(hint)[0]
        if not isinstance(value, list | tuple):
            problems.add(path, f"expected a list, got {type_name(value)}")
            return None
        items = [
            convert(item_hint, item, path=join(path, i), problems=problems, meta=meta) for i, item in enumerate(value)
        ]
        return tuple(items)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, path=path, problems=problems)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            problems.add(path, f"expected true or false, got {type_name(value)}")
            return None
        return value
    if hint is int or hint is float:
        return convert_number(hint, value, path=path, problems=problems, meta=meta)
    if hint is str:
        if not isinstance(value, str):
            problems.add(path, f"expected a string, got {type_name(value)}")
            return None
        if len(value) > 4096:
            problems.add(path, "string longer than 4096 characters")
            return None
        choices = meta.get("choices")
        if choices is not None and value not in choices():
            problems.add(path, f"unknown value {value!r} (allowed: {', '.join(sorted(choices()))})")
            return None
        fmt = meta.get("format")
        reason = formats.check(fmt, value, meta) if fmt is not None else None
        if reason is not None:
            problems.add(path, reason)
            return None
        return value
    raise TypeError(f"unsupported policy field type {hint!r}")  # pragma: no cover


def convert_number(
    hint: type, value: Any, *, path: str, problems: Problems, meta: Mapping[str, Any]
) -> int | float | None:
    """Check an int/float field: type (bools rejected), finiteness and bounds. Pure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(path, f"expected a number, got {type_name(value)}")
        return None
    if isinstance(value, int) and not -1e308 < value < 1e308:  # int/float comparison is exact, never overflows
        problems.add(path, "number out of range (beyond ±1e308)")
        return None
    if hint is int:
        if isinstance(value, float) and not value.is_integer():
            problems.add(path, f"expected a whole number, got {value}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            problems.add(path, "must be finite")
            return None
        number: int | float = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            problems.add(path, "must be finite")
            return None
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None:
        if meta.get("exclusive_minimum") and number <= lo:
            problems.add(path, f"must be greater than {lo:g}; got {number:g}")
            return None
        if number < lo:
            problems.add(path, f"must be at least {lo:g}; got {number:g}")
            return None
    if hi is not None and number > hi:
        problems.add(path, f"must be at most {hi:g}; got {number:g}")
        return None
    return number


def type_name(value: Any) -> str:
    """A YAML-flavoured name for a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def walk_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """Yield ``(path, field, type hint)`` for every leaf and group field, depth first.

    Used to generate and check the policy reference so docs cannot drift from the schema.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = join(prefix, camel(f.name))
        hint = hints[f.name]
        yield path, f, hint
        inner = hint
        if get_origin(hint) in (Union, types.UnionType):
            inner = next(a for a in get_args(hint) if a is not type(None))
        if get_origin(inner) is tuple and dataclasses.is_dataclass(get_args(inner)[0]):
            yield from walk_fields(get_args(inner)[0], path + "[]")
        elif dataclasses.is_dataclass(inner):
            yield from walk_fields(inner, path)  # type: ignore[arg-type]
