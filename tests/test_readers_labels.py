"""The label-image reader (docs/formats.md, "Label images"): binary masks, palettes, huge / sparse ids,
dtypes and file formats as tools export them (tifffile, Pillow, SimpleITK); the realworld cases T8 and T12
are tests here with their values (objects trained on and held out)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from fmscope.errors import FmscopeError
from fmscope.imaging.labels import instance_labels, read_label_image
from fmscope.training.segmenter import _object_boxes, labelled_images, split_holdout

QUICK = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CENTRES = [(25, 30), (60, 28), (95, 35), (35, 85), (80, 90)]


def nuclei(shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 128 x 128 uint16 image with 5 separate nuclei and its uint16 instance labels 1..5 (as the cases)."""
    rng = np.random.default_rng(shift)
    yy, xx = np.mgrid[:128, :128]
    labels = np.zeros((128, 128), np.uint16)
    image = rng.normal(300, 30, (128, 128))
    for i, (cx, cy) in enumerate(CENTRES, start=1):
        mask = ((xx - cx - shift) / 9.0) ** 2 + ((yy - cy) / 7.0) ** 2 <= 1
        labels[mask] = i
        image += 1500 * mask
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images name the same objects (ids may differ, background must not)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_binary_masks_become_one_object_per_region(tmp_path):
    """case_T8: two images' nuclei as binary 0/255 PNGs: trained on 5 objects, 5 held out (one image of two),
    as with the instance labels; the reader says the mask was split."""
    items = {"instance": [], "binary": []}
    for k in range(2):
        image, labels = nuclei(3 * k)
        tifffile.imwrite(tmp_path / f"inst{k}.tif", labels)
        Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(tmp_path / f"binary{k}.png")
        for kind, name in (("instance", f"inst{k}.tif"), ("binary", f"binary{k}.png")):
            read = read_label_image(tmp_path / name)
            assert same_partition(read.array, labels)
            if kind == "binary":
                assert "its 5 separate regions are taken as 5 objects" in read.notes[0]
            else:
                assert not read.notes
            items[kind] += labelled_images(image, read.array, f"img{k}")
    for kind in items:
        train, val = split_holdout(items[kind], 0.2, 0)
        counts = [sum(len(_object_boxes(i.labels)[0]) for i in part) for part in (train, val)]
        assert counts == [5, 5], kind


def test_huge_sparse_ids_are_renumbered_without_memory_growth(tmp_path):
    """case_T12: ids {1, 2, 3, 4, 70000} and {1, 2, 3, 4, 4000000000} (uint32 TIFF): trained on 4 objects,
    the right-most held out; ids renumbered in order (a find_objects over 4e9 ids would need ~32 GB)."""
    image, labels = nuclei()
    for big in (70000, 4_000_000_000):
        ids = labels.astype(np.uint32)
        ids[ids == 5] = big
        tifffile.imwrite(tmp_path / "ids.tif", ids)
        read = read_label_image(tmp_path / "ids.tif")
        assert read.array.max() == 5 and np.array_equal(read.array, labels)
        assert bool(read.notes) == (big > 65535)
        train, val = split_holdout(labelled_images(image, read.array, "img"), 0.2, 0)
        assert [len(_object_boxes(part[0].labels)[0]) for part in (train, val)] == [4, 1]


def test_palette_png_gives_its_indices_not_colours(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[2:8, 2:8], labels[10:18, 12:25] = 1, 7
    picture = Image.fromarray(labels, mode="P")
    picture.putpalette([0, 0, 0, 255, 0, 0] + [0, 200, 0] * 254)
    picture.save(tmp_path / "palette.png")
    assert np.array_equal(read_label_image(tmp_path / "palette.png", instances=False).array, labels)
    assert same_partition(read_label_image(tmp_path / "palette.png").array, labels)


def test_colour_coded_negative_and_fractional_labels_are_refused_by_name(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:5, :5] = (255, 0, 0)
    rgb[5:, 5:] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(FmscopeError, match="RGB colour image .3 colours., not a label image"):
        read_label_image(tmp_path / "colour.png")
    Image.fromarray(np.repeat((rgb[..., :1] > 0).astype(np.uint8) * 9, 3, axis=-1)).save(tmp_path / "grey.png")
    assert read_label_image(tmp_path / "grey.png", instances=False).array.max() == 9  # R = G = B: grey ids
    with pytest.raises(FmscopeError, match="negative ids"):
        instance_labels(np.array([[0, -1], [2, 3]], np.int32))
    with pytest.raises(FmscopeError, match="fractional values"):
        instance_labels(np.array([[0, 0.5], [1, 1]], np.float32))


LAYOUTS = ["ids", "binary255", "binary1", "bool", "sparse", "huge", "float"]


@QUICK
@given(
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(["uint8", "uint16", "uint32", "int32"]),
    fmt=st.sampled_from(["tif", "png", "nii.gz", "array"]),
    count=st.integers(1, 6),
    seed=st.integers(0, 99),
)
def test_label_layouts_read_the_same_objects(tmp_path_factory, layout, dtype, fmt, count, seed):
    """Separate rectangles stored as ids, binary masks (0/255, 0/1, bool), sparse or huge ids, whole-number
    floats, in TIFF / PNG / NIfTI or as an array: the objects read are the rectangles, ids 1..N, or the
    file is refused naming why (an id its format cannot hold)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((40, 48), np.int64)
    for k, cell in enumerate(rng.choice(48, size=count, replace=False)):  # a 6 x 8 grid: rectangles never touch
        cy, cx = divmod(int(cell), 8)
        truth[cy * 6 + 1 : cy * 6 + 5, cx * 6 + 1 : cx * 6 + 5] = k + 1
    stored = {
        "ids": truth,
        "binary255": (truth > 0) * 255,
        "binary1": (truth > 0) * 1,
        "bool": truth > 0,
        "sparse": np.where(truth > 0, truth * 97 + 3, 0),
        "huge": np.where(truth > 0, truth + 3_000_000_000, 0),
        "float": truth.astype(np.float32),
    }[layout]
    if layout not in ("bool", "float"):
        info = np.iinfo(dtype)
        if stored.max() > info.max:
            return  # this dtype cannot hold these ids: not a file anyone has
        stored = stored.astype(dtype)
    if fmt == "array":
        read = instance_labels(stored).array
    else:
        path = tmp_path_factory.mktemp("labels") / f"labels.{fmt}"
        if fmt == "tif":
            tifffile.imwrite(path, stored)
        elif fmt == "png":
            if stored.dtype not in (np.uint8, np.uint16, bool):
                return  # PNG holds 1, 8 or 16-bit grey
            Image.fromarray(stored).save(path)
        else:
            sitk.WriteImage(
                sitk.GetImageFromArray(stored.astype(np.uint8) if stored.dtype == bool else stored), str(path)
            )
        read = read_label_image(path).array
    assert read.dtype in (np.uint16, np.uint32) and read.shape == truth.shape
    assert same_partition(read, truth)
    assert sorted(np.unique(read[read > 0]).tolist()) == list(range(1, int(truth.max()) + 1))


def discs(count: int, seed: int, size: int = 96) -> np.ndarray:
    """A (size, size) uint8 0 / 255 mask of ``count`` separate discs (radius 6-10) on a grid (never touching)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.uint8)
    for cell in rng.choice(9, size=count, replace=False):
        cy, cx = divmod(int(cell), 3)
        radius = rng.integers(6, 11)
        mask[(yy - 16 - 32 * cy) ** 2 + (xx - 16 - 32 * cx) ** 2 < radius**2] = 255
    return mask


