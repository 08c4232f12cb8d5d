"""ArcFace CSIM from user-supplied weights: IResNet backbones of insightface's ``arcface_torch``.

Accepted weights: an ``arcface_torch`` backbone state dict (``backbone.pth`` of IResNet-18/34/50/
100; the depth and embedding size are read from the keys) or any TorchScript module mapping
(B, 3, 112, 112) RGB in [-1, 1] to (B, D) embeddings. Faces are aligned to ArcFace's 112 x 112
five-point template (eye centres, nose tip, mouth corners) with a similarity transform from the
face-mesh landmarks; the reference image is meshed with MediaPipe in still-image mode.
CSIM is the cosine similarity of the L2-normalised embeddings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from lpm_models.data.curation.types import FaceTrack
from quality.bench.features import VideoSource, sample_frames
from quality.bench.weights import is_torchscript, load_state_dict, load_torchscript

log = logging.getLogger(__name__)

TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)  # 112 x 112 px
SIZE = 112
HINT = "pass an arcface_torch IResNet backbone.pth (state dict) or a TorchScript face-embedding module"


class IBasicBlock(nn.Module):
    """Pre-activation residual block of IResNet (BN -> conv -> BN -> PReLU -> conv -> BN)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """IResNet backbone: (B, 3, 112, 112) in [-1, 1] -> (B, num_features)."""

    def __init__(self, layers: Sequence[int], num_features: int = 512) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-5))
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))  # (B, 512 * 7 * 7)
        return self.features(self.fc(x))


def _layers_of(state: dict[str, Tensor]) -> list[int]:
    """Blocks per stage read from ``layerN.K.`` keys (IResNet-50: [3, 4, 14, 3])."""
    counts = [0, 0, 0, 0]
    for key in state:
        match = re.match(r"layer([1-4])\.(\d+)\.", key)
        if match:
            stage, block = int(match.group(1)) - 1, int(match.group(2))
            counts[stage] = max(counts[stage], block + 1)
    return counts


def load_arcface(path: Path | str) -> Callable[[Tensor], Tensor]:
    """An ArcFace embedder (B, 3, 112, 112) in [-1, 1] -> (B, D) from a state dict or TorchScript file."""
    if Path(path).is_file() and is_torchscript(path):
        return load_torchscript(path, "ArcFace", HINT)
    state = load_state_dict(path, "ArcFace", hint=HINT)
    layers = _layers_of(state)
    if "fc.weight" not in state or min(layers) == 0:
        raise ValueError(f"{path} is not an IResNet state dict (layers found {layers}, "
                         f"fc.weight {'present' if 'fc.weight' in state else 'missing'}); {HINT}")
    model = IResNet(layers, num_features=int(state["fc.weight"].shape[0]))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{path} is missing {len(result.missing_keys)} IResNet weight(s), e.g. "
                         f"{result.missing_keys[:3]}; {HINT}")
    log.info("arcface: IResNet %s with %d-d embeddings", layers, model.fc.out_features)
    return model.eval()


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) ArcFace points from (478 or 468, 2+) face-mesh landmarks: eyes (image left, right),
    nose tip, mouth corners (image left, right)."""
    p = np.asarray(landmarks, dtype=np.float32)[:, :2]
    return np.stack([p[[33, 133]].mean(axis=0), p[[263, 362]].mean(axis=0), p[1], p[61], p[291]])


def align(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(112, 112, 3) uint8 face aligned to the ArcFace template by a similarity transform."""
    matrix, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), TEMPLATE, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("could not fit a similarity transform to the five face points")
    return cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)


@torch.no_grad()
def embed_faces(model: Callable[[Tensor], Tensor], faces: np.ndarray, batch: int = 32) -> np.ndarray:
    """(N, D) L2-normalised embeddings of (N, 112, 112, 3) uint8 aligned faces."""
    out = []
    for i in range(0, len(faces), batch):
        x = torch.from_numpy(faces[i:i + batch]).permute(0, 3, 1, 2).float()  # (B, 3, 112, 112)
        out.append(torch.nn.functional.normalize(model((x / 255.0 - 0.5) / 0.5), dim=1))
    return torch.cat(out).numpy()


def reference_face(image: np.ndarray) -> np.ndarray:
    """(112, 112, 3) aligned face of a still reference image (MediaPipe mesh in still mode)."""
    from lpm_models.data.synth.face_sources import FaceMesher

    mesher = FaceMesher()
    try:
        points = mesher(np.ascontiguousarray(image))
    finally:
        mesher.close()
    if points is None:
        raise ValueError("no face found in the reference image (MediaPipe face mesh)")
    return align(image, five_points(points))


def csim_series(model: Callable[[Tensor], Tensor], video: VideoSource, track: FaceTrack,
                frames: Sequence[int], reference_image: np.ndarray) -> np.ndarray:
    """(K,) cosine similarity of each wanted frame's aligned face to the reference's."""
    base = int(track.frames[0])
    faces = [align(rgb, five_points(track.landmarks[index - base])) for index, rgb in sample_frames(video, frames)]
    if not faces:
        raise ValueError("no frames to embed for CSIM")
    ref = embed_faces(model, reference_face(reference_image)[None])[0]
    return embed_faces(model, np.stack(faces)) @ ref
