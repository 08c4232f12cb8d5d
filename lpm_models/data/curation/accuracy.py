"""Benchmark helpers: curation output vs the synthetic corpus' ground-truth sidecars.

Only tests and benchmarks import this module; curation stages never read a sidecar.
A face track is matched to the on-screen person whose layout box holds the track's mean box
centre. Pairing is scored per frame (speak / listen / idle); actions per event, a detection
matching a truth event of the same person and action when their frame intervals, each
widened by ``tolerance`` frames, overlap by at least ``min_overlap`` of the shorter one.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.curation.types import LABELS, ActionEvent, ClipLabels, FaceTrack

log = logging.getLogger(__name__)

TRUTH_CODES = {name: code for code, name in enumerate(LABELS)}  # sidecar label strings -> codes


def read_sidecar(path: Path) -> dict[str, Any]:
    """A ground-truth sidecar document (``lpm-synth-truth/1``)."""
    from lpm_models.data.synth.truth import read_truth

    return read_truth(path)


def person_of_track(track: FaceTrack, truth: dict[str, Any]) -> int | None:
    """The on-screen person whose layout box holds the track's mean face centre (None if none)."""
    cx = float(((track.boxes[:, 0] + track.boxes[:, 2]) / 2).mean())
    cy = float(((track.boxes[:, 1] + track.boxes[:, 3]) / 2).mean())
    for person in truth["persons"]:
        box = person.get("bbox")
        if person.get("on_screen") and box and box[0] <= cx < box[2] and box[1] <= cy < box[3]:
            return int(person["person"])
    return None


def truth_labels(truth: dict[str, Any], person: int, frames: np.ndarray) -> np.ndarray:
    """(N,) uint8 label codes (types.LABELS) of ``person`` at absolute ``frames``."""
    names = truth["persons"][person]["labels"]
    return np.array([TRUTH_CODES[names[int(f)]] for f in frames], dtype=np.uint8)


@dataclass
class PairingScore:
    """Frame-level agreement of pairing labels with the truth, pooled over tracks."""

    frames: int = 0
    correct: int = 0
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((3, 3), dtype=np.int64))  # [truth, predicted]
    per_track: dict[str, float] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.frames, 1)

    def add(self, track_id: str, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Pool one track's (N,) predicted and true label codes."""
        if predicted.shape != truth.shape:
            raise ValueError(f"{track_id}: {predicted.shape} predicted labels vs {truth.shape} true labels")
        np.add.at(self.confusion, (truth.astype(np.int64), predicted.astype(np.int64)), 1)
        self.frames += len(truth)
        self.correct += int((predicted == truth).sum())
        self.per_track[track_id] = float((predicted == truth).mean()) if len(truth) else 1.0

    def to_dict(self) -> dict[str, Any]:
        recall = {name: float(self.confusion[c, c] / max(self.confusion[c].sum(), 1)) for c, name in enumerate(LABELS)}
        return {"accuracy": round(self.accuracy, 4), "frames": self.frames, "recall": recall,
                "confusion": self.confusion.tolist(), "labels": list(LABELS),
                "worst_track": min(self.per_track.items(), key=lambda kv: kv[1], default=None)}


def _widened_overlap(a: tuple[int, int], b: tuple[int, int], tolerance: int) -> float:
    """Overlap of two [start, end) intervals, each widened by ``tolerance``, over the shorter one."""
    a0, a1, b0, b1 = a[0] - tolerance, a[1] + tolerance, b[0] - tolerance, b[1] + tolerance
    inter = max(0, min(a1, b1) - max(a0, b0))
    return inter / max(1, min(a1 - a0, b1 - b0))


@dataclass
class EventScore:
    """Per-action true positives, false positives and false negatives."""

    counts: dict[str, list[int]] = field(default_factory=dict)  # action -> [tp, fp, fn]

    def add(self, action: str, tp: int, fp: int, fn: int) -> None:
        row = self.counts.setdefault(action, [0, 0, 0])
        row[0] += tp
        row[1] += fp
        row[2] += fn

    def totals(self) -> tuple[int, int, int]:
        rows = np.array(list(self.counts.values()) or [[0, 0, 0]])
        tp, fp, fn = rows.sum(axis=0)
        return int(tp), int(fp), int(fn)

    @property
    def precision(self) -> float:
        tp, fp, _ = self.totals()
        return tp / max(tp + fp, 1)

    @property
    def recall(self) -> float:
        tp, _, fn = self.totals()
        return tp / max(tp + fn, 1)

    def to_dict(self) -> dict[str, Any]:
        per = {a: {"tp": tp, "fp": fp, "fn": fn, "precision": round(tp / max(tp + fp, 1), 3),
                   "recall": round(tp / max(tp + fn, 1), 3)} for a, (tp, fp, fn) in sorted(self.counts.items())}
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "per_action": per}


