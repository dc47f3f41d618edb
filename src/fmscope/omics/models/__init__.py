"""Omics foundation models."""
