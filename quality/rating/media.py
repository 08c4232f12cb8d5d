"""Serving video bytes to a browser: HTTP range requests (RFC 9110) over local files, and a
pass-through for http(s) videos so the page never shows where a video comes from."""

from __future__ import annotations

import logging
import mimetypes
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
RANGE_PATTERN = re.compile(r"^bytes=(\d*)-(\d*)$")
PROXY_TIMEOUT_S = 30.0
PASSED_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "Last-Modified", "ETag")


class RangeNotSatisfiable(ValueError):
    """The requested byte range lies outside the file (HTTP 416)."""


@dataclass(frozen=True)
class Response:
    """Status and headers of a media response; the body is written separately."""

    status: int
    headers: dict[str, str]


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte (inclusive) of a ``Range: bytes=...`` header, or None to send the whole file.

    Multi-range and malformed headers are ignored (the whole file is sent, as RFC 9110 allows);
    a range starting past the end raises :class:`RangeNotSatisfiable`.
    """
    if not header:
        return None
    match = RANGE_PATTERN.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(f"empty suffix range {header!r} of a {size}-byte file")
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise RangeNotSatisfiable(f"range {header!r} starts past the end of a {size}-byte file")
    if end < start:
        return None
    return start, end


def content_type(path: Path) -> str:
    """MIME type of a video file by its suffix (MP4 when unknown)."""
    return mimetypes.guess_type(path.name)[0] or "video/mp4"


def file_response(path: Path, range_header: str | None) -> tuple[Response, tuple[int, int] | None]:
    """Status, headers and the byte span to send for ``path`` under an optional Range header."""
    size = path.stat().st_size
    headers = {"Content-Type": content_type(path), "Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return Response(416, {**headers, "Content-Range": f"bytes */{size}", "Content-Length": "0"}), None
    if span is None:
        return Response(200, {**headers, "Content-Length": str(size)}), (0, size - 1)
    start, end = span
    headers.update({"Content-Range": f"bytes {start}-{end}/{size}", "Content-Length": str(end - start + 1)})
    return Response(206, headers), span


def copy_span(path: Path, span: tuple[int, int], out: BinaryIO) -> int:
    """Write bytes span[0]..span[1] (inclusive) of ``path`` to ``out``; returns bytes written."""
    start, end = span
    remaining = end - start + 1
    with path.open("rb") as src:
        src.seek(start)
        while remaining > 0:
            chunk = src.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                break
            out.write(chunk)
            remaining -= len(chunk)
    return end - start + 1 - remaining


def open_remote(url: str, range_header: str | None) -> tuple[Response, BinaryIO]:
    """Open an http(s) video, forwarding the Range header; returns the upstream status and headers
    to pass on, and the body to stream. The caller closes the body."""
    request = urllib.request.Request(url, headers={"Range": range_header} if range_header else {})
    try:
        upstream = urllib.request.urlopen(request, timeout=PROXY_TIMEOUT_S)  # noqa: S310 (scheme checked by the study)
    except urllib.error.HTTPError as exc:
        status = exc.code if exc.code == 416 else 502
        headers = {"Content-Length": "0"}
        if exc.code == 416 and exc.headers.get("Content-Range"):
            headers["Content-Range"] = exc.headers["Content-Range"]
        exc.close()
        log.warning("video upstream answered %d for a media request", exc.code)
        raise RemoteVideoError(status, headers, f"the video server answered {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise RemoteVideoError(502, {"Content-Length": "0"}, f"the video server is unreachable: {exc}") from exc
    headers = {name: upstream.headers[name] for name in PASSED_HEADERS if upstream.headers.get(name)}
    headers.setdefault("Content-Type", "video/mp4")
    headers["Cache-Control"] = "no-store"
    return Response(upstream.status, headers), upstream


def copy_stream(src: BinaryIO, out: BinaryIO) -> None:
    """Stream a remote body to the client."""
    shutil.copyfileobj(src, out, CHUNK_BYTES)


class RemoteVideoError(RuntimeError):
    """An http(s) video could not be fetched; ``status``/``headers`` are what to answer the browser."""

    def __init__(self, status: int, headers: dict[str, str], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
