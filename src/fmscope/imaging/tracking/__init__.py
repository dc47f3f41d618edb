"""Tracking objects through videos, time-lapses and volumes (``fmscope track``).

:class:`TrackingSession` is the one API for every model; :func:`open_frames` reads any frame
source (arrays, TIFF stacks, image folders, videos, cine DICOM, volumes). Models: ``medsam2``
and ``sam2.1_hiera_*`` through the official ``sam2`` package (:mod:`.medsam2`), and the
embedded default ``litemedsam`` (:mod:`.litemedsam`: per-frame LiteMedSAM from a motion prior,
no temporal memory).
"""

from fmscope.imaging.tracking.frames import FrameSource, open_frames, volume_frames
from fmscope.imaging.tracking.results import LabelStore, ObjectMask, paint_labels
from fmscope.imaging.tracking.session import DIRECTIONS, FrameResult, Prompt, TrackingSession

__all__ = [
    "DIRECTIONS",
    "FrameResult",
    "FrameSource",
    "LabelStore",
    "ObjectMask",
    "Prompt",
    "TrackingSession",
    "open_frames",
    "paint_labels",
    "volume_frames",
]
