"""Hypothesis strategies that build policy documents from the schema itself.

Every field comes from :func:`autoscaler.policy.fields.walk_fields`, so a field added to the
schema is generated, valid and broken, without touching this module. String fields with a
``format`` (Kubernetes names, image references, durations, PromQL) draw from
``FORMAT_STRATEGIES``: valid values built from each format's grammar, and invalid ones
written independently of the product's checks. Only cross-field rules (the schema's
``check()`` methods) need knowledge here: ``_VALID_OVERRIDES``, ``_REPAIRS`` and
``_INVALID_EXTRA``. A field whose type hint (or format) has no strategy raises
``NotImplementedError`` at import time, so a new kind of field cannot slip past the fuzzer
unnoticed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from hypothesis import strategies as st

from autoscaler.policy.fields import join, walk_fields
from autoscaler.policy.schema import SEASONS, Policy
from models.registry import SEASONAL_TYPES

Doc = dict[Any, Any]
Step = str | int
Strategy = st.SearchStrategy[Any]

#: A string that YAML dumps as a plain scalar; replaced by raw YAML snippets in the text.
PLACEHOLDER = "fuzz-placeholder-7f3a"
#: The root key the loader merges into every target before validation.
DEFAULTS_KEY = "defaults"


@dataclass(frozen=True)
class FieldInfo:
    """One schema field as ``walk_fields`` reports it, with ``X | None`` unwrapped."""

    path: str  # schema path with ``[]`` for list items, e.g. ``targets[].slo.latencySeconds``
    name: str  # the camelCase YAML key
    hint: Any
    nullable: bool
    required: bool
    default: Any
    meta: Mapping[str, Any]

    @property
    def parent(self) -> str:
        """Schema path of the mapping that holds this field (``""`` for the root)."""
        return self.path[: -len(self.name)].rstrip(".")


def _unwrap(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0], len(args) != len(get_args(hint))
    return hint, False


def _field_info(path: str, f: dataclasses.Field[Any], hint: Any) -> FieldInfo:
    inner, nullable = _unwrap(hint)
    if f.default is not dataclasses.MISSING:
        default: Any = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = dataclasses.MISSING
    name = path.rsplit(".", 1)[-1]
    return FieldInfo(path, name, inner, nullable, default is dataclasses.MISSING, default, f.metadata)


#: Every field of the policy, depth first, keyed by schema path.
FIELDS: dict[str, FieldInfo] = {path: _field_info(path, f, hint) for path, f, hint in walk_fields(Policy)}


def is_group(hint: Any) -> bool:
    """Whether the hint is a nested dataclass (a YAML mapping)."""
    return dataclasses.is_dataclass(hint)


def list_item(hint: Any) -> Any:
    """The item hint of a ``tuple[X, ...]`` field, else ``None``."""
    return get_args(hint)[0] if get_origin(hint) is tuple else None


def children(prefix: str) -> list[FieldInfo]:
    """The fields of the mapping at schema path ``prefix``."""
    return [f for f in FIELDS.values() if f.parent == prefix]


_ANY_FIELD = st.sampled_from(list(FIELDS.values()))

#: Schema paths of every mapping in a policy document (``""`` is the root).
GROUPS: list[str] = [""]
for _info in FIELDS.values():
    if is_group(_info.hint):
        GROUPS.append(_info.path)
    elif is_group(list_item(_info.hint)):
        GROUPS.append(_info.path + "[]")

_ANY_GROUP = st.sampled_from(GROUPS)
#: Any field's schema path, or the root ``defaults`` block.
ANY_PATH = st.sampled_from([*FIELDS, DEFAULTS_KEY])

# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------

#: Any unicode except lone surrogates (which cannot be UTF-8 encoded unchanged).
TEXT_CHARS = st.characters(codec="utf-8")
STRINGS = st.text(alphabet=TEXT_CHARS, max_size=30)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
HUGE_INTS = st.sampled_from([10**30, -(10**30), 2**63, -(2**63) - 1, 2**64, 10**308, 10**400, -(10**400)])
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
NUMBERS = st.one_of(st.integers(), FINITE_FLOATS, NON_FINITE, HUGE_INTS)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
LISTS = st.lists(SCALARS, max_size=3)
MAPPINGS = st.dictionaries(STRINGS, SCALARS, max_size=3)
#: Longer than the loader's 4096-character string limit (unicode repeated).
LONG_STRINGS = st.builds(lambda ch, n: ch * n, TEXT_CHARS, st.sampled_from([4097, 4500]))
KEYS = st.one_of(STRINGS, st.integers(-5, 5), st.booleans(), st.none())
#: Arbitrary YAML data: what a confused operator (or an attacker) might put anywhere.
YAML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)

# The Kubernetes name rules, written here independently of autoscaler.policy.formats.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_dns_label(value: str) -> bool:
    """A DNS-1123 label: what the API server accepts as a namespace."""
    return 0 < len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str, max_len: int = 253) -> bool:
    """A DNS-1123 subdomain of at most ``max_len`` characters."""
    return 0 < len(value) <= max_len and _DNS_SUBDOMAIN.fullmatch(value) is not None


_ALNUM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)


def dns_labels() -> Strategy:
    """Valid namespaces (cheaper to draw than ``from_regex``)."""
    return st.one_of(_ALNUM, st.builds("{}{}{}".format, _ALNUM, st.sampled_from(["-", "--"]), _ALNUM))


def dns_subdomains() -> Strategy:
    """Valid Deployment names: labels joined by dots (at most 63 characters here: a label value too)."""
    return st.one_of(dns_labels(), st.builds("{}.{}".format, dns_labels(), dns_labels()))


def _duration_text(seconds: int, split: bool) -> str:
    if not split:
        return f"{seconds}s"
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (sec, "s")) if n) or "0s"


_HEX = "0123456789abcdef"
_IMAGE_PATHS = st.builds(
    "{}{}{}".format, _ALNUM, st.sampled_from(["", "/", "_", "__", ".", "-", "---"]), _ALNUM
).filter(lambda p: not p.endswith(("/", "_", ".", "-")))
_IMAGES = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["", "registry.example.com/", "localhost:5000/", "[::1]:5000/", "Reg-1.io/team/"]),
    _IMAGE_PATHS,
    st.sampled_from(["", ":v0.6.3", ":latest", ":1_2-x.Y"]),
    st.sampled_from(["", "@sha256:" + _HEX * 4]),
)
_PROMQL_VALID = st.builds(
    "{}({}[{}])".format,
    st.sampled_from(["sum(rate", "sum by (route) (rate", "avg(irate"]),
    st.builds('{}{{route="{}"}}'.format, _ALNUM, st.sampled_from(["/v1#chat", "a)b", "x"])),
    st.sampled_from(["1m", "5m"]),
).map(lambda q: q + ")")

#: Per ``spec(format=...)``: (valid values, invalid non-null strings).
FORMAT_STRATEGIES: dict[str, tuple[Strategy, Strategy]] = {
    "dns-label": (
        dns_labels(),
        st.one_of(
            st.sampled_from(["vllm.prod", "UPPER", "-a", "a-", "a_b", "", "a" * 64, "a..b"]),
            STRINGS.filter(lambda s: not is_dns_label(s)),
        ),
    ),
    "deployment-name": (
        dns_subdomains(),
        st.one_of(
            st.sampled_from(["a..b", ".a", "a.", "UPPER", "a_b", "", "d" * 64, "a b"]),
            STRINGS.filter(lambda s: not is_dns_subdomain(s, 63)),
        ),
    ),
    "priority-class": (
        dns_subdomains().filter(lambda s: not s.startswith("system-")),
        st.one_of(
            st.sampled_from(["system-low", "Gpu", "a..b", ""]), STRINGS.filter(lambda s: not is_dns_subdomain(s))
        ),
    ),
    "image": (
        _IMAGES,
        st.sampled_from(["x/UPPER", "a b", "x:", ":tag", "x@sha256:abc", "", "x//y", "-x", "x:" + "t" * 200,
                         "x" * 300, "reg:port/x", "x@md5"]),
    ),
    "model-name": (
        st.text(alphabet="abcXYZ019/-._ ()", min_size=1, max_size=40).filter(lambda s: s.strip() == s and s),
        st.sampled_from(["", " ", " x", "x ", "a\x01b", "a\nb", "m" * 257, "\t"]),
    ),
    "duration": (
        st.builds(_duration_text, st.integers(5, 3600), st.booleans()),
        st.sampled_from(["abc", "1.5m", "30s2m", "0s", "1s", "4s", "2h", "1h1s", "2m]) * 0 or vector(1) #", "",
                         "2 m", "-2m", "2M", "1d"]),
    ),
    "promql": (
        _PROMQL_VALID,
        st.sampled_from(["", "   ", "x # c", "sum(x", "sum(x))", 'x{a="b}', "a\x00b", "x[1m]]", "rate(x[1m)]",
                         "sum(x) #"]),
    ),
}


def _bounds(meta: Mapping[str, Any]) -> tuple[float | None, float | None, bool]:
    return meta.get("minimum"), meta.get("maximum"), bool(meta.get("exclusive_minimum"))


def _int_range(meta: Mapping[str, Any]) -> tuple[int | None, int | None]:
    lo, hi, excl = _bounds(meta)
    lo_int = None if lo is None else (math.floor(lo) + 1 if excl else math.ceil(lo))
    return lo_int, None if hi is None else math.floor(hi)


# ---------------------------------------------------------------------------------------
# Valid documents
# ---------------------------------------------------------------------------------------


def _target_key(target: Mapping[str, Any]) -> str:
    return f"{target['namespace']}/{target['deployment']}"


def _resolutions() -> list[int]:
    lo, hi = _int_range(FIELDS["targets[].forecast.resolutionSeconds"].meta)
    assert lo is not None and hi is not None
    return [r for r in range(lo, hi + 1) if all(s % r == 0 for s in SEASONS.values())]


def _valid_hint(path: str, hint: Any, meta: Mapping[str, Any], sparse: bool = False) -> Strategy:
    if is_group(hint):
        return valid_mapping(path, sparse)
    item = list_item(hint)
    if item is not None:
        if is_group(item):
            return st.lists(valid_mapping(path + "[]", sparse), max_size=3)
        return st.lists(_valid_hint(path + "[]", item, meta), max_size=4)
    if get_origin(hint) is Literal:
        return st.sampled_from(get_args(hint))
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(*_int_range(meta))
    if hint is float:
        lo, hi, excl = _bounds(meta)
        floats = st.floats(lo, hi, exclude_min=excl and lo is not None, allow_nan=False, allow_infinity=False)
        lo_int, hi_int = _int_range(meta)
        if lo_int is not None and hi_int is not None and lo_int > hi_int:
            return floats  # no whole number in range (e.g. a quantile)
        return st.one_of(floats, st.integers(lo_int, hi_int))
    if hint is str:
        choices = meta.get("choices")
        if choices is not None:
            return st.sampled_from(sorted(choices()))
        fmt = meta.get("format")
        if fmt is not None:
            if fmt not in FORMAT_STRATEGIES:
                raise NotImplementedError(f"tests/fuzz/strategies.py: no strategies for format {fmt!r} ({path})")
            return FORMAT_STRATEGIES[fmt][0]
        return st.text(alphabet=TEXT_CHARS, max_size=40)
    raise NotImplementedError(f"tests/fuzz/strategies.py: no valid-value strategy for {path}: {hint!r}")


def valid_value(info: FieldInfo, sparse: bool = False) -> Strategy:
    """Values that are valid for one field on their own."""
    override = _VALID_OVERRIDES.get(info.path)
    base = override(sparse) if override else _valid_hint(info.path, info.hint, info.meta, sparse)
    return st.one_of(st.none(), base) if info.nullable else base


@cache
def valid_mapping(prefix: str, sparse: bool = False) -> Strategy:
    """Valid mappings for the group at schema path ``prefix``: required keys always, others sometimes.

    ``sparse`` mappings hold at most two optional keys: cheap backgrounds for mutations
    (whose target field is created on demand), where rich documents would only cost time.
    """
    fields = children(prefix)
    required = {f.name: valid_value(f, sparse) for f in fields if f.required}
    optional = {f.name: valid_value(f, sparse) for f in fields if not f.required}
    if not sparse or not optional:
        strategy = st.fixed_dictionaries(required, optional=optional)
    else:
        strategy = _sparse_mapping(
            required, optional, st.lists(st.sampled_from(sorted(optional)), max_size=2, unique=True)
        )
    repair = _REPAIRS.get(prefix)
    return strategy.map(repair) if repair else strategy


@st.composite
def _sparse_mapping(
    draw: st.DrawFn, required: dict[str, Strategy], optional: dict[str, Strategy], names: Strategy
) -> Doc:
    """Required keys plus a few optional ones, drawing only from pre-built strategies (fast)."""
    doc = {key: draw(strategy) for key, strategy in required.items()}
    for key in draw(names):
        doc[key] = draw(optional[key])
    return doc


def valid_docs(sparse: bool = False) -> Strategy:
    """Whole valid policy documents as Python data (deep-copied, safe to mutate)."""
    return valid_mapping("", sparse).map(copy.deepcopy)


#: Fields whose valid values depend on a ``check()`` rule rather than on type and bounds
#: (each takes the ``sparse`` flag of :func:`valid_mapping`).
_VALID_OVERRIDES: dict[str, Callable[[bool], Strategy]] = {
    "targets": lambda sparse: st.lists(
        valid_mapping("targets[]", sparse), min_size=1, max_size=2, unique_by=_target_key
    ),
    "targets[].forecast.resolutionSeconds": lambda _: st.sampled_from(_resolutions()),
    "targets[].forecast.seasons": lambda _: st.lists(st.sampled_from(sorted(SEASONS)), unique=True),
    "targets[].forecast.candidates": lambda _: st.lists(
        st.sampled_from(sorted(_candidates())), min_size=1, max_size=4, unique=True
    ),
}


def _candidates() -> frozenset[str]:
    choices = FIELDS["targets[].forecast.candidates"].meta["choices"]
    return frozenset(choices())


def _order_replicas(scaling: Doc) -> Doc:
    """Keep ``minReplicas <= maxReplicas`` (``Scaling.check``)."""
    lo = scaling.get("minReplicas", FIELDS["targets[].scaling.minReplicas"].default)
    hi = scaling.get("maxReplicas", FIELDS["targets[].scaling.maxReplicas"].default)
    if lo > hi:
        if "minReplicas" in scaling:
            return {**scaling, "minReplicas": hi}
        return {**scaling, "maxReplicas": lo}
    return scaling


def _one_quantile_source(target: Doc) -> Doc:
    """Keep ``cost`` and ``forecast.quantile`` from being set together (the loader's cost rule)."""
    forecast = target.get("forecast")
    if target.get("cost") is not None and isinstance(forecast, dict) and "quantile" in forecast:
        return {**target, "forecast": {k: v for k, v in forecast.items() if k != "quantile"}}
    return target


def _seasons_for_models(forecast: Doc) -> Doc:
    """A seasonal model (or auto with seasonal candidates) gets a season (``Forecast.check``)."""
    if forecast.get("seasons", FIELDS["targets[].forecast.seasons"].default):
        return forecast
    model = forecast.get("model", FIELDS["targets[].forecast.model"].default)
    candidates = forecast.get("candidates", FIELDS["targets[].forecast.candidates"].default)
    needs = model in SEASONAL_TYPES or (model == "auto" and any(c in SEASONAL_TYPES for c in candidates))
    return {**forecast, "seasons": ["daily"]} if needs else forecast


_REPAIRS: dict[str, Callable[[Doc], Doc]] = {
    "targets[].scaling": _order_replicas,
    "targets[].forecast": _seasons_for_models,
    "targets[]": _one_quantile_source,
}


# ---------------------------------------------------------------------------------------
# Invalid values
# ---------------------------------------------------------------------------------------


def _out_of_range(hint: Any, meta: Mapping[str, Any]) -> list[Strategy]:
    lo, hi, excl = _bounds(meta)
    lo_int, hi_int = _int_range(meta)
    parts: list[Strategy] = []
    if lo_int is not None:
        parts.append(st.integers(max_value=lo_int - 1))
    if hi_int is not None:
        parts.append(st.integers(min_value=hi_int + 1))
    if hint is float:
        if lo is not None:
            parts.append(st.floats(max_value=lo, exclude_max=not excl, allow_nan=False, allow_infinity=False))
        if hi is not None:
            parts.append(st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False))
    return parts


