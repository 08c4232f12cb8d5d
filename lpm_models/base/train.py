"""Base LPM training entry point (CLI and Python API).

    python -m lpm_models.base.train --config run.yaml --dataset DIR_OR_S3 --out DIR --ranks N

runs a Lightning Trainer with ``make_strategy`` (on CPU, N processes started by the
strategy's launcher, which re-executes this command per rank; torchrun-started processes
are joined instead), writes sharded checkpoints to ``OUT/checkpoints/step-*``, previews to
``OUT/previews`` and, on rank 0 at the end, the consolidated file ``OUT/base_lpm.pt`` plus
``OUT/result.json``. Progress goes to a reporter: a callable ``(event, data)`` — logging by
default, ``jsonl:PATH`` for a JSON-lines file, or ``package.module:factory`` for one the
caller supplies (the orchestrator passes a Dagster Pipes reporter this way). Extra Lightning
loggers (MLflow) are passed by the caller through ``train(..., loggers=...)``.
"""

from __future__ import annotations

import argparse
import math
import importlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchvision.io import write_png
from torchvision.utils import make_grid

from lpm_models.base.checkpoint import (
    checkpoint_dir, config_to_dict, consolidate, dataclass_from_dict, latest_checkpoint, prune_checkpoints,
)
from lpm_models.base.data import DataConfig, LPMDataModule
from lpm_models.base.module import BaseLPMTrainingModule, TrainConfig
from lpm_models.base.strategy import StrategyConfig, make_strategy, resolve_accelerator, resolve_precision
from lpm_models.configs import LPMConfig, get_preset

log = logging.getLogger(__name__)

Reporter = Callable[[str, dict[str, Any]], None]
CONSOLIDATED_NAME = "base_lpm.pt"


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs besides the dataset location and output directory."""

    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # nested overrides of the preset
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    preview_every: int = 0  # 0: one preview at the end only; < 0: none
    log_every: int = 10
    accumulate_grad_batches: int = 1
    threads_per_rank: int = 0  # CPU: 0 = cores / ranks

    def lpm_config(self) -> LPMConfig:
        return dataclass_from_dict(LPMConfig, self.model, base=get_preset(self.preset))


@dataclass(frozen=True)
class TrainResult:
    step: int
    consolidated: str
    checkpoint: str
    final_loss: float | None
    samples_per_s: float | None
    seconds: float


def read_config_file(path: str | Path | None) -> dict[str, Any]:
    """Plain data of a JSON or YAML (.yaml/.yml) file; {} for no path."""
    if not path:
        return {}
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def load_run_config(path: str | Path | None, **overrides: Any) -> RunConfig:
    """A RunConfig from a JSON/YAML file (or defaults), then dotted overrides (``data.dataset=...``)."""
    raw = read_config_file(path)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return dataclass_from_dict(RunConfig, raw)


# ---------------------------------------------------------------------------- reporters
def logging_reporter(event: str, data: dict[str, Any]) -> None:
    log.info("%s %s", event, " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in data.items()))


class JsonlReporter:
    """Appends one JSON object per event to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"event": event, "time": time.time(), **data}, default=str) + "\n")


def resolve_reporter(spec: str | None) -> Reporter:
    """"logging" (default), "jsonl:PATH" or "package.module:factory" (called with no arguments)."""
    if not spec or spec == "logging":
        return logging_reporter
    if spec.startswith("jsonl:"):
        return JsonlReporter(spec[len("jsonl:"):])
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"reporter {spec!r}: use 'logging', 'jsonl:PATH' or 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory()


# ----------------------------------------------------------------------------- callbacks
class ProgressReporter(L.Callback):
    """Reports step, loss, LR, phase, samples/s and tokens/s (global) every ``every`` steps (rank 0)."""

    def __init__(self, reporter: Reporter, every: int, samples_per_rank_step: int, tokens_per_sample: int) -> None:
        self.reporter, self.every = reporter, max(1, every)
        self.samples_per_rank_step, self.tokens_per_sample = samples_per_rank_step, tokens_per_sample
        self.samples_per_s: float | None = None
        self._t0: float | None = None
        self._step0 = 0
        self._last = -1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self._t0 is None:  # rate from the end of the first step: excludes start-up
            self._t0, self._step0 = time.perf_counter(), step
            return
        if step == self._last or (step % self.every and step != trainer.max_steps):
            return
        self._last = step
        elapsed = time.perf_counter() - self._t0
        self.samples_per_s = (step - self._step0) * self.samples_per_rank_step * trainer.world_size / max(elapsed, 1e-9)
        metrics = trainer.callback_metrics
        if trainer.global_rank != 0:
            return
        data: dict[str, Any] = {"step": step, "max_steps": trainer.max_steps}
        curriculum = getattr(pl_module, "curriculum", None)
        if curriculum is not None:
            data["phase"] = curriculum.phase_at(step - 1).name
        for key, value in metrics.items():  # everything the module logged under train/
            if key.startswith("train/") and value.numel() == 1:
                data[key[len("train/"):]] = float(value)
        data["samples_per_s"] = self.samples_per_s
        if self.tokens_per_sample:
            data["tokens_per_s"] = self.samples_per_s * self.tokens_per_sample
        data["eta_s"] = round((trainer.max_steps - step) * elapsed / max(step - self._step0, 1), 1)
        self.reporter("progress", data)


