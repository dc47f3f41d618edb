"""Files cut short (an interrupted download or copy) refused by name, before a reader fills the gap with zeros.

SimpleITK reads a NIfTI whose voxels stop early (a .nii cut short, a .nii.gz whose gzip stream ends early) as a
volume whose missing slices are 0, without a word (ITK's readers "report success on truncated pixel data",
InsightSoftwareConsortium/ITK#6575); nibabel raises "Compressed file ended before the end-of-stream marker was
reached" on the same file. A MetaImage cut short makes ITK say "No such file or directory", NRRD names its own
byte counts. Each check here compares what the file's header promises with what the file holds:

- NIfTI (.nii): the file must hold ``vox_offset + voxels x bytes per voxel`` bytes;
- NIfTI (.nii.gz): the gzip stream must end (its end-of-stream marker) and hold that many bytes. The gzip trailer's
  size field (ISIZE, the length modulo 2**32) is read first: when it equals the promised length the file is
  complete but for a 2**-32 chance; else the stream is decompressed once, in 1 MiB pieces (none kept), to count;
- MetaImage (.mha / .mhd with ``ElementDataFile = LOCAL``): the bytes after the header must cover the voxels, or
  ``CompressedDataSize`` for compressed data.

A failed check raises :func:`cut_short`'s :class:`FmscopeError`: the file named, what it holds against what its
header says, and the fix (copy it again).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from fmscope.errors import FmscopeError

PIECE = 2**20  # bytes read at a time when a gzip stream is counted
FIX = "Copy or download the file again from its source (compare its size or checksum with the original)."
# ITK's NRRD reader names a short read in these words ("expected N bytes but received M", "fread got only ...").
NRRD_SHORT = re.compile(r"expected \d+ bytes but received \d+|fread got only[^\n]*|unexpected end of file", re.I)
META_TYPES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


def cut_short(path: Path, detail: str) -> FmscopeError:
    """The one error for a file that ends before its data does (``detail``: what it holds against its header)."""
    return FmscopeError(
        f"{path} is truncated (cut short, as an interrupted download or copy leaves a file): {detail}. fmscope "
        "does not read the missing part as blank.",
        FIX,
    )


def _gzip_length(path: Path) -> int | None:
    """Bytes of the gzip file's decompressed content (every member), None when the stream ends before its
    end-of-stream marker. Raises FmscopeError for a stream that is not gzip data or is damaged."""
    total = 0
    decoder = zlib.decompressobj(wbits=31)
    pending = b""
    try:
        with open(path, "rb") as file:
            while piece := pending or file.read(PIECE):
                pending = b""
                if decoder.eof:  # a member ended and more follows: the next member (zero padding skipped, as gzip)
                    piece = piece.lstrip(b"\0")
                    if not piece:
                        continue
                    decoder = zlib.decompressobj(wbits=31)
                total += len(decoder.decompress(piece))
                if decoder.eof:
                    pending = decoder.unused_data
    except zlib.error as error:
        raise FmscopeError(f"{path} is damaged: its gzip stream does not decompress ({error}).", FIX) from None
    return total if decoder.eof else None


def _gzip_size_field(path: Path) -> int:
    """The gzip trailer's ISIZE (decompressed length of the last member modulo 2**32); -1 for a tiny file."""
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() < 18:
            return -1
        file.seek(-4, os.SEEK_END)
        return int.from_bytes(file.read(4), "little")


def require_complete_nifti(path: Path, block: bytes) -> None:
    """Raise :func:`cut_short`'s error when the NIfTI file ``path`` (.nii or .nii.gz) holds fewer bytes than its
    header ``block`` (:func:`fmscope.imaging.nifti_header.read_header`) promises for its voxels."""
    import nibabel as nib

    from fmscope.imaging.nifti_header import header_of

    header = header_of(block)
    shape, dtype = header.get_data_shape(), header.get_data_dtype()
    offset = int(nib.load(str(path)).dataobj.offset)  # the file's vox_offset (``block``'s is reset to 0 by nibabel)
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    promised = f"its header promises {' x '.join(map(str, shape))} voxels of {dtype.name} ({needed:,} bytes)"
    if not path.name.lower().endswith(".gz"):
        have = path.stat().st_size
        if have < needed:
            raise cut_short(path, f"{promised}, the file holds {have:,} bytes")
        return
    if _gzip_size_field(path) == needed % 2**32:
        return
    have = _gzip_length(path)
    if have is None:
        raise cut_short(path, f"{promised}; its gzip stream stops before its end-of-stream marker")
    if have < needed:
        raise cut_short(path, f"{promised}, the decompressed file holds {have:,} bytes")


def _meta_header(path: Path) -> tuple[dict[str, str], int]:
    """A MetaImage file's header fields (key -> value text) and the header's length in bytes (up to and with the
    ``ElementDataFile`` line, after which LOCAL data start)."""
    fields: dict[str, str] = {}
    offset = 0
    with open(path, "rb") as file:
        for line in file:
            offset += len(line)
            key, _, value = line.decode("latin-1").partition("=")
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile" or offset > 2**16:
                break
    return fields, offset


