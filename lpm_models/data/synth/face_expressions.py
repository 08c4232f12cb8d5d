"""Expression displacement bases on the 468-point face mesh (jaw, smile, blink, brows).

Each basis is the (468, 2) pixel displacement of every face point at control value 1; a face
with controls c is ``neutral + sum_k c_k * basis_k``. The bases are derived from the neutral
geometry of one face, so they scale with its mouth width and eye distance.
"""

from __future__ import annotations

import numpy as np

from lpm_models.data.synth import face_geometry as fg

CONTROL_NAMES = ("jaw_open", "smile", "blink", "brow_raise")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(points: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((points - centre) ** 2).sum(axis=1)
    return np.exp(-d2 / (2.0 * sigma * sigma))


def _seam_y(face: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """y of the closed-mouth seam (mid inner-lip line) at each x, flat beyond the corners."""
    upper = face[list(fg.LIPS_INNER_UPPER)]
    lower = face[list(fg.LIPS_INNER_LOWER)]
    mid = (upper + lower) / 2.0
    order = np.argsort(mid[:, 0])
    return np.interp(xs, mid[order, 0], mid[order, 1])


def measures(face: np.ndarray) -> dict[str, float]:
    """Scale measures of a face: eye distance, mouth width, face width and height (pixels)."""
    right, left = fg.eye_centres(face)
    return {
        "iod": float(np.linalg.norm(left - right)),
        "mouth_w": float(np.linalg.norm(face[291, :2] - face[61, :2])),
        "face_w": float(abs(face[fg.CHEEK_LEFT, 0] - face[fg.CHEEK_RIGHT, 0])),
        "face_h": float(face[fg.CHIN, 1] - face[fg.FOREHEAD, 1]),
        "centre_x": float(face[list(fg.MIDLINE), 0].mean()),
    }


def jaw_basis(face: np.ndarray) -> np.ndarray:
    """Mouth opening by a jaw drop: lower lip, chin and jaw move down, corners follow half-way."""
    m = measures(face)
    mw, amp = m["mouth_w"], 0.4 * m["mouth_w"]
    xy = face[:, :2]
    seam = _seam_y(face, xy[:, 0])
    chin_y = float(face[fg.CHIN, 1])
    below = xy[:, 1] - seam
    w_low = _smoothstep((below + 0.02 * mw) / (0.22 * mw))
    lateral = np.abs(xy[:, 0] - m["centre_x"]) / (0.5 * m["face_w"])
    w_lat = np.clip(1.0 - 0.6 * lateral**2, 0.25, 1.0)
    w_dist = 1.0 + 0.15 * np.clip(below / max(chin_y - float(seam.mean()), 1.0), 0.0, 1.0)
    dy = amp * w_low * w_lat * w_dist
    dy[list(fg.LIPS_INNER_LOWER)] = amp
    dy[list(fg.LIPS_INNER_UPPER)] = -0.1 * amp
    dy[list(fg.LIPS_OUTER_UPPER)] = np.minimum(dy[list(fg.LIPS_OUTER_UPPER)], -0.05 * amp)
    basis = np.zeros_like(xy, dtype=np.float64)
    basis[:, 1] = dy
    for corner, inner in ((61, 78), (291, 308)):
        w = _gauss(xy, xy[corner], 0.12 * mw)
        inward = np.sign(m["centre_x"] - xy[corner, 0]) * 0.06 * mw
        basis[:, 0] += w * inward
        basis[:, 1] = basis[:, 1] * (1.0 - w) + w * 0.4 * amp
        basis[inner] = (inward, 0.4 * amp)
    return basis


def smile_basis(face: np.ndarray) -> np.ndarray:
    """Mouth corners out and up, cheeks lifted, lower lids squeezed slightly."""
    m = measures(face)
    mw, iod = m["mouth_w"], m["iod"]
    xy = face[:, :2]
    basis = np.zeros_like(xy, dtype=np.float64)
    for corner in fg.MOUTH_CORNERS:
        w = _gauss(xy, xy[corner], 0.3 * mw)
        out = np.sign(xy[corner, 0] - m["centre_x"])
        basis[:, 0] += w * out * 0.13 * mw
        basis[:, 1] -= w * 0.11 * mw
    right, left = fg.eye_centres(face)
    for eye, lower in ((right, fg.EYE_RIGHT_LOWER), (left, fg.EYE_LEFT_LOWER)):
        apple = eye + np.array([0.0, 0.6 * iod])
        basis[:, 1] -= _gauss(xy, apple, 0.3 * iod) * 0.05 * iod
        basis[list(lower[1:-1]), 1] -= 0.03 * iod
    return basis


def blink_basis(face: np.ndarray) -> np.ndarray:
    """Upper lids close onto the (slightly raised) lower lids; lid skin below the brows follows."""
    xy = face[:, :2]
    basis = np.zeros_like(xy, dtype=np.float64)
    eyes = ((fg.EYE_RIGHT_UPPER, fg.EYE_RIGHT_LOWER, fg.BROW_RIGHT),
            (fg.EYE_LEFT_UPPER, fg.EYE_LEFT_LOWER, fg.BROW_LEFT))
    for upper, lower, brow in eyes:
        up, lo = xy[list(upper)], xy[list(lower)]
        order = np.argsort(lo[:, 0])
        lo_y = np.interp(up[:, 0], lo[order, 0], lo[order, 1])
        up_order = np.argsort(up[:, 0])
        gap = lo_y - up[:, 1]
        x0, x1 = float(up[:, 0].min()), float(up[:, 0].max())
        brow_y = float(xy[list(brow), 1].mean())
        lid_y = np.interp(xy[:, 0], up[up_order, 0], up[up_order, 1])
        gap_x = np.interp(xy[:, 0], up[up_order, 0], gap[up_order])
        inside_x = (xy[:, 0] > x0) & (xy[:, 0] < x1)
        above = (xy[:, 1] < lid_y) & (xy[:, 1] > brow_y)
        t = np.clip((xy[:, 1] - brow_y) / np.maximum(lid_y - brow_y, 1.0), 0.0, 1.0)
        sel = inside_x & above
        basis[sel, 1] = 0.9 * gap_x[sel] * t[sel] ** 2 * 0.6
        basis[list(upper[1:-1]), 1] = 0.9 * gap[1:-1]
        lo_gap = np.interp(lo[:, 0], up[up_order, 0], gap[up_order])
        basis[list(lower[1:-1]), 1] = -0.1 * lo_gap[1:-1]
    return basis


def brow_basis(face: np.ndarray) -> np.ndarray:
    """Brows up; forehead follows with decay, upper-lid skin stretches."""
    m = measures(face)
    iod = m["iod"]
    lift = 0.16 * iod
    xy = face[:, :2]
    basis = np.zeros_like(xy, dtype=np.float64)
    eyes = ((fg.EYE_RIGHT_UPPER, fg.BROW_RIGHT), (fg.EYE_LEFT_UPPER, fg.BROW_LEFT))
    for upper, brow in eyes:
        bx = xy[list(brow), 0]
        x0, x1 = float(bx.min()) - 0.1 * iod, float(bx.max()) + 0.1 * iod
        brow_y = float(xy[list(brow), 1].mean())
        lid_y = float(xy[list(upper), 1].mean())
        in_x = (xy[:, 0] > x0) & (xy[:, 0] < x1)
        fade_x = _smoothstep(np.minimum(xy[:, 0] - x0, x1 - xy[:, 0]) / (0.15 * iod))
        between = (xy[:, 1] >= brow_y) & (xy[:, 1] < lid_y)
        t_between = np.clip((lid_y - xy[:, 1]) / max(lid_y - brow_y, 1.0), 0.0, 1.0)
        above = xy[:, 1] < brow_y
        t_above = np.exp(-(brow_y - xy[:, 1]) / (0.8 * iod))
        w = np.where(between, t_between, 0.0) + np.where(above, np.maximum(t_above, 0.3), 0.0)
        basis[:, 1] = np.minimum(basis[:, 1], -lift * w * fade_x * in_x)
        basis[list(brow), 1] = -lift
        basis[list(upper[1:-1]), 1] = -0.1 * lift
    return basis


def expression_bases(face: np.ndarray) -> dict[str, np.ndarray]:
    """All four bases for a neutral face; face: (468, 2+) pixel points."""
    face2 = np.asarray(face[:, :2], dtype=np.float64)
    return {
        "jaw_open": jaw_basis(face2),
        "smile": smile_basis(face2),
        "blink": blink_basis(face2),
        "brow_raise": brow_basis(face2),
    }
