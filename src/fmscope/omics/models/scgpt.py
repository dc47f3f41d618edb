"""scGPT-compatible transformer in plain PyTorch, and the official checkpoint-folder loader.

Written for fmscope from the scGPT paper (Cui et al., Nature Methods 2024) and the layout of
the official checkpoints (folder with ``args.json``, ``vocab.json``, ``best_model.pt``);
parameter names follow the official ``scgpt.model.TransformerModel`` so checkpoints load
with strict matching. Attention is ``scaled_dot_product_attention`` (no flash-attn); the
flash-attn layout (``self_attn.Wqkv.*``) is renamed to the torch one (``in_proj_*``), which
packs q, k, v in the same order. Post-norm layers with ReLU, continuous value encoder
(values clipped at 512), cell embedding = output at the ``<cls>`` position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fmscope.checkpoints import first_keys, read_state_dict
from fmscope.errors import FmscopeError

FLASH_RENAMES = {"self_attn.Wqkv.weight": "self_attn.in_proj_weight", "self_attn.Wqkv.bias": "self_attn.in_proj_bias"}
# Keys some official versions save for heads fmscope does not build; they are reported, never silently dropped.
OPTIONAL_PREFIXES = ("flag_encoder.", "grad_reverse_discriminator.", "dsbn.", "batch_encoder.")


@dataclass(frozen=True)
class ScGPTConfig:
    """The architecture fields of an official ``args.json``."""

    n_tokens: int
    d_model: int = 512
    n_heads: int = 8
    d_hid: int = 512
    n_layers: int = 12
    n_layers_cls: int = 3
    pad_token: str = "<pad>"
    pad_value: float = -2.0
    n_bins: int = 51
    max_seq_len: int = 1200
    fast_transformer: bool = True

    @classmethod
    def from_args(cls, args: dict, n_tokens: int) -> "ScGPTConfig":
        style = args.get("input_emb_style", "continuous")
        if style != "continuous":
            raise FmscopeError(f"input_emb_style '{style}' is not supported.",
                               "Use a checkpoint trained with continuous value embeddings (the released models).")
        return cls(n_tokens=n_tokens, d_model=args["embsize"], n_heads=args["nheads"], d_hid=args["d_hid"],
                   n_layers=args["nlayers"], n_layers_cls=args.get("n_layers_cls", 3),
                   pad_token=args.get("pad_token", "<pad>"), pad_value=float(args.get("pad_value", -2)),
                   n_bins=args.get("n_bins", 51), max_seq_len=args.get("max_seq_len", 1200),
                   fast_transformer=bool(args.get("fast_transformer", True)))


class GeneEncoder(nn.Module):
    def __init__(self, n_tokens: int, d_model: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, d_model)
        self.enc_norm = nn.LayerNorm(d_model)

    def forward(self, genes: torch.Tensor) -> torch.Tensor:
        return self.enc_norm(self.embedding(genes))


class ContinuousValueEncoder(nn.Module):
    """Scalar expression value -> vector: linear, ReLU, linear, layer norm (values clipped at 512)."""

    def __init__(self, d_model: int, max_value: float = 512.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(1, d_model)
        self.linear2 = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.max_value = max_value

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(values.unsqueeze(-1), max=self.max_value)
        return self.norm(self.linear2(F.relu(self.linear1(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with torch's packed in-projection names."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(b, n, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if padding is None else ~padding[:, None, None, :]  # True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer (attention, ReLU feed-forward), as the released models use."""

    def __init__(self, d_model: int, n_heads: int, d_hid: int) -> None:
        super().__init__()
        self.self_attn = SelfAttention(d_model, n_heads)
        self.linear1 = nn.Linear(d_model, d_hid)
        self.linear2 = nn.Linear(d_hid, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, padding))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class TransformerEncoder(nn.Module):
    def __init__(self, config: ScGPTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config.d_model, config.n_heads, config.d_hid)
                                    for _ in range(config.n_layers))

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, padding)
        return x


class ExprDecoder(nn.Module):
    """Per-gene expression head (kept so official checkpoints load whole)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(d_model, d_model), nn.LeakyReLU(), nn.Linear(d_model, d_model),
                                nn.LeakyReLU(), nn.Linear(d_model, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).squeeze(-1)


class ClsDecoder(nn.Module):
    """Cell-class head of the official model (unused for embeddings; loaded for completeness)."""

    def __init__(self, d_model: int, n_layers: int, n_classes: int = 1) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(n_layers - 1):
            blocks += [nn.Linear(d_model, d_model), nn.ReLU(), nn.LayerNorm(d_model)]
        self._decoder = nn.ModuleList(blocks)
        self.out_layer = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._decoder:
            x = block(x)
        return self.out_layer(x)


class MVCDecoder(nn.Module):
    """Masked-value prediction from the cell embedding ('inner product' style)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.gene2query = nn.Linear(d_model, d_model)
        self.W = nn.Linear(d_model, d_model, bias=False)

    def forward(self, cell_emb: torch.Tensor, gene_embs: torch.Tensor) -> torch.Tensor:
        query = torch.sigmoid(self.gene2query(gene_embs))
        return torch.bmm(self.W(query), cell_emb.unsqueeze(2)).squeeze(2)


