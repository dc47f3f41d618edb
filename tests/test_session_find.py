"""Finding a session to resume (fmscope.session_record.find): the one the napari Segment panel offers."""

from __future__ import annotations

import numpy as np

from fmscope import models
from fmscope.session_record import Action, ImageIdentity, ModelIdentity, Recorder
from fmscope.session_record.find import default_folder, find_sessions


def _session(folder, image: np.ndarray, model: ModelIdentity, strokes: int) -> None:
    labels = np.zeros(image.shape, np.uint16)
    recorder = Recorder.start(folder, ImageIdentity.of(image), model, labels)
    for k in range(1, strokes + 1):
        labels[k, :k] = k
        recorder.record(Action("paint", k), labels)
    recorder.close()


def test_offers_this_image_and_weights_and_names_the_others(tmp_path):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    entry = models.BY_NAME[models.DEFAULT_SEGMENTER]
    model = ModelIdentity(entry.name, entry.sha256, "openvino", "fp32")
    tuned = ModelIdentity(entry.name, "0" * 64, "openvino", "fp32")
    base = tmp_path / "cells.tif.fmscope-session"
    _session(base, image[::-1].copy(), model, 1)  # another image
    _session(tmp_path / f"{base.name}-2", image, tuned, 2)  # other weights
    _session(tmp_path / f"{base.name}-3", image, model, 3)

    found = find_sessions(base, ImageIdentity.of(image), model)
    assert found.resumable is not None and found.resumable.folder == tmp_path / f"{base.name}-3"
    assert (found.resumable.actions, found.resumable.objects) == (3, 3)
    assert [info.folder for info in found.other_image] == [base]
    assert [info.folder for info in found.other_weights] == [tmp_path / f"{base.name}-2"]
    assert found.free == tmp_path / f"{base.name}-4"
    assert not list(tmp_path.glob("*-4"))  # only read: nothing made


def test_nothing_there_is_a_free_base(tmp_path):
    entry = models.BY_NAME[models.DEFAULT_SEGMENTER]
    found = find_sessions(
        tmp_path / "s", ImageIdentity.of(np.zeros((4, 4), np.uint8)), ModelIdentity(entry.name, entry.sha256, "t", "p")
    )
    assert found.resumable is None and found.free == tmp_path / "s" and not found.other_image


def test_sessions_of_fmscope_samples_go_to_the_sessions_folder_not_beside_them(tmp_path, monkeypatch):
    from fmscope.samples import sample_data_dir

    monkeypatch.setenv("FMSCOPE_SESSIONS_DIR", str(tmp_path / "sessions"))
    sample = sample_data_dir() / "echo_a4c_cine.dcm"  # napari's File > Open Sample: the package's folder
    assert default_folder(sample) == tmp_path / "sessions" / "echo_a4c_cine.dcm.fmscope-session"
    assert default_folder(tmp_path / "cells.tif") == tmp_path / "cells.tif.fmscope-session"  # the user's own
