"""Serving latency SLOs: a versioned file of thresholds and the verdict of a probe against it.

    slo = load_slo("online-tiny")                    # quality/slo/online-tiny.yaml (or any file path)
    report = serving.probe.probe(url, model, streams=slo.streams, seconds=slo.seconds, realtime=slo.realtime)
    verdict = evaluate(report, slo)
    verdict.passed, verdict.markdown()

An SLO file (format ``lpm-slo/1``) names the load (N concurrent streams of S seconds, paced
at real time) and the thresholds: time to first frame p95, per-chunk latency p99, real-time
factor of every stream, errors. A probe result is the probe's summary (``ProbeReport.summary()``:
``ttff_p95_s``, ``chunk_p99_s``, ``rtf_per_stream``, ``errors``, ``streams``, ``completed``),
optionally with ``server_errors`` (failures the server itself counted during the probe).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

FORMAT = "lpm-slo/1"
SLO_DIR = Path(__file__).with_name("slo")
_TOP_KEYS = {"format", "name", "version", "description", "load", "thresholds"}
_LOAD_KEYS = {"streams", "seconds", "realtime"}
_THRESHOLD_KEYS = {"ttff_p95_s", "chunk_p99_s", "rtf_per_stream", "errors"}


class SLOError(ValueError):
    """An SLO file is missing, malformed or holds impossible values; the message says what to fix."""


class HasSummary(Protocol):
    def summary(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Thresholds:
    """Upper bounds: TTFF p95 (s), per-chunk latency p99 (s), RTF of each stream, error count."""

    ttff_p95_s: float
    chunk_p99_s: float
    rtf_per_stream: float
    errors: int = 0


@dataclass(frozen=True)
class SLO:
    """One versioned SLO: the load to apply and the thresholds to meet."""

    name: str
    version: int
    streams: int
    seconds: float
    thresholds: Thresholds
    realtime: bool = True
    description: str = ""
    source: str = ""
    sha256: str = ""

    @property
    def ref(self) -> str:
        """``name@vN``: how verdicts and audit records name this SLO."""
        return f"{self.name}@v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "ref": self.ref, "source": self.source,
                "sha256": self.sha256, "load": {"streams": self.streams, "seconds": self.seconds,
                                                "realtime": self.realtime},
                "thresholds": asdict(self.thresholds)}


def _unknown(section: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise SLOError(f"{section}: unknown keys {extra}; allowed: {sorted(allowed)}")


def _number(section: str, key: str, data: Mapping[str, Any], kind: type, positive: bool = True) -> Any:
    if key not in data:
        raise SLOError(f"{section}.{key} is missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SLOError(f"{section}.{key} must be a finite number, got {value!r}")
    if kind is int and value != int(value):
        raise SLOError(f"{section}.{key} must be an integer, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise SLOError(f"{section}.{key} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return kind(value)


def parse_slo(data: Any, source: str = "", sha256: str = "") -> SLO:
    """An SLO from the parsed YAML mapping (raises SLOError naming the first problem)."""
    if not isinstance(data, Mapping):
        raise SLOError(f"{source or 'SLO'}: expected a mapping at the top level, got {type(data).__name__}")
    _unknown("slo", data, _TOP_KEYS)
    if data.get("format") != FORMAT:
        raise SLOError(f"{source or 'SLO'}: format must be {FORMAT!r}, got {data.get('format')!r}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise SLOError("slo.name must be a non-empty string")
    load, limits = data.get("load"), data.get("thresholds")
    if not isinstance(load, Mapping) or not isinstance(limits, Mapping):
        raise SLOError("slo.load and slo.thresholds must be mappings")
    _unknown("load", load, _LOAD_KEYS)
    _unknown("thresholds", limits, _THRESHOLD_KEYS)
    realtime = load.get("realtime", True)
    if not isinstance(realtime, bool):
        raise SLOError(f"load.realtime must be true or false, got {realtime!r}")
    thresholds = Thresholds(
        ttff_p95_s=_number("thresholds", "ttff_p95_s", limits, float),
        chunk_p99_s=_number("thresholds", "chunk_p99_s", limits, float),
        rtf_per_stream=_number("thresholds", "rtf_per_stream", limits, float),
        errors=_number("thresholds", "errors", limits, int, positive=False) if "errors" in limits else 0)
    return SLO(name=data["name"], version=_number("slo", "version", data, int),
               description=str(data.get("description", "")).strip(), streams=_number("load", "streams", load, int),
               seconds=_number("load", "seconds", load, float),
               realtime=realtime, thresholds=thresholds, source=source, sha256=sha256)


def slo_path(name_or_path: str | Path) -> Path:
    """A path as given when it is a file, else ``quality/slo/<name>.yaml``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = SLO_DIR / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    known = sorted(p.stem for p in SLO_DIR.glob("*.yaml"))
    raise SLOError(f"no SLO file {str(name_or_path)!r}: give a path to a YAML file or one of {known}")