class PeriodicCheckpoint(L.Callback):
    """Sharded checkpoint every ``every`` steps and at the end; keeps the newest ``keep``."""

    def __init__(self, root: Path, every: int, keep: int, reporter: Reporter) -> None:
        self.root, self.every, self.keep, self.reporter = Path(root), every, keep, reporter
        self.last = -1

    def _save(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        path = checkpoint_dir(self.root, step)
        trainer.save_checkpoint(path)
        self.last = step
        if trainer.global_rank == 0:
            prune_checkpoints(self.root, self.keep)
            self.reporter("checkpoint", {"step": step, "path": str(path)})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.every > 0 and step > 0 and step % self.every == 0 and step != self.last:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.last:
            self._save(trainer)


class PreviewWriter(L.Callback):
    """Samples a clip (EMA weights) every ``every`` steps (0: at the end only); rank 0 writes PNG + MP4."""

    def __init__(self, out_dir: Path, every: int, reporter: Reporter) -> None:
        self.out_dir, self.every, self.reporter = Path(out_dir), every, reporter
        self.last = -1

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module: Any = pl_module
        if module.preview_batch is None:
            return
        frames = module.preview()  # collective under FSDP2: every rank samples
        self.last = step = trainer.global_step
        if trainer.global_rank != 0:
            return
        from lpm_models.data.dataset.codec import encode_video

        self.out_dir.mkdir(parents=True, exist_ok=True)
        clip = frames[0]  # (T, H, W, 3) uint8
        grid = make_grid(clip.permute(0, 3, 1, 2), nrow=math.ceil(math.sqrt(clip.shape[0])), padding=2)
        png, mp4 = self.out_dir / f"step-{step:08d}.png", self.out_dir / f"step-{step:08d}.mp4"
        write_png(grid, str(png))
        mp4.write_bytes(encode_video(clip.numpy(), float(module.cfg.fps)))
        self.reporter("preview", {"step": step, "png": str(png), "mp4": str(mp4)})

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.every > 0 and step % self.every == 0 and step != self.last:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self.last:
            self._write(trainer, pl_module)


# ------------------------------------------------------------------------------ training
def _resume_path(resume: str | None, ckpt_root: Path) -> str | None:
    if resume in (None, "", "none"):
        return None
    if resume == "auto":
        found = latest_checkpoint(ckpt_root)
        return str(found) if found else None
    return resume


def build_trainer(run: RunConfig, out: Path, reporter: Reporter, loggers: list[Any] | None,
                  total_steps: int, tokens_per_sample: int) -> L.Trainer:
    """The Lightning Trainer with the run's strategy and LPM callbacks."""
    ckpt_root = out / "checkpoints"
    callbacks: list[L.Callback] = [
        ProgressReporter(reporter, run.log_every, run.data.batch_size * run.accumulate_grad_batches, tokens_per_sample),
        PeriodicCheckpoint(ckpt_root, run.checkpoint_every, run.keep_checkpoints, reporter),
    ]
    if run.preview_every >= 0:
        callbacks.append(PreviewWriter(out / "previews", run.preview_every, reporter))
    return L.Trainer(
        accelerator=resolve_accelerator(run.strategy), devices=run.strategy.ranks, num_nodes=run.strategy.num_nodes,
        strategy=make_strategy(run.strategy), precision=resolve_precision(run.strategy),  # type: ignore[arg-type]
        max_steps=total_steps, max_epochs=-1, logger=loggers or False, callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
        log_every_n_steps=run.log_every, accumulate_grad_batches=run.accumulate_grad_batches,
        default_root_dir=str(out),
    )


def train(run: RunConfig, out_dir: str | Path, reporter: Reporter | None = None, loggers: list[Any] | None = None,
          resume: str | None = "auto") -> TrainResult | None:
    """Train (or resume) a Base LPM; returns the result on global rank 0, None on other ranks.

    ``resume``: "auto" (latest complete checkpoint under OUT/checkpoints), a checkpoint
    directory, or None. Ranks > 1 on CPU need a fresh process per rank: call this from the
    CLI (the launcher re-executes it) or under torchrun, not from an interactive session.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reporter = reporter or logging_reporter
    cfg = run.lpm_config()
    accelerator = resolve_accelerator(run.strategy)
    if accelerator == "cpu":
        torch.set_num_threads(run.threads_per_rank or max(1, (os.cpu_count() or 1) // run.strategy.ranks))
    data = replace(run.data, cache_dir=run.data.cache_dir or str(out / "cache"))
    module = BaseLPMTrainingModule(
        cfg, run.train, vae_path=data.vae_path,
        activation_checkpointing=run.strategy.activation_checkpointing and run.strategy.kind != "fsdp1",
        reshard_after_forward=run.strategy.reshard_after_forward)
    datamodule = LPMDataModule(cfg, data, accelerator)
    total = module.curriculum.total_steps
    tokens = (cfg.latent_frames(cfg.clip_frames) + cfg.max_refs) * cfg.tokens_per_latent_frame
    trainer = build_trainer(replace(run, data=data), out, reporter, loggers, total, tokens)
    ckpt = _resume_path(resume, out / "checkpoints")
    if trainer.global_rank == 0:
        (out / "run_config.json").write_text(json.dumps(config_to_dict(replace(run, data=data)), indent=1, default=str))
        reporter("start", {"preset": cfg.name, "max_steps": total, "ranks": run.strategy.world_size,
                           "precision": resolve_precision(run.strategy), "resume_from": ckpt or ""})
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    if trainer.global_rank != 0:
        return None
    return _finish(trainer, out, data, started, reporter)


def _finish(trainer: L.Trainer, out: Path, data: DataConfig, started: float, reporter: Reporter) -> TrainResult:
    """Consolidate the last checkpoint (rank 0) and write result.json."""
    last = latest_checkpoint(out / "checkpoints")
    if last is None:
        raise RuntimeError(f"training ended without a complete checkpoint under {out / 'checkpoints'}")
    extra = {"dataset": data.dataset, "vae_path": data.vae_path or ""}
    consolidated = consolidate(last, out / CONSOLIDATED_NAME, extra=extra)
    progress = next((c for c in trainer.callbacks if isinstance(c, ProgressReporter)), None)  # type: ignore[attr-defined]
    loss = trainer.callback_metrics.get("train/loss")
    result = TrainResult(step=trainer.global_step, consolidated=str(consolidated), checkpoint=str(last),
                         final_loss=float(loss) if loss is not None else None,
                         samples_per_s=progress.samples_per_s if progress else None,
                         seconds=round(time.perf_counter() - started, 2))
    (out / "result.json").write_text(json.dumps(config_to_dict(result), indent=1))
    reporter("done", config_to_dict(result))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a Base LPM (Lightning, FSDP2).")
    parser.add_argument("--config", help="run config (JSON or YAML); defaults otherwise")
    parser.add_argument("--dataset", help="curated dataset directory or s3://bucket/prefix")
    parser.add_argument("--out", required=True, help="output directory (checkpoints, previews, base_lpm.pt)")
    parser.add_argument("--ranks", type=int, help="processes (CPU) or GPUs per node")
    parser.add_argument("--preset", help="model preset (tiny, small, lpm-17b)")
    parser.add_argument("--max-steps", type=int, help="total steps of the default curriculum")
    parser.add_argument("--vae", help="trained VAE file (lpm_models.vae.train output)")
    parser.add_argument("--latents", choices=["auto", "online", "cached"])
    parser.add_argument("--resume", default="auto", help="'auto', 'none' or a checkpoint directory")
    parser.add_argument("--reporter", default="logging", help="'logging', 'jsonl:PATH' or 'module:factory'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # block/encoder outputs are only consumed out of place, so FSDP2's view-output caveat does not apply
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    run = load_run_config(args.config, **{
        "data.dataset": args.dataset, "strategy.ranks": args.ranks, "preset": args.preset,
        "train.max_steps": args.max_steps, "data.vae_path": args.vae, "data.latents": args.latents})
    result = train(run, args.out, reporter=resolve_reporter(args.reporter), resume=args.resume)
    if result is not None:
        log.info("done: step %d, consolidated %s", result.step, result.consolidated)


if __name__ == "__main__":
    main()
