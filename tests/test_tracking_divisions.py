"""Divisions, objects leaving the field and new objects: the geometry on label arrays (no model), then the
default tracker (real LiteMedSAM weights) on small synthetic time-lapses, and the ground-truth lineage."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from fmscope.cli import main
from fmscope.errors import FmscopeError
from fmscope.imaging.predictor import Segmenter
from fmscope.imaging.tracking import TrackingSession, open_frames
from fmscope.imaging.tracking.divisions import (
    dark_level,
    daughter_regions,
    other_half,
    pair_parts,
    septum_cut,
    sibling_of,
    split_parts,
    uncovered_regions,
)
from fmscope.imaging.tracking.lineage_truth import lineage_from_masks
from fmscope.imaging.tracking.litemedsam import LiteMedSAMTracker


def disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def movie(objects_per_frame, shape=(64, 64)) -> np.ndarray:
    """uint8 (T, H, W): nucleus-like discs (cy, cx, r: 200 inside, a 3 px soft rim) on a textured background
    near 40 (LiteMedSAM bridges sharp synthetic discs next to each other into one object; soft rims it does not)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frames = []
    for objects in objects_per_frame:
        frame = 40 + rng.integers(0, 20, shape).astype(float)
        for cy, cx, r in objects:
            frame += 160 * np.clip((r + 1.5 - np.hypot(yy - cy, xx - cx)) / 3, 0, 1)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames)


# a nucleus (r 9) on frames 0-1 divides into two daughters (r 6) 20 px apart on frames 2-4
DIVIDING = [[(32, 30, 9)]] * 2 + [[(32, 28, 6), (32, 48, 6)]] * 3
# a nucleus (r 10) whose daughters (r 6) lie 24 px apart on either side of where it was, a dark gap between them:
# the box from the parent's mask holds no object the stop rule keeps, so the tracker loses the parent there
APART = [[(32, 32, 10)]] * 2 + [[(32, 20, 6), (32, 44, 6)]] * 3


# -- geometry, no model ------------------------------------------------------------------------
def test_split_parts_needs_two_plausible_parts_and_keeps_every_pixel():
    shape = (40, 40)
    two = disc(shape, 20, 10, 5) | disc(shape, 20, 30, 5)
    fragment = np.zeros(shape, bool)
    fragment[20, 17] = True  # one stray pixel, nearer the left part
    parts = split_parts(two | fragment, before_area=int(two.sum()))
    assert parts is not None and parts[0].sum() + parts[1].sum() == (two | fragment).sum()
    left = parts[0] if parts[0][20, 10] else parts[1]
    assert left[20, 17] and left.sum() == disc(shape, 20, 10, 5).sum() + 1
    assert split_parts(disc(shape, 20, 20, 8), 200) is None  # one part
    crumb = disc(shape, 20, 10, 8) | disc(shape, 20, 30, 1)
    assert split_parts(crumb, int(crumb.sum())) is None  # the second part is not a daughter's size
    a, b = disc(shape, 20, 10, 5), disc(shape, 20, 30, 5)
    moved = (disc(shape, 20, 31, 5), disc(shape, 20, 9, 5))
    assert pair_parts((a, b), moved)[0] is moved[1]


def test_sibling_is_next_to_an_object_that_shrank():
    shape = (60, 60)
    before = {1: disc(shape, 30, 30, 10), 2: disc(shape, 10, 50, 6)}
    now = {1: disc(shape, 30, 24, 6), 2: disc(shape, 10, 50, 6)}
    sibling = disc(shape, 30, 38, 6)
    assert sibling_of(sibling, now, before) == 1
    assert sibling_of(disc(shape, 55, 5, 3), now, before) is None  # far from every object
    assert sibling_of(sibling, {1: before[1]}, before) is None  # object 1 did not shrink
    neighbours = disc(shape, 30, 44, 12)  # untracked neighbours touching it: twice the kept daughter and more
    crumb = disc(shape, 30, 37, 3)  # not a daughter's size
    assert sibling_of(neighbours, now, before) == sibling_of(crumb, now, before) == 1
    halves = {1: True, 2: False}.get  # object 1 divides into two halves (a rod): its sibling must be the other one
    assert sibling_of(sibling, now, before, halves) == 1
    assert sibling_of(neighbours, now, before, halves) is sibling_of(crumb, now, before, halves) is None


