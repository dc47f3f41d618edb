"""Models loaded once per Dask worker: a worker plugin holding each worker's segmenters and trackers' weights.

The plugin is registered on the client (``client.register_plugin(ModelPool(...))``); every worker
process gets its own copy, whose ``setup`` fixes torch's threads, and every item on that worker
takes its model from it (:func:`worker_pool`), so a model is loaded once per worker, not per item.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from fmscope import models


class ModelPool(WorkerPlugin):
    """Segmenters by (model, checkpoint), built on first use; ``loads`` counts the models built."""

    name = "fmscope-models"

    def __init__(self, torch_threads: int | None = None) -> None:
        self.torch_threads = torch_threads
        self.segmenters: dict = {}
        self.sam2_models: dict = {}
        self.loads = 0

    def setup(self, worker=None) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)

    def segmenter(self, model: str, checkpoint: str | None):
        """The worker's Segmenter for this model and checkpoint (loaded on first use)."""
        from fmscope.imaging.predictor import Segmenter

        key = (model, checkpoint)
        if key not in self.segmenters:
            self.segmenters[key] = Segmenter(model, checkpoint=checkpoint)
            self.loads += 1
        return self.segmenters[key]

    def sam2(self, model: str, checkpoint: str | None):
        """The worker's MedSAM2 / SAM2.1 model (:func:`fmscope.imaging.tracking.sam2_model.load_sam2`)."""
        from fmscope.imaging.tracking.sam2_model import load_sam2

        key = (model, checkpoint)
        if key not in self.sam2_models:
            self.sam2_models[key] = load_sam2(model, checkpoint)
            self.loads += 1
        return self.sam2_models[key]

    def tracker(self, frames, model: str, checkpoint: str | None, window):
        """A tracking backend for ``frames`` whose model weights are the worker's (loaded on first use): the sam2
        family's own tracker, else the default per-frame tracker (LiteMedSAM and fmscope model files), as
        :func:`fmscope.imaging.tracking.session.make_backend` chooses for ``fmscope track``."""
        if models.volume_flow(model) == "tracking":
            from fmscope.imaging.tracking.medsam2 import Sam2Tracker

            return Sam2Tracker(frames, model=model, window=window, loaded=self.sam2(model, checkpoint))
        from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker

        return LiteMedSAMTracker(frames, model=model, window=window, segmenter=self.segmenter(model, checkpoint))

    @property
    def encoder_calls(self) -> int:
        """Image-encoder passes run by this worker's segmenters (the model calls)."""
        return sum(s.encoder_calls for s in self.segmenters.values())


def worker_pool() -> ModelPool:
    """The ModelPool of the Dask worker running the current task."""
    from distributed import get_worker

    return get_worker().plugins[ModelPool.name]
