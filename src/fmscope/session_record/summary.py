"""The methods summary of a session (``fmscope session info``): how the labels were made."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from fmscope.session_record.action import Action
from fmscope.session_record.identity import ImageIdentity, ModelIdentity
from fmscope.session_record.journal import Journal

# A pause longer than this between two actions counts as a break, not as time spent annotating.
BREAK_S = 600.0


def active_seconds(actions: list[Action]) -> float:
    """Time spent: from the first action's start to the last one's end, less pauses over :data:`BREAK_S`."""
    total = 0.0
    for previous, action in zip(actions, actions[1:]):
        total += min(max(action.time - previous.time, 0.0), BREAK_S)
    return total + (actions[-1].duration_s if actions else 0.0)


def methods_summary(folder: str | Path) -> str:
    """A plain-text summary of the session in ``folder``: image, model, weights sha256, backend(s), precision(s),
    intensity window(s), actions by kind, prompts per object, time spent. Raises FmscopeError for no session."""
    journal = Journal(folder)
    try:
        image = ImageIdentity.from_json(journal.meta("image"))
        model = ModelIdentity.from_json(journal.meta("model"))
        actions = [action for _, action, _ in journal.actions()]
    finally:
        journal.close()
    model_actions = [a for a in actions if a.is_model]
    backends = sorted({a.backend for a in model_actions if a.backend}) or [model.backend]
    precisions = sorted({a.precision for a in model_actions if a.precision}) or [model.precision]
    windows = sorted({f"{a.window[2]} [{a.window[0]:g}, {a.window[1]:g}]" for a in model_actions if a.window})
    kinds = Counter(a.kind for a in actions)
    prompts = Counter(a.object_id for a in model_actions if a.object_id)
    objects = {a.object_id for a in actions if a.object_id}
    minutes = active_seconds(actions) / 60
    lines = [
        f"session: {Path(folder)}",
        f"image: {image.path or '(no path)'} ({np.dtype(image.dtype).name} {' x '.join(map(str, image.shape))}, "
        f"pixels sha256 {image.sha256})",
        f"model: {model.name}, weights sha256 {model.weights_sha256}",
        f"backend: {', '.join(backends)}; precision: {', '.join(precisions)}",
        f"intensity window: {', '.join(windows) or 'none recorded'}",
        f"actions: {len(actions)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items())) or 'none'})",
        f"objects: {len(objects)}; model prompts per object: "
        + (", ".join(f"{obj}: {n}" for obj, n in sorted(prompts.items())) or "none"),
        f"time spent: {minutes:.1f} min (pauses over {BREAK_S / 60:.0f} min left out)",
    ]
    return "\n".join(lines)
