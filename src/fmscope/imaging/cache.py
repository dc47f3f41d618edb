"""Embedding cache: an in-memory LRU in front of an optional zarr store on disk.

An entry is keyed by a signature of everything that determines the embedding (pixels
after intensity mapping, crop, model, weights hash, input transform, fmscope version).
A disk entry whose stored signature or checksum does not match is treated as absent and
recomputed; writes go to a temporary folder that is renamed into place (atomic).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmscope.imaging.models.input_transforms import InputGeometry
from fmscope.user_cache import unwritable


@dataclass
class CachedEmbedding:
    """An image embedding and where its image sat in the model input."""

    embedding: np.ndarray  # (C, h, w) float32
    geometry: InputGeometry


def signature_key(signature: dict) -> str:
    """Stable hex key of a JSON-able signature."""
    return hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:40]


def _checksum(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class EmbeddingCache:
    """LRU of ``max_items`` embeddings in memory, backed by ``directory`` (zarr) when given."""

    def __init__(self, max_items: int = 64, directory: str | os.PathLike | None = None) -> None:
        self.max_items = max_items
        self.directory = Path(directory).expanduser() if directory is not None else None
        self._memory: OrderedDict[str, CachedEmbedding] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, signature: dict) -> CachedEmbedding | None:
        """The cached embedding for ``signature``, from memory or disk, else None."""
        key = signature_key(signature)
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        entry = self._read_disk(key, signature)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._remember(key, entry)
        return entry

    def contains(self, signature: dict) -> bool:
        """Whether ``signature`` is cached (in memory, or on disk unchecked); counts no hit or miss."""
        key = signature_key(signature)
        return key in self._memory or (self.directory is not None and self._path(key).exists())

    def put(self, signature: dict, entry: CachedEmbedding) -> None:
        """Store ``entry`` in memory and, when a directory is set, on disk."""
        key = signature_key(signature)
        self._remember(key, entry)
        if self.directory is not None:
            self._write_disk(key, signature, entry)

    def clear_memory(self) -> None:
        """Forget the in-memory entries (disk entries stay)."""
        self._memory.clear()

    def _remember(self, key: str, entry: CachedEmbedding) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.zarr"

    def _read_disk(self, key: str, signature: dict) -> CachedEmbedding | None:
        if self.directory is None or not self._path(key).exists():
            return None
        import zarr  # only for the disk store

        try:
            group = zarr.open_group(str(self._path(key)), mode="r")
            attrs = dict(group.attrs)
            embedding = np.asarray(group["embedding"][...], dtype=np.float32)
            if attrs.get("signature") != json.loads(json.dumps(signature)) or attrs.get("sha256") != _checksum(
                embedding
            ):
                raise ValueError("stale or corrupt cache entry")
            geometry = InputGeometry(tuple(attrs["original"]), tuple(attrs["resized"]))
        except Exception:  # any unreadable entry is recomputed and replaced, never used
            shutil.rmtree(self._path(key), ignore_errors=True)
            return None
        return CachedEmbedding(embedding, geometry)

    def _write_disk(self, key: str, signature: dict, entry: CachedEmbedding) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write_entry(key, signature, entry)
        except OSError as error:  # a read-only, another user's or a full folder
            raise unwritable(
                self.directory, error, "image embeddings", "Give --cache-dir a folder you can write, or leave it out."
            ) from None

    def _write_entry(self, key: str, signature: dict, entry: CachedEmbedding) -> None:
        import zarr

        temporary = self.directory / f".tmp-{uuid.uuid4().hex}.zarr"
        try:
            group = zarr.open_group(str(temporary), mode="w")
            group.create_array("embedding", data=entry.embedding, chunks=entry.embedding.shape)
            group.attrs.update(
                {
                    "signature": signature,
                    "sha256": _checksum(entry.embedding),
                    "original": list(entry.geometry.original),
                    "resized": list(entry.geometry.resized),
                }
            )
            target = self._path(key)
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(temporary, target)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
