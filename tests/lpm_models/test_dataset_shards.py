"""Curated dataset: shard writer/reader round trip, content-addressed versions, verification,
the torch window loader, and assembling a sample from a real video + face track."""

from __future__ import annotations

import json
import shutil
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lpm_models.data.curation.references import ClipSpan, ReferenceSet
from lpm_models.data.curation.types import ActionEvent, ClipLabels, FaceTrack
from lpm_models.data.dataset.assemble import SampleConfig, assemble_sample
from lpm_models.data.dataset.codec import decode_video, encode_video
from lpm_models.data.dataset.loader import CuratedWindowDataset
from lpm_models.data.dataset.manifest import Manifest, verify_manifest
from lpm_models.data.dataset.shards import decode_sample, iter_samples, write_dataset
from tests.dataset_factory import gradient_frames, make_sample, reference


@pytest.fixture(scope="module")
def samples() -> list:
    return [make_sample(i, n_frames=60 + 10 * i) for i in range(5)]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, samples: list) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("dataset") / "v1"
    manifest = write_dataset(samples, out, shard_size=2, config={"min_clip_s": 2.0},
                             source_checksums={"vid000": "f" * 64, "unused": "0" * 64})
    return out, manifest


def test_round_trip_keeps_every_member(written: tuple[Path, Manifest], samples: list) -> None:
    out, manifest = written
    assert [s.samples for s in manifest.shards] == [2, 2, 1]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", *(s.name for s in manifest.shards)]
    decoded = [decode_sample(raw) for raw in iter_samples(manifest.shard_paths(out))]
    assert [d.clip for d in decoded] == [s.clip for s in samples]
    for got, want in zip(decoded, samples):
        assert got.frames.shape == want.frames.shape
        assert np.abs(got.frames.astype(int) - want.frames.astype(int)).mean() < 3.0  # H.264, smooth content
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.self_audio, want.self_audio)
        np.testing.assert_array_equal(got.other_audio, want.other_audio)
        np.testing.assert_array_equal(got.references.appearance.image, want.references.appearance.image)
        assert [r.source for r in got.references.poses] == [r.source for r in want.references.poses]
        for a, b in zip(got.references.expressions, want.references.expressions):
            np.testing.assert_array_equal(a.image, b.image)
        assert (got.identity, got.caption, got.actions, got.sync_confidence) == \
               (want.identity, want.caption, want.actions, want.sync_confidence)


def test_manifest_rows_profile_and_sources(written: tuple[Path, Manifest], samples: list) -> None:
    out, manifest = written
    assert Manifest.load(out) == manifest
    rows = {r["clip_id"]: r for r in manifest.clips}
    for s in samples:
        row = rows[s.clip.clip_id]
        assert (row["n_frames"], row["start_frame"], row["end_frame"]) == (len(s.frames), s.clip.start_frame,
                                                                           s.clip.end_frame)
        assert row["n_ref_pose"] == len(s.references.poses) and row["n_ref_appearance"] == 1
        assert len(row["ref_sources"]) == 1 + len(s.references.poses) + len(s.references.expressions)
        assert abs(row["speak_frac"] + row["listen_frac"] + row["idle_frac"] - 1.0) < 1e-6
    frames = sum(len(s.frames) for s in samples)
    assert manifest.profile["frames"] == frames and manifest.profile["clips"] == 5
    assert manifest.profile["hours"] == pytest.approx(frames / 25.0 / 3600.0, abs=1e-6)
    speak = sum(float(np.sum(s.labels == 1)) for s in samples) / frames
    assert manifest.profile["balance"]["speak"] == pytest.approx(speak, abs=1e-5)
    assert manifest.profile["identities"] == len({s.identity for s in samples})
    assert "unused" not in manifest.sources and manifest.sources["vid000"] == "f" * 64  # explicit wins
    assert manifest.sources["vid001"] == samples[1].source_sha256
    assert manifest.config_hash and manifest.config == {"min_clip_s": 2.0}


