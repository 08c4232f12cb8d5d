"""Rating rows in the catalog: studies and pairs, which system each rater saw on the left, votes
and scores. Works on SQLite and PostgreSQL through :class:`infra.catalog.Catalog`.

The left/right order is drawn once per (pair, rater) when the pair is first shown and stored in
``rating_votes``; a submitted vote is mapped back to systems A/B from that row only, never from
anything the browser sends.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from infra.catalog import Catalog
from infra.catalog.models import RatingPair, RatingScore, RatingStudy, RatingVote
from quality.rating.aggregate import Vote
from quality.rating.forms import FormError, VoteForm
from quality.rating.study import Study

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shown:
    """A pair as one rater sees it: its catalog id, the case, and which system is on the left."""

    pair_id: int
    case_id: str
    left_system: str
    prompt: str | None

    def system(self, side: str) -> str:
        """System ``"a"``/``"b"`` shown on ``side`` (``"left"``/``"right"``)."""
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        other = "b" if self.left_system == "a" else "a"
        return self.left_system if side == "left" else other


@dataclass(frozen=True)
class StudyInfo:
    """A study's catalog row: id, names of both systems, dimensions, title."""

    id: int
    name: str
    system_a: str
    system_b: str
    dimensions: tuple[str, ...]
    title: str | None


def preference_code(preference: str, left_system: str) -> str:
    """Good / Same / Bad of system A vs B from what the rater picked (left / same / right)."""
    if preference == "same":
        return "S"
    if preference not in ("left", "right") or left_system not in ("a", "b"):
        raise ValueError(f"bad preference {preference!r} or left system {left_system!r}")
    a_won = (preference == "left") == (left_system == "a")
    return "G" if a_won else "B"


def rater_order(study: str, rater: str, pair_ids: list[int]) -> list[int]:
    """The order a rater goes through the pairs: a shuffle seeded by (study, rater), stable across visits."""
    seed = int.from_bytes(hashlib.sha256(f"{study}\0{rater}".encode()).digest()[:8], "big")
    order = sorted(pair_ids)
    random.Random(seed).shuffle(order)
    return order


