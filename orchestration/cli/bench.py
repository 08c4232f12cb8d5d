"""`lpm bench` — LPM-Bench: run systems on a case set, compare two runs, list cases.

    lpm bench run --baselines --model models:/lpm-base@challenger --model models:/lpm-online@challenger
    lpm bench run --model models:/lpm-online/3 --triton grpc://127.0.0.1:8001 --triton-model lpm-online
    lpm bench compare CANDIDATE_RUN_ID BASELINE_RUN_ID [--check]
    lpm bench cases [--long]
    lpm bench quality [--base URI --online URI] [--long] [--check]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("lpm.bench")


def _shared_options(p: argparse.ArgumentParser) -> None:
    """Options of every evaluating action: seed, threads, recording, catalog and case cache."""
    p.add_argument("--seed", type=int, default=0, help="generation seed")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-record", action="store_true", help="do not log to MLflow or write catalog rows")
    p.add_argument("--catalog-url", default=None, help="catalog URL (default LPM_CATALOG_URL or $LPM_HOME's)")
    p.add_argument("--cache-dir", type=Path, default=None, help="case-set cache (default $LPM_HOME/cache)")


DROP_LEAKED_HELP = ("leave out the cases that overlap a model's training dataset (named in the output) and evaluate "
                    "the rest, instead of refusing the whole case set")


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(
        "LPM-Bench. Models resolve through MLflow (MLFLOW_TRACKING_URI) to their lpm_model.json descriptor; "
        "weights come from the object store (LPM_S3_*), SHA-256 verified. Results go to MLflow and the catalog "
        "when the stack is configured (`eval \"$(lpm services env)\"`)."))
    cmds = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    run = cmds.add_parser("run", help="evaluate systems on a case set and print every dimension per subset")
    run.add_argument("--model", action="append", default=[], metavar="URI",
                     help="registered model to evaluate in process, e.g. models:/lpm-online@challenger (repeatable)")
    run.add_argument("--baselines", action="store_true", help="also evaluate ground truth and the still image")
    run.add_argument("--cases", default="default-v1", help="case set name or YAML path (default default-v1)")
    run.add_argument("--long", action="store_true", help="add the long-form subset (>= 10 min per case; slow)")
    run.add_argument("--subset", action="append", default=None, help="only these subsets (repeatable)")
    run.add_argument("--limit", type=int, default=None, help="at most N cases")
    run.add_argument("--triton", default=None, metavar="grpc://HOST:PORT", help="also evaluate a served Online LPM")
    run.add_argument("--triton-model", default="lpm-online", help="Triton model name (default lpm-online)")
    run.add_argument("--triton-version", default="", help="Triton model version (default: the newest loaded)")
    run.add_argument("--base-steps", type=int, default=2,
                     help="Euler steps per chunk for Base LPM (default 2, the bench budget; 0 = the preset's own)")
    _base_guidance_option(run)
    _shared_options(run)
    run.add_argument("--no-leakage-check", action="store_true",
                     help="skip checking the cases against each model's training dataset version")
    run.add_argument("--drop-leaked", action="store_true", help=DROP_LEAKED_HELP)
    run.add_argument("--work-dir", type=Path, default=None, help="keep generated videos here (default: temporary)")
    run.add_argument("--json", type=Path, default=None, help="write every per-case row to this file")
    run.set_defaults(func=_run)
    cmp = cmds.add_parser("compare", help="per-dimension deltas of run A vs run B with bootstrap 95%% CIs")
    cmp.add_argument("candidate", help="MLflow run id of a system's bench run (the candidate)")
    cmp.add_argument("baseline", help="MLflow run id of the baseline's bench run")
    cmp.add_argument("--tolerance", type=float, default=0.02, help="score drop that counts (default 0.02)")
    cmp.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    cmp.add_argument("--check", action="store_true", help="exit 1 when the candidate regressed")
    cmp.set_defaults(func=_compare)
    q = cmds.add_parser("quality", help="Base/Online LPM quality goals: lip-sync and identity vs ground truth and "
                        "the audio-dropped ablation", description=(
                            "Runs ground truth, Base LPM, Base LPM with its audio dropped and Online LPM on the "
                            "held-out cases (leakage-checked) and prints lip-sync confidence (and its share of ground "
                            "truth's), best offset, identity distance to the reference, and each goal's verdict "
                            "(quality.bench.modelquality). --long adds the 10-minute stream (identity drift)."))
    q.add_argument("--base", default="models:/lpm-base@challenger", help="Base LPM (default lpm-base@challenger)")
    q.add_argument("--online", default="models:/lpm-online@challenger",
                   help="Online LPM (default lpm-online@challenger; '' to skip)")
    q.add_argument("--cases", default="default-v2",
                   help="case set name or YAML path (default default-v2: held-out cases framed like curated clips)")
    q.add_argument("--subset", action="append", default=None,
                   help="subsets (repeatable; default speaking, listening, multi_turn)")
    q.add_argument("--long", action="store_true", help="also the long-form subset (10 min; Online only; slow)")
    q.add_argument("--base-steps", type=int, default=0,
                   help="Euler steps per chunk for Base LPM (default 0 = the preset's own sampler)")
    _base_guidance_option(q)
    _shared_options(q)
    q.add_argument("--drop-leaked", action="store_true", help=DROP_LEAKED_HELP)
    q.add_argument("--json", type=Path, default=None, help="write the figures and verdicts to this file")
    q.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    q.set_defaults(func=_quality)
    cases = cmds.add_parser("cases", help="build (once) and list a case set")
    cases.add_argument("--cases", default="default-v1", help="case set name or YAML path")
    cases.add_argument("--long", action="store_true", help="include the long-form subset")
    cases.add_argument("--cache-dir", type=Path, default=None, help="case-set cache (default $LPM_HOME/cache)")
    cases.set_defaults(func=_cases)


def _base_guidance_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-guidance", type=guidance_pair, default=None, metavar="TEXT,AUDIO",
                   help="Base LPM guidance scales, e.g. 1,1 for none (default: the preset's sampler)")


def guidance_pair(text: str) -> tuple[float, float]:
    """``"TEXT,AUDIO"`` -> (text, audio) guidance scales, each >= 0."""
    try:
        text_scale, audio_scale = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TEXT,AUDIO guidance scales such as 1,1 or 3,2.5, got {text!r}") from None
    if min(text_scale, audio_scale) < 0:
        raise argparse.ArgumentTypeError(f"guidance scales must be >= 0, got {text!r}")
    return text_scale, audio_scale


def _tracking_uri() -> str | None:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return uri or None


def _store():  # type: ignore[no-untyped-def]
    from serving.store import ObjectStore

    return ObjectStore.from_env() if os.environ.get("LPM_S3_ENDPOINT") else None


def _catalog_url(args: argparse.Namespace) -> str:
    if args.catalog_url:
        return args.catalog_url
    from infra.local.settings import StackSettings

    return StackSettings.from_env().catalog_db_url


def _run(args: argparse.Namespace) -> int:
    from orchestration.bench import BenchRequest, bench_cache_dir, run_request
    from quality.bench.cases import load_case_set
    from quality.bench.record import write_json
    from quality.bench.runner import format_table

    if not args.model and not args.baselines and not args.triton:
        raise ValueError("nothing to evaluate: pass --model URI, --baselines and/or --triton URL")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cases = load_case_set(args.cases, args.cache_dir or bench_cache_dir(), long=args.long)
    cases = cases.select(args.subset, args.limit)
    tracking = _tracking_uri()
    request = BenchRequest(models=args.model, baselines=args.baselines,
                           triton_url=args.triton.split("://", 1)[-1] if args.triton else None,
                           triton_model=args.triton_model, triton_version=args.triton_version,
                           base_steps=args.base_steps or None, base_guidance=args.base_guidance, seed=args.seed,
                           check_leakage=not args.no_leakage_check, drop_leaked=args.drop_leaked)
    with tempfile.TemporaryDirectory(prefix="lpm-bench-") as tmp:
        outcome = run_request(request, cases, args.work_dir or Path(tmp), tracking_uri=tracking,
                              catalog_url=_catalog_url(args) if tracking else None, store=_store(),
                              cache_dir=None, record=not args.no_record)
    if args.json:
        write_json(outcome.result, args.json)
    out = [format_table(outcome.result), f"total {time.perf_counter() - started:.0f} s including case building and "
           "model loading"]
    out += leakage_lines(outcome.leakage)
    if outcome.tracked is not None:
        out.append(f"MLflow: {outcome.tracked.url()}")
        out += [f"  {system}: run {run_id}" for system, run_id in outcome.tracked.system_runs.items()]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def leakage_lines(leakage: dict[str, Any]) -> list[str]:
    """One line per training dataset version the cases were checked against (and the cases left out)."""
    out = []
    for version, report in leakage.items():
        verdict = "clean" if report["ok"] else f"{len(report['cases'])} case(s) left out: {', '.join(report['cases'])}"
        out.append(f"leakage vs dataset {version}: {verdict} ({report['checked']}, nearest identity "
                   f"{report['nearest_identity_distance']})")
    return out


def _quality(args: argparse.Namespace) -> int:
    import json

    from orchestration.bench import BenchRequest, bench_cache_dir, run_request
    from quality.bench.cases import load_case_set
    from quality.bench.modelquality import pick_system, quality_report
    from quality.bench.runner import format_table

    tracking = _tracking_uri()
    if tracking is None:
        raise ValueError("the models resolve through MLflow: set MLFLOW_TRACKING_URI (`eval \"$(lpm services env)\"`)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cases = load_case_set(args.cases, args.cache_dir or bench_cache_dir(), long=args.long)
    subsets = args.subset or ["speaking", "listening", "multi_turn"]
    short = cases.select(subsets, None)
    models = [args.base] + ([args.online] if args.online else [])
    request = BenchRequest(models=models, baselines=True, base_steps=args.base_steps or None, seed=args.seed,
                           base_guidance=args.base_guidance, ablations=True,
                           tags={"lpm.bench.purpose": "model-quality"}, drop_leaked=args.drop_leaked)
    with tempfile.TemporaryDirectory(prefix="lpm-quality-") as tmp:
        outcome = run_request(request, short, Path(tmp), tracking_uri=tracking, catalog_url=_catalog_url(args),
                              store=_store(), cache_dir=None, record=not args.no_record)
        result = outcome.result
        if args.long and args.online:  # the long stream: Online LPM only (Base would take hours on CPU)
            sys.stdout.write(quality_report(result).format() + "\n\nnow the long-form stream (Online LPM)...\n")
            sys.stdout.flush()
            long_request = BenchRequest(models=[args.online], baselines=False, seed=args.seed, check_leakage=False)
            long_cases = cases.select(["long_form"], None)
            extra = run_request(long_request, long_cases, Path(tmp) / "long", tracking_uri=tracking,
                                catalog_url=None, store=_store(), cache_dir=None, record=False).result
            online = pick_system(result, "online")
            result.rows += [row | {"system": online} for row in extra.rows]
            result.seconds += extra.seconds
    report = quality_report(result)
    report.seconds = time.perf_counter() - started
    out = [format_table(result), "", report.format(),
           f"total {report.seconds:.0f} s ({report.seconds / 60:.1f} min) including case building and model loading"]
    out += leakage_lines(outcome.leakage)
    if outcome.tracked is not None:
        out.append(f"MLflow: {outcome.tracked.url()}")
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    sys.stdout.write("\n".join(out) + "\n")
    return 1 if args.check and not report.passed else 0


def _compare(args: argparse.Namespace) -> int:
    from quality.bench.compare import compare_mlflow_runs

    tracking = _tracking_uri()
    if tracking is None:
        raise ValueError("set MLFLOW_TRACKING_URI (`eval \"$(lpm services env)\"`) to compare bench runs")
    result = compare_mlflow_runs(args.candidate, args.baseline, tracking, tolerance=args.tolerance,
                                 confidence=args.confidence)
    sys.stdout.write(result.markdown() + "\n")
    return 1 if args.check and result.regressed else 0


def _cases(args: argparse.Namespace) -> int:
    from orchestration.bench import bench_cache_dir
    from quality.bench.cases import load_case_set

    cases = load_case_set(args.cases, args.cache_dir or bench_cache_dir(), long=args.long)
    lines = [f"{cases.spec.name} ({cases.spec.digest[:12]}): {len(cases.cases)} cases in {cases.root}",
             f"{'case':58s}{'subset':26s}{'style':12s}{'seconds':>8s}{'prompts':>8s}"]
    lines += [f"{c.case_id:58s}{c.subset:26s}{c.style:12s}{c.duration_s:>8.1f}{len(c.prompts):>8d}"
              for c in cases.cases]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
