"""The one progress and cancel protocol (fmscope.progress), the shared job runner (fmscope.jobs) and the CLI's
tqdm renderer, on the real LiteMedSAM and the real lung CT (three slices, so it stays fast)."""

from __future__ import annotations

import re
import threading
import time

import pytest
from cli_runner import run_cli

from fmscope import samples
from fmscope.demo import DEMO_CASES, run_demo
from fmscope.errors import Cancelled
from fmscope.imaging import io
from fmscope.imaging.volume import segment_volume
from fmscope.jobs import JobRunner
from fmscope.progress import Progress


def test_progress_renders_then_checks_and_parts_share_the_cancel():
    seen = []
    progress = Progress(lambda done, total, message: seen.append((done, total, message)))
    progress.update(1, 4, "step")
    part = progress.within("case")
    part.update(2, 4, "step: detail")
    assert seen == [(1, 4, "step"), (2, 4, "case step: detail")]
    progress.cancel()
    with pytest.raises(Cancelled):
        part.update(3, 4, "step")  # rendered first, then stopped
    assert seen[-1] == (3, 4, "case step") and part.cancelled
    event = threading.Event()
    watched = Progress(cancel=event)
    watched.check()
    event.set()
    with pytest.raises(Cancelled):
        watched.check()


def _drain(runner: JobRunner, timeout: float = 120) -> None:
    """Deliver on this (the 'UI') thread until every job has ended, as Slicer's QTimer does."""
    ends = time.monotonic() + timeout
    while not runner.drained:
        assert time.monotonic() < ends, "the runner did not finish"
        runner.deliver()
        time.sleep(0.01)


def test_runner_delivers_exactly_one_outcome_and_cancel_drops_the_result():
    runner = JobRunner()
    outcomes = []
    started = threading.Event()

    def slow(job):
        started.set()
        for step in range(1000):
            job.progress.update(step, 1000, "slow")
            time.sleep(0.01)
        return "finished"

    first = runner.submit(slow, key="k", on_done=outcomes.append, on_cancelled=lambda: outcomes.append("cancelled"))
    assert started.wait(10)
    runner.submit(lambda job: "second", key="k", on_done=outcomes.append)  # supersedes the first
    _drain(runner)
    assert outcomes == ["cancelled", "second"] and first.cancelled and first.state[0] < 999
    failing = runner.submit(lambda job: 1 / 0, on_error=lambda error: outcomes.append(type(error).__name__))
    _drain(runner)
    assert outcomes[-1] == "ZeroDivisionError" and not failing.cancelled
    runner.shutdown()


def test_volume_reports_every_slice_and_cancel_stops_it(segmenter, ct_volume):
    volume, truth = ct_volume
    z = samples.key_slice(truth)
    box = samples.boxes_from_labels(truth[z])[1]
    seen = []
    progress = Progress(lambda done, total, message: seen.append((done, total, message)))
    labels = segment_volume(
        volume.array, z, box, segmenter=segmenter, window="lung", slice_range=(z, z + 1), progress=progress
    )
    assert labels[z].any() and labels[z + 1].any() and not labels[z + 2 :].any()
    assert seen[-1][0] == seen[-1][1] == 3 and {message for *_, message in seen} == {"propagating"}  # key + 2 frames
    assert [done for done, *_ in seen] == sorted(done for done, *_ in seen)

    def cancel_after_key_slice(done, total, message):
        reports.append(done)
        if done == 1:
            stopping.cancel()

    reports = []
    stopping = Progress(cancel_after_key_slice)
    with pytest.raises(Cancelled):
        segment_volume(
            volume.array, z, box, segmenter=segmenter, window="lung", slice_range=(z, z + 1), progress=stopping
        )
    assert reports == [1]  # stopped at the first report: no slice after it was segmented


def test_cli_volume_draws_a_tqdm_bar(tmp_path):
    case = samples.get_case("ct_lung_volume")
    truth = io.read_volume(case.labels_path).array
    z = samples.key_slice(truth)
    x0, y0, x1, y1 = samples.boxes_from_labels(truth[z])[1]
    out = tmp_path / "labels.nii.gz"
    result = run_cli(
        "volume", case.image_path, "--slice", z, "--box", x0, y0, x1, y1, "--range", z, z,
        "--window", "lung", "-o", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "propagating:" in result.stderr and "slice" in result.stderr  # tqdm's bar: "propagating:  50%|#####..."
    assert re.search(r"propagating: 100%\|#+\| (\d+)/\1 ", result.stderr), result.stderr  # it reached the total
    assert out.is_file()


@pytest.mark.parametrize("case", DEMO_CASES)
def test_every_demo_case_reports_progress_before_its_long_work(case, tmp_path):
    """`fmscope demo` shows a bar for each case (issue 25): the case's first report arrives before its long work
    (the cancel at that first report stops the demo there, so this costs a model load and one step per case)."""
    seen = []

    def stop_at_first_report(done, total, message):
        seen.append((done, total, message))
        stopping.cancel()

    stopping = Progress(stop_at_first_report)
    with pytest.raises(Cancelled):
        run_demo(tmp_path, cases=(case,), progress=stopping)
    [(done, total, message)] = seen
    assert message.startswith(f"{case} ") and done < total, seen  # reported before its first unit finished
