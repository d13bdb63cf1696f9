"""Backfill days of metric history into a Prometheus TSDB before it starts.

Why: the predictive autoscaler fits its forecast on days of history
(``query_range`` over ``rate(...)``). Scraping for days is impossible in a
test, so history is written as OpenMetrics text and turned into TSDB blocks
with ``promtool tsdb create-blocks-from openmetrics`` (Prometheus 2.42). The
server loads the blocks when it starts.

Findings for promtool 2.42 that shape this module (checked on Debian's
``2.42.0+ds``):

- Metric names with ``:`` (``vllm:request_success_total``) are accepted in
  OpenMetrics input and stored verbatim, so backfilled series carry the same
  names vLLM exposes. The ``vllm_`` spelling works the same way.
- Timestamps are read as *seconds* (float). A millisecond timestamp is taken
  as seconds and lands ~50,000 years in the future, so this module always
  writes seconds with millisecond precision.
- Counters: this module writes the proper OpenMetrics form, the family
  declared without ``_total`` (``# TYPE vllm:request_success counter``) and
  samples with it (``vllm:request_success_total``). Counter series whose
  name does not end in ``_total`` are declared ``unknown``. Histogram parts
  (``_bucket``/``_sum``/``_count``) are passed as separate series and
  declared ``unknown`` (the TSDB stores no type; PromQL does not need it).
- promtool re-reads the whole input once per output block, so one file of a
  week costs O(blocks x file): about 40 s for half of a 7-day, 32-series
  file. Input is therefore split into epoch-aligned files of exactly one
  block range, one promtool run per file, two at a time. The hidden flag
  ``--max-block-duration`` allows blocks above 2 h but rounds down to
  ``2h x 3^k`` (6 h, 18 h, 54 h …) and aligns blocks to that, so only those
  sizes are used. 18 h chunks (the default) are 2-4x faster than 2 h ones,
  whose cost is mostly promtool start-up (85 runs per week).
- Several ``backfill`` calls may cover the same time range: 2.42 loads the
  overlapping blocks (logging "Overlapping blocks found") and merges them.
- The TSDB's head refuses live samples older than the newest block's max
  time. If history runs into the future, live scrapes are dropped with only
  a log line ("Appending scrape report failed … out of bounds") while the
  target still shows ``up``. So history must end before the server starts;
  :func:`backfill` refuses future timestamps unless ``allow_future=True``.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from .exporters import E2E_LATENCY_BUCKETS, format_labels, format_le

__all__ = [
    "BackfillStats",
    "Series",
    "SyntheticHistory",
    "backfill",
    "diurnal_rate",
    "synthetic_vllm_history",
    "write_openmetrics_chunks",
]

SeriesType = Literal["gauge", "counter", "unknown"]
#: ``(metric_name, labels, timestamps_seconds, values, type)``
Series = tuple[str, Mapping[str, str], npt.ArrayLike, npt.ArrayLike, str]
FloatArray = npt.NDArray[np.float64]

BLOCK_SECONDS = 7200
#: Block ranges promtool can produce (``tsdb.ExponentialBlockRanges(2h, 10, 3)``); a
#: ``--max-block-duration`` in between is rounded *down* to one of these, and blocks
#: are aligned to multiples of it, so chunk files must use exactly these sizes.
BLOCK_RANGES: tuple[int, ...] = tuple(BLOCK_SECONDS * 3**k for k in range(5))
#: Default chunk: 18 h files/blocks. Measured (7 days at 30 s, 10 series, 2 cores):
#: 2 h chunks 4-7.5 s (85 promtool runs, start-up dominated), 18 h 1-2 s, 54 h ~1 s.
DEFAULT_CHUNK_SECONDS = BLOCK_SECONDS * 9


@dataclass
class BackfillStats:
    """What a :func:`backfill` call did and how long each phase took."""

    series: int = 0
    samples: int = 0
    files: int = 0
    write_seconds: float = 0.0
    promtool_seconds: float = 0.0
    total_seconds: float = 0.0
    min_time: float = math.inf
    max_time: float = -math.inf


@dataclass
class _Prepared:
    family: str
    type: str
    prefix: str  # 'name{labels} '
    ts: FloatArray
    values: FloatArray


def _family_of(name: str, kind: str) -> tuple[str, str]:
    if kind == "gauge":
        return name, "gauge"
    if kind == "counter" and name.endswith("_total") and len(name) > len("_total"):
        return name[: -len("_total")], "counter"
    if kind in ("counter", "unknown"):
        return name, "unknown"
    raise ValueError(f"series type must be gauge, counter or unknown, not {kind!r}")


def _fmt_values(values: FloatArray) -> list[str]:
    out = []
    for v in values.tolist():
        if math.isnan(v):
            out.append("NaN")
        elif v in (math.inf, -math.inf):
            out.append("+Inf" if v > 0 else "-Inf")
        else:
            out.append(repr(v))
    return out


def _fmt_times(ts: FloatArray) -> list[str]:
    if np.all(ts == np.floor(ts)):
        return [str(t) for t in ts.astype(np.int64).tolist()]
    return [f"{t:.3f}" for t in ts.tolist()]


def _prepare(series: Iterable[Series]) -> list[_Prepared]:
    prepared: list[_Prepared] = []
    family_types: dict[str, str] = {}
    for name, labels, ts_like, val_like, kind in series:
        ts = np.asarray(ts_like, dtype=np.float64)
        values = np.asarray(val_like, dtype=np.float64)
        if ts.shape != values.shape or ts.ndim != 1:
            raise ValueError(f"{name}: timestamps {ts.shape} and values {values.shape} differ")
        if ts.size and np.any(np.diff(ts) <= 0):
            raise ValueError(f"{name}{dict(labels)}: timestamps must strictly increase")
        if ts.size and ts[0] > 1e11:
            raise ValueError(f"{name}: timestamps look like milliseconds; pass seconds")
        family, fam_type = _family_of(name, kind)
        if family_types.setdefault(family, fam_type) != fam_type:
            raise ValueError(f"family {family!r} declared both {family_types[family]} and {fam_type}")
        prepared.append(_Prepared(family, fam_type, f"{name}{format_labels(labels)} ", ts, values))
    # OpenMetrics wants each family's samples together
    prepared.sort(key=lambda p: p.family)
    return prepared


def write_openmetrics_chunks(
    series: Iterable[Series],
    out_dir: str | Path,
    *,
    chunk_seconds: int = DEFAULT_CHUNK_SECONDS,
) -> tuple[list[Path], BackfillStats]:
    """Write ``series`` as OpenMetrics files, one per epoch-aligned ``chunk_seconds`` range.

    Returns the files (in time order) and stats (series, samples, times).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared = _prepare(series)
    stats = BackfillStats(series=len(prepared))
    chunks: dict[int, list[str]] = {}
    for p in prepared:
        if not p.ts.size:
            continue
        stats.samples += int(p.ts.size)
        stats.min_time = min(stats.min_time, float(p.ts[0]))
        stats.max_time = max(stats.max_time, float(p.ts[-1]))
        idx = np.floor(p.ts / chunk_seconds).astype(np.int64)
        bounds = np.flatnonzero(np.diff(idx)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [p.ts.size]))
        vals = _fmt_values(p.values)
        times = _fmt_times(p.ts)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            lines = chunks.setdefault(int(idx[s]), [])
            lines.append(f"# TYPE {p.family} {p.type}")  # duplicates dropped on write
            prefix = p.prefix
            lines.extend(prefix + v + " " + t for v, t in zip(vals[s:e], times[s:e], strict=True))
    files = []
    for chunk in sorted(chunks):
        path = out / f"chunk-{chunk * chunk_seconds}.om"
        path.write_text(_dedupe_type_lines(chunks[chunk]) + "\n# EOF\n")
        files.append(path)
    stats.files = len(files)
    return files, stats


