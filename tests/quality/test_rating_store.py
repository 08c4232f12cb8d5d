"""Rating rows in the catalog, on SQLite and PostgreSQL: migration, registration, shown order, votes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from infra.catalog import Catalog, downgrade, head_revision, migrate, schema_diff
from infra.catalog.models import RatingPair, RatingScore, RatingStudy, RatingVote
from quality.rating.aggregate import aggregate
from quality.rating.forms import FormError, VoteForm
from quality.rating.store import RatingStore, preference_code, rater_order
from quality.rating.study import Pair, Study
from tests.infra.conftest import catalog, catalog_url, migrated_postgres_url, postgres_url  # noqa: F401 (fixtures)

RATING_TABLES = {"rating_studies", "rating_pairs", "rating_votes", "rating_scores"}
DIMS = ("motion_dynamics", "overall")


def _study(n: int = 3, **changes: object) -> Study:
    values: dict[str, object] = dict(
        id="online-3-vs-2", system_a="lpm-online/3", system_b="lpm-online/2", dimensions=DIMS,
        pairs=tuple(Pair(f"case{i}", f"/videos/a/case{i}.mp4", f"/videos/b/case{i}.mp4") for i in range(n)))
    values.update(changes)
    return Study(**values)  # type: ignore[arg-type]


def _form(pair_id: int, preference: str, left: int = 4, right: int = 2) -> VoteForm:
    return VoteForm(pair_id, preference, {"left": {d: left for d in DIMS}, "right": {d: right for d in DIMS}})


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migration_matches_the_models_and_downgrades(catalog_url: str) -> None:  # noqa: F811
    assert migrate(catalog_url) == head_revision()
    assert schema_diff(catalog_url) == []
    assert RATING_TABLES <= _tables(catalog_url)
    downgrade(catalog_url, "0001")
    assert not RATING_TABLES & _tables(catalog_url)
    assert migrate(catalog_url) == head_revision()


def test_register_is_idempotent_and_keeps_a_study_s_systems(catalog: Catalog) -> None:  # noqa: F811
    store = RatingStore(catalog)
    ids = store.register(_study())
    assert store.register(_study()) == ids and len(set(ids.values())) == 3
    info = store.study("online-3-vs-2")
    assert (info.system_a, info.system_b, info.dimensions) == ("lpm-online/3", "lpm-online/2", DIMS)
    with pytest.raises(ValueError, match="give a changed study a new id"):
        store.register(_study(system_b="lpm-online/1"))
    moved = _study(pairs=(Pair("case0", "/moved/a.mp4", "/moved/b.mp4", "nod"),))
    assert store.register(moved) == {"case0": ids["case0"]}
    with catalog.session(write=False) as s:
        row = s.get(RatingPair, ids["case0"])
        assert (row.video_a, row.prompt) == ("/moved/a.mp4", "nod")
    with pytest.raises(ValueError, match="no rating study 'nope'.*known: online-3-vs-2"):
        store.study("nope")


def test_each_rater_gets_a_stable_order_and_a_recorded_side(catalog: Catalog) -> None:  # noqa: F811
    store = RatingStore(catalog, random.Random(1))
    study = _study(6)
    ids = store.register(study)
    orders = {r: rater_order(study.id, r, list(ids.values())) for r in ("ann", "bob", "cy", "dee")}
    assert orders["ann"] == rater_order(study.id, "ann", list(ids.values()))
    assert len({tuple(o) for o in orders.values()}) > 1 and all(sorted(o) == sorted(ids.values()) for o in orders.values())
    first = store.next_pair(study, ids, "ann")
    assert first is not None and first.pair_id == orders["ann"][0]
    again = store.next_pair(study, ids, "ann")
    assert again == first  # same pair, same side until the vote is in
    assert store.shown(first.pair_id, "bob") is None
    with catalog.session(write=False) as s:
        (vote,) = s.scalars(sa.select(RatingVote)).all()
        assert (vote.rater, vote.left_system, vote.preference, vote.submitted_at) == ("ann", first.left_system, None, None)
    sides = {store.show(pid, "bob").left_system for pid in ids.values()}
    assert sides == {"a", "b"}  # drawn per pair and rater


@pytest.mark.parametrize("left_system, picked, expected", [
    ("a", "left", "G"), ("a", "right", "B"), ("b", "left", "B"), ("b", "right", "G"), ("a", "same", "S"), ("b", "same", "S"),
])
def test_preference_maps_the_shown_side_to_systems(left_system: str, picked: str, expected: str) -> None:
    assert preference_code(picked, left_system) == expected


def test_submit_stores_gsb_and_scores_by_system(catalog: Catalog) -> None:  # noqa: F811
    store = RatingStore(catalog)
    study = _study(2)
    ids = store.register(study)
    shown = store.next_pair(study, ids, "ann")
    assert shown is not None
    vote_id = store.submit(_form(shown.pair_id, "left", left=5, right=1), "ann", ids)
    assert store.progress(ids, "ann") == (1, 2)
    left, right = shown.system("left"), shown.system("right")
    with catalog.session(write=False) as s:
        vote = s.get(RatingVote, vote_id)
        assert vote.preference == ("G" if left == "a" else "B") and vote.submitted_at is not None
        scores = {(r.system, r.dimension): r.score for r in s.scalars(sa.select(RatingScore))}
    assert scores == {(left, d): 5 for d in DIMS} | {(right, d): 1 for d in DIMS}
    store.submit(_form(shown.pair_id, "same", left=3, right=3), "ann", ids)  # a second submission replaces
    (only,) = store.votes(study.id)
    assert only.preference == "S" and set(only.scores.values()) == {3} and len(only.scores) == 4
    nxt = store.next_pair(study, ids, "ann")
    assert nxt is not None and nxt.pair_id != shown.pair_id
    store.submit(_form(nxt.pair_id, "right"), "ann", ids)
    assert store.next_pair(study, ids, "ann") is None and store.progress(ids, "ann") == (2, 2)


def test_submit_refuses_pairs_not_shown_or_not_in_the_study(catalog: Catalog) -> None:  # noqa: F811
    store = RatingStore(catalog)
    study = _study(2)
    ids = store.register(study)
    with pytest.raises(FormError, match="was not shown to bob"):
        store.submit(_form(ids["case0"], "left"), "bob", ids)
    with pytest.raises(FormError, match="not part of this study"):
        store.submit(_form(999, "left"), "bob", ids)
    assert store.votes(study.id) == []


@pytest.mark.parametrize("bad", ["score", "system", "unsubmitted_preference", "duplicate_vote"])
def test_the_database_enforces_the_rating_rules(catalog: Catalog, bad: str) -> None:  # noqa: F811
    ids = RatingStore(catalog).register(_study(1))
    with pytest.raises(IntegrityError), catalog.session() as s:
        vote = RatingVote(pair_id=ids["case0"], rater="ann", left_system="a")
        s.add(vote)
        s.flush()
        if bad == "score":
            s.add(RatingScore(vote_id=vote.id, system="a", dimension="overall", score=6))
        elif bad == "system":
            s.add(RatingScore(vote_id=vote.id, system="c", dimension="overall", score=3))
        elif bad == "unsubmitted_preference":
            vote.preference = "G"
        else:
            s.add(RatingVote(pair_id=ids["case0"], rater="ann", left_system="b"))
        s.flush()


def test_votes_of_several_raters_aggregate(catalog: Catalog) -> None:  # noqa: F811
    store = RatingStore(catalog)
    study = _study(2)
    ids = store.register(study)
    for rater in ("ann", "bob", "cy"):
        for _ in ids:
            shown = store.next_pair(study, ids, rater)
            assert shown is not None
            a_side = "left" if shown.left_system == "a" else "right"  # every rater prefers system A
            store.submit(_form(shown.pair_id, a_side, left=4, right=4), rater, ids)
    votes = store.votes(study.id)
    assert len(votes) == 6 and {v.preference for v in votes} == {"G"}
    report = aggregate(votes, DIMS)
    assert report.verdicts == {"G": 2, "S": 0, "B": 0} and report.win_rate.value == 1.0
    assert report.ratings["a"]["overall"].value == 4.0
    with catalog.session() as s:  # deleting a study removes its pairs, votes and scores
        s.delete(s.scalars(sa.select(RatingStudy)).one())
    assert {t: catalog.counts()[t] for t in RATING_TABLES} == dict.fromkeys(RATING_TABLES, 0)


def test_sqlite_file_catalog_in_a_fresh_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'catalog.db'}"
    migrate(url)
    with Catalog(url) as cat:
        assert RatingStore(cat).register(_study(1)) == {"case0": 1}
