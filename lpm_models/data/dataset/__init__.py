"""The curated dataset: immutable WebDataset-style tar shards + a content-addressed manifest.

See ``FORMAT.md`` in this package for the on-disk format. Modules: :mod:`.codec` (member
encodings), :mod:`.shards` (sample record, writer, reader), :mod:`.manifest` (manifest,
profile, verification), :mod:`.assemble` (curation records -> samples), :mod:`.loader`
(torch ``IterableDataset`` of fixed-length windows).
"""
