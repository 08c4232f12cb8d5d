"""`lpm run` — the main job: bring the embedded stack up and materialize the whole lineage."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(
        "Start the embedded services (unless --no-services) and materialize every asset of the lineage "
        "in order, recorded in the Dagster instance so the runs appear in the Dagster UI."))
    p.add_argument("--no-services", action="store_true", help="assume the services are already running")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument("--conversations", type=int, default=12, help="synthetic conversations (default 12)")
    p.add_argument("--identities", type=int, default=24,
                   help="size of the identity bank the conversations draw their people from (default 24; about "
                   "3/4 of them appear on screen, since half the conversations show one person)")
    p.add_argument("--duration", type=float, default=24.0, help="seconds per conversation (default 24)")
    p.add_argument("--size", type=int, default=256, help="face region size in pixels (default 256)")
    p.add_argument("--budget", choices=("short", "medium", "long"), default="short",
                   help="training budgets of video_vae, base_lpm, online_lpm: 'short' CPU minutes (default), "
                   "'medium' (about 40 minutes of training on 2 CPU cores: the model-quality benchmark's budget) or "
                   "'long' (hours on CPU, better models)")
    p.add_argument("--from", dest="start", default="synthetic_corpus_job", metavar="STAGE",
                   help="first stage to run: synthetic_corpus_job (default), curate_video, build_dataset, "
                   "train_models, evaluate_models or deploy_and_promote; earlier stages must have been materialized")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from infra.local.settings import StackSettings
    from orchestration.assets.training import training_run_config
    from orchestration.pipeline import ensure_env, run_lineage

    settings = StackSettings.from_env()
    if not args.no_services:
        from infra.local.services import Stack

        Stack(settings).up()
    ensure_env(settings.client_env())
    started = time.perf_counter()
    reports = run_lineage(corpus={"seed": args.seed, "conversations": args.conversations,
                                  "identities": args.identities, "duration_s": args.duration, "size": args.size},
                           training=training_run_config(args.budget), start=args.start)
    total = time.perf_counter() - started
    print("\nLineage:")
    for r in reports:
        status = "ok" if not r.failed else f"FAILED: {', '.join(r.failed[:5])}"
        print(f"  {r.job:<28} runs={r.runs:<4} {r.seconds:7.1f} s  {status}")
    print(f"  total {total:.1f} s\n")
    print("Where to look:")
    print(f"  Dagster UI     {settings.dagster_url}  (Assets -> raw_videos, curated_dataset, online_lpm, group "
          "serving; Runs)")
    print(f"  MLflow UI      {settings.mlflow_uri}  (experiment 'lpm'; Models -> lpm-vae, lpm-base, lpm-online)")
    print(f"  Object store   {settings.s3_endpoint}  (buckets lpm-raw, lpm-data, lpm-models; keys: `lpm services env`)")
    print(f"  Triton         grpc {settings.triton_grpc_url}, http {settings.triton_http_url}")
    print(f"  Catalog        {settings.catalog_db_url.split('@')[-1]}  (`lpm catalog show source_videos`)")
    _print_models(settings.mlflow_uri)
    _print_serving()
    return 0 if all(not r.failed for r in reports) else 1


def _print_serving() -> None:
    """The champion Triton serves, the last promotion decision and a ready-to-run `lpm stream` command."""
    import dagster as dg

    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("model_promotion"))
    if event is None or event.asset_materialization is None:
        print("\nServing: no promotion yet (job deploy_and_promote)")
        return
    meta = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    print(f"\nServing (Triton, checks smoke_stream + latency_slo): last decision (run {event.run_id[:8]}) "
          f"{meta['action']} of version {meta['candidate_version']} — {meta['reason']}")
    if meta.get("champion_after"):
        print(f"  lpm-online@champion = version {meta['champion_after']}; try it:\n    {meta['stream_command']}")
    print("  audit trail: lpm model promotions; roll back: lpm model rollback [--to VERSION]")


def _print_models(tracking_uri: str) -> None:
    """Where the trained models are: registry alias -> version, descriptor files in the object store."""
    import os

    from mlflow.exceptions import MlflowException

    from orchestration.registry import CHALLENGER, MODEL_NAMES, resolve_model

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a small JSON file per model

    print("\nModels (MLflow registry; weights in the object store, listed by model/lpm_model.json):")
    for name in MODEL_NAMES.values():
        try:
            version, descriptor = resolve_model(tracking_uri, name, CHALLENGER)
        except MlflowException:
            print(f"  {name:<11} not registered yet")
            continue
        files = ", ".join(f"{k}={ref.uri}" for k, ref in sorted(descriptor.files.items()))
        print(f"  {name}@{CHALLENGER} = version {version.version}  {tracking_uri}/#/models/{name}/versions/"
              f"{version.version}\n      {files}")
