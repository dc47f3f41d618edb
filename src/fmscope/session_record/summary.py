"""The methods summary of a session (``fmscope session info``): how the labels were made."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fmscope.session_record.action import TRAIN, Action
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
        f"image: {image.path or '(no path)'} {image.describe()}",
        f"model: {model.name}, weights sha256 {model.weights_sha256}",
        f"backend: {', '.join(backends)}; precision: {', '.join(precisions)}",
        f"intensity window: {', '.join(windows) or 'none recorded'}",
        f"actions: {len(actions)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items())) or 'none'})",
        f"objects: {len(objects)}; model prompts per object: "
        + (", ".join(f"{obj}: {n}" for obj, n in sorted(prompts.items())) or "none"),
        f"time spent: {minutes:.1f} min (pauses over {BREAK_S / 60:.0f} min left out)",
    ]
    lines += [training_line(a) for a in actions if a.kind == TRAIN]
    return "\n".join(lines)


def training_line(action: Action) -> str:
    """One training run (:mod:`fmscope.session_record.training`) for the methods summary."""
    params = action.params
    data, out, settings = params["dataset"], params["output"], params.get("settings", {})
    dice = ["n/a" if v is None else f"{v:.3f}" for v in params.get("held_out_dice", [None, None])]
    chosen = ", ".join(f"{k} {settings[k]}" for k in ("epochs", "lr", "seed", "train_encoder") if k in settings)
    return (
        f"training run: {action.model} (weights sha256 {action.weights_sha256}) fine-tuned on {len(data['images'])} "
        f"image(s) ({', '.join(data['images'])}; images and labels sha256 {data['sha256']}; "
        f"{data['objects_trained']} objects trained, {data['objects_held_out']} held out), {chosen}; "
        f"{params.get('epochs_run')} epochs in {action.duration_s / 60:.1f} min, held-out Dice {dice[0]} -> {dice[1]}; "
        f"wrote {out['path']} (file sha256 {out['file_sha256']}). Replay does not re-train: actions made with it "
        "re-run with that file, refused when it is not there with that sha256."
    )
