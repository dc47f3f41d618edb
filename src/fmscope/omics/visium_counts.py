"""The counts matrix of a Visium folder as people have it, and what is missing when there is none.

Space Ranger writes ``outs/filtered_feature_bc_matrix.h5`` and the same counts as a Matrix Market (MEX)
folder ``outs/filtered_feature_bc_matrix/`` (``matrix.mtx.gz``, ``barcodes.tsv.gz``, ``features.tsv.gz``;
Space Ranger 1.0 / Cell Ranger 2: ``genes.tsv``, uncompressed). 10x's dataset pages name their downloads
after the sample (``V1_Adult_Mouse_Brain_filtered_feature_bc_matrix.h5``, ``..._spatial.tar.gz`` that
unpacks to ``spatial/``; spatialdata-io#43, whose reader takes ``counts_file=`` for that reason), and GEO
series often ship only the MEX files, in their folder or flat with a sample prefix
(``GSM123_matrix.mtx.gz``; squidpy#802, seurat#7157, scanpy's ``read_10x_mtx(prefix=)``).

:func:`find_counts` takes the first of these kinds that the folder holds exactly once, in this order: the
Space Ranger ``.h5``, one sample-prefixed ``.h5``, one MEX folder (plain or prefixed), one set of flat MEX
files; then, where there are no filtered counts (GEO series that deposit only the raw matrix), the raw
matrix (``raw_feature_bc_matrix.h5`` or its MEX folder, plain or prefixed): every spot of the capture area,
of which the slide reader keeps the spots the positions file marks in tissue (``in_tissue`` = 1), the spots
Space Ranger's filtered matrix holds. Several candidates of the first kind found (two samples' files in one
folder) are refused, listing them; no candidate is refused naming what fmscope looked for and what the folder
holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from fmscope.errors import FmscopeError

H5 = "filtered_feature_bc_matrix.h5"
MEX = "filtered_feature_bc_matrix"
RAW_H5, RAW_MEX = "raw_feature_bc_matrix.h5", "raw_feature_bc_matrix"
MEX_FILES = ("matrix.mtx", "barcodes.tsv", "features.tsv")  # each also .gz; features.tsv also genes.tsv (MEX v2)
FLAT_MATRIX = re.compile(r"^(.*?)matrix\.mtx(\.gz)?$")
LOOKED_FOR = (
    f"{H5} (also with a sample prefix, e.g. V1_Adult_Mouse_Brain_{H5}) or a {MEX}/ folder of matrix.mtx.gz, "
    "barcodes.tsv.gz and features.tsv.gz (or those three files with a common prefix, as GEO ships them)"
)


@dataclass(frozen=True)
class CountsFile:
    """Where a Visium folder's counts are: an ``.h5`` file, or MEX files in ``path`` (a folder) named
    ``prefix + matrix.mtx[.gz]`` etc."""

    path: Path
    kind: str  # "h5" or "mex"
    prefix: str = ""
    raw: bool = False  # every spot of the capture area (raw_feature_bc_matrix), in tissue or not

    def describe(self, folder: Path) -> str:
        """The matrix file's path relative to ``folder``."""
        matrix = self.path if self.kind == "h5" else _mex_part(self.path, self.prefix, "matrix.mtx")
        return str(matrix.relative_to(folder))


def _mex_part(folder: Path, prefix: str, name: str) -> Path | None:
    stems = ("features.tsv", "genes.tsv") if name == "features.tsv" else (name,)
    return next(
        (folder / f"{prefix}{s}{gz}" for s in stems for gz in (".gz", "") if (folder / f"{prefix}{s}{gz}").is_file()),
        None,
    )


def _mex_folder(folder: Path, prefix: str = "") -> CountsFile:
    """The MEX files in ``folder`` (with ``prefix``); refuses naming the ones missing."""
    missing = [n for n in MEX_FILES if _mex_part(folder, prefix, n) is None]
    if missing:
        raise FmscopeError(
            f"{folder} holds a Matrix Market counts matrix without {', '.join(prefix + m + '(.gz)' for m in missing)}.",
            "Give the three files of the matrix together (matrix.mtx.gz, barcodes.tsv.gz, features.tsv.gz), "
            "as Space Ranger wrote them.",
        )
    return CountsFile(folder, "mex", prefix)