def _invalid_hint(path: str, hint: Any, meta: Mapping[str, Any]) -> Strategy:
    """Non-null values that the field's type, bounds or choices reject."""
    numbers = st.one_of(st.integers(), FINITE_FLOATS)
    if is_group(hint):
        return st.one_of(STRINGS, st.booleans(), numbers, LISTS)
    item = list_item(hint)
    if item is not None:
        bad_items = st.one_of(st.none(), _invalid_hint(path + "[]", item, meta))
        return st.one_of(STRINGS, st.booleans(), numbers, MAPPINGS, st.lists(bad_items, min_size=1, max_size=3))
    if get_origin(hint) is Literal:
        allowed = get_args(hint)
        return st.one_of(STRINGS.filter(lambda s: s not in allowed), st.booleans(), numbers, LISTS, MAPPINGS)
    if hint is bool:
        return st.one_of(STRINGS, numbers, LISTS, MAPPINGS)
    if hint in (int, float):
        wrong = [STRINGS, st.booleans(), LISTS, MAPPINGS, NON_FINITE, HUGE_INTS, *_out_of_range(hint, meta)]
        if hint is int:
            wrong.append(FINITE_FLOATS.filter(lambda x: not x.is_integer()))
        return st.one_of(*wrong)
    if hint is str:
        wrong = [numbers, st.booleans(), LISTS, MAPPINGS, LONG_STRINGS]
        choices = meta.get("choices")
        if choices is not None:
            wrong.append(STRINGS.filter(lambda s: s not in choices()))
        if meta.get("format") is not None:
            wrong.append(FORMAT_STRATEGIES[meta["format"]][1])
        return st.one_of(*wrong)
    raise NotImplementedError(f"tests/fuzz/strategies.py: no invalid-value strategy for {path}: {hint!r}")


