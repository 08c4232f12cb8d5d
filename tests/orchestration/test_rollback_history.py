"""Which version `lpm model rollback` goes back to: the champion's history, not the last move."""

from __future__ import annotations

from pathlib import Path

from orchestration.rollback import champion_history, previous_champion


def test_promotions_stack_and_rollbacks_walk_back() -> None:
    moves = [("promote", "1", None), ("promote", "2", "1"), ("promote", "3", "2")]
    assert champion_history(moves) == ["1", "2", "3"]
    moves.append(("rollback", "2", "3"))
    assert champion_history(moves) == ["1", "2"]  # a second rollback goes to 1, not back to 3
    moves.append(("rollback", "1", "2"))
    assert champion_history(moves) == ["1"]


def test_rollback_to_an_older_version_drops_what_came_after_and_promotion_resumes() -> None:
    moves = [("promote", "1", None), ("promote", "2", "1"), ("promote", "3", "2"), ("rollback", "1", "3"),
             ("promote", "4", "1")]
    assert champion_history(moves) == ["1", "4"]
    assert champion_history([("promote", "5", "2")]) == ["2", "5"]  # history starting mid-way
    assert champion_history([("promote", "1", None), ("rollback", "7", "1")]) == ["7"]  # to a never-champion


def test_previous_champion_reads_the_catalog_audit_trail(tmp_path: Path) -> None:
    from infra.catalog import Catalog
    from infra.catalog.releases import record_promotion, upsert_model_version
    from infra.catalog.schema import migrate

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    migrate(url)
    with Catalog(url) as catalog:
        ids = {v: upsert_model_version(catalog, name="lpm-online", version=v, kind="online") for v in "123"}

        def move(action: str, to: str, frm: str | None) -> None:
            record_promotion(catalog, registered_model="lpm-online", alias="champion", action=action,
                             model_version_id=ids[to], previous_model_version_id=ids[frm] if frm else None,
                             reason=f"{action} to {to}", actor="test")

        move("promote", "1", None)
        move("promote", "2", "1")
        move("promote", "3", "2")
        assert previous_champion(catalog, "lpm-online", "3") == "2"
        move("rollback", "2", "3")
        assert previous_champion(catalog, "lpm-online", "2") == "1"  # not 3, the version just rolled back from
        record_promotion(catalog, registered_model="lpm-online", alias="champion", action="refuse",
                         model_version_id=ids["3"], previous_model_version_id=ids["2"], reason="SLO", actor="t")
        assert previous_champion(catalog, "lpm-online", "2") == "1"  # refusals do not move the champion
        assert previous_champion(catalog, "lpm-online", "1") is None
