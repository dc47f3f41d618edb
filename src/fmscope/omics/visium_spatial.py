"""Where a Visium folder's spatial files are: Space Ranger's ``spatial/`` folder, or GEO's flat sample-prefixed files.

Space Ranger writes ``outs/spatial/`` with ``tissue_positions_list.csv`` (1.x, no header) or
``tissue_positions.csv`` (>= 2), ``scalefactors_json.json``, ``tissue_hires_image.png`` and
``tissue_lowres_image.png``. GEO series ship the same files gzipped, and often flat beside the counts with the
sample's name in front and no ``spatial/`` folder (``GSM4565823_tissue_positions_list.csv.gz``,
``GSM4565823_scalefactors_json.json.gz``, ``GSM4565823_tissue_hires_image.png.gz``, next to
``GSM4565823_filtered_feature_bc_matrix.h5``; the layout squidpy#802 and seurat#7157 describe, which scanpy's
``read_visium`` cannot read without moving the files into ``spatial/``). :func:`find_spatial` finds either;
each file is taken plain first, else gzipped (``name.gz``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fmscope.errors import FmscopeError
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
