"""End-to-end Base LPM training runs: the loss falls, resume is exact, the CLI runs 2 FSDP2 ranks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lpm_models.base.checkpoint import latest_checkpoint, load_consolidated, read_consolidated
from lpm_models.base.data import CachedLatentStream, collate_train
from lpm_models.base.model import BaseLPM, LPMBatch
from lpm_models.base.module import TrainConfig
from lpm_models.base.strategy import StrategyConfig
from lpm_models.base.train import JsonlReporter, RunConfig, train
from lpm_models.configs import ConditionDropout, LPMConfig
from lpm_models.data.dataset.shards import write_dataset
from tests.dataset_factory import make_sample

MICRO = {"height": 32, "width": 32, "clip_frames": 9,
         "sampler": {"steps": 2, "shift": 1.0, "chunk_latents": 5, "overlap_latents": 1}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "v1"
    write_dataset((make_sample(i, n_frames=40, size=32) for i in range(4)), out, shard_size=2)
    return out


def run_config(dataset: Path, steps: int, **kw: object) -> RunConfig:
    base = RunConfig(preset="tiny", model=MICRO, log_every=5, checkpoint_every=0, preview_every=-1,
                     threads_per_rank=1, strategy=StrategyConfig(kind="single", activation_checkpointing=False),
                     train=TrainConfig(max_steps=steps, warmup_steps=5, lr=2e-3, ema_decay=0.95))
    base = replace(base, data=replace(base.data, dataset=str(dataset), batch_size=4, latents="cached"))
    return replace(base, **kw)


@torch.no_grad()
def eval_loss(model: BaseLPM, items: list[dict], cfg: LPMConfig) -> float:
    """Mean flow loss over all cached windows, all conditions kept, fixed timesteps/noise."""
    model.cfg = replace(cfg, dropout=ConditionDropout(0.0, 0.0, 0.0, 0.0))
    stream = CachedLatentStream(items, cfg.max_refs, seed=0, rank=0)
    b = collate_train([stream.item(i, epoch=0) for i in range(len(items))])
    batch = LPMBatch(latents=b.latents, audio_self=b.audio_self, audio_other=b.audio_other, text=b.text,
                     text_mask=b.text_mask, refs=b.ref_latents, ref_mask=b.ref_mask)
    losses = [float(model.training_loss(batch, generator=torch.Generator().manual_seed(s))[0]) for s in range(4)]
    return sum(losses) / len(losses)


def test_tiny_training_run_loss_falls(dataset: Path, tmp_path: Path) -> None:
    run = run_config(dataset, steps=60)
    result = train(run, tmp_path, resume=None)
    assert result is not None and result.step == 60
    cfg = run.lpm_config()
    items = torch.load(next((tmp_path / "cache" / "latents").glob("*.pt")), weights_only=True)
    torch.manual_seed(run.train.seed)
    initial = BaseLPM(cfg)  # the run's initialisation (same seed)
    before = eval_loss(initial, items, cfg)
    after_raw = eval_loss(load_consolidated(result.consolidated, weights="raw"), items, cfg)
    after_ema = eval_loss(load_consolidated(result.consolidated, weights="ema"), items, cfg)
    assert after_raw < 0.75 * before, (before, after_raw)
    assert after_ema < 0.9 * before, (before, after_ema)
    blob = read_consolidated(result.consolidated)
    assert blob["step"] == 60 and blob["config"]["height"] == 32 and blob["ema_updates"] == 60
    assert json.loads((tmp_path / "result.json").read_text())["step"] == 60


def test_resume_from_a_sharded_checkpoint_is_exact(dataset: Path, tmp_path: Path) -> None:
    run = run_config(dataset, steps=8, checkpoint_every=4, keep_checkpoints=2)
    full = train(run, tmp_path / "full", resume=None)
    assert full is not None and (tmp_path / "full" / "checkpoints" / "step-00000004").is_dir()
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000004", resumed_dir / "checkpoints" / "step-00000004")
    shutil.copytree(tmp_path / "full" / "cache", resumed_dir / "cache")
    resumed = train(run, resumed_dir, resume="auto")
    assert resumed is not None and resumed.step == 8
    a, b = read_consolidated(full.consolidated), read_consolidated(resumed.consolidated)
    for group in ("state_dict", "ema_state_dict"):
        for name, tensor in a[group].items():
            assert torch.equal(tensor, b[group][name]), f"{group}/{name} differs after resume"
    assert a["ema_updates"] == b["ema_updates"] == 8


def test_cli_trains_two_fsdp2_ranks_and_consolidates(dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "preset": "tiny", "model": MICRO, "data": {"batch_size": 2, "latents": "cached"},
        "train": {"max_steps": 4, "warmup_steps": 1}, "strategy": {"kind": "fsdp2"},
        "checkpoint_every": 2, "log_every": 1, "preview_every": 0}))
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "lpm_models.base.train", "--config", str(config), "--dataset", str(dataset),
         "--out", str(tmp_path / "out"), "--ranks", "2", "--reporter", f"jsonl:{events}"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    last = latest_checkpoint(tmp_path / "out" / "checkpoints")
    assert last is not None and last.name == "step-00000004"
    assert sorted(p.name for p in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]  # one shard per rank
    assert sorted(p.name for p in (last / "rng").iterdir()) == ["rank-00000.pt", "rank-00001.pt"]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [e["event"] for e in lines]
    assert kinds[0] == "start" and kinds[-1] == "done" and "preview" in kinds and "checkpoint" in kinds
    progress = [e for e in lines if e["event"] == "progress"]
    assert progress and progress[-1]["step"] == 4 and progress[-1]["samples_per_s"] > 0
    assert lines[0]["ranks"] == 2
    model = load_consolidated(tmp_path / "out" / "base_lpm.pt")
    assert sum(p.numel() for p in model.parameters()) > 2_000_000  # the full tiny model, not a shard
    assert list((tmp_path / "out" / "previews").glob("*.mp4"))


def test_jsonl_reporter_appends_events(tmp_path: Path) -> None:
    reporter = JsonlReporter(tmp_path / "sub" / "e.jsonl")
    reporter("progress", {"step": 1, "loss": 0.5})
    reporter("done", {"step": 2})
    lines = [json.loads(x) for x in (tmp_path / "sub" / "e.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["progress", "done"] and lines[0]["loss"] == 0.5
