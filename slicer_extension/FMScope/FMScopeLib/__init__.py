"""FMScope's Slicer-side library: geometry, MRML <-> array conversion, and the Logic.

Nothing here imports Qt or the Slicer application; it needs only MRML classes, which come
from Slicer itself or from the PyPI package ``slicer-core`` (used by fmscope's tests).
"""

# The module's setting *Slice range limit* (MiB), default: volumes larger than this are read by the engine slice
# range by slice range, ranges of at most this size (FMScopeLib.logic); the widget reads it without fmscope installed.
RANGE_LIMIT_MB = 512
