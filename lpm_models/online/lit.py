"""Lightning modules of the distillation stages and the metrics reporter callback.

Stages (run in this order by ``lpm_models.online.distill``):

- ``ode``: ODE-trajectory regression. One chunk-causal pass per batch over copies of the
  clip at the student's times; every copy attends to the copy at the last backbone time
  (the noisy history the streaming backbone caches) and regresses the teacher's endpoint.
- ``dmd``: off-policy DMD on the same teacher-forced student outputs (+ optional regression).
- ``self_forcing``: on-policy DMD on the student's own autoregressive rollouts through its
  caches (gradient through the backbone evaluations from a random step on).
- ``refiner``: DMD of the one-step refiner on rollouts of the frozen backbone.

The DMD stages train a fake-score critic (bidirectional DiT, initialised from the teacher)
with ``critic_steps`` updates per generator update.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from lpm_models.base.dit import LPMDiT
from lpm_models.base.model import BaseLPM
from lpm_models.base.sampler import Guidance
from lpm_models.online.dmd import critic_loss, dmd_loss, ode_regression_loss, x0_from_velocity
from lpm_models.online.generator import draw_noise
from lpm_models.online.model import OnlineLPM
from lpm_models.online.samples import batch_conditions, rollout

log = logging.getLogger(__name__)

STAGES = ("ode", "dmd", "self_forcing", "refiner")


@dataclass(frozen=True)
class StageSettings:
    """Optimisation settings shared by the stages."""

    lr: float = 1e-4  # ODE regression
    dmd_lr: float = 3e-5  # generator / refiner in the DMD stages
    critic_lr: float = 2e-4
    critic_steps: int = 3  # critic updates per generator update (two time-scale rule)
    critic_warmup: int = 10  # critic-only updates at the start of each DMD stage
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    guidance: Guidance = Guidance(3.0, 2.5)
    dmd_t_range: tuple[float, float] = (0.02, 0.98)
    regression_weight: float = 0.25  # DMD stages: + weight * regression to the teacher's paired sample


def make_critic(teacher: BaseLPM) -> LPMDiT:
    """A trainable copy of the teacher DiT (the fake-score model)."""
    critic = copy.deepcopy(teacher.dit)
    critic.train()
    for p in critic.parameters():
        p.requires_grad_(True)
    return critic


def teacher_forced_x0(student: OnlineLPM, batch: dict[str, Tensor]) -> Tensor:
    """Student clean estimates at every backbone time from teacher ODE states: (S, B, T, C, h, w).

    Copy S - 1 (the last backbone time) is the history every copy attends to.
    """
    times = student.online.backbone_times
    cond = batch_conditions(batch)
    states = batch["states"]  # (B, S, T, C, h, w)
    b, s, n = states.shape[:3]
    order = [s - 1] + list(range(s - 1))
    groups = [states[:, i] for i in order]
    t = [torch.full((b, n), times[i], device=states.device) for i in order]
    v = student.dit.forward_sequence(groups, t, cond, history_group=0)
    x0 = [x0_from_velocity(g, tt, vv) for g, tt, vv in zip(groups, t, v)]
    back = [x0[order.index(i)] for i in range(s)]
    return torch.stack(back)


class StageModule(L.LightningModule):
    """One distillation stage over a frozen teacher; ``last_stats`` feeds the reporter."""

    def __init__(self, stage: str, student: OnlineLPM, teacher: BaseLPM, settings: StageSettings,
                 critic: LPMDiT | None = None) -> None:
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")
        if stage == "refiner" and student.refiner is None:
            raise ValueError("the refiner stage needs a student with a refiner")
        self.stage = stage
        self.student = student
        self.teacher = teacher
        self.settings = settings
        if stage == "ode":
            critic = None
        elif critic is None:
            critic = make_critic(teacher)
        self.critic = critic
        self.automatic_optimization = stage == "ode"
        self.last_stats: dict[str, float] = {}
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        for p in self.student.parameters():
            p.requires_grad_(False)
        for p in self.trainable().parameters():
            p.requires_grad_(True)

    def trainable(self) -> torch.nn.Module:
        return self.student.refiner if self.stage == "refiner" else self.student.dit  # type: ignore[return-value]

    def train(self, mode: bool = True) -> StageModule:
        super().train(mode)
        self.teacher.eval()
        self.student.audio_encoder.eval()
        return self

    def configure_optimizers(self) -> object:
        s = self.settings
        lr = s.lr if self.stage == "ode" else s.dmd_lr
        gen = torch.optim.AdamW(self.trainable().parameters(), lr=lr, weight_decay=s.weight_decay, betas=(0.9, 0.999))
        if self.critic is None:
            return gen
        critic = torch.optim.AdamW(self.critic.parameters(), lr=s.critic_lr, weight_decay=s.weight_decay, betas=(0.9, 0.999))
        return [gen, critic]

    # ------------------------------------------------------------ samples
    def student_sample(self, batch: dict[str, Tensor]) -> Tensor:
        """Student samples with gradient: teacher-forced estimates (S, B, T, C, h, w) for ``dmd``,
        else the student's own rollout from the teacher's initial noise (1, B, T, C, h, w)."""
        if self.stage == "dmd":
            return teacher_forced_x0(self.student, batch)
        model = self.student
        c = model.online.chunk_latents
        init = batch["noise"]  # (B, T, C, h, w): the teacher's initial noise, so samples pair up
        b, chunks, hw = init.shape[0], init.shape[1] // c, model.cfg.latent_size

        def noise_fn(j: int) -> list[Tensor]:
            fresh = draw_noise(model, b, hw, None, device=init.device)
            return [init[:, j * c : (j + 1) * c]] + fresh[1:]

        if self.stage == "self_forcing":
            grad_from = random.randrange(model.online.backbone_steps)
            out = rollout(model, batch_conditions(batch), chunks, noise_fn, refine=False, grad_from=grad_from)
        else:
            out = rollout(model, batch_conditions(batch), chunks, noise_fn, refine=True, refiner_grad=True)
        return out[None]

    # ------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        if self.stage == "ode":
            forced = teacher_forced_x0(self.student, batch)
            loss = ode_regression_loss(forced, batch["x0"][None].expand_as(forced))
            self._record({"ode_loss": loss.detach()})
            return loss
        self._dmd_step(batch)
        return None

    def _dmd_step(self, batch: dict[str, Tensor]) -> None:
        s = self.settings
        gen_opt, critic_opt = self.optimizers()  # type: ignore[misc]
        cond = batch_conditions(batch)
        samples = self.student_sample(batch)  # (G, B, T, C, h, w)
        x0 = samples.flatten(0, 1)
        cond_rep = cond.repeat(samples.shape[0]) if samples.shape[0] > 1 else cond
        stats: dict[str, Tensor] = {}
        warmup = s.critic_warmup if self.global_step == 0 else 0
        for _ in range(warmup):  # fit the fake score to the current student before trusting it
            stats.update(self._critic_update(critic_opt, x0, cond_rep))
        loss, dmd_stats = dmd_loss(x0, cond_rep, self.teacher.dit, self.critic, s.guidance, t_range=s.dmd_t_range)
        stats.update(dmd_stats)
        if s.regression_weight > 0:
            reg = ode_regression_loss(samples, batch["x0"][None].expand_as(samples))
            loss = loss + s.regression_weight * reg
            stats["regression_loss"] = reg.detach()
        gen_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        stats["gen_grad_norm"] = torch.nn.utils.clip_grad_norm_(self.trainable().parameters(), s.grad_clip)
        gen_opt.step()
        for _ in range(s.critic_steps):
            stats.update(self._critic_update(critic_opt, x0, cond_rep))
        self._record(stats)

    def _critic_update(self, opt: torch.optim.Optimizer, x0: Tensor, cond: object) -> dict[str, Tensor]:
        c_loss, c_stats = critic_loss(self.critic, x0.detach(), cond, self.student.cfg.flow)  # type: ignore[arg-type]
        opt.zero_grad(set_to_none=True)
        self.manual_backward(c_loss)
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.settings.grad_clip)  # type: ignore[union-attr]
        opt.step()
        return c_stats

    def _record(self, stats: dict[str, Tensor]) -> None:
        self.last_stats = {k: float(v) for k, v in stats.items()}
        self.log_dict({f"{self.stage}/{k}": v for k, v in self.last_stats.items()}, on_step=True, prog_bar=False,
                      batch_size=1)


class DistillReporter(L.Callback):
    """Forwards per-step stage metrics to ``report(metrics, step)`` (e.g. MLflow) and a JSON-lines file,
    and logs progress with rate and ETA every ``every`` steps."""

    def __init__(self, report: Callable[[dict[str, float], int], None] | None = None,
                 jsonl: str | Path | None = None, every: int = 10, step_offset: int = 0) -> None:
        self.report = report
        self.jsonl = Path(jsonl) if jsonl else None
        self.every = max(1, every)
        self.step_offset = step_offset
        self._t0 = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        stage = getattr(pl_module, "stage", "distill")
        stats = getattr(pl_module, "last_stats", {})
        done = batch_idx + 1 + trainer.current_epoch * max(1, trainer.num_training_batches)
        step = self.step_offset + done
        metrics = {f"{stage}/{k}": v for k, v in stats.items()}
        if self.report is not None and metrics:
            self.report(metrics, step)
        if self.jsonl is not None:
            self.jsonl.parent.mkdir(parents=True, exist_ok=True)
            with self.jsonl.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else done
        if done % self.every == 0 or done == total:
            rate = done / max(time.perf_counter() - self._t0, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            shown = ", ".join(f"{k} {v:.4g}" for k, v in stats.items())
            log.info("%s step %d/%d (%.2f it/s, ETA %.0f s): %s", stage, done, total, rate, eta, shown)
