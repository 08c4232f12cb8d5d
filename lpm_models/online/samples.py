"""Distillation data: conditions from curated windows, teacher trajectories, rollouts, evaluation.

Distillation needs no ground-truth video: each sample is a set of conditions (audio tokens of
both channels, a caption embedding, reference latents) taken from a curated dataset window,
plus a fixed initial noise and the teacher's guided ODE trajectory from it. Held-out samples
measure the effect of each stage: the student streams chunk by chunk from the same initial
noise and is compared with the teacher's samples (paired MSE and a latent Frechet distance).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lpm_models.base.conditioning import LPMConditions
from lpm_models.base.model import BaseLPM
from lpm_models.base.sampler import Guidance
from lpm_models.online.dmd import latent_fd
from lpm_models.online.generator import draw_noise, generate_chunk, start_stream
from lpm_models.online.model import OnlineLPM
from lpm_models.online.teacher import teacher_trajectory
from lpm_models.vae.model import VideoVAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillSample:
    """One clip's conditions and teacher trajectory (no batch dimension).

    audio_self / audio_other: (F, audio_dim) tokens from global frame 0; text: (L, text_dim),
    text_mask: (L,); refs: (R, C, h, w), ref_mask: (R,); noise: (T, C, h, w) initial noise;
    states: (S, T, C, h, w) teacher states at the student times; x0: (T, C, h, w) the
    teacher's sample.
    """

    audio_self: Tensor
    audio_other: Tensor
    text: Tensor
    text_mask: Tensor
    refs: Tensor
    ref_mask: Tensor
    noise: Tensor
    states: Tensor
    x0: Tensor


def collate(samples: Sequence[DistillSample]) -> dict[str, Tensor]:
    """Stack samples into a batch dict (text padded to the longest prompt)."""
    length = max(s.text.shape[0] for s in samples)
    text = torch.zeros(len(samples), length, samples[0].text.shape[1])
    mask = torch.zeros(len(samples), length, dtype=torch.bool)
    for i, s in enumerate(samples):
        text[i, : s.text.shape[0]] = s.text
        mask[i, : s.text.shape[0]] = s.text_mask
    out = {k: torch.stack([getattr(s, k) for s in samples]) for k in
           ("audio_self", "audio_other", "refs", "ref_mask", "noise", "states", "x0")}
    out.update(text=text, text_mask=mask)
    return out


def batch_conditions(batch: dict[str, Tensor]) -> LPMConditions:
    return LPMConditions(text=batch["text"], text_mask=batch["text_mask"], audio_self=batch["audio_self"],
                         audio_other=batch["audio_other"], refs=batch["refs"], ref_mask=batch["ref_mask"])


# ---------------------------------------------------------------- conditions
PromptFn = Callable[[list[str]], tuple[Tensor, Tensor]]


@torch.no_grad()
def conditions_from_windows(
    items: Iterable[dict[str, Any]], teacher: BaseLPM, vae: VideoVAE, encode_prompts: PromptFn,
) -> list[dict[str, Tensor]]:
    """Loader items (``lpm_models.data.dataset.loader`` windows) -> per-clip condition tensors.

    References: the appearance image first, then pose and expression views, up to the
    preset's ``max_refs``, resized to the model resolution and VAE-encoded.
    """
    cfg = teacher.cfg
    out = []
    for item in items:
        images = [item["ref_appearance"]]
        images += [im for im, ok in zip(item["ref_pose"], item["ref_pose_mask"]) if ok]
        images += [im for im, ok in zip(item["ref_expr"], item["ref_expr_mask"]) if ok]
        images = images[: cfg.max_refs]
        pixels = F.interpolate(torch.stack(images), size=(cfg.height, cfg.width), mode="bilinear",
                               antialias=True, align_corners=False)
        refs = torch.zeros(cfg.max_refs, cfg.vae.latent_channels, *cfg.latent_size)
        refs[: len(images)] = vae.encode_image(pixels)[:, 0]
        ref_mask = torch.arange(cfg.max_refs) < len(images)
        a_self, a_other = teacher.encode_audio(item["audio_self"][None], item["audio_other"][None])
        text, text_mask = encode_prompts([item["caption"]])
        out.append({"audio_self": a_self[0], "audio_other": a_other[0], "text": text[0], "text_mask": text_mask[0],
                    "refs": refs, "ref_mask": ref_mask})
    return out


@torch.no_grad()
def attach_trajectories(
    conditions: Sequence[dict[str, Tensor]], teacher: BaseLPM, times: tuple[float, ...], latents: int, *,
    substeps: int, guidance: Guidance, seed: int, batch_size: int = 4,
) -> list[DistillSample]:
    """Run the teacher's guided ODE from seeded noise for each condition set."""
    cfg = teacher.cfg
    g = torch.Generator().manual_seed(seed)
    samples: list[DistillSample] = []
    for start in range(0, len(conditions), batch_size):
        part = conditions[start : start + batch_size]
        batch = collate([DistillSample(**c, noise=torch.zeros(0), states=torch.zeros(0), x0=torch.zeros(0)) for c in part])
        cond = batch_conditions(batch)
        noise = torch.randn(len(part), latents, cfg.vae.latent_channels, *cfg.latent_size, generator=g)
        traj = teacher_trajectory(teacher, cond, noise, times, substeps=substeps, guidance=guidance)
        for i, c in enumerate(part):
            samples.append(DistillSample(**c, noise=noise[i], states=traj.states[:, i], x0=traj.x0[i]))
        log.info("teacher trajectories: %d / %d", len(samples), len(conditions))
    return samples


