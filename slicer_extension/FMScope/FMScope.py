"""FMScope: segment CT/MR volumes from a box with the fmscope engine (3D Slicer scripted module).

Kept short on purpose: behaviour lives in FMScopeLib/logic.py (tested headless with slicer-core);
this file only binds the UI to it and runs the model off the GUI thread (fmscope.jobs.JobRunner, polled by a QTimer).
"""

from __future__ import annotations

import ctk
import qt
import slicer
import vtk
from FMScopeLib import RANGE_LIMIT_MB
from FMScopeLib.install import ensure_fmscope
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

WINDOWS = ["auto", "abdomen", "soft_tissue", "lung", "bone", "brain", "liver"]
SLICE_VIEWS = ["Red", "Yellow", "Green"]
CHECKPOINT_SETTING = "FMScope/checkpoint/{model}"  # the weights file chosen once per model, remembered
BACKEND_SETTING = "FMScope/backend"  # image encoder runtime (fmscope.backends): auto, openvino or torch
RANGE_LIMIT_SETTING = "FMScope/sliceRangeLimitMB"  # larger volumes are read slice range by slice range


class FMScope(ScriptedLoadableModule):
    def __init__(self, parent):
        super().__init__(parent)
        self.parent.title = "FMScope"
        self.parent.categories = ["Segmentation"]
        self.parent.contributors = ["fmscope developers"]
        self.parent.helpText = (
            "Place a ROI (box) around a lesion or organ on one slice, choose the output segmentation and "
            "press Run: the fmscope engine (LiteMedSAM by default) segments the key slice and propagates "
            "through the volume. A ROI that spans several slices also limits the propagation. "
            "Model medsam2 runs MedSAM2's 3D flow (choose MedSAM2_latest.pt once as Checkpoint). "
            "Correct: edit the segment on a slice with Segment Editor, show that slice, press "
            "'Re-propagate from this slice'. Cine: choose a Sequence of 2D frames, draw the ROI on the "
            "frame shown, press 'Track through frames' to get a Sequence of segmentations. "
            "Session: every change is recorded beside the volume's file (or the scene, or the folder chosen); "
            "choosing the same volume and segmentation again offers 'Resume session' after a crash. "
            f"Large volumes: a volume above 'Slice range limit' ({RANGE_LIMIT_MB} MiB unless changed) is read "
            "slice range by slice range, never copied whole (same result)."
        )
        self.parent.acknowledgementText = "LiteMedSAM and MedSAM: Ma et al., Nature Communications 2024 (bowang-lab)."