#: Extra invalid values for fields whose ``check()`` adds a rule beyond type and bounds.
_INVALID_EXTRA: dict[str, Strategy] = {
    "targets[].forecast.candidates": st.one_of(
        st.just([]),
        st.sampled_from(["naive", "holt_winters", "linear_trend"]).map(lambda m: [m, m]),
        st.sampled_from(["naive", "linear_trend"]).map(lambda m: [m, "seasonal_naive", m]),
    ),
}


def invalid_value(info: FieldInfo) -> Strategy:
    """Values that must make the loader reject the document at (or below) this field's path."""
    cached = _INVALID_CACHE.get(info.path)
    if cached is None:
        strategies = [_invalid_hint(info.path, info.hint, info.meta)]
        if info.path in _INVALID_EXTRA:
            strategies.append(_INVALID_EXTRA[info.path])
        if not info.nullable:
            strategies.append(st.none())
        cached = _INVALID_CACHE[info.path] = st.one_of(*strategies)
    return cached


_INVALID_CACHE: dict[str, Strategy] = {}


# ---------------------------------------------------------------------------------------
# Navigating and editing documents
# ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\[\]|[^.\[\]]+")


def concrete_steps(draw: st.DrawFn, schema_path: str, doc: Doc) -> list[Step]:
    """Turn ``targets[].slo`` into concrete steps such as ``["targets", 1, "slo"]`` (index drawn)."""
    steps: list[Step] = []
    node: Any = doc
    for token in _TOKEN.findall(schema_path):
        if token == "[]":
            index = draw(_indexes(len(node)))
            steps.append(index)
            node = node[index]
        else:
            steps.append(token)
            node = node.get(token, {}) if isinstance(node, dict) else {}
    return steps