def _dedupe_type_lines(lines: list[str]) -> str:
    """Keep only the first ``# TYPE`` line per family (series of a family are adjacent)."""
    seen: set[str] = set()
    kept = []
    for line in lines:
        if line.startswith("# TYPE "):
            family = line.split(" ", 3)[2]
            if family in seen:
                continue
            seen.add(family)
        kept.append(line)
    return "\n".join(kept)


def backfill(
    data_dir: str | Path,
    series: Iterable[Series],
    *,
    chunk_seconds: int = DEFAULT_CHUNK_SECONDS,
    promtool: str = "promtool",
    parallel: int = 2,
    work_dir: str | Path | None = None,
    keep_files: bool = False,
    allow_future: bool = False,
) -> BackfillStats:
    """Write ``series`` into TSDB blocks in ``data_dir`` (server must be stopped or restarted).

    Each series is ``(metric_name, labels, timestamps_seconds, values, type)``
    with ``type`` one of ``gauge``, ``counter`` (name should end in
    ``_total``) or ``unknown``; timestamps in *seconds*, strictly increasing.
    Input is split into epoch-aligned ``chunk_seconds`` files (one of
    :data:`BLOCK_RANGES`: 2 h, 6 h, 18 h (default), 54 h, 162 h; above 2 h
    promtool gets ``--max-block-duration``), so each promtool run reads one
    small file once and writes one block; ``parallel`` runs at a time.
    Refuses history that ends in the future (see module doc) unless
    ``allow_future``. Raises :class:`RuntimeError` with promtool's output on
    failure.
    """
    if chunk_seconds not in BLOCK_RANGES:
        raise ValueError(f"chunk_seconds must be one of {BLOCK_RANGES} (promtool's block ranges)")
    if shutil.which(promtool) is None and not Path(promtool).exists():
        raise RuntimeError(f"{promtool!r} not found; run scripts/install-prometheus.sh")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="promfill-", dir=work_dir))
    try:
        files, stats = write_openmetrics_chunks(series, tmp, chunk_seconds=chunk_seconds)
        if not allow_future and stats.max_time > time.time():
            raise ValueError(
                f"history ends {stats.max_time - time.time():.0f}s in the future: the TSDB "
                "would then drop live scrapes as 'out of bounds' (silently; the target "
                "stays up). End history before the server starts, or allow_future=True."
            )
        stats.write_seconds = time.monotonic() - started
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        extra = [] if chunk_seconds == BLOCK_SECONDS else [f"--max-block-duration={chunk_seconds // 3600}h"]

        def run(path: Path) -> None:
            proc = subprocess.run(
                [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", *extra, str(path), str(data_dir)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"promtool failed on {path.name} (rc={proc.returncode}): "
                    f"{proc.stderr.strip() or proc.stdout.strip()}"
                )

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(run, files))
        stats.promtool_seconds = time.monotonic() - t0
        stats.total_seconds = time.monotonic() - started
        return stats
    finally:
        if not keep_files:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# Synthetic vLLM history with known ground truth
