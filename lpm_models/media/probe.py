"""Raw video probe: container, streams, codecs, timing and a full decode to catch damaged files.

``probe_video(path)`` either returns a :class:`ProbeResult` describing a usable talking-head
source (video + audio, decodable end to end) or raises :class:`ProbeError` whose ``reason`` is one
of :data:`REASONS`, so ingestion can record a rejection with a stable code.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import av.error

log = logging.getLogger(__name__)

REASONS: tuple[str, ...] = (
    "zero_byte", "truncated", "not_a_video", "no_audio_stream", "no_video_stream", "unreadable",
)
_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"moof"}
_MEDIA_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x1a\x45\xdf\xa3", "matroska"), (0, b"FLV", "flv"), (0, b"OggS", "ogg"),
    (0, b"\x00\x00\x01\xba", "mpeg"), (0, b"\x30\x26\xb2\x75", "asf"), (8, b"AVI ", "avi"),
)
# single-image demuxers (animated gif/webp/apng are decided by their frame count instead)
_IMAGE_FORMATS = {"image2", "jpeg_pipe", "png_pipe", "bmp_pipe", "tiff_pipe", "webp_pipe", "svg_pipe"}
_TS_PACKETS = (188, 192)  # MPEG-TS / M2TS packet sizes
_PROGRESS_EVERY_S = 15.0


class ProbeError(Exception):
    """A file that cannot be a training source; ``reason`` is one of :data:`REASONS`.

    ``size_bytes`` and ``sha256`` are filled in when the file could be read, so a rejection can
    still be tied to exact content.
    """

    def __init__(self, reason: str, detail: str, *, size_bytes: int | None = None,
                 sha256: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown probe reason {reason!r}; expected one of {REASONS}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.size_bytes = size_bytes
        self.sha256 = sha256


@dataclass(frozen=True)
class ProbeResult:
    """What a raw video holds. Durations in seconds; ``n_frames`` counts decoded video frames."""

    container: str
    video_codec: str
    audio_codec: str
    duration_s: float
    fps: float
    width: int
    height: int
    n_frames: int
    audio_rate: int
    audio_channels: int
    size_bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with the field names above."""
        return asdict(self)


@dataclass
class _Decoded:
    """Running tally of one stream's decode."""

    packets: int = 0
    errors: int = 0
    frames: int = 0
    samples: int = 0
    start: float | None = None
    end: float = 0.0
    first_error: str = ""
    demux_error: str = ""
    frame_s: float = 0.0  # nominal video frame duration

    @property
    def span(self) -> float:
        """Seconds from the first decoded frame to the end of the last."""
        return self.end - (self.start or 0.0)


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_bytes`` chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _iso_boxes(path: Path, size: int) -> tuple[str | None, str | None]:
    """Walk the top-level boxes of an ISO-BMFF (MP4/MOV) file.

    Returns (major_brand, truncation_detail); major_brand is None if this is not ISO-BMFF.
    """
    brand: str | None = None
    pos = 0
    with open(path, "rb") as handle:
        head = handle.read(16)
        if len(head) < 8 or head[4:8] not in _ISO_BOXES:
            return None, None
        while pos + 8 <= size:
            handle.seek(pos)
            header = handle.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1 and len(header) >= 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - pos
            if kind == b"ftyp" and brand is None:
                brand = header[8:12].decode("latin-1").strip() or "isom"
            if box_size < 8:
                return brand or "isom", None
            if pos + box_size > size:
                name = kind.decode("latin-1", "replace")
                return brand or "isom", (f"'{name}' box at byte {pos} declares {box_size} bytes but the file ends "
                                         f"after {size - pos}: the file was cut short (interrupted upload/copy)")
            pos += box_size
    return brand or "isom", None


