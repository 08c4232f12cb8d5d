"""Optional LPM-Bench metrics that need user-supplied weights: loading paths and clear errors.

No real SyncNet / ArcFace / Inception / I3D weights exist on this machine, so these tests save
randomly initialised networks in the published formats (state dicts with the original key names,
TorchScript modules with the original call signatures) and check they load, run and give
well-formed numbers, and that missing or incompatible files fail with a message naming the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lpm_models.data.curation.types import FaceTrack
from quality.bench.arcface import IResNet, embed_faces, load_arcface
from quality.bench.features import VideoSource, extract_features
from quality.bench.identity import arcface_metrics
from quality.bench.syncnet import SyncNetS, load_syncnet, mfcc, score_track
from quality.bench.visual import feature_metrics, frame_features, load_i3d, load_inception


def moving_frames(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 frames of a drifting colour pattern."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)])


def box_track(n: int, size: int = 64) -> FaceTrack:
    """A face track of n frames whose box is the middle of a size x size frame."""
    box = np.tile(np.array([size * 0.25, size * 0.2, size * 0.75, size * 0.8], np.float32), (n, 1))
    return FaceTrack(video_id="v", shot_index=0, track_index=0, fps=25.0, frames=np.arange(n), boxes=box,
                     crop_boxes=box, landmarks=np.zeros((n, 478, 2), np.float32), pose=np.zeros((n, 3), np.float32),
                     mouth_open=np.zeros(n, np.float32))


def test_syncnet_state_dict_loads_and_scores(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SyncNetS()
    state = model.state_dict()
    assert tuple(state["netcnnaud.18.weight"].shape) == (512, 256, 5, 4)  # the original's layer names and shapes
    assert tuple(state["netcnnlip.18.weight"].shape) == (512, 256, 1, 6, 6)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "syncnet_v2.model")
    loaded = load_syncnet(tmp_path / "syncnet_v2.model")
    with torch.no_grad():
        assert loaded.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
        assert loaded.forward_lip(torch.zeros(2, 3, 5, 224, 224)).shape == (2, 1024)
    n = 16
    audio = np.random.default_rng(1).normal(0, 0.1, n * 640).astype(np.float32)
    result = score_track(loaded, VideoSource(array=moving_frames(n), fps=25.0), box_track(n), audio, 16000, vshift=3)
    assert np.isfinite(result.confidence) and result.confidence >= 0.0 and result.min_distance > 0.0
    assert -3 <= result.offset_frames <= 3 and result.distances.shape == (7,)


def test_syncnet_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="SyncNet weights file .* does not exist; download syncnet_v2.model"):
        load_syncnet(tmp_path / "missing.model")
    torch.save({"netcnnaud.0.weight": torch.zeros(3, 3)}, tmp_path / "other.model")
    with pytest.raises(ValueError, match="not a SyncNet S state dict"):
        load_syncnet(tmp_path / "other.model")
    (tmp_path / "notes.model").write_text("not weights")
    with pytest.raises(ValueError, match="not a SyncNet state dict readable"):
        load_syncnet(tmp_path / "notes.model")
    with pytest.raises(ValueError, match="expects 25 fps"):
        score_track(SyncNetS(), VideoSource(array=moving_frames(4), fps=30.0), box_track(4), np.zeros(8000), 16000)


def test_mfcc_follows_python_speech_features_framing() -> None:
    rate = 16000
    tone = np.sin(2 * np.pi * 400 * np.arange(rate) / rate) * 1000  # period 40 samples: every frame alike
    cep = mfcc(tone)
    assert cep.shape == (1 + int(np.ceil((rate - 400) / 160)), 13)  # 25 ms windows every 10 ms
    frame = tone[160:560] - 0.97 * tone[159:559]  # pre-emphasised second frame, rectangular window
    energy = np.sum(np.abs(np.fft.rfft(frame, 512)) ** 2) / 512
    assert cep[1, 0] == pytest.approx(np.log(energy), rel=1e-6)  # c0 is the log frame energy
    assert np.std(cep[5:-5], axis=0).max() < 1e-6  # a steady tone gives steady cepstra


class TinyEmbedder(nn.Module):
    """A stand-in face embedder with the ArcFace interface: (B, 3, 112, 112) -> (B, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 5, stride=4)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).mean(dim=(2, 3))


