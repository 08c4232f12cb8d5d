"""SyncNet Sync-C / Sync-D (Chung & Zisserman 2016) from a user-supplied weights file.

No package here ships SyncNet weights, so this module only runs when a user passes the
``syncnet_v2.model`` file of the public SyncNet project (a PyTorch state dict of the ``S``
network below; ``module.``/``__S__.`` key prefixes are accepted). The protocol follows that
project: 25 fps video, 16 kHz audio, 13 MFCCs at 100 Hz (python_speech_features' defaults,
re-implemented here in numpy), 5-frame 224 x 224 BGR face windows vs 20 MFCC frames, audio
shifted over +-``vshift`` frames. Sync-C = median minus minimum of the mean feature distance over
the shifts (higher is better); Sync-D = that minimum (lower is better); the offset is
``vshift - argmin`` as SyncNet prints it.

Face crops come from the face-mesh track instead of SyncNet's S3FD detector: the landmark box
is widened like SyncNet's pipeline (``crop_scale`` 0.4, more room below the chin), so figures are
close to, not identical with, numbers computed with the original face detector.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.fft import dct
from torch import Tensor, nn

from lpm_models.data.curation.crops import square_crop
from lpm_models.data.curation.types import FaceTrack
from quality.bench.features import VideoSource
from quality.bench.weights import load_state_dict

log = logging.getLogger(__name__)

SYNCNET_FPS = 25.0
SYNCNET_RATE = 16000
WINDOW = 5  # video frames per SyncNet input
CROP = 224


def _conv_bn(conv: nn.Module, channels: int, dims: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels), nn.ReLU(inplace=True)]


class SyncNetS(nn.Module):
    """The SyncNet ``S`` network: MFCC (B, 1, 13, 20) and face (B, 3, 5, 224, 224) -> (B, 1024) each."""

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv_bn(nn.Conv2d(1, 64, 3, padding=1), 64, 2), nn.MaxPool2d(1, 1),
            *_conv_bn(nn.Conv2d(64, 192, 3, padding=1), 192, 2), nn.MaxPool2d(3, (1, 2)),
            *_conv_bn(nn.Conv2d(192, 384, 3, padding=1), 384, 2),
            *_conv_bn(nn.Conv2d(384, 256, 3, padding=1), 256, 2),
            *_conv_bn(nn.Conv2d(256, 256, 3, padding=1), 256, 2), nn.MaxPool2d(3, 2),
            *_conv_bn(nn.Conv2d(256, 512, (5, 4)), 512, 2),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netcnnlip = nn.Sequential(
            *_conv_bn(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, 3), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(nn.Conv3d(256, 512, (1, 6, 6)), 512, 3),
        )

    def forward_aud(self, x: Tensor) -> Tensor:
        """x: (B, 1, 13, 20) MFCC windows -> (B, embed_dim)."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: Tensor) -> Tensor:
        """x: (B, 3, 5, 224, 224) BGR 0..255 face windows -> (B, embed_dim)."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: Path | str, device: str = "cpu") -> SyncNetS:
    """A SyncNet ``S`` network with the weights in ``path``; clear errors when missing or incompatible."""
    state = load_state_dict(path, "SyncNet", strip=("module.", "__S__."),
                            hint="download syncnet_v2.model with the SyncNet project's download_model.sh")
    model = SyncNetS()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or wrong:
        raise ValueError(f"{path} is not a SyncNet S state dict: {len(missing)} missing key(s) "
                         f"(e.g. {missing[:2]}), {len(wrong)} with other shapes (e.g. {wrong[:2]})")
    model.load_state_dict(OrderedDict((k, state[k]) for k in expected), strict=True)
    return model.to(device).eval()


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mfcc(signal: np.ndarray, rate: int = SYNCNET_RATE, numcep: int = 13, nfilt: int = 26, nfft: int = 512,
         winlen: float = 0.025, winstep: float = 0.01, preemph: float = 0.97, ceplifter: int = 22) -> np.ndarray:
    """(T, numcep) MFCCs with python_speech_features' defaults (rectangular window, log energy in c0)."""
    x = np.asarray(signal, dtype=np.float64)
    x = np.append(x[0], x[1:] - preemph * x[:-1]) if len(x) else x
    flen, fstep = int(round(winlen * rate)), int(round(winstep * rate))
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / fstep))
    padded = np.concatenate([x, np.zeros((n - 1) * fstep + flen - len(x))])
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(padded[idx], nfft)) ** 2 / nfft  # (T, nfft/2 + 1)
    energy = np.where(power.sum(axis=1) == 0, np.finfo(float).eps, power.sum(axis=1))
    bins = np.floor((nfft + 1) * _hz(np.linspace(0.0, _mel(rate / 2), nfilt + 2)) / rate).astype(int)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        bank[j, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        bank[j, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    feat = power @ bank.T
    feat = np.log(np.where(feat == 0, np.finfo(float).eps, feat))
    cep = dct(feat, type=2, axis=1, norm="ortho")[:, :numcep]
    cep *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    cep[:, 0] = np.log(energy)
    return cep


def syncnet_box(box: np.ndarray, crop_scale: float = 0.4) -> np.ndarray:
    """(4,) square crop box SyncNet's pipeline cuts around a face box: widened, shifted towards the chin."""
    x0, y0, x1, y1 = (float(v) for v in box)
    half = max(x1 - x0, y1 - y0) / 2.0
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0 + half * crop_scale
    side = half * (1.0 + crop_scale)
    return np.array([cx - side, cy - side, cx + side, cy + side])


@dataclass(frozen=True)
class SyncNetResult:
    """Sync-C (confidence), Sync-D (min distance), offset in frames, and the mean distance per shift."""

    confidence: float
    min_distance: float
    offset_frames: int
    distances: np.ndarray


def _face_windows(video: VideoSource, track: FaceTrack) -> np.ndarray:
    """(T, 3, 224, 224) float32 BGR 0..255 crops of the track's frames."""
    base, last = int(track.frames[0]), int(track.frames[-1])
    out = []
    for index, rgb in video.frames(base, last + 1):
        crop = square_crop(rgb, syncnet_box(track.boxes[index - base]), CROP)
        out.append(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


@torch.no_grad()
def score_track(model: SyncNetS, video: VideoSource, track: FaceTrack, audio: np.ndarray, sample_rate: int,
                vshift: int = 15, batch: int = 20, device: str = "cpu") -> SyncNetResult:
    """Sync-C / Sync-D of a face track against mono ``audio`` starting at video frame 0."""
    if abs(video.fps - SYNCNET_FPS) > 0.01 or sample_rate != SYNCNET_RATE:
        raise ValueError(f"SyncNet expects {SYNCNET_FPS:g} fps video and {SYNCNET_RATE} Hz audio, got "
                         f"{video.fps:g} fps and {sample_rate} Hz; resample the case first")
    base = int(track.frames[0])
    start = int(round(base * sample_rate / video.fps))
    pcm = np.clip(audio[start:], -1.0, 1.0) * 32768.0  # SyncNet was trained on int16 wav samples
    cc = torch.from_numpy(mfcc(pcm).T.astype(np.float32))[None, None].to(device)  # (1, 1, 13, T_mfcc)
    faces = torch.from_numpy(_face_windows(video, track)).to(device)  # (T, 3, 224, 224)
    usable = min(len(faces), cc.shape[-1] // 4) - WINDOW
    if usable < 2 * vshift + 1:
        raise ValueError(f"SyncNet needs at least {2 * vshift + 1 + WINDOW} frames with a face and audio, "
                         f"got {usable + WINDOW}")
    lip, aud = [], []
    for i in range(0, usable, batch):
        js = range(i, min(usable, i + batch))
        lip.append(model.forward_lip(torch.stack([faces[j:j + WINDOW].transpose(0, 1) for j in js])))
        aud.append(model.forward_aud(torch.cat([cc[..., 4 * j:4 * j + 20] for j in js])))
    lip_f, aud_f = torch.cat(lip), torch.cat(aud)  # (T, D) each
    padded = torch.nn.functional.pad(aud_f, (0, 0, vshift, vshift))
    window = 2 * vshift + 1
    dists = torch.stack([torch.nn.functional.pairwise_distance(lip_f[[i]].repeat(window, 1), padded[i:i + window])
                         for i in range(len(lip_f))])  # (T, window)
    mean = dists.mean(dim=0)
    low, at = torch.min(mean, dim=0)
    conf = float(torch.median(mean) - low)
    log.info("syncnet: Sync-C %.3f, Sync-D %.3f, offset %d over %d windows", conf, float(low), vshift - int(at),
             len(lip_f))
    return SyncNetResult(conf, float(low), vshift - int(at), mean.cpu().numpy())
