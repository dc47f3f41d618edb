"""The batch manifest: a CSV with one row per item (input, job, prompts, options, truth).

Columns (header names; only ``job`` and ``input`` are required):

- ``id``: names the item's output folder (default: row number and input name); unique.
- ``job``: ``segment`` (2D image), ``volume`` (3D), ``track`` (video, time-lapse, cine DICOM or
  volume, as ``fmscope track``), ``domains`` or ``embed`` (a slide).
- ``input``: the file or folder; relative paths are relative to the manifest's folder.
- ``series``: for a DICOM folder holding several series, which one (as ``fmscope volume --series``).
- ``box``: ``x0 y0 x1 y1`` in pixels, several boxes separated by ``;`` (objects 1, 2, ...).
- ``slice``: the key slice (z, 0-based) of a ``volume`` item's boxes; the frame of a ``track`` item's.
- ``channel``: for a ``track`` item on a TIFF with a channel axis, the channel to track (0-based; as
  ``fmscope track --channel``).
- ``prompt_file``: instead of ``box``: a label image / volume (one box per label, on the slice
  where the labels cover most voxels when ``slice`` is empty; for ``track`` a 2D label image of the
  frame or a (T, H, W) label stack, boxes on its first frame holding objects when ``slice`` is empty)
  or a CSV with columns x0, y0, x1, y1.
- ``model``, ``checkpoint``, ``window``: as the single commands' options (default ``litemedsam``); a
  ``model`` that is not a catalogue name is an fmscope model file, and relative paths of model files and
  checkpoints are relative to the manifest's folder (a Dask worker's working folder is not the user's).
- ``resolution``: Leiden resolutions for ``domains``, separated by spaces (default 0.2 0.4 0.6 1.0).
- ``truth``: a label file on the input's grid: Dice and NSD are added to the results table.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmscope import models
from fmscope.batch.csv_table import read_csv_table
from fmscope.errors import FmscopeError
from fmscope.names import display_name

JOBS = ("segment", "volume", "track", "domains", "embed")
IMAGING_CAPABILITIES = {"segment": models.SEGMENT, "volume": models.VOLUME, "track": models.TRACK}  # job -> model needs
IMAGING_JOBS = ("segment", "volume", "track")
COLUMNS = (
    "id",
    "job",
    "input",
    "series",
    "box",
    "slice",
    "prompt_file",
    "model",
    "checkpoint",
    "window",
    "resolution",
    "truth",
    "channel",
)
TEMPLATE_PATHS = ("input", "prompt_file", "truth")  # the template columns naming sample files
TEMPLATE_ROWS = (  # paths in the sample data folder (fmscope.samples.sample_data_dir)
    {
        "id": "nuclei",
        "job": "segment",
        "input": "nuclei_image.tif",
        "prompt_file": "nuclei_labels.tif",
        "truth": "nuclei_labels.tif",
    },
    {
        "id": "ct_slice",
        "job": "segment",
        "input": "ct_lung_slice.tif",
        "box": "204 345 231 370",
        "window": "lung",
        "truth": "ct_lung_slice_labels.tif",
    },
    {
        "id": "ct_volume",
        "job": "volume",
        "input": "ct_lung_volume.nrrd",
        "box": "82 81 109 106",
        "slice": "9",
        "window": "lung",
        "truth": "ct_lung_volume_labels.nrrd",
    },
    {
        "id": "hela_nucleus",
        "job": "track",
        "input": "hela_timelapse/images.tif",
        "box": "263 309 295 338",
        "slice": "0",
    },  # one nucleus on frame 0, followed through the 20 frames
    {"id": "visium", "job": "domains", "input": "visium_mouse_brain", "resolution": "0.4 0.8"},
    {"id": "xenium", "job": "embed", "input": "xenium_breast_outs"},
)


@dataclass(frozen=True)
class BatchItem:
    """One manifest row, paths resolved; ``boxes`` are [x0, y0, x1, y1] in pixels."""

    id: str
    job: str
    input: Path
    series: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    slice: int | None = None
    prompt_file: Path | None = None
    model: str = models.DEFAULT_SEGMENTER
    checkpoint: str | None = None
    window: str | None = None
    resolutions: tuple[float, ...] = (0.2, 0.4, 0.6, 1.0)
    truth: Path | None = None
    row: int = 0  # 1-based data row in the manifest, for messages
    channel: int | None = None  # the channel of a track item's TIFF with a channel axis

    def options_record(self) -> dict:
        """The row's settings as plain values (part of the item's signature)."""
        return {
            "job": self.job,
            "series": self.series,
            "boxes": [list(b) for b in self.boxes],
            "slice": self.slice,
            "model": self.model,
            "checkpoint": self.checkpoint,
            "window": self.window,
            "resolutions": list(self.resolutions),
            **({"channel": self.channel} if self.channel is not None else {}),
        }  # older signatures unchanged


def _boxes(text: str, row: int) -> tuple[tuple[float, float, float, float], ...]:
    boxes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            values = tuple(float(v) for v in part.replace(",", " ").split())
        except ValueError:
            values = ()
        if len(values) != 4:
            raise FmscopeError(
                f"Row {row}: cannot read box '{part}'.",
                "Write a box as 'x0 y0 x1 y1'; separate several boxes with ';'.",
            )
        boxes.append(values)
    return tuple(boxes)


def _path(text: str, base: Path) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base / path


def _folder_safe(name: str) -> str:
    """A name made from a path, kept to letters, digits, '-', '_' and '.' (others become '_')."""
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in name).lstrip(".")
    return safe or "input"


def _whole_number(text: str, column: str, row: int) -> int | None:
    """The integer in an integer column's cell (None when empty).

    A whole number written as a float (``10.0``, ``1e1``: pandas writes an integer column with an empty cell
    as float64, and spreadsheets format numbers with decimals) is that integer. Raises FmscopeError naming
    the column for text that is not a number or a number with a fraction (``10.5``).
    """
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise FmscopeError(
            f"Row {row}: {column} '{text}' is not a number.", f"Give the {column} as a whole number (0-based)."
        ) from None
    if not value.is_integer():
        raise FmscopeError(
            f"Row {row}: {column} '{text}' is not a whole number.",
            f"Give the {column} as a whole number (0-based), e.g. {int(value)}; in pandas write the column as "
            f"integers: df['{column}'] = df['{column}'].astype('Int64').",
        )
    return int(value)


def _item(values: dict[str, str], row: int, base: Path) -> BatchItem:
    get = {k: (values.get(k) or "").strip() for k in COLUMNS}
    if get["job"] not in JOBS:
        raise FmscopeError(f"Row {row}: unknown job '{get['job']}'.", f"Use one of: {', '.join(JOBS)}.")
    if not get["input"]:
        raise FmscopeError(f"Row {row}: no input.", "Give the input file or folder in the 'input' column.")
    key = _whole_number(get["slice"], "slice", row)
    channel = _whole_number(get["channel"], "channel", row)
    try:
        resolutions = tuple(float(v) for v in get["resolution"].split()) or BatchItem.resolutions
    except ValueError:
        raise FmscopeError(
            f"Row {row}: resolution '{get['resolution']}' is not a number.",
            "Give resolutions as numbers separated by spaces.",
        ) from None
    item_id = get["id"] or f"{row:04d}_{_folder_safe(display_name(get['input'].replace(chr(92), '/')))}"
    if not item_id.replace("-", "").replace("_", "").replace(".", "").isalnum() or item_id.startswith("."):
        raise FmscopeError(f"Row {row}: id '{item_id}' cannot name a folder.", "Use letters, digits, '-', '_', '.'.")
    model = get["model"] or models.DEFAULT_SEGMENTER
    if model not in models.BY_NAME:  # a model file, found as the input and the checkpoint are
        model = str(_path(model, base))
    capability = IMAGING_CAPABILITIES.get(get["job"])
    if capability is not None and not models.can(model, capability):
        raise FmscopeError(
            f"Row {row}: model '{model}' cannot {get['job']}.",
            f"For a {get['job']} row use one of: {models.choices_text(capability)}.",
        )
    return BatchItem(
        id=item_id,
        job=get["job"],
        input=_path(get["input"], base),
        series=get["series"] or None,
        boxes=_boxes(get["box"], row),
        slice=key,
        prompt_file=_path(get["prompt_file"], base) if get["prompt_file"] else None,
        model=model,
        checkpoint=str(_path(get["checkpoint"], base)) if get["checkpoint"] else None,
        window=get["window"] or None,
        resolutions=resolutions,
        truth=_path(get["truth"], base) if get["truth"] else None,
        row=row,
        channel=channel,
    )


def read_manifest(path: str | os.PathLike) -> list[BatchItem]:
    """The items of a manifest CSV (see the module docstring; dialects as
    :func:`fmscope.batch.csv_table.read_csv_table` reads them); raises FmscopeError naming the row."""
    path = Path(path)
    if not path.is_file():
        raise FmscopeError(f"No such manifest: {path}", "Write one with `fmscope batch --template MANIFEST.csv`.")
    table = read_csv_table(path, ("job", "input"), "manifest")
    unknown = set(table.columns) - set(COLUMNS)
    if unknown:
        raise FmscopeError(
            f"{path}: unknown column(s) {', '.join(sorted(unknown))}.", f"Use the columns {', '.join(COLUMNS)}."
        )
    items = [_item(values, row, path.parent) for row, values in table.rows]
    if not items:
        raise FmscopeError(f"{path} has no rows.", "Add one row per item below the header.")
    seen: dict[str, int] = {}
    for item in items:
        key = item.id.lower()  # output folders: 'A1' and 'a1' are one folder on macOS and Windows
        if key in seen:
            raise FmscopeError(
                f"Rows {seen[key]} and {item.row} have the same id '{item.id}' (ids name output "
                "folders; upper and lower case count as the same).",
                "Give every row its own id.",
            )
        seen[key] = item.row
    return items


def write_template(path: str | os.PathLike) -> None:
    """Write an example manifest of the sample cases to ``path``, its rows ready wherever it is written: each
    sample file named as manifests are read (docs/batch.md), relative to the manifest's folder when the sample
    data lies inside it (a source checkout's root: ``sample_data/...``), else by its absolute path (the installed
    package's copy, or ``$FMSCOPE_SAMPLE_DATA``). Refuses an existing file (FmscopeError)."""
    from fmscope import samples
    from fmscope.atomic import atomic_write

    path = Path(path)
    if path.exists():
        raise FmscopeError(f"{path} exists; the template never replaces a file.", "Give a new file name.")
    folder, data = path.absolute().parent, samples.sample_data_dir().absolute()
    where = Path(os.path.relpath(data, folder)) if data.is_relative_to(folder) else data
    rows = [{k: (where / v).as_posix() if k in TEMPLATE_PATHS else v for k, v in row.items()} for row in TEMPLATE_ROWS]

    def write(target: Path) -> None:
        with open(target, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def item_prompts(item: BatchItem) -> tuple[int | None, dict[int, np.ndarray]]:
    """(key slice or None, {object label: box}) of an imaging item, from ``box`` or ``prompt_file``;
    a volume or track item without a key slice / frame is refused (FmscopeError)."""
    key, boxes = _prompts(item)
    if key is None and item.job in ("volume", "track"):
        what = "slice (z" if item.job == "volume" else "frame (t"
        raise FmscopeError(
            f"Row {item.row} ({item.id}): a {item.job} item needs its key 'slice'.",
            f"Give the {what}, 0-based) the boxes are drawn on.",
        )
    return key, boxes


def row_message(item: BatchItem, error: FmscopeError) -> str:
    """The error's text, starting with "Row N (id): " (once)."""
    text = str(error)
    return text if text.startswith("Row ") else f"Row {item.row} ({item.id}): {text}"


def _prompts(item: BatchItem) -> tuple[int | None, dict[int, np.ndarray]]:
    from fmscope import samples

    if item.boxes:
        return item.slice, {k: np.asarray(b, float) for k, b in enumerate(item.boxes, start=1)}
    if item.prompt_file is None:
        raise FmscopeError(f"Row {item.row} ({item.id}): no prompt.", "Give a 'box' or a 'prompt_file'.")
    if not item.prompt_file.exists():
        raise FmscopeError(f"Row {item.row} ({item.id}): no such prompt file: {item.prompt_file}", "Check the path.")
    if item.prompt_file.suffix.lower() == ".csv":
        try:
            rows = [r for _, r in read_csv_table(item.prompt_file, ("x0", "y0", "x1", "y1"), "box file").rows]
            boxes = [tuple(float(r[k]) for k in ("x0", "y0", "x1", "y1")) for r in rows]
        except (FmscopeError, KeyError, ValueError):
            raise FmscopeError(
                f"Row {item.row} ({item.id}): {item.prompt_file.name} needs numeric columns x0, y0, x1, y1.",
                "Write one box per line under that header.",
            ) from None
        return item.slice, {k: np.asarray(b) for k, b in enumerate(boxes, start=1)}
    labels = _prompt_labels(item)
    key = item.slice
    if item.job == "track" and labels.ndim == 3:
        key = _first_labelled_frame(labels) if key is None else key
    if labels.ndim == 3:
        key = samples.key_slice(labels) if key is None else key
        if not 0 <= key < labels.shape[0]:
            raise FmscopeError(
                f"Row {item.row} ({item.id}): slice {key} is outside the prompt volume.",
                f"Give a slice between 0 and {labels.shape[0] - 1}.",
            )
        labels = labels[key]
    boxes = {k: b for k, b in samples.boxes_from_labels(labels).items() if b is not None}
    if not boxes:
        raise FmscopeError(
            f"Row {item.row} ({item.id}): {item.prompt_file.name} has no labels"
            + (f" on slice {key}" if key is not None else "")
            + ".",
            "Give a mask with objects.",
        )
    return key, boxes


def _prompt_labels(item: BatchItem) -> np.ndarray:
    """The prompt file's labels (the label-image reader; a binary mask gives one box per separate region):
    (Z, H, W) for volume items, (H, W) or (T, H, W) for tracking, (H, W) for segment items."""
    from fmscope.imaging.labels import read_label_image

    labels = read_label_image(item.prompt_file).array
    allowed = {"volume": (3,), "track": (2, 3)}.get(item.job, (2,))
    if labels.ndim not in allowed:
        raise FmscopeError(
            f"Row {item.row} ({item.id}): {item.prompt_file.name} has shape {labels.shape}.",
            {
                "volume": "Give a (Z, H, W) label volume on the volume's grid.",
                "track": "Give a (H, W) label image of the prompted frame or a (T, H, W) label stack.",
            }.get(item.job, "Give a (H, W) label image on the picture."),
        )
    return labels


def _first_labelled_frame(labels: np.ndarray) -> int:
    """The first frame of a (T, H, W) label stack holding any object."""
    frames = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    return int(frames[0]) if len(frames) else 0


def validate_items(items: list[BatchItem]) -> list[tuple[BatchItem, str | None]]:
    """Check every item before anything runs: files exist, prompts readable and inside the image.

    Returns ``[(item, problem or None)]``, each problem starting with "Row N (id): "; reads image
    headers and prompt files, runs no model.
    """
    from fmscope.imaging.intensity import parse_window
    from fmscope.imaging.prompts import validate_box

    checked = []
    for item in items:
        try:
            for label, path in (("input", item.input), ("truth", item.truth)):
                if path is not None and not path.exists():
                    raise FmscopeError(f"Row {item.row} ({item.id}): no such {label}: {path}", "Check the path.")
            if item.job in IMAGING_JOBS:
                parse_window(item.window)
                shape = _image_shape(item)
                key, boxes = item_prompts(item)
                if item.job in ("volume", "track"):
                    if not 0 <= key < shape[0]:
                        raise FmscopeError(
                            f"Row {item.row} ({item.id}): slice {key} is outside the volume's 0..{shape[0] - 1}.",
                            "Give a slice inside the volume.",
                        )
                for box in boxes.values():
                    validate_box(box, shape[-2:])
            checked.append((item, None))
        except FmscopeError as error:
            checked.append((item, row_message(item, error)))
    return checked


def _image_shape(item: BatchItem) -> tuple[int, ...]:
    """(z, y, x) of a volume or (y, x) of an image, from the file's header where the reader allows."""
    import SimpleITK as sitk

    from fmscope.imaging import io

    if item.job == "segment":
        from fmscope.imaging.lazy_image import LazyImage

        image = io.open_image(item.input)  # a huge image: its header only
        if isinstance(image, LazyImage):
            image.close()
            return image.shape[:2]
        return image.array.shape[:2]
    if item.job == "track":
        from fmscope.imaging.tracking import open_frames
        from fmscope.imaging.tracking.frames import LazyStackFrames

        frames = open_frames(item.input, channel=item.channel)
        if isinstance(frames, LazyStackFrames):  # huge frames: never read whole, so no full-size label stack
            frames.close()
            raise FmscopeError(
                f"{item.input} has frames of {frames.width} x {frames.height} pixels; a track row writes a full-size "
                "label stack, which fmscope does not make for frames this large.",
                "Track it inside a window of the frames (napari's Track panel, or open_frames(path).window_around(box) "
                "in Python), or crop the frames first.",
            )
        return (frames.n_frames, *frames.shape)
    if item.input.is_dir():
        return io.read_volume(item.input, series=item.series).array.shape
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(item.input))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise FmscopeError(
            f"Row {item.row} ({item.id}): cannot read {item.input} as a volume.",
            "Give a NIfTI, NRRD, MHA file or a DICOM series folder.",
        ) from None
    return tuple(int(v) for v in reversed(reader.GetSize()))
