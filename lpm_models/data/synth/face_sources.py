"""Real face photos that ship inside installed packages, with their licences, normalised.

Photos are read from the installed packages at run time and never stored in the project.
``normalise`` turns a photo into a canonical head-and-shoulders crop whose face mesh is
frontal (eye line level, mirror-symmetric geometry), mouth closed and smile relaxed, so the
identity edits and the animation rig start from a neutral face.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from lpm_models.data.synth import face_expressions as fx
from lpm_models.data.synth import face_geometry as fg

log = logging.getLogger(__name__)

TEXTURE_SIZE = 320  # canonical crop side in pixels
EYE_LINE_Y = 0.42  # canonical mid-eye height, fraction of the side
EYE_DISTANCE = 0.17  # canonical inter-ocular distance, fraction of the side
MIRROR_ASYMMETRY = 0.15  # relative half-face width difference above which a face is half-mirrored


@dataclass(frozen=True)
class FaceSource:
    """A face photo inside an installed package."""

    name: str
    licence: str
    origin: str
    loader: Callable[[], np.ndarray | None]
    frames_person: bool = True  # True if hair, shoulders and background are usable


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.is_file() else None


def _astronaut() -> np.ndarray | None:
    path = _package_file("skimage", "data", "astronaut.png")
    if path is not None:
        return _read_rgb(path)
    from skimage import data  # astronaut is one of the images bundled with scikit-image

    return np.asarray(data.astronaut())


def _grace_hopper() -> np.ndarray | None:
    path = _package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    return None if path is None else _read_rgb(path)


def _luispedro() -> np.ndarray | None:
    path = _package_file("mahotas", "demos", "data", "luispedro.jpg")
    return None if path is None else _read_rgb(path)


def _mona_lisa() -> np.ndarray | None:
    try:
        listing = subprocess.run(
            ["dpkg-query", "-L", "node-opencv"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listing.splitlines():
        if line.endswith("/mona.png") and Path(line).is_file():
            return _read_rgb(Path(line))
    return None


SOURCES: dict[str, FaceSource] = {
    s.name: s
    for s in (
        FaceSource("astronaut", "public domain (NASA photo of Eileen Collins; scikit-image data.astronaut)",
                   "PyPI scikit-image: skimage/data/astronaut.png", _astronaut),
        FaceSource("grace_hopper", "public domain (U.S. Navy photo of Grace Hopper)",
                   "PyPI matplotlib: mpl-data/sample_data/grace_hopper.jpg", _grace_hopper),
        FaceSource("mona_lisa", "public domain (painting by Leonardo da Vinci)",
                   "Debian node-opencv: examples/files/mona.png", _mona_lisa),
        FaceSource("luispedro", "MIT (mahotas package data: photo of its author, Luis Pedro Coelho)",
                   "PyPI mahotas: mahotas/demos/data/luispedro.jpg", _luispedro, frames_person=False),
    )
}


def available_sources() -> list[str]:
    """Names of the registered sources whose package is installed here."""
    return [name for name, src in SOURCES.items() if src.loader() is not None]


def load_source(name: str) -> np.ndarray:
    """The RGB photo of a registered source; raises if unknown or its package is missing."""
    if name not in SOURCES:
        raise KeyError(f"unknown face source {name!r}; registered: {sorted(SOURCES)}")
    image = SOURCES[name].loader()
    if image is None:
        raise FileNotFoundError(f"face source {name!r} needs {SOURCES[name].origin}, which is not installed")
    return image


class FaceMesher:
    """MediaPipe face mesh on still images: (468, 3) pixel points (z in x's pixel scale)."""

    def __init__(self) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.3
        )

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * w, p.y * h, p.z * w] for p in lm[: fg.MESH_POINTS]], dtype=np.float64)

    def close(self) -> None:
        self._mesh.close()


class PersonSegmenter:
    """MediaPipe selfie segmentation: float32 person probability per pixel."""

    def __init__(self) -> None:
        import mediapipe as mp

        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self._seg.process(np.ascontiguousarray(image)).segmentation_mask.astype(np.float32)

    def close(self) -> None:
        self._seg.close()