class FMScopeWidget(ScriptedLoadableModuleWidget):
    @staticmethod
    def _choices() -> tuple[list[str], list[str]]:
        """(volume models from fmscope's catalogue, image encoder runtimes from fmscope.backends); both empty until
        fmscope is installed (the first Segment press installs it, and reopening the module lists them)."""
        try:
            from fmscope import models
            from fmscope.backends import BACKENDS
        except ImportError:
            return [], []
        return list(models.names(models.VOLUME)), list(BACKENDS)

    def setup(self):
        super().setup()
        widget = slicer.util.loadUI(self.resourcePath("UI/FMScope.ui"))
        self.layout.addWidget(widget)
        self.ui = slicer.util.childWidgetVariables(widget)
        widget.setMRMLScene(slicer.mrmlScene)
        volume_models, backends = self._choices()
        self.ui.modelComboBox.addItems(volume_models)
        self.ui.windowComboBox.addItems(WINDOWS)
        self.ui.directionComboBox.addItems(["both", "up", "down"])
        self.ui.sliceViewComboBox.addItems(SLICE_VIEWS)
        self.ui.modelComboBox.currentTextChanged.connect(self.onModelChanged)
        self.ui.checkpointPathLineEdit.currentPathChanged.connect(self.onCheckpointChanged)
        self.onModelChanged(self.ui.modelComboBox.currentText)
        self.ui.runButton.clicked.connect(self.onRun)
        self.ui.repropagateButton.clicked.connect(self.onRepropagate)
        self.ui.trackSequenceButton.clicked.connect(self.onTrackSequence)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.undoButton.clicked.connect(self.onUndo)
        self.ui.modelFilePathLineEdit.currentPathChanged.connect(self.onModelFileChanged)
        self.logic = FMScopeLogic()
        self.ui.backendComboBox.addItems(backends)
        self.ui.backendComboBox.currentText = slicer.app.userSettings().value(BACKEND_SETTING, "auto")
        self.ui.backendComboBox.currentTextChanged.connect(self.onBackendChanged)
        self.onBackendChanged(self.ui.backendComboBox.currentText)
        self._job = None  # the running fmscope.jobs.Job
        self._runner = None  # fmscope.jobs.JobRunner, made on the first run (fmscope may be installed later)
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._poll)
        self._set_running(False)
        self._setup_session()
        self._setup_large_volumes()

    # Session (FMScopeLib.logic: find_session / resume_session / autosave) --------------------------------------
    def _setup_session(self) -> None:
        """A 'Session' section: the folder for new sessions, the Resume button and what was found."""
        section = ctk.ctkCollapsibleButton()
        section.text = "Session"
        self.layout.addWidget(section)
        form = qt.QFormLayout(section)
        self.sessionFolder = ctk.ctkPathLineEdit()
        self.sessionFolder.filters = ctk.ctkPathLineEdit.Dirs
        self.sessionFolder.toolTip = "new sessions go here; empty: beside the volume's file, else the saved scene"
        self.sessionFolder.currentPathChanged.connect(self.onSessionFolderChanged)
        form.addRow("Session folder:", self.sessionFolder)
        self.resumeButton = qt.QPushButton("Resume session")
        self.resumeButton.visible = False
        self.resumeButton.clicked.connect(self.onResume)
        self.sessionLabel = qt.QLabel()
        self.sessionLabel.wordWrap = True
        form.addRow(self.resumeButton, self.sessionLabel)
        self._offer = None
        self._look_timer = qt.QTimer()
        self._look_timer.setInterval(200)
        self._look_timer.timeout.connect(lambda: self._runner is not None and self._runner.deliver())
        self.ui.volumeSelector.currentNodeChanged.connect(lambda node: self._look_for_session())
        self.ui.segmentationSelector.currentNodeChanged.connect(lambda node: self._look_for_session())
        self._scene_closed = slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndCloseEvent, self._on_scene_closed)

    def _setup_large_volumes(self) -> None:
        """A 'Large volumes' section: the size above which a volume is read slice range by slice range (remembered)."""
        section = ctk.ctkCollapsibleButton()
        section.text = "Large volumes"
        section.collapsed = True
        self.layout.addWidget(section)
        form = qt.QFormLayout(section)
        self.rangeLimit = qt.QSpinBox()
        self.rangeLimit.setRange(16, 1 << 20)
        self.rangeLimit.suffix = " MiB"
        self.rangeLimit.value = int(slicer.app.userSettings().value(RANGE_LIMIT_SETTING, RANGE_LIMIT_MB))
        self.rangeLimit.toolTip = (
            "Volumes above this size are read by the engine slice range by slice range, ranges of at most this "
            "size (the same result; MedSAM2's 3D flow reads the volume whole)"
        )
        self.rangeLimit.valueChanged.connect(
            lambda value: slicer.app.userSettings().setValue(RANGE_LIMIT_SETTING, int(value))
        )
        form.addRow("Slice range limit:", self.rangeLimit)

    def _look_for_session(self) -> None:
        """Look (on the model thread: hashing the voxels and loading the model take time) for an unfinished session
        of the chosen volume and segmentation; show it with the Resume button, or why one was refused."""
        self._offer = None
        self.resumeButton.visible = False
        volume, segmentation = self.ui.volumeSelector.currentNode(), self.ui.segmentationSelector.currentNode()
        if volume is None or segmentation is None or not _fmscope_installed():
            self.sessionLabel.text = ""
            return
        from fmscope.jobs import JobRunner

        if self._runner is None:
            self._runner = JobRunner()
        options = self._options()

        def found(offer):
            self._look_timer.stop()
            if (volume, segmentation) != (
                self.ui.volumeSelector.currentNode(),
                self.ui.segmentationSelector.currentNode(),
            ):
                return
            self._offer = offer
            self.resumeButton.visible = offer.resumable is not None
            self.sessionLabel.text = offer.message()

        def failed(error):
            self._look_timer.stop()
            self.sessionLabel.text = f"No session looked for: {error}"

        self._runner.submit(
            lambda job: self.logic.core.find_session(volume, segmentation, options),
            key="session-look",
            on_done=found,
            on_error=failed,
            background=True,
            on_cancelled=self._look_timer.stop,
        )
        self.sessionLabel.text = "Looking for a session ..."
        self._look_timer.start()

    def onSessionFolderChanged(self, path):
        if _fmscope_installed():
            self.logic.core.session_folder = path or None
            self._look_for_session()

    def onResume(self):
        volume, segmentation = self.ui.volumeSelector.currentNode(), self.ui.segmentationSelector.currentNode()
        offer = self._offer
        if offer is None or offer.resumable is None:
            return
        with slicer.util.tryWithErrorDisplay("Cannot resume the session."):
            folder = self.logic.core.resume_session(volume, segmentation, self._options(), str(offer.resumable.folder))
            self.resumeButton.visible = False
            self.sessionLabel.text = f"Resumed {folder}; Undo starts from here."

    def _autosave(self) -> None:
        """A labels snapshot of the sessions, as a background job (a run that comes first goes first)."""
        self._runner.submit(lambda job: self.logic.core.autosave(), key="autosave", background=True)

    def _on_scene_closed(self, caller, event):
        """Node ids are reused by the next scene: its sessions end here."""
        if _fmscope_installed():
            self.logic.core.close_sessions()

    def _set_running(self, running: bool) -> None:
        self.ui.runButton.enabled = not running
        self.ui.repropagateButton.enabled = not running
        self.ui.trackSequenceButton.enabled = not running
        self.ui.cancelButton.enabled = running
        self.ui.progressBar.visible = running

    def _options(self):
        from FMScopeLib.logic import SegmentOptions

        window = self.ui.windowComboBox.currentText
        segment_id = self.ui.segmentSelector.currentSegmentID() if self.ui.overwriteCheckBox.checked else None
        self.logic.core.range_limit_bytes = int(self.rangeLimit.value) * 2**20
        return SegmentOptions(
            model=self.ui.modelFilePathLineEdit.currentPath or self.ui.modelComboBox.currentText,
            checkpoint=self.ui.checkpointPathLineEdit.currentPath or None,
            window=None if window == "auto" else window,
            direction=self.ui.directionComboBox.currentText,
            segment_name=self.ui.segmentNameLineEdit.text or "fmscope",
            segment_id=segment_id or None,
        )

    def onModelChanged(self, model):
        """Show the checkpoint remembered for this model (chosen once, kept in Slicer's settings)."""
        remembered = slicer.app.userSettings().value(CHECKPOINT_SETTING.format(model=model), "")
        self.ui.checkpointPathLineEdit.currentPath = remembered or ""

    def onBackendChanged(self, backend):
        """auto leaves the choice to $FMSCOPE_BACKEND, else OpenVINO on CPU and torch on a GPU (remembered)."""
        slicer.app.userSettings().setValue(BACKEND_SETTING, backend)
        self.logic.backend = None if backend == "auto" else backend

    def onCheckpointChanged(self, path):
        slicer.app.userSettings().setValue(
            CHECKPOINT_SETTING.format(model=self.ui.modelComboBox.currentText), path or ""
        )

    def onRun(self):
        if not ensure_fmscope():
            return
        from FMScopeLib import geometry

        from fmscope.errors import FmscopeError

        volume = self.ui.volumeSelector.currentNode()
        roi = self.ui.roiSelector.currentNode()
        segmentation = self.ui.segmentationSelector.currentNode()
        options = self._options()
        try:
            if volume is None or roi is None or segmentation is None:
                raise FmscopeError("Select a volume, a ROI and an output segmentation.")
            box = geometry.slice_box_from_roi(volume, roi)
            self._check_checkpoint(options)
        except FmscopeError as error:
            slicer.util.errorDisplay(str(error))
            return
        self._start(
            f"Segmenting from slice {box.index} ...",
            lambda progress: self.logic.core.compute(volume, box, options, progress),
            lambda result: (
                f"Done: segment '{self.logic.core.write(segmentation, volume, result, options)}'."
                + _ranges_note(result)
            ),
        )

    def onRepropagate(self):
        if not ensure_fmscope():
            return
        from FMScopeLib import geometry

        from fmscope.errors import FmscopeError

        volume = self.ui.volumeSelector.currentNode()
        segmentation = self.ui.segmentationSelector.currentNode()
        segment_id = self.ui.segmentSelector.currentSegmentID()
        options = self._options()
        try:
            if volume is None or segmentation is None or not segment_id:
                raise FmscopeError(
                    "Select the volume, the segmentation and (Overwrite segment) the segment you corrected."
                )
            slice_to_ras = slicer.mrmlScene.GetNodeByID(
                f"vtkMRMLSliceNode{self.ui.sliceViewComboBox.currentText}"
            ).GetSliceToRAS()
            axis, index = geometry.slice_at(
                volume,
                [slice_to_ras.GetElement(r, 3) for r in range(3)],
                [slice_to_ras.GetElement(r, 2) for r in range(3)],
            )
            self._check_checkpoint(options)
        except FmscopeError as error:
            slicer.util.errorDisplay(str(error))
            return
        options.segment_id = segment_id
        self._start(
            f"Re-propagating '{segment_id}' from slice {index} ({options.direction}) ...",
            lambda progress: self.logic.core.compute_repropagation(
                volume, segmentation, segment_id, axis, index, options, progress
            ),
            lambda result: (
                f"Done: segment '{self.logic.core.write(segmentation, volume, result, options)}' "
                f"re-propagated from slice {index}." + _ranges_note(result)
            ),
        )

    def onTrackSequence(self):
        if not ensure_fmscope():
            return
        from FMScopeLib import geometry

        from fmscope.errors import FmscopeError

        sequence = self.ui.sequenceSelector.currentNode()
        roi = self.ui.roiSelector.currentNode()
        options = self._options()
        try:
            if sequence is None or roi is None:
                raise FmscopeError("Select the frames (a Sequence) and a ROI drawn on one frame.")
            browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence)
            frame = browser.GetSelectedItemNumber() if browser is not None else 0
            frame_node = sequence.GetNthDataNode(max(frame, 0))
            if frame_node is None or not frame_node.IsA("vtkMRMLVolumeNode"):
                raise FmscopeError(f"'{sequence.GetName()}' holds no image frames.", "Choose a Sequence of 2D frames.")
            box = geometry.frame_box_from_roi(frame_node, roi)
            self._check_checkpoint(options)
        except FmscopeError as error:
            slicer.util.errorDisplay(str(error))
            return

        def write(result):
            output = self.logic.core.write_sequence(slicer.mrmlScene, sequence, result, options)
            self.sessionLabel.text = self.logic.core.session_note  # cine runs are not recorded: said so
            return f"Done: '{output.GetName()}', {output.GetNumberOfDataNodes()} frames."

        self._start(
            f"Tracking from frame {frame} ...",
            lambda progress: self.logic.core.compute_sequence(sequence, frame, box, options, progress),
            write,
        )

    def _check_checkpoint(self, options):
        from FMScopeLib.logic import require_checkpoint

        require_checkpoint(options.model, options.checkpoint)

    def _start(self, status: str, compute, write):
        """Run ``compute(progress)`` on the model thread of :class:`fmscope.jobs.JobRunner` (the napari widgets'
        runner, same cancel semantics); ``write(result)`` (scene changes) runs on the GUI thread, from _poll,
        only when the job was not cancelled: Cancel leaves the scene as it was."""
        from fmscope.jobs import JobRunner

        if self._runner is None:
            self._runner = JobRunner()  # no post: _poll delivers results on the GUI thread

        def done(result):
            self._finish()
            self._save_segment_editor_undo_state()
            with slicer.util.tryWithErrorDisplay("Could not write the result."):
                self.ui.statusLabel.text = write(result)
                self._after_change()

        def failed(error):
            self._finish("Failed.")
            slicer.util.errorDisplay(str(error))

        self._job = self._runner.submit(
            lambda job: compute(job.progress),
            key="run",
            on_done=done,
            on_error=failed,
            on_cancelled=lambda: self._finish("Cancelled; nothing was changed."),
        )
        self._set_running(True)
        self.ui.statusLabel.text = status
        self._timer.start()

    def _poll(self):
        if self._job is not None:
            done, total, _ = self._job.state
            self.ui.progressBar.value = int(100 * done / max(total, 1))
        self._runner.deliver()

    def _finish(self, status: str | None = None):
        self._timer.stop()
        self._set_running(False)
        self._job = None
        if status is not None:
            self.ui.statusLabel.text = status

    @staticmethod
    def _save_segment_editor_undo_state():
        """Let Ctrl+Z in the Segment Editor undo our write too, when that editor is open."""
        try:
            editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
            editor.saveStateForUndo()
        except AttributeError:
            pass

    def onModelFileChanged(self, path):
        if not path or not ensure_fmscope():
            return
        with slicer.util.tryWithErrorDisplay("Cannot use this model file."):
            self.ui.statusLabel.text = self.logic.core.describe_model(
                path, self.ui.checkpointPathLineEdit.currentPath or None
            )

    def onCancel(self):
        if self._job is not None:
            self._job.cancel()

    def cleanup(self):
        """Module closed (or reloaded): cancel the running job, stop the model thread, close the sessions (a last
        snapshot each)."""
        self._timer.stop()
        self._look_timer.stop()
        slicer.mrmlScene.RemoveObserver(self._scene_closed)
        if self._runner is not None:
            self._runner.shutdown(timeout=0)
        if _fmscope_installed():
            self.logic.core.close_sessions()

    def onUndo(self):
        if not self.logic.core.undo(slicer.mrmlScene, self.ui.volumeSelector.currentNode()):
            self.ui.statusLabel.text = "Nothing to undo."
            return
        self._after_change()

    def _after_change(self) -> None:
        """After a recorded change: say a session problem, if any, and snapshot in the background."""
        if self.logic.core.session_note:
            self.sessionLabel.text = self.logic.core.session_note
        if self._runner is not None:
            self._autosave()


