"""The cell raster paints each pixel with its most frequent category, for any number of categories."""

import numpy as np

from fmscope.omics.raster import CellGrid


def brute_force(grid: CellGrid, codes: np.ndarray) -> np.ndarray:
    image = np.zeros(grid.shape[0] * grid.shape[1], dtype=np.int64)
    for pixel in np.unique(grid.flat_index):
        inside = codes[(grid.flat_index == pixel) & (codes > 0)]
        if len(inside):
            values, counts = np.unique(inside, return_counts=True)
            image[pixel] = values[np.argmax(counts)]  # np.unique sorts: ties go to the lower code
    return image.reshape(grid.shape)


def test_most_frequent_category_per_pixel_above_33_categories():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (6000, 2))
    grid = CellGrid.for_cells(xy, pixel_um=10.0)  # about 60 cells per pixel
    for n_categories in (5, 40, 300):
        codes = rng.integers(1, n_categories + 1, len(xy))
        codes[xy[:, 0] < 50] = rng.choice([7, 7, 7, 3], (xy[:, 0] < 50).sum())  # left half: mostly 7
        image = grid.labels(codes)
        assert np.array_equal(image, brute_force(grid, codes)), n_categories
        assert (image[:, :5] == 7).all()


def test_ties_take_the_lower_code_and_empty_pixels_stay_zero():
    grid = CellGrid(1.0, (0.0, 0.0), (1, 3), np.array([0, 0, 0, 0, 2, 2]))
    image = grid.labels(np.array([50, 41, 41, 50, 0, 99]))
    assert image.tolist() == [[41, 0, 99]] and image.dtype == np.uint16
