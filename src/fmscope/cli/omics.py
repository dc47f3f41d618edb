"""``fmscope embed | domains | impute | deconvolve | annotate | finetune | classify``: the spatial-omics commands.

Every command reads any supported slide and writes a new SpatialData ``.zarr`` (the slide's
elements + the annotated table) or an ``.h5ad``, plus a PNG of the result on the tissue
(domains, cell types, an imputed gene, or the embedding's first three components as colours).
The input is never changed, and every output is checked before any work
(:func:`fmscope.outputs.check_outputs`); so is the slide's size (:mod:`fmscope.omics.minimums`).
What fmscope assumed about the file (where the counts were, bin sizes, gene names) is printed
as ``fmscope: note:`` lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fmscope.cli.options import add_backend_option
from fmscope.cli.progress import tqdm_progress
from fmscope.errors import FmscopeError
from fmscope.outputs import HEAD_SUFFIXES, PICTURE_SUFFIXES, SLIDE_SUFFIXES, Output, check_outputs

SLIDE_HELP = "Visium / Xenium / MERSCOPE output folder, SpatialData .zarr, or .h5ad with obsm['spatial']"
OUTPUT_HELP = "result: a new SpatialData .zarr (the slide's elements + results) or an .h5ad"


def _png_path(args: argparse.Namespace) -> Path:
    return Path(args.png) if getattr(args, "png", None) else Path(args.output).with_suffix(".png")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, outputs that cannot be written or would touch an input."""
    outputs = [Output("-o", args.output, SLIDE_SUFFIXES), Output("--png", _png_path(args), PICTURE_SUFFIXES)]
    inputs = [args.input, getattr(args, "reference", None), getattr(args, "checkpoint", None)]
    if args.command == "finetune":
        outputs.append(Output("--head", args.head, HEAD_SUFFIXES))
        if args.annotations.lower().endswith(".csv"):
            inputs.append(args.annotations)
    elif args.command == "classify":
        inputs.append(args.head)
    check_outputs(outputs, inputs)


def _read(args: argparse.Namespace, step: str | None = None):
    """Check the outputs, read the slide (printing what was assumed), check it is large enough for ``step``."""
    _check_outputs(args)
    return _read_slide(args.input, args, step)


def _read_slide(path, args: argparse.Namespace, step: str | None = None):
    """Read the slide at ``path`` (printing what was assumed), check it is large enough for ``step``."""
    from fmscope.omics import io
    from fmscope.omics.minimums import require_cells

    slide = io.read_slide(path, microns_per_unit=args.microns_per_unit, layer=args.layer)
    _note(slide.notices)
    require_cells(slide.adata.n_obs, step or args.command, str(path))
    return slide


def _write(slide, args: argparse.Namespace, draw=None) -> str:
    """Write the result and, with ``draw(png_path)``, its PNG: the PNG is drawn beside its target and
    put in place only once the result is written, so a failed run leaves an earlier PNG as it was."""
    import os
    import uuid

    from fmscope import output_owner
    from fmscope.omics.store import write_result

    if draw is None:
        _note(write_result(slide, args.output))
        return str(args.output)
    png = _png_path(args)
    drawn = png.parent / f".{png.name}.{uuid.uuid4().hex[:12]}.png"
    try:
        draw(drawn)
        _note(write_result(slide, args.output))
        os.replace(drawn, png)  # check_outputs refused a PNG fmscope did not write
        output_owner.record(png)
    finally:
        drawn.unlink(missing_ok=True)
    return f"{args.output} and {png}"


def _domains_png(slide, column: str, title: str):
    from fmscope.omics.plot import save_domain_png

    return lambda png: save_domain_png(slide, column, png, title=title)


def _vocabulary_note(slide, checkpoint, genes=None) -> None:
    """Print how the slide's genes (and ``genes`` asked for) meet the vocabulary of the scGPT ``checkpoint`` folder:
    low coverage, genes matched only by case (another species), for the steps that embed without :func:`_embed`."""
    if checkpoint is None:
        return
    from fmscope.omics.models.scgpt import read_vocab
    from fmscope.omics.vocab import coverage_note, match_genes, slide_note

    vocab = read_vocab(checkpoint)
    lines = [slide_note(slide.adata, vocab)]
    if genes:
        lines.append(coverage_note(match_genes(list(genes), vocab, warn=False)))
    _note([line for line in lines if line])


