"""End to end: the synthetic corpus with real rendered faces, MP4s, sidecars and the CLI."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from lpm_models.data.synth.corpus import CorpusConfig, generate_corpus, plan_corpus, read_manifest
from lpm_models.data.synth.identities import IdentityBank
from lpm_models.data.synth.speech import espeak_available
from lpm_models.data.synth.truth import read_truth, read_voice_tracks
from orchestration.cli import main as lpm_main

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")

SIZE = 128
CONFIG = CorpusConfig(seed=7, n_conversations=2, duration_s=4.0, duration_jitter=0.0, size=SIZE,
                      split_fraction=0.5, n_identities=4, workers=1)


@pytest.fixture(scope="module")
def bank_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity-cache")


@pytest.fixture(scope="module")
def bank(bank_cache: Path) -> IdentityBank:
    return IdentityBank.build(n=CONFIG.n_identities, seed=0, cache_dir=bank_cache)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, bank: IdentityBank) -> Path:
    out = tmp_path_factory.mktemp("corpus-a")
    generate_corpus(CONFIG, out, bank=bank)
    return out


def _decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, dict]:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        info = {"fps": video.average_rate, "width": video.width, "height": video.height,
                "rate": audio.rate, "channels": audio.channels}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        pcm = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    return frames, pcm, info


def test_plan_is_deterministic_and_balanced() -> None:
    ids = [f"id{i:02d}" for i in range(6)]
    config = CorpusConfig(seed=3, n_conversations=9, split_fraction=1 / 3, n_identities=6)
    plan = plan_corpus(config, ids)
    assert plan == plan_corpus(config, ids)
    assert plan != plan_corpus(replace(config, seed=4), ids)
    assert sum(s.layout == "split" for s in plan) == 3
    assert all(s.identity_ids[0] != s.identity_ids[1] for s in plan)
    counts = {i: sum(i in s.identity_ids for s in plan) for i in ids}
    assert max(counts.values()) - min(counts.values()) <= 1  # 18 slots over 6 people
    assert all(0.8 * 25 <= s.duration_s <= 1.2 * 25 for s in plan)


def test_manifest_and_files(corpus: Path) -> None:
    manifest = read_manifest(corpus)
    assert [v["layout"] for v in manifest["videos"]].count("split") == 1
    for video in manifest["videos"]:
        raw, truth = corpus / video["raw"], corpus / video["truth"]
        assert raw.parent.name == "raw" and truth.parent.name == "truth"  # sidecars kept apart
        assert hashlib.sha256(raw.read_bytes()).hexdigest() == video["sha256"]
        doc = read_truth(truth)
        assert doc["video_id"] == video["video_id"] and doc["layout"]["name"] == video["layout"]
        assert [p["identity_id"] for p in doc["persons"]] == video["identity_ids"]
        assert len(set(video["identity_ids"])) == 2
        assert doc["persons"][0]["voice"] != doc["persons"][1]["voice"]
        for person in doc["persons"]:
            assert len(person["labels"]) == doc["n_frames"] == video["n_frames"]
            assert len(person["controls"]["jaw_open"]) == doc["n_frames"]
        assert doc["transcript"]
        assert all(0 <= u["start_s"] < u["end_s"] <= doc["duration_s"] for u in doc["transcript"])
        for event in doc["events"]:
            assert 0 <= event["start_frame"] < event["end_frame"] <= doc["n_frames"]
        voices = truth.parent / doc["voice_tracks"]["path"]
        assert hashlib.sha256(voices.read_bytes()).hexdigest() == doc["voice_tracks"]["sha256"]
        tracks, rate = read_voice_tracks(voices)
        assert rate == 16000 and tracks.shape == (2, round(video["duration_s"] * rate))
        _, pcm, _ = _decode(raw)
        mixed = tracks.sum(axis=0)
        assert np.corrcoef(mixed, pcm[: len(mixed)])[0, 1] > 0.95  # the MP4 carries both voices


def test_mp4_streams_match_the_manifest(corpus: Path) -> None:
    for video in read_manifest(corpus)["videos"]:
        frames, pcm, info = _decode(corpus / video["raw"])
        expected_w = 2 * SIZE if video["layout"] == "split" else SIZE
        assert (info["width"], info["height"]) == (expected_w, SIZE) == (video["width"], video["height"])
        assert info["fps"] == 25 and info["rate"] == 16000 and info["channels"] == 1
        assert len(frames) == video["n_frames"] == round(video["duration_s"] * 25)
        assert abs(len(pcm) / 16000 - video["duration_s"]) < 0.1
        assert np.sqrt(np.mean(pcm ** 2)) > 0.01  # people are talking


def test_same_seed_same_corpus(corpus: Path, bank: IdentityBank, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_corpus(CONFIG, again, bank=bank)
    first, second = read_manifest(corpus), read_manifest(again)
    assert first == second  # includes the sha256 of every MP4 and sidecar
    for video in first["videos"]:
        _, pcm_a, _ = _decode(corpus / video["raw"])
        _, pcm_b, _ = _decode(again / video["raw"])
        np.testing.assert_array_equal(pcm_a, pcm_b)
    other = tmp_path / "other"
    generate_corpus(replace(CONFIG, seed=8, n_conversations=1), other, bank=bank)
    assert read_manifest(other)["videos"][0]["truth_sha256"] != first["videos"][0]["truth_sha256"]


def test_faces_are_where_the_sidecar_says(corpus: Path) -> None:
    import mediapipe as mp

    manifest = read_manifest(corpus)
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as det:
        for video in manifest["videos"]:
            doc = read_truth(corpus / video["truth"])
            boxes = [p["bbox"] for p in doc["persons"] if p["on_screen"]]
            frames, _, _ = _decode(corpus / video["raw"])
            for frame in frames[:: max(1, len(frames) // 8)]:
                found = det.process(frame).detections or []
                h, w = frame.shape[:2]
                rects = [d.location_data.relative_bounding_box for d in found]
                centres = [((r.xmin + r.width / 2) * w, (r.ymin + r.height / 2) * h) for r in rects]
                assert len(found) == len(boxes), (video["layout"], len(found))
                for x0, y0, x1, y1 in boxes:
                    assert any(x0 <= cx < x1 and y0 <= cy < y1 for cx, cy in centres)


def _mouth_openings(frames: list[np.ndarray], bbox: list[int]) -> np.ndarray:
    """Inner-lip gap / face height per frame from MediaPipe's face mesh (NaN where no face)."""
    import mediapipe as mp

    x0, y0, x1, y1 = bbox
    out = np.full(len(frames), np.nan)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1) as mesh:
        for i, frame in enumerate(frames):
            result = mesh.process(np.ascontiguousarray(frame[y0:y1, x0:x1]))
            if result.multi_face_landmarks:
                lm = result.multi_face_landmarks[0].landmark
                out[i] = abs(lm[14].y - lm[13].y) / abs(lm[152].y - lm[10].y)
    return out


