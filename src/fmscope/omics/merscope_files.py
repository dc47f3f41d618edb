"""The MERSCOPE folder's two cell tables joined by cell id, for the slide reader (:mod:`fmscope.omics.io`).

A MERSCOPE (or VPT re-segmentation) output has the counts ``cell_by_gene.csv`` (first column ``cell``) and the
centres ``cell_metadata.csv`` (first column ``EntityID``): the same ids, but not always in the same order (VPT
writes them in its own order: spatialdata#385, SpaceTrooper#46) nor always the same cells (one file filtered).
spatialdata-io puts the two side by side by position and refuses another order ("Index of obs must match index of
X"). Here they are joined by the id instead: :func:`joined_tables` gives spatialdata-io copies of the two files
whose rows are the cells both hold, in the counts' order, each cell with its own centre (the rows' text as the
user's files hold it), so no cell is ever placed at another's centre.

Rule: the same cells in another order are joined with a note; cells in one file only are left out with a note
naming how many and examples (as the Visium reader leaves out counts without a position: one file filtered, e.g.
low-count cells dropped from the counts, is a common edit, and a cell without a centre cannot be placed); no cell
in common, or an id listed twice in one file, is refused naming both files.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fmscope.errors import FmscopeError

COUNTS, METADATA, BOUNDARIES = "cell_by_gene.csv", "cell_metadata.csv", "cell_boundaries.parquet"


def _ids(path: Path) -> pd.Index:
    """The first column (the cell id) of a MERSCOPE table, as text (38-digit EntityIDs stay exact)."""
    return pd.Index(pd.read_csv(path, usecols=[0], dtype=str).iloc[:, 0].str.strip())


def _examples(ids, limit: int = 3) -> str:
    return ", ".join(map(str, list(ids)[:limit]))


def _repeated(ids: pd.Index, path: Path) -> None:
    """Refuse a table listing a cell id twice (two runs' tables concatenated)."""
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        raise FmscopeError(
            f"{path} lists {len(repeated)} cell id(s) more than once (e.g. {_examples(repeated)}); each cell's "
            "counts and centre must be found by its id.",
            "Give the files of one MERSCOPE / VPT run, each cell once.",
        )


@dataclass
class Joined:
    """What to read: ``vpt_outputs`` for ``spatialdata_io.merscope`` (None: the folder's files as they are),
    the notes to say, and the temporary folder holding the joined copies (removed by :meth:`close`)."""

    vpt_outputs: dict[str, Path] | None
    notices: list[str]
    _folder: tempfile.TemporaryDirectory | None = None

    def close(self) -> None:
        """Remove the joined copies (spatialdata-io reads both tables eagerly, so once it has returned)."""
        if self._folder is not None:
            self._folder.cleanup()


def joined_tables(folder: Path) -> Joined:
    """The counts and centres of ``folder`` (a MERSCOPE output) joined by cell id.

    Same ids in the same order: nothing to do (``vpt_outputs`` None). Otherwise copies of the CSVs, rows
    restricted to the ids both hold, in ``cell_by_gene.csv``'s order (the counts copied only when they hold cells
    the centres lack), written to a temporary folder (the user's
    files untouched), with a notice. Raises FmscopeError when the files share no cell or repeat an id."""
    counts_path, metadata_path = folder / COUNTS, folder / METADATA
    if not metadata_path.is_file():
        return Joined(None, [])  # spatialdata-io says what it reads without it
    counts_ids, metadata_ids = _ids(counts_path), _ids(metadata_path)
    _repeated(counts_ids, counts_path)
    _repeated(metadata_ids, metadata_path)
    if counts_ids.equals(metadata_ids):
        return Joined(None, [])
    common = counts_ids[counts_ids.isin(metadata_ids)]
    counts_only = counts_ids[~counts_ids.isin(metadata_ids)]
    metadata_only = metadata_ids[~metadata_ids.isin(counts_ids)]
    if common.empty:
        raise FmscopeError(
            f"{counts_path.name} and {metadata_path.name} in {folder} share no cell id ({len(counts_ids)} cells, "
            f"e.g. {_examples(counts_ids)}; {len(metadata_ids)} cells, e.g. {_examples(metadata_ids)}): they are "
            "not the tables of one segmentation.",
            "Give the cell_by_gene.csv and cell_metadata.csv written together by one MERSCOPE / VPT run.",
        )
    notices = []
    if counts_only.empty and metadata_only.empty:
        notices.append(
            f"{metadata_path.name} lists the cells of {counts_path.name} in another order: joined by cell id "
            "(each cell with its own centre)."
        )
    else:
        left = []
        if len(counts_only):
            left.append(
                f"{len(counts_only)} cell(s) of {counts_path.name} have no centre in {metadata_path.name} "
                f"(e.g. {_examples(counts_only)})"
            )
        if len(metadata_only):
            left.append(
                f"{len(metadata_only)} cell(s) of {metadata_path.name} have no counts in {counts_path.name} "
                f"(e.g. {_examples(metadata_only)})"
            )
        notices.append(
            f"{'; '.join(left)}: left out; the {len(common)} cells of both joined by cell id (each cell with its "
            "own centre)."
        )
    temporary = tempfile.TemporaryDirectory(prefix="fmscope_merscope_")
    paths = {COUNTS: counts_path}  # holding only cells of both, in its own order: read as it is (no copy)
    for name, path in ((COUNTS, counts_path), (METADATA, metadata_path)):
        if name == COUNTS and counts_only.empty:
            continue
        table = pd.read_csv(path, dtype=str, keep_default_na=False)  # the file's text, cell for cell
        key = table.columns[0]
        table = table.set_index(table[key].str.strip(), drop=False).loc[common]
        paths[name] = Path(temporary.name) / name
        table.to_csv(paths[name], index=False)
    vpt_outputs = {
        "cell_by_gene": paths[COUNTS],
        "cell_metadata": paths[METADATA],
        "cell_boundaries": folder / BOUNDARIES,
    }
    return Joined(vpt_outputs, notices, temporary)