def test_same_content_same_version_changed_content_new_version(tmp_path: Path, samples: list,
                                                                written: tuple[Path, Manifest]) -> None:
    _, manifest = written
    again = write_dataset(samples, tmp_path / "again", shard_size=2, config={"min_clip_s": 2.0},
                          source_checksums={"vid000": "f" * 64})
    assert again.version == manifest.version and [s.sha256 for s in again.shards] == [s.sha256 for s in manifest.shards]
    changed = make_sample(3, n_frames=90)
    changed.labels = changed.labels.copy()
    changed.labels[0] = 0 if changed.labels[0] else 1
    edited = write_dataset([*samples[:3], changed, samples[4]], tmp_path / "edited", shard_size=2,
                           config={"min_clip_s": 2.0}, source_checksums={"vid000": "f" * 64})
    assert edited.version != manifest.version
    assert edited.shards[0].sha256 == manifest.shards[0].sha256 and edited.shards[1].sha256 != manifest.shards[1].sha256
    other_config = write_dataset(samples[:1], tmp_path / "cfg", config={"min_clip_s": 3.0})
    assert other_config.config_hash != manifest.config_hash


def test_verify_finds_corruption_and_edited_rows(tmp_path: Path, written: tuple[Path, Manifest]) -> None:
    out, manifest = written
    assert verify_manifest(manifest, out, count_samples=True).ok
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = copy / manifest.shards[1].name
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify_manifest(manifest, copy)
    assert not report.ok and report.version_ok
    assert report.shards == {s.name: s.name != manifest.shards[1].name for s in manifest.shards}
    assert manifest.shards[1].name in report.problems[0]
    (copy / manifest.shards[2].name).unlink()
    assert not verify_manifest(manifest, copy).shards[manifest.shards[2].name]
    edited = Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    edited.clips[0]["duration_s"] = 99.0
    assert not verify_manifest(edited, out).version_ok


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate clip key"):
        write_dataset([make_sample(0), make_sample(1, clip_id="vid000-s00-t0-c00")], tmp_path / "dup")
    assert list((tmp_path / "dup").iterdir()) == []  # a failed write leaves nothing behind
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="immutable"):
        write_dataset([make_sample(0)], tmp_path / "full")
    bad = make_sample(0)
    bad.labels = bad.labels[:-5]
    with pytest.raises(ValueError, match="labels must be"):
        write_dataset([make_sample(1), bad], tmp_path / "bad", shard_size=1)
    assert list((tmp_path / "bad").iterdir()) == []
    mixed = make_sample(2)
    mixed.references.poses[0].image = mixed.references.poses[0].image[:16]
    with pytest.raises(ValueError, match="reference images must all be"):
        write_dataset([mixed], tmp_path / "mixed")
    with pytest.raises(ValueError, match="no samples"):
        write_dataset([], tmp_path / "empty")


def test_shards_are_plain_tars_with_grouped_members(written: tuple[Path, Manifest]) -> None:
    out, manifest = written
    with tarfile.open(manifest.shard_paths(out)[0]) as tar:
        members = tar.getmembers()
    key = manifest.clips[0]["key"]
    names = [m.name for m in members if m.name.startswith(key + ".")]
    assert names[:5] == [f"{key}.json", f"{key}.mp4", f"{key}.labels.npy", f"{key}.self.npy", f"{key}.other.npy"]
    assert f"{key}.ref_appearance.png" in names and f"{key}.ref_pose_1.png" in names
    assert all(m.mtime == 0 and m.uid == 0 for m in members)


def test_loader_windows_have_documented_shapes(written: tuple[Path, Manifest], samples: list) -> None:
    out, manifest = written
    data = CuratedWindowDataset(manifest.shard_paths(out), window_frames=50, windows_per_clip=2, seed=3)
    items = list(data)
    assert len(items) == 2 * 5
    by_clip = {s.clip.clip_id: s for s in samples}
    for item in items:
        assert item["video"].shape == (50, 3, 32, 32) and item["video"].dtype == torch.float32
        assert -1.0 <= float(item["video"].min()) and float(item["video"].max()) <= 1.0
        assert item["audio_self"].shape == (50 * 640,) and item["audio_other"].shape == (50 * 640,)
        source = by_clip[item["clip_id"]]
        start = item["start"]
        np.testing.assert_array_equal(item["labels"].numpy(), source.labels[start:start + 50])
        expected = source.self_audio[start * 640:(start + 50) * 640].astype(np.float32) / 32767.0
        np.testing.assert_allclose(item["audio_self"].numpy(), expected, atol=1e-6)
        assert item["ref_pose"].shape == (4, 3, 32, 32) and item["ref_pose_mask"].tolist() == [True, True, False, False]
        assert int(item["ref_expr_mask"].sum()) == 3 and float(item["ref_expr"][3:].abs().sum()) == 0.0
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch["video"].shape == (3, 50, 3, 32, 32) and len(batch["caption"]) == 3
    short = CuratedWindowDataset(manifest.shard_paths(out), window_frames=75, shuffle=False)
    assert {i["clip_id"] for i in short} == {s.clip.clip_id for s in samples if len(s.frames) >= 75}
    assert short.skipped_short == sum(len(s.frames) < 75 for s in samples)


