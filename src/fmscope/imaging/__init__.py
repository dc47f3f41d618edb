"""Pixels: promptable segmentation of 2D images and 3D volumes with MedSAM-family models."""
