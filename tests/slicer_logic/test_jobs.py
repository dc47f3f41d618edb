"""The Slicer module's runs on real MRML nodes (slicer-core, real lung CT, LiteMedSAM) through the job runner it
shares with napari (fmscope.jobs.JobRunner, results delivered on the polling thread as the module's QTimer does):
progress reaches its total, and Cancel mid-way leaves the user's segment and the scene as they were."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer
from FMScopeLib import geometry, mrml_arrays
from FMScopeLib.logic import SegmentOptions
from mrml_helpers import add_volume, ijk_to_ras_from_volume

from fmscope.jobs import JobRunner


def _drain(runner: JobRunner, timeout: float = 300) -> None:
    ends = time.monotonic() + timeout
    while not runner.drained:
        assert time.monotonic() < ends, "the job did not end"
        runner.deliver()  # what the widget's QTimer (_poll) does on the GUI thread
        time.sleep(0.02)


@pytest.mark.slow  # 10-25 s on the 2-core machine: two runs over two slices
def test_cancel_leaves_the_segment_and_progress_reaches_total(scene, logic, lung):
    volume, truth, z, box = lung
    node = add_volume(scene, volume.array, ijk_to_ras_from_volume(volume))
    segmentation = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(segmentation)
    mrml_arrays.ensure_segmentation_converters()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
    mine = segmentation.GetSegmentation().AddEmptySegment("mine", "mine", [0.2, 0.8, 0.2])
    painted = np.zeros(volume.array.shape, bool)
    painted[z - 1 : z + 2, 10:40, 10:40] = True  # the user's own segment, to be overwritten by the run
    mrml_arrays.write_segment(segmentation, mine, painted, node)
    options = SegmentOptions(window="lung", slice_range=(z, z + 1), segment_id=mine)
    slice_box = geometry.SliceBox(2, z, tuple(box))

    reports, cancel_first = [], [True]

    def on_progress(job, done, total, message):
        reports.append((done, total))
        if cancel_first[0]:
            job.cancel()  # Cancel pressed as the first slice is reported

    runner = JobRunner(on_progress=on_progress)
    outcomes = []

    def submit():
        runner.submit(
            lambda job: logic.compute(node, slice_box, options, job.progress),
            key="run",
            on_done=lambda computed: outcomes.append(logic.write(segmentation, node, computed, options)),
            on_error=outcomes.append,
            on_cancelled=lambda: outcomes.append("cancelled"),
        )

    submit()
    _drain(runner)
    assert outcomes == ["cancelled"] and reports == [(1, 2)]  # stopped at its first report
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert np.array_equal(mrml_arrays.read_segment(segmentation, mine, node), painted)  # as the user left it

    cancel_first[0] = False
    reports.clear()
    submit()
    _drain(runner)
    runner.shutdown()
    assert outcomes[-1] == mine and reports[-1][0] == reports[-1][1] == 3  # key slice + the two frames tracked
    written = mrml_arrays.read_segment(segmentation, mine, node)
    assert written[z].any() and not np.array_equal(written, painted)
