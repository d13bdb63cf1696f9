"""Fitted forecast state that survives a restart: the versioned, size-bounded encoding.

Why: a model selection and the peak calibration cost ~0.5 s of CPU per target, so a
controller that starts from nothing needs hours at 1,000 targets before every target is
on its configured model again (and every restart, upgrade or leader change starts that
over). What a fit *estimates* is small: the winner of the selection and its scores, the
Holt-Winters smoothing parameters, the STL-ARIMA coefficients and the peak regression's
weights. Saved per target and restored on start, they let the controller rebuild each
model with one pass of its recursion over the history (a few milliseconds; STL-ARIMA
also redoes its STL decomposition, ~25 ms) instead of a fit (~0.15 s for STL-ARIMA,
most of it the ARIMA estimation). A state saved before the coefficients were (no
``arima`` key) still restores, refitting that winner.

The encoding is a gzip-compressed JSON document per part, ``{"version": ..., "targets":
{key: state}}``; a shard's states are split into as many parts as keep each under
`MAX_PART_BYTES`, because a Kubernetes object (a ConfigMap) holds at most 1 MiB. A part
or a target state of another version is ignored with a reason, never an error: the
targets it covered start from their history as before. The store behind the
:class:`~autoscaler.ports.FitStateStore` port only moves opaque parts.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoscaler.core.types import DecisionRecord
from models.peaks import PeakModel, regressor_names

#: Version of the document and of each target state; bump on any incompatible change.
STATE_VERSION = 1
#: Largest encoded part: a ConfigMap holds 1 MiB in all (keys, metadata and the base64
#: of ``binaryData`` included), so a part stays well below it.
MAX_PART_BYTES = 700 * 1024
#: Largest decoded part accepted (a gzip bomb would otherwise inflate without bound).
MAX_DECODED_BYTES = 64 * 1024 * 1024
#: Significant digits kept of the served peaks awaiting their score (``pending``).
PENDING_DIGITS = 6
#: gzip level of a part: 6 compresses JSON of numbers within 3 % of 9 at 2/3 of its CPU.
GZIP_LEVEL = 6

TargetStates = Mapping[str, Mapping[str, Any]]


def encode(states: TargetStates, *, max_part_bytes: int = MAX_PART_BYTES) -> list[bytes]:
    """Split ``states`` into compressed parts of at most ``max_part_bytes`` each.

    Pure. Targets are kept in key order, so the same states give the same parts. A
    target state larger than a part on its own, or holding a non-finite number, is left
    out (it cannot be stored, and its target simply refits after a restart).
    """
    blobs: dict[str, str] = {}
    for key in sorted(states):
        try:
            blobs[key] = json.dumps(states[key], separators=(",", ":"), allow_nan=False)
        except ValueError:
            continue  # a non-finite number: that target refits after a restart
    parts: list[bytes] = []
    chunk: list[str] = []

    def pack(keys: Sequence[str]) -> bytes:
        body = ",".join(f"{json.dumps(k)}:{blobs[k]}" for k in keys)
        document = f'{{"version":{STATE_VERSION},"targets":{{{body}}}}}'.encode()
        return gzip.compress(document, compresslevel=GZIP_LEVEL, mtime=0)

    # JSON of numbers compresses 2-4x: chunks of up to 4 parts' worth of raw text, each
    # split in halves until every half fits.
    size = 0
    for key, blob in blobs.items():
        if chunk and size + len(blob) > 4 * max_part_bytes:
            parts.extend(_fit(chunk, pack, max_part_bytes))
            chunk, size = [], 0
        chunk.append(key)
        size += len(blob)
    parts.extend(_fit(chunk, pack, max_part_bytes))
    return parts


def _fit(keys: list[str], pack: Any, limit: int) -> list[bytes]:
    """``keys`` packed into parts under ``limit``, halving the list until each fits."""
    if not keys:
        return []
    data: bytes = pack(keys)
    if len(data) <= limit:
        return [data]
    if len(keys) == 1:
        return []
    half = len(keys) // 2
    return _fit(keys[:half], pack, limit) + _fit(keys[half:], pack, limit)


@dataclass
class Decoded:
    """The target states read from a shard's parts, and why anything was left out."""

    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def decode(parts: Sequence[bytes]) -> Decoded:
    """The target states in ``parts``; a part that is unreadable or of another version is ignored.

    Pure. Never raises: every problem is one line in ``Decoded.ignored``.
    """
    out = Decoded()
    for i, data in enumerate(parts):
        try:
            raw = zlib.decompressobj(wbits=31).decompress(data, MAX_DECODED_BYTES)
            document = json.loads(raw)
        except (zlib.error, ValueError, RecursionError) as exc:
            out.ignored.append(f"part {i}: unreadable ({type(exc).__name__})")
            continue
        if not isinstance(document, dict) or not isinstance(document.get("targets"), dict):
            out.ignored.append(f"part {i}: not a fitted-state document")
            continue
        if document.get("version") != STATE_VERSION:
            out.ignored.append(f"part {i}: version {document.get('version')!r}, this build reads {STATE_VERSION}")
            continue
        for key, state in document["targets"].items():
            if isinstance(state, dict):
                out.states[str(key)] = state
            else:
                out.ignored.append(f"target {key}: not a state object")
    return out


