"""segment-anything's network modules without its package ``__init__``.

``import segment_anything`` also imports its predictor and automatic mask generator, which
import torchvision, and torchvision imports torch._dynamo: about as long as importing torch
itself, before any work, for code fmscope does not run. The network modules
(``segment_anything.modeling``: prompt encoder, mask decoder, SAM, ...) need only torch, so
fmscope loads that subpackage on its own with the standard import machinery (the installed
files, unchanged). A later ``import segment_anything`` (the SAM models' builder) reuses it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "segment_anything"
MODELING = f"{PACKAGE}.modeling"


def sam_modeling() -> ModuleType:
    """The ``segment_anything.modeling`` module (imported once; torchvision is not imported)."""
    if MODELING in sys.modules:
        return sys.modules[MODELING]
    package = importlib.util.find_spec(PACKAGE)  # finds the top-level package without running it
    if package is None or not package.submodule_search_locations:
        raise ImportError("segment-anything is not installed; reinstall fmscope (pip install -e .).")
    folder = Path(list(package.submodule_search_locations)[0]) / "modeling"
    spec = importlib.util.spec_from_file_location(
        MODELING, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODELING] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[MODELING]
        raise
    return module
