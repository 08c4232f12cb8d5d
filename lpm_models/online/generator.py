"""Few-step chunk generation: N-step backbone over a noisy-history cache + 1-step refiner.

For chunk j (times ``tau_0 = 1 > tau_1 > ... > tau_{N-1}`` from ``OnlineConfig``)::

    x = noise_0
    for i:  v = backbone(x, tau_i | backbone cache);  x0 = x - tau_i v
            x = x + (tau_{i+1} - tau_i) v                         ("ode" update, i < N - 1)
            or x = (1 - tau_{i+1}) x0 + tau_{i+1} noise_{i+1}      ("fresh" re-noising)
    backbone cache += keys of the last evaluation ("noisy" history, free)
                      or of one extra evaluation of the output at t = 0 ("clean")
    refiner:  x_r = (1 - t_r) x0 + t_r noise_N;  out = x_r - t_r refiner(x_r, t_r | refiner cache)
    refiner cache += keys of that evaluation (its input is the backbone's clean estimate)

Everything the stream needs next lives in the returned ``StreamState``; the same code runs
inference (no grad) and training rollouts (gradient through chosen evaluations only, caches
detached after each chunk, as in Self-Forcing).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from lpm_models.base.conditioning import LPMConditions
from lpm_models.online.cache import KVCache
from lpm_models.online.model import OnlineLPM


@dataclass(frozen=True)
class StreamState:
    """Caches of one stream: backbone (noisy or clean history) and refiner (clean history)."""

    backbone: KVCache
    refiner: KVCache | None

    @property
    def chunk_index(self) -> int:
        return self.backbone.next_index

    def detach(self) -> StreamState:
        return StreamState(self.backbone.detach(), None if self.refiner is None else self.refiner.detach())


@dataclass(frozen=True)
class ChunkOutput:
    """latents: (B, c, C, h, w) the chunk's output; backbone_x0: the backbone's clean estimate
    before refinement; state: the stream after committing this chunk."""

    latents: Tensor
    backbone_x0: Tensor
    state: StreamState


def noise_count(model: OnlineLPM) -> int:
    """Noise tensors one chunk consumes (backbone steps + one for a refiner, used or not)."""
    return model.online.backbone_steps + int(model.refiner is not None)


def uses_refiner(model: OnlineLPM) -> bool:
    return model.online.refiner and model.refiner is not None


def draw_noise(model: OnlineLPM, batch: int, latent_hw: tuple[int, int], generator: torch.Generator | None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """Fresh Gaussian noise for one chunk: ``noise_count`` tensors (B, c, C, h, w)."""
    shape = (batch, model.online.chunk_latents, model.cfg.dit.in_channels, *latent_hw)
    return [torch.randn(shape, generator=generator, device=device, dtype=dtype) for _ in range(noise_count(model))]


def start_stream(model: OnlineLPM, refs: Tensor | None, ref_mask: Tensor | None = None, *,
                 batch: int | None = None, latent_hw: tuple[int, int] | None = None) -> StreamState:
    """Caches holding the reference keys of the backbone and (if the model has one) the refiner.

    refs: (B, R, C, h, w) clean reference latents (or None with batch / latent_hw).
    """
    backbone = model.dit.encode_references(refs, ref_mask, batch=batch, latent_hw=latent_hw)
    refiner = None
    if model.refiner is not None:
        refiner = model.refiner.encode_references(refs, ref_mask, batch=batch, latent_hw=latent_hw)
    return StreamState(backbone, refiner)


def _grad(enabled: bool) -> AbstractContextManager[None]:
    return nullcontext() if enabled else torch.no_grad()


def run_backbone(
    model: OnlineLPM, cache: KVCache, cond: LPMConditions, noise: list[Tensor], grad_from: int | None = None,
) -> tuple[Tensor, KVCache]:
    """N backbone evaluations; returns (clean estimate x0 (B, c, C, h, w), cache after the last evaluation).

    grad_from: evaluations with index >= grad_from keep autograd history (None: none).
    """
    times = model.online.backbone_times
    if len(noise) < len(times):
        raise ValueError(f"need {len(times)} backbone noise tensors, got {len(noise)}")
    x = noise[0]
    b = x.shape[0]
    new_cache = cache
    x0 = x
    for i, tau in enumerate(times):
        with _grad(grad_from is not None and i >= grad_from):
            t = torch.full((b,), tau, device=x.device, dtype=x.dtype)
            v, new_cache = model.dit(x, t, cond, cache)
            x0 = x - tau * v
            if i + 1 < len(times):
                nxt = times[i + 1]
                if model.online.backbone_update == "ode":
                    x = x + (nxt - tau) * v
                else:
                    x = (1.0 - nxt) * x0 + nxt * noise[i + 1]
    return x0, new_cache


def run_refiner(
    model: OnlineLPM, cache: KVCache, cond: LPMConditions, x0: Tensor, noise: Tensor, grad: bool = False,
) -> tuple[Tensor, KVCache]:
    """One refiner evaluation of the backbone's clean estimate re-noised to ``refiner_t``."""
    if model.refiner is None:
        raise ValueError("the model has no refiner")
    t_r = model.online.refiner_t
    with _grad(grad):
        x_r = (1.0 - t_r) * x0 + t_r * noise
        t = torch.full((x0.shape[0],), t_r, device=x0.device, dtype=x0.dtype)
        v, new_cache = model.refiner(x_r, t, cond, cache)
        return x_r - t_r * v, new_cache


def generate_chunk(
    model: OnlineLPM,
    state: StreamState,
    cond: LPMConditions,
    noise: list[Tensor],
    *,
    grad_from: int | None = None,
    refiner_grad: bool = False,
    detach_cache: bool = False,
    refine: bool | None = None,
) -> ChunkOutput:
    """Generate chunk ``state.chunk_index`` and commit its history to the caches.

    cond: text + audio tokens visible to this chunk (see ``StreamingConditioner``);
    noise: ``noise_count(model)`` tensors (B, c, C, h, w). Training options: grad_from
    (backbone evaluations with gradient), refiner_grad, detach_cache (cut the committed
    keys from autograd); refine: override the configured refiner use (None: ``OnlineConfig.refiner``).
    """
    refining = uses_refiner(model) if refine is None else refine
    if refining and model.refiner is None:
        raise ValueError("refine=True needs a model with a refiner")
    x0, bb_cache = run_backbone(model, state.backbone, cond, noise, grad_from)
    out, ref_cache = x0, state.refiner
    if refining:
        if state.refiner is None:
            raise ValueError("the stream was started without a refiner cache")
        out, ref_cache = run_refiner(model, state.refiner, cond, x0, noise[model.online.backbone_steps], refiner_grad)
    if model.online.backbone_history == "clean":
        with torch.no_grad():
            zeros = torch.zeros(out.shape[0], device=out.device, dtype=out.dtype)
            _, bb_cache = model.dit(out.detach(), zeros, cond, state.backbone)
    new_state = StreamState(bb_cache, ref_cache)
    return ChunkOutput(out, x0, new_state.detach() if detach_cache else new_state)
