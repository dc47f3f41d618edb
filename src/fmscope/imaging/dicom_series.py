"""DICOM folders as exports lay them out: list what a folder holds, pick the volume, check its slices.

A PACS or CD export often puts several series in one folder (localizers / scouts, other
reconstructions) and a series may mix orientations (a three-plane localizer) or lose a file.
Here a folder becomes a list of *stacks*: the files of one series that share an orientation
and image size, sorted along the slice normal. One volumetric stack is read as is; with
several, the user picks one (``--series``, by its number in the list or its Series Instance
UID). A stack whose slices are not evenly spaced (a missing file, uneven reconstruction
gaps), that repeats positions (echoes, phases) or is sheared (gantry tilt) is refused with
what is wrong: reading it as a regular grid would place slices where they were not scanned.

Two things a folder holds are mended, with a note (``Stack.notes``): files copied twice ("IM0007 - Copy.dcm",
"IM0003 (1).dcm": the same SOP Instance UID, or the same position and pixels) are read once, as dcm2niix does
(rordenlab/dcm2niix#287); slices that carry their own Rescale Slope / Intercept (PET scales each slice to fill
int16) are rescaled each by its own in float32, where SimpleITK's series reader would cast every slice to the first
one's pixel type (an integer slope 1 there: 70,000 Bq/ml read as 4,464; SimpleITK#1636).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fmscope.errors import FmscopeError
from fmscope.imaging import dicom_multiframe, dicom_objects
from fmscope.imaging.slice_positions import SPACING_TOLERANCE, grid_step, uneven_positions, written_precision

_TAGS = {
    "uid": "0020|000e",
    "number": "0020|0011",
    "description": "0008|103e",
    "modality": "0008|0060",
    "image_type": "0008|0008",
    "position": "0020|0032",
    "orientation": "0020|0037",
    "pixel": "0028|0030",
    "sop_class": "0008|0016",
    "sop_uid": "0008|0018",
    "intercept": "0028|1052",
    "slope": "0028|1053",
    "instance": "0020|0013",
    "content_time": "0008|0033",
}


@dataclass(frozen=True)
class Stack:
    """The files of one series sharing an orientation and image size, sorted along the slice normal."""

    number: int  # 1-based place in the folder's listing: what --series takes
    series_uid: str
    series_number: str
    description: str
    modality: str
    image_type: str
    size: tuple[int, int]  # rows, columns
    pixel_mm: tuple[float, ...] | None  # (row, column) spacing in mm as the files give it, None when absent
    normal: tuple[float, float, float] | None  # None when the files carry no orientation
    files: tuple[str, ...]
    points: tuple[tuple[float, float, float] | None, ...]  # each file's position (mm, LPS); None when absent
    frames: int  # frames of a single multi-frame file, else 1
    precision: float = 0.0  # how far the positions' written rounding can move a gap, mm (slice_positions)
    rescales: tuple[tuple[float, float], ...] = ()  # each file's (Rescale Slope, Rescale Intercept)
    notes: tuple[str, ...] = ()  # what was mended on reading (copies read once, per-slice rescale)
    instances: tuple[int | None, ...] = ()  # each file's Instance Number (0020,0013); None when absent
    content_times: tuple[str, ...] = ()  # each file's Content Time (0008,0033) as written; "" when absent

    @property
    def positions(self) -> tuple[float | None, ...]:
        """Each file's position along the slice normal in mm (None when unknown)."""
        return tuple(None if self.normal is None or p is None else float(np.dot(p, self.normal)) for p in self.points)

    @property
    def localizer(self) -> bool:
        return "LOCALIZER" in self.image_type.upper()

    @property
    def volumetric(self) -> bool:
        """More than one slice in one orientation, and not a localizer / scout."""
        return not self.localizer and (len(self.files) > 1 or self.frames > 1)

    @property
    def plane(self) -> str:
        if self.normal is None:
            return "orientation unknown"
        axis = int(np.argmax(np.abs(self.normal)))
        return ("sagittal", "coronal", "axial")[axis] if abs(self.normal[axis]) > 0.9 else "oblique"

    def summary(self) -> str:
        """One line for listings: number, series, slices, size, spacing, plane."""
        slices = self.frames if self.frames > 1 else len(self.files)
        kind = f"{self.modality} {'localizer' if self.localizer else ''}".strip()
        described = f"'{self.description}' " if self.description else ""
        text = (
            f"[{self.number}] series {self.series_number or '?'} {described}{kind}: "
            f"{slices} slice{'s' if slices != 1 else ''} {self.size[0]} x {self.size[1]}"
        )
        if self.pixel_mm:
            text += f", {' x '.join(f'{v:.4g}' for v in self.pixel_mm)} mm pixels"
        steps = self.steps()
        if len(steps):
            median = float(np.median(steps))
            text += f", {median:.4g} mm apart" + ("" if self.spacing_problem() is None else " (UNEVEN)")
        return f"{text}, {self.plane} (UID {self.series_uid})"

    def steps(self) -> np.ndarray:
        """Gaps between neighbouring slices in mm (empty when positions are missing)."""
        if len(self.files) < 2 or any(p is None for p in self.positions):
            return np.zeros(0)
        return np.diff(np.asarray(self.positions, dtype=np.float64))

    @property
    def unplaced(self) -> bool:
        """Several single-frame files none of which carries a position or orientation: 2D images (the Ultrasound,
        Secondary Capture and VL image IODs have no Image Plane module), not the slices of a volume."""
        return len(self.files) > 1 and self.normal is None and all(p is None for p in self.points)

    def instance_order(self) -> tuple[tuple[str, ...], str]:
        """The files in Instance Number order (0020,0013; ties and files without one by Content Time, then file
        name), and how they were ordered, for a note: the order of an unplaced series' frames in time."""
        numbers = self.instances or (None,) * len(self.files)
        times = self.content_times or ("",) * len(self.files)
        order = sorted(
            range(len(self.files)),
            key=lambda k: (numbers[k] is None, numbers[k] or 0, times[k] == "", times[k], self.files[k]),
        )
        if all(n is not None for n in numbers):
            how = f"Instance Number order ({numbers[order[0]]} to {numbers[order[-1]]})"
        elif all(times):
            how = "Content Time order (no Instance Number in some files)"
        else:
            how = "Instance Number / Content Time order where the files give them, else by file name"
        return tuple(self.files[k] for k in order), how

    def spacing_problem(self) -> str | None:
        """Why these slices do not form a regular grid, or None when they do."""
        if len(self.files) < 2:
            return None
        if self.normal is None or any(p is None for p in self.positions):
            return "its files carry no slice position or orientation (0020,0032 / 0020,0037)"
        return uneven_positions([float(p) for p in self.positions if p is not None], "file", self.precision)


