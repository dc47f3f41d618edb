"""One label-changing action of a session, as the journal stores it (JSON)."""

from __future__ import annotations

import json
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fmscope.errors import FmscopeError

if TYPE_CHECKING:
    from fmscope.imaging.intensity import Intensity
    from fmscope.imaging.predictor import MaskResult, Segmenter

# Model prompts on one 2D plane: fmscope replay re-runs them with the Segmenter.
BOX, REFINE, POINTS = "box", "refine", "points"
PROMPT_KINDS = (BOX, REFINE, POINTS)
# Model actions over many planes / frames: propagate is re-run (segment_volume), track applied from its pixels.
PROPAGATE, TRACK = "propagate", "track"
# Hand edits and the rest: replayed from the pixels recorded.
PAINT, ERASE, UNDO, DIVISION, TRAIN = "paint", "erase", "undo", "division", "train"
KINDS = PROMPT_KINDS + (PROPAGATE, TRACK, PAINT, ERASE, UNDO, DIVISION, TRAIN)
MODEL_KINDS = PROMPT_KINDS + (PROPAGATE, TRACK)


@dataclass(frozen=True)
class Action:
    """What the user did, with everything needed to redo it.

    Coordinates are image pixels, x (column) then y (row), as :meth:`fmscope.imaging.predictor.Segmenter.predict`
    takes them: ``box`` (x0, y0, x1, y1); ``points`` ((x, y), ...) with ``point_labels`` (1 object, 0 background).
    ``plane``: the indices of the leading axes that select the 2D plane prompted on ((z,) in a volume, (t,) in a
    time-lapse, () for a 2D image). ``crop``: the ROI-zoom crop the model embedded, (y0, x0, y1, x1) as
    :attr:`fmscope.imaging.predictor.MaskResult.crop` (None: the whole plane). ``window``: the intensity map,
    (low, high, name) of :class:`fmscope.imaging.intensity.Intensity`. ``params``: anything else of the kind
    (propagation direction and range, a stroke's brush size...), JSON values. ``time``: when the action started
    (Unix seconds; :meth:`Recorder.record` fills it when 0); ``duration_s``: how long it took. Model actions carry
    ``model`` (catalogue name), ``weights_sha256``, ``backend`` and ``precision``; :meth:`Recorder.record` fills
    those left None from the session's :class:`~fmscope.session_record.identity.ModelIdentity` and refuses other
    weights. :meth:`of_prompt` builds a prompt action from a Segmenter result.
    """

    kind: str
    object_id: int
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    point_labels: tuple[int, ...] = ()
    plane: tuple[int, ...] = ()
    crop: tuple[int, int, int, int] | None = None
    window: tuple[float, float, str] | None = None
    model: str | None = None
    weights_sha256: str | None = None
    backend: str | None = None
    precision: str | None = None
    params: dict = field(default_factory=dict)
    time: float = 0.0
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FmscopeError(f"Unknown session action '{self.kind}'.", f"Use one of: {', '.join(KINDS)}.")
        if len(self.points) != len(self.point_labels):
            raise FmscopeError(
                f"{len(self.points)} points but {len(self.point_labels)} point labels in a '{self.kind}' action.",
                "Give one label (1 object, 0 background) per point.",
            )

    @classmethod
    def of_prompt(
        cls,
        kind: str,
        object_id: int,
        segmenter: Segmenter,
        result: MaskResult,
        box: Sequence[float] | None = None,
        points: Sequence[Sequence[float]] = (),
        point_labels: Sequence[int] = (),
        plane: tuple[int, ...] = (),
        started: float = 0.0,
    ) -> Action:
        """The action of a prompt (``box`` / ``points`` / ``point_labels`` as given to ``segmenter.predict``, on
        ``plane``) that gave ``result``: with its crop, the segmenter's intensity window, model, weights, backend
        and precision. ``started``: when the prompt was given (Unix seconds; 0: now, no duration)."""
        intensity = segmenter.intensity
        now = _time.time()
        return cls(
            kind,
            int(object_id),
            box=None if box is None else tuple(float(v) for v in box),
            points=tuple(tuple(float(v) for v in p) for p in points),
            point_labels=tuple(int(v) for v in point_labels),
            plane=tuple(int(i) for i in plane),
            crop=None if result.crop is None else tuple(int(v) for v in result.crop),
            window=None if intensity is None else (float(intensity.low), float(intensity.high), intensity.name),
            model=segmenter.model.name,
            weights_sha256=segmenter.model.weights_sha256,
            backend=segmenter.backend,
            precision=segmenter.precision,
            time=started or now,
            duration_s=now - started if started else 0.0,
        )

    @classmethod
    def of_propagation(
        cls,
        object_id: int,
        segmenter: Segmenter,
        intensity: Intensity | None,
        box: Sequence[float],
        key_slice: int,
        slice_range: tuple[int, int],
        started: float,
    ) -> Action:
        """The action of a volume propagation of ``object_id`` from ``box`` (x0, y0, x1, y1) on ``key_slice`` over
        the inclusive ``slice_range`` in both directions, with the volume's ``intensity``, started at ``started``
        (Unix seconds): what :mod:`fmscope.session_record.propagate` re-runs."""
        now = _time.time()
        return cls(
            "propagate",
            int(object_id),
            box=tuple(float(v) for v in box),
            plane=(int(key_slice),),
            window=None if intensity is None else (float(intensity.low), float(intensity.high), intensity.name),
            model=segmenter.model.name,
            weights_sha256=segmenter.model.weights_sha256,
            backend=segmenter.backend,
            precision=segmenter.precision,
            params={"range": [int(slice_range[0]), int(slice_range[1])], "direction": "both"},
            time=started,
            duration_s=now - started,
        )

    @property
    def is_model(self) -> bool:
        return self.kind in MODEL_KINDS

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "object_id": self.object_id,
                "box": None if self.box is None else list(self.box),
                "points": [list(p) for p in self.points],
                "point_labels": list(self.point_labels),
                "plane": list(self.plane),
                "crop": None if self.crop is None else list(self.crop),
                "window": None if self.window is None else list(self.window),
                "model": self.model,
                "weights_sha256": self.weights_sha256,
                "backend": self.backend,
                "precision": self.precision,
                "params": self.params,
                "time": self.time,
                "duration_s": self.duration_s,
            },
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Action:
        data = json.loads(text)
        window = data["window"]
        return cls(
            kind=data["kind"],
            object_id=int(data["object_id"]),
            box=None if data["box"] is None else tuple(data["box"]),
            points=tuple(tuple(p) for p in data["points"]),
            point_labels=tuple(data["point_labels"]),
            plane=tuple(data["plane"]),
            crop=None if data["crop"] is None else tuple(data["crop"]),
            window=None if window is None else (float(window[0]), float(window[1]), str(window[2])),
            model=data["model"],
            weights_sha256=data["weights_sha256"],
            backend=data["backend"],
            precision=data["precision"],
            params=data["params"],
            time=data["time"],
            duration_s=data["duration_s"],
        )
