"""The Track panel's *Corrections* box (issue 28): edit the tracks and the lineage the tracker made.

The object is the one selected in the Objects table, the frame the one the viewer shows; ``other`` names the
second object of a link or a division. Buttons (engine side: :mod:`fmscope.imaging.tracking.corrections`):

* *Split here*: the selected object's frames from the shown one on become a new object.
* *Link to other*: ``other`` (beginning after the selected object ends) becomes its continuation.
* *Mark division*: the selected object divides on the shown frame into itself (a new id) and ``other``.
* *Remove division*: the selected object's daughters become it again.
* *Re-propagate from here*: every object is tracked again, forward from the shown frame (after a box or click
  corrected it there).

Each edit runs on the panel's model thread and is one undo step (the panel's Undo puts the labels, the lineage
and the objects back). Kept apart from :mod:`fmscope.napari.track_panel` so that the panel's other features
merge without touching it.
"""

from __future__ import annotations

from qtpy.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QSpinBox

from fmscope.imaging.tracking import corrections
from fmscope.napari.worker import Job

BUTTONS = ("Split here", "Link to other", "Mark division", "Remove division", "Re-propagate from here")


class TrackCorrections(QGroupBox):
    """The box; ``panel`` is the :class:`~fmscope.napari.track_panel.TrackPanel` it edits."""

    def __init__(self, panel) -> None:
        super().__init__("Corrections")
        self.panel = panel
        self.other_spin = QSpinBox()
        self.other_spin.setRange(0, 65535)
        self.other_spin.setToolTip("the second object of a link (its continuation) or a division (the new daughter)")
        grid = QGridLayout(self)
        grid.addWidget(QLabel("other object"), 0, 0)
        grid.addWidget(self.other_spin, 0, 1)
        self.buttons: dict[str, QPushButton] = {}
        actions = (self.split, self.link, self.mark_division, self.remove_division, self.repropagate)
        for index, (text, action) in enumerate(zip(BUTTONS, actions)):
            button = QPushButton(text)
            button.clicked.connect(action)
            grid.addWidget(button, 1 + index // 2, index % 2)
            self.buttons[text] = button

    # -- the edits ---------------------------------------------------------------------------------
    def _frame(self) -> int:
        return int(self.panel.viewer.dims.current_step[0])

    def _selected(self) -> int | None:
        obj = self.panel.state.selected
        if obj is None or obj not in self.panel.state.objects:
            self.panel._say("Select an object in the Objects table first.", error=True)
            return None
        return obj

    def split(self) -> None:
        """Split the selected object on the shown frame."""
        obj, frame = self._selected(), self._frame()
        if obj is not None:
            self._edit("split", obj, frame, 0, f"Object {obj} split on frame {frame}.")

    def link(self) -> None:
        """The other object continues the selected one."""
        obj, other = self._selected(), self.other_spin.value()
        if obj is not None:
            self._edit("link", obj, self._frame(), other, f"Object {other} now continues object {obj}.")

    def mark_division(self) -> None:
        """The selected object divides on the shown frame into itself and the other object."""
        obj, other, frame = self._selected(), self.other_spin.value(), self._frame()
        if obj is not None:
            self._edit(
                "mark_division",
                obj,
                frame,
                other,
                f"Object {obj} divides on frame {frame}; object {other} is a daughter.",
            )

    def remove_division(self) -> None:
        """The selected object's daughters become it again."""
        obj = self._selected()
        if obj is not None:
            self._edit("remove_division", obj, self._frame(), 0, f"Division of object {obj} removed.")

    def repropagate(self) -> None:
        """Track every object again, forward from the shown frame to the frame range's end."""
        if self._selected() is None:
            return
        self.panel.first_spin.setValue(self._frame())
        self.panel.direction_combo.setCurrentText("forward")
        self.panel.propagate()

    def _edit(self, name: str, obj: int, frame: int, other: int, message: str) -> None:
        """Run the correction ``name`` (:func:`corrections.apply_correction`) on the model thread, then repaint the
        frames it changed as one undo step and record it in the session (``fmscope replay`` re-runs it)."""
        panel = self.panel
        if panel.propagating:
            panel._say("Cancel the propagation before correcting.")
            return
        settings = panel._settings()
        if settings is None or panel.session is None:
            panel._say("Track an object first.", error=True)
            return

        def run(job: Job):
            session = panel._session_for(settings)
            before = corrections.capture(session)
            frames = corrections.apply_correction(session, name, obj, frame, other)
            present = {obj for scores in session.store.scores.values() for obj in scores}
            return before, {f: session.frame_labels(f) for f in frames}, present

        def paint(answer) -> None:
            before, frames, present = answer
            layer = panel._labels()
            if layer is None or panel._session_key != settings:
                return
            edit = panel.state.begin(layer.data)
            edit.session_state, edit.objects = before, {k: set(v) for k, v in panel.state.objects.items()}
            for added in present - set(panel.state.objects):
                panel.state.objects[added] = set()
            for frame, labels in frames.items():
                panel.state.paint(layer.data, frame, labels)
            for gone in set(panel.state.objects) - present:
                del panel.state.objects[gone]  # linked into another: no pixels of its own now
            panel.state.end(layer.data)
            layer.refresh()
            panel.record_correction(name, obj, frame, other, settings[2])
            panel._after_change(message)

        panel.worker.submit(run, on_done=paint, on_error=lambda error: panel.panel.fail(error))


def undo_correction(panel, edit) -> None:
    """The panel's Undo of a correction (``edit``: the :class:`~fmscope.napari.track_state.TrackEdit` whose layer
    pixels :meth:`TrackState.undo` already put back): the objects and, on the model thread, the engine's labels,
    lineage and prompts as they were."""
    panel.state.objects = {k: set(v) for k, v in edit.objects.items()}
    state = edit.session_state

    def restore(job: Job) -> None:
        if panel._session is not None:
            corrections.restore(panel._session[1], state)

    panel.worker.submit(restore, on_error=lambda error: panel.panel.fail(error))
