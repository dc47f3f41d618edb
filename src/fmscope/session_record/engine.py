"""The engine a session's model actions run on, and what an action records of it.

Two kinds of engine make a session's model actions, and ``fmscope replay`` re-runs them on the same kind:

- a :class:`~fmscope.imaging.predictor.Segmenter` (LiteMedSAM, MedSAM, SAM, fmscope model files): 2D prompts,
  volume propagation (:func:`fmscope.imaging.volume.segment_volume`) and the default tracker (LiteMedSAM per frame);
- a :class:`~fmscope.imaging.tracking.sam2_model.LoadedSam2` (MedSAM2, SAM2.1): tracking through sam2's video
  predictor and MedSAM2's 3D flow (:func:`fmscope.imaging.tracking.volume.track_volume`).

Each model action records the engine's :class:`ModelIdentity` (name, weights sha256, backend, precision) and its
intensity window as ``(low, high, name)``: a Segmenter's :class:`~fmscope.imaging.intensity.Intensity`, or the
sam2 trackers' :class:`~fmscope.imaging.tracking.preprocess.MinMaxTo8Bit` (``(0, 255, "uint8")`` for uint8 frames
used as they are). Replay hands the recorded window back to the engine, so it maps the pixels exactly as recorded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.session_record.identity import ModelIdentity

if TYPE_CHECKING:
    from fmscope.imaging.predictor import Segmenter
    from fmscope.imaging.tracking import TrackingSession
    from fmscope.imaging.tracking.preprocess import MinMaxTo8Bit
    from fmscope.imaging.tracking.sam2_model import LoadedSam2

    Engine = Union[Segmenter, LoadedSam2]

UINT8 = "uint8"  # the window name of frames used as they are


def is_sam2(engine: Engine) -> bool:
    """Whether ``engine`` is a loaded MedSAM2 / SAM2.1 model (else a Segmenter)."""
    return hasattr(engine, "predictor")


def engine_identity(engine: Engine) -> ModelIdentity:
    """The :class:`ModelIdentity` of a Segmenter or a LoadedSam2."""
    if is_sam2(engine):
        return ModelIdentity(engine.name, engine.weights_sha256, engine.backend, engine.precision)
    return ModelIdentity.of(engine)


def tracker_engine(backend) -> Engine:
    """The engine of a tracking backend (:class:`~fmscope.imaging.tracking.session.TrackerBackend`): the default
    tracker's Segmenter or a Sam2Tracker's LoadedSam2. Raises FmscopeError for a backend with neither."""
    engine = getattr(backend, "segmenter", None) or getattr(backend, "loaded", None)
    if engine is None:
        raise FmscopeError(
            f"The tracker {type(backend).__name__} names no model, so its work cannot be recorded.",
            "Track with a model of fmscope's catalogue or an fmscope model file.",
        )
    return engine


def mapping_window(mapping: MinMaxTo8Bit) -> tuple[float, float, str]:
    """A sam2 tracker's intensity mapping as a recorded window."""
    if mapping.low is None:
        return (0.0, 255.0, UINT8)
    return (float(mapping.low), float(mapping.high), mapping.name or "min-max")


def window_mapping(window: tuple[float, float, str]) -> MinMaxTo8Bit:
    """The sam2 trackers' mapping of a recorded window (:func:`mapping_window` inverted)."""
    from fmscope.imaging.tracking.preprocess import MinMaxTo8Bit

    low, high, name = window
    return MinMaxTo8Bit(None, None, UINT8) if name == UINT8 else MinMaxTo8Bit(float(low), float(high), name)


def tracker_window(backend) -> tuple[float, float, str] | None:
    """The intensity window a tracking backend maps its frames with (None: it has none to say)."""
    intensity = getattr(backend, "intensity", None)
    if intensity is None:
        return None
    if hasattr(intensity, "to_uint8"):  # the default tracker's Intensity
        return (float(intensity.low), float(intensity.high), intensity.name)
    return mapping_window(intensity)


def tracking_sessions(
    image: np.ndarray | str | os.PathLike, engine: Engine
) -> Callable[[str, tuple | None], TrackingSession]:
    """A factory of engine sessions tracking with ``engine`` on ``image`` ((T, H, W[, C]) frames or a (Z, H, W)
    volume; or the path of a video / cine read frame by frame), given the recorded axis (``time`` / ``z``) and
    window (None: the tracker's own, as sessions recorded before windows were)."""
    from fmscope.imaging.tracking import TrackingSession, open_frames

    def make(axis: str, window: tuple | None) -> TrackingSession:
        if isinstance(image, np.ndarray):
            frames = open_frames(image, kind="volume" if axis == "z" else "stack")
        else:
            frames = open_frames(image)
        if is_sam2(engine):
            from fmscope.imaging.tracking.medsam2 import Sam2Tracker

            mapping = None if window is None else window_mapping(window)
            backend = Sam2Tracker(frames, model=engine.name, loaded=engine, intensity=mapping)
            return TrackingSession(frames, model=engine.name, backend=backend)
        from fmscope.imaging.intensity import Intensity
        from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

        intensity = None if window is None else Intensity(*window)
        backend = LiteMedSAMTracker(frames, segmenter=engine, window=intensity)
        return TrackingSession(frames, model=engine.model.name, backend=backend)

    return make


def load_engine(
    model: ModelIdentity,
    checkpoint: str | os.PathLike | None,
    device: str | None,
    backend: str | None,
    precision: str | None,
) -> Engine:
    """The engine to replay a session of ``model`` with: its catalogue model or model file, weights from
    ``checkpoint`` (else where the catalogue finds them), on ``backend`` at ``precision`` (None: the session's)."""
    backend, precision = backend or model.backend, precision or model.precision
    if uses_sam2(model.name):
        from fmscope.imaging.tracking.sam2_model import load_sam2

        return load_sam2(model.name, checkpoint, device, backend, precision)
    from fmscope.imaging.predictor import Segmenter

    return Segmenter(model.name, checkpoint=checkpoint, device=device, precision=precision, backend=backend)


def uses_sam2(model: str | None) -> bool:
    """Whether catalogue name ``model`` runs on a LoadedSam2 (MedSAM2, SAM2.1: their own tracking memory)."""
    from fmscope.models import names

    return model in names(family="sam2")


def sam2_volume_window(volume: np.ndarray, window: str | tuple[float, float] | None) -> tuple[float, float, str]:
    """The window MedSAM2's 3D flow maps ``volume`` (Z, H, W) with, given the user's ``window`` (a preset, (level,
    width) or None), as recorded (:func:`mapping_window`); :func:`window_mapping` of it is the flow's mapping."""
    from fmscope.imaging.io import Volume
    from fmscope.imaging.tracking.frames import volume_frames
    from fmscope.imaging.tracking.preprocess import intensity_for
    from fmscope.imaging.tracking.volume import IDENTITY

    frames = volume_frames(Volume(np.asarray(volume), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), IDENTITY))
    return mapping_window(intensity_for(frames, window))
