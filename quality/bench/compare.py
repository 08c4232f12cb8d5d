"""Compare two LPM-Bench runs per dimension: paired bootstrap confidence intervals and a regression verdict.

    cmp = compare_mlflow_runs(candidate_run_id, baseline_run_id, tracking_uri)
    cmp.regressed          # True: some dimension is worse, beyond tolerance and beyond noise
    cmp.deltas["sync"]     # Delta(candidate=..., baseline=..., delta=..., ci_low=..., ci_high=...)
    print(cmp.markdown())

Inputs are per-case rows (mappings with ``case_id``, ``subset`` and one score in [0, 1], higher is
better, per dimension of :data:`~.scores.DIMENSIONS`; see :mod:`.scores`). A dimension's overall
score is the mean over the cases both runs scored. The delta (candidate - baseline) gets a
percentile confidence interval from a paired bootstrap over those cases (cases resampled with
replacement, the same draw for both systems). A dimension *regressed* when the whole interval lies
below 0 (worse beyond case-to-case noise) and the delta is below ``-tolerance`` (worse by more than
the tolerance); dimensions fewer than ``min_cases`` cases scored are reported but not judged.

A bench MLflow run holds one system's per-case table as the artifact :data:`CASE_TABLE`
(``{"columns": [...], "data": [[...], ...]}``, MLflow's table format) and the tags in
:data:`TAGS`; :func:`find_bench_run` finds the newest run of a registered model version.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quality.bench.scores import DIMENSIONS

log = logging.getLogger(__name__)

CASE_TABLE = "bench/cases.json"
# MLflow tags of a bench run of one system
TAGS = {
    "role": "lpm.bench.role",            # "system" (one system's results) or "invocation" (parent run)
    "system": "lpm.bench.system",        # ground_truth | still | base | online | triton
    "cases": "lpm.bench.cases",          # case set id, e.g. default-v1
    "model_name": "lpm.bench.model_name",
    "model_version": "lpm.bench.model_version",
}
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Delta:
    """One dimension: mean scores over the paired cases, the delta and its bootstrap CI."""

    dimension: str
    candidate: float | None
    baseline: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    n_cases: int
    regressed: bool = False
    improved: bool = False

    @property
    def verdict(self) -> str:
        if self.delta is None:
            return "n/a"
        return "REGRESSED" if self.regressed else "improved" if self.improved else "same"


@dataclass
class Comparison:
    """Per-dimension deltas of a candidate vs a baseline (``deltas``), per subset too (``by_subset``)."""

    deltas: dict[str, Delta]
    by_subset: dict[str, dict[str, Delta]] = field(default_factory=dict)
    tolerance: float = 0.02
    confidence: float = 0.95
    candidate_label: str = "candidate"
    baseline_label: str = "baseline"
    unpaired_cases: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        """True when any dimension's overall score regressed (see the module docstring)."""
        return any(d.regressed for d in self.deltas.values())

    def markdown(self) -> str:
        """The comparison as a Markdown table plus the rule it was judged by."""
        pct = int(round(self.confidence * 100))
        lines = [f"**LPM-Bench: {self.candidate_label} vs {self.baseline_label}** — "
                 f"{'REGRESSED' if self.regressed else 'no regression'}", "",
                 f"| dimension | {self.candidate_label} | {self.baseline_label} | delta | {pct}% CI | cases "
                 "| verdict |",
                 "|---|---:|---:|---:|---|---:|---|"]
        lines += [_markdown_row(d) for d in self.deltas.values()]
        if self.by_subset:
            lines += ["", f"| subset | " + " | ".join(self.deltas) + " |", "|---|" + "---:|" * len(self.deltas)]
            for subset, deltas in self.by_subset.items():
                cells = [_fmt(deltas[d].delta, signed=True) if d in deltas else "" for d in self.deltas]
                lines.append(f"| {subset} | " + " | ".join(cells) + " |")
        lines += ["", f"Scores in [0, 1], higher is better; delta = {self.candidate_label} - {self.baseline_label}; "
                  f"CI: paired bootstrap over cases. Regressed = CI entirely below 0 and delta < -{self.tolerance:g}."]
        if self.unpaired_cases:
            lines.append(f"Cases in only one run (left out): {', '.join(sorted(self.unpaired_cases))}.")
        return "\n".join(lines)


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _markdown_row(d: Delta) -> str:
    ci = "–" if d.ci_low is None else f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
    return (f"| {d.dimension} | {_fmt(d.candidate)} | {_fmt(d.baseline)} | {_fmt(d.delta, True)} | {ci} "
            f"| {d.n_cases} | {d.verdict} |")


def _score(row: Row, dimension: str) -> float | None:
    value = row.get(dimension)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def bootstrap_mean_ci(diffs: np.ndarray, n_bootstrap: int, confidence: float,
                      rng: np.random.Generator) -> tuple[float, float]:
    """Percentile CI of the mean of (N,) paired differences, cases resampled with replacement."""
    if len(diffs) == 0:
        raise ValueError("bootstrap needs at least one paired case")
    idx = rng.integers(0, len(diffs), size=(n_bootstrap, len(diffs)))  # (B, N)
    means = diffs[idx].mean(axis=1)  # (B,)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def dimension_delta(candidate: dict[str, Row], baseline: dict[str, Row], dimension: str, *,
                    tolerance: float, confidence: float, n_bootstrap: int, min_cases: int,
                    rng: np.random.Generator) -> Delta:
    """Delta of one dimension over the cases both sides scored (rows keyed by case id)."""
    pairs = [(c, b) for cid in sorted(candidate.keys() & baseline.keys())
             if (c := _score(candidate[cid], dimension)) is not None
             and (b := _score(baseline[cid], dimension)) is not None]
    if not pairs:
        return Delta(dimension, None, None, None, None, None, 0)
    cand, base = np.array(pairs, dtype=np.float64).T  # (N,), (N,)
    diffs = cand - base
    low, high = bootstrap_mean_ci(diffs, n_bootstrap, confidence, rng)
    delta = float(diffs.mean())
    judged = len(pairs) >= min_cases
    return Delta(dimension, round(float(cand.mean()), 4), round(float(base.mean()), 4), round(delta, 4),
                 round(low, 4), round(high, 4), len(pairs),
                 regressed=judged and high < 0.0 and delta < -tolerance,
                 improved=judged and low > 0.0 and delta > tolerance)