def require_complete_metaimage(path: Path) -> None:
    """Raise :func:`cut_short`'s error when a MetaImage file holds fewer bytes of voxels than its header promises:
    with the data in the same file (``ElementDataFile = LOCAL``, .mha, sometimes .mhd) the bytes after the header;
    with a detached data file (``ElementDataFile = scan.raw``: the .mhd + .raw pairs of LUNA16 and most challenges)
    that file, named, its ``HeaderSize`` bytes skipped. A detached data file that is not there raises
    :func:`missing_data_file`'s error. Headers it cannot parse, and data split over several files (``LIST``, a
    file-name pattern), are left to ITK's reader (which says "File cannot be read: scan.mhd" for both cases)."""
    try:
        fields, offset = _meta_header(path)
        data_file = fields.get("ElementDataFile", "")
        if fields.get("CompressedData", "").lower() == "true":
            if "CompressedDataSize" not in fields:
                return
            needed = int(fields["CompressedDataSize"])
            what = f"{needed:,} bytes of compressed voxels"
        else:
            sizes = [int(v) for v in fields["DimSize"].split()]
            channels = int(fields.get("ElementNumberOfChannels", "1"))
            needed = int(np.prod(sizes, dtype=np.int64)) * channels * META_TYPES[fields["ElementType"]]
            what = f"{' x '.join(map(str, sizes))} voxels of {fields['ElementType']} ({needed:,} bytes)"
        if data_file.upper() != "LOCAL":
            skip = int(fields.get("HeaderSize", "0"))
            if not data_file or data_file.upper() == "LIST" or " " in data_file or "%" in data_file:
                return
            data = (path.parent / data_file) if not Path(data_file).is_absolute() else Path(data_file)
            if not data.is_file():
                raise missing_data_file(path, data, what)
            size = data.stat().st_size
            if size - max(skip, 0) < needed:
                header_bytes = f" ({skip:,} of them a header)" if skip > 0 else ""
                raise cut_short(data, f"{path.name} (its header) promises {what} in it, it holds {size:,} bytes"
                                f"{header_bytes}")  # fmt: skip
            return
    except (KeyError, ValueError, OSError):
        return
    have = path.stat().st_size - offset
    if have < needed:
        raise cut_short(path, f"its header promises {what}, the file holds {max(have, 0):,} bytes after the header")


def missing_data_file(header: Path, data: Path, what: str) -> FmscopeError:
    """The error for a MetaImage header (.mhd) whose detached data file (``ElementDataFile``) is not there."""
    return FmscopeError(
        f"{header} is a MetaImage header whose voxels ({what}) are in a separate data file, {data.name}, which is "
        f"missing (not found at {data}). A .mhd holds only the header.",
        f"Put {data.name} beside {header.name} (copy or download it again, or extract it from the same archive); "
        "keep the two files together when moving them.",
    )


def itk_short_read(path: Path, error: Exception) -> FmscopeError | None:
    """:func:`cut_short`'s error when ITK's message for ``path`` names a short read (NRRD), else None."""
    text = str(error)
    found = NRRD_SHORT.search(text)
    return cut_short(path, f"ITK's reader says '{found.group(0)}'") if found else None


def _jpeg_ends(data: bytes) -> bool:
    """Whether JPEG bytes hold an end-of-image marker (FF D9) after the first start-of-scan: the segments before
    it are skipped by their lengths (an EXIF thumbnail's own FF D9 lies in one); in the scan data an FF byte is
    followed only by 00 or a restart marker, so FF D9 there is the end."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return True  # not a marker where one belongs: damaged otherwise, left to the decoder
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", position) != -1
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def require_complete_picture(path: Path) -> None:
    """Raise :func:`cut_short`'s error for a PNG without its IEND chunk or a JPEG without its end-of-image marker
    (OpenCV decodes a JPEG cut short with its missing rows grey, saying only "Premature end of JPEG file" on
    stderr). Other formats, and bytes after the end (some phones append data), pass."""
    with open(path, "rb") as file:
        head = file.read(8)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 2**16))
            if b"IEND" not in file.read():
                raise cut_short(path, "the PNG stops before its IEND (end) chunk")
        elif head.startswith(b"\xff\xd8\xff"):
            file.seek(0)
            if not _jpeg_ends(file.read()):
                raise cut_short(path, "the JPEG stops before its end-of-image marker (FF D9)")


def tiff_cut_short(tiff, path: Path) -> FmscopeError | None:
    """:func:`cut_short`'s error when a strip or tile of the open TIFF's first series (``tiff``: a
    tifffile.TiffFile) lies past the file's end, else None (for messages after a failed decode)."""
    size = path.stat().st_size
    try:
        series = tiff.series[0]
        if series.dataoffset is not None and series.dataoffset + series.nbytes > size:  # one contiguous block
            return cut_short(path, f"its pixel data run to byte {series.dataoffset + series.nbytes:,}, the file "
                             f"holds {size:,} bytes")  # fmt: skip
        for index in range(len(series.pages)):
            page = series.pages[index]
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n] if page is not None else []
            if ends and max(ends) > size:
                return cut_short(path, f"its pixel data run to byte {max(ends):,}, the file holds {size:,} bytes")
    except Exception:  # an IFD itself unreadable (cut off): the pages before it were whole
        return None
    return None


def require_whole_ifd_chain(tiff, path: Path) -> None:
    """Raise :func:`cut_short`'s error when the open TIFF's chain of pages (IFDs) points past the file's end: a
    stack cut short, of which tifffile would read the pages before the cut as the whole stack (a time-lapse with
    frames missing, or a 'single 2D image')."""
    size = path.stat().st_size
    try:
        last = tiff.pages[len(tiff.pages) - 1]
        form = tiff.tiff
        with open(path, "rb") as file:
            file.seek(last.offset)
            count = struct.unpack(form.tagnoformat, file.read(form.tagnosize))[0]
            file.seek(last.offset + form.tagnosize + count * form.tagsize)
            following = struct.unpack(form.offsetformat, file.read(form.offsetsize))[0]
    except Exception:  # unreadable headers are the decoders' to name
        return
    if following >= size:
        raise cut_short(path, f"its page {len(tiff.pages)} points to a next page at byte {following:,}, the file "
                        f"holds {size:,} bytes")  # fmt: skip
