"""Slides as their formats allow them (issue 26): Visium positions layouts, coordinate units from the file's
own transformations and scale factors (``--microns-per-unit`` used, checked or refused for every kind),
sections in one table, tissue image channel layouts, AnnData without X; and the writers, which replace only
what fmscope wrote. Each ../shared/cases/realworld S-case of this family is a test here with the right
value, next to Hypothesis tests generating variants of the same kind (docs/formats.md names them).
Files are built with the libraries that write them in the wild (spatialdata, spatialdata-io, anndata).
"""

import hashlib
import shutil
import uuid
from pathlib import Path

import anndata as ad
import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fmscope import samples
from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.omics import io
from fmscope.omics.domains import spatial_domains, spatial_mean_operator
from fmscope.omics.embed import baseline_embedding
from fmscope.omics.expression import counts_view
from fmscope.omics.output_stamp import read_stamp
from fmscope.omics.sections import SECTION_KEYS, require_sections
from fmscope.omics.store import write_result
from fmscope.omics.synthetic import semi_synthetic_tissue
from fmscope.omics.tissue_image import tissue_image

VISIUM = samples.sample_data_dir() / "visium_mouse_brain"
XENIUM_OUTS = samples.sample_data_dir() / "xenium_breast_outs"
SR2_HEADER = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
FEW = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def pitch(xy: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(distances[:, 1]))


@pytest.fixture(scope="module")
def visium() -> io.Slide:
    return io.read_slide(VISIUM)


@pytest.fixture(scope="module")
def sdio_store(tmp_path_factory) -> Path:
    """The Visium sample converted by spatialdata-io and written (full-resolution pixel coordinates)."""
    import spatialdata_io

    path = tmp_path_factory.mktemp("sdio") / "visium_sdio.zarr"
    spatialdata_io.visium(VISIUM, dataset_id="brain", counts_file="filtered_feature_bc_matrix.h5").write(path)
    return path


# --- Visium folders ----------------------------------------------------------------------------------


def test_case_s1_positions_list_with_the_space_ranger_2_header_reads_as_the_control(visium, tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(VISIUM, folder)
    positions = folder / "spatial" / "tissue_positions_list.csv"
    positions.write_text(SR2_HEADER + "\n" + positions.read_text())
    slide = io.read_slide(folder)
    assert list(slide.adata.obs_names) == list(visium.adata.obs_names)
    assert np.abs(slide.adata.obsm["spatial"] - visium.adata.obsm["spatial"]).max() < 0.01
    assert any("header row" in notice for notice in slide.notices)


@FEW
@given(
    header=st.booleans(),
    name=st.sampled_from(["tissue_positions.csv", "tissue_positions_list.csv"]),
    order=st.permutations(SR2_HEADER.split(",")[1:]),
    bom=st.booleans(),
    gz=st.booleans(),
    scale_gz=st.booleans(),
)
@example(
    header=False, name="tissue_positions_list.csv", order=SR2_HEADER.split(",")[1:], bom=False, gz=True, scale_gz=False
)  # NUF2: GEO's spatial/tissue_positions_list.csv.gz
def test_visium_positions_any_name_header_and_column_order_read_the_same(
    visium, tmp_path, header, name, order, bom, gz, scale_gz
):
    """Invariant: whatever the file's name, header, column order (with a header), BOM and gzip (GEO ships
    the positions and the scale factors gzipped; written by Python's gzip, as the gzip tool does), the same
    spots at the same places, with the same image."""
    import gzip

    folder = tmp_path / f"v{header}{name}{bom}{gz}{scale_gz}{''.join(c[0] for c in order)}"
    shutil.copytree(VISIUM, folder, dirs_exist_ok=True)
    (folder / "spatial" / "tissue_positions_list.csv").unlink()
    table = pd.read_csv(VISIUM / "spatial" / "tissue_positions_list.csv", header=None, index_col=0)
    table.columns = SR2_HEADER.split(",")[1:]
    table.index.name = "barcode"
    if header:
        table = table[list(order)]
    data = (("\ufeff" if bom else "") + table.to_csv(header=header)).encode("utf-8")
    if gz:
        with gzip.open(folder / "spatial" / f"{name}.gz", "wb") as handle:
            handle.write(data)
    else:
        (folder / "spatial" / name).write_bytes(data)
    if scale_gz:
        scale = folder / "spatial" / "scalefactors_json.json"
        with gzip.open(f"{scale}.gz", "wb") as handle:
            handle.write(scale.read_bytes())
        scale.unlink()
    slide = io.read_slide(folder)
    assert list(slide.adata.obs_names) == list(visium.adata.obs_names)
    assert np.abs(slide.adata.obsm["spatial"] - visium.adata.obsm["spatial"]).max() < 1e-6
    assert slide.image_microns_per_pixel == pytest.approx(visium.image_microns_per_pixel)


def _write_mex(folder: Path, prefix: str, gz: bool, v2: bool) -> None:
    """The sample's counts as Matrix Market files, as Space Ranger (v3: features.tsv, 3 columns, gzipped) or
    Cell Ranger 2 / GEO (v2: genes.tsv, 2 columns) write them."""
    import gzip

    import scanpy as sc
    import scipy.io

    counts = sc.read_10x_h5(VISIUM / "filtered_feature_bc_matrix.h5")
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    opener = gzip.open if gz else open
    genes = [
        f"{i}\t{n}" + ("" if v2 else "\tGene Expression") for i, n in zip(counts.var["gene_ids"], counts.var_names)
    ]
    with opener(folder / f"{prefix}matrix.mtx{ext}", "wb") as handle:
        scipy.io.mmwrite(handle, counts.X.T.tocoo().astype(np.int64))
    with opener(folder / f"{prefix}barcodes.tsv{ext}", "wt") as handle:
        handle.write("\n".join(counts.obs_names) + "\n")
    with opener(folder / f"{prefix}{'genes' if v2 else 'features'}.tsv{ext}", "wt") as handle:
        handle.write("\n".join(genes) + "\n")


@FEW
@given(
    kind=st.sampled_from(["h5", "prefixed h5", "mex folder", "prefixed mex folder", "flat prefixed mex"]),
    gz=st.booleans(),
    v2=st.booleans(),
    raw_beside=st.booleans(),
    packed_beside=st.booleans(),
)
@example(kind="mex folder", gz=True, v2=False, raw_beside=False, packed_beside=False)  # NU12: GEO's MEX folder
@example(kind="prefixed h5", gz=True, v2=False, raw_beside=False, packed_beside=True)  # NU12: 10x's downloads
def test_visium_counts_as_downloaded_read_the_same_spots(visium, tmp_path, kind, gz, v2, raw_beside, packed_beside):
    """NU12 (squidpy#802, seurat#7157, spatialdata-io#43): the counts as Space Ranger's .h5, 10x's sample-prefixed
    download, a MEX folder (Space Ranger's or GEO's, gzipped or not, features.tsv or genes.tsv) or GEO's flat
    prefixed MEX files, beside a raw matrix or the spatial tarball: the same spots, genes, counts and positions."""
    folder = tmp_path / uuid.uuid4().hex
    shutil.copytree(VISIUM / "spatial", folder / "spatial")
    sample = "V1_Adult_Mouse_Brain_"
    if kind.endswith("h5"):
        name = ("" if kind == "h5" else sample) + "filtered_feature_bc_matrix.h5"
        shutil.copy(VISIUM / "filtered_feature_bc_matrix.h5", folder / name)
    elif kind == "flat prefixed mex":
        _write_mex(folder, "GSM4565826_", gz, v2)
    else:
        _write_mex(folder / (("" if kind == "mex folder" else sample) + "filtered_feature_bc_matrix"), "", gz, v2)
    if raw_beside:
        shutil.copy(VISIUM / "filtered_feature_bc_matrix.h5", folder / "raw_feature_bc_matrix.h5")
    if packed_beside:
        shutil.make_archive(str(folder / f"{sample}spatial"), "gztar", folder, "spatial")
    before = snapshot(folder)
    slide = io.read_slide(folder)
    assert list(slide.adata.obs_names) == list(visium.adata.obs_names)
    assert list(slide.adata.var_names) == list(visium.adata.var_names)
    assert (slide.adata.X != visium.adata.X).nnz == 0
    assert np.abs(slide.adata.obsm["spatial"] - visium.adata.obsm["spatial"]).max() < 1e-9
    assert (kind == "h5") != any("Counts read from" in n for n in slide.notices)
    assert snapshot(folder) == before


@FEW
@given(
    counts=st.sampled_from(["prefixed h5", "flat prefixed mex"]),
    positions_gz=st.booleans(),
    scale_gz=st.booleans(),
    image_gz=st.booleans(),
    sr2=st.booleans(),
)
@example(counts="prefixed h5", positions_gz=True, scale_gz=True, image_gz=True, sr2=False)  # GEO's supplementary files
def test_geo_flat_prefixed_visium_files_read_as_the_space_ranger_folder(
    visium, tmp_path, counts, positions_gz, scale_gz, image_gz, sr2
):
    """GEO's flat layout (squidpy#802, seurat#7157): no spatial/ folder, the sample's files beside its counts with
    its accession in front (GSM..._tissue_positions_list.csv.gz, GSM..._scalefactors_json.json.gz,
    GSM..._tissue_lowres_image.png.gz), each gzipped or not: the same spots, places and image as Space Ranger's
    folder, with a note; the files untouched."""
    import gzip

    folder, prefix = tmp_path / uuid.uuid4().hex, "GSM4565826_Visium_brain_"
    folder.mkdir()
    if counts == "prefixed h5":
        shutil.copy(VISIUM / "filtered_feature_bc_matrix.h5", folder / f"{prefix}filtered_feature_bc_matrix.h5")
    else:
        _write_mex(folder, prefix, True, False)
    positions = (VISIUM / "spatial" / "tissue_positions_list.csv").read_bytes()
    if sr2:
        positions = (SR2_HEADER + "\n").encode() + positions
    files = {
        "tissue_positions.csv" if sr2 else "tissue_positions_list.csv": (positions, positions_gz),
        "scalefactors_json.json": ((VISIUM / "spatial" / "scalefactors_json.json").read_bytes(), scale_gz),
        "tissue_lowres_image.png": ((VISIUM / "spatial" / "tissue_lowres_image.png").read_bytes(), image_gz),
    }
    for name, (data, gz) in files.items():
        (folder / f"{prefix}{name}{'.gz' if gz else ''}").write_bytes(gzip.compress(data) if gz else data)
    before = snapshot(folder)
    slide = io.read_slide(folder)
    assert list(slide.adata.obs_names) == list(visium.adata.obs_names)
    assert (slide.adata.X != visium.adata.X).nnz == 0
    assert np.abs(slide.adata.obsm["spatial"] - visium.adata.obsm["spatial"]).max() < 1e-9
    assert slide.image is not None and np.array_equal(slide.image, visium.image)
    assert slide.image_microns_per_pixel == pytest.approx(visium.image_microns_per_pixel)
    assert any("No spatial/ folder" in n and f"'{prefix}'" in n for n in slide.notices), slide.notices
    assert snapshot(folder) == before


def test_flat_spatial_files_of_two_samples_are_refused_naming_both(tmp_path):
    """Two GEO samples' flat files in one folder: which positions belong to the counts is not guessed."""
    for sample in ("GSM1_", "GSM2_"):
        shutil.copy(VISIUM / "filtered_feature_bc_matrix.h5", tmp_path / f"{sample}filtered_feature_bc_matrix.h5")
        shutil.copy(VISIUM / "spatial" / "tissue_positions_list.csv", tmp_path / f"{sample}tissue_positions_list.csv")
    before = snapshot(tmp_path)
    with pytest.raises(FmscopeError, match=r"spot positions of 2 samples \(files starting 'GSM1_', 'GSM2_'\)"):
        io.read_slide(tmp_path)
    assert main(["domains", str(tmp_path), "-o", str(tmp_path / "out.h5ad")]) == 1
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["raw h5", "prefixed raw mex folder"])
def test_a_visium_folder_with_only_the_raw_matrix_reads_the_spots_in_tissue(visium, tmp_path, kind):
    """GEO series that deposit only Space Ranger's raw matrix (every spot of the capture area, in tissue or not): the
    spots the positions mark in tissue are kept, the ones the filtered matrix holds; off-tissue spots with counts
    are not taken for the slide's."""
    import gzip

    import scanpy as sc
    import scipy.io
    import scipy.sparse as sp

    folder = tmp_path / kind.replace(" ", "_")
    shutil.copytree(VISIUM / "spatial", folder / "spatial")
    if kind == "raw h5":
        shutil.copy(VISIUM / "filtered_feature_bc_matrix.h5", folder / "raw_feature_bc_matrix.h5")
    else:
        counts = sc.read_10x_h5(VISIUM / "filtered_feature_bc_matrix.h5")
        positions = pd.read_csv(VISIUM / "spatial" / "tissue_positions_list.csv", header=None, index_col=0)
        outside = positions.index[positions[1] == 0][:300]  # off-tissue spots with counts, as a raw matrix has
        extra = sp.random(len(outside), counts.n_vars, density=0.05, random_state=0, format="csr")
        extra.data = np.ceil(extra.data * 5)
        matrix = sp.vstack([counts.X, extra]).tocsr()
        mex = folder / "V1_Adult_Mouse_Brain_raw_feature_bc_matrix"
        mex.mkdir()
        with gzip.open(mex / "matrix.mtx.gz", "wb") as handle:
            scipy.io.mmwrite(handle, matrix.T.tocoo().astype(np.int64))
        with gzip.open(mex / "barcodes.tsv.gz", "wt") as handle:
            handle.write("\n".join([*counts.obs_names, *outside]) + "\n")
        with gzip.open(mex / "features.tsv.gz", "wt") as handle:
            rows = [f"{i}\t{n}\tGene Expression" for i, n in zip(counts.var["gene_ids"], counts.var_names)]
            handle.write("\n".join(rows) + "\n")
    slide = io.read_slide(folder)
    assert list(slide.adata.obs_names) == list(visium.adata.obs_names)
    assert (slide.adata.X != visium.adata.X).nnz == 0
    assert any("raw matrix" in n and "in_tissue = 1" in n for n in slide.notices)