def test_other_half_of_a_rod_lies_end_to_end_in_line_with_it():
    """A followed half of a rod (30 x 10 px, horizontal): a region of comparable size 4 px beyond its end, in line,
    is its other half; the same region side by side (a neighbour in the colony, 3 px below), one a quarter its size,
    or one 20 px beyond its end is not."""

    def bar(y0: int, x0: int, height: int, width: int) -> np.ndarray:
        mask = np.zeros((60, 100), bool)
        mask[y0 : y0 + height, x0 : x0 + width] = True
        return mask

    kept = bar(20, 10, 10, 30)
    assert other_half(bar(20, 44, 10, 26), kept)
    assert not other_half(bar(33, 10, 10, 30), kept)  # side by side
    assert not other_half(bar(22, 44, 5, 15), kept)  # 75 px: not a half's size
    assert not other_half(bar(20, 60, 10, 26), kept)  # too far


def test_daughter_regions_are_two_comparable_parts_where_the_object_was():
    """Two discs (r 6) either side of where a disc (r 10, 317 px) was expected: found, larger first, whole; not
    when one part is a crumb, when the pair lies off to one side, when one is tracked already, or for one disc."""
    shape = (64, 64)
    expected = disc(shape, 32, 32, 10)
    search = (10, 6, 54, 58)  # y0, x0, y1, x1
    none = np.zeros(shape, bool)
    frame = movie([[(32, 20, 6), (32, 44, 7)]])[0]
    a, b = daughter_regions(frame, expected, search, none, bright=True)
    assert a.sum() > b.sum() and a[32, 44] and b[32, 20] and not (a & b).any()
    assert (b == disc(shape, 32, 20, 7)).mean() > 0.99  # the whole disc with its soft rim
    assert daughter_regions(frame, expected, search, disc(shape, 32, 44, 9), bright=True) is None  # one is tracked
    crumb = movie([[(32, 20, 2), (32, 44, 7)]])[0]
    assert daughter_regions(crumb, expected, search, none, bright=True) is None
    aside = movie([[(15, 40, 6), (15, 54, 6)]])[0]  # common centroid 18 px from the expected one (reach 10 px)
    assert daughter_regions(aside, expected, search, none, bright=True) is None
    assert daughter_regions(movie([[(32, 32, 10)]])[0], expected, search, none, bright=True) is None
    dark = 255 - frame  # dark objects on a bright background: the same parts
    assert (daughter_regions(dark, expected, search, none, bright=False)[1] == b).all()


def test_uncovered_regions_are_bright_and_untracked():
    frame = movie([[(20, 20, 6), (40, 44, 6), (50, 10, 1)]])[0]
    covered = disc(frame.shape, 20, 20, 8)
    regions = uncovered_regions(frame, covered, min_area=20)
    assert len(regions) == 1 and (regions[0] == disc(frame.shape, 40, 44, 7)).mean() > 0.99


def test_uncovered_regions_of_dark_touching_cells():
    """Phase contrast: dark rods (40) on a bright background (200) with bright halos (250) around the colony, two
    rods side by side, one tracked. Otsu's threshold splits the halos from the background, so the level is
    :func:`dark_level`; the rods touch, so the tracked one (grown by ``apart``) is cut out before the untracked one
    stands alone."""
    rng = np.random.default_rng(0)
    frame = 200 + rng.integers(-8, 8, (80, 80)).astype(float)
    frame[10:70, 10:50] = 250  # halo
    frame[20:60, 20:30] = frame[20:60, 30:40] = 40  # two rods, side by side
    tracked_rod = np.zeros(frame.shape, bool)
    tracked_rod[20:60, 20:30] = True
    assert dark_level(200.0, 200.0) is None and dark_level(40.0, 200.0) == 120.0
    halo = uncovered_regions(frame, tracked_rod, min_area=100)  # as for bright objects: the halo, not the rod
    assert len(halo) == 1 and halo[0][15, 15] and not halo[0][20:60, 30:40].any()
    assert uncovered_regions(frame, tracked_rod, 100, bright=False, level=120.0) == []  # one region, half covered
    regions = uncovered_regions(frame, tracked_rod, 100, bright=False, level=120.0, apart=2)
    assert len(regions) == 1 and regions[0][22:58, 33:39].all() and not regions[0][:, :30].any()


