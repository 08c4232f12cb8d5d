"""The rating web app: a threaded ``http.server`` on 127.0.0.1 that shows each rater the pairs of a
study in their own order, serves the videos (with range requests), and stores votes in the catalog.

Routes::

    GET  /                   start page (no rater cookie), the rater's next pair, or "all done"
    POST /rater              set the rater name (cookie ``lpm_rater``)
    POST /forget             clear the rater cookie
    POST /vote               store a vote (preference + 1-5 scores) -> 303 to /
    GET  /media/PAIR/SIDE    the left or right video of a pair shown to this rater (Range supported)
    GET  /healthz            JSON {"study": ID, "pairs": N}

There is no authentication: the rater name only tells raters apart. Keep it on loopback (or
behind an authenticating proxy).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from infra.catalog import Catalog
from quality.rating import media, page
from quality.rating.forms import MAX_FORM_BYTES, FormError, clean_rater, parse_form, parse_rater, parse_vote
from quality.rating.store import RatingStore
from quality.rating.study import DIMENSIONS, Pair, Study, is_remote

log = logging.getLogger(__name__)

COOKIE = "lpm_rater"
MEDIA_PATH = re.compile(r"^/media/(\d+)/(left|right)$")
FORM_TYPE = "application/x-www-form-urlencoded"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; script-src 'none'",
    "Referrer-Policy": "no-referrer",
}


class HttpError(Exception):
    """Answer the request with ``status`` and a message the user can act on."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RatingApp:
    """A study registered in the catalog, and the store to read and write its votes."""

    study: Study
    store: RatingStore
    pair_ids: dict[str, int]

    @classmethod
    def open(cls, study: Study, catalog: Catalog, rng: random.Random | None = None) -> "RatingApp":
        """Register ``study`` in a migrated catalog and get ready to serve it."""
        store = RatingStore(catalog, rng)
        return cls(study, store, store.register(study))

    @property
    def title(self) -> str:
        return self.study.title or f"Rating study {self.study.id}"

    @property
    def dimensions(self) -> dict[str, str]:
        return {d: DIMENSIONS[d] for d in self.study.dimensions}

    def pair(self, pair_id: int) -> Pair:
        """The study pair with catalog id ``pair_id``."""
        for pair in self.study.pairs:
            if self.pair_ids[pair.case_id] == pair_id:
                return pair
        raise HttpError(HTTPStatus.NOT_FOUND, f"pair {pair_id} is not part of study {self.study.id}")


class RatingServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to one :class:`RatingApp`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: RatingApp) -> None:
        super().__init__(address, RatingHandler)
        self.app = app

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class RatingHandler(BaseHTTPRequestHandler):
    """One request to the rating app (see the module docstring for the routes)."""

    server: RatingServer
    server_version = "lpm-rating/1"
    timeout = 120  # seconds a silent connection may hold a worker thread

    # --- plumbing -------------------------------------------------------------------------------
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {**SECURITY_HEADERS, "Content-Type": content_type, "Content-Length": str(len(body)),
                            "Cache-Control": "no-store", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, status: int, html: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, html.encode("utf-8"), headers=headers)

    def _redirect(self, location: str, cookie: str | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain",
                   {"Location": location, **({"Set-Cookie": cookie} if cookie else {})})

    def _rater(self) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        try:
            morsel = SimpleCookie(raw).get(COOKIE)
        except CookieError:
            return None
        if morsel is None:
            return None
        try:
            return clean_rater(unquote(morsel.value))
        except FormError:
            return None

    def _form(self) -> dict[str, list[str]]:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != FORM_TYPE:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"send the form as {FORM_TYPE}, not {ctype or 'nothing'}")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "the request needs a Content-Length")
        if int(length) > MAX_FORM_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the form is larger than {MAX_FORM_BYTES} bytes")
        return parse_form(self.rfile.read(int(length)))

    def _dispatch(self, routes: dict[str, Callable[[], None]]) -> None:
        path = urlparse(self.path).path
        try:
            handler = routes.get(path)
            media_match = MEDIA_PATH.match(path) if self.command in ("GET", "HEAD") else None
            if media_match:
                self._media(int(media_match[1]), media_match[2])
            elif handler is None:
                raise HttpError(HTTPStatus.NOT_FOUND, f"there is no page {path}")
            else:
                handler()
        except FormError as exc:
            self._html(HTTPStatus.BAD_REQUEST, page.error_page(400, "Bad Request", (
                f"{exc}. Go back (your answers are kept by the browser), fix it and submit again.")))
        except HttpError as exc:
            self._html(exc.status, page.error_page(exc.status.value, exc.status.phrase, str(exc)))
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client closed the connection during %s %s", self.command, path)
        except Exception:
            log.exception("rating server: %s %s failed", self.command, path)
            self._html(HTTPStatus.INTERNAL_SERVER_ERROR, page.error_page(
                500, "Internal Server Error", "the server failed on this request; the log says why"))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch({"/": self._index, "/healthz": self._health})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch({"/rater": self._set_rater, "/forget": self._forget, "/vote": self._vote})

    # --- routes -------------------------------------------------------------------------------------
    def _health(self) -> None:
        app = self.server.app
        body = json.dumps({"study": app.study.id, "pairs": len(app.pair_ids)}).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _index(self) -> None:
        app = self.server.app
        rater = self._rater()
        if rater is None:
            self._html(HTTPStatus.OK, page.start_page(app.title))
            return
        shown = app.store.next_pair(app.study, app.pair_ids, rater)
        done, total = app.store.progress(app.pair_ids, rater)
        if shown is None:
            self._html(HTTPStatus.OK, page.done_page(app.title, rater, total))
            return
        self._html(HTTPStatus.OK, page.pair_page(
            title=app.title, rater=rater, pair_id=shown.pair_id, case_id=shown.case_id, prompt=shown.prompt,
            dimensions=app.dimensions, done=done, total=total))

    def _set_rater(self) -> None:
        try:
            rater = parse_rater(self._form())
        except FormError as exc:
            self._html(HTTPStatus.BAD_REQUEST, page.start_page(self.server.app.title, error=str(exc)))
            return
        log.info("rater %r started on study %s", rater, self.server.app.study.id)
        self._redirect("/", f"{COOKIE}={quote(rater)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000")

    def _forget(self) -> None:
        self._redirect("/", f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")

    def _vote(self) -> None:
        app = self.server.app
        rater = self._rater()
        if rater is None:
            raise HttpError(HTTPStatus.FORBIDDEN, "enter your name on the start page before voting")
        form = parse_vote(self._form(), app.dimensions)
        vote_id = app.store.submit(form, rater, app.pair_ids)
        log.info("vote %d: %s on pair %d (%s)", vote_id, rater, form.pair_id, form.preference)
        self._redirect("/")

    def _media(self, pair_id: int, side: str) -> None:
        app = self.server.app
        pair = app.pair(pair_id)
        rater = self._rater()
        shown = app.store.shown(pair_id, rater) if rater else None
        if shown is None:
            raise HttpError(HTTPStatus.FORBIDDEN, f"pair {pair_id} has not been shown to you; open the rating page")
        reference = pair.video(shown.system(side))
        if is_remote(reference):
            self._proxy(reference)
            return
        path = Path(reference)
        if not path.is_file():
            log.error("study %s case %s: video %s is missing", app.study.id, pair.case_id, path)
            raise HttpError(HTTPStatus.NOT_FOUND, f"the {side} video of case {pair.case_id} is missing on the server")
        response, span = media.file_response(path, self.headers.get("Range"))
        self._start(response)
        if span is not None and self.command != "HEAD":
            media.copy_span(path, span, self.wfile)

    def _proxy(self, url: str) -> None:
        try:
            response, body = media.open_remote(url, self.headers.get("Range"))
        except media.RemoteVideoError as exc:
            log.warning("%s", exc)
            self._start(media.Response(exc.status, exc.headers))
            return
        with body:
            self._start(response)
            if self.command != "HEAD":
                media.copy_stream(body, self.wfile)

    def _start(self, response: media.Response) -> None:
        self.send_response(response.status)
        for name, value in {**SECURITY_HEADERS, **response.headers}.items():
            self.send_header(name, value)
        self.end_headers()


def make_server(study: Study, catalog: Catalog, *, host: str = "127.0.0.1", port: int = 0,
                rng: random.Random | None = None) -> RatingServer:
    """A rating server for ``study`` on ``host:port`` (port 0 picks a free one); call ``serve_forever``."""
    server = RatingServer((host, port), RatingApp.open(study, catalog, rng))
    log.info("rating study %s (%d pairs) on %s", study.id, len(study.pairs), server.url)
    return server
