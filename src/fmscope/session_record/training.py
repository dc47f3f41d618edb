"""Training runs in a session record: the ``train`` action, and the check that weights a session used are there.

A training run (``fmscope train-segmenter``, the napari Train panel) changes no label; it is journaled so that the
methods say how the model that made later labels came to be: the base model and the sha256 of its weights, the
data set (the sha256 of the images and labels trained and scored on, in order; their names), the settings, and the
model file written (its path, the sha256 of its bytes and the ``weights_sha256`` a Segmenter reports for it,
:func:`fmscope.imaging.models.tuned_sha256`). Replay does not re-train: a session's actions made with those weights
are re-run with the model file recorded, and the session is refused when that file is not there with its sha256.

:func:`journal_training` appends the action to the session in a folder, or starts a training session there (its
"image" is the data set, identified by its sha256; nothing to replay, ``fmscope session info`` shows it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmscope.errors import FmscopeError
from fmscope.session_record.action import TRAIN, Action
from fmscope.session_record.identity import DATASET, ImageIdentity, ModelIdentity, file_sha256
from fmscope.session_record.journal import JOURNAL_FILE, Journal

if TYPE_CHECKING:
    from fmscope.training.segmenter import TrainingReport


def train_action(report: TrainingReport, images: list[str], started: float) -> Action:
    """The ``train`` action of a finished run (``report``) on the images named ``images``, started at ``started``
    (Unix seconds). Reads the model file written (its sha256)."""
    from fmscope.imaging.models import tuned_sha256

    output = Path(report.output).absolute()
    digest = file_sha256(output)
    return Action(
        TRAIN,
        0,
        model=report.base_name,
        weights_sha256=report.base_sha256,
        params={
            "dataset": {
                "sha256": report.dataset_sha256,
                "images": list(images),
                "objects_trained": report.n_train_objects,
                "objects_held_out": report.n_val_objects,
            },
            "settings": report.settings,
            "output": {
                "path": str(output),
                "file_sha256": digest,
                "weights_sha256": tuned_sha256(report.base_sha256, digest),
            },
            "epochs_run": report.epochs_run,
            "best_epoch": report.best_epoch,
            "held_out_dice": [_number(report.before.mean), _number(report.after.mean)],
        },
        time=started,
        duration_s=time.time() - started,
    )


def _number(value: float) -> float | None:
    return None if value != value else float(value)  # NaN (no held-out objects) is not JSON


def default_training_folder(output: str | Path) -> Path:
    """Where a training run is journaled when no session folder is given: beside the model file written
    (``tuned.pt`` -> ``tuned.pt.fmscope-session``)."""
    output = Path(output)
    return output.parent / f"{output.name}.fmscope-session"


def journal_training(folder: str | Path, action: Action) -> Path:
    """Append the ``train`` ``action`` to the session in ``folder``; when ``folder`` holds none, start a training
    session there (its parent must exist). Returns the folder. Raises FmscopeError when it cannot be written."""
    from fmscope.session_record.recorder import Recorder, restore

    folder = Path(folder)
    if (folder / JOURNAL_FILE).is_file():
        journal = Journal(folder)
        try:
            labels, _, snapshot_seq = restore(journal)
        except BaseException:
            journal.close()
            raise
        recorder = Recorder(journal, labels.copy(), journal.last_seq(), snapshot_seq)
    else:
        dataset = action.params["dataset"]
        image = ImageIdentity("", dataset["sha256"], (len(dataset["images"]),), "|u1", DATASET)
        model = ModelIdentity(action.model, action.weights_sha256, "torch", "fp32")
        recorder = Recorder.start(folder, image, model, np.zeros((0,), np.uint8))
    try:
        recorder.record(action, recorder.labels())
    finally:
        recorder.close()
    return folder


def trained_weights(actions: list[Action]) -> dict[str, dict]:
    """{weights_sha256 of a model file written by a recorded training run: its ``output`` params}."""
    return {a.params["output"]["weights_sha256"]: a.params["output"] for a in actions if a.kind == TRAIN}


def check_trained_weights(folder: str | Path) -> dict[str, str]:
    """The model files the session's model actions need besides its own weights: {weights_sha256: path}, each
    checked to be there with the sha256 its training run recorded. Raises FmscopeError, naming the file, when one
    is missing or changed, or when an action used weights no training run in the session wrote."""
    journal = Journal(folder)
    try:
        actions = [action for _, action, _ in journal.actions()]
        own = ModelIdentity.from_json(journal.meta("model")).weights_sha256
    finally:
        journal.close()
    written = trained_weights(actions)
    needed = {}
    for action in actions:
        sha = action.weights_sha256
        if not action.is_model or sha in (None, own) or sha in needed:
            continue
        output = written.get(sha)
        if output is None:
            raise FmscopeError(
                f"An action of the session {folder} was made with weights sha256 {sha[:12]}, neither the session's "
                "model nor a model file a training run in it wrote.",
                "Replay the session with the journal as fmscope wrote it.",
            )
        path = Path(output["path"])
        if not path.is_file() or file_sha256(path) != output["file_sha256"]:
            state = "is not there" if not path.is_file() else "has other bytes than the training run wrote"
            raise FmscopeError(
                f"The session's later actions use the model file {path} (sha256 {output['file_sha256'][:12]}), which "
                f"{state}. Replay does not re-train.",
                "Put the model file the training run wrote back at that path (or re-train it with the recorded "
                "settings), then replay.",
            )
        needed[sha] = str(path)
    return needed
