"""The Online LPM asset (group ``training``): distils the newest Base LPM into the causal streaming
generator out of process (Dagster Pipes), logs per-stage metrics to MLflow and registers
``lpm-online@challenger`` with a descriptor listing ``online.pt`` and the VAE it decodes with."""

import json
from typing import Any

import dagster as dg

from lpm_models.descriptor import ModelDescriptor
from orchestration.assets.training import GROUP, base_lpm
from orchestration.assets.training_support import (
    DatasetRef, child_store_env, download_weights, file_from_metadata, latest_metadata, lineage, log_curves,
    log_dataset_input, log_params, record_model_version, result_metadata, upload_weights,
)
from orchestration.registry import MODEL_NAMES, register_model, version_tags
from orchestration.resources import CatalogResource, MlflowResource, ObjectStoreResource
from orchestration.resources.launcher import TrainingLauncher

STAGE_ORDER = ("ode", "dmd", "self_forcing", "refiner")


class OnlineLPMConfig(dg.Config):
    """Run config of ``online_lpm`` (the preset follows the teacher). Defaults: the short CPU budget
    (about 3-4 min on 2 cores). A stage with 0 steps is skipped (refiner 0: no refiner);
    ``clips``/``heldout``: training and held-out condition sets (teacher trajectories)."""

    steps_ode: int = 8
    steps_dmd: int = 3
    steps_self_forcing: int = 3
    steps_refiner: int = 3
    clips: int = 6
    heldout: int = 2
    batch_size: int = 2
    teacher_substeps: int = 2
    lr: float = 1e-4
    threads: int = 0
    device: str = "cpu"

    def stage_steps(self) -> dict[str, int]:
        """Steps of each stage that runs, in order."""
        steps = {"ode": self.steps_ode, "dmd": self.steps_dmd, "self_forcing": self.steps_self_forcing,
                 "refiner": self.steps_refiner}
        return {stage: steps[stage] for stage in STAGE_ORDER if steps[stage] > 0}


def distill_args(config: OnlineLPMConfig) -> list[str]:
    """``lpm_models.online.distill`` arguments of a budget (without paths)."""
    stages = config.stage_steps()
    if not stages:
        raise ValueError("every distillation stage has 0 steps; give at least one stage steps")
    args = ["--stages", ",".join(stages), "--steps", ",".join(f"{k}={v}" for k, v in stages.items()),
            "--clips", str(config.clips), "--heldout", str(config.heldout), "--batch-size", str(config.batch_size),
            "--teacher-substeps", str(config.teacher_substeps), "--lr", str(config.lr)]
    if "refiner" not in stages:
        args.append("--no-refiner")
    if config.threads:
        args += ["--threads", str(config.threads)]
    return args


@dg.asset(
    group_name=GROUP, deps=[base_lpm], kinds={"pytorch", "s3", "mlflow", "sqlalchemy"},
    description="Online LPM distilled from the newest Base LPM (ODE -> DMD -> self-forcing -> refiner) out of "
    "process with Dagster Pipes; per-stage metrics in MLflow; online.pt in s3://lpm-models/online/<mlflow run>/; "
    "registered lpm-online@challenger (descriptor lists online.pt and vae.pt).",
)
def online_lpm(context: dg.AssetExecutionContext, config: OnlineLPMConfig, launcher: TrainingLauncher,
               object_store: ObjectStoreResource, mlflow: MlflowResource,
               catalog: CatalogResource) -> dg.MaterializeResult:
    import mlflow as mlf

    base = latest_metadata(context, "base_lpm", "materialize base_lpm first")
    teacher_ref, vae_ref = file_from_metadata(base, "base"), file_from_metadata(base, "vae")
    teacher = f"{base['model']}/{base['model_version']}"
    dataset = DatasetRef(version=str(base["dataset_version"]), manifest_uri=str(base["dataset_manifest"]))
    with launcher.run_dir("online") as out, mlflow.start_run(
            context, run_name=f"online-{base['preset']}-{dataset.version}",
            tags={"lpm.stage": "online", "lpm.dataset_version": dataset.version, "lpm.teacher": teacher}) as run:
        run_id, run_dir = run.info.run_id, out / "distill"
        log_dataset_input(object_store, dataset)
        teacher_path = download_weights(object_store, teacher_ref, out / "base_lpm.pt")
        vae_path = download_weights(object_store, vae_ref, out / "vae.pt")
        launched = launcher.launch(
            context, "lpm_models.online.distill",
            ["--teacher", str(teacher_path), "--vae", str(vae_path), "--dataset", dataset.uri, "--out", str(run_dir),
             *distill_args(config)],
            threads=config.threads, device=config.device, env=child_store_env(object_store))
        stages: dict[str, dict[str, float]] = json.loads((run_dir / "metrics.json").read_text())
        log_params({**config.model_dump(), "teacher": teacher, "dataset_version": dataset.version,
                    "dataset_uri": dataset.uri, "stages": ",".join(config.stage_steps())})
        log_curves(mlflow, run_id, launched.events)  # per step, and each stage's summary at its last step
        mlf.log_artifact(str(run_dir / "metrics.json"))
        weights = upload_weights(object_store, "online", run_id, run_dir / "online.pt")
        descriptor = ModelDescriptor(kind="online", preset=str(base["preset"]), files={"online": weights, "vae": vae_ref},
                                     lineage=lineage(context, dataset, run_id, teacher=teacher))
        registered = register_model(mlflow.client(), MODEL_NAMES["online"], run_id, descriptor,
                                    version_tags(descriptor, context.run.run_id, teacher=teacher))
        catalog_id = record_model_version(catalog, registered, context.run.run_id, run_id, parent=teacher)
        run_url = mlflow.run_url(run_id)
    final = stages[list(config.stage_steps())[-1]]
    return dg.MaterializeResult(
        metadata=result_metadata(
            registered, run_url, run_id, dataset, launched.seconds, launched.metadata, teacher=teacher,
            final_loss=launched.events.result.get("final_loss", _final_loss(final)),
            heldout_mse_to_teacher=final.get("heldout_mse_to_teacher_after"),
            stages=dg.MetadataValue.md(_stages_markdown(stages)), catalog_model_version_id=catalog_id),
        data_version=dg.DataVersion(weights.sha256[:16]))


def _final_loss(metrics: dict[str, float]) -> float | None:
    return next((metrics[k] for k in ("dmd_loss_last", "ode_loss_last", "regression_loss_last") if k in metrics), None)


def _stages_markdown(stages: dict[str, dict[str, Any]]) -> str:
    """A table of each stage's steps, last loss and held-out distance to the teacher before/after."""
    rows = ["| stage | steps | loss (last) | held-out MSE to teacher before | after |", "|---|---|---|---|---|"]
    for stage in (s for s in STAGE_ORDER if s in stages):
        m = stages[stage]
        loss = _final_loss(m)
        rows.append(f"| {stage} | {int(m.get('steps', 0))} | {'' if loss is None else f'{loss:.4g}'} | "
                    f"{m.get('heldout_mse_to_teacher_before', float('nan')):.4g} | "
                    f"{m.get('heldout_mse_to_teacher_after', float('nan')):.4g} |")
    return "\n".join(rows)
