"""Release rows (model versions, deployments, promotion audit trail) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from infra.catalog import Catalog
from infra.catalog.releases import (
    deployment, latest_deployment, model_version_id, promotions, record_deployment, record_promotion,
    retire_live_deployments, set_deployment_check, set_deployment_status, upsert_model_version,
)


def test_model_versions_upsert_keeps_fields_a_second_writer_omits(catalog: Catalog) -> None:
    first = upsert_model_version(catalog, name="lpm-online", version=3, kind="online", preset="tiny",
                                 mlflow_run_id="run-a", meta={"descriptor": {"kind": "online"}})
    again = upsert_model_version(catalog, name="lpm-online", version="3", kind="online", sha256="ab" * 32)
    assert first == again == model_version_id(catalog, "lpm-online", 3)
    assert model_version_id(catalog, "lpm-online", 4) is None
    _, rows = catalog.rows("model_versions")
    assert len(rows) == 1
    with pytest.raises(ValueError, match="unknown model version fields"):
        upsert_model_version(catalog, name="x", version=1, kind="online", colour="red")


def test_deployment_checks_merge_and_a_failure_marks_it_failed(catalog: Catalog) -> None:
    mv = upsert_model_version(catalog, name="lpm-online", version=1, kind="online")
    dep = record_deployment(catalog, model_version_id=mv, target="127.0.0.1:8001", triton_model="lpm-online",
                            repository_uri="/repo/lpm-online/1", provenance_sha256="cd" * 32, dagster_run_id="r1")
    set_deployment_check(catalog, dep, "smoke_stream", {"passed": True, "chunks": 12})
    assert deployment(catalog, dep).status == "pending"
    set_deployment_check(catalog, dep, "latency_slo", {"passed": False, "failures": ["rtf"]})
    row = deployment(catalog, dep)
    assert row.status == "failed" and set(row.checks) == {"smoke_stream", "latency_slo"}
    assert row.checks["smoke_stream"]["chunks"] == 12
    later = record_deployment(catalog, model_version_id=mv, target="127.0.0.1:8001", triton_model="lpm-online")
    assert latest_deployment(catalog, mv).id == later
    set_deployment_status(catalog, later, "live")
    with pytest.raises(ValueError, match="deployment status"):
        set_deployment_status(catalog, later, "glowing")
    other = record_deployment(catalog, model_version_id=mv, target="127.0.0.1:8001", triton_model="lpm-online",
                              status="live")
    assert retire_live_deployments(catalog, "lpm-online", "127.0.0.1:8001", keep=other) == 1
    assert deployment(catalog, later).status == "retired" and deployment(catalog, other).status == "live"


def test_promotion_trail_newest_first_with_versions(catalog: Catalog) -> None:
    v1 = upsert_model_version(catalog, name="lpm-online", version=1, kind="online")
    v2 = upsert_model_version(catalog, name="lpm-online", version=2, kind="online")
    record_promotion(catalog, registered_model="lpm-online", alias="champion", action="promote", model_version_id=v1,
                     previous_model_version_id=None, reason="first candidate passing the checks", actor="alice",
                     dagster_run_id="r1", meta={"checks": {"smoke_stream": True}})
    record_promotion(catalog, registered_model="lpm-online", alias="champion", action="promote", model_version_id=v2,
                     previous_model_version_id=v1, reason="no regression", actor="alice", dagster_run_id="r2")
    record_promotion(catalog, registered_model="lpm-online", alias="champion", action="rollback", model_version_id=v1,
                     previous_model_version_id=v2, reason="complaints", actor="bob")
    trail = promotions(catalog, "lpm-online")
    assert [(p.action, p.from_version, p.to_version) for p in trail] == [
        ("rollback", "2", "1"), ("promote", "1", "2"), ("promote", None, "1")]
    assert trail[-1].meta == {"checks": {"smoke_stream": True}} and trail[0].actor == "bob"
    assert trail[0].created_at is not None
    assert promotions(catalog, "lpm-base") == [] and len(promotions(catalog, limit=1)) == 1
    with pytest.raises(ValueError, match="action"):
        record_promotion(catalog, registered_model="lpm-online", alias="champion", action="demote",
                         model_version_id=v1, previous_model_version_id=None, reason="x", actor=None)
    with pytest.raises(ValueError, match="reason"):
        record_promotion(catalog, registered_model="lpm-online", alias="champion", action="promote",
                         model_version_id=v1, previous_model_version_id=None, reason="", actor=None)
