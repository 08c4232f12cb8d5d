"""Rollback of the ``champion`` alias, served by Triton before the alias moves (``lpm model rollback``).

    result = rollback(RollbackTarget(...), to_version=None, reason="bad lip sync", who="alice")

The target is ``to_version`` or the champion before the current one (from the catalog's audit
trail). It is rebuilt into the Triton repository from its MLflow descriptor if it was retired,
loaded if Triton does not serve it, proven live with real sessions (a dead stub is reloaded),
and only then does ``champion`` move; the rollback is a catalog audit row like a promotion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.catalog import Catalog, migrate
from infra.catalog.releases import promotions, record_deployment, record_promotion, retire_live_deployments
from orchestration.release import CHAMPION, alias_version, catalog_version, move_alias, resolve_version
from serving.deploy import DeploymentError, TritonDeployer, repository_versions
from serving.repository import ServeSettings, build_model, read_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackTarget:
    """Where the champion lives: registry, catalog, Triton endpoint and repository."""

    tracking_uri: str
    catalog_url: str
    grpc_url: str
    repository: Path
    registered_model: str = "lpm-online"
    triton_model: str = ""
    load_timeout_s: float = 900.0

    @property
    def served_name(self) -> str:
        return self.triton_model or self.registered_model


@dataclass(frozen=True)
class RollbackResult:
    from_version: str
    to_version: str
    promotion_id: int
    deployment_id: int
    loaded: bool
    health: dict[str, Any]


def champion_history(moves: list[tuple[str, str, str | None]]) -> list[str]:
    """The champion's history as a stack, oldest first, from (action, to, from) moves in time order:
    a promotion pushes its version; a rollback drops the version it left (and, when it goes back to a
    version still on the stack, everything above that), so rolling back twice walks further back
    instead of returning to the version that was just rolled back."""
    stack: list[str] = []
    for action, to_version, from_version in moves:
        if action == "promote":
            if not stack and from_version:
                stack.append(from_version)
            stack.append(to_version)
        elif action == "rollback":
            if stack:
                stack.pop()
            if to_version in stack:
                del stack[stack.index(to_version) + 1:]
            else:
                stack.append(to_version)
    return stack


def previous_champion(catalog: Catalog, registered_model: str, current: str) -> str | None:
    """The champion before ``current`` in the champion's history (see :func:`champion_history`)."""
    records = promotions(catalog, registered_model, alias=CHAMPION, limit=1000)
    stack = champion_history([(r.action, r.to_version, r.from_version) for r in reversed(records)
                              if r.action in ("promote", "rollback")])
    if len(stack) >= 2 and stack[-1] == current:
        return stack[-2]
    for record in records:  # history does not end at ``current`` (alias moved by hand): its newest move there
        if record.action in ("promote", "rollback") and record.to_version == current and record.from_version:
            return record.from_version
    return None


def _serve(target: RollbackTarget, version: str, descriptor: Any, run_id: str) -> tuple[TritonDeployer, bool]:
    """Make Triton serve ``version`` (rebuild the folder / load as needed); returns (deployer, loaded)."""
    deployer = TritonDeployer(target.grpc_url, target.repository)
    deployer.require_server()
    name = target.served_name
    loaded = False
    if int(version) not in repository_versions(target.repository, name):
        build_model(target.repository, descriptor, registered_model=target.registered_model, version=int(version),
                    run_id=run_id, triton_model=name)
        log.info("version %s was retired from the repository; rebuilt it from its MLflow descriptor", version)
    if int(version) not in deployer.ready_versions(name):
        served = repository_versions(target.repository, name)
        seconds = deployer.load(name, served, target.load_timeout_s)
        log.info("loaded %s versions %s in %.1f s", name, served, seconds)
        loaded = True
    return deployer, loaded


def rollback(target: RollbackTarget, *, to_version: str | None, reason: str, who: str,
             dagster_run_id: str | None = None) -> RollbackResult:
    """Serve ``to_version`` (default: the previous champion), prove it live, move ``champion``, audit it."""
    current = alias_version(target.tracking_uri, target.registered_model, CHAMPION)
    if current is None:
        raise RuntimeError(f"{target.registered_model} has no {CHAMPION}; nothing to roll back")
    migrate(target.catalog_url)
    with Catalog(target.catalog_url) as catalog:
        version = str(to_version) if to_version else previous_champion(catalog, target.registered_model, current)
        if version is None:
            raise RuntimeError(f"the catalog records no champion before version {current}; pass --to VERSION")
        if version == current:
            raise ValueError(f"version {version} is already {CHAMPION}")
        resolved = resolve_version(target.tracking_uri, target.registered_model, version=version)
        deployer, loaded = _serve(target, version, resolved.descriptor, resolved.run_id)
        name = target.served_name
        settings = read_settings(target.repository / name / "config.pbtxt") or ServeSettings()
        health = deployer.ensure_live(name, [int(version)], settings.instances, target.load_timeout_s)
        if not health.live:
            raise DeploymentError(f"{name} v{version} is not live on {target.grpc_url}: {health.errors[:3]}; "
                                  f"{CHAMPION} stays at version {current}")
        to_id = catalog_version(catalog, resolved)
        from_id = catalog_version(catalog, resolve_version(target.tracking_uri, target.registered_model,
                                                           version=current))
        dep_id = record_deployment(catalog, model_version_id=to_id, target=target.grpc_url, triton_model=name,
                                   repository_uri=str(target.repository / name / version), status="live",
                                   dagster_run_id=dagster_run_id,
                                   meta={"rollback_from": current, "loaded": loaded, "health": health.to_dict()})
        move_alias(target.tracking_uri, target.registered_model, CHAMPION, version, who=who, reason=reason)
        retire_live_deployments(catalog, name, target.grpc_url, keep=dep_id)
        promotion_id = record_promotion(
            catalog, registered_model=target.registered_model, alias=CHAMPION, action="rollback",
            model_version_id=to_id, previous_model_version_id=from_id, reason=reason, actor=who,
            dagster_run_id=dagster_run_id, deployment_id=dep_id,
            meta={"checks": {"live_sessions": health.to_dict()}, "loaded": loaded, "triton_model": name,
                  "target": target.grpc_url})
    return RollbackResult(current, version, promotion_id, dep_id, loaded, health.to_dict())