def test_arcface_state_dict_and_torchscript(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(IResNet([2, 2, 2, 2], num_features=128).state_dict(), tmp_path / "backbone.pth")
    model = load_arcface(tmp_path / "backbone.pth")
    assert isinstance(model, IResNet) and [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    faces = np.random.default_rng(0).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    vectors = embed_faces(model, faces)
    assert vectors.shape == (3, 128) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    torch.jit.script(TinyEmbedder()).save(str(tmp_path / "arcface.pt"))
    assert embed_faces(load_arcface(tmp_path / "arcface.pt"), faces).shape == (3, 16)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="not an IResNet state dict"):
        load_arcface(tmp_path / "wrong.pth")
    with pytest.raises(FileNotFoundError, match="ArcFace weights file"):
        load_arcface(tmp_path / "missing.pth")


def test_csim_of_a_still_portrait_against_itself(tmp_path: Path) -> None:
    from skimage import data

    portrait = np.ascontiguousarray(data.astronaut()[:320, 96:416])  # (320, 320, 3) public-domain photo
    video = VideoSource(array=np.repeat(portrait[None], 12, axis=0), fps=25.0)
    features = extract_features(video)
    torch.manual_seed(0)
    torch.jit.script(TinyEmbedder()).save(str(tmp_path / "arcface.pt"))
    result = arcface_metrics(video, features, portrait, tmp_path / "arcface.pt")
    assert 0.9 < result["csim_mean"] <= 1.0 + 1e-6 and result["csim_p5"] <= result["csim_mean"] + 1e-9


class TinyInception(nn.Module):
    """Stand-in with the TorchScript Inception call: forward(x, return_features) -> (B, 12)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, stride=2)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        return torch.tanh(self.conv(x / 255.0)).mean(dim=(2, 3))


class TinyI3D(nn.Module):
    """Stand-in with the TorchScript I3D call: forward(x, rescale, resize, return_features) -> (B, 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, (4, 8, 8), stride=(4, 8, 8))

    def forward(self, x: Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False) -> Tensor:
        assert not rescale and not resize and return_features
        return torch.tanh(self.conv(x)).mean(dim=(2, 3, 4))


def test_fid_and_fvd_from_torchscript(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.jit.script(TinyInception()).save(str(tmp_path / "inception.pt"))
    torch.jit.script(TinyI3D()).save(str(tmp_path / "i3d.pt"))
    real = VideoSource(array=moving_frames(64, seed=1), fps=25.0)
    same = feature_metrics(real, real, tmp_path / "inception.pt", tmp_path / "i3d.pt", every=2)
    assert same["fid"] == pytest.approx(0.0, abs=1e-6) and same["fvd"] == pytest.approx(0.0, abs=1e-6)
    dark = VideoSource(array=(moving_frames(64, seed=1) // 3), fps=25.0)
    worse = feature_metrics(dark, real, tmp_path / "inception.pt", tmp_path / "i3d.pt", every=2)
    assert worse["fid"] > 1e-3 and worse["fvd"] > 1e-3
    with pytest.raises(ValueError, match="not a TorchScript I3D"):
        torch.save({"w": torch.zeros(1)}, tmp_path / "i3d_state.pth")
        load_i3d(tmp_path / "i3d_state.pth")


@pytest.mark.slow
def test_torchvision_inception_state_dict(tmp_path: Path) -> None:
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), tmp_path / "inception.pth")
    features = frame_features(load_inception(tmp_path / "inception.pth"), VideoSource(array=moving_frames(4), fps=25.0),
                              every=1)
    assert features.shape == (4, 2048) and np.isfinite(features).all()
