"""Base LPM DataModule on a small generated shard set: batches, rank split, resume, augmentation, S3."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lpm_models.base.data import (
    AugmentConfig,
    CachedLatentStream,
    DataConfig,
    LPMDataModule,
    TrainBatch,
    WindowTransform,
    collate_train,
    fetch_dataset,
    load_frozen_vae,
    select_refs,
)
from lpm_models.configs import LPMConfig, get_preset
from lpm_models.data.dataset.loader import window_item
from lpm_models.data.dataset.manifest import Manifest
from lpm_models.data.dataset.shards import decode_sample, iter_samples, write_dataset
from tests.dataset_factory import make_sample

CLIPS = 4


@pytest.fixture(scope="module")
def cfg() -> LPMConfig:
    return replace(get_preset("tiny"), height=32, width=32, clip_frames=9)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 clips of 40 frames at 48x48 (resized to the preset's 32x32), 2 shards."""
    out = tmp_path_factory.mktemp("ds") / "v1"
    write_dataset((make_sample(i, n_frames=40, size=48) for i in range(CLIPS)), out, shard_size=2)
    return out


def cached_items(cfg: LPMConfig, dataset: Path, cache: Path, rank: int, world: int) -> list[dict]:
    dm = LPMDataModule(cfg, DataConfig(dataset=str(dataset), cache_dir=str(cache), latents="cached"))
    dm.prepare_data()
    dm.setup("fit")
    return dm.latent_cache(rank, world)


def test_cached_batches_have_training_shapes(cfg: LPMConfig, dataset: Path, tmp_path: Path) -> None:
    dm = LPMDataModule(cfg, DataConfig(dataset=str(dataset), cache_dir=str(tmp_path), batch_size=3, latents="auto"))
    assert dm.mode == "cached"  # CPU default
    dm.prepare_data()
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert isinstance(b, TrainBatch) and b.video is None
    h, w = cfg.latent_size
    assert b.latents.shape == (3, cfg.latent_frames(9), cfg.vae.latent_channels, h, w)
    assert b.ref_latents.shape == (3, cfg.max_refs, cfg.vae.latent_channels, h, w)
    assert b.ref_mask[:, 0].all() and b.audio_self.shape == (3, 9 * cfg.audio.samples_per_frame)
    assert b.text.shape[0] == 3 and b.text.shape[-1] == cfg.text.dim and b.text_mask.any(dim=1).all()
    assert torch.isfinite(b.latents).all()
    # the cache is persisted and reused: a second data module loads it instead of encoding again
    files = list((tmp_path / "latents").glob("*.pt"))
    assert len(files) == 1
    again = cached_items(cfg, dataset, tmp_path, 0, 1)
    assert len(again) == CLIPS * 4  # 40 frames, window 9, stride 8 -> starts 0, 8, 16, 24, (32 needs 41)


def test_ranks_cache_disjoint_clips(cfg: LPMConfig, dataset: Path, cache: Path) -> None:
    r0, r1 = (cached_items(cfg, dataset, cache, rank, 2) for rank in (0, 1))
    assert len(r0) == len(r1) == 2 * 4
    assert not any(torch.equal(a["latents"], b["latents"]) for a, b in itertools.product(r0, r1))


def test_cached_stream_resumes_exactly_at_a_step(cfg: LPMConfig, dataset: Path, cache: Path) -> None:
    items = cached_items(cfg, dataset, cache, 0, 1)
    full = list(itertools.islice(iter(CachedLatentStream(items, 2, seed=3, rank=0)), 40))
    tail = list(itertools.islice(iter(CachedLatentStream(items, 2, seed=3, rank=0, start=23)), 17))
    for a, b in zip(full[23:], tail):
        assert torch.equal(a["latents"], b["latents"]) and torch.equal(a["ref_latents"], b["ref_latents"])
    other = list(itertools.islice(iter(CachedLatentStream(items, 2, seed=4, rank=0)), 16))
    assert any(not torch.equal(a["latents"], b["latents"]) for a, b in zip(full, other))  # seed changes the order
    firsts = [id(x["latents"]) for x in full[:16]]
    assert len(set(firsts)) == 16  # an epoch visits every window once


