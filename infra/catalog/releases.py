"""Release rows of the catalog: model versions, deployments on Triton, and the promotion audit trail.

Used by the serving assets and the ``lpm model`` commands (SQLite and PostgreSQL alike)::

    mv = upsert_model_version(cat, name="lpm-online", version="3", kind="online", mlflow_run_id=...)
    dep = record_deployment(cat, model_version_id=mv, target="127.0.0.1:8001", triton_model="lpm-online", ...)
    set_deployment_check(cat, dep, "latency_slo", {"passed": True, ...})
    record_promotion(cat, registered_model="lpm-online", alias="champion", action="promote",
                     model_version_id=mv, previous_model_version_id=old, reason="...", actor="alice", ...)
    promotions(cat, "lpm-online")          # newest first, with version numbers

Promotions are append-only: a rollback is a new row, never an edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from infra.catalog.api import Catalog
from infra.catalog.models import DEPLOYMENT_STATUSES, PROMOTION_ACTIONS, Deployment, ModelVersion, Promotion

_MODEL_FIELDS = ("kind", "preset", "mlflow_run_id", "artifact_uri", "sha256", "dagster_run_id", "meta")


def upsert_model_version(catalog: Catalog, *, name: str, version: str | int, kind: str, **values: Any) -> int:
    """Insert or update the row of ``name`` version ``version``; returns its id.

    ``values``: preset, mlflow_run_id, artifact_uri, sha256, dagster_run_id, meta (None keeps
    what the row has, so a second writer, e.g. LPM-Bench, never erases fields).
    """
    unknown = set(values) - set(_MODEL_FIELDS)
    if unknown:
        raise ValueError(f"unknown model version fields {sorted(unknown)}; use {_MODEL_FIELDS}")
    given = {k: v for k, v in {"kind": kind, **values}.items() if v is not None}
    stmt = catalog._insert(ModelVersion).values(name=name, version=str(version), **given)
    stmt = stmt.on_conflict_do_update(index_elements=[ModelVersion.name, ModelVersion.version],
                                      set_={**{k: stmt.excluded[k] for k in given}, "updated_at": sa.func.now()})
    with catalog.session() as session:
        session.execute(stmt)
        return session.scalars(sa.select(ModelVersion.id).where(
            ModelVersion.name == name, ModelVersion.version == str(version))).one()


def model_version_id(catalog: Catalog, name: str, version: str | int) -> int | None:
    """The row id of ``name`` version ``version`` (None when it is not in the catalog)."""
    with catalog.session(write=False) as session:
        return session.scalars(sa.select(ModelVersion.id).where(
            ModelVersion.name == name, ModelVersion.version == str(version))).first()


def _status(status: str) -> str:
    if status not in DEPLOYMENT_STATUSES:
        raise ValueError(f"deployment status must be one of {DEPLOYMENT_STATUSES}, got {status!r}")
    return status


def record_deployment(catalog: Catalog, *, model_version_id: int, target: str, triton_model: str,
                      repository_uri: str | None = None, provenance_sha256: str | None = None,
                      status: str = "pending", dagster_run_id: str | None = None,
                      meta: dict[str, Any] | None = None) -> int:
    """A new deployment row (one per load of a version on a Triton endpoint); returns its id."""
    row = Deployment(model_version_id=model_version_id, target=target, triton_model=triton_model,
                     repository_uri=repository_uri, provenance_sha256=provenance_sha256, status=_status(status),
                     checks={}, dagster_run_id=dagster_run_id, meta=meta)
    with catalog.session() as session:
        session.add(row)
        session.flush()
        return row.id


def set_deployment_check(catalog: Catalog, deployment_id: int, check: str, result: dict[str, Any],
                         fail_on_error: bool = True) -> None:
    """Record one check's result on a deployment (other checks kept); a failed check marks it ``failed``."""
    with catalog.session() as session:
        query = sa.select(Deployment).where(Deployment.id == deployment_id).with_for_update()
        row = session.execute(query).scalar_one()
        row.checks = {**(row.checks or {}), check: result}
        if fail_on_error and not result.get("passed", False) and row.status == "pending":
            row.status = "failed"


