"""The model-quality goals of Base LPM and Online LPM, read off an LPM-Bench result.

    result = run_bench(cases, [GroundTruthSystem(), base, base.audio_dropped(), online], work_dir)
    report = quality_report(result)          # figures per system + each goal's verdict
    print(report.format())                   # what `lpm bench quality` prints

Figures per system (over the cases in which the character speaks, i.e. where ground truth has a
lip-sync measurement; identity over every case):

- ``sync_confidence``  mean landmark lip-sync confidence (peak Pearson r of mouth opening vs speech
  energy over +-12 frames; a video without a trackable face counts 0)
- ``sync_vs_truth``    that mean as a fraction of ground truth's
- ``offset_within_1``  share of those cases whose best offset is within +-1 frame
- ``identity_distance`` mean dlib distance of the generated face to the reference (a case without a
  detectable face counts as ``FACE_MISSING_DISTANCE``), ``face_coverage`` the share of frames with a face
- ``identity_drift_per_min`` on long-form cases: slope of the distance over time

Lip-sync is judged on the cases where ground truth has a sync score (at least 1 s of the character's
speech). Goals (the Base LPM and Online LPM issues): Base lip-sync >= 60 % of ground truth's with the median
best offset within +-1 frame; the audio-dropped ablation clearly lower (below 70 % of Base's);
Base identity distance < 0.5; Online within 10 % of Base on lip-sync and identity distance; Online's
identity distance shows no upward trend over a long stream (drift <= 0.005 per minute).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quality.bench.runner import BenchResult

FACE_MISSING_DISTANCE = 1.0  # dlib distance charged to a case in which no face was found (0.6 = other person)
SYNC_VS_TRUTH_GOAL = 0.6
ABLATION_MAX_FRACTION = 0.7
IDENTITY_GOAL = 0.5
ONLINE_TOLERANCE = 0.10
DRIFT_GOAL_PER_MIN = 0.005


@dataclass
class SystemQuality:
    system: str
    label: str
    sync_cases: int
    sync_confidence: float
    sync_vs_truth: float | None
    offset_median_abs: float | None
    offset_within_1: float | None
    identity_cases: int
    identity_distance: float
    face_coverage: float
    identity_drift_per_min: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Goal:
    name: str
    target: str
    value: float | None
    passed: bool

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.3f}"
        return f"  [{'PASS' if self.passed else 'FAIL'}] {self.name:44s} {shown:>8s}   goal {self.target}"


@dataclass
class QualityReport:
    systems: dict[str, SystemQuality]
    goals: list[Goal] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.goals) and all(g.passed for g in self.goals)

    def to_dict(self) -> dict[str, Any]:
        return {"systems": {k: v.to_dict() for k, v in self.systems.items()},
                "goals": [g.__dict__ for g in self.goals], "passed": self.passed, "seconds": self.seconds}

    def format(self) -> str:
        head = (f"{'system':34s}{'sync n':>7s}{'sync conf':>10s}{'vs truth':>9s}{'|off| med':>10s}{'|off|<=1':>9s}"
                f"{'id n':>6s}{'id dist':>9s}{'face cov':>9s}{'drift/min':>10s}")
        lines = ["Model quality (lip-sync over speaking cases, identity over all cases)", head, "-" * len(head)]

        def num(v: float | None, width: int, fmt: str = ".3f") -> str:
            return f"{'-':>{width}s}" if v is None else f"{v:>{width}{fmt}}"

        for q in self.systems.values():
            lines.append(f"{q.label[:33]:34s}{q.sync_cases:>7d}{num(q.sync_confidence, 10)}{num(q.sync_vs_truth, 9)}"
                         f"{num(q.offset_median_abs, 10, '.1f')}{num(q.offset_within_1, 9, '.2f')}"
                         f"{q.identity_cases:>6d}{num(q.identity_distance, 9)}{num(q.face_coverage, 9, '.2f')}"
                         f"{num(q.identity_drift_per_min, 10, '.4f')}")
        lines.append("goals:")
        lines += [g.line() for g in self.goals]
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'} ({sum(g.passed for g in self.goals)}/"
                     f"{len(self.goals)} goals)")
        return "\n".join(lines)


def _value(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    return None if v is None or not np.isfinite(float(v)) else float(v)


def system_quality(result: BenchResult, system: str, sync_cases: set[str]) -> SystemQuality:
    """Figures of one system (see the module docstring); ``sync_cases``: where ground truth speaks."""
    rows = [r for r in result.rows_of(system) if r["subset"] != "long_form"]
    synced = [r for r in rows if r["case_id"] in sync_cases]
    conf = [(_value(r, "sync.sync_confidence") or 0.0) for r in synced]
    offsets = [abs(v) for r in synced if (v := _value(r, "sync.sync_offset_frames")) is not None
               and (_value(r, "sync.sync_confidence") or 0.0) > 0]
    dist = [d if (d := _value(r, "identity.identity_distance_mean")) is not None else FACE_MISSING_DISTANCE
            for r in rows]
    coverage = [_value(r, "features.face_coverage") or 0.0 for r in rows]
    long_rows = [r for r in result.rows_of(system) if r["subset"] == "long_form"]
    drift = [v for r in long_rows if (v := _value(r, "identity.identity_drift_per_min")) is not None]
    return SystemQuality(
        system=system, label=str(result.systems[system]["label"]), sync_cases=len(synced),
        sync_confidence=float(np.mean(conf)) if conf else 0.0, sync_vs_truth=None,
        offset_median_abs=float(np.median(offsets)) if offsets else None,
        offset_within_1=float(np.mean([o <= 1 for o in offsets])) if offsets else None,
        identity_cases=len(rows), identity_distance=float(np.mean(dist)) if dist else FACE_MISSING_DISTANCE,
        face_coverage=float(np.mean(coverage)) if coverage else 0.0,
        identity_drift_per_min=float(np.mean(drift)) if drift else None)


def pick_system(result: BenchResult, prefix: str) -> str | None:
    """The first system named ``prefix`` or ``prefix-v<N>`` (``unique_names`` renames repeats)."""
    for name in result.system_names:
        if name == prefix or name.startswith(f"{prefix}-v"):
            return name
    return None


def quality_report(result: BenchResult, truth: str = "ground_truth", base: str | None = None,
                   ablation: str | None = None, online: str | None = None) -> QualityReport:
    """Figures for every system and the goals that the systems present allow (see the module docstring)."""
    if truth not in result.systems:
        raise ValueError("the quality report needs the ground-truth system (run with baselines)")
    base = base or pick_system(result, "base")
    ablation = ablation or pick_system(result, "base-noaudio")
    online = online or pick_system(result, "online")
    # where lip-sync applies: ground truth has a sync score (>= 1 s of the character's speech in the case)
    sync_cases = {r["case_id"] for r in result.rows_of(truth)
                  if r["subset"] != "long_form" and r.get("sync") is not None}
    systems = {name: system_quality(result, name, sync_cases) for name in result.system_names}
    ref = systems[truth].sync_confidence
    for q in systems.values():
        q.sync_vs_truth = q.sync_confidence / ref if ref > 0 else None
    goals: list[Goal] = []
    if base in systems:
        b = systems[base]
        goals.append(Goal("Base lip-sync vs ground truth", f">= {SYNC_VS_TRUTH_GOAL:.2f}", b.sync_vs_truth,
                          b.sync_vs_truth is not None and b.sync_vs_truth >= SYNC_VS_TRUTH_GOAL))
        goals.append(Goal("Base median |best offset| (frames)", "<= 1", b.offset_median_abs,
                          b.offset_median_abs is not None and b.offset_median_abs <= 1))
        goals.append(Goal("Base identity distance to the reference", f"< {IDENTITY_GOAL}", b.identity_distance,
                          b.identity_distance < IDENTITY_GOAL))
        if ablation in systems:
            a = systems[ablation]
            frac = a.sync_confidence / b.sync_confidence if b.sync_confidence > 0 else None
            goals.append(Goal("audio-dropped ablation lip-sync / Base's", f"< {ABLATION_MAX_FRACTION:.2f}", frac,
                              frac is not None and frac < ABLATION_MAX_FRACTION))
        if online in systems:
            o = systems[online]
            sync_ratio = o.sync_confidence / b.sync_confidence if b.sync_confidence > 0 else None
            goals.append(Goal("Online lip-sync / Base's", f">= {1 - ONLINE_TOLERANCE:.2f}", sync_ratio,
                              sync_ratio is not None and sync_ratio >= 1 - ONLINE_TOLERANCE))
            faces = o.face_coverage > 0 and b.face_coverage > 0  # two faceless videos are not "as good"
            id_ratio = o.identity_distance / b.identity_distance if faces and b.identity_distance > 0 else None
            goals.append(Goal("Online identity distance / Base's", f"<= {1 + ONLINE_TOLERANCE:.2f}", id_ratio,
                              id_ratio is not None and id_ratio <= 1 + ONLINE_TOLERANCE))
    if online in systems and systems[online].identity_drift_per_min is not None:
        drift = systems[online].identity_drift_per_min
        goals.append(Goal("Online identity drift over the long stream (/min)", f"<= {DRIFT_GOAL_PER_MIN}", drift,
                          drift <= DRIFT_GOAL_PER_MIN))
    return QualityReport(systems, goals, seconds=result.seconds)