def export_peaks(model: PeakModel) -> dict[str, Any]:
    """A peak calibration as JSON-ready data (levels, windows, chosen level, weights, offsets).

    The coverage correction is kept whole: its offsets, and the windows served but not
    yet scored (a node window's worth), so a restart scores them as a run without one.
    Arrays are converted by numpy (``tolist``, the pending windows rounded in one
    pass), not number by number: a save exports every target, and at 1,000 targets
    the per-number loops were most of its CPU.
    """
    served = [(start, q, values) for start, by_q in sorted(model.pending.items()) for q, values in sorted(by_q.items())]
    flat = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for _, _, v in served]) if served else np.empty(0)
    rounded, at = _significant(flat), 0
    pending: dict[float, list[list[Any]]] = {}
    for start, q, values in served:
        size = np.size(values)
        pending.setdefault(start, []).append([q, rounded[at : at + size]])
        at += size
    return {
        "levels": list(model.levels),
        "offsets": [[q, np.asarray(off, dtype=np.float64).tolist()] for q, off in sorted(model.offsets.items())],
        "pending": [[start, rows] for start, rows in pending.items()],
        "windows": model.windows,
        "level": model.level,
        "coefficients": [
            [k, q, list(names), np.asarray(weights, dtype=np.float64).tolist()]
            for (k, q), (names, weights) in sorted(model.coefficients.items())
        ],
    }


def _significant(values: Any, digits: int = PENDING_DIGITS) -> list[float]:
    """``values`` rounded to ``digits`` significant digits each (vectorised), as floats.

    Served peaks are compared with realised ones, never summed, so six digits keep
    every comparison but one within a millionth, and a third of the text.
    """
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array) & (array != 0)
    exponent = np.zeros(array.shape)
    exponent[finite] = np.floor(np.log10(np.abs(array[finite])))
    with np.errstate(over="ignore", invalid="ignore"):
        scale = 10.0 ** (digits - 1 - exponent)
        rounded = np.round(array * scale) / scale
    # Subnormal values overflow the scale: kept as they are.
    out: list[float] = np.where(np.isfinite(rounded) | ~np.isfinite(array), rounded, array).tolist()
    return out


def restore_peaks(data: Mapping[str, Any], levels: tuple[float, ...]) -> PeakModel:
    """The peak calibration exported by `export_peaks`, for a forecaster predicting ``levels``.

    Raises:
        ValueError: When the data is malformed, not finite, or for other levels.
    """
    if [float(q) for q in data["levels"]] != list(levels):
        raise ValueError("the saved peak calibration is for other levels")
    level = data["level"]
    model = PeakModel(levels=levels, windows=int(data["windows"]), level=None if level is None else float(level))
    for k, q, names, weights in data["coefficients"]:
        values = np.asarray(weights, dtype=np.float64)
        if values.ndim != 1 or values.size != len(names) + 1 or not np.isfinite(values).all():
            raise ValueError("malformed peak weights")
        model.coefficients[(int(k), float(q))] = (regressor_names(str(n) for n in names), values)
    for q, off in data.get("offsets", []):
        values = np.asarray(off, dtype=np.float64)
        if values.ndim != 1 or not np.isfinite(values).all():
            raise ValueError("malformed peak offsets")
        model.offsets[float(q)] = values
    for start, served in data.get("pending", []):
        quantiles = {float(q): np.asarray(values, dtype=np.float64) for q, values in served}
        if not all(v.ndim == 1 and np.isfinite(v).all() for v in quantiles.values()):
            raise ValueError("malformed pending peak windows")
        model.pending[float(start)] = quantiles
    return model


def finite_floats(values: Any, count: int) -> tuple[float, ...]:
    """``values`` as ``count`` finite floats.

    Raises:
        ValueError: Otherwise.
    """
    if not isinstance(values, list) or len(values) != count:
        raise ValueError(f"expected {count} numbers")
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise ValueError("non-finite number")
    return out


def decision_rows(records: Iterable[DecisionRecord]) -> list[list[float]]:
    """A target's recent decisions as saved: ``[time, serving, total, replicas, placeholders]`` rows.

    Pure. Saved with the fitted state so that a restart carries on from them (the
    stabilization windows and rate limits run as if there had been no restart).
    """
    return [[r.time, r.serving_recommendation, r.total_recommendation, r.replicas, r.placeholders] for r in records]


def decision_records(saved: Any, now: float) -> list[DecisionRecord]:
    """Saved decision records (:func:`decision_rows`) up to ``now``.

    Pure. Anything malformed makes the whole list empty: the target then starts from
    its current size, as without saved decisions.
    """
    if not isinstance(saved, list):
        return []
    records = []
    for row in saved:
        if not (isinstance(row, list) and len(row) == 5 and all(isinstance(v, int | float) for v in row)):
            return []
        t, serving, total, replicas, placeholders = row
        if not (isinstance(t, int | float) and t <= now) or min(serving, total, replicas, placeholders) < 0:
            return []
        records.append(DecisionRecord(float(t), int(serving), int(total), int(replicas), int(placeholders)))
    return records


class InMemoryFitStore:
    """A :class:`~autoscaler.ports.FitStateStore` in this process (simulator, tests, benchmarks).

    Keeps the encoded parts, so whatever runs on it goes through the same encoding (and
    size limit) as the ConfigMap store.
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.saves = 0

    def load(self) -> list[bytes]:
        """The parts saved last (none before the first save)."""
        return list(self.parts)

    def save(self, parts: Sequence[bytes]) -> None:
        """Replace the saved parts."""
        self.parts = list(parts)
        self.saves += 1
