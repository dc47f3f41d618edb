"""Spatial-omics files as users have them (issue 14, kinds 5-8): what X holds, Visium HD bins,
Xenium XOA 2.x/3.x tables linked to the cells, slides too small for a step, outputs checked first.

Each reproducer of ../shared/cases/realworld (B, C, D, F, G) is a test here with the right value,
next to a variant built for the same kind of fault. CLI calls run in process (``fmscope.cli.main``).
"""

import hashlib
import json
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

from fmscope import samples
from fmscope.atomic import atomic_write
from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.omics import io
from fmscope.omics.embed import baseline_embedding
from fmscope.omics.expression import COUNTS, LOG_NORMALISED, SCALED, counts_view, values_kind
from fmscope.omics.store import write_result
from fmscope.omics.synthetic import annotate_blocks, semi_synthetic_tissue
from fmscope.outputs import FOLDER, SLIDE_SUFFIXES, Output, check_outputs

DATA = samples.sample_data_dir()
VISIUM = DATA / "visium_mouse_brain"


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def visium_counts() -> ad.AnnData:
    """The Visium sample as raw counts with spot centres in microns (as an .h5ad user would save it)."""
    slide = io.read_slide(VISIUM)
    adata = slide.adata.copy()
    adata.uns["fmscope"] = {"microns_per_unit": 1.0}
    return adata


def pca(matrix) -> np.ndarray:
    work = ad.AnnData(X=np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float32))
    sc.pp.pca(work, n_comps=30, random_state=0)
    return work.obsm["X_pca"]


def correlations(a: np.ndarray, b: np.ndarray, k: int = 5) -> list[float]:
    return [abs(float(np.corrcoef(a[:, i], b[:, i])[0, 1])) for i in range(k)]


# --- kind 5: what X holds --------------------------------------------------------------------


def test_case_b_lognormalised_is_not_normalised_twice_and_scaled_is_refused(visium_counts, tmp_path, capsys):
    adata = visium_counts.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.write_h5ad(tmp_path / "lognorm.h5ad")
    lognorm_pca = pca(adata.X)
    slide = io.read_slide(tmp_path / "lognorm.h5ad")
    assert any("log-normalised" in n and "not raw counts" in n for n in slide.notices)
    assert min(correlations(baseline_embedding(slide.adata), lognorm_pca)) >= 0.999  # = PCA of X as given
    sc.pp.scale(adata)
    adata.write_h5ad(tmp_path / "scaled.h5ad")
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "embed", tmp_path / "scaled.h5ad", "-o", tmp_path / "scaled_out.zarr")
    assert code == 1 and "scaled values (negative numbers" in err and "no layers and no .raw" in err
    assert "--layer" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_counts_found_in_raw_of_a_scaled_file():
    """pbmc68k_reduced, as scanpy ships it: X scaled, .raw log-normalised: .raw is used, X kept for writing."""
    reference = ad.read_h5ad(DATA / "pbmc68k_reduced.h5ad")
    assert values_kind(reference.X) == SCALED
    view = counts_view(reference)
    assert view.source == "raw" and view.kind == LOG_NORMALISED and view.changed
    assert np.allclose(np.log1p(view.adata.X[:50].toarray()), reference.raw.X[:50].toarray(), atol=1e-5)
    assert "scaled values" in view.notices[0] and reference.X.min() < 0  # the user's object untouched


def test_counts_layer_is_used_and_the_users_x_is_written_back(visium_counts, tmp_path, capsys):
    adata = visium_counts.copy()
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.write_h5ad(tmp_path / "with_layer.h5ad")
    code, _, err = cli(capsys, "embed", tmp_path / "with_layer.h5ad", "-o", tmp_path / "out.h5ad")
    assert code == 0 and "raw counts in layers['counts']" in err
    written = ad.read_h5ad(tmp_path / "out.h5ad")
    assert np.allclose(written.X.toarray(), adata.X.toarray())  # the user's log-normalised X, not the counts
    assert np.array_equal(written.layers["counts"].toarray(), visium_counts.X.toarray())
    expected = baseline_embedding(visium_counts)
    assert min(correlations(written.obsm["X_fmscope"], expected)) >= 0.999
    code, _, err = cli(capsys, "embed", tmp_path / "with_layer.h5ad", "--layer", "spliced", "-o", tmp_path / "o2.h5ad")
    assert code == 1 and "no 'spliced'" in err and "X, counts" in err


