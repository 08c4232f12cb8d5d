"""Curriculum phases, LR schedule, step randomness and run-config parsing of Base LPM training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lpm_models.base.data import TrainBatch
from lpm_models.base.module import (
    BaseLPMTrainingModule,
    Curriculum,
    PhaseConfig,
    TrainConfig,
    default_curriculum,
    lr_factor,
)
from lpm_models.base.train import load_run_config
from lpm_models.configs import ConditionDropout, LPMConfig, SamplerConfig, get_preset


@pytest.fixture(scope="module")
def cfg() -> LPMConfig:
    return replace(get_preset("tiny"), height=32, width=32, clip_frames=9,
                   sampler=SamplerConfig(steps=2, shift=1.0, chunk_latents=3, overlap_latents=1))


def batch(cfg: LPMConfig) -> TrainBatch:
    g = torch.Generator().manual_seed(0)
    h, w = cfg.latent_size
    c, n = cfg.vae.latent_channels, cfg.clip_frames * cfg.audio.samples_per_frame
    return TrainBatch(audio_self=torch.randn(2, n, generator=g) * 0.1, audio_other=torch.randn(2, n, generator=g) * 0.1,
                      text=torch.randn(2, 4, 384, generator=g), text_mask=torch.ones(2, 4, dtype=torch.bool),
                      ref_mask=torch.tensor([[True, True], [True, False]]),
                      latents=torch.randn(2, cfg.latent_frames(cfg.clip_frames), c, h, w, generator=g),
                      ref_latents=torch.randn(2, 2, c, h, w, generator=g))


def test_curriculum_switches_phase_by_global_step(cfg: LPMConfig) -> None:
    phases = (PhaseConfig("a", 3), PhaseConfig("b", 2), PhaseConfig("c", 4, refs=2))
    cur = Curriculum(phases, cfg)
    assert cur.total_steps == 9
    assert [cur.phase_at(s).name for s in range(11)] == list("aaabbcccccc")  # last phase continues


def test_default_curriculum_follows_the_paper_order(cfg: LPMConfig) -> None:
    phases = default_curriculum(1000, cfg)
    assert [p.name for p in phases] == ["speak_alignment", "listen_audio", "multi_reference", "temporal_extension"]
    assert sum(p.steps for p in phases) == 1000
    speak, listen, multi, temporal = phases
    assert speak.dropout.audio_other == 1.0 and listen.dropout.audio_other < 1.0  # listen audio enters in phase 2
    assert speak.refs == listen.refs == 1 and multi.refs == temporal.refs == cfg.max_refs
    assert temporal.context_frames >= 1 and temporal.context_prob > 0 and multi.context_frames == 0


def test_invalid_phases_are_refused(cfg: LPMConfig) -> None:
    with pytest.raises(ValueError, match="refs"):
        Curriculum((PhaseConfig("x", 5, refs=cfg.max_refs + 1),), cfg)
    with pytest.raises(ValueError, match="context_frames"):
        Curriculum((PhaseConfig("x", 5, context_frames=cfg.latent_frames(cfg.clip_frames)),), cfg)


def test_module_applies_phase_dropout_refs_and_context(cfg: LPMConfig) -> None:
    phases = (PhaseConfig("speak", 2, ConditionDropout(0.0, 0.0, 1.0, 0.0), refs=1),
              PhaseConfig("extend", 2, ConditionDropout(0.0, 0.0, 0.0, 0.0), refs=2, context_frames=2, context_prob=1.0))
    module = BaseLPMTrainingModule(cfg, TrainConfig(phases=phases), activation_checkpointing=False)
    module.configure_model()
    b = batch(cfg)
    _, stats = module.loss_for_step(b, 0)
    assert module.model.cfg.dropout.audio_other == 1.0
    assert float(stats["keep_audio_other"]) == 0.0 and float(stats["context_frames"]) == 0.0
    assert module.lpm_batch(b, module.phase(0).refs).refs.shape[1] == 1
    _, stats = module.loss_for_step(b, 2)
    assert module.model.cfg.dropout.audio_other == 0.0 and float(stats["keep_audio_other"]) == 1.0
    assert 1 <= float(stats["context_frames"]) <= 2 and float(stats["phase"]) == 1.0
    refs = module.lpm_batch(b, 2)
    assert refs.refs.shape[1] == 2 and refs.ref_mask.tolist() == [[True, True], [True, False]]
    assert float(refs.refs[1, 1].abs().sum()) == 0.0  # padded reference slot is zeroed
    # the same step draws the same randomness (exact resume), another step differs
    a, _ = module.loss_for_step(b, 3)
    again, _ = module.loss_for_step(b, 3)
    other, _ = module.loss_for_step(b, 1000)
    assert float(a.detach()) == float(again.detach()) and float(a.detach()) != float(other.detach())


def test_warmup_then_cosine_schedule() -> None:
    f = [lr_factor(s, warmup=10, total=110, min_ratio=0.1) for s in range(120)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:110], f[11:111]))
    assert f[60] == pytest.approx(0.55, abs=0.01) and f[110] == pytest.approx(0.1) and f[119] == pytest.approx(0.1)


def test_run_config_from_yaml_with_nested_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "preset: tiny\n"
        "model: {height: 64, width: 64, dit: {depth: 2}, sampler: {steps: 3}}\n"
        "data: {batch_size: 3, augment: {crop_scale: [0.9, 1.0]}}\n"
        "train:\n  lr: 0.002\n  phases:\n"
        "    - {name: one, steps: 5, dropout: {audio_other: 1.0}}\n"
        "    - {name: two, steps: 7, refs: 2, context_frames: 1, context_prob: 0.5}\n"
        "strategy: {kind: fsdp2, ranks: 2}\n")
    run = load_run_config(path, **{"data.dataset": "s3://bucket/ds", "strategy.ranks": None})
    lpm = run.lpm_config()
    assert (lpm.height, lpm.dit.depth, lpm.dit.dim, lpm.sampler.steps) == (64, 2, 128, 3)
    assert run.data.dataset == "s3://bucket/ds" and run.data.augment.crop_scale == (0.9, 1.0)
    assert run.strategy.ranks == 2 and run.train.lr == 0.002
    assert [p.name for p in run.train.phases] == ["one", "two"]
    assert isinstance(run.train.phases[0], PhaseConfig) and run.train.phases[0].dropout.audio_other == 1.0
    assert run.train.phases[0].dropout.text == ConditionDropout().text
    path.write_text("train: {learning_rate: 1}\n")
    with pytest.raises(KeyError, match="learning_rate"):
        load_run_config(path)
