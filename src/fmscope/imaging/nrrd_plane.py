"""A 2D NRRD placed in 3D space: two domain axes, a 3D ``space`` (``dimension: 2``, ``space: left-posterior-superior``
or ``space dimension: 3``, two 3-vector ``space directions``, a 3D ``space origin``).

The NRRD format lets the space be of more dimensions than the image's domain axes
(https://teem.sourceforge.net/nrrd/format.html, "space directions": "the number of vectors ... equals the
dimension, each vector has space dimension components"); teem's ``unu slice`` and pynrrd write exactly this for a
slice cut from a CT volume. ITK's NRRD reader refuses it ("number of domain axes in the NRRD file (2) doesn't match
dimension of space in which orientation is defined (3)"). fmscope reads it as the one-slice 3D NRRD it equals: the
header is rewritten with a third domain axis of one voxel (``sizes: W H 1``, a third space direction along the
normal of the other two, unit length), the data copied after it unchanged (same type, endian, encoding, skips), and
SimpleITK reads that (so every encoding, type and RAS / LAS / LPS space is read as for any NRRD). Masks written as
``.nrrd`` keep the input's layout (:func:`write_plane`: ``dimension: 2``, LPS, 3-vector directions, 3D origin).

Per-axis fields that describe no placement (``spacings``, ``thicknesses``, ``axis mins`` / ``maxs``, ``centers``,
``labels``, ``units``) are left out of the rewritten header. Other mismatches of domain axes and space dimension (a
1D line in 3D space, a 2D image in a 4D space-time) are refused by name (:func:`refuse_other_layouts`).
"""

from __future__ import annotations

import gzip
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from fmscope.errors import FmscopeError
from fmscope.imaging import complete_files

MAX_HEADER_BYTES = 2**20  # an NRRD header is text of a few hundred bytes; stop looking for its end after this
# the `space` values of the NRRD format and their dimension (teem's airEnum nrrdSpace, with its abbreviations)
SPACE_DIMENSIONS = {
    **dict.fromkeys(("right-anterior-superior", "ras", "left-anterior-superior", "las"), 3),
    **dict.fromkeys(("left-posterior-superior", "lps", "scanner-xyz", "3d-right-handed", "3d-left-handed"), 3),
    **dict.fromkeys(("right-anterior-superior-time", "rast", "left-anterior-superior-time", "last"), 4),
    **dict.fromkeys(("left-posterior-superior-time", "lpst", "scanner-xyz-time"), 4),
    **dict.fromkeys(("3d-right-handed-time", "3d-left-handed-time"), 4),
}
# the spaces whose vectors ITK flips into LPS (x, y, z multipliers); every other 3D space is read as it is
LPS_FLIPS = {
    **dict.fromkeys(("right-anterior-superior", "ras"), (-1, -1, 1)),
    **dict.fromkeys(("left-anterior-superior", "las"), (1, -1, 1)),
}
# kinds teem counts as domain axes (nrrdKindIsDomain, and an unknown kind)
DOMAIN_KINDS = {"domain", "space", "time", "???", "none"}
# per-axis fields left out of the rewritten header (keys without spaces, lower case)
DROPPED = {"spacings", "thicknesses", "axismins", "axismaxs", "centers", "centerings", "labels", "units"}
TYPES = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "float32": "float",
    "float64": "double",
}


@dataclass(frozen=True)
class Header:
    """An NRRD header as written: its lines after the magic (fields ``key: value``, key / value pairs ``key:=value``,
    comments), the magic, where the data starts (bytes; the file's length for a detached header), and what the
    reader needs: the domain axes' count and the space's dimension (0 when the file gives none)."""

    magic: str
    lines: tuple[str, ...]
    data_offset: int
    domain_axes: int
    space_dimension: int

    def field(self, name: str) -> str | None:
        """The value of field ``name`` (spaces and case ignored, as teem's field names), None when absent."""
        wanted = name.replace(" ", "").lower()
        return next((field[1] for field in map(_field, self.lines) if field and field[0] == wanted), None)

    @property
    def is_plane_in_space(self) -> bool:
        """Two domain axes placed in a 3D space: what :func:`read_plane` reads."""
        return self.domain_axes == 2 and self.space_dimension == 3