def _candidates(folder: Path) -> list[list[CountsFile]]:
    """The counts candidates in ``folder``, by kind, in the order they are preferred."""
    flat = []
    for path in sorted(folder.iterdir()):
        match = FLAT_MATRIX.match(path.name)
        if path.is_file() and match and not path.name.startswith("raw"):
            flat.append(match.group(1))
    filtered = _named(folder, H5, MEX, raw=False)
    return [
        *filtered[:3],
        [_mex_folder(folder, prefix) for prefix in dict.fromkeys(flat)],
        *_named(folder, RAW_H5, RAW_MEX, raw=True),
    ]


def _named(folder: Path, h5_name: str, mex_name: str, raw: bool) -> list[list[CountsFile]]:
    """Space Ranger's ``.h5`` named ``h5_name``, the same with a sample prefix, MEX folders named ``mex_name``
    (plain or prefixed): three kinds of candidates, in the order they are preferred."""
    plain = [CountsFile(folder / h5_name, "h5", raw=raw)] if (folder / h5_name).is_file() else []
    prefixed = [
        CountsFile(p, "h5", raw=raw) for p in sorted(folder.glob(f"*{h5_name}")) if p.name != h5_name and p.is_file()
    ]
    mex = [replace(_mex_folder(p), raw=raw) for p in sorted(folder.glob(f"*{mex_name}")) if p.is_dir()]
    return [plain, prefixed, mex]


def contents(folder: Path, limit: int = 12) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return shown or "nothing"


def find_counts(folder: Path) -> CountsFile:
    """The one counts matrix of a Visium folder (see the module docstring); FmscopeError when there are several
    of the preferred kind, or none (naming the files looked for and what ``folder`` holds)."""
    for found in _candidates(folder):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listed = ", ".join(c.describe(folder) for c in found)
            raise FmscopeError(
                f"{folder} holds {len(found)} counts matrices ({listed}); fmscope will not guess which sample "
                "is the slide.",
                "Give a folder holding one sample's counts matrix and its spatial/ folder.",
            )
    raise FmscopeError(
        f"{folder} has no Visium counts matrix: fmscope looks for {LOOKED_FOR}, else the raw matrix ({RAW_H5} or "
        f"its MEX folder); the folder holds {contents(folder)}.",
        f"Put the filtered counts Space Ranger wrote ({H5}, or 10x's 'Feature / barcode matrix (filtered)' "
        "download) beside spatial/.",
    )


def read_counts(counts: CountsFile) -> ad.AnnData:
    """Spots x genes counts (float32 CSR; gene symbols as names, Ensembl ids in ``var['gene_ids']``; names left
    as they are: duplicates are summed later, by the counts reader) of a :class:`CountsFile`; of a MEX matrix
    the Gene Expression features only, as ``scanpy.read_10x_h5`` reads the .h5."""
    import scanpy as sc

    if counts.kind == "h5":
        return sc.read_10x_h5(counts.path)
    return _read_mex(counts.path, counts.prefix)


def _read_mex(folder: Path, prefix: str) -> ad.AnnData:
    """MEX files read by their contents, gzipped or not (scanpy's ``read_10x_mtx`` expects features.tsv.gz or
    plain genes.tsv, and GEO series mix both): matrix genes x barcodes; features: id, name[, type]."""
    import scipy.io
    import scipy.sparse as sp

    def table(name: str) -> pd.DataFrame:
        return pd.read_csv(_mex_part(folder, prefix, name), sep="\t", header=None, dtype=str, compression="infer")

    matrix = sp.csr_matrix(scipy.io.mmread(_mex_part(folder, prefix, "matrix.mtx")).T, dtype=np.float32)
    barcodes, features = table("barcodes.tsv"), table("features.tsv")
    if matrix.shape != (len(barcodes), len(features)):
        raise FmscopeError(
            f"{folder}: the matrix is {matrix.shape[1]} genes x {matrix.shape[0]} barcodes, but the folder lists "
            f"{len(features)} features and {len(barcodes)} barcodes.",
            "Give the three files of one matrix, as Space Ranger wrote them.",
        )
    var = pd.DataFrame({"gene_ids": features[0].to_numpy()}, index=features[1 if features.shape[1] > 1 else 0])
    var.index.name = None
    if features.shape[1] > 2:
        var["feature_types"] = features[2].to_numpy()
    adata = ad.AnnData(X=matrix, obs=pd.DataFrame(index=barcodes[0].to_numpy()), var=var)
    if "feature_types" in var:
        adata = adata[:, var["feature_types"].to_numpy() == "Gene Expression"].copy()
    return adata


