"""Throughput of `fmscope batch` on this machine: 1 vs 2 local workers, and the Dask path's overhead.

Run: ``.venv/bin/python benchmarks/batch.py [--items 20]``. Each item is the sample CT volume
(box on the tumour's key slice), each a copy with one voxel per slice flipped between air and
bone (a change every intensity window keeps), so every item embeds its slices anew. Every
cluster is new and warmed before timing: each worker runs one untimed warm-up item (model
loaded, torch warmed), and the direct path gets the same warm-up. Prints:

- per item, the same items run directly (``run_item`` in this process, torch 1 thread, as a
  worker) and through a 1-worker cluster (``client.submit(run_item, ...)``, one at a time),
  interleaved item by item (the order alternates) so machine load falls on both paths alike:
  medians, totals and the Dask path's overhead;
- seconds for the N items with ``run_batch`` on 1 worker and on 2 workers, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from fmscope import samples
from fmscope.batch import BatchItem, read_manifest, run_batch
from fmscope.batch.models import ModelPool
from fmscope.batch.records import signature
from fmscope.batch.runner import local_client, run_item

BOX = "82 81 109 106"


def make_items(folder: Path, count: int) -> list[BatchItem]:
    """``count`` copies of the CT volume, copy k with voxel (z, 0, k) of every slice flipped air <-> bone."""
    volume = sitk.ReadImage(str(samples.get_case("ct_lung_volume").image_path))
    array = sitk.GetArrayFromImage(volume)
    lines = ["id,job,input,box,slice,window"]
    for k in range(count):
        copy = array.copy()
        copy[:, 0, k] = np.where(copy[:, 0, k] > -400, -1024, 3071)
        image = sitk.GetImageFromArray(copy)
        image.CopyInformation(volume)
        sitk.WriteImage(image, str(folder / f"ct{k}.nrrd"))
        lines.append(f"ct{k},volume,ct{k}.nrrd,{BOX},9,lung")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return read_manifest(folder / "manifest.csv")


def warm_workers(client, items: list[BatchItem], outdir: Path) -> None:
    """Run one untimed item on each worker (model load, first inference)."""
    workers = sorted(client.scheduler_info()["workers"])
    futures = [
        client.submit(
            run_item, item, signature(item), str(outdir), workers=[worker], allow_other_workers=False, pure=False
        )
        for worker, item in zip(workers, items)
    ]
    assert all(row["status"] == "done" for row in client.gather(futures))


def worker_threads(client) -> list[tuple[int, str | None]]:
    """(torch intra-op threads, MALLOC_TRIM_THRESHOLD_) in each worker process."""

    def threads() -> tuple[int, str | None]:
        return torch.get_num_threads(), os.environ.get("MALLOC_TRIM_THRESHOLD_")

    return list(client.run(threads).values())


def close(client) -> None:
    cluster = client.cluster
    client.close()
    cluster.close()


def per_item_times(timed: list[BatchItem], warm: BatchItem, folder: Path) -> tuple[list[float], list[float], list]:
    """Seconds per item directly and through a 1-worker cluster, interleaved; and the worker's threads."""
    torch.set_num_threads(1)  # as each worker (one item at a time, torch 1 thread)
    pool = ModelPool()
    assert run_item(warm, signature(warm), str(folder / "warm_direct"), pool=pool)["status"] == "done"
    client = local_client(1, threads_per_worker=1)
    try:
        warm_workers(client, [warm], folder / "warm_dask")
        threads = worker_threads(client)

        def direct(item: BatchItem) -> dict:
            return run_item(item, signature(item), str(folder / "direct"), pool=pool)

        def dask(item: BatchItem) -> dict:
            return client.submit(run_item, item, signature(item), str(folder / "dask"), pure=False).result()

        seconds: dict = {direct: [], dask: []}
        for k, item in enumerate(timed):
            for path in (direct, dask) if k % 2 == 0 else (dask, direct):
                started = time.perf_counter()
                assert path(item)["status"] == "done"
                seconds[path].append(time.perf_counter() - started)
    finally:
        close(client)
    return seconds[direct], seconds[dask], threads


def cluster_seconds(timed: list[BatchItem], warm: list[BatchItem], outdir: Path, workers: int) -> float:
    """Seconds for ``run_batch`` of the timed items on a new, warmed cluster of ``workers`` processes."""
    client = local_client(workers, threads_per_worker=1)
    try:
        warm_workers(client, warm, outdir.with_name(outdir.name + "_warm"))
        started = time.perf_counter()
        report = run_batch(timed, outdir, client=client)
        seconds = time.perf_counter() - started
    finally:
        close(client)
    assert (report.table["status"] == "done").all(), report.table["message"].tolist()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    count = parser.parse_args().items
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        items = make_items(folder, count + 2)
        timed, warm = items[:count], items[count:]
        direct, dask, threads = per_item_times(timed, warm[0], folder)
        one = cluster_seconds(timed, warm[:1], folder / "out1", 1)
        two = cluster_seconds(timed, warm, folder / "out2", 2)
    median_direct, median_dask = statistics.median(direct), statistics.median(dask)
    print(
        f"{count} CT volume items, per item (interleaved, warmed): direct median {median_direct:.3f} s, "
        f"Dask 1 worker median {median_dask:.3f} s, overhead {100 * (median_dask / median_direct - 1):+.1f} %"
    )
    print(
        f"  totals: direct {sum(direct):.1f} s, Dask 1 worker {sum(dask):.1f} s, "
        f"overhead {100 * (sum(dask) / sum(direct) - 1):+.1f} %"
    )
    print(f"  torch threads: direct {torch.get_num_threads()}, workers (threads, MALLOC_TRIM_THRESHOLD_) {threads}")
    print(
        f"run_batch of {count} items (warmed clusters): 1 worker {one:.1f} s, 2 workers {two:.1f} s, "
        f"speed-up {one / two:.2f}x"
    )
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
