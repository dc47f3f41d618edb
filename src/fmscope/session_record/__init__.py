"""A session record: every label-changing action of an annotation session, kept so work survives a crash.

A front end (napari, Slicer) starts a :class:`Recorder` for the image it annotates, calls
:meth:`Recorder.record` after each completed action (box prompt, click refine, propagate, paint stroke
summary, undo...) with the labels as they now are, and calls :meth:`Recorder.autosave` off the UI thread
(a worker) after model actions. :func:`resume` reopens the session folder for the same image and weights and
gives back the labels after the last completed action and the prompts per object; :func:`replay` re-runs the
journal with the engine (``fmscope replay``); :func:`methods_summary` is ``fmscope session info``.

A session folder holds ``journal.sqlite`` (:mod:`.journal`: the actions, each with the pixels it changed) and
``labels-<seq>.npy`` (:mod:`.snapshot`: the labels after action ``seq``). The model actions run on a Segmenter or,
for MedSAM2 / SAM2.1, a loaded sam2 model (:mod:`.engine`); training runs are journaled too (:mod:`.training`).
Qt-free: the engine's side only.
"""

from __future__ import annotations

from fmscope.session_record.action import Action
from fmscope.session_record.identity import ImageIdentity, ModelIdentity
from fmscope.session_record.recorder import Recorder, Resumed, resume
from fmscope.session_record.replay import ReplayResult, replay
from fmscope.session_record.summary import methods_summary

__all__ = [
    "Action",
    "ImageIdentity",
    "ModelIdentity",
    "Recorder",
    "ReplayResult",
    "Resumed",
    "methods_summary",
    "replay",
    "resume",
]