@cache
def _indexes(size: int) -> Strategy:
    return st.integers(0, size - 1)


def path_of(steps: list[Step]) -> str:
    """The loader's field path for concrete steps, e.g. ``targets[1].slo``."""
    path = ""
    for step in steps:
        path = join(path, step)
    return path


def mapping_at(doc: Doc, steps: list[Step]) -> Doc:
    """The mapping at ``steps``, creating empty groups on the way (an empty group is valid)."""
    node: Any = doc
    for step in steps:
        if isinstance(step, int):
            node = node[step]
            continue
        if node.get(step) is None:  # absent, or a nullable group written as null
            node[step] = {}
        node = node[step]
    assert isinstance(node, dict)
    return node


def set_at(doc: Doc, steps: list[Step], value: Any) -> None:
    """Replace (or add) the value at ``steps``."""
    mapping_at(doc, steps[:-1])[steps[-1]] = value


def delete_at(doc: Doc, steps: list[Step]) -> None:
    """Remove the key at ``steps`` if present."""
    mapping_at(doc, steps[:-1]).pop(steps[-1], None)


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------

#: How a document is written: YAML block style, flow style, mixed, or canonical (explicit tags).
#: Not JSON: PyYAML resolves YAML 1.1, where JSON's ``1e-05`` is a string, not a float.
STYLES = ("block", "flow", "mixed", "canonical")


