"""Build sample_data/merfish_u2os_merscope/: real MERFISH cells in the MERSCOPE output layout.

Source: PyPI bento-tools 2.1.4.post2 (BSD-2), bento/datasets/merfish_sample.h5ad (MERFISH U2-OS,
15 cells x 135 genes, 221,090 transcripts). Written as Vizgen's MERSCOPE files, the layout
spatialdata-io's ``merscope`` reader expects: cell_by_gene.csv, cell_metadata.csv,
detected_transcripts.csv (20,000 of the transcripts, seeded) and
images/micron_to_mosaic_pixel_transform.csv. No mosaic image exists for this sample.
bento's coordinates are written unchanged into the micron fields (the package does not record
the pixel size). Usage: python scripts/make_merscope_sample.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import shapely.wkt

OUT = Path(__file__).resolve().parents[1] / "sample_data" / "merfish_u2os_merscope"
N_TRANSCRIPTS = 20_000


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                folder,
                "bento-tools==2.1.4.post2",
            ],
            check=True,
            capture_output=True,
        )
        wheel = next(Path(folder).glob("bento_tools-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extract("bento/datasets/merfish_sample.h5ad", folder)
        cells = ad.read_h5ad(Path(folder) / "bento/datasets/merfish_sample.h5ad")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "images").mkdir(exist_ok=True)
    ids = [str(i) for i in range(len(cells))]
    counts = pd.DataFrame(
        np.asarray(cells.X.toarray() if hasattr(cells.X, "toarray") else cells.X, dtype=int),
        index=pd.Index(ids, name="cell"),
        columns=cells.var_names,
    )
    counts.to_csv(OUT / "cell_by_gene.csv")
    shapes = [shapely.wkt.loads(s) if isinstance(s, str) else s for s in cells.obs["cell_shape"]]
    bounds = np.array([shape.bounds for shape in shapes])
    centres = np.array([[shape.centroid.x, shape.centroid.y] for shape in shapes])
    metadata = pd.DataFrame(
        {
            "fov": cells.obs["batch"].astype(int).to_numpy(),
            "volume": [shape.area for shape in shapes],
            "center_x": centres[:, 0],
            "center_y": centres[:, 1],
            "min_x": bounds[:, 0],
            "max_x": bounds[:, 2],
            "min_y": bounds[:, 1],
            "max_y": bounds[:, 3],
        },
        index=pd.Index(ids, name="EntityID"),
    )
    metadata.to_csv(OUT / "cell_metadata.csv")
    points = cells.uns["points"]
    rename = dict(zip(cells.obs_names, ids))
    chosen = points.iloc[np.sort(np.random.default_rng(0).choice(len(points), N_TRANSCRIPTS, replace=False))]
    transcripts = pd.DataFrame(
        {
            "barcode_id": pd.factorize(chosen["gene"])[0],
            "global_x": chosen["x"].to_numpy(),
            "global_y": chosen["y"].to_numpy(),
            "global_z": 0.0,
            "x": chosen["x"].to_numpy(),
            "y": chosen["y"].to_numpy(),
            "fov": chosen["batch"].astype(int).to_numpy(),
            "gene": chosen["gene"].astype(str).to_numpy(),
            "transcript_id": [f"t{i}" for i in range(len(chosen))],
            "cell_id": chosen["cell"].astype(str).map(rename).fillna("-1").to_numpy(),
        }
    )
    transcripts.to_csv(OUT / "detected_transcripts.csv")
    np.savetxt(OUT / "images" / "micron_to_mosaic_pixel_transform.csv", np.eye(3), fmt="%.6f")
    print(f"wrote {OUT}: {len(cells)} cells x {cells.n_vars} genes, {len(transcripts)} transcripts")


if __name__ == "__main__":
    main()
