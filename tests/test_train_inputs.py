"""What `fmscope train-segmenter` trains on (docs/fine_tuning.md: "2D images, RGB images, (z, y, x) stacks or
NIfTI / NRRD volumes (as slices)"), read by each family's own reader (:mod:`fmscope.imaging.slices`): volumes as
`fmscope volume` reads them, TIFF stacks as `fmscope track` does, pictures as `fmscope segment` does. Files are
written by the libraries that write them in the wild (SimpleITK, nibabel, tifffile, Pillow); NUC7."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from cli_runner import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fmscope.errors import FmscopeError
from fmscope.imaging.labels import read_label_image
from fmscope.imaging.slices import labels_on_image_grid, read_slices
from fmscope.training.segmenter import LabelledImage, copies_note, labelled_images, split_holdout


def discs(slices: int, side: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like (slices, side, side) int16 volume with two bright discs through every slice, and their ids 1, 2."""
    volume = np.random.default_rng(seed).normal(0, 30, (slices, side, side))
    labels = np.zeros(volume.shape, np.uint8)
    yy, xx = np.mgrid[:side, :side]
    for obj, (cx, cy) in enumerate([(side // 4, side // 3), (3 * side // 4, 2 * side // 3)], start=1):
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (side // 8) ** 2
        volume[:, disc] += 400
        labels[:, disc] = obj
    return volume.astype(np.int16), labels


def test_volumes_and_tiff_stacks_are_read_as_their_slices(tmp_path):
    """NIfTI (SimpleITK and nibabel's voxel order), NRRD, a (z, y, x) TIFF (3 planes included, which tifffile stores
    as planar RGB) and pages written one by one: each read as its slices, equal to its labels' grid, split into one
    training pair per slice; a 2D PNG stays one image; a TIFF of z and channels is refused naming the channels."""
    volume, labels = discs(5)
    for suffix in (".nii.gz", ".nrrd"):
        image = sitk.GetImageFromArray(volume)
        image.SetSpacing((0.8, 0.8, 2.5))
        sitk.WriteImage(image, str(tmp_path / f"ct{suffix}"))
        mask = sitk.GetImageFromArray(labels)
        mask.CopyInformation(image)
        sitk.WriteImage(mask, str(tmp_path / f"ct_labels{suffix}"))
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])  # nibabel: (x, y, z) voxels, the MSD / nnU-Net layout
    nib.save(nib.Nifti1Image(volume.transpose(2, 1, 0), affine), tmp_path / "case_0000.nii.gz")
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), affine), tmp_path / "case.nii.gz")
    tifffile.imwrite(tmp_path / "stack.tif", volume)
    tifffile.imwrite(tmp_path / "stack_labels.tif", labels)
    tifffile.imwrite(tmp_path / "three.tif", (volume[:3] // 8 + 128).astype(np.uint8))  # stored as planar RGB
    tifffile.imwrite(tmp_path / "three_labels.tif", labels[:3])
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:  # one series a page, as loops over slices write them
        for plane in volume:
            tif.write(plane)
    pairs = [
        ("ct.nii.gz", "ct_labels.nii.gz", volume),
        ("ct.nrrd", "ct_labels.nrrd", volume),
        ("case_0000.nii.gz", "case.nii.gz", volume),
        ("stack.tif", "stack_labels.tif", volume),
        ("three.tif", "three_labels.tif", (volume[:3] // 8 + 128).astype(np.uint8)),
        ("pages.tif", "stack_labels.tif", volume),
    ]
    for image_name, labels_name, expected in pairs:
        slices, _ = read_slices(tmp_path / image_name)
        assert np.array_equal(slices, expected), image_name
        items = labelled_images(slices, read_label_image(tmp_path / labels_name).array, image_name)
        assert [item.name for item in items] == [f"{image_name}[{z}]" for z in range(len(expected))]
        assert all(set(np.unique(item.labels)) == {0, 1, 2} for item in items)
    Image.fromarray((volume[0] // 8 + 128).astype(np.uint8)).save(tmp_path / "slice.png")
    assert read_slices(tmp_path / "slice.png")[0].shape == (64, 64)
    hyperstack = np.stack([volume, volume], axis=1)  # (z, c, y, x), as Fiji saves a two-channel z-stack
    tifffile.imwrite(tmp_path / "zc.tif", hyperstack, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(FmscopeError, match="2 channels") as refused:
        read_slices(tmp_path / "zc.tif")
    assert "--channel" not in str(refused.value)  # train-segmenter has none: the fix names what to save


def test_label_volumes_are_put_on_their_images_grid_or_refused(tmp_path):
    """A label volume holding the image's voxels in another axis order (MONAI Orientationd / nibabel
    as_closest_canonical: axes flipped, the direction changed to match) is trained on in the image's order, with a
    note; one moved by a voxel lies on another grid: `train-segmenter` refuses it before loading a model."""
    volume, labels = discs(3, side=32)
    labels[0, 0, 0] = 3  # a corner: a wrong reordering loses it
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 2.5))
    image.SetOrigin((-10.0, 20.0, 5.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    sitk.WriteImage(sitk.Flip(mask, [True, True, False]), str(tmp_path / "flipped.nii.gz"))  # RAS storage of LPS
    moved = sitk.Image(mask)
    moved.SetOrigin((-9.2, 20.0, 5.0))
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    slices, grid = read_slices(tmp_path / "ct.nii.gz")
    flipped = read_label_image(tmp_path / "flipped.nii.gz", instances=False)
    assert not np.array_equal(flipped.array, labels)
    on_grid, note = labels_on_image_grid(flipped.array, flipped.geometry, slices.shape, grid, "ct.nii.gz")
    assert np.array_equal(on_grid, labels) and "another axis order" in note
    shifted = read_label_image(tmp_path / "moved.nii.gz", instances=False)
    with pytest.raises(FmscopeError, match="lie on another grid than the image"):
        labels_on_image_grid(shifted.array, shifted.geometry, slices.shape, grid, "ct.nii.gz")
    args = ("--labels", tmp_path / "moved.nii.gz", "-o", tmp_path / "tuned.pt")
    result = run_cli("train-segmenter", tmp_path / "ct.nii.gz", *args)
    assert result.returncode == 1 and "another grid" in result.stderr and not (tmp_path / "tuned.pt").exists()


@pytest.mark.slow
def test_cli_trains_on_a_nifti_volume_as_slices(tmp_path):
    """NUC7: `train-segmenter ct.nii.gz --labels ct_labels.nii.gz` (the MSD layout MedSAM's recipe starts from)
    trains on its slices and writes the model file (was: refused as "a volume of 2 slices, not one 2D image")."""
    volume, labels = discs(2)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(tmp_path / "ct_labels.nii.gz"))
    args = ("--labels", tmp_path / "ct_labels.nii.gz", "-o", tmp_path / "tuned.pt", "--epochs", 1, "--holdout", 0)
    result = run_cli("train-segmenter", tmp_path / "ct.nii.gz", *args)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tuned.pt").exists()


def _picture(seed: int, side: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A (side, side) uint8 picture with three bright discs on noise, and their ids 1..3."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 30, (side, side)).astype(np.uint8)
    labels = np.zeros((side, side), np.uint16)
    yy, xx = np.mgrid[:side, :side]
    for obj, (cy, cx) in enumerate(rng.integers(8, side - 8, (3, 2)), start=1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 25
        image[disc], labels[disc] = 200, obj
    return image, labels


@settings(max_examples=25, deadline=None)
@given(
    copies=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    fraction=st.sampled_from([0.2, 0.34, 0.5, 0.8]),
    seed=st.integers(0, 3),
    order=st.randoms(use_true_random=False),
)
def test_copies_of_an_image_stay_on_one_side_of_the_held_out_split(copies, fraction, seed, order):
    """NUG3: the same picture given more than once (a browser's "a (1).tif" picked up by a glob), among others, in
    any order: the copies are all trained on or all held out (grouped by their pixels' sha256), a note names them,
    and the held-out set is never empty; when every image is a copy of one, the held-out check is refused naming
    them (was: one copy trained on, the other scored as held-out, silently)."""
    items = []
    for picture, count in enumerate(copies):
        image, labels = _picture(picture)
        items += [LabelledImage(image.copy(), labels.copy(), f"p{picture}{' (1)' * k}.tif") for k in range(count)]
    order.shuffle(items)
    if len(copies) == 1 and len(items) > 1:
        with pytest.raises(FmscopeError, match="have the same pixels: every image is a copy of p0") as refused:
            split_holdout(items, fraction, seed)
        assert "--holdout 0" in str(refused.value)
        return
    train, val = split_holdout(items, fraction, seed)
    assert val
    if len(items) > 1:  # whole images (one image is split by region, left and right)
        assert len(train) + len(val) == len(items)
        trained = {item.image.tobytes() for item in train}
        assert not any(item.image.tobytes() in trained for item in val)
    note = copies_note(items, [], split=True)
    if max(copies) > 1:
        assert "the same pixels and labels as" in note and "kept on one side of the held-out split" in note
        assert all(f"p{picture} (1).tif" in note for picture, count in enumerate(copies) if count > 1)
    else:
        assert note is None


@pytest.mark.slow
def test_an_image_given_twice_is_named_and_kept_on_one_side_by_train_segmenter(tmp_path):
    """`train-segmenter a.tif "a (1).tif" b.tif --holdout 0.5`: trains, the note names the copy before training
    and both copies are held out together (the image trained on differs); `a.tif "a (1).tif"`
    alone with --holdout: refused naming both, nothing written."""
    for name, seed in (("a", 0), ("a (1)", 0), ("b", 1)):
        image, labels = _picture(seed, side=96)
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / f"{name}_labels.tif", labels)
    names = ("a", "a (1)", "b")
    options = ("-o", tmp_path / "tuned.pt", "--epochs", 1, "--holdout", 0.5, "--device", "cpu")
    refused = run_cli(
        "train-segmenter", *(tmp_path / f"{n}.tif" for n in names[:2]), "--labels",
        *(tmp_path / f"{n}_labels.tif" for n in names[:2]), *options,
    )  # fmt: skip
    assert refused.returncode == 1 and "a.tif, a (1).tif have the same pixels" in refused.stderr
    assert not (tmp_path / "tuned.pt").exists()
    result = run_cli(
        "train-segmenter", *(tmp_path / f"{n}.tif" for n in names), "--labels",
        *(tmp_path / f"{n}_labels.tif" for n in names), *options,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "fmscope train-segmenter: note: duplicate images: a (1).tif has the same pixels and labels as a.tif; "
        "copies are kept on one side of the held-out split." in result.stderr
    )
    # seed 0 holds out the group of a.tif: both copies (3 + 3 discs), b.tif trained on
    assert "held-out Dice (same prompts, 6 objects)" in result.stdout