def load_slo(name_or_path: str | Path) -> SLO:
    """Read and validate an SLO file (by path, or by name from ``quality/slo/``)."""
    path = slo_path(name_or_path)
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise SLOError(f"{path} is not valid YAML: {err}") from err
    return parse_slo(data, source=str(path), sha256=hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class ThresholdResult:
    """One threshold: what was observed, the bound, pass/fail and a one-line explanation."""

    name: str
    observed: Any
    limit: float | int
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    """Pass/fail of every threshold of an SLO for one probe."""

    slo: SLO
    results: tuple[ThresholdResult, ...]
    figures: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[str]:
        return [f"{r.name}: {r.detail}" for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"slo": self.slo.ref, "passed": self.passed, "failures": self.failures,
                "results": [asdict(r) for r in self.results], "figures": self.figures}

    def markdown(self) -> str:
        load = f"{self.slo.streams} concurrent streams x {self.slo.seconds:g} s" + (
            ", paced at real time" if self.slo.realtime else ", as fast as possible")
        lines = [f"**SLO {self.slo.ref}: {'PASS' if self.passed else 'FAIL'}** ({load})", "",
                 "| threshold | observed | limit | result |", "|---|---|---|---|"]
        for r in self.results:
            lines.append(f"| {r.name} | {_show(r.observed)} | {_show(r.limit)} | {'pass' if r.passed else 'FAIL'} |")
        if not self.passed:
            lines += ["", *[f"- {f}" for f in self.failures]]
        return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _upper(name: str, observed: float | None, limit: float, unit: str = "") -> ThresholdResult:
    if observed is None:
        return ThresholdResult(name, None, limit, False, "not measured (no stream produced a figure)")
    ok = observed <= limit
    return ThresholdResult(name, observed, limit, ok, f"{observed:.4g}{unit} {'<=' if ok else '>'} {limit:g}{unit}")


def evaluate(probe_result: HasSummary | Mapping[str, Any], slo: SLO) -> Verdict:
    """Judge a probe (a ``ProbeReport`` or its ``summary()``) against ``slo``."""
    figures = dict(probe_result.summary() if hasattr(probe_result, "summary") else probe_result)
    t = slo.thresholds
    rtfs = list(figures.get("rtf_per_stream") or [])
    completed = int(figures.get("completed", len(rtfs)))
    missing = max(0, slo.streams - completed)
    rtf_ok = len(rtfs) >= slo.streams and all(r is not None and r <= t.rtf_per_stream for r in rtfs)
    worst = max((r for r in rtfs if r is not None), default=None)
    rtf_detail = (f"{completed} of {slo.streams} streams completed" if missing else
                  f"worst stream {_show(worst)} {'<=' if rtf_ok else '>'} {t.rtf_per_stream:g}")
    errors = int(figures.get("errors", 0)) + int(figures.get("server_errors", 0))
    error_detail = f"{errors} errors" + (f" (probe {figures.get('errors', 0)}, server {figures['server_errors']})"
                                         if figures.get("server_errors") else "")
    if figures.get("error_messages"):
        error_detail += f": {list(figures['error_messages'])[:2]}"
    results = (
        _upper("ttff_p95_s", figures.get("ttff_p95_s"), t.ttff_p95_s, " s"),
        _upper("chunk_p99_s", figures.get("chunk_p99_s"), t.chunk_p99_s, " s"),
        ThresholdResult("rtf_per_stream", rtfs, t.rtf_per_stream, rtf_ok, rtf_detail),
        ThresholdResult("errors", errors, t.errors, errors <= t.errors, error_detail),
    )
    return Verdict(slo=slo, results=results, figures=figures)