@QUICK
@given(
    quality=st.integers(20, 100),
    mode=st.sampled_from(["L", "RGB"]),
    container=st.sampled_from(["jpg", "webp", "tif"]),
    count=st.integers(1, 6),
    seed=st.integers(0, 99),
)
def test_lossy_binary_masks_are_read_as_the_mask_they_hold(tmp_path_factory, quality, mode, container, count, seed):
    """NU8 (Kvasir-SEG style): a 0 / 255 mask saved as JPEG (grey or colour, any quality), lossy WebP or a
    JPEG-compressed TIFF has grey levels along every edge; read for evaluation it is the mask (thresholded at
    128, a note naming the compression), for training one object per disc."""
    mask = discs(count, seed)
    path = tmp_path_factory.mktemp("lossy") / f"mask.{container}"
    picture = mask if mode == "L" else np.repeat(mask[..., None], 3, axis=-1)
    if container == "tif":
        kind = "minisblack" if mode == "L" else "rgb"
        tifffile.imwrite(path, picture, compression="jpeg", compressionargs={"level": quality}, photometric=kind)
    else:
        Image.fromarray(picture).save(path, quality=quality)
    read = read_label_image(path, instances=False)
    assert set(np.unique(read.array)) <= {0, 255}
    edges = ndimage.binary_dilation(mask > 0) & ~ndimage.binary_erosion(mask > 0)
    assert not ((read.array != mask) & ~edges).any()  # low qualities move an edge by a pixel at most
    levels = len(np.unique(np.asarray(Image.open(path)) if container != "tif" else tifffile.imread(path)))
    assert bool(read.notes) == (levels > 2)
    if read.notes:
        assert "lossy" in read.notes[0] and "thresholded at 128" in read.notes[0]
    assert len(np.unique(read_label_image(path).array)) == count + 1


def test_lossy_label_images_that_are_not_binary_masks_are_refused_naming_jpeg(tmp_path):
    """Ids 1..5 (grey levels), colour-coded labels and a three-level mask saved as JPEG cannot be read back:
    refused naming JPEG's lossy compression and the fix (PNG / TIFF); the same masks as PNG read as before."""
    _, ids = nuclei()
    three = discs(3, 1)
    three[:20, 40:60] = 128
    colour = np.zeros((96, 96, 3), np.uint8)
    colour[10:40, 10:40], colour[50:80, 50:80] = (255, 0, 0), (0, 0, 255)
    for name, picture, why in (
        ("ids.jpg", ids.astype(np.uint8) * 3, "no values near 255"),
        ("three.jpg", three, "away from the edges"),
        ("colour.jpg", colour, "colour-coded"),
    ):
        Image.fromarray(picture).save(tmp_path / name, quality=95)
        with pytest.raises(FmscopeError, match=f"stored as JPEG, whose lossy compression.*{why}") as error:
            read_label_image(tmp_path / name)
        assert "PNG or TIFF" in error.value.fix
        Image.fromarray(picture).save(tmp_path / name.replace(".jpg", ".png"))
    assert same_partition(read_label_image(tmp_path / "ids.png").array, ids)


def test_a_tiff_of_several_label_images_is_refused_naming_its_series(tmp_path):
    """Label slices saved one page at a time (``append=True``: one series each) were read as the first slice:
    refused naming the series; a thumbnail (a smaller series) beside one label image does not count."""
    _, labels = nuclei()
    for _ in range(3):
        tifffile.imwrite(tmp_path / "slices.tif", labels, append=True)
    with pytest.raises(FmscopeError, match=r"holds 3 series of the same image size .*reads one label image"):
        read_label_image(tmp_path / "slices.tif")
    with tifffile.TiffWriter(tmp_path / "thumbnail.tif") as writer:
        writer.write(labels)
        writer.write(labels[::4, ::4])
    assert np.array_equal(read_label_image(tmp_path / "thumbnail.tif", instances=False).array, labels)
