"""The inference backends (fmscope.backends): OpenVINO against torch on the real LiteMedSAM weights.

``exact`` (fp32) must give the torch embedding within fp32 rounding and the same masks; ``fast`` (bf16 on
CPUs that have it, else the exact network) masks within Dice 0.99 on the sample cases. The default (``auto``)
is OpenVINO on CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmscope import samples
from fmscope.backends import resolve_backend
from fmscope.backends.openvino_model import inference_precision
from fmscope.errors import FmscopeError
from fmscope.imaging.predictor import Segmenter
from fmscope.metrics import dice


@pytest.fixture(scope="module")
def fast_segmenter() -> Segmenter:
    return Segmenter("litemedsam", device="cpu", backend="openvino", precision="fast")


def _case(name, nuclei, ct_slice, count):
    """(image, window, the first ``count`` ground-truth boxes) of a sample case."""
    image, truth = nuclei if name == "nuclei" else ct_slice
    return image, samples.get_case(name).window, list(samples.boxes_from_labels(truth).values())[:count]


def test_default_backend_is_openvino_on_cpu_and_torch_on_gpu(segmenter, monkeypatch):
    monkeypatch.delenv("FMSCOPE_BACKEND", raising=False)
    assert segmenter.backend == "openvino"
    assert resolve_backend(None, torch.device("cpu")) == "openvino"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    monkeypatch.setenv("FMSCOPE_BACKEND", "torch")
    assert resolve_backend(None, torch.device("cpu")) == "torch"
    assert resolve_backend("openvino", torch.device("cpu")) == "openvino"  # the caller's choice wins
    monkeypatch.setenv("FMSCOPE_BACKEND", "onnx")
    with pytest.raises(FmscopeError, match="Unknown FMSCOPE_BACKEND 'onnx'"):
        resolve_backend(None, torch.device("cpu"))
    with pytest.raises(FmscopeError, match="runs on the CPU"):
        resolve_backend("openvino", torch.device("cuda"))


def test_embedding_cache_key_names_backend_and_precision(segmenter, torch_segmenter, fast_segmenter, nuclei):
    keys = []
    for each in (segmenter, torch_segmenter, fast_segmenter):
        each.set_image(nuclei[0])
        keys.append((each._signature(None)["backend"], each._signature(None)["precision"]))
    assert keys == [("openvino", "fp32"), ("torch", "fp32"), ("openvino", "fast")]


def test_openvino_threads_are_not_pinned(segmenter):
    """Pinned threads wait on a core another program keeps busy (2x slower encoder passes measured; runtime_config)."""
    for network in (segmenter.encoder.network, segmenter.decoder.network):
        compiled, _ = network.compiled(1)
        assert compiled.get_property("ENABLE_CPU_PINNING") is False


@pytest.mark.slow
@pytest.mark.parametrize("case", ["nuclei", "ct_lung_slice"])
def test_exact_openvino_equals_torch(case, segmenter, torch_segmenter, nuclei, ct_slice):
    """fp32 OpenVINO: embedding within fp32 rounding of torch's (measured max 3.2e-6 on nuclei), same masks."""
    image, window, boxes = _case(case, nuclei, ct_slice, 20)
    results = []
    for each in (segmenter, torch_segmenter):
        each.set_image(image, window=window)
        results.append((each.embed().embedding, each.predict_many(boxes, roi_zoom=False)))
    (ov_embedding, ov_masks), (torch_embedding, torch_masks) = results
    assert np.abs(ov_embedding - torch_embedding).max() <= 1e-4
    scores = [dice(a.mask, b.mask) for a, b in zip(ov_masks, torch_masks)]
    assert min(scores) >= 0.999, min(scores)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["nuclei", "ct_lung_slice"])
def test_fast_openvino_close_to_torch(case, fast_segmenter, torch_segmenter, nuclei, ct_slice):
    """bf16 OpenVINO (where the CPU has bf16; else f16, else the exact f32 network): mean Dice >= 0.99 against torch
    fp32, with the default ROI zoom (small nuclei get their crop). Measured on 20 nuclei with bf16: 0.994 mean, 0.968
    min (torch's own bf16 path: 0.997 / 0.989); without zoom, on all 125 nuclei at 256 px: 0.990 (torch bf16 0.992).
    On an AVX2-only CPU, where ``fast`` had 8-bit weights until 2026-12-07: nuclei 0.986 mean / 0.971 min."""
    image, window, boxes = _case(case, nuclei, ct_slice, 10)
    masks = []
    for each in (fast_segmenter, torch_segmenter):
        each.set_image(image, window=window)
        masks.append(each.predict_many(boxes))
    scores = [dice(a.mask, b.mask) for a, b in zip(*masks)]
    assert np.mean(scores) >= 0.99 and min(scores) >= 0.95, (np.mean(scores), min(scores))
    if inference_precision("fast") == "f32":  # no bf16 / fp16 on this CPU: fast is the exact network
        assert min(scores) >= 0.999, scores


