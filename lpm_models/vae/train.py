"""Video VAE training on curated shards (short CPU budget by default); reports PSNR.

    python -m lpm_models.vae.train --dataset DIR_OR_S3 --out DIR [--preset tiny] [--steps N]

Trains on random windows of ``frames`` = 1 + tc * k video frames (default: the preset's
``clip_frames``, the length Base LPM encodes) with random spatial crops (the VAE is fully
convolutional, so crops train the same weights much faster on CPU), holds out every
``holdout_every``-th clip for validation PSNR on full frames of ``clip_frames`` (measured before
and after training, overall and on the first / last frames of the window, so drift along the
window shows), sets the per-channel latent statistics from training clips, and writes
``OUT/vae.pt`` (state dict incl. latent stats + config + PSNR) and ``OUT/vae_result.json``.
``VAEConfig(pretrained_path=OUT/vae.pt)`` / ``DataConfig.vae_path`` load it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset
from torchvision.transforms.v2 import functional as TF

from lpm_models.base.checkpoint import config_to_dict, dataclass_from_dict
from lpm_models.base.data import DataConfig, fetch_dataset
from lpm_models.base.module import lr_factor
from lpm_models.base.train import ProgressReporter, Reporter, logging_reporter, read_config_file, resolve_reporter
from lpm_models.configs import LPMConfig, VAEConfig, get_preset
from lpm_models.data.dataset.manifest import Manifest
from lpm_models.data.dataset.shards import decode_sample, iter_samples
from lpm_models.vae.metrics import psnr
from lpm_models.vae.model import VideoVAE

log = logging.getLogger(__name__)

VAE_FORMAT = "lpm-vae/1"


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = 600
    batch_size: int = 4
    # 1 + tc * k video frames per training window; 0: the preset's clip_frames. Windows must cover the
    # causal convs' temporal receptive field: trained on 5-frame windows, the tiny VAE reconstructed
    # frames 0-4 at 23.5 dB and every frame from the 8th on at ~17 dB (colour drift), which Base LPM
    # then learned to generate.
    frames: int = 0
    crop: int = 48  # square random crop for training (0: full frame)
    lr: float = 5e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    holdout_every: int = 5  # clip i is held out for validation when i % holdout_every == 0
    val_windows: int = 8
    stats_windows: int = 16
    windows_per_clip: int = 4
    seed: int = 0
    log_every: int = 20
    precision: str = "32-true"


@dataclass(frozen=True)
class VAERunConfig:
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # nested preset overrides (height, width, vae, ...)
    data: DataConfig = field(default_factory=DataConfig)
    train: VAETrainConfig = field(default_factory=VAETrainConfig)

    def lpm_config(self) -> LPMConfig:
        return dataclass_from_dict(LPMConfig, self.model, base=get_preset(self.preset))


def window_frames(run: VAETrainConfig, cfg: LPMConfig) -> int:
    """Video frames per training window: ``run.frames``, or the preset's ``clip_frames`` when 0."""
    return run.frames or cfg.clip_frames


