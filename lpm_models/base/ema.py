"""Shard-local exponential moving average of model parameters.

Under FSDP2 every parameter is a DTensor whose local tensor is this rank's shard. The EMA
keeps one shadow per trainable parameter with the *same placement* (a DTensor clone), and
updates it from the local shards only::

    shadow <- decay * shadow + (1 - decay) * param        (on each rank's own shard)

so an update costs no communication and each rank holds EMA memory for its shard only.
Because the shadows are DTensors, ``state_dict()`` saves through
``torch.distributed.checkpoint`` like the model itself (resharding on load, and
consolidation into full tensors). Without FSDP the shadows are plain tensors.

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates (optional), so
early EMA weights are not dominated by the random initialisation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

log = logging.getLogger(__name__)

EMA_PREFIX = "ema."
COUNT_KEY = "ema_num_updates"


def local_tensor(t: Tensor) -> Tensor:
    """This rank's storage of ``t``: the local shard of a DTensor, ``t`` itself otherwise."""
    return t.to_local() if isinstance(t, DTensor) else t


class ShardLocalEMA:
    """EMA of the trainable parameters of ``model``, kept shard-local (see module docstring).

    Build it *after* the model is sharded (the shadows copy the parameters' placements).
    Shadow names are the parameters' fully qualified names in ``model``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        with torch.no_grad():
            self.shadow: dict[str, Tensor] = {
                name: p.detach().clone().float() for name, p in model.named_parameters() if p.requires_grad
            }
        if not self.shadow:
            raise ValueError("the model has no trainable parameters to average")

    def current_decay(self) -> float:
        """Decay used by the next update."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def _pairs(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        """(local shadow shards, local parameter shards) in matching order; checks names."""
        params = dict(model.named_parameters())
        missing = [name for name in self.shadow if name not in params]
        if missing:
            raise KeyError(f"EMA tracks parameters the model does not have: {missing[:5]} "
                           "(was the EMA built from a different model?)")
        shadows = [local_tensor(s) for s in self.shadow.values()]
        locals_ = [local_tensor(params[name].detach()) for name in self.shadow]
        for name, s, p in zip(self.shadow, shadows, locals_):
            if s.shape != p.shape:
                raise ValueError(f"EMA shard {name} has shape {tuple(s.shape)}, parameter shard {tuple(p.shape)}")
        return shadows, locals_

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """One EMA step from the current parameters; returns the decay used."""
        decay = self.current_decay()
        shadows, params = self._pairs(model)
        torch._foreach_lerp_(shadows, [p.float() for p in params], 1.0 - decay)
        self.num_updates += 1
        return decay

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters (local shards) with the EMA weights."""
        shadows, params = self._pairs(model)
        for s, p in zip(shadows, params):
            p.copy_(s.to(p.dtype))

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        """Run a block with the EMA weights in the model; the trained weights come back after."""
        with torch.no_grad():
            _, params = self._pairs(model)
            saved = [p.clone() for p in params]
            self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)

    def state_dict(self) -> dict[str, Tensor]:
        """Shadows by parameter name (DTensors under FSDP2) plus the update counter."""
        state: dict[str, Tensor] = dict(self.shadow)
        state[COUNT_KEY] = torch.tensor(self.num_updates, dtype=torch.int64)
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy shadows (same names and placements as this EMA's) and the counter in place."""
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow) - {COUNT_KEY})
        if missing or unexpected:
            raise KeyError(f"EMA state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, shadow in self.shadow.items():
            local_tensor(shadow).copy_(local_tensor(state[name]))
        if COUNT_KEY in state:
            self.num_updates = int(state[COUNT_KEY])

    def local_numel(self) -> int:
        """Elements this rank stores (its shards)."""
        return sum(local_tensor(s).numel() for s in self.shadow.values())
