"""Visual quality: pixel fidelity where ground truth is aligned, feature distances with weights.

- ``psnr`` (dB, higher is better; identical frames are capped at :data:`PSNR_CAP`) and ``ssim``
  (in [-1, 1], 1 = identical) between the evaluated video and an aligned ground-truth video, on
  every ``every``-th frame (scikit-image implementations, RGB, data range 255).
- ``fid``: Frechet distance between Inception-v3 pool features (2048-d) of the video's frames
  and the ground-truth frames; needs Inception weights: a TorchScript module (e.g. the
  ``inception-2015-12-05`` feature network of the StyleGAN / clean-FID tools, called with
  ``return_features=True`` when its signature has it) or a torchvision ``inception_v3`` state dict
  (ImageNet normalisation; figures then differ from TF-Inception FID).
- ``fvd``: Frechet distance between I3D features of 16-frame clips; needs a TorchScript I3D
  (the ``i3d_torchscript.pt`` used by StyleGAN-V and the FVD comparisons; inputs (B, 3, 16, 224,
  224) in [-1, 1], called with ``rescale=False, resize=False, return_features=True``).

Per-case FID / FVD rest on few samples and are noisy; a runner should pool
:func:`frame_features` / :func:`clip_features` over cases and call :func:`~.stats.frechet_of`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from quality.bench.features import VideoSource
from quality.bench.stats import frechet_of
from quality.bench.weights import is_torchscript, load_state_dict, load_torchscript

log = logging.getLogger(__name__)

PSNR_CAP = 100.0
INCEPTION_HINT = ("pass a TorchScript Inception feature network (inception-2015-12-05.pt) or a torchvision "
                  "inception_v3 state dict")
I3D_HINT = "pass the TorchScript I3D used for FVD (i3d_torchscript.pt)"
CLIP = 16


def pixel_metrics(video: VideoSource, truth: VideoSource, every: int = 5) -> dict[str, Any]:
    """Mean PSNR / SSIM over every ``every``-th frame both videos have (sizes must match)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr, ssim = [], []
    for (i, a), (j, b) in zip(video.frames(), truth.frames()):
        if i % every:
            continue
        if a.shape != b.shape:
            raise ValueError(f"frame {i}: video is {a.shape}, ground truth {b.shape}; PSNR/SSIM need aligned frames")
        same = np.array_equal(a, b)  # skimage divides by a zero error (a RuntimeWarning) on identical frames
        psnr.append(PSNR_CAP if same else min(PSNR_CAP, float(peak_signal_noise_ratio(b, a, data_range=255))))
        ssim.append(float(structural_similarity(b, a, channel_axis=2, data_range=255)))
    if not psnr:
        raise ValueError("no common frames to compare with the ground truth")
    return {"psnr": round(float(np.mean(psnr)), 3), "ssim": round(float(np.mean(ssim)), 4), "pixel_frames": len(psnr)}


def _wants(module: torch.jit.ScriptModule, argument: str) -> bool:
    """Whether a TorchScript module's forward takes ``argument``."""
    return argument in str(getattr(module.forward, "schema", ""))


def load_inception(path: Path | str) -> Callable[[Tensor], Tensor]:
    """Inception feature extractor: (B, 3, H, W) floats 0..255 -> (B, 2048)."""
    if Path(path).is_file() and is_torchscript(path):
        module = load_torchscript(path, "Inception", INCEPTION_HINT)
        if _wants(module, "return_features"):
            return lambda x: module(x, return_features=True)
        return module
    from torchvision.models import inception_v3

    state = load_state_dict(path, "Inception", hint=INCEPTION_HINT)
    model = inception_v3(weights=None, aux_logits="AuxLogits.fc.weight" in state, init_weights=False,
                         transform_input=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} is not a torchvision inception_v3 state dict ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[:2]}); {INCEPTION_HINT}")
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(x: Tensor) -> Tensor:
        x = torch.nn.functional.interpolate(x / 255.0, size=(299, 299), mode="bilinear", align_corners=False)
        return model((x - mean) / std)
    return features


@torch.no_grad()
def frame_features(extractor: Callable[[Tensor], Tensor], video: VideoSource, every: int = 5,
                   batch: int = 16) -> np.ndarray:
    """(N, D) features of every ``every``-th frame."""
    out, pending = [], []
    for index, rgb in video.frames():
        if index % every == 0:
            pending.append(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float())
        if len(pending) == batch:
            out.append(extractor(torch.stack(pending)).flatten(1))
            pending = []
    if pending:
        out.append(extractor(torch.stack(pending)).flatten(1))
    return torch.cat(out).numpy().astype(np.float64)


def load_i3d(path: Path | str) -> Callable[[Tensor], Tensor]:
    """I3D feature extractor: (B, 3, 16, 224, 224) in [-1, 1] -> (B, D)."""
    module = load_torchscript(path, "I3D", I3D_HINT)
    if _wants(module, "return_features"):
        return lambda x: module(x, rescale=False, resize=False, return_features=True)
    return module


@torch.no_grad()
def clip_features(extractor: Callable[[Tensor], Tensor], video: VideoSource, stride: int = CLIP) -> np.ndarray:
    """(M, D) features of consecutive 16-frame clips (starting every ``stride`` frames), 224 x 224."""
    frames = [cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA) for _, rgb in video.frames()]
    starts = range(0, len(frames) - CLIP + 1, stride)
    if not starts:
        raise ValueError(f"FVD needs at least {CLIP} frames, the video has {len(frames)}")
    out = []
    for s in starts:
        clip = torch.from_numpy(np.stack(frames[s:s + CLIP])).permute(3, 0, 1, 2).float()  # (3, 16, 224, 224)
        out.append(extractor((clip / 127.5 - 1.0)[None]).flatten(1))
    return torch.cat(out).numpy().astype(np.float64)


def feature_metrics(video: VideoSource, truth: VideoSource, inception: Path | str | None = None,
                    i3d: Path | str | None = None, every: int = 5) -> dict[str, Any]:
    """Per-case FID (with Inception weights) and FVD (with I3D weights) against the ground-truth video."""
    out: dict[str, Any] = {}
    if inception is not None:
        extractor = load_inception(inception)
        out["fid"] = round(frechet_of(frame_features(extractor, video, every), frame_features(extractor, truth, every)), 4)
    if i3d is not None:
        extractor = load_i3d(i3d)
        a, b = clip_features(extractor, video, CLIP // 2), clip_features(extractor, truth, CLIP // 2)
        out["fvd"] = round(frechet_of(a, b), 4)
    return out
