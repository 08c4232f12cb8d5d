"""Distil a Base LPM teacher into an Online LPM: ODE regression -> DMD -> self-forcing -> refiner.

    python -m lpm_models.online.distill --teacher base.pt --dataset DIR_OR_S3 --out OUT_DIR [--reporter SPEC]

Conditions come from curated dataset windows; the teacher's guided ODE trajectories are
computed once per run. Each stage trains with Lightning, then is measured on held-out
conditions (student streaming vs teacher samples, before and after the stage). Writes
``OUT_DIR/online.pt`` (consolidated, ``load_online``), ``metrics.json`` (per stage) and
``metrics.jsonl`` (per step). ``distill()`` is the programmatic entry the orchestrator
calls with its own ``report(metrics, step)`` (e.g. MLflow logging); the CLI sends the same
metrics to a ``--reporter`` (``start``, ``progress`` per step and per stage, ``done``), the
hook the orchestrator uses to stream them back over Dagster Pipes.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from lpm_models.base.data import fetch_dataset
from lpm_models.base.model import BaseLPM
from lpm_models.base.sampler import Guidance
from lpm_models.base.train import resolve_reporter
from lpm_models.base.dit import LPMDiT
from lpm_models.online.config import OnlineConfig, online_preset
from lpm_models.online.lit import STAGES, DistillReporter, StageModule, StageSettings
from lpm_models.online.model import OnlineLPM, save_online
from lpm_models.online.samples import DistillSample, attach_trajectories, collate, conditions_from_windows, evaluate
from lpm_models.online.teacher import freeze, load_teacher

log = logging.getLogger(__name__)

Report = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class DistillConfig:
    """What to run: stages, steps per stage, data sizes, optimisation settings."""

    stages: tuple[str, ...] = STAGES
    steps: dict[str, int] = field(default_factory=lambda: {"ode": 200, "dmd": 100, "self_forcing": 100, "refiner": 100})
    batch_size: int = 4
    chunks: int | None = None  # chunks per training clip; None: sink + window + 1
    teacher_substeps: int = 4
    clips: int = 32
    heldout: int = 8
    seed: int = 0
    log_every: int = 10
    settings: StageSettings = StageSettings()

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; choose from {STAGES}")


def clip_chunks(online: OnlineConfig, cfg: DistillConfig) -> int:
    chunks = cfg.chunks or online.context_chunks + 1
    if chunks > online.context_chunks + 1:
        raise ValueError(f"training clips of {chunks} chunks exceed sink + window + 1 = {online.context_chunks + 1}")
    return chunks


def _trainer(steps: int, callbacks: list[L.Callback], clip: float | None) -> L.Trainer:
    return L.Trainer(accelerator="cpu" if not torch.cuda.is_available() else "auto", devices=1, max_steps=steps,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, gradient_clip_val=clip, callbacks=callbacks)


def run_stage(
    stage: str, student: OnlineLPM, teacher: BaseLPM, train: Sequence[DistillSample], heldout: Sequence[DistillSample],
    cfg: DistillConfig, critic: LPMDiT | None = None, report: Report | None = None, jsonl: Path | None = None,
    step_offset: int = 0,
) -> tuple[dict[str, float], LPMDiT | None]:
    """Train one stage; returns (its metrics, the critic to carry into the next DMD stage)."""
    steps = cfg.steps.get(stage, 0)
    refine = stage == "refiner"
    if refine and student.refiner is None:
        student.init_refiner_from_backbone()
    before = evaluate(student, heldout, refine=refine) if heldout else {}
    module = StageModule(stage, student, teacher, cfg.settings, critic)
    losses: list[dict[str, float]] = []

    def collect(metrics: dict[str, float], step: int) -> None:
        losses.append(metrics)
        if report is not None:
            report(metrics, step)

    loader = DataLoader(list(train), batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, drop_last=False,
                        generator=torch.Generator().manual_seed(cfg.seed))
    reporter = DistillReporter(collect, jsonl, cfg.log_every, step_offset)
    _trainer(steps, [reporter], cfg.settings.grad_clip if stage == "ode" else None).fit(module, loader)
    student.eval()
    after = evaluate(student, heldout, refine=refine) if heldout else {}
    metrics: dict[str, float] = {"steps": float(steps)}
    keys = sorted({k for m in losses for k in m})
    for k in keys:
        vals = [m[k] for m in losses if k in m]
        tail = vals[-max(1, len(vals) // 5):]
        metrics[f"{k.split('/', 1)[1]}_first"] = vals[0]
        metrics[f"{k.split('/', 1)[1]}_last"] = sum(tail) / len(tail)
    for name in before:
        metrics[f"heldout_{name}_before"] = before[name]
        metrics[f"heldout_{name}_after"] = after[name]
    if report is not None:
        report({f"{stage}/{k}": v for k, v in metrics.items()}, step_offset + steps)
    log.info("stage %s done: %s", stage, {k: round(v, 5) for k, v in metrics.items()})
    return metrics, module.critic


def distill(
    teacher: BaseLPM, student: OnlineLPM, train: Sequence[DistillSample], heldout: Sequence[DistillSample],
    cfg: DistillConfig, report: Report | None = None, jsonl: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Run the configured stages in order on ``student`` (modified in place); metrics per stage."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    freeze(teacher)
    results: dict[str, dict[str, float]] = {}
    critic: LPMDiT | None = None
    offset = 0
    for stage in cfg.stages:
        metrics, critic = run_stage(stage, student, teacher, train, heldout, cfg, critic if stage != "ode" else None,
                                    report, jsonl, offset)
        results[stage] = metrics
        offset += cfg.steps.get(stage, 0)
    return results


def prepare_samples(
    teacher: BaseLPM, vae: torch.nn.Module, dataset_dir: Path, online: OnlineConfig, cfg: DistillConfig,
    encode_prompts: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]],
) -> tuple[list[DistillSample], list[DistillSample]]:
    """Conditions of ``clips + heldout`` dataset windows with teacher trajectories, split train / held-out."""
    from lpm_models.data.dataset.loader import CuratedWindowDataset
    from lpm_models.data.dataset.manifest import Manifest

    chunks = clip_chunks(online, cfg)
    tc = teacher.cfg.dit.temporal_factor
    window = chunks * online.chunk_latents * tc
    dataset = CuratedWindowDataset(Manifest.load(dataset_dir).shard_paths(dataset_dir), window, shuffle=True,
                                   seed=cfg.seed, windows_per_clip=1)
    wanted = cfg.clips + cfg.heldout
    items = list(itertools.islice(itertools.chain.from_iterable(_epochs(dataset)), wanted))
    if len(items) < wanted:
        raise ValueError(f"the dataset gave {len(items)} windows of {window} frames, {wanted} are needed; "
                         "lower --clips/--heldout or use a dataset with more/longer clips")
    conditions = conditions_from_windows(items, teacher, vae, encode_prompts)  # type: ignore[arg-type]
    samples = attach_trajectories(conditions, teacher, online.backbone_times, chunks * online.chunk_latents,
                                  substeps=cfg.teacher_substeps, guidance=cfg.settings.guidance, seed=cfg.seed)
    return samples[cfg.heldout :], samples[: cfg.heldout]


def _epochs(dataset: Any, limit: int = 64) -> Any:
    for epoch in range(limit):
        dataset.set_epoch(epoch)
        items = list(dataset)
        if not items:
            return
        yield items


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _parse_steps(text: str) -> dict[str, int]:
    out = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in STAGES or not value.isdigit():
            raise argparse.ArgumentTypeError(f"--steps wants stage=N pairs over {STAGES}, got {part!r}")
        out[name] = int(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpm_models.online.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="consolidated Base LPM checkpoint")
    p.add_argument("--dataset", required=True, help="curated dataset directory (manifest + shards) or s3://bucket/prefix")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--vae", type=Path, help="VAE weights (default: the teacher config's vae.pretrained_path)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    p.add_argument("--steps", type=_parse_steps, default={}, help="per-stage steps, e.g. ode=200,dmd=100")
    p.add_argument("--clips", type=int, default=32, help="training condition sets")
    p.add_argument("--heldout", type=int, default=8, help="held-out condition sets for the measured effect")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--teacher-substeps", type=int, default=4, help="teacher Euler steps per student interval")
    p.add_argument("--chunk-latents", type=int, help="override the preset's chunk length")
    p.add_argument("--sink", type=int, help="sink chunks")
    p.add_argument("--window", type=int, help="window chunks")
    p.add_argument("--no-refiner", action="store_true", help="distil without the one-step refiner")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--reporter", default="logging", help="'logging', 'jsonl:PATH' or 'module:factory'")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from lpm_models.encoders.text import TextEncoder
    from lpm_models.vae.model import VideoVAE

    teacher = load_teacher(args.teacher)
    vae_cfg = teacher.cfg.vae if args.vae is None else replace(teacher.cfg.vae, pretrained_path=str(args.vae))
    if not vae_cfg.pretrained_path:
        raise SystemExit("no VAE weights: pass --vae FILE (the teacher config names none)")
    vae = freeze(VideoVAE.from_config(vae_cfg))
    overrides = {k: v for k, v in (("chunk_latents", args.chunk_latents), ("sink_chunks", args.sink),
                                   ("window_chunks", args.window)) if v is not None}
    if args.no_refiner:
        overrides["refiner"] = False
    online = online_preset(teacher.cfg.name, **overrides) if teacher.cfg.name in ("tiny", "small", "lpm-17b") \
        else OnlineConfig(**overrides)
    stages = tuple(s for s in args.stages.split(",") if s and not (s == "refiner" and args.no_refiner))
    base_steps = DistillConfig().steps
    cfg = DistillConfig(stages=stages, steps={**base_steps, **args.steps}, batch_size=args.batch_size,
                        teacher_substeps=args.teacher_substeps, clips=args.clips, heldout=args.heldout, seed=args.seed,
                        settings=replace(StageSettings(), lr=args.lr))
    text = TextEncoder(teacher.cfg.text)
    reporter = resolve_reporter(args.reporter)
    started = time.perf_counter()
    dataset_dir = fetch_dataset(str(args.dataset), args.out / "cache")
    reporter("start", {"preset": teacher.cfg.name, "stages": ",".join(stages), "clips": cfg.clips,
                       "heldout": cfg.heldout, "batch_size": cfg.batch_size, "teacher_substeps": cfg.teacher_substeps,
                       **{f"steps_{s}": cfg.steps.get(s, 0) for s in stages}})
    train, heldout = prepare_samples(teacher, vae, dataset_dir, online, cfg, text.encode)
    student = OnlineLPM.from_base(teacher, online)
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "metrics.jsonl"
    jsonl.unlink(missing_ok=True)
    results = distill(teacher, student, train, heldout, cfg, jsonl=jsonl,
                      report=lambda metrics, step: reporter("progress", {"step": step, **metrics}))
    meta = {"teacher_sha256": _sha256(args.teacher), "teacher_file": args.teacher.name, "stages": list(stages),
            "distill_config": {k: v for k, v in asdict(cfg).items() if k != "settings"}, "metrics": results}
    save_online(student, args.out / "online.pt", metadata=meta)
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    log.info("wrote %s", args.out / "online.pt")
    last = results.get(stages[-1], {}) if stages else {}
    reporter("done", {"path": str(args.out / "online.pt"), "stages": ",".join(stages),
                      "steps": sum(cfg.steps.get(s, 0) for s in stages), "final_loss": _final_loss(last),
                      "seconds": round(time.perf_counter() - started, 1),
                      **{key: value for key, value in last.items() if key.startswith("heldout_")}})
    return 0


def _final_loss(metrics: dict[str, float]) -> float | None:
    """The last stage's generator loss (DMD stages) or regression loss (ODE stage), tail-averaged."""
    for key in ("dmd_loss_last", "ode_loss_last", "regression_loss_last"):
        if key in metrics:
            return metrics[key]
    return None


if __name__ == "__main__":
    sys.exit(main())
