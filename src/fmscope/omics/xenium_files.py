"""Which files of a Xenium output folder fmscope needs, and what it reads without the others.

Xenium outs are shared trimmed: ``transcripts.parquet`` (the largest file, GBs) is left out of GEO deposits
and collaborators' copies; XOA 1.x / 2.x write ``cells.csv.gz`` beside ``cells.parquet`` and R users keep the
CSVs (satijalab/seurat#9060, giotto-suite/Giotto#888, scverse/spatialdata-io#309, #362). spatialdata-io reads
every element it is asked for and stops with pandas' / dask's FileNotFoundError on the first file absent.

fmscope needs the counts (``cell_feature_matrix.h5``), the cells' table (``cells.parquet``: centroids in
microns) and ``cells.zarr.zip`` (cell ids; spatialdata-io opens it for any element); the transcripts and the
cell / nucleus outlines are read when present and left out, with a note, when not (:func:`reader_options`). A
needed file absent is refused naming it, what the folder holds and the fix (a CSV cell table: the one-line
conversion to parquet).
"""

from __future__ import annotations

from pathlib import Path

from fmscope.errors import FmscopeError
from fmscope.omics.visium_counts import contents

COUNTS = "cell_feature_matrix.h5"
CELLS = "cells.parquet"
CELL_IDS = "cells.zarr.zip"  # cell ids and segmentation: spatialdata-io opens it whatever it is asked to read
OPTIONAL = {  # spatialdata_io.xenium option: (file, what is left out without it)
    "transcripts": ("transcripts.parquet", "the transcripts (fmscope counts from cell_feature_matrix.h5)"),
    "cells_boundaries": ("cell_boundaries.parquet", "the cell outlines (cells drawn as circles)"),
    "nucleus_boundaries": ("nucleus_boundaries.parquet", "the nucleus outlines"),
}


def _require(folder: Path, name: str, fix: str) -> None:
    if not (folder / name).is_file():
        raise FmscopeError(
            f"{folder} is a Xenium output folder without {name}, which fmscope needs "
            f"({COUNTS}: the counts, {CELLS}: the cells' positions, {CELL_IDS}: their ids); "
            f"it holds {contents(folder)}.",
            fix,
        )


def reader_options(folder: Path) -> tuple[dict[str, bool], list[str]]:
    """``spatialdata_io.xenium`` options reading what ``folder`` holds, and notes naming what is left out.
    FmscopeError when the counts, the cells' table or ``cells.zarr.zip`` is absent."""
    matrix_elsewhere = [p.name for p in (folder / "cell_feature_matrix", folder / "cell_feature_matrix.zarr.zip")]
    matrix_elsewhere = [name for name in matrix_elsewhere if (folder / name).exists()]
    _require(
        folder,
        COUNTS,
        f"Copy {COUNTS} from the original Xenium output folder"
        + (f" (fmscope reads the .h5, not {' or '.join(matrix_elsewhere)})." if matrix_elsewhere else "."),
    )
    csv = next((name for name in ("cells.csv.gz", "cells.csv") if (folder / name).is_file()), None)
    _require(
        folder,
        CELLS,
        f'Write the cell table as parquet beside it: python -c "import pandas as pd; '
        f"pd.read_csv('{folder / csv}').to_parquet('{folder / CELLS}')\""
        if csv
        else f"Copy {CELLS} from the original Xenium output folder.",
    )
    _require(folder, CELL_IDS, f"Copy {CELL_IDS} from the original Xenium output folder.")
    options, notes = {}, []
    for option, (name, left_out) in OPTIONAL.items():
        options[option] = (folder / name).is_file()
        if not options[option]:
            notes.append(f"{folder.name} has no {name}: read without {left_out}.")
    return options, notes
