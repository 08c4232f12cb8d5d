"""Release decisions shared by the serving assets and ``lpm model rollback|promotions`` (no Dagster here).

- which MLflow version a name/alias/number means, with its ``lpm-model/1`` descriptor;
- the LPM-Bench gate: a candidate may replace the champion only when its bench run did not
  regress against the champion's (``quality.bench.compare.compare_mlflow_runs``);
- moving the ``champion`` alias (tagged with who, when, why) and the catalog rows that audit it.
"""

from __future__ import annotations

import getpass
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.catalog import Catalog
from infra.catalog.releases import model_version_id, upsert_model_version
from lpm_models.descriptor import DESCRIPTOR_NAME, ModelDescriptor
from orchestration.registry import CHALLENGER

log = logging.getLogger(__name__)

CHAMPION = "champion"


def actor() -> str:
    """Who acts: ``$USER``, else the login name, else ``unknown``."""
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class ResolvedVersion:
    """One registered model version and its descriptor."""

    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    descriptor: ModelDescriptor

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def resolve_version(tracking_uri: str, name: str, *, version: str | int = "",
                    alias: str = CHALLENGER) -> ResolvedVersion:
    """``name`` version ``version`` (or, when empty, the one ``alias`` points at) with its descriptor."""
    import mlflow

    client = _client(tracking_uri)
    if str(version):
        mv = client.get_model_version(name, str(version))
    else:
        mv = client.get_model_version_by_alias(name, alias)
    with tempfile.TemporaryDirectory(prefix="lpm-descriptor-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{mv.source.rstrip('/')}/{DESCRIPTOR_NAME}",
                                                    dst_path=tmp, tracking_uri=tracking_uri)
        descriptor = ModelDescriptor.from_json(Path(local).read_text())
    return ResolvedVersion(name, str(mv.version), mv.run_id or "", mv.source, dict(mv.tags or {}), descriptor)


def alias_version(tracking_uri: str, name: str, alias: str = CHAMPION) -> str | None:
    """The version ``name@alias`` points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def move_alias(tracking_uri: str, name: str, alias: str, version: str, *, who: str, reason: str) -> None:
    """Point ``name@alias`` at ``version`` and tag the version with who moved it there, when and why."""
    client = _client(tracking_uri)
    client.set_registered_model_alias(name, alias, str(version))
    when = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in ((f"lpm.{alias}.since", when), (f"lpm.{alias}.by", who), (f"lpm.{alias}.reason", reason[:4000])):
        client.set_model_version_tag(name, str(version), key, value)
    log.info("%s@%s -> version %s (%s, by %s)", name, alias, version, reason, who)


def catalog_version(catalog: Catalog, resolved: ResolvedVersion) -> int:
    """The catalog row id of a registered version; created (as the training asset would) only when missing,
    so the row its training asset wrote (dataset, parent) is never overwritten."""
    existing = model_version_id(catalog, resolved.name, resolved.version)
    if existing is not None:
        return existing
    d = resolved.descriptor
    main = d.files.get(d.kind) or next(iter(d.files.values()))
    return upsert_model_version(
        catalog, name=resolved.name, version=resolved.version, kind=d.kind, preset=d.preset,
        mlflow_run_id=resolved.run_id or None, artifact_uri=main.uri, sha256=main.sha256,
        dagster_run_id=resolved.tags.get("dagster.run_id"),
        meta={"source": resolved.source, "descriptor": d.to_dict()})


@dataclass
class BenchGate:
    """The LPM-Bench part of a promotion decision."""

    allowed: bool
    reason: str
    candidate_run: str | None = None
    baseline_run: str | None = None
    regressed: bool | None = None
    markdown: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason": self.reason, "candidate_run": self.candidate_run,
                "baseline_run": self.baseline_run, "regressed": self.regressed}


def bench_gate(tracking_uri: str, candidate: str, champion: str, candidate_run: str | None,
               champion_run: str | None) -> BenchGate:
    """Allowed only when both versions have a bench run and the candidate's did not regress."""
    if not candidate_run:
        return BenchGate(False, f"no LPM-Bench result for candidate version {candidate}: materialize lpm_bench "
                                f"for it, then promote again", None, champion_run)
    if not champion_run:
        return BenchGate(False, f"no LPM-Bench result for champion version {champion} to compare against: "
                                f"materialize lpm_bench for it", candidate_run, None)
    from quality.bench.compare import compare_mlflow_runs

    cmp = compare_mlflow_runs(candidate_run, champion_run, tracking_uri)
    verdict = "regressed" if cmp.regressed else "did not regress"
    return BenchGate(not cmp.regressed, f"LPM-Bench: version {candidate} {verdict} against champion {champion}",
                     candidate_run, champion_run, cmp.regressed, cmp.markdown())