def _header(path: Path) -> dict[str, str] | None:
    """The tags fmscope needs from one file, or None when it is not a DICOM image."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    values = {
        name: reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else "" for name, tag in _TAGS.items()
    }
    size = reader.GetSize()  # columns, rows[, frames]
    values.update(rows=str(size[1]), columns=str(size[0]), frames=str(size[2] if len(size) == 3 else 1))
    return values if values["uid"] else None


def _numbers(text: str) -> list[float] | None:
    try:
        return [float(v) for v in text.split("\\")] if text else None
    except ValueError:
        return None


def _pixel_digest(path: str) -> str:
    """A digest of a DICOM file's pixels as read (rescale applied, with their shape and type); "" when unreadable."""
    try:
        pixels = sitk.GetArrayFromImage(sitk.ReadImage(path))
    except RuntimeError:
        return ""
    return hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode() + pixels.tobytes()).hexdigest()


def _without_copies(placed: list[tuple[str, dict[str, str]]], where) -> tuple[list, list[str]]:
    """``placed`` (path, header) without the files copied twice, and a note for each copy left out.

    A copy is the same SOP Instance UID at the same position, or another file at the same position with the same
    pixels (``where(header)``: its position). Of a file and its copies the shortest name is read ("IM0007.dcm",
    not "IM0007 - Copy.dcm"); files at one position with other pixels (echoes, phases) are all kept."""
    kept: list[tuple[int, tuple[str, dict[str, str]]]] = []
    at: dict[tuple[float, ...], list[tuple[str, dict[str, str]]]] = {}  # kept files by position (0.001 mm)
    notes: list[str] = []
    digests: dict[str, str] = {}  # each file's pixels read at most once (a 4D series shares every position)

    def same_pixels(first: str, second: str) -> bool:
        for path in (first, second):
            if path not in digests:
                digests[path] = _pixel_digest(path)
        return digests[first] != "" and digests[first] == digests[second]

    for index, item in sorted(enumerate(placed), key=lambda pair: (len(Path(pair[1][0]).name), pair[1][0])):
        point = where(item[1])
        key = tuple(np.round(point, 3)) if point is not None else None
        uid = item[1]["sop_uid"]
        for other, header in at.get(key, []) if key is not None else []:
            if (uid and uid == header["sop_uid"]) or same_pixels(item[0], other):
                why = f"the same SOP instance, UID {uid}" if uid and uid == header["sop_uid"] else "the same pixels"
                notes.append(f"{Path(item[0]).name} is a copy of {Path(other).name} ({why}, at the same position): "
                             "read once")  # fmt: skip
                break
        else:
            kept.append((index, item))
            if key is not None:
                at.setdefault(key, []).append(item)
    return [item for _, item in sorted(kept, key=lambda pair: pair[0])], notes


