"""Base LPM training data: curated shards (local or s3://) -> augmented windows -> TrainBatch.

Two latent modes (``DataConfig.latents``):

* ``online``: batches carry pixels; the training module encodes them with the frozen VAE
  on its device every step. Fresh windows and augmentation each step; the right choice on
  GPUs, where the VAE costs a small fraction of the DiT step.
* ``cached``: each rank encodes fixed windows of its clips once (stride ``cache_stride``,
  no augmentation) and trains from that in-memory cache, persisted under ``cache_dir``.
  On CPU the tiny VAE encode of one 25-frame 128x128 window costs about as much as a whole
  DiT training step, so ``auto`` picks this on CPU. The stream is a deterministic function
  of (seed, rank, step): resuming at step s continues exactly where the run stopped.

Text captions become frozen MiniLM token embeddings in the loader (LRU-cached per
process). References: slot 0 is the global appearance reference, the other
``max_refs - 1`` slots a random pick of pose/expression references (masked when absent).
S3 datasets are read with boto3 (``LPM_S3_ENDPOINT``/``LPM_S3_ACCESS_KEY``/``LPM_S3_SECRET_KEY``)
into ``cache_dir``, every shard checked against the manifest's sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lpm_models.bench_report import current_rss_mb
from lpm_models.configs import LPMConfig
from lpm_models.data.dataset.loader import CuratedWindowDataset, window_item
from lpm_models.data.dataset.manifest import MANIFEST_NAME, Manifest, sha256_file
from lpm_models.data.dataset.shards import decode_sample, iter_samples
from lpm_models.encoders.text import TextEncoder
from lpm_models.memory import return_large_buffers
from lpm_models.vae.model import VideoVAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentConfig:
    """Light video augmentation, identical for every frame of a clip (and its references)."""

    enabled: bool = True
    jitter: float = 0.05  # brightness / contrast / saturation strength
    hue: float = 0.01
    crop_scale: tuple[float, float] = (0.85, 1.0)  # area fraction of the random crop
    hflip: float = 0.0  # mirror probability (faces mirror fine; off by default for text like "turns left")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = ""  # directory with manifest.json, or s3://bucket/prefix
    cache_dir: str = ""  # downloads and latent caches ("" = <out>/cache, set by the trainer)
    batch_size: int = 2  # per rank
    num_workers: int = 0
    latents: str = "auto"  # "online" | "cached" | "auto" (cached on CPU, online on GPU)
    cache_stride: int = 0  # frames between cached windows (0 = clip_frames - 1)
    vae_path: str | None = None  # trained VAE file (lpm_models.vae.train); None = seeded random VAE
    seed: int = 0
    shuffle_buffer: int = 8
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # probability that the appearance slot holds the training window's own first frame instead of
    # the curated appearance reference (another clip of the person: other background, light and
    # accessories, and another person where identity clustering merged look-alikes). Curated refs
    # alone left the tiny DiT unable to copy a reference (x0 at t = 1 further from the truth than
    # the reference itself); in-clip refs teach copying, curated ones teach robustness.
    clip_reference: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.clip_reference <= 1.0:
            raise ValueError(f"clip_reference is a probability in [0, 1], got {self.clip_reference}")
        if self.latents not in ("auto", "online", "cached"):
            raise ValueError(f"latents must be auto/online/cached, got {self.latents!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@dataclass
class TrainBatch:
    """A collated batch. Pixels (online) or latents (cached) are set, never both.

    audio_*: (B, S) 16 kHz; text: (B, L, text_dim); text_mask: (B, L) bool;
    ref_mask: (B, R) bool; video: (B, T, 3, H, W) in [-1, 1]; ref_images: (B, R, 3, H, W);
    latents: (B, T', C, h, w); ref_latents: (B, R, C, h, w).
    """

    audio_self: Tensor
    audio_other: Tensor
    text: Tensor
    text_mask: Tensor
    ref_mask: Tensor
    video: Tensor | None = None
    ref_images: Tensor | None = None
    latents: Tensor | None = None
    ref_latents: Tensor | None = None

    def to(self, device: torch.device | str) -> TrainBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return TrainBatch(**{k: v.to(device, non_blocking=True) if v is not None else None for k, v in moved.items()})

    @property
    def size(self) -> int:
        return self.audio_self.shape[0]


# ----------------------------------------------------------------------------- sources
def _s3_client() -> Any:
    names = ("LPM_S3_ENDPOINT", "LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise RuntimeError(f"reading an s3:// dataset needs {missing} in the environment")
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["LPM_S3_ENDPOINT"],
                        aws_access_key_id=os.environ["LPM_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["LPM_S3_SECRET_KEY"],
                        region_name=os.environ.get("LPM_S3_REGION", "us-east-1"))


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"malformed dataset URL {url!r}; expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def local_dataset_dir(location: str, cache_dir: str | Path) -> Path:
    """Where ``location`` lives on this machine (s3:// URLs map into ``cache_dir``)."""
    if location.startswith("s3://"):
        bucket, prefix = _split_s3(location)
        return Path(cache_dir) / "datasets" / bucket / prefix
    return Path(location)


def fetch_dataset(location: str, cache_dir: str | Path) -> Path:
    """Local directory of a dataset; s3:// shards are downloaded once and checksum-verified."""
    target = local_dataset_dir(location, cache_dir)
    if not location.startswith("s3://"):
        if not (target / MANIFEST_NAME).is_file():
            raise FileNotFoundError(f"no {MANIFEST_NAME} in {target}; pass a curated dataset directory or s3:// URL")
        return target
    client, (bucket, prefix) = _s3_client(), _split_s3(location)
    key = lambda name: f"{prefix}/{name}" if prefix else name  # noqa: E731
    target.mkdir(parents=True, exist_ok=True)
    client.download_file(bucket, key(MANIFEST_NAME), str(target / (MANIFEST_NAME + ".tmp")))
    os.replace(target / (MANIFEST_NAME + ".tmp"), target / MANIFEST_NAME)
    manifest = Manifest.load(target)
    for i, shard in enumerate(manifest.shards):
        path = target / shard.name
        if path.is_file() and path.stat().st_size == shard.bytes and sha256_file(path) == shard.sha256:
            continue
        tmp = path.with_name(path.name + ".tmp")
        client.download_file(bucket, key(shard.name), str(tmp))
        digest = sha256_file(tmp)
        if digest != shard.sha256:
            tmp.unlink()
            raise ValueError(f"{location}/{shard.name}: sha256 {digest[:12]}.. does not match the manifest "
                             f"({shard.sha256[:12]}..); the object store copy is corrupt or was replaced")
        os.replace(tmp, path)
        log.info("fetched shard %d/%d %s (%.1f MB)", i + 1, len(manifest.shards), shard.name, shard.bytes / 1e6)
    return target


def load_frozen_vae(cfg: LPMConfig, path: str | None, seed: int = 0) -> VideoVAE:
    """The frozen VAE (eval, no grad): trained weights from ``path``, else a seeded random one."""
    if path:
        vae = VideoVAE.from_config(replace(cfg.vae, pretrained_path=str(path)))
    else:
        log.warning("no vae_path given: encoding with a randomly initialised VAE (seed %d); latents will not "
                    "decode to video — train one with `python -m lpm_models.vae.train` for real runs", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = VideoVAE(cfg.vae)
    return vae.eval().requires_grad_(False)


# --------------------------------------------------------------------------- transforms
def select_refs(appearance: Tensor, pool: Tensor, pool_mask: Tensor, slots: int,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """appearance (X...) + a random pick of valid ``pool`` (P, X...) -> ((slots, X...), (slots,) mask)."""
    valid = torch.nonzero(pool_mask, as_tuple=False).flatten()
    pick = valid[torch.randperm(len(valid), generator=generator)][: slots - 1]
    refs = appearance.new_zeros(slots, *appearance.shape)
    mask = torch.zeros(slots, dtype=torch.bool)
    refs[0], mask[0] = appearance, True
    refs[1:1 + len(pick)] = pool[pick]
    mask[1:1 + len(pick)] = True
    return refs, mask


class WindowTransform:
    """Loader item -> training item: resize to the preset, references, augmentation, text."""

    def __init__(self, cfg: LPMConfig, augment: AugmentConfig, train: bool = True, clip_reference: float = 0.0) -> None:
        self.cfg, self.augment, self.train, self.clip_reference = cfg, augment, train, clip_reference
        self.text = TextEncoder(cfg.text)
        size = (cfg.height, cfg.width)
        ratio = cfg.width / cfg.height
        self.crop = v2.RandomResizedCrop(size, scale=augment.crop_scale, ratio=(0.95 * ratio, 1.05 * ratio), antialias=True)
        j = augment.jitter
        self.colour = v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=augment.hue)

    def _resize(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) == (self.cfg.height, self.cfg.width):
            return x
        return TF.resize(x, [self.cfg.height, self.cfg.width], antialias=True)

    def pixels(self, item: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """(video (T, 3, H, W), refs (R, 3, H, W), ref_mask (R,)) in [-1, 1], augmented when training."""
        pool = torch.cat([item["ref_pose"], item["ref_expr"]])
        pool_mask = torch.cat([item["ref_pose_mask"], item["ref_expr_mask"]])
        refs, mask = select_refs(item["ref_appearance"], pool, pool_mask, self.cfg.max_refs)
        refs, video = self._resize(refs), item["video"]
        if self.clip_reference > 0 and float(torch.rand(())) < self.clip_reference:
            refs[0] = self._resize(video[:1])[0]  # the window's own first frame
        if not (self.train and self.augment.enabled):
            return self._resize(video), refs, mask
        video = self.crop((video + 1) / 2)
        both = self.colour(torch.cat([(refs + 1) / 2, video]))  # one jitter for clip and references
        if self.augment.hflip > 0 and float(torch.rand(())) < self.augment.hflip:
            both = both.flip(-1)
        both = both.clamp(0, 1) * 2 - 1
        return both[len(refs):], both[: len(refs)] * mask[:, None, None, None], mask

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        video, refs, mask = self.pixels(item)
        (text,) = self.text.token_embeddings([item["caption"]])
        return {"video": video, "ref_images": refs, "ref_mask": mask, "text": text,
                "audio_self": item["audio_self"], "audio_other": item["audio_other"]}


def collate_train(items: list[dict[str, Any]]) -> TrainBatch:
    """Stack items; text padded to the longest caption with a mask."""
    length = max(max(i["text"].shape[0] for i in items), 1)
    text = torch.zeros(len(items), length, items[0]["text"].shape[-1])
    text_mask = torch.zeros(len(items), length, dtype=torch.bool)
    for b, item in enumerate(items):
        n = item["text"].shape[0]
        text[b, :n], text_mask[b, :n] = item["text"], True
    stack = lambda k: torch.stack([i[k] for i in items]) if k in items[0] else None  # noqa: E731
    return TrainBatch(audio_self=stack("audio_self"), audio_other=stack("audio_other"), text=text,
                      text_mask=text_mask, ref_mask=stack("ref_mask"), video=stack("video"),
                      ref_images=stack("ref_images"), latents=stack("latents"), ref_latents=stack("ref_latents"))


# ------------------------------------------------------------------------------ streams
class OnlineWindowStream(IterableDataset):
    """Endless augmented windows (pixels) of this rank's share of the shards."""

    def __init__(self, base: CuratedWindowDataset, transform: WindowTransform) -> None:
        super().__init__()
        self.base, self.transform = base, transform

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = 0
        while True:
            self.base.set_epoch(epoch)
            count = 0
            for item in self.base:
                count += 1
                yield self.transform(item)
            if count == 0:
                raise RuntimeError(f"rank {self.base.rank} got no training windows (clips shorter than "
                                   f"{self.base.window_frames} frames, or fewer clips than ranks x workers)")
            epoch += 1


class CachedLatentStream(IterableDataset):
    """Endless deterministic pass over cached latent windows, starting at item ``start``."""

    def __init__(self, items: list[dict[str, Tensor]], max_refs: int, seed: int, rank: int, start: int = 0,
                 clip_reference: float = 0.0) -> None:
        super().__init__()
        if not items:
            raise RuntimeError(f"rank {rank} has no cached windows; the dataset has too few clips for this many ranks")
        self.items, self.max_refs, self.seed, self.rank, self.start = items, max_refs, seed, rank, start
        self.clip_reference = clip_reference

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        n = len(self.items)
        position = self.start
        while True:
            epoch, offset = divmod(position, n)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 7919 + epoch))
            for k in range(offset, n):
                if (position + k - offset) % workers == worker:
                    yield self.item(int(order[k]), epoch)
            position += n - offset

    def item(self, index: int, epoch: int) -> dict[str, Tensor]:
        """Cached window ``index`` with the references drawn for ``epoch``."""
        item = self.items[index]
        g = torch.Generator().manual_seed(hash((self.seed, self.rank, epoch, index)) & 0x7FFFFFFF)
        refs, mask = select_refs(item["ref_appearance"], item["ref_pool"], item["ref_pool_mask"], self.max_refs, g)
        if self.clip_reference > 0 and float(torch.rand((), generator=g)) < self.clip_reference:
            # the causal VAE's first latent encodes frame 0 alone: the window's first frame as an image
            refs[0] = item["latents"][0]
        return {"latents": item["latents"], "ref_latents": refs, "ref_mask": mask, "text": item["text"].float(),
                "audio_self": item["audio_self"], "audio_other": item["audio_other"]}


# -------------------------------------------------------------------------- latent cache
def _encode_images(vae: VideoVAE, images: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, C, h, w) normalised latents (one-frame clips)."""
    if images.shape[0] == 0:
        return images.new_zeros(0, vae.cfg.latent_channels, images.shape[-2] // vae.spatial_factor,
                                images.shape[-1] // vae.spatial_factor)
    return vae.encode(images[:, None])[:, 0]


@torch.no_grad()
def encode_references(vae: VideoVAE, transform: WindowTransform, item: dict[str, Any]) -> dict[str, Tensor]:
    """A clip's reference latents (appearance, pose/expression pool; padded pool slots are zeros, not
    encoded) and caption embedding: the same for every window of the clip."""
    pool = torch.cat([item["ref_pose"], item["ref_expr"]])
    pool_mask = torch.cat([item["ref_pose_mask"], item["ref_expr_mask"]])
    latents = _encode_images(vae, transform._resize(torch.cat([item["ref_appearance"][None], pool[pool_mask]])))
    ref_pool = latents.new_zeros(len(pool), *latents.shape[1:])
    ref_pool[pool_mask] = latents[1:]
    (text,) = transform.text.token_embeddings([item["caption"]])
    return {"ref_appearance": latents[0], "ref_pool": ref_pool, "ref_pool_mask": pool_mask, "text": text.half()}


@torch.no_grad()
def encode_window(vae: VideoVAE, transform: WindowTransform, item: dict[str, Any],
                  references: dict[str, Tensor]) -> dict[str, Tensor]:
    """One loader item -> cached latents: clip, appearance, full pose/expression pool, audio, text.

    references: ``encode_references`` of the item's clip (shared by its windows, not copied).
    """
    return {"latents": vae.encode(transform._resize(item["video"])[None])[0], **references,
            "audio_self": item["audio_self"], "audio_other": item["audio_other"]}


def build_latent_cache(shard_paths: list[Path], n_clips: int, cfg: LPMConfig, vae: VideoVAE, stride: int,
                       rank: int, world: int) -> list[dict[str, Tensor]]:
    """Cached windows (starts 0, stride, 2 stride, ...) of this rank's clips (clip i -> rank i % world)."""
    transform = WindowTransform(cfg, AugmentConfig(enabled=False), train=False)
    shared = n_clips < world
    if shared:
        log.warning("%d clips for %d ranks: every rank caches all clips", n_clips, world)
    items: list[dict[str, Tensor]] = []
    t0 = time.perf_counter()
    with return_large_buffers():  # decoded clips are freed between kept latents: keep RSS flat
        for index, raw in enumerate(iter_samples(shard_paths)):
            if not shared and index % world != rank:
                continue
            sample = decode_sample(raw)
            references = None  # encoded once per clip
            for start in range(0, len(sample.frames) - cfg.clip_frames + 1, stride):
                item = window_item(sample, start, cfg.clip_frames)
                references = references or encode_references(vae, transform, item)
                items.append(encode_window(vae, transform, item, references))
            done = index + 1
            rate = done / max(time.perf_counter() - t0, 1e-9)
            log.info("latent cache rank %d: clip %d/%d, %d windows (%.2f clips/s, ETA %.0f s, RSS %.0f MB)", rank,
                     done, n_clips, len(items), rate, (n_clips - done) / rate, current_rss_mb())
    return items


class LPMDataModule(L.LightningDataModule):
    """Curated shards -> TrainBatch streams for each rank (see module docstring)."""

    def __init__(self, cfg: LPMConfig, data: DataConfig, accelerator: str = "cpu") -> None:
        super().__init__()
        if not data.dataset:
            raise ValueError("DataConfig.dataset is empty: pass a dataset directory or s3:// URL")
        self.cfg, self.data = cfg, data
        self.mode = data.latents if data.latents != "auto" else ("cached" if accelerator == "cpu" else "online")
        self.cache_dir = Path(data.cache_dir or "lpm-cache")
        self.dataset_dir = local_dataset_dir(data.dataset, self.cache_dir)
        self.manifest: Manifest | None = None

    def prepare_data(self) -> None:
        fetch_dataset(self.data.dataset, self.cache_dir)  # local rank 0 of each node

    def setup(self, stage: str | None = None) -> None:
        self.manifest = Manifest.load(self.dataset_dir)
        first = self.manifest.clips[0]
        if round(float(first["fps"])) != self.cfg.fps or int(first["sample_rate"]) != self.cfg.audio.sample_rate:
            raise ValueError(f"dataset {self.manifest.version} is {first['fps']} fps / {first['sample_rate']} Hz, the "
                             f"preset expects {self.cfg.fps} fps / {self.cfg.audio.sample_rate} Hz; re-curate or change the preset")

    def _position(self) -> tuple[int, int, int]:
        """(rank, world size, items this rank consumed before the current global step)."""
        trainer = self.trainer
        if trainer is None:
            return 0, 1, 0
        per_step = self.data.batch_size * trainer.accumulate_grad_batches
        return trainer.global_rank, trainer.world_size, trainer.global_step * per_step

    def latent_cache(self, rank: int, world: int) -> list[dict[str, Tensor]]:
        """This rank's cached windows, built once and kept under ``cache_dir/latents``."""
        assert self.manifest is not None, "call setup() first"
        stride = self.data.cache_stride or max(self.cfg.clip_frames - 1, 1)
        vae_id = sha256_file(Path(self.data.vae_path)) if self.data.vae_path else f"random-{self.data.seed}"
        key = hashlib.sha256(repr((self.manifest.content_sha256, vae_id, self.cfg.height, self.cfg.width,
                                   self.cfg.clip_frames, self.cfg.vae, self.cfg.text, stride, rank, world)).encode())
        path = self.cache_dir / "latents" / f"{key.hexdigest()[:24]}.pt"
        if path.is_file():
            log.info("latent cache hit %s", path)
            return torch.load(path, map_location="cpu", weights_only=True)
        vae = load_frozen_vae(self.cfg, self.data.vae_path, self.data.seed)
        items = build_latent_cache(self.manifest.shard_paths(self.dataset_dir), len(self.manifest.clips),
                                   self.cfg, vae, stride, rank, world)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(items, path.with_name(path.name + ".tmp"))
        os.replace(path.with_name(path.name + ".tmp"), path)
        return items

    def train_dataloader(self) -> DataLoader:
        if self.manifest is None:
            self.setup("fit")
        rank, world, consumed = self._position()
        d = self.data
        if self.mode == "cached":
            dataset: IterableDataset = CachedLatentStream(self.latent_cache(rank, world), self.cfg.max_refs, d.seed,
                                                          rank, start=consumed, clip_reference=d.clip_reference)
        else:
            base = CuratedWindowDataset(self.manifest.shard_paths(self.dataset_dir), self.cfg.clip_frames,
                                        seed=d.seed + consumed, rank=rank, world_size=world,
                                        shuffle_buffer=d.shuffle_buffer)
            dataset = OnlineWindowStream(base, WindowTransform(self.cfg, d.augment, clip_reference=d.clip_reference))
        return DataLoader(dataset, batch_size=d.batch_size, collate_fn=collate_train, num_workers=d.num_workers,
                          persistent_workers=d.num_workers > 0)