def _embed(slide, args: argparse.Namespace):
    from fmscope.omics.embed import embed_cells

    with tqdm_progress("cell") as progress:
        embedding, method = embed_cells(
            slide.adata,
            args.checkpoint,
            batch_size=args.batch_size,
            device=args.device,
            progress=progress,
            backend=args.backend,
            precision="fast" if args.fast else "fp32",
            note=lambda line: _note([line]),  # before the bar starts: a line of its own
        )
    _note(slide.adata.uns["fmscope"].get("skipped_weights", []))
    return embedding, method


def _note(lines) -> None:
    for line in lines:
        print(f"fmscope: note: {line}", file=sys.stderr)


def cmd_embed(args: argparse.Namespace) -> int:
    from fmscope.omics.plot import embedding_colours, save_values_png

    slide = _read(args, "embed_scgpt" if args.checkpoint else "embed")
    embedding, method = _embed(slide, args)
    written = _write(
        slide,
        args,
        lambda png: save_values_png(
            slide, embedding_colours(embedding), png, title="embedding: first 3 components as RGB"
        ),
    )
    print(f"wrote {written}: {embedding.shape[0]} cells x {embedding.shape[1]} dims in obsm['X_fmscope'] ({method})")
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    from fmscope.cli.omics_joint import check_joint_outputs, cmd_joint_domains
    from fmscope.omics.domains import DOMAIN_KEY, count_note, spatial_domains
    from fmscope.omics.sections import sections

    def write(slide, output, png, draw):
        return _write(slide, argparse.Namespace(output=output, png=png), draw)

    if len(args.input) > 1 or len(args.output) > 1 or args.section_key:
        pairs = check_joint_outputs(args)
        slides = [_read_slide(path, args) for path in args.input]
        return cmd_joint_domains(args, slides, pairs, _note, write)
    joint = argparse.Namespace(**vars(args))
    args.input, args.output = args.input[0], args.output[0]
    slide = _read(args)
    if sections(slide.adata) is not None:  # several sections in one table (e.g. obs['library_id'])
        return cmd_joint_domains(joint, [slide], [(args.output, _png_path(args))], _note, write)
    embedding, method = _embed(slide, args)
    resolution = spatial_domains(slide.adata, embedding, resolutions=args.resolution, n_domains=args.n_domains)
    _note(count_note(args.n_domains, slide.adata.obs[DOMAIN_KEY].nunique(), resolution))
    if args.label_key:
        from fmscope.omics.multislide import label_agreement

        print(label_agreement(slide.adata, args.label_key))
    title = f"fmscope domains ({method}, resolution {resolution:g})"
    written = _write(slide, args, _domains_png(slide, DOMAIN_KEY, title))
    print(
        f"wrote {written}: {slide.adata.obs[DOMAIN_KEY].nunique()} domains at resolution {resolution:g} "
        f"over {slide.adata.n_obs} cells ({method})"
    )
    return 0


def cmd_impute(args: argparse.Namespace) -> int:
    from fmscope.omics.impute import IMPUTED_KEY, SPATIAL_IMPUTED_KEY, impute_knn, impute_scgpt_spatial

    if (args.reference is None) == (args.checkpoint is None):
        raise FmscopeError(
            "Give exactly one of --reference (kNN from single cells) and --checkpoint (scGPT-spatial).",
            "Add --reference CELLS.h5ad, or --checkpoint SCGPT_SPATIAL_DIR --genes ...",
        )
    slide = _read(args)
    if args.checkpoint is not None:
        from fmscope.omics.models.scgpt import load_scgpt

        model, vocab, report = load_scgpt(args.checkpoint, device=args.device or "cpu")
        _note(report.explanations())
        _vocabulary_note(slide, args.checkpoint, args.genes)
        with tqdm_progress("cell") as progress:
            imputed = impute_scgpt_spatial(slide.adata, model, vocab, args.genes or [], k=args.k, progress=progress)
        key = SPATIAL_IMPUTED_KEY
    else:
        from fmscope.omics.reference import read_reference

        reference = read_reference(args.reference)
        _note(reference.notices)
        imputed = impute_knn(slide.adata, reference.adata, genes=args.genes, k=args.k or 15)
        key = IMPUTED_KEY
    from fmscope.omics.plot import save_values_png

    slide.adata.obsm[key] = imputed
    gene = str(imputed.columns[0])
    written = _write(
        slide, args, lambda png: save_values_png(slide, imputed[gene].to_numpy(), png, title=f"imputed {gene} ({key})")
    )
    print(f"wrote {written}: {imputed.shape[1]} genes imputed for {imputed.shape[0]} cells in obsm['{key}']")
    return 0


