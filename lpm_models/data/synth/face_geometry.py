"""Face mesh topology, scaffold points around the face, and the piecewise-affine warper.

Points are pixel coordinates ``(x, y)`` of a square portrait (x right, y down); the 468 face
points follow MediaPipe's face-mesh numbering. The warper renders a triangulated mesh whose
vertices moved (``dst``) by sampling a texture at the vertices' rest positions (``src``):
per-triangle affine maps, rasterised into a triangle-id map in painter's order, turned into a
dense ``cv2.remap`` map. That one path serves both the identity build (exact, full-resolution
maps) and the per-frame rig (maps at half resolution, bilinearly upsampled).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import Delaunay

MESH_POINTS = 468
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
# "right"/"left" are the subject's: the right eye is on the image's left.
EYE_RIGHT_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
EYE_RIGHT_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
EYE_LEFT_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
EYE_LEFT_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
BROW_RIGHT = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
BROW_LEFT = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
MIDLINE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 2, 164, 0, 13, 14, 17, 18, 200, 199, 175, 152)
NOSE_TIP, CHIN, FOREHEAD, CHEEK_RIGHT, CHEEK_LEFT = 1, 152, 10, 234, 454
MOUTH_CORNERS = (61, 291)

# scaffold point kinds: how a point follows head motion
KIND_STATIC, KIND_NECK, KIND_SILHOUETTE, KIND_FACE = 0, 1, 2, 3


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(right, left)`` of the two eye contours; points: (>=468, 2+)."""
    right = points[list(EYE_RIGHT_UPPER + EYE_RIGHT_LOWER), :2].mean(axis=0)
    left = points[list(EYE_LEFT_UPPER + EYE_LEFT_LOWER), :2].mean(axis=0)
    return right, left


