"""Funnel report, catalog rows and MLflow logging of a curated dataset version."""

import json
from pathlib import Path
from typing import Any

from orchestration.assets.curation import CURATION_PREFIX, DATA_BUCKET
from orchestration.resources import CatalogResource, ObjectStoreResource

STAGES = ("ingest", "shots", "tracks", "quality", "pairing", "references", "dataset")


def funnel(store: ObjectStoreResource, catalog: CatalogResource, videos: list[str], manifest: Any,
           planned_s: float) -> list[dict[str, Any]]:
    """Per stage: units and hours kept, rejections by reason (like the paper's curation funnel table)."""
    db = catalog.catalog()
    raw = [v for v in db.source_videos(status="ingested") if Path(v.object_key).stem in videos]
    kept = {"ingest": (len(raw), sum(v.duration_s or 0.0 for v in raw))}
    shots = tracks = passed = paired = (0, 0.0)
    for video in videos:
        doc = lambda name: json.loads(store.get_bytes(DATA_BUCKET, f"{CURATION_PREFIX}{video}/{name}"))  # noqa: E731
        s = doc("shots.json")["kept"]
        shots = (shots[0] + len(s), shots[1] + sum((x["end_frame"] - x["start_frame"]) / x["fps"] for x in s))
        t = doc("tracks.json")
        tracks = (tracks[0] + len(t["kept"]), tracks[1] + sum(t["seconds"].values()))
        q = doc("quality.json")["passed"]
        passed = (passed[0] + len(q), passed[1] + sum(t["seconds"][x] for x in q))
        p = doc("pairing.json")["clips"]
        paired = (paired[0] + len(p), paired[1] + sum(x["seconds"] for x in p))
    kept.update(shots=shots, tracks=tracks, quality=passed, pairing=paired,
                references=(len(manifest.clips), planned_s),
                dataset=(len(manifest.clips), float(manifest.profile["seconds"])))
    rows = []
    for stage in STAGES:
        units, seconds = kept[stage]
        rows.append({"stage": stage, "kept": units, "hours": round(seconds / 3600.0, 4),
                     "rejections": db.rejection_counts(stage=stage)})
    return rows


def funnel_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| stage | kept | hours | rejected (by reason) |", "|---|---|---|---|"]
    for r in rows:
        why = ", ".join(f"{k}: {v}" for k, v in r["rejections"].items()) or "-"
        lines.append(f"| {r['stage']} | {r['kept']} | {r['hours']:.4f} | {why} |")
    return "\n".join(lines)


def funnel_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar([r["stage"] for r in rows], [r["hours"] * 60 for r in rows], color="#4C72B0")
    ax.set_ylabel("minutes kept")
    ax.set_title("Curation funnel")
    for i, r in enumerate(rows):
        ax.text(i, r["hours"] * 60, str(r["kept"]), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def contact_sheet(samples: list[Any], path: Path, columns: int = 6) -> Path:
    """A grid of random samples: first frame next to the appearance reference."""
    import cv2
    import numpy as np

    tiles = [np.concatenate([s.frames[0], cv2.resize(s.references.appearance.image, s.frames[0].shape[1::-1])], 1)
             for s in samples]
    rows = [np.concatenate(tiles[i:i + columns] + [np.zeros_like(tiles[0])] * (columns - len(tiles[i:i + columns])), 1)
            for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return path


def record_catalog(catalog: CatalogResource, manifest: Any, manifest_uri: str, run_id: str,
                   mlflow_run_id: str, documents: dict[str, Any]) -> int:
    """Dataset version, identities, clips, segments and references rows (idempotent per version)."""
    import sqlalchemy as sa

    from infra.catalog import models as m

    db = catalog.catalog()
    with db.session() as s:
        existing = s.scalars(sa.select(m.DatasetVersion).where(m.DatasetVersion.version == manifest.version)).first()
        if existing is not None:
            return existing.id
        version = m.DatasetVersion(name="lpm-curated", version=manifest.version, manifest_uri=manifest_uri,
                                   manifest_sha256=manifest.content_sha256, n_clips=len(manifest.clips),
                                   mlflow_run_id=mlflow_run_id, dagster_run_id=run_id, meta=manifest.profile)
        s.add(version)
        identities: dict[str, Any] = {}
        for name in sorted({str(c["identity"]) for c in manifest.clips}):
            row = s.scalars(sa.select(m.Identity).where(m.Identity.name == name)).first()
            identities[name] = row or m.Identity(name=name, kind="synthetic" if name else "real")
            s.add(identities[name])
        s.flush()
        _clip_rows(s, m, manifest, identities, documents, run_id, version.id)
        return version.id


def _clip_rows(s: Any, m: Any, manifest: Any, identities: dict[str, Any], documents: dict[str, Any],
               run_id: str, version_id: int) -> None:
    import sqlalchemy as sa

    sources = {Path(v.object_key).stem: v.id for v in s.scalars(sa.select(m.SourceVideo))}
    for c in manifest.clips:
        clip = s.scalars(sa.select(m.Clip).where(m.Clip.clip_key == c["clip_id"])).first()
        if clip is None:
            clip = m.Clip(source_video_id=sources[c["video_id"]], identity_id=identities[str(c["identity"])].id,
                          clip_key=c["clip_id"], start_s=c["start_frame"] / c["source_fps"],
                          end_s=c["end_frame"] / c["source_fps"], n_frames=c["n_frames"], fps=c["fps"],
                          status="accepted", dagster_run_id=run_id, meta={"caption": c.get("caption", "")})
            s.add(clip)
            s.flush()
            for kind, items in documents[c["clip_id"]]["images"].items():
                for item in items:
                    s.add(m.IdentityReference(identity_id=clip.identity_id, clip_id=clip.id, kind=kind,
                                              frame_index=item["source"]["frame"],
                                              object_key=f"s3://{DATA_BUCKET}/{item['key']}"))
        s.execute(sa.insert(m.DatasetClip).values(dataset_version_id=version_id, clip_id=clip.id))
