"""scGPT embedding throughput: fmscope vs the official ``scgpt`` package, same weights, same cells, one process.

The official package is not a dependency of fmscope (it imports torchtext and, optionally,
flash-attn), so this runs where ``scgpt==0.2.4`` is importable, e.g. a throwaway folder on
PYTHONPATH holding the package and stand-ins for the imports it cannot satisfy here:
``PYTHONPATH=THROWAWAY .venv/bin/python benchmarks/omics_reference.py [--checkpoint DIR] [--cells N]``.
Without ``--checkpoint`` it builds a whole-human-size scGPT (512 dims, 12 layers, 8 heads, d_hid
512) with random weights in the official layout. Cells: the semi-synthetic tissue (real PBMC
profiles, 765 genes). Both run on CPU with the same threads; the official path is its
``get_batch_cell_embeddings`` (DataLoader workers, binning, ``_encode``), fmscope's is
``scgpt_embedding``. Outputs are compared per cell (cosine): the official binning breaks ties at
random, fmscope's does not, so cells with tied values differ slightly.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fmscope.omics.embed import scgpt_embedding
from fmscope.omics.models.scgpt import load_scgpt
from fmscope.omics.synthetic import semi_synthetic_tissue


def official_checkpoint(folder: Path, genes: list[str]) -> None:
    """A whole-human-size scGPT with random weights, saved by the official class in the release layout."""
    from scgpt.model import TransformerModel

    vocab = {"<pad>": 0, "<cls>": 1, "<eoc>": 2, **{g: i + 3 for i, g in enumerate(genes)}}
    args = {
        "embsize": 512,
        "nheads": 8,
        "d_hid": 512,
        "nlayers": 12,
        "n_layers_cls": 3,
        "dropout": 0.2,
        "pad_token": "<pad>",
        "pad_value": -2,
        "n_bins": 51,
        "input_emb_style": "continuous",
        "max_seq_len": 1200,
        "fast_transformer": False,
    }
    torch.manual_seed(0)
    model = TransformerModel(
        len(vocab),
        512,
        8,
        512,
        12,
        vocab=vocab,
        dropout=0.2,
        pad_token="<pad>",
        pad_value=-2,
        do_mvc=True,
        use_fast_transformer=False,
    )
    torch.save(model.state_dict(), folder / "best_model.pt")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "args.json").write_text(json.dumps(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, help="official scGPT checkpoint folder")
    parser.add_argument("--cells", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from scgpt.model import TransformerModel
    from scgpt.tasks.cell_emb import get_batch_cell_embeddings

    tissue = semi_synthetic_tissue(side=int(np.ceil(np.sqrt(args.cells))))[: args.cells].copy()
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or Path(folder)
        if args.checkpoint is None:
            official_checkpoint(checkpoint, list(tissue.var_names))
        model, vocab, report = load_scgpt(checkpoint)
        config = json.loads((checkpoint / "args.json").read_text())
        reference = TransformerModel(
            len(vocab),
            config["embsize"],
            config["nheads"],
            config["d_hid"],
            config["nlayers"],
            vocab=vocab,
            pad_token=config["pad_token"],
            pad_value=config["pad_value"],
            do_mvc=True,
            use_fast_transformer=False,
        )
        reference.load_state_dict(torch.load(checkpoint / "best_model.pt", weights_only=True), strict=False)
        reference.eval()
    kept = tissue[:, [g in vocab for g in tissue.var_names]].copy()
    gene_ids = np.array([vocab[g] for g in kept.var_names])
    print(
        f"{kept.n_obs} cells x {kept.n_vars} genes, {torch.get_num_threads()} threads, model "
        f"{config['embsize']} dims x {config['nlayers']} layers ({report.summary()})"
    )
    started = time.perf_counter()
    official = get_batch_cell_embeddings(
        kept,
        model=reference,
        vocab=vocab,
        max_length=1200,
        batch_size=args.batch_size,
        model_configs=config,
        gene_ids=gene_ids,
    )
    official_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ours = scgpt_embedding(kept, model, vocab, batch_size=args.batch_size)
    ours_seconds = time.perf_counter() - started
    cosine = (ours * official).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(official, axis=1)
    print(
        f"official scgpt: {kept.n_obs / official_seconds:.1f} cells/s; fmscope: {kept.n_obs / ours_seconds:.1f} "
        f"cells/s ({official_seconds / ours_seconds:.2f}x); cosine per cell mean {cosine.mean():.5f}, "
        f"min {cosine.min():.5f}"
    )


if __name__ == "__main__":
    main()
