"""The curation benchmark: throughput of every stage and accuracy against ground truth.

One run generates (or reuses) a benchmark corpus of synthetic conversations, then over the
same videos measures

* throughput per stage in seconds of video per wall-second and per CPU-second (decode-only
  next to shots, tracks, quality, pairing, understanding, identity), and the whole pipeline;
* speak / listen / idle frame accuracy of pairing, action precision / recall of performance
  understanding, and identity clustering purity — each against the corpus sidecars, which
  only this benchmark (never curation) reads.

Stages run one video at a time in this process (CPU seconds count every thread), so ``x cpu``
is the honest per-core figure and ``x wall`` what one worker reaches; the pipeline at
``workers`` parallel videos is reported by wall clock (``x_wall_parallel``, the verdict) and by
CPU time (``x_cpu_parallel``, what that many idle cores reach).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.curation.accuracy import (
    corpus_videos, evaluate_actions, evaluate_pairing, person_of_track, read_sidecar,
)
from lpm_models.data.curation.bench import StageTimer, benchmark_perception
from lpm_models.data.curation.config import CurationConfig
from lpm_models.data.curation.types import FaceTrack

log = logging.getLogger(__name__)

PIPELINE_STAGES = ("shots", "tracks", "audio", "quality", "pairing", "understanding", "identity")


@dataclass(frozen=True)
class Targets:
    """What the curation issue asks of the pipeline on 2 cores."""

    x_realtime: float = 10.0
    pairing_accuracy: float = 0.90
    action_precision: float = 0.80
    action_recall: float = 0.80
    identity_purity: float = 0.95


def make_corpus(base_dir: Path, conversations: int, duration_s: float, seed: int, identities: int,
                workers: int) -> Path:
    """A benchmark corpus under ``base_dir`` (reused when present): half split-screen calls."""
    from lpm_models.data.curation.accuracy import prepare_corpus
    from lpm_models.data.synth.corpus import CorpusConfig
    from lpm_models.data.synth.identities import IdentityBank

    base_dir = Path(base_dir)
    root = base_dir / f"curation-benchmark-s{seed}-{conversations}x{duration_s:g}-i{identities}"
    if not (root / "manifest.json").exists():
        bank = IdentityBank.build(n=identities, seed=0, cache_dir=base_dir / "identity-bank")
        config = CorpusConfig(seed=seed, n_conversations=conversations, duration_s=duration_s,
                              duration_jitter=0.0, size=256, split_fraction=0.5, n_identities=identities,
                              workers=workers)
        prepare_corpus(root, config, bank)
    return root


def _identity_purity(corpus_dir: Path, tracks: dict[str, list[FaceTrack]], timer: StageTimer) -> dict[str, Any]:
    """Embed every track (timed as the ``identity`` stage), cluster, score against the sidecars."""
    from lpm_models.data.curation.identity import FaceEncoder, cluster_scores, cluster_tracks, profile_video

    encoder, profiles, truth = FaceEncoder(), {}, {}
    for video in corpus_videos(corpus_dir):
        found = tracks.get(video["video_id"], [])
        profiles.update(timer.run("identity", float(video["duration_s"]), profile_video,
                                  Path(corpus_dir) / video["raw"], found, encoder=encoder))
        sidecar = read_sidecar(Path(corpus_dir) / video["truth"])
        for track in found:
            person = person_of_track(track, sidecar)
            if person is not None:
                truth[track.track_id] = sidecar["persons"][person]["identity_id"]
    all_tracks = [t for ts in tracks.values() for t in ts]
    started = time.perf_counter()
    labels = cluster_tracks(profiles, all_tracks)
    scores = cluster_scores({k: v for k, v in labels.items() if k in truth}, truth)
    return {"purity": scores.purity, "inverse_purity": scores.inverse_purity, "clusters": scores.n_clusters,
            "true_identities": scores.n_true, "tracks": len(labels), "cluster_s": time.perf_counter() - started}


def run_benchmark(base_dir: Path, conversations: int = 6, duration_s: float = 16.0, seed: int = 11,
                  identities: int = 6, workers: int = 2, cfg: CurationConfig | None = None) -> dict[str, Any]:
    """Generate/reuse the corpus and measure every stage; returns a JSON-able report."""
    root = make_corpus(base_dir, conversations, duration_s, seed, identities, workers)
    videos = [root / v["raw"] for v in corpus_videos(root)]
    perception = benchmark_perception(videos, cfg=cfg, truth_dir=root / "truth", keep_tracks=True)
    tracks: dict[str, list[FaceTrack]] = perception.pop("tracks_by_video")
    timer = StageTimer()
    video_s = float(perception["video_s"])
    pairing, labels = timer.run("pairing", video_s, evaluate_pairing, root, tracks)
    actions, _ = timer.run("understanding", video_s, evaluate_actions, root, tracks, labels=labels)
    identity = _identity_purity(root, tracks, timer)
    stages = {**perception["stages"], **timer.summary()}
    stages.pop("total", None)
    wall = sum(stages[s]["wall_s"] for s in PIPELINE_STAGES if s in stages)
    cpu = sum(stages[s]["cpu_s"] for s in PIPELINE_STAGES if s in stages)
    pipeline = {"video_s": video_s, "wall_s": wall, "cpu_s": cpu, "x_wall": video_s / max(wall, 1e-9),
                "x_cpu": video_s / max(cpu, 1e-9), "x_wall_parallel": workers * video_s / max(wall, 1e-9),
                "x_cpu_parallel": workers * video_s / max(cpu, 1e-9)}
    return {
        "corpus": str(root), "videos": len(videos), "video_s": video_s, "workers": workers,
        "stages": stages, "pipeline": pipeline, "detection_rate": perception.get("detection_rate"),
        "quality_pass_rate": perception["quality_pass_rate"], "rejections": perception["reasons"],
        "pairing": pairing.to_dict(), "actions": actions.to_dict(), "identity": identity,
    }


def verdicts(report: dict[str, Any], targets: Targets | None = None) -> dict[str, tuple[float, float, bool]]:
    """Measured value, target and pass flag per target."""
    t = targets or Targets()
    values = {
        "pipeline x real time (parallel)": (report["pipeline"]["x_wall_parallel"], t.x_realtime),
        "speak/listen frame accuracy": (report["pairing"]["accuracy"], t.pairing_accuracy),
        "action precision": (report["actions"]["precision"], t.action_precision),
        "action recall": (report["actions"]["recall"], t.action_recall),
        "identity purity": (report["identity"]["purity"], t.identity_purity),
    }
    return {name: (float(v), float(goal), bool(np.isfinite(v) and v >= goal)) for name, (v, goal) in values.items()}


def format_report(report: dict[str, Any], targets: Targets | None = None) -> str:
    """The benchmark as a plain-text table."""
    lines = [f"{report['videos']} videos, {report['video_s']:.1f} s of video ({report['corpus']})", "",
             f"{'stage':<18}{'video s':>9}{'wall s':>9}{'cpu s':>9}{'x wall':>9}{'x cpu':>9}"]
    for stage, s in report["stages"].items():
        lines.append(f"{stage:<18}{s['video_s']:>9.1f}{s['wall_s']:>9.2f}{s['cpu_s']:>9.2f}"
                     f"{s['x_wall']:>9.1f}{s['x_cpu']:>9.1f}")
    p = report["pipeline"]
    lines += [f"{'pipeline':<18}{p['video_s']:>9.1f}{p['wall_s']:>9.2f}{p['cpu_s']:>9.2f}"
              f"{p['x_wall']:>9.1f}{p['x_cpu']:>9.1f}",
              f"pipeline with {report['workers']} videos in parallel: {p['x_wall_parallel']:.1f}x real time by wall "
              f"clock, {p['x_cpu_parallel']:.1f}x by CPU time (what {report['workers']} otherwise idle cores reach; "
              "wall < CPU figure means other processes took CPU)", ""]
    if report.get("detection_rate") is not None:
        lines.append(f"face detection: {report['detection_rate']:.1%} of on-screen person-frames")
    lines.append(f"quality pass rate {report['quality_pass_rate']:.0%}; rejections {report['rejections']}")
    ident = report["identity"]
    lines += [f"identity: {ident['tracks']} tracks -> {ident['clusters']} clusters "
              f"({ident['true_identities']} true), inverse purity {ident['inverse_purity']:.3f}", ""]
    lines.append(f"{'target':<34}{'measured':>10}{'goal':>8}  verdict")
    for name, (value, goal, ok) in verdicts(report, targets).items():
        lines.append(f"{name:<34}{value:>10.3f}{goal:>8.2f}  {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)
