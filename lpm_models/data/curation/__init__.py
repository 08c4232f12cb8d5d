"""Data curation stages: raw conversation video -> clips with labels, captions and references.

Every stage is a pure function over local files and the records in :mod:`.types`; the Dagster
assets in ``orchestration.assets.curation`` move data between the object store and these functions.
"""