def test_a_visium_folder_without_one_counts_matrix_is_refused_naming_what_is_looked_for(tmp_path):
    """No matrix, two samples' matrices, a MEX folder missing a file, spatial/ still packed: each refused by
    name, through the CLI (exit 1), nothing written."""
    import tarfile

    cases = {}
    for case in ("none", "two", "incomplete", "packed"):
        cases[case] = tmp_path / case
        shutil.copytree(VISIUM / "spatial", cases[case] / "spatial")
    (cases["none"] / "web_summary.html").write_text("<html></html>")
    for sample in ("A1", "B1"):
        shutil.copy(VISIUM / "filtered_feature_bc_matrix.h5", cases["two"] / f"{sample}_filtered_feature_bc_matrix.h5")
    _write_mex(cases["incomplete"] / "filtered_feature_bc_matrix", "", True, False)
    (cases["incomplete"] / "filtered_feature_bc_matrix" / "barcodes.tsv.gz").unlink()
    with tarfile.open(cases["packed"] / "V1_spatial.tar.gz", "w:gz") as tar:
        tar.add(cases["packed"] / "spatial", "spatial")
    shutil.rmtree(cases["packed"] / "spatial")
    shutil.copy(VISIUM / "filtered_feature_bc_matrix.h5", cases["packed"] / "V1_filtered_feature_bc_matrix.h5")
    expected = {
        "none": r"no Visium counts matrix: fmscope looks for filtered_feature_bc_matrix\.h5 .* raw matrix "
        r"\(raw_feature_bc_matrix\.h5 .* holds spatial/, web_summary\.html",
        "two": r"2 counts matrices \(A1_filtered_feature_bc_matrix\.h5, B1_filtered_feature_bc_matrix\.h5\)",
        "incomplete": r"without barcodes\.tsv\(\.gz\)",
        "packed": r"still packed in V1_spatial\.tar\.gz",
    }
    for case, pattern in expected.items():
        before = snapshot(cases[case])
        with pytest.raises(FmscopeError, match=pattern):
            io.read_slide(cases[case])
        assert main(["domains", str(cases[case]), "-o", str(tmp_path / f"{case}.h5ad")]) == 1
        assert snapshot(cases[case]) == before and not (tmp_path / f"{case}.h5ad").exists()


# --- coordinate units -----------------------------------------------------------------------------------


def test_case_s2_spatialdata_io_visium_store_in_pixels_is_read_in_microns(sdio_store, visium):
    before = snapshot(sdio_store)
    slide = io.read_slide(sdio_store)
    assert abs(pitch(slide.adata.obsm["spatial"]) / 100 - 1) < 0.05  # spots 100 um apart, not 137
    assert 50 <= slide.spot_diameter_um <= 75
    assert abs(slide.image_microns_per_pixel / visium.image_microns_per_pixel - 1) < 0.01
    ours, folder = np.sort(slide.adata.obsm["spatial"], axis=0), np.sort(visium.adata.obsm["spatial"], axis=0)
    assert np.abs(ours - folder).max() < 1  # the same spots as fmscope reads from the Space Ranger folder
    per_px = slide.units.scale
    again = io.read_slide(sdio_store, microns_per_unit=per_px * 1.01)  # agrees with the store: used
    assert np.allclose(again.adata.obsm["spatial"], slide.adata.obsm["spatial"])
    with pytest.raises(FmscopeError, match="disagrees"):  # --microns-per-unit 1 on a pixel store: refused
        io.read_slide(sdio_store, microns_per_unit=1.0)
    assert snapshot(sdio_store) == before


def test_a_store_read_in_pixels_is_written_back_in_pixels_and_reads_the_same(sdio_store, tmp_path):
    slide = io.read_slide(sdio_store)
    write_result(slide, tmp_path / "out.zarr")
    again = io.read_slide(tmp_path / "out.zarr")
    assert np.abs(again.adata.obsm["spatial"] - slide.adata.obsm["spatial"]).max() < 1e-6
    assert abs(again.spot_diameter_um - slide.spot_diameter_um) < 1e-6


def test_a_scanpy_layout_visium_h5ad_in_pixels_is_read_in_microns(visium, tmp_path):
    """The squidpy / scanpy read_visium layout: obsm['spatial'] in full-resolution pixels, array_row / array_col
    in obs, Space Ranger scale factors in uns['spatial'][library]: read from the spot grid, as the folder."""
    import json

    table = visium.adata.copy()
    table.obsm["spatial"] = visium.file_spatial
    table.uns = {
        "spatial": {"brain": {"scalefactors": json.loads((VISIUM / "spatial" / "scalefactors_json.json").read_text())}}
    }
    table.write_h5ad(tmp_path / "scanpy_visium.h5ad")
    slide = io.read_slide(tmp_path / "scanpy_visium.h5ad")
    assert np.abs(slide.adata.obsm["spatial"] - visium.adata.obsm["spatial"]).max() < 1e-6