# --------------------------------------------------------------------------

RateFn = Callable[[FloatArray], FloatArray]


def diurnal_rate(
    base: float,
    amplitude: float,
    *,
    period: float = 86400.0,
    peak_at: float = 14 * 3600.0,
    weekly: float = 0.0,
) -> RateFn:
    """Arrival rate (req/s) ``base + amplitude*cos(2π(t-peak_at)/period)``, times a weekly factor.

    ``weekly`` in [0, 1) lowers Saturday/Sunday (UTC) by that fraction.
    """

    def rate(t: FloatArray) -> FloatArray:
        t = np.asarray(t, dtype=np.float64)
        r = base + amplitude * np.cos(2 * np.pi * (t - peak_at) / period)
        if weekly:
            weekday = np.floor(t / 86400.0 + 3) % 7  # 1970-01-01 was a Thursday (3)
            r = r * np.where(weekday >= 5, 1.0 - weekly, 1.0)
        return np.maximum(r, 0.0)

    return rate


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    if math.isinf(x):
        return 1.0
    if x <= 0:
        return 0.0
    return 0.5 * (1.0 + math.erf(math.log(x / median) / (sigma * math.sqrt(2.0))))


@dataclass
class SyntheticHistory:
    """Generated series plus the truth they were generated from."""

    series: list[Series]
    timestamps: FloatArray
    #: total arrival rate (req/s) at each timestamp, as the rate function gave it
    arrival_rate: FloatArray
    #: per-pod arrival rate (req/s) at each timestamp
    pod_rates: dict[str, FloatArray]
    #: per-pod cumulative success counter as written (after resets)
    completed: dict[str, FloatArray]
    rate_fn: RateFn
    pod_shares: dict[str, float]
    latency_median: float
    latency_sigma: float
    resets: tuple[float, ...] = ()
    prefix: str = "vllm:"
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def true_rate(self, t0: float, t1: float, pod: str | None = None, points: int = 2001) -> float:
        """Mean arrival rate (req/s) over ``[t0, t1]`` from the rate function (one pod or all)."""
        grid = np.linspace(t0, t1, points)
        r = self.rate_fn(grid)
        mean = float(np.sum((r[1:] + r[:-1]) * np.diff(grid)) / 2.0 / (t1 - t0))
        return mean * (self.pod_shares[pod] if pod is not None else 1.0)

    def counter_rate(self, t0: float, t1: float, pod: str | None = None) -> float:
        """Rate of the *written* success counters over the samples in ``[t0, t1]``.

        Counts like PromQL (a drop is a reset: the new value is the increase),
        divided by the time between the first and last sample (no
        extrapolation). Unlike :meth:`true_rate`, requests that finished
        between the last sample before a reset and the reset are lost, as
        they are in reality.
        """
        inside = (self.timestamps >= t0) & (self.timestamps <= t1)
        ts = self.timestamps[inside]
        if ts.size < 2:
            raise ValueError("need two samples in the window")
        total = 0.0
        for p in [pod] if pod is not None else list(self.completed):
            c = self.completed[p][inside]
            d = np.diff(c)
            total += float(np.sum(np.where(d >= 0, d, c[1:])))
        return total / float(ts[-1] - ts[0])

    def latency_quantile(self, q: float) -> float:
        """True quantile of the E2E latency distribution (seconds)."""
        # inverse of the lognormal CDF by bisection (no scipy)
        lo, hi = 1e-6, 1e6
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if _lognormal_cdf(mid, self.latency_median, self.latency_sigma) < q:
                lo = mid
            else:
                hi = mid
        return math.sqrt(lo * hi)

    @property
    def latency_mean(self) -> float:
        """Mean E2E latency (seconds)."""
        return self.latency_median * math.exp(self.latency_sigma**2 / 2)