def notice(counts: CountsFile, folder: Path) -> list[str]:
    """A line saying where the counts were read from, when it is not Space Ranger's own ``.h5``."""
    if counts.kind == "h5" and counts.path.name == H5:
        return []
    if counts.raw:
        return [
            f"Counts read from {counts.describe(folder)} (no filtered matrix in {folder.name}): the raw matrix holds "
            "every spot of the capture area; only the spots the positions mark in tissue (in_tissue = 1) are kept, "
            "the spots Space Ranger's filtered matrix holds."
        ]
    return [f"Counts read from {counts.describe(folder)} (no {H5} in {folder.name})."]


def _suffix_free(barcode: str) -> str:
    """A barcode without Space Ranger's '-1' (GEM well) suffix and any sample prefix ('S1_', 'sample:')."""
    return re.split(r"[_:]", re.sub(r"-\d+$", "", barcode))[-1]


def barcodes_with_position(
    counts_barcodes: pd.Index, positions_barcodes: pd.Index, counts_name: str, positions_name: str, raw: bool = False
) -> tuple[pd.Index, list[str]]:
    """(the positions' barcodes that the counts matrix holds, in the positions' order; notices).

    Refuses (FmscopeError) when none is shared, naming both files, an example barcode of each and, when the
    barcodes agree once a '-1' suffix or a sample prefix is set aside (GEO / Seurat re-exports: zijianni/SpotClean#19,
    madhavmantri/chicken_heart#7), that difference. Filtered counts' barcodes without a position are left out,
    said in a notice (``raw``: the raw matrix holds every spot of the capture area; only spots in tissue are kept).
    """
    counts_barcodes = pd.Index(counts_barcodes.astype(str))
    positions_barcodes = pd.Index(positions_barcodes.astype(str))
    for barcodes, name in ((positions_barcodes, positions_name), (counts_barcodes, counts_name)):
        if not barcodes.is_unique:  # a barcode would join several spots: which position is whose?
            repeated = sorted(set(barcodes[barcodes.duplicated()]))
            raise FmscopeError(
                f"{name} names {len(repeated)} barcode(s) more than once (e.g. {repeated[0]}): each spot's "
                "position cannot be told.",
                "Give one sample's files as Space Ranger wrote them (one line per barcode).",
            )
    shared = positions_barcodes[positions_barcodes.isin(counts_barcodes)]
    if len(shared) == 0:
        same_without = {_suffix_free(b) for b in counts_barcodes} & {_suffix_free(b) for b in positions_barcodes}
        why = (
            " (they are the same spots once a '-1' suffix or a sample prefix is set aside: written differently)"
            if same_without
            else " (no spot in common: the two files are of different samples?)"
        )
        first_position = positions_barcodes[0] if len(positions_barcodes) else "none"
        first_count = counts_barcodes[0] if len(counts_barcodes) else "none"
        raise FmscopeError(
            f"No barcode of {positions_name} is in {counts_name}{why}: e.g. {first_position} in the positions vs "
            f"{first_count} in the counts.",
            "Write the barcodes of both files the same way, as Space Ranger does (e.g. AAACAAGTATCTCCCA-1), "
            "or give the sample's own positions file.",
        )
    notices = []
    without = int((~counts_barcodes.isin(positions_barcodes)).sum())
    if without and not raw:
        notices.append(
            f"{without} of the {len(counts_barcodes)} barcodes of {counts_name} have no position in {positions_name} "
            f"(e.g. {counts_barcodes[~counts_barcodes.isin(positions_barcodes)][0]}): left out."
        )
    return shared, notices
