"""Segmenter: set an image once, then answer box / point prompts from a cached embedding."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

import fmscope
from fmscope.backends.image_encoder import image_encoder
from fmscope.backends.mask_decoder import mask_decoder
from fmscope.errors import FmscopeError
from fmscope.imaging import roi
from fmscope.imaging.cache import CachedEmbedding, EmbeddingCache
from fmscope.imaging.image_input import require_real, to_rgb_uint8, validate_image
from fmscope.imaging.intensity import Intensity, resolve_intensity
from fmscope.imaging.lazy_image import EAGER_MAX_PIXELS, LazyImage
from fmscope.imaging.models import LoadedModel, load_model
from fmscope.imaging.models.input_transforms import InputGeometry
from fmscope.imaging.prompts import validate_box, validate_points
from fmscope.imaging.roi import Crop
from fmscope.models import DEFAULT_SEGMENTER
from fmscope.progress import Progress, as_progress
from fmscope.threads import ThreadPolicy

PRECISIONS = ("fp32", "fast")
PRECISION_ALIASES = {"exact": "fp32"}
# The embedded image or crop must span at least this many model input pixels across its short
# side (two cells of LiteMedSAM's 64 x 64 embedding): thinner strips vanish in the resize.
MIN_SHORT_SIDE_MODEL_PX = 8
# A crop of a lazy pyramid is read from the coarsest level on which it still spans this many times the model's
# input (LiteMedSAM: 512 px for its 256 px input). Measured on a ~500 px nucleus box (crop 1,491 px, test
# tests/test_huge_images.py, pyramid level test): from the 2x level (746 px, 2.9x the input) Dice 0.9966 against the
# full-resolution crop; from the 4x level (373 px, 1.46x) 0.9899: the pyramid's own resampling shows.
PYRAMID_OVERSAMPLING = 2.0
# Zoom crops prepared ahead that predict() considers (the most recent ones).
MAX_PREPARED = 256


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first source index, second source index, weight of the second) per output index: bilinear resizing of
    ``n_in`` samples to ``n_out`` with torch's ``align_corners=False`` convention (pixel centres, clamped)."""
    source = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, None)
    first = np.minimum(np.floor(source).astype(np.intp), n_in - 1)
    return first, np.minimum(first + 1, n_in - 1), (source - first).astype(np.float32)


def upsampled_masks(logits: np.ndarray, shape: tuple[int, int], band: int = 512) -> np.ndarray:
    """(N, H, W) bool masks where ``logits`` (N, h, w) float32, resized bilinearly to ``shape`` (H, W), are
    positive; computed ``band`` output rows at a time, so a 15,000 px crop read from a pyramid level costs its
    mask (1 byte a pixel) and a band of logits, not 4 bytes a pixel of logits (900 MB)."""
    count, (height, width) = len(logits), shape
    rows0, rows1, row_weight = _bilinear_taps(logits.shape[1], height)
    cols0, cols1, col_weight = _bilinear_taps(logits.shape[2], width)
    wide = logits[:, :, cols0] * (1 - col_weight) + logits[:, :, cols1] * col_weight  # (N, h, W)
    masks = np.empty((count, height, width), bool)
    for top in range(0, height, band):
        rows = slice(top, min(height, top + band))
        weight = row_weight[rows, None]
        masks[:, rows] = wide[:, rows0[rows]] * (1 - weight) + wide[:, rows1[rows]] * weight > 0
    return masks


@dataclass
class MaskResult:
    """One object's mask at the image's resolution, the model's IoU estimate, and its logits.

    For a lazy image (:class:`~fmscope.imaging.lazy_image.LazyImage`, never held whole) ``mask`` covers
    ``crop`` only: its (y1 - y0, x1 - x0) pixels, the rest of the image being background.
    """

    mask: np.ndarray  # bool (H, W); (crop rows, crop columns) for a lazy image
    score: float
    low_res_logits: np.ndarray  # (256, 256) float32 in model space, for refinement
    crop: Crop | None  # the ROI-zoom crop used, None for the whole image