def test_septum_cut_parts_a_rod_at_a_light_middle_only():
    """A dark rod (40 x 10 px, grey 40 on 200) as one mask: with a band of grey 150 (4 px) across its middle (at least
    halfway towards the background) it falls into its two halves, every pixel kept; a band of 100, a light end or
    no band leave it whole."""
    frame = np.full((30, 60), 200.0)
    rod = np.zeros(frame.shape, bool)
    rod[10:20, 10:50] = True
    frame[rod] = 40

    def cut_with(band: float, columns: slice = slice(28, 32)) -> tuple | None:
        grey = frame.copy()
        grey[10:20, columns] = band
        return split_parts(septum_cut(rod, grey, 200.0), int(rod.sum()), rod)

    halves = cut_with(150.0)
    assert halves is not None and halves[0].sum() + halves[1].sum() == rod.sum()
    assert min(int(h.sum()) for h in halves) >= 180  # 400 px, the cut near the middle
    assert cut_with(100.0) is None and cut_with(150.0, slice(10, 14)) is None and cut_with(40.0) is None


def test_ground_truth_lineage_from_unlinked_instance_masks():
    """Ids shuffled per frame: a dividing object (frames 0-1, daughters 2-3), an object moving 12 px a frame
    (no overlap: linked by distance), an object entering on frame 2, and a neighbour merged into an object
    for one frame by the segmentation (its split is not a division: one part is nearly the whole)."""
    shape = (64, 96)
    frames = []
    for t in range(4):
        objects = [disc(shape, 15, 15, 7)] if t < 2 else [disc(shape, 15, 9, 5), disc(shape, 15, 22, 5)]
        objects.append(disc(shape, 45, 10 + 12 * t, 4))
        if t >= 2:
            objects.append(disc(shape, 50, 85, 5))
        big = disc(shape, 20, 70, 8)
        objects += [big | disc(shape, 20, 82, 3)] if t == 1 else [big, disc(shape, 20, 82, 3)]
        frame = np.zeros(shape, np.uint16)
        for k, mask in zip(np.random.default_rng(t).permutation(len(objects)) + 10, objects):
            frame[mask] = k
        frames.append(frame)
    tracks, parents = lineage_from_masks(np.stack(frames))
    at = {
        name: [int(tracks[t][y, x]) for t in range(4)]
        for name, (y, x) in {"parent": (15, 15), "mover": (45, 10), "big": (20, 70), "small": (20, 82)}.items()
    }
    left, right = int(tracks[2][15, 9]), int(tracks[2][15, 22])
    assert parents == {left: at["parent"][0], right: at["parent"][0]}
    assert at["parent"][:2] == [at["parent"][0]] * 2 and len({left, right, at["parent"][0]}) == 3
    assert [int(tracks[t][45, 10 + 12 * t]) for t in range(4)] == [at["mover"][0]] * 4
    assert len(set(at["big"])) == 1  # the merge did not end the big object's track
    assert int(tracks[3][50, 85]) == int(tracks[2][50, 85]) not in parents


# -- the default tracker (real LiteMedSAM) -----------------------------------------------------
@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter("litemedsam", device="cpu", precision="fast")


def session_for(frames, segmenter, **options) -> TrackingSession:
    source = open_frames(frames)
    return TrackingSession(source, backend=LiteMedSAMTracker(source, segmenter=segmenter), **options)


