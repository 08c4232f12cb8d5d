"""Lightning strategies for Base LPM training and the sharded-checkpoint I/O they share.

``make_strategy(cfg)`` picks one of:

* ``fsdp2`` (default, CPU with gloo or GPUs with NCCL): ``ModelParallelStrategy`` with
  explicit ``data_parallel_size = ranks * num_nodes`` and ``tensor_parallel_size = 1``
  (Lightning's defaults would shard nothing); the LightningModule applies ``fully_shard``
  per DiTBlock and at the root in ``configure_model``. Lightning launches ``ranks``
  processes per node itself (or joins processes started by torchrun / a cluster).
* ``fsdp1`` (GPUs only): ``FSDPStrategy`` auto-wrapping and activation-checkpointing
  ``DiTBlock``; Lightning's own sharded checkpoints, no EMA (its flat shards do not map to
  parameter names).
* ``single``: one process, no sharding (baselines, debugging).

The ``fsdp2`` and ``single`` strategies write and read checkpoints through
``lpm_models.base.checkpoint`` (model + optimizer + EMA + RNG as DCP shards, trainer state in
``meta.pt``), so ``Trainer.save_checkpoint(dir)`` / ``Trainer.fit(ckpt_path=dir)`` give
exact resume.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy, SingleDeviceStrategy, Strategy
from torch.optim import Optimizer

from lpm_models.base.checkpoint import load_sharded, save_sharded
from lpm_models.nn.blocks import DiTBlock

log = logging.getLogger(__name__)

KINDS = ("fsdp2", "fsdp1", "single")


@dataclass(frozen=True)
class StrategyConfig:
    """How training is parallelised.

    ranks: processes per node (CPU: processes; GPU: devices); accelerator: "auto" (GPU
    when available), "cpu" or "gpu"; precision: a Lightning precision string or "auto"
    ("bf16-mixed" on GPUs that support it, else "32-true").
    """

    kind: str = "fsdp2"
    ranks: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    precision: str = "auto"
    activation_checkpointing: bool = True
    reshard_after_forward: bool = True
    process_group_backend: str | None = None  # None: gloo on CPU, nccl on GPU
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"strategy kind must be one of {KINDS}, got {self.kind!r}")
        if self.ranks < 1 or self.num_nodes < 1:
            raise ValueError(f"ranks and num_nodes must be >= 1, got {self.ranks}, {self.num_nodes}")
        if self.kind == "single" and self.ranks * self.num_nodes != 1:
            raise ValueError("kind='single' runs one process; use kind='fsdp2' for ranks > 1")
        if self.accelerator not in ("auto", "cpu", "gpu", "cuda"):
            raise ValueError(f"accelerator must be auto/cpu/gpu, got {self.accelerator!r}")

    @property
    def world_size(self) -> int:
        return self.ranks * self.num_nodes


def resolve_accelerator(cfg: StrategyConfig) -> str:
    """"cpu" or "gpu"."""
    if cfg.accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if cfg.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise RuntimeError("accelerator='gpu' but CUDA is not available; set accelerator='cpu'")
    return "gpu" if cfg.accelerator in ("gpu", "cuda") else "cpu"


def resolve_precision(cfg: StrategyConfig) -> str:
    """The Lightning precision string ("auto": bf16-mixed on bf16-capable GPUs, else 32-true)."""
    if cfg.precision != "auto":
        return cfg.precision
    if resolve_accelerator(cfg) == "gpu" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


class _ShardedCheckpointIO:
    """Checkpoint hooks shared by the FSDP2 and single-process strategies.

    Lightning's own state-dict collection is skipped (returns nothing); ``save_checkpoint``
    writes the module's ``model``, the optimizers and the module's ``ema`` as DCP shards and
    the rest of Lightning's checkpoint dict (loops, schedulers, callbacks) as ``meta.pt``.
    """

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        return True  # optimizers and the sharded model must exist before loading into them

    @property
    def lightning_restore_optimizer(self) -> bool:
        return False  # restored by load_checkpoint already

    def lightning_module_state_dict(self) -> dict[str, Any]:
        return {}

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        return {}

    def load_model_state_dict(self, checkpoint: Any, strict: bool = True) -> None:
        pass

    def load_optimizer_state_dict(self, checkpoint: Any) -> None:
        pass

    def _trainable(self) -> Any:
        module = self.lightning_module  # type: ignore[attr-defined]
        if getattr(module, "model", None) is None or not hasattr(module, "ema"):
            raise TypeError(f"{type(self).__name__} checkpoints a LightningModule with `model` (the network, "
                            f"built in configure_model) and `ema` attributes; {type(module).__name__} lacks them")
        return module

    def _raw_optimizers(self) -> list[Optimizer]:
        return [o._optimizer if isinstance(o, LightningOptimizer) else o for o in self.optimizers]  # type: ignore[attr-defined]

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("LPM sharded checkpoints take no storage_options")
        path = Path(self.broadcast(str(filepath)))  # type: ignore[attr-defined]
        module = self._trainable()
        meta = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states")}
        save_sharded(path, module.model, self._raw_optimizers(), module.ema, meta)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        path = Path(self.broadcast(str(checkpoint_path)))  # type: ignore[attr-defined]
        module = self._trainable()
        meta = load_sharded(path, module.model, self._raw_optimizers(), module.ema)
        meta.setdefault("optimizer_states", [])
        meta.setdefault("state_dict", {})
        return meta

    def remove_checkpoint(self, filepath: Any) -> None:
        if self.global_rank == 0:  # type: ignore[attr-defined]
            shutil.rmtree(filepath, ignore_errors=True)


class LPMModelParallelStrategy(_ShardedCheckpointIO, ModelParallelStrategy):
    """ModelParallelStrategy (FSDP2 via the module's configure_model) + LPM sharded checkpoints."""


class LPMSingleDeviceStrategy(_ShardedCheckpointIO, SingleDeviceStrategy):
    """One device, no sharding, same checkpoint format (DCP without a process group)."""


def make_strategy(cfg: StrategyConfig) -> Strategy:
    """The Lightning strategy for ``cfg`` (see module docstring)."""
    accelerator = resolve_accelerator(cfg)
    timeout = timedelta(seconds=cfg.timeout_s)
    if cfg.kind == "single":
        device = torch.device("cuda", 0) if accelerator == "gpu" else torch.device("cpu")
        return LPMSingleDeviceStrategy(device=device)
    if cfg.kind == "fsdp2":
        return LPMModelParallelStrategy(
            data_parallel_size=cfg.world_size, tensor_parallel_size=1, save_distributed_checkpoint=True,
            process_group_backend=cfg.process_group_backend, timeout=timeout,
        )
    if accelerator != "gpu":
        raise RuntimeError("kind='fsdp1' (Lightning FSDPStrategy) needs CUDA GPUs; use kind='fsdp2' on CPU")
    return FSDPStrategy(
        auto_wrap_policy={DiTBlock},
        activation_checkpointing_policy={DiTBlock} if cfg.activation_checkpointing else None,
        sharding_strategy="FULL_SHARD", state_dict_type="sharded", use_orig_params=True,
        process_group_backend=cfg.process_group_backend, timeout=timeout,
    )


def strategy_uses_lpm_checkpoints(strategy: Strategy) -> bool:
    """True when ``strategy`` saves LPM sharded checkpoints (fsdp2 / single)."""
    return isinstance(strategy, _ShardedCheckpointIO)