def match_events(
    detected: Sequence[ActionEvent], truth: Sequence[tuple[str, int, int]], actions: Sequence[str],
    tolerance: int = 3, min_overlap: float = 0.3,
) -> EventScore:
    """Greedy one-to-one matching (best overlap first) of detections to (action, start, end) truths."""
    score = EventScore()
    for action in actions:
        dets = [(e.start_frame, e.end_frame) for e in detected if e.action == action]
        gts = [(s, e) for a, s, e in truth if a == action]
        pairs = sorted(((_widened_overlap(d, g, tolerance), i, j) for i, d in enumerate(dets)
                        for j, g in enumerate(gts)), reverse=True)
        used_d: set[int] = set()
        used_g: set[int] = set()
        for ov, i, j in pairs:
            if ov < min_overlap:
                break
            if i not in used_d and j not in used_g:
                used_d.add(i)
                used_g.add(j)
        score.add(action, len(used_d), len(dets) - len(used_d), len(gts) - len(used_g))
    return score


def truth_events(truth: dict[str, Any], person: int, frames: np.ndarray) -> list[tuple[str, int, int]]:
    """(action, start, end) of ``person``'s ground-truth events mostly inside the track's frames."""
    lo, hi = int(frames[0]), int(frames[-1]) + 1
    out = []
    for e in truth["events"]:
        if e["person"] != person:
            continue
        inside = min(hi, e["end_frame"]) - max(lo, e["start_frame"])
        if inside >= 0.5 * (e["end_frame"] - e["start_frame"]):
            out.append((e["action"], int(e["start_frame"]), int(e["end_frame"])))
    return out


def corpus_videos(corpus_dir: Path) -> list[dict[str, Any]]:
    """Manifest rows of a generated corpus (raw and truth paths relative to ``corpus_dir``)."""
    document = json.loads((Path(corpus_dir) / "manifest.json").read_text())
    return list(document["videos"])


def _track_video(args: tuple[Path, str, Any]) -> tuple[str, list[FaceTrack], float]:
    """Shots + face tracks of one corpus video (a process-pool task)."""
    from lpm_models.data.curation.shots import detect_shots
    from lpm_models.data.curation.tracks import track_faces

    path, vid, cfg = args
    t0 = time.perf_counter()
    shots, _ = detect_shots(path, cfg, video_id=vid)
    tracks = [t for shot in shots for t in track_faces(path, shot, cfg)[0]]
    return vid, tracks, time.perf_counter() - t0


def curate_tracks(
    corpus_dir: Path, cache_dir: Path | None = None, cfg: Any = None, workers: int = 1,
) -> dict[str, list[FaceTrack]]:
    """Face tracks of every corpus video via shots + tracks (cached as .npz under ``cache_dir``)."""
    out: dict[str, list[FaceTrack]] = {}
    todo = []
    for video in corpus_videos(corpus_dir):
        vid = video["video_id"]
        if cache_dir is not None and (Path(cache_dir) / f"{vid}.done").exists():
            out[vid] = [FaceTrack.load(p) for p in sorted(Path(cache_dir).glob(f"{vid}-s*-t*.npz"))]
        else:
            todo.append((Path(corpus_dir) / video["raw"], vid, cfg))
    if workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
            results = list(pool.map(_track_video, todo))
    else:
        results = [_track_video(task) for task in todo]
    for vid, tracks, seconds in results:
        log.info("%s: %d track(s) in %.1f s", vid, len(tracks), seconds)
        out[vid] = tracks
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            for track in tracks:
                track.save(Path(cache_dir) / f"{track.track_id}.npz")
            (Path(cache_dir) / f"{vid}.done").touch()
    return {video["video_id"]: out[video["video_id"]] for video in corpus_videos(corpus_dir)}


def evaluate_pairing(
    corpus_dir: Path, tracks: dict[str, list[FaceTrack]], cfg: Any = None,
) -> tuple[PairingScore, dict[str, ClipLabels]]:
    """Pair every shot's tracks and score the labels against the sidecars."""
    from lpm_models.data.curation.pairing import PairingConfig, pair_shot
    from lpm_models.data.curation.video_io import read_audio

    cfg = cfg or PairingConfig()
    score = PairingScore()
    results: dict[str, ClipLabels] = {}
    for video in corpus_videos(corpus_dir):
        vid_tracks = tracks.get(video["video_id"], [])
        if not vid_tracks:
            continue
        truth = read_sidecar(Path(corpus_dir) / video["truth"])
        audio = read_audio(Path(corpus_dir) / video["raw"], sample_rate=16000)
        for shot_index in sorted({t.shot_index for t in vid_tracks}):
            shot_tracks = [t for t in vid_tracks if t.shot_index == shot_index]
            for track, labels in zip(shot_tracks, pair_shot(shot_tracks, audio.samples, audio.sample_rate, cfg)):
                person = person_of_track(track, truth)
                results[track.track_id] = labels
                if person is not None:
                    score.add(track.track_id, labels.labels, truth_labels(truth, person, track.frames))
    return score, results