def test_integer_floats_are_counts_and_ensembl_versions_and_duplicates_become_one_gene(visium_counts):
    adata = visium_counts[:200].copy()
    adata.X = adata.X.astype(np.float64)
    view = counts_view(adata)
    assert view.kind == COUNTS and not view.changed and not view.notices
    symbols = [str(g) for g in adata.var_names]
    symbols[1] = symbols[0]  # two Ensembl genes with one symbol
    adata.var = pd.DataFrame(
        {"gene_symbols": symbols}, index=[f"ENSMUSG{i:011d}.{i % 7 + 1}" for i in range(adata.n_vars)]
    )
    view = counts_view(adata)
    assert view.changed and list(view.adata.var_names[:2]) == [symbols[0], symbols[2]]
    assert view.adata.n_vars == adata.n_vars - 1
    assert view.adata.var["gene_ids"].iloc[0] == "ENSMUSG00000000000"  # version suffix dropped
    x = adata.X.toarray()
    assert np.array_equal(np.asarray(view.adata.X[:, 0].todense()).ravel(), x[:, 0] + x[:, 1])  # summed
    assert any("occur more than once" in n for n in view.notices) and any("symbols" in n for n in view.notices)
    adata.var = pd.DataFrame(index=[f"ENSMUSG{i:011d}.{i % 7 + 1}" for i in range(adata.n_vars)])
    assert counts_view(adata).adata.var_names[3] == "ENSMUSG00000000003"


# --- kind 6: Visium HD bins, Xenium XOA 2.x / 3.x --------------------------------------------

BIN_UM, UM_PER_PX, LOWRES = 16.0, 0.2738, 0.02


def build_visium_hd(outs: Path, bins=(16,), grid_step: int = 1) -> int:
    """Space Ranger's Visium HD layout from the Visium sample's counts: one square_NNNum folder per
    bin size (filtered_feature_bc_matrix.h5 with HD barcodes, parquet positions, HD scale factors)."""
    with h5py.File(VISIUM / "filtered_feature_bc_matrix.h5") as f:
        n = len(f["matrix/barcodes"])
    side = int(np.ceil(np.sqrt(n)))
    rows, cols = np.divmod(np.arange(n), side)
    for size in bins:
        square = outs / "binned_outputs" / f"square_{size:03d}um"
        (square / "spatial").mkdir(parents=True)
        barcodes = [f"s_{size:03d}um_{r:05d}_{c:05d}-1" for r, c in zip(rows, cols)]
        with (
            h5py.File(VISIUM / "filtered_feature_bc_matrix.h5") as f_in,
            h5py.File(square / "filtered_feature_bc_matrix.h5", "w") as f_out,
        ):
            for key in f_in:
                f_in.copy(key, f_out)
            del f_out["matrix/barcodes"]
            f_out["matrix/barcodes"] = np.array(barcodes, dtype="S")
        px = size / UM_PER_PX
        pd.DataFrame(
            {
                "barcode": barcodes,
                "in_tissue": 1,
                "array_row": rows,
                "array_col": cols,
                "pxl_row_in_fullres": 1000 + rows * px * grid_step,
                "pxl_col_in_fullres": 1000 + cols * px * grid_step,
            }
        ).to_parquet(square / "spatial" / "tissue_positions.parquet", index=False)
        (square / "spatial" / "scalefactors_json.json").write_text(
            json.dumps(
                {
                    "spot_diameter_fullres": px,
                    "bin_size_um": size,
                    "microns_per_pixel": UM_PER_PX,
                    "tissue_lowres_scalef": LOWRES,
                    "tissue_hires_scalef": 0.2,
                    "fiducial_diameter_fullres": 4 * px,
                }
            )
        )
        shutil.copy(VISIUM / "spatial" / "tissue_lowres_image.png", square / "spatial" / "tissue_lowres_image.png")
    return n