def synthetic_vllm_history(
    *,
    namespace: str,
    pods: Sequence[str],
    model_name: str,
    start: float,
    end: float,
    arrival_rate: RateFn,
    step: float = 30.0,
    deployment: str | None = None,
    pod_weights: Sequence[float] | None = None,
    latency_median: float = 2.0,
    latency_sigma: float = 0.5,
    prompt_tokens: int = 512,
    gen_tokens: int = 128,
    max_num_seqs: int = 64,
    kv_capacity_tokens: float = 200_000.0,
    resets: Sequence[float] = (),
    job: str = "vllm",
    engine: str = "0",
    prefix: str = "vllm:",
    old_cache_name: bool = False,
    buckets: Sequence[float] = E2E_LATENCY_BUCKETS,
    ksm_job: str = "kube-state-metrics",
    extra_labels: Mapping[str, str] | None = None,
) -> SyntheticHistory:
    """Consistent vLLM + kube-state-metrics history for one model's pods.

    ``arrival_rate(t)`` is the model's total arrival rate (req/s) at unix
    time ``t`` (vectorised), split over ``pods`` by ``pod_weights``. Steady
    state is assumed (a request completes in the step it arrives), so the
    success counter is ``floor(∫rate)`` per pod, reset to 0 at each time in
    ``resets`` (pod restarts). Latencies are lognormal(``latency_median``,
    ``latency_sigma``); the histogram buckets hold the exact expected
    counts (floored). Gauges follow Little's law: in flight =
    rate x mean latency, running = min(in flight, ``max_num_seqs``), the
    rest waiting; KV usage = running x tokens / ``kv_capacity_tokens``.

    Series per pod (labels ``namespace``, ``pod``, ``model_name``,
    ``engine``, ``job``, ``instance`` + ``extra_labels``):
    ``request_success_total{finished_reason="stop"}``,
    ``e2e_request_latency_seconds_{bucket,sum,count}``,
    ``num_requests_running``, ``num_requests_waiting``,
    ``kv_cache_usage_perc`` (``gpu_cache_usage_perc`` if ``old_cache_name``),
    ``prompt_tokens_total``, ``generation_tokens_total``; plus
    ``kube_deployment_spec_replicas`` and ``kube_deployment_status_replicas_ready``
    ``{namespace, deployment, job=ksm_job}`` (= number of pods).
    """
    if not pods:
        raise ValueError("need at least one pod")
    ts = np.arange(math.ceil(start / step) * step, end + 1e-9, step, dtype=np.float64)
    weights = np.asarray(pod_weights if pod_weights is not None else [1.0] * len(pods), dtype=np.float64)
    shares = weights / weights.sum()
    # cumulative expected arrivals A(t) by trapezoid on a grid 10x finer than step
    sub = 10
    fine = np.linspace(ts[0], ts[-1], (ts.size - 1) * sub + 1) if ts.size > 1 else ts.copy()
    fr = arrival_rate(fine)
    cum_fine = np.concatenate(([0.0], np.cumsum((fr[1:] + fr[:-1]) * np.diff(fine) / 2.0)))
    cum = cum_fine[::sub]
    rate_at = arrival_rate(ts)
    # subtract the cumulative value at the last reset at or before each t
    base = np.zeros_like(cum)
    for r in sorted(resets):
        if ts[0] < r <= ts[-1]:
            idx = int(np.searchsorted(ts, r))
            base[idx:] = np.interp(r, ts, cum)
    since_reset = cum - base

    mean_latency = latency_median * math.exp(latency_sigma**2 / 2)
    finite = sorted(float(b) for b in buckets if math.isfinite(b))
    cdf = [_lognormal_cdf(b, latency_median, latency_sigma) for b in finite]
    series: list[Series] = []
    pod_rates: dict[str, FloatArray] = {}
    completed: dict[str, FloatArray] = {}
    labels_by_pod: dict[str, dict[str, str]] = {}
    cache_name = "gpu_cache_usage_perc" if old_cache_name else "kv_cache_usage_perc"
    for i, pod in enumerate(pods):
        share = float(shares[i])
        lbl = {
            "namespace": namespace,
            "pod": pod,
            "model_name": model_name,
            "engine": engine,
            "job": job,
            "instance": f"{pod}:8000",
            **(extra_labels or {}),
        }
        labels_by_pod[pod] = lbl
        count = np.floor(share * since_reset + 1e-9)
        completed[pod] = count
        pod_rate = share * rate_at
        pod_rates[pod] = pod_rate
        series.append((prefix + "request_success_total", {**lbl, "finished_reason": "stop"}, ts, count, "counter"))
        for bound, c in zip(finite, cdf, strict=True):
            series.append(
                (
                    prefix + "e2e_request_latency_seconds_bucket",
                    {**lbl, "le": format_le(bound)},
                    ts,
                    np.floor(count * c),
                    "unknown",
                )
            )
        series.append((prefix + "e2e_request_latency_seconds_bucket", {**lbl, "le": "+Inf"}, ts, count, "unknown"))
        series.append((prefix + "e2e_request_latency_seconds_count", lbl, ts, count, "unknown"))
        series.append((prefix + "e2e_request_latency_seconds_sum", lbl, ts, count * mean_latency, "unknown"))
        in_flight = np.round(pod_rate * mean_latency)
        running = np.minimum(in_flight, max_num_seqs)
        waiting = np.maximum(in_flight - max_num_seqs, 0.0)
        kv = np.minimum(running * (prompt_tokens + gen_tokens) / kv_capacity_tokens, 1.0)
        series.append((prefix + "num_requests_running", lbl, ts, running, "gauge"))
        series.append((prefix + "num_requests_waiting", lbl, ts, waiting, "gauge"))
        series.append((prefix + cache_name, lbl, ts, kv, "gauge"))
        series.append((prefix + "prompt_tokens_total", lbl, ts, count * prompt_tokens, "counter"))
        series.append((prefix + "generation_tokens_total", lbl, ts, count * gen_tokens, "counter"))
    ksm = {"namespace": namespace, "deployment": deployment or model_name, "job": ksm_job}
    replicas = np.full_like(ts, float(len(pods)))
    series.append(("kube_deployment_spec_replicas", ksm, ts, replicas, "gauge"))
    series.append(("kube_deployment_status_replicas_ready", ksm, ts, replicas, "gauge"))
    return SyntheticHistory(
        series=series,
        timestamps=ts,
        arrival_rate=rate_at,
        pod_rates=pod_rates,
        completed=completed,
        rate_fn=lambda t: arrival_rate(np.asarray(t, dtype=np.float64)),
        pod_shares={p: float(s) for p, s in zip(pods, shares, strict=True)},
        latency_median=latency_median,
        latency_sigma=latency_sigma,
        resets=tuple(resets),
        prefix=prefix,
        labels=labels_by_pod,
    )