def cmd_deconvolve(args: argparse.Namespace) -> int:
    from fmscope.omics.deconvolve import PROPORTIONS_KEY, deconvolve_nnls
    from fmscope.omics.reference import read_reference

    slide = _read(args)
    read = read_reference(args.reference, label_key=args.label_key)
    _note(read.notices)
    reference = read.adata
    if args.method == "nnls":
        proportions = deconvolve_nnls(slide.adata, reference, args.label_key)
        title = "NNLS on markers"
    else:
        from fmscope.omics.deconvolve_embedding import deconvolve_embedding

        _vocabulary_note(slide, args.checkpoint)
        proportions = deconvolve_embedding(slide.adata, reference, args.label_key, scgpt_folder=args.checkpoint)
        title = f"pseudo-spots in {'scGPT' if args.checkpoint else 'baseline'} embedding space"
    slide.adata.obsm[PROPORTIONS_KEY] = proportions
    slide.adata.obs["fmscope_dominant_type"] = proportions.idxmax(axis=1).astype(str).to_numpy()
    written = _write(
        slide, args, _domains_png(slide, "fmscope_dominant_type", f"dominant cell type per spot ({title})")
    )
    print(
        f"wrote {written}: proportions of {proportions.shape[1]} cell types for "
        f"{proportions.shape[0]} spots in obsm['{PROPORTIONS_KEY}']"
    )
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from fmscope.omics.annotate import CELL_TYPE_KEY, BaselinePCA, ScGPTEncoder, annotate, store_annotation
    from fmscope.omics.reference import read_reference

    if args.tune_layers and args.checkpoint is None:
        raise FmscopeError("--tune-layers fine-tunes scGPT: it needs --checkpoint.", "Add --checkpoint SCGPT_DIR.")
    slide = _read(args)
    read = read_reference(args.reference, label_key=args.label_key)
    _note(read.notices)
    reference = read.adata
    if args.checkpoint is not None:
        encoder = ScGPTEncoder(args.checkpoint, args.tune_layers, args.tune_epochs, args.batch_size, args.device)
        _note(encoder.report.explanations())
        _vocabulary_note(slide, args.checkpoint)
    else:
        encoder = BaselinePCA()
    result = annotate(
        slide.adata,
        reference,
        reference.obs[args.label_key].astype(str).str.strip().to_numpy(),
        encoder,
        min_confidence=args.min_confidence,
        batch_key=args.batch_key,
        holdout=args.holdout,
        step=lambda message: print(f"fmscope: {message}", file=sys.stderr),
    )
    print(result.evaluation.table())
    store_annotation(slide.adata, result)
    title = f"cell types from {Path(args.reference).name} ({encoder.name}; unknown below {args.min_confidence:g})"
    written = _write(slide, args, _domains_png(slide, CELL_TYPE_KEY, title))
    print(
        f"wrote {written}: cell types of {slide.adata.n_obs} cells on {len(result.genes)} shared genes: "
        + result.summary()
    )
    return 0


def _annotation(slide, spec: str):
    """Annotation per cell from an obs column name or a CSV of (cell id, domain)."""
    from fmscope.omics.finetune import annotation_from_column, annotation_from_csv

    notices: list[str] = []
    if spec.lower().endswith(".csv"):
        labels = annotation_from_csv(slide.adata, spec, notices)
    else:
        labels = annotation_from_column(slide.adata, spec, notices)
    _note(notices)
    return labels


