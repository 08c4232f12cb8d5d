"""Run LPM-Bench: every system on every case -> per-case metric rows, per-subset summaries, a table.

    result = run_bench(case_set, [GroundTruthSystem(), StillSystem(), OnlineLPMSystem(engine)], work_dir)
    print(format_table(result))          # every dimension per subset, one line per system
    result.rows                          # one row per (system, case): scores, raw metrics, timings

Each system's video is written as MP4 (H.264 + the character's speech) and evaluated by
:func:`~.evaluate.evaluate_video` against the case's audio, prompts and truth (labels, the truth
performance's features and frames) -- ground truth is passed explicitly, nothing else reads it.
The truth video goes through the same encoder, so ground truth is an upper bound, not a perfect
score. Scores are in [0, 1] (:mod:`.scores`); ``rows`` also keep the raw headline metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quality.bench.case import BenchTruth
from quality.bench.cases import BenchCase, CaseSet
from quality.bench.evaluate import BenchConfig, evaluate_video
from quality.bench.features import FaceFeatures, VideoSource, extract_features
from quality.bench.groundtruth import write_video
from quality.bench.scores import DIMENSIONS, dimension_scores
from quality.bench.systems import Generated, System

log = logging.getLogger(__name__)

# raw metrics kept in every row as "<dimension>.<metric>"
RAW_METRICS = (
    ("sync", "sync_r_at_zero"), ("sync", "sync_confidence"), ("sync", "sync_offset_frames"),
    ("identity", "identity_distance_mean"), ("identity", "identity_fail_fraction"),
    ("identity", "identity_drift_per_min"), ("motion", "motion_fd"), ("motion", "motion_diversity"),
    ("motion", "still_fraction"), ("motion", "listen_paired_fd"), ("motion", "listen_rpcc"),
    ("text_control", "text_f1"), ("text_control", "text_recall"), ("text_control", "text_precision"),
    ("visual", "psnr"), ("visual", "ssim"), ("features", "face_coverage"),
)
ALL = "all"


@dataclass
class BenchResult:
    """Rows of one bench invocation, what each system was, where the videos are, how long it took."""

    cases: CaseSet
    rows: list[dict[str, Any]]
    systems: dict[str, dict[str, Any]]
    videos: dict[tuple[str, str], Path] = field(default_factory=dict)
    seconds: float = 0.0

    def rows_of(self, system: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["system"] == system]

    @property
    def system_names(self) -> list[str]:
        return list(self.systems)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, (bool, str)):
        return None
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None


def truth_of(case: BenchCase, cfg: BenchConfig) -> BenchTruth:
    """The case's truth: labels, features of the truth video (cached next to it), its frames."""
    cache = case.root / f"{case.file}.features.npz"
    if cache.is_file():
        features = FaceFeatures.load(cache)
    else:
        features = extract_features(case.truth_video, cfg=cfg.features)
        features.save(cache)
    return BenchTruth(labels=case.labels, features=features, frames=VideoSource.of(case.truth_video))


def case_row(case: BenchCase, system: System, result: dict[str, dict[str, Any]], generated: Generated,
             eval_s: float) -> dict[str, Any]:
    """One flat row: ids, dimension scores, raw metrics, timings and latency."""
    row: dict[str, Any] = {"case_id": case.case_id, "subset": case.subset, "style": case.style,
                           "system": system.name, "label": system.label}
    row |= dimension_scores(result)
    row |= {f"{dim}.{metric}": _number(result.get(dim, {}).get(metric)) for dim, metric in RAW_METRICS}
    row |= {"generate_s": round(generated.seconds, 3), "evaluate_s": round(eval_s, 3),
            "duration_s": round(case.duration_s, 2)}
    row |= {f"latency.{k}": _number(v) for k, v in generated.latency.items()}
    return row


