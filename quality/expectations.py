"""Great Expectations suite over a curated dataset's per-clip manifest rows.

``validate_dataset(manifest, dataset_dir)`` builds a pandas frame of the manifest's clip rows,
adds columns computed from the files and the rows themselves (``checksum_ok`` from
:func:`verify_manifest`, ``ref_inside_clip`` from reference source frames vs the clip span,
``label_frac_sum``), and runs a GE 1.x suite in an ephemeral context. Every expectation carries
``meta.check`` (schema, ranges, balance, references, leakage, uniqueness, integrity) so an
orchestrator can map groups to asset checks.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lpm_models.data.dataset.manifest import Manifest, verify_manifest

log = logging.getLogger(__name__)

SUITE_NAME = "lpm_curated_dataset"
REQUIRED_COLUMNS = (
    "clip_id", "key", "shard", "identity", "video_id", "track_id", "start_frame", "end_frame", "source_fps",
    "fps", "n_frames", "duration_s", "width", "height", "sample_rate", "n_samples", "speak_frac", "listen_frac",
    "idle_frac", "sync_offset", "sync_confidence", "n_ref_appearance", "n_ref_pose", "n_ref_expr", "caption",
)
MAX_OFFENDERS = 20
CHECKS = ("schema", "ranges", "balance", "references", "leakage", "uniqueness", "integrity")


@dataclass(frozen=True)
class SuiteConfig:
    """Thresholds of the dataset suite."""

    min_duration_s: float = 3.0       # clips must be strictly longer
    max_duration_s: float = 600.0
    min_fps: float = 10.0
    max_fps: float = 60.0
    min_side: int = 64                # face video width/height in px
    max_side: int = 1024
    sample_rates: tuple[int, ...] = (16000,)
    min_speak_fraction: float = 0.1   # dataset mean of per-clip speak fractions
    min_listen_fraction: float = 0.1
    frac_sum_tolerance: float = 1e-3
    max_pose_refs: int = 4
    max_expr_refs: int = 8


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, in plain types."""

    check: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None = None
    observed_value: Any = None
    unexpected_sample: list[Any] = field(default_factory=list)
    offending_clips: list[str] = field(default_factory=list)  # clip ids of failing rows (first 20)
    error: str = ""


@dataclass
class ValidationReport:
    """Outcome of the suite on one dataset version."""

    success: bool
    version: str
    results: list[ExpectationOutcome]
    counts: dict[str, int]
    checksum_problems: list[str] = field(default_factory=list)

    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success]

    def by_check(self) -> dict[str, bool]:
        """check group -> all its expectations passed."""
        return {c: all(r.success for r in self.results if r.check == c) for c in CHECKS}

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "version": self.version, "counts": self.counts,
                "by_check": self.by_check(), "checksum_problems": self.checksum_problems,
                "results": [asdict(r) for r in self.results]}

    def markdown(self) -> str:
        """A short table of failed expectations (or a pass line)."""
        if self.success:
            return f"All {self.counts['expectations']} expectations passed on {self.counts['clips']} clips."
        lines = ["| check | expectation | column | unexpected | clips / detail |", "|---|---|---|---|---|"]
        for r in self.failures():
            detail = ", ".join(r.offending_clips[:3]) or str(r.observed_value if r.observed_value is not None
                                                              else r.error[:80])
            lines.append(f"| {r.check} | {r.expectation} | {r.column or ''} | {r.unexpected_count} | {detail} |")
        return "\n".join(lines)


def _ref_inside(row: pd.Series) -> bool:
    """Any reference source of the row inside its own clip span (same video, start <= frame < end)."""
    return any(s["video_id"] == row["video_id"] and row["start_frame"] <= int(s["frame"]) < row["end_frame"]
               for s in row["ref_sources"])


def clips_frame(manifest: Manifest, dataset_dir: Path) -> pd.DataFrame:
    """Manifest clip rows + computed columns checksum_ok, manifest_hash_ok, ref_inside_clip, label_frac_sum."""
    frame = pd.DataFrame(manifest.clips)
    report = verify_manifest(manifest, dataset_dir)
    if frame.empty:
        return frame
    frame["checksum_ok"] = frame["shard"].map(lambda s: bool(report.shards.get(s, False))) \
        if "shard" in frame else False
    frame["manifest_hash_ok"] = report.version_ok
    if {"ref_sources", "video_id", "start_frame", "end_frame"} <= set(frame.columns):
        frame["ref_inside_clip"] = frame.apply(_ref_inside, axis=1).astype(bool)
        frame["n_ref_sources"] = frame["ref_sources"].map(len)
        frame = frame.drop(columns=["ref_sources"])  # lists are not hashable for GE metrics
    fracs = [c for c in ("speak_frac", "listen_frac", "idle_frac") if c in frame]
    if len(fracs) == 3:
        frame["label_frac_sum"] = frame[fracs].sum(axis=1)
    frame.attrs["checksum_problems"] = report.problems
    return frame