def cmd_finetune(args: argparse.Namespace) -> int:
    from fmscope.omics.domains import DOMAIN_KEY
    from fmscope.omics.finetune import PREDICTED_KEY, finetune_head, slide_encoder, store_predictions

    slide = _read(args)
    labels = _annotation(slide, args.annotations)
    _vocabulary_note(slide, args.checkpoint)
    domains = slide.adata.obs[DOMAIN_KEY].astype(str).to_numpy() if DOMAIN_KEY in slide.adata.obs else None
    with tqdm_progress("epoch") as progress:
        result = finetune_head(
            slide.adata,
            labels,
            args.head,
            slide_encoder(slide.adata, args.checkpoint),
            epochs=args.epochs,
            holdout=args.holdout,
            resume=args.resume,
            domains=domains,
            progress=progress,
            tune_layers=args.tune_layers,
            tune_epochs=args.tune_epochs,
        )
    store_predictions(slide.adata, result.classes, result.probabilities)
    written = _write(slide, args, _domains_png(slide, PREDICTED_KEY, f"fine-tuned domains ({result.summary()})"))
    print(f"wrote {args.head} and {written}: {result.summary()}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from fmscope.omics.finetune import PREDICTED_KEY, apply_head, store_predictions

    slide = _read(args)
    _vocabulary_note(slide, args.checkpoint)
    notices: list[str] = []
    classes, probabilities = apply_head(args.head, slide.adata, args.checkpoint, notices)
    _note(notices)
    store_predictions(slide.adata, classes, probabilities)
    written = _write(slide, args, _domains_png(slide, PREDICTED_KEY, f"domains from the head {Path(args.head).name}"))
    counts = slide.adata.obs[PREDICTED_KEY].value_counts()
    print(f"wrote {written}: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    return 0


def _slide_arguments(parser: argparse.ArgumentParser, several: bool = False) -> None:
    parser.add_argument("input", nargs="+" if several else None, help=SLIDE_HELP + (" (several: joint)" * several))
    parser.add_argument(
        "--microns-per-unit",
        type=float,
        help="microns per coordinate unit (1 if microns): used when the slide does not state its "
        "units, checked against them when it does (a disagreement is refused)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        nargs="+" if several else None,
        help=OUTPUT_HELP + (" (one per slide)" * several),
    )
    parser.add_argument("--png", help="picture of the result on the tissue (default: OUTPUT with .png)")
    parser.add_argument(
        "--layer",
        help="where the raw counts are: a layer name, 'raw' (.raw) or 'X' "
        "(default: found; log-normalised values are used without normalising again)",
    )


def _joint_arguments(command: argparse.ArgumentParser) -> None:
    """Options of ``domains`` on several sections (several slides, or one table with a section column)."""
    command.add_argument(
        "--section-key",
        help="obs column naming each cell's section (e.g. library_id): sections embedded together with batch "
        "correction, neighbours within each section (default: found among library_id, sample, section ...)",
    )
    command.add_argument(
        "--correction",
        choices=("harmony", "none"),
        default="harmony",
        help="batch correction between sections (default harmony: genes centred per section, then Harmony)",
    )
    command.add_argument(
        "--label-key", help="obs column of known labels (cell types, regions): adds NMI / ARI / ASW to the figures"
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the spatial-omics commands."""
    for name, help_text, run in (
        ("embed", "cell / spot embeddings of a slide", cmd_embed),
        ("domains", "spatial domains of a slide, with a PNG on the tissue", cmd_domains),
    ):
        command = commands.add_parser(name, help=help_text)
        _slide_arguments(command, several=name == "domains")
        command.add_argument("--checkpoint", help="official scGPT checkpoint folder (default: baseline PCA encoder)")
        command.add_argument("--batch-size", type=int, default=32)
        command.add_argument("--device", help="cpu or cuda (scGPT only)")
        add_backend_option(command)
        command.add_argument(
            "--fast",
            action="store_true",
            help="scGPT in bfloat16 / fp16 on OpenVINO where the CPU has it (~3.5x faster, not bit-exact)",
        )
        if name == "domains":
            command.add_argument(
                "--resolution",
                type=float,
                nargs="+",
                default=[0.2, 0.4, 0.6, 1.0],
                help="Leiden resolutions to compute (labels for each are kept)",
            )
            command.add_argument(
                "--n-domains",
                type=int,
                help="this many domains (the resolution refined towards it; a note when Leiden gives no such count)",
            )
            _joint_arguments(command)
        command.set_defaults(run=run)

    impute = commands.add_parser(
        "impute",
        help="impute unmeasured genes: kNN from a single-cell reference, or the "
        "scGPT-spatial neighbour imputation head",
    )
    _slide_arguments(impute)
    impute.add_argument("--reference", help="single-cell reference .h5ad (kNN imputation)")
    impute.add_argument("--checkpoint", help="scGPT-spatial checkpoint folder (its neighbour imputation head)")
    impute.add_argument("--genes", nargs="+", help="genes to impute (reference default: all the slide lacks)")
    impute.add_argument(
        "--k",
        type=int,
        help="neighbours: reference cells (default 15) or spatial neighbours (default: the checkpoint's, else 6)",
    )
    impute.add_argument("--device", help="cpu or cuda (scGPT-spatial only)")
    impute.set_defaults(run=cmd_impute)

    deconvolve = commands.add_parser("deconvolve", help="cell-type proportions per spot from a labelled reference")
    _slide_arguments(deconvolve)
    deconvolve.add_argument("--reference", required=True, help="labelled single-cell reference .h5ad")
    deconvolve.add_argument("--label-key", required=True, help="reference obs column with cell types")
    deconvolve.add_argument(
        "--method",
        choices=("embedding", "nnls"),
        default="embedding",
        help="pseudo-spot regression in embedding space (default) or NNLS on marker profiles",
    )
    deconvolve.add_argument("--checkpoint", help="scGPT checkpoint folder for the embedding method (default: baseline)")
    deconvolve.set_defaults(run=cmd_deconvolve)

    annotate = commands.add_parser(
        "annotate", help="cell types of every cell / spot from a labelled single-cell reference (+ held-out table)"
    )
    _slide_arguments(annotate)
    annotate.add_argument("--reference", required=True, help="labelled single-cell reference .h5ad")
    annotate.add_argument("--label-key", required=True, help="reference obs column with cell types")
    annotate.add_argument("--checkpoint", help="scGPT / scGPT-spatial checkpoint folder (default: baseline PCA)")
    annotate.add_argument(
        "--tune-layers",
        type=int,
        default=0,
        metavar="K",
        help="with --checkpoint: first fine-tune scGPT's last K layers to classify the reference's cell types",
    )
    annotate.add_argument("--tune-epochs", type=int, default=10, help="epochs of layer fine-tuning")
    annotate.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="cells whose best cell-type probability is below this are 'unknown' (default 0.5)",
    )
    annotate.add_argument(
        "--batch-key", help="reference obs column of donors / batches: whole batches are held out in the evaluation"
    )
    annotate.add_argument(
        "--holdout", type=float, default=0.3, help="fraction of the reference held out for the evaluation"
    )
    annotate.add_argument("--batch-size", type=int, default=32, help="cells per scGPT batch")
    annotate.add_argument("--device", help="cpu or cuda (scGPT only)")
    annotate.set_defaults(run=cmd_annotate)

    finetune = commands.add_parser("finetune", help="train a domain head on annotated cells; predict the slide")
    _slide_arguments(finetune)
    finetune.add_argument(
        "--annotations",
        required=True,
        help="obs column with a domain name per annotated cell (empty: not annotated), or a CSV of cell id, domain",
    )
    finetune.add_argument("--head", required=True, help="head checkpoint to write (and to resume from)")
    finetune.add_argument("--resume", action="store_true", help="continue training from --head")
    finetune.add_argument("--epochs", type=int, default=300)
    finetune.add_argument("--holdout", type=float, default=0.3, help="fraction of each class held out (accuracy)")
    finetune.add_argument("--checkpoint", help="scGPT checkpoint folder for the embeddings (default: baseline)")
    finetune.add_argument(
        "--tune-layers",
        type=int,
        default=0,
        metavar="K",
        help="with --checkpoint: first fine-tune scGPT's last K layers on the annotation",
    )
    finetune.add_argument("--tune-epochs", type=int, default=10, help="epochs of layer fine-tuning")
    finetune.set_defaults(run=cmd_finetune)

    classify = commands.add_parser("classify", help="apply a trained domain head to a slide")
    _slide_arguments(classify)
    classify.add_argument("--head", required=True, help="head checkpoint from `fmscope finetune`")
    classify.add_argument("--checkpoint", help="the scGPT folder, when the head was trained on scGPT embeddings")
    classify.set_defaults(run=cmd_classify)