def set_deployment_status(catalog: Catalog, deployment_id: int, status: str) -> None:
    with catalog.session() as session:
        session.execute(sa.update(Deployment).where(Deployment.id == deployment_id).values(
            status=_status(status), updated_at=sa.func.now()))


def retire_live_deployments(catalog: Catalog, triton_model: str, target: str, keep: int | None = None) -> int:
    """Mark ``live`` deployments of a Triton model on ``target`` ``retired`` (except ``keep``); returns the count."""
    query = sa.update(Deployment).where(Deployment.triton_model == triton_model, Deployment.target == target,
                                        Deployment.status == "live")
    if keep is not None:
        query = query.where(Deployment.id != keep)
    with catalog.session() as session:
        return session.execute(query.values(status="retired", updated_at=sa.func.now())).rowcount or 0


def deployment(catalog: Catalog, deployment_id: int) -> Deployment | None:
    with catalog.session(write=False) as session:
        return session.get(Deployment, deployment_id)


def latest_deployment(catalog: Catalog, model_version_id: int, triton_model: str | None = None) -> Deployment | None:
    """The newest deployment row of a model version (optionally of one Triton model name)."""
    query = sa.select(Deployment).where(Deployment.model_version_id == model_version_id)
    if triton_model is not None:
        query = query.where(Deployment.triton_model == triton_model)
    with catalog.session(write=False) as session:
        return session.scalars(query.order_by(Deployment.id.desc()).limit(1)).first()


def record_promotion(catalog: Catalog, *, registered_model: str, alias: str, action: str, model_version_id: int,
                     previous_model_version_id: int | None, reason: str, actor: str | None,
                     dagster_run_id: str | None = None, deployment_id: int | None = None,
                     bench_run_id: int | None = None, meta: dict[str, Any] | None = None) -> int:
    """Append one audit row (promote / rollback / refuse); returns its id."""
    if action not in PROMOTION_ACTIONS:
        raise ValueError(f"promotion action must be one of {PROMOTION_ACTIONS}, got {action!r}")
    if not reason:
        raise ValueError("a promotion record needs a reason")
    row = Promotion(registered_model=registered_model, alias=alias, action=action, model_version_id=model_version_id,
                    previous_model_version_id=previous_model_version_id, bench_run_id=bench_run_id,
                    deployment_id=deployment_id, reason=reason, actor=actor, dagster_run_id=dagster_run_id, meta=meta)
    with catalog.session() as session:
        session.add(row)
        session.flush()
        return row.id


@dataclass(frozen=True)
class PromotionRecord:
    """One audit row with version numbers instead of row ids."""

    id: int
    created_at: datetime
    registered_model: str
    alias: str
    action: str
    to_version: str
    from_version: str | None
    reason: str
    actor: str | None
    dagster_run_id: str | None
    deployment_id: int | None
    meta: dict[str, Any] | None


def promotions(catalog: Catalog, registered_model: str | None = None, alias: str | None = None,
               limit: int = 50) -> list[PromotionRecord]:
    """The audit trail, newest first."""
    to_mv, from_mv = aliased(ModelVersion), aliased(ModelVersion)
    query = (sa.select(Promotion, to_mv.version, from_mv.version)
             .join(to_mv, Promotion.model_version_id == to_mv.id)
             .outerjoin(from_mv, Promotion.previous_model_version_id == from_mv.id)
             .order_by(Promotion.id.desc()).limit(limit))
    if registered_model is not None:
        query = query.where(Promotion.registered_model == registered_model)
    if alias is not None:
        query = query.where(Promotion.alias == alias)
    with catalog.session(write=False) as session:
        return [PromotionRecord(p.id, p.created_at, p.registered_model, p.alias, p.action, to_v, from_v, p.reason,
                                p.actor, p.dagster_run_id, p.deployment_id, p.meta)
                for p, to_v, from_v in session.execute(query)]