def render(doc: Any, style: str) -> str:
    """Serialise ``doc`` as YAML in the given style."""
    flow = {"block": False, "flow": True, "mixed": None, "canonical": None}[style]
    return yaml.dump(
        doc,
        Dumper=yaml.CSafeDumper,
        default_flow_style=flow,
        canonical=style == "canonical",
        sort_keys=False,
        allow_unicode=True,
    )


# ---------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """A valid document with one problem introduced, and where the loader must report it."""

    doc: Doc
    path: str
    what: str


@st.composite
def field_mutations(draw: st.DrawFn) -> Mutation:
    """One field of a valid document gets a wrong type/out-of-range value, or a required one is deleted."""
    doc = draw(valid_docs(sparse=True))
    info = draw(_ANY_FIELD)
    steps = concrete_steps(draw, info.path, doc)
    if info.required and draw(st.booleans()):
        delete_at(doc, steps)
        return Mutation(doc, path_of(steps), "deleted required field")
    value = draw(invalid_value(info))
    set_at(doc, steps, value)
    return Mutation(doc, path_of(steps), f"set to {value!r:.80}")


@st.composite
def unknown_key_mutations(draw: st.DrawFn) -> Mutation:
    """A valid document with an unknown key added to one of its mappings (root, target or group)."""
    doc = draw(valid_docs(sparse=True))
    group = draw(_ANY_GROUP)
    steps = concrete_steps(draw, group, doc)
    known = {f.name for f in children(group)} | ({DEFAULTS_KEY} if group == "" else set())
    key = draw(KEYS.filter(lambda k: k not in known))
    mapping_at(doc, steps)[key] = draw(SCALARS)
    return Mutation(doc, join(path_of(steps), str(key)), f"unknown key {key!r}")