def _sniff(path: Path) -> str | None:
    """Name of the media container the first bytes announce, or None."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    for offset, magic, name in _MEDIA_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "mpegts"
    return None


def _open(path: Path, size: int, digest: str) -> tuple[av.container.InputContainer, str | None]:
    """Open the container or raise ProbeError: truncated / not_a_video / unreadable."""
    brand, cut = _iso_boxes(path, size)
    if cut:
        raise ProbeError("truncated", cut, size_bytes=size, sha256=digest)
    try:
        return av.open(str(path), metadata_errors="ignore"), brand
    except av.error.InvalidDataError as exc:
        kind = "mp4/mov" if brand else _sniff(path)
        if kind is None:
            raise ProbeError("not_a_video", f"no audio/video container recognised in the file's bytes ({exc.strerror})",
                             size_bytes=size, sha256=digest) from exc
        raise ProbeError("unreadable", f"looks like {kind} but FFmpeg cannot open it: {exc.strerror}",
                         size_bytes=size, sha256=digest) from exc
    except (av.error.FFmpegError, OSError) as exc:
        raise ProbeError("unreadable", f"FFmpeg cannot open the file: {exc}", size_bytes=size, sha256=digest) from exc


def _container_name(fmt_name: str, brand: str | None) -> str:
    if fmt_name.startswith("mov,") and brand is not None:
        return "mov" if brand == "qt" else ("3gp" if brand.startswith("3g") else "mp4")
    return fmt_name.split(",")[0]


def _declared_s(stream: av.stream.Stream) -> float | None:
    """Duration the container declares for this stream (seconds), or None if it declares none."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    return None


def _shortfall(declared: float, decoded: float, frame_s: float) -> bool:
    """True if ``decoded`` seconds fall short of ``declared`` by more than 2 frames / 2% (max 1 s)."""
    return declared - decoded > max(2 * frame_s, min(0.02 * declared, 1.0))


def _tally(frame: av.frame.Frame, tally: _Decoded) -> None:
    when = frame.time
    if isinstance(frame, av.AudioFrame):
        tally.samples += frame.samples
        if when is not None:
            tally.end = max(tally.end, when + frame.samples / max(1, frame.sample_rate))
    else:
        tally.frames += 1
        if when is not None:
            tally.end = max(tally.end, when + tally.frame_s)
    if when is not None and tally.start is None:
        tally.start = when


def _decode(container: av.container.InputContainer, streams: list[av.stream.Stream], label: str,
            max_video_frames: int | None = None) -> dict[int, _Decoded]:
    """Demux and decode ``streams`` to the end (or ``max_video_frames``), counting errors."""
    tallies = {s.index: _Decoded() for s in streams}
    for s in streams:
        s.thread_type = "AUTO"
        if s.type == "video" and s.average_rate:
            tallies[s.index].frame_s = 1.0 / float(s.average_rate)
    video = next((s for s in streams if s.type == "video"), None)
    started = last_log = time.monotonic()
    try:
        for packet in container.demux(streams):
            tally = tallies[packet.stream.index]
            tally.packets += packet.size > 0  # empty packets flush the decoder: decode, don't count
            try:
                for frame in packet.decode():
                    _tally(frame, tally)
            except av.error.FFmpegError as exc:
                tally.errors += 1
                tally.first_error = tally.first_error or f"{exc.strerror} at {packet.stream.type} t={packet.pts}"
            if video is not None and max_video_frames and tallies[video.index].frames >= max_video_frames:
                break
            if time.monotonic() - last_log > _PROGRESS_EVERY_S:
                last_log = time.monotonic()
                done = tallies[video.index].frames if video is not None else 0
                log.info("probing %s: %d frames decoded (%.0f fps)", label, done, done / (last_log - started))
    except av.error.FFmpegError as exc:
        for tally in tallies.values():
            tally.demux_error = f"reading stopped: {exc.strerror}"
    return tallies


def _check_container(container: av.container.InputContainer, tallies: list[_Decoded]) -> tuple[str, str] | None:
    """("truncated", detail) if even the longest stream ends well before the declared duration."""
    if container.duration is None or container.duration <= 0:
        return None
    declared = container.duration / 1_000_000
    starts = [t.start for t in tallies if t.start is not None]
    decoded = max(t.end for t in tallies) - (min(starts) if starts else 0.0)
    if not _shortfall(declared, decoded, max(t.frame_s for t in tallies)):
        return None
    why = next((t.demux_error or t.first_error for t in tallies if t.demux_error or t.first_error), "the data ends early")
    return "truncated", f"the streams decode to {decoded:.2f} s of the {declared:.2f} s the container declares ({why})"


