"""``fmscope batch``: a manifest of items (segment, volume, track, domains, embed) on Dask distributed."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmscope.cli.progress import tqdm_progress
from fmscope.errors import FmscopeError


def cmd_batch(args: argparse.Namespace) -> int:
    from fmscope.batch import read_manifest, run_batch, validate_items, write_template
    from fmscope.batch.runner import RESULT_TABLES
    from fmscope.outputs import FOLDER, Output, check_outputs

    if args.template:
        check_outputs([Output("MANIFEST", args.manifest, (".csv",))])
        write_template(args.manifest)
        print(f"wrote {args.manifest}: a template with the sample cases; edit it, then run fmscope batch on it")
        return 0
    if args.output is None:
        raise FmscopeError("No output folder.", "Add -o OUTDIR.")
    items = read_manifest(args.manifest)
    tables = [Output("-o", Path(args.output) / name, (suffix,)) for name, suffix in RESULT_TABLES]  # written last
    check_outputs(
        [Output("-o", args.output, FOLDER, fills=True), *(tables if Path(args.output).is_dir() else [])],
        [args.manifest, *(item.input for item in items)],
    )
    if args.dry_run:
        problems = [problem for _, problem in validate_items(items) if problem]
        for problem in problems:
            print(problem)
        print(f"{len(items) - len(problems)} of {len(items)} rows ready; nothing was run")
        return 1 if problems else 0
    client = None
    if args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout="10s")
        except OSError as error:
            raise FmscopeError(
                f"Cannot reach the Dask scheduler at {args.scheduler} ({error}).",
                "Check the address (tcp://HOST:8786) and that the scheduler runs.",
            ) from None
    try:
        with tqdm_progress("item") as progress:
            report = run_batch(
                items,
                args.output,
                client=client,
                workers=args.workers,
                threads_per_worker=args.threads_per_worker,
                progress=progress,
            )
    finally:
        if client is not None:
            client.close()
    counts = report.counts()
    print(f"wrote {args.output}/results.csv: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for _, row in report.table[report.table["status"] == "failed"].iterrows():
        print(f"  failed {row['id']}: {row['message']}")
    return 1 if counts.get("failed") else 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``fmscope batch``."""
    batch = commands.add_parser("batch", help="run a manifest CSV of items on a Dask cluster (local by default)")
    batch.add_argument("manifest", help="CSV, one row per item (see `fmscope batch --template M.csv`)")
    batch.add_argument("-o", "--output", help="folder for every item's outputs and results.csv / .parquet")
    batch.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    batch.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    batch.add_argument("--threads-per-worker", type=int, default=1, help="torch threads in each worker (default 1)")
    batch.add_argument("--dry-run", action="store_true", help="check every row (files, prompts) and run nothing")
    batch.add_argument("--template", action="store_true", help="write an example manifest to MANIFEST and stop")
    batch.set_defaults(run=cmd_batch)
