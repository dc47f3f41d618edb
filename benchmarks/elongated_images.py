"""LiteMedSAM's Dice on strips of growing aspect ratio: where fmscope's shape limit sits.

A bright bar along a noisy uint8 strip (1 px margin on the short axis, 1/8 of the length at each
end), prompted with a box 5 px longer than the bar over the whole short axis (as the issue 14
case5 reproducer does), and the same with the bar half as thick. The limit below which fmscope
refuses (short side under MIN_SHORT_SIDE_MODEL_PX model pixels) is lifted here to see the model.

    python benchmarks/elongated_images.py
"""

from __future__ import annotations

import numpy as np

from fmscope.imaging import predictor
from fmscope.metrics import dice


def strip(h: int, w: int, thickness: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    truth = np.zeros((h, w), bool)
    rows = slice(1, h - 1) if thickness == "full" else slice(h // 4, h - h // 4)
    truth[rows, w // 8 : w - w // 8] = True
    image = np.clip(rng.normal(50, 5, (h, w)) + 150 * truth, 0, 255).astype(np.uint8)
    return image, truth, [w // 8 - 5, 0, w - w // 8 + 5, h - 1]


def main() -> None:
    predictor.MIN_SHORT_SIDE_MODEL_PX = 1  # measure past the limit
    segmenter = predictor.Segmenter(device="cpu")
    rng = np.random.default_rng(1)
    print("  H x W        ratio  short side (model px)  Dice full-height bar  Dice half-height bar")
    for h in (32, 48, 64, 96, 128, 160, 200, 256, 512):
        scores = []
        for thickness in ("full", "half"):
            image, truth, box = strip(h, 2048, thickness, rng)
            segmenter.set_image(image)
            scores.append(dice(segmenter.predict(box=box).mask, truth))
        print(f"  {h:4d} x 2048  {2048 / h:5.1f}  {h * 256 / 2048:21.1f}  {scores[0]:20.3f}  {scores[1]:20.3f}")


if __name__ == "__main__":
    main()
