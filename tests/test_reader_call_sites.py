"""One reader per imaging input family: the low-level readers of frames, label images / pictures, batch
manifests and checkpoints are called only inside their family's reader module (docs/formats.md). A new call
elsewhere reads the family around its reader (and around the variants it handles): route it through the
reader instead. The omics families (slides, references, scGPT) are listed by their own test."""

from __future__ import annotations

import re
from pathlib import Path

import fmscope

SOURCE = Path(fmscope.__file__).parent
SLICER = SOURCE.parents[1] / "slicer_extension"

# low-level call -> the modules (relative to src/fmscope) allowed to make it
ALLOWED = {
    r"torch\.load\(": {"checkpoints.py", "checkpoint_files.py"},
    r"av\.open\((?!.*[\"']w[\"'])": {"imaging/tracking/frames.py"},  # reading; the overlay writer opens "w"
    # imaging/lossy_labels.py: the label reader's part that tells a JPEG / lossy WebP / JPEG-in-TIFF by its header
    r"tifffile\.(imread|TiffFile\(|memmap)": {
        "imaging/io.py",
        "imaging/labels.py",
        "imaging/lossy_labels.py",
        "imaging/tracking/frames.py",
        "imaging/tiff_axes.py",  # the TIFF axes of the frames and volume readers (its refusal quotes a fix)
    },
    # imaging/tracking/frames.py: the frames of an animated GIF / APNG / WebP (AnimatedPictureFrames)
    r"(cv2\.imread|iio\.imread|Image\.open)\(": {
        "imaging/io.py",
        "imaging/labels.py",
        "imaging/lossy_labels.py",
        "imaging/tracking/frames.py",
        "omics/visium_spatial.py",  # the slide reader's Visium tissue images (PNG, gzipped or not)
    },
    # imaging/dicom_codecs.py: the cine reader's (frames.DicomFrames) GDCM decode of what pydicom cannot decode
    r"(sitk\.ReadImage|ImageFileReader)\(": {
        "imaging/io.py",
        "imaging/dicom_series.py",
        "imaging/dicom_multiframe.py",
        "imaging/dicom_codecs.py",
        "imaging/nrrd_plane.py",  # a 2D NRRD placed in 3D space, read as the one-slice 3D NRRD it equals
        "batch/manifest.py",
    },
    # imaging/dicom_objects.py: the SOP Class (SEG, RTSTRUCT ...) every DICOM reader checks first
    r"(pydicom\.dcmread|dcmread)\(": {
        "imaging/dicom_pixels.py",
        "imaging/dicom_series.py",
        "imaging/dicom_objects.py",
        "imaging/dicom_multiframe.py",
    },
    r"pixel_array\(": {"imaging/tracking/frames.py", "imaging/dicom_series.py"},
    r"csv\.(reader|DictReader)\(": {"batch/csv_table.py"},
}


def _calls() -> dict[str, set[str]]:
    """{pattern: files that call it}, for fmscope's sources and the Slicer module."""
    found: dict[str, set[str]] = {pattern: set() for pattern in ALLOWED}
    files = list(SOURCE.rglob("*.py")) + (list(SLICER.rglob("*.py")) if SLICER.is_dir() else [])
    for path in files:
        text = "\n".join(line.split("#")[0] for line in path.read_text(encoding="utf-8").splitlines())
        name = path.relative_to(SOURCE).as_posix() if SOURCE in path.parents else f"slicer:{path.name}"
        for pattern in ALLOWED:
            if re.search(pattern, text):
                found[pattern].add(name)
    return found


def test_low_level_readers_are_called_only_by_their_family_reader():
    calls = _calls()
    outside = {
        pattern: sorted(files - ALLOWED[pattern]) for pattern, files in calls.items() if files - ALLOWED[pattern]
    }
    assert not outside, f"read around the family reader (route through it): {outside}"
    assert calls[r"torch\.load\("] and calls[r"av\.open\((?!.*[\"']w[\"'])"]  # the scan finds real calls
