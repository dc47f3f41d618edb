"""Fine-tune a MedSAM-family segmenter on a user's (image, instance labels) pairs, on a CPU.

By default the image encoder stays frozen, so every view is embedded once before the first epoch
and an epoch costs mask-decoder time only; ``train_encoder="last-stage"`` or ``"lora"`` also trains
the encoder's last stage (in full, or low-rank adapters on it), whose input features are then
computed once instead (:mod:`fmscope.training.encoder_tail`). The views are the ones fmscope segments at
inference: the whole image, and the ROI-zoom crops (:mod:`fmscope.imaging.roi`) of the
objects that ``roi_zoom="auto"`` zooms on; the embeddings come from :meth:`Segmenter.embed`,
so training and use see the same pixels. Prompts are boxes from the instance masks, grown
outwards by a random fraction of the box side (as MedSAM trains). The loss is MedSAM's:
soft Dice + BCE on the mask logits at the view's resolution, plus the squared error of the
IoU head. AdamW, seeded; the mask decoder and prompt encoder are trained.

Validation is split by image (or, for a single image, by region: the objects on the right of
the image); each epoch is scored on the held-out objects (mean of the whole-image and the
ROI-zoom Dice), and training stops after ``patience`` epochs without improvement; the best
epoch's weights are kept. A checkpoint ``<output stem>.training.pt`` (weights, best weights,
optimiser and random state) is written atomically after every epoch; ``resume=True``
continues from it to the same weights as an uninterrupted run. The result is an fmscope
model file (:mod:`fmscope.imaging.model_file`).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from fmscope.checkpoint_files import read_checkpoint, write_checkpoint
from fmscope.errors import FmscopeError
from fmscope.imaging import roi
from fmscope.imaging.cache import EmbeddingCache
from fmscope.imaging.intensity import Intensity, resolve_intensity
from fmscope.imaging.labels import instance_labels
from fmscope.imaging.model_file import TunedModel, trained_state, write_model_file
from fmscope.imaging.models.input_transforms import InputGeometry
from fmscope.imaging.predictor import Segmenter
from fmscope.metrics import dice
from fmscope.models import DEFAULT_SEGMENTER
from fmscope.progress import Progress, as_progress
from fmscope.training.encoder_tail import ENCODER_MODES, EncoderSplit, add_lora, plain_state, split_encoder
from fmscope.training.settings import TrainSettings

TRAINED_PARTS = ["mask_decoder", "prompt_encoder"]
CHECKPOINT_FORMAT = "fmscope-segmenter-training-1"


@dataclass
class LabelledImage:
    """One 2D image (grayscale (H, W) or RGB (H, W, 3)) and its instance labels (H, W), 0 = background."""

    image: np.ndarray
    labels: np.ndarray
    name: str


def labelled_images(image: np.ndarray, labels: np.ndarray, name: str) -> list[LabelledImage]:
    """Split an image, RGB image or (N, Y, X) stack / volume and its labels into 2D pairs.

    Slices of a stack without objects are left out; each slice's labels go through
    :func:`fmscope.imaging.labels.instance_labels` (binary masks: one object per separate region;
    ids renumbered 1..N). Raises FmscopeError when the shapes differ, the labels are not ids, or no
    slice has an object.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4) and labels.ndim == 2
    spatial = image.shape[:2] if rgb else image.shape
    if labels.shape != spatial:
        raise FmscopeError(
            f"The labels of {name} have shape {labels.shape}, its image {image.shape}.",
            "Give each image the label image drawn on it (same height and width, and slices).",
        )
    if rgb or image.ndim == 2:
        pairs = [LabelledImage(image, labels, name)]
    elif image.ndim == 3:
        pairs = [LabelledImage(image[z], labels[z], f"{name}[{z}]") for z in range(image.shape[0])]
    else:
        raise FmscopeError(f"{name} has {image.ndim} dimensions.", "Give 2D images, RGB images or (z, y, x) stacks.")
    # one rule for every front end (imaging.labels): binary masks split into regions, ids made 1..N
    pairs = [
        LabelledImage(pair.image, instance_labels(pair.labels, f"the labels of {pair.name}").array, pair.name)
        for pair in pairs
        if pair.labels.any()
    ]
    if not pairs:
        raise FmscopeError(
            f"The labels of {name} hold no objects.",
            "Annotate at least one object (a nonzero label id) on it, or leave it out.",
        )
    return pairs


