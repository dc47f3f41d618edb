"""fmscope's stamp on the stores and .h5ad files it writes: who wrote them, with which version.

fmscope writes a stamp into every store (``attrs["fmscope_output"]``: the root zarr attributes, listing the
store's elements) and every .h5ad (an HDF5 root attribute) it writes. The stamp says who wrote a file; it does
not make the file replaceable: an edit in place (h5py, ``write_element``) keeps it, so whether an existing
output may be replaced is decided by fmscope's record of what it wrote (:mod:`fmscope.output_owner`), for
stores and .h5ad files as for every other output. :func:`require_stamp` only words the refusal of a store or
.h5ad that has no stamp at all (a spatialdata-io conversion, a file rewritten by the user with anndata).
"""

from __future__ import annotations

import json
from pathlib import Path

from fmscope.errors import FmscopeError

STAMP = "fmscope_output"
ELEMENT_GROUPS = ("images", "labels", "points", "shapes", "tables")


def stamp(elements: dict[str, list[str]] | None = None) -> dict:
    """The stamp's content: who wrote it, the version, and a store's elements by group."""
    from fmscope import __version__

    return {"written_by": "fmscope", "version": str(__version__), "elements": elements or {}}


def store_elements(sdata) -> dict[str, list[str]]:
    """A SpatialData object's element names by group (what the stamp lists)."""
    return {group: sorted(map(str, getattr(sdata, group).keys())) for group in ELEMENT_GROUPS}


def stamp_h5ad(path: Path) -> None:
    """Add the stamp to an .h5ad fmscope has just written (before it is renamed into place)."""
    import h5py

    with h5py.File(path, "r+") as handle:
        handle.attrs[STAMP] = json.dumps(stamp())


def _find(attributes) -> dict | None:
    """The stamp anywhere in a zarr group's attributes (spatialdata nests its attrs)."""
    if isinstance(attributes, dict):
        if isinstance(attributes.get(STAMP), dict):
            return attributes[STAMP]
        for value in attributes.values():
            found = _find(value)
            if found is not None:
                return found
    return None


def read_stamp(path: Path) -> dict | None:
    """The stamp of a store or .h5ad at ``path``, or None when it has none (or cannot be read)."""
    try:
        if path.is_dir():
            for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
                if (path / name).is_file():
                    metadata = json.loads((path / name).read_text())
                    found = _find(metadata.get(key, {}) if key else metadata)
                    if found is not None:
                        return found
            return None
        import h5py

        with h5py.File(path, "r") as handle:
            text = handle.attrs.get(STAMP)
        return json.loads(text) if text is not None else None
    except (OSError, ValueError):
        return None


def require_stamp(path: Path, option: str) -> None:
    """Raise :class:`FmscopeError` when the existing store or .h5ad ``path`` has no fmscope stamp (a user's file;
    whether a stamped one may be replaced is :func:`fmscope.output_owner.require_replaceable`'s to say)."""
    found = read_stamp(path)
    if found is None or found.get("written_by") != "fmscope":
        kind = "store" if path.is_dir() else "file"
        raise FmscopeError(
            f"{option} {path} already exists and was not written by fmscope (no fmscope stamp): "
            f"fmscope replaces only its own outputs, never the user's {kind}.",
            f"Give {option} a new name (or move {path.name} away yourself).",
        )
