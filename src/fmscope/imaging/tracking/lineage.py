"""Lineages: which tracked object descends from which (cell divisions), as a graph.

One object id is one track: the frames where that id has pixels in a uint16 (T, H, W) label stack.
A :class:`Lineage` records each daughter's parent (``{daughter: parent}``; a parent has one or
two daughters) and is kept in the :class:`~fmscope.imaging.tracking.session.TrackingSession`. The
Cell Tracking Challenge rule holds for every link written: the parent's last frame is before the
daughter's first (:func:`ctc_lineage` refuses a link that breaks it). The views of the graph:

* :func:`ctc_lineage`: ``res_track.txt`` rows ``L B E P`` and the relabelled masks; a track with a
  gap (frames without pixels between its first and last) is cut there, the later part getting a new
  label whose parent is the earlier part (the CTC's gap convention; traccuracy refuses gaps).
* :func:`napari_graph`: the ``graph`` argument of napari's Tracks layer (``{daughter: [parent]}``).
* :func:`lineage_graph`: a networkx DiGraph with one node per (object, frame): ``t``, ``y``, ``x``
  (centroid, pixels), ``seg_id`` (the object id in the labels), ``area``; edges from each detection
  to the same object's next one and from a parent's last detection to each daughter's first. It is
  what GEFF files hold (:func:`fmscope.imaging.tracking.export.write_geff`).

No Qt.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from scipy import ndimage

from fmscope.errors import FmscopeError


class Lineage:
    """Parent links between tracked objects (ids >= 1): ``parents[daughter] = parent``."""

    def __init__(self, parents: dict[int, int] | None = None) -> None:
        self.parents: dict[int, int] = {int(k): int(v) for k, v in (parents or {}).items() if v}

    def parent(self, obj: int) -> int:
        """The parent of ``obj`` (0: none)."""
        return self.parents.get(int(obj), 0)

    def daughters(self, obj: int) -> list[int]:
        """The objects whose parent is ``obj``, by id."""
        return sorted(child for child, parent in self.parents.items() if parent == int(obj))

    def link(self, daughter: int, parent: int) -> None:
        """Record ``parent`` as the parent of ``daughter`` (replacing any earlier parent). Raises
        FmscopeError for a self link, a cycle or a third daughter."""
        daughter, parent = int(daughter), int(parent)
        ancestor = parent
        while ancestor:
            if ancestor == daughter:
                raise FmscopeError(
                    f"Object {parent} descends from object {daughter}; it cannot be its parent.",
                    "Link a daughter to an object it descends from.",
                )
            ancestor = self.parent(ancestor)
        if len([d for d in self.daughters(parent) if d != daughter]) >= 2:
            raise FmscopeError(
                f"Object {parent} already has two daughters ({self.daughters(parent)}).",
                "Remove one of its divisions first.",
            )
        self.parents[daughter] = parent

    def unlink(self, daughter: int) -> int:
        """Forget ``daughter``'s parent; returns it (0: it had none)."""
        return self.parents.pop(int(daughter), 0)

    def remove(self, obj: int) -> None:
        """Forget ``obj``: its own parent link and its daughters' links to it."""
        self.parents = {d: p for d, p in self.parents.items() if d != int(obj) and p != int(obj)}

    def copy(self) -> Lineage:
        return Lineage(self.parents)


def track_spans(labels: np.ndarray) -> dict[int, list[int]]:
    """{object: sorted frames where it has pixels} of a (T, H, W) label stack."""
    spans: dict[int, list[int]] = {}
    for index, frame in enumerate(labels):
        for obj in np.unique(frame).tolist():
            if obj:
                spans.setdefault(int(obj), []).append(index)
    return spans


def ctc_lineage(labels: np.ndarray, parents: dict[int, int]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """(labels for the CTC masks, ``L B E P`` rows sorted by label) of a (T, H, W) stack and its
    ``parents``. Gaps cut a track (see module docstring); links to objects without pixels are
    dropped. Raises FmscopeError when a parent's last frame is not before its daughter's first,
    or when the cut parts would need labels above 65535."""
    spans = track_spans(labels)
    out = labels.copy()
    next_label = max(spans, default=0) + 1
    rows: dict[int, list[int]] = {}  # label -> [B, E, P]
    last_part: dict[int, int] = {}  # object -> label of its last part
    first_part: dict[int, int] = {}
    for obj, frames in sorted(spans.items()):
        cuts = [k for k in range(1, len(frames)) if frames[k] != frames[k - 1] + 1]
        runs = [frames[a:b] for a, b in zip([0, *cuts], [*cuts, len(frames)])]
        names = [obj, *range(next_label, next_label + len(runs) - 1)]
        next_label += len(runs) - 1
        if names[-1] > 65535:
            raise FmscopeError(
                "Cutting the tracks at their gaps needs labels above 65535.", "Export fewer objects, or fill the gaps."
            )
        for k, (run, label) in enumerate(zip(runs, names)):
            rows[label] = [run[0], run[-1], names[k - 1] if k else 0]
            if k:  # a part after a gap: a new label whose parent is the part before
                part = slice(run[0], run[-1] + 1)
                out[part][labels[part] == obj] = label
        first_part[obj], last_part[obj] = names[0], names[-1]
    for daughter, parent in sorted(parents.items()):
        if daughter not in spans or parent not in spans:
            continue
        child, mother = first_part[daughter], last_part[parent]
        if rows[mother][1] >= rows[child][0]:
            raise FmscopeError(
                f"Object {parent} is recorded as the parent of object {daughter}, but it is still present on "
                f"frame {rows[mother][1]} while {daughter} begins on frame {rows[child][0]}.",
                f"End object {parent} before its daughters begin, or remove the division.",
            )
        rows[child][2] = mother
    return out, [(label, *rows[label]) for label in sorted(rows)]


def napari_graph(parents: dict[int, int], objects) -> dict[int, list[int]]:
    """napari Tracks ``graph``: ``{daughter: [parent]}`` for the links whose two ends are in ``objects``."""
    present = {int(obj) for obj in objects}
    return {d: [p] for d, p in sorted(parents.items()) if d in present and p in present}


def lineage_graph(labels: np.ndarray, parents: dict[int, int]) -> nx.DiGraph:
    """The detections and links of a (T, H, W) stack as a DiGraph (see module docstring); node ids
    are consecutive integers in (object, frame) order."""
    graph = nx.DiGraph()
    nodes: dict[int, list[int]] = {}  # object -> node ids in frame order
    detections = []
    for index, frame in enumerate(labels):
        ids = [int(i) for i in np.unique(frame) if i]
        if not ids:
            continue
        ones = np.ones(frame.shape)
        areas = ndimage.sum_labels(ones, frame, ids)
        centres = ndimage.center_of_mass(ones, frame, ids)
        detections += [(obj, index, float(cy), float(cx), int(a)) for obj, a, (cy, cx) in zip(ids, areas, centres)]
    for node, (obj, index, y, x, area) in enumerate(sorted(detections)):
        graph.add_node(node, t=index, y=y, x=x, seg_id=obj, area=area)
        nodes.setdefault(obj, []).append(node)
    for chain in nodes.values():
        graph.add_edges_from(zip(chain, chain[1:]))
    for daughter, parent in parents.items():
        if daughter in nodes and parent in nodes:
            graph.add_edge(nodes[parent][-1], nodes[daughter][0])
    return graph
