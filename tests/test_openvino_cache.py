"""The OpenVINO cache folder stays within its size bound, least recently used entries first."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from fmscope.backends import openvino_cache
from fmscope.errors import FmscopeError


def _entry(root, name, megabytes, used_seconds_ago, now):
    entry = root / name
    entry.mkdir(parents=True)
    (entry / "model.bin").write_bytes(b"\0" * int(megabytes * 1e6))
    (entry / "last-used").touch()
    os.utime(entry / "last-used", (now - used_seconds_ago, now - used_seconds_ago))
    return entry


def test_prune_removes_least_recently_used_until_within_the_bound(tmp_path):
    now = time.time()
    oldest = _entry(tmp_path, "a", 1, 9000, now)
    older = _entry(tmp_path, "b", 1, 8000, now)
    newer = _entry(tmp_path, "c", 1, 7000, now)
    in_use = _entry(tmp_path, "d", 1, 10000, now)  # the oldest, but the caller is using it
    recent = _entry(tmp_path, "e", 1, 60, now)  # another process may be compiling from it
    stale_tmp = tmp_path / ".tmp-killed"
    stale_tmp.mkdir()
    os.utime(stale_tmp, (now - 7200, now - 7200))
    fresh_tmp = tmp_path / ".tmp-writing"
    fresh_tmp.mkdir()

    removed = openvino_cache.prune(tmp_path, keep=in_use, limit=int(2.5e6), now=now)

    assert removed == [oldest, older, newer]  # 5 MB -> 2 MB: three go, oldest first
    assert in_use.is_dir() and recent.is_dir()
    assert not stale_tmp.exists() and fresh_tmp.is_dir()
    assert openvino_cache.folder_bytes(tmp_path) == 2_000_000


def test_prune_keeps_everything_within_the_bound_and_tolerates_a_missing_folder(tmp_path):
    now = time.time()
    entries = [_entry(tmp_path, name, 1, 5000, now) for name in "ab"]
    assert openvino_cache.prune(tmp_path, keep=entries[0], limit=int(2e6), now=now) == []
    assert all(entry.is_dir() for entry in entries)
    assert openvino_cache.prune(tmp_path / "absent", keep=entries[0], limit=0, now=now) == []


@pytest.mark.parametrize("text", ["0", "-1", "four", "nan"])
def test_a_bad_limit_is_named_with_its_fix(monkeypatch, text):
    monkeypatch.setenv(openvino_cache.LIMIT_ENVIRONMENT_VARIABLE, text)
    with pytest.raises(FmscopeError, match=f"(?s){openvino_cache.LIMIT_ENVIRONMENT_VARIABLE}=.*Fix: set it to"):
        openvino_cache.limit_bytes()


def test_compiling_a_new_network_evicts_the_least_recently_used_one(tmp_path, monkeypatch):
    """Two real conversions under a bound that holds one entry: the second evicts the first (once it is not
    recent), marks itself used, and the first is rebuilt on demand with the same outputs."""
    from fmscope.backends.openvino_model import OpenVINOModule, module_identity

    monkeypatch.setenv("FMSCOPE_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    modules = [torch.nn.Conv2d(3, 4, 1).eval() for _ in range(2)]
    networks = [
        OpenVINOModule(module, (1, 3, 8, 8), module_identity(module, f"weights-{index}", (1, 3, 8, 8)))
        for index, module in enumerate(modules)
    ]
    batch = np.ones((1, 3, 8, 8), np.float32)
    first = networks[0](batch, 1)
    os.utime(networks[0].folder / "last-used", (time.time() - 3600, time.time() - 3600))
    one_entry = openvino_cache.folder_bytes(networks[0].folder)
    monkeypatch.setenv(openvino_cache.LIMIT_ENVIRONMENT_VARIABLE, str(1.5 * one_entry / 1e9))

    networks[1](batch, 1)

    assert not networks[0].folder.exists() and (networks[1].folder / "last-used").is_file()
    rebuilt = OpenVINOModule(modules[0], (1, 3, 8, 8), networks[0].identity)
    np.testing.assert_array_equal(rebuilt(batch, 2), first)  # 2 threads: not the process's compiled copy
    assert rebuilt.folder.is_dir()


def test_an_unwritable_cache_is_named_with_its_fixes_never_a_bug(tmp_path, monkeypatch):
    """NU9 (read-only home in a container): a cache folder that cannot be made (here: below a file, as a read-only
    file system refuses it, even to root) stops the OpenVINO conversion before it starts, naming the folder and
    the fixes (FMSCOPE_CACHE_DIR, --backend torch); the embedding cache's --cache-dir likewise."""
    from fmscope.backends.openvino_model import OpenVINOModule, module_identity
    from fmscope.imaging.cache import CachedEmbedding, EmbeddingCache
    from fmscope.imaging.models.input_transforms import InputGeometry

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("FMSCOPE_CACHE_DIR", str(tmp_path / "file" / "cache"))
    module = torch.nn.Conv2d(3, 4, 1).eval()
    network = OpenVINOModule(module, (1, 3, 8, 8), module_identity(module, "weights", (1, 3, 8, 8)))
    with pytest.raises(FmscopeError, match="cannot write the model converted for OpenVINO in .*file/cache") as error:
        network(np.ones((1, 3, 8, 8), np.float32), 1)
    assert "FMSCOPE_CACHE_DIR" in error.value.fix and "--backend torch" in error.value.fix
    cache = EmbeddingCache(directory=tmp_path / "file" / "embeddings")
    entry = CachedEmbedding(np.zeros((1, 2, 2), np.float32), InputGeometry((2, 2), (2, 2)))
    with pytest.raises(FmscopeError, match="cannot write image embeddings in .*file/embeddings") as error:
        cache.put({"k": "a"}, entry)
    assert "--cache-dir" in error.value.fix
