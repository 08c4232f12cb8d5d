"""VAE training: PSNR improves on held-out clips, latent statistics are set, the file loads as the frozen VAE."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lpm_models.base.data import DataConfig, load_frozen_vae
from lpm_models.data.dataset.shards import write_dataset
from lpm_models.vae.train import VAERunConfig, VAETrainConfig, evaluate_psnr, train_vae
from tests.dataset_factory import make_sample


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vae-ds") / "v1"
    write_dataset((make_sample(i, n_frames=30, size=32) for i in range(6)), out, shard_size=3)
    return out


def test_short_vae_training_improves_psnr_and_writes_a_loadable_file(dataset: Path, tmp_path: Path) -> None:
    # full 32 px frames: the tiny VAE downsamples x8, so a 16 px crop would leave 2x2 latents dominated by padding
    run = VAERunConfig(preset="tiny", model={"height": 32, "width": 32, "clip_frames": 9},
                       data=DataConfig(dataset=str(dataset)),
                       train=VAETrainConfig(steps=60, batch_size=2, crop=0, lr=2e-3, warmup_steps=5,
                                            holdout_every=3, val_windows=2, stats_windows=4, log_every=20))
    events: list[tuple[str, dict]] = []
    result = train_vae(run, tmp_path, reporter=lambda e, d: events.append((e, d)))
    assert result["step"] == 60 and result["val_windows"] == 2
    # default windows are the clip length Base LPM encodes, and validation measures drift along them
    assert result["frames"] == result["val_frames"] == 9
    assert result["psnr_tail"] > result["psnr_before"] and result["psnr_head"] > result["psnr_before"], result
    assert result["psnr"] > result["psnr_before"] + 3.0, result  # held-out clips, colours unseen in training
    assert [e for e, _ in events][0] == "start" and events[-1][0] == "done"
    assert any(e == "progress" and "psnr" in d and "loss" in d for e, d in events)
    assert json.loads((tmp_path / "vae_result.json").read_text())["psnr"] == result["psnr"]

    cfg = run.lpm_config()
    vae = load_frozen_vae(cfg, str(tmp_path / "vae.pt"))
    assert not torch.allclose(vae.latent_std, torch.ones_like(vae.latent_std))  # statistics were set
    from lpm_models.vae.train import VideoWindows

    val = list(VideoWindows([p for p in sorted(dataset.glob("*.tar"))], cfg, run.train, train=False, held_out=True, limit=2))
    assert val[0].shape[0] == 9  # full clip-length windows, not training windows
    assert evaluate_psnr(vae, val) == pytest.approx(result["psnr"], abs=0.01)
    latents = vae.encode(val[0][None])
    assert 0.2 < float(latents.std()) < 5.0  # normalised latents are O(1) for the DiT


def test_frames_must_match_the_causal_layout(dataset: Path, tmp_path: Path) -> None:
    run = VAERunConfig(model={"height": 32, "width": 32, "clip_frames": 9}, data=DataConfig(dataset=str(dataset)),
                       train=VAETrainConfig(frames=4))
    with pytest.raises(ValueError, match="1 \\+ 2 k"):
        train_vae(replace(run), tmp_path)
    with pytest.raises(ValueError, match="<= clip_frames"):  # longer than the clips Base LPM encodes
        train_vae(replace(run, train=VAETrainConfig(frames=11)), tmp_path)


def test_psnr_along_window_separates_a_drifting_tail() -> None:
    from lpm_models.vae.train import psnr_along_window

    class TailDrift(torch.nn.Module):  # identity coder that shifts the colour of every frame after the head
        temporal_factor = 2

        def encode(self, video: torch.Tensor) -> torch.Tensor:
            return video

        def decode(self, latents: torch.Tensor) -> torch.Tensor:
            out = latents.clone()
            out[:, 3:] += 0.5
            return out

    window = torch.rand(9, 3, 8, 8) - 0.6  # in [-0.6, 0.4]: the shifted tail stays inside [-1, 1]
    figures = psnr_along_window(TailDrift(), [window])  # type: ignore[arg-type]
    assert figures["psnr_head"] > 60 and figures["psnr_tail"] == pytest.approx(10 * math.log10(4 / 0.25), abs=0.01)
    assert figures["psnr_tail"] < figures["psnr"] < figures["psnr_head"]
