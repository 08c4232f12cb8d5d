"""Animatable face rig: a portrait texture plus its face mesh, warped per frame by controls.

``FaceRig.render(FaceControls(...))`` returns a head-and-shoulders RGB frame. Expressions are
linear displacement bases on the 468-point mesh (see ``face_expressions``); head pose rotates
the mesh in 3-D about a pivot inside the head (painter's order by depth and back-face culling
handle the nose and cheeks occluding each other), the hair outline and neck follow part of the
motion of the nearest face-outline point, and shoulders and background stay still. An open mouth gets a drawn
cavity (teeth and tongue hints); closed eyes get a lash line.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from lpm_models.data.synth import face_expressions as fx
from lpm_models.data.synth import face_geometry as fg

MAP_SCALE = 0.5  # warp tables are computed at this fraction of the frame size, then upsampled
RENDER_SPACING = 0.03  # away from contours, mesh points closer than this (x frame size) are dropped
NECK_FOLLOW = 0.85  # share of its nearest face-outline point's motion a neck point follows
SILHOUETTE_FOLLOW = 0.9  # the same for a point of the hair outline
PIVOT_DEPTH = 0.75  # head-rotation pivot behind the nose tip, in face widths
CAVITY_RGB = np.array([52.0, 16.0, 20.0], dtype=np.float32)
TEETH_RGB = np.array([188.0, 178.0, 162.0], dtype=np.float32)
TONGUE_RGB = np.array([150.0, 62.0, 68.0], dtype=np.float32)
LASH_RGB = (30, 22, 22)


@dataclass(frozen=True)
class FaceControls:
    """Per-frame face controls (expression 0..1, head angles in degrees)."""

    jaw_open: float = 0.0   # 0..1 mouth opening (speech)
    smile: float = 0.0      # 0..1
    blink: float = 0.0      # 0..1, 1 = eyes closed
    brow_raise: float = 0.0 # 0..1
    yaw: float = 0.0        # degrees, about +-25 (turn / shake / look away)
    pitch: float = 0.0      # degrees, about +-20 (positive = chin down, nod)
    roll: float = 0.0       # degrees, about +-20 (head tilt)


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation for image axes (x right, y down, z away from the camera), angles in degrees.

    Positive yaw turns the nose towards +x (image right), positive pitch moves the chin down
    and back, positive roll tilts the head clockwise in the image.
    """
    a, b, c = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0.0, -np.sin(a)], [0.0, 1.0, 0.0], [np.sin(a), 0.0, np.cos(a)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0.0], [np.sin(c), np.cos(c), 0.0], [0.0, 0.0, 1.0]])
    return rz @ rx @ ry


