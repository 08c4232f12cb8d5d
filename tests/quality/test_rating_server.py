"""The rating web app over real HTTP (SQLite catalog, generated MP4s): pages, cookies, range-served
videos, votes, errors that leave the server up, the http(s) pass-through and the `lpm rate` CLI."""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

from infra.catalog import Catalog, migrate
from orchestration.cli import main as lpm
from quality.rating.forms import VoteForm
from quality.rating.server import RatingServer, make_server
from quality.rating.store import RatingStore
from quality.rating.study import DIMENSIONS, Pair, Study, load_study, make_study
from tests.media_factory import write_av

COOKIE = {"Cookie": "lpm_rater=Ada%20L"}


@dataclass
class Served:
    server: RatingServer
    study: Study
    catalog: Catalog

    def request(self, method: str, path: str, body: dict[str, str] | bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        host, port = self.server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        payload = urlencode(body).encode() if isinstance(body, dict) else body
        hdrs = dict(headers or {})
        if isinstance(body, dict):
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        try:
            conn.request(method, path, body=payload, headers=hdrs)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def _serve(study: Study, url: str) -> Iterator[Served]:
    migrate(url)
    with Catalog(url) as catalog:
        server = make_server(study, catalog, port=0, rng=random.Random(0))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Served(server, study, catalog)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rating-videos")
    for system, seconds in (("new", 1.0), ("old", 1.5)):  # different lengths tell A from B
        for case in ("c1", "c2"):
            write_av(root / system / f"{case}.mp4", seconds=seconds, faststart=True)
    return root


@pytest.fixture()
def served(videos: Path, tmp_path: Path) -> Iterator[Served]:
    study = make_study(videos / "new", videos / "old", "new-vs-old", system_a="secret-new", system_b="secret-old")
    yield from _serve(study, f"sqlite:///{tmp_path / 'catalog.db'}")


def _vote_form(pair_id: int, preference: str = "left", **changes: str) -> dict[str, str]:
    form = {"pair": str(pair_id), "preference": preference}
    form |= {f"{side}.{dim}": "4" for side in ("left", "right") for dim in DIMENSIONS}
    return form | {k.replace("__", "."): v for k, v in changes.items()}


def test_start_page_and_rater_cookie(served: Served) -> None:
    status, _, body = served.request("GET", "/")
    assert status == 200 and b"id=rater-form" in body
    status, _, body = served.request("POST", "/rater", {"rater": "<b>"})
    assert status == 400 and b"a rater name is 1-64 characters" in body
    status, headers, _ = served.request("POST", "/rater", {"rater": "Ada L"})
    assert status == 303 and headers["location"] == "/"
    assert headers["set-cookie"].startswith("lpm_rater=Ada%20L;") and "HttpOnly" in headers["set-cookie"]
    status, headers, _ = served.request("POST", "/forget", b"", {"Content-Type": "text/plain"})
    assert status == 303 and "Max-Age=0" in headers["set-cookie"]


def test_the_pair_page_hides_the_systems(served: Served) -> None:
    status, _, body = served.request("GET", "/", headers=COOKIE)
    page = body.decode()
    assert status == 200 and "0 / 2 rated" in page
    assert "video-left" in page and "video-right" in page and "/media/" in page
    for hidden in ("secret-new", "secret-old", "new/c", "old/c", ".mp4"):
        assert hidden not in page


def test_videos_are_served_with_ranges_in_the_recorded_order(served: Served, videos: Path) -> None:
    served.request("GET", "/", headers=COOKIE)
    store = RatingStore(served.catalog)
    ids = store.register(served.study)
    shown = next(s for s in (store.shown(pid, "Ada L") for pid in ids.values()) if s is not None)
    case = shown.case_id
    expected = {side: (videos / ("new" if shown.system(side) == "a" else "old") / f"{case}.mp4").read_bytes()
                for side in ("left", "right")}
    for side, data in expected.items():
        status, headers, body = served.request("GET", f"/media/{shown.pair_id}/{side}", headers=COOKIE)
        assert (status, body, headers["accept-ranges"], headers["content-type"]) == (200, data, "bytes", "video/mp4")
    data = expected["left"]
    status, headers, body = served.request("GET", f"/media/{shown.pair_id}/left", headers=COOKIE | {"Range": "bytes=10-99"})
    assert (status, body, headers["content-range"]) == (206, data[10:100], f"bytes 10-99/{len(data)}")
    status, headers, _ = served.request("GET", f"/media/{shown.pair_id}/left", headers=COOKIE | {"Range": "bytes=-16"})
    assert status == 206 and headers["content-range"] == f"bytes {len(data) - 16}-{len(data) - 1}/{len(data)}"
    status, headers, _ = served.request("GET", f"/media/{shown.pair_id}/left",
                                        headers=COOKIE | {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    status, headers, body = served.request("HEAD", f"/media/{shown.pair_id}/right", headers=COOKIE)
    assert status == 200 and headers["content-length"] == str(len(expected["right"])) and body == b""
    other = next(pid for pid in ids.values() if pid != shown.pair_id)
    assert served.request("GET", f"/media/{other}/left", headers=COOKIE)[0] == 403  # not shown to Ada yet
    assert served.request("GET", f"/media/{shown.pair_id}/left")[0] == 403  # no rater
    assert served.request("GET", "/media/999/left", headers=COOKIE)[0] == 404


def _current_pair(served: Served) -> int:
    body = served.request("GET", "/", headers=COOKIE)[2].decode()
    return int(body.split("name=pair value=")[1].split(">")[0])


def test_bad_votes_get_400_and_the_server_stays_up(served: Served) -> None:
    pair = _current_pair(served)
    bad_forms: list[tuple[dict[str, str] | bytes, dict[str, str], bytes]] = [
        (_vote_form(pair, left__overall="9"), {}, b"Overall rating of the left video must be 1-5, got 9"),
        (_vote_form(pair, preference="maybe"), {}, b"preference must be one of left, same, right"),
        ({"pair": str(pair)}, {}, b"is missing"),
        (_vote_form(999), {}, b"pair 999 is not part of this study"),
        (b"\xff\xfe=1", {"Content-Type": "application/x-www-form-urlencoded"}, b"not UTF-8"),
        (b"{}", {"Content-Type": "application/json"}, b"send the form as application/x-www-form-urlencoded"),
    ]
    for body, headers, message in bad_forms:
        status, _, page = served.request("POST", "/vote", body, COOKIE | headers)
        assert status == 400 and message in page, page[-400:]
    assert served.request("POST", "/vote", _vote_form(pair))[0] == 403  # no rater cookie
    assert served.request("POST", "/vote", b"x" * 70_000, COOKIE | {
        "Content-Type": "application/x-www-form-urlencoded"})[0] == 413
    assert served.request("GET", "/nope")[0] == 404
    assert served.request("PUT", "/vote")[0] == 501
    status, _, body = served.request("GET", "/healthz")
    assert status == 200 and b'"study": "new-vs-old"' in body
    assert RatingStore(served.catalog).votes("new-vs-old") == []


def test_voting_moves_on_and_ends(served: Served) -> None:
    first = _current_pair(served)
    status, headers, _ = served.request("POST", "/vote", _vote_form(first, "right"), COOKIE)
    assert status == 303 and headers["location"] == "/"
    second = _current_pair(served)
    assert second != first
    served.request("POST", "/vote", _vote_form(second, "same"), COOKIE)
    status, _, body = served.request("GET", "/", headers=COOKIE)
    assert status == 200 and b"You have rated all 2 pairs" in body
    votes = RatingStore(served.catalog).votes("new-vs-old")
    assert len(votes) == 2 and {v.rater for v in votes} == {"Ada L"} and "S" in {v.preference for v in votes}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_http_videos_pass_through_without_showing_their_url(videos: Path, tmp_path: Path) -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(videos)))
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{upstream.server_address[1]}"
        study = Study("remote", "new", "old", (Pair("c1", f"{base}/new/c1.mp4", f"{base}/old/missing.mp4"),),
                      dimensions=("overall",))
        for served in _serve(study, f"sqlite:///{tmp_path / 'catalog.db'}"):
            page = served.request("GET", "/", headers=COOKIE)[2].decode()
            assert base not in page
            pair = _current_pair(served)
            shown = RatingStore(served.catalog).shown(pair, "Ada L")
            assert shown is not None
            a_side, b_side = ("left", "right") if shown.left_system == "a" else ("right", "left")
            status, headers, body = served.request("GET", f"/media/{pair}/{a_side}", headers=COOKIE)
            assert status == 200 and body == (videos / "new" / "c1.mp4").read_bytes()
            assert served.request("GET", f"/media/{pair}/{b_side}", headers=COOKIE)[0] == 502
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_cli_make_study_and_report(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    out = tmp_path / "study.json"
    assert lpm(["rate", "make-study", str(videos / "new"), str(videos / "old"), "--id", "cli-study",
                "--out", str(out), "--dimensions", "overall", "motion_dynamics"]) == 0
    assert "2 pairs, A = new, B = old" in capsys.readouterr().out
    study = load_study(out)
    assert study.dimensions == ("overall", "motion_dynamics")
    migrate(url)
    assert lpm(["rate", "--url", url, "report", "--study", "nope"]) == 1
    with Catalog(url) as catalog:
        store = RatingStore(catalog)
        ids = store.register(study)
        for rater in ("ann", "bob"):
            while (shown := store.next_pair(study, ids, rater)) is not None:  # A better, A 5 / B 2 overall
                sides = {shown.system(side): side for side in ("left", "right")}
                scores = {sides["a"]: {"overall": 5, "motion_dynamics": 4}, sides["b"]: {"overall": 2, "motion_dynamics": 3}}
                store.submit(VoteForm(shown.pair_id, sides["a"], scores), rater, ids)
    capsys.readouterr()
    assert lpm(["rate", "--url", url, "report", "--study", "cli-study", "--pairs"]) == 0
    text = capsys.readouterr().out
    assert "A = new    B = old" in text and "4 votes by 2 rater(s) on 2 pair(s)" in text
    assert "win rate A over B, (G + S/2)/N   1.000" in text
    assert "Overall" in text and "5.000 [5.000, 5.000]" in text and "2.000 [2.000, 2.000]" in text
    assert lpm(["rate", "--url", url, "report", "--study", "cli-study", "--json"]) == 0
    assert '"win_rate"' in capsys.readouterr().out
