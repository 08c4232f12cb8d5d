"""Identity recipes: how one synthetic identity is made from normalised source faces.

A recipe morphs 1-3 donor faces (mesh-average shape, piecewise-affine warp of each donor onto
it, cross-dissolve inside the face oval over a primary donor that supplies hair, shoulders and
background), then applies proportion warps, skin-tone and hair-colour shifts, optional
mirroring, lip tint, beard, brows, glasses and a new background. Recipes are sampled from a seeded
generator and serialise to plain dicts, so an identity can be rebuilt exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from lpm_models.data.synth import face_expressions as fx
from lpm_models.data.synth import face_geometry as fg
from lpm_models.data.synth import face_paint as fp
from lpm_models.data.synth.face_sources import NormalisedFace, open_for_topology

# proportion warps: name -> largest magnitude (units in ``_warp_shape``)
WARP_RANGES: dict[str, float] = {
    "eye_spacing": 0.1, "eye_size": 0.2, "nose_width": 0.3, "nose_length": 0.11,
    "mouth_width": 0.2, "lip_thickness": 0.45, "brow_height": 0.11, "chin_length": 0.14,
    "jaw_width": 0.16, "face_width": 0.1, "face_height": 0.08,
}
BEARDS = ("stubble", "moustache", "goatee", "full")
HAIR_RGB = ((40, 30, 25), (70, 50, 35), (110, 85, 60), (150, 150, 150), (95, 55, 35))
FRAME_RGB = ((25, 25, 25), (180, 150, 80), (90, 55, 35), (140, 140, 150))
LIP_RGB = ((175, 60, 75), (150, 70, 80), (190, 90, 100))


@dataclass(frozen=True)
class Recipe:
    """Everything needed to rebuild one identity from the normalised sources."""

    primary: str
    donors: tuple[tuple[str, float], ...]
    mirror: bool
    warps: tuple[tuple[str, float], ...]
    tone: tuple[float, float, float]
    hair: tuple[float, float] | None
    lip: tuple[float, int] | None
    beard: tuple[str, int] | None
    brows: tuple[float, float, int] | None
    glasses: tuple[str, int, int] | None
    background: tuple[int, int, int, int, int, int] | None
    seed: int

    @property
    def sources(self) -> tuple[str, ...]:
        names = [self.primary] + [n for n, _ in self.donors if n != self.primary]
        return tuple(dict.fromkeys(names))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        def tup(v: object) -> object:
            return tuple(tup(x) for x in v) if isinstance(v, (list, tuple)) else v

        return cls(**{k: tup(v) for k, v in d.items()})


def sample_recipe(rng: np.random.Generator, sources: dict[str, bool]) -> Recipe:
    """Random recipe over ``sources`` (name -> whether it may frame the person)."""
    names = sorted(sources)
    framing = [n for n in names if sources[n]]
    if not framing:
        raise ValueError("at least one source must show a whole head and shoulders to frame identities")
    primary = framing[int(rng.integers(len(framing)))]
    others = [n for n in names if n != primary]
    k = int(rng.integers(0, min(2, len(others)) + 1))
    chosen = [primary] + [others[i] for i in rng.permutation(len(others))[:k]]
    weights = rng.dirichlet(np.full(len(chosen), 0.8))
    weights[0] = max(weights[0], 0.25)
    weights = weights / weights.sum()
    warps = tuple((name, float(rng.uniform(-1, 1) * r if rng.random() < 0.85 else 0.0))
                  for name, r in WARP_RANGES.items())
    lightness = float(np.clip(rng.normal(0, 14), -32, 26))
    # darker skin leans warmer; keep a/b (red, yellow) shifts small and mostly positive
    tone = (lightness, float(np.clip(rng.normal(1.0, 2.5), -3, 7)),
            float(np.clip(rng.normal(2.0 - 0.1 * lightness, 3.0), -3, 10)))
    hair = (float(rng.uniform(-22, 22)), float(rng.uniform(0.45, 1.35))) if rng.random() < 0.75 else None
    lip = (float(rng.uniform(0.15, 0.45)), int(rng.integers(len(LIP_RGB)))) if rng.random() < 0.35 else None
    beard = (BEARDS[int(rng.integers(len(BEARDS)))], int(rng.integers(len(HAIR_RGB)))) if rng.random() < 0.3 else None
    brows = ((float(rng.uniform(0.8, 1.7)), float(rng.uniform(0.45, 0.85)), int(rng.integers(len(HAIR_RGB))))
             if rng.random() < 0.6 else None)
    glasses = (("round", "rect")[int(rng.integers(2))], int(rng.integers(1, 4)),
               int(rng.integers(len(FRAME_RGB)))) if rng.random() < 0.3 else None
    background = _muted_pair(rng) if rng.random() < 0.7 else None
    return Recipe(primary=primary, donors=tuple((n, float(w)) for n, w in zip(chosen, weights)),
                  mirror=bool(rng.random() < 0.5), warps=warps, tone=tone, hair=hair, lip=lip, beard=beard,
                  brows=brows, glasses=glasses, background=background, seed=int(rng.integers(2**31 - 1)))


def _muted_pair(rng: np.random.Generator) -> tuple[int, int, int, int, int, int]:
    """Two related, desaturated backdrop colours (top, bottom) as six ints."""
    grey = rng.uniform(60, 200)
    hue = rng.uniform(-1, 1, size=3) * rng.uniform(10, 45)
    top = np.clip(grey + hue, 15, 240)
    bottom = np.clip(top * rng.uniform(0.55, 1.1) + rng.normal(0, 8, size=3), 15, 240)
    return tuple(int(v) for v in np.concatenate([top, bottom]))  # type: ignore[return-value]


def _region(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    d2 = ((points - centre) ** 2).sum(axis=1)
    return np.exp(-d2 / (2.0 * radius * radius))[:, None]


def _warp_shape(face: np.ndarray, warps: dict[str, float]) -> np.ndarray:
    """Proportion warps of (468, 3) face points; magnitudes as in WARP_RANGES."""
    out = face.copy()
    p = face[:, :2]
    m = fx.measures(face)
    iod, mw, fh, cx = m["iod"], m["mouth_w"], m["face_h"], m["centre_x"]
    right, left = fg.eye_centres(face)
    d = np.zeros_like(p)
    for eye, sign in ((right, -1.0), (left, 1.0)):
        w = _region(p, eye, 0.3 * iod)
        d[:, 0:1] += w * sign * warps.get("eye_spacing", 0.0) * iod
        d += w * (p - eye) * warps.get("eye_size", 0.0)
        brow = _region(p, eye - np.array([0.0, 0.35 * iod]), 0.2 * iod)
        d[:, 1:2] -= brow * warps.get("brow_height", 0.0) * iod
    nose_c = face[fg.NOSE_TIP, :2] - np.array([0.0, 0.1 * iod])
    nose = _region(p, nose_c, 0.25 * iod)
    d[:, 0:1] += nose * (p[:, 0:1] - cx) * warps.get("nose_width", 0.0)
    d[:, 1:2] += _region(p, face[fg.NOSE_TIP, :2], 0.3 * iod) * warps.get("nose_length", 0.0) * iod
    mouth_c = (face[13, :2] + face[14, :2]) / 2.0
    mouth = _region(p, mouth_c, 0.45 * mw)
    d[:, 0:1] += mouth * (p[:, 0:1] - mouth_c[0]) * warps.get("mouth_width", 0.0)
    lips = list(fg.LIPS_OUTER_UPPER + fg.LIPS_OUTER_LOWER)
    d[lips, 1] += (p[lips, 1] - mouth_c[1]) * warps.get("lip_thickness", 0.0)
    below = np.clip((p[:, 1] - mouth_c[1]) / max(face[fg.CHIN, 1] - mouth_c[1], 1.0), 0.0, 1.0)
    d[:, 1] += below * warps.get("chin_length", 0.0) * fh
    low = np.clip((p[:, 1] - face[fg.NOSE_TIP, 1]) / (0.5 * fh), 0.0, 1.0)
    d[:, 0] += low * (p[:, 0] - cx) * warps.get("jaw_width", 0.0)
    d[:, 0] += (p[:, 0] - cx) * warps.get("face_width", 0.0)
    eye_y = (right[1] + left[1]) / 2.0
    d[:, 1] += (p[:, 1] - eye_y) * warps.get("face_height", 0.0)
    out[:, :2] = p + d
    out[:, 2] = face[:, 2] * (1.0 + warps.get("face_width", 0.0))
    return out


def mirror_face(face: NormalisedFace, perm: np.ndarray) -> NormalisedFace:
    """The horizontally flipped face, with mesh indices keeping their meaning."""
    size = face.image.shape[1]
    return NormalisedFace(name=face.name, licence=face.licence, frames_person=face.frames_person,
                          image=np.ascontiguousarray(face.image[:, ::-1]),
                          points=fg.mirror_points(face.points, perm, size),
                          person=np.ascontiguousarray(face.person[:, ::-1]))


def _match_colour(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift ``image``'s mean LAB colour inside ``mask`` onto ``reference``'s."""
    w = mask > 0.5
    if not w.any():
        return image
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab += ref[w].mean(axis=0) - lab[w].mean(axis=0)
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _morph(recipe: Recipe, faces: dict[str, NormalisedFace], target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Primary warped onto ``target`` with the donors' blended faces dissolved in; + person mask."""
    primary = faces[recipe.primary]
    size = primary.image.shape[0]
    extra, _ = fg.scaffold(primary.points[:, :2], size)
    dst = np.vstack([target[:, :2], extra])
    topology = np.vstack([open_for_topology(target, 0.02 * size)[:, :2], extra])
    warper = fg.TriangleWarper(fg.triangulate(topology), (size, size))

    def warp(face: NormalisedFace, img: np.ndarray) -> np.ndarray:
        return warper.warp(img, np.vstack([face.points[:, :2], extra]), dst)

    base = warp(primary, primary.image)
    person = np.clip(warp(primary, primary.person), 0.0, 1.0)
    if len(recipe.donors) > 1:
        acc = np.zeros(base.shape, dtype=np.float32)
        for name, weight in recipe.donors:
            acc += weight * warp(faces[name], faces[name].image).astype(np.float32)
        blend = np.clip(acc + 0.5, 0, 255).astype(np.uint8)
        mask = fp.face_mask(base.shape[:2], target, shrink=0.05, sigma=0.015 * size)
        base = fp._blend(base, _match_colour(blend, base, mask), mask)
    return base, person


def compose(recipe: Recipe, faces: dict[str, NormalisedFace], perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neutral portrait (S, S, 3) uint8 and its (468, 3) face points for one recipe.

    faces: normalised sources by name (all of ``recipe.sources`` must be present);
    perm: the mesh's mirror permutation (``face_geometry.mirror_permutation``).
    """
    missing = [n for n in recipe.sources if n not in faces]
    if missing:
        raise KeyError(f"recipe needs face sources {missing}, which were not loaded")
    used = {n: faces[n] for n in recipe.sources}
    if recipe.mirror:
        used = {n: mirror_face(f, perm) for n, f in used.items()}
    shape = sum(w * used[n].points for n, w in recipe.donors)
    target = _warp_shape(np.asarray(shape), dict(recipe.warps))
    image, person = _morph(recipe, used, target)
    rng = np.random.default_rng(recipe.seed)
    image = fp.shift_tone(image, fp.skin_mask(image.shape[:2], target, person), recipe.tone)
    if recipe.hair is not None:
        image = fp.recolour_hair(image, target, person, *recipe.hair)
    if recipe.lip is not None:
        image = fp.tint_lips(image, target, recipe.lip[0], LIP_RGB[recipe.lip[1]])
    if recipe.beard is not None:
        image = fp.paint_beard(image, target, recipe.beard[0], rng, HAIR_RGB[recipe.beard[1]])
    if recipe.brows is not None:
        thickness, strength, colour = recipe.brows
        image = fp.paint_brows(image, target, thickness, strength, HAIR_RGB[colour])
    if recipe.glasses is not None:
        style, thickness, colour = recipe.glasses
        image = fp.draw_glasses(image, target, style, thickness, FRAME_RGB[colour])
    if recipe.background is not None:
        bg = recipe.background
        image = fp.replace_background(image, person, bg[:3], bg[3:], rng)
    return image, target
