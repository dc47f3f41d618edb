"""The kill test of issue 29: a napari session driven as a user, SIGKILLed at random moments, reopened each time.

``python benchmarks/session_kill.py [--runs 20] [--seed S]`` writes a (3, 160, 160) stack (a crop of the nuclei
sample, shifted 2 px per slice) as a TIFF, then, per run, starts a napari process of its own (``--drive``: a hidden
viewer, *Plugins > fmscope > Segment* as a user opens it) that goes through :data:`SCRIPT` (boxes, click refines,
propagations, undos, hand strokes) and then paints strokes until it is killed. Before the panel commits action N,
the driver saves the labels it commits as ``after-N.npy``; once committed, it prints N. The parent kills it with
SIGKILL at a random moment (after a random action, then a random delay of up to 1.5 s, so inside model actions
too), reopens the session (:func:`fmscope.session_record.resume`) and checks that its labels equal
``after-M.npy``, M being the number of actions the journal holds (the last completed one; the action in progress is
lost). Prints ``N of 20 restored``. Run 0 is not killed: it measures what recording costs (Recorder.record on the Qt
thread plus Recorder.autosave on the worker) as a fraction of the interaction's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SLICES, SIDE = 3, 160
# What the driver does, in order, then strokes until killed. An undo always follows a model result (the Segment
# panel records only undos that undid something).
SCRIPT = (
    "box 0",
    "click",
    "propagate",
    "stroke",
    "undo",
    "stroke",
    "box 1",
    "propagate",
    "click",
    "undo",
    "stroke",
    "box 2",
    "stroke",
    "propagate",
    "stroke",
) * 2
ACTIONS = 400  # a killed run: strokes go on until the kill, which lands after one of the first len(SCRIPT) + 3
MEASURED = len(SCRIPT) + 15  # run 0, not killed: the script, then 15 strokes


def stack_and_boxes() -> tuple[np.ndarray, list[list[float]]]:
    """The (3, 160, 160) uint8 stack and three nucleus boxes (x0, y0, x1, y1) on its middle slice."""
    from fmscope import samples
    from fmscope.imaging import io

    case = samples.get_case("nuclei")
    image = io.read_image(case.image_path)[96:256, 96:256]
    truth = io.read_image(case.labels_path)[96:256, 96:256]
    plane = np.round(255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    stack = np.stack([np.roll(plane, 2 * (z - 1), axis=1) for z in range(SLICES)])
    boxes = samples.boxes_from_labels(truth)
    big = sorted(boxes, key=lambda k: -np.prod(boxes[k][2:] - boxes[k][:2]))[:3]
    return stack, [[float(v) for v in boxes[k]] for k in big]


def stroke(k: int, shape: tuple[int, ...]) -> tuple:
    """The (z, rows, cols) hand stroke number k paints: a rectangle placed by a fixed generator."""
    rng = np.random.default_rng(k)
    z = int(rng.integers(0, shape[0]))
    y0, x0 = (int(v) for v in rng.integers(0, shape[1] - 4, size=2))
    h, w = (int(v) for v in rng.integers(2, 20, size=2))
    return z, slice(y0, min(y0 + h, shape[1])), slice(x0, min(x0 + w, shape[2]))


def drive(image: str, out: str, boxes: list[list[float]], actions: int = ACTIONS) -> None:
    """The napari process: the Segment panel driven through SCRIPT, then strokes up to ``actions`` in all;
    ``after-N.npy`` + N printed after each."""
    import napari
    from qtpy.QtWidgets import QApplication

    from fmscope.session_record import Recorder

    spent = {"record": 0.0, "autosave": 0.0}

    def timed(name, function):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return run

    Recorder.record = timed("record", Recorder.record)
    Recorder.autosave = timed("autosave", Recorder.autosave)
    viewer = napari.Viewer(show=False)
    viewer.open(image, plugin="napari")
    _dock, widget = viewer.window.add_plugin_dock_widget("fmscope", "Segment")
    app = QApplication.instance()

    def wait(condition, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("the Segment panel did not finish in time")
            app.processEvents()
            time.sleep(0.002)

    def recorded(n: int) -> bool:
        return widget.session.recorder is not None and widget.session.recorder.seq == n

    wait(lambda: widget.session.found is not None and widget.worker.idle)
    labels = viewer.layers["fmscope labels"]
    record = widget.session.record

    def save_then_record(action) -> None:
        """The labels the panel is about to commit, saved first: a kill between the two leaves the journal one
        action short of the copy, never the copy short of the journal."""
        recorder = widget.session.recorder
        target = Path(out) / f"after-{1 if recorder is None else recorder.seq + 1}.npy"
        with open(target.with_suffix(".tmp"), "wb") as handle:
            np.save(handle, labels.data)
        os.replace(target.with_suffix(".tmp"), target)
        record(action)

    widget.session.record = save_then_record
    started = time.perf_counter()
    for n in range(1, actions + 1):
        step = SCRIPT[n - 1] if n <= len(SCRIPT) else "stroke"
        if step.startswith("box"):
            x0, y0, x1, y1 = boxes[int(step.split()[1])]
            corners = [[1, y0, x0], [1, y0, x1], [1, y1, x1], [1, y1, x0]]
            viewer.layers["fmscope boxes"].add_rectangles(np.array(corners, float))
        elif step == "click":
            current = widget.state.current
            ys, xs = np.nonzero(labels.data[current.z] == current.label)
            viewer.layers["fmscope clicks"].add([current.z, ys.mean(), xs.mean()] if len(ys) else [1, 80, 80])
        elif step == "propagate":
            widget.propagate()
        elif step == "undo":
            widget.undo()
        else:
            z, rows, cols = stroke(n, labels.data.shape)
            ys, xs = np.mgrid[rows, cols]
            labels.data_setitem((np.full(ys.size, z), ys.ravel(), xs.ravel()), 100 + n)
        wait(lambda n=n: recorded(n))
        print(n, flush=True)
    wait(lambda: widget.worker.drained)
    total = time.perf_counter() - started
    print(f"COST {spent['record']:.4f} {spent['autosave']:.4f} {total:.4f}", flush=True)


def one_run(image: Path, pixels: np.ndarray, boxes, rng: np.random.Generator | None, work: Path) -> str:
    """Drive one session (killed when ``rng`` is given); returns 'restored', 'WRONG ...', 'not checkable' or the
    cost line of an unkilled run."""
    from fmscope.session_record import ImageIdentity, resume

    folder = image.parent / f"{image.name}.fmscope-session"
    process = subprocess.Popen(
        [sys.executable, __file__, "--drive", str(image), str(work), json.dumps(boxes)]
        + ([] if rng is not None else [str(MEASURED)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_after = None if rng is None else int(rng.integers(1, len(SCRIPT) + 4))
    last = 0
    try:
        for line in process.stdout:
            if line.startswith("COST"):
                process.wait(60)
                return line.strip()
            last = int(line)
            if kill_after is not None and last >= kill_after:
                break
        if kill_after is None:
            raise RuntimeError(f"the driver stopped: {process.stderr.read()[-2000:]}")
        time.sleep(float(rng.uniform(0, 1.5)))  # somewhere inside a later action, a model action too
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()
    if process.returncode != -signal.SIGKILL:
        return f"WRONG: the driver ended by itself ({process.returncode}): {process.stderr.read()[-1000:]}"
    resumed = resume(folder, ImageIdentity.of(pixels, image), None)
    resumed.recorder.close()
    count = len(resumed.actions)
    expected = work / f"after-{count}.npy"
    if count < last:
        return f"WRONG: {count} actions resumed, {last} were completed"
    if not expected.exists():
        return f"WRONG: action {count} is in the journal, the panel never committed it"
    if not np.array_equal(resumed.labels, np.load(expected)):
        return f"WRONG: the labels differ from those after action {count}"
    return f"restored (killed after action {last}; {count} actions resumed, last '{resumed.actions[-1].kind}')"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--drive", nargs="+", metavar="IMAGE OUT BOXES [ACTIONS]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(args.drive[0], args.drive[1], json.loads(args.drive[2]), *(int(n) for n in args.drive[3:]))
        return
    import tifffile

    stack, boxes = stack_and_boxes()
    rng = np.random.default_rng(args.seed)
    restored = 0
    with tempfile.TemporaryDirectory() as root:
        for run in range(args.runs + 1):
            work = Path(root) / f"run-{run}"
            work.mkdir()
            image = work / "stack.tif"
            tifffile.imwrite(image, stack, photometric="minisblack")
            outcome = one_run(image, stack, boxes, None if run == 0 else rng, work)
            if run == 0:
                record_s, autosave_s, total_s = (float(v) for v in outcome.split()[1:])
                print(
                    f"run 0 (not killed, {MEASURED} actions): recording cost {record_s + autosave_s:.3f} s "
                    f"(record {record_s:.3f} s on the Qt thread, autosave {autosave_s:.3f} s on the worker) of "
                    f"{total_s:.1f} s of interaction: {100 * (record_s + autosave_s) / total_s:.2f} %",
                    flush=True,
                )
                continue
            print(f"run {run}: {outcome}", flush=True)
            restored += outcome.startswith("restored")
    print(f"{restored} of {args.runs} restored")


if __name__ == "__main__":
    main()