def _whole(text: str) -> int | None:
    """An integer string tag (IS) as an int; None when absent or not a whole number."""
    try:
        return int(float(text)) if text and float(text).is_integer() else None
    except ValueError:
        return None


def _rescale(header: dict[str, str]) -> tuple[float, float]:
    """A file's (Rescale Slope, Rescale Intercept); (1, 0) where absent."""
    slope, intercept = _numbers(header["slope"]), _numbers(header["intercept"])
    return (slope[0] if slope else 1.0), (intercept[0] if intercept else 0.0)


def list_stacks(folder: Path) -> list[Stack]:
    """Every stack of DICOM images directly in ``folder`` (not its subfolders), numbered from 1."""
    groups: dict[tuple, list[tuple[str, dict[str, str]]]] = {}
    not_images: list[tuple[Path, str]] = []  # DICOM SEG, RTSTRUCT ... (dicom_objects): never a stack
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        header = _header(path)
        uid = header["sop_class"] if header is not None else dicom_objects.sop_class(path)  # RTSTRUCT: no pixels
        kind = dicom_objects.kind_of(uid)
        if kind is not None:
            not_images.append((path, kind))
        if header is None or kind is not None:
            continue
        orientation = _numbers(header["orientation"])
        key_orientation = tuple(np.round(orientation, 3)) if orientation and len(orientation) == 6 else None
        key = (header["uid"], key_orientation, header["rows"], header["columns"])
        groups.setdefault(key, []).append((str(path), header))
    if not groups and not_images:
        raise dicom_objects.refusal(not_images[0][0], not_images[0][1])
    stacks = []
    for (uid, orientation, _, _), members in groups.items():
        first = members[0][1]
        normal = None
        if orientation is not None:
            cross = np.cross(orientation[:3], orientation[3:])
            normal = tuple(float(v) for v in cross / max(np.linalg.norm(cross), 1e-12))

        def point(header: dict[str, str]) -> tuple[float, float, float] | None:
            position = _numbers(header["position"])
            return tuple(position) if position and len(position) == 3 else None

        def along(item: tuple[str, dict[str, str]]) -> tuple:
            where = point(item[1])
            return (
                where is None or normal is None,
                0.0 if where is None or normal is None else float(np.dot(where, normal)),
                item[0],
            )

        placed, notes = _without_copies(sorted(members, key=along), point)
        rescales = tuple(_rescale(h) for _, h in placed)
        if len(set(rescales)) > 1:
            ranges = [
                f"{name} ({min(values):.6g} to {max(values):.6g})"
                for name, values in (("slope", [r[0] for r in rescales]), ("intercept", [r[1] for r in rescales]))
                if len(set(values)) > 1
            ]
            notes.append(
                f"its slices carry their own rescale {' and '.join(ranges)}: each slice rescaled by its own, in "
                "float32 (not cast to the first slice's pixel type)"
            )
        precision = 0.0 if normal is None else written_precision((h["position"] for _, h in placed), normal)
        frames = int(first["frames"]) if len(members) == 1 else 1
        pixel = _numbers(first["pixel"])
        if frames > 1 and (normal is None or not pixel):  # an Enhanced file keeps them in its functional groups
            grouped_pixel, grouped_normal = dicom_multiframe.plane(placed[0][0])
            pixel, normal = pixel or grouped_pixel, normal or grouped_normal
        stacks.append(
            Stack(
                0,
                uid,
                first["number"],
                first["description"],
                first["modality"],
                first["image_type"],
                (int(first["rows"]), int(first["columns"])),
                tuple(pixel) if pixel else None,
                normal,
                tuple(f for f, _ in placed),
                tuple(point(h) for _, h in placed),
                frames,
                precision,
                rescales,
                tuple(notes),
                tuple(_whole(h["instance"]) for _, h in placed),
                tuple(h["content_time"] for _, h in placed),
            )
        )

    def order(stack: Stack) -> tuple:
        number = _numbers(stack.series_number)
        return (number[0] if number else float("inf"), stack.series_uid, stack.normal or ())

    return [replace(stack, number=i) for i, stack in enumerate(sorted(stacks, key=order), start=1)]


def _listing(stacks: list[Stack]) -> str:
    return "\n".join("  " + stack.summary() for stack in stacks)


