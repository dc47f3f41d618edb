"""Expression: single-cell and spatial omics with scGPT-family models (engine; no UI imports)."""