SCORED_ACTIONS = ("nod", "shake", "smile", "tilt", "look_away")


def evaluate_actions(
    corpus_dir: Path, tracks: dict[str, list[FaceTrack]], cfg: Any = None,
    labels: dict[str, ClipLabels] | None = None, tolerance: int = 3, min_overlap: float = 0.3,
) -> tuple[EventScore, dict[str, list[ActionEvent]]]:
    """Detect actions on every track and match them to the sidecars' events of the same person.

    labels: pairing output per track id (``evaluate_pairing``), as the pipeline passes it on.
    """
    from lpm_models.data.curation.understanding import UnderstandingConfig, detect_actions

    cfg = cfg or UnderstandingConfig()
    total = EventScore()
    detected: dict[str, list[ActionEvent]] = {}
    for video in corpus_videos(corpus_dir):
        truth = read_sidecar(Path(corpus_dir) / video["truth"])
        for track in tracks.get(video["video_id"], []):
            person = person_of_track(track, truth)
            clip = (labels or {}).get(track.track_id)
            events = detect_actions(track, cfg, None if clip is None else clip.labels)
            detected[track.track_id] = events
            if person is None:
                continue
            score = match_events(events, truth_events(truth, person, track.frames), SCORED_ACTIONS,
                                 tolerance, min_overlap)
            for action, (tp, fp, fn) in score.counts.items():
                total.add(action, tp, fp, fn)
    return total, detected


def prepare_corpus(root: Path, config: Any, bank: Any = None) -> Path:
    """Generate the synthetic corpus ``config`` into ``root`` unless it is there already.

    Generated into a sibling temp directory and renamed into place, so concurrent callers
    (two test modules, two benchmark runs) end up sharing one complete corpus.
    """
    from lpm_models.data.synth.corpus import generate_corpus

    root = Path(root)
    if (root / "manifest.json").exists():
        return root
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    generate_corpus(config, staging, bank=bank)
    try:
        os.rename(staging, root)
    except OSError:  # someone else finished first: use theirs
        if not (root / "manifest.json").exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return root


def benchmark(corpus_dir: Path, cache_dir: Path | None = None, workers: int = 1) -> dict[str, Any]:
    """Pairing frame accuracy and action precision/recall of a generated corpus, with timings."""
    t0 = time.perf_counter()
    tracks = curate_tracks(corpus_dir, cache_dir, workers=workers)
    t1 = time.perf_counter()
    pairing, labels = evaluate_pairing(corpus_dir, tracks)
    t2 = time.perf_counter()
    actions, _ = evaluate_actions(corpus_dir, tracks, labels=labels)
    t3 = time.perf_counter()
    videos = corpus_videos(corpus_dir)
    return {
        "videos": len(videos), "tracks": sum(len(v) for v in tracks.values()),
        "video_seconds": round(sum(v["duration_s"] for v in videos), 1),
        "pairing": pairing.to_dict(), "actions": actions.to_dict(),
        "seconds": {"tracks": round(t1 - t0, 1), "pairing": round(t2 - t1, 2), "actions": round(t3 - t2, 2)},
    }


def bench_corpus(
    base_dir: Path, n_conversations: int = 6, duration_s: float = 16.0, seed: int = 11, workers: int = 2,
) -> tuple[Path, dict[str, list[FaceTrack]]]:
    """A small benchmark corpus (half split-screen, half single-camera) and its face tracks.

    Everything lives under ``base_dir`` and is reused when already there (the identity bank in
    ``curation-bank``, videos in ``curation-bench-<seed>``, tracks next to them).
    """
    from lpm_models.data.synth.corpus import CorpusConfig
    from lpm_models.data.synth.identities import IdentityBank

    base_dir = Path(base_dir)
    root = base_dir / f"curation-bench-{seed}-{n_conversations}x{duration_s:g}"
    if not (root / "manifest.json").exists():
        bank = IdentityBank.build(n=4, seed=0, pool_size=8, cache_dir=base_dir / "curation-bank")
        config = CorpusConfig(seed=seed, n_conversations=n_conversations, duration_s=duration_s,
                              duration_jitter=0.0, size=256, split_fraction=0.5, n_identities=4, workers=workers)
        prepare_corpus(root, config, bank)
    return root, curate_tracks(root, root / "tracks", workers=workers)