@st.composite
def rule_mutations(draw: st.DrawFn) -> Mutation:
    """A valid document that breaks one cross-field rule (empty/duplicate targets, min > max, seasons, cost)."""
    doc = draw(valid_docs(sparse=True))
    targets: list[Doc] = doc["targets"]
    i = draw(st.integers(0, len(targets) - 1))
    rule = draw(
        st.sampled_from(["empty", "duplicate", "replicas", "resolution", "seasons", "cost", "seasonless", "auto"])
    )
    if rule == "empty":
        doc["targets"] = []
        return Mutation(doc, "targets", "empty targets")
    if rule == "duplicate":
        targets.append(copy.deepcopy(targets[i]))
        return Mutation(doc, f"targets[{len(targets) - 1}]", "duplicate target")
    if rule == "replicas":
        hi: int = draw(st.integers(1, 99_999))
        targets[i]["scaling"] = {"minReplicas": draw(st.integers(hi + 1, 100_000)), "maxReplicas": hi}
        return Mutation(doc, f"targets[{i}].scaling.minReplicas", "minReplicas > maxReplicas")
    if rule == "cost":
        targets[i]["cost"] = draw(valid_value(FIELDS["targets[].cost"]).filter(lambda c: c is not None))
        mapping_at(targets[i], ["forecast"])["quantile"] = draw(valid_value(FIELDS["targets[].forecast.quantile"]))
        return Mutation(doc, f"targets[{i}].cost", "cost and forecast.quantile both set")
    forecast = mapping_at(targets[i], ["forecast"])
    if rule == "seasonless":  # a seasonal model with no season would silently run as another model
        forecast["model"] = draw(st.sampled_from(sorted(SEASONAL_TYPES)))
        forecast["seasons"] = []
        return Mutation(doc, f"targets[{i}].forecast.seasons", "seasonal model without seasons")
    if rule == "auto":
        forecast["model"] = "auto"
        forecast["seasons"] = []
        forecast["candidates"] = draw(
            st.lists(st.sampled_from(sorted(_candidates())), min_size=1, max_size=4, unique=True).filter(
                lambda cs: any(c in SEASONAL_TYPES for c in cs)
            )
        )
        return Mutation(doc, f"targets[{i}].forecast.seasons", "seasonal candidates without seasons")
    if rule == "resolution":
        forecast["resolutionSeconds"] = draw(
            st.integers(*_int_range(FIELDS["targets[].forecast.resolutionSeconds"].meta)).filter(
                lambda r: SEASONS["daily"] % r != 0
            )
        )
        forecast["seasons"] = ["daily", *draw(st.lists(st.just("weekly"), max_size=1))]
        return Mutation(doc, f"targets[{i}].forecast.seasons[0]", "resolution does not divide a day")
    forecast["resolutionSeconds"] = draw(st.sampled_from(_resolutions()))
    forecast["seasons"] = [draw(st.sampled_from(sorted(SEASONS)))] * 2
    return Mutation(doc, f"targets[{i}].forecast.seasons", "duplicate season")


