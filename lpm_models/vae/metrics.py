"""Reconstruction metrics for video in [-1, 1]."""

from __future__ import annotations

import torch
from torch import Tensor


def psnr(prediction: Tensor, target: Tensor, data_range: float = 2.0, reduction: str = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB.

    prediction, target: (B, ...) same shape; ``data_range`` is max - min of the signal
    (2.0 for [-1, 1]). Predictions are clamped to the target range first.
    reduction: "mean" -> scalar over the batch, "none" -> (B,).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"shape mismatch {tuple(prediction.shape)} vs {tuple(target.shape)}")
    lo = -data_range / 2 if target.min() < 0 else 0.0
    pred = prediction.float().clamp(lo, lo + data_range)
    mse = (pred - target.float()).pow(2).flatten(1).mean(dim=1).clamp_min(1e-12)  # (B,)
    value = 10.0 * torch.log10(data_range**2 / mse)
    if reduction == "none":
        return value
    if reduction == "mean":
        return value.mean()
    raise ValueError(f"unknown reduction {reduction!r}")
