"""FMScope's Slicer-side library: geometry, MRML <-> array conversion, and the Logic.

Nothing here imports Qt or the Slicer application; it needs only MRML classes, which come
from Slicer itself or from the PyPI package ``slicer-core`` (used by fmscope's tests).
"""
