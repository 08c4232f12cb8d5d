"""The Great Expectations dataset suite passes on a good dataset and fails, on the right check,
on broken ones (a leaked reference, a duplicated clip id, a corrupted shard byte, bad rows)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from lpm_models.data.dataset.manifest import VERSION_CHARS, Manifest, content_sha256
from lpm_models.data.dataset.shards import write_dataset
from quality.expectations import CHECKS, SuiteConfig, clips_frame, validate_dataset, validate_frame
from tests.dataset_factory import make_sample

N_CLIPS = 6


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("ge") / "good"
    manifest = write_dataset([make_sample(i, n_frames=80 + 5 * i, size=64) for i in range(N_CLIPS)], out, shard_size=2)
    return out, manifest


def _failed_checks(report) -> set[str]:  # noqa: ANN001 - ValidationReport
    return {check for check, ok in report.by_check().items() if not ok}


def test_good_dataset_passes_every_check(good: tuple[Path, Manifest]) -> None:
    out, manifest = good
    report = validate_dataset(manifest, out)
    assert report.success, report.markdown()
    assert report.by_check() == {c: True for c in CHECKS}
    assert report.counts["clips"] == N_CLIPS and report.counts["failed"] == 0
    assert report.counts["expectations"] >= 40 and report.version == manifest.version
    assert json.loads(json.dumps(report.to_dict()))["success"] is True and "passed" in report.markdown()


def test_reference_inside_its_clip_fails_leakage(tmp_path: Path) -> None:
    samples = [make_sample(i, n_frames=90, size=64) for i in range(N_CLIPS)]
    samples[2] = make_sample(2, n_frames=90, size=64, leak=True)
    manifest = write_dataset(samples, tmp_path / "leak", shard_size=3)
    frame = clips_frame(manifest, tmp_path / "leak")
    assert frame["ref_inside_clip"].tolist() == [i == 2 for i in range(N_CLIPS)]
    report = validate_dataset(manifest, tmp_path / "leak")
    assert not report.success and _failed_checks(report) == {"leakage"}
    (failure,) = report.failures()
    assert failure.column == "ref_inside_clip" and failure.unexpected_count == 1
    assert failure.offending_clips == [samples[2].clip.clip_id]
    assert samples[2].clip.clip_id in report.markdown()


def test_duplicated_clip_id_fails_uniqueness(tmp_path: Path, good: tuple[Path, Manifest]) -> None:
    out, manifest = good
    rows = [*manifest.clips, dict(manifest.clips[1])]  # a bad merge repeated one clip's row
    content = content_sha256(manifest.shards, rows, manifest.sources, manifest.config_hash)
    merged = replace(manifest, clips=rows, content_sha256=content, version=content[:VERSION_CHARS])
    report = validate_dataset(merged, out)
    assert not report.success and _failed_checks(report) == {"uniqueness"}
    offenders = {c for f in report.failures() for c in f.offending_clips}
    assert offenders == {manifest.clips[1]["clip_id"]}
    unhashed = replace(manifest, clips=rows)  # the same edit without re-hashing breaks integrity too
    assert _failed_checks(validate_dataset(unhashed, out)) == {"uniqueness", "integrity"}


def test_corrupted_shard_byte_fails_integrity(tmp_path: Path, good: tuple[Path, Manifest]) -> None:
    out, manifest = good
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = manifest.shards[1]
    data = bytearray((copy / victim.name).read_bytes())
    data[len(data) // 3] ^= 0x01
    (copy / victim.name).write_bytes(bytes(data))
    report = validate_dataset(manifest, copy)
    assert not report.success and _failed_checks(report) == {"integrity"}
    (failure,) = report.failures()
    assert failure.column == "checksum_ok" and failure.unexpected_count == victim.samples
    assert sorted(failure.offending_clips) == sorted(r["clip_id"] for r in manifest.clips if r["shard"] == victim.name)
    assert victim.name in report.checksum_problems[0]


@pytest.fixture(scope="module")
def good_frame(good: tuple[Path, Manifest]) -> pd.DataFrame:
    return clips_frame(good[1], good[0])


@pytest.mark.parametrize(("edit", "check"), [
    ({"duration_s": 2.5}, "ranges"),
    ({"fps": 240.0}, "ranges"),
    ({"sync_confidence": 1.7}, "ranges"),
    ({"speak_frac": 0.9}, "ranges"),  # fractions no longer sum to one
    ({"n_ref_pose": 5}, "references"),
    ({"n_ref_expr": 0}, "references"),
    ({"n_ref_appearance": 2}, "references"),
])
def test_bad_row_values_fail_their_check(good_frame: pd.DataFrame, edit: dict, check: str) -> None:
    frame = good_frame.copy()
    for column, value in edit.items():
        frame.loc[frame.index[0], column] = value
    if "speak_frac" in edit:
        frame["label_frac_sum"] = frame[["speak_frac", "listen_frac", "idle_frac"]].sum(axis=1)
    report = validate_frame(frame)
    assert not report.success and _failed_checks(report) == {check}
    assert all(f.offending_clips == [frame.loc[frame.index[0], "clip_id"]] for f in report.failures())


def test_label_imbalance_and_missing_columns_fail(good_frame: pd.DataFrame) -> None:
    silent = good_frame.copy()
    silent["listen_frac"], silent["idle_frac"] = 0.0, 1.0 - silent["speak_frac"]
    report = validate_frame(silent)
    assert _failed_checks(report) == {"balance"}
    assert validate_frame(silent, SuiteConfig(min_listen_fraction=0.0)).success
    report = validate_frame(good_frame.drop(columns=["sync_confidence"]))
    assert "schema" in _failed_checks(report) and "ranges" in _failed_checks(report)
    missing = [f for f in report.failures() if f.expectation == "expect_column_to_exist"]
    assert [f.column for f in missing] == ["sync_confidence"]
