"""The batch ``segment`` job on a huge tiled TIFF (issue 27): boxes from the manifest are segmented reading only their
crops, ``labels.tif`` is a tiled TIFF written tile by tile, the masks equal those of the same boxes on a 2,000 x 2,000
crop of the image, and the job's peak of traced (numpy) memory is no more than the 2k crop's."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from fmscope.batch import read_manifest, validate_items
from fmscope.batch.models import ModelPool
from fmscope.batch.records import signature
from fmscope.batch.runner import run_item
from fmscope.imaging.intensity import auto_intensity
from fmscope.models import DEFAULT_SEGMENTER

SIDE, SMALL = 8_000, 2_000
OFFSET, SMALL_OFFSET = (5_120, 2_560), (768, 768)  # the 512 x 512 sample in each (on the crop lattice: same crops)


def run(tmp_path, name: str, image: np.ndarray, boxes: list[np.ndarray], offset: tuple[int, int], pool) -> tuple:
    """Run one segment item on ``image`` (written as a tiled TIFF); (labels.tif, result row, traced peak bytes)."""
    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    shifted = [" ".join(f"{v:g}" for v in box + np.array([offset[1], offset[0]] * 2)) for box in boxes]
    (tmp_path / f"{name}.csv").write_text(
        "id,job,input,box\n" + "".join(f"{name}{i},segment,{path},{box}\n" for i, box in enumerate(shifted))
    )
    item = read_manifest(tmp_path / f"{name}.csv")[0]
    item = type(item)(**{**item.__dict__, "boxes": tuple(tuple(float(v) for v in b.split()) for b in shifted)})
    tracemalloc.start()
    row = run_item(item, signature(item), str(tmp_path / f"out_{name}"), pool=pool)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert row["status"] == "done", row
    return tifffile.imread(tmp_path / f"out_{name}" / "items" / item.id / "labels.tif"), row, peak


@pytest.mark.slow  # two items, two encoder passes each (~8 s on the shared 2-core CPU)
def test_batch_segment_on_a_huge_tiff_reads_only_the_boxes_crops(tmp_path, nuclei, nuclei_boxes, segmenter):
    sample = auto_intensity(nuclei[0]).to_uint8(nuclei[0])
    boxes = [np.asarray(nuclei_boxes[label], float) for label in sorted(nuclei_boxes)[:2]]
    small = np.zeros((SMALL, SMALL), np.uint8)
    small[SMALL_OFFSET[0] : SMALL_OFFSET[0] + 512, SMALL_OFFSET[1] : SMALL_OFFSET[1] + 512] = sample
    huge = np.zeros((SIDE, SIDE), np.uint8)
    huge[OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512] = sample
    pool = ModelPool()
    pool.segmenters[(DEFAULT_SEGMENTER, None)] = segmenter  # loaded once per test session, outside the traced runs
    small_labels, _, small_peak = run(tmp_path, "small", small, boxes, SMALL_OFFSET, pool)
    del small
    huge_labels, row, huge_peak = run(tmp_path, "huge", huge, boxes, OFFSET, pool)
    with tifffile.TiffFile(tmp_path / "out_huge" / "items" / "huge0" / "labels.tif") as written:
        assert written.pages[0].is_tiled and huge_labels.shape == (SIDE, SIDE)
    part = huge_labels[OFFSET[0] : OFFSET[0] + 512, OFFSET[1] : OFFSET[1] + 512]
    small_part = small_labels[SMALL_OFFSET[0] : SMALL_OFFSET[0] + 512, SMALL_OFFSET[1] : SMALL_OFFSET[1] + 512]
    np.testing.assert_array_equal(part, small_part)
    assert huge_labels.sum() == part.sum() and set(np.unique(part)) == {0, 1, 2}  # nothing outside the crops
    assert row["area_px"] == int((part > 0).sum())
    print(f"\ntraced peak: huge {huge_peak / 2**20:.1f} MB, 2k crop {small_peak / 2**20:.1f} MB")
    assert huge_peak <= 1.5 * small_peak and huge_peak < SIDE * SIDE / 4  # the image is never held


def test_a_track_row_on_huge_frames_is_refused_by_the_dry_run(tmp_path):
    """A tiled TIFF stack of 4200 x 4200 frames: the row is refused before anything runs (its output would be a
    full-size label stack), naming the frames' size and the windowed ways to track them."""
    stack = np.zeros((2, 4200, 4200), np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, tile=(256, 256), compression="zlib", metadata={"axes": "TYX"})
    (tmp_path / "m.csv").write_text(f"id,job,input,box,slice\nbig,track,{tmp_path / 'stack.tif'},10 10 40 40,0\n")
    [(_, problem)] = validate_items(read_manifest(tmp_path / "m.csv"))
    assert problem.startswith("Row 1 (big): ") and "4200 x 4200" in problem and "window" in problem
