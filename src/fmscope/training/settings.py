"""Segmenter training settings (no heavy imports, so the CLI can show the defaults quickly)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainSettings:
    """How to train; the defaults are the ones measured in benchmarks/finetune.py."""

    epochs: int = 8
    holdout: float = 0.2  # fraction of images (or, for one image, of its objects) held out for validation
    lr: float = 1e-4
    weight_decay: float = 0.01
    seed: int = 0
    batch: int = 2  # prompts per optimiser step, all from one view (on CPU, larger batches cost more per prompt)
    max_prompts: int = 16  # objects drawn per view per epoch (a CPU step costs about 1 s per prompt)
    max_val_objects: int = 32  # held-out objects scored per image (each scored every epoch)
    jitter: float = 0.1  # box edges grow outwards by up to this fraction of the box side
    max_crops: int = 8  # ROI-zoom crops per image, for training and for validation
    patience: int = 3  # epochs without a better validation Dice before stopping
    train_encoder: str = "none"  # also train the encoder's last stage: "last-stage" (all of it) or "lora" (adapters)
    lora_rank: int = 4  # rank of the low-rank adapters (train_encoder="lora")
    lora_alpha: float = 4.0  # adapter scale alpha / rank