# ---------------------------------------------------------------- rollouts
NoiseFn = Callable[[int], list[Tensor]]


def rollout(
    model: OnlineLPM, cond: LPMConditions, chunks: int, noise_fn: NoiseFn, *, refine: bool | None = None,
    grad_from: int | None = None, refiner_grad: bool = False,
) -> Tensor:
    """The student's own autoregressive generation through its caches: (B, chunks * c, C, h, w).

    cond: clip conditions (references, audio from frame 0); noise_fn(j) gives chunk j's
    noise list. Caches are detached after every chunk (gradient stays within a chunk).
    """
    state = start_stream(model, cond.refs, cond.ref_mask)
    outs = []
    for j in range(chunks):
        out = generate_chunk(model, state, cond, noise_fn(j), grad_from=grad_from, refiner_grad=refiner_grad,
                             detach_cache=True, refine=refine)
        state = out.state
        outs.append(out.latents)
    return torch.cat(outs, dim=1)


@torch.no_grad()
def evaluate(model: OnlineLPM, samples: Sequence[DistillSample], *, refine: bool | None = None,
             seed: int = 1234, batch_size: int = 4) -> dict[str, float]:
    """Student vs teacher on held-out samples: paired MSE and latent FD (lower is better).

    The student starts every chunk from the teacher's initial noise of those latents; its
    re-noising draws come from a fixed seed, so repeated evaluations are comparable.
    """
    was_training = model.training
    model.eval()
    c = model.online.chunk_latents
    g = torch.Generator().manual_seed(seed)
    students, teachers = [], []
    for start in range(0, len(samples), batch_size):
        batch = collate(samples[start : start + batch_size])
        cond = batch_conditions(batch)
        b, latents = batch["noise"].shape[:2]
        hw = model.cfg.latent_size

        def noise_fn(j: int) -> list[Tensor]:
            extra = draw_noise(model, b, hw, g)
            return [batch["noise"][:, j * c : (j + 1) * c]] + extra[1:]

        students.append(rollout(model, cond, latents // c, noise_fn, refine=refine))
        teachers.append(batch["x0"])
    model.train(was_training)
    s, t = torch.cat(students), torch.cat(teachers)
    return {"mse_to_teacher": float((s - t).pow(2).mean()), "latent_fd": latent_fd(s, t),
            "sample_std": float(s.std())}