def nearest_distance(xy: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(distances[:, 1]))


@pytest.mark.slow
def test_case_c_visium_hd_bins_in_true_microns_drawn_as_squares(tmp_path, capsys):
    import spatialdata as sd

    n = build_visium_hd(tmp_path / "outs")
    square = tmp_path / "outs" / "binned_outputs" / "square_016um"
    pd.read_parquet(square / "spatial" / "tissue_positions.parquet").to_csv(
        square / "spatial" / "tissue_positions.csv", index=False
    )  # the forum workaround changes nothing
    before = snapshot(tmp_path / "outs")
    for target in (tmp_path / "outs", square):
        slide = io.read_slide(target)
        assert slide.adata.n_obs == n and slide.spot_shape == "square" and slide.spot_diameter_um == BIN_UM
        assert nearest_distance(slide.adata.obsm["spatial"]) == pytest.approx(BIN_UM, rel=1e-6)
        assert slide.image_microns_per_pixel == pytest.approx(UM_PER_PX / LOWRES)  # 13.69 um per lowres pixel
    code, _, err = cli(capsys, "embed", square, "-o", tmp_path / "hd.zarr")
    assert code == 0 and "Visium HD bins of 16 um" in err
    sdata = sd.read_zarr(tmp_path / "hd.zarr")
    table = sdata.tables["fmscope_table"]
    region = table.uns["spatialdata_attrs"]["region"]
    squares = sdata.shapes[region]
    assert np.allclose(np.sqrt(squares.geometry.area), BIN_UM)  # each bin a 16 um square
    assert np.allclose(squares.geometry.bounds["maxx"] - squares.geometry.bounds["minx"], BIN_UM)
    rows = sd.get_values("array_row", sdata=sdata, element_name=region, table_name="fmscope_table")["array_row"]
    assert len(rows) == n and rows.notna().all()  # the table is linked to the squares
    assert snapshot(tmp_path / "outs") == before
    again = io.read_slide(tmp_path / "hd.zarr")
    assert again.spot_shape == "square" and again.spot_diameter_um == pytest.approx(BIN_UM)


def test_visium_hd_outs_with_several_bin_levels_lists_them(tmp_path):
    build_visium_hd(tmp_path / "outs", bins=(8, 16))
    with pytest.raises(FmscopeError, match=r"2 bin levels .*square_008um.*square_016um"):
        io.read_slide(tmp_path / "outs")
    slide = io.read_slide(tmp_path / "outs" / "binned_outputs" / "square_008um")
    assert slide.spot_diameter_um == 8.0
    assert nearest_distance(slide.adata.obsm["spatial"]) == pytest.approx(8.0, rel=1e-6)


