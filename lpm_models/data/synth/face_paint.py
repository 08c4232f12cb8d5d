"""Appearance edits painted onto a canonical portrait: skin tone, hair colour, lip tint,
beard, glasses and background. Every function takes the (S, S, 3) uint8 RGB image and its
(468, 2+) face points and returns a new image; masks are feathered so edits blend in.
"""

from __future__ import annotations

import cv2
import numpy as np

from lpm_models.data.synth import face_expressions as fx
from lpm_models.data.synth import face_geometry as fg


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    k = int(2 * round(3 * sigma) + 1)
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), sigma)


def _poly(shape: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(p * 4).astype(np.int32) for p in polys], 255, cv2.LINE_AA, 2)
    return mask.astype(np.float32) / 255.0


def _blend(image: np.ndarray, other: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = np.clip(alpha, 0.0, 1.0)[..., None]
    out = image.astype(np.float32) * (1.0 - a) + other.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def face_mask(shape: tuple[int, int], points: np.ndarray, shrink: float = 0.0, sigma: float = 0.0) -> np.ndarray:
    """Face-oval mask in [0, 1], optionally shrunk towards the centre and feathered."""
    oval = points[list(fg.FACE_OVAL), :2]
    centre = oval.mean(axis=0)
    mask = _poly(shape, [centre + (1.0 - shrink) * (oval - centre)])
    return _feather(mask, sigma) if sigma > 0 else mask


def skin_mask(shape: tuple[int, int], points: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Face plus neck (below the jaw, down to the collar region) within the person mask."""
    m = fx.measures(points)
    jaw = points[[132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361], :2]
    neck_y = points[fg.CHIN, 1] + 0.45 * m["face_h"]
    left, right = jaw[0], jaw[-1]
    neck = np.vstack([jaw, [right[0] - 0.1 * m["face_w"], neck_y], [left[0] + 0.1 * m["face_w"], neck_y]])
    mask = np.maximum(face_mask(shape, points, shrink=-0.03), _poly(shape, [neck]) * np.clip(person * 1.5, 0, 1))
    lips_eyes = [points[list(fg.LIPS_OUTER_UPPER + fg.LIPS_OUTER_LOWER[::-1]), :2]]
    mask *= 1.0 - _poly(shape, lips_eyes)
    return _feather(mask, 0.012 * shape[0])


def shift_tone(image: np.ndarray, mask: np.ndarray, tone: tuple[float, float, float]) -> np.ndarray:
    """Shift L, a, b (OpenCV 8-bit LAB units) inside ``mask``."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab += np.asarray(tone, dtype=np.float32)[None, None, :]
    shifted = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return _blend(image, shifted, mask)


def recolour_hair(image: np.ndarray, points: np.ndarray, person: np.ndarray, hue: float, light: float) -> np.ndarray:
    """Rotate hue (degrees) and scale lightness of the hair: person pixels above the jaw outside the face."""
    h, w = image.shape[:2]
    m = fx.measures(points)
    ys = np.arange(h, dtype=np.float32)[:, None]
    above = np.clip((points[fg.CHIN, 1] - 0.2 * m["face_h"] - ys) / (0.1 * m["face_h"]), 0.0, 1.0)
    hair = np.clip(person * 1.4 - 0.2, 0.0, 1.0) * above * (1.0 - face_mask((h, w), points, shrink=-0.04, sigma=2.0))
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue * 256.0 / 360.0) % 256.0
    hsv[..., 2] *= light
    hsv[..., 1] *= 0.7 + 0.3 * min(light, 1.0)
    recoloured = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
    return _blend(image, recoloured, _feather(hair, 1.5))


def tint_lips(image: np.ndarray, points: np.ndarray, strength: float, rgb: tuple[int, int, int]) -> np.ndarray:
    """Blend the lips towards ``rgb`` keeping their shading."""
    lips = _poly(image.shape[:2], [points[list(fg.LIPS_OUTER_UPPER + fg.LIPS_OUTER_LOWER[::-1]), :2]])
    lum = image.astype(np.float32).mean(axis=2, keepdims=True) / 128.0
    target = np.clip(np.asarray(rgb, dtype=np.float32)[None, None, :] * lum, 0, 255)
    return _blend(image, target, _feather(lips, 1.0) * strength)


def paint_beard(image: np.ndarray, points: np.ndarray, style: str, rng: np.random.Generator,
                rgb: tuple[int, int, int]) -> np.ndarray:
    """Stubble, moustache, goatee or full beard as noisy hair colour over the lower face."""
    shape = image.shape[:2]
    p = points[:, :2]
    mouth = p[list(fg.LIPS_OUTER_UPPER + fg.LIPS_OUTER_LOWER[::-1])]
    above_lip = [61, 186, 92, 165, 167, 164, 393, 391, 322, 410, 291]
    moustache = np.vstack([p[above_lip], p[list(fg.LIPS_OUTER_UPPER[::-1])]])
    chin = [287, 422, 430, 394, 379, 378, 400, 377, 152, 148, 176, 149, 150, 169, 210, 202, 57]
    goatee = np.vstack([p[list(fg.LIPS_OUTER_LOWER)], p[chin]])
    jaw = p[[93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323]]
    cheeks = p[[323, 366, 425, 427, 411, 322, 164, 92, 187, 207, 205, 137, 93]]
    regions = {
        "moustache": [moustache], "goatee": [goatee, moustache],
        "full": [np.vstack([jaw, cheeks[1:-1]])], "stubble": [np.vstack([jaw, cheeks[1:-1]])],
    }
    if style not in regions:
        raise ValueError(f"unknown beard style {style!r}; expected one of {sorted(regions)}")
    mask = _poly(shape, regions[style]) * (1.0 - _poly(shape, [mouth]))
    mask = _feather(mask, 0.01 * shape[0] + 1.0)
    noise = rng.random(shape).astype(np.float32)
    grain = cv2.GaussianBlur(noise, (3, 3), 0.7)
    density = 0.35 if style == "stubble" else 0.85
    alpha = mask * np.clip(density + 0.6 * (grain - 0.5), 0.0, 1.0)
    hair = np.asarray(rgb, dtype=np.float32)[None, None, :] * (0.75 + 0.5 * noise[..., None])
    return _blend(image, np.clip(hair, 0, 255), 0.9 * alpha)


def paint_brows(image: np.ndarray, points: np.ndarray, thickness: float, strength: float,
                rgb: tuple[int, int, int]) -> np.ndarray:
    """Thicker (``thickness`` > 1) or thinner brows painted in ``rgb`` at ``strength`` opacity."""
    polys = []
    for brow in (fg.BROW_RIGHT, fg.BROW_LEFT):
        ring = points[list(brow[:5] + brow[5:][::-1]), :2]
        centre = ring.mean(axis=0)
        polys.append(centre + (ring - centre) * np.array([1.0 + 0.1 * (thickness - 1.0), thickness]))
    mask = _feather(_poly(image.shape[:2], polys), 0.8)
    lum = image.astype(np.float32).mean(axis=2, keepdims=True) / 160.0
    hair = np.clip(np.asarray(rgb, dtype=np.float32)[None, None, :] * (0.6 + 0.4 * lum), 0, 255)
    return _blend(image, hair, mask * strength)


def draw_glasses(image: np.ndarray, points: np.ndarray, style: str, thickness: int,
                 rgb: tuple[int, int, int]) -> np.ndarray:
    """Round or rectangular frames over the eyes, with a bridge and temples towards the ears."""
    out = image.copy()
    m = fx.measures(points)
    iod = m["iod"]
    right, left = fg.eye_centres(points)
    half_w, half_h = 0.36 * iod, (0.26 if style == "round" else 0.22) * iod
    colour = tuple(int(c) for c in rgb)
    for centre in (right, left):
        c = centre + np.array([0.0, 0.04 * iod])
        if style == "round":
            cv2.ellipse(out, (int(c[0] * 4), int(c[1] * 4)), (int(half_w * 4), int(half_h * 4)), 0, 0, 360,
                        colour, thickness, cv2.LINE_AA, 2)
        else:
            box = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w * 0.92, half_h], [-half_w * 0.92, half_h]])
            cv2.polylines(out, [np.round((c + box) * 4).astype(np.int32)], True, colour, thickness, cv2.LINE_AA, 2)
    y = (right[1] + left[1]) / 2.0 - 0.02 * iod
    bridge = np.array([[right[0] + half_w, y], [(right[0] + left[0]) / 2.0, y - 0.05 * iod], [left[0] - half_w, y]])
    cv2.polylines(out, [np.round(bridge * 4).astype(np.int32)], False, colour, thickness, cv2.LINE_AA, 2)
    for eye, ear, sign in ((right, points[fg.CHEEK_RIGHT], -1.0), (left, points[fg.CHEEK_LEFT], 1.0)):
        start = eye + np.array([sign * half_w, -0.05 * iod])
        end = np.array([ear[0] - sign * 0.02 * iod, start[1] + 0.05 * iod])
        cv2.line(out, tuple(np.round(start * 4).astype(int)), tuple(np.round(end * 4).astype(int)), colour,
                 max(1, thickness - 1), cv2.LINE_AA, 2)
    return out


def replace_background(image: np.ndarray, person: np.ndarray, top: tuple[int, int, int],
                       bottom: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Vertical gradient with a few soft blobs wherever the person mask is low."""
    h, w = image.shape[:2]
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    bg = np.asarray(top, np.float32) * (1.0 - t) + np.asarray(bottom, np.float32) * t
    bg = np.repeat(bg, w, axis=1)
    blobs = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(blobs, centre, int(rng.uniform(0.08, 0.25) * w), float(rng.uniform(-0.25, 0.25)), -1)
    blobs = cv2.GaussianBlur(blobs, (0, 0), 0.06 * w)
    bg = np.clip(bg * (1.0 + blobs[..., None]), 0, 255)
    alpha = _feather(np.clip((0.55 - person) * 4.0, 0.0, 1.0), 1.2)
    return _blend(image, bg, alpha)
