"""The catalog on SQLite and PostgreSQL: migrations match the models, upserts are idempotent,
the database enforces the schema's rules, and `lpm catalog` works against it."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from infra.catalog import Catalog, Subject, current_revision, downgrade, head_revision, migrate, schema_diff
from infra.catalog.models import Base, Clip, Identity, IdentityReference, Segment, SourceVideo
from lpm_models.media.probe import probe_video
from orchestration.cli import main as lpm
from tests.media_factory import write_av

KEY = "s3://lpm-raw/videos/talk_0001.mp4"
SHA_A, SHA_B = "a" * 64, "b" * 64


def _probe(sha256: str = SHA_A, **changes: object) -> dict[str, object]:
    info: dict[str, object] = dict(
        sha256=sha256, size_bytes=1234, container="mp4", video_codec="h264", audio_codec="aac",
        duration_s=12.5, fps=25.0, width=256, height=256, n_frames=312, audio_rate=16000, audio_channels=1,
    )
    info.update(changes)
    return info


def _table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- schema and migrations --------------------------------------------------------------------
def test_migrate_creates_every_table_and_is_idempotent(catalog_url: str) -> None:
    assert current_revision(catalog_url) is None
    assert migrate(catalog_url) == head_revision()
    assert _table_names(catalog_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert migrate(catalog_url) == head_revision()
    assert current_revision(catalog_url) == head_revision()


def test_models_and_migrations_agree(catalog_url: str) -> None:
    migrate(catalog_url)
    assert schema_diff(catalog_url) == []


def test_schema_diff_sees_a_model_change(catalog_url: str) -> None:
    migrate(catalog_url)
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["clips"].append_column(sa.Column("blur_score", sa.Float()))
    diff = schema_diff(catalog_url, metadata=changed)
    assert [d[0] for d in diff] == ["add_column"] and diff[0][3].name == "blur_score"


def test_downgrade_to_base_drops_every_table(catalog_url: str) -> None:
    migrate(catalog_url)
    assert downgrade(catalog_url, "base") is None
    assert _table_names(catalog_url) <= {"alembic_version"}
    assert migrate(catalog_url) == head_revision()


def test_concurrent_migrations_from_two_processes(catalog_url: str) -> None:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(migrate, [catalog_url, catalog_url]))
    assert results == [head_revision(), head_revision()]
    assert schema_diff(catalog_url) == []


def test_unmigrated_catalog_says_how_to_fix_it(catalog_url: str) -> None:
    with Catalog(catalog_url) as catalog, pytest.raises(RuntimeError, match="lpm catalog migrate"):
        catalog.source_videos()


def test_migrations_are_found_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'catalog.db'}"
    assert migrate(url) == head_revision()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        Catalog(url)


# --- source videos and rejections ---------------------------------------------------------------
def test_reingesting_the_same_object_changes_nothing(catalog: Catalog) -> None:
    first = catalog.upsert_source_video(object_key=KEY, run_id="run-1", **_probe())
    again = catalog.upsert_source_video(object_key=KEY, run_id="run-2", **_probe())
    assert again == first
    (row,) = catalog.source_videos()
    assert (row.status, row.sha256, row.dagster_run_id) == ("ingested", SHA_A, "run-1")


def test_new_content_under_the_same_key_updates_the_row(catalog: Catalog) -> None:
    first = catalog.upsert_source_video(object_key=KEY, run_id="run-1", **_probe())
    second = catalog.upsert_source_video(object_key=KEY, run_id="run-2", **_probe(SHA_B, duration_s=30.0))
    assert second == first
    (row,) = catalog.source_videos()
    assert (row.sha256, row.duration_s, row.dagster_run_id) == (SHA_B, 30.0, "run-2")


def test_rejected_upload_is_recorded_once_and_a_fixed_upload_is_ingested(catalog: Catalog) -> None:
    vid = catalog.upsert_rejected_video(object_key=KEY, reason="truncated", detail="cut", run_id="r1")
    assert catalog.upsert_rejected_video(object_key=KEY, reason="truncated", detail="cut", run_id="r2") == vid
    (rejection,) = catalog.rejections(stage="ingest")
    assert (rejection.subject_kind, rejection.subject_key, rejection.subject_id) == ("source_video", KEY, vid)
    assert (rejection.reason, rejection.dagster_run_id) == ("truncated", "r1")
    assert catalog.source_video(KEY).status == "rejected"
    assert catalog.upsert_source_video(object_key=KEY, run_id="r3", **_probe()) == vid
    assert catalog.source_video(KEY).status == "ingested"
    assert len(catalog.rejections()) == 1  # the history stays


def test_record_rejection_is_idempotent_per_stage_subject_and_reason(catalog: Catalog) -> None:
    clip = Subject("clip", "clips/talk_0001/0003.mp4")
    first = catalog.record_rejection("quality", clip, "overlay_text", "caption bar in 40% of frames", "r1")
    assert catalog.record_rejection("quality", clip, "overlay_text", "caption bar in 41% of frames", "r2") == first
    other_reason = catalog.record_rejection("quality", clip, "low_resolution", "180p", "r2")
    other_stage = catalog.record_rejection("sync", ("clip", clip.key), "overlay_text", "", "r2")
    assert len({first, other_reason, other_stage}) == 3
    rows = {(r.stage, r.reason): r for r in catalog.rejections()}
    assert rows[("quality", "overlay_text")].detail == "caption bar in 41% of frames"
    assert [r.stage for r in catalog.rejections(stage="sync")] == ["sync"]
    with pytest.raises(ValueError, match="needs a stage"):
        catalog.record_rejection("", clip, "x")


def test_queries_and_counts(catalog: Catalog) -> None:
    for i in range(3):
        catalog.upsert_source_video(object_key=f"{KEY}.{i}", **_probe(str(i) * 64))
    catalog.upsert_rejected_video(object_key="s3://lpm-raw/videos/notes.mp4", reason="not_a_video", detail="text")
    catalog.upsert_rejected_video(object_key="s3://lpm-raw/videos/empty.mp4", reason="zero_byte", detail="0 B")
    assert [v.object_key for v in catalog.source_videos(status="ingested")] == [f"{KEY}.{i}" for i in range(3)]
    assert len(catalog.source_videos(status="rejected")) == 2 and len(catalog.source_videos()) == 5
    assert catalog.source_video_counts() == {"ingested": 3, "rejected": 2}
    assert catalog.rejection_counts() == {"not_a_video": 1, "zero_byte": 1}
    assert catalog.rejection_counts(stage="quality") == {}
    counts = catalog.counts()
    assert set(counts) == set(Base.metadata.tables)
    assert (counts["source_videos"], counts["rejections"], counts["clips"]) == (5, 2, 0)


def test_a_probed_file_fits_the_catalog(catalog: Catalog, tmp_path: Path) -> None:
    result = probe_video(write_av(tmp_path / "talk.mp4", seconds=1.0))
    vid = catalog.upsert_source_video(object_key=KEY, run_id="r1", **result.to_dict())
    row = catalog.source_video(KEY)
    assert row.id == vid and row.n_frames == result.n_frames and row.sha256 == result.sha256


# --- the growing tables ------------------------------------------------------------------------
def _clip(session: sa.orm.Session, **changes: object) -> Clip:
    video = SourceVideo(object_key=KEY, status="ingested", sha256=SHA_A)
    session.add(video)
    session.flush()
    values: dict[str, object] = dict(source_video_id=video.id, clip_key="clips/0001.mp4", start_s=1.0, end_s=5.0,
                                     meta={"quality": {"sharpness": 0.8, "flags": ["ok"]}})
    values.update(changes)
    clip = Clip(**values)
    session.add(clip)
    session.flush()
    return clip


def test_json_round_trip_and_cascades(catalog: Catalog) -> None:
    with catalog.session() as s:
        clip = _clip(s)
        s.add(Segment(clip_id=clip.id, start_frame=0, end_frame=48, label="speak", meta={"speaker_p": 0.97}))
    with catalog.session() as s:
        stored = s.scalars(sa.select(Clip)).one()
        assert stored.meta == {"quality": {"sharpness": 0.8, "flags": ["ok"]}}
        s.delete(s.scalars(sa.select(SourceVideo)).one())
    assert catalog.counts()["clips"] == 0 and catalog.counts()["segments"] == 0


@pytest.mark.parametrize("bad", ["foreign_key", "status", "span", "label", "appearance_inside_clip"])
def test_the_database_enforces_the_schema(catalog: Catalog, bad: str) -> None:
    with pytest.raises(IntegrityError), catalog.session() as s:
        if bad == "foreign_key":
            s.add(Clip(source_video_id=999, clip_key="x", start_s=0.0, end_s=1.0))
        elif bad == "status":
            s.add(SourceVideo(object_key=KEY, status="maybe"))
        elif bad == "span":
            _clip(s, start_s=5.0, end_s=5.0)
        elif bad == "label":
            s.add(Segment(clip_id=_clip(s).id, start_frame=0, end_frame=10, label="laugh"))
        else:
            clip, person = _clip(s), Identity(name="ada")
            s.add(person)
            s.flush()
            s.add(IdentityReference(identity_id=person.id, clip_id=clip.id, source_clip_id=clip.id,
                                    kind="appearance", object_key="refs/ada/global.png"))
        s.flush()


def test_rows_for_display_newest_first(catalog: Catalog) -> None:
    for i in range(4):
        catalog.upsert_source_video(object_key=f"{KEY}.{i}", **_probe(str(i) * 64))
    columns, rows = catalog.rows("source_videos", limit=2)
    assert columns[:2] == ["id", "object_key"]
    assert [r[1] for r in rows] == [f"{KEY}.3", f"{KEY}.2"]
    with pytest.raises(ValueError, match="unknown catalog table"):
        catalog.rows("videos")


# --- the CLI ---------------------------------------------------------------------------------
def test_cli_migrate_status_show(catalog_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LPM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LPM_CATALOG_URL", catalog_url)
    assert lpm(["catalog", "status"]) == 1  # not migrated yet
    assert lpm(["catalog", "migrate"]) == 0
    assert f"-> {head_revision()}" in capsys.readouterr().out
    with Catalog(catalog_url) as catalog:
        catalog.upsert_rejected_video(object_key=KEY, reason="truncated", detail="cut in half")
    assert lpm(["catalog", "status"]) == 0
    out = capsys.readouterr().out
    assert "up to date" in out and "rejected 1" in out and "truncated 1" in out
    assert lpm(["catalog", "show", "rejections", "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert KEY in out and "cut in half" in out and "(1 newest rows of rejections)" in out
    assert lpm(["catalog", "show", "no_such_table"]) == 1
