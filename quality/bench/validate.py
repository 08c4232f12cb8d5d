"""Validate the LPM-Bench metrics on ground truth: ``python -m quality.bench.validate``.

Generates a few held-out synthetic conversations (a seed the tests do not use), turns every person
into a ground-truth case (:mod:`.groundtruth`), evaluates the ground-truth video and each degraded
variant with :func:`~.evaluate.evaluate_video`, and prints one table: each metric's mean over
cases for ground truth and for every variant, with ``*`` where the variant scores worse than
ground truth in the metric's bad direction (by more than 5 %, at least 0.01). ``--json`` also writes
every case's full metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quality.bench.case import BenchTruth
from quality.bench.evaluate import BenchConfig, evaluate_video
from quality.bench.features import FaceFeatures, VideoSource, extract_features
from quality.bench.groundtruth import DEGRADATIONS, GroundTruthCase, Variant, load_cases, make_variant, render, write_video

if TYPE_CHECKING:
    from lpm_models.data.synth.identities import IdentityBank

log = logging.getLogger(__name__)

# (dimension, metric, direction): +1 higher is better, -1 lower is better, 0 shown without a verdict
TABLE: tuple[tuple[str, str, int], ...] = (
    ("sync", "sync_r_at_zero", +1), ("sync", "sync_confidence", +1), ("sync", "sync_offset_frames", 0),
    ("identity", "identity_distance_mean", -1), ("identity", "identity_fail_fraction", -1),
    ("identity", "identity_drift_per_min", -1),
    ("motion", "motion_fd", -1), ("motion", "motion_diversity", 0), ("motion", "still_fraction", -1),
    ("motion", "listen_paired_fd", -1), ("motion", "listen_rpcc", -1),
    ("text_control", "text_recall", +1), ("text_control", "text_precision", +1), ("text_control", "text_f1", +1),
    ("visual", "psnr", +1), ("visual", "ssim", +1),
)
GROUND_TRUTH = "ground_truth"
BANK_SIZE, BANK_POOL = 6, 24  # identities (chosen for spread from a pool of candidates) of the held-out corpus


@dataclass
class CaseEvaluation:
    """Everything one case's evaluation produced: metrics, feature passes and videos per variant."""

    case: GroundTruthCase
    truth: BenchTruth
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, FaceFeatures] = field(default_factory=dict)
    videos: dict[str, Path] = field(default_factory=dict)


def evaluate_case(case: GroundTruthCase, bank: "IdentityBank", work_dir: Path,
                  variants: Sequence[str] = DEGRADATIONS, cfg: BenchConfig | None = None) -> CaseEvaluation:
    """Evaluate the ground-truth video and each degraded variant of one case (videos encoded to MP4).

    The truth's reference features come from the lossless render; the evaluated videos went
    through H.264 like any generated video, so ground truth does not match itself exactly.
    """
    cfg = cfg or BenchConfig()
    gt_frames = render(bank, case.identity_id, case.controls, case.size, case.fps)
    truth_features = extract_features(gt_frames, case.fps, replace(cfg.features, max_embeddings=1))
    truth = BenchTruth(labels=case.labels, features=truth_features, frames=VideoSource(array=gt_frames, fps=case.fps))
    run = CaseEvaluation(case, truth)
    for name in (GROUND_TRUTH, *variants):
        t0 = time.perf_counter()
        variant = (Variant(GROUND_TRUTH, gt_frames, case.audio) if name == GROUND_TRUTH
                   else make_variant(case, name, bank, gt_frames))
        path = write_video(Path(work_dir) / f"{case.case_id}-{name}.mp4", variant.frames, variant.audio, case.fps)
        shared = run.features.get(variant.same_frames_as or "")
        run.features[name] = shared if shared is not None else extract_features(path, cfg=cfg.features)
        run.videos[name] = path
        run.results[name] = evaluate_video(path, case.reference_image, audio=variant.audio, truth=truth,
                                           prompts=case.prompts, cfg=cfg, features=run.features[name])
        log.info("validate: %s %s in %.1f s", case.case_id, name, time.perf_counter() - t0)
    return run