class Segmenter:
    """Promptable segmentation with a MedSAM-family model.

    ``model`` is a registry name (``litemedsam`` default, ``medsam_vit_b``, ``sam_vit_b|l|h``)
    with ``checkpoint`` an optional path. ``roi_zoom``: ``"auto"`` (zoom on small prompts),
    ``True`` (both: zoom whenever the crop of :mod:`fmscope.imaging.roi` is smaller than the
    image) or ``False``. ``precision``: ``"fp32"`` (alias ``"exact"``, default) or ``"fast"``
    (bfloat16 encoder where the CPU/GPU supports it). ``threads``: encoder threads; default
    ``FMSCOPE_THREADS`` or the cores other programs leave free (:mod:`fmscope.threads`,
    re-checked before each encoder call). ``backend``: the image encoder's runtime, ``"torch"``,
    ``"openvino"`` or ``"auto"`` (OpenVINO on CPU, torch on GPU); default ``$FMSCOPE_BACKEND``
    or auto (:mod:`fmscope.backends`).
    """

    def __init__(
        self,
        model: str = DEFAULT_SEGMENTER,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        cache: EmbeddingCache | None = None,
        roi_zoom: bool | str = "auto",
        precision: str = "fp32",
        threads: int | None = None,
        backend: str | None = None,
    ) -> None:
        precision = PRECISION_ALIASES.get(precision, precision)
        if precision not in PRECISIONS:
            raise FmscopeError(f"Unknown precision '{precision}'.", f"Use one of: {', '.join(PRECISIONS)}.")
        self.thread_policy = ThreadPolicy(threads)
        self.model: LoadedModel = load_model(model, checkpoint, device)
        self.cache = cache if cache is not None else EmbeddingCache()
        self.roi_zoom = roi_zoom
        self.precision = precision
        self.encoder = image_encoder(
            self.model.net.image_encoder,
            self.model.device,
            self.model.transform.size,
            self._encoder_weights_sha256(),
            precision,
            backend,
        )
        self.backend = self.encoder.backend
        net = self.model.net
        self.decoder = mask_decoder(
            net.prompt_encoder, net.mask_decoder, self.model.weights_sha256, self.backend, precision
        )
        threads = self.thread_policy.apply()
        self.encoder.prepare(threads)  # OpenVINO: compiled here, not on the first prompt
        self.decoder.prepare(threads)
        self.encoder_calls = 0
        # On CPU the decoder is memory-bound: batches beyond two prompts get slower per prompt
        # (measured in benchmarks/segment.py); a GPU takes large batches.
        self.decode_batch = 2 if self.model.device.type == "cpu" else 64
        # Encoder batches: on this project's shared CPU a batch of 4 crops ran 0.75x and 1.45x the
        # speed of 4 single passes in two runs (benchmarks/speed.py; same output), so crops go one
        # by one there, which also keeps work prepared ahead cancellable per crop; a GPU takes batches.
        self.encode_batch = 1 if self.model.device.type == "cpu" else 8
        self._rgb: np.ndarray | None = None
        self._lazy: LazyImage | None = None  # a huge image read crop by crop (set_image); None: the image is in _rgb
        self._image_hash = ""
        self.intensity: Intensity | None = None
        # Zoom crops prepared ahead on the current image (prepare()), oldest first: predict() may use one
        # in place of a prompt's own crop (roi.stand_in).
        self._prepared: dict[Crop, None] = {}

    def _encoder_weights_sha256(self) -> str:
        """The identity of the image encoder's weights (its compiled-runtime cache key): a model file that
        trained no encoder part has its base's encoder, so it shares the base's converted encoder instead of
        converting the same weights again (~15 s for LiteMedSAM on OpenVINO, once per tuned file)."""
        tuned = self.model.tuned
        if tuned is not None and not any(part.startswith("image_encoder") for part in tuned.trained_parts):
            return tuned.base_sha256
        return self.model.weights_sha256

    # -- image ---------------------------------------------------------------------------
    def set_image(
        self, image: np.ndarray | LazyImage, window: str | tuple[float, float] | Intensity | None = None
    ) -> None:
        """Use ``image`` (2D grayscale, RGB, any numeric dtype, CT in HU) for the next prompts.

        ``window``: a CT preset name (``"abdomen"``, ``"lung"``...), a (level, width) pair,
        or an :class:`Intensity`; by default uint8 is used as is and anything else is scaled
        by its 0.5-99.5 percentiles. The caller's array is not modified or kept.

        A :class:`~fmscope.imaging.lazy_image.LazyImage` of at most ``EAGER_MAX_PIXELS`` pixels is read
        whole and used as an array. A larger one is kept open and read crop by crop: each prompt reads only
        its ROI-zoom crop (:func:`fmscope.imaging.roi.crop_for`); the automatic window is the percentiles of
        a fixed sample of its tiles (:meth:`LazyImage.intensity`, the same for every crop); no whole-image
        embedding is computed (a prompt too large to zoom on is refused), and masks cover their crop only
        (:class:`MaskResult`). The lazy image must stay open while it is used.
        """
        if isinstance(image, LazyImage):
            if image.pixels > EAGER_MAX_PIXELS:
                self._set_lazy(image, window)
                return
            image = image.read_all()
        self._lazy = None
        validated = validate_image(image)
        self.intensity = resolve_intensity(validated, window)
        self._rgb = to_rgb_uint8(validated, self.intensity)
        image_hash = hashlib.sha256(self._rgb.tobytes()).hexdigest()
        if image_hash != self._image_hash:
            self._prepared = {}
        self._image_hash = image_hash

    def _set_lazy(self, image: LazyImage, window: str | tuple[float, float] | Intensity | None) -> None:
        """set_image for a lazy image above ``EAGER_MAX_PIXELS``: checks from its shape and dtype only."""
        require_real(image.dtype)
        self.intensity = image.intensity() if window is None else resolve_intensity(np.zeros(1, np.uint8), window)
        image_hash = image.identity()
        if image_hash != self._image_hash:
            self._prepared = {}
        self._image_hash = image_hash
        self._rgb, self._lazy = None, image

    @property
    def mapped_image(self) -> np.ndarray:
        """The current image as the model sees it: (H, W, 3) uint8 after the intensity mapping (read-only).
        Not available for a lazy image (use :meth:`mapped_region`)."""
        if self._lazy is not None:
            raise FmscopeError(
                f"The image ({self._lazy.shape[0]} x {self._lazy.shape[1]}) is read crop by crop; it is never "
                "mapped whole.",
                "Use mapped_region(crop) for a part of it.",
            )
        view = self._require_image().view()
        view.flags.writeable = False
        return view

    def mapped_region(self, crop: Crop | None) -> np.ndarray:
        """(h, w, 3) uint8: ``crop`` (None: the whole image) of the current image after the intensity mapping."""
        if self._lazy is None:
            rgb = self._require_image()
            return rgb if crop is None else rgb[crop[0] : crop[2], crop[1] : crop[3]]
        if crop is None:
            height, width = self._lazy.shape[:2]
            raise FmscopeError(
                f"The prompt is too large to zoom on in this {height} x {width} image, and fmscope does not embed "
                f"an image of more than {EAGER_MAX_PIXELS} pixels whole.",
                f"Give a box at most {int(max(height, width) / roi.MIN_ZOOM_GAIN / roi.CONTEXT_FACTOR)} pixels long, "
                "or segment a downsampled copy of the image.",
            )
        return to_rgb_uint8(self._lazy.read(*crop), self.intensity)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the current image."""
        if self._lazy is not None:
            return self._lazy.shape[:2]
        return self._require_image().shape[:2]

    def _require_image(self) -> np.ndarray:
        if self._rgb is None:
            raise FmscopeError("No image is set.", "Call set_image(image) before predicting.")
        return self._rgb

    # -- embeddings ----------------------------------------------------------------------
    def _signature(self, crop: Crop | None) -> dict:
        shape = [*self._lazy.shape[:2], 3] if self._lazy is not None else list(self._require_image().shape)
        return {
            "image_sha256": self._image_hash,
            "shape": shape,
            "crop": None if crop is None else list(crop),
            "model": self.model.name,
            "weights_sha256": self.model.weights_sha256,
            "transform": type(self.model.transform).__name__,
            "precision": self.precision,
            "backend": self.backend,
            "intensity": [self.intensity.low, self.intensity.high, self.intensity.name] if self.intensity else None,
            "version": fmscope.__version__,
        }

    def embed(self, crop: Crop | None = None) -> CachedEmbedding:
        """The embedding of the image (or of ``crop``), from the cache when possible."""
        cached = self.cache.get(self._signature(crop))
        return cached if cached is not None else self._encode([crop])[0]

    def prepare(self, crops: Sequence[Crop | None], check: Callable[[], None] | None = None) -> int:
        """Embed every crop (None = the whole image) not cached yet, in encoder batches of
        ``encode_batch``; ``check()`` runs before each batch and may raise to stop. Zoom crops
        prepared here may stand in for a later prompt's own crop in :meth:`predict`
        (:func:`fmscope.imaging.roi.stand_in`). Returns the number of crops embedded."""
        for crop in crops:
            if crop is not None:
                self._prepared.pop(crop, None)
                self._prepared[crop] = None
        while len(self._prepared) > MAX_PREPARED:
            del self._prepared[next(iter(self._prepared))]
        missing = list(dict.fromkeys(crop for crop in crops if not self.cache.contains(self._signature(crop))))
        for start in range(0, len(missing), self.encode_batch):
            if check is not None:
                check()
            self._encode(missing[start : start + self.encode_batch])
        return len(missing)

    def zoom_crops_near(self, box: Sequence[float], radius_factor: float) -> list[Crop]:
        """The zoom crops to prepare so that prompts of ``box``'s size centred within ``radius_factor``
        x the crop side of ``box``'s centre are decodes: ``box``'s own crop, then crops centred on a
        grid around it (:func:`fmscope.imaging.roi.neighbours`; 0: the own crop alone), nearest
        first; empty when such a prompt does not zoom."""
        if self.roi_zoom is False:
            return []
        crops = roi.neighbours(validate_box(box, self.image_shape), self.image_shape, radius_factor)
        return list(dict.fromkeys(self._level_crop(crop) for crop in crops))

    def model_input(self, crop: Crop | None = None) -> tuple[torch.Tensor, InputGeometry]:
        """The encoder's input (3, S, S) for the image (or ``crop`` of it) and its geometry (in ``crop``'s pixels).

        A crop of a lazy pyramid (:meth:`_pyramid_level`) is read from the coarsest level that still gives the
        encoder its full input resolution (``PYRAMID_OVERSAMPLING`` x it); its geometry maps the model's boxes and
        masks to ``crop``'s own pixels (level 0), so the mask is on the crop as if read at full resolution."""
        level = self._pyramid_level(crop)
        if level is None:
            region = self.mapped_region(crop)
        else:
            region = to_rgb_uint8(self._lazy.read_level(*level, crop), self.intensity)
        self._check_shape(region.shape[:2], crop)
        tensor, geometry = self.model.transform.image(region)
        if level is not None:
            geometry = InputGeometry((crop[2] - crop[0], crop[3] - crop[1]), geometry.resized)
        return tensor, geometry

    def _pyramid_level(self, crop: Crop | None) -> tuple[int, int] | None:
        """(level index, factor) to read ``crop`` of a lazy pyramid from (:meth:`LazyImage.level_for` at the
        model's input size); None: full resolution (no pyramid, a small crop, or a crop not on that level's blocks,
        such as one recorded before)."""
        if self._lazy is None or crop is None or not self._lazy.coarser:
            return None
        index, factor = self._lazy.level_for(crop, self._level_pixels)
        return (index, factor) if index and self._lazy.snap(crop, factor) == tuple(crop) else None

    @property
    def _level_pixels(self) -> int:
        """Pixels a crop must span on the pyramid level it is read from (``PYRAMID_OVERSAMPLING`` x the input)."""
        return int(PYRAMID_OVERSAMPLING * self.model.transform.size)

    def _level_crop(self, crop: Crop | None) -> Crop | None:
        """A lazy pyramid's crop widened to whole blocks of the level it will be read from (a few pixels at most
        each side), so that level's pixels cover it exactly; other crops as they are."""
        if self._lazy is None or crop is None or not self._lazy.coarser:
            return crop
        index, factor = self._lazy.level_for(crop, self._level_pixels)
        return self._lazy.snap(crop, factor) if index else crop

    def _encode(self, crops: Sequence[Crop | None]) -> list[CachedEmbedding]:
        """Run the encoder on ``crops`` (one batch) and cache the embeddings."""
        tensors, geometries = zip(*(self.model_input(crop) for crop in crops))
        threads = self.thread_policy.apply()
        embeddings = self.encoder(torch.stack(tensors), threads)
        self.encoder_calls += 1
        entries = []
        for crop, embedding, geometry in zip(crops, embeddings, geometries):
            entry = CachedEmbedding(embedding, geometry)
            self.cache.put(self._signature(crop), entry)
            entries.append(entry)
        return entries

    def _check_shape(self, shape: tuple[int, int], crop: Crop | None) -> None:
        """Refuse regions too elongated for the model's square input (e.g. a 6 x 4000 strip)."""
        size = self.model.transform.size
        short, long = min(shape), max(shape)
        if short * size / long >= MIN_SHORT_SIDE_MODEL_PX:
            return
        what = "image" if crop is None else "crop around the prompt"
        ratio = size // MIN_SHORT_SIDE_MODEL_PX
        raise FmscopeError(
            f"The {what} is {shape[0]} x {shape[1]} pixels, too elongated for {self.model.name}: scaled to its "
            f"{size}-pixel input, the short side would span {short * size / long:.1f} pixels "
            f"(at least {MIN_SHORT_SIDE_MODEL_PX} needed, an aspect ratio up to {ratio}:1).",
            f"Crop the image around the object to at most {ratio}:1 (e.g. {short} x {short * ratio} pixels), "
            "or cut the strip into tiles and segment them one by one.",
        )

    def _crop_for(self, extent: np.ndarray, roi_zoom: bool | str | None, prepared: bool = False) -> Crop | None:
        """The crop to embed for a prompt of ``extent`` (None: the whole image): its own centred crop, or
        with ``prepared``, when that is not embedded yet, a crop prepared ahead that centres it well enough."""
        zoom = self.roi_zoom if roi_zoom is None else roi_zoom
        own = self._level_crop(roi.crop_for(extent, self.image_shape)) if zoom else None
        if own is None or not prepared or not self._prepared or not roi.centred(extent):
            return own
        if self.cache.contains(self._signature(own)):
            return own
        ready = [crop for crop in self._prepared if self.cache.contains(self._signature(crop))]
        return roi.stand_in(own, ready) or own

    # -- prompts -------------------------------------------------------------------------
    def predict(
        self,
        box: Sequence[float] | None = None,
        points: Sequence | None = None,
        labels: Sequence[int] | None = None,
        roi_zoom: bool | str | None = None,
        crop: Crop | None | str = "auto",
    ) -> MaskResult:
        """Segment one object from a box, positive/negative points, or both.

        A small prompt is segmented in its ROI-zoom crop (:func:`fmscope.imaging.roi.crop_for`); when
        that crop is not embedded yet but a crop :meth:`prepare` embedded centres the prompt nearly as
        well (:func:`fmscope.imaging.roi.stand_in`), that one is used: a decode instead of an encoder pass.
        ``crop``: ``"auto"`` (that choice), None (the whole image) or a crop (y0, x0, y1, x1) to embed, such
        as an earlier result's ``MaskResult.crop``: the same prompt then gives the same mask (a session's replay).
        """
        shape = self.image_shape
        if box is None and (points is None or len(points) == 0):
            raise FmscopeError("No prompt given.", "Give a box, at least one point, or both.")
        box_array = None if box is None else validate_box(box, shape)
        point_array, label_array = validate_points(points if points is not None else [], labels, shape)
        extent_parts = ([box_array[:2], box_array[2:]] if box_array is not None else []) + list(point_array)
        stacked = np.array(extent_parts)
        extent = np.concatenate([stacked.min(axis=0), stacked.max(axis=0)])
        if crop == "auto":
            crop = self._crop_for(extent, roi_zoom, prepared=True)
        elif crop is not None:
            crop = self._given_crop(crop)
        single_point = box_array is None and len(point_array) == 1
        return self._decode(
            self.embed(crop),
            crop,
            boxes=None if box_array is None else box_array[None],
            points=point_array[None] if len(point_array) else None,
            labels=label_array[None] if len(point_array) else None,
            multimask=single_point,
        )[0]

    def _given_crop(self, crop: Sequence[int]) -> Crop:
        """``crop`` (y0, x0, y1, x1) as a tuple of ints, refused when it leaves the image or is empty."""
        y0, x0, y1, x1 = (int(value) for value in crop)
        height, width = self.image_shape
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise FmscopeError(
                f"The crop {[y0, x0, y1, x1]} (y0, x0, y1, x1) does not fit the {height} x {width} image.",
                "Give the crop of an earlier result on this image (MaskResult.crop), or crop='auto'.",
            )
        return (y0, x0, y1, x1)

    def predict_many(
        self,
        boxes: Sequence[Sequence[float]] | np.ndarray,
        roi_zoom: bool | str | None = None,
        progress: Progress | None = None,
    ) -> list[MaskResult]:
        """Segment one object per box; each image or crop is embedded once for all its boxes (in
        encoder batches of ``encode_batch``), and the boxes are decoded in batches of
        ``decode_batch``. Each result is the one :meth:`predict` gives for its box when no crop
        prepared ahead stands in for the box's own crop there. ``progress``: told
        ``(crops done, crops, "segmenting")``; raises :class:`fmscope.errors.Cancelled` once cancelled."""
        shape = self.image_shape
        validated = [validate_box(b, shape) for b in boxes]
        groups: dict[Crop | None, list[int]] = {}
        for index, box in enumerate(validated):
            groups.setdefault(self._crop_for(box, roi_zoom), []).append(index)
        if self.encode_batch > 1:
            self.prepare(list(groups))
        results: list[MaskResult | None] = [None] * len(validated)
        for crop, indices in as_progress(progress).iterate(groups.items(), len(groups), "segmenting"):
            entry = self.embed(crop)
            for start in range(0, len(indices), self.decode_batch):
                chunk = indices[start : start + self.decode_batch]
                decoded = self._decode(entry, crop, boxes=np.stack([validated[i] for i in chunk]))
                for index, result in zip(chunk, decoded):
                    results[index] = result
        return results  # type: ignore[return-value]

    def _decode(
        self,
        entry: CachedEmbedding,
        crop: Crop | None,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        multimask: bool = False,
    ) -> list[MaskResult]:
        net, transform, device = self.model.net, self.model.transform, self.model.device
        offset = np.zeros(2) if crop is None else np.array([crop[1], crop[0]], dtype=np.float64)
        geometry = entry.geometry
        box_tensor = point_input = None
        if boxes is not None:
            local = boxes - np.concatenate([offset, offset])
            box_tensor = torch.as_tensor(transform.boxes(local, geometry), device=device)[:, None, :]
        if points is not None:
            local_points = transform.points(points - offset, geometry)
            point_input = (
                torch.as_tensor(local_points, device=device),
                torch.as_tensor(labels, dtype=torch.int64, device=device),
            )
        embedding = torch.from_numpy(entry.embedding)[None].to(device)
        with torch.inference_mode():
            sparse, dense = net.prompt_encoder(points=point_input, boxes=box_tensor, masks=None)
            low_res, scores = self.decoder(embedding, sparse, dense, multimask, self.thread_policy.apply())
            if multimask:
                best = scores.argmax(dim=1)
                rows = torch.arange(len(best), device=device)
                low_res, scores = low_res[rows, best][:, None], scores[rows, best][:, None]
            if self._pyramid_level(crop) is None:
                masks = (transform.masks(low_res, geometry) > 0).cpu().numpy()
            else:  # a crop read from a pyramid level: the model's logits, then full resolution in bands of rows
                content = transform.masks(low_res, InputGeometry(geometry.resized, geometry.resized))
                masks = upsampled_masks(content.float().cpu().numpy(), geometry.original)
        return [
            MaskResult(self._paste(mask, crop), float(score), logits[0].float().cpu().numpy(), crop)
            for mask, score, logits in zip(masks, scores[:, 0].tolist(), low_res)
        ]

    def _paste(self, local_mask: np.ndarray, crop: Crop | None) -> np.ndarray:
        if crop is None or self._lazy is not None:
            return local_mask
        full = np.zeros(self.image_shape, dtype=bool)
        full[crop[0] : crop[2], crop[1] : crop[3]] = local_mask
        return full
