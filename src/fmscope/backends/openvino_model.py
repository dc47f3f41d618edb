"""A torch module run by OpenVINO: converted once, kept on disk, compiled once per process.

Conversion (``openvino.convert_model`` on fmscope's own torch module, traced with a fixed example
input) takes ~20 s for LiteMedSAM's TinyViT, so its result is saved as OpenVINO IR under
``<fmscope cache>/openvino/<key>/`` where ``key`` hashes the module's identity (its weights' sha256,
its class and source file, fmscope, torch and OpenVINO versions, the input shape). Compiled
networks go to ``<key>/compiled-<precision>`` (``compiled-f32``, ``compiled-bf16``) through OpenVINO's
own model cache (``CACHE_DIR``), which keys them by this CPU and the compile settings but not by the
precision hint (OpenVINO 2026.4: a bf16 network read from an f32 blob crashes the process), hence one
folder per precision. A second process reads the compiled network instead of compiling it. The IR
folder is written under a temporary name and renamed into place; OpenVINO writes its blobs itself,
and an unreadable IR or blob is rebuilt. Everything here can be deleted at any time; the folder is kept within
a size bound, least recently used entries first (:mod:`fmscope.backends.openvino_cache`).

Inputs and outputs are float32 numpy arrays. A network of one static input (an image encoder) has a batch
of one, so a batch is run item by item (fmscope's CPU encoder batch is one anyway); a network of several
inputs may leave dimensions dynamic (-1: the mask decoder's prompt count) and runs them at once (:meth:`infer`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fmscope
from fmscope.backends import openvino_cache
from fmscope.backends.telemetry import disable_openvino_telemetry
from fmscope.errors import FmscopeError
from fmscope.user_cache import cache_fix, cache_root, unwritable

PRECISIONS = ("fp32", "fast")
INT8_WEIGHTS = "int8"  # OpenVINOModule's third precision, asked for to measure it: f32 activations, int8 weights
_COMPILED: dict[tuple[str, str, int], tuple[Any, threading.Lock]] = {}
_REGISTRY_LOCK = threading.Lock()


def openvino() -> Any:
    """The ``openvino`` module, imported with its telemetry switched off (see :mod:`.telemetry`)."""
    disable_openvino_telemetry()
    import openvino as ov  # the only import of OpenVINO in fmscope

    return ov


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """This process's ``openvino.Core`` (one, shared: it holds the loaded CPU plugin)."""
    return openvino().Core()


