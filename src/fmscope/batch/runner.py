"""Run a manifest's items on Dask distributed; skip what is finished, record what fails, write the table.

Items go to workers as they free up (one ``client.submit`` per item). A worker that dies mid-item
is replaced by its nanny and the scheduler runs the item again elsewhere (Dask's own rescheduling;
``retries`` adds tries for other transient errors), and since an item's folder appears in one
rename, nothing half-written or doubled is left. A failing item (bad file, bad prompt) becomes a
``failed`` row with its message and never stops the others.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fmscope.atomic import atomic_write
from fmscope.batch import records
from fmscope.batch.jobs import JOBS
from fmscope.batch.manifest import BatchItem, row_message
from fmscope.batch.models import ModelPool, worker_pool
from fmscope.errors import Cancelled, FmscopeError
from fmscope.progress import Progress, as_progress

# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's adaptive mmap
# threshold: every torch buffer over 128 KiB is then mapped and unmapped anew (page faults), which
# made each volume item ~50 % slower than the same call in one process (benchmarks/batch.py).
RESULT_TABLES = (("results.csv", ".csv"), ("results.parquet", ".parquet"))  # OUTDIR's tables, written last
WORKER_MALLOC_SETTING = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
TABLE_COLUMNS = (
    "id",
    "job",
    "input",
    "status",
    "message",
    "seconds",
    "outputs",
    "objects",
    "area_px",
    "volume_ml",
    "domains",
    "dice",
    "nsd",
    "worker",
)


@dataclass
class BatchReport:
    """The results table (one row per item, manifest order) and what this run did."""

    table: pd.DataFrame
    submitted: int  # items sent to workers (the others were finished with the same inputs)
    dashboard: str | None = None

    def counts(self) -> dict[str, int]:
        return self.table["status"].value_counts().to_dict()


def run_item(item: BatchItem, item_signature: str, outdir: str, pool: ModelPool | None = None) -> dict:
    """Run one item and write its folder atomically; a problem with the item becomes a ``failed`` row."""
    pool = pool if pool is not None else worker_pool()
    folder = records.item_folder(Path(outdir), item)
    started = time.perf_counter()
    row = {"id": item.id, "job": item.job, "input": str(item.input), "worker": _worker_name()}
    measures: dict = {}

    def build(temporary: Path) -> None:
        temporary.mkdir()
        measures.update(JOBS[item.job](item, pool, temporary))
        done = {
            **row,
            **measures,
            "status": "done",
            "seconds": round(time.perf_counter() - started, 3),
            "outputs": records.relative_outputs(folder, Path(outdir), measures.pop("outputs", [])),
        }
        records.write_record(temporary, item_signature, done)

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)  # OUTDIR/items: the batch's own folders
        atomic_write(folder, build)
    except FmscopeError as error:
        return {
            **row,
            "status": "failed",
            "message": row_message(item, error),
            "seconds": round(time.perf_counter() - started, 3),
        }
    return records.finished_row(Path(outdir), item, item_signature)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().name
    except ValueError:  # not on a worker
        return "local"


def default_workers() -> int:
    """Worker processes for a local cluster: one per free core (each runs one item at a time)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def local_client(workers: int | None = None, threads_per_worker: int = 1):
    """A Dask client on a new local cluster of worker processes (one item at a time per worker)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({WORKER_MALLOC_SETTING: None}):  # glibc's defaults, as in the single commands
        cluster = LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0" if _has_dashboard() else None,
        )
    client = Client(cluster)
    client.register_plugin(ModelPool(torch_threads=threads_per_worker))
    return client


def _has_pool(dask_worker) -> bool:
    return ModelPool.name in dask_worker.plugins


def _has_dashboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def run_batch(
    items: list[BatchItem],
    outdir: str | os.PathLike,
    client=None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    progress: Progress | None = None,
) -> BatchReport:
    """Run every item not yet finished with the same inputs; returns the report and writes
    ``OUTDIR/results.csv`` and ``results.parquet`` (atomically).

    ``client``: a ``distributed.Client`` to any scheduler (its workers get a :class:`ModelPool`);
    without one, a local cluster of ``workers`` processes (default: one per core) is started and
    closed. ``threads_per_worker``: torch threads in each worker. ``progress``: told ``(items finished,
    items submitted, "batch items")`` as each finishes; once cancelled the items not yet finished are
    cancelled on the cluster and :class:`fmscope.errors.Cancelled` is raised (no table is written).
    """
    progress = as_progress(progress)
    outdir = Path(outdir)
    outdir.mkdir(exist_ok=True)  # its parent exists (the CLI checks -o first)
    (outdir / "items").mkdir(exist_ok=True)
    records.remove_partial_folders(outdir)
    signatures = {item.id: records.signature(item) for item in items}
    rows = {item.id: records.finished_row(outdir, item, signatures[item.id]) for item in items}
    pending = [item for item in items if rows[item.id] is None]
    for item in items:
        if rows[item.id] is not None:
            rows[item.id] = {**rows[item.id], "status": "skipped", "message": "finished earlier with the same inputs"}
    dashboard = None
    if pending:
        own = client is None
        if own:
            client = local_client(workers, threads_per_worker)
        elif not all(client.run(_has_pool).values()):
            client.register_plugin(ModelPool(torch_threads=threads_per_worker))
        dashboard = client.dashboard_link if _has_dashboard() else None
        try:
            futures = {
                item.id: client.submit(
                    run_item,
                    item,
                    signatures[item.id],
                    str(outdir),
                    key=f"fmscope-{item.id}-{signatures[item.id][:12]}",
                    retries=1,
                    pure=False,
                )
                for item in pending
            }
            from distributed import as_completed

            try:
                started = f"batch items: Dask dashboard {dashboard}" if dashboard else "batch items"
                progress.update(0, len(pending), started)
                for done, _ in enumerate(as_completed(list(futures.values())), start=1):
                    progress.update(done, len(pending), "batch items")
            except Cancelled:
                client.cancel(list(futures.values()))
                raise
            for item in pending:
                future = futures[item.id]
                try:
                    rows[item.id] = future.result()
                except Exception as error:  # noqa: BLE001 - recorded in the table, the others go on
                    rows[item.id] = {
                        "id": item.id,
                        "job": item.job,
                        "input": str(item.input),
                        "status": "failed",
                        "message": f"{type(error).__name__}: {error}",
                    }
        finally:
            if own:
                cluster = client.cluster
                client.close()
                cluster.close()
        records.remove_partial_folders(outdir)
    table = pd.DataFrame([rows[item.id] for item in items]).reindex(columns=list(TABLE_COLUMNS))
    write_table(table, outdir)
    return BatchReport(table, submitted=len(pending), dashboard=dashboard)


def write_table(table: pd.DataFrame, outdir: Path) -> None:
    """``results.csv`` and ``results.parquet`` under ``outdir``, each written atomically."""
    (csv, _), (parquet, _) = RESULT_TABLES
    atomic_write(outdir / csv, lambda path: table.to_csv(path, index=False))
    atomic_write(outdir / parquet, lambda path: table.to_parquet(path, index=False))
