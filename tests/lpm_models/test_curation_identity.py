"""Stage 6: identity embeddings + clustering, and identity-aware reference extraction.

Unit tests use hand-made vectors and face tracks; the end-to-end test runs real curation
(shots, face tracks, dlib embeddings, crops) on a small synthetic corpus and scores the
identity clustering against the ground-truth sidecars (read only here, never by curation).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from lpm_models.data.curation.identity import (
    FaceEncoder, IdentityConfig, cannot_link_pairs, choose_threshold, cluster_identities, cluster_purity,
    cluster_scores, cluster_tracks, profile_video,
)
from lpm_models.data.curation.references import (
    ClipSpan, ReferenceConfig, inside_clip, plan_all_references, plan_references, render_references,
)
from lpm_models.data.curation.types import FaceTrack, Rejected


def _vectors(n_people: int, per_person: int, seed: int = 0, between: float = 0.8,
             within: float = 0.25) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Descriptor-like vectors: people ~``between`` apart, a person's tracks ~``within`` apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 128)) * (np.sqrt(max(between**2 - within**2, 0.0)) / np.sqrt(2 * 128))
    emb, truth = {}, {}
    for p in range(n_people):
        for k in range(per_person):
            track_id = f"v{k}{p}-s00-t{p}"
            emb[track_id] = centres[p] + rng.normal(size=128) * (within / np.sqrt(2 * 128))
            truth[track_id] = f"person{p}"
    return emb, truth


def test_clustering_recovers_people_with_stable_labels() -> None:
    emb, truth = _vectors(4, 5)
    labels = cluster_identities(emb, distance_threshold=0.5)
    scores = cluster_scores(labels, truth)
    assert (scores.purity, scores.inverse_purity, scores.n_clusters) == (1.0, 1.0, 4)
    first = min(emb)
    assert labels[first] == "ident-0000"  # numbered by each cluster's smallest track id
    assert cluster_identities(dict(reversed(list(emb.items()))), 0.5) == labels
    assert len(set(cluster_identities(emb, distance_threshold=0.05).values())) == 20  # too strict: singletons
    assert len(set(cluster_identities(emb, distance_threshold=1.9).values())) == 1  # too loose: one blob


def test_auto_threshold_finds_the_gap_a_fixed_cut_misses() -> None:
    # close people (like the synthetic bank): 0.45 apart, a person's tracks 0.12 apart
    emb, truth = _vectors(12, 3, seed=1, between=0.45, within=0.12)
    fixed = cluster_scores(cluster_identities(emb, 0.5), truth)
    auto = cluster_scores(cluster_identities(emb, 0.5, auto_band=(0.3, 0.6)), truth)
    assert fixed.purity < 0.95 <= auto.purity and auto.inverse_purity >= 0.95
    assert choose_threshold(np.array([0.1, 0.15, 0.2, 0.45, 0.5, 0.55]), (0.3, 0.6), 0.08, 0.5) == pytest.approx(0.375)
    assert choose_threshold(np.array([0.31, 0.35, 0.40, 0.45, 0.5, 0.55]), (0.3, 0.6), 0.08, 0.5) == 0.5  # no gap
    assert choose_threshold(np.array([0.65, 0.7]), (0.3, 0.6), 0.08, 0.5) == pytest.approx(0.45)  # all distinct
    # two wide gaps (0.30-0.42 and 0.46-0.60): the lower one wins, splitting rather than merging people
    assert choose_threshold(np.array([0.1, 0.2, 0.42, 0.44, 0.46]), (0.3, 0.6), 0.08, 0.5) == pytest.approx(0.36)
    real, truth = _vectors(6, 3, seed=2, between=0.79, within=0.32)  # dlib's real-face statistics
    assert cluster_scores(cluster_identities(real, 0.5, auto_band=(0.3, 0.6)), truth).purity == 1.0


def test_cannot_link_keeps_co_visible_faces_apart() -> None:
    def track(video: str, shot: int, index: int, start: int, n: int) -> FaceTrack:
        z = np.zeros((n, 4))
        return FaceTrack(video, shot, index, 25.0, np.arange(start, start + n), z, z, np.zeros((n, 478, 2)),
                         np.zeros((n, 3)), np.zeros(n))

    tracks = [track("a", 0, 0, 0, 100), track("a", 0, 1, 50, 100), track("a", 0, 2, 200, 50), track("a", 1, 0, 0, 90)]
    pairs = cannot_link_pairs(tracks)
    assert pairs == {frozenset({"a-s00-t0", "a-s00-t1"})}  # t2 starts after both end; other shot is apart
    same = np.full(128, 0.05)
    emb = {"a-s00-t0": same, "a-s00-t1": same + 1e-3, "a-s00-t2": same}
    labels = cluster_identities(emb, 0.5, pairs)
    assert labels["a-s00-t0"] != labels["a-s00-t1"] and labels["a-s00-t0"] == labels["a-s00-t2"]


def test_cluster_scores_by_hand() -> None:
    truth = {"a": "1", "b": "1", "c": "2", "d": "2"}
    lumped = cluster_scores({k: "X" for k in truth}, truth)
    assert (lumped.purity, lumped.inverse_purity) == (0.5, 1.0)
    split = cluster_scores({k: k for k in truth}, truth)
    assert (split.purity, split.inverse_purity) == (1.0, 0.5)
    assert cluster_purity({"a": "X", "b": "X", "c": "X", "d": "Y"}, truth) == 0.75
    with pytest.raises(KeyError, match="no ground truth"):
        cluster_scores({"zz": "X"}, truth)


def _track(video: str, n: int, index: int = 0, yaw: np.ndarray | None = None,
           mouth: np.ndarray | None = None, start: int = 0) -> FaceTrack:
    boxes = np.tile([10.0, 10.0, 50.0, 50.0], (n, 1))
    pose = np.zeros((n, 3))
    pose[:, 0] = yaw if yaw is not None else 0.0
    return FaceTrack(video, 0, index, 25.0, np.arange(start, start + n), boxes, boxes * 1.0,
                     np.zeros((n, 478, 2)), pose, mouth if mouth is not None else np.zeros(n))


def test_single_track_identity_takes_references_outside_the_clip_margin() -> None:
    n = 300
    yaw = np.linspace(-30, 30, n)
    mouth = np.tile([0.0, 0.05, 0.1, 0.2], n // 4)
    track = _track("solo", n, yaw=yaw, mouth=mouth)
    clip = ClipSpan("solo-c0", track.track_id, "solo", 100, 200)
    cfg = ReferenceConfig(margin_s=1.0)
    plan = plan_references(clip, [track], cfg)
    for source in plan.sources():
        assert not inside_clip(source.video_id, source.frame, clip, margin_frames=25)
    assert 1 <= len(plan.poses) <= 4 and 2 <= len(plan.expressions) <= 8
    assert abs(plan.appearance.yaw) <= 17.0  # the most frontal frames left lie at |yaw| ~15 deg
    bins = np.digitize([s.yaw for s in plan.poses], cfg.yaw_edges)
    assert len(set(bins)) == len(plan.poses)  # one view per yaw bin
    mouths = {s.expression[0] for s in plan.expressions}
    assert len(mouths) >= 3  # distinct mouth states were chosen
    whole = ClipSpan("solo-all", track.track_id, "solo", 0, n)
    with pytest.raises(Rejected) as err:
        plan_references(whole, [track], cfg)
    assert err.value.reason == "no_outside_reference"
    nearly = ClipSpan("solo-most", track.track_id, "solo", 10, n - 10)  # what is left is inside the margin
    with pytest.raises(Rejected, match="no_outside_reference"):
        plan_references(nearly, [track], cfg)


def test_appearance_prefers_another_video_and_constant_faces_give_one_expression() -> None:
    own = _track("v1", 200)
    other = _track("v2", 100, index=1)
    clip = ClipSpan("v1-c0", own.track_id, "v1", 0, 100)
    plan = plan_references(clip, [own, other])
    assert plan.appearance.video_id == "v2"
    assert len(plan.expressions) == 1 and len(plan.poses) == 1  # nothing varies: no near-duplicates
    plans, rejected = plan_all_references(
        [clip, ClipSpan("v3-c0", "v3-s00-t0", "v3", 0, 50)], {t.track_id: t for t in (own, other)},
        {own.track_id: "ident-0000", other.track_id: "ident-0000"})
    assert [p.clip.clip_id for p in plans] == ["v1-c0"] and rejected["v3-c0"].reason == "no_identity"
    with pytest.raises(ValueError, match="max_pose_views"):
        ReferenceConfig(max_pose_views=5)


# ---------------------------------------------------------------- end to end on a synthetic corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lpm_models.data.synth.corpus import CorpusConfig, generate_corpus
    from lpm_models.data.synth.identities import IdentityBank
    from lpm_models.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (the synthetic corpus needs it)")
    config = CorpusConfig(seed=11, n_conversations=6, duration_s=5.0, duration_jitter=0.0, size=128,
                          split_fraction=0.5, n_identities=5, workers=1)
    bank = IdentityBank.build(n=config.n_identities, seed=0, cache_dir=tmp_path_factory.mktemp("bank"))
    out = tmp_path_factory.mktemp("corpus")
    generate_corpus(config, out, bank=bank)
    return out


@pytest.fixture(scope="module")
def curated(corpus: Path) -> dict:
    """Real tracks of every corpus video, their profiles, and the track -> true identity map."""
    from lpm_models.data.curation.shots import detect_shots
    from lpm_models.data.curation.tracks import track_faces

    encoder = FaceEncoder()
    tracks, profiles, truth, paths = {}, {}, {}, {}
    for path in sorted((corpus / "raw").glob("*.mp4")):
        found = []
        for shot in detect_shots(path)[0]:
            found += track_faces(path, shot)[0]
        profiles.update(profile_video(path, found, encoder=encoder))
        doc = json.loads((corpus / "truth" / f"{path.stem}.json").read_text())
        for track in found:
            centre = float(track.boxes[:, [0, 2]].mean())
            person = next(p for p in doc["persons"] if p["on_screen"] and p["bbox"][0] <= centre < p["bbox"][2])
            truth[track.track_id] = person["identity_id"]
            tracks[track.track_id] = track
        paths[path.stem] = path
    return {"tracks": tracks, "profiles": profiles, "truth": truth, "paths": paths, "encoder": encoder}


def test_identity_clustering_matches_ground_truth(curated: dict) -> None:
    profiles, truth = curated["profiles"], curated["truth"]
    assert len(profiles) >= 8 and all(p.embedding is not None for p in profiles.values())
    assert all(len(p.embed_frames) >= 3 and p.spread < 0.3 for p in profiles.values())
    labels = cluster_tracks(profiles, curated["tracks"].values(), IdentityConfig())
    scores = cluster_scores(labels, truth)
    logging.getLogger(__name__).info("identity clustering vs truth: %s", scores)
    assert scores.purity >= 0.95 and scores.inverse_purity >= 0.9, scores
    assert scores.n_true >= 4


def test_rendered_references_are_the_same_person_and_outside_the_clip(curated: dict) -> None:
    tracks, profiles = curated["tracks"], curated["profiles"]
    labels = cluster_tracks(profiles, tracks.values())
    clips = [ClipSpan(f"{tid}-c0", tid, t.video_id, int(t.frames[0]), int(t.frames[0]) + len(t.frames) // 2)
             for tid, t in tracks.items()]
    plans, rejected = plan_all_references(clips, tracks, labels, profiles=profiles)
    assert not rejected and len(plans) == len(clips)
    sets = render_references(plans, tracks, curated["paths"])
    for refs in sets:
        for source in refs.sources():
            assert not inside_clip(source.video_id, source.frame, refs.clip)
        images = [refs.appearance, *refs.poses, *refs.expressions]
        assert all(r.image.shape == (128, 128, 3) and r.image.dtype == np.uint8 for r in images)
        assert 1 <= len(refs.poses) <= 4 and 1 <= len(refs.expressions) <= 8
        vector = curated["encoder"].embed_crop(refs.appearance.image)
        assert vector is not None
        own = profiles[refs.clip.track_id].embedding
        assert np.linalg.norm(vector - own) < 0.5  # the appearance reference shows the clip's person