@dataclass
class View:
    """An embedded view (the whole image or one ROI-zoom crop) and the objects decoded on it."""

    embedding: torch.Tensor | None  # (1, C, h, w); None when the encoder is trained (see features)
    geometry: InputGeometry
    labels: np.ndarray  # the view's pixels of the label image
    objects: np.ndarray  # (N,) label ids
    boxes: np.ndarray  # (N, 4) tight x0 y0 x1 y1 in view pixels
    zoom: bool
    features: torch.Tensor | None = None  # the encoder's last-stage input, when the encoder is trained

    def image_embedding(self, split: EncoderSplit | None) -> torch.Tensor:
        """The view's embedding: cached, or the trained encoder tail run on its features."""
        return self.embedding if split is None else split.tail(self.features)


@dataclass
class ViewDice:
    """Mean Dice over the objects of whole-image views and of ROI-zoom views (nan when none)."""

    whole: float
    zoom: float

    @property
    def mean(self) -> float:
        values = [v for v in (self.whole, self.zoom) if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")


@dataclass
class TrainingReport:
    """What a training run did and how well the result does on the held-out objects."""

    output: Path
    epochs_run: int
    best_epoch: int
    before: ViewDice
    after: ViewDice
    n_train_objects: int
    n_val_objects: int
    embedding_seconds: float
    epoch_seconds: list[float] = field(default_factory=list)
    base_name: str = ""  # the model trained from (catalogue name) ...
    base_sha256: str = ""  # ... and the sha256 of its weights
    dataset_sha256: str = ""  # of the images and labels trained and scored on (their pixels, in order)
    settings: dict = field(default_factory=dict)  # the TrainSettings used, as a dict

    def summary(self) -> str:
        per_epoch = f"{np.mean(self.epoch_seconds):.1f} s/epoch" if self.epoch_seconds else "no epoch run now"
        return (
            f"held-out Dice (same prompts, {self.n_val_objects} objects): base {self.before.mean:.3f} "
            f"(whole image {self.before.whole:.3f}, ROI zoom {self.before.zoom:.3f}) -> tuned "
            f"{self.after.mean:.3f} (whole image {self.after.whole:.3f}, ROI zoom {self.after.zoom:.3f}); "
            f"best epoch {self.best_epoch} of {self.epochs_run}; trained on {self.n_train_objects} objects; "
            f"embeddings {self.embedding_seconds:.0f} s, {per_epoch}"
        )


def _object_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, tight boxes x0 y0 x1 y1) of every object in a label image."""
    slices = ndimage.find_objects(labels.astype(np.int64, copy=False))
    ids = [i + 1 for i, s in enumerate(slices) if s is not None]
    boxes = [
        [slices[i - 1][1].start, slices[i - 1][0].start, slices[i - 1][1].stop - 1, slices[i - 1][0].stop - 1]
        for i in ids
    ]
    return np.array(ids, dtype=np.int64), np.array(boxes, dtype=np.float64).reshape(-1, 4)


def make_views(
    segmenter: Segmenter,
    item: LabelledImage,
    window: str | tuple | Intensity | None,
    max_crops: int | None,
    rng: np.random.Generator | None = None,
    max_objects: int | None = None,
    split: EncoderSplit | None = None,
) -> list[View]:
    """The whole-image view with every object (at most ``max_objects``, chosen with ``rng``), then ROI-zoom views.

    Zoom views are the ROI-zoom crops of the objects (those whose crop is at most 2/3 of the image's long side,
    as ``Segmenter`` zooms); at most ``max_crops`` crops (chosen with ``rng``), each with
    the objects whose own crop it is. Embeddings come from ``segmenter.embed``; with ``split``,
    each view also keeps the features entering the encoder's last stage.
    """
    segmenter.set_image(item.image, window=window)
    shape = segmenter.image_shape
    rng = rng or np.random.default_rng(0)
    ids, boxes = _object_boxes(item.labels)
    if max_objects is not None and len(ids) > max_objects:
        kept = np.sort(rng.choice(len(ids), size=max_objects, replace=False))
        ids, boxes = ids[kept], boxes[kept]
    embedding, geometry, features = _embedded(segmenter, None, split)
    views = [View(embedding, geometry, item.labels, ids, boxes, False, features)]
    crops: dict[tuple[int, int, int, int], list[int]] = {}
    for index, box in enumerate(boxes):
        crop = roi.crop_for(box, shape)
        if crop is not None:
            crops.setdefault(crop, []).append(index)
    chosen = list(crops)
    if max_crops is not None and len(chosen) > max_crops:
        picked = rng.choice(len(chosen), size=max_crops, replace=False)
        chosen = [chosen[i] for i in sorted(picked)]
    for crop in chosen:
        y0, x0, y1, x1 = crop
        members = crops[crop]
        embedding, geometry, features = _embedded(segmenter, crop, split)
        views.append(
            View(
                embedding,
                geometry,
                item.labels[y0:y1, x0:x1],
                ids[members],
                boxes[members] - np.array([x0, y0, x0, y0]),
                True,
                features,
            )
        )
    return views


def _embedded(segmenter: Segmenter, crop, split: EncoderSplit | None) -> tuple:
    """(embedding (1, C, h, w), geometry, None) of the image or ``crop``; with ``split``
    (None, geometry, the features entering the encoder's last stage)."""
    if split is None:
        entry = segmenter.embed(crop)
        return torch.from_numpy(entry.embedding)[None], entry.geometry, None
    tensor, geometry = segmenter.model_input(crop)
    with torch.no_grad():  # not inference_mode: the tail's backward pass reads the features
        return None, geometry, split.head(tensor[None].to(segmenter.model.device))


def decode(
    net: torch.nn.Module, transform, view: View, boxes: np.ndarray, embedding: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask logits (N, H, W) at the view's resolution, IoU estimates (N,)) for ``boxes`` in view pixels.

    The same steps as :meth:`Segmenter.predict_many` (one box per object, single mask output),
    differentiable. ``embedding``: the view's (default: its cached one).
    """
    embedding = view.embedding if embedding is None else embedding
    device = embedding.device
    box_tensor = torch.as_tensor(transform.boxes(boxes, view.geometry), device=device)[:, None, :]
    sparse, dense = net.prompt_encoder(points=None, boxes=box_tensor, masks=None)
    low_res, iou = net.mask_decoder(
        image_embeddings=embedding,
        image_pe=net.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return transform.masks(low_res, view.geometry), iou[:, 0]


def evaluate(
    net: torch.nn.Module, transform, views: Sequence[View], batch: int = 8, split: EncoderSplit | None = None
) -> ViewDice:
    """Mean Dice of the decoded masks (tight boxes) against the labels, per kind of view."""
    scores: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for view in views:
            embedding = view.image_embedding(split)
            for start in range(0, len(view.objects), batch):
                logits, _ = decode(net, transform, view, view.boxes[start : start + batch], embedding)
                masks = (logits > 0).cpu().numpy()
                for mask, label in zip(masks, view.objects[start : start + batch]):
                    scores[view.zoom].append(dice(mask, view.labels == label))
    return ViewDice(*(float(np.mean(scores[z])) if scores[z] else float("nan") for z in (False, True)))


def _jittered(boxes: np.ndarray, shape: tuple[int, int], fraction: float, generator: torch.Generator) -> np.ndarray:
    """Boxes grown outwards on each edge by uniform [0, fraction * side] pixels, inside the view."""
    sides = np.tile(boxes[:, 2:] - boxes[:, :2] + 1, 2)  # w h w h
    grow = torch.rand(boxes.shape, generator=generator, dtype=torch.float64).numpy() * fraction * sides
    grown = boxes + grow * np.array([-1, -1, 1, 1])
    h, w = shape
    return np.clip(grown, 0, [w - 1, h - 1, w - 1, h - 1])


def _loss(logits: torch.Tensor, iou: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MedSAM's loss: soft Dice + BCE on the mask logits, plus MSE of the IoU head against the true IoU."""
    probability = torch.sigmoid(logits)
    dims = (1, 2)
    soft_dice = 1 - (2 * (probability * target).sum(dims) + 1) / (probability.sum(dims) + target.sum(dims) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dims)
    with torch.no_grad():
        predicted = logits > 0
        true_iou = (predicted & (target > 0)).sum(dims) / ((predicted | (target > 0)).sum(dims).clamp(min=1))
    return (soft_dice + bce).mean() + F.mse_loss(iou, true_iou.float())


def _batches(
    views: Sequence[View], size: int, per_view: int, generator: torch.Generator
) -> list[tuple[int, np.ndarray]]:
    """(view index, object indices) chunks of at most ``size``: ``per_view`` random objects of each view,
    shuffled within and across views."""
    chunks = []
    for index, view in enumerate(views):
        order = torch.randperm(len(view.objects), generator=generator).numpy()[:per_view]
        chunks += [(index, order[start : start + size]) for start in range(0, len(order), size)]
    return [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]


def _image_sha256(image: np.ndarray) -> str:
    """sha256 of an image's pixels: dtype, shape and bytes (C order)."""
    digest = hashlib.sha256(f"{image.dtype.str}:{image.shape}:".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def image_copies(items: Sequence[LabelledImage]) -> list[list[int]]:
    """The indices of ``items`` grouped by identical pixels (:func:`_image_sha256`: the same image given twice,
    e.g. a browser's "a (1).tif" copy picked up by a glob), groups in first-seen order."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(_image_sha256(item.image), []).append(index)
    return list(groups.values())


def copies_note(train: Sequence[LabelledImage], val: Sequence[LabelledImage], split: bool) -> str | None:
    """A line naming the images of ``train`` + ``val`` with the same pixels (and whether their labels are the same
    too), and what that means for the held-out score; None when every image differs. ``train`` / ``val``: the
    images as given (``val``: the held-out images given apart, else empty); ``split``: a held-out set is to be
    taken from ``train`` by :func:`split_holdout`, which keeps copies together."""
    items = [*train, *val]
    said, on_both_sides = [], False
    for group in image_copies(items):
        if len(group) < 2:
            continue
        first, others = items[group[0]], [items[i] for i in group[1:]]
        same_labels = all(np.array_equal(other.labels, first.labels) for other in others)
        sides = {index >= len(train) for index in group}
        on_both_sides |= len(sides) > 1
        said.append(
            f"{', '.join(other.name for other in others)} {'has' if len(others) == 1 else 'have'} the same pixels "
            f"{'and labels ' if same_labels else ''}as {first.name}"
            + (
                " and is both trained on and held out: its held-out Dice is a score on training data"
                if len(sides) > 1
                else ""
            )
        )
    if not said:
        return None
    if on_both_sides or val:
        outcome = ""
    elif split:
        outcome = "; copies are kept on one side of the held-out split"
    else:
        outcome = "; each copy is trained on, so that image counts as many times"
    return "duplicate images: " + "; ".join(said) + outcome + "."


def split_holdout(items: list[LabelledImage], fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): whole images when there are several, else the right-hand objects of one.

    Images with the same pixels (:func:`image_copies`) stay on one side together, so no held-out image is one
    trained on; the fraction counts distinct images. Raises FmscopeError when every image is a copy of one (no
    held-out image could differ from the training ones), and when one image has fewer than two objects."""
    if fraction <= 0:
        return items, []
    groups = image_copies(items)
    if len(items) > 1 and len(groups) == 1:
        raise FmscopeError(
            f"{', '.join(item.name for item in items)} have the same pixels: every image is a copy of "
            f"{items[0].name}, so no held-out image would differ from the ones trained on.",
            "Add another annotated image, give the image once (one image is split by region: its right-hand "
            "objects are held out), or train without a check (--holdout 0).",
        )
    if len(groups) > 1:
        n_val = min(len(groups) - 1, max(1, round(fraction * len(groups))))
        held_groups = np.random.default_rng(seed).permutation(len(groups))[:n_val].tolist()
        held = {index for group in held_groups for index in groups[group]}
        return (
            [item for i, item in enumerate(items) if i not in held],
            [item for i, item in enumerate(items) if i in held],
        )
    item = items[0]
    ids, boxes = _object_boxes(item.labels)
    if len(ids) < 2:
        raise FmscopeError(
            f"{item.name} has {len(ids)} object; a held-out check needs at least two.",
            "Annotate more objects, add an image, or train without a check (--holdout 0).",
        )
    n_val = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    held = ids[np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")[-n_val:]]
    in_val = np.isin(item.labels, held)
    return (
        [LabelledImage(item.image, np.where(in_val, 0, item.labels), f"{item.name} (left)")],
        [LabelledImage(item.image, np.where(in_val, item.labels, 0), f"{item.name} (right)")],
    )


def _data_summary(train: list[LabelledImage], val: list[LabelledImage], window, segmenter: Segmenter) -> dict:
    sides = [max(b[2] - b[0], b[3] - b[1]) + 1 for item in train for b in _object_boxes(item.labels)[1]]
    mapped = []
    for item in train:
        segmenter.set_image(item.image, window=window)
        mapped.append(float(segmenter.mapped_image.mean()))
    return {
        "images": len(train) + len(val),
        "train_images": len(train),
        "val_images": len(val),
        "objects": sum(len(_object_boxes(i.labels)[0]) for i in train + val),
        "train_objects": len(sides),
        "val_objects": sum(len(_object_boxes(i.labels)[0]) for i in val),
        "box_side_px": [float(np.min(sides)), float(np.median(sides)), float(np.max(sides))],
        "image_shapes": sorted({str(tuple(i.image.shape)) for i in train + val}),
        "dtypes": sorted({str(i.image.dtype) for i in train + val}),
        "window": resolve_intensity(train[0].image, window).name,  # compared by foreign_image_warning
        "mapped_mean": float(np.mean(mapped)),
    }


def _data_key(items: list[LabelledImage]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(np.ascontiguousarray(item.image).tobytes())
        digest.update(np.ascontiguousarray(item.labels).tobytes())
    return digest.hexdigest()


def checkpoint_path(output: str | os.PathLike) -> Path:
    """The training checkpoint kept beside a model file: ``model.pt`` -> ``model.training.pt``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.training.pt")


def _base_identity(segmenter: Segmenter) -> tuple[str, str]:
    loaded = segmenter.model
    return loaded.name, (loaded.tuned.base_sha256 if loaded.tuned is not None else loaded.weights_sha256)


def train_segmenter(
    items: list[LabelledImage],
    output: str | os.PathLike,
    model: str = DEFAULT_SEGMENTER,
    checkpoint: str | os.PathLike | None = None,
    window: str | tuple | None = None,
    settings: TrainSettings | None = None,
    val_items: list[LabelledImage] | None = None,
    resume: bool = False,
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    note: Callable[[str], None] | None = None,
) -> TrainingReport:
    """Fine-tune ``model`` on ``items`` and write the fmscope model file ``output``.

    ``val_items``: the held-out images (default: ``settings.holdout`` of ``items``, see
    :func:`split_holdout`). ``window``: the intensity mapping, as for :meth:`Segmenter.set_image`.
    ``progress`` is told ``(done, total, "Embedding: ...")`` per image and ``(epoch, epochs, "Training:
    ...")`` after every epoch; once cancelled it raises :class:`Cancelled` there: the last checkpoint
    stays and ``resume=True`` continues from it. Images given more than once (the same pixels) are named to
    ``note`` before any work (None: a UserWarning; :func:`copies_note`).
    Raises FmscopeError for no objects, a held-out check over copies of one image only (:func:`split_holdout`),
    or a checkpoint of another base model or other data; nothing is written before the inputs are checked.
    """
    settings = settings or TrainSettings()
    output = Path(output)
    if not items:
        raise FmscopeError("No images to train on.", "Give at least one image with its labels.")
    if settings.epochs < 1:
        raise FmscopeError(f"epochs is {settings.epochs}.", "Train for at least one epoch.")
    if settings.train_encoder not in ENCODER_MODES:
        raise FmscopeError(f"Unknown encoder training '{settings.train_encoder}'.", f"Use one of {ENCODER_MODES}.")
    progress = as_progress(progress)
    train, val = (items, val_items) if val_items is not None else split_holdout(items, settings.holdout, settings.seed)
    if (line := copies_note(items, val_items or [], val_items is None and settings.holdout > 0)) is not None:
        note(line) if note is not None else warnings.warn(line, stacklevel=2)
    segmenter = Segmenter(
        model,
        checkpoint=checkpoint,
        device=device,
        cache=EmbeddingCache(max_items=1, directory=cache_dir),
        roi_zoom="auto",
    )
    base_name, base_sha = _base_identity(segmenter)
    data_key = _data_key(train + val)
    saved = _read_resume(checkpoint_path(output), base_name, base_sha, data_key, settings) if resume else None
    net, transform = segmenter.model.net, segmenter.model.transform
    split = split_encoder(net) if settings.train_encoder != "none" else None
    parts = TRAINED_PARTS + (split.parts if split is not None else [])

    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    train_views: list[View] = []
    val_views: list[View] = []
    for done, item in enumerate(train + val):
        progress.update(done, len(train) + len(val), f"Embedding: {item.name} ({done + 1}/{len(train) + len(val)})")
        held_out = done >= len(train)
        (val_views if held_out else train_views).extend(
            make_views(
                segmenter,
                item,
                window,
                settings.max_crops,
                rng,
                max_objects=settings.max_val_objects if held_out else None,
                split=split,
            )
        )
    embedding_seconds = time.perf_counter() - started

    fully_trained = tuple(f"{part}." for part in (parts if settings.train_encoder == "last-stage" else TRAINED_PARTS))
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name.startswith(fully_trained))
    if settings.train_encoder == "lora":
        add_lora(split, settings.lora_rank, settings.lora_alpha, settings.seed)  # new parameters, trained
    parameters = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    if saved is None:
        before = evaluate(net, transform, val_views, split=split) if val_views else ViewDice(float("nan"), float("nan"))
        progress.update(0, settings.epochs, f"Training: held-out Dice of the base model {before.mean:.3f}")
        state = {
            "epoch": 0,
            "best_epoch": 0,
            "best_val": before.mean,
            "stale": 0,
            "before": asdict(before),
            "best": asdict(before),
            "best_state": plain_state(net, parts),
        }
    else:
        net.load_state_dict(saved["state"], strict=False)
        optimiser.load_state_dict(saved["optimiser"])
        generator.set_state(saved["generator"])
        state = {
            key: saved[key] for key in ("epoch", "best_epoch", "best_val", "stale", "before", "best", "best_state")
        }
    n_train = sum(len(v.objects) for v in train_views if not v.zoom)
    epoch_seconds = []
    for epoch in range(int(state["epoch"]), settings.epochs):
        if val_views and state["stale"] >= settings.patience:
            break
        tick = time.perf_counter()
        _train_epoch(net, transform, train_views, optimiser, generator, settings, split)
        state["epoch"] = epoch + 1
        if val_views:
            score = evaluate(net, transform, val_views, split=split)
            improved = not score.mean <= state["best_val"] + 1e-4  # nan before: any score improves
            state["stale"] = 0 if improved else state["stale"] + 1
            if improved:
                state.update(
                    best_epoch=epoch + 1, best_val=score.mean, best=asdict(score), best_state=plain_state(net, parts)
                )
        else:
            state.update(best_epoch=epoch + 1, best_state=plain_state(net, parts))
        write_checkpoint(
            checkpoint_path(output),
            {
                "format": CHECKPOINT_FORMAT,
                "base_name": base_name,
                "base_sha256": base_sha,
                "data_key": data_key,
                "settings": asdict(settings),
                "state": trained_state(net, parts),
                "optimiser": optimiser.state_dict(),
                "generator": generator.get_state(),
                **state,
            },
        )
        epoch_seconds.append(time.perf_counter() - tick)
        progress.update(
            epoch + 1,
            settings.epochs,
            f"Training: epoch {epoch + 1}/{settings.epochs}, best held-out Dice {state['best_val']:.3f} "
            f"(base {ViewDice(**state['before']).mean:.3f})",
        )

    before, after = ViewDice(**state["before"]), ViewDice(**state["best"])
    tuned = TunedModel(
        base_name,
        segmenter.model.architecture,
        base_sha,
        list(parts),
        state["best_state"],
        _data_summary(train, val, window, segmenter),
        before.mean,
        after.mean,
        asdict(settings),
    )
    write_model_file(output, tuned)
    return TrainingReport(
        output,
        int(state["epoch"]),
        int(state["best_epoch"]),
        before,
        after,
        n_train,
        sum(len(v.objects) for v in val_views if not v.zoom),
        embedding_seconds,
        epoch_seconds,
        base_name,
        base_sha,
        data_key,
        asdict(settings),
    )


def _train_epoch(
    net: torch.nn.Module,
    transform,
    views: list[View],
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    settings: TrainSettings,
    split: EncoderSplit | None,
) -> None:
    for index, chosen in _batches(views, settings.batch, settings.max_prompts, generator):
        view = views[index]
        boxes = _jittered(view.boxes[chosen], view.labels.shape, settings.jitter, generator)
        target = torch.from_numpy(view.labels[None] == view.objects[chosen][:, None, None]).float()
        logits, iou = decode(net, transform, view, boxes, view.image_embedding(split))
        loss = _loss(logits, iou, target.to(logits.device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def _read_resume(path: Path, base_name: str, base_sha: str, data_key: str, settings: TrainSettings) -> dict | None:
    """The checkpoint to resume from (None when there is none yet), refused when it is another run's."""
    if not path.is_file():
        return None
    saved = read_checkpoint(path, "training checkpoint", "`fmscope train-segmenter`")
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise FmscopeError(
            f"{path} is not an fmscope segmenter training checkpoint.", "Remove it, or write the model elsewhere (-o)."
        )
    if saved["base_name"] != base_name or saved["base_sha256"] != base_sha:
        raise FmscopeError(
            f"{path} was training {saved['base_name']} (weights sha256 {saved['base_sha256'][:12]}"
            f"...), not {base_name} (sha256 {base_sha[:12]}...).",
            f"Resume with --model {saved['base_name']} and its weights, or write a new model (-o).",
        )
    trained_encoder = saved.get("settings", {}).get("train_encoder", "none")
    if trained_encoder != settings.train_encoder:
        raise FmscopeError(
            f"{path} was training with --train-encoder {trained_encoder}, not {settings.train_encoder}.",
            f"Resume with --train-encoder {trained_encoder}, or write a new model (-o).",
        )
    if saved["data_key"] != data_key:
        raise FmscopeError(
            f"{path} was trained on other images or labels.",
            "Resume with the same images, labels and holdout, or write a new model (-o).",
        )
    return saved
