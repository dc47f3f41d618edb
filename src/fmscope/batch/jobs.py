"""What each job does to one item: the same engine calls as the single commands, outputs in one folder.

| job | outputs (in ``OUTDIR/items/<id>/``) | same as |
|---|---|---|
| segment | ``labels.tif`` (uint8; uint16 above 255 objects) | ``fmscope segment IMAGE --box ... -o labels.tif`` |
| volume | ``labels.nii.gz`` (input geometry) | ``fmscope volume VOLUME --slice Z --box ... -o labels.nii.gz`` |
| track | ``labels.tif`` (T, H, W), ``tracks.csv`` | ``fmscope track FRAMES ... -o labels.tif --table tracks.csv`` |
| domains | ``result.zarr`` + ``result.png`` | ``fmscope domains SLIDE -o result.zarr`` |
| embed | ``result.zarr`` + ``result.png`` | ``fmscope embed SLIDE -o result.zarr`` |

A 2D DICOM / NIfTI / NRRD input writes ``labels.nii.gz`` instead, with the input's geometry; so does a track of a
volume, or of a 4D image of one slice through time (cine MR: a 4D (x, y, 1, t) label image on its grid). A huge
image (a TIFF or OME-Zarr of more than ``EAGER_MAX_PIXELS`` pixels, :func:`fmscope.imaging.io.open_image`) is read
crop by crop and its ``labels.tif`` written as a tiled TIFF, tile by tile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmscope import metrics, models
from fmscope.batch.manifest import BatchItem, item_prompts
from fmscope.batch.models import ModelPool


def _labels(results, shape: tuple[int, int]) -> np.ndarray:
    """Label image of several masks: object k wins the pixels no earlier object took (as `fmscope segment`)."""
    labels = np.zeros(shape, dtype=np.uint8 if len(results) < 256 else np.uint16)
    for label, result in enumerate(results, start=1):
        labels[result.mask & (labels == 0)] = label
    return labels


def _scores(labels: np.ndarray, item: BatchItem, read_truth: Callable, spacing=None, grid=None) -> dict:
    """Dice and NSD of the output ``labels`` against the item's truth (foreground against foreground), on the
    output's ``grid`` (the input's geometry, None when unknown): a truth holding its voxels in another axis order, or a
    sub-block of its grid (cropped), is put on it, as `fmscope eval` does (:func:`fmscope.imaging.same_voxels.on_grid`);
    one on another grid, or of another shape, is not scored (said in the row's message)."""
    from fmscope.imaging.same_voxels import on_grid

    if item.truth is None:
        return {}
    read = read_truth(item.truth)
    notes = list(read.notes)  # e.g. a JPEG mask thresholded: said in the row
    truth, how = on_grid(read.array, read.geometry, labels.shape, grid)
    if truth is None:
        return {"message": "the truth lies on another grid than the input in patient space: not scored"}
    if how:
        notes.append(f"the truth {how}: compared on the input's grid voxel by voxel")
    if truth.shape != labels.shape:
        return {"message": f"truth shape {truth.shape} differs from the output's {labels.shape}: not scored"}
    notes = "; ".join(notes)
    return {
        "dice": metrics.dice(labels > 0, truth > 0),
        "nsd": metrics.nsd(labels > 0, truth > 0, tolerance=1.0, spacing=spacing),
        **({"message": f"truth: {notes}"} if notes else {}),
    }


def segment(item: BatchItem, pool: ModelPool, folder: Path) -> dict:
    from fmscope.imaging import io
    from fmscope.imaging.intensity import parse_window
    from fmscope.imaging.lazy_image import LazyImage

    image = io.open_image(item.input)
    _, boxes = item_prompts(item)
    segmenter = pool.segmenter(item.model, item.checkpoint)
    if isinstance(image, LazyImage):
        with image:
            return _segment_lazy(image, boxes, segmenter, parse_window(item.window), item, folder)
    segmenter.set_image(image.array, window=parse_window(item.window))
    labels = _labels(segmenter.predict_many(list(boxes.values())), segmenter.image_shape)
    medical = image.geometry is not None and image.geometry.unit is None
    name = "labels.nii.gz" if medical else "labels.tif"  # medical images keep their geometry; a TIFF a pixel size
    io.write_image(labels, folder / name, geometry=image.geometry)
    return {
        "outputs": [name],
        "objects": len(boxes),
        "area_px": int((labels > 0).sum()),
        **_scores(
            labels, item, _read_truth, spacing=image.geometry.spacing_yx if medical else None, grid=image.geometry
        ),
    }


def _segment_lazy(image, boxes: dict, segmenter, window, item: BatchItem, folder: Path) -> dict:
    """``segment`` on a huge image (:class:`~fmscope.imaging.lazy_image.LazyImage`), as ``fmscope segment`` does it:
    only the boxes' crops are read, and ``labels.tif`` is a tiled TIFF written tile by tile (never whole in memory;
    objects as in :func:`_labels`). A truth image is not read whole to score it: such an item is not scored."""
    from fmscope.imaging.tiled_labels import write_tiled_labels

    segmenter.set_image(image, window=window)
    results = segmenter.predict_many(list(boxes.values()))
    dtype = np.uint8 if len(results) < 256 else np.uint16
    pieces = [(r.crop[0], r.crop[1], r.mask.astype(dtype) * dtype(label)) for label, r in enumerate(results, 1)]
    pixels = write_tiled_labels(folder / "labels.tif", image.shape[:2], dtype, pieces, geometry=image.geometry)
    unscored = {"message": "a huge image's truth is not read whole: not scored"} if item.truth is not None else {}
    return {"outputs": ["labels.tif"], "objects": len(boxes), "area_px": pixels, **unscored}


def volume(item: BatchItem, pool: ModelPool, folder: Path) -> dict:
    from fmscope.imaging import io
    from fmscope.imaging.intensity import parse_window
    from fmscope.imaging.volume import segment_volume

    source = io.read_volume(item.input, series=item.series)
    key, boxes = item_prompts(item)
    if models.volume_flow(item.model) == "tracking":  # MedSAM2's 3D flow, as `fmscope volume --model medsam2`
        from fmscope.imaging.tracking.volume import track_volume

        labels = track_volume(
            source,
            key,
            boxes,
            model=item.model,
            window=parse_window(item.window),
            name=str(item.input),
            loaded=pool.sam2(item.model, item.checkpoint),
        )
    else:
        labels = segment_volume(
            source.array,
            key,
            boxes,
            segmenter=pool.segmenter(item.model, item.checkpoint),
            window=parse_window(item.window),
        )
    io.write_volume(labels, source, folder / "labels.nii.gz")
    voxel_ml = float(np.prod(source.spacing)) / 1000.0
    scores = _scores(labels, item, _read_truth, spacing=source.spacing_zyx, grid=source.geometry)
    said = "; ".join([*source.notes, *([scores.pop("message")] if "message" in scores else [])])  # copies read once
    return {
        "outputs": ["labels.nii.gz"],
        "objects": len(boxes),
        "volume_ml": float((labels > 0).sum()) * voxel_ml,
        **scores,
        **({"message": said} if said else {}),
    }


def track(item: BatchItem, pool: ModelPool, folder: Path) -> dict:
    from fmscope.imaging.intensity import parse_window
    from fmscope.imaging.tracking import TrackingSession, open_frames
    from fmscope.imaging.tracking.export import write_session_labels, write_session_table

    frames = open_frames(item.input, channel=item.channel)
    key, boxes = item_prompts(item)
    backend = pool.tracker(frames, item.model, item.checkpoint, parse_window(item.window))
    session = TrackingSession(frames, model=item.model, backend=backend)
    for obj, box in enumerate(boxes.values(), start=1):  # objects 1..n, as `fmscope track`'s boxes
        session.add_box(key, obj, box)
    for _ in session.propagate("both"):
        pass
    placed = frames.volume is not None or frames.geometry is not None  # a volume, or one slice through time (cine)
    name = "labels.nii.gz" if placed else "labels.tif"  # placed frames' labels keep where the input lies
    write_session_labels(session, folder / name)
    write_session_table(session, folder / "tracks.csv")
    labels = session.labels()
    return {
        "outputs": [name, "tracks.csv"],
        "objects": len(boxes),
        "area_px": int((labels > 0).sum()),
        **_scores(labels, item, _read_truth, grid=frames.volume.geometry if frames.volume is not None else None),
    }


def _read_truth(path: Path):
    """A truth label image (a :class:`fmscope.imaging.labels.LabelImage`: (T|Z, H, W) stack or volume, and the
    reader's notes), through the label-image reader (ids as stored)."""
    from fmscope.imaging.labels import read_label_image

    return read_label_image(path, instances=False)


def _slide_job(item: BatchItem, folder: Path, domains: bool) -> dict:
    from fmscope.omics import io
    from fmscope.omics.domains import DOMAIN_KEY, spatial_domains
    from fmscope.omics.embed import embed_cells
    from fmscope.omics.plot import embedding_colours, save_domain_png, save_values_png
    from fmscope.omics.store import write_result

    slide = io.read_slide(item.input)
    embedding, method = embed_cells(slide.adata, item.checkpoint)
    row = {"outputs": ["result.zarr", "result.png"], "objects": int(slide.adata.n_obs)}
    if domains:
        resolution = spatial_domains(slide.adata, embedding, resolutions=item.resolutions)
        save_domain_png(
            slide, DOMAIN_KEY, folder / "result.png", title=f"fmscope domains ({method}, resolution {resolution:g})"
        )
        row["domains"] = int(slide.adata.obs[DOMAIN_KEY].nunique())
    else:
        save_values_png(
            slide, embedding_colours(embedding), folder / "result.png", title="embedding: first 3 components as RGB"
        )
    said = write_result(slide, folder / "result.zarr")  # names written as legal keys (legal_keys)
    return {**row, **({"message": "; ".join(said)} if said else {})}


JOBS: dict[str, Callable[[BatchItem, ModelPool, Path], dict]] = {
    "segment": segment,
    "volume": volume,
    "track": track,
    "domains": lambda item, pool, folder: _slide_job(item, folder, domains=True),
    "embed": lambda item, pool, folder: _slide_job(item, folder, domains=False),
}
