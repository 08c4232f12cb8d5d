"""User-supplied network weights for the optional LPM-Bench metrics, loaded with actionable errors.

No package available to this project ships SyncNet, ArcFace, Inception or I3D weights, so those
metrics run only when a user points :class:`BenchWeights` at the files. Every loader fails with
a message naming the metric, the file and what was expected, never with a bare pickle error.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchWeights:
    """Paths of optional weight files (None: that metric is skipped).

    syncnet:   SyncNet ``S`` state dict (``syncnet_v2.model``) -> Sync-C / Sync-D
    arcface:   ArcFace IResNet-50/100 state dict (insightface ``arcface_torch`` backbone.pth) or a
               TorchScript module mapping (B, 3, 112, 112) in [-1, 1] to (B, 512) -> CSIM
    inception: FID feature network: torchvision Inception-v3 state dict or a TorchScript module
               mapping (B, 3, H, W) uint8-range floats to (B, 2048) -> FID
    i3d:       FVD feature network: TorchScript I3D (the StyleGAN-V / FVD ``i3d_torchscript.pt``) -> FVD
    """

    syncnet: Path | None = None
    arcface: Path | None = None
    inception: Path | None = None
    i3d: Path | None = None


def require_file(path: Path | str, what: str, hint: str) -> Path:
    """``path`` as a Path if it is a file; FileNotFoundError naming the metric and a remedy otherwise."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} weights file {file} does not exist; {hint}")
    return file


def load_state_dict(path: Path | str, what: str, strip: tuple[str, ...] = ("module.",),
                    hint: str = "pass the path of the published weights file") -> dict[str, Tensor]:
    """Tensors of a PyTorch state dict file (``state_dict``/``model`` wrappers and key prefixes removed)."""
    file = require_file(path, what, hint)
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"{file} is not a {what} state dict readable with torch.load(weights_only=True) "
                         f"({type(exc).__name__}: {exc}); {hint}") from exc
    for key in ("state_dict", "model", "net"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ValueError(f"{file} does not hold a {what} state dict (a mapping of names to tensors); {hint}")
    out: dict[str, Tensor] = OrderedDict()
    for name, tensor in loaded.items():
        for prefix in strip:
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = tensor
    return out


def load_torchscript(path: Path | str, what: str, hint: str) -> torch.jit.ScriptModule:
    """A TorchScript module from ``path`` (CPU, eval mode) or a ValueError saying why not."""
    file = require_file(path, what, hint)
    try:
        module = torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a non-TorchScript file
        raise ValueError(f"{file} is not a TorchScript {what} module ({type(exc).__name__}: {exc}); {hint}") from exc
    return module.eval()


def is_torchscript(path: Path | str) -> bool:
    """True if ``path`` is a TorchScript archive (a zip holding ``constants.pkl`` or ``code/``)."""
    import zipfile

    file = Path(path)
    if not zipfile.is_zipfile(file):
        return False
    with zipfile.ZipFile(file) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