def summarise(per_case: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """variant -> 'dimension.metric' -> mean over cases (None where no case measured it)."""
    variants = list(next(iter(per_case.values())))
    out: dict[str, dict[str, float | None]] = {}
    for variant in variants:
        row: dict[str, float | None] = {}
        for dim, metric, _ in TABLE:
            values = [r[variant][dim].get(metric) for r in per_case.values()]
            values = [float(v) for v in values if v is not None and np.isfinite(v)]
            row[f"{dim}.{metric}"] = float(np.mean(values)) if values else None
        out[variant] = row
    return out


def format_table(summary: dict[str, dict[str, float | None]], n_cases: int) -> str:
    """The validation report: metrics down, ground truth and variants across (``*`` = worse than GT)."""
    variants = list(summary)
    head = f"{'metric':34s}" + "".join(f"{v:>16s}" for v in variants)
    lines = [f"LPM-Bench metric validation: mean over {n_cases} ground-truth case(s)", head, "-" * len(head)]
    for dim, metric, direction in TABLE:
        key = f"{dim}.{metric}"
        gt = summary[GROUND_TRUTH].get(key)
        cells = []
        for variant in variants:
            value = summary[variant].get(key)
            if value is None:
                cells.append(f"{'-':>16s}")
                continue
            worse = (variant != GROUND_TRUTH and direction != 0 and gt is not None
                     and direction * (gt - value) > max(0.05 * abs(gt), 0.01))
            cells.append(f"{value:>15.3f}{'*' if worse else ' '}")
        lines.append(f"{key:34s}" + "".join(cells))
    return "\n".join(lines)


def prepare(out_dir: Path, n_conversations: int, duration_s: float, seed: int,
            size: int = 256) -> tuple[Path, "IdentityBank"]:
    """(corpus directory, identity bank) of a synthetic corpus under ``out_dir``, reused when there."""
    from lpm_models.data.curation.accuracy import prepare_corpus
    from lpm_models.data.synth.corpus import CorpusConfig
    from lpm_models.data.synth.identities import IdentityBank

    out_dir = Path(out_dir)
    bank = IdentityBank.build(n=BANK_SIZE, seed=0, pool_size=BANK_POOL, cache_dir=out_dir / "bank")
    config = CorpusConfig(seed=seed, n_conversations=n_conversations, duration_s=duration_s, duration_jitter=0.0,
                          size=size, split_fraction=0.5, n_identities=BANK_SIZE, workers=1)
    root = prepare_corpus(out_dir / f"corpus-{seed}-{n_conversations}x{duration_s:g}-{size}", config, bank)
    return root, bank


def validate(out_dir: Path, n_conversations: int = 2, duration_s: float = 12.0, seed: int = 101,
             size: int = 256, prompt_every_s: float = 2.0, variants: Sequence[str] = DEGRADATIONS,
             cfg: BenchConfig | None = None) -> tuple[dict[str, dict[str, dict[str, Any]]], str]:
    """Generate a held-out corpus under ``out_dir``, evaluate every case; (per-case metrics, table)."""
    root, bank = prepare(out_dir, n_conversations, duration_s, seed, size)
    work = Path(out_dir) / "videos"
    work.mkdir(parents=True, exist_ok=True)
    per_case: dict[str, dict[str, dict[str, Any]]] = {}
    t0 = time.perf_counter()
    cases = list(load_cases(root, bank, prompt_every_s=prompt_every_s, seed=seed))
    for k, case in enumerate(cases):
        per_case[case.case_id] = evaluate_case(case, bank, work, variants, cfg).results
        elapsed = time.perf_counter() - t0
        log.info("validate: case %d/%d done, %.0f s elapsed, ETA %.0f s", k + 1, len(cases), elapsed,
                 elapsed / (k + 1) * (len(cases) - k - 1))
    return per_case, format_table(summarise(per_case), len(per_case))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the validation table (and optionally write all metrics as JSON)."""
    parser = argparse.ArgumentParser(prog="python -m quality.bench.validate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--conversations", type=int, default=2, help="held-out conversations (2 cases each)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per conversation")
    parser.add_argument("--seed", type=int, default=101, help="corpus seed (tests use other seeds)")
    parser.add_argument("--size", type=int, default=256, help="face region in pixels")
    parser.add_argument("--prompt-every", type=float, default=2.0, help="plant a prompted action every S seconds")
    parser.add_argument("--variants", nargs="*", default=list(DEGRADATIONS), choices=DEGRADATIONS)
    parser.add_argument("--json", type=Path, default=None, help="write per-case metrics to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="lpm-bench-validate-") as tmp:
        per_case, table = validate(args.out or Path(tmp), args.conversations, args.duration, args.seed, args.size,
                                   args.prompt_every, args.variants)
    if args.json is not None:
        args.json.write_text(json.dumps(per_case, indent=1, default=float))
    sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