def _field(line: str) -> tuple[str, str] | None:
    """(key without spaces, lower case; value) of a field line ``key: value``; None for a comment (``#``) or a key /
    value pair (``key:=value``)."""
    if line.startswith("#") or ":=" in line or ": " not in line:
        return None
    key, value = line.split(": ", 1)
    return key.replace(" ", "").lower(), value.strip()


def read_header(path: Path) -> Header | None:
    """The header of the NRRD file ``path`` (attached ``.nrrd`` or detached ``.nhdr``); None when the file does not
    start with an NRRD magic (``NRRD0001`` ... ) or its header does not end within ``MAX_HEADER_BYTES``."""
    with open(path, "rb") as file:
        text = file.read(MAX_HEADER_BYTES)
    if not text.startswith(b"NRRD"):
        return None
    lines, offset = [], 0
    for raw in text.splitlines(keepends=True):
        offset += len(raw)
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:  # the blank line before attached data
            break
        lines.append(line)
    else:
        if len(text) == MAX_HEADER_BYTES:
            return None
    magic, lines = lines[0], tuple(lines[1:])
    header = Header(magic, lines, offset, 0, 0)
    dimension = _count(header.field("dimension"))
    kinds = (header.field("kinds") or "").split()
    domain = sum(kind.lower() in DOMAIN_KINDS for kind in kinds) if len(kinds) == dimension else dimension
    space = header.field("space")
    space_dimension = SPACE_DIMENSIONS.get(space.lower(), 0) if space else _count(header.field("space dimension"))
    return Header(magic, lines, offset, domain, space_dimension)


def _count(value: str | None) -> int:
    """A whole number field's value; 0 when absent or not a number (ITK then names the problem)."""
    return int(value) if value is not None and value.isdigit() else 0


def refuse_other_layouts(path: Path, header: Header) -> None:
    """Raise FmscopeError, in plain words, for an NRRD whose domain axes are fewer or more than its space's dimension
    other than the 2D-in-3D case :func:`read_plane` reads (ITK refuses them all with its own text)."""
    if header.space_dimension and header.domain_axes != header.space_dimension and not header.is_plane_in_space:
        raise FmscopeError(
            f"{path} holds {header.domain_axes} domain (image) axes placed in a {header.space_dimension}D space "
            f"({header.field('space') or 'space dimension ' + str(header.space_dimension)}): fmscope reads 2D and 3D "
            "images in a space of their own dimension, and 2D images placed in 3D space.",
            "Save it as a 2D or 3D image whose space directions have as many components as it has axes (e.g. "
            "pynrrd: nrrd.write with 'space directions' of that size, or 3D Slicer's Save).",
        )


def read_plane(path: Path, header: Header) -> sitk.Image:
    """The 2D-in-3D NRRD ``path`` (``header.is_plane_in_space``) as SimpleITK reads the one-slice 3D NRRD it
    equals (size (W, H, 1), the third axis the normal of the two, 1 mm), through a rewritten copy in a temporary
    folder (the input is only read). Raises FmscopeError for a file cut short or one SimpleITK cannot read."""
    data = _data_file(path, header)
    with tempfile.TemporaryDirectory(prefix="fmscope-nrrd-") as folder:
        copy = Path(folder) / "plane.nrrd"
        with open(copy, "wb") as out, open(data, "rb") as source:
            out.write(_one_slice_header(path, header).encode("latin-1"))
            source.seek(header.data_offset if data == path else 0)
            shutil.copyfileobj(source, out)
        try:
            return sitk.ReadImage(str(copy))
        except RuntimeError as error:
            short = complete_files.itk_short_read(path, error)
            if short is not None:
                raise short from None
            last = str(error).strip().splitlines()[-1]
            raise FmscopeError(
                f"Cannot read {path}, a 2D NRRD placed in 3D space ({last[:200]}).",
                "Check the file against its header (type, sizes, encoding), or save it again from its source.",
            ) from None


