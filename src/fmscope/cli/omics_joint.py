"""``fmscope domains A B C ... -o A_out B_out C_out`` (or one slide with ``--section-key``): joint domains.

All sections are embedded in one space with the batch effect between them corrected, smoothed over
neighbours within each section, and clustered together (:mod:`fmscope.omics.multislide`); each slide's
result is written to its own output (as the one-slide command writes it, with its PNG), and the
integration figures of fmscope's embedding, PCA without correction and Harmony are printed side by side.
All outputs are checked before any work; each is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmscope.cli.progress import tqdm_progress
from fmscope.errors import FmscopeError
from fmscope.outputs import PICTURE_SUFFIXES, SLIDE_SUFFIXES, Output, check_outputs


def _names(inputs: list[str]) -> list[str]:
    """Each slide's section name: its file name without suffix, numbered when two share it."""
    names: list[str] = []
    for path in inputs:
        stem = Path(path).name.removesuffix(".zarr").removesuffix(".h5ad") or str(path)
        name, number = stem, 2
        while name in names:
            name, number = f"{stem} ({number})", number + 1
        names.append(name)
    return names


def check_joint_outputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(output, PNG) per slide, refused before any work when they are not one per slide or cannot be written."""
    inputs, outputs = list(args.input), list(args.output)
    if len(outputs) != len(inputs):
        raise FmscopeError(
            f"{len(inputs)} slide(s) need {len(inputs)} output(s), one per slide; -o names {len(outputs)}.",
            "Give one -o path per slide, in the same order (e.g. -o a_domains.zarr b_domains.zarr).",
        )
    if args.png and len(inputs) > 1:
        raise FmscopeError(
            "--png names one picture, but each of the slides gets its own.",
            "Leave out --png: each slide's PNG is written beside its output (OUTPUT with .png).",
        )
    pairs = [(out, Path(args.png) if args.png else Path(out).with_suffix(".png")) for out in outputs]
    checked = [Output("-o", out, SLIDE_SUFFIXES) for out, _ in pairs] + [
        Output("--png", png, PICTURE_SUFFIXES) for _, png in pairs
    ]
    check_outputs(checked, [*inputs, args.checkpoint])
    return pairs


def _labels(tables, key: str | None, names: list[str]):
    import numpy as np

    if key is None:
        return None
    for name, table in zip(names, tables):
        if key not in table.obs.columns:
            raise FmscopeError(f"{name} has no obs column '{key}' (--label-key).", "Give a column every slide has.")
    return np.concatenate([tables[i].obs[key].astype(str).to_numpy() for i in range(len(tables))])


def cmd_joint_domains(args: argparse.Namespace, slides: list, pairs: list[tuple[str, Path]], note, write) -> int:
    """The joint path of ``fmscope domains`` on the slides read (outputs checked by :func:`check_joint_outputs`);
    ``note(lines)`` and ``write(slide, output, png, draw)`` are the one-slide command's note printer and writer."""
    from fmscope.omics.domains import DOMAIN_KEY, count_note
    from fmscope.omics.integration_metrics import figures_table
    from fmscope.omics.multislide import joint_domains, joint_table, section_labels, spread
    from fmscope.omics.plot import save_domain_png

    names = _names(list(args.input))
    tables = [slide.adata for slide in slides]
    if len(slides) == 1:
        joint, sections = tables[0], section_labels(tables[0], args.section_key, names[0])
        if sections is None or len(set(sections)) < 2:
            raise FmscopeError(
                f"obs['{args.section_key}'] names one section only in {names[0]}.",
                "Give the column that differs between sections, or several slides.",
            )
        note([f"{len(set(sections))} sections in {names[0]}: embedded together, neighbours within each section"])
    else:
        joint, sections = joint_table(tables, names, args.section_key)
        note([f"{len(slides)} slides embedded together on the {joint.n_vars} genes they share"])
    labels = _labels(tables, args.label_key, names)
    with tqdm_progress("cell") as progress:
        result = joint_domains(
            joint,
            sections,
            checkpoint=args.checkpoint,
            n_domains=args.n_domains,
            resolutions=args.resolution,
            correction=args.correction,
            labels=labels,
            batch_size=args.batch_size,
            device=args.device,
            progress=progress,
        )
    note(result.notes)
    if len(slides) > 1:
        spread(joint, tables)
    n_sections = len(set(sections))
    print(f"integration of {n_sections} sections (embeddings smoothed within sections; scIB-style figures):")
    print(figures_table(result.figures))
    for slide, name, (output, png) in zip(slides, names, pairs):
        title = f"fmscope joint domains ({name}; resolution {result.resolution:g})"
        written = write(
            slide, output, png, lambda path, s=slide, t=title: save_domain_png(s, DOMAIN_KEY, path, title=t)
        )
        print(f"wrote {written}: {slide.adata.obs[DOMAIN_KEY].nunique()} domains over {slide.adata.n_obs} cells")
    total = joint.obs[DOMAIN_KEY].nunique()
    note(count_note(args.n_domains, total, result.resolution))
    print(f"{total} domains across {n_sections} sections at resolution {result.resolution:g} ({result.method})")
    sys.stdout.flush()
    return 0