def _check_stream(kind: str, stream: av.stream.Stream, tally: _Decoded,
                  max_bad_fraction: float) -> tuple[str, str] | None:
    """(reason, detail) if this decoded stream is damaged, else None."""
    declared = _declared_s(stream)
    if declared is not None and tally.packets and _shortfall(declared, tally.span, tally.frame_s or 0.05):
        why = tally.demux_error or tally.first_error or "the data ends early"
        return "truncated", (f"{kind} decodes to {tally.span:.2f} s of the {declared:.2f} s the container "
                             f"declares ({why})")
    if tally.packets and tally.errors / tally.packets > max_bad_fraction:
        return "unreadable", (f"{tally.errors} of {tally.packets} {kind} packets failed to decode "
                              f"(first: {tally.first_error}); the media data is corrupt")
    if tally.demux_error:
        return "unreadable", f"{kind}: {tally.demux_error}"
    if tally.packets == 0 or (kind == "video" and tally.frames == 0) or (kind == "audio" and tally.samples == 0):
        return "unreadable", f"the {kind} stream holds no decodable data"
    return None


def _reject(reason: str, detail: str, size: int, digest: str) -> ProbeError:
    return ProbeError(reason, detail, size_bytes=size, sha256=digest)


def probe_video(path: str | Path, *, max_bad_fraction: float = 0.0) -> ProbeResult:
    """Probe and fully decode a raw conversation video.

    ``max_bad_fraction`` is the fraction of packets per stream allowed to fail decoding (default:
    none). Raises :class:`ProbeError` for unusable files and FileNotFoundError for missing ones.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ProbeError("zero_byte", "the file is empty (0 bytes)", size_bytes=0, sha256=hashlib.sha256().hexdigest())
    digest = sha256_file(path)
    container, brand = _open(path, size, digest)
    with container:
        fmt = _container_name(container.format.name, brand)
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        if container.format.name in _IMAGE_FORMATS or fmt.endswith("_pipe"):
            raise _reject("not_a_video", f"the file is a still image ({fmt}), not a video", size, digest)
        if video is None and audio is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise _reject("not_a_video", f"{fmt} container without audio or video streams (streams: "
                          f"{', '.join(kinds)})", size, digest)
        if video is None:
            raise _reject("no_video_stream", f"{fmt} file carries only audio ({audio.codec_context.name})", size, digest)
        if audio is None:
            tallies = _decode(container, [video], path.name, max_video_frames=2)
            if tallies[video.index].frames <= 1:
                raise _reject("not_a_video", f"a single still frame ({video.codec_context.name}), not a video",
                              size, digest)
            raise _reject("no_audio_stream", f"{fmt} file has video ({video.codec_context.name}) but no audio stream",
                          size, digest)
        if fmt == "mpegts" and all(size % n for n in _TS_PACKETS):
            raise _reject("truncated", f"MPEG-TS is a sequence of 188-byte packets but the file ({size} bytes) "
                          "ends inside one: it was cut short", size, digest)
        tallies = _decode(container, [video, audio], path.name)
        vt, at = tallies[video.index], tallies[audio.index]
        if vt.frames <= 1 and vt.errors == 0 and vt.span < 0.2 and not vt.demux_error:
            raise _reject("not_a_video", f"a single still frame with audio ({vt.frames} frame), not a video",
                          size, digest)
        problems = [_check_stream("video", video, vt, max_bad_fraction),
                    _check_stream("audio", audio, at, max_bad_fraction), _check_container(container, [vt, at])]
        problem = next((p for p in problems if p is not None), None)
        if problem is not None:
            raise _reject(*problem, size, digest)
        return _result(container, brand, video, audio, vt, size, digest)


def _result(container: av.container.InputContainer, brand: str | None, video: av.stream.Stream,
            audio: av.stream.Stream, vt: _Decoded, size: int, digest: str) -> ProbeResult:
    vctx, actx = video.codec_context, audio.codec_context
    duration = vt.span
    rate = video.average_rate or video.guessed_rate
    fps = float(rate) if rate else (vt.frames / duration if duration > 0 else 0.0)
    return ProbeResult(
        container=_container_name(container.format.name, brand),
        video_codec=vctx.name, audio_codec=actx.name,
        duration_s=round(duration, 6), fps=round(fps, 6),
        width=int(vctx.width), height=int(vctx.height), n_frames=vt.frames,
        audio_rate=int(actx.sample_rate), audio_channels=int(actx.layout.nb_channels),
        size_bytes=size, sha256=digest,
    )
