"""fmscope's stamp on the stores and .h5ad files it writes, so it replaces only its own outputs.

A SpatialData store or an .h5ad at an output path may be the user's work (a store converted with
spatialdata-io, annotations added over weeks). fmscope writes a stamp into every store
(``attrs["fmscope_output"]``: the root zarr attributes) and every .h5ad (an HDF5 root attribute)
it writes, listing a store's elements. :func:`replaceable` refuses an existing output without the
stamp, and a stamped store that has gained elements since (added by the user with
``write_element``): replacing either would lose data fmscope did not make. A user who rewrites an
.h5ad with anndata drops the HDF5 attribute, so the file is theirs from then on; one who edits it in place
(h5py: a group or dataset added, removed or resized) keeps the attribute, so the stamp also lists the file's
HDF5 objects with their shapes, and a file that no longer matches that list is the user's too.
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


def h5_objects(handle) -> dict[str, list[int] | None]:
    """{HDF5 path: shape} of every dataset (an empty one: []) and group (None) in an open h5py file (what an
    .h5ad's stamp lists)."""
    import h5py

    found: dict[str, list[int] | None] = {}

    def visit(name: str, item) -> None:
        found[name] = list(item.shape or ()) if isinstance(item, h5py.Dataset) else None

    handle.visititems(visit)
    return found


def stamp_h5ad(path: Path) -> None:
    """Add the stamp (with the file's HDF5 objects) to an .h5ad fmscope has just written (before it is renamed
    into place)."""
    import h5py

    with h5py.File(path, "r+") as handle:
        handle.attrs[STAMP] = json.dumps({**stamp(), "objects": h5_objects(handle)})


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


def _elements_on_disk(path: Path) -> dict[str, list[str]]:
    return {
        group: sorted(p.name for p in (path / group).iterdir() if p.is_dir() and not p.name.startswith("."))
        for group in ELEMENT_GROUPS
        if (path / group).is_dir()
    }


def replaceable(path: Path, option: str) -> None:
    """Raise :class:`FmscopeError` unless the existing output ``path`` is one fmscope wrote and holds nothing else."""
    found = read_stamp(path)
    if found is None or found.get("written_by") != "fmscope":
        kind = "store" if path.is_dir() else "file"
        raise FmscopeError(
            f"{option} {path} already exists and was not written by fmscope (no fmscope stamp): "
            f"fmscope replaces only its own outputs, never the user's {kind}.",
            f"Give {option} a new name (or move {path.name} away yourself).",
        )
    if path.is_dir():
        listed = found.get("elements") or {}
        added = [
            f"{group}/{name}"
            for group, names in _elements_on_disk(path).items()
            for name in names
            if name not in listed.get(group, [])
        ]
        if added:
            raise FmscopeError(
                f"{option} {path} was written by fmscope but now also holds {', '.join(added[:5])}, "
                "which fmscope did not write; replacing it would lose them.",
                f"Give {option} a new name.",
            )
    elif "objects" in found:
        _check_h5ad_unchanged(path, found["objects"], option)


def _check_h5ad_unchanged(path: Path, listed: dict[str, list[int] | None], option: str) -> None:
    """Refuse an fmscope .h5ad edited in place since it was written (objects added, removed or resized)."""
    import h5py

    with h5py.File(path, "r") as handle:
        now = h5_objects(handle)
    changed = sorted(set(now) ^ set(listed)) + sorted(k for k in set(now) & set(listed) if now[k] != listed[k])
    if changed:
        raise FmscopeError(
            f"{option} {path} was written by fmscope but has been edited since ({', '.join(changed[:5])}"
            f"{' ...' if len(changed) > 5 else ''}); replacing it would lose those edits.",
            f"Give {option} a new name.",
        )
