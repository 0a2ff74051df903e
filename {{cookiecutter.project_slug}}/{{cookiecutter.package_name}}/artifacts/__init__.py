"""The only place that knows paths, URIs, formats and credentials."""

from .locks import LockLost, LockTimeout
from .store import ArtifactCorrupted, ArtifactRef, ArtifactStore, StoreUnusable, canonical_json, open_store

__all__ = [
    "ArtifactCorrupted",
    "ArtifactRef",
    "ArtifactStore",
    "LockLost",
    "LockTimeout",
    "StoreUnusable",
    "canonical_json",
    "open_store",
]