class FaceRig:
    """Renders one identity under ``FaceControls`` at ``size`` x ``size`` pixels."""

    def __init__(self, texture: np.ndarray, points: np.ndarray, kinds: np.ndarray, size: int = 256) -> None:
        """texture: (S, S, 3) uint8 RGB neutral portrait; points: (N, 3) pixel points of S
        (468 face points first, then scaffold); kinds: (N,) face_geometry.KIND_* per point."""
        if texture.ndim != 3 or texture.shape[0] != texture.shape[1] or texture.shape[2] != 3:
            raise ValueError(f"texture must be a square RGB image, got shape {texture.shape}")
        if size < 64:
            raise ValueError(f"rig size must be at least 64 pixels, got {size}")
        self.size = int(size)
        scale = self.size / texture.shape[0]
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        self.texture = np.ascontiguousarray(cv2.resize(texture, (self.size, self.size), interpolation=interp))
        pts = np.asarray(points, dtype=np.float64) * scale
        self._xy = pts[:, :2].copy()
        self._z = pts[:, 2].copy()
        self._kinds = np.asarray(kinds, dtype=np.int64)
        face = self._xy[: fg.MESH_POINTS]
        bases = fx.expression_bases(face)
        self._bases = {}
        for name, basis in bases.items():
            full = np.zeros_like(self._xy)
            full[: fg.MESH_POINTS] = basis
            self._bases[name] = full
        topology = self._xy + 0.6 * self._bases["jaw_open"]  # mouth slit as real triangles
        used = np.concatenate([fg.render_vertices(face, RENDER_SPACING * self.size),
                               np.arange(fg.MESH_POINTS, len(self._xy))])
        self.triangles = used[fg.triangulate(topology[used])].astype(np.int32)
        # only all-face triangles are culled when turned away; flipped hair/neck triangles still
        # paint (a mirrored strip of nearby texture reads better than background showing through)
        cullable = (self._kinds[self.triangles] == fg.KIND_FACE).all(axis=1)
        self._warper = fg.TriangleWarper(self.triangles, (self.size, self.size), MAP_SCALE, cullable)
        self._setup_pose(face)
        layer = np.minimum(self._kinds, 2)  # static 0, neck/silhouette 1, face 2
        self._tri_layer = layer[self.triangles].max(axis=1).astype(np.float64)
        self._rest_order = np.argsort(self._tri_layer * 1e6 - self._depth(self._z_pose), kind="stable")
        m = fx.measures(face)
        self._mouth_w = m["mouth_w"]
        skin = self.texture[int(face[:, 1].min()):int(face[:, 1].max()), int(face[:, 0].min()):int(face[:, 0].max())]
        self._light = float(np.clip(skin.mean() / 150.0, 0.5, 1.2))

    def neutral_face_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) pixel box of the neutral face mesh (the landmark box curation crops from)."""
        face = self._xy[: fg.MESH_POINTS]
        (x0, y0), (x1, y1) = face.min(axis=0), face.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def _setup_pose(self, face: np.ndarray) -> None:
        m = fx.measures(face)
        cx = float(face[list(fg.FACE_OVAL), 0].mean())
        cy = float((face[fg.CHEEK_LEFT, 1] + face[fg.CHEEK_RIGHT, 1]) / 2.0)
        cz = float(self._z[fg.NOSE_TIP] + PIVOT_DEPTH * m["face_w"])
        self._pivot = np.array([cx, cy, cz])
        # scaffold points sort as if they sat at the pivot's depth (behind the face)
        self._z_pose = np.where(self._kinds == fg.KIND_FACE, self._z, cz)
        self._is_face = self._kinds == fg.KIND_FACE
        # neck and hair-outline points follow part of the motion of their nearest outline point
        follow = np.select([self._kinds == fg.KIND_NECK, self._kinds == fg.KIND_SILHOUETTE],
                           [NECK_FOLLOW, SILHOUETTE_FOLLOW], 0.0)
        self._followers = np.nonzero(follow > 0)[0]
        self._follow_w = follow[self._followers, None]
        oval = np.array(fg.FACE_OVAL)
        d = np.linalg.norm(self._xy[self._followers, None, :] - face[None, oval, :], axis=-1)
        self._anchors = oval[np.argmin(d, axis=1)]

    def _depth(self, z: np.ndarray) -> np.ndarray:
        return z[self.triangles].mean(axis=1)

    def _pose(self, xy: np.ndarray, c: FaceControls) -> tuple[np.ndarray, np.ndarray]:
        """Face points (N, 2) rotated by the head angles in ``c`` and the painter's order."""
        rot = rotation_matrix(c.yaw, c.pitch, c.roll)
        p3 = np.column_stack([xy, self._z_pose]) - self._pivot
        moved = p3 @ rot.T + self._pivot  # (N, 3)
        out = xy.copy()
        out[self._is_face] = moved[self._is_face, :2]
        z = np.where(self._is_face, moved[:, 2], self._z_pose)
        order = np.argsort(self._tri_layer * 1e6 - self._depth(z), kind="stable")
        return out, order

    def _deform(self, controls: FaceControls) -> tuple[np.ndarray, np.ndarray]:
        """All rig points (N, 2) under ``controls`` and the triangles' painter's order."""
        xy = self._xy.copy()
        for name in fx.CONTROL_NAMES:
            value = min(max(float(getattr(controls, name)), 0.0), 1.0)  # expressions live in 0..1
            if value != 0.0:
                xy += value * self._bases[name]
        order = self._rest_order
        if controls.yaw or controls.pitch or controls.roll:
            xy, order = self._pose(xy, controls)
        moved = xy[self._anchors] - self._xy[self._anchors]
        xy[self._followers] = self._xy[self._followers] + self._follow_w * moved
        return xy, order

    def points(self, controls: FaceControls) -> np.ndarray:
        """(N, 2) rendered positions of all rig points (468 face points first)."""
        return self._deform(controls)[0]

    def render(self, controls: FaceControls) -> np.ndarray:
        """(size, size, 3) uint8 RGB frame of the identity under ``controls``.

        Expression controls are clipped to 0..1; head angles are used as given (the rig is made
        for about +-25 deg yaw and +-20 deg pitch/roll and degrades gracefully beyond).
        """
        xy, order = self._deform(controls)
        table = self._warper.maps(xy, self._xy, order)
        frame = cv2.remap(self.texture, table, None, interpolation=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
        self._draw_mouth(frame, xy)
        if controls.blink > 0.55:
            self._draw_lashes(frame, xy)
        return frame

    def _draw_mouth(self, frame: np.ndarray, xy: np.ndarray) -> None:
        up = xy[list(fg.LIPS_INNER_UPPER)]
        lo = xy[list(fg.LIPS_INNER_LOWER)]
        gap = float(np.max(np.hypot(*(lo[1:-1] - up[1:-1]).T)))
        if gap < 0.8:
            return
        poly = np.vstack([up, lo[::-1][1:-1]])
        x0, y0 = np.floor(poly.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.size), min(y1, self.size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        off = np.array([x0, y0], dtype=np.float64)
        shape = (y1 - y0, x1 - x0)
        cavity = _poly_mask(shape, poly - off)
        teeth_h = min(0.25 * gap, 0.07 * self._mouth_w)
        teeth = _poly_mask(shape, np.vstack([up, up[::-1] + [0.0, teeth_h]]) - off) * cavity
        centre = (up[5] + lo[5]) / 2.0 - off
        tongue = np.zeros(shape, dtype=np.float32)
        if gap > 0.12 * self._mouth_w:
            axes = (max(1, int(0.22 * self._mouth_w)), max(1, int(0.25 * gap)))
            disc = np.zeros(shape, dtype=np.uint8)
            cv2.ellipse(disc, (int(centre[0]), int(lo[5, 1] - off[1])), axes, 0.0, 180.0, 360.0, 255, -1, cv2.LINE_AA)
            tongue = disc.astype(np.float32) * (0.8 / 255.0) * cavity
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        light = self._light
        fill = CAVITY_RGB * light * (1.0 - tongue[..., None]) + TONGUE_RGB * light * tongue[..., None]
        fill = fill * (1.0 - teeth[..., None]) + TEETH_RGB * light * teeth[..., None]
        a = cavity[..., None]
        frame[y0:y1, x0:x1] = np.clip(roi * (1.0 - a) + fill * a + 0.5, 0, 255).astype(np.uint8)

    def _draw_lashes(self, frame: np.ndarray, xy: np.ndarray) -> None:
        for upper in (fg.EYE_RIGHT_UPPER, fg.EYE_LEFT_UPPER):
            line = np.round(xy[list(upper)] * 4.0).astype(np.int32)
            cv2.polylines(frame, [line], False, LASH_RGB, 1, cv2.LINE_AA, 2)


def _poly_mask(shape: tuple[int, int], poly: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16.0).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return mask.astype(np.float32) / 255.0


def control_names() -> tuple[str, ...]:
    """Names of the FaceControls fields, in declaration order."""
    return tuple(f.name for f in fields(FaceControls))