def test_rendered_mouth_follows_the_planned_jaw(corpus: Path) -> None:
    on_screen = []
    for video in read_manifest(corpus)["videos"]:
        doc = read_truth(corpus / video["truth"])
        on_screen += [(video, p) for p in doc["persons"] if p["on_screen"]]
    video, person = max(on_screen, key=lambda vp: np.std(vp[1]["controls"]["jaw_open"]))
    frames, _, _ = _decode(corpus / video["raw"])
    openings = _mouth_openings(frames, person["bbox"])
    planned = np.array(person["controls"]["jaw_open"])
    found = ~np.isnan(openings)
    assert found.mean() > 0.9 and planned.std() > 0.1
    assert np.corrcoef(openings[found], planned[found])[0, 1] > 0.7
    closed = openings[found & (planned < 0.02)]
    assert closed.size == 0 or np.median(closed) < np.median(openings[found & (planned > 0.4)]) / 2


def test_parallel_workers_give_the_same_corpus(corpus: Path, bank: IdentityBank, tmp_path: Path) -> None:
    out = tmp_path / "parallel"
    generate_corpus(replace(CONFIG, workers=2), out, bank=bank)
    assert read_manifest(out)["videos"] == read_manifest(corpus)["videos"]


def test_cli_help_and_generate(
    bank_cache: Path, bank: IdentityBank, tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    for argv in (["corpus", "--help"], ["corpus", "generate", "--help"], ["corpus", "bench", "--help"],
                 ["corpus", "identities", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            lpm_main(argv)
        assert exit_info.value.code == 0
    assert "--duration" in capsys.readouterr().out
    out = tmp_path / "cli"
    code = lpm_main(["corpus", "generate", "--out", str(out), "--conversations", "1", "--duration", "2",
                     "--size", "64", "--identities", "4", "--workers", "1", "--cache-dir", str(bank_cache)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["size"] == 64 and len(manifest["videos"]) == 1


def test_cli_bench_verdict_follows_the_target(
    bank_cache: Path, bank: IdentityBank, capsys: pytest.CaptureFixture,
) -> None:
    tiny = ["--conversations", "1", "--duration", "2", "--size", "64", "--identities", "4", "--workers", "1",
            "--cache-dir", str(bank_cache)]
    assert lpm_main(["corpus", "bench", *tiny, "--target", "0"]) == 0
    out = capsys.readouterr().out
    assert "throughput:" in out and "render" in out and "encode" in out and "tts" in out
    assert lpm_main(["corpus", "bench", *tiny, "--target", "1e9"]) == 1
    assert "FAIL" in capsys.readouterr().out
