"""Fuzzed policies: the loader survives anything and every rejection names what is wrong.

Documents are generated from the schema (``walk_fields``, see ``strategies.py``): valid
ones, then single-field mutations (names, images, durations and PromQL drawn from each
field's format), unknown keys, keys given twice, cross-field rule violations, arbitrary YAML
data, binary garbage, invalid UTF-8, YAML tags, anchors/aliases, deep nesting and oversized
payloads. Properties checked on every example:

* ``load_policy`` returns a ``Policy`` or raises ``PolicyRejected``; nothing else escapes;
* a rejection has at least one error, every reason is non-empty, and the path is empty
  exactly for whole-document problems (size, invalid YAML, non-mapping root, nesting);
* a single-field mutation is reported at (or under) that field's path;
* valid documents round-trip: every target and every field written comes back.

The run is deterministic (``derandomize=True``, no example database) and totals
``sum(BUDGET.values()) == 10_000`` generated examples.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from autoscaler.errors import ConfigError, PolicyRejected
from autoscaler.policy import Policy, load_policy
from autoscaler.policy.fields import camel
from autoscaler.policy.loader import MAX_DEPTH, MAX_POLICY_BYTES
from tests.fuzz.strategies import (
    ANY_PATH,
    FIELDS,
    GROUPS,
    STYLES,
    YAML_VALUES,
    Doc,
    Mutation,
    children,
    concrete_steps,
    docs_with_snippet,
    duplicate_key_docs,
    field_mutations,
    invalid_value,
    is_group,
    list_item,
    names_field,
    render,
    rule_mutations,
    set_at,
    unknown_key_mutations,
    valid_docs,
    valid_value,
)

#: Examples per property test; the issue asks for 10,000 in total.
BUDGET: dict[str, int] = {
    "valid": 1200,
    "field_mutation": 2800,
    "rule_mutation": 300,
    "duplicate_key": 200,
    "unknown_key": 1000,
    "yaml_data": 1000,
    "binary": 1000,
    "text": 1000,
    "invalid_utf8": 400,
    "tags": 400,
    "anchors": 300,
    "nesting": 200,
    "oversized": 200,
}

_BASE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no "explain": it reruns failures many times
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def fuzz(name: str) -> settings:
    """Deterministic settings for one fuzz test, with its share of the example budget."""
    return settings(_BASE, max_examples=BUDGET[name])


#: Reasons of whole-document problems, the only errors allowed (and required) to have an empty path.
WHOLE_DOCUMENT = re.compile(
    r"^(not valid YAML|document is \d+ bytes; the limit is|the policy must be a YAML mapping|nesting deeper than)"
)


def check_rejection(exc: PolicyRejected) -> None:
    """The structural contract of every rejection."""
    errors = exc.errors
    assert isinstance(errors, list) and errors, "a rejection must list at least one error"
    for error in errors:
        assert isinstance(error, ConfigError), error
        assert isinstance(error.path, str) and isinstance(error.reason, str), error
        assert error.reason.strip(), f"empty reason at {error.path!r}"
        whole = WHOLE_DOCUMENT.match(error.reason) is not None
        if error.path == "":
            assert whole, f"field problem without a field path: {error.reason!r}"
        assert not whole or error.path == "", f"whole-document problem with a path: {error.path!r}"
    if any(e.path == "" for e in errors):
        assert len(errors) == 1, "a whole-document problem is reported alone"


def load(text: str | bytes) -> Policy | PolicyRejected:
    """Run the loader; any exception other than ``PolicyRejected`` fails the test (a crash)."""
    try:
        return load_policy(text)
    except PolicyRejected as exc:
        check_rejection(exc)
        return exc


def rejected(text: str | bytes) -> PolicyRejected:
    """Run the loader and require a well-formed rejection."""
    result = load(text)
    assert isinstance(result, PolicyRejected), "expected a rejection, got a Policy"
    return result


def whole_document_error(text: str | bytes, reason: str) -> ConfigError:
    """Require a rejection with exactly one error, with an empty path and the given reason prefix."""
    exc = rejected(text)
    assert [e.path for e in exc.errors] == [""], exc.errors
    assert exc.errors[0].reason.startswith(reason), exc.errors[0].reason
    return exc.errors[0]


def assert_matches(obj: Any, data: Mapping[Any, Any]) -> None:
    """Every key written in ``data`` is the loaded value of the corresponding dataclass field."""
    for f in dataclasses.fields(obj):
        key = camel(f.name)
        if key not in data:
            continue
        value, written = getattr(obj, f.name), data[key]
        if dataclasses.is_dataclass(value):
            assert_matches(value, written)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            assert len(value) == len(written)
            for item, item_data in zip(value, written, strict=True):
                assert_matches(item, item_data)
        elif isinstance(value, tuple):
            assert value == tuple(written), key
        else:
            assert value == written and type(value) in (type(written), float), key


def _render_noted(doc: Any, style: str) -> str:
    text = render(doc, style)
    note(f"document ({style}):\n{text[:4000]}")
    return text


# ---------------------------------------------------------------------------------------
# Valid documents and single-problem mutations
# ---------------------------------------------------------------------------------------


@fuzz("valid")
@given(doc=valid_docs(), style=st.sampled_from(STYLES), as_bytes=st.booleans())
def test_valid_documents_load_and_round_trip(doc: Doc, style: str, as_bytes: bool) -> None:
    """Schema-generated valid documents load, keep their targets in order and every value written."""
    text = _render_noted(doc, style)
    policy = load(text.encode() if as_bytes else text)
    assert isinstance(policy, Policy), policy
    assert [t.key for t in policy.targets] == [f"{t['namespace']}/{t['deployment']}" for t in doc["targets"]]
    assert_matches(policy, doc)


@fuzz("field_mutation")
@given(mutation=field_mutations(), style=st.sampled_from(STYLES[:3]))
def test_single_field_mutation_is_rejected_at_that_path(mutation: Mutation, style: str) -> None:
    """A wrong type, out-of-range, non-finite or huge value, or a deleted required field, is reported at its path."""
    note(f"mutation: {mutation.path} {mutation.what}")
    exc = rejected(_render_noted(mutation.doc, style))
    paths = [e.path for e in exc.errors]
    assert any(names_field(p, mutation.path) for p in paths), paths


@fuzz("rule_mutation")
@given(mutation=rule_mutations(), style=st.sampled_from(STYLES))
def test_cross_field_rule_violation_is_rejected_at_its_path(mutation: Mutation, style: str) -> None:
    """Empty or duplicate targets, minReplicas > maxReplicas, bad seasons and seasonal models without a season
    are reported at their path."""
    note(f"mutation: {mutation.path} {mutation.what}")
    exc = rejected(_render_noted(mutation.doc, style))
    assert mutation.path in [e.path for e in exc.errors]


@fuzz("duplicate_key")
@given(case=duplicate_key_docs())
def test_a_key_given_twice_is_refused(case: tuple[str, str]) -> None:
    """A key repeated in any mapping is refused as a whole-document error naming it (YAML keeps the last)."""
    text, key = case
    note(text)
    error = whole_document_error(text, "not valid YAML")
    assert f"duplicate key {key!r}" in error.reason, error.reason


@fuzz("unknown_key")
@given(mutation=unknown_key_mutations(), style=st.sampled_from(STYLES[:3]))
def test_unknown_key_is_rejected_at_its_path(mutation: Mutation, style: str) -> None:
    """An unknown key in any mapping (root, target, group) is reported as an unknown field at its path."""
    note(f"mutation: {mutation.path} {mutation.what}")
    exc = rejected(_render_noted(mutation.doc, style))
    unknown = [e.path for e in exc.errors if e.reason.startswith("unknown field")]
    if mutation.path.endswith(".") or not mutation.path:  # an empty key: any non-empty spelling of it is fine
        assert any(p.startswith(mutation.path) and p for p in unknown), unknown
    else:
        assert mutation.path in unknown, exc.errors


# ---------------------------------------------------------------------------------------
# Arbitrary input: zero crashes, well-formed rejections
# ---------------------------------------------------------------------------------------


@st.composite
def _yaml_data_docs(draw: st.DrawFn) -> Any:
    """Arbitrary YAML data as the whole document, or in place of any field (or ``defaults``)."""
    value = draw(YAML_VALUES)
    if draw(st.booleans()):
        return value
    doc = draw(valid_docs(sparse=True))
    steps = concrete_steps(draw, draw(ANY_PATH), doc)
    set_at(doc, steps, value)
    return doc


@fuzz("yaml_data")
@given(data=_yaml_data_docs(), style=st.sampled_from(STYLES[:3]))
def test_arbitrary_yaml_data_never_crashes(data: Any, style: str) -> None:
    """Arbitrary YAML values (nulls, NaN, huge numbers, lists, odd keys) anywhere load or are rejected cleanly."""
    load(_render_noted(data, style))


@fuzz("binary")
@given(raw=st.binary(max_size=2048))
def test_binary_garbage_never_crashes(raw: bytes) -> None:
    """Random bytes are loaded or rejected cleanly, never crash."""
    load(raw)


_YAML_SYNTAX = st.text(alphabet="{}[]:-,?&*!|>'\"#%@` \n\t\\abtx01.~=<", max_size=200)


@fuzz("text")
@given(text=st.one_of(st.text(max_size=500), _YAML_SYNTAX))
def test_arbitrary_text_never_crashes(text: str) -> None:
    """Random unicode (lone surrogates included) and YAML-punctuation soup never crash the loader."""
    load(text)


_INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\xc0\xaf", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])


@fuzz("invalid_utf8")
@given(doc=valid_docs(sparse=True), bad=_INVALID_UTF8, where=st.floats(0, 1))
def test_invalid_utf8_is_rejected_as_a_whole_document(doc: Doc, bad: bytes, where: float) -> None:
    """A valid document with an invalid UTF-8 sequence spliced in anywhere is rejected as invalid YAML."""
    raw = render(doc, "block").encode()
    cut = int(where * len(raw))
    whole_document_error(raw[:cut] + bad + raw[cut:], "not valid YAML")


_PYTHON_TAGS = [
    "!!python/object/apply:os.system ['true']",
    "!!python/object/new:builtins.list [[1]]",
    "!!python/object:builtins.object {}",
    "!!python/name:os.system ''",
    "!!python/module:os ''",
    "!!python/tuple [1, 2]",
    "!!python/bytes 'aGk='",
    "!!python/complex '1+2j'",
    "!!python/none ''",
    "!!python/str x",
]
_OTHER_TAGS = [
    "!!binary aGVsbG8=",
    "!!set {a: null}",
    "!!omap [{a: 1}]",
    "!!pairs [{a: 1}]",
    "!!timestamp 2001-12-14",
    "!!str 42",
    "!!int '7'",
    "!!int 'x'",
    "!!float '0.5'",
    "!!bool 'true'",
    "!!null ''",
    "!!map {}",
    "!!seq []",
    "!custom x",
    "!<tag:example.com,2000:app/x> y",
]


@fuzz("tags")
@given(case=docs_with_snippet(st.sampled_from(_PYTHON_TAGS + _OTHER_TAGS)))
def test_yaml_tags_are_refused_or_typed(case: tuple[str, str, str]) -> None:
    """``!!python/*`` tags anywhere are refused as invalid YAML; other tags load or are rejected cleanly."""
    text, path, snippet = case
    note(f"{snippet} at {path}:\n{text}")
    if snippet in _PYTHON_TAGS:
        whole_document_error(text, "not valid YAML")
    else:
        load(text)


_ANCHORS = st.builds(
    str.format,
    st.sampled_from(["&{0} 1", "&{0} [1, 2]", "&{0} {{x: 1}}", "*{0}", "[&{0} 1, *{0}]", "{{<<: *{0}}}", "&{0} ''"]),
    st.text(alphabet="abcXYZ019_-", min_size=1, max_size=8),
)


@fuzz("anchors")
@given(case=docs_with_snippet(_ANCHORS))
def test_anchors_and_aliases_are_refused_anywhere(case: tuple[str, str, str]) -> None:
    """Any anchor or alias, at any field (the seed of a billion-laughs bomb), rejects the document."""
    text, path, snippet = case
    note(f"{snippet} at {path}:\n{text}")
    error = whole_document_error(text, "not valid YAML")
    assert "not allowed" in error.reason


def _nesting(kind: str, n: int) -> str:
    return "[" * n + "]" * n if kind == "list" else "{k: " * n + "1" + "}" * n


@st.composite
def _nested(draw: st.DrawFn) -> tuple[str, str, str, int]:
    kind = draw(st.sampled_from(["list", "map"]))
    n = draw(st.one_of(st.integers(1, 8), st.integers(MAX_DEPTH + 1, 120)))
    text, path, _ = draw(docs_with_snippet(st.just(_nesting(kind, n))))
    return text, path, kind, n


@fuzz("nesting")
@given(case=_nested())
def test_deep_nesting_is_refused_or_named(case: tuple[str, str, str, int]) -> None:
    """Shallow nesting at a field is a field error at that path; nesting beyond the cap is a whole-document error."""
    text, path, kind, n = case
    note(f"{kind} nesting {n} at {path}")
    if n > MAX_DEPTH:
        error = whole_document_error(text, "")
        assert WHOLE_DOCUMENT.match(error.reason) and re.search(r"nesting|Recursion", error.reason), error.reason
        return
    schema_path = re.sub(r"\[\d+\]", "[]", path)
    info = FIELDS.get(schema_path)
    if info is None or (kind == "list" and n == 1 and list_item(info.hint) is not None):
        load(text)  # ``defaults`` merges into targets; ``[]`` is a valid (empty) list
        return
    paths = [e.path for e in rejected(text).errors]
    assert any(names_field(p, path) for p in paths), paths


@pytest.mark.parametrize(("kind", "n"), [("list", 1000), ("map", 5000), ("list", MAX_POLICY_BYTES // 2 - 40)])
def test_pathological_nesting_is_a_whole_document_error(kind: str, n: int) -> None:
    """Nesting deep enough to exhaust the parser's recursion (up to the size cap) is one clean error."""
    text = "targets:\n- {namespace: a, deployment: b, slo: " + _nesting(kind, n) + "}\n"
    assert len(text.encode()) <= MAX_POLICY_BYTES
    error = whole_document_error(text, "")
    assert WHOLE_DOCUMENT.match(error.reason) and re.search(r"nesting|Recursion", error.reason), error.reason


@fuzz("oversized")
@given(
    doc=valid_docs(sparse=True),
    extra=st.integers(1, 4096),
    pad=st.sampled_from(["#", "é", "€", "😀"]),
    as_bytes=st.booleans(),
)
def test_oversized_documents_are_rejected_before_parsing(doc: Doc, extra: int, pad: str, as_bytes: bool) -> None:
    """Anything over ``MAX_POLICY_BYTES`` UTF-8 bytes (even if fewer characters) is refused without parsing."""
    text = render(doc, "block") + "#"
    missing = MAX_POLICY_BYTES + extra - len(text.encode())
    width = len(pad.encode())
    text += pad * (missing // width) + "#" * (missing % width)
    assert len(text.encode()) == MAX_POLICY_BYTES + extra
    with mock.patch.object(yaml, "load", side_effect=AssertionError("parsed an oversized document")) as parser:
        whole_document_error(text.encode() if as_bytes else text, f"document is {MAX_POLICY_BYTES + extra} bytes")
    parser.assert_not_called()


# ---------------------------------------------------------------------------------------
# Explicit cases and the fuzzer's own coverage
# ---------------------------------------------------------------------------------------


def test_fuzz_budget_is_ten_thousand_examples() -> None:
    """The property tests together run the 10,000 generated examples the issue asks for."""
    assert sum(BUDGET.values()) == 10_000


def test_every_schema_field_has_valid_and_invalid_strategies() -> None:
    """Every field ``walk_fields`` reports is generated, valid and invalid, and every mapping is reachable."""
    for info in FIELDS.values():
        assert valid_value(info) is not None and invalid_value(info) is not None, info.path
    groups = {info.path for info in FIELDS.values() if is_group(info.hint)}
    groups |= {info.path + "[]" for info in FIELDS.values() if is_group(list_item(info.hint))}
    assert set(GROUPS) == groups | {""}
    assert sum(len(children(g)) for g in GROUPS) == len(FIELDS)


def _minimal(n_targets: int = 1) -> str:
    return "targets:\n" + "".join(f"  - {{namespace: ns{i}, deployment: d}}\n" for i in range(n_targets))


def test_document_at_the_size_cap_is_accepted_quickly() -> None:
    """A valid document of exactly ``MAX_POLICY_BYTES`` (padding, or as many targets as fit) is accepted."""
    padded = _minimal() + "#" * (MAX_POLICY_BYTES - len(_minimal()))
    entry = len("  - {namespace: ns00000, deployment: d}\n")
    many = "targets:\n" + "".join(
        f"  - {{namespace: ns{i:05d}, deployment: d}}\n" for i in range(MAX_POLICY_BYTES // entry)
    )
    many += "#" * (MAX_POLICY_BYTES - len(many))
    for text, targets in ((padded, 1), (many, MAX_POLICY_BYTES // entry)):
        assert len(text.encode()) == MAX_POLICY_BYTES
        started = time.process_time()
        policy = load(text)
        elapsed = time.process_time() - started
        assert isinstance(policy, Policy) and len(policy.targets) == targets
        assert elapsed < 20, f"{elapsed:.1f} CPU s for a document at the cap"


@pytest.mark.parametrize("as_bytes", [False, True])
def test_document_one_byte_over_the_cap_is_rejected_before_parsing(as_bytes: bool) -> None:
    """``MAX_POLICY_BYTES + 1`` bytes are refused with a size error and the YAML parser never runs."""
    text = _minimal() + "#" * (MAX_POLICY_BYTES + 1 - len(_minimal()))
    with mock.patch.object(yaml, "load", side_effect=AssertionError("parsed an oversized document")) as parser:
        whole_document_error(text.encode() if as_bytes else text, f"document is {MAX_POLICY_BYTES + 1} bytes")
    parser.assert_not_called()


def test_billion_laughs_is_refused() -> None:
    """The classic exponential alias bomb is refused at the first anchor, before anything expands."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    error = whole_document_error("\n".join([*lines, _minimal()]), "not valid YAML")
    assert "anchors are not allowed" in error.reason


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{p}']]",
        "!!python/object/apply:os.system ['touch {p}']",
        "!!python/object/new:subprocess.Popen [['touch', '{p}']]",
    ],
)
def test_python_tags_have_no_side_effects(tmp_path: Path, tag: str) -> None:
    """Object-constructing tags are refused without running anything (a sentinel file is never created)."""
    sentinel = tmp_path / "pwned"
    whole_document_error(_minimal() + "loopIntervalSeconds: " + tag.format(p=sentinel) + "\n", "not valid YAML")
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the policy must be a YAML mapping"),
        ("null", "the policy must be a YAML mapping"),
        ("- targets", "the policy must be a YAML mapping"),
        ("42", "the policy must be a YAML mapping"),
        ("'targets'", "the policy must be a YAML mapping"),
        ("# only a comment\n", "the policy must be a YAML mapping"),
        ("---\ntargets: []\n---\ntargets: []\n", "not valid YAML"),
        ("targets: [\n", "not valid YAML"),
        ("\x00\x01", "not valid YAML"),
        ("targets:\n\t- a", "not valid YAML"),
        ("{targets: [" * 30 + "]}" * 30, "nesting deeper than"),
    ],
)
def test_whole_document_problems_have_an_empty_path(text: str, reason: str) -> None:
    """Problems with the document as a whole (not a field) are one error with an empty path."""
    whole_document_error(text, reason)


def test_number_beyond_the_int_digit_limit_names_its_field() -> None:
    """An integer literal longer than Python's int-parsing digit limit is reported at its field."""
    text = _minimal() + "loopIntervalSeconds: 1" + "0" * 5000 + "\n"
    exc = rejected(text)
    assert "loopIntervalSeconds" in [e.path for e in exc.errors]
