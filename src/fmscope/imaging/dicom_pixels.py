"""Whether a DICOM file holds all the pixel data its header promises (a truncated copy does not).

The header (Rows, Columns, SamplesPerPixel, BitsAllocated, NumberOfFrames) says how much pixel
data there must be; a copy cut short (an interrupted transfer, a full disk) still has a whole
header. :func:`check_pixel_data` compares the two without reading the pixels: native pixel data by
its length against the file's end, encapsulated (compressed) data by walking its fragment items.
"""

from __future__ import annotations

import os
from pathlib import Path
from struct import unpack
from typing import BinaryIO

import pydicom

from fmscope.errors import FmscopeError

ITEM, SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF


def check_pixel_data(path: str | os.PathLike) -> pydicom.Dataset:
    """The header (pydicom dataset without pixels) of the DICOM file at ``path``; raises
    :class:`FmscopeError` when it holds fewer frames of pixel data than its NumberOfFrames (1 when
    absent) says, naming what it holds. A file that is not DICOM raises pydicom's error."""
    path = Path(path)
    with open(path, "rb") as handle:
        header = pydicom.dcmread(handle, stop_before_pixels=True)  # leaves the file at the pixel data
        n_frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        rows, columns = int(getattr(header, "Rows", 0) or 0), int(getattr(header, "Columns", 0) or 0)
        frame_bits = (
            rows
            * columns
            * int(getattr(header, "SamplesPerPixel", 1) or 1)
            * int(getattr(header, "BitsAllocated", 8) or 8)
        )
        syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
        if syntax and syntax.is_deflated:  # the dataset is a zlib stream: no byte positions to check
            return header
        endian = ">" if syntax and not syntax.is_little_endian else "<"
        length = _pixel_data_length(handle, bool(syntax and syntax.is_implicit_VR), endian)
        if length is None:
            held_bytes, held_frames = 0, 0
        elif length == UNDEFINED:
            held_bytes, held_frames = _encapsulated_frames(handle, n_frames)
        else:
            available = os.fstat(handle.fileno()).st_size - handle.tell()
            held_bytes = min(length, available)
            held_frames = held_bytes * 8 // frame_bits if frame_bits else n_frames
    if held_frames < n_frames:
        expected = f"{n_frames} frame{'s' if n_frames > 1 else ''} of {columns}x{rows} pixels"
        raise FmscopeError(
            f"{path} is truncated or damaged: its header says {expected}, but its pixel data holds "
            f"{held_bytes:,} bytes ({held_frames} whole frame{'' if held_frames == 1 else 's'}).",
            "Copy or export the file again from its source (PACS, scanner, archive); "
            "fmscope reads only complete files.",
        )
    return header


def _pixel_data_length(handle: BinaryIO, implicit: bool, endian: str) -> int | None:
    """The pixel data element's length (``UNDEFINED`` when encapsulated), the file left at its value;
    None when the file ends before it."""
    head = handle.read(8)
    if len(head) < 8 or unpack(f"{endian}H", head[:2])[0] != 0x7FE0:
        return None
    if implicit:
        return unpack(f"{endian}L", head[4:])[0]
    extended = handle.read(4)  # OB / OW: 2 reserved bytes, then a 4-byte length
    return unpack(f"{endian}L", extended)[0] if len(extended) == 4 else None


def _encapsulated_frames(handle: BinaryIO, n_frames: int) -> tuple[int, int]:
    """(bytes, whole frames) in encapsulated pixel data: whole fragment items up to the sequence end
    or the file's end; frames from the Basic Offset Table, else one per fragment."""
    size = os.fstat(handle.fileno()).st_size
    fragments: list[tuple[int, int]] = []  # (start, end) of each whole item's value
    complete = False
    while True:
        head = handle.read(8)
        if len(head) < 8:
            break
        group, element, length = unpack("<HHL", head)
        tag = group << 16 | element
        if tag == SEQUENCE_END:
            complete = True
            break
        start = handle.tell()
        if tag != ITEM or length == UNDEFINED or start + length > size:
            break
        fragments.append((start, start + length))
        handle.seek(length, 1)
    if not fragments:
        return 0, 0
    (table_start, table_end), data = fragments[0], fragments[1:]
    held = sum(end - start for start, end in data)
    if not data:
        return 0, 0
    handle.seek(table_start)
    offsets = list(unpack(f"<{(table_end - table_start) // 4}L", handle.read(table_end - table_start)))
    if len(offsets) == n_frames:  # frame i ends where frame i + 1 starts (the last at the sequence end)
        first = data[0][0] - 8
        whole_end = data[-1][1] - first
        ends = offsets[1:] + [whole_end if complete else whole_end + 1]
        return held, sum(end <= whole_end for end in ends)
    return held, len(data) if complete else min(len(data), n_frames - 1)
