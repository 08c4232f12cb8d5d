"""LPM-Bench metrics: one module per dimension over one shared perception pass per video.

- :mod:`.features`      the shared pass (face-mesh track, pose, mouth, dlib embeddings) -> FaceFeatures
- :mod:`.sync`          Audio-Video Sync (landmark mouth vs speech; SyncNet Sync-C/D with weights)
- :mod:`.identity`      Identity Consistency (dlib distance, drift per minute; ArcFace CSIM with weights)
- :mod:`.motion`        Motion Dynamics (Frechet distances, diversity, listening paired FD / rPCC)
- :mod:`.text_control`  Text Controllability (detected vs prompted actions: precision / recall / F1)
- :mod:`.visual`        PSNR / SSIM vs aligned ground truth; FID / FVD with weights
- :mod:`.evaluate`      ``evaluate_video``: every dimension for one case
- :mod:`.groundtruth`, :mod:`.validate`  known-answer cases from the synthetic corpus, degraded
  variants, and the validation report (``python -m quality.bench.validate``)

The benchmark itself (``lpm bench``):

- :mod:`.cases`, :mod:`.casebuild`, :mod:`.styles`, ``casesets/*.yaml``  versioned case sets built from
  held-out identities and conversations; :mod:`.leakage` proves they share nothing with training
- :mod:`.systems`  ground truth, still image, Base / Online LPM in process, Online LPM on Triton (the
  only place quality imports serving: ``serving.client``, lazily inside ``TritonSystem.generate``)
- :mod:`.runner`, :mod:`.scores`  per-case rows with one score in [0, 1] per dimension, tables
- :mod:`.compare`  paired bootstrap deltas and the regression verdict (the promotion gate's API)
- :mod:`.record`  MLflow runs (parent + one per system) and catalog rows
"""
