"""Identity bank and face rig: determinism, caching, detectability, controls, identity spread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lpm_models.data.synth import face_geometry as fg
from lpm_models.data.synth import identities as ids_mod
from lpm_models.data.synth.face_edits import Recipe, sample_recipe
from lpm_models.data.synth.face_embed import FaceEmbedder, pairwise_distances
from lpm_models.data.synth.face_sources import SOURCES, FaceMesher, load_source
from lpm_models.data.synth.faces import FaceControls, FaceRig
from lpm_models.data.synth.identities import IdentityBank, distance_to, select_max_min, write_contact_sheet

PD_SOURCES = ["astronaut", "grace_hopper"]  # public domain, shipped by base dependencies


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity_cache")


@pytest.fixture(scope="module")
def bank(cache_dir: Path) -> IdentityBank:
    return IdentityBank.build(n=4, seed=0, cache_dir=cache_dir, pool_size=8, sources=PD_SOURCES)


@pytest.fixture(scope="module")
def mesher() -> Iterator[FaceMesher]:
    m = FaceMesher()
    yield m
    m.close()


def _sweep(rng: np.random.Generator, k: int) -> list[FaceControls]:
    return [FaceControls(jaw_open=rng.uniform(0, 1), smile=rng.uniform(0, 1), blink=rng.uniform(0, 1),
                         brow_raise=rng.uniform(0, 1), yaw=rng.uniform(-25, 25), pitch=rng.uniform(-20, 20),
                         roll=rng.uniform(-20, 20)) for _ in range(k)]


def test_sources_are_licensed_and_loadable() -> None:
    for name in PD_SOURCES:
        assert "public domain" in SOURCES[name].licence
        image = load_source(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    with pytest.raises(KeyError, match="unknown face source"):
        load_source("nobody")


def test_bank_records_sources_and_licences(bank: IdentityBank) -> None:
    assert bank.ids == ["id000", "id001", "id002", "id003"]
    for ident in bank.identities:
        assert set(ident.sources) <= set(PD_SOURCES)
        assert ident.licences == tuple(SOURCES[s].licence for s in ident.sources)
    assert len({i.candidate for i in bank.identities}) == 4


def test_build_is_deterministic_by_seed() -> None:
    a = IdentityBank.build(n=2, seed=5, pool_size=3, sources=PD_SOURCES)
    b = IdentityBank.build(n=2, seed=5, pool_size=3, sources=PD_SOURCES)
    c = IdentityBank.build(n=2, seed=6, pool_size=3, sources=PD_SOURCES)
    assert [i.recipe for i in a.identities] == [i.recipe for i in b.identities]
    for ident in a.ids:
        frame_a = a.rig(ident, 128).render(FaceControls())
        np.testing.assert_array_equal(frame_a, b.rig(ident, 128).render(FaceControls()))
    assert [i.recipe for i in a.identities] != [i.recipe for i in c.identities]


def test_second_build_reads_the_cache(bank: IdentityBank, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(cache_dir.glob("identity_bank-*.npz")) and list(cache_dir.glob("identity_bank-*.json"))

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached bank should have been loaded")

    monkeypatch.setattr(ids_mod, "_build", no_rebuild)
    again = IdentityBank.build(n=4, seed=0, cache_dir=cache_dir, pool_size=8, sources=PD_SOURCES)
    assert again.ids == bank.ids
    assert [i.recipe for i in again.identities] == [i.recipe for i in bank.identities]
    ctl = FaceControls(jaw_open=0.4, yaw=10.0)
    np.testing.assert_array_equal(again.rig("id002").render(ctl), bank.rig("id002").render(ctl))


def test_avoided_identities_stay_out_of_the_bank(bank: IdentityBank, cache_dir: Path) -> None:
    avoid = bank.embeddings[:2]  # id000 and id001 of the plain bank: their candidates must not come back
    kept = IdentityBank.build(n=4, seed=0, cache_dir=cache_dir, pool_size=8, sources=PD_SOURCES, avoid=avoid,
                              avoid_distance=0.05)
    assert distance_to(kept.embeddings, avoid).min() >= 0.05
    assert {i.candidate for i in bank.identities[:2]}.isdisjoint(i.candidate for i in kept.identities)
    assert kept.info["avoided"]["identities"] == 2 and kept.info["avoided"]["candidates_left_out"] >= 2
    assert kept.info["cache_key"] != bank.info["cache_key"]
    np.testing.assert_array_equal(distance_to(bank.embeddings, None), np.full(4, np.inf))
    with pytest.raises(RuntimeError, match="too close to avoided identities"):
        IdentityBank.build(n=4, seed=0, pool_size=8, sources=PD_SOURCES, avoid=avoid, avoid_distance=1.9)


def test_render_shape_and_dtype(bank: IdentityBank) -> None:
    for size in (128, 256):
        rig = bank.rig("id000", size)
        frame = rig.render(FaceControls(jaw_open=0.5, blink=1.0, yaw=-20.0, roll=15.0))
        assert isinstance(rig, FaceRig) and rig.size == size
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    rig = bank.rig("id001")
    np.testing.assert_array_equal(rig.render(FaceControls(jaw_open=1.6, smile=-0.5)),
                                  rig.render(FaceControls(jaw_open=1.0)))  # expressions clip to 0..1
    with pytest.raises(KeyError, match="unknown identity"):
        bank.rig("id999")


def test_mediapipe_detects_faces_across_control_ranges(bank: IdentityBank) -> None:
    import mediapipe as mp

    rng = np.random.default_rng(3)
    hits = total = 0
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as det:
        for ident in bank.ids:
            rig = bank.rig(ident)
            extremes = [FaceControls(jaw_open=1, yaw=25), FaceControls(blink=1, pitch=20),
                        FaceControls(smile=1, brow_raise=1, yaw=-25, roll=-20), FaceControls(pitch=-20, roll=20)]
            for ctl in _sweep(rng, 25) + extremes:
                total += 1
                hits += bool(det.process(rig.render(ctl)).detections)
    assert hits / total >= 0.95, f"mediapipe found faces in only {hits}/{total} frames"


def test_jaw_open_opens_the_measured_mouth(bank: IdentityBank, mesher: FaceMesher) -> None:
    for ident in bank.ids:
        rig = bank.rig(ident)
        gaps = []
        for jaw in (0.0, 0.5, 1.0):
            pts = mesher(rig.render(FaceControls(jaw_open=jaw)))
            assert pts is not None
            iod = np.linalg.norm(np.subtract(*fg.eye_centres(pts)))
            gaps.append((pts[14, 1] - pts[13, 1]) / iod)
        assert gaps[0] < gaps[1] < gaps[2], f"{ident}: lip gap not growing with jaw_open: {gaps}"
        assert gaps[2] - gaps[0] > 0.1


def test_yaw_turns_the_measured_head(bank: IdentityBank, mesher: FaceMesher) -> None:
    def nose_offset(pts: np.ndarray) -> float:
        mid = (pts[fg.CHEEK_RIGHT, 0] + pts[fg.CHEEK_LEFT, 0]) / 2.0
        return float((pts[fg.NOSE_TIP, 0] - mid) / abs(pts[fg.CHEEK_LEFT, 0] - pts[fg.CHEEK_RIGHT, 0]))

    for ident in bank.ids:
        rig = bank.rig(ident)
        left, centre, right = (nose_offset(mesher(rig.render(FaceControls(yaw=y)))) for y in (-20.0, 0.0, 20.0))
        assert left < -0.08 and right > 0.08, f"{ident}: yaw -20/+20 measured {left:.3f}/{right:.3f}"
        assert abs(centre) < 0.06


def test_blink_and_brows_change_the_eye_region(bank: IdentityBank) -> None:
    rig = bank.rig("id001")
    face = rig.points(FaceControls())[: fg.MESH_POINTS]
    x0, _, x1, _ = fg.face_box(face)
    eye_y = int(np.mean([c[1] for c in fg.eye_centres(face)]))
    roi = (slice(eye_y - 25, eye_y + 8), slice(int(x0), int(x1)))
    neutral = rig.render(FaceControls()).astype(np.float32)
    for ctl in (FaceControls(blink=1.0), FaceControls(brow_raise=1.0)):
        diff = np.abs(rig.render(ctl).astype(np.float32) - neutral)
        assert diff[roi].mean() > 3.0 * diff.mean() > 0.0
    closed = rig.points(FaceControls(blink=1.0))
    assert np.allclose(closed[159, 1], closed[145, 1], atol=1.5)  # upper lid meets the lower lid


def test_identities_are_farther_apart_than_one_identity_across_controls(bank: IdentityBank) -> None:
    embedder = FaceEmbedder()
    between = pairwise_distances(bank.embeddings)[np.triu_indices(len(bank.ids), 1)]
    within = []
    for ident, neutral in zip(bank.ids, bank.embeddings):
        rig = bank.rig(ident)
        for ctl in (FaceControls(jaw_open=0.6), FaceControls(smile=0.7, yaw=12), FaceControls(blink=0.4, pitch=10)):
            emb = embedder.embed(rig.render(ctl))
            assert emb is not None, f"dlib found no face for {ident} under {ctl}"
            within.append(float(np.linalg.norm(emb - neutral)))
    assert between.min() > 0.45, f"closest identities only {between.min():.3f} apart"
    assert between.min() > max(within), f"between {between.min():.3f} vs within max {max(within):.3f}"
    report = bank.distance_report()
    assert report["n"] == 4 and report["pairs"] == 6
    assert report["min"] == pytest.approx(between.min()) and report["max"] == pytest.approx(between.max())


def test_recipe_round_trips_through_json() -> None:
    recipe = sample_recipe(np.random.default_rng([0, 7]), {"astronaut": True, "grace_hopper": True})
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert recipe.sources[0] == recipe.primary
    with pytest.raises(ValueError, match="head and shoulders"):
        sample_recipe(np.random.default_rng(0), {"luispedro": False})


def test_select_max_min_prefers_spread_points() -> None:
    x = np.array([0.0, 0.1, 0.2, 0.5, 0.55, 1.0])
    dist = np.abs(x[:, None] - x[None, :])
    assert sorted(select_max_min(dist, 3)) == [0, 3, 5]
    with pytest.raises(ValueError, match="pool_size"):
        select_max_min(dist, 7)


def test_contact_sheet(bank: IdentityBank, tmp_path: Path) -> None:
    import cv2

    path = write_contact_sheet(bank, tmp_path / "sheet.png", tile=96, columns=3)
    sheet = cv2.imread(str(path))
    assert sheet is not None and sheet.shape == (2 * 96, 3 * 96, 3)
    assert sheet[96:, 96:].max() == 0  # the unused 6th tile stays empty
