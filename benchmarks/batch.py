"""Throughput of `fmscope batch` on this machine: 1 vs 2 local workers, and the Dask path's overhead.

Run: ``.venv/bin/python benchmarks/batch.py [--items 20]``. Each item is the sample CT volume
(box on the tumour's key slice), each a copy with one voxel changed so every item embeds its
slices anew (no cache shared between items). Prints:
- seconds for N items with 1 worker and with 2 workers (torch 1 thread each), and their ratio;
- per-item time of the same items called directly (``run_item`` in this process, model loaded
  once) vs through the 1-worker cluster, and the Dask path's overhead in percent.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
import torch

from fmscope import samples
from fmscope.batch import read_manifest, run_batch
from fmscope.batch.models import ModelPool
from fmscope.batch.records import signature
from fmscope.batch.runner import local_client, run_item

BOX = "82 81 109 106"


def make_items(folder: Path, count: int):
    volume = sitk.ReadImage(str(samples.get_case("ct_lung_volume").image_path))
    array = sitk.GetArrayFromImage(volume)
    lines = ["id,job,input,box,slice,window"]
    for k in range(count):
        copy = array.copy()
        copy[:, 0, k] += 1  # every slice differs, so no item reuses another item's embeddings
        image = sitk.GetImageFromArray(copy)
        image.CopyInformation(volume)
        sitk.WriteImage(image, str(folder / f"ct{k}.nrrd"))
        lines.append(f"ct{k},volume,ct{k}.nrrd,{BOX},9,lung")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return read_manifest(folder / "manifest.csv")


def cluster_seconds(items, outdir: Path, workers: int) -> float:
    client = local_client(workers, threads_per_worker=1)
    try:
        client.run(lambda: __import__("fmscope.imaging.predictor"))  # worker start-up is not item time
        started = time.perf_counter()
        report = run_batch(items, outdir, client=client)
        seconds = time.perf_counter() - started
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert (report.table["status"] == "done").all(), report.table["message"].tolist()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    count = parser.parse_args().items
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        items = make_items(folder, count)
        one = cluster_seconds(items, folder / "out1", 1)
        two = cluster_seconds(items, folder / "out2", 2)
        torch.set_num_threads(1)
        pool = ModelPool()
        pool.segmenter("litemedsam", None)  # loaded once, as on a worker
        started = time.perf_counter()
        for item in items:
            run_item(item, signature(item), str(folder / "direct"), pool=pool)
        direct = time.perf_counter() - started
    print(f"{count} CT volume items: 1 worker {one:.1f} s, 2 workers {two:.1f} s, speed-up {one / two:.2f}x")
    print(f"per item: direct {direct / count:.2f} s, Dask 1 worker {one / count:.2f} s, "
          f"overhead {100 * (one - direct) / direct:+.1f} %")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