def _ranges_note(result) -> str:
    """For the status line: how many slice ranges the engine read (a volume above the Slice range limit)."""
    count = len(result.ranges_read)
    return f" The volume was read in {count} slice ranges (Large volumes)." if count else ""


def _fmscope_installed() -> bool:
    """Whether fmscope can be imported (the module installs it on the first run; sessions need it)."""
    try:
        import fmscope  # noqa: F401
    except ImportError:
        return False
    return True


class FMScopeLogic(ScriptedLoadableModuleLogic):
    """Slicer's module logic; all behaviour is in FMScopeLib.logic.FMScopeLogic (``self.core``)."""

    def __init__(self):
        super().__init__()
        self._core = None

    @property
    def core(self):
        if self._core is None:
            from FMScopeLib.logic import FMScopeLogic as CoreLogic

            self._core = CoreLogic()
        return self._core

    def process(self, volume_node, segmentation_node, slice_box, options=None):
        return self.core.process(volume_node, segmentation_node, slice_box, options)

    def repropagate(self, volume_node, segmentation_node, segment_id, axis, index, options=None):
        return self.core.repropagate(volume_node, segmentation_node, segment_id, axis, index, options)

    def process_sequence(self, sequence_node, frame_index, box, options=None):
        return self.core.process_sequence(slicer.mrmlScene, sequence_node, frame_index, box, options)


class FMScopeTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the sample lung CT, a ROI on the tumour, one segment written."""

    def runTest(self):
        slicer.mrmlScene.Clear()
        self.test_sample_ct_tumour()

    def test_sample_ct_tumour(self):
        if not ensure_fmscope():
            self.delayDisplay("fmscope is not installed; test not run")
            return
        import numpy as np
        from FMScopeLib import geometry, mrml_arrays

        from fmscope import metrics, samples

        case = samples.get_case("ct_lung_volume")
        volume = slicer.util.loadVolume(str(case.image_path))
        truth_node = slicer.util.loadLabelVolume(str(case.labels_path))
        truth = slicer.util.arrayFromVolume(truth_node) > 0
        z = samples.key_slice(truth)
        x0, y0, x1, y1 = samples.boxes_from_labels(truth[z])[1]
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        ijk_to_ras = geometry.numpy_matrix(matrix)
        low = (ijk_to_ras @ [x0, y0, z, 1])[:3]
        high = (ijk_to_ras @ [x1, y1, z, 1])[:3]
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        roi.SetCenter(*((low + high) / 2))
        roi.SetSize(*np.abs(high - low))
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        logic = FMScopeLogic()
        segment_id = logic.process(volume, segmentation, geometry.slice_box_from_roi(volume, roi))
        mask = mrml_arrays.read_segment(segmentation, segment_id, volume)
        score = metrics.dice(mask, truth)
        self.assertGreater(score, 0.7)
        self.delayDisplay(f"FMScope test passed: tumour Dice {score:.3f}")
