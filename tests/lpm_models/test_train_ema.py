"""Shard-local EMA: update math, decay warm-up, swapping weights in and out, state round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lpm_models.base.ema import COUNT_KEY, ShardLocalEMA


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))


def test_update_is_exponential_moving_average_of_parameters() -> None:
    model = small_model()
    ema = ShardLocalEMA(model, decay=0.9, warmup=False)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = dict(start)
    for k in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * (k + 1))
        assert ema.update(model) == pytest.approx(0.9)
        current = {n: p.detach().clone() for n, p in model.named_parameters()}
        expected = {n: 0.9 * expected[n] + 0.1 * current[n] for n in expected}
    for name, shadow in ema.shadow.items():
        torch.testing.assert_close(shadow, expected[name])
        assert not torch.equal(shadow, dict(model.named_parameters())[name])
    assert ema.num_updates == 3


def test_decay_warms_up_then_caps() -> None:
    ema = ShardLocalEMA(small_model(), decay=0.99, warmup=True)
    decays = []
    for _ in range(1000):
        decays.append(ema.current_decay())
        ema.num_updates += 1
    assert decays[0] == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    assert all(a <= b for a, b in zip(decays, decays[1:]))
    assert decays[-1] == pytest.approx(0.99)


def test_swapped_runs_with_ema_weights_and_restores_trained_ones() -> None:
    model = small_model()
    ema = ShardLocalEMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    ema.update(model)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(5, 4)
    with ema.swapped(model):
        for name, p in model.named_parameters():
            torch.testing.assert_close(p.detach(), ema.shadow[name])
        out_ema = model(x)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), trained[name])
    assert not torch.allclose(out_ema, model(x))


def test_state_dict_round_trip_and_mismatch_errors() -> None:
    model = small_model()
    ema = ShardLocalEMA(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    state = {k: v.clone() for k, v in ema.state_dict().items()}
    assert int(state[COUNT_KEY]) == 1

    other = ShardLocalEMA(small_model(seed=1), decay=0.9)
    other.load_state_dict(state)
    assert other.num_updates == 1
    for name in ema.shadow:
        torch.testing.assert_close(other.shadow[name], ema.shadow[name])

    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({k: v for k, v in state.items() if not k.startswith("0.")})
    with pytest.raises(KeyError, match="does not have"):
        ema.update(nn.Linear(4, 3))


def test_frozen_parameters_are_not_tracked() -> None:
    model = small_model()
    model[1].requires_grad_(False)
    ema = ShardLocalEMA(model)
    assert not any(name.startswith("1.") for name in ema.shadow)
    assert ema.local_numel() == sum(p.numel() for n, p in model.named_parameters() if not n.startswith("1."))
