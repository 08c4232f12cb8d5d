"""The Base LPM teacher for distillation: loading and guided ODE trajectories.

``teacher_trajectory`` integrates the teacher's guided probability-flow ODE (the Base LPM
sampler's Euler scheme with text/audio guidance, bidirectional over the whole clip) from
noise and records the states at the student's timesteps: the ODE-regression targets, and
the teacher-forced inputs and noisy history of off-policy distillation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import Tensor

from lpm_models.base.conditioning import LPMConditions
from lpm_models.base.model import BaseLPM
from lpm_models.base.sampler import Guidance, guided_velocity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trajectory:
    """states: (S, B, T, C, h, w) teacher ODE states at the S student times (states[0] is the
    noise); x0: (B, T, C, h, w) the teacher's sample; times: the S student times."""

    states: Tensor
    x0: Tensor
    times: tuple[float, ...]

    def at(self, tau: float) -> Tensor:
        return self.states[self.times.index(tau)]


@torch.no_grad()
def teacher_trajectory(
    teacher: BaseLPM, cond: LPMConditions, noise: Tensor, times: tuple[float, ...], *,
    substeps: int, guidance: Guidance,
) -> Trajectory:
    """Guided Euler ODE from ``noise`` (B, T, C, h, w) at t = 1 to t = 0.

    Each interval between consecutive student ``times`` (and from the last one to 0) is
    split into ``substeps`` equal Euler steps. ``cond`` carries references and audio
    covering the clip (audio_start 0).
    """
    if substeps < 1:
        raise ValueError("substeps must be >= 1")
    grid = list(times) + [0.0]
    x = noise.clone()
    b, frames = x.shape[:2]
    states = []
    for lo, hi in zip(grid[:-1], grid[1:]):
        states.append(x.clone())
        ts = torch.linspace(lo, hi, substeps + 1).tolist()
        for a, z in zip(ts[:-1], ts[1:]):
            t = torch.full((b, frames), a, device=x.device, dtype=x.dtype)
            x = x + (z - a) * guided_velocity(teacher.dit, x, t, cond, guidance)
    return Trajectory(torch.stack(states), x, tuple(times))


def load_teacher(path: str | Path, map_location: str | torch.device = "cpu") -> BaseLPM:
    """A frozen Base LPM from a consolidated checkpoint (``lpm_models.base.checkpoint``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist; consolidate a Base LPM run first")
    try:
        from lpm_models.base.checkpoint import load_consolidated
    except ImportError as err:  # pragma: no cover - depends on the Base LPM training package
        raise RuntimeError("lpm_models.base.checkpoint.load_consolidated is needed to read Base LPM checkpoints") from err
    teacher = load_consolidated(path)
    if not isinstance(teacher, BaseLPM):
        raise TypeError(f"{path} did not load as a BaseLPM (got {type(teacher).__name__})")
    return freeze(teacher.to(map_location))


M = TypeVar("M", bound=torch.nn.Module)


def freeze(model: M) -> M:
    """Eval mode, no gradients (teachers and frozen encoders)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
