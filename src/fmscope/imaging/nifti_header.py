"""A NIfTI file's own geometry header (qform, sform and their codes), carried from the input to fmscope's labels.

A NIfTI-1 / NIfTI-2 header holds two transforms from voxels to patient space: the qform (quaternion, code
``qform_code``) and the sform (affine rows, code ``sform_code``). Tools disagree on which one wins: ITK (and so
SimpleITK, Slicer, ANTs) takes the qform unless the sform is SCANNER_ANAT, nibabel / FSL / nilearn / MRtrix take the
sform (spinalcordtoolbox#2106, ANTs#500, MRtrix3#1540); SPM's coregistration writes a new sform beside the old
qform (torchio#567), so the two often differ. A label volume lies where each viewer puts its image only when it
carries the image's own header fields, both transforms and both codes, as they are (the fix of ivadomed#711:
``Nifti1Image(labels, None, image.header.copy())``). nibabel is the reference for the header's semantics.

:func:`read_header` keeps the raw header of a NIfTI input (refusing a sheared one, or one whose two transforms
give other voxel sizes, by name); :func:`write_labels` writes a label array with that header's geometry fields.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmscope.errors import FmscopeError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# The header fields that place the voxels in patient space; everything else (data type, scaling, intent) is the
# labels' own.
GEOMETRY_FIELDS = (
    "dim_info",
    "pixdim",
    "xyzt_units",
    "qform_code",
    "sform_code",
    "quatern_b",
    "quatern_c",
    "quatern_d",
    "qoffset_x",
    "qoffset_y",
    "qoffset_z",
    "srow_x",
    "srow_y",
    "srow_z",
)
# Direction columns are orthonormal when their dot products are within this (ITK's own test is 1e-4 on the matrix).
ORTHONORMAL_TOLERANCE = 1e-4
SAME_TOLERANCE_MM = 1e-3


def is_nifti(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(NIFTI_SUFFIXES)


def _header_class(block: bytes):
    import nibabel as nib

    return nib.Nifti2Header if len(block) == 540 else nib.Nifti1Header


def header_of(block: bytes):
    """The nibabel header (Nifti1Header / Nifti2Header) of a raw header block from :func:`read_header`."""
    return _header_class(block)(binaryblock=block, check=False)


def version(block: bytes) -> int:
    return 2 if len(block) == 540 else 1


def _affine_text(affine: np.ndarray) -> str:
    rows = ["[" + ", ".join(f"{v:.4g}" for v in row) + "]" for row in np.asarray(affine)[:3]]
    return "[" + ", ".join(rows) + "]"


def _shear(affine: np.ndarray) -> float:
    """Largest |cosine| between two voxel axes of ``affine`` (0 for an orthogonal grid)."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = columns / np.maximum(np.linalg.norm(columns, axis=0), 1e-12)
    gram = unit.T @ unit
    return float(np.abs(gram - np.eye(3)).max())


def raw_header(path: str | os.PathLike) -> bytes:
    """The raw header of the NIfTI file at ``path``, unchecked (nibabel's errors propagate)."""
    import nibabel as nib

    return bytes(nib.load(str(path)).header.binaryblock)


def read_header(path: str | os.PathLike) -> bytes | None:
    """The raw header (348 bytes NIfTI-1, 540 NIfTI-2) of the NIfTI file at ``path``; None when nibabel does not
    read it as NIfTI (damaged, or a plain .nii named .nii.gz: left to SimpleITK, which reads or names it).

    Raises :class:`FmscopeError` when the transform viewers use is sheared (its voxel axes not at right angles:
    an affine registration's sform), or when the qform and the sform (both set) give other voxel sizes, so that
    fmscope cannot know the voxel spacing meant. Other differences between the two transforms are kept: the labels
    carry both (:func:`write_labels`)."""
    import nibabel as nib

    path = Path(path)
    try:
        header = nib.load(str(path)).header
    except Exception:  # nibabel raises many types for damaged or misnamed files: SimpleITK's reader names those
        return None
    if not isinstance(header, nib.Nifti1Header):  # an Analyze file named .nii (Nifti2Header is a subclass)
        return None
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    sform = header.get_sform()
    if scode > 0 and _shear(sform) > ORTHONORMAL_TOLERANCE:
        raise FmscopeError(
            f"{path}'s sform (sform_code {scode}) is sheared: its voxel axes are not at right angles "
            f"(sform {_affine_text(sform)}), as an affine registration (FSL FLIRT, SPM) leaves it; fmscope's "
            "voxel grids (and ITK's) are orthogonal, and reading it on another grid would place the labels "
            "away from the image.",
            "Resample the image onto an orthogonal grid first (e.g. FSL 'flirt -applyxfm', nibabel's "
            "resample_from_to, or 3D Slicer's Resample Scalar Volume) and give the file it writes.",
        )
    if qcode > 0 and scode > 0:
        zooms_q = np.linalg.norm(header.get_qform()[:3, :3], axis=0)
        zooms_s = np.linalg.norm(sform[:3, :3], axis=0)
        if np.abs(zooms_q - zooms_s).max() > SAME_TOLERANCE_MM:
            raise FmscopeError(
                f"{path}'s two transforms give other voxel sizes: qform (qform_code {qcode}) "
                f"{_affine_text(header.get_qform())}, {' x '.join(f'{v:.4g}' for v in zooms_q)} mm voxels; sform "
                f"(sform_code {scode}) {_affine_text(sform)}, {' x '.join(f'{v:.4g}' for v in zooms_s)} mm voxels. "
                "ITK-based tools use one, nibabel / FSL the other, so fmscope cannot know the voxel spacing meant.",
                "Make the two agree, e.g. 'fslorient -copysform2qform FILE' when the sform is right (FSL), or "
                "'-copyqform2sform' when the qform is, then give the file again.",
            )
    return bytes(header.binaryblock)