def test_clip_reference_swaps_in_the_windows_first_frame_at_its_rate(cfg: LPMConfig, dataset: Path, cache: Path) -> None:
    items = cached_items(cfg, dataset, cache, 0, 1)
    with pytest.raises(ValueError, match="clip_reference"):
        DataConfig(clip_reference=1.5)
    # the causal VAE's first latent is frame 0 encoded alone: what encode_image gives for that frame
    vae = load_frozen_vae(cfg, None, 0)
    sample = decode_sample(next(iter_samples(Manifest.load(dataset).shard_paths(dataset))))
    frame0 = WindowTransform(cfg, AugmentConfig(enabled=False), train=False)._resize(window_item(sample, 0, cfg.clip_frames)["video"][:1])
    with torch.no_grad():
        torch.testing.assert_close(vae.encode_image(frame0)[0, 0], items[0]["latents"][0], atol=1e-4, rtol=1e-4)
    for rate, expected in ((0.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
        drawn = list(itertools.islice(iter(CachedLatentStream(items, 2, seed=1, rank=0, clip_reference=rate)), 200))
        from_clip = [torch.equal(d["ref_latents"][0], d["latents"][0]) for d in drawn]
        assert abs(sum(from_clip) / len(from_clip) - expected) <= 0.1
        assert all(d["ref_mask"][0] for d in drawn)
    pixels = WindowTransform(cfg, AugmentConfig(enabled=False), clip_reference=1.0)(window_item(sample, 0, cfg.clip_frames))
    torch.testing.assert_close(pixels["ref_images"][0], pixels["video"][0])


def test_select_refs_keeps_appearance_first_and_only_valid_pool_items() -> None:
    appearance = torch.full((3, 4, 4), 9.0)
    pool = torch.arange(5, dtype=torch.float32)[:, None, None, None].expand(5, 3, 4, 4).clone()
    pool_mask = torch.tensor([True, False, True, False, False])
    for seed in range(5):
        refs, mask = select_refs(appearance, pool, pool_mask, 4, torch.Generator().manual_seed(seed))
        assert mask.tolist() == [True, True, True, False]
        assert refs[0].eq(9).all() and {float(refs[1, 0, 0, 0]), float(refs[2, 0, 0, 0])} == {0.0, 2.0}
        assert refs[3].eq(0).all()


def test_online_transform_resizes_and_jitters_clip_consistently(cfg: LPMConfig, dataset: Path) -> None:
    sample = decode_sample(next(iter_samples(Manifest.load(dataset).shard_paths(dataset))))
    item = window_item(sample, 0, cfg.clip_frames)
    item["video"] = torch.full_like(item["video"], 0.2)  # a constant clip: identical frames
    transform = WindowTransform(cfg, AugmentConfig(jitter=0.4, hue=0.05, crop_scale=(0.8, 1.0), hflip=1.0))
    torch.manual_seed(0)
    out = transform(item)
    video = out["video"]
    assert video.shape == (cfg.clip_frames, 3, 32, 32) and out["ref_images"].shape == (cfg.max_refs, 3, 32, 32)
    assert video.min() >= -1 and video.max() <= 1
    assert torch.allclose(video, video[:1].expand_as(video))  # same jitter on every frame
    assert not torch.allclose(video, torch.full_like(video, 0.2), atol=1e-3)  # but jittered
    plain = WindowTransform(cfg, AugmentConfig(enabled=False))(item)["video"]
    assert torch.allclose(plain, torch.full_like(plain, 0.2), atol=1e-5)


def test_online_batches_carry_pixels(cfg: LPMConfig, dataset: Path, tmp_path: Path) -> None:
    dm = LPMDataModule(cfg, DataConfig(dataset=str(dataset), cache_dir=str(tmp_path), batch_size=2, latents="online"))
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b.latents is None and b.video.shape == (2, 9, 3, 32, 32) and b.ref_images.shape == (2, 2, 3, 32, 32)


def test_collate_pads_text_with_a_mask() -> None:
    item = lambda n: {"text": torch.ones(n, 8), "audio_self": torch.zeros(4), "audio_other": torch.zeros(4),  # noqa: E731
                      "ref_mask": torch.ones(1, dtype=torch.bool), "latents": torch.zeros(2, 1, 1, 1)}
    b = collate_train([item(3), item(5)])
    assert b.text.shape == (2, 5, 8) and b.text_mask.sum(dim=1).tolist() == [3, 5]
    assert b.text[0, 3:].abs().sum() == 0


def test_missing_dataset_and_credentials_errors_are_actionable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        fetch_dataset(str(tmp_path / "nowhere"), tmp_path)
    monkeypatch.delenv("LPM_S3_ENDPOINT", raising=False)
    with pytest.raises(RuntimeError, match="LPM_S3_ENDPOINT"):
        fetch_dataset("s3://bucket/ds", tmp_path)


@pytest.mark.integration
def test_s3_dataset_is_downloaded_once_and_checksums_are_enforced(lpm_stack, dataset: Path, tmp_path: Path) -> None:
    import boto3

    lpm_stack.require("objectstore")
    with lpm_stack.activated() as env:
        s3 = boto3.client("s3", endpoint_url=env["LPM_S3_ENDPOINT"], aws_access_key_id=env["LPM_S3_ACCESS_KEY"],
                          aws_secret_access_key=env["LPM_S3_SECRET_KEY"], region_name="us-east-1")
        s3.create_bucket(Bucket="lpm-train-test")
        for path in dataset.iterdir():
            s3.upload_file(str(path), "lpm-train-test", f"datasets/v1/{path.name}")
        local = fetch_dataset("s3://lpm-train-test/datasets/v1", tmp_path)
        manifest = Manifest.load(local)
        assert [p.read_bytes() for p in manifest.shard_paths(local)] == [p.read_bytes() for p in manifest.shard_paths(dataset)]
        stamp = [p.stat().st_mtime_ns for p in manifest.shard_paths(local)]
        fetch_dataset("s3://lpm-train-test/datasets/v1", tmp_path)  # cached copies verified, not fetched again
        assert [p.stat().st_mtime_ns for p in manifest.shard_paths(local)] == stamp

        s3.put_object(Bucket="lpm-train-test", Key=f"datasets/v1/{manifest.shards[0].name}", Body=b"corrupt")
        with pytest.raises(ValueError, match="sha256"):
            fetch_dataset("s3://lpm-train-test/datasets/v1", tmp_path / "fresh")


def test_reference_latents_are_encoded_once_per_clip_and_padding_stays_zero(cfg: LPMConfig, dataset: Path,
                                                                            cache: Path) -> None:
    from lpm_models.base.data import AugmentConfig, WindowTransform, encode_references

    items = cached_items(cfg, dataset, cache, 0, 1)
    per_clip = len(items) // CLIPS
    first, second = items[0], items[1]  # windows 0 and 8 of the first clip
    assert first["ref_pool"] is second["ref_pool"] and first["ref_appearance"] is second["ref_appearance"]
    assert items[0]["ref_pool"] is not items[per_clip]["ref_pool"]  # the next clip has its own
    mask = first["ref_pool_mask"]
    assert (~mask).any() and mask.any()  # the factory's clips pad their pose/expression pools
    assert first["ref_pool"][~mask].abs().max() == 0 and first["ref_pool"][mask].abs().amax(dim=(1, 2, 3)).min() > 0
    # what the valid-only batch encodes equals encoding each reference image on its own
    vae = load_frozen_vae(cfg, None)
    sample = decode_sample(next(iter(iter_samples(Manifest.load(dataset).shard_paths(dataset)))))
    item = window_item(sample, 0, cfg.clip_frames)
    refs = encode_references(vae, WindowTransform(cfg, AugmentConfig(enabled=False), train=False), item)
    alone = vae.encode(WindowTransform(cfg, AugmentConfig(enabled=False), train=False)._resize(
        item["ref_appearance"][None])[:, None])[0, 0]
    torch.testing.assert_close(refs["ref_appearance"], alone, atol=1e-5, rtol=1e-5)
