"""FSDP2 on 2 CPU ranks (gloo): real sharding, exact gradients, DCP round trip, consolidation.

Each test spawns 2 processes; assertions run inside the ranks (a failing rank fails the
spawn) and rank 0 leaves results in a file for the parent to check.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from lpm_models.base.checkpoint import config_to_dict, consolidate, load_consolidated, load_sharded, save_sharded
from lpm_models.base.conditioning import ConditionKeep, LPMConditions
from lpm_models.base.data import TrainBatch
from lpm_models.base.module import BaseLPMTrainingModule, PhaseConfig, TrainConfig
from lpm_models.configs import ConditionDropout, LPMConfig, SamplerConfig, get_preset

WORLD = 2


def micro_config() -> LPMConfig:
    return replace(get_preset("tiny"), height=32, width=32, clip_frames=5,
                   sampler=SamplerConfig(steps=2, shift=1.0, chunk_latents=3, overlap_latents=1))


def train_config(seed: int = 0) -> TrainConfig:
    phase = PhaseConfig("all", 10, ConditionDropout(0.2, 0.2, 0.2, 0.2), refs=2, context_frames=1, context_prob=0.5)
    return TrainConfig(phases=(phase,), warmup_steps=1, lr=1e-3, seed=seed, ema_decay=0.9)


def latent_batch(cfg: LPMConfig, batch: int = 2, seed: int = 0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.latent_size
    c = cfg.vae.latent_channels
    samples = cfg.clip_frames * cfg.audio.samples_per_frame
    return TrainBatch(
        audio_self=torch.randn(batch, samples, generator=g) * 0.1, audio_other=torch.randn(batch, samples, generator=g) * 0.1,
        text=torch.randn(batch, 6, cfg.text.dim, generator=g), text_mask=torch.ones(batch, 6, dtype=torch.bool),
        ref_mask=torch.tensor([[True, True], [True, False]])[:batch],
        latents=torch.randn(batch, cfg.latent_frames(cfg.clip_frames), c, h, w, generator=g),
        ref_latents=torch.randn(batch, 2, c, h, w, generator=g),
    )


class RankFreeSeeds(BaseLPMTrainingModule):
    """Same step randomness on every rank, so identical data gives identical gradients."""

    def _rank(self) -> int:
        return 0


def build(mesh: Any, seed: int = 0, cls: type[BaseLPMTrainingModule] = BaseLPMTrainingModule) -> tuple[Any, Any]:
    module = cls(micro_config(), train_config(seed))
    module._device_mesh = mesh
    module.configure_model()
    module.configure_model()  # idempotent
    return module, module.configure_optimizers()["optimizer"]


def train_step(module: BaseLPMTrainingModule, opt: torch.optim.Optimizer, batch: TrainBatch, step: int) -> float:
    loss, _ = module.loss_for_step(batch, step)
    loss.backward()
    module.clip_gradients_()
    opt.step()
    opt.zero_grad(set_to_none=True)
    module.ema.update(module.model)
    return float(loss.detach())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, port: int) -> Any:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    return init_device_mesh("cpu", (WORLD,))


def run_ranks(fn: Any, *args: Any) -> None:
    mp.spawn(fn, args=(free_port(), *args), nprocs=WORLD, join=True)


# ------------------------------------------------------------------------------ workers
def _sharding_worker(rank: int, port: int, out: str) -> None:
    mesh = _init(rank, port)
    try:
        module, opt = build(mesh, cls=RankFreeSeeds)
        params = list(module.model.parameters())
        assert all(isinstance(p, DTensor) for p in params), "every parameter must be an FSDP2 DTensor"
        local = sum(p.to_local().numel() for p in params)
        full = sum(p.numel() for p in params)
        reference, ref_opt = build(None, cls=RankFreeSeeds)  # unsharded, same seed
        batch = latent_batch(micro_config())
        train_step(module, opt, batch, 0)
        train_step(reference, ref_opt, batch, 0)
        worst = 0.0
        for (name, p), q in zip(module.model.named_parameters(), reference.model.parameters()):
            worst = max(worst, float((p.full_tensor() - q.detach()).abs().max()))
        if rank == 0:
            torch.save({"local": local, "full": full, "ema_local": module.ema.local_numel(), "worst": worst}, out)
    finally:
        dist.destroy_process_group()


def test_two_ranks_each_hold_half_and_step_like_one_process(tmp_path: Path) -> None:
    out = tmp_path / "sharding.pt"
    run_ranks(_sharding_worker, str(out))
    r = torch.load(out)
    assert 0.45 * r["full"] <= r["local"] <= 0.55 * r["full"], r
    assert 0.45 * r["full"] <= r["ema_local"] <= 0.55 * r["full"], r
    # identical batch on both ranks: averaged FSDP gradients equal the single-process step
    assert r["worst"] < 1e-5, r


def _roundtrip_worker(rank: int, port: int, root: str) -> None:
    mesh = _init(rank, port)
    try:
        cfg = micro_config()
        module, opt = build(mesh)
        for step in range(2):
            train_step(module, opt, latent_batch(cfg, seed=rank * 10 + step), step)
        ckpt = save_sharded(Path(root) / "ckpt", module.model, [opt], module.ema, {"global_step": 2, "lpm": {
            "config": config_to_dict(cfg), "train": {}}})
        ema_full = {n: s.full_tensor() for n, s in module.ema.shadow.items()}

        fresh, fresh_opt = build(mesh)
        with torch.no_grad():
            for p in fresh.model.parameters():
                p.to_local().add_(1.0)  # different weights, same run config
        assert not torch.equal(next(fresh.model.parameters()).to_local(), next(module.model.parameters()).to_local())
        meta = load_sharded(ckpt, fresh.model, [fresh_opt], fresh.ema)
        assert meta["global_step"] == 2
        for (name, a), b in zip(module.model.named_parameters(), fresh.model.parameters()):
            assert torch.equal(a.to_local(), b.to_local()), name
        for name in module.ema.shadow:
            assert torch.equal(module.ema.shadow[name].to_local(), fresh.ema.shadow[name].to_local()), name
        assert fresh.ema.num_updates == module.ema.num_updates == 2
        for a, b in zip(module.model.parameters(), fresh.model.parameters()):
            sa, sb = opt.state[a], fresh_opt.state[b]
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(sa[key].to_local(), sb[key].to_local()), key
            assert float(sa["step"]) == float(sb["step"]) == 2.0
        # the restored run continues exactly like the original
        nxt = latent_batch(cfg, seed=99 + rank)
        assert train_step(module, opt, nxt, 2) == train_step(fresh, fresh_opt, nxt, 2)
        for a, b in zip(module.model.parameters(), fresh.model.parameters()):
            assert torch.equal(a.to_local(), b.to_local())

        # sharded velocity of the checkpointed weights, for the consolidation check
        if rank == 0:
            torch.save({"ema_full": ema_full}, Path(root) / "ema_full.pt")
        dist.barrier()
        velocity = sharded_velocity(ckpt, mesh)
        if rank == 0:
            torch.save(velocity, Path(root) / "velocity.pt")
    finally:
        dist.destroy_process_group()


def velocity_inputs(cfg: LPMConfig) -> tuple[torch.Tensor, torch.Tensor, LPMConditions]:
    g = torch.Generator().manual_seed(5)
    b = latent_batch(cfg, seed=5)
    frames = cfg.latent_frames(cfg.clip_frames)
    x = torch.randn(2, frames, cfg.vae.latent_channels, *cfg.latent_size, generator=g)
    t = torch.rand(2, frames, generator=g)
    cond = LPMConditions(text=b.text, text_mask=b.text_mask, audio_self=torch.randn(2, cfg.clip_frames, cfg.audio.dim, generator=g),
                         audio_other=torch.randn(2, cfg.clip_frames, cfg.audio.dim, generator=g),
                         refs=b.ref_latents, ref_mask=b.ref_mask)
    return x, t, cond


@torch.no_grad()
def sharded_velocity(ckpt: Path, mesh: Any) -> torch.Tensor:
    """Velocity of the checkpoint's weights computed by a freshly built, sharded model."""
    module, opt = build(mesh, seed=321)
    load_sharded(ckpt, module.model, [opt], module.ema)
    module.model.eval()
    x, t, cond = velocity_inputs(micro_config())
    return module.model(x, t, cond, ConditionKeep.constant(2))


def test_dcp_round_trip_is_exact_and_consolidation_reproduces_the_sharded_model(tmp_path: Path) -> None:
    run_ranks(_roundtrip_worker, str(tmp_path))
    out = consolidate(tmp_path / "ckpt", tmp_path / "base.pt", extra={"note": "test"})
    raw = load_consolidated(out, weights="raw")
    x, t, cond = velocity_inputs(micro_config())
    with torch.no_grad():
        single = raw(x, t, cond, ConditionKeep.constant(2))
    torch.testing.assert_close(single, torch.load(tmp_path / "velocity.pt"), rtol=1e-5, atol=1e-5)
    ema_model = load_consolidated(out, weights="ema")
    ema_full = torch.load(tmp_path / "ema_full.pt")["ema_full"]
    for name, p in ema_model.named_parameters():
        torch.testing.assert_close(p, ema_full[name], rtol=0, atol=0)
    assert not torch.equal(next(ema_model.parameters()), next(raw.parameters()))


def test_consolidate_refuses_an_incomplete_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete"):
        consolidate(tmp_path / "half", tmp_path / "x.pt")
