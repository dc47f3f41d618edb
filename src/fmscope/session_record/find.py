"""Finding a session to resume: the session folders at and beside a base folder, read without changing them.

A front end proposes a base folder for an image (:func:`default_folder`, or one the
user chose); the sessions of that image live in it or in its numbered siblings (``<base>-2``, ``<base>-3``, ...),
made when the base already held a session the user did not resume. :func:`find_sessions` reads them all and says
which one to offer, which ones belong to other images or weights (to name them, never load them) and which folder
a new session goes to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fmscope.errors import FmscopeError
from fmscope.session_record.identity import ImageIdentity, ModelIdentity
from fmscope.session_record.journal import JOURNAL_FILE, Journal
from fmscope.session_record.training import trained_weights

MAX_SIBLINGS = 50  # <base>, <base>-2 ... <base>-50
SESSIONS_VARIABLE = "FMSCOPE_SESSIONS_DIR"


def sessions_root() -> Path:
    """Where sessions of images without a file go: ``$FMSCOPE_SESSIONS_DIR``, else ``~/fmscope_sessions`` (user
    data, so not the rebuildable cache of :mod:`fmscope.user_cache`). The napari Segment panel's rule too."""
    chosen = os.environ.get(SESSIONS_VARIABLE, "").strip()
    return Path(chosen).expanduser() if chosen else Path.home() / "fmscope_sessions"


def default_folder(image_path: str | Path) -> Path:
    """The session folder next to the user's image: ``cells.tif`` -> ``cells.tif.fmscope-session``.

    fmscope's own sample files (napari's File > Open Sample: the checkout's or the installed package's
    ``sample_data``) are not the user's folder to write in, nor is a folder the user cannot write: their sessions
    go to :func:`sessions_root` under the same name."""
    from fmscope.samples import sample_data_dir

    image_path = Path(image_path)
    name = f"{image_path.name}.fmscope-session"
    try:
        samples = sample_data_dir().resolve()
    except FmscopeError:  # no sample data here
        samples = None
    folder = image_path.parent
    if (samples is not None and folder.resolve().is_relative_to(samples)) or not os.access(folder, os.W_OK):
        return sessions_root() / name
    return folder / name


@dataclass(frozen=True)
class SessionInfo:
    """A session folder as read: its image and model identities, ``actions`` (count), ``objects`` (distinct
    object ids acted on), ``last`` (Unix seconds of its last action; its creation when it has none) and ``trained``
    (the weights_sha256 of the model files its training runs wrote: resuming with one of them is resuming it)."""

    folder: Path
    image: ImageIdentity
    model: ModelIdentity
    actions: int
    objects: int
    last: float
    trained: frozenset[str] = frozenset()

    def made_with(self, model: ModelIdentity) -> bool:
        """Whether ``model`` is this session's model, or a model file one of its training runs wrote."""
        same = (self.model.name, self.model.weights_sha256) == (model.name, model.weights_sha256)
        return same or model.weights_sha256 in self.trained


@dataclass
class Found:
    """``resumable``: the newest session of this image and weights (None: none); ``other_image`` /
    ``other_weights``: sessions in the candidates that are not this one's (named, not loaded); ``free``: the
    first candidate folder holding no session (a new session goes there; None when all are taken);
    ``unreadable``: {folder: why} for damaged journals."""

    resumable: SessionInfo | None = None
    other_image: list[SessionInfo] = field(default_factory=list)
    other_weights: list[SessionInfo] = field(default_factory=list)
    free: Path | None = None
    unreadable: dict[Path, str] = field(default_factory=dict)


def candidates(base: str | Path) -> list[Path]:
    """``base`` and its numbered siblings ``<base>-2`` ... ``<base>-<MAX_SIBLINGS>``, in that order."""
    base = Path(base)
    return [base] + [base.with_name(f"{base.name}-{n}") for n in range(2, MAX_SIBLINGS + 1)]


def read_info(folder: Path) -> SessionInfo:
    """The :class:`SessionInfo` of the session in ``folder``; raises FmscopeError when it is not one or damaged."""
    journal = Journal(folder)
    try:
        actions = [action for _, action, _ in journal.actions()]
        return SessionInfo(
            folder,
            ImageIdentity.from_json(journal.meta("image")),
            ModelIdentity.from_json(journal.meta("model")),
            len(actions),
            len({a.object_id for a in actions if a.object_id}),
            max((a.time + a.duration_s for a in actions), default=float(journal.meta("created") or 0.0)),
            frozenset(trained_weights(actions)),
        )
    finally:
        journal.close()


def find_sessions(base: str | Path, image: ImageIdentity, model: ModelIdentity) -> Found:
    """Read the sessions in :func:`candidates` of ``base`` for ``image`` annotated with ``model`` (see
    :class:`Found`). Only reads; stops at the first candidate that does not exist after the free one."""
    found = Found()
    for folder in candidates(base):
        if not (folder / JOURNAL_FILE).is_file():
            found.free = found.free or folder
            if not folder.exists():
                break
            continue
        try:
            info = read_info(folder)
        except (FmscopeError, KeyError, TypeError, ValueError) as error:
            found.unreadable[folder] = str(error)
            continue
        if info.image.sha256 != image.sha256:
            found.other_image.append(info)
        elif not info.made_with(model):
            found.other_weights.append(info)
        elif found.resumable is None or info.last > found.resumable.last:
            found.resumable = info
    return found
