"""Tests for autoscaler.offline.traces: every raw trace format, the bundled traces and our CSV.

The raw-format tests read the public traces from ``$TRACES_RAW_DIR`` (default
``/work/shared/traces/raw``, present on CI) and compare with the statistics table of its
README. How each figure is compared:

* requests = sum(rate * step) over the bins that have data;
* mean rpm = requests / span * 60, with span = the trace duration, except for NASA,
  whose README span is the length of ``workload.txt`` (5,059,950 s: the outage counted
  as zeros, the July 28-31 hole absent from the file), whereas the loaded trace runs on
  the wall clock over 62 days;
* ServeGen: the README's means count the zero-total windows as zero load, which is what
  requests / duration does while those windows are NaN;
* Alibaba qps: the README multiplied every per-container sample by 60 s, but the samples
  are 57 s apart (the loader integrates each tick over 57 s), so its two figures are
  compared after scaling by 57/60.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.errors import AutoscalerError
from autoscaler.offline.traces import (
    BUNDLED_DIR,
    CSV_HEADER,
    SYNTHETIC_EPOCH,
    LoadTrace,
    TraceFormatError,
    list_bundled,
    load_trace,
    save_trace,
)

RAW = Path(os.environ.get("TRACES_RAW_DIR", "/work/shared/traces/raw"))
needs_raw = pytest.mark.skipif(not RAW.is_dir(), reason=f"public raw traces not found at {RAW} (set TRACES_RAW_DIR)")
REPO = Path(__file__).resolve().parents[1]
EDT = timezone(timedelta(hours=-4))
QPS_SAMPLING = 57 / 60  # README figure correction, see the module docstring


@functools.cache
def raw(relative: str) -> LoadTrace:
    """Load a raw trace once per test session (NASA takes about a second)."""
    return load_trace(RAW / relative)


def requests(trace: LoadTrace) -> float:
    """Total requests in a trace: the rate integrated over the bins that have data."""
    return float(np.nansum(trace.rates) * trace.step)


def at(trace: LoadTrace, moment: datetime) -> float:
    """The rate of the bin that holds a wall-clock moment."""
    return float(trace.rates[int((moment.timestamp() - trace.start) // trace.step)])


def make_trace(rates: list[float], *, step: float = 60.0) -> LoadTrace:
    """A small synthetic trace for the arithmetic tests."""
    return LoadTrace(name="t", start=SYNTHETIC_EPOCH, step=step, rates=np.array(rates), source="test")


# (raw path, README requests, README mean rpm, span in s or None for the duration)
README_TABLE = [
    ("azure_llm_2023/AzureLLMInferenceTrace_code.csv", 8_819, 152, None),
    ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", 19_366, 328, None),
    ("mooncake_fast25/conversation_trace.jsonl", 12_031, 204, None),
    ("alibaba_genai_2026/lora_request_trace.csv", 26_823, 0.81, None),
    ("alibaba_genai_2026/qps.tar.gz", 211_587 * QPS_SAMPLING, 158 * QPS_SAMPLING, None),
    ("alibaba_servegen/language/m-mid", 2_165e6, 107_403, None),
    ("alibaba_servegen/language/m-small", 1_421e6, 70_464, None),
    ("alibaba_servegen/reason/deepseek-r1", 1.38e6, 961, None),
    ("nasa_http_1995/workload.tbz2", 3_461_610, 41.0, 5_059_950),
]


@needs_raw
@pytest.mark.parametrize(("relative", "count", "rpm", "span"), README_TABLE)
def test_raw_trace_matches_readme_statistics(relative: str, count: float, rpm: float, span: float | None) -> None:
    """Each raw format loads and its request count and mean rpm are within 2 % of the README."""
    trace = raw(relative)
    total = requests(trace)
    assert total == pytest.approx(count, rel=0.02)
    assert total / (span or trace.duration) * 60 == pytest.approx(rpm, rel=0.02)


@needs_raw
def test_per_request_traces_count_every_request_at_60_s() -> None:
    """Per-request formats default to 60 s bins from the first request and lose no request."""
    code = raw("azure_llm_2023/AzureLLMInferenceTrace_code.csv")
    assert code.step == 60
    assert code.start == datetime(2023, 11, 16, 18, 17, 3, 979960, tzinfo=UTC).timestamp()
    assert requests(code) == 8_819
    mooncake = raw("mooncake_fast25/conversation_trace.jsonl")
    assert mooncake.start == SYNTHETIC_EPOCH
    coarse = load_trace(RAW / "alibaba_genai_2026/lora_request_trace.csv", step=300)
    assert coarse.step == 300
    assert requests(coarse) == pytest.approx(26_823)


@needs_raw
def test_servegen_zero_total_windows_are_nan() -> None:
    """ServeGen windows whose total over all clients is zero come out as NaN gaps."""
    mid = raw("alibaba_servegen/language/m-mid")
    assert mid.step == 600
    assert mid.rates.size == 2016
    assert mid.start == SYNTHETIC_EPOCH
    # 84 zero-total windows, plus 18 partial windows at gap edges (collection stopped or
    # restarted mid-window) that hold under 10 % of the level around them.
    assert int(np.isnan(mid.rates).sum()) == 84 + 18
    assert int(np.isnan(raw("alibaba_servegen/language/m-small").rates).sum()) == 37
    assert np.nanmin(mid.rates) > 0


def test_partial_windows_beside_a_gap_become_gaps() -> None:
    """A window holding a sliver of the surrounding level next to a gap is a gap, not a load drop."""
    from autoscaler.offline.traces import drop_partial_edges

    rates = np.array([10.0, 11, 9, 10, 0.01, 0.05, np.nan, np.nan, 0.2, 10, 12, 11, 10])
    drop_partial_edges(rates)
    assert np.isnan(rates[[4, 5, 8]]).all(), "a trickling run beside the gap goes whole"
    assert np.isfinite(np.delete(rates, [4, 5, 6, 7, 8])).all()


@needs_raw
def test_nasa_outage_and_missing_july_days_are_nan() -> None:
    """The NASA outage (08-01 14:52 to 08-03 04:36 EDT) and the missing July 28-31 are NaN."""
    nasa = raw("nasa_http_1995/workload.tbz2")
    assert nasa.start == datetime(1995, 7, 1, tzinfo=EDT).timestamp()
    assert nasa.duration == 62 * 86400
    outage = slice(
        int((datetime(1995, 8, 1, 14, 53, tzinfo=EDT).timestamp() - nasa.start) // 60),
        int((datetime(1995, 8, 3, 4, 36, tzinfo=EDT).timestamp() - nasa.start) // 60),
    )
    assert np.isnan(nasa.rates[outage]).all()
    hour_before = nasa.rates[outage.start - 61 : outage.start - 1]
    hour_after = nasa.rates[outage.stop + 1 : outage.stop + 61]
    for hour in (hour_before, hour_after):
        assert not np.isnan(hour).any()
        assert hour.sum() > 0
    assert math.isnan(at(nasa, datetime(1995, 7, 30, 12, tzinfo=EDT)))
    assert at(nasa, datetime(1995, 7, 28, 13, 0, tzinfo=EDT)) > 0
    assert at(nasa, datetime(1995, 8, 1, 0, 5, tzinfo=EDT)) > 0


@needs_raw
def test_qps_sums_containers_on_their_57_s_clock() -> None:
    """The Alibaba qps file is summed per 57 s tick and averaged onto a 60 s grid."""
    qps = raw("alibaba_genai_2026/qps.tar.gz")
    assert qps.step == 60
    assert qps.start == 1662859176.0
    assert not np.isnan(qps.rates).any()
    assert requests(qps) == pytest.approx(3526.455 * 57, rel=1e-3)


def test_bundled_default_is_14_days_of_relative_servegen_load() -> None:
    """The bundled default is 14 days at 600 s, peaks at 1.0 and keeps its NaN gaps."""
    trace = load_trace("default")
    assert trace.name == "servegen-m-mid"
    assert trace.step == 600
    assert trace.duration == 14 * 86400
    assert np.nanmax(trace.rates) == 1.0
    assert int(np.isnan(trace.rates).sum()) == 102
    assert "Apache-2.0" in trace.source
    assert "f891d118" in trace.source


def test_bundled_default_gaps_are_filled_by_interpolation() -> None:
    """fill_gaps() removes every NaN of the default trace by linear interpolation."""
    trace = load_trace("default")
    filled = trace.fill_gaps()
    assert not np.isnan(filled.rates).any()
    gaps = np.flatnonzero(np.isnan(trace.rates))
    first, last = gaps[0], gaps[0]
    while last + 1 in gaps:
        last += 1
    before, after = trace.rates[first - 1], trace.rates[last + 1]
    expected = np.linspace(before, after, last - first + 3)[1:-1]
    np.testing.assert_allclose(filled.rates[first : last + 1], expected)
    valid = ~np.isnan(trace.rates)
    np.testing.assert_array_equal(filled.rates[valid], trace.rates[valid])


def test_every_bundled_trace_loads_with_attribution() -> None:
    """Every bundled name loads, has a source line, and is listed with the default alias."""
    names = list_bundled()
    assert {"default", "servegen-m-mid", "servegen-m-small"} <= set(names)
    for name in names:
        trace = load_trace(name)
        assert np.nanmax(trace.rates) == 1.0
        assert trace.source
        assert (BUNDLED_DIR / f"{trace.name}.csv").stat().st_size < 200_000
    small = load_trace("servegen-m-small")
    assert (small.duration, int(np.isnan(small.rates).sum())) == (14 * 86400, 37)


@needs_raw
def test_bundled_files_are_reproducible_from_raw(tmp_path: Path) -> None:
    """scripts/make_bundled_traces.py rewrites the bundled files byte for byte."""
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_bundled_traces.py"),
            "--raw-dir",
            str(RAW),
            "--out-dir",
            str(tmp_path),
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    written = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert written == sorted(p.name for p in BUNDLED_DIR.glob("*.csv"))
    for name in written:
        assert (tmp_path / name).read_bytes() == (BUNDLED_DIR / name).read_bytes(), name


@needs_raw
def test_bundled_default_matches_raw_servegen() -> None:
    """The bundled default equals the raw m-mid trace normalised to peak 1.0, to rounding."""
    bundled = load_trace("default")
    expected = raw("alibaba_servegen/language/m-mid").rescale_peak(1.0)
    assert bundled.start == expected.start
    np.testing.assert_allclose(bundled.rates, expected.rates, rtol=1e-4)


@pytest.mark.parametrize("step", [60.0, 120.0, 450.0, 3600.0, 7200.0])
def test_resample_preserves_mean_rate(step: float) -> None:
    """Resampling a gap-free trace up or down keeps its mean rate within 1 %."""
    trace = load_trace("default").fill_gaps()
    resampled = trace.resample(step)
    assert resampled.step == step
    assert resampled.start == trace.start
    assert resampled.duration == pytest.approx(trace.duration, abs=step)
    assert np.mean(resampled.rates) == pytest.approx(np.mean(trace.rates), rel=0.01)


def test_resample_finer_is_piecewise_linear_between_bin_centres() -> None:
    """Upsampling interpolates between old bin centres instead of repeating each value."""
    fine = make_trace([0.0, 6.0, 6.0], step=60).resample(20)
    np.testing.assert_allclose(fine.rates, [0, 0, 2, 4, 6, 6, 6, 6, 6])


def test_resample_coarser_averages_and_respects_gaps() -> None:
    """Downsampling takes bin means over data and is NaN where less than half has data."""
    coarse = make_trace([1, 3, np.nan, 5, np.nan, np.nan, 2, 4]).resample(120)
    np.testing.assert_allclose(coarse.rates, [2, 5, np.nan, 3])
    assert np.isnan(make_trace([1.0, np.nan, 3.0]).resample(20).rates[3:6]).all()


@settings(max_examples=50, deadline=None)
@given(
    rates=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=60),
    factor=st.integers(1, 7),
)
def test_integer_coarsening_preserves_request_count(rates: list[float], factor: int) -> None:
    """Coarsening by a whole factor keeps the total request count exactly (to rounding)."""
    trace = make_trace(rates, step=10)
    coarse = trace.resample(10.0 * factor)
    if len(rates) % factor == 0:
        assert requests(coarse) == pytest.approx(requests(trace), rel=1e-9, abs=1e-6)
    assert coarse.rates.size == math.ceil(len(rates) / factor)


def test_fill_gaps_edges_take_nearest_value() -> None:
    """NaN runs at either end take the nearest valid value; inner runs are interpolated."""
    filled = make_trace([np.nan, 2, np.nan, np.nan, 5, np.nan]).fill_gaps()
    np.testing.assert_allclose(filled.rates, [2, 2, 3, 4, 5, 5])
    with pytest.raises(ValueError, match="all gaps"):
        make_trace([np.nan, np.nan]).fill_gaps()


def test_rescale_peak_and_slice() -> None:
    """rescale_peak sets the nanmax; slice cuts whole bins and moves the start."""
    trace = make_trace([1, np.nan, 4, 2])
    scaled = trace.rescale_peak(10)
    np.testing.assert_allclose(scaled.rates, [2.5, np.nan, 10, 5])
    cut = trace.slice(60, 120)
    assert cut.start == trace.start + 60
    np.testing.assert_array_equal(cut.rates, [np.nan, 4])
    with pytest.raises(ValueError, match="outside"):
        trace.slice(120, 180)
    with pytest.raises(ValueError, match="no positive rate"):
        make_trace([0.0, np.nan]).rescale_peak(1)


def test_load_trace_rejects_invalid_traces() -> None:
    """LoadTrace refuses negative or infinite rates and a non-positive step."""
    with pytest.raises(ValueError, match="non-negative"):
        make_trace([1, -1])
    with pytest.raises(ValueError, match="non-negative"):
        make_trace([1, np.inf])
    with pytest.raises(ValueError, match="step"):
        make_trace([1], step=0)
    with pytest.raises(ValueError, match="step"):
        load_trace("default", step=-5)


def test_simple_csv_round_trips(tmp_path: Path) -> None:
    """save_trace then load_trace gives back the same grid, rates, gaps, name and source."""
    trace = LoadTrace(
        name="mine",
        start=1_700_000_123.25,
        step=30.0,
        rates=np.array([0.1, np.nan, 2.0 / 3.0, 0.0, 1e-7, 123456.789]),
        source="my cluster, 2024 (CC0)",
    )
    path = tmp_path / "other.csv"
    save_trace(trace, path, comments=["exported from Prometheus"])
    loaded = load_trace(path)
    assert (loaded.name, loaded.source, loaded.start) == (trace.name, trace.source, trace.start)
    assert loaded.step == pytest.approx(trace.step, rel=1e-12)
    np.testing.assert_array_equal(loaded.rates, trace.rates)
    assert path.read_text().splitlines()[3] == CSV_HEADER


def test_simple_csv_handwritten_with_gaps_and_left_out_rows(tmp_path: Path) -> None:
    """A hand-written CSV reads empty, 'nan' and left-out rows as gaps, and resamples on load."""
    path = tmp_path / "load.csv"
    path.write_text("timestamp_seconds, requests_per_second\n0,1\n60,\n120,NaN\n240,4\n300,5\n")
    trace = load_trace(path)
    assert (trace.name, trace.start, trace.step) == ("load", 0.0, 60.0)
    np.testing.assert_array_equal(trace.rates, [1, np.nan, np.nan, np.nan, 4, 5])
    np.testing.assert_allclose(load_trace(path, step=120).rates, [1, np.nan, 4.5])


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("0,1\n60,abc\n", 3, "not a number"),
        ("0,1\n60,1,2\n", 3, "expected 2 fields"),
        ("0,1\n60\n", 3, "expected 2 fields"),
        ("0,1\n60,-2\n", 3, ">= 0"),
        ("0,1\n60,inf\n", 3, "finite"),
        ("0,1\n60,1\n60,1\n", 4, "not after"),
        ("0,1\n60,1\n150,1\n", 4, "grid"),
    ],
)
def test_malformed_simple_csv_names_file_and_line(tmp_path: Path, body: str, line: int, reason: str) -> None:
    """A malformed row raises a ValueError that names the file, the line and the problem."""
    path = tmp_path / "bad.csv"
    path.write_text(f"{CSV_HEADER}\n{body}")
    with pytest.raises(ValueError, match=reason) as caught:
        load_trace(path)
    assert str(caught.value).startswith(f"{path}, line {line}: ")
    assert isinstance(caught.value, TraceFormatError)
    assert isinstance(caught.value, AutoscalerError)


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1,1\nx\n", 3),
        ("az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nnot-a-date,1,1\n", 2),
        ("trace.jsonl", '{"timestamp": 0}\n{"input_length": 5}\n', 2),
        ("trace.jsonl", '{"timestamp": 0}\n{"timestamp": 1\n', 2),
        ("qps.csv", "timestamp_anon,value,container_ip,request_type\n1.0,x,a,b\n", 2),
        ("workload.txt", "1 2 3\n4 -5 6\n", 2),
        ("workload.txt", "1 2 3\n4 5.5 6\n", 2),
    ],
)
def test_malformed_raw_formats_raise_value_error_with_line(tmp_path: Path, name: str, content: str, line: int) -> None:
    """Malformed rows of the raw formats raise our ValueError naming the line, never IndexError."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TraceFormatError, match=f"line {line}: "):
        load_trace(path)


