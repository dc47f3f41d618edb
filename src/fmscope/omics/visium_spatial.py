"""Where a Visium folder's spatial files are: Space Ranger's ``spatial/`` folder, or GEO's flat sample-prefixed files.

Space Ranger writes ``outs/spatial/`` with ``tissue_positions_list.csv`` (1.x, no header) or
``tissue_positions.csv`` (>= 2), ``scalefactors_json.json``, ``tissue_hires_image.png`` and
``tissue_lowres_image.png``. GEO series ship the same files gzipped, and often flat beside the counts with the
sample's name in front and no ``spatial/`` folder (``GSM4565823_tissue_positions_list.csv.gz``,
``GSM4565823_scalefactors_json.json.gz``, ``GSM4565823_tissue_hires_image.png.gz``, next to
``GSM4565823_filtered_feature_bc_matrix.h5``; the layout squidpy#802 and seurat#7157 describe, which scanpy's
``read_visium`` cannot read without moving the files into ``spatial/``). :func:`find_spatial` finds either;
each file is taken plain first, else gzipped (``name.gz``). :func:`read_tissue_image` reads the tissue image
and its placement from the scale factors (a missing factor recovered from the other image, else said).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.omics.tissue_image import tissue_image
from fmscope.omics.visium_counts import H5, MEX, contents

SPATIAL_NAMES = ("tissue_positions.csv", "tissue_positions_list.csv", "scalefactors_json.json")
FLAT_SPATIAL = re.compile(r"^(.*?)(tissue_positions(?:_list)?\.csv|scalefactors_json\.json)(?:\.gz)?$")


@dataclass(frozen=True)
class SpatialFiles:
    """A sample's spatial files: in ``folder`` (``outs/spatial/``, or the sample folder itself for GEO's flat
    layout), named ``prefix + name`` (``prefix`` empty in ``spatial/``), each plain or gzipped."""

    folder: Path
    prefix: str = ""

    @property
    def flat(self) -> bool:
        """Whether the files lie beside the counts (GEO) rather than in a ``spatial/`` folder."""
        return self.folder.name != "spatial"

    def file(self, name: str) -> Path | None:
        """``prefix + name`` in :attr:`folder`, else its gzipped ``.gz`` copy, else None."""
        stem = self.folder / f"{self.prefix}{name}"
        return next((p for p in (stem, stem.with_name(stem.name + ".gz")) if p.is_file()), None)

    def shown(self, name: str) -> str:
        """How the file ``name`` is named to the user: ``spatial/name`` or the flat ``prefix + name``."""
        return f"{self.prefix}{name}" if self.flat else f"spatial/{name}"


def _flat_prefixes(folder: Path) -> list[str]:
    """The sample prefixes of flat spatial files in ``folder`` (GEO), in name order, each once."""
    found = [FLAT_SPATIAL.match(p.name) for p in sorted(folder.iterdir()) if p.is_file()]
    return list(dict.fromkeys(match.group(1) for match in found if match))


def find_spatial(folder: Path) -> SpatialFiles:
    """The spatial files of the Visium sample in ``folder``: ``folder/spatial/``, else the one sample's flat
    prefixed files (GEO). Refuses (FmscopeError) flat files of several samples, naming their prefixes; spatial files
    still packed in a ``*spatial.tar.gz``, naming it; and no spatial files, naming what the folder holds."""
    if (folder / "spatial").is_dir():
        return SpatialFiles(folder / "spatial")
    prefixes = _flat_prefixes(folder)
    if len(prefixes) == 1:
        return SpatialFiles(folder, prefixes[0])
    if len(prefixes) > 1:
        raise FmscopeError(
            f"{folder} holds the spot positions of {len(prefixes)} samples (files starting "
            f"{', '.join(repr(p) for p in prefixes)}); fmscope will not guess which sample is the slide.",
            "Give a folder holding one sample's files (its counts, tissue positions and scale factors).",
        )
    packed = sorted(p.name for p in folder.glob("*spatial.tar.gz"))
    if packed:
        raise FmscopeError(
            f"{folder}: the spot positions are still packed in {packed[0]} (no spatial/ folder).",
            f"Unpack it where it is (tar -xzf {packed[0]}): it makes spatial/ with tissue_positions and the "
            "scale factors.",
        )
    raise FmscopeError(
        f"{folder} has no spatial/ folder (tissue_positions(_list).csv, scalefactors_json.json, tissue images) "
        f"and no sample-prefixed copies of those files; it holds {contents(folder)}.",
        "Give the Space Ranger output folder (outs/), or put the sample's spatial/ folder beside its counts.",
    )


def is_visium_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a Visium sample: a spatial/ folder, a packed one, flat prefixed spatial files
    (GEO), or a counts matrix (:mod:`fmscope.omics.visium_counts`)."""
    if not folder.is_dir():
        return False
    if (folder / "spatial").is_dir() or any(folder.glob("*spatial.tar.gz")) or _flat_prefixes(folder):
        return True
    return any(folder.glob(f"*{H5}")) or any(p.is_dir() for p in folder.glob(f"*{MEX}"))


