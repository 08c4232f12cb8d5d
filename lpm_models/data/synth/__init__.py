"""Synthetic conversation corpus: face identities and rigs, scripts, speech, composition.

Submodules are imported explicitly (``from lpm_models.data.synth.identities import IdentityBank``);
this package imports nothing heavy on its own.
"""
