"""Build sample_data/xenium_breast_outs/: the Xenium breast crop in the Xenium Onboard Analysis 1.0 layout.

Source: sample_data/xenium_breast_crop.zarr (PyPI bento-tools 2.1.4.post2, BSD-2; 10x Xenium human
breast, XOA 1.0 era: integer cell ids, pixel size 0.2125 um). Written as the files of an XOA 1.0
output folder, the layout spatialdata-io's ``xenium`` reader expects:

- ``experiment.xenium`` (pixel size, ``analysis_sw_version`` xenium-1.0.2),
- ``cells.parquet`` and ``cell_feature_matrix.h5`` (10x HDF5, features x cells) for the 27 cells
  whose whole boundary lies in the crop, over the whole panel (541 features: 313 genes, 228
  controls); counts are their transcripts with qv >= 20 (the 10x rule); controls typed as in
  Xenium panels (``Negative Control Probe`` incl. ``antisense_*``, ``... Codeword``, ``Blank Codeword``),
- ``cells.zarr.zip`` with ``cell_id`` and ``cell_summary`` (no segmentation masks: the crop has none),
- ``cell_boundaries.parquet`` / ``nucleus_boundaries.parquet`` (vertices per cell, rows contiguous),
- ``transcripts.parquet`` (all 11,773; those of cells cut by the crop get cell_id -1, unassigned;
  bento does not keep z, written as 0).

No morphology image exists for this crop. Usage: python scripts/make_xenium_sample.py
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import spatialdata
import zarr

ROOT = Path(__file__).resolve().parents[1] / "sample_data"
SOURCE = ROOT / "xenium_breast_crop.zarr"
OUT = ROOT / "xenium_breast_outs"
PIXEL_SIZE_UM = 0.2125
MIN_QV = 20.0
CONTROL_TYPES = {
    "NegControlProbe": "Negative Control Probe",
    "antisense_": "Negative Control Probe",
    "NegControlCodeword": "Negative Control Codeword",
    "BLANK": "Blank Codeword",
}


def feature_type(name: str) -> str:
    """The Xenium feature type of a panel entry, from its name."""
    return next((kind for prefix, kind in CONTROL_TYPES.items() if name.startswith(prefix)), "Gene Expression")


def vertices(shapes, cell_ids: list[int]) -> pd.DataFrame:
    """One row per polygon vertex (closed ring), rows of a cell contiguous, as in *_boundaries.parquet."""
    rows = []
    for cell_id in cell_ids:
        if str(cell_id) in shapes.index:
            xy = np.asarray(shapes.geometry.loc[str(cell_id)].exterior.coords, dtype=np.float32)
            rows.append(pd.DataFrame({"cell_id": np.int32(cell_id), "vertex_x": xy[:, 0], "vertex_y": xy[:, 1]}))
    return pd.concat(rows, ignore_index=True)


def write_matrix(path: Path, counts: sp.csr_matrix, barcodes: list[str], features: list[str]) -> None:
    """10x feature-barcode HDF5 (matrix/ stored as CSC of features x barcodes)."""
    matrix = counts.T.tocsc().astype(np.int32)  # features x cells, column per cell
    with h5py.File(path, "w") as file:
        group = file.create_group("matrix")
        group["barcodes"] = np.array(barcodes, dtype="S")
        group["data"] = matrix.data
        group["indices"] = matrix.indices.astype(np.int64)
        group["indptr"] = matrix.indptr.astype(np.int64)
        group["shape"] = np.array(matrix.shape, dtype=np.int32)
        table = group.create_group("features")
        table["_all_tag_keys"] = np.array([b"genome"])
        table["id"] = np.array(features, dtype="S")
        table["name"] = np.array(features, dtype="S")
        table["feature_type"] = np.array([feature_type(f) for f in features], dtype="S")
        table["genome"] = np.array([b"Unknown"] * len(features))


def write_cells_zarr(path: Path, cells: pd.DataFrame) -> None:
    """cells.zarr.zip of XOA 1.0: integer cell ids and the per-cell summary (bento keeps no nucleus
    centroids: the cell's stand in; z_level 0)."""
    summary = cells[["x_centroid", "y_centroid", "cell_area", "x_centroid", "y_centroid", "nucleus_area"]].to_numpy()
    summary = np.c_[summary, np.zeros(len(cells))]
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / "cells.zarr.zip"
        store = zarr.storage.ZipStore(staged, mode="w")
        group = zarr.open_group(store, mode="w", zarr_format=2)
        group.create_array("cell_id", data=cells["cell_id"].to_numpy(np.uint32))
        group.create_array(
            "cell_summary",
            data=summary.astype(np.float64),
            attributes={
                "column_names": [
                    "cell_centroid_x",
                    "cell_centroid_y",
                    "cell_area",
                    "nucleus_centroid_x",
                    "nucleus_centroid_y",
                    "nucleus_area",
                    "z_level",
                ]
            },
        )
        store.close()
        path.write_bytes(staged.read_bytes())


def main() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = spatialdata.read_zarr(SOURCE)
    cell_shapes, nucleus_shapes = source.shapes["cell_boundaries"], source.shapes["nucleus_boundaries"]
    circles = source.shapes["cell_circles"]
    transcripts = source.points["transcripts"].compute().reset_index(drop=True)
    cell_ids = sorted(int(i) for i in cell_shapes.index)
    OUT.mkdir(parents=True, exist_ok=True)

    assigned = transcripts["cell_id"].isin(cell_ids)
    transcripts_out = pd.DataFrame(
        {
            "transcript_id": transcripts["transcript_id"].to_numpy(np.uint64),
            "cell_id": np.where(assigned, transcripts["cell_id"], -1).astype(np.int32),
            "overlaps_nucleus": transcripts["overlaps_nucleus"].to_numpy(np.uint8),
            "feature_name": transcripts["feature_name"].astype(str).to_numpy(),
            "x_location": transcripts["x"].to_numpy(np.float32),
            "y_location": transcripts["y"].to_numpy(np.float32),
            "z_location": np.zeros(len(transcripts), np.float32),
            "qv": transcripts["qv"].to_numpy(np.float32),
        }
    )
    transcripts_out.to_parquet(OUT / "transcripts.parquet", index=False)

    features = sorted(map(str, transcripts["feature_name"].cat.categories))  # the whole panel, unseen genes too
    counted = transcripts_out[(transcripts_out["cell_id"] >= 0) & (transcripts_out["qv"] >= MIN_QV)]
    rows = pd.Index(cell_ids).get_indexer(counted["cell_id"])
    columns = pd.Index(features).get_indexer(counted["feature_name"])
    counts = sp.csr_matrix((np.ones(len(counted), np.int32), (rows, columns)), shape=(len(cell_ids), len(features)))
    write_matrix(OUT / "cell_feature_matrix.h5", counts, [str(i) for i in cell_ids], features)

    kinds = np.array([feature_type(f) for f in features])

    def per_cell(selected: np.ndarray) -> np.ndarray:
        return np.asarray(counts[:, selected].sum(axis=1)).ravel()

    centres = circles.geometry.loc[[str(i) for i in cell_ids]]
    nucleus_area = [
        float(nucleus_shapes.geometry.loc[str(i)].area) if str(i) in nucleus_shapes.index else 0.0 for i in cell_ids
    ]
    cells = pd.DataFrame(
        {
            "cell_id": np.array(cell_ids, dtype=np.int32),
            "x_centroid": centres.x.to_numpy(),
            "y_centroid": centres.y.to_numpy(),
            "transcript_counts": per_cell(kinds == "Gene Expression"),
            "control_probe_counts": per_cell(kinds == "Negative Control Probe"),
            "control_codeword_counts": per_cell(np.isin(kinds, ["Negative Control Codeword", "Blank Codeword"])),
            "total_counts": per_cell(np.ones(len(kinds), bool)),
            "cell_area": [float(cell_shapes.geometry.loc[str(i)].area) for i in cell_ids],
            "nucleus_area": nucleus_area,
        }
    )
    cells.to_parquet(OUT / "cells.parquet", index=False)
    write_cells_zarr(OUT / "cells.zarr.zip", cells)
    vertices(cell_shapes, cell_ids).to_parquet(OUT / "cell_boundaries.parquet", index=False)
    vertices(nucleus_shapes, cell_ids).to_parquet(OUT / "nucleus_boundaries.parquet", index=False)
    (OUT / "experiment.xenium").write_text(
        json.dumps(
            {
                "run_name": "fmscope sample (bento-tools Xenium breast crop)",
                "region_name": "crop",
                "panel_name": "Xenium human breast (as in bento-tools)",
                "pixel_size": PIXEL_SIZE_UM,
                "analysis_sw_version": "xenium-1.0.2",
                "num_cells": len(cell_ids),
                "transcripts_detected": len(transcripts_out),
            },
            indent=2,
        )
    )
    print(f"wrote {OUT}: {len(cell_ids)} cells x {len(features)} features, {len(transcripts_out)} transcripts")


if __name__ == "__main__":
    main()