def _data_file(path: Path, header: Header) -> Path:
    """The file holding the data: ``path`` itself (attached), or a detached header's one ``data file``."""
    name = header.field("data file")
    if name is None:
        return path
    if name == "LIST" or len(name.split()) > 1:
        raise FmscopeError(
            f"{path} is a 2D NRRD placed in 3D space whose data is split over several files ('data file: {name}').",
            "Save it with its data in one file (an attached .nrrd, e.g. 'unu save -f nrrd -e gzip -i in.nhdr -o "
            "out.nrrd').",
        )
    data = path.parent / name
    if not data.is_file():
        raise FmscopeError(
            f"{path} is a detached NRRD header whose data file, {name}, is missing (not found at {data}).",
            f"Put {name} beside {path.name} (copy it again from its source); keep the two files together.",
        )
    return data


def _one_slice_header(path: Path, header: Header) -> str:
    """``header`` rewritten as a 3D one-slice NRRD with attached data."""
    found = re.findall(r"\(([^)]*)\)", header.field("space directions") or "")  # "none" marks a non-space axis
    vectors = [np.array([float(v) for v in vector.split(",")]) for vector in found]
    # ITK turns RAS / LAS vectors into LPS by flipping axes; the normal is the cross product of the LPS vectors (the
    # same third axis as a mask written in LPS, read back), written in the file's space
    flip = np.asarray(LPS_FLIPS.get((header.field("space") or "").lower(), (1, 1, 1)), dtype=float)
    normal = flip * np.cross(flip * vectors[0], flip * vectors[1]) if len(vectors) == 2 else np.zeros(3)
    if not np.linalg.norm(normal) > 0:
        raise FmscopeError(
            f"{path} is a 2D NRRD placed in 3D space whose two space directions do not span a plane "
            f"('space directions: {header.field('space directions')}').",
            "Write the two axes' directions in space (non-zero, not parallel), e.g. as the volume it was cut from.",
        )
    normal = normal / np.linalg.norm(normal)
    lines = [header.magic]
    for line in header.lines:
        key, value = _field(line) or ("", "")
        if line.startswith("#") or key in DROPPED or key == "datafile":
            continue
        if key == "dimension":
            line = f"dimension: {int(value) + 1}"
        elif key == "sizes":
            line = f"sizes: {value} 1"
        elif key == "kinds":
            line = f"kinds: {value} domain"
        elif key == "spacedirections":
            line = f"space directions: {value} ({','.join(repr(float(v)) for v in normal)})"
        lines.append(line)
    return "\n".join(lines) + "\n\n"


def write_plane(
    array: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...], target: Path
) -> None:
    """Write the 2D (H, W) ``array`` as a gzip NRRD placed in 3D space (LPS): ``dimension: 2``, ``sizes: W H``, the
    first two axes of the 3D ``spacing``, ``direction`` (9 numbers, row-major, columns the axes) as 3-vector space
    directions, ``origin`` as the 3D space origin: the layout of a 2D-in-3D input, which ``pynrrd`` and teem read."""
    array = array.astype(np.uint8) if array.dtype == bool else array
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    vectors = " ".join(
        "(" + ",".join(repr(float(v)) for v in matrix[:, axis] * spacing[axis]) + ")" for axis in range(2)
    )
    header = (
        "NRRD0004\n"
        "# Complete NRRD file format specification at:\n"
        "# http://teem.sourceforge.net/nrrd/format.html\n"
        f"type: {TYPES[array.dtype.name]}\n"
        "dimension: 2\n"
        "space: left-posterior-superior\n"
        f"sizes: {array.shape[1]} {array.shape[0]}\n"
        f"space directions: {vectors}\n"
        "kinds: domain domain\n"
        "endian: little\n"
        "encoding: gzip\n"
        f"space origin: ({','.join(repr(float(v)) for v in origin)})\n\n"
    )
    pixels = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    with open(target, "wb") as file:
        file.write(header.encode("latin-1"))
        file.write(gzip.compress(pixels))
