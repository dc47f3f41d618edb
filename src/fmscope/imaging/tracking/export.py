"""Writing tracked label stacks: the stack (TIFF, or NIfTI / NRRD with a volume's geometry), a
per-object per-frame table (CSV), the Cell Tracking Challenge format (``res_track.txt`` +
``mask###.tif``, with parent links) and GEFF (the graph exchange format of napari's tracking
tools); ``write_session_*`` write a TrackingSession's (``fmscope track``, batch ``track`` items).
No Qt; every write is atomic.

Labels are a uint16 (T, H, W) stack: 0 background, one id per object (the same id on every frame);
``parents`` ({daughter: parent}) is the lineage (:mod:`fmscope.imaging.tracking.lineage`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import tifffile
from scipy import ndimage

from fmscope.atomic import atomic_write, file_suffix
from fmscope.errors import FmscopeError
from fmscope.imaging import nifti_header
from fmscope.imaging.io import TIFF_SUFFIXES, Geometry, Volume, check_geometry_output, write_sitk, write_volume
from fmscope.imaging.tracking.lineage import ctc_lineage, lineage_graph
from fmscope.outputs import VOLUME_SUFFIXES  # one-file 3D formats (.mhd / .nhdr write two)

TABLE_COLUMNS = ("frame", "object", "area_px", "centroid_y", "centroid_x", "parent")
SESSION_TABLE_COLUMNS = (
    "object",
    "frame",
    "area_px",
    "centroid_x",
    "centroid_y",
    "mean_intensity",
    "score",
    "parent",
)
CTC_TRACK_FILE = "res_track.txt"  # a CTC result's name (the ground truth's is man_track.txt)


@dataclass(frozen=True)
class ObjectFrame:
    """One object on one frame: pixel count and centroid (y, x) in pixels."""

    frame: int
    obj: int
    area: int
    y: float
    x: float


def _stack(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise FmscopeError(
            f"The labels have shape {labels.shape}; a tracked stack is (T, H, W).",
            "Give the label stack of a time-lapse, video or volume.",
        )
    if labels.dtype.kind not in "ui" or (labels.size and (labels.min() < 0 or labels.max() > 65535)):
        raise FmscopeError(
            f"The labels are {labels.dtype} with values outside 0..65535.",
            "Give integer labels (0 background, ids 1..65535).",
        )
    return labels.astype(np.uint16, copy=False)


def _measures(frame: np.ndarray, ids: list[int]) -> tuple[np.ndarray, list]:
    """(pixel counts, centroids (y, x)) of objects ``ids`` on one (H, W) label frame."""
    ones = np.ones(frame.shape)
    return ndimage.sum_labels(ones, frame, ids), ndimage.center_of_mass(ones, frame, ids)


def object_table(labels: np.ndarray, objects=None) -> list[ObjectFrame]:
    """Every (frame, object) with pixels, sorted by object then frame; ``objects``: only these ids."""
    labels = _stack(labels)
    rows = []
    for index, frame in enumerate(labels):
        ids = [int(i) for i in np.unique(frame) if i and (objects is None or int(i) in objects)]
        if not ids:
            continue
        areas, centres = _measures(frame, ids)
        rows += [
            ObjectFrame(index, obj, int(area), float(cy), float(cx)) for obj, area, (cy, cx) in zip(ids, areas, centres)
        ]
    return sorted(rows, key=lambda row: (row.obj, row.frame))


def tracks_data(labels: np.ndarray, objects=None) -> np.ndarray:
    """napari Tracks data: float (N, 4) rows [object id, frame, centroid y, centroid x]."""
    rows = [[row.obj, row.frame, row.y, row.x] for row in object_table(labels, objects)]
    return np.array(rows, dtype=float).reshape(-1, 4)


TIME_AXIS_NOTE = "fmscope: time-lapse labels; the third axis is time (slice k = frame k), not z"


def write_label_stack(
    labels: np.ndarray,
    path: str | os.PathLike,
    spacing_yx: tuple[float, float] | None = None,
    geometry: Geometry | None = None,
) -> str | None:
    """The (T, H, W) labels of a time-lapse or video as one uint16 file, by the suffix of ``path``: a
    TIFF (the pixel size ``spacing_yx``, mm, as resolution tags when known), or a NIfTI / NRRD / MHA image.

    With ``geometry`` (:attr:`FrameSource.geometry`: a 4D image of one slice through time, x, y, 1, t) the
    labels are a 4D (x, y, 1, t) image on the input's grid: its spacing, origin and direction (a NIfTI input's
    qform, sform, codes, pixdim and units as they are, :func:`fmscope.imaging.nifti_header.write_labels`), so
    viewers overlay them on the slice; a NIfTI whose qform and sform differ asked as NRRD / MHA is refused
    (:func:`fmscope.imaging.io.check_geometry_output`). Without it, a 3D image (x, y, t) whose third axis is
    time (slice k = frame k, spacing 1; in-plane spacing ``spacing_yx`` (row, column) when known, else 1), with
    a note saying so in the file (NIfTI ``descrip``, NRRD / MHA key). Returns the note for the user for a 3D
    image, None otherwise; any other suffix is refused (FmscopeError), nothing written."""
    labels = _stack(labels)
    path = Path(path)
    suffix = file_suffix(path)
    if suffix in TIFF_SUFFIXES:
        # the pixel size, when known, as resolution tags in pixels per centimetre (spacing_yx is in mm)
        known = {} if spacing_yx is None else {"resolution": (10 / spacing_yx[1], 10 / spacing_yx[0])}
        resolution = {**known, "resolutionunit": "CENTIMETER"} if known else {}
        atomic_write(path, lambda target: tifffile.imwrite(target, labels, compression="zlib", **resolution))
        return None
    if suffix not in VOLUME_SUFFIXES:
        raise FmscopeError(
            f"{path}: a label stack (T, H, W) cannot be written as '{suffix or 'no suffix'}'.",
            "Use .tif, or .nii.gz / .nrrd / .mha (time as the third axis).",
        )
    if geometry is not None and len(geometry.spacing) == 4:
        _write_one_slice_through_time(labels, geometry, path)
        return None
    row, column = spacing_yx if spacing_yx is not None else (1.0, 1.0)

    def write(target: Path) -> None:
        image = sitk.GetImageFromArray(labels, isVector=False)  # (T, H, W) -> a 3D image of size (W, H, T)
        image.SetSpacing((float(column), float(row), 1.0))
        image.SetMetaData("ITK_FileNotes", TIME_AXIS_NOTE[:79])  # NIfTI descrip holds 80 bytes
        image.SetMetaData("fmscope_axes", "x y t")
        write_sitk(image, target)

    atomic_write(path, write)
    return f"{path.name} is a 3D image whose third axis is time (slice k = frame k), as no volume geometry exists"


def _write_one_slice_through_time(labels: np.ndarray, geometry: Geometry, path: Path) -> None:
    """(T, H, W) labels as a 4D (x, y, 1, t) image with the 4D input's ``geometry`` (see :func:`write_label_stack`)."""
    check_geometry_output(geometry, path)
    stack = labels[:, None]  # (t, z = 1, y, x): SimpleITK's order of a 4D image

    def write(target: Path) -> None:
        if geometry.nifti is not None and nifti_header.is_nifti(target):
            nifti_header.write_labels(stack, geometry.nifti, target)
        else:
            write_sitk(geometry.apply_to(sitk.GetImageFromArray(stack, isVector=False)), target)

    atomic_write(path, write)