@st.composite
def docs_with_snippet(draw: st.DrawFn, snippets: Strategy) -> tuple[str, str, str]:
    """A valid document rendered as YAML with one field's value replaced by a raw YAML snippet.

    Returns ``(text, field path, snippet)``. The snippet is single-line, so it fits both
    block and flow style.
    """
    doc = draw(valid_docs(sparse=True))
    schema_path = draw(ANY_PATH)
    steps = concrete_steps(draw, schema_path, doc)
    set_at(doc, steps, PLACEHOLDER)
    snippet: str = draw(snippets)
    text = render(doc, draw(st.sampled_from(STYLES[:3])))
    assert text.count(PLACEHOLDER) == 1, text
    return text.replace(PLACEHOLDER, snippet), path_of(steps), snippet


def names_field(error_path: str, field_path: str) -> bool:
    """Whether an error path is the field's path or inside it (``x.y``, ``x[0]``)."""
    return error_path == field_path or error_path.startswith((field_path + ".", field_path + "["))


@st.composite
def duplicate_key_docs(draw: st.DrawFn) -> tuple[str, str]:
    """A valid document rendered as YAML with one key of one of its mappings given twice.

    Returns ``(text, key)``; the loader must refuse it (YAML alone would keep the last value).
    """
    doc = draw(valid_docs(sparse=True))
    mappings: list[Doc] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if node:
                mappings.append(node)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(doc)
    mapping = draw(st.sampled_from(mappings))
    key = draw(st.sampled_from(sorted(mapping)))
    mapping[PLACEHOLDER] = copy.deepcopy(mapping[key])
    text = render(doc, draw(st.sampled_from(STYLES[:3])))
    assert text.count(PLACEHOLDER) == 1, text
    return text.replace(PLACEHOLDER, key), key
