"""Model benchmarks: figures and verdicts, table, RSS slope, FSDP2 shard counts, throughput windows;
a slow smoke run of each bench with the smallest settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lpm_models.base.bench import sharded_numel, window_rates
from lpm_models.bench_report import Figure, current_rss_mb, failed, format_table, slope


def test_figure_verdicts_follow_direction_and_target() -> None:
    assert Figure("rtf", 1.6, target=1.5, direction=">=").ok is True
    assert Figure("rtf", 1.4, target=1.5, direction=">=").ok is False
    assert Figure("ttff", 0.9, target=1.0, direction="<=").ok is True
    assert Figure("ttff", 1.2, target=1.0, direction="<=").ok is False
    assert Figure("rss", 300.0).ok is None
    assert Figure("rtf", math.nan, target=1.5).ok is False
    with pytest.raises(ValueError, match="direction"):
        Figure("x", 1.0, direction="==")


def test_failed_lists_only_missed_targets() -> None:
    figs = [Figure("a", 2.0, target=1.5), Figure("b", 1.0, target=1.5), Figure("c", 5.0)]
    assert [f.name for f in failed(figs)] == ["b"]


def test_table_has_header_rows_and_verdicts() -> None:
    text = format_table([Figure("real-time factor", 1.634567, "x", 2.5, 1.5), Figure("RSS", 812.0, "MB")],
                        title="bench")
    lines = text.splitlines()
    assert lines[0] == "bench" and lines[1].split() == ["figure", "wall", "cpu", "unit", "target", "verdict"]
    assert set(lines[2]) <= {"-", " "}
    assert "1.635" in lines[3] and "2.5" in lines[3] and ">= 1.5" in lines[3]
    assert lines[3].endswith("ok") and lines[4].split()[-3:] == ["-", "MB", "-"] and len(lines) == 5
    assert format_table([Figure("b", 1.0, target=2.0)]).splitlines()[-1].endswith("FAIL")


def test_slope_is_least_squares_and_zero_for_flat_or_short_series() -> None:
    assert slope([0.0, 1.0, 2.0, 3.0], [100.0, 102.0, 104.0, 106.0]) == pytest.approx(2.0)
    assert slope([0.0, 1.0, 2.0], [5.0, 5.0, 5.0]) == 0.0
    assert slope([1.0], [9.0]) == 0.0 and slope([2.0, 2.0], [1.0, 3.0]) == 0.0
    assert slope([0.0, 1.0, 2.0, 3.0], [10.0, 12.0, 11.0, 13.0]) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="length"):
        slope([0.0, 1.0], [1.0])


def test_current_rss_is_positive() -> None:
    assert 1.0 < current_rss_mb() < 1e6


def test_sharded_numel_follows_dim0_chunking() -> None:
    assert sharded_numel([(10, 3)], 2) == [15, 15]
    assert sharded_numel([(5, 4), (3,)], 2) == [12 + 2, 8 + 1]
    assert sharded_numel([(1, 8)], 2) == [8, 0]  # one row: the second rank holds nothing
    assert sharded_numel([(7, 2), ()], 1) == [15]
    shapes = [(33, 5), (4,), (9, 2, 2)]
    assert sum(sharded_numel(shapes, 3)) == sum(math.prod(s) for s in shapes)


def _progress(step: int, t: float, cpu: float) -> dict[str, object]:
    return {"event": "progress", "step": step, "time": t, "cpu_s": cpu, "samples_per_s": 4.0, "tokens_per_s": 400.0}


def test_window_rates_measure_between_warmup_and_last_event() -> None:
    events = [{"event": "start"}, _progress(2, 100.0, 10.0), _progress(3, 101.0, 11.0), _progress(6, 104.0, 13.0),
              {"event": "done"}]
    r = window_rates(events, start_step=3, samples_per_step=4, world_size=2)
    assert r["steps"] == 3 and r["samples_per_s"] == pytest.approx(12 / 3)
    assert r["samples_per_cpu_s"] == pytest.approx(12 / (2 * 2)) and r["tokens_per_sample"] == pytest.approx(100.0)
    with pytest.raises(RuntimeError, match="no progress events"):
        window_rates(events, start_step=6, samples_per_step=4, world_size=2)


@pytest.mark.slow
def test_stream_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from lpm_models.online.bench import main

    assert main(["--untrained", "--seconds", "0.3", "--long-minutes", "0.02", "--rss-every", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("real-time factor", "time to first frame", "online cheaper than base", "RSS slope"):
        assert name in out


@pytest.mark.slow
def test_train_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lpm_models.base.bench import main

    assert main(["--steps", "2", "--warmup", "2", "--batch", "1", "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fsdp2 x2 rank 1 peak RSS" in out and "single samples/s" in out and "fsdp2 x2 / single" in out


def test_lpm_model_bench_commands_pass_every_argument_through() -> None:
    from orchestration.cli import build_parser

    argv = ["model", "bench-stream", "--untrained", "--seconds", "1", "--check"]
    args = build_parser(argv).parse_args(argv)
    assert args.bench_module == "lpm_models.online.bench" and args.bench_args == argv[2:]
    argv = ["model", "bench-train", "--help"]
    args = build_parser(argv).parse_args(argv)
    assert args.bench_module == "lpm_models.base.bench" and args.bench_args == ["--help"]
