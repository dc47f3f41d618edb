"""Lineages (divisions) in the engine's exports: CTC res_track.txt with parents (traccuracy reads it), GEFF
round trip, the table's parent column and the napari Tracks graph."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from fmscope.errors import FmscopeError
from fmscope.imaging.tracking.export import ctc_tracks, write_ctc, write_geff, write_table
from fmscope.imaging.tracking.lineage import Lineage, ctc_lineage, lineage_graph, napari_graph


@pytest.fixture
def dividing() -> tuple[np.ndarray, dict[int, int]]:
    """5 frames of 12 x 12: object 1 on frames 0-1 divides into 2 and 3 (frames 2-4); object 4 has a gap on
    frame 2 (frames 0, 1, 3, 4)."""
    labels = np.zeros((5, 12, 12), np.uint16)
    labels[0:2, 2:6, 2:6] = 1
    labels[2:5, 1:3, 2:6] = 2
    labels[2:5, 5:7, 2:6] = 3
    labels[[0, 1, 3, 4], 9:11, 9:11] = 4
    return labels, {2: 1, 3: 1}


def test_ctc_rows_cut_gaps_and_keep_parents(dividing):
    labels, parents = dividing
    masks, rows = ctc_lineage(labels, parents)
    assert rows == [(1, 0, 1, 0), (2, 2, 4, 1), (3, 2, 4, 1), (4, 0, 1, 0), (5, 3, 4, 4)]
    assert np.array_equal(masks[3:] == 5, labels[3:] == 4) and not (masks == 4)[3:].any()
    assert np.array_equal(masks[:3], labels[:3])
    late = {**parents, 4: 1}  # object 1 ends on frame 1, object 4 begins on frame 0: not a parent
    with pytest.raises(FmscopeError, match="still present on frame 1 while 4 begins on frame 0"):
        ctc_lineage(labels, late)


@pytest.mark.slow  # importing traccuracy compiles its numba matchers: about 6 s of CPU
def test_ctc_folder_is_read_by_traccuracy_with_its_division(dividing, tmp_path):
    from traccuracy.loaders import load_ctc_data

    labels, parents = dividing
    folder = tmp_path / "ctc"
    assert write_ctc(labels, folder, parents) == 5
    assert sorted(p.name for p in folder.iterdir()) == [f"mask{i:03d}.tif" for i in range(5)] + ["res_track.txt"]
    rows = [tuple(map(int, line.split())) for line in (folder / "res_track.txt").read_text().splitlines()]
    assert rows == ctc_tracks(labels, parents)
    ends = {label: end for label, _, end, _ in rows}
    assert all(ends[parent] < begin for _, begin, _, parent in rows if parent)  # the CTC's rule
    graph = load_ctc_data(str(folder), run_checks=True).graph  # traccuracy's own format checks pass
    assert set(graph.successors("1_1")) == {"2_2", "3_2"}  # the division: parent's last to each daughter's first
    assert set(graph.successors("4_1")) == {"5_3"}  # the gap, closed by a parent link
    assert tifffile.imread(folder / "mask003.tif").dtype == np.uint16


def test_geff_round_trip(dividing, tmp_path):
    import geff

    labels, parents = dividing
    path = tmp_path / "lineage.geff"
    assert write_geff(labels, path, parents) == 12
    graph, metadata = geff.read(str(path))
    assert [axis.name for axis in metadata.axes] == ["t", "y", "x"]
    ours = lineage_graph(labels, parents)
    assert sorted(graph.edges) == sorted(ours.edges) and len(graph.edges) == 10
    assert {n: graph.nodes[n] for n in graph.nodes} == {n: ours.nodes[n] for n in ours.nodes}
    last_of_1 = max((d["t"], n) for n, d in graph.nodes(data=True) if d["seg_id"] == 1)[1]
    assert sorted(graph.nodes[n]["seg_id"] for n in graph.successors(last_of_1)) == [2, 3]
    assert graph.nodes[last_of_1] == {"t": 1, "y": 3.5, "x": 3.5, "seg_id": 1, "area": 16}


def test_table_parent_column_and_napari_graph(dividing, tmp_path):
    labels, parents = dividing
    write_table(labels, tmp_path / "t.csv", parents=parents)
    with open(tmp_path / "t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["object"], r["parent"]) for r in rows} == {("1", "0"), ("2", "1"), ("3", "1"), ("4", "0")}
    assert napari_graph(parents, [1, 2, 3, 4]) == {2: [1], 3: [1]}
    assert napari_graph(parents, [2, 3]) == {}  # a parent not drawn: no link to it


def test_lineage_refuses_cycles_and_a_third_daughter():
    lineage = Lineage({2: 1, 3: 1})
    assert lineage.daughters(1) == [2, 3] and lineage.parent(2) == 1 and lineage.parent(1) == 0
    with pytest.raises(FmscopeError, match="already has two daughters"):
        lineage.link(4, 1)
    with pytest.raises(FmscopeError, match="descends from"):
        lineage.link(1, 2)
    lineage.link(5, 2)
    lineage.remove(2)
    assert lineage.parents == {3: 1}
    assert lineage.unlink(3) == 1 and lineage.parents == {}