@dataclass(frozen=True)
class NormalisedFace:
    """A source photo in the canonical frame with a neutral, frontal face mesh."""

    name: str
    licence: str
    frames_person: bool
    image: np.ndarray  # (S, S, 3) uint8 RGB
    points: np.ndarray  # (468, 3) float64 pixels; z in x's scale, towards the camera negative
    person: np.ndarray  # (S, S) float32 person mask in [0, 1]


def _canonical_crop(image: np.ndarray, mesh: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    right, left = fg.eye_centres(mesh)
    angle = np.arctan2(left[1] - right[1], left[0] - right[0])
    scale = EYE_DISTANCE * size / float(np.linalg.norm(left - right))
    c, s = np.cos(-angle) * scale, np.sin(-angle) * scale
    mid = (right + left) / 2.0
    rot = np.array([[c, -s], [s, c]])
    shift = np.array([0.5 * size, EYE_LINE_Y * size]) - rot @ mid
    affine = np.hstack([rot, shift[:, None]])
    crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT101)
    pts = mesh.copy()
    pts[:, :2] = mesh[:, :2] @ rot.T + shift
    pts[:, 2] = mesh[:, 2] * scale
    return crop, pts


def frontalise(points: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Rotate the 3-D mesh so its mid-sagittal plane faces the camera, then symmetrise it."""
    pts = points.copy()
    centre = pts.mean(axis=0)
    mid = pts[list(fg.MIDLINE)] - centre
    # plane normal = direction of least variance of the midline points
    _, _, vt = np.linalg.svd(mid - mid.mean(axis=0))
    normal = vt[2] * np.sign(vt[2][0] or 1.0)
    yaw = np.arctan2(normal[2], normal[0])
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    pts = (pts - centre) @ rot.T + centre
    axis_x = float(pts[list(fg.MIDLINE), 0].mean())
    mirrored = pts[perm].copy()
    mirrored[:, 0] = 2.0 * axis_x - mirrored[:, 0]
    return 0.5 * (pts + mirrored)


def neutralise_mouth(points: np.ndarray) -> np.ndarray:
    """Close an open mouth (hiding teeth) and relax a smile, using the rig's own bases.

    The inner lip contours of the result coincide (zero gap); see ``open_for_topology``.
    """
    pts = points.copy()
    bases = fx.expression_bases(pts)
    gap = float(pts[14, 1] - pts[13, 1])
    unit_gap = float(bases["jaw_open"][14, 1] - bases["jaw_open"][13, 1])
    if gap > 0.5:
        pts[:, :2] -= (gap / unit_gap) * bases["jaw_open"]
    # the upper lip stays; the lower lip (inner and outer) closes onto it
    upper, lower = list(fg.LIPS_INNER_UPPER[1:-1]), list(fg.LIPS_INNER_LOWER[1:-1])
    residual = pts[upper, 1] - pts[lower, 1]
    pts[lower, 1] += residual
    outer = list(fg.LIPS_OUTER_LOWER[1:-1])
    order = np.argsort(pts[lower, 0])
    pts[outer, 1] += np.interp(pts[outer, 0], pts[lower, 0][order], residual[order])
    m = fx.measures(pts)
    lift = (float(pts[13, 1]) - float(pts[list(fg.MOUTH_CORNERS), 1].mean())) / m["mouth_w"]
    smile_unit = 0.11  # corner lift per unit smile, as in smile_basis
    smile = float(np.clip(lift / smile_unit, 0.0, 1.5))
    log.debug("closed a %.1f px mouth gap, relaxed smile by %.2f (corner lift %.3f)", gap, smile, lift)
    pts[:, :2] -= smile * fx.smile_basis(pts[:, :2])
    pts[lower] = pts[upper]
    return pts


def open_for_topology(points: np.ndarray, gap: float) -> np.ndarray:
    """Points with the inner lower lip moved ``gap`` px down, so a triangulation of them has
    the mouth slit as proper triangles even where the neutral lips coincide."""
    pts = points.copy()
    pts[list(fg.LIPS_INNER_LOWER[1:-1]), 1] += gap
    return pts


def _draw_lip_seam(image: np.ndarray, points: np.ndarray) -> None:
    """Draw the dark line between closed lips (over what is left of teeth), in place."""
    seam = points[list(fg.LIPS_INNER_UPPER), :2]
    lip = points[list(fg.LIPS_OUTER_UPPER[3:8]), :2].mean(axis=0) * 0.5 + seam[3:8].mean(axis=0) * 0.5
    x, y = int(round(lip[0])), int(round(lip[1]))
    colour = image[max(y - 1, 0):y + 2, max(x - 3, 0):x + 4].reshape(-1, 3).mean(axis=0) * 0.55
    line = np.round(seam * 4.0).astype(np.int32)
    cv2.polylines(image, [line], False, tuple(float(c) for c in colour), 1, cv2.LINE_AA, 2)


def _mirror_half(image: np.ndarray, points: np.ndarray, keep_left: bool) -> np.ndarray:
    """Replace the less visible half of a (symmetric-geometry) face by the other half mirrored."""
    size = image.shape[1]
    axis_x = float(points[list(fg.MIDLINE), 0].mean())
    reflect = np.array([[-1.0, 0.0, 2.0 * axis_x], [0.0, 1.0, 0.0]])
    mirrored = cv2.warpAffine(image, reflect, (size, image.shape[0]), borderMode=cv2.BORDER_REFLECT101)
    xs = np.arange(size, dtype=np.float32)
    ramp = np.clip((xs - axis_x) / (0.04 * size) * 0.5 + 0.5, 0.0, 1.0)  # 0 left of axis, 1 right
    w = (ramp if keep_left else 1.0 - ramp)[None, :, None]
    out = image.astype(np.float32) * (1.0 - w) + mirrored.astype(np.float32) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def normalise(name: str, image: np.ndarray, mesher: FaceMesher, segmenter: PersonSegmenter,
              size: int = TEXTURE_SIZE) -> NormalisedFace:
    """Canonical, frontal, closed-mouth version of one source photo."""
    mesh = mesher(image)
    if mesh is None:
        raise ValueError(f"no face found in source {name!r}")
    crop, pts = _canonical_crop(image, mesh, size)
    refined = mesher(crop)  # re-detect at the canonical scale for tighter landmarks
    if refined is not None:
        pts = refined
    perm = fg.mirror_permutation(pts[:, :2])
    target = neutralise_mouth(frontalise(pts, perm))
    extra, _ = fg.scaffold(pts[:, :2], size)
    src_all = np.vstack([pts[:, :2], extra])
    dst_all = np.vstack([target[:, :2], extra])
    topology = np.vstack([open_for_topology(target, 0.02 * size)[:, :2], extra])
    warper = fg.TriangleWarper(fg.triangulate(topology), (size, size))
    warped = warper.warp(crop, src_all, dst_all)
    nose_x = float(pts[fg.NOSE_TIP, 0])
    half_r = nose_x - float(pts[fg.CHEEK_RIGHT, 0])
    half_l = float(pts[fg.CHEEK_LEFT, 0]) - nose_x
    if abs(half_r - half_l) > MIRROR_ASYMMETRY * (half_r + half_l):
        # a turned face: its far half is stretched by frontalisation, mirror the near half
        warped = _mirror_half(warped, target, keep_left=half_r > half_l)
    _draw_lip_seam(warped, target)
    person = warper.warp(segmenter(crop), src_all, dst_all)
    src = SOURCES[name]
    log.info("normalised face source %s (%s)", name, src.licence)
    return NormalisedFace(name=name, licence=src.licence, frames_person=src.frames_person,
                          image=warped, points=target, person=np.clip(person, 0.0, 1.0))
