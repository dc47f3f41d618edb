"""Rebuild sample_data/ from the registry packages named in sample_data/README.md.

Usage: python scripts/make_sample_data.py  (downloads stardist 0.9.2 and the pyradiomics 3.0.1
sdist with pip into a temporary folder; needs SimpleITK, tifffile, numpy).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import tifffile

OUT = Path(__file__).resolve().parents[1] / "sample_data"


def download(spec: str, folder: Path, sdist: bool) -> Path:
    options = ["--no-binary", ":all:", "--no-build-isolation"] if sdist else ["--only-binary", ":all:"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *options, "-d", str(folder), spec],
        check=False,
        capture_output=True,
    )
    return next(folder.glob(spec.split("==")[0] + "-*"))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with zipfile.ZipFile(download("stardist==0.9.2", folder, sdist=False)) as wheel:
            for member, name in (("img2d.tif", "nuclei_image.tif"), ("mask2d.tif", "nuclei_labels.tif")):
                with wheel.open(f"stardist/data/images/{member}") as src, open(OUT / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        with tarfile.open(download("pyradiomics==3.0.1", folder, sdist=True)) as sdist:
            for member in sdist.getmembers():
                if member.name.endswith(("data/lung1_image.nrrd", "data/lung1_label.nrrd")):
                    sdist.extract(member, folder, filter="data")
        data = next(folder.rglob("lung1_image.nrrd")).parent
        image, label = sitk.ReadImage(str(data / "lung1_image.nrrd")), sitk.ReadImage(str(data / "lung1_label.nrrd"))
        tifffile.imwrite(OUT / "ct_lung_slice.tif", sitk.GetArrayFromImage(image)[33], compression="zlib")
        tifffile.imwrite(
            OUT / "ct_lung_slice_labels.tif", sitk.GetArrayFromImage(label)[33].astype(np.uint8), compression="zlib"
        )
        sitk.WriteImage(image[122:314, 264:456, 24:44], str(OUT / "ct_lung_volume.nrrd"), useCompression=True)
        sitk.WriteImage(
            sitk.Cast(label[122:314, 264:456, 24:44], sitk.sitkUInt8),
            str(OUT / "ct_lung_volume_labels.nrrd"),
            useCompression=True,
        )
    print(f"sample data written to {OUT}")


if __name__ == "__main__":
    main()