class ScGPT(nn.Module):
    """The scGPT whole-human architecture (and its spatial fine-tunes' shared trunk)."""

    def __init__(self, config: ScGPTConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = GeneEncoder(config.n_tokens, config.d_model)
        self.value_encoder = ContinuousValueEncoder(config.d_model)
        self.transformer_encoder = TransformerEncoder(config)
        self.decoder = ExprDecoder(config.d_model)
        self.cls_decoder = ClsDecoder(config.d_model, config.n_layers_cls)
        self.mvc_decoder = MVCDecoder(config.d_model)

    def encode(self, genes: torch.Tensor, values: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) gene ids and values, (B, L) True at padding -> (B, L, d_model) token outputs."""
        x = self.encoder(genes) + self.value_encoder(values)
        return self.transformer_encoder(x, padding if padding is not None and padding.any() else None)

    def cell_embedding(self, genes: torch.Tensor, values: torch.Tensor,
                       padding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d_model): the output at the <cls> position (first token)."""
        return self.encode(genes, values, padding)[:, 0, :]


@dataclass
class LoadReport:
    """What happened to every key of a checkpoint."""

    loaded: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # known optional heads fmscope does not build
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.loaded)} loaded ({len(self.renamed)} renamed from flash-attn), {len(self.missing)} missing, "
                f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched, "
                f"{len(self.ignored)} ignored optional")


def _rename_flash(key: str) -> str:
    for old, new in FLASH_RENAMES.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def load_state(model: ScGPT, state: dict[str, torch.Tensor], source: Path) -> LoadReport:
    """Load ``state`` strictly (after flash-attn renames); raise with the first offending keys."""
    report = LoadReport()
    renamed_state = {}
    for key, tensor in state.items():
        new = _rename_flash(key)
        if new != key:
            report.renamed[key] = new
        renamed_state[new] = tensor
    expected = model.state_dict()
    for key, tensor in renamed_state.items():
        if key not in expected:
            (report.ignored if key.startswith(OPTIONAL_PREFIXES) else report.unexpected).append(key)
        elif tensor.shape != expected[key].shape:
            report.mismatched.append(f"{key} {tuple(tensor.shape)} != {tuple(expected[key].shape)}")
        else:
            report.loaded.append(key)
    report.missing = [key for key in expected if key not in renamed_state]
    if report.missing or report.unexpected or report.mismatched:
        raise FmscopeError(
            f"{source} does not match the scGPT architecture in its args.json: {report.summary()}; "
            f"missing [{first_keys(report.missing)}], unexpected [{first_keys(report.unexpected)}], "
            f"mismatched [{first_keys(report.mismatched)}].",
            "Use the args.json, vocab.json and best_model.pt saved together by the official release.",
        )
    model.load_state_dict({k: v for k, v in renamed_state.items() if k in expected}, strict=True)
    return report


def load_scgpt(folder: str | Path, device: str | torch.device = "cpu") -> tuple[ScGPT, dict[str, int], LoadReport]:
    """Load an official scGPT checkpoint folder -> (model in eval mode, gene vocabulary, load report)."""
    folder = Path(folder).expanduser()
    files = {name: folder / name for name in ("args.json", "vocab.json", "best_model.pt")}
    absent = [name for name, path in files.items() if not path.is_file()]
    if absent:
        raise FmscopeError(f"{folder} lacks {', '.join(absent)}.",
                           "Point to the official checkpoint folder (args.json, vocab.json, best_model.pt).")
    try:
        args = json.loads(files["args.json"].read_text())
        vocab = {str(k): int(v) for k, v in json.loads(files["vocab.json"].read_text()).items()}
    except (ValueError, TypeError) as error:
        raise FmscopeError(f"Cannot read the JSON files in {folder} ({error}).", "Restore the official files.") from None
    if args.get("pad_token", "<pad>") not in vocab or "<cls>" not in vocab:
        raise FmscopeError(f"{files['vocab.json']} lacks the <pad> or <cls> token.", "Use the vocab.json of the release.")
    model = ScGPT(ScGPTConfig.from_args(args, n_tokens=max(vocab.values()) + 1))
    report = load_state(model, read_state_dict(files["best_model.pt"]), files["best_model.pt"])
    return model.to(device).eval(), vocab, report
