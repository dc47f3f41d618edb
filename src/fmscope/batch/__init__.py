"""Cohorts on Dask distributed: one manifest row per item, every item's outputs written atomically.

``run_batch(read_manifest("manifest.csv"), "out/")`` runs on a local cluster of worker processes,
or on any running Dask scheduler (``client=Client("tcp://...")``, dask-jobqueue for SLURM / PBS).
See :mod:`fmscope.batch.manifest` for the columns, :mod:`fmscope.batch.jobs` for what each job writes.
"""

from fmscope.batch.manifest import BatchItem, read_manifest, validate_items, write_template
from fmscope.batch.runner import BatchReport, run_batch

__all__ = ["BatchItem", "BatchReport", "read_manifest", "run_batch", "validate_items", "write_template"]