def test_an_h5ad_is_written_back_in_its_own_units_beside_its_scale_factors(visium, tmp_path):
    """NUD1: the scanpy / squidpy Visium layout keeps obsm['spatial'] in full-resolution pixels and
    uns['spatial'][lib]['scalefactors'] mapping them onto its images (sc.pl.spatial multiplies one by the other).
    fmscope's .h5ad keeps both as the input gave them (was: obsm in microns beside the pixel scale factors, every
    spot drawn ~150 lowres px off), states the units, and reads back to the same microns. A Visium folder
    written as .h5ad is in its pixels too, with its units."""
    import json

    factors = json.loads((VISIUM / "spatial" / "scalefactors_json.json").read_text())
    table = visium.adata.copy()
    table.obsm["spatial"] = xy = np.rint(visium.file_spatial).astype(np.int64)  # as scanpy.read_visium keeps it
    table.uns = {"spatial": {"brain": {"images": {"lowres": np.zeros((8, 8, 3), np.uint8)}, "scalefactors": factors}}}
    path = tmp_path / "scanpy_visium.h5ad"
    table.write_h5ad(path)
    slide = io.read_slide(path)
    slide.adata.obs["fmscope_domain"] = "d0"
    write_result(slide, tmp_path / "out.h5ad")
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert np.array_equal(out.obsm["spatial"], xy)
    assert out.uns["spatial"]["brain"]["scalefactors"]["tissue_lowres_scalef"] == factors["tissue_lowres_scalef"]
    assert out.uns["fmscope"]["microns_per_unit"] == pytest.approx(visium.units.scale)
    again = io.read_slide(tmp_path / "out.h5ad")
    assert np.abs(again.adata.obsm["spatial"] - slide.adata.obsm["spatial"]).max() < 1e-9
    write_result(slide, tmp_path / "out.zarr")  # a store: its table and circles in pixels, mapped to microns
    import spatialdata

    assert np.array_equal(spatialdata.read_zarr(tmp_path / "out.zarr").tables["fmscope_table"].obsm["spatial"], xy)
    stored = io.read_slide(tmp_path / "out.zarr")
    assert np.abs(stored.adata.obsm["spatial"] - slide.adata.obsm["spatial"]).max() < 1e-6
    assert stored.spot_diameter_um == pytest.approx(slide.cell_diameter_um)
    write_result(visium, tmp_path / "folder.h5ad")
    assert np.array_equal(ad.read_h5ad(tmp_path / "folder.h5ad").obsm["spatial"], visium.file_spatial)
    assert (
        np.abs(io.read_slide(tmp_path / "folder.h5ad").adata.obsm["spatial"] - visium.adata.obsm["spatial"]).max()
        < 1e-9
    )


@pytest.mark.parametrize("kind", ["visium folder", "xenium folder", "fmscope h5ad"])
def test_microns_per_unit_is_checked_for_every_kind(kind, visium, tmp_path):
    """A value agreeing with the file's own units is used; one that disagrees is refused, never ignored."""
    if kind == "visium folder":
        path, own = VISIUM, visium.units.scale
    elif kind == "xenium folder":
        path, own = XENIUM_OUTS, 1.0
    else:
        path, own = tmp_path / "cells.h5ad", 1.0
        table = visium.adata.copy()
        table.write_h5ad(path)
    slide = io.read_slide(path, microns_per_unit=own)
    assert slide.adata.n_obs > 0
    with pytest.raises(FmscopeError, match=r"--microns-per-unit 3 disagrees"):
        io.read_slide(path, microns_per_unit=3.0)


@pytest.mark.parametrize("value", [-5.0, 0.0, float("nan"), float("inf"), "unknown", np.array([-2.0])])
def test_a_stated_microns_per_unit_that_is_not_a_positive_number_is_refused_naming_the_key(value, tmp_path):
    """uns['fmscope']['microns_per_unit'] held to --microns-per-unit's rule (was: -5 mirrored the slide, 0 put every
    cell at (0, 0) and was refused as stacked sections), given or not; fmscope's own outputs
    (which state it) read back."""
    counts, xy = _cells()
    table = ad.AnnData(X=counts, obs=pd.DataFrame(index=[f"c{i}" for i in range(counts.shape[0])]))
    table.obsm["spatial"] = xy
    table.uns["fmscope"] = {"microns_per_unit": value}
    table.write_h5ad(tmp_path / "s.h5ad")
    shown = "'unknown'" if isinstance(value, str) else f"{float(np.asarray(value).ravel()[0]):g}"
    refusal = rf"uns\['fmscope'\]\['microns_per_unit'\] is {shown}, not a positive number"
    with pytest.raises(FmscopeError, match=refusal) as refused:
        io.read_slide(tmp_path / "s.h5ad")
    assert "--microns-per-unit" in refused.value.fix
    with pytest.raises(FmscopeError, match=refusal):
        io.read_slide(tmp_path / "s.h5ad", microns_per_unit=1.0)
    table.uns["fmscope"] = {"microns_per_unit": 2.5}
    table.write_h5ad(tmp_path / "good.h5ad")
    slide = io.read_slide(tmp_path / "good.h5ad")
    assert np.allclose(slide.adata.obsm["spatial"], xy * 2.5)
    for output in ("out.h5ad", "out.zarr"):  # fmscope's own outputs state the key and read back the same
        write_result(slide, tmp_path / output)
        again = io.read_slide(tmp_path / output)
        assert np.allclose(again.adata.obsm["spatial"], xy * 2.5)


def _store_with_units(path: Path, xy_um: np.ndarray, how: str, scale: float, offset: tuple[float, float]):
    """A SpatialData store of the cells at ``xy_um`` whose table and circles hold file units stated by ``how``."""
    import spatialdata
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Affine, Identity

    file_xy = (xy_um - np.asarray(offset)) / scale
    transformations = {"global": Identity()}
    if how == "microns system":
        transformations["microns"] = Affine(
            np.array([[scale, 0, offset[0]], [0, scale, offset[1]], [0, 0, 1]]),
            input_axes=("x", "y"),
            output_axes=("x", "y"),
        )
    shapes = ShapesModel.parse(
        file_xy, geometry=0, radius=np.full(len(xy_um), 5.0 / scale), transformations=transformations
    )
    rng = np.random.default_rng(0)
    table = ad.AnnData(
        X=sp.csr_matrix(rng.poisson(2.0, (len(xy_um), 12)).astype(np.float32)),
        obs=pd.DataFrame(
            {"region": pd.Categorical(["cells"] * len(xy_um)), "instance": np.arange(len(xy_um))},
            index=[f"c{i}" for i in range(len(xy_um))],
        ),
    )
    table.obsm["spatial"] = file_xy
    if how == "uns fmscope":
        table.uns["fmscope"] = {"microns_per_unit": scale}
    if how == "visium scalefactors":
        table.uns["spatial"] = {"lib": {"scalefactors": {"microns_per_pixel": scale, "spot_diameter_fullres": 10.0}}}
    table = TableModel.parse(table, region="cells", region_key="region", instance_key="instance")
    spatialdata.SpatialData(shapes={"cells": shapes}, tables={"table": table}).write(path)


