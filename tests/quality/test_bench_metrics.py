"""LPM-Bench metrics validated on ground truth: the corpus performance scores well, each degradation
scores measurably worse on the dimension it breaks.

One 8-second synthetic conversation (fixed seed) is generated per module; the person with the most
balanced speaking / listening time becomes the case (with a prompted action planted every 2 s). Its ground-truth video and four
degraded variants are encoded to MP4 and evaluated once; the tests read those results.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from quality.bench.case import LISTEN, SPEAK, BenchTruth, CaseAudio, Prompt
from quality.bench.evaluate import BenchConfig, evaluate_video
from quality.bench.features import FaceFeatures, VideoSource, extract_features
from quality.bench.groundtruth import load_cases
from quality.bench.stats import GaussianStats, correlation, frechet_distance, frechet_of
from quality.bench.validate import CaseEvaluation, evaluate_case, format_table, prepare, summarise
from quality.bench.weights import BenchWeights

log = logging.getLogger(__name__)

VARIANTS = ("audio_shift", "identity_swap", "frozen", "prompts_ignored")
SHIFT = 8  # frames the audio_shift variant delays the audio


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> CaseEvaluation:
    from lpm_models.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (needed to synthesise the corpus)")
    base = tmp_path_factory.getbasetemp() / "bench-metrics"
    root, bank = prepare(base, n_conversations=1, duration_s=8.0, seed=3)
    cases = list(load_cases(root, bank, prompt_every_s=2.0, seed=3))
    case = max(cases, key=lambda c: min(int(np.sum(c.labels == SPEAK)), int(np.sum(c.labels == LISTEN))))
    work = tmp_path_factory.mktemp("bench-videos")
    result = evaluate_case(case, bank, work, VARIANTS)
    log.info("\n%s", format_table(summarise({case.case_id: result.results}), 1))
    return result


def metric(run: CaseEvaluation, variant: str, dimension: str, name: str) -> float:
    return float(run.results[variant][dimension][name])


def test_ground_truth_scores_well_on_every_dimension(run: CaseEvaluation) -> None:
    gt = run.results["ground_truth"]
    assert gt["features"]["face_coverage"] == 1.0
    assert gt["sync"]["sync_r_at_zero"] > 0.8 and gt["sync"]["sync_offset_frames"] == 0
    assert gt["identity"]["identity_distance_mean"] < 0.4 and gt["identity"]["identity_fail_fraction"] == 0.0
    assert gt["motion"]["motion_fd"] < 1.0 and gt["motion"]["still_fraction"] < 0.1
    assert gt["motion"]["motion_diversity_ratio"] == pytest.approx(1.0, abs=0.2)
    assert gt["text_control"]["prompts"] >= 3
    assert gt["text_control"]["text_recall"] >= 0.75 and gt["text_control"]["text_precision"] >= 0.75
    assert gt["visual"]["psnr"] > 32.0 and gt["visual"]["ssim"] > 0.95
    assert set(gt["headline"]) == {"sync", "identity", "motion", "text_control", "visual"}


def test_shifted_audio_moves_the_sync_offset(run: CaseEvaluation) -> None:
    shifted = run.results["audio_shift"]["sync"]
    assert SHIFT - 1 <= shifted["sync_offset_frames"] <= SHIFT + 1  # the audio lags the picture
    assert shifted["sync_r_at_zero"] < metric(run, "ground_truth", "sync", "sync_r_at_zero") - 0.5
    assert shifted["sync_confidence"] > 0.7  # the lips still follow the speech, only late


def test_swapped_identity_is_beyond_the_threshold(run: CaseEvaluation) -> None:
    swapped = run.results["identity_swap"]["identity"]
    assert swapped["identity_distance_mean"] > 0.6
    assert swapped["identity_distance_mean"] > metric(run, "ground_truth", "identity", "identity_distance_mean") + 0.3
    assert swapped["identity_fail_fraction"] > 0.5
    assert metric(run, "identity_swap", "sync", "sync_r_at_zero") > 0.6  # only the face changed


def test_frozen_character_scores_badly(run: CaseEvaluation) -> None:
    gt, frozen = run.results["ground_truth"], run.results["frozen"]
    assert frozen["motion"]["motion_fd"] > gt["motion"]["motion_fd"] + 3.0
    assert frozen["motion"]["motion_diversity"] < 0.3 * gt["motion"]["motion_diversity"]
    assert frozen["motion"]["still_fraction"] > 0.9
    assert gt["motion"]["listen_s"] >= 1.0
    assert frozen["motion"]["listen_paired_fd"] > gt["motion"]["listen_paired_fd"] + 2.0
    assert frozen["motion"]["listen_rpcc"] > gt["motion"]["listen_rpcc"]
    assert frozen["sync"]["sync_r_at_zero"] == 0.0 and frozen["sync"]["detail"] == "mouth still while speaking"
    assert frozen["text_control"]["text_recall"] == 0.0
    assert frozen["visual"]["psnr"] < gt["visual"]["psnr"] - 5.0


def test_ignored_prompts_lower_recall(run: CaseEvaluation) -> None:
    gt, ignored = run.results["ground_truth"], run.results["prompts_ignored"]
    assert ignored["text_control"]["text_recall"] <= gt["text_control"]["text_recall"] - 0.5
    assert ignored["text_control"]["text_f1"] < gt["text_control"]["text_f1"]
    assert ignored["identity"]["identity_fail_fraction"] == 0.0  # the same person, just no actions


def test_evaluate_video_takes_frames_and_audio(run: CaseEvaluation) -> None:
    """In-memory frames + audio give the same verdict as the file path (on a 3 s excerpt)."""
    frames = run.truth.frames
    assert frames is not None and frames.array is not None
    n = 75
    audio = CaseAudio(run.case.audio.speak[:n * 640], run.case.audio.listen[:n * 640], 16000)  # type: ignore[index]
    prompts = [p for p in run.case.prompts if p.end_frame <= n]
    result = evaluate_video(frames.array[:n], run.case.reference_image, audio=audio, fps=25,
                            truth=BenchTruth(labels=run.case.labels[:n]), prompts=prompts)
    assert result["features"]["frames"] == n and result["features"]["face_coverage"] == 1.0
    assert result["identity"]["identity_fail_fraction"] == 0.0
    assert "motion_fd" not in result["motion"]  # no reference performance given: no distribution metric
    assert result["visual"] == {}


def test_features_round_trip(run: CaseEvaluation, tmp_path: Path) -> None:
    features = run.features["ground_truth"]
    features.save(tmp_path / "f.npz")
    loaded = FaceFeatures.load(tmp_path / "f.npz")
    assert loaded.n_frames == features.n_frames and loaded.track is not None and features.track is not None
    np.testing.assert_array_equal(loaded.track.landmarks, features.track.landmarks)
    np.testing.assert_array_equal(loaded.embeddings, features.embeddings)
    again = evaluate_video(run.videos["ground_truth"], run.case.reference_image, audio=run.case.audio,
                           truth=run.truth, prompts=run.case.prompts, features=loaded)
    assert again["headline"] == run.results["ground_truth"]["headline"]


def test_missing_weights_fail_with_a_clear_message(run: CaseEvaluation, tmp_path: Path) -> None:
    cfg = BenchConfig(weights=BenchWeights(syncnet=tmp_path / "syncnet_v2.model"))
    with pytest.raises(FileNotFoundError, match="SyncNet weights file .*syncnet_v2.model does not exist"):
        evaluate_video(run.videos["ground_truth"], run.case.reference_image, audio=run.case.audio,
                       cfg=cfg, features=run.features["ground_truth"])
    cfg = BenchConfig(weights=BenchWeights(inception=tmp_path / "inception.pt"))
    with pytest.raises(ValueError, match="ground-truth frames"):
        evaluate_video(run.videos["ground_truth"], run.case.reference_image, audio=run.case.audio,
                       cfg=cfg, features=run.features["ground_truth"])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="fps"):
        VideoSource.of(np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(FileNotFoundError):
        VideoSource.of("no-such-video.mp4")
    with pytest.raises(ValueError, match="unknown prompted action"):
        Prompt("wave", 0, 10)
    with pytest.raises(ValueError, match="no face"):
        extract_features(np.full((10, 64, 64, 3), 128, np.uint8), fps=25).signals()


def test_frechet_distance_and_correlation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    assert frechet_of(x, x) == pytest.approx(0.0, abs=1e-9)
    a = GaussianStats(np.zeros(1), np.eye(1), 2)
    b = GaussianStats(np.ones(1), 4 * np.eye(1), 2)
    assert frechet_distance(a, b) == pytest.approx(1.0 + 1.0 + 4.0 - 2.0 * 2.0)
    still = GaussianStats(np.zeros(3), np.zeros((3, 3)), 2)
    assert frechet_distance(still, GaussianStats.of(x)) == pytest.approx(3.0, rel=0.1)  # frozen: the variance
    assert correlation(np.arange(5.0), np.arange(5.0) * 2) == pytest.approx(1.0)
    assert correlation(np.ones(5), np.arange(5.0)) == 0.0
