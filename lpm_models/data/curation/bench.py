"""Throughput benchmark of the curation perception stages, next to decode-only throughput.

``benchmark_perception(videos)`` runs decode-only, shots, tracks and quality over each video in
this process and reports seconds of video per wall-second and per CPU-second for every stage
(CPU time counts all threads of the process, so it is the honest figure on a shared machine).
With ``truth_dir`` (synthetic corpus sidecars) it also reports how many on-screen person-frames
the kept tracks cover (detection rate) and how many kept tracks match nobody. Later stages add
themselves by timing their calls with :class:`StageTimer` in :func:`_run_video`.

Run: ``python -m lpm_models.data.curation.bench CORPUS_DIR [N_VIDEOS]`` (logs a table).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lpm_models.data.curation.config import CurationConfig
from lpm_models.data.curation.quality import assess_track
from lpm_models.data.curation.shots import detect_shots
from lpm_models.data.curation.tracks import track_faces
from lpm_models.data.curation.types import FaceTrack
from lpm_models.data.curation.video_io import iter_frames, probe, read_audio

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class StageTimer:
    """Accumulated wall / CPU seconds and seconds of video per named stage."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    video_s: dict[str, float] = field(default_factory=dict)

    def run(self, stage: str, video_s: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn(*args, **kwargs)``, charging its time to ``stage`` for ``video_s`` seconds of video."""
        w, c = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - w
            self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c
            self.video_s[stage] = self.video_s.get(stage, 0.0) + video_s

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {video_s, wall_s, cpu_s, x_wall, x_cpu}} where x_* = video seconds per second."""
        return {s: {"video_s": self.video_s[s], "wall_s": self.wall[s], "cpu_s": self.cpu[s],
                    "x_wall": self.video_s[s] / max(self.wall[s], 1e-9),
                    "x_cpu": self.video_s[s] / max(self.cpu[s], 1e-9)} for s in self.wall}


def _decode_only(path: Path, max_side: int | None, threads: int) -> int:
    return sum(1 for _ in iter_frames(path, max_side=max_side, threads=threads))


def _coverage(tracks: list[FaceTrack], truth: dict[str, Any]) -> dict[str, float]:
    """On-screen person-frames covered by a kept track inside that person's region; unmatched tracks."""
    persons = [p for p in truth["persons"] if p["on_screen"]]
    total = len(persons) * int(truth["n_frames"])
    covered = np.zeros((len(persons), int(truth["n_frames"])), dtype=bool)
    unmatched = 0
    for track in tracks:
        cx = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
        cy = (track.boxes[:, 1] + track.boxes[:, 3]) / 2
        hit = False
        for k, person in enumerate(persons):
            x0, y0, x1, y1 = person["bbox"]
            inside = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
            if inside.mean() > 0.5:
                frames = track.frames[inside & (track.frames < covered.shape[1])]
                covered[k, frames] = True
                hit = True
        unmatched += int(not hit)
    return {"person_frames": float(total), "covered_frames": float(covered.sum()), "unmatched_tracks": float(unmatched)}


def _run_video(path: Path, cfg: CurationConfig, timer: StageTimer) -> dict[str, Any]:
    """All perception stages over one video; returns counts and reasons."""
    info = probe(path)
    duration = info.n_frames / info.fps
    timer.run("decode_full", duration, _decode_only, path, None, cfg.decode.threads)
    timer.run("decode_analysis", duration, _decode_only, path, cfg.decode.analysis_max_side, cfg.decode.threads)
    shots, short = timer.run("shots", duration, detect_shots, path, cfg)
    tracks: list[FaceTrack] = []
    rejected: list[str] = [r.reason for _, r in short]
    for shot in shots:
        kept, rej = timer.run("tracks", shot.duration_s, track_faces, path, shot, cfg)
        tracks += kept
        rejected += [r.reason for _, r in rej]
    audio = timer.run("audio", duration, read_audio, path, sample_rate=cfg.decode.sample_rate)
    passed, quality_reasons, sync = 0, [], []
    for track in tracks:
        report = timer.run("quality", track.duration_s, assess_track, track, path, audio, cfg)
        passed += int(report.passed)
        quality_reasons += report.reasons
        if report.sync is not None and report.sync.assessable:
            sync.append((report.sync.offset_frames, report.sync.confidence))
    return {"video": path.stem, "duration_s": duration, "shots": len(shots), "tracks": tracks,
            "track_rejections": rejected, "quality_passed": passed, "quality_reasons": quality_reasons,
            "sync": sync}


def _truth_for(path: Path, truth_dir: Path | None) -> dict[str, Any] | None:
    if truth_dir is None:
        return None
    candidate = Path(truth_dir) / f"{path.stem}.json"
    return json.loads(candidate.read_text()) if candidate.exists() else None


def benchmark_perception(
    videos: Sequence[Path | str], cfg: CurationConfig | None = None, truth_dir: Path | str | None = None,
    keep_tracks: bool = False,
) -> dict[str, Any]:
    """Time decode / shots / tracks / quality over ``videos``; with ``truth_dir`` also detection rate.

    Returns {"stages": StageTimer.summary(), "videos": n, "video_s": total, "tracks": n,
    "quality_pass_rate": f, "reasons": {code: count}, "sync_offsets": [...], "detection_rate": f, ...};
    with ``keep_tracks`` also "tracks_by_video": {video id: [FaceTrack]} for later stages.
    """
    import mediapipe  # noqa: F401  - import once up front so its ~2 s load is not charged to a stage

    cfg = cfg or CurationConfig()
    timer = StageTimer()
    per_video, reasons, offsets, confidences = [], {}, [], []
    tracks_by_video: dict[str, list[FaceTrack]] = {}
    person_frames = covered = unmatched = 0.0
    for n, video in enumerate(videos, 1):
        path = Path(video)
        result = timer.run("total", 0.0, _run_video, path, cfg, timer)
        if keep_tracks:
            tracks_by_video[path.stem] = result["tracks"]
        truth = _truth_for(path, Path(truth_dir) if truth_dir else None)
        if truth is not None:
            cov = _coverage(result["tracks"], truth)
            person_frames += cov["person_frames"]
            covered += cov["covered_frames"]
            unmatched += cov["unmatched_tracks"]
        for code in result["track_rejections"] + result["quality_reasons"]:
            reasons[code] = reasons.get(code, 0) + 1
        offsets += [o for o, _ in result["sync"]]
        confidences += [c for _, c in result["sync"]]
        per_video.append({k: v for k, v in result.items() if k != "tracks"} | {"n_tracks": len(result["tracks"])})
        log.info("bench %d/%d %s: %d shot(s), %d track(s), %d passed quality", n, len(videos), path.stem,
                 result["shots"], len(result["tracks"]), result["quality_passed"])
    total_s = sum(v["duration_s"] for v in per_video)
    timer.video_s["total"] = total_s
    n_tracks = sum(v["n_tracks"] for v in per_video)
    out: dict[str, Any] = {
        "videos": len(per_video), "video_s": total_s, "stages": timer.summary(), "tracks": n_tracks,
        "quality_pass_rate": sum(v["quality_passed"] for v in per_video) / max(n_tracks, 1),
        "reasons": reasons, "sync_offsets": offsets,
        "sync_confidence_median": float(np.median(confidences)) if confidences else float("nan"),
        "per_video": per_video,
    }
    if person_frames:
        out |= {"detection_rate": covered / person_frames, "unmatched_tracks": unmatched}
    if keep_tracks:
        out["tracks_by_video"] = tracks_by_video
    log.info("\n%s", format_benchmark(out))
    return out


def format_benchmark(result: dict[str, Any]) -> str:
    """A plain-text table of a ``benchmark_perception`` result."""
    lines = [f"{result['videos']} videos, {result['video_s']:.1f} s of video",
             f"{'stage':<16}{'video s':>9}{'wall s':>9}{'cpu s':>9}{'x wall':>9}{'x cpu':>9}"]
    for stage, s in result["stages"].items():
        lines.append(f"{stage:<16}{s['video_s']:>9.1f}{s['wall_s']:>9.2f}{s['cpu_s']:>9.2f}"
                     f"{s['x_wall']:>9.1f}{s['x_cpu']:>9.1f}")
    lines.append(f"tracks {result['tracks']}, quality pass rate {result['quality_pass_rate']:.0%}, "
                 f"reasons {result['reasons']}")
    if "detection_rate" in result:
        lines.append(f"detection rate {result['detection_rate']:.1%} of on-screen person-frames, "
                     f"{result['unmatched_tracks']:.0f} unmatched track(s)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lpm_models.data.curation.bench CORPUS_DIR [N_VIDEOS]`` over a synthetic corpus."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m lpm_models.data.curation.bench CORPUS_DIR [N_VIDEOS]")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args[0])
    videos = sorted((root / "raw").glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos under {root / 'raw'}; generate a corpus first (lpm corpus generate)")
    limit = int(args[1]) if len(args) > 1 else len(videos)
    benchmark_perception(videos[:limit], truth_dir=root / "truth")


if __name__ == "__main__":
    main()
