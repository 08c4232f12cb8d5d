"""LPM-Bench cases: specs, the built case set (subsets, styles, prompts, provenance) and the leakage check."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lpm_models.data.dataset.manifest import Manifest
from quality.bench.case import LISTEN, SPEAK
from quality.bench.casebuild import label_stats
from quality.bench.cases import CaseSet, load_case_set, load_spec, parse_spec
from quality.bench.features import VideoSource
from quality.bench.leakage import LeakageError, check_no_leakage, fingerprints_from
from tests.quality.bench_factory import SPEC, bench_cases  # noqa: F401  (session fixture)


def manifest(identities: list[str], sources: dict[str, str] | None = None) -> Manifest:
    clips = [{"clip_id": f"c{i}", "identity": ident, "video_id": f"train-{i}"} for i, ident in enumerate(identities)]
    return Manifest(version="ds-test", content_sha256="0" * 64, created_at="", shards=[], clips=clips, profile={},
                    sources=sources or {"synth-0000-0000": "a" * 64})


def test_default_spec_is_small_and_long_form_is_apart() -> None:
    spec = load_spec("default-v1")
    counts = {s.name: s.count for s in spec.corpus.subsets}
    assert set(counts) == {"speaking", "listening", "multi_turn", "text_motion", "character_generalisation"}
    assert 6 <= sum(counts.values()) <= 10 and 4.0 <= spec.corpus.duration_s <= 8.0 and spec.size == 128
    assert spec.long_form is not None and spec.long_form.duration_s >= 600
    assert [c.seed for c in spec.corpora(long=False)] == [spec.corpus.seed]
    assert len(spec.corpora(long=True)) == 2
    assert spec.identities.seed != 0 and spec.identities.avoid == {"seed": 0, "n": 24}


@pytest.mark.parametrize("bad, message", [
    ("speaking: {count: 1, select: loud}", "select"),
    ("chatting: {count: 1}", "unknown subset"),
    ("character_generalisation: {count: 2, styles: [sketch]}", "number of styles"),
    ("character_generalisation: {count: 1, styles: [oil]}", "unknown styles"),
])
def test_spec_errors_name_the_field(bad: str, message: str) -> None:
    text = SPEC.split("subsets:")[0] + "subsets:\n  " + bad + "\n"
    with pytest.raises(ValueError, match=message):
        parse_spec(text)
    with pytest.raises(FileNotFoundError, match="default-v1"):
        load_spec("no-such-set")


def test_case_set_has_every_subset_with_its_character(bench_cases: CaseSet) -> None:  # noqa: F811
    by_subset = {c.subset: c for c in bench_cases.cases}
    assert list(by_subset) == ["speaking", "listening", "text_motion", "character_generalisation"]
    assert len({c.case_id for c in bench_cases.cases}) == 4
    for case in bench_cases.cases:
        assert case.n_frames == 101 and case.reference_image.shape == (128, 128, 3)
        assert len(case.labels) == case.n_frames and len(case.audio.speak) == len(case.audio.listen)
        assert case.identity_key.startswith("heldout-s1001/") and len(case.identity_embedding) == 128
        assert case.source["video_id"].startswith("synth-9001-") and len(case.source["sha256"]) == 64
        assert VideoSource.of(case.truth_video).size == (128, 128)
    speak, listen = label_stats(by_subset["speaking"].labels), label_stats(by_subset["listening"].labels)
    assert speak["speak"] > listen["speak"] and listen["listen"] > speak["listen"]
    assert np.mean(by_subset["speaking"].labels == SPEAK) > 0.3
    assert np.mean(by_subset["listening"].labels == LISTEN) > 0.3
    assert len(by_subset["text_motion"].prompts) >= 2
    assert all(p.text.startswith("the person") for p in by_subset["text_motion"].prompts)
    sketch = by_subset["character_generalisation"]
    assert sketch.style == "sketch" and sketch.case_id.endswith("-sketch")
    ref = sketch.reference_image.astype(int)
    assert np.array_equal(ref[..., 0], ref[..., 1]) and np.array_equal(ref[..., 1], ref[..., 2])  # drawn in grey


def test_case_set_loads_from_cache_without_rebuilding(bench_cases: CaseSet) -> None:  # noqa: F811
    cache = bench_cases.root.parent.parent
    t0 = time.perf_counter()
    again = load_case_set(bench_cases.spec, cache)
    assert time.perf_counter() - t0 < 5.0
    assert [c.case_id for c in again.cases] == [c.case_id for c in bench_cases.cases]
    assert again.cases[0].audio_sha256 == bench_cases.cases[0].audio_sha256
    other = replace(bench_cases.spec, digest="f" * 64)
    with pytest.raises(ValueError, match="another spec digest"):
        CaseSet.load(other, bench_cases.root)


def test_no_leakage_against_a_disjoint_dataset(bench_cases: CaseSet) -> None:  # noqa: F811
    report = check_no_leakage(bench_cases, manifest(["ident-0000", "ident-0001"]))
    assert report.ok and report.checked["cases"] == 4 and report.checked["training_sources"] == 1
    far = fingerprints_from({"ident-0000": np.full(128, 5.0)}, audio=["0" * 64])
    report = check_no_leakage(bench_cases, manifest(["ident-0000"]), fingerprints=far)
    assert report.ok and report.nearest_identity_distance > 1.0


def test_overlapping_identities_fail(bench_cases: CaseSet) -> None:  # noqa: F811
    case = bench_cases.cases[1]
    with pytest.raises(LeakageError, match=f"identity {case.identity_id}"):
        check_no_leakage(bench_cases, manifest(["ident-0000", case.identity_id]))
    same_face = fingerprints_from({"ident-0007": np.asarray(case.identity_embedding) + 0.01})
    with pytest.raises(LeakageError, match="dlib"):
        check_no_leakage(bench_cases, manifest(["ident-0007"]), fingerprints=same_face)
    report = check_no_leakage(bench_cases, manifest([case.identity_key]), raise_on_overlap=False)
    assert not report.ok and len(report.overlaps) == sum(c.identity_id == case.identity_id for c in bench_cases.cases)
    assert report.cases == sorted(c.case_id for c in bench_cases.cases if c.identity_id == case.identity_id)


def test_dropping_leaked_cases_keeps_exactly_the_clean_ones(bench_cases: CaseSet) -> None:  # noqa: F811
    from orchestration.bench import drop_leaked_cases

    case = bench_cases.cases[1]
    same_face = fingerprints_from({"ident-0007": np.asarray(case.identity_embedding) + 0.01})
    report = check_no_leakage(bench_cases, manifest(["ident-0007"]), fingerprints=same_face, raise_on_overlap=False)
    leaked = {c.case_id for c in bench_cases.cases if c.identity_id == case.identity_id}
    assert set(report.cases) == leaked and 0 < len(leaked) < len(bench_cases.cases)
    kept = drop_leaked_cases(bench_cases, {"ds-a": report.to_dict(), "ds-b": {"ok": True, "cases": []}})
    assert [c.case_id for c in kept.cases] == [c.case_id for c in bench_cases.cases if c.case_id not in leaked]
    assert drop_leaked_cases(bench_cases, {"ds-b": {"ok": True, "cases": []}}) is bench_cases
    everyone = {"ds-a": {"ok": False, "cases": [c.case_id for c in bench_cases.cases]}}
    with pytest.raises(ValueError, match="nothing to evaluate"):
        drop_leaked_cases(bench_cases, everyone)


def test_shared_sources_or_audio_fail(bench_cases: CaseSet) -> None:  # noqa: F811
    case = bench_cases.cases[0]
    with pytest.raises(LeakageError, match="source video"):
        check_no_leakage(bench_cases, manifest(["ident-0000"], {case.source["video_id"]: "b" * 64}))
    with pytest.raises(LeakageError, match="sha256"):
        check_no_leakage(bench_cases, manifest(["ident-0000"], {"renamed": case.source["sha256"]}))
    same_audio = fingerprints_from({}, audio=[case.audio_sha256["speak"]])
    with pytest.raises(LeakageError, match="audio identical"):
        check_no_leakage(bench_cases, manifest(["ident-0000"]), fingerprints=same_audio)


def test_default_v2_is_v1_framed_like_curated_clips() -> None:
    v1, v2 = load_spec("default-v1"), load_spec("default-v2")
    assert v1.face_crop == 0 and v2.face_crop == 1.8  # curation's crop_scale
    assert (v2.identities, v2.corpus, v2.long_form, v2.size) == (v1.identities, v1.corpus, v1.long_form, v1.size)
    with pytest.raises(ValueError, match="crop_scale"):
        from quality.bench.groundtruth import face_framing

        face_framing(None, "id000", 128, 1.0)  # type: ignore[arg-type]


def test_face_framed_cases_show_the_face_at_the_curated_scale(bench_cases: CaseSet,  # noqa: F811
                                                               tmp_path: Path) -> None:
    """The same held-out cases framed with face_crop: faces fill the frame as in curated clips
    (landmark box ~ 1 / 1.8 of the side, centred), and larger than in the whole-frame cases."""
    import mediapipe as mp

    from tests.quality.bench_factory import SPEC

    framed = load_case_set(parse_spec(SPEC.replace("size: 128", "size: 128\nface_crop: 1.8")), tmp_path)
    assert [c.case_id for c in framed.cases] == [c.case_id for c in bench_cases.cases]
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)

    def face_box(image: np.ndarray) -> tuple[float, float, float]:
        found = mesh.process(np.ascontiguousarray(image)).multi_face_landmarks
        assert found, "no face"
        pts = np.array([(p.x, p.y) for p in found[0].landmark])
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        return max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2

    for case, whole in zip(framed.cases, bench_cases.cases):
        if case.style != "photo":
            continue
        side, cx, cy = face_box(case.reference_image)
        assert 1 / 1.8 - 0.08 < side < 1 / 1.8 + 0.08 and abs(cx - 0.5) < 0.06 and abs(cy - 0.5) < 0.06, (side, cx, cy)
        assert side > face_box(whole.reference_image)[0] + 0.05  # the whole-frame case shows a smaller face
        assert case.reference_image.shape == (128, 128, 3)