class VideoWindows(IterableDataset):
    """Windows (T, 3, H, W) in [-1, 1] at the preset's resolution from train or held-out clips.

    Training: endless, random starts and crops. Validation/statistics: one full-frame window
    per clip from frame 0, ``limit`` windows, deterministic.
    """

    def __init__(self, shard_paths: list[Path], cfg: LPMConfig, run: VAETrainConfig, train: bool,
                 held_out: bool, limit: int = 0) -> None:
        super().__init__()
        self.paths, self.cfg, self.run = shard_paths, cfg, run
        self.train, self.held_out, self.limit = train, held_out, limit
        # training: the run's window; validation / statistics: the clip length Base LPM encodes
        self.frames = window_frames(run, cfg) if train else cfg.clip_frames

    def _clips(self) -> Iterator[np.ndarray]:
        for index, raw in enumerate(iter_samples(self.paths)):
            if (index % self.run.holdout_every == 0) == self.held_out:
                yield decode_sample(raw).frames

    def _window(self, frames: np.ndarray, start: int) -> Tensor:
        clip = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.frames])).float()
        video = TF.resize(clip.div(127.5).sub(1.0).permute(0, 3, 1, 2), [self.cfg.height, self.cfg.width], antialias=True)
        c = self.run.crop
        if self.train and 0 < c < min(self.cfg.height, self.cfg.width):
            top = int(torch.randint(0, self.cfg.height - c + 1, ()))
            left = int(torch.randint(0, self.cfg.width - c + 1, ()))
            video = video[..., top:top + c, left:left + c]
        return video

    def __iter__(self) -> Iterator[Tensor]:
        count = 0
        while True:
            seen = 0
            for frames in self._clips():
                if len(frames) < self.frames:
                    continue
                seen += 1
                for _ in range(self.run.windows_per_clip if self.train else 1):
                    start = int(torch.randint(0, len(frames) - self.frames + 1, ())) if self.train else 0
                    yield self._window(frames, start)
                    count += 1
                    if self.limit and count >= self.limit:
                        return
            if seen == 0:
                raise RuntimeError(f"no {'held-out' if self.held_out else 'training'} clips of >= {self.frames} "
                                   f"frames; lower holdout_every or frames, or add clips")
            if not self.train:
                return


class VAETrainingModule(L.LightningModule):
    """L1 + MSE (+ KL) reconstruction training of a VideoVAE."""

    def __init__(self, cfg: VAEConfig, run: VAETrainConfig) -> None:
        super().__init__()
        self.cfg, self.run = cfg, run
        self.vae: VideoVAE | None = None

    def configure_model(self) -> None:
        if self.vae is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.run.seed)
                self.vae = VideoVAE(self.cfg)

    def training_step(self, video: Tensor, batch_idx: int) -> Tensor:
        assert self.vae is not None
        loss, parts = self.vae.loss(video)
        self.log("train/loss", loss.detach(), on_step=True)
        self.log("train/psnr", 10 * torch.log10(4.0 / parts["mse"].clamp_min(1e-12)), on_step=True)
        self.log("train/lr", torch.tensor(self.trainer.optimizers[0].param_groups[0]["lr"]), on_step=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        assert self.vae is not None
        opt = torch.optim.AdamW(self.vae.parameters(), lr=self.run.lr, betas=(0.9, 0.99), weight_decay=0.0)
        schedule = lambda s: lr_factor(s, self.run.warmup_steps, self.run.steps, 0.1)  # noqa: E731
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule),
                                                   "interval": "step"}}


@torch.no_grad()
def evaluate_psnr(vae: VideoVAE, windows: list[Tensor]) -> float:
    """Mean PSNR (dB) of posterior-mean reconstructions of full-frame windows."""
    return psnr_along_window(vae, windows)["psnr"]


@torch.no_grad()
def psnr_along_window(vae: VideoVAE, windows: list[Tensor]) -> dict[str, float]:
    """Mean PSNR (dB) of posterior-mean reconstructions: whole windows (``psnr``), their first
    ``1 + tc`` frames (``psnr_head``) and last ``tc`` frames (``psnr_tail``). A tail far below the
    head means the decoder drifts with temporal context it was not trained on."""
    vae.eval()
    tc, out = vae.temporal_factor, {"psnr": [], "psnr_head": [], "psnr_tail": []}
    for w in windows:
        video = w[None]
        recon = vae.decode(vae.encode(video))
        out["psnr"].append(float(psnr(recon, video)))
        out["psnr_head"].append(float(psnr(recon[:, : 1 + tc], video[:, : 1 + tc])))
        out["psnr_tail"].append(float(psnr(recon[:, -tc:], video[:, -tc:])))
    return {k: sum(v) / max(len(v), 1) for k, v in out.items()}