def build_xoa3(src: Path, dst: Path) -> int:
    """``src`` (XOA 1.0 layout) rewritten in the XOA >= 2 layout (string cell ids, cells.zarr.zip,
    label_id in the boundary parquets, 'UNASSIGNED' transcripts), analysis_sw_version 3.2.1.2."""
    import zarr
    from spatialdata_io.readers.xenium import cell_id_str_from_prefix_suffix_uint32

    dst.mkdir()
    cells = pd.read_parquet(src / "cells.parquet")
    old = cells["cell_id"].to_numpy()
    prefix = (np.arange(len(old)) * 7919 + 123456).astype(np.uint32)
    new = cell_id_str_from_prefix_suffix_uint32(prefix, np.ones(len(old), int)).astype(str)
    to_new = dict(zip(old.tolist(), new.tolist()))
    cells["cell_id"], cells["nucleus_count"] = new, 1
    cells.to_parquet(dst / "cells.parquet", index=False)
    label = {c: i + 1 for i, c in enumerate(old.tolist())}
    for name in ("cell_boundaries", "nucleus_boundaries"):
        boundaries = pd.read_parquet(src / f"{name}.parquet")
        boundaries["label_id"] = boundaries["cell_id"].map(label).astype(np.uint32)
        boundaries["cell_id"] = boundaries["cell_id"].map(to_new)
        boundaries[["cell_id", "vertex_x", "vertex_y", "label_id"]].to_parquet(dst / f"{name}.parquet", index=False)
    transcripts = pd.read_parquet(src / "transcripts.parquet")
    transcripts["cell_id"] = transcripts["cell_id"].map(lambda c: to_new.get(c, "UNASSIGNED"))
    transcripts.to_parquet(dst / "transcripts.parquet", index=False)
    with h5py.File(src / "cell_feature_matrix.h5") as f_in, h5py.File(dst / "cell_feature_matrix.h5", "w") as f_out:
        for key in f_in:
            f_in.copy(key, f_out)
        barcodes = [int(x) for x in f_in["matrix/barcodes"][...].astype(str)]
        del f_out["matrix/barcodes"]
        f_out["matrix/barcodes"] = np.array([to_new[x] for x in barcodes], dtype="S")
    summary = np.c_[
        cells[["x_centroid", "y_centroid", "cell_area", "x_centroid", "y_centroid", "nucleus_area"]].to_numpy(),
        np.zeros(len(cells)),
        np.ones(len(cells)),
    ]
    store = zarr.storage.ZipStore(dst / "cells.zarr.zip", mode="w")
    group = zarr.open_group(store, mode="w", zarr_format=2)
    group.create_array("cell_id", data=np.c_[prefix, np.ones(len(prefix), np.uint32)].astype(np.uint32))
    group.create_array(
        "cell_summary",
        data=summary,
        attributes={
            "column_names": [
                "cell_centroid_x",
                "cell_centroid_y",
                "cell_area",
                "nucleus_centroid_x",
                "nucleus_centroid_y",
                "nucleus_area",
                "z_level",
                "nucleus_count",
            ]
        },
    )
    for mask in ("0", "1"):
        group.create_array(f"polygon_sets/{mask}/cell_index", data=np.arange(len(prefix), dtype=np.uint32))
    store.close()
    spec = json.loads((src / "experiment.xenium").read_text())
    spec["analysis_sw_version"] = "xenium-3.2.1.2"
    (dst / "experiment.xenium").write_text(json.dumps(spec))
    return len(cells)


def test_case_d_xenium_xoa3_table_annotates_the_cell_outlines(tmp_path, capsys):
    import spatialdata as sd

    n_cells = build_xoa3(DATA / "xenium_breast_outs", tmp_path / "xenium_xoa3")
    before = snapshot(tmp_path / "xenium_xoa3")
    slide = io.read_slide(tmp_path / "xenium_xoa3")
    outlines = slide.sdata.shapes["cell_boundaries"]
    assert slide.adata.obs_names[0].endswith("-1") and slide.adata.obs["cell_id"].dtype == object  # string ids
    # the cell size comes from the outlines: a disc of the median outline area
    assert slide.spot_diameter_um == pytest.approx(2 * np.sqrt(np.median(outlines.geometry.area) / np.pi))
    assert 5 < slide.spot_diameter_um < 30
    slide.adata.obs["fmscope_domain"] = np.where(
        slide.adata.obsm["spatial"][:, 0] > np.median(slide.adata.obsm["spatial"][:, 0]), "right", "left"
    )
    write_result(slide, tmp_path / "xoa3.zarr")
    sdata = sd.read_zarr(tmp_path / "xoa3.zarr")
    assert sdata.tables["table"].uns["spatialdata_attrs"]["region"] == "cell_boundaries"
    values = sd.get_values("fmscope_domain", sdata=sdata, element_name="cell_boundaries", table_name="table")
    assert len(values) == n_cells and values["fmscope_domain"].notna().all()
    centroids = outlines.geometry.centroid
    right = centroids.x.loc[values.index[values["fmscope_domain"].to_numpy() == "right"]]
    assert (right > np.median(slide.adata.obsm["spatial"][:, 0]) - 10).all()  # values reach the right outlines
    assert snapshot(tmp_path / "xenium_xoa3") == before


