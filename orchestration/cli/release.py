"""`lpm model rollback` and `lpm model promotions`: the champion's audit trail and its rollback."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def register_release(cmds: Any) -> None:
    """Add ``rollback`` and ``promotions`` to the ``lpm model`` subcommands."""
    rb = cmds.add_parser(
        "rollback", help="move `champion` back to the previous champion (or --to VERSION), served by Triton first",
        description="Serve the previous champion (rebuilt into the Triton repository and loaded if needed), prove it "
                    "live with real sessions, then point the MLflow alias `champion` at it; recorded in the catalog "
                    "(`lpm model promotions`).")
    rb.add_argument("--to", dest="to_version", help="MLflow version to restore (default: the champion before the "
                                                    "current one, from the audit trail)")
    rb.add_argument("--reason", default="manual rollback", help="why (recorded; default %(default)r)")
    rb.add_argument("--model", default="lpm-online", help="registered model (default %(default)s)")
    rb.add_argument("--triton-model", default="", help="Triton model name (default: the registered name)")
    rb.add_argument("--timeout", type=float, default=900.0, help="load deadline in seconds (default %(default)s)")
    rb.set_defaults(func=_rollback)
    pr = cmds.add_parser("promotions", help="the promotion / rollback audit trail, newest first",
                         description="Every promotion, refusal and rollback of an alias: when, who, from and to "
                                     "which version, why, and the check results.")
    pr.add_argument("--model", default="lpm-online", help="registered model (default %(default)s)")
    pr.add_argument("--limit", type=int, default=20, help="rows (default %(default)s)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.set_defaults(func=_promotions)


def _env() -> dict[str, str]:
    """The shell's stack variables, else the local stack's."""
    from infra.local.settings import StackSettings

    env = StackSettings.from_env().client_env()
    return {k: os.environ.get(k) or v for k, v in env.items()}


def _rollback(args: argparse.Namespace) -> int:
    from orchestration.release import actor
    from orchestration.rollback import RollbackTarget, rollback

    env = _env()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for key in ("LPM_S3_ENDPOINT", "LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY", "MLFLOW_S3_ENDPOINT_URL",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, env[key])  # the descriptor download reads the MLflow artifact store
    target = RollbackTarget(tracking_uri=env["MLFLOW_TRACKING_URI"], catalog_url=env["LPM_CATALOG_URL"],
                            grpc_url=env["LPM_TRITON_GRPC_URL"], repository=Path(env["LPM_TRITON_REPOSITORY"]),
                            registered_model=args.model, triton_model=args.triton_model, load_timeout_s=args.timeout)
    who = actor()
    result = rollback(target, to_version=args.to_version, reason=args.reason, who=who)
    name = args.triton_model or args.model
    _record_in_dagster(env, args, result, who)
    print(f"{args.model}@champion: version {result.from_version} -> {result.to_version} "
          f"(served by Triton as {name} v{result.to_version}{', loaded' if result.loaded else ''}; "
          f"audit row {result.promotion_id})")
    print(f"stream it: lpm stream --model {name} --version {result.to_version} --image IMG --speech WAV")
    return 0


def _record_in_dagster(env: dict[str, str], args: argparse.Namespace, result: Any, who: str) -> None:
    """The rollback as a materialization of ``model_promotion`` (what the Dagster UI and `lpm run` show)."""
    import logging

    import dagster as dg

    home = Path(os.environ.get("DAGSTER_HOME") or env["DAGSTER_HOME"])
    if not home.is_dir():
        logging.getLogger("lpm").warning("no Dagster instance at %s: the rollback is recorded in MLflow and the "
                                         "catalog only", home)
        return
    os.environ.setdefault("DAGSTER_HOME", str(home))
    name = args.triton_model or args.model
    command = f"lpm stream --model {name} --version {result.to_version} --image IMG --speech WAV"
    examples = Path(env["LPM_HOME"]) / "examples"
    if (examples / "character.png").is_file():
        from orchestration.examples import Examples

        command = Examples(examples, {}).command(name, result.to_version, seconds=10)
    dg.DagsterInstance.get().report_runless_asset_event(dg.AssetMaterialization("model_promotion", metadata={
        "action": "rollback", "promoted": False, "reason": args.reason, "candidate_version": result.to_version,
        "champion_before": result.from_version, "champion_after": result.to_version, "actor": who,
        "promotion_id": result.promotion_id, "checks": dg.MetadataValue.json({"live_sessions": result.health}),
        "stream_command": command, "champion_version": result.to_version}))


def _promotions(args: argparse.Namespace) -> int:
    from infra.catalog import Catalog, migrate
    from infra.catalog.releases import promotions

    url = _env()["LPM_CATALOG_URL"]
    migrate(url)
    with Catalog(url) as catalog:
        rows = promotions(catalog, args.model, limit=args.limit)
    if args.json:
        for r in rows:
            print(json.dumps({"id": r.id, "at": r.created_at.isoformat(), "model": r.registered_model,
                              "alias": r.alias, "action": r.action, "from": r.from_version, "to": r.to_version,
                              "actor": r.actor, "dagster_run_id": r.dagster_run_id, "reason": r.reason,
                              "checks": _checks(r.meta)}, default=str))
        return 0
    if not rows:
        print(f"no promotions of {args.model} recorded yet")
        return 0
    print(f"{'id':>4}  {'when (UTC)':<19}  {'action':<8} {'from':>4} -> {'to':<4} {'who':<12} {'checks':<30} reason")
    for r in rows:
        when = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
        checks = ",".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in _checks(r.meta).items()) or "-"
        print(f"{r.id:>4}  {when:<19}  {r.action:<8} {r.from_version or '-':>4} -> {r.to_version:<4} "
              f"{(r.actor or '-')[:12]:<12} {checks[:30]:<30} {r.reason}")
    return 0


def _checks(meta: dict[str, Any] | None) -> dict[str, bool]:
    """check name -> passed, from an audit row's meta."""
    out = {}
    for name, value in ((meta or {}).get("checks") or {}).items():
        if isinstance(value, dict):
            out[name] = bool(value.get("passed", value.get("live", False)))
    return out
