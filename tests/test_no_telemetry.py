"""OpenVINO's usage reporting stays off: no file in the user's home, no socket, in a fresh process.

The child process runs with HOME set to an empty folder and an audit hook (``sys.addaudithook``) that logs
every ``socket.*`` and ``urllib.*`` event to a file; the hook is inherited by forked children, which is
where openvino-telemetry would post its events. It imports fmscope, segments with the OpenVINO backend
(compiled from the shared model cache) and converts a small module into a fresh cache, i.e. the paths
that report by default (``import openvino`` and ``convert_model``). A deliberate socket at the end
proves the hook sees sockets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fmscope.user_cache import cache_root

CHILD = r"""
import os, sys
log = sys.argv[1]

def hook(event, args):
    if event.startswith(("socket.", "urllib.")):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {event}\n")

sys.addaudithook(hook)
import numpy as np
import torch
from fmscope.imaging.predictor import Segmenter

segmenter = Segmenter("litemedsam", device="cpu", backend="openvino", threads=1)
segmenter.set_image(np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8))
segmenter.predict(box=[20, 20, 70, 70], roi_zoom=False)
os.environ["FMSCOPE_CACHE_DIR"] = sys.argv[2]  # a fresh cache: convert_model runs
from fmscope.backends.openvino_model import OpenVINOModule, module_identity
module = torch.nn.Conv2d(3, 4, 1).eval()
network = OpenVINOModule(module, (1, 3, 8, 8), module_identity(module, "test", (1, 3, 8, 8)))
assert network(np.ones((1, 3, 8, 8), np.float32), 1).shape == (1, 4, 8, 8)
import time
time.sleep(1)  # a reporting process would have started by now
print("telemetry module:", sys.modules.get("openvino_telemetry", "never imported"))
print("events before control:", len(open(log).readlines()) if os.path.exists(log) else 0)
import socket
socket.socket().close()  # control: the hook must log this one
"""


@pytest.mark.slow
def test_openvino_writes_nothing_home_and_opens_no_socket(tmp_path):
    home, log, fresh_cache = tmp_path / "home", tmp_path / "events.log", tmp_path / "fresh_cache"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "FMSCOPE_CACHE_DIR": str(cache_root()), "FMSCOPE_BACKEND": "openvino"}
    env.pop("XDG_CACHE_HOME", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(log), str(fresh_cache)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "telemetry module: None" in done.stdout  # blocked, so OpenVINO used its no-op stub
    assert "events before control: 0" in done.stdout, log.read_text()
    assert "socket.__new__" in log.read_text()  # the control socket: the hook works
    written = [str(path.relative_to(home)) for path in Path(home).rglob("*")]
    assert written == [], written  # no ~/intel/openvino_telemetry, stats or openvino_ga_cid
    assert (fresh_cache / "openvino").is_dir()  # the conversion did run