def test_a_table_linked_to_a_missing_element_is_linked_to_cells_in_the_written_store(tmp_path):
    """The shipped XOA 1.0 sample (integer cell ids) and MERSCOPE read without boundaries: both
    written tables annotate an element that is in the store."""
    import spatialdata as sd

    for folder, name in (("xenium_breast_outs", "xoa1.zarr"), ("merfish_u2os_merscope", "merscope.zarr")):
        slide = io.read_slide(DATA / folder)
        slide.adata.obs["fmscope_domain"] = "a"
        write_result(slide, tmp_path / name)
        sdata = sd.read_zarr(tmp_path / name)
        table_name = next(iter(sdata.tables))
        region = sdata.tables[table_name].uns["spatialdata_attrs"]["region"]
        assert region in sdata.shapes, (folder, region)
        values = sd.get_values("fmscope_domain", sdata=sdata, element_name=region, table_name=table_name)
        assert (values["fmscope_domain"] == "a").sum() == slide.adata.n_obs


# --- kind 7: slides too small for a step -----------------------------------------------------


@pytest.mark.slow
def test_case_g_one_spot_and_a_3_cell_crop_are_refused_naming_the_minimum(visium_counts, tmp_path, capsys):
    visium_counts[:1].copy().write_h5ad(tmp_path / "single.h5ad")
    tissue = semi_synthetic_tissue(side=20, purity=0.8)
    tissue.obs["my_regions"] = annotate_blocks(tissue, block=3)
    tissue[:3].copy().write_h5ad(tmp_path / "crop.h5ad")
    tissue[:9].copy().write_h5ad(tmp_path / "nine.h5ad")
    tissue.write_h5ad(tmp_path / "tissue.h5ad")
    code, _, err = cli(
        capsys,
        "finetune",
        tmp_path / "tissue.h5ad",
        "--annotations",
        "my_regions",
        "--head",
        tmp_path / "head.pt",
        "--epochs",
        10,
        "-o",
        tmp_path / "tuned.h5ad",
    )
    assert code == 0, err
    for args, needed in (
        (("embed", "single.h5ad", "-o", "a.zarr"), "1 cell or spot; `embed` needs at least 2"),
        (("domains", "single.h5ad", "-o", "b.zarr"), "`domains` needs at least 10"),
        (("domains", "nine.h5ad", "-o", "c.zarr"), "9 cells or spots; `domains` needs at least 10"),
        (
            ("classify", "crop.h5ad", "--head", "head.pt", "-o", "d.h5ad"),
            "3 cells or spots; `classify` needs at least 7",
        ),
    ):
        before = snapshot(tmp_path)
        code, _, err = cli(capsys, *[tmp_path / a if a.endswith((".h5ad", ".zarr", ".pt")) else a for a in args])
        assert code == 1 and needed in err, err
        assert snapshot(tmp_path) == before


def test_one_cell_embeds_with_scgpt(visium_counts, tmp_path, capsys):
    """The minimum is the step's: scGPT embeds a cell on its own (the tiny fixture, genes renamed to its vocabulary)."""
    one = visium_counts[:1].copy()
    one.var_names = [f"GENE{i}" for i in range(one.n_vars)]
    one.write_h5ad(tmp_path / "one.h5ad")
    fixture = Path(__file__).parent / "fixtures" / "scgpt_tiny"
    code, _, err = cli(capsys, "embed", tmp_path / "one.h5ad", "--checkpoint", fixture, "-o", tmp_path / "one_out.h5ad")
    assert code == 0, err
    embedding = ad.read_h5ad(tmp_path / "one_out.h5ad").obsm["X_fmscope"]
    assert embedding.shape == (1, 32) and np.isclose(np.linalg.norm(embedding), 1.0, atol=1e-5)


# --- kind 8: outputs checked before any work -------------------------------------------------


