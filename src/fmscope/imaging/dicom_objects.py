"""DICOM objects that are not images: told by their SOP Class, refused wherever an image or label volume is read.

A DICOM SEG stores one frame per segment and slice, empty frames left out, each placed by its own Per-frame
Functional Groups (QIICR/dcmqi#513, ImagingDataCommons/highdicom#338); GDCM / SimpleITK read it as a stack of
its frames with no such placement (InsightSoftwareConsortium/ITK-Wasm#991, ITK#6647), so a SEG truth would be
compared slice for frame. RTSTRUCT holds contours, not pixels. fmscope reads neither (no SEG library is
installed); the fix is to convert them to a label volume first.
"""

from __future__ import annotations

from pathlib import Path

from fmscope.errors import FmscopeError

_ROOT = "1.2.840.10008.5.1.4.1.1."
NOT_IMAGES = {
    _ROOT + "66.4": "a DICOM SEG (Segmentation Storage)",
    _ROOT + "66.5": "a DICOM Surface Segmentation",
    _ROOT + "66.7": "a DICOM Label Map Segmentation",
    _ROOT + "481.3": "a DICOM RTSTRUCT (RT Structure Set: contours)",
    _ROOT + "481.5": "a DICOM RT Plan",
    _ROOT + "481.8": "a DICOM RT Ion Plan",
    _ROOT + "66": "a DICOM Raw Data object",
    _ROOT + "66.1": "a DICOM Spatial Registration",
    _ROOT + "66.3": "a DICOM Deformable Spatial Registration",
    _ROOT + "88.59": "a DICOM Key Object Selection",
    _ROOT + "104.1": "a DICOM Encapsulated PDF",
}
_REPORT_PREFIXES = (_ROOT + "88.", _ROOT + "11.")  # structured reports, presentation states
SEG_FIX = (
    "Convert it to a label volume first: dcmqi 'segimage2itkimage --inputDICOM seg.dcm --outputDirectory out "
    "--mergeSegments' (NIfTI / NRRD on the image's grid), or highdicom (hd.seg.segread(path).get_volume()); "
    "for RTSTRUCT, rt-utils or plastimatch 'convert --input rtstruct.dcm --output-labelmap labels.nii.gz'."
)


def sop_class(path: Path) -> str:
    """The SOP Class UID of a DICOM file ("" when it has none or is not DICOM)."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # not DICOM, or damaged: the image reader names that
        return ""
    return str(getattr(dataset, "SOPClassUID", "") or "")


def kind_of(uid: str) -> str | None:
    """What a non-image SOP Class is ('a DICOM SEG ...'), None for images and unknown classes."""
    if uid in NOT_IMAGES:
        return NOT_IMAGES[uid]
    if uid.startswith(_REPORT_PREFIXES):
        return f"a DICOM structured report / presentation state (SOP Class {uid})"
    return None


def refusal(path: Path, kind: str) -> FmscopeError:
    """The error for a non-image DICOM object given where an image or label volume is read."""
    return FmscopeError(
        f"{path} is {kind}, not an image: its frames are not slices of a volume, and fmscope does not read it.",
        SEG_FIX,
    )


def require_image(path: Path) -> None:
    """Raise FmscopeError when ``path`` is a DICOM file of a non-image object (SEG, RTSTRUCT ...); anything else
    passes (non-DICOM files, which pydicom refuses at their first bytes, and DICOM images)."""
    kind = kind_of(sop_class(path)) if path.is_file() else None
    if kind is not None:
        raise refusal(path, kind)
