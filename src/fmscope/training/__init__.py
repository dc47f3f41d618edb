"""Light fine-tuning: shared checkpoint machinery and the segmentation trainer."""