def tracked(frames, segmenter, box, **options) -> TrackingSession:
    """A session that tracked object 1 from ``box`` on frame 0 forward through ``frames``."""
    session = session_for(frames, segmenter, **options)
    session.add_box(0, 1, box)
    list(session.propagate("forward"))
    return session


@pytest.mark.slow  # LiteMedSAM on every frame: 30-40 s on this 2-core machine under load
def test_a_dividing_object_ends_and_its_daughters_begin_and_the_division_can_be_undone(segmenter):
    frames = movie(DIVIDING)
    session = tracked(frames, segmenter, [20, 22, 40, 42], divisions=True)
    assert session.lineage.parents == {2: 1, 3: 1}
    assert sorted(session.object_frames(1)) == [0, 1]
    labels = session.labels()
    for daughter in (2, 3):
        assert sorted(session.object_frames(daughter)) == [2, 3, 4]
    left = int(labels[2][32, 28])
    assert left in (2, 3) and all(int(labels[t][32, 28]) == left for t in (2, 3, 4))
    assert {int(labels[t][32, 48]) for t in (2, 3, 4)} == {5 - left}  # each daughter keeps its side
    assert session.remove_division(1) == [2, 3, 4]
    assert session.lineage.parents == {} and sorted(session.object_frames(1)) == [0, 1, 2, 3, 4]
    assert np.array_equal(session.labels() > 0, labels > 0)  # undone: the same pixels, one object
    with pytest.raises(FmscopeError, match="no recorded division"):
        session.remove_division(1)
    alone = tracked(frames, segmenter, [20, 22, 40, 42])  # without divisions: one object throughout
    assert alone.lineage.parents == {} and set(np.unique(alone.labels())) == {0, 1}


@pytest.mark.slow  # LiteMedSAM on every frame: 4-6 s on this 2-core machine
def test_a_parent_lost_between_its_daughters_divides_on_that_frame(segmenter):
    """APART: the tracker loses the parent on frame 2 (the box from its mask holds the gap between the daughters);
    the two daughters where it was expected, each confirmed by the model, start there with it as parent, and each
    keeps its own disc on frames 2-4 (measured coverage 0.67-0.98: 0.67 for the left daughter on frame 2, whose
    model box comes from a region the search box cut). Without divisions the object is not split."""
    frames = movie(APART)
    session = tracked(frames, segmenter, [20, 20, 44, 44], divisions=True)
    assert session.lineage.parents == {2: 1, 3: 1}
    assert sorted(session.object_frames(1)) == [0, 1]
    labels = session.labels()
    left = int(labels[2][32, 20])
    assert left in (2, 3) and sorted(session.object_frames(left)) == sorted(session.object_frames(5 - left)) == [
        2,
        3,
        4,
    ]
    shape = frames.shape[1:]
    cover = [(labels[t] == d)[disc(shape, 32, x, 6)].mean() for t in (2, 3, 4) for d, x in ((left, 20), (5 - left, 44))]
    print(f"\ndaughters' discs covered on frames 2-4: {np.round(cover, 2).tolist()}")
    assert min(cover) > 0.6, cover
    alone = tracked(frames, segmenter, [20, 20, 44, 44])
    assert alone.lineage.parents == {} and set(np.unique(alone.labels())) <= {0, 1}