@torch.no_grad()
def latent_stats(vae: VideoVAE, windows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-channel mean/std (C,) of un-normalised posterior means over ``windows``."""
    means = torch.cat([vae.encode_moments(w[None])[0].transpose(1, 2).flatten(2) for w in windows], dim=2)  # (1, C, N)
    return means.mean(dim=(0, 2)), means.std(dim=(0, 2))


def train_vae(run: VAERunConfig, out_dir: str | Path, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train, measure validation PSNR before/after, set latent stats, write ``vae.pt``; returns the result."""
    out, reporter = Path(out_dir), reporter or logging_reporter
    out.mkdir(parents=True, exist_ok=True)
    cfg, t = run.lpm_config(), run.train
    frames = window_frames(t, cfg)
    if (frames - 1) % cfg.vae.temporal_factor or frames > cfg.clip_frames:
        raise ValueError(f"frames must be 1 + {cfg.vae.temporal_factor} k and <= clip_frames "
                         f"({cfg.clip_frames}), got {frames}")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    L.seed_everything(t.seed, workers=True, verbose=False)
    root = fetch_dataset(run.data.dataset, run.data.cache_dir or out / "cache")
    paths = Manifest.load(root).shard_paths(root)
    val = list(VideoWindows(paths, cfg, t, train=False, held_out=True, limit=t.val_windows))
    module = VAETrainingModule(cfg.vae, t)
    module.configure_model()
    assert module.vae is not None
    before = evaluate_psnr(module.vae, val)
    reporter("start", {"preset": cfg.name, "steps": t.steps, "val_windows": len(val), "psnr_before": before,
                       "frames": frames, "val_frames": cfg.clip_frames})
    loader = DataLoader(VideoWindows(paths, cfg, t, train=True, held_out=False), batch_size=t.batch_size,
                        num_workers=run.data.num_workers)
    trainer = L.Trainer(accelerator="cpu" if not torch.cuda.is_available() else "auto", devices=1, max_steps=t.steps,
                        max_epochs=-1, precision=t.precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=t.grad_clip,
                        callbacks=[ProgressReporter(reporter, t.log_every, t.batch_size, 0)],
                        default_root_dir=str(out))
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    vae = module.vae.cpu().eval()
    stats = list(VideoWindows(paths, cfg, replace(t, windows_per_clip=1), train=False, held_out=False,
                              limit=t.stats_windows))
    mean, std = latent_stats(vae, stats)
    vae.set_latent_stats(mean, std)
    along = psnr_along_window(vae, val)
    after = along["psnr"]
    result = {"format": VAE_FORMAT, "step": trainer.global_step, "psnr_before": round(before, 3),
              "psnr": round(after, 3), "psnr_head": round(along["psnr_head"], 3),
              "psnr_tail": round(along["psnr_tail"], 3), "frames": frames, "val_frames": cfg.clip_frames,
              "val_windows": len(val), "seconds": round(time.perf_counter() - started, 1),
              "latent_std": [round(float(s), 4) for s in std], "path": str(out / "vae.pt")}
    tmp = out / "vae.pt.tmp"
    torch.save({"format": VAE_FORMAT, "state_dict": vae.state_dict(), "config": config_to_dict(cfg.vae),
                "psnr": after, "psnr_before": before, "step": trainer.global_step}, tmp)
    os.replace(tmp, out / "vae.pt")
    (out / "vae_result.json").write_text(json.dumps(result, indent=1))
    reporter("done", result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the LPM video VAE.")
    parser.add_argument("--config", help="VAE run config (JSON or YAML)")
    parser.add_argument("--dataset", help="curated dataset directory or s3://bucket/prefix")
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--reporter", default="logging", help="'logging', 'jsonl:PATH' or 'module:factory'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run = dataclass_from_dict(VAERunConfig, read_config_file(args.config))
    run = replace(run, preset=args.preset or run.preset, data=replace(run.data, dataset=args.dataset or run.data.dataset),
                  train=replace(run.train, steps=args.steps or run.train.steps))
    result = train_vae(run, args.out, resolve_reporter(args.reporter))
    log.info("VAE PSNR %.2f dB (before training %.2f dB) -> %s", result["psnr"], result["psnr_before"], result["path"])


if __name__ == "__main__":
    main()