def _by_case(rows: Iterable[Row], side: str) -> dict[str, Row]:
    keyed: dict[str, Row] = {}
    for row in rows:
        cid = str(row["case_id"])
        if cid in keyed:
            raise ValueError(f"{side} rows list case {cid!r} twice: one system's rows per comparison")
        keyed[cid] = row
    return keyed


def compare(candidate_rows: Iterable[Row], baseline_rows: Iterable[Row], *,
            dimensions: Sequence[str] = DIMENSIONS, tolerance: float = 0.02, confidence: float = 0.95,
            n_bootstrap: int = 2000, min_cases: int = 3, seed: int = 0,
            candidate_label: str = "candidate", baseline_label: str = "baseline") -> Comparison:
    """Per-dimension comparison of two systems' per-case score rows (see the module docstring)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    cand, base = _by_case(candidate_rows, "candidate"), _by_case(baseline_rows, "baseline")
    shared = cand.keys() & base.keys()
    if not shared:
        raise ValueError("the two runs share no case id: were they run on the same case set?")
    unpaired = sorted(cand.keys() ^ base.keys())
    if unpaired:
        log.warning("compare: %d case(s) in only one run are left out", len(unpaired))
    opts = dict(tolerance=tolerance, confidence=confidence, n_bootstrap=n_bootstrap, min_cases=min_cases)
    rng = np.random.default_rng(seed)
    deltas = {d: dimension_delta(cand, base, d, rng=rng, **opts) for d in dimensions}  # type: ignore[arg-type]
    by_subset: dict[str, dict[str, Delta]] = {}
    for subset in sorted({str(cand[c].get("subset", "")) for c in shared} - {""}):
        ids = {c for c in shared if str(cand[c].get("subset", "")) == subset}
        sub_c, sub_b = {c: cand[c] for c in ids}, {c: base[c] for c in ids}
        by_subset[subset] = {d: dimension_delta(sub_c, sub_b, d, rng=rng, **opts)  # type: ignore[arg-type]
                             for d in dimensions}
    return Comparison(deltas, by_subset, tolerance, confidence, candidate_label, baseline_label, unpaired)


def rows_from_table(table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows from MLflow's table JSON ``{"columns": [...], "data": [[...], ...]}``."""
    columns = list(table["columns"])
    return [dict(zip(columns, values)) for values in table["data"]]


def load_run_rows(run_id: str, tracking_uri: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A bench run's per-case rows (artifact :data:`CASE_TABLE`) and its tags."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    tags = dict(run.data.tags)
    if tags.get(TAGS["role"]) == "invocation":
        raise ValueError(f"run {run_id} is a `lpm bench run` parent run; compare its per-system child runs "
                         f"(tag {TAGS['system']}), e.g. from `lpm bench run` output")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, CASE_TABLE, tmp)
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise ValueError(f"run {run_id} has no LPM-Bench case table {CASE_TABLE}: is it a bench run?") from exc
        table = json.loads(Path(path).read_text())
    return rows_from_table(table), tags


def _label(run_id: str, tags: Mapping[str, str]) -> str:
    name, version = tags.get(TAGS["model_name"]), tags.get(TAGS["model_version"])
    if name and version:
        return f"{name}/{version}"
    return tags.get(TAGS["system"]) or run_id[:8]


def compare_mlflow_runs(candidate_run_id: str, baseline_run_id: str, tracking_uri: str,
                        **options: Any) -> Comparison:
    """Compare two bench MLflow runs (one system each); ``options`` go to :func:`compare`."""
    cand_rows, cand_tags = load_run_rows(candidate_run_id, tracking_uri)
    base_rows, base_tags = load_run_rows(baseline_run_id, tracking_uri)
    cand_cases, base_cases = cand_tags.get(TAGS["cases"]), base_tags.get(TAGS["cases"])
    if cand_cases and base_cases and cand_cases != base_cases:
        log.warning("compare: case sets differ (%s vs %s); only shared case ids are compared", cand_cases, base_cases)
    options.setdefault("candidate_label", _label(candidate_run_id, cand_tags))
    options.setdefault("baseline_label", _label(baseline_run_id, base_tags))
    return compare(cand_rows, base_rows, **options)


def find_bench_run(model_name: str, model_version: str | int, tracking_uri: str, *,
                   cases: str = "default-v1", experiment: str = "lpm") -> str | None:
    """Run id of the newest bench run of ``model_name`` version ``model_version`` on ``cases`` (or None)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = (f"tags.`{TAGS['model_name']}` = '{model_name}' AND tags.`{TAGS['model_version']}` = '{model_version}' "
             f"AND tags.`{TAGS['cases']}` = '{cases}' AND tags.`{TAGS['role']}` = 'system' "
             "AND attributes.status = 'FINISHED'")
    runs = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None