@pytest.mark.slow
def test_case_f_finetune_refuses_bad_outputs_before_training_and_keeps_the_head(tmp_path, capsys):
    tissue = semi_synthetic_tissue(side=20, purity=0.8)
    tissue.obs["my_regions"] = annotate_blocks(tissue, block=3)
    tissue.write_h5ad(tmp_path / "tissue.h5ad")
    (tmp_path / "head.pt").write_bytes(b"previous head from an earlier run")
    before = snapshot(tmp_path)
    for output, message in (("tissue.h5ad", "is the input"), ("result.csv", "cannot write a '.csv' file")):
        code, out, err = cli(
            capsys,
            "finetune",
            tmp_path / "tissue.h5ad",
            "--annotations",
            "my_regions",
            "--head",
            tmp_path / "head.pt",
            "--epochs",
            10,
            "-o",
            tmp_path / output,
        )
        assert code == 1 and message in err and out == ""  # refused before reading the slide
        assert snapshot(tmp_path) == before


def test_every_command_checks_its_outputs_first(tmp_path, capsys):
    """Imaging commands too: each refusal comes before reading the input (the input here is not even a slide)."""
    image = tmp_path / "image.png"
    image.write_bytes(b"not read: the outputs are refused first")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file where a folder would go")
    (tmp_path / "folder.h5ad").mkdir()
    (tmp_path / "plain.zarr").mkdir()
    before = snapshot(tmp_path)
    cases = [
        (("segment", image, "--box", 1, 1, 5, 5, "-o", image), "is the input"),
        (("segment", image, "--box", 1, 1, 5, 5, "-o", tmp_path / "mask.xyz"), "cannot write a '.xyz'"),
        (
            ("segment", image, "--box", 1, 1, 5, 5, "-o", tmp_path / "m.png", "--overlay", tmp_path / "m.png"),
            "also the path of -o",
        ),
        (("segment", image, "--box", 1, 1, 5, 5, "-o", a_file / "mask.png"), "cannot write in"),
        (("volume", image, "--slice", 0, "--box", 1, 1, 5, 5, "-o", tmp_path / "v.mhd"), "cannot write a '.mhd'"),
        (("demo", "-o", a_file), "existing file"),
        (("embed", image, "-o", tmp_path / "folder.h5ad"), "is an existing folder"),
        (("embed", image, "-o", tmp_path / "plain.zarr"), "not a zarr store"),
        (("domains", image, "-o", tmp_path / "d.zarr", "--png", tmp_path / "d.jpg"), "cannot write a '.jpg'"),
        (("embed", tmp_path, "-o", tmp_path / "inside.zarr"), "is inside the input"),
        (("classify", image, "--head", tmp_path / "h.pt", "-o", tmp_path / "h.pt"), "is the input"),
        (
            ("finetune", image, "--annotations", "x", "--head", tmp_path / "head.ckpt", "-o", tmp_path / "f.h5ad"),
            "--head",
        ),
    ]
    for args, message in cases:
        code, out, err = cli(capsys, *args)
        assert code == 1 and message in err and "Traceback" not in err, (args, err)
        assert snapshot(tmp_path) == before and out == ""


def test_check_outputs_allows_a_new_store_and_an_earlier_result(tmp_path):
    check_outputs([Output("-o", tmp_path / "out.zarr", SLIDE_SUFFIXES)], [tmp_path / "in.h5ad"])
    (tmp_path / "earlier.zarr").mkdir()
    (tmp_path / "earlier.zarr" / "zarr.json").write_text("{}")
    with pytest.raises(FmscopeError, match="not written by fmscope"):  # a store without fmscope's stamp
        check_outputs([Output("-o", tmp_path / "earlier.zarr", SLIDE_SUFFIXES)])
    stamped = '{"attributes": {"fmscope_output": {"written_by": "fmscope"}}}'
    (tmp_path / "earlier.zarr" / "zarr.json").write_text(stamped)
    with pytest.raises(FmscopeError, match="holds no record of writing it"):  # the stamp alone never permits
        check_outputs([Output("-o", tmp_path / "earlier.zarr", SLIDE_SUFFIXES)])

    def store(temporary):
        temporary.mkdir()
        (temporary / "zarr.json").write_text(stamped)

    atomic_write(tmp_path / "ours.zarr", store)  # fmscope's own earlier result (recorded): replaceable
    check_outputs([Output("-o", tmp_path / "ours.zarr", SLIDE_SUFFIXES), Output("-o", tmp_path / "demo", FOLDER)])
