"""Pure helpers shared by the model benchmarks: figures with targets, verdicts, a text table, RSS slope."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure: the wall-clock value, an optional CPU-time based value and a target.

    ``target`` is compared with ``value`` using ``direction`` (">=" or "<="); None: no target.
    """

    name: str
    value: float
    unit: str = ""
    cpu_value: float | None = None
    target: float | None = None
    direction: str = ">="

    def __post_init__(self) -> None:
        if self.direction not in (">=", "<="):
            raise ValueError(f"direction must be '>=' or '<=', got {self.direction!r}")

    @property
    def ok(self) -> bool | None:
        """True / False against the target; None without one (or for a non-finite value)."""
        if self.target is None:
            return None
        if not math.isfinite(self.value):
            return False
        return self.value >= self.target if self.direction == ">=" else self.value <= self.target


def failed(figures: Sequence[Figure]) -> list[Figure]:
    """Figures that miss their target."""
    return [f for f in figures if f.ok is False]


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def format_table(figures: Sequence[Figure], title: str = "") -> str:
    """A fixed-width table: figure, wall value, CPU-time value, unit, target, verdict."""
    header = ("figure", "wall", "cpu", "unit", "target", "verdict")
    rows = [header] + [(
        f.name, _fmt(f.value), _fmt(f.cpu_value), f.unit,
        "-" if f.target is None else f"{f.direction} {_fmt(f.target)}",
        {True: "ok", False: "FAIL", None: ""}[f.ok],
    ) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title] if title else []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope dy/dx; 0.0 for fewer than two distinct x."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} vs {len(ys)})")
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0.0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def current_rss_mb() -> float:
    """Resident set size of this process in MB (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError as err:
        raise RuntimeError("current RSS needs /proc/self/statm (Linux)") from err
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
