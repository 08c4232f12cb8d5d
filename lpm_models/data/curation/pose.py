"""Head pose and mouth opening from MediaPipe face-mesh landmarks (478 points with depth).

Pose is a geometric estimate from the mesh's 3D points (x, y in pixels, z in the same scale,
positive away from the camera): the face's left-right axis is the mean of symmetric landmark
pair differences, its up axis runs chin -> forehead (orthogonalised), and the face normal is
their cross product. No camera intrinsics are needed and no 3D model file is shipped.

Conventions (camera: x right, y down, z away): yaw > 0 when the face turns towards image right,
pitch > 0 when the chin goes down, roll > 0 when the head tilts clockwise in the image (the
subject's left eye, on image right, drops). All in degrees. Pitch is measured against the
chin -> forehead line, so a resting head reads an anatomical offset (-5 to +15 deg seen on the corpus);
use changes of pitch (nods) rather than its absolute value.
"""

from __future__ import annotations

import numpy as np

# Symmetric landmark pairs (subject's right, subject's left) of the MediaPipe face mesh:
# eye outer / inner corners, cheekbones, face sides, mouth corners, brow ends.
_PAIRS = np.array([(33, 263), (133, 362), (234, 454), (127, 356), (93, 323), (61, 291), (70, 300)])
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
# Inner-lip pairs (upper, lower) across the mouth opening: centre and both sides.
_LIP_PAIRS = np.array([(13, 14), (82, 87), (312, 317), (81, 178), (311, 402)])
# Points that move rigidly with the skull (face oval, nose bridge, eye corners): used for jitter.
RIGID_POINTS = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379,
                         378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127,
                         162, 21, 54, 103, 67, 109, 6, 168, 197, 195, 5, 4, 33, 133, 263, 362])


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def face_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit axes of the face in camera coordinates: (right, up, normal), each (N, 3).

    points: (N, 478, 3) landmarks (x, y px; z in x's scale). ``right`` points to the subject's
    left (image right on a frontal face), ``up`` to the forehead, ``normal`` out of the face.
    """
    right = _normalise((points[:, _PAIRS[:, 1]] - points[:, _PAIRS[:, 0]]).mean(axis=1))
    up = points[:, FOREHEAD] - points[:, CHIN]
    up = _normalise(up - np.sum(up * right, axis=-1, keepdims=True) * right)
    normal = np.cross(right, up)  # frontal: (1,0,0) x (0,-1,0) = (0,0,-1), towards the camera
    return right, up, normal


def head_pose(points: np.ndarray) -> np.ndarray:
    """(N, 3) float32 yaw, pitch, roll in degrees from (N, 478, 3) mesh points."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"head_pose expects (N, 478, 3) points with depth, got {points.shape}")
    right, up, normal = face_axes(points.astype(np.float64))
    yaw = np.degrees(np.arctan2(normal[:, 0], -normal[:, 2]))
    pitch = np.degrees(np.arctan2(normal[:, 1], np.hypot(normal[:, 0], normal[:, 2])))
    roll = np.degrees(np.arctan2(right[:, 1], right[:, 0]))
    return np.stack([yaw, pitch, roll], axis=-1).astype(np.float32)


def face_height(points: np.ndarray) -> np.ndarray:
    """(N,) forehead-to-chin distance in 3D (pixels), steady under yaw and pitch."""
    return np.linalg.norm(points[:, FOREHEAD] - points[:, CHIN], axis=-1)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """(N,) float32 mean inner-lip gap / face height (0 = closed, ~0.15 = wide open)."""
    gaps = np.linalg.norm(points[:, _LIP_PAIRS[:, 0]] - points[:, _LIP_PAIRS[:, 1]], axis=-1).mean(axis=1)
    return (gaps / np.maximum(face_height(points), 1e-6)).astype(np.float32)
