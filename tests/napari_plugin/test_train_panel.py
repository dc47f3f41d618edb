"""'Train on my objects' in the Segment widget: a real viewer, real LiteMedSAM, real HeLa frames."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from napari_helpers import click, wait_idle

from fmscope import samples
from fmscope.cli import main
from fmscope.imaging.model_file import read_model_file
from fmscope.napari.segment_widget import BOXES, LABELS
from fmscope.session_record import ModelIdentity
from fmscope.session_record.find import find_sessions
from fmscope.training.segmenter import checkpoint_path

pytestmark = pytest.mark.slow
TRAINING_MS = 1_200_000  # a few epochs on three small frames: well under a minute on an idle 2-core CPU


def two_largest(labels: np.ndarray) -> np.ndarray:
    """A frame's labels with only its two largest nuclei: the panel trains with the default crops and prompts,
    whose number grows with the objects (these tests check the panel, benchmarks/finetune.py the training)."""
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    return np.where(np.isin(labels, ids[np.argsort(areas, kind="stable")[-2:]]), labels, 0).astype(labels.dtype)


@pytest.fixture
def hela_viewer(make_napari_viewer, open_widget, qtbot):
    """Three HeLa frames and two nuclei labelled on each, the Segment widget (with its Train panel) from the
    Plugins menu."""
    folder = samples.sample_data_dir() / "hela_timelapse"
    images, masks = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "masks.tif")
    viewer = make_napari_viewer()
    viewer.add_image(images[[0, 1, 10], :128, :128], name="hela")
    viewer.add_labels(np.stack([two_largest(m) for m in masks[[0, 1, 10], :128, :128]]), name="my nuclei")
    widget = open_widget(viewer, "Segment")
    wait_idle(qtbot, widget)
    return viewer, widget


def test_train_switches_the_widget_to_the_tuned_model(hela_viewer, qtbot, tmp_path, capsys):
    viewer, widget = hela_viewer
    panel = widget.train_panel
    assert [panel.labels_combo.itemText(i) for i in range(panel.labels_combo.count())] == [LABELS, "my nuclei"]
    panel.labels_combo.setCurrentText("my nuclei")
    panel.epochs_spin.setValue(1)
    panel.output_edit.setText(str(tmp_path / "tuned.pt"))
    click(qtbot, widget, "Train on my objects")
    assert not panel.train_button.isEnabled() and panel.cancel_button.isEnabled()
    wait_idle(qtbot, widget, timeout=TRAINING_MS)
    assert panel.train_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert read_model_file(tmp_path / "tuned.pt").data["images"] == 3
    assert widget.model_combo.currentText() == str(tmp_path / "tuned.pt")
    assert "held-out Dice" in widget.status.text() and "tuned.pt" in widget.status.text()

    # The next box is segmented by the tuned model, with embeddings keyed by its own weights.
    viewer.dims.set_current_step(0, 0)
    viewer.layers[BOXES].add_rectangles(np.array([[0, 20, 20], [0, 20, 70], [0, 70, 70], [0, 70, 20]], float))
    wait_idle(qtbot, widget)
    tuned = widget._segmenters[(str(tmp_path / "tuned.pt"), "", None)]
    base = widget._segmenters[("litemedsam", "", None)]
    assert tuned.model.tuned is not None and tuned.model.weights_sha256 != base.model.weights_sha256
    assert tuned.encoder_calls >= 1 and viewer.layers[LABELS].data[0].any()

    # The run is journaled in the image's session, and the box made with the tuned model after it too (issue 29).
    recorder = widget.session.recorder
    qtbot.waitUntil(lambda: recorder.seq == 2, timeout=5000)
    folder = recorder.folder
    actions = [action for _, action, _ in recorder.journal.actions()]
    assert [a.kind for a in actions] == ["train", "box"]
    output = actions[0].params["output"]
    assert output["path"] == str(tmp_path / "tuned.pt") and actions[0].weights_sha256 == base.model.weights_sha256
    assert actions[1].weights_sha256 == tuned.model.weights_sha256 == output["weights_sha256"]
    assert actions[0].params["dataset"]["images"] == ["hela"] and actions[0].params["settings"]["epochs"] == 1
    saved = viewer.layers[LABELS].data.copy()
    wait_idle(qtbot, widget)
    assert main(["session", "info", str(folder)]) == 0
    assert "training run: litemedsam" in capsys.readouterr().out
    image = tmp_path / "hela.tif"
    tifffile.imwrite(image, viewer.layers["hela"].data, photometric="minisblack")
    out = tmp_path / "replayed.tif"
    assert main(["replay", str(folder), "--image", str(image), "-o", str(out)]) == 0
    assert np.array_equal(tifffile.imread(out), saved)  # the box re-run with the recorded model file
    # with the tuned model chosen, the session is still this image's to resume (its training run wrote the weights)
    found = find_sessions(folder, widget.session.image_identity, ModelIdentity.of(tuned))
    assert found.resumable is not None and found.resumable.folder == folder and not found.other_weights
    (tmp_path / "tuned.pt").rename(tmp_path / "moved.pt")  # replay never re-trains: refused, naming the file
    assert main(["replay", str(folder), "--image", str(image), "-o", str(tmp_path / "again.tif")]) == 1
    assert "tuned.pt" in capsys.readouterr().err and not (tmp_path / "again.tif").exists()


def test_cancel_stops_training_and_writes_no_model(hela_viewer, qtbot, tmp_path):
    viewer, widget = hela_viewer
    panel = widget.train_panel
    panel.labels_combo.setCurrentText("my nuclei")
    panel.epochs_spin.setValue(50)
    panel.output_edit.setText(str(tmp_path / "cancelled.pt"))
    click(qtbot, widget, "Train on my objects")
    qtbot.waitUntil(lambda: "epoch 1/50" in widget.status.text(), timeout=TRAINING_MS)
    click(qtbot, widget, "Cancel training")
    assert panel.train_button.isEnabled() and "cancelled" in widget.status.text()
    wait_idle(qtbot, widget, timeout=TRAINING_MS)
    assert not (tmp_path / "cancelled.pt").exists()
    assert checkpoint_path(tmp_path / "cancelled.pt").exists()  # `--resume` can continue it
    assert widget.model_combo.currentText() == "litemedsam"


def test_no_objects_is_reported_not_raised(hela_viewer, qtbot, tmp_path):
    viewer, widget = hela_viewer
    panel = widget.train_panel
    panel.labels_combo.setCurrentText(LABELS)  # the widget's own labels: nothing accepted yet
    panel.output_edit.setText(str(tmp_path / "none.pt"))
    click(qtbot, widget, "Train on my objects")
    wait_idle(qtbot, widget)
    assert "hold no objects" in widget.status.text() and panel.train_button.isEnabled()
    assert not list(tmp_path.iterdir())