def transforms_differ(block: bytes) -> bool:
    """Whether the header's qform and sform are both set and place the voxels differently."""
    header = header_of(block)
    if int(header["qform_code"]) <= 0 or int(header["sform_code"]) <= 0:
        return False
    return bool(np.abs(header.get_qform() - header.get_sform()).max() > SAME_TOLERANCE_MM)


def describe_transforms(block: bytes) -> str:
    """Both transforms and their codes, for messages."""
    header = header_of(block)
    return (
        f"qform (qform_code {int(header['qform_code'])}) {_affine_text(header.get_qform())}, "
        f"sform (sform_code {int(header['sform_code'])}) {_affine_text(header.get_sform())}"
    )


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """The voxels of a NIfTI file (any version) as nibabel reads them, axes reversed to SimpleITK's order
    ((z, y, x) for a volume, (t, z, y, x) for 4D); scaled data (scl_slope) as float32, as ITK gives it."""
    import nibabel as nib

    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    if data.dtype == np.float64 and image.get_data_dtype() != np.float64:
        data = data.astype(np.float32)
    return np.ascontiguousarray(data.transpose(tuple(reversed(range(data.ndim)))))


def time_step(block: bytes) -> float:
    """Seconds between time points of a 4D NIfTI (pixdim[4] in the header's time unit; ms and us converted, as ITK's
    NIfTI reader does); pixdim[4] as stored when the unit is unknown."""
    header = header_of(block)
    scale = {"msec": 1e-3, "usec": 1e-6}.get(header.get_xyzt_units()[1], 1.0)
    return float(header["pixdim"][4]) * scale


def lps_geometry(block: bytes, ndim: int) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin, direction) in SimpleITK's conventions (LPS, mm, x first) of the transform nibabel uses
    (the sform when its code is set, else the qform, else pixdim scaling), for the first ``ndim`` (2 or 3) axes."""
    affine = header_of(block).get_best_affine()
    matrix = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]  # RAS -> LPS
    origin = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, 3]
    spacing = np.linalg.norm(matrix, axis=0)
    direction = matrix / np.maximum(spacing, 1e-12)
    return (
        tuple(float(v) for v in spacing[:ndim]),
        tuple(float(v) for v in origin[:ndim]),
        tuple(float(v) for v in direction[:ndim, :ndim].ravel()),
    )


def write_labels(labels: np.ndarray, block: bytes, target: Path) -> None:
    """Write ``labels`` ((z, y, x) or (y, x), SimpleITK's order) to the NIfTI file ``target`` (.nii / .nii.gz)
    with the geometry fields of the input header ``block`` copied as they are: qform, sform, both codes, pixdim,
    units. The labels' own data type, no scaling."""
    import nibabel as nib

    source = header_of(block)
    header = type(source)()
    for field in GEOMETRY_FIELDS:
        header[field] = source[field]
    data = np.ascontiguousarray(np.asarray(labels).transpose(tuple(reversed(range(labels.ndim)))))
    header.set_data_shape(data.shape)
    header.set_data_dtype(data.dtype)
    header["descrip"] = b"fmscope labels"
    image = (nib.Nifti2Image if version(block) == 2 else nib.Nifti1Image)(data, None, header)
    image.to_filename(str(target))