def evaluate_generated(case: BenchCase, system: System, generated: Generated, truth: BenchTruth, out_dir: Path,
                       cfg: BenchConfig) -> tuple[dict[str, Any], Path]:
    """Encode (when needed) and evaluate one system's output for a case; (row, video path)."""
    video = generated.video
    if video is None:
        assert generated.frames is not None
        video = write_video(out_dir / system.name / f"{case.file}.mp4", generated.frames, case.audio, case.fps)
    shared = truth.features if system.name == "ground_truth" else None
    t0 = time.perf_counter()
    result = evaluate_video(video, case.reference_image, audio=case.audio, truth=truth, prompts=case.prompts,
                            cfg=cfg, features=shared)
    return case_row(case, system, result, generated, time.perf_counter() - t0), video


def run_bench(cases: CaseSet, systems: Sequence[System], work_dir: Path, cfg: BenchConfig | None = None) -> BenchResult:
    """Every system on every case (see the module docstring); logs progress with rate and ETA."""
    cfg = cfg or BenchConfig()
    if not systems:
        raise ValueError("no systems to evaluate: add --baselines or --model URI")
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"system names must be unique, got {names}")
    work_dir = Path(work_dir)
    result = BenchResult(cases, [], {s.name: {"label": s.label, **s.info} for s in systems})
    started = time.perf_counter()
    total = len(cases.cases) * len(systems)
    for i, case in enumerate(cases.cases):
        truth = truth_of(case, cfg)
        for j, system in enumerate(systems):
            generated = system.generate(case)
            row, video = evaluate_generated(case, system, generated, truth, work_dir, cfg)
            result.rows.append(row)
            result.videos[(system.name, case.case_id)] = video
            done = i * len(systems) + j + 1
            elapsed = time.perf_counter() - started
            log.info("bench %d/%d: %s on %s: overall %s (generate %.1f s, evaluate %.1f s); ETA %.0f s", done, total,
                     system.name, case.case_id, row["overall"], row["generate_s"], row["evaluate_s"],
                     elapsed / done * (total - done))
    result.seconds = time.perf_counter() - started
    return result


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """system -> subset (and ``all``) -> {dimension: mean score, n: cases}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        subsets = list(dict.fromkeys(r["subset"] for r in mine)) + [ALL]
        out[system] = {}
        for subset in subsets:
            chosen = [r for r in mine if subset == ALL or r["subset"] == subset]
            out[system][subset] = {d: _mean([r.get(d) for r in chosen]) for d in DIMENSIONS} | {"n": len(chosen)}
    return out


def format_table(result: BenchResult) -> str:
    """Every dimension per subset (rows: subset x system), then the time the run took."""
    summary = summarise(result.rows)
    head = f"{'subset':26s}{'system':28s}{'n':>3s}" + "".join(f"{d:>14s}" for d in DIMENSIONS)
    lines = [f"LPM-Bench {result.cases.spec.name}: {len(result.cases.cases)} cases, scores in [0, 1] "
             "(higher is better; - = not applicable)", head, "-" * len(head)]
    subsets = result.cases.subsets + [ALL]
    for subset in subsets:
        for k, system in enumerate(result.system_names):
            cell = summary.get(system, {}).get(subset)
            if cell is None:
                continue
            label = result.systems[system]["label"]
            values = "".join(f"{'-':>14s}" if cell[d] is None else f"{cell[d]:>14.3f}" for d in DIMENSIONS)
            lines.append(f"{subset if k == 0 else '':26s}{label[:27]:28s}{cell['n']:>3d}{values}")
    lines.append(f"took {result.seconds:.0f} s ({result.seconds / 60:.1f} min)")
    return "\n".join(lines)


def format_markdown(result: BenchResult, subset: str = ALL) -> str:
    """The ``subset`` line of every system as a Markdown table (Dagster metadata, MLflow)."""
    summary = summarise(result.rows)
    lines = ["| system | n | " + " | ".join(DIMENSIONS) + " |", "|---|---:|" + "---:|" * len(DIMENSIONS)]
    for system in result.system_names:
        cell = summary[system][subset]
        values = " | ".join("–" if cell[d] is None else f"{cell[d]:.3f}" for d in DIMENSIONS)
        lines.append(f"| {result.systems[system]['label']} | {cell['n']} | {values} |")
    return "\n".join(lines)
