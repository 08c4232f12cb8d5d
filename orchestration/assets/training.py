"""Training assets (group ``training``): the video VAE and the Base LPM, each trained out of process
through Dagster Pipes (``TrainingLauncher``), tracked in MLflow from the orchestrator and
registered under the ``lpm-model/1`` contract (``lpm-vae``, ``lpm-base``, alias ``challenger``).

Run config defaults are short CPU budgets (the main job); ``--budget long`` of ``lpm run``
(``training_run_config("long")``) or the launchpad turns them into longer, better runs.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg

from lpm_models.descriptor import ModelDescriptor
from orchestration.assets.dataset import curated_dataset
from orchestration.assets.training_support import (
    child_store_env, download_weights, file_from_metadata, latest_dataset, latest_metadata, lineage, log_curves,
    log_dataset_input, log_params, record_model_version, result_metadata, upload_tree, upload_weights, write_json,
)
from orchestration.registry import MODEL_NAMES, register_model, version_tags
from orchestration.resources import CatalogResource, MlflowResource, ObjectStoreResource
from orchestration.resources.launcher import TrainingLauncher

GROUP = "training"
VAE_TRAIN_MODULE = "lpm_models.vae.train"
BASE_TRAIN_MODULE = "lpm_models.base.train"
ACCELERATORS = {"cpu": "cpu", "gpu": "gpu", "auto": "auto"}


def model_overrides(resolution: int, clip_frames: int) -> dict[str, int]:
    """Nested preset overrides of the training CLIs' ``model`` field (0 keeps the preset's value)."""
    out = {"height": resolution, "width": resolution} if resolution else {}
    return {**out, "clip_frames": clip_frames} if clip_frames else out


class VideoVAEConfig(dg.Config):
    """Run config of ``video_vae``. Defaults: the main job's short CPU budget (about 2-3 min on 2 cores).

    ``resolution``/``clip_frames`` override the preset (0 keeps it); ``threads`` caps the child's
    BLAS/OpenMP threads (0: library default); ``device``: cpu, gpu or auto.
    """

    preset: str = "tiny"
    steps: int = 120
    batch_size: int = 2
    crop: int = 48
    lr: float = 5e-4
    resolution: int = 0
    clip_frames: int = 0
    threads: int = 0
    device: str = "cpu"


class BaseLPMConfig(dg.Config):
    """Run config of ``base_lpm``. Defaults: the short CPU budget (about 4-5 min on 2 cores): FSDP2
    over 2 CPU ranks. ``batch_size`` is per rank; ``threads`` per rank (0: cores / ranks);
    ``checkpoint_every`` 0 writes one sharded checkpoint at the end; ``activation_checkpointing``
    recomputes each transformer block in the backward pass (saves memory on GPUs; on CPU, where
    memory is plentiful, turning it off saves that recomputation). ``clip_reference``: probability that
    a step's appearance reference is the training window's own first frame rather than the curated
    reference from another clip (``lpm_models.base.data.DataConfig.clip_reference``)."""

    preset: str = "tiny"
    steps: int = 150
    ranks: int = 2
    strategy: str = "fsdp2"
    batch_size: int = 2
    lr: float = 3e-4
    log_every: int = 10
    checkpoint_every: int = 0
    resolution: int = 0
    clip_frames: int = 0
    threads: int = 0
    device: str = "cpu"
    activation_checkpointing: bool = True
    clip_reference: float = 0.5


def vae_run_config(config: VideoVAEConfig) -> dict[str, Any]:
    """The ``lpm_models.vae.train`` run config (``VAERunConfig`` as JSON) of a budget."""
    return {"preset": config.preset, "model": model_overrides(config.resolution, config.clip_frames),
            "data": {"batch_size": config.batch_size},
            "train": {"steps": config.steps, "batch_size": config.batch_size, "crop": config.crop, "lr": config.lr,
                      "warmup_steps": min(50, max(1, config.steps // 10)),
                      "log_every": max(1, min(20, config.steps // 25))}}


def base_run_config(config: BaseLPMConfig) -> dict[str, Any]:
    """The ``lpm_models.base.train`` run config (``RunConfig`` as JSON) of a budget."""
    if config.device not in ACCELERATORS:
        raise ValueError(f"device must be one of {sorted(ACCELERATORS)}, got {config.device!r}")
    return {"preset": config.preset, "model": model_overrides(config.resolution, config.clip_frames),
            "data": {"batch_size": config.batch_size, "clip_reference": config.clip_reference},
            "train": {"max_steps": config.steps, "lr": config.lr, "warmup_steps": min(100, max(1, config.steps // 10))},
            "strategy": {"kind": config.strategy, "ranks": config.ranks, "accelerator": ACCELERATORS[config.device],
                         "activation_checkpointing": config.activation_checkpointing},
            "checkpoint_every": config.checkpoint_every, "keep_checkpoints": 1, "preview_every": 0,
            "log_every": config.log_every, "threads_per_rank": config.threads}


def base_train_args(config: BaseLPMConfig, config_path: Path, dataset_uri: str, out_dir: Path,
                    vae_path: Path) -> list[str]:
    """Arguments of ``python -m lpm_models.base.train`` (the Kubernetes manifest uses the same flags)."""
    return ["--config", str(config_path), "--dataset", dataset_uri, "--out", str(out_dir), "--ranks", str(config.ranks),
            "--max-steps", str(config.steps), "--vae", str(vae_path), "--resume", "none"]


@dg.asset(
    group_name=GROUP, deps=[curated_dataset], kinds={"pytorch", "s3", "mlflow", "sqlalchemy"},
    description="Causal video VAE trained out of process (Dagster Pipes) on the newest curated dataset; "
    "vae.pt in s3://lpm-models/vae/<mlflow run>/, PSNR before/after in MLflow, registered as lpm-vae.",
)
def video_vae(context: dg.AssetExecutionContext, config: VideoVAEConfig, launcher: TrainingLauncher,
              object_store: ObjectStoreResource, mlflow: MlflowResource,
              catalog: CatalogResource) -> dg.MaterializeResult:
    import mlflow as mlf

    dataset = latest_dataset(context)
    with launcher.run_dir("vae") as out, mlflow.start_run(
            context, run_name=f"vae-{dataset.version}",
            tags={"lpm.stage": "vae", "lpm.dataset_version": dataset.version}) as run:
        run_id = run.info.run_id
        log_params({**config.model_dump(), "dataset_version": dataset.version, "dataset_uri": dataset.uri})
        log_dataset_input(object_store, dataset)
        cfg = write_json(out / "vae_config.json", vae_run_config(config))
        launched = launcher.launch(context, VAE_TRAIN_MODULE,
                                   ["--config", str(cfg), "--dataset", dataset.uri, "--out", str(out)],
                                   threads=config.threads, device=config.device, env=child_store_env(object_store))
        result = json.loads((out / "vae_result.json").read_text())
        log_curves(mlflow, run_id, launched.events)
        # validation PSNR on held-out full frames (the curve "psnr" is the training batches')
        # head / tail: the first and last frames of clip-length windows (a low tail = drift along the clip)
        mlf.log_metrics({"val_psnr_before": result["psnr_before"], "val_psnr": result["psnr"],
                         "val_psnr_head": result["psnr_head"], "val_psnr_tail": result["psnr_tail"],
                         "val_psnr_gain": result["psnr"] - result["psnr_before"], "train_seconds": result["seconds"]})
        mlf.log_artifact(str(out / "vae_result.json"))
        mlf.log_artifact(str(cfg))
        weights = upload_weights(object_store, "vae", run_id, out / "vae.pt")
        descriptor = ModelDescriptor(kind="vae", preset=config.preset, files={"vae": weights},
                                     lineage=lineage(context, dataset, run_id))
        registered = register_model(mlflow.client(), MODEL_NAMES["vae"], run_id, descriptor,
                                    version_tags(descriptor, context.run.run_id))
        catalog_id = record_model_version(catalog, registered, context.run.run_id, run_id)
        run_url = mlflow.run_url(run_id)
    return dg.MaterializeResult(
        metadata=result_metadata(registered, run_url, run_id, dataset, launched.seconds, launched.metadata,
                                 psnr=result["psnr"], psnr_before=result["psnr_before"],
                                 psnr_head=result["psnr_head"], psnr_tail=result["psnr_tail"],
                                 final_loss=launched.events.last("loss"), steps=result["step"],
                                 catalog_model_version_id=catalog_id),
        data_version=dg.DataVersion(weights.sha256[:16]))


@dg.asset(
    group_name=GROUP, deps=[curated_dataset, video_vae], kinds={"pytorch", "s3", "mlflow", "sqlalchemy"},
    description="Base LPM (Lightning FSDP2, launched out of process with Dagster Pipes; rank 0 reports) on the "
    "newest curated dataset with the trained VAE; consolidated base_lpm.pt + sharded checkpoint in "
    "s3://lpm-models/base/<mlflow run>/, loss curve and previews in MLflow, registered lpm-base@challenger.",
)
def base_lpm(context: dg.AssetExecutionContext, config: BaseLPMConfig, launcher: TrainingLauncher,
             object_store: ObjectStoreResource, mlflow: MlflowResource,
             catalog: CatalogResource) -> dg.MaterializeResult:
    import mlflow as mlf

    dataset = latest_dataset(context)
    vae_meta = latest_metadata(context, "video_vae", "materialize video_vae first")
    vae_ref, vae_model = file_from_metadata(vae_meta, "vae"), f"{vae_meta['model']}/{vae_meta['model_version']}"
    with launcher.run_dir("base") as out, mlflow.start_run(
            context, run_name=f"base-{config.preset}-{dataset.version}",
            tags={"lpm.stage": "base", "lpm.dataset_version": dataset.version, "lpm.vae": vae_model}) as run:
        run_id, train_dir = run.info.run_id, out / "train"
        log_dataset_input(object_store, dataset)
        vae_path = download_weights(object_store, vae_ref, out / "vae.pt")
        cfg = write_json(out / "run_config.json", base_run_config(config))
        launched = launcher.launch(context, BASE_TRAIN_MODULE,
                                   base_train_args(config, cfg, dataset.uri, train_dir, vae_path),
                                   threads=config.threads, device=config.device, env=child_store_env(object_store))
        result, events = json.loads((train_dir / "result.json").read_text()), launched.events
        log_params({**config.model_dump(), "dataset_version": dataset.version, "dataset_uri": dataset.uri,
                    "vae_model": vae_model, **{f"run_{k}": v for k, v in events.started.items()}})
        log_curves(mlflow, run_id, events)
        mlf.log_metrics({k: v for k, v in (("final_loss", result["final_loss"]), ("final_samples_per_s",
                         result["samples_per_s"]), ("train_seconds", result["seconds"])) if v is not None})
        for preview in events.previews:
            mlf.log_artifact(str(preview), "previews")
        for name in ("result.json", "run_config.json"):
            mlf.log_artifact(str(train_dir / name))
        weights = upload_weights(object_store, "base", run_id, train_dir / "base_lpm.pt")
        checkpoint = Path(result["checkpoint"])
        ckpt_prefix = f"base/{run_id}/checkpoints/{checkpoint.name}"
        ckpt_bytes = upload_tree(object_store, checkpoint, ckpt_prefix)
        descriptor = ModelDescriptor(kind="base", preset=config.preset, files={"base": weights, "vae": vae_ref},
                                     lineage=lineage(context, dataset, run_id, vae=vae_model))
        registered = register_model(mlflow.client(), MODEL_NAMES["base"], run_id, descriptor,
                                    version_tags(descriptor, context.run.run_id))
        catalog_id = record_model_version(catalog, registered, context.run.run_id, run_id, parent=vae_model)
        run_url = mlflow.run_url(run_id)
    return dg.MaterializeResult(
        metadata=result_metadata(
            registered, run_url, run_id, dataset, launched.seconds, launched.metadata,
            final_loss=result["final_loss"], samples_per_s=result["samples_per_s"], steps=result["step"],
            ranks=config.ranks, vae_model=vae_model, previews=len(events.previews),
            sharded_checkpoint=dg.MetadataValue.path(f"s3://lpm-models/{ckpt_prefix}/"), checkpoint_bytes=ckpt_bytes,
            catalog_model_version_id=catalog_id),
        data_version=dg.DataVersion(weights.sha256[:16]))


LONG_BUDGET: dict[str, dict[str, Any]] = {
    "video_vae": {"steps": 1500},
    "base_lpm": {"steps": 2000, "log_every": 20, "checkpoint_every": 500},
    "online_lpm": {"steps_ode": 200, "steps_dmd": 100, "steps_self_forcing": 100, "steps_refiner": 100,
                   "clips": 32, "heldout": 8, "batch_size": 4, "teacher_substeps": 4},
}
# about 40 minutes of training on 2 idle CPU cores (the model-quality benchmark's budget: <= 45 min).
# Measured on 2 idle cores: VAE 0.38 s/step (clip-length windows, batch 2, 48² crops); Base LPM
# ~1.0 s/step single-process without activation checkpointing (1.15 s with it, FSDP2 x2); Online LPM
# ~2.7 min in all. lr 1e-3 for Base: a 600-step run at 1e-3 reached the loss a 1,500-step run at
# 3e-4 had reached.
MEDIUM_BUDGET: dict[str, dict[str, Any]] = {
    "video_vae": {"steps": 2000},
    "base_lpm": {"steps": 1500, "lr": 1e-3, "log_every": 20, "checkpoint_every": 750, "activation_checkpointing": False},
    "online_lpm": {"steps_ode": 60, "steps_dmd": 20, "steps_self_forcing": 20, "steps_refiner": 20,
                   "clips": 16, "heldout": 4, "batch_size": 2, "teacher_substeps": 4},
}
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {"short": {}, "medium": MEDIUM_BUDGET, "long": LONG_BUDGET}


def training_run_config(budget: str = "short") -> dict[str, Any]:
    """Run config of the ``train_models`` job for a named budget (``short``: the asset defaults)."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown training budget {budget!r}; choose one of {sorted(BUDGETS)}")
    return {"ops": {asset: {"config": cfg} for asset, cfg in BUDGETS[budget].items()}}