def face_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """Loose face box ``(x0, y0, x1, y1)`` around the face oval."""
    oval = points[list(FACE_OVAL), :2]
    (x0, y0), (x1, y1) = oval.min(axis=0), oval.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def mirror_permutation(points: np.ndarray) -> np.ndarray:
    """Left-right vertex correspondence of a roughly frontal face mesh.

    points: (468, 2). Returns perm (468,) with ``perm[i]`` the mirror partner of vertex i,
    found by optimal assignment between the mesh and its reflection about the midline.
    """
    pts = points[:MESH_POINTS, :2].astype(np.float64)
    axis_x = float(pts[list(MIDLINE), 0].mean())
    reflected = pts.copy()
    reflected[:, 0] = 2.0 * axis_x - reflected[:, 0]
    cost = ((pts[:, None, :] - reflected[None, :, :]) ** 2).sum(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(MESH_POINTS, dtype=np.int64)
    perm[rows] = cols
    return perm


def mirror_points(points: np.ndarray, perm: np.ndarray, width: float) -> np.ndarray:
    """Face points of the horizontally flipped image, renumbered so indices keep their meaning."""
    flipped = points.copy()
    flipped[:, 0] = width - 1.0 - flipped[:, 0]
    out = flipped.copy()
    out[:MESH_POINTS] = flipped[perm]
    return out


def scaffold(face: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around the face (hair silhouette, neck, shoulders, frame border) and their kinds.

    face: (468, 2) face points in a ``size`` x ``size`` portrait. Returns (M, 2) points and
    (M,) kinds (KIND_STATIC / KIND_NECK / KIND_SILHOUETTE).
    """
    centre = face[list(FACE_OVAL)].mean(axis=0)
    fw = float(abs(face[CHEEK_LEFT, 0] - face[CHEEK_RIGHT, 0]))
    chin = face[CHIN]
    fh = float(chin[1] - face[FOREHEAD, 1])
    ear_y = float((face[CHEEK_LEFT, 1] + face[CHEEK_RIGHT, 1]) / 2.0)
    pts: list[tuple[float, float]] = []
    kinds: list[int] = []
    for idx in FACE_OVAL:
        v = face[idx] - centre
        upper = face[idx, 1] <= ear_y + 0.1 * fh
        p = centre + (1.45 if upper else 1.5) * v
        pts.append((float(p[0]), float(p[1])))
        kinds.append(KIND_SILHOUETTE if upper else KIND_NECK)
    cx, cy = float(centre[0]), float(chin[1])
    for dx, dy, kind in (
        (-0.3, 0.55, KIND_NECK), (0.3, 0.55, KIND_NECK),
        (-0.95, 0.75, KIND_STATIC), (0.95, 0.75, KIND_STATIC),
        (-1.5, 0.8, KIND_STATIC), (1.5, 0.8, KIND_STATIC),
    ):
        pts.append((cx + dx * fw, cy + dy * fh))
        kinds.append(kind)
    edge = np.linspace(0.0, size - 1.0, 7)
    for t in edge:
        for p in ((t, 0.0), (t, size - 1.0), (0.0, t), (size - 1.0, t)):
            pts.append(p)
            kinds.append(KIND_STATIC)
    arr = np.clip(np.asarray(pts, dtype=np.float64), 0.0, size - 1.0)
    return _dedupe(arr, np.asarray(kinds, dtype=np.int64), face, min_dist=2.0)


def _dedupe(
    pts: np.ndarray, kinds: np.ndarray, face: np.ndarray, min_dist: float
) -> tuple[np.ndarray, np.ndarray]:
    """Drop scaffold points closer than ``min_dist`` to a face point or an earlier kept point."""
    near_face = np.sqrt(((pts[:, None, :] - face[None, :, :2]) ** 2).sum(axis=-1)).min(axis=1) < min_dist
    keep: list[int] = []
    for i in np.nonzero(~near_face)[0]:
        if not keep or np.hypot(*(pts[keep] - pts[i]).T).min() >= min_dist:
            keep.append(int(i))
    return pts[keep], kinds[keep]


FEATURE_POINTS = tuple(sorted(set(
    LIPS_INNER_UPPER + LIPS_INNER_LOWER + LIPS_OUTER_UPPER + LIPS_OUTER_LOWER + EYE_RIGHT_UPPER
    + EYE_RIGHT_LOWER + EYE_LEFT_UPPER + EYE_LEFT_LOWER + BROW_RIGHT + BROW_LEFT + FACE_OVAL + MIDLINE
)))


def render_vertices(face: np.ndarray, spacing: float) -> np.ndarray:
    """Indices of a sparser face mesh for fast rendering: every contour point (lips, eyes,
    brows, oval, midline) plus the other points that lie at least ``spacing`` px from those kept."""
    keep = list(FEATURE_POINTS)
    kept = face[keep, :2]
    for i in range(MESH_POINTS):
        if i in FEATURE_POINTS:
            continue
        if np.hypot(*(kept - face[i, :2]).T).min() >= spacing:
            keep.append(i)
            kept = np.vstack([kept, face[i, :2]])
    return np.array(sorted(keep), dtype=np.int64)


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) of 2-D points (N, 2), oriented with positive signed area in
    image coordinates (the orientation ``TriangleWarper`` treats as front-facing)."""
    tris = Delaunay(points[:, :2].astype(np.float64)).simplices.astype(np.int32)
    p = points[:, :2]
    a, b, c = p[tris[:, 0]], p[tris[:, 1]], p[tris[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = cross < 0
    tris[flip] = tris[flip][:, [0, 2, 1]]
    return tris


class TriangleWarper:
    """Piecewise-affine backward warping of a fixed triangulation.

    ``maps`` rasterises the triangles at their destination positions (in the given painter's
    order, later triangles cover earlier ones) at ``map_scale`` times the output resolution and
    returns an (H, W, 2) float32 map for ``cv2.remap`` that samples each triangle's source.
    """

    def __init__(self, triangles: np.ndarray, out_hw: tuple[int, int], map_scale: float = 1.0,
                 cullable: np.ndarray | None = None) -> None:
        """triangles: (T, 3) vertex indices; cullable: (T,) bool, which triangles are dropped when
        they face away (flipped); the others are drawn either way. Default: all cullable."""
        if not 0.0 < map_scale <= 1.0:
            raise ValueError(f"map_scale must be in (0, 1], got {map_scale}")
        self.triangles = np.ascontiguousarray(triangles, dtype=np.int32)
        self.out_h, self.out_w = out_hw
        self.map_h = max(2, int(round(self.out_h * map_scale)))
        self.map_w = max(2, int(round(self.out_w * map_scale)))
        self._sx = self.map_w / self.out_w
        self._sy = self.map_h / self.out_h
        # output-space coordinates of the map pixels' centres
        gx = (np.arange(self.map_w, dtype=np.float32) + 0.5) / self._sx - 0.5
        gy = (np.arange(self.map_h, dtype=np.float32) + 0.5) / self._sy - 0.5
        self._gx, self._gy = np.meshgrid(gx, gy)
        self._tid = np.zeros((self.map_h, self.map_w), dtype=np.int32)
        self._keep_flipped = (np.zeros(len(self.triangles), dtype=bool) if cullable is None
                              else ~np.asarray(cullable, dtype=bool))

    def affines(self, dst: np.ndarray, src: np.ndarray) -> np.ndarray:
        """(T, 2, 3) affine maps taking each destination triangle onto its source triangle."""
        d = dst[self.triangles, :2].astype(np.float64)  # (T, 3, 2)
        s = src[self.triangles, :2].astype(np.float64)
        e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        ok = np.abs(det) > 1e-9
        inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        inv = np.empty((len(d), 2, 2))
        inv[:, 0, 0], inv[:, 0, 1] = e2[:, 1] * inv_det, -e2[:, 0] * inv_det
        inv[:, 1, 0], inv[:, 1, 1] = -e1[:, 1] * inv_det, e1[:, 0] * inv_det
        f = np.stack([s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]], axis=2)  # (T, 2, 2) columns
        lin = f @ inv
        out = np.empty((len(d), 2, 3))
        out[:, :, :2] = lin
        out[:, :, 2] = s[:, 0] - (lin @ d[:, 0, :, None])[:, :, 0]
        return out

    def maps(self, dst: np.ndarray, src: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
        """Dense (H, W, 2) float32 remap table for moving ``src`` vertices to ``dst``."""
        aff = self.affines(dst, src).astype(np.float32)
        mx = np.array([self._sx, self._sy])
        verts = np.round(((dst[:, :2] + 0.5) * mx - 0.5) * 16.0).astype(np.int32)[self.triangles]
        tid = self._tid
        # Back-facing (flipped) cullable triangles are dropped: with the frame border fixed,
        # every pixel stays covered by a front-facing one. Near-degenerate triangles (a closed
        # mouth or eye) would still paint their edge pixels with an exploding affine: skip them.
        v = verts.astype(np.float64)
        area2 = (v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1]) - (v[:, 1, 1] - v[:, 0, 1]) * (
            v[:, 2, 0] - v[:, 0, 0]
        )
        min_area2 = 0.2 * 256.0  # 0.1 map pixels^2 in 4-bit fixed point
        visible = (area2 > min_area2) | (self._keep_flipped & (area2 < -min_area2))
        if order is None:
            order = np.arange(len(self.triangles))
        fill = cv2.fillConvexPoly
        for i in order[visible[order]].tolist():
            fill(tid, verts[i], i, 8, 4)
        coef = aff.reshape(len(aff), 6)
        table = np.empty((self.map_h, self.map_w, 2), dtype=np.float32)
        for k in (0, 1):
            a = np.take(coef[:, 3 * k], tid)
            b = np.take(coef[:, 3 * k + 1], tid)
            c = np.take(coef[:, 3 * k + 2], tid)
            table[:, :, k] = a * self._gx + b * self._gy + c
        if (self.map_h, self.map_w) != (self.out_h, self.out_w):
            table = cv2.resize(table, (self.out_w, self.out_h), interpolation=cv2.INTER_LINEAR)
        return table

    def warp(
        self, image: np.ndarray, src: np.ndarray, dst: np.ndarray, order: np.ndarray | None = None
    ) -> np.ndarray:
        """Image whose triangles moved from ``src`` to ``dst`` (output size ``out_hw``)."""
        table = self.maps(dst, src, order)
        return cv2.remap(image, table, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
