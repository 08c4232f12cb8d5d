"""LPM-Bench runner on two small cases: ground truth, the still baseline and untrained tiny LPMs in process.

The tiny preset runs at 64 px here (the runner resizes every system's frames to the case's 128 px)
so the untrained models stream a 4-second case in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from quality.bench.cases import CaseSet
from quality.bench.compare import compare
from quality.bench.runner import BenchResult, format_markdown, format_table, run_bench, summarise
from quality.bench.scores import DIMENSIONS
from quality.bench.systems import (BaseLPMSystem, GroundTruthSystem, OnlineLPMSystem, StillSystem, active_prompt,
                                   case_caption, fit_frames)
from tests.quality.bench_factory import bench_cases  # noqa: F401  (session fixture)


def untrained(seed: int = 0) -> tuple[object, object, object]:
    from lpm_models.base.model import BaseLPM
    from lpm_models.configs import get_preset
    from lpm_models.online.config import online_preset
    from lpm_models.online.engine import OnlineEngine
    from lpm_models.online.model import OnlineLPM
    from lpm_models.vae.model import VideoVAE

    torch.manual_seed(seed)
    cfg = get_preset("tiny", height=64, width=64)
    base, vae = BaseLPM(cfg).eval(), VideoVAE(cfg.vae).eval()
    engine = OnlineEngine(OnlineLPM.from_base(base, online_preset("tiny")).eval(), vae)
    return base, vae, engine


@pytest.fixture(scope="module")
def result(bench_cases: CaseSet, tmp_path_factory: pytest.TempPathFactory) -> BenchResult:  # noqa: F811
    base, vae, engine = untrained()
    cases = bench_cases.select(["speaking", "listening"])
    systems = [GroundTruthSystem(), StillSystem(), OnlineLPMSystem(engine, label="Online LPM (untrained)"),
               BaseLPMSystem(base, vae, label="Base LPM (untrained)", steps=1)]  # type: ignore[arg-type]
    return run_bench(cases, systems, tmp_path_factory.mktemp("bench-run"))


def test_every_system_scores_every_case(result: BenchResult) -> None:
    assert len(result.rows) == 2 * 4 and result.seconds > 0
    for row in result.rows:
        assert set(DIMENSIONS) <= set(row) and row["case_id"] and row["subset"] in ("speaking", "listening")
        assert all(row[d] is None or 0.0 <= row[d] <= 1.0 for d in DIMENSIONS)
    for (system, case_id), video in result.videos.items():
        assert Path(video).is_file(), (system, case_id)
    online = result.rows_of("online")
    assert all(r["latency.rtf"] > 0 and r["generate_s"] > 0 for r in online)


def test_ground_truth_beats_the_still_image_on_motion_and_sync(result: BenchResult) -> None:
    truth = {r["case_id"]: r for r in result.rows_of("ground_truth")}
    still = {r["case_id"]: r for r in result.rows_of("still")}
    for case_id, gt in truth.items():
        assert gt["motion"] > still[case_id]["motion"] + 0.3
        assert gt["overall"] > still[case_id]["overall"]
        assert still[case_id]["motion.still_fraction"] > 0.9  # H.264 refreshes a few frames
    speaking = next(r for r in truth.values() if r["subset"] == "speaking")
    assert speaking["sync"] > 0.5 and still[speaking["case_id"]]["sync"] == 0.0
    assert speaking["visual"] == pytest.approx(1.0) and speaking["identity"] > 0.3


def test_untrained_models_fall_below_ground_truth(result: BenchResult) -> None:
    summary = summarise(result.rows)
    for system in ("online", "base"):
        assert summary[system]["all"]["overall"] < summary["ground_truth"]["all"]["overall"]
        assert summary[system]["all"]["n"] == 2
    cmp = compare(result.rows_of("online"), result.rows_of("ground_truth"), min_cases=1)
    assert cmp.deltas["overall"].delta < 0


def test_table_lists_every_subset_system_dimension_and_the_time(result: BenchResult) -> None:
    table = format_table(result)
    for text in ("speaking", "listening", "all", "ground truth", "still image", "Online LPM (untrained)",
                 "Base LPM (untrained)", "took", *DIMENSIONS):
        assert text in table
    md = format_markdown(result)
    assert md.count("\n") == 1 + 4 and "| ground truth | 2 |" in md


def test_prompts_and_frame_fitting(bench_cases: CaseSet) -> None:  # noqa: F811
    case = next(c for c in bench_cases.cases if c.subset == "text_motion")
    first = min(case.prompts, key=lambda p: p.start_frame)
    assert active_prompt(case, first.start_frame, first.end_frame) == first.text
    assert active_prompt(case, 0, 1) is None or first.start_frame == 0
    assert first.text in case_caption(case)
    frames = np.zeros((7, 32, 32, 3), np.uint8)
    assert fit_frames(frames, 10, (64, 64)).shape == (10, 64, 64, 3)
    assert fit_frames(frames, 5, (32, 32)).shape == (5, 32, 32, 3)
    with pytest.raises(ValueError, match="no frames"):
        fit_frames(frames[:0], 5, (32, 32))
    with pytest.raises(ValueError, match="no systems"):
        run_bench(bench_cases, [], Path("unused"))
