"""`fmscope eval --label N` on multi-label files as MSD / KiTS ship them (1 = organ, 2 = tumour), NIfTI written by
nibabel: a label in neither file is refused naming the labels each holds, never scored as a perfect match of two
empty masks; two files with no label at all print nan, said (nnU-Net's 0 / 0: MIC-DKFZ/nnUNet#1065); NUC8."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope.cli import main


def test_a_label_in_neither_file_is_refused_and_empty_masks_are_not_a_perfect_score(tmp_path, capsys):
    ii, jj, _ = np.mgrid[:48, :48, :4]
    truth = np.zeros((48, 48, 4), np.uint8)
    truth[(ii - 24) ** 2 + (jj - 24) ** 2 < 200] = 1  # organ
    truth[(ii - 20) ** 2 + (jj - 26) ** 2 < 20] = 2  # tumour
    pred = ((ii - 25) ** 2 + (jj - 24) ** 2 < 190).astype(np.uint8)
    affine = np.diag([0.8, 0.8, 2.5, 1])
    for name, array in (("truth", truth), ("pred", pred), ("empty", np.zeros_like(pred))):
        nib.save(nib.Nifti1Image(array, affine), tmp_path / f"{name}.nii.gz")

    def evaluate(*files_and_options) -> tuple[int, str, str]:
        code = main(["eval", *map(str, files_and_options)])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = evaluate(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz", "--label", 1)
    assert code == 0 and out.startswith("dice 0.8951")
    code, out, _ = evaluate(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz", "--label", 2)  # missed: 0, scored
    assert code == 0 and out.startswith("dice 0.0000")
    code, out, err = evaluate(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz", "--label", 3)
    assert code == 1 and out == "" and "Traceback" not in err
    assert "Label 3 is in neither the prediction (labels: 1) nor the truth (labels: 1, 2)" in err
    code, out, err = evaluate(tmp_path / "empty.nii.gz", tmp_path / "empty.nii.gz")
    assert code == 0 and out.startswith("dice nan  nsd@1mm nan") and "both masks are empty" in err


SLICER_SEG_HEADER = (
    "NRRD0004\n"
    "# Complete NRRD file format specification at:\n"
    "# http://teem.sourceforge.net/nrrd/format.html\n"
    "type: unsigned char\ndimension: 3\nspace: left-posterior-superior\nsizes: {sizes}\n"
    "space directions: (-0.8,0,0) (0,-0.8,0) (0,0,2)\nkinds: domain domain domain\nencoding: gzip\n"
    "space origin: ({origin})\n"
    "Segmentation_MasterRepresentation:=Binary labelmap\nSegmentation_ReferenceImageExtentOffset:={offset}\n"
    "Segment0_ID:=Segment_1\nSegment0_LabelValue:=1\nSegment0_Layer:=0\nSegment0_Name:=tumour\n\n"
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(0, 9)),
    size=st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(1, 9)),
    flips=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    order=st.permutations([0, 1, 2]),
)
def test_a_truth_cropped_to_a_block_of_the_grid_is_scored_on_the_predictions_grid(
    tmp_path_factory, capsys, start, size, flips, order
):
    """NUE1 and its kind: a truth that is a sub-block of the prediction's voxel lattice (3D Slicer's .seg.nrrd saved
    cropped to its minimum extent; here any block cut by SimpleITK's RegionOfInterest, which keeps the physical
    placement, in any axis order) is put in its place on the prediction's grid, the rest background, and scored
    (Dice of the masks on the full grid, a note naming the crop); the block moved by half a voxel, a block reaching
    outside the prediction, or another spacing are refused naming both grids (was: "Shapes differ" for any crop)."""
    tmp_path = tmp_path_factory.mktemp("crop")
    rng = np.random.default_rng(sum(start) + 7 * sum(size))
    full = (rng.random((8, 12, 12)) > 0.5).astype(np.uint8)  # (z, y, x)
    pred = sitk.GetImageFromArray(full)
    pred.SetSpacing((0.8, 0.8, 2.0))
    pred.SetOrigin((-10.0, 4.0, 30.0))
    sitk.WriteImage(pred, str(tmp_path / "pred.nii.gz"))
    index = [start[2], start[1], start[0]]  # SimpleITK (x, y, z)
    extent = [min(size[2], 12 - index[0]), min(size[1], 12 - index[1]), min(size[0], 8 - index[2])]
    block = sitk.RegionOfInterest(pred, extent, index)
    truth = sitk.PermuteAxes(sitk.Flip(block, list(flips)), list(order))
    sitk.WriteImage(truth, str(tmp_path / "truth.seg.nrrd"))
    inside = np.zeros_like(full)
    inside[index[2] : index[2] + extent[2], index[1] : index[1] + extent[1], index[0] : index[0] + extent[0]] = 1
    expected = dice(full > 0, (full * inside) > 0)
    code = main(["eval", str(tmp_path / "pred.nii.gz"), str(tmp_path / "truth.seg.nrrd")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith(f"dice {expected:.4f}")
    if tuple(extent) != (12, 12, 8):
        assert "block of the grid (cropped" in err and "background" in err
    for name, moved in (
        ("half", tuple(np.add(truth.GetOrigin(), (0.4, 0.0, 0.0)))),
        ("outside", tuple(np.add(block.GetOrigin(), (-0.8 * (index[0] + 1), 0.0, 0.0)))),
    ):
        shifted = sitk.Image(truth if name == "half" else block)
        shifted.SetOrigin(moved)
        sitk.WriteImage(shifted, str(tmp_path / f"{name}.nrrd"))
        assert main(["eval", str(tmp_path / "pred.nii.gz"), str(tmp_path / f"{name}.nrrd")]) == 1
        err = capsys.readouterr().err
        assert "different grids" in err and "prediction: shape (8, 12, 12)" in err


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def test_a_slicer_seg_nrrd_cropped_to_its_minimum_extent_is_scored(tmp_path, capsys):
    """NUE1 as 3D Slicer writes it: LPS .seg.nrrd of the segment's extent (`space origin` and
    `Segmentation_ReferenceImageExtentOffset`), the prediction a RAS NIfTI of the image (nibabel): scored, Dice 1."""
    z, y, x = np.mgrid[:20, :64, :64]
    sphere = ((z - 10) ** 2 + (y - 32) ** 2 + (x - 32) ** 2 < 8**2).astype(np.uint8)
    nib.save(nib.Nifti1Image(np.transpose(sphere, (2, 1, 0)), np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "p.nii.gz")
    header = SLICER_SEG_HEADER.format(sizes="17 17 17", origin="-19.2,-19.2,4", offset="24 24 2")
    (tmp_path / "t.seg.nrrd").write_bytes(header.encode() + gzip.compress(sphere[2:19, 24:41, 24:41].tobytes()))
    assert main(["eval", str(tmp_path / "p.nii.gz"), str(tmp_path / "t.seg.nrrd")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("dice 1.0000") and "17 x 17 x 17 block of the grid" in err