class RatingStore:
    """Read and write rating rows through a migrated catalog."""

    def __init__(self, catalog: Catalog, rng: random.Random | None = None) -> None:
        self.catalog = catalog
        self._rng = rng or random.SystemRandom()

    def _insert(self, model: type) -> Any:
        dialect = postgresql if self.catalog.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(model)

    # --- studies ------------------------------------------------------------------------------
    def register(self, study: Study) -> dict[str, int]:
        """Create or update the study and its pairs; returns case id -> pair id.

        Registering again is idempotent. A study id keeps its systems and dimensions for life (a
        change is refused: start a new study id); a moved video updates its pair with a warning;
        pairs dropped from the file are no longer shown, but their votes stay and are reported.
        """
        with self.catalog.session() as s:
            row = s.scalars(sa.select(RatingStudy).where(RatingStudy.name == study.id)).first()
            if row is None:
                row = RatingStudy(name=study.id, title=study.title, system_a=study.system_a,
                                  system_b=study.system_b, dimensions=list(study.dimensions),
                                  spec_sha256=study.sha256())
                s.add(row)
                s.flush()
            elif (row.system_a, row.system_b, tuple(row.dimensions)) != (study.system_a, study.system_b,
                                                                         study.dimensions):
                raise ValueError(
                    f"study {study.id!r} is already in the catalog with systems {row.system_a!r} / {row.system_b!r} "
                    f"and dimensions {row.dimensions}; give a changed study a new id")
            else:
                row.title, row.spec_sha256 = study.title, study.sha256()
            return self._register_pairs(s, row.id, study)

    def _register_pairs(self, s: Session, study_id: int, study: Study) -> dict[str, int]:
        existing = {p.case_id: p for p in s.scalars(sa.select(RatingPair).where(RatingPair.study_id == study_id))}
        ids: dict[str, int] = {}
        for pair in study.pairs:
            row = existing.get(pair.case_id)
            if row is None:
                row = RatingPair(study_id=study_id, case_id=pair.case_id, video_a=pair.video_a,
                                 video_b=pair.video_b, prompt=pair.prompt)
                s.add(row)
                s.flush()
            elif (row.video_a, row.video_b, row.prompt) != (pair.video_a, pair.video_b, pair.prompt):
                log.warning("study %s case %s: videos or prompt changed since registration; updating",
                            study.id, pair.case_id)
                row.video_a, row.video_b, row.prompt = pair.video_a, pair.video_b, pair.prompt
            ids[pair.case_id] = row.id
        return ids

    def study(self, name: str) -> StudyInfo:
        """The catalog row of study ``name``."""
        with self.catalog.session(write=False) as s:
            row = s.scalars(sa.select(RatingStudy).where(RatingStudy.name == name)).first()
            if row is None:
                known = s.scalars(sa.select(RatingStudy.name).order_by(RatingStudy.name)).all()
                raise ValueError(f"no rating study {name!r} in the catalog; known: {', '.join(known) or 'none'}")
            return StudyInfo(row.id, row.name, row.system_a, row.system_b, tuple(row.dimensions), row.title)

    # --- what a rater sees -------------------------------------------------------------------
    def next_pair(self, study: Study, pair_ids: dict[str, int], rater: str) -> Shown | None:
        """The rater's next pair without a submitted vote (None when all are done); the left/right
        order is drawn and stored the first time the pair is shown to this rater."""
        ids = list(pair_ids.values())
        with self.catalog.session(write=False) as s:
            done = set(s.scalars(sa.select(RatingVote.pair_id).where(
                RatingVote.rater == rater, RatingVote.pair_id.in_(ids), RatingVote.submitted_at.is_not(None))))
        todo = [pid for pid in rater_order(study.id, rater, ids) if pid not in done]
        return self.show(todo[0], rater) if todo else None

    def show(self, pair_id: int, rater: str) -> Shown:
        """Pair ``pair_id`` as ``rater`` sees it (draws and stores the order on first sight)."""
        stmt = self._insert(RatingVote).values(pair_id=pair_id, rater=rater, left_system=self._rng.choice("ab"))
        with self.catalog.session() as s:
            s.execute(stmt.on_conflict_do_nothing(index_elements=["pair_id", "rater"]))
        shown = self.shown(pair_id, rater)
        if shown is None:
            raise RuntimeError(f"pair {pair_id} vanished while being shown to {rater!r}")
        return shown

    def shown(self, pair_id: int, rater: str) -> Shown | None:
        """How ``pair_id`` was shown to ``rater``, or None if it never was."""
        query = (sa.select(RatingPair.case_id, RatingPair.prompt, RatingVote.left_system)
                 .join(RatingVote, RatingVote.pair_id == RatingPair.id)
                 .where(RatingPair.id == pair_id, RatingVote.rater == rater))
        with self.catalog.session(write=False) as s:
            row = s.execute(query).first()
        return None if row is None else Shown(pair_id, row.case_id, row.left_system, row.prompt)

    def progress(self, pair_ids: dict[str, int], rater: str) -> tuple[int, int]:
        """(pairs the rater has submitted, pairs in the study)."""
        with self.catalog.session(write=False) as s:
            done = s.scalar(sa.select(sa.func.count()).select_from(RatingVote).where(
                RatingVote.rater == rater, RatingVote.pair_id.in_(list(pair_ids.values())),
                RatingVote.submitted_at.is_not(None)))
        return int(done or 0), len(pair_ids)

    # --- votes ---------------------------------------------------------------------------------
    def submit(self, form: VoteForm, rater: str, pair_ids: dict[str, int]) -> int:
        """Store a rater's vote on a pair shown to them; a second submission replaces the first.
        Returns the vote id."""
        if form.pair_id not in pair_ids.values():
            raise FormError(f"pair {form.pair_id} is not part of this study")
        with self.catalog.session() as s:
            vote = s.scalars(sa.select(RatingVote).where(
                RatingVote.pair_id == form.pair_id, RatingVote.rater == rater).with_for_update()).first()
            if vote is None:
                raise FormError(f"pair {form.pair_id} was not shown to {rater}; reload the page to get your next pair")
            vote.preference = preference_code(form.preference, vote.left_system)
            vote.submitted_at = datetime.now(timezone.utc)
            s.execute(sa.delete(RatingScore).where(RatingScore.vote_id == vote.id))
            right = "b" if vote.left_system == "a" else "a"
            s.add_all(RatingScore(vote_id=vote.id, system=vote.left_system if side == "left" else right,
                                  dimension=dim, score=score)
                      for side, scores in form.scores.items() for dim, score in scores.items())
            return vote.id

    def votes(self, study_name: str) -> list[Vote]:
        """Every submitted vote of a study, with its scores, oldest first."""
        info = self.study(study_name)
        query = (sa.select(RatingVote.id, RatingVote.rater, RatingVote.preference, RatingPair.case_id)
                 .join(RatingPair, RatingPair.id == RatingVote.pair_id)
                 .where(RatingPair.study_id == info.id, RatingVote.submitted_at.is_not(None))
                 .order_by(RatingVote.id))
        with self.catalog.session(write=False) as s:
            rows = s.execute(query).all()
            scores: dict[int, dict[tuple[str, str], int]] = {row.id: {} for row in rows}
            if rows:
                for score in s.scalars(sa.select(RatingScore).where(RatingScore.vote_id.in_(list(scores)))):
                    scores[score.vote_id][(score.system, score.dimension)] = score.score
        return [Vote(case_id=r.case_id, rater=r.rater, preference=r.preference, scores=scores[r.id]) for r in rows]