TISSUE_IMAGES = (("tissue_hires_image.png", "tissue_hires_scalef"), ("tissue_lowres_image.png", "tissue_lowres_scalef"))
SIZE_AGREEMENT_PX = 1.0  # Space Ranger rounds each downscaled image's sides to whole pixels


def _png(found: Path) -> bytes | Path:
    """A tissue PNG as imageio / PIL open it: the path, or the decompressed bytes of a gzipped copy (GEO)."""
    return gzip.decompress(found.read_bytes()) if found.suffix == ".gz" else found


def _png_size(found: Path) -> tuple[int, int]:
    """(width, height) of a tissue PNG from its header."""
    from io import BytesIO

    from PIL import Image

    source = _png(found)
    with Image.open(BytesIO(source) if isinstance(source, bytes) else source) as image:
        return image.size


def _scalef(scale: dict, key: str) -> float | None:
    """A positive finite scale factor ``scale[key]``, else None (absent, 0, negative, NaN or not a number)."""
    try:
        value = float(scale.get(key))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _recovered_scalef(files: SpatialFiles, scale: dict, name: str) -> tuple[float, str] | None:
    """The scale factor of image ``name`` from the other image's factor and the two images' sizes (both are
    downscales of the one full-resolution image: factor = other factor x size / other size), with how; None when
    the other image or its factor is absent, or the two images' widths and heights do not scale alike (within
    Space Ranger's rounding to whole pixels: then one is not the other's downscale)."""
    (other, other_key) = next((n, k) for n, k in TISSUE_IMAGES if n != name)
    other_file, other_factor = files.file(other), _scalef(scale, other_key)
    if other_file is None or other_factor is None:
        return None
    (width, height), (other_width, other_height) = _png_size(files.file(name)), _png_size(other_file)
    ratio = (width + height) / (other_width + other_height)
    if max(abs(other_width * ratio - width), abs(other_height * ratio - height)) > SIZE_AGREEMENT_PX:
        return None
    return other_factor * ratio, (
        f"{other_key} {other_factor:g} x the images' sizes ({width} x {height} px vs {other_width} x {other_height})"
    )


def read_tissue_image(files: SpatialFiles, scale: dict) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """The hires (else lowres) tissue image (PNG, or gzipped as GEO ships it), its (y, x) placement in
    full-resolution pixels, and notices. An image whose scale factor (``tissue_hires_scalef`` /
    ``tissue_lowres_scalef``) is missing or not a positive number is placed from the other image's factor
    and the two images' sizes when both are there and agree (said), else left out, naming the image and the
    key (never placed by a guess: the spots would land on the wrong tissue)."""
    from imageio.v3 import imread

    notices = []
    for name, key in TISSUE_IMAGES:
        found = files.file(name)
        if found is None:
            continue
        factor = _scalef(scale, key)
        if factor is None:
            written = "" if scale.get(key) is None else f" ({key} is {scale.get(key)!r}, not a positive number)"
            recovered = _recovered_scalef(files, scale, name)
            if recovered is None:
                notices.append(
                    f"{found.name} left out: {files.shown('scalefactors_json.json')} has no {key}{written}, the "
                    "image's scale to the spot positions, so fmscope cannot place it. To see it under the spots, "
                    "copy scalefactors_json.json from the Space Ranger output folder."
                )
                continue
            factor, how = recovered
            notices.append(
                f"{files.shown('scalefactors_json.json')} has no {key}{written}: {found.name} placed with "
                f"{factor:.6g} ({how})."
            )
        image = tissue_image(imread(_png(found), extension=".png"), str(found))
        return image, np.diag([1 / factor, 1 / factor, 1.0]), notices
    return None, None, notices
