"""Every output a command will write, checked before the command does any work.

A run that is refused only after minutes of work, or that has already replaced a file when
it fails, costs the user time or data. :func:`check_outputs` is called first by every CLI
command (imaging and omics alike) and refuses, with one message naming the problem and the
fix: an output that is an input (or inside one, or holding one), an output suffix the command
cannot write, two outputs with the same path, an output whose folder does not exist (fmscope
never creates the user's folders: a typo would silently start a new tree) or cannot be written
to (or is write-protected), an output path taken by a folder (or a file where a ``.zarr`` folder goes), and
any existing file, folder, store or ``.h5ad`` fmscope did not write, that changed since, or that is
write-protected (:mod:`fmscope.output_owner`; a store or ``.h5ad`` without fmscope's stamp is named as such,
:mod:`fmscope.omics.output_stamp`). A folder output (``FOLDER``, a ``.zarr``) may be new; the folder holding it
must exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fmscope import output_owner
from fmscope.atomic import file_suffix
from fmscope.errors import FmscopeError

SLIDE_SUFFIXES = (".zarr", ".h5ad")
PICTURE_SUFFIXES = (".png",)
HEAD_SUFFIXES = (".pt",)
LABEL_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".nii", ".nii.gz", ".nrrd", ".mha")  # lossless, one file
OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")  # one file each (.mhd / .nhdr write a second file)
FOLDER = ()  # a folder output (no suffix required)


@dataclass(frozen=True)
class Output:
    """One path a command writes: the option that names it, the path, the suffixes it may have
    (``FOLDER`` for a folder of results)."""

    option: str
    path: str | os.PathLike | None
    suffixes: Sequence[str]
    fills: bool = False  # a folder fmscope writes files into (batch -o, demo -o, a cache): never replaced whole


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_outputs(outputs: Iterable[Output], inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Raise :class:`FmscopeError` unless every output can be written without touching an input.

    ``outputs``: the paths the command will write (``path=None``: the option was not given).
    ``inputs``: the files and folders it reads (``None`` entries are skipped). Nothing is
    created or changed on disk.
    """
    given = [output for output in outputs if output.path is not None]
    sources = [Path(p).expanduser().resolve() for p in inputs if p is not None]
    seen: dict[Path, str] = {}
    for output in given:
        path = Path(output.path).expanduser()
        resolved = path.resolve()
        name = f"{output.option} {path}"
        for source in sources:
            if _inside(resolved, source) or _inside(source, resolved):
                relation = (
                    "is the input"
                    if resolved == source
                    else ("is inside the input" if _inside(resolved, source) else "holds the input")
                )
                raise FmscopeError(
                    f"{name} {relation} {source}; fmscope never writes over or into the user's data.",
                    f"Give {output.option} a new path outside the input.",
                )
        if resolved in seen:
            raise FmscopeError(
                f"{name} is also the path of {seen[resolved]}.", f"Give {output.option} a path of its own."
            )
        seen[resolved] = output.option
        suffix = file_suffix(path)
        if output.suffixes and suffix not in output.suffixes:
            raise FmscopeError(
                f"{name}: fmscope cannot write a '{suffix or 'no suffix'}' file here.",
                f"Use a name ending in {', '.join(output.suffixes)}.",
            )
        if path.exists():
            wants_folder = not output.suffixes or suffix == ".zarr"
            if path.is_dir() and not wants_folder:
                raise FmscopeError(f"{name} is an existing folder.", f"Give {output.option} a file name.")
            if wants_folder and not path.is_dir():
                raise FmscopeError(
                    f"{name} is an existing file, not a folder fmscope wrote.", f"Give {output.option} a new name."
                )
            if suffix == ".zarr" and not ((path / ".zgroup").exists() or (path / "zarr.json").exists()):
                raise FmscopeError(
                    f"{name} is an existing folder that is not a zarr store.",
                    f"Give {output.option} a new name (fmscope replaces only its own stores).",
                )
            if suffix in SLIDE_SUFFIXES and not output_owner.wrote(path):  # a store / .h5ad without the stamp:
                from fmscope.omics.output_stamp import require_stamp  # said so (its stamp never permits)

                require_stamp(path, output.option)
            if output.fills:  # a folder fmscope writes files into: it must not be write-protected
                if output_owner.write_protected(path, inside=False):
                    raise FmscopeError(
                        f"{name} is a write-protected folder; fmscope never writes into what the user protected.",
                        f"Give {output.option} another folder, or make it writable yourself (chmod u+w {path}).",
                    )
            else:  # any file or folder: only when fmscope wrote it, unchanged since, and not write-protected
                output_owner.require_replaceable(path, output.option)
        folder = path.parent
        if not folder.exists():
            raise FmscopeError(
                f"{name}: the folder {folder} does not exist.",
                f"Create it first (mkdir -p {folder}) or give {output.option} a path in an existing folder.",
            )
        protected = folder.is_dir() and output_owner.write_protected(folder, inside=False)  # chmod a-w: even root
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK) or protected:
            raise FmscopeError(
                f"{name}: cannot write in {folder} (not a folder, no permission, or write-protected).",
                f"Give {output.option} a path in a folder you can write to.",
            )