def test_loader_partitions_ranks_and_reshuffles(written: tuple[Path, Manifest]) -> None:
    out, manifest = written
    paths = manifest.shard_paths(out)
    seen = [[i["clip_id"] for i in CuratedWindowDataset(paths, 20, rank=r, world_size=2)] for r in range(2)]
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) + len(seen[1]) == 5
    five = [[i["clip_id"] for i in CuratedWindowDataset(paths, 20, rank=r, world_size=5)] for r in range(5)]
    assert sorted(c for part in five for c in part) == sorted(r["clip_id"] for r in manifest.clips)
    workers = DataLoader(CuratedWindowDataset(paths, 20), batch_size=None, num_workers=2)
    assert sorted(i["clip_id"] for i in workers) == sorted(r["clip_id"] for r in manifest.clips)
    data = CuratedWindowDataset(paths, 20, seed=1)
    first = [(i["clip_id"], i["start"]) for i in data]
    assert first == [(i["clip_id"], i["start"]) for i in data]  # same epoch, same draw
    data.set_epoch(1)
    assert [(i["clip_id"], i["start"]) for i in data] != first


def _write_source_video(path: Path, n: int, fps: int) -> None:
    """64x64 grey frames with a 16x16 square at (24, 24) whose brightness is 2 * frame index."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(n):
            rgb = np.full((64, 64, 3), 128, dtype=np.uint8)
            rgb[24:40, 24:40] = 2 * i
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_assemble_resamples_frames_labels_and_audio(tmp_path: Path) -> None:
    video, n, fps = tmp_path / "src.mp4", 120, 30
    _write_source_video(video, n, fps)
    first = 10  # the track starts at frame 10
    rows = n - first
    track = FaceTrack("src", 0, 0, float(fps), np.arange(first, n), np.tile([24.0, 24, 40, 40], (rows, 1)),
                      np.tile([20.0, 20, 44, 44], (rows, 1)), np.zeros((rows, 478, 2)), np.zeros((rows, 3)),
                      np.zeros(rows))
    ramp = (np.arange(int(rows / fps * 16000)) % 16000 / 16000.0).astype(np.float32)
    labels = ClipLabels(track.track_id, (np.arange(rows) % 3).astype(np.uint8), ramp, -ramp, 16000, 1, 0.8)
    clip = ClipSpan("src-clip", track.track_id, "src", 40, 100)
    refs = ReferenceSet(clip, reference("appearance", "other", 3, 0))
    sample = assemble_sample(clip, track, labels, refs, "ident-0000", video, SampleConfig(size=32, fps=25.0),
                             actions=[ActionEvent("nod", 52, 64), ActionEvent("smile", 0, 20)],
                             captions={"speaker": "talks, smiling", "listener": "a calm listener"})
    assert sample.frames.shape == (50, 32, 32, 3)  # 60 source frames at 30 fps -> 50 at 25 fps
    source_rows = np.round(np.arange(50) * 30 / 25).astype(int)  # rows into the clip span
    centre = sample.frames[:, 16, 16, 0].astype(int)
    np.testing.assert_allclose(centre, 2 * (40 + source_rows), atol=3)
    np.testing.assert_array_equal(sample.labels, (40 - first + source_rows) % 3)
    assert len(sample.self_audio) == 32000
    offset = int(round((40 - first) / fps * 16000))
    np.testing.assert_allclose(sample.self_audio[:100] / 32767.0, ramp[offset:offset + 100], atol=1e-4)
    np.testing.assert_array_equal(sample.other_audio, -sample.self_audio)
    assert sample.actions == [{"action": "nod", "start_frame": 10, "end_frame": 20, "strength": 1.0}]
    assert (sample.sync_offset, sample.sync_confidence, sample.source_fps) == (1, 0.8, 30.0)
    speaks = np.sum(sample.labels == 1) >= np.sum(sample.labels == 2)
    assert sample.caption == ("talks, smiling" if speaks else "a calm listener")
    sample.validate()


def test_video_encoding_is_deterministic() -> None:
    frames = gradient_frames(30, 96, 2)  # 96 px: sizes where x264's mb-tree gave varying bytes
    blobs = {encode_video(frames, 25.0) for _ in range(8)}
    assert len(blobs) == 1
    assert decode_video(blobs.pop()).shape == frames.shape
