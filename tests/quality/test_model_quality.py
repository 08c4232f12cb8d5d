"""The model-quality report (`lpm bench quality`): goals read off bench rows, and the audio-dropped ablation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quality.bench.cases import CaseSet
from quality.bench.modelquality import FACE_MISSING_DISTANCE, quality_report
from quality.bench.runner import BenchResult
from quality.bench.systems import BaseLPMSystem
from tests.quality.bench_factory import bench_cases  # noqa: F401  (session fixture)


def _row(system: str, case: str, subset: str, conf: float | None, offset: int | None, dist: float | None,
         drift: float | None = None) -> dict[str, Any]:
    return {"system": system, "case_id": case, "subset": subset, "sync": conf, "sync.sync_confidence": conf,
            "sync.sync_offset_frames": offset, "identity.identity_distance_mean": dist,
            "features.face_coverage": 0.0 if dist is None else 1.0, "identity.identity_drift_per_min": drift}


def _result(rows: list[dict[str, Any]], names: list[str], cases: CaseSet) -> BenchResult:
    return BenchResult(cases, rows, {n: {"label": n} for n in names})


def _rows(base: tuple[float, int, float], ablation: float, online: tuple[float, float],
          drift: float | None = None) -> list[dict[str, Any]]:
    rows = []
    for case, subset, speaks in (("s1", "speaking", True), ("s2", "speaking", True), ("l1", "listening", False)):
        rows.append(_row("ground_truth", case, subset, 0.8 if speaks else None, 0 if speaks else None, 0.3))
        rows.append(_row("base", case, subset, base[0] if speaks else None, base[1] if speaks else None, base[2]))
        rows.append(_row("base-noaudio", case, subset, ablation if speaks else None, 7 if speaks else None, base[2]))
        rows.append(_row("online", case, subset, online[0] if speaks else None, 0 if speaks else None, online[1]))
    if drift is not None:
        rows.append(_row("online", "long", "long_form", 0.5, 0, 0.4, drift))
    return rows


NAMES = ["ground_truth", "base", "base-noaudio", "online"]


def test_goals_pass_when_base_syncs_and_online_keeps_up(bench_cases: CaseSet) -> None:  # noqa: F811
    report = quality_report(_result(_rows((0.6, 1, 0.4), 0.2, (0.57, 0.42), drift=0.001), NAMES, bench_cases))
    base = report.systems["base"]
    assert base.sync_cases == 2 and base.sync_vs_truth == pytest.approx(0.75) and base.offset_median_abs == 1
    assert base.identity_cases == 3 and base.identity_distance == pytest.approx(0.4)
    assert report.systems["ground_truth"].sync_vs_truth == pytest.approx(1.0)
    assert report.systems["online"].identity_drift_per_min == pytest.approx(0.001)
    assert [g.passed for g in report.goals] == [True] * 7 and report.passed
    text = report.format()
    assert "overall: PASS (7/7 goals)" in text and "audio-dropped ablation" in text


def test_each_goal_fails_on_its_own_evidence(bench_cases: CaseSet) -> None:  # noqa: F811
    # weak lip-sync off by 3 frames, an ablation as good as the model, online lagging, a drifting face
    report = quality_report(_result(_rows((0.3, 3, 0.55), 0.3, (0.2, 0.7), drift=0.02), NAMES, bench_cases))
    assert not report.passed and not any(g.passed for g in report.goals)
    assert {g.name.split()[0] for g in report.goals} == {"Base", "audio-dropped", "Online"}


def test_a_missing_face_counts_as_a_different_person(bench_cases: CaseSet) -> None:  # noqa: F811
    rows = _rows((0.6, 0, 0.4), 0.1, (0.6, 0.4))
    rows = [dict(r, **{"identity.identity_distance_mean": None, "sync.sync_confidence": None,
                       "features.face_coverage": 0.0})
            if r["system"] == "online" else r for r in rows]
    report = quality_report(_result(rows, NAMES, bench_cases))
    online = report.systems["online"]
    assert online.identity_distance == FACE_MISSING_DISTANCE and online.sync_confidence == 0.0
    assert online.face_coverage == 0.0 and not report.passed
    ratio = next(g for g in report.goals if g.name.startswith("Online identity"))
    assert ratio.value is None and not ratio.passed  # a faceless video is not "within 10 %" of anything


def test_lip_sync_is_judged_where_ground_truth_speaks(bench_cases: CaseSet) -> None:  # noqa: F811
    rows = _rows((0.6, 0, 0.4), 0.1, (0.6, 0.4))
    # a listening case whose truth still has a (weak) raw confidence but no sync score: not a lip-sync case
    rows = [dict(r, **{"sync.sync_confidence": 0.1}) if r["case_id"] == "l1" else r for r in rows]
    report = quality_report(_result(rows, NAMES, bench_cases))
    assert report.systems["ground_truth"].sync_cases == 2
    assert report.systems["ground_truth"].sync_confidence == pytest.approx(0.8)


def test_ground_truth_is_required(bench_cases: CaseSet) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="ground-truth"):
        quality_report(_result(_rows((0.6, 0, 0.4), 0.1, (0.6, 0.4)), NAMES[1:], bench_cases))


def test_audio_dropped_ablation_ignores_the_audio_and_shares_the_model(bench_cases: CaseSet,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    import torch

    from lpm_models.base.model import BaseLPM
    from lpm_models.configs import get_preset
    from lpm_models.vae.model import VideoVAE

    torch.manual_seed(0)
    cfg = get_preset("tiny", height=64, width=64)
    model = BaseLPM(cfg)
    with torch.no_grad():  # untrained output layers are zero-initialised: give every condition a path to the output
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    base = BaseLPMSystem(model, VideoVAE(cfg.vae), label="Base", steps=1)
    ablation = base.audio_dropped()
    assert ablation.name == "base-noaudio" and ablation.model is base.model and "audio dropped" in ablation.label
    assert ablation._text is base._text is not None  # one text encoder for both, loaded once
    case = bench_cases.select(["speaking"]).cases[0]
    arrays = dict(case._load())
    loud = replace(case, _arrays=arrays | {"speak": np.roll(arrays["speak"], 4000) * 3.0})
    with_audio = [base.generate(c).frames for c in (case, loud)]
    without = [ablation.generate(c).frames for c in (case, loud)]
    assert not np.array_equal(with_audio[0], with_audio[1])  # Base hears the audio
    assert np.array_equal(without[0], without[1])  # the ablation does not


def test_base_guidance_option_reaches_the_sampler_and_the_ablation(bench_cases: CaseSet) -> None:  # noqa: F811
    import argparse

    import torch

    from lpm_models.base.model import BaseLPM
    from lpm_models.configs import get_preset
    from lpm_models.vae.model import VideoVAE
    from orchestration.cli.bench import guidance_pair

    assert guidance_pair("1,2.5") == (1.0, 2.5)
    for bad in ("1", "a,b", "-1,1"):
        with pytest.raises(argparse.ArgumentTypeError):
            guidance_pair(bad)
    torch.manual_seed(0)
    cfg = get_preset("tiny", height=64, width=64)
    model = BaseLPM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    vae = VideoVAE(cfg.vae)
    preset = BaseLPMSystem(model, vae, steps=1)
    plain = BaseLPMSystem(model, vae, steps=1, guidance=(1.0, 1.0), text_encoder=preset._text_encoder())
    assert plain.audio_dropped().guidance == (1.0, 1.0)
    case = bench_cases.select(["speaking"]).cases[0]
    assert not np.array_equal(preset.generate(case).frames, plain.generate(case).frames)  # (3, 2.5) vs none


def test_vae_reconstruction_codes_the_whole_truth_in_valid_segments(bench_cases: CaseSet) -> None:  # noqa: F811
    import cv2
    import torch

    from lpm_models.configs import get_preset
    from lpm_models.online.engine import frames_to_uint8, image_to_tensor
    from lpm_models.online.vae_stream import StreamingDecoder
    from lpm_models.vae.model import VideoVAE
    from quality.bench.features import VideoSource
    from quality.bench.systems import VAEReconstructionSystem

    torch.manual_seed(0)
    cfg = get_preset("tiny", height=64, width=64)
    vae = VideoVAE(cfg.vae)
    tc = vae.temporal_factor
    pieces = VAEReconstructionSystem(vae, (64, 64), segment_latents=3)
    for total in (1, 2, 5, 6, 25, 26):  # segments of 1 + tc * k frames partition every length
        spans = pieces.segments(total)
        assert spans[0][0] == 0 and spans[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all((end - start - 1) % tc == 0 and end - start <= 1 + tc * 2 for start, end in spans)
    case = bench_cases.select(["speaking"]).cases[0]
    whole = VAEReconstructionSystem(vae, (64, 64), segment_latents=64).generate(case).frames
    short = pieces.generate(case).frames
    for frames in (whole, short):
        assert frames.shape == (case.n_frames, *case.reference_image.shape[:2], 3) and frames.dtype == np.uint8
    # segments are coded independently: the frames of a later segment equal that segment coded alone
    start, end = pieces.segments(case.n_frames)[1]
    truth = [rgb for _, rgb in VideoSource.of(case.truth_video).frames(start, end)]
    with torch.inference_mode():
        decoder = StreamingDecoder(vae)
        decoded, _ = decoder.decode(vae.encode(torch.cat([image_to_tensor(f, (64, 64), "cpu") for f in truth])[None]),
                                    decoder.init_state())
    expected = np.stack([cv2.resize(f, case.reference_image.shape[1::-1], interpolation=cv2.INTER_AREA)
                         for f in frames_to_uint8(decoded[0])])
    assert np.abs(short[start:end].astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="segment_latents"):
        VAEReconstructionSystem(vae, (64, 64), segment_latents=0)
