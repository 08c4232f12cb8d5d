"""Aggregate human ratings of a study: per-pair majority, win rate of system A over B, mean 1-5 scores.

Definitions (what ``lpm rate report`` prints):

- **Per pair, majority over raters.** Each pair gets the Good / Same / Bad verdict most of its
  raters gave (G = system A better, B = system B better). A tie for the most votes is **Same**:
  raters who disagree evenly did not show that either system is better.
- **Win rate of A over B = (G + S/2) / N** over the N pairs with at least one vote, counting pair
  verdicts, so a pair weighs the same however many raters saw it. 0.5 is parity. The GSB score
  (G - B) / N (= 2 * win rate - 1, from -1 to 1) is printed next to it.
- **Intervals are 95% percentile bootstrap intervals over pairs** (2000 resamples, fixed seed), so
  they reflect case-to-case variation; with a single pair they collapse to the point.
  The share of decisive pairs A won, G / (G + B), is a binomial proportion and gets a Wilson
  95% interval.
- **Mean ratings** per system and dimension average every submitted 1-5 score; their intervals
  resample pairs (a cluster bootstrap: a pair's scores from all raters stay together).
- **Agreement** is the share of votes that match their pair's majority verdict.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

GSB = ("G", "S", "B")
PREFERENCE_VALUE = {"G": 1.0, "S": 0.5, "B": 0.0}  # win-rate value of a verdict for system A
Z95 = 1.959963984540054
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Vote:
    """One submitted vote: G/S/B for system A vs B, and scores[(system "a"/"b", dimension)] = 1-5."""

    case_id: str
    rater: str
    preference: str
    scores: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval, from ``n`` observations."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class PairVerdict:
    """One pair: how many raters said G, S, B, and the majority verdict."""

    case_id: str
    counts: dict[str, int]
    verdict: str


@dataclass
class RatingReport:
    """Everything ``lpm rate report`` prints, by system letter ("a", "b")."""

    n_votes: int
    n_raters: int
    pairs: list[PairVerdict]
    verdicts: dict[str, int]
    win_rate: Interval
    gsb: Interval
    decisive_share: Interval | None
    agreement: float
    ratings: dict[str, dict[str, Interval]]

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return asdict(self)


def majority(preferences: Sequence[str]) -> str:
    """The G/S/B most raters gave; a tie for the most is S. Needs at least one vote."""
    if not preferences:
        raise ValueError("a pair needs at least one vote for a majority")
    bad = [p for p in preferences if p not in GSB]
    if bad:
        raise ValueError(f"preferences must be G, S or B; got {bad[:3]}")
    counts = Counter(preferences)
    top = max(counts.values())
    leaders = [p for p in GSB if counts[p] == top]
    return leaders[0] if len(leaders) == 1 else "S"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion successes / n (n >= 1)."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} / {n}")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds at the edges (no rounding)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def cluster_bootstrap(sums: np.ndarray, counts: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0, level: float = 0.95) -> Interval:
    """Mean of all observations and its percentile interval, resampling whole clusters.

    sums, counts: (K,) per-cluster sum and number of observations (K >= 1 clusters, counts > 0).
    """
    sums, counts = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    if sums.ndim != 1 or sums.shape != counts.shape or len(sums) == 0 or (counts <= 0).any():
        raise ValueError(f"need (K >= 1,) cluster sums and positive counts, got {sums.shape} / {counts.shape}")
    value = float(sums.sum() / counts.sum())
    if len(sums) == 1:
        return Interval(value, value, value, int(counts.sum()))
    idx = np.random.default_rng(seed).integers(0, len(sums), size=(resamples, len(sums)))  # (R, K)
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)  # (R,)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(value, float(low), float(high), int(counts.sum()))


def _by_pair(votes: Sequence[Vote]) -> dict[str, list[Vote]]:
    grouped: dict[str, list[Vote]] = {}
    for vote in votes:
        grouped.setdefault(vote.case_id, []).append(vote)
    return grouped


def _rating_intervals(grouped: Mapping[str, Sequence[Vote]], dimensions: Sequence[str],
                      resamples: int, seed: int) -> dict[str, dict[str, Interval]]:
    ratings: dict[str, dict[str, Interval]] = {}
    for system in ("a", "b"):
        ratings[system] = {}
        for dim in dimensions:
            per_pair = [[v.scores[(system, dim)] for v in pair_votes if (system, dim) in v.scores]
                        for pair_votes in grouped.values()]
            per_pair = [s for s in per_pair if s]
            if per_pair:
                ratings[system][dim] = cluster_bootstrap(
                    np.array([sum(s) for s in per_pair]), np.array([len(s) for s in per_pair]),
                    resamples=resamples, seed=seed)
    return ratings


def aggregate(votes: Sequence[Vote], dimensions: Sequence[str], *, resamples: int = DEFAULT_RESAMPLES,
              seed: int = 0) -> RatingReport:
    """Aggregate submitted votes (see the module docstring for the definitions)."""
    if not votes:
        raise ValueError("no submitted votes to aggregate yet")
    grouped = _by_pair(votes)
    pairs = [PairVerdict(case, {p: sum(v.preference == p for v in pv) for p in GSB},
                         majority([v.preference for v in pv])) for case, pv in sorted(grouped.items())]
    verdicts = {p: sum(pair.verdict == p for pair in pairs) for p in GSB}
    values = np.array([PREFERENCE_VALUE[pair.verdict] for pair in pairs])  # (N,)
    ones = np.ones_like(values)
    win = cluster_bootstrap(values, ones, resamples=resamples, seed=seed)
    gsb = Interval(2 * win.value - 1, 2 * win.low - 1, 2 * win.high - 1, win.n)
    decisive = verdicts["G"] + verdicts["B"]
    share = None
    if decisive:
        low, high = wilson_interval(verdicts["G"], decisive)
        share = Interval(verdicts["G"] / decisive, low, high, decisive)
    majorities = {pair.case_id: pair.verdict for pair in pairs}
    agreement = sum(v.preference == majorities[v.case_id] for v in votes) / len(votes)
    return RatingReport(
        n_votes=len(votes), n_raters=len({v.rater for v in votes}), pairs=pairs, verdicts=verdicts,
        win_rate=win, gsb=gsb, decisive_share=share, agreement=agreement,
        ratings=_rating_intervals(grouped, dimensions, resamples, seed),
    )


def format_report(report: RatingReport, *, system_a: str, system_b: str, dimensions: Mapping[str, str],
                  show_pairs: bool = False, header: str = "") -> str:
    """The report as text: verdicts, win rate with interval, mean ratings per dimension."""
    lines = [header] if header else []
    v = report.verdicts
    lines += [
        f"A = {system_a}    B = {system_b}",
        f"{report.n_votes} votes by {report.n_raters} rater(s) on {len(report.pairs)} pair(s); "
        f"agreement with the pair majority {report.agreement:.0%}",
        f"pair verdicts (majority over raters, ties = Same): G {v['G']}  S {v['S']}  B {v['B']}",
        f"win rate A over B, (G + S/2)/N   {report.win_rate}   (95% bootstrap over pairs)",
        f"GSB score, (G - B)/N             {report.gsb}",
    ]
    if report.decisive_share is not None:
        lines.append(f"A's share of decisive pairs     {report.decisive_share}   (Wilson 95%, n={report.decisive_share.n})")
    width = max(len(label) for label in dimensions.values())
    lines += ["", f"{'mean rating (1-5)':<{width}}  {'A':<24}  B"]
    for dim, label in dimensions.items():
        cells = [str(report.ratings[s][dim]) if dim in report.ratings[s] else "-" for s in ("a", "b")]
        lines.append(f"{label:<{width}}  {cells[0]:<24}  {cells[1]}")
    if show_pairs:
        lines += ["", "case                             G  S  B  verdict"]
        lines += [f"{p.case_id:<32} {p.counts['G']:>2} {p.counts['S']:>2} {p.counts['B']:>2}  {p.verdict}"
                  for p in report.pairs]
    return "\n".join(lines)