def inference_precision(precision: str) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for fmscope's ``precision`` on this CPU.

    ``fp32`` -> ``f32`` (OpenVINO's own default on bf16 CPUs is bf16, so it is always set);
    ``fast`` -> ``bf16`` where the CPU has it (AVX512-BF16 / AMX), else ``f16`` where it has native
    fp16, else ``f32`` (the exact path is then also the fastest one).
    """
    if precision not in PRECISIONS:
        raise FmscopeError(f"Unknown precision '{precision}'.", f"Use one of: {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return "f32"
    capabilities = core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else "f16" if "FP16" in capabilities else "f32"


def runtime_config(hint: str, threads: int) -> dict[str, Any]:
    """The CPU plugin's settings for a network run at ``hint`` precision on ``threads`` threads.

    Threads are not pinned to cores (``ENABLE_CPU_PINNING`` off; OpenVINO pins them by default on Linux): on a
    CPU shared with other programs a pinned thread waits on its busy core while another core is idle: with the
    other of 2 cores busy a LiteMedSAM encoder pass took ~2x as long pinned (docs/backends.md, "Threads pinned to
    cores"; Intel's support note 000058227 reports the same for two processes pinned to one core).
    """
    return {
        "INFERENCE_PRECISION_HINT": hint,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }


def weight_format(precision: str) -> str:
    """``int8`` where the weights are compressed to 8 bits (NNCF's ``compress_weights``, per-channel asymmetric:
    only for precision ``int8``, asked for to measure it), else ``f32``.

    ``fast`` keeps f32 weights on every CPU: on one without bf16 / fp16 (an AVX2 CPU, hint ``f32``) 8-bit weights
    were no faster than f32 ones (LiteMedSAM's encoder 0.94-0.96x, 1 and 2 threads, and less exact: mean mask Dice
    0.986 against torch; ``benchmarks/backends.py --int8 --sections speed``, docs/backends.md), so ``fast`` there
    is the exact network, the fastest this CPU has.
    """
    return "int8" if precision == INT8_WEIGHTS else "f32"


def _source_sha256(module: torch.nn.Module) -> str:
    """sha256 of the file defining ``module``'s class ('' when there is none)."""
    source = sys.modules[type(module).__module__].__file__ or ""
    return hashlib.sha256(Path(source).read_bytes()).hexdigest() if source and Path(source).is_file() else ""


def module_identity(
    module: torch.nn.Module, weights_sha256: str, input_shape: Any, parts: tuple[torch.nn.Module, ...] = ()
) -> dict:
    """What determines the converted network: weights, code, versions and input shape(s) (JSON-able).

    ``parts``: modules the network runs whose classes live in other files than ``module``'s (a wrapper's
    segment-anything decoder): their source files are hashed too.
    """
    identity = {
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "code_sha256": _source_sha256(module),
        "weights_sha256": weights_sha256,
        "input_shape": json.loads(json.dumps(input_shape)),
        "fmscope": fmscope.__version__,
        "torch": torch.__version__.split("+")[0],
        "openvino": openvino().get_version(),
    }
    if parts:
        identity["parts_code_sha256"] = sorted({_source_sha256(part) for part in parts})
    return identity


class OpenVINOModule:
    """``module`` (in eval mode, on CPU) as an OpenVINO network for inputs of ``input_shape``.

    ``input_shape``: one shape (a single-input network), or a list of shapes (one per input, in ``forward``'s
    order) where -1 marks a dynamic dimension; then ``example`` (one tensor per input) is what conversion
    traces with (default: zeros of ``input_shape``). ``identity``: :func:`module_identity` (the disk cache
    key). Conversion happens on the first call that needs it, not here. ``precision``: ``fp32`` or ``fast``
    (:func:`inference_precision`), or ``int8`` (f32 activations, int8 weights, :func:`weight_format`: asked for to
    measure it; needs ``nncf``, a development dependency).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        input_shape: tuple[int, ...] | list[tuple[int, ...]],
        identity: dict,
        precision: str = "fp32",
        example: tuple[torch.Tensor, ...] | None = None,
    ) -> None:
        self.module = module
        self.input_shape = input_shape if isinstance(input_shape, list) else tuple(input_shape)
        self.example = example
        self.identity = identity
        self.hint = inference_precision("fp32" if precision == INT8_WEIGHTS else precision)
        self.weights = weight_format(precision)
        self.precision = precision
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
        self.folder = cache_root() / "openvino" / key

    @property
    def xml_path(self) -> Path:
        """The converted network (f32 weights)."""
        return self.folder / "model.xml"

    @property
    def network_path(self) -> Path:
        """The network that is compiled: :attr:`xml_path`, or its copy with int8 weights."""
        return self.xml_path if self.weights == "f32" else self.folder / "model-int8.xml"

    def __call__(self, batch: np.ndarray, threads: int) -> np.ndarray:
        """Run the network on ``batch`` (B, *input_shape[1:]) float32 with ``threads`` CPU threads."""
        compiled, lock = self.compiled(threads)
        with lock:  # an infer request runs one input at a time
            outputs = [np.array(compiled(np.ascontiguousarray(item[None], dtype=np.float32))[0]) for item in batch]
        return np.concatenate(outputs)

    def infer(self, inputs: tuple[np.ndarray, ...], threads: int) -> list[np.ndarray]:
        """All outputs of one run on ``inputs`` (float32, one array per network input), ``threads`` threads."""
        compiled, lock = self.compiled(threads)
        with lock:
            result = compiled(tuple(np.ascontiguousarray(item, dtype=np.float32) for item in inputs))
            return [np.array(result[index]) for index in range(len(compiled.outputs))]

    def compiled(self, threads: int) -> tuple[Any, threading.Lock]:
        """The network compiled for ``threads`` threads (from this process, OpenVINO's cache, or anew)."""
        entry_key = (str(self.network_path), self.hint, threads)
        with _REGISTRY_LOCK:
            if entry_key not in _COMPILED:
                try:
                    self._ensure_converted()
                except OSError as error:  # a read-only or full cache (containers without a writable home)
                    root = self.folder.parent.parent
                    raise unwritable(root, error, "the model converted for OpenVINO", cache_fix()) from None
                suffix = "" if self.weights == "f32" else f"-{self.weights}"
                config = {
                    **runtime_config(self.hint, threads),
                    "CACHE_DIR": str(self.folder / f"compiled-{self.hint}{suffix}"),
                }
                try:
                    compiled = core().compile_model(str(self.network_path), "CPU", config)
                except RuntimeError:  # an unreadable IR or cache entry (disk full, killed writer): rebuild once
                    shutil.rmtree(self.folder, ignore_errors=True)
                    self._ensure_converted()
                    compiled = core().compile_model(str(self.network_path), "CPU", config)
                _COMPILED[entry_key] = (compiled, threading.Lock())
                openvino_cache.prune(self.folder.parent, keep=self.folder)
            openvino_cache.mark_used(self.folder)  # every run: a long-lived process keeps its entries recent
            return _COMPILED[entry_key]

    def _ensure_converted(self) -> None:
        """Write the IR (model.xml / model.bin / identity.json) unless a complete copy is on disk, and its int8
        copy when :attr:`weights` asks for it."""
        if not (self.xml_path.is_file() and (self.folder / "model.bin").is_file()):
            self._convert()
        if self.weights == "int8" and not self.network_path.is_file():
            self._compress()

    def _compress(self) -> None:
        """model-int8.xml / .bin: model.xml with NNCF's 8-bit weight compression (~40 s for TinyViT, once)."""
        import nncf  # imported after openvino(): its telemetry finds openvino_telemetry absent too

        print("fmscope: compressing its weights to 8 bits, once on this machine (~1 min)", file=sys.stderr)
        logger, level = logging.getLogger("nncf"), logging.getLogger("nncf").level
        logger.setLevel(logging.WARNING)  # its table of bit widths (INFO, to stdout): not on fmscope's stdout
        try:
            with contextlib.redirect_stdout(sys.stderr):  # its progress bar
                network = nncf.compress_weights(core().read_model(str(self.xml_path)))
        finally:
            logger.setLevel(level)
        temporary = self.folder / f".tmp-{uuid.uuid4().hex}"
        try:
            temporary.mkdir()
            openvino().save_model(network, str(temporary / "model.xml"), compress_to_fp16=False)
            os.replace(temporary / "model.bin", self.network_path.with_suffix(".bin"))
            os.replace(temporary / "model.xml", self.network_path)  # last: its presence means both are complete
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    def _convert(self) -> None:
        """Convert :attr:`module` and write model.xml / model.bin / identity.json into :attr:`folder`."""
        ov = openvino()
        print(
            f"fmscope: preparing {self.identity['class'].rsplit('.', 1)[-1]} for OpenVINO, once on this machine "
            f"(20-60 s; kept in {self.folder.parent})",
            file=sys.stderr,
        )
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.folder.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            several = isinstance(self.input_shape, list)
            shapes = self.input_shape if several else [self.input_shape]
            example = self.example if self.example is not None else tuple(torch.zeros(shape) for shape in shapes)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing's notes on Python control flow: shapes are static here
                network = ov.convert_model(
                    self.module, example_input=example if several else example[0], input=[tuple(s) for s in shapes]
                )
            temporary.mkdir()
            ov.save_model(network, str(temporary / "model.xml"), compress_to_fp16=False)
            (temporary / "identity.json").write_text(json.dumps(self.identity, indent=1, sort_keys=True))
            if self.xml_path.is_file():  # another process put a complete copy in place meanwhile (it may be
                return  # compiling from it now): keep that one
            shutil.rmtree(self.folder, ignore_errors=True)  # an incomplete copy
            try:
                os.replace(temporary, self.folder)
            except OSError:  # another process renamed its copy into place first: use that one
                if not self.xml_path.is_file():
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