def choose(stacks: list[Stack], series: str | None, folder: Path) -> Stack:
    """The stack the user means: ``series`` (its number in the listing or a Series Instance UID),
    else the folder's one volumetric stack. Raises FmscopeError listing the stacks otherwise."""
    if not stacks:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = (
            f"It has subfolders ({', '.join(subfolders[:5])}{', ...' if len(subfolders) > 5 else ''}): "
            "give the one holding the series."
            if subfolders
            else "Give the folder holding the .dcm files."
        )
        raise FmscopeError(f"No DICOM images in {folder}.", hint)
    if series is not None:
        chosen = [s for s in stacks if str(s.number) == series.strip() or s.series_uid == series.strip()]
        if len(chosen) == 1:
            return chosen[0]
        problem = (
            f"--series {series} names {len(chosen)} stacks (one series in several orientations)"
            if chosen
            else f"{folder} has no series '{series}'"
        )
        raise FmscopeError(
            f"{problem}. It holds:\n{_listing(stacks)}",
            "Give --series with the number in [brackets] of the volume to read.",
        )
    volumes = [s for s in stacks if s.volumetric]
    if len(volumes) == 1:
        return volumes[0]
    problem = (
        f"{folder} holds {len(volumes)} volumetric series"
        if volumes
        else f"{folder} holds no volumetric series (none with more than one slice in one orientation)"
    )
    raise FmscopeError(
        f"{problem}:\n{_listing(stacks)}",
        "Choose one with --series N (the number in [brackets]) or its Series Instance UID."
        if volumes
        else "Give a folder with a CT / MR series, or choose a stack with --series N.",
    )


def read_stack(stack: Stack) -> sitk.Image:
    """The stack as one 3D image on its true grid; raises FmscopeError when its slices do not
    form a regular grid (uneven or repeated positions, shear)."""
    problem = stack.spacing_problem()
    if stack.unplaced:
        raise FmscopeError(
            f"Series {stack.summary()}: {problem}: they are 2D images without a place in space (the "
            f"{stack.modality or 'DICOM'} images of Ultrasound, Secondary Capture or endoscopy storage carry none), "
            "not the slices of a volume.",
            "If they are frames in time (a cine loop saved one file per frame), track them with 'fmscope track' "
            "on the folder, which reads them in Instance Number order; for a volume, export the series again with "
            "its slice positions (Image Position / Orientation Patient), e.g. from the scanner or PACS.",
        )
    if problem is not None:
        restore = "Restore the missing files from the source, c" if "missing?" in problem else "C"
        raise FmscopeError(
            f"Series {stack.summary()}: {problem}.",
            f"{restore}hoose another series with --series, or resample the series to an even grid in a tool that "
            "does so (e.g. 3D Slicer) and give the NIfTI it writes.",
        )
    if len(stack.files) > 1:
        travel = np.subtract(stack.points[-1], stack.points[0])
        sideways = np.linalg.norm(travel - np.dot(travel, stack.normal) * np.asarray(stack.normal))
        if sideways > SPACING_TOLERANCE * abs(np.dot(travel, stack.normal)):
            raise FmscopeError(
                f"Series {stack.summary()}: its slices are sheared ({sideways:.3g} mm sideways "
                "from first to last; gantry tilt?), which a regular volume grid cannot hold.",
                "Resample the series in a tool that corrects gantry tilt (e.g. 3D Slicer or "
                "dcm2niix) and give the NIfTI it writes.",
            )
    try:
        if len(stack.files) == 1:
            return dicom_multiframe.read(stack.files[0], stack.summary())
        if len(set(stack.rescales)) > 1:
            image = _read_rescaled_slices(stack.files)
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(list(stack.files))
            image = reader.Execute()
    except RuntimeError as error:
        raise FmscopeError(
            f"Cannot read series {stack.summary()} ({str(error).strip()[:200]}).",
            "Check the files are complete DICOM images.",
        ) from None
    spacing = list(image.GetSpacing())
    spacing[2] = abs(grid_step([float(p) for p in stack.positions if p is not None]))  # not the first gap alone
    image.SetSpacing(spacing)
    return image


def _read_rescaled_slices(files: tuple[str, ...]) -> sitk.Image:
    """Files of one slice each (sorted along the normal), each rescaled by its own slope and intercept, as one
    float32 volume placed at the first file (its spacing along the normal set by the caller)."""
    slices = [sitk.ReadImage(f) for f in files]  # GDCM applies each file's own rescale
    array = np.stack([sitk.GetArrayViewFromImage(s).astype(np.float32).reshape(s.GetHeight(), s.GetWidth())
                      for s in slices])  # fmt: skip
    image = sitk.GetImageFromArray(array)
    first = slices[0]
    image.SetOrigin(first.GetOrigin())
    image.SetSpacing(first.GetSpacing()[:2] + (1.0,))
    image.SetDirection(first.GetDirection())
    return image