def write_label_volume(labels: np.ndarray, volume: Volume, path: str | os.PathLike) -> None:
    """The (Z, Y, X) labels as a uint16 NIfTI / NRRD / MHA (by the extension of ``path``) with the
    spacing, origin and direction of ``volume`` (the image they were tracked on)."""
    labels = _stack(labels)
    if labels.shape != volume.array.shape:
        raise FmscopeError(
            f"The labels {labels.shape} are not on the volume's grid {volume.array.shape}.",
            "Export the labels tracked on that volume.",
        )
    write_volume(labels, volume, path)


def write_table(
    labels: np.ndarray, path: str | os.PathLike, objects=None, parents: dict[int, int] | None = None
) -> int:
    """CSV with columns frame, object, area_px, centroid_y, centroid_x, parent (0: none); returns the
    number of rows."""
    rows = object_table(labels, objects)
    parents = parents or {}

    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(TABLE_COLUMNS)
            writer.writerows(
                [row.frame, row.obj, row.area, f"{row.y:.3f}", f"{row.x:.3f}", parents.get(row.obj, 0)] for row in rows
            )

    atomic_write(Path(path), write)
    return len(rows)


def ctc_tracks(labels: np.ndarray, parents: dict[int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """``res_track.txt`` rows (L, B, E, P): label, first and last frame, parent (0: none); a track
    with a gap is cut there (:func:`fmscope.imaging.tracking.lineage.ctc_lineage`)."""
    return ctc_lineage(_stack(labels), parents or {})[1]


def write_ctc(labels: np.ndarray, folder: str | os.PathLike, parents: dict[int, int] | None = None) -> int:
    """A Cell Tracking Challenge result folder: ``res_track.txt`` and ``mask000.tif`` ... (uint16,
    3 digits, 4 from 1,000 frames), as traccuracy and the CTC's measures read it; the folder is
    replaced as a whole when fmscope wrote it (:mod:`fmscope.output_owner`). Returns the number of tracks."""
    masks, rows = ctc_lineage(_stack(labels), parents or {})
    digits = max(3, len(str(len(masks) - 1)))

    def write(target: Path) -> None:
        target.mkdir()
        (target / CTC_TRACK_FILE).write_text("".join(f"{label} {b} {e} {p}\n" for label, b, e, p in rows))
        for index, frame in enumerate(masks):
            tifffile.imwrite(target / f"mask{index:0{digits}d}.tif", frame)

    atomic_write(Path(folder), write)
    return len(rows)


def write_geff(labels: np.ndarray, path: str | os.PathLike, parents: dict[int, int] | None = None) -> int:
    """The lineage graph (:func:`fmscope.imaging.tracking.lineage.lineage_graph`: one node per object
    and frame with ``t``, ``y``, ``x``, ``seg_id``, ``area``) as a GEFF zarr store (PyPI ``geff``),
    axes t (frames), y, x (pixels); an existing store at ``path`` is replaced when fmscope wrote it
    (:mod:`fmscope.output_owner`). Returns the node count."""
    import geff

    graph = lineage_graph(_stack(labels), parents or {})

    def write(target: Path) -> None:
        geff.write(
            graph,
            str(target),
            axis_names=["t", "y", "x"],
            axis_types=["time", "space", "space"],
            axis_units=[None, None, None],
        )

    atomic_write(Path(path), write)
    return graph.number_of_nodes()


def write_session_labels(session, path: str | os.PathLike) -> str | None:
    """A TrackingSession's uint16 (T, H, W) labels at ``path`` (format by its suffix): labels tracked on
    a volume keep its geometry; a time-lapse or video goes through :func:`write_label_stack` (a 4D image of one
    slice through time keeps its geometry; else a 3D image has time as its third axis). Returns the note to show
    the user, if any."""
    labels = session.labels()
    if session.frames.volume is not None:
        write_label_volume(labels, session.frames.volume, path)
        return None
    return write_label_stack(labels, path, session.frames.spacing, session.frames.geometry)


def write_session_ctc(session, folder: str | os.PathLike) -> int:
    """A TrackingSession's labels and lineage as a CTC result folder (:func:`write_ctc`)."""
    return write_ctc(session.labels(), folder, session.lineage.parents)


def write_session_geff(session, path: str | os.PathLike) -> int:
    """A TrackingSession's labels and lineage as a GEFF store (:func:`write_geff`)."""
    return write_geff(session.labels(), path, session.lineage.parents)


def write_session_table(session, path: str | os.PathLike) -> int:
    """CSV, one row per object and frame the session found it on: object, frame, area_px,
    centroid_x, centroid_y (pixels), mean_intensity (of the frame's grey values), score (the
    model's), parent (the object it divided from; 0: none). Returns the number of rows."""
    rows = []
    for index in range(session.frames.n_frames):
        scores = session.store.scores.get(index)
        if not scores:
            continue
        labels = session.frame_labels(index)
        frame = np.asarray(session.frames[index], dtype=np.float64)
        grey = frame.mean(axis=-1) if frame.ndim == 3 else frame
        ids = sorted(scores)
        areas, centres = _measures(labels, ids)
        means = ndimage.mean(grey, labels, ids)
        for obj, area, mean, (cy, cx) in zip(ids, areas, means, centres):
            rows.append(
                [
                    obj,
                    index,
                    int(area),
                    f"{cx:.2f}",
                    f"{cy:.2f}",
                    f"{mean:.3f}",
                    f"{scores[obj]:.4f}",
                    session.lineage.parent(obj),
                ]
            )
    rows.sort(key=lambda row: (row[0], row[1]))

    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(SESSION_TABLE_COLUMNS)
            writer.writerows(rows)

    atomic_write(Path(path), write)
    return len(rows)