@pytest.mark.slow  # LiteMedSAM on every frame: 30-40 s on this 2-core machine under load
def test_objects_leaving_at_each_edge_end_when_they_are_out(segmenter):
    """A disc (r 8) moves out through each edge in turn, 8 px a frame, its centre 22, 14, 6, -2 and -10 px from
    the edge: on frame 2 it is three quarters in view, on frame 3 a cap of about 60 px, on frame 4 gone. It is
    kept on frames 0-2 on its own disc and has ended by frame 4 (nothing left there). Measured: the frame-3 cap
    is kept or not depending on the edge; with all four discs in one video (leaving at once, so the frame's
    global drift is ambiguous) the one leaving through the bottom was lost on frame 2 (a known gap)."""
    shape, steps = (64, 64), range(5)
    centres = {"top": lambda d: (d, 32), "bottom": lambda d: (63 - d, 32)}
    centres.update({"left": lambda d: (32, d), "right": lambda d: (32, 63 - d)})
    for edge, where in centres.items():
        frames = movie([[(*where(22 - 8 * t), 8)] for t in steps], shape)
        session = session_for(frames, segmenter)
        cy, cx = where(22)
        session.add_box(0, 1, [cx - 10, cy - 10, cx + 10, cy + 10])
        assert [r.frame for r in session.propagate("forward")] == list(steps)
        labels = session.labels()
        assert {0, 1, 2} <= set(session.object_frames(1)) <= {0, 1, 2, 3}, edge
        for t in (1, 2):
            assert (labels[t] == 1)[disc(shape, *where(22 - 8 * t), 8)].mean() > 0.5, (edge, t)
        assert not labels[4].any(), edge


@pytest.mark.slow  # LiteMedSAM on every frame: 30-40 s on this 2-core machine under load
def test_a_new_object_entering_starts_its_own_track(segmenter):
    """A disc stays in the middle (prompted); another enters through the right edge from frame 2 (half in view)
    and is whole from frame 3: with --detect-new it becomes object 2, without a parent."""
    shape = (64, 64)
    frames = movie([[(20, 20, 7)] + ([(44, 63 - 8 * (t - 2) + 4, 7)] if t >= 2 else []) for t in range(5)], shape)
    session = session_for(frames, segmenter, detect_new=True)
    session.add_box(0, 1, [11, 11, 29, 29])
    list(session.propagate("forward"))
    assert sorted(session.object_frames(1)) == [0, 1, 2, 3, 4]
    first = min(session.object_frames(2))
    assert first in (2, 3) and sorted(session.object_frames(2)) == list(range(first, 5))
    assert session.lineage.parents == {} and set(np.unique(session.labels())) == {0, 1, 2}
    assert (session.labels()[4] == 2)[disc(shape, 44, 63 - 16 + 4, 7)].mean() > 0.8
    with pytest.raises(FmscopeError, match="found by the default tracker"):
        TrackingSession(open_frames(frames), backend=object(), divisions=True)


@pytest.mark.slow  # LiteMedSAM on every frame: 30-40 s on this 2-core machine under load
def test_cli_writes_the_lineage_to_ctc_table_and_geff(tmp_path, capsys):
    import geff

    path = tmp_path / "dividing.tif"
    tifffile.imwrite(path, movie(DIVIDING), metadata={"axes": "TYX"})
    ctc, table, graph = tmp_path / "ctc", tmp_path / "cells.csv", tmp_path / "lineage.geff"
    argv = ["track", str(path), "--frame", "0", "--box", "20", "22", "40", "42", "--divisions", "--fast"]
    argv += ["--direction", "forward", "-o", str(tmp_path / "labels.tif"), "--ctc", str(ctc), "--table", str(table)]
    assert main([*argv, "--geff", str(graph), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "divisions: 1 (parents 1)" in out and "3 object(s) through 5 frames (1: 2 frames, 2: 3 frames, 3: 3" in out
    rows = [tuple(map(int, line.split())) for line in (ctc / "res_track.txt").read_text().splitlines()]
    assert rows == [(1, 0, 1, 0), (2, 2, 4, 1), (3, 2, 4, 1)]
    with open(table, newline="") as handle:
        parents = {(r["object"], r["parent"]) for r in csv.DictReader(handle)}
    assert parents == {("1", "0"), ("2", "1"), ("3", "1")}
    lineage, _ = geff.read(str(graph))
    assert lineage.number_of_nodes() == 8 and lineage.number_of_edges() == 7
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    assert main([*argv[:-2], "--ctc", str(tmp_path / "mine"), "-o", str(tmp_path / "again.tif")]) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "the user's" and not (tmp_path / "again.tif").exists()