def build_suite(cfg: SuiteConfig | None = None) -> Any:
    """The ``ExpectationSuite`` (not yet added to a context)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    cfg = cfg or SuiteConfig()
    suite = gx.ExpectationSuite(name=SUITE_NAME)

    def add(check: str, expectation: Any) -> None:
        expectation.meta = {"check": check}
        suite.add_expectation(expectation)

    for column in (*REQUIRED_COLUMNS, "checksum_ok", "manifest_hash_ok", "ref_inside_clip", "label_frac_sum"):
        add("schema", gxe.ExpectColumnToExist(column=column))
    for column in ("clip_id", "identity", "video_id", "shard"):
        add("schema", gxe.ExpectColumnValuesToNotBeNull(column=column))
    add("schema", gxe.ExpectTableRowCountToBeBetween(min_value=1))
    between = gxe.ExpectColumnValuesToBeBetween
    add("ranges", between(column="duration_s", min_value=cfg.min_duration_s, max_value=cfg.max_duration_s,
                          strict_min=True))
    add("ranges", between(column="fps", min_value=cfg.min_fps, max_value=cfg.max_fps))
    for column in ("width", "height"):
        add("ranges", between(column=column, min_value=cfg.min_side, max_value=cfg.max_side))
    add("ranges", gxe.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=list(cfg.sample_rates)))
    for column in ("speak_frac", "listen_frac", "idle_frac"):
        add("ranges", between(column=column, min_value=0.0, max_value=1.0))
    add("ranges", between(column="label_frac_sum", min_value=1.0 - cfg.frac_sum_tolerance,
                          max_value=1.0 + cfg.frac_sum_tolerance))
    add("ranges", between(column="sync_confidence", min_value=-1.0, max_value=1.0))
    add("ranges", gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_frame", column_B="start_frame"))
    add("balance", gxe.ExpectColumnMeanToBeBetween(column="speak_frac", min_value=cfg.min_speak_fraction))
    add("balance", gxe.ExpectColumnMeanToBeBetween(column="listen_frac", min_value=cfg.min_listen_fraction))
    add("references", gxe.ExpectColumnValuesToBeInSet(column="n_ref_appearance", value_set=[1]))
    add("references", between(column="n_ref_pose", min_value=1, max_value=cfg.max_pose_refs))
    add("references", between(column="n_ref_expr", min_value=1, max_value=cfg.max_expr_refs))
    add("leakage", gxe.ExpectColumnValuesToBeInSet(column="ref_inside_clip", value_set=[False]))
    add("uniqueness", gxe.ExpectColumnValuesToBeUnique(column="clip_id"))
    add("uniqueness", gxe.ExpectColumnValuesToBeUnique(column="key"))
    add("integrity", gxe.ExpectColumnValuesToBeInSet(column="checksum_ok", value_set=[True]))
    add("integrity", gxe.ExpectColumnValuesToBeInSet(column="manifest_hash_ok", value_set=[True]))
    return suite


def _context() -> Any:
    """An ephemeral GE context with analytics and progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig,
    )

    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
                               progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False))
    return gx.get_context(mode="ephemeral", project_config=config)


def _error_message(info: Any) -> str:
    """The first exception message in a GE ``exception_info`` (flat or keyed by metric)."""
    if not isinstance(info, dict):
        return ""
    if "raised_exception" in info:
        return str(info.get("exception_message") or "") if info.get("raised_exception") else ""
    for value in info.values():
        message = _error_message(value)
        if message:
            return message
    return ""


def _outcome(result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    details = dict(result.result or {})
    column = config.kwargs.get("column") or config.kwargs.get("column_A")
    offenders = [str(row.get("clip_id")) for row in details.get("unexpected_index_list") or []
                 if isinstance(row, dict) and "clip_id" in row]
    return ExpectationOutcome(
        check=str((config.meta or {}).get("check", "")), expectation=config.type, column=column,
        success=bool(result.success), unexpected_count=details.get("unexpected_count"),
        observed_value=_plain(details.get("observed_value")),
        unexpected_sample=[_plain(v) for v in (details.get("partial_unexpected_list") or [])[:10]],
        offending_clips=offenders[:MAX_OFFENDERS], error=_error_message(getattr(result, "exception_info", None)))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (JSON-friendly report values)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    return value


def validate_frame(frame: pd.DataFrame, cfg: SuiteConfig | None = None, version: str = "") -> ValidationReport:
    """Run the suite on a clip frame (from :func:`clips_frame`)."""
    import great_expectations as gx

    context = _context()
    asset = context.data_sources.add_pandas("curated_dataset").add_dataframe_asset("clips")
    batch = asset.add_batch_definition_whole_dataframe("all_clips")
    suite = context.suites.add(build_suite(cfg))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name=f"{SUITE_NAME}_validation"))
    result_format: dict[str, Any] = {"result_format": "COMPLETE", "partial_unexpected_count": 10}
    if "clip_id" in frame.columns:
        result_format["unexpected_index_column_names"] = ["clip_id"]
    result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    outcomes = [_outcome(r) for r in result.results]
    counts = {"clips": int(len(frame)), "expectations": len(outcomes),
              "passed": sum(o.success for o in outcomes), "failed": sum(not o.success for o in outcomes)}
    report = ValidationReport(bool(result.success), version, outcomes, counts,
                              list(frame.attrs.get("checksum_problems", [])))
    log.info("dataset %s: %d/%d expectations passed on %d clips", version or "?", counts["passed"],
             counts["expectations"], counts["clips"])
    for failure in report.failures():
        log.warning("dataset %s failed %s on %s (unexpected %s, clips %s, observed %s) %s", version or "?",
                    failure.expectation, failure.column, failure.unexpected_count, failure.offending_clips[:3],
                    failure.observed_value, failure.error)
    return report


def validate_dataset(manifest: Manifest, dataset_dir: Path, cfg: SuiteConfig | None = None) -> ValidationReport:
    """Validate one written dataset version (files + manifest) with the GE suite."""
    return validate_frame(clips_frame(manifest, Path(dataset_dir)), cfg, manifest.version)
