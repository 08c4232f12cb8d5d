"""Input validation of the rating app: vote and rater forms, study files, Range headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quality.rating.forms import FormError, parse_form, parse_rater, parse_vote
from quality.rating.media import RangeNotSatisfiable, parse_range
from quality.rating.study import DIMENSIONS, load_study, make_study, write_study

DIMS = {"motion_dynamics": "Motion dynamics", "overall": "Overall"}


def _fields(**changes: str | None) -> dict[str, list[str]]:
    fields = {"pair": "7", "preference": "left"} | {f"{s}.{d}": "3" for s in ("left", "right") for d in DIMS}
    fields.update({k.replace("__", "."): v for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        fields.pop(k.replace("__", "."))
    return {k: [v] for k, v in fields.items()}


def test_a_complete_vote_parses() -> None:
    form = parse_vote(_fields(right__overall="5", preference="same"), DIMS)
    assert (form.pair_id, form.preference) == (7, "same")
    assert form.scores == {"left": {"motion_dynamics": 3, "overall": 3}, "right": {"motion_dynamics": 3, "overall": 5}}


@pytest.mark.parametrize("changes, message", [
    ({"preference": None}, "which video is better .* is missing"),
    ({"preference": "A"}, "preference must be one of left, same, right"),
    ({"pair": "x7"}, "pair id must be a positive whole number"),
    ({"pair": None}, "the pair id is missing"),
    ({"left__overall": "6"}, "Overall rating of the left video must be 1-5, got 6"),
    ({"right__motion_dynamics": "0"}, "must be 1-5, got 0"),
    ({"left__overall": "4.5"}, "must be a whole number 1-5"),
    ({"right__overall": None}, "the Overall rating of the right video is missing"),
    ({"right__overall": "  "}, "the Overall rating of the right video is missing"),
    ({"left__identity_consistency": "3"}, "unexpected form field"),
])
def test_bad_votes_say_what_is_wrong(changes: dict[str, str | None], message: str) -> None:
    with pytest.raises(FormError, match=message):
        parse_vote(_fields(**changes), DIMS)


def test_a_field_sent_twice_is_refused() -> None:
    fields = _fields()
    fields["preference"] = ["left", "right"]
    with pytest.raises(FormError, match="sent 2 times"):
        parse_vote(fields, DIMS)


def test_form_bodies() -> None:
    assert parse_form(b"rater=Ada+Lovelace&x=") == {"rater": ["Ada Lovelace"], "x": [""]}
    with pytest.raises(FormError, match="not UTF-8"):
        parse_form(b"rater=\xff\xfe")
    with pytest.raises(FormError, match="larger than"):
        parse_form(b"x=" + b"a" * 70_000)


@pytest.mark.parametrize("name, expected", [("Ada", "Ada"), ("  ada   l. ", "ada l."), ("r_01@lab", "r_01@lab"),
                                            ("Zoë O'Neil", "Zoë O'Neil")])
def test_rater_names(name: str, expected: str) -> None:
    assert parse_rater({"rater": [name]}) == expected


@pytest.mark.parametrize("name", ["", "   ", "<script>", "-dash", "a" * 65, "x;y", "tab\tname\x00"])
def test_bad_rater_names(name: str) -> None:
    with pytest.raises(FormError):
        parse_rater({"rater": [name]})


# --- study files ---------------------------------------------------------------------------------
def _videos(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(b"\x00\x00\x00\x18ftypmp42")  # only existence matters here
    return root


def _study_file(tmp_path: Path, **changes: object) -> Path:
    _videos(tmp_path / "a", ["c1.mp4"]), _videos(tmp_path / "b", ["c1.mp4"])
    doc: dict[str, object] = {"id": "s1", "systems": {"a": "new", "b": "old"},
                              "pairs": [{"case": "c1", "a": "a/c1.mp4", "b": "b/c1.mp4", "prompt": "nod"}]}
    doc.update(changes)
    path = tmp_path / "study.json"
    path.write_text(json.dumps(doc))
    return path


def test_study_file_resolves_videos_against_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    study = load_study(_study_file(tmp_path))
    assert study.dimensions == tuple(DIMENSIONS)
    (pair,) = study.pairs
    assert pair.video("a") == str((tmp_path / "a" / "c1.mp4").resolve()) and pair.prompt == "nod"
    assert len(study.sha256()) == 64


@pytest.mark.parametrize("changes, error, message", [
    ({"id": "bad id!"}, ValueError, "study id"),
    ({"systems": {"a": "x"}}, ValueError, "systems"),
    ({"pairs": []}, ValueError, "no pairs"),
    ({"pairs": [{"case": "c1", "a": "a/c1.mp4"}]}, ValueError, r"pairs\[0\]: missing b"),
    ({"pairs": [{"case": "c1", "a": "a/c1.mp4", "b": "b/nope.mp4"}]}, FileNotFoundError, "nope.mp4 does not exist"),
    ({"pairs": [{"case": "c1", "a": "a/c1.mp4", "b": "s3://bucket/c1.mp4"}]}, ValueError, "unsupported video URL"),
    ({"pairs": [{"case": "c1", "a": "a/c1.mp4", "b": "b/c1.mp4"}] * 2}, ValueError, "more than once: c1"),
    ({"dimensions": ["overall", "beauty"]}, ValueError, "dimensions must be distinct names"),
])
def test_bad_study_files_say_what_is_wrong(tmp_path: Path, changes: dict[str, object], error: type[Exception],
                                           message: str) -> None:
    with pytest.raises(error, match=message):
        load_study(_study_file(tmp_path, **changes))


def test_study_file_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_study(tmp_path / "s.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_study(tmp_path / "missing.json")


def test_http_videos_are_kept_as_urls(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/videos/c1.mp4"
    study = load_study(_study_file(tmp_path, pairs=[{"case": "c1", "a": "a/c1.mp4", "b": url}]))
    assert study.pairs[0].video_b == url


def test_make_study_pairs_same_names_and_round_trips(tmp_path: Path) -> None:
    _videos(tmp_path / "sys_new", ["c1.mp4", "c2.mp4", "only_new.mp4"])
    _videos(tmp_path / "sys_old", ["c2.mp4", "c1.mp4", "only_old.mp4", "notes.txt"])
    study = make_study(tmp_path / "sys_new", tmp_path / "sys_old", "new-vs-old", dimensions=("overall",))
    assert [p.case_id for p in study.pairs] == ["c1", "c2"]
    assert (study.system_a, study.system_b, study.dimensions) == ("sys_new", "sys_old", ("overall",))
    path = write_study(study, tmp_path / "study.json")
    assert json.loads(path.read_text())["pairs"][0]["a"] == "sys_new/c1.mp4"  # relative: the folder can move
    assert load_study(path) == study
    with pytest.raises(ValueError, match="no \\*.mp4 file name is in both"):
        make_study(tmp_path / "sys_new", _videos(tmp_path / "empty", []), "x")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        make_study(tmp_path / "nope", tmp_path / "sys_old", "x")


# --- Range headers ---------------------------------------------------------------------------
@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("bytes=0-", (0, 999)), ("bytes=0-99", (0, 99)), ("bytes=900-5000", (900, 999)),
    ("bytes=-100", (900, 999)), ("bytes=-5000", (0, 999)), ("bytes=5-4", None), ("items=0-1", None),
    ("bytes=0-1,5-6", None), ("bytes=-", None),
])
def test_range_headers(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header, size", [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)
