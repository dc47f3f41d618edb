"""What a finished item leaves under OUTDIR: its folder, written in one rename, with a record of its inputs.

``OUTDIR/items/<id>/`` holds the item's outputs and ``record.json`` (the inputs' signature, the
results-table row). The folder is built as ``OUTDIR/items/.<id>.<random>`` and renamed into place
(:func:`fmscope.atomic.atomic_write`), so a worker killed mid-item leaves only a hidden folder,
which the next run removes; an item's folder is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import fmscope
from fmscope import models
from fmscope.atomic import is_leftover
from fmscope.batch.manifest import BatchItem
from fmscope.file_hash import file_sha256

RECORD = "record.json"


def _hash_path(digest: "hashlib._Hash", path: Path) -> None:
    """Add a file's name and sha256 (memoised: :func:`fmscope.file_hash.file_sha256`), or those of each file of a
    folder (named relative to it), to ``digest``."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name} {file_sha256(file)}".encode())


def _model_paths(item: BatchItem) -> list[Path]:
    """The item's model files that are not part of fmscope: a model file (``model`` as a path, read relative to
    the working folder as the single commands read it) and the ``checkpoint`` (a file or a folder)."""
    paths = [Path(item.model)] if models.is_model_file(item.model) else []
    return paths + ([Path(item.checkpoint)] if item.checkpoint else [])


def signature(item: BatchItem) -> str:
    """sha256 of the item's input, prompt and truth files' contents, its settings, fmscope's version and the
    contents of its model file and checkpoint (re-trained in place under the same name: the item is redone)."""
    digest = hashlib.sha256(
        json.dumps({**item.options_record(), "version": fmscope.__version__}, sort_keys=True).encode()
    )
    for path in (item.input, item.prompt_file, item.truth):
        digest.update(b"|")
        if path is not None and path.exists():
            _hash_path(digest, path)
    for path in _model_paths(item):  # none for a catalogue model
        if path.exists():
            digest.update(b"|model ")
            _hash_path(digest, path)
    return digest.hexdigest()


def item_folder(outdir: Path, item: BatchItem) -> Path:
    return outdir / "items" / item.id


def finished_row(outdir: Path, item: BatchItem, item_signature: str) -> dict | None:
    """The results row of an item already finished with the same signature, else None."""
    record = item_folder(outdir, item) / RECORD
    try:
        stored = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return stored["row"] if stored.get("signature") == item_signature else None


def write_record(folder: Path, item_signature: str, row: dict) -> None:
    (folder / RECORD).write_text(json.dumps({"signature": item_signature, "row": row}, indent=1))


def remove_partial_folders(outdir: Path) -> list[Path]:
    """Delete the half-built item folders a killed worker left (named as :func:`fmscope.atomic.atomic_write`'s
    temporaries; other hidden entries, a user's ``.git``, stay); returns them."""
    items = outdir / "items"
    stale = [p for p in items.glob(".*") if is_leftover(p)] if items.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return stale


def relative_outputs(folder: Path, outdir: Path, names: list[str]) -> str:
    """The item's output files as paths relative to OUTDIR, ';'-separated (the table's column)."""
    return ";".join(os.path.join("items", folder.name, name) for name in names)