@FEW
@given(
    how=st.sampled_from(["microns system", "uns fmscope", "visium scalefactors", "nothing"]),
    scale=st.floats(0.2, 8.0),
    offset=st.tuples(st.floats(-500, 500), st.floats(-500, 500)),
)
@example(how="uns fmscope", scale=0.99999, offset=(0.0, 0.0))  # within allclose's 1e-5 of 1: still converted
def test_store_units_from_its_transformations_and_scale_factors(tmp_path, how, scale, offset):
    """Invariant: a store's cells are read at their true microns whatever states the units, or refused
    naming the units when nothing does (then --microns-per-unit makes it read)."""
    xy_um = np.c_[np.arange(40) % 8, np.arange(40) // 8].astype(float) * 25.0 + 300
    path = tmp_path / f"s{uuid.uuid4().hex}.zarr"  # a fresh store per example (Hypothesis replays examples)
    used_offset = offset if how == "microns system" else (0.0, 0.0)
    _store_with_units(path, xy_um, how, scale, used_offset)
    if how == "nothing":
        with pytest.raises(FmscopeError, match="no units"):
            io.read_slide(path)
        slide = io.read_slide(path, microns_per_unit=scale)
    else:
        slide = io.read_slide(path)
    assert np.abs(slide.adata.obsm["spatial"] - xy_um).max() < 1e-6 * max(1.0, scale) * 1000
    assert abs(slide.spot_diameter_um - 10.0) < 1e-6
    if how != "nothing":
        with pytest.raises(FmscopeError, match="disagrees"):
            io.read_slide(path, microns_per_unit=scale * 1.5)


def _store_annotating(
    path: Path, element: str, scale: float, offset: tuple[float, float], ids_as_text: bool, seed: int
):
    """A store of 30 cells (20 um apart) whose table, with no obsm['spatial'], annotates circles, outlines
    (diamonds) or a label image (5 x 5 pixel squares) in file units (a 'microns' system: ``scale`` um per unit,
    ``offset``), its rows in another order than the element's; returns the cells' true (x, y) in microns, in the
    table's row order."""
    import geopandas as gpd
    import shapely
    import spatialdata
    from spatialdata.models import Labels2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Affine

    rng = np.random.default_rng(seed)
    file_xy = np.c_[np.arange(30) % 6, np.arange(30) // 6] * 12.0 + 10.0  # integer pixels, for the label image
    ids = np.arange(1, 31)
    to_microns = Affine(
        np.array([[scale, 0, offset[0]], [0, scale, offset[1]], [0, 0, 1]]),
        input_axes=("x", "y"),
        output_axes=("x", "y"),
    )
    if element == "labels":
        raster = np.zeros((90, 90), np.int32)
        for k, (x, y) in zip(ids, file_xy.astype(int)):
            raster[y - 2 : y + 3, x - 2 : x + 3] = k
        elements = {
            "labels": {"cells": Labels2DModel.parse(raster, dims=("y", "x"), transformations={"microns": to_microns})}
        }
    else:
        geometry = (
            shapely.points(file_xy)
            if element == "circles"
            else [shapely.Polygon([(x - 3, y), (x, y - 3), (x + 3, y), (x, y + 3)]) for x, y in file_xy]
        )
        frame = gpd.GeoDataFrame({"geometry": geometry}, index=pd.Index(ids, name="cell_id"))
        if element == "circles":
            frame["radius"] = 2.5
        elements = {"shapes": {"cells": ShapesModel.parse(frame, transformations={"microns": to_microns})}}
    order = rng.permutation(30)
    table = ad.AnnData(
        X=sp.csr_matrix(rng.poisson(2.0, (30, 12)).astype(np.float32)),
        obs=pd.DataFrame(
            {
                "region": pd.Categorical(["cells"] * 30),
                "cell_id": ids[order].astype(str) if ids_as_text else ids[order],
            },
            index=[f"row{i}" for i in range(30)],
        ),
    )
    table = TableModel.parse(table, region="cells", region_key="region", instance_key="cell_id")
    spatialdata.SpatialData(**elements, tables={"table": table}).write(path)
    centres = file_xy + (0.5 if element == "labels" else 0.0)  # a label pixel [i, i + 1) is centred at i + 0.5
    return centres[order] * scale + np.asarray(offset)


@FEW
@given(
    element=st.sampled_from(["circles", "outlines", "labels"]),
    scale=st.floats(0.25, 4.0),
    offset=st.tuples(st.floats(-300, 300), st.floats(-300, 300)),
    ids_as_text=st.booleans(),
    seed=st.integers(0, 9),
)
@example(element="circles", scale=0.5, offset=(0.0, 0.0), ids_as_text=False, seed=0)  # NU17
@example(element="outlines", scale=2.0, offset=(-40.0, 15.0), ids_as_text=True, seed=1)
@example(element="labels", scale=0.7, offset=(12.0, -3.0), ids_as_text=False, seed=2)
def test_a_table_without_obsm_spatial_takes_its_cells_from_the_element_it_annotates(
    tmp_path, element, scale, offset, ids_as_text, seed
):
    """NU17 (spatialdata#387, #1150): a table with no obsm['spatial'] annotating circles, outlines or labels is
    read at the circle centres / centroids of its cells, matched by the instance key (rows in any order, ids as
    numbers or text), mapped to microns by the element's transformation."""
    path = tmp_path / f"s{uuid.uuid4().hex}.zarr"
    truth = _store_annotating(path, element, scale, offset, ids_as_text, seed)
    slide = io.read_slide(path)
    assert np.abs(slide.adata.obsm["spatial"] - truth).max() < 1e-6 * max(1.0, abs(max(offset, key=abs)))
    assert any("no obsm['spatial']" in n and "'cells'" in n for n in slide.notices)
    if element == "circles":
        assert abs(slide.spot_diameter_um - 5.0 * scale) < 1e-6


def test_a_table_whose_cells_are_not_in_the_element_it_annotates_is_refused_naming_it(tmp_path):
    import spatialdata

    _store_annotating(tmp_path / "s.zarr", "circles", 1.0, (0.0, 0.0), False, 0)
    sdata = spatialdata.read_zarr(tmp_path / "s.zarr")
    table = sdata.tables["table"]
    table.obs["cell_id"] = table.obs["cell_id"].to_numpy() + 100  # ids of another segmentation
    sdata.write(tmp_path / "other.zarr")
    with pytest.raises(FmscopeError, match=r"30 of the table's 30 cells .* not in 'cells'"):
        io.read_slide(tmp_path / "other.zarr")


def test_a_cropped_store_keeps_the_image_under_its_cells(tmp_path):
    """A bounding-box crop of a spatialdata-io Visium store (images get an offset): the image stays placed."""
    import spatialdata
    import spatialdata_io

    sdata = spatialdata_io.visium(VISIUM, dataset_id="brain", counts_file="filtered_feature_bc_matrix.h5")
    crop = sdata.query.bounding_box(
        axes=("x", "y"),
        min_coordinate=[3000, 3000],
        max_coordinate=[7000, 7000],
        target_coordinate_system="brain",
        filter_table=True,
    )
    crop.write(tmp_path / "crop.zarr")
    slide, whole = io.read_slide(tmp_path / "crop.zarr"), io.read_slide(VISIUM)
    matrix, reference = slide.image_to_microns(), whole.image_to_microns()
    assert slide.adata.n_obs < whole.adata.n_obs and matrix[0, 2] > 0  # an offset, not the origin
    corner = matrix @ np.array([0.0, 0.0, 1.0])
    pixel = np.linalg.solve(reference, corner)  # the crop's first pixel lies where the whole image has it
    h, w = slide.image.shape[:2]
    y, x = int(round(pixel[0])), int(round(pixel[1]))
    assert np.array_equal(
        np.asarray(slide.image)[: h - 1, : w - 1], np.asarray(whole.image)[y : y + h - 1, x : x + w - 1]
    )
    del spatialdata


def test_a_store_of_several_tables_is_refused_naming_them(sdio_store, tmp_path):
    import spatialdata

    sdata = spatialdata.read_zarr(sdio_store)
    sdata.tables["square_008um"] = sdata.tables["table"].copy()
    sdata.write(tmp_path / "two_tables.zarr")
    with pytest.raises(FmscopeError, match=r"2 tables \((table, square_008um|square_008um, table)\)"):
        io.read_slide(tmp_path / "two_tables.zarr")


def test_a_xenium_folder_as_shared_is_read_without_what_it_lacks_or_refused_naming_the_file(tmp_path):
    """NUD4: Xenium outs shared without transcripts.parquet or the outlines are read from the counts and cell table,
    each file left out said; a folder whose cell table is cells.csv.gz (no cells.parquet) is refused naming
    cells.parquet and the conversion (was: pandas' / dask's FileNotFoundError under 'Check the file is complete')."""
    trimmed = tmp_path / "trimmed"
    shutil.copytree(XENIUM_OUTS, trimmed)
    for name in ("transcripts.parquet", "cell_boundaries.parquet", "nucleus_boundaries.parquet"):
        (trimmed / name).unlink()
    slide = io.read_slide(trimmed)
    control = io.read_slide(XENIUM_OUTS)
    assert np.allclose(slide.adata.obsm["spatial"], control.adata.obsm["spatial"])
    assert sum("read without" in line for line in slide.notices) == 3
    csv = tmp_path / "csv"
    shutil.copytree(XENIUM_OUTS, csv)
    pd.read_parquet(csv / "cells.parquet").to_csv(csv / "cells.csv.gz", index=False)
    (csv / "cells.parquet").unlink()
    before = snapshot(csv)
    with pytest.raises(FmscopeError, match=r"without cells\.parquet.*holds .*cells\.csv\.gz") as refused:
        io.read_slide(csv)
    assert "to_parquet" in refused.value.fix and snapshot(csv) == before


# --- sections -------------------------------------------------------------------------------------------


@pytest.mark.slow  # ~28 s in a fresh process (umap's numba compilation); a few seconds after other domain tests
def test_case_s9_two_sections_in_one_h5ad_keep_their_own_domains():
    """The case's sections (A, and B turned by 180 degrees onto the same positions) in one table: each section is
    smoothed exactly as alone, and its domains match the truth as alone (ARI 0.99 alone; 0.44 before the fix)."""
    from sklearn.metrics import adjusted_rand_score

    from fmscope.omics.domains import smooth_embedding

    a, b = semi_synthetic_tissue(side=20, seed=0), semi_synthetic_tissue(side=20, seed=1)
    b.obsm["spatial"] = 19 * 20.0 - np.asarray(b.obsm["spatial"])
    both = ad.concat([a, b], uns_merge="first")
    both.obs["library_id"] = ["A"] * a.n_obs + ["B"] * b.n_obs
    both.obs_names = [f"{lib}_{i}" for i, lib in enumerate(both.obs["library_id"])]
    embedding = baseline_embedding(both)
    together = smooth_embedding(both.obsm["spatial"], embedding, sections=require_sections(both, "two.h5ad"))
    first = np.arange(a.n_obs)
    assert np.allclose(together[first], smooth_embedding(a.obsm["spatial"], embedding[first]), atol=1e-6)
    spatial_domains(both, embedding, n_domains=4)
    for name in "AB":
        part = both[both.obs["library_id"] == name]
        assert adjusted_rand_score(part.obs["true_domain"], part.obs["fmscope_domain"]) >= 0.89
    del both.obs["library_id"]  # the same file without the column: refused, naming the overlap
    with pytest.raises(FmscopeError, match="overlapping coordinates"):
        spatial_domains(both, embedding, n_domains=4)


@settings(max_examples=10, deadline=None)
@given(
    n_sections=st.integers(1, 3),
    key=st.sampled_from([*SECTION_KEYS, "Library_ID", "region"]),
    cells=st.integers(8, 30),
    k=st.integers(1, 8),
)
def test_neighbours_never_cross_sections(n_sections, key, cells, k):
    """Invariant: whatever the section column (any known name or the SpatialData region column) and however
    many sections share the same positions, no cell's neighbours lie in another section."""
    xy = np.c_[np.arange(cells) % 5, np.arange(cells) // 5].astype(float) * 10
    table = ad.AnnData(X=np.ones((cells * n_sections, 3), dtype=np.float32))
    table.obsm["spatial"] = np.tile(xy, (n_sections, 1))
    labels = np.repeat([f"s{i}" for i in range(n_sections)], cells)
    table.obs[key] = pd.Categorical(labels)
    if key == "region":
        table.uns["spatialdata_attrs"] = {
            "region": [f"s{i}" for i in range(n_sections)],
            "region_key": "region",
            "instance_key": "i",
        }
        if n_sections == 1:
            table.uns["spatialdata_attrs"]["region"] = "s0"
    sections = require_sections(table, "t") if n_sections > 1 else None
    if n_sections == 1:
        return
    assert np.array_equal(sections, labels)
    operator = spatial_mean_operator(table.obsm["spatial"], k, sections).tocoo()
    assert np.array_equal(labels[operator.row], labels[operator.col])
    assert np.allclose(np.asarray(operator.sum(axis=1)).ravel(), 1.0)


def test_several_libraries_without_a_section_column_are_refused():
    table = ad.AnnData(X=np.ones((20, 3), dtype=np.float32))
    table.obsm["spatial"] = np.random.default_rng(0).random((20, 2))
    table.uns["spatial"] = {"A": {}, "B": {}}
    with pytest.raises(FmscopeError, match="2 libraries"):
        require_sections(table, "t")


# --- tissue images ----------------------------------------------------------------------------------------


def test_case_s10_a_grayscale_visium_image_is_kept_whole_in_the_written_store(tmp_path):
    import spatialdata

    folder = tmp_path / "gray"
    shutil.copytree(VISIUM, folder)
    png = folder / "spatial" / "tissue_lowres_image.png"
    grey = iio.imread(png)[..., :3].mean(axis=2).round().astype(np.uint8)
    iio.imwrite(png, grey)
    slide = io.read_slide(folder)
    assert slide.image.shape == grey.shape and np.array_equal(slide.image, grey)
    write_result(slide, tmp_path / "gray.zarr")
    image = spatialdata.read_zarr(tmp_path / "gray.zarr").images["tissue"]
    assert (image.sizes["y"], image.sizes["x"]) == grey.shape


LAYOUTS = ["yx", "1yx", "yx1", "yx2", "yx3", "yx4", "3yx", "4yx"]


@settings(max_examples=16, deadline=None)
@given(
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    height=st.integers(5, 40),
    width=st.integers(5, 40),
    seed=st.integers(0, 10),
)
def test_tissue_image_layouts_read_the_same_pixels(layout, dtype, height, width, seed):
    """Invariant: grey in any layout -> (y, x); RGB(A) channels last or first -> (y, x, 3); values and dtype kept."""
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    grey = rng.integers(0, top, (height, width)).astype(dtype)
    rgb = rng.integers(0, top, (height, width, 3)).astype(dtype)
    alpha = np.full((height, width, 1), top, dtype=dtype)
    arrays = {
        "yx": grey,
        "1yx": grey[None],
        "yx1": grey[..., None],
        "yx2": np.dstack([grey, alpha[..., 0]]),
        "yx3": rgb,
        "yx4": np.concatenate([rgb, alpha], axis=2),
        "3yx": rgb.transpose(2, 0, 1),
        "4yx": np.concatenate([rgb, alpha], axis=2).transpose(2, 0, 1),
    }
    image = tissue_image(arrays[layout], "tissue.png")
    expected = grey if layout in ("yx", "1yx", "yx1", "yx2") else rgb
    assert image.dtype == dtype and np.array_equal(image, expected)


def test_a_tissue_image_of_many_channels_is_refused_by_name():
    with pytest.raises(FmscopeError, match="channels"):
        tissue_image(np.zeros((30, 30, 7), dtype=np.uint8), "multiplex.tif")


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_visium_folder_png_modes_are_read_whole(tmp_path, mode):
    """A Visium tissue PNG saved grey, RGBA or 16-bit grey keeps its full size under the spots."""
    from PIL import Image

    folder = tmp_path / mode.replace(";", "")
    shutil.copytree(VISIUM, folder)
    png = folder / "spatial" / "tissue_lowres_image.png"
    rgb = iio.imread(png)[..., :3]
    picture = Image.fromarray(rgb).convert("RGBA" if mode == "RGBA" else "L")
    if mode == "I;16":
        picture = Image.fromarray((np.asarray(picture).astype(np.uint16) * 257))
    picture.save(png)
    slide = io.read_slide(folder)
    assert slide.image.shape[:2] == rgb.shape[:2]
    if mode == "RGBA":
        assert np.array_equal(slide.image, rgb)


def _visium_copy(folder: Path, hires_size: tuple[int, int] | None, drop: dict) -> None:
    """The Visium sample at ``folder``, with a hires image of (width, height) made from the lowres one when asked,
    and scale factors changed by ``drop`` (key -> None: removed; else the value written)."""
    import json

    from PIL import Image

    shutil.copytree(VISIUM, folder)
    if hires_size is not None:
        lowres = Image.open(folder / "spatial" / "tissue_lowres_image.png")
        lowres.resize(hires_size).save(folder / "spatial" / "tissue_hires_image.png")
    path = folder / "spatial" / "scalefactors_json.json"
    factors = json.loads(path.read_text())
    for key, value in drop.items():
        factors.pop(key) if value is None else factors.__setitem__(key, value)
    path.write_text(json.dumps(factors))


@pytest.mark.parametrize("written", [None, 0, "n/a"])
def test_a_visium_image_without_its_scale_factor_is_placed_from_the_other_or_left_out_naming_the_key(
    tmp_path, visium, written
):
    """A tissue image whose scale factor is missing from scalefactors_json.json (was: left out without a word):
    placed from the other image's factor and the two images' sizes when both agree (Space Ranger's hires and
    lowres are downscales of one image), said; else left out with a note naming the image and the key."""
    lowres_factor = 0.051635113
    # lowres alone, its factor missing (the hires factor says nothing about the lowres image's size): left out
    _visium_copy(tmp_path / "lowres", None, {"tissue_lowres_scalef": written})
    slide = io.read_slide(tmp_path / "lowres")
    assert slide.image is None
    assert any("tissue_lowres_image.png left out" in n and "has no tissue_lowres_scalef" in n for n in slide.notices)
    assert np.allclose(slide.adata.obsm["spatial"], visium.adata.obsm["spatial"])
    # hires (2000 x 1997 px: lowres 600 x 599 x 0.17211704 / 0.051635113) without its factor: placed from lowres's
    _visium_copy(tmp_path / "both", (2000, 1997), {"tissue_hires_scalef": written})
    slide = io.read_slide(tmp_path / "both")
    assert slide.image.shape[:2] == (1997, 2000)
    truth = visium.image_affine_um[0, 0] * lowres_factor / 0.17211704  # microns per hires pixel
    assert slide.image_affine_um[0, 0] == pytest.approx(truth, rel=1e-3)
    assert any("has no tissue_hires_scalef" in n and "tissue_hires_image.png placed with" in n for n in slide.notices)
    # a hires image that is not a downscale of the same picture (cropped): left out, the lowres one shown, said
    _visium_copy(tmp_path / "cropped", (2000, 1500), {"tissue_hires_scalef": written})
    slide = io.read_slide(tmp_path / "cropped")
    assert slide.image.shape[:2] == visium.image.shape[:2]
    assert np.allclose(slide.image_affine_um, visium.image_affine_um)
    assert any("tissue_hires_image.png left out" in n for n in slide.notices)
    # the lowres factor missing beside a placed hires image: the hires image used, nothing to say
    _visium_copy(tmp_path / "hires", (2000, 1997), {"tissue_lowres_scalef": None})
    slide = io.read_slide(tmp_path / "hires")
    assert slide.image.shape[:2] == (1997, 2000)
    assert slide.image_affine_um[0, 0] == pytest.approx(truth, rel=1e-6)
    assert not any("scalef" in n for n in slide.notices)


# --- AnnData without X, counts in layers --------------------------------------------------------------------


def _cells(n: int = 120, genes: int = 30, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(rng.poisson(rng.gamma(1.0, 2.0, (3, genes))[rng.integers(0, 3, n)]).astype(np.float32))
    return counts, np.c_[np.arange(n) % 12, np.arange(n) // 12].astype(float) * 15.0


def test_case_s12_h5ad_without_x_takes_the_counts_of_its_layer(tmp_path):
    counts, xy = _cells()
    for name, x, layers in (("with_x.h5ad", counts, {}), ("no_x.h5ad", None, {"counts": counts})):
        table = ad.AnnData(
            X=x,
            layers=layers,
            obs=pd.DataFrame(index=[f"c{i}" for i in range(counts.shape[0])]),
            var=pd.DataFrame(index=[f"G{i}" for i in range(counts.shape[1])]),
        )
        table.obsm["spatial"] = xy
        table.uns["fmscope"] = {"microns_per_unit": 1.0}
        table.write_h5ad(tmp_path / name)
    control, slide = io.read_slide(tmp_path / "with_x.h5ad"), io.read_slide(tmp_path / "no_x.h5ad")
    assert (slide.adata.X != control.adata.X).nnz == 0
    assert any("has no X" in n and "layers['counts']" in n for n in slide.notices)
    assert np.allclose(baseline_embedding(slide.adata), baseline_embedding(control.adata), atol=1e-4)
    write_result(slide, tmp_path / "out.h5ad")
    assert ad.read_h5ad(tmp_path / "out.h5ad").X is None  # the user's table written back as it was


@FEW
@given(
    layout=st.sampled_from(
        [
            "X counts",
            "no X, counts layer",
            "X lognorm, counts layer",
            "X scaled, raw counts",
            "no X, lognorm layer",
            "X scaled only",
            "no X, nothing",
        ]
    ),
    layer_name=st.sampled_from(["counts", "raw_counts", "Counts", "spliced"]),
)
def test_x_and_layers_layouts_give_the_counts_or_a_refusal_naming_them(layout, layer_name):
    """Invariant: the counts are found wherever the layout keeps them (X, any layer, .raw), log-normalised values
    are undone without normalising twice, and a file with no counts-like matrix is refused naming X."""
    import scanpy as sc

    counts, xy = _cells(seed=3)
    table = ad.AnnData(X=counts.copy(), var=pd.DataFrame(index=[f"G{i}" for i in range(counts.shape[1])]))
    lognorm = table.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    scaled = lognorm.copy()
    sc.pp.scale(scaled)
    if layout == "no X, counts layer":
        table = ad.AnnData(X=None, layers={layer_name: counts}, var=table.var)
    elif layout == "X lognorm, counts layer":
        table = lognorm.copy()
        table.layers[layer_name] = counts
    elif layout == "X scaled, raw counts":
        table = scaled.copy()
        table.raw = ad.AnnData(X=counts, var=table.var)
    elif layout == "no X, lognorm layer":
        table = ad.AnnData(X=None, layers={layer_name: lognorm.X}, var=table.var)
    elif layout == "X scaled only":
        table = scaled
    elif layout == "no X, nothing":
        table = ad.AnnData(X=None, obs=pd.DataFrame(index=[str(i) for i in range(counts.shape[0])]), var=table.var)
    if layout in ("X scaled only", "no X, nothing"):
        with pytest.raises(FmscopeError, match=r"\bX\b"):
            counts_view(table)
        return
    view = counts_view(table)
    matrix = view.adata.X.toarray() if sp.issparse(view.adata.X) else np.asarray(view.adata.X)
    truth = counts.toarray()
    if layout == "no X, lognorm layer":  # counts per 10,000: proportional to the counts, cell by cell
        truth = truth / truth.sum(1, keepdims=True) * 1e4
    assert np.allclose(matrix, truth, rtol=1e-3, atol=1e-3)


@pytest.fixture(scope="module")
def visium_counts(visium) -> np.ndarray:
    """The Visium sample's counts (spots with any count), dense float64: the truth the log tests recover."""
    counts = visium.adata.X.toarray() if sp.issparse(visium.adata.X) else np.asarray(visium.adata.X)
    return counts[counts.sum(1) > 0].astype(np.float64)


@FEW
@given(
    base=st.sampled_from([np.e, 2.0, 10.0]),
    total=st.sampled_from([None, 1e4, 1e6]),  # raw counts, CP10k, CPM
    decimals=st.sampled_from([None, 3]),  # as computed, or as a text export rounds them
    subset=st.booleans(),  # genes dropped after normalising (the totals then differ: pbmc68k_reduced's .raw)
    sparse=st.booleans(),
    where=st.sampled_from(["X", "layer"]),
)
@example(base=2.0, total=1e6, decimals=None, subset=False, sparse=False, where="X")  # R's log2(cpm(x) + 1)
@example(base=10.0, total=None, decimals=3, subset=True, sparse=True, where="layer")
def test_log_normalised_values_are_undone_in_their_own_base(
    visium_counts, tmp_path, base, total, decimals, subset, sparse, where
):
    """X = log_b(counts (or CPM / CP10k) + 1) without scanpy's uns['log1p'] record (R, GEO, np.log2 exports) is
    undone in base b, told from the values (was: always exp(X) - 1, log2 values became (c + 1)^1.44 - 1); the
    recovered expression equals the truth, and the note names the base."""
    truth = visium_counts if total is None else visium_counts / visium_counts.sum(1, keepdims=True) * total
    if subset:
        truth = truth[:, : int(truth.shape[1] * 0.7)]
    logged = (np.log1p(truth) / np.log(base)).astype(np.float32)
    if decimals is not None:
        logged = np.round(logged, decimals)
    matrix = sp.csr_matrix(logged) if sparse else logged
    genes = pd.DataFrame(index=[f"G{i}" for i in range(truth.shape[1])])
    table = (
        ad.AnnData(X=matrix, var=genes) if where == "X" else ad.AnnData(X=None, layers={"lognorm": matrix}, var=genes)
    )
    view = counts_view(table)
    got = view.adata.X.toarray() if sp.issparse(view.adata.X) else np.asarray(view.adata.X)
    assert np.allclose(got, truth, rtol=2e-6 if decimals is None else 5e-3, atol=1e-6 if decimals is None else 5e-3)
    shown = "exp(x) - 1" if base == np.e else f"{base:g}^x - 1"
    assert any(f"undone as {shown}: no uns['log1p'] record" in note for note in view.notices)


@pytest.mark.parametrize("base", [None, 2, 10])
def test_scanpy_log1p_record_gives_the_base(visium_counts, base):
    """scanpy's uns['log1p']['base'] (None: natural log) is used as recorded, also read back from an .h5ad."""
    import scanpy as sc

    table = ad.AnnData(X=sp.csr_matrix(visium_counts.astype(np.float32)))
    sc.pp.normalize_total(table, target_sum=1e4)
    truth = table.X.toarray()
    sc.pp.log1p(table, base=base)
    view = counts_view(table)
    assert np.allclose(view.adata.X.toarray(), truth, rtol=1e-4, atol=1e-4)
    assert any("the log base scanpy recorded in uns['log1p']" in note for note in view.notices)


@pytest.mark.parametrize("values", ["corrected counts", "log1p of corrected counts", "log2 rounded to 1 decimal"])
def test_log_normalised_values_of_no_clear_base_are_refused_naming_it(visium_counts, tmp_path, values):
    """Values below 20 that are not log1p of counts or of normalised counts in base e, 2 or 10: the base is not
    guessed; refused naming it and the fixes, nothing written."""
    rng = np.random.default_rng(0)
    corrected = np.clip(visium_counts - rng.uniform(0, 0.9, visium_counts.shape), 0, None) / 8  # ambient removed
    matrix = {
        "corrected counts": corrected,
        "log1p of corrected counts": np.log1p(corrected),
        "log2 rounded to 1 decimal": np.round(np.log2(visium_counts + 1), 1),
    }[values].astype(np.float32)
    table = ad.AnnData(X=matrix, obs=pd.DataFrame(index=[f"s{i}" for i in range(len(matrix))]))
    table.obsm["spatial"] = np.c_[np.arange(len(matrix)) % 50, np.arange(len(matrix)) // 50].astype(float) * 100
    table.uns["fmscope"] = {"microns_per_unit": 1.0}
    table.write_h5ad(tmp_path / "s.h5ad")
    with pytest.raises(FmscopeError, match="cannot tell their log base") as refused:
        io.read_slide(tmp_path / "s.h5ad")
    assert "uns['log1p']" in refused.value.fix and "raw counts" in refused.value.fix
    assert main(["embed", str(tmp_path / "s.h5ad"), "-o", str(tmp_path / "e.h5ad")]) == 1
    assert not (tmp_path / "e.h5ad").exists()


# --- writers ----------------------------------------------------------------------------------------------


def _seuratdisk_like(path: Path) -> None:
    """A slide .h5ad as SeuratDisk's Convert(dest = "h5ad") leaves it: raw/var's column-order lists '_index'."""
    import h5py

    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=sp.csr_matrix(rng.poisson(3.0, (60, 20)).astype(np.float32)))
    adata.obs_names = [f"c{i}" for i in range(60)]
    adata.var_names = [f"G{j}" for j in range(20)]
    adata.obsm["spatial"] = rng.uniform(0, 500, (60, 2))
    adata.uns["fmscope"] = {"microns_per_unit": 1.0}
    adata.raw = adata.copy()
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as handle:
        handle["raw/var"].attrs["column-order"] = np.array(["_index"], dtype=object)


def test_a_seuratdisk_h5ad_with_an_index_column_is_read_so_its_results_write(tmp_path):
    """NUD3: anndata reads raw.var's '_index' column (SeuratDisk) but refuses to write it ('_index' is a reserved
    name): fmscope drops it (it repeats the index) when reading, with a note, and writes .h5ad and .zarr; the input
    is untouched. Another '_index' column (values of its own) is renamed, not lost."""
    from fmscope.omics.reserved_columns import make_writable

    path = tmp_path / "converted.h5ad"
    _seuratdisk_like(path)
    assert "_index" in ad.read_h5ad(path).raw.var.columns
    before = hashlib.md5(path.read_bytes()).hexdigest()
    slide = io.read_slide(path)
    assert any("raw.var has a column '_index'" in line and "dropped" in line for line in slide.notices)
    for name in ("out.h5ad", "out.zarr"):
        write_result(slide, tmp_path / name)
    assert list(ad.read_h5ad(tmp_path / "out.h5ad").raw.var_names) == [f"G{j}" for j in range(20)]
    assert hashlib.md5(path.read_bytes()).hexdigest() == before
    table = ad.AnnData(
        np.zeros((2, 1)), obs=pd.DataFrame({"_index": ["x", "y"], "index": ["a", "b"]}, index=["0", "1"])
    )
    assert "renamed 'index_1'" in make_writable(table, "t")[0]
    assert list(table.obs["index_1"]) == ["x", "y"] and list(table.obs["index"]) == ["a", "b"]


def test_case_s4_output_over_a_users_store_is_refused_and_the_store_kept(sdio_store, tmp_path, capsys):
    users = tmp_path / "analysis.zarr"
    shutil.copytree(sdio_store, users)
    before = snapshot(tmp_path)
    code = main(["embed", str(XENIUM_OUTS), "-o", str(users)])
    err = capsys.readouterr().err
    assert code == 1 and "was not written by fmscope" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_fmscopes_store_and_h5ad_edited_in_place_keeping_their_structure_are_refused(tmp_path):
    """NUB1 / NUB2: the user's in-place edits keep every element name, HDF5 object and shape (and fmscope's stamp):
    a table annotated with spatialdata's delete_element_from_disk + write_element, domain names or values
    corrected with h5py. fmscope's record of what it wrote (sizes + modification times) tells them apart: the
    re-run is refused naming the path and what changed, and the user's edit is kept."""
    import h5py
    import spatialdata

    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=sp.csr_matrix(rng.poisson(2, (40, 12)).astype(np.float32)))
    adata.obs_names, adata.var_names = [f"c{i}" for i in range(40)], [f"G{j}" for j in range(12)]
    adata.obsm["spatial"] = rng.uniform(0, 100, (40, 2))
    adata.obs["domain"] = pd.Categorical(np.where(adata.obsm["spatial"][:, 0] > 50, "0", "1"))
    adata.uns["fmscope"] = {"microns_per_unit": 1.0}
    adata.write_h5ad(tmp_path / "slide.h5ad")
    slide = io.read_slide(tmp_path / "slide.h5ad")
    store, table = tmp_path / "result.zarr", tmp_path / "result.h5ad"
    for path in (store, table):
        write_result(slide, path)
        write_result(slide, path)  # its own, unchanged: replaced
    sdata = spatialdata.read_zarr(store)
    name = next(iter(sdata.tables))
    sdata.tables[name].obs["pathologist_region"] = "tumour"
    sdata.delete_element_from_disk(name)
    sdata.write_element(name)
    edits = {
        "categories renamed": lambda handle: handle["obs/domain/categories"].__setitem__(..., ["tumour", "stroma"]),
        "values corrected": lambda handle: handle["X/data"].__setitem__(0, 99.0),
    }
    for what, edit in [("table annotated", None), *edits.items()]:
        path = store if edit is None else table
        if edit is not None:
            with h5py.File(table, "r+") as handle:
                edit(handle)
        before = snapshot(tmp_path)
        with pytest.raises(FmscopeError, match="changed since fmscope wrote it") as refused:
            write_result(slide, path)
        assert str(path) in str(refused.value) and "new name" in str(refused.value), what
        assert snapshot(tmp_path) == before, what
        assert read_stamp(path)["written_by"] == "fmscope"  # the stamp stayed: it never makes a file replaceable
    assert "pathologist_region" in spatialdata.read_zarr(store).tables[name].obs
    with h5py.File(table, "r") as handle:
        assert [v.decode() for v in handle["obs/domain/categories"][...]] == ["tumour", "stroma"]
        assert handle["X/data"][0] == 99.0


def test_fmscope_replaces_its_own_outputs_only(tmp_path, capsys):
    import spatialdata
    from spatialdata.models import ShapesModel

    out, table = tmp_path / "result.zarr", tmp_path / "result.h5ad"
    for path in (out, table):
        assert main(["embed", str(XENIUM_OUTS), "-o", str(path)]) == 0
        assert read_stamp(path)["written_by"] == "fmscope"
        assert main(["embed", str(XENIUM_OUTS), "-o", str(path)]) == 0  # its own output: replaced
    sdata = spatialdata.read_zarr(out)
    sdata["my_notes"] = ShapesModel.parse(np.zeros((1, 2)), geometry=0, radius=np.ones(1))
    sdata.write_element("my_notes")  # the user adds an element to fmscope's store: no longer only fmscope's
    before = snapshot(tmp_path)
    assert main(["embed", str(XENIUM_OUTS), "-o", str(out)]) == 1
    assert "shapes/my_notes" in capsys.readouterr().err and snapshot(tmp_path) == before
    import h5py

    with h5py.File(table, "r+") as handle:  # edited in place with h5py: the stamp stays, the file is the user's now
        handle.create_group("uns/my_curated_notes").create_dataset("n", data=[1, 2, 3])
    before = snapshot(tmp_path)
    assert main(["embed", str(XENIUM_OUTS), "-o", str(table)]) == 1
    assert "changed since fmscope wrote it" in capsys.readouterr().err and snapshot(tmp_path) == before
    ad.read_h5ad(table).write_h5ad(table)  # rewritten by the user with anndata: the stamp is gone
    before = snapshot(tmp_path)
    assert main(["embed", str(XENIUM_OUTS), "-o", str(table)]) == 1
    assert "not written by fmscope" in capsys.readouterr().err and snapshot(tmp_path) == before


@FEW
@given(zarr_format=st.sampled_from([2, 3]), sparse=st.booleans(), microns=st.sampled_from([0.5, 1.0, 0.7246]))
@example(zarr_format=2, sparse=True, microns=0.7246)  # NUF3: adata.write_zarr with anndata's default format
def test_an_anndata_zarr_is_read_as_its_h5ad_twin(visium, tmp_path, zarr_format, sparse, microns):
    """NUF3: an AnnData written by ``adata.write_zarr`` (zarr v2 or v3, as anndata writes them) is one AnnData, not a
    SpatialData store: read as the .h5ad of the same table (the same cells, counts and coordinates in microns), by
    the slide reader and the reference reader; the written store's results reopen; the input untouched."""
    from fmscope.omics.reference import obs_columns, read_reference

    table = visium.adata[:300].copy()
    table.X = sp.csr_matrix(table.X) if sparse else np.asarray(table.X.todense() if sp.issparse(table.X) else table.X)
    table.obsm["spatial"] = np.asarray(table.obsm["spatial"]) / microns
    table.uns = {"fmscope": {"microns_per_unit": microns}}
    table.obs["cell_type"] = np.where(np.arange(300) % 2, "L2/3 IT", "Astro")
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    table.write_h5ad(folder / "slide.h5ad")
    with ad.settings.override(zarr_write_format=zarr_format):
        table.write_zarr(folder / "slide.zarr")
    assert io.is_anndata_zarr(folder / "slide.zarr") and not io.is_anndata_zarr(VISIUM)
    before = snapshot(folder / "slide.zarr")
    twin, slide = io.read_slide(folder / "slide.h5ad"), io.read_slide(folder / "slide.zarr")
    assert list(slide.adata.obs_names) == list(twin.adata.obs_names)
    assert np.allclose(slide.adata.obsm["spatial"], twin.adata.obsm["spatial"])
    assert np.allclose(slide.adata.obsm["spatial"], visium.adata.obsm["spatial"][:300], atol=1e-3)
    assert (slide.adata.X != twin.adata.X).sum() == 0 if sparse else np.array_equal(slide.adata.X, twin.adata.X)
    reference = read_reference(folder / "slide.zarr", label_key="cell_type")
    assert reference.adata.n_obs == 300 and "cell_type" in obs_columns(folder / "slide.zarr")
    write_result(slide, folder / "out.zarr")
    assert io.read_slide(folder / "out.zarr").adata.n_obs == 300
    assert snapshot(folder / "slide.zarr") == before


MERSCOPE = samples.sample_data_dir() / "merfish_u2os_merscope"


@pytest.fixture(scope="module")
def merscope_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sample's counts and centres, as the MERSCOPE files hold them (ids as text)."""
    counts = pd.read_csv(MERSCOPE / "cell_by_gene.csv", dtype={"cell": str}).set_index("cell", drop=False)
    metadata = pd.read_csv(MERSCOPE / "cell_metadata.csv", dtype={"EntityID": str}).set_index("EntityID", drop=False)
    return counts, metadata


@FEW
@given(seed=st.integers(0, 2**16), shuffle=st.booleans(), drop_counts=st.integers(0, 5), drop_centres=st.integers(0, 5))
@example(seed=1, shuffle=True, drop_counts=0, drop_centres=0)  # NUF5: the same cells in another order
def test_merscope_counts_and_centres_are_joined_by_cell_id(
    merscope_tables, tmp_path, seed, shuffle, drop_counts, drop_centres
):
    """NUF5: cell_metadata.csv in another row order than cell_by_gene.csv (VPT outputs: spatialdata#385), or
    either file lacking some cells: each cell read has its own counts and its own centre (joined by EntityID), the
    cells of one file only left out with a note naming how many; the user's files untouched."""
    counts, metadata = merscope_tables
    rng = np.random.default_rng(seed)
    folder = tmp_path / uuid.uuid4().hex
    shutil.copytree(MERSCOPE, folder)
    order = rng.permutation(len(metadata)) if shuffle else np.arange(len(metadata))
    kept = counts.index[rng.permutation(len(counts))[drop_counts:]]
    written_counts = counts[counts.index.isin(kept)]  # in the file's order
    written_metadata = metadata.iloc[order[drop_centres:]]
    written_counts.to_csv(folder / "cell_by_gene.csv", index=False)
    written_metadata.to_csv(folder / "cell_metadata.csv", index=False)
    before = snapshot(folder)
    slide = io.read_slide(folder)
    both = written_counts.index[written_counts.index.isin(written_metadata.index)]
    ids = pd.Index(slide.adata.obs["EntityID"].astype(str))
    assert list(ids) == list(both)
    centres = written_metadata.loc[ids, ["center_x", "center_y"]].to_numpy(float)
    assert np.abs(np.asarray(slide.adata.obsm["spatial"], float) - centres).max() < 1e-6
    gene = str(slide.adata.var_names[0])
    column = slide.adata[:, gene].X
    column = np.asarray(column.todense() if sp.issparse(column) else column).ravel()
    assert np.array_equal(column, written_counts.loc[ids, gene].to_numpy(float))
    if shuffle or drop_counts or drop_centres:
        assert any("joined by cell id" in notice for notice in slide.notices)
    without_centre = (~written_counts.index.isin(written_metadata.index)).sum()
    without_counts = (~written_metadata.index.isin(written_counts.index)).sum()
    said = " ".join(slide.notices)
    assert (f"{without_centre} cell(s) of cell_by_gene.csv have no centre" in said) == bool(without_centre)
    assert (f"{without_counts} cell(s) of cell_metadata.csv have no counts" in said) == bool(without_counts)
    assert snapshot(folder) == before


def test_merscope_tables_of_no_common_cell_or_a_repeated_id_are_refused_naming_both(merscope_tables, tmp_path):
    counts, metadata = merscope_tables
    folder = tmp_path / "other_run"
    shutil.copytree(MERSCOPE, folder)
    other = metadata.copy()
    other["EntityID"] = "9" + other["EntityID"] + "00"
    other.to_csv(folder / "cell_metadata.csv", index=False)
    with pytest.raises(FmscopeError, match="share no cell id") as refused:
        io.read_slide(folder)
    assert "cell_by_gene.csv" in str(refused.value) and "cell_metadata.csv" in str(refused.value)
    pd.concat([metadata, metadata.iloc[:2]]).to_csv(folder / "cell_metadata.csv", index=False)
    with pytest.raises(FmscopeError, match="more than once"):
        io.read_slide(folder)


def _visium_h5ad(
    path: Path, turns: int, flip: bool, swap: bool, pxl_columns: bool, image: bool, mpp: float, left: bool
):
    """A scanpy-layout Visium .h5ad (written by anndata) of Visium's hex grid (array_col 0-127, array_row 0-77),
    its image scanned turned by ``turns`` x 90 degrees and mirrored (``flip``), the spots under a tissue ellipse
    off the image's diagonal; ``obsm['spatial']`` (y, x) when ``swap``. Returns the true (x, y) pixels."""
    rows, cols = np.meshgrid(np.arange(78), np.arange(128), indexing="ij")
    keep = (rows % 2) == (cols % 2)
    rows, cols = rows[keep], cols[keep]
    um = np.column_stack([cols * 50.0 - 3175.0, rows * 50.0 * np.sqrt(3) - 3300.0])
    if flip:
        um[:, 0] = -um[:, 0]
    for _ in range(turns):
        um = np.column_stack([-um[:, 1], um[:, 0]])
    full = 8000.0 / mpp  # the full-resolution image's side, pixels
    xy = (um + 4000.0) / mpp
    side = 400
    scale = side / full
    centre = np.array([0.27, 0.7] if left else [0.7, 0.27]) * side
    inside = (((xy * scale - centre) / np.array([0.22, 0.13]) / side) ** 2).sum(axis=1) < 1
    xy, rows, cols = xy[inside], rows[inside], cols[inside]
    rng = np.random.default_rng(turns * 8 + flip)
    table = ad.AnnData(
        sp.csr_matrix(rng.poisson(2.0, (len(xy), 20)).astype(np.float32)),
        obs=pd.DataFrame(
            {"in_tissue": 1, "array_row": rows, "array_col": cols}, index=[f"s{i}-1" for i in range(len(xy))]
        ),
        var=pd.DataFrame(index=[f"G{j}" for j in range(20)]),
    )
    if pxl_columns:
        table.obs["pxl_row_in_fullres"], table.obs["pxl_col_in_fullres"] = xy[:, 1], xy[:, 0]
    table.obsm["spatial"] = xy[:, ::-1].copy() if swap else xy.copy()
    factors = {"tissue_hires_scalef": scale, "spot_diameter_fullres": 55.0 / mpp, "fiducial_diameter_fullres": 1.0}
    library = {"scalefactors": factors}
    if image:
        yy, xx = np.mgrid[0:side, 0:side]
        tissue = (((np.stack([xx, yy], -1) - centre) / np.array([0.22, 0.13]) / side) ** 2).sum(-1) < 1.05
        pixels = np.where(tissue[..., None], [180, 110, 160], [235, 232, 236]) + rng.normal(0, 8, (side, side, 3))
        library["images"] = {"hires": np.clip(pixels, 0, 255).astype(np.uint8)}
    table.uns["spatial"] = {"slice1": library}
    table.write_h5ad(path)
    return xy


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    turns=st.integers(0, 3),
    flip=st.booleans(),
    swap=st.booleans(),
    pxl_columns=st.booleans(),
    image=st.booleans(),
    mpp=st.sampled_from([0.7, 1.6, 2.5]),
    left=st.booleans(),
)
@example(turns=0, flip=False, swap=True, pxl_columns=False, image=True, mpp=1.6, left=True)  # NUF4: Seurat's (y, x)
@example(turns=1, flip=False, swap=False, pxl_columns=False, image=True, mpp=1.6, left=True)  # turned: kept
def test_a_visium_h5ad_written_y_x_is_swapped_back_only_on_unambiguous_evidence(
    tmp_path, turns, flip, swap, pxl_columns, image, mpp, left
):
    """NUF4: ``obsm['spatial']`` as (y, x) is swapped back, with a note, when Space Ranger's pxl columns say so, or
    when the grid puts array_col along y and the tissue image shows the spots transposed; a table in Space
    Ranger's layout (any of the 8 image orientations) is never changed; a swap that looks like Space Ranger's
    layout (a turned image, no pxl columns) is left as it is (nothing tells it); the ambiguous case is said."""
    path = tmp_path / f"{uuid.uuid4().hex}.h5ad"
    truth = _visium_h5ad(path, turns, flip, swap, pxl_columns, image, mpp, left)
    given = truth[:, ::-1] if swap else truth
    slide = io.read_slide(path)
    read = slide.file_spatial if slide.file_spatial is not None else np.asarray(slide.adata.obsm["spatial"])
    said = " ".join(slide.notices)
    detectable = pxl_columns or (image and turns % 2 == 0)
    expected = truth if (not swap or detectable) else given
    assert np.allclose(read, expected), (said, turns, flip)
    assert ("swapped back" in said) == (swap and detectable)
    ambiguous = not pxl_columns and not image and (turns % 2 == 1) != swap
    assert ("read as given" in said) == ambiguous
    assert slide.units.scale == pytest.approx(mpp, rel=0.01)


SLASHED = st.sampled_from(["L2/3 IT", "L5/6 NP", "CD4+/CD45RA+/CD25- Naive T", "KRT6A/B/C", "a//b", "/x", "y/"])


@FEW
@given(
    names=st.lists(SLASHED, min_size=1, max_size=3, unique=True),
    taken=st.booleans(),
    suffix=st.sampled_from([".zarr", ".h5ad"]),
)
@example(names=["L2/3 IT", "L5/6 NP"], taken=False, suffix=".zarr")  # NUF1: Allen cell types, deconvolve -o .zarr
@example(names=["L2/3 IT", "/x"], taken=True, suffix=".h5ad")  # HDF5: a column '/x' would be written at the root
def test_names_with_a_slash_are_written_as_legal_keys_and_kept(visium, tmp_path, names, taken, suffix):
    """NUF1: names with '/' (cell types, CosMx genes) as obs columns, obsm DataFrame columns, obsm / layers names and
    uns keys: spatialdata refuses table keys of other characters than letters, digits, '_-.' (the space too), zarr
    '/' in any key, and HDF5 nests uns['a/b'] as uns['a']['b']. The writer writes them with '_' (a number added
    when taken), keeps the originals in uns['fmscope']['renamed_keys'] and says so; the file reopens (spatialdata /
    anndata) with every value where the names say; the slide in memory is unchanged."""
    slide = io.read_slide(visium.source)
    n = slide.adata.n_obs
    rng = np.random.default_rng(0)
    values = {name: rng.random(n) for name in names}
    slide.adata.obsm["fmscope_proportions"] = pd.DataFrame(values, index=slide.adata.obs_names)
    for name in names:
        slide.adata.obs[f"fmscope_{name}"] = values[name]
    slide.adata.obsm[f"by/{names[0]}"] = np.column_stack([values[names[0]]])
    slide.adata.layers[names[0]] = slide.adata.X.copy()
    slide.adata.uns["types"] = {name: name for name in names}
    if taken:  # the legal name already used: another is chosen
        slide.adata.obs[f"fmscope_{names[0]}".replace("/", "_")] = -1.0
    path = tmp_path / f"{uuid.uuid4().hex}{suffix}"
    notes = write_result(slide, path)
    assert len(notes) == 1 and "uns['fmscope']['renamed_keys']" in notes[0] and names[0] in notes[0]
    assert list(slide.adata.obsm["fmscope_proportions"].columns) == names  # the slide in memory untouched
    if suffix == ".zarr":
        import spatialdata

        table = next(iter(spatialdata.read_zarr(path).tables.values()))
    else:
        table = ad.read_h5ad(path)
    renamed = table.uns["fmscope"]["renamed_keys"]
    original = {
        (where, str(name)): str(key) for where, key, name in zip(renamed["where"], renamed["key"], renamed["name"])
    }
    for name in names:
        key = original.get(("uns['types']", name), name)
        assert table.uns["types"][key] == name
        layer = original.get(("layers", names[0]), names[0])
        assert layer in table.layers
        column = original[("obs columns", f"fmscope_{name}")]
        assert "/" not in column and np.allclose(table.obs[column], values[name])
        assert (" " in column) == (suffix == ".h5ad" and " " in name)  # a store refuses spaces too
        column = original[("obsm['fmscope_proportions'] columns", name)]
        assert np.allclose(table.obsm["fmscope_proportions"][column], values[name])
    assert np.allclose(np.asarray(table.obsm[original[("obsm", f"by/{names[0]}")]]).ravel(), values[names[0]])
    if taken:
        other = f"fmscope_{names[0]}".replace("/", "_")
        kept = original.get(("obs columns", other), other)
        assert (table.obs[kept] == -1.0).all()
        assert kept != original.get(("obs columns", f"fmscope_{names[0]}"), f"fmscope_{names[0]}")


# --- obsm['spatial'] as a DataFrame (NUH2) ------------------------------------------------------------------

NAMED_XY = [
    ("x", "y"),
    ("X", "Y"),
    ("imagecol", "imagerow"),  # Seurat's GetTissueCoordinates (imagerow first)
    ("x_centroid", "y_centroid"),  # Xenium cells table
    ("pxl_col_in_fullres", "pxl_row_in_fullres"),
    ("centroidX", "centroidY"),
    ("Centroid.X", "Centroid.Y"),
    ("global_x", "global_y"),  # MERSCOPE
]


@FEW
@given(
    names=st.sampled_from(NAMED_XY),
    y_first=st.booleans(),
    id_column=st.booleans(),
    store=st.booleans(),
)
@example(names=("x", "y"), y_first=True, id_column=False, store=False)
@example(names=("imagecol", "imagerow"), y_first=True, id_column=True, store=False)
def test_an_obsm_spatial_dataframe_is_read_by_its_column_names(tmp_path, names, y_first, id_column, store):
    """A DataFrame obsm['spatial'] (anndata allows it) is read by its column names, whatever their order, in an
    .h5ad or a store's table (was: positionally, a (y, x) frame transposed every cell without a word); a column
    naming no axis (a cell id) is left out; the reading is said."""
    counts, xy = _cells()
    xy = xy * np.array([1.0, 3.0]) + np.array([7.0, 0.0])  # x and y told apart
    cells = [f"c{i}" for i in range(counts.shape[0])]
    columns = {names[0]: xy[:, 0], names[1]: xy[:, 1]}
    if y_first:
        columns = dict(reversed(list(columns.items())))
    if id_column:
        columns = {"cell": cells, **columns}
    table = ad.AnnData(X=counts, obs=pd.DataFrame(index=cells))
    table.obsm["spatial"] = pd.DataFrame(columns, index=cells)
    table.uns["fmscope"] = {"microns_per_unit": 1.0}
    path = tmp_path / f"{uuid.uuid4().hex}.h5ad"
    table.write_h5ad(path)
    if store:
        import spatialdata
        from spatialdata.models import TableModel

        path = path.with_suffix(".zarr")
        spatialdata.SpatialData(tables={"table": TableModel.parse(table)}).write(path)
    slide = io.read_slide(path)
    assert np.allclose(slide.adata.obsm["spatial"], xy)
    assert any(f"x = {names[0]!r}, y = {names[1]!r}" in note for note in slide.notices)


@pytest.mark.parametrize(
    "columns",
    [("spatial_1", "spatial_2"), ("x", "x_centroid"), ("a", "b"), ("x", "cell"), ("xy", "yx")],
)
def test_an_obsm_spatial_dataframe_whose_names_do_not_say_x_and_y_is_refused_naming_them(tmp_path, columns):
    counts, xy = _cells()
    cells = [f"c{i}" for i in range(counts.shape[0])]
    table = ad.AnnData(X=counts, obs=pd.DataFrame(index=cells))
    table.obsm["spatial"] = pd.DataFrame(dict(zip(columns, xy.T)), index=cells)
    table.uns["fmscope"] = {"microns_per_unit": 1.0}
    table.write_h5ad(tmp_path / "cells.h5ad")
    with pytest.raises(FmscopeError, match=rf"column names \('{columns[0]}', '{columns[1]}'\) do not say"):
        io.read_slide(tmp_path / "cells.h5ad")


def test_an_obsm_spatial_array_or_numbered_frame_stays_x_y(tmp_path):
    """A plain array is (x, y) by the format's convention; a frame of numbered columns 0, 1 says only that order."""
    counts, xy = _cells()
    xy = xy * np.array([1.0, 3.0])
    cells = [f"c{i}" for i in range(counts.shape[0])]
    for name, spatial in (("array", xy), ("numbered", pd.DataFrame(xy, index=cells, columns=["0", "1"]))):
        table = ad.AnnData(X=counts, obs=pd.DataFrame(index=cells))
        table.obsm["spatial"] = spatial
        table.uns["fmscope"] = {"microns_per_unit": 1.0}
        table.write_h5ad(tmp_path / f"{name}.h5ad")
        assert np.allclose(io.read_slide(tmp_path / f"{name}.h5ad").adata.obsm["spatial"], xy)
