"""dlib 128-d face identity embeddings from the model files of ``face_recognition_models``.

The .dat files are located without importing that package (its ``__init__`` imports
``pkg_resources``). Same person: distance ~0.3; different people: > 0.6.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SAME_PERSON_THRESHOLD = 0.6


def model_file(name: str) -> Path:
    """Path of one model file shipped by the face_recognition_models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package face_recognition_models is not installed (pip install face-recognition-models)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall face-recognition-models")
    return path


class FaceEmbedder:
    """HOG face detector + 68-point shape predictor + ResNet identity encoder (dlib)."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))
        self._encoder = dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def detect(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """Largest HOG face box ``(x0, y0, x1, y1)`` in an RGB image, or None."""
        boxes = self._detector(np.ascontiguousarray(image), 1)
        if len(boxes) == 0:
            return None
        best = max(boxes, key=lambda r: r.width() * r.height())
        return best.left(), best.top(), best.right(), best.bottom()

    def embed(self, image: np.ndarray, box: tuple[float, float, float, float] | None = None) -> np.ndarray | None:
        """(128,) float64 descriptor of the face in ``box`` (detected if None); None if no face."""
        img = np.ascontiguousarray(image)
        if box is None:
            box = self.detect(img)
            if box is None:
                return None
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._shape(img, rect)
        return np.asarray(self._encoder.compute_face_descriptor(img, shape, 0), dtype=np.float64)


def pairwise_distances(embeddings: np.ndarray) -> np.ndarray:
    """(n, n) Euclidean distances between rows of an (n, 128) embedding matrix."""
    e = np.asarray(embeddings, dtype=np.float64)
    sq = (e * e).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * e @ e.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)
