"""The catalog API used by Dagster assets and the CLI.

Writes are idempotent upserts (``INSERT ... ON CONFLICT``) so re-running an asset, or two runs
racing on the same object, never duplicates rows. Rows returned by queries are detached
snapshots: read their columns freely, but open :meth:`Catalog.session` to change them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from infra.catalog.db import make_engine, safe_url, writer
from infra.catalog.models import Base, Rejection, SourceVideo

log = logging.getLogger(__name__)

PROBE_FIELDS = (
    "sha256", "size_bytes", "container", "video_codec", "audio_codec", "duration_s", "fps",
    "width", "height", "n_frames", "audio_rate", "audio_channels",
)
INGEST_STAGE = "ingest"
SOURCE_VIDEO_KIND = "source_video"


class Subject(NamedTuple):
    """What a rejection is about: a kind (source_video, clip, ...), a stable key, optionally a row id."""

    kind: str
    key: str
    id: int | None = None


class Catalog:
    """Read and write the catalog at ``url`` (migrate it first with :func:`infra.catalog.migrate`)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._writes = sessionmaker(writer(self.engine), expire_on_commit=False)
        self._reads = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Catalog({safe_url(self.url)!r})"

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        factory = self._writes if write else self._reads
        try:
            with factory() as session, session.begin():
                yield session
        except (OperationalError, ProgrammingError) as exc:
            text = str(exc.orig).lower()
            if "no such table" in text or ("relation" in text and "does not exist" in text):
                raise RuntimeError(
                    f"the catalog at {safe_url(self.url)} is not migrated ({exc.orig}); run `lpm catalog migrate`"
                ) from exc
            raise

    # --- writes ---------------------------------------------------------------------------
    def _insert(self, model: type[Base]) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(model)

    def _upsert_source(self, session: Session, object_key: str, values: dict[str, Any]) -> int:
        previous = session.execute(
            sa.select(SourceVideo.sha256, SourceVideo.status).where(SourceVideo.object_key == object_key)
        ).first()
        if previous is not None and previous.sha256 and values.get("sha256") and previous.sha256 != values["sha256"]:
            log.warning("%s changed content (sha256 %s... -> %s...); updating its catalog row",
                        object_key, previous.sha256[:12], values["sha256"][:12])
        stmt = self._insert(SourceVideo).values(object_key=object_key, **values)
        tracked = [c for c in values if c not in ("dagster_run_id", "meta")]
        changed = sa.or_(*(getattr(SourceVideo, c).is_distinct_from(stmt.excluded[c]) for c in tracked))
        stmt = stmt.on_conflict_do_update(
            index_elements=[SourceVideo.object_key],
            set_={**{c: stmt.excluded[c] for c in values}, "updated_at": sa.func.now()},
            where=changed,
        )
        session.execute(stmt)
        return session.scalars(sa.select(SourceVideo.id).where(SourceVideo.object_key == object_key)).one()

    def upsert_source_video(
        self, *, object_key: str, sha256: str, size_bytes: int, container: str, video_codec: str,
        audio_codec: str, duration_s: float, fps: float, width: int, height: int, audio_rate: int,
        audio_channels: int, n_frames: int | None = None, run_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Record an ingested video; returns its id.

        Idempotent by object key + content: ingesting the same object again changes nothing; new
        content under the same key updates the row (and a rejected object becomes ingested).
        """
        values = dict(
            sha256=sha256, size_bytes=size_bytes, container=container, video_codec=video_codec,
            audio_codec=audio_codec, duration_s=duration_s, fps=fps, width=width, height=height,
            n_frames=n_frames, audio_rate=audio_rate, audio_channels=audio_channels, status="ingested",
            dagster_run_id=run_id, meta=meta,
        )
        with self.session() as session:
            return self._upsert_source(session, object_key, values)

    def upsert_rejected_video(
        self, *, object_key: str, reason: str, detail: str, run_id: str | None = None,
        stage: str = INGEST_STAGE, sha256: str | None = None, size_bytes: int | None = None,
    ) -> int:
        """Record a raw video that failed ingestion, and the rejection why; returns its id."""
        values: dict[str, Any] = {field: None for field in PROBE_FIELDS}
        values.update(sha256=sha256, size_bytes=size_bytes, status="rejected", dagster_run_id=run_id)
        with self.session() as session:
            video_id = self._upsert_source(session, object_key, values)
            self._record_rejection(session, stage, Subject(SOURCE_VIDEO_KIND, object_key, video_id),
                                   reason, detail, run_id)
        return video_id

    def _record_rejection(self, session: Session, stage: str, subject: Subject, reason: str,
                          detail: str, run_id: str | None) -> int:
        if not (stage and subject.kind and subject.key and reason):
            raise ValueError(f"a rejection needs a stage, subject kind and key, and a reason; got "
                             f"stage={stage!r} subject={subject!r} reason={reason!r}")
        stmt = self._insert(Rejection).values(
            stage=stage, subject_kind=subject.kind, subject_key=subject.key, subject_id=subject.id,
            reason=reason, detail=detail, dagster_run_id=run_id,
        )
        keys = (Rejection.stage, Rejection.subject_kind, Rejection.subject_key, Rejection.reason)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={"detail": stmt.excluded.detail, "subject_id": stmt.excluded.subject_id,
                  "dagster_run_id": stmt.excluded.dagster_run_id, "updated_at": sa.func.now()},
            where=sa.or_(Rejection.detail.is_distinct_from(stmt.excluded.detail),
                         Rejection.subject_id.is_distinct_from(stmt.excluded.subject_id)),
        )
        session.execute(stmt)
        match = sa.and_(*(col == value for col, value in zip(keys, (stage, subject.kind, subject.key, reason))))
        return session.scalars(sa.select(Rejection.id).where(match)).one()

    def record_rejection(self, stage: str, subject: Subject | tuple[str, str], reason: str,
                         detail: str = "", run_id: str | None = None) -> int:
        """Record that ``subject`` was rejected at ``stage`` for ``reason``; returns the row id.

        Idempotent per (stage, subject kind + key, reason): repeating it updates the detail only.
        """
        subject = subject if isinstance(subject, Subject) else Subject(*subject)
        with self.session() as session:
            return self._record_rejection(session, stage, subject, reason, detail, run_id)

    # --- queries --------------------------------------------------------------------------
    def source_videos(self, status: str | None = None) -> list[SourceVideo]:
        """Source videos, oldest first, optionally only those with ``status`` (ingested/rejected)."""
        query = sa.select(SourceVideo).order_by(SourceVideo.id)
        if status is not None:
            query = query.where(SourceVideo.status == status)
        with self.session(write=False) as session:
            return list(session.scalars(query))

    def source_video(self, object_key: str) -> SourceVideo | None:
        """The source video stored under ``object_key``, if any."""
        with self.session(write=False) as session:
            return session.scalars(sa.select(SourceVideo).where(SourceVideo.object_key == object_key)).first()

    def rejections(self, stage: str | None = None) -> list[Rejection]:
        """Rejections, oldest first, optionally of one ``stage``."""
        query = sa.select(Rejection).order_by(Rejection.id)
        if stage is not None:
            query = query.where(Rejection.stage == stage)
        with self.session(write=False) as session:
            return list(session.scalars(query))

    def counts(self) -> dict[str, int]:
        """Row count of every catalog table."""
        with self.session(write=False) as session:
            return {
                name: session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
                for name, table in sorted(Base.metadata.tables.items())
            }

    def source_video_counts(self) -> dict[str, int]:
        """Number of source videos per status."""
        return self._group_count(SourceVideo.status)

    def rejection_counts(self, stage: str | None = None) -> dict[str, int]:
        """Number of rejections per reason (of one stage, or all)."""
        return self._group_count(Rejection.reason, None if stage is None else Rejection.stage == stage)

    def _group_count(self, column: Any, where: Any = None) -> dict[str, int]:
        query = sa.select(column, sa.func.count()).group_by(column).order_by(column)
        if where is not None:
            query = query.where(where)
        with self.session(write=False) as session:
            return {key: n for key, n in session.execute(query)}

    def rows(self, table: str, limit: int = 20) -> tuple[list[str], list[Sequence[Any]]]:
        """(column names, newest ``limit`` rows) of any catalog table, for display."""
        if table not in Base.metadata.tables:
            raise ValueError(f"unknown catalog table {table!r}; tables: {', '.join(sorted(Base.metadata.tables))}")
        if limit < 1:
            raise ValueError(f"row limit must be at least 1, got {limit}")
        target = Base.metadata.tables[table]
        query = sa.select(target).order_by(*(c.desc() for c in target.primary_key.columns)).limit(limit)
        with self.session(write=False) as session:
            result = session.execute(query)
            return list(result.keys()), [tuple(row) for row in result]