def test_servegen_directory_errors(tmp_path: Path) -> None:
    """A ServeGen directory sums its clients, and a bad row names its file and line."""
    (tmp_path / "chunk-0-trace.csv").write_text("0,1,0,,0,0\n600,0,0,,0,0\n1200,2,1,,0,0\n")
    (tmp_path / "chunk-1-trace.csv").write_text("0,2,0,,0,0\n600,0,0,,0,0\n1200,0,1,,0,0\n")
    trace = load_trace(tmp_path)
    np.testing.assert_array_equal(trace.rates, [3, np.nan, 2])
    (tmp_path / "chunk-2-trace.csv").write_text("0,1,0,,0,0\n650,1,0,,0,0\n")
    with pytest.raises(TraceFormatError, match=r"chunk-2-trace.csv, line 2: .*multiple of 600"):
        load_trace(tmp_path)


def test_unknown_inputs_are_reported(tmp_path: Path) -> None:
    """Unknown names raise FileNotFoundError and unknown file formats a ValueError."""
    with pytest.raises(FileNotFoundError, match="default"):
        load_trace("no-such-trace")
    path = tmp_path / "chunk-3-trace.csv"
    path.write_text("0,1,0,,0,0\n")
    with pytest.raises(ValueError, match="model directory"):
        load_trace(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no ServeGen"):
        load_trace(empty)
