"""Names with '/' made legal keys of a written table, the original names kept in the table, for the writer
(:func:`fmscope.omics.store.write_result`).

Cell types ('L2/3 IT', 'CD4+/CD45RA+/CD25- Naive T') and genes ('KRT6A/B/C': CosMx multi-gene targets) hold '/'
and spaces. Where such a name becomes a key of the written file, the write fails or nests:

- a SpatialData store: spatialdata (``validate_table_attr_keys``, on write) refuses a table whose obs / var
  columns or obsm / obsp / varm / varp / layers / top-level uns keys hold anything but letters, digits, '_', '-'
  and '.', start with '__', or repeat another ignoring case; zarr refuses '/' in any other key ("Forward
  slashes are not allowed in keys": the columns of an obsm DataFrame, uns keys below the top);
- an .h5ad: HDF5 takes '/' in any key for a path (uns['a/b'] is written as uns['a']['b']; obsm / layers names
  fail; a column '/x' is written at the file's root, and the file no longer reads).

Values (categories, var_names, lists of names) may hold '/' in both.

:func:`legal_keys` renames each such key (in a store the refused characters -> '_', in an .h5ad '/' -> '_'; a
number added when the name is taken) on a copy of the table, and keeps what was renamed in
``uns['fmscope']['renamed_keys']`` as three lists of the same length:
``where`` (e.g. ``obsm['fmscope_proportions'] columns``), ``key`` (the name written) and ``name`` (the
original), so the original names can be put back; the note returned says so.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

RENAMED = "renamed_keys"


def _valid(name: str) -> bool:
    """spatialdata's rule for a table key (``check_valid_name``)."""
    return (
        bool(name)
        and name not in (".", "..")
        and not name.startswith("__")
        and all(c.isalnum() or c in "_-." for c in name)
    )


def _legal(name: str, strict: bool) -> str:
    """``name`` made legal: '/' -> '_'; ``strict`` (spatialdata's table keys): every refused character -> '_'."""
    if not strict:
        return name.replace("/", "_")
    new = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    new = "_" + new.lstrip("_") if new.startswith("__") else new
    return new if new not in ("", ".", "..") else "_"


def _mapping(names, where: str, strict: bool, renamed: list[tuple[str, str, str]]) -> dict[str, str]:
    """Old -> new for the names the file cannot hold (``strict``: spatialdata's rule, unique ignoring case; else
    '/'), recording each as (where, new, old) in ``renamed``."""
    names = [str(name) for name in names]
    fold = str.lower if strict else str
    bad = [n for n in names if not _valid(n)] if strict else [n for n in names if "/" in n]
    taken, mapping = {fold(n) for n in names if n not in bad}, {}
    for name in bad:
        new = _legal(name, strict)
        candidate, number = new, 2
        while fold(candidate) in taken:
            candidate, number = f"{new}_{number}", number + 1
        mapping[name] = candidate
        taken.add(fold(candidate))
        renamed.append((where, candidate, name))
    return mapping


def _uns(mapping: dict, where: str, strict: bool, renamed: list) -> dict:
    """``mapping`` (uns or a dict in it) with its keys, and its dicts' keys ('/' only below the top), legal."""
    names = _mapping(list(mapping.keys()), where, strict, renamed)
    out = {}
    for key, value in mapping.items():
        new = names.get(str(key), key)
        out[new] = _uns(value, f"{where}['{new}']", False, renamed) if isinstance(value, dict) else value
    return out


def _rename(table: ad.AnnData, store: bool, renamed: list) -> None:
    """Rename the keys of ``table`` in place (``store``: a SpatialData store; else an .h5ad), recording them."""
    for axis in ("obs", "var"):
        frame = getattr(table, axis)
        mapping = _mapping(frame.columns, f"{axis} columns", store, renamed)
        if mapping:
            setattr(table, axis, frame.rename(columns=mapping))
    for axis in ("obsm", "varm"):
        arrays = getattr(table, axis)
        for key in list(arrays.keys()):
            if isinstance(arrays[key], pd.DataFrame):
                mapping = _mapping(arrays[key].columns, f"{axis}['{key}'] columns", False, renamed)
                if mapping:
                    arrays[key] = arrays[key].rename(columns=mapping)
    for axis in ("obsm", "varm", "layers", "obsp", "varp"):
        container = getattr(table, axis)
        for old, new in _mapping(list(container.keys()), axis, store, renamed).items():
            container[new] = container[old]
            del container[old]
    table.uns = _uns(dict(table.uns), "uns", store, renamed)


def _keys_only(table: ad.AnnData) -> ad.AnnData:
    """A table of ``table``'s keys without its data (to find what would be renamed without copying the data)."""
    empty = np.zeros((0, 0))
    light = ad.AnnData(
        obs=pd.DataFrame(columns=table.obs.columns, index=pd.Index([], dtype=str)),
        var=pd.DataFrame(columns=table.var.columns, index=pd.Index([], dtype=str)),
    )
    for axis in ("obsm", "varm"):
        for key, value in getattr(table, axis).items():
            index = getattr(light, "obs_names" if axis == "obsm" else "var_names")
            frame = pd.DataFrame(columns=value.columns, index=index) if isinstance(value, pd.DataFrame) else empty
            getattr(light, axis)[key] = frame
    for axis in ("layers", "obsp", "varp"):
        for key in getattr(table, axis).keys():
            getattr(light, axis)[key] = empty
    light.uns = table.uns
    return light


def legal_keys(table: ad.AnnData, store: bool) -> tuple[ad.AnnData, list[str]]:
    """``table`` (a copy when anything is renamed) with keys the file can hold (``store``: a SpatialData store's
    rules; else an .h5ad's), and the note saying what was renamed and where the original names are (empty when
    nothing was)."""
    renamed: list[tuple[str, str, str]] = []
    _rename(_keys_only(table), store, renamed)
    if not renamed:
        return table, []
    table, renamed = table.copy(), []
    _rename(table, store, renamed)
    fmscope = dict(table.uns.get("fmscope") or {})
    earlier = fmscope.get(RENAMED) or {}
    fmscope[RENAMED] = {
        part: [*map(str, earlier.get(part, [])), *(row[i] for row in renamed)]
        for i, part in enumerate(("where", "key", "name"))
    }
    table.uns["fmscope"] = fmscope
    examples = ", ".join(f"'{name}' -> '{key}'" for _, key, name in renamed[:3])
    return table, [
        f"{len(renamed)} name(s) the written file cannot hold as keys ({examples}; '/', and in a SpatialData store "
        f"any character but letters, digits, '_', '-', '.'): written with '_'; the original names are in "
        f"uns['fmscope']['{RENAMED}'] (where, key, name)."
    ]
