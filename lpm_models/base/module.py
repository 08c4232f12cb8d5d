"""Lightning module for Base LPM training: FSDP2 sharding, curriculum, EMA, previews.

``configure_model`` (idempotent) builds the BaseLPM from a fixed seed (identical on every
rank), turns on per-DiTBlock activation checkpointing and, when the strategy provides a
device mesh, applies FSDP2 ``fully_shard`` to every DiTBlock, then to the DiT and the audio
encoder. Those two are the FSDP roots (rather than BaseLPM itself) because the training
loss and the sampler call them directly, never ``BaseLPM.forward``; FSDP2 gathers a
unit's parameters in that unit's forward hook.

The curriculum is a list of phases (``PhaseConfig``) switched by global step: condition
dropout, number of reference slots, and clean context latents (temporal extension).
Randomness of a step (timesteps, noise, dropout, context) comes from a generator seeded by
(seed, step, rank), so a resumed run draws exactly what the uninterrupted run would.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from lpm_models.base.checkpoint import config_to_dict
from lpm_models.base.data import TrainBatch, load_frozen_vae
from lpm_models.base.ema import ShardLocalEMA
from lpm_models.base.model import BaseLPM, LPMBatch
from lpm_models.configs import ConditionDropout, LPMConfig
from lpm_models.vae.model import VideoVAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseConfig:
    """One curriculum phase.

    refs: reference slots used (1 = global appearance only, up to the preset's max_refs);
    context_frames / context_prob: with probability context_prob a step keeps 1..context_frames
    leading latents clean (t = 0, no loss) as continuation context.
    """

    name: str
    steps: int
    dropout: ConditionDropout = field(default_factory=ConditionDropout)
    refs: int = 1
    context_frames: int = 0
    context_prob: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and curriculum settings (phases empty: ``default_curriculum(max_steps)``)."""

    max_steps: int = 2000
    phases: tuple[PhaseConfig, ...] = ()
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping (the norm is still logged)
    ema: bool = True
    ema_decay: float = 0.999
    seed: int = 0
    preview_steps: int = 8  # sampler steps of a preview clip


def default_curriculum(total_steps: int, cfg: LPMConfig) -> tuple[PhaseConfig, ...]:
    """The paper's order over ``total_steps``: speak-audio alignment (30%), listen audio (25%),
    multi-reference (25%), temporal extension (20%)."""
    if total_steps < 4:
        raise ValueError(f"the default curriculum needs >= 4 steps, got {total_steps}")
    base = ConditionDropout()
    sizes = [int(total_steps * f) for f in (0.3, 0.25, 0.25)]
    sizes.append(total_steps - sum(sizes))
    context = max(1, min(3, cfg.latent_frames(cfg.clip_frames) // 3))
    return (
        PhaseConfig("speak_alignment", sizes[0], replace(base, audio_other=1.0), refs=1),
        PhaseConfig("listen_audio", sizes[1], base, refs=1),
        PhaseConfig("multi_reference", sizes[2], base, refs=cfg.max_refs),
        PhaseConfig("temporal_extension", sizes[3], base, refs=cfg.max_refs, context_frames=context, context_prob=0.5),
    )


class Curriculum:
    """Phases in order; the last phase continues past the planned total."""

    def __init__(self, phases: tuple[PhaseConfig, ...], cfg: LPMConfig) -> None:
        if not phases:
            raise ValueError("a curriculum needs at least one phase")
        latents = cfg.latent_frames(cfg.clip_frames)
        for p in phases:
            if p.steps < 1 or not 1 <= p.refs <= cfg.max_refs or not 0 <= p.context_frames < latents:
                raise ValueError(f"phase {p.name!r}: need steps >= 1, 1 <= refs <= {cfg.max_refs}, "
                                 f"0 <= context_frames < {latents} latents; got {p}")
        self.phases = phases
        self.ends = [sum(p.steps for p in phases[: i + 1]) for i in range(len(phases))]

    @property
    def total_steps(self) -> int:
        return self.ends[-1]

    def index_at(self, step: int) -> int:
        return next((i for i, end in enumerate(self.ends) if step < end), len(self.phases) - 1)

    def phase_at(self, step: int) -> PhaseConfig:
        return self.phases[self.index_at(step)]


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def shard_base_lpm(model: BaseLPM, mesh: Any, reshard_after_forward: bool = True) -> None:
    """FSDP2: each DiTBlock, then the DiT and the audio encoder (the units called directly)."""
    for block in model.dit.blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model.dit, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model.audio_encoder, mesh=mesh, reshard_after_forward=reshard_after_forward)


class BaseLPMTrainingModule(L.LightningModule):
    """Trains a BaseLPM with flow matching (see module docstring).

    ``vae_path``: the frozen VAE used to encode pixel batches and decode previews.
    """

    def __init__(self, cfg: LPMConfig, train: TrainConfig, vae_path: str | None = None,
                 activation_checkpointing: bool = True, reshard_after_forward: bool = True) -> None:
        super().__init__()
        self.cfg, self.train_cfg, self.vae_path = cfg, train, vae_path
        self.activation_checkpointing, self.reshard_after_forward = activation_checkpointing, reshard_after_forward
        self.curriculum = Curriculum(train.phases or default_curriculum(train.max_steps, cfg), cfg)
        self.model: BaseLPM | None = None
        self.vae: VideoVAE | None = None
        self.ema: ShardLocalEMA | None = None
        self.preview_batch: TrainBatch | None = None
        self._phase_index = -1

    # ------------------------------------------------------------------ building
    def _data_parallel_mesh(self) -> Any:
        mesh = self._device_mesh
        if mesh is None:
            return None
        names = mesh.mesh_dim_names or ()
        return mesh["data_parallel"] if "data_parallel" in names else mesh

    def configure_model(self) -> None:
        if self.model is not None:
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train_cfg.seed)
            model = BaseLPM(self.cfg)
        model.dit.gradient_checkpointing = self.activation_checkpointing  # per DiTBlock
        mesh = self._data_parallel_mesh()
        if mesh is not None:
            shard_base_lpm(model, mesh, self.reshard_after_forward)
        self.model = model
        self.vae = load_frozen_vae(self.cfg, self.vae_path, self.train_cfg.seed)

    def train(self, mode: bool = True) -> BaseLPMTrainingModule:
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()  # frozen
        return self

    def _require_model(self) -> BaseLPM:
        if self.model is None:
            raise RuntimeError("call configure_model() first (the Trainer does this in fit)")
        return self.model

    def configure_optimizers(self) -> dict[str, Any]:
        model, t = self._require_model(), self.train_cfg
        if t.ema and self.ema is None:
            self.ema = ShardLocalEMA(model, t.ema_decay)  # after sharding and device placement
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and not name.endswith("modulation") else no_decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=t.lr, betas=t.betas)
        total = self.curriculum.total_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t.warmup_steps, total, t.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ one step
    def phase(self, step: int) -> PhaseConfig:
        """The phase at ``step``; switching sets the model's condition dropout."""
        index = self.curriculum.index_at(step)
        phase = self.curriculum.phases[index]
        if index != self._phase_index:
            self._require_model().cfg = replace(self.cfg, dropout=phase.dropout)  # read by training_loss
            self._phase_index = index
            log.info("curriculum phase %d/%d %r at step %d (refs %d, context <= %d)", index + 1,
                     len(self.curriculum.phases), phase.name, step, phase.refs, phase.context_frames)
        return phase

    @torch.no_grad()
    def lpm_batch(self, batch: TrainBatch, refs: int) -> LPMBatch:
        """Latents (VAE-encoded here when the batch holds pixels) and the first ``refs`` references."""
        latents, ref_latents = batch.latents, batch.ref_latents
        if latents is None or ref_latents is None:
            if self.vae is None or batch.video is None or batch.ref_images is None:
                raise ValueError("batch has neither latents nor pixels (video, ref_images) to encode")
            latents = self.vae.encode(batch.video)  # (B, T', C, h, w)
            b, r = batch.ref_images.shape[:2]
            ref_latents = self.vae.encode(batch.ref_images.flatten(0, 1)[:, None])[:, 0].unflatten(0, (b, r))
        mask = batch.ref_mask[:, :refs]
        return LPMBatch(latents=latents, audio_self=batch.audio_self, audio_other=batch.audio_other,
                        text=batch.text, text_mask=batch.text_mask,
                        refs=ref_latents[:, :refs] * mask[:, :, None, None, None], ref_mask=mask)

    def _rank(self) -> int:
        if self._trainer is not None:
            return self.global_rank
        return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0

    def _step_seed(self, step: int) -> int:
        return (self.train_cfg.seed * 1_000_003 + step * 7919 + self._rank() * 104_729) % (2**63 - 1)

    def context_frames(self, phase: PhaseConfig, step: int) -> int:
        """Clean context latents for this step (deterministic in seed, step, rank)."""
        if phase.context_frames == 0 or phase.context_prob <= 0:
            return 0
        g = torch.Generator().manual_seed(self._step_seed(step) + 1)
        if float(torch.rand((), generator=g)) >= phase.context_prob:
            return 0
        return int(torch.randint(1, phase.context_frames + 1, (), generator=g))

    def loss_for_step(self, batch: TrainBatch, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Flow-matching loss of ``batch`` as trained at global ``step`` (phase, context, seeds)."""
        model = self._require_model()
        phase = self.phase(step)
        lpm = self.lpm_batch(batch, phase.refs)
        generator = torch.Generator(device=lpm.latents.device).manual_seed(self._step_seed(step))
        ctx = self.context_frames(phase, step)
        loss, stats = model.training_loss(lpm, generator=generator, context_frames=ctx)
        stats["context_frames"] = torch.tensor(float(ctx))
        stats["phase"] = torch.tensor(float(self._phase_index))
        return loss, stats

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        if self.preview_batch is None:
            self.preview_batch = batch.to("cpu")
        loss, stats = self.loss_for_step(batch, self.global_step)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True, sync_dist=True, batch_size=batch.size)
        rest = {f"train/{k}": v.float() for k, v in stats.items() if k != "loss"}
        rest["train/lr"] = torch.tensor(self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log_dict(rest, on_step=True, batch_size=batch.size)
        return loss

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, TrainBatch):
            return batch.to(device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @torch.no_grad()
    def clip_gradients_(self) -> Tensor:
        """Clip the global grad norm (FSDP2 DTensor grads: the norm is reduced over ranks); returns it."""
        grads = [p for p in self._require_model().parameters() if p.grad is not None]
        max_norm = self.train_cfg.grad_clip if self.train_cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm, foreach=True)
        return norm.full_tensor() if isinstance(norm, DTensor) else norm

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.log("train/grad_norm", self.clip_gradients_(), on_step=True)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.ema is not None:  # before any callback sees the step (checkpoints include this update)
            self.log("train/ema_decay", self.ema.update(self._require_model()), on_step=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lpm"] = {"config": config_to_dict(self.cfg), "train": config_to_dict(self.train_cfg),
                             "vae_path": self.vae_path, "phase": self._phase_index}

    # ------------------------------------------------------------------ previews
    @torch.no_grad()
    def preview(self, batch: TrainBatch | None = None, steps: int | None = None, use_ema: bool = True) -> Tensor:
        """Sample clips for a batch's audio/text/references -> (B, T, H, W, 3) uint8 frames.

        Collective under FSDP2: every rank must call it. Default batch: the first sample seen.
        """
        model, vae = self._require_model(), self.vae
        batch = batch if batch is not None else self.preview_batch
        if batch is None or vae is None:
            raise RuntimeError("no preview batch yet (train one step first or pass a batch)")
        lpm = self.lpm_batch(batch.to(self.device), self.cfg.max_refs)
        swap = self.ema.swapped(model) if use_ema and self.ema is not None else nullcontext()
        was_training = model.training
        model.eval()
        try:
            with swap:
                latents = model.generate(lpm.audio_self, lpm.audio_other, lpm.text, lpm.text_mask, lpm.refs,
                                         lpm.ref_mask, steps=steps or self.train_cfg.preview_steps,
                                         generator=torch.Generator(device=self.device).manual_seed(self.train_cfg.seed))
                for unit in model.modules():
                    if isinstance(unit, FSDPModule):
                        unit.reshard()
        finally:
            model.train(was_training)
        video = vae.decode(latents.float()).clamp(-1, 1)  # (B, T, 3, H, W)
        return ((video + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu()
