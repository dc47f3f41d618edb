"""Keep OpenVINO's usage reporting off: call :func:`disable_openvino_telemetry` before ``import openvino``.

What it stops (read from openvino 2026.4 / openvino-telemetry 2025.2): ``import openvino`` imports
``openvino.tools.ovc``, whose ``__init__`` builds an ``openvino_telemetry.Telemetry`` (GA4 backend) and
sends an "import" event; ``convert_model`` sends more (version, parameters, result). With no consent
file, that counts as consent: it writes ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` and forks a
process per event that posts to www.google-analytics.com. There is no environment switch except the CI
ones (``CI=true``), which would change other programs' behaviour too, and opting out
(``opt_in_out --opt_out``) writes a file in the user's home.

fmscope instead marks the module ``openvino_telemetry`` as absent (``sys.modules[name] = None``, which
makes ``import openvino_telemetry`` raise ImportError). OpenVINO then falls back to its own stub
(``openvino.tools.ovc.telemetry_stub``), whose methods do nothing: no file, no process, no socket.
This holds for the whole process, for any library that imports OpenVINO after this call.
"""

from __future__ import annotations

import sys

TELEMETRY_MODULE = "openvino_telemetry"


def disable_openvino_telemetry() -> bool:
    """Make ``openvino_telemetry`` unimportable in this process; idempotent.

    Returns False when it had already been imported (by another library, before fmscope): that
    library's events may already have gone, and this process's reporting stays as that library set it.
    """
    if sys.modules.get(TELEMETRY_MODULE, None) is not None:
        return False
    sys.modules[TELEMETRY_MODULE] = None  # type: ignore[assignment]
    return True