def _prompts(net, crop_side: int = 256) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(sparse, dense, multimask) for 3 boxes, 2 positive+negative point pairs and one single point (multimask)."""
    boxes = torch.tensor([[[10.0, 20, 100, 120]], [[50, 60, 70, 90]], [[0, 0, crop_side - 1, crop_side - 1]]])
    points = (torch.tensor([[[40.0, 50], [90, 90]], [[120, 30], [10, 200]]]), torch.tensor([[1, 0], [1, 0]]))
    single = (torch.tensor([[[128.0, 128]]]), torch.tensor([[1]]))
    with torch.inference_mode():
        return [
            (*net.prompt_encoder(points=None, boxes=boxes, masks=None), False),
            (*net.prompt_encoder(points=points, boxes=None, masks=None), False),
            (*net.prompt_encoder(points=single, boxes=None, masks=None), True),
        ]


def test_openvino_mask_decoder_equals_torch(segmenter, torch_segmenter, nuclei):
    """The mask decoder converted to OpenVINO (fp32): logits within fp32 rounding of segment-anything's, the
    same masks and IoU estimates, for boxes, point pairs and a single point (three masks), batch 1 to 3."""
    assert (segmenter.decoder.backend, torch_segmenter.decoder.backend) == ("openvino", "torch")
    segmenter.set_image(nuclei[0])
    embedding = torch.from_numpy(segmenter.embed().embedding)[None]
    for sparse, dense, multimask in _prompts(segmenter.model.net):
        ov_masks, ov_scores = segmenter.decoder(embedding, sparse, dense, multimask, 2)
        torch_masks, torch_scores = torch_segmenter.decoder(embedding, sparse, dense, multimask, 2)
        assert ov_masks.shape == torch_masks.shape == (len(sparse), 3 if multimask else 1, 256, 256)
        assert torch.equal(ov_masks > 0, torch_masks > 0)
        assert (ov_masks - torch_masks).abs().max() <= 1e-3 and (ov_scores - torch_scores).abs().max() <= 1e-4


def test_fast_keeps_f32_weights_and_int8_only_when_asked_for():
    """8-bit weights were no faster than f32 on an AVX2 CPU and less exact (weight_format), so ``fast`` never
    compresses; ``int8`` (benchmarks) does."""
    from fmscope.backends.openvino_model import weight_format

    assert weight_format("fast") == weight_format("fp32") == "f32" and weight_format("int8") == "int8"


def test_torch_fast_is_fp32_where_the_cpu_has_no_bfloat16(torch_segmenter, nuclei):
    """torch emulates bfloat16 on an AVX2 CPU (0.2x fp32, benchmarks/backends.py): ``fast`` is fp32 there, the
    same embedding as ``fp32``; where oneDNN has bf16 kernels it differs (bf16 rounding)."""
    from fmscope.backends.image_encoder import torch_runs_bfloat16

    fast = Segmenter("litemedsam", device="cpu", backend="torch", precision="fast")
    embeddings = []
    for each in (fast, torch_segmenter):
        each.set_image(nuclei[0])
        embeddings.append(each.embed().embedding)
    assert fast.encoder.bfloat16 == torch_runs_bfloat16(torch.device("cpu"))
    assert np.array_equal(*embeddings) != fast.encoder.bfloat16


@pytest.mark.slow
def test_int8_weights_close_to_torch(torch_segmenter, nuclei):
    """The encoder with int8 weights (f32 activations; what ``fast`` was on CPUs without bf16 / fp16), asked for:
    masks of 6 nuclei with the default ROI zoom against torch fp32. Measured: mean Dice 0.957 on 10 nuclei at the
    whole-image scale (no zoom: 3-10 px nuclei in model space), so the zoom is what keeps it usable."""
    from fmscope.backends.openvino_model import OpenVINOModule

    int8 = Segmenter("litemedsam", device="cpu", backend="openvino")
    network = int8.encoder.network
    int8.encoder.network = OpenVINOModule(network.module, network.input_shape, network.identity, "int8")
    int8.precision = "int8"  # the embedding cache's key
    assert (int8.encoder.network.hint, int8.encoder.network.weights) == ("f32", "int8")
    image, window, boxes = _case("nuclei", nuclei, None, 6)
    masks = []
    for each in (int8, torch_segmenter):
        each.set_image(image, window=window)
        masks.append(each.predict_many(boxes))
    scores = [dice(a.mask, b.mask) for a, b in zip(*masks)]
    assert np.mean(scores) >= 0.98, scores
