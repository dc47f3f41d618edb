"""scGPT-compatible transformer in plain PyTorch, and the official checkpoint-folder loader.

Written for fmscope from the scGPT paper (Cui et al., Nature Methods 2024) and the layout of
the official checkpoints (folder with ``args.json``, ``vocab.json``, ``best_model.pt``);
parameter names follow the official ``scgpt.model.TransformerModel`` so checkpoints load
with strict matching. Attention is ``scaled_dot_product_attention`` (no flash-attn); the
flash-attn layouts, old (``self_attn.Wqkv.*``) and current (``self_attn._impl.Wqkv.*``,
``self_attn._impl.out_proj.*``, scGPT PR #351), are renamed to the torch one (``in_proj_*``), which
packs q, k, v in the same order; wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``) and wrapping dicts
(``model``, ``state_dict``) are taken off. Post-norm layers with ReLU, continuous value encoder
(values clipped at 512), cell embedding = output at the ``<cls>`` position.

scGPT-spatial (Wang et al., bioRxiv 2025; bowang-lab/scGPT-spatial) shares this trunk and adds
heads fmscope builds when the checkpoint has them: a mixture-of-experts expression decoder
(4 experts, softmax gate, top-2 renormalised) in place of the MLP one, and a neighbour
imputation decoder (the MVC decoder applied to the mean <cls> output of each cell's k nearest
spatial neighbours). Its release adds ``all_dict_mean_std.csv`` (per-gene means by vocabulary
id), by which values are divided before binning (:mod:`fmscope.omics.embed`). Which heads exist
is read from the checkpoint's keys, so every tensor of the file is loaded or the load fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fmscope.checkpoints import first_keys, read_state_dict
from fmscope.errors import FmscopeError

# Attention key layouts of the official code, old and new, -> torch's nn.MultiheadAttention (the same tensors:
# q, k, v packed in that order): flash-attn 1.x FlashMHA (``self_attn.Wqkv.*``) and the FlashMHA wrapper of
# scGPT main since PR #351 (flash-attn 1.x and 2.x: ``self_attn._impl.Wqkv.*``, ``self_attn._impl.out_proj.*``).
FLASH_RENAMES = {
    "self_attn._impl.Wqkv.weight": "self_attn.in_proj_weight",
    "self_attn._impl.Wqkv.bias": "self_attn.in_proj_bias",
    "self_attn._impl.out_proj.weight": "self_attn.out_proj.weight",
    "self_attn._impl.out_proj.bias": "self_attn.out_proj.bias",
    "self_attn.Wqkv.weight": "self_attn.in_proj_weight",
    "self_attn.Wqkv.bias": "self_attn.in_proj_bias",
}
# Prefixes training wrappers put on every key: DistributedDataParallel / DataParallel, torch.compile, a
# Lightning module's ``self.model`` (no scGPT key starts with ``model.``, so only a wrapper puts it on all).
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
# Keys some official versions save for parts fmscope does not build: listed in the load report with
# why each is skipped, never dropped silently.
SKIPPED_PARTS = {
    "flag_encoder.": "the flag embedding of TransformerModel.generate (expression generation); "
    "cell embeddings do not use it",
    "batch_encoder.": "the batch-label embedding the official decoders append to the transformer output when "
    "fine-tuned with batch labels; the <cls> cell embedding does not use it",
    "grad_reverse_discriminator.": "the adversarial batch classifier (DAB), a training loss only",
    "dsbn.": "domain-specific batch norm of the input embeddings, which the official model applies per batch "
    "label before the transformer; fmscope has no batch labels and does not apply it, so embeddings "
    "from this checkpoint differ from the official ones computed with a batch label",
}
OPTIONAL_PREFIXES = tuple(SKIPPED_PARTS)
GENE_MEANS_FILE = "all_dict_mean_std.csv"  # scGPT-spatial's per-gene means


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
    expression_decoder: str = "mlp"  # "mlp" (scGPT) or "moe" (scGPT-spatial)
    n_experts: int = 4
    cls_head: bool = True
    mvc_head: bool = True
    imputation_head: bool = False  # scGPT-spatial's neighbour imputation decoder
    imputation_k: int = 6

    @classmethod
    def from_args(cls, args: dict, n_tokens: int) -> "ScGPTConfig":
        """The configuration of ``args`` as :func:`read_args` returns it (canonical keys, checked types)."""
        style = args.get("input_emb_style", "continuous")
        if style != "continuous":
            raise FmscopeError(
                f"input_emb_style '{style}' is not supported.",
                "Use a checkpoint trained with continuous value embeddings (the released models).",
            )
        return cls(
            n_tokens=n_tokens,
            d_model=args["embsize"],
            n_heads=args["nheads"],
            d_hid=args["d_hid"],
            n_layers=args["nlayers"],
            n_layers_cls=args.get("n_layers_cls", 3),
            pad_token=args.get("pad_token", "<pad>"),
            pad_value=float(args.get("pad_value", -2)),
            n_bins=args.get("n_bins", 51),
            max_seq_len=args.get("max_seq_len", 1200),
            fast_transformer=bool(args.get("fast_transformer", True)),
            imputation_k=args.get("impute_MVC_knn_k") or 6,
        )

    def with_heads_of(self, state: dict[str, torch.Tensor]) -> "ScGPTConfig":
        """The heads the checkpoint's keys show (MoE or MLP decoder, class, MVC, imputation)."""
        keys = [_rename_flash(k) for k in state]
        experts = {k.split(".")[3] for k in keys if k.startswith("decoder.moe.experts.")}
        return replace(
            self,
            expression_decoder="moe" if experts else "mlp",
            n_experts=len(experts) or self.n_experts,
            cls_head=any(k.startswith("cls_decoder.") for k in keys),
            mvc_head=any(k.startswith("mvc_decoder.") for k in keys),
            imputation_head=any(k.startswith("impute_mvc_decoder.") for k in keys),
        )


# args.json: the names the official pre-training script writes (bowang-lab/scGPT examples/pretrain.py, 2023:
# ``json.dump(vars(args))`` of --embsize, --nheads, --d-hid, --nlayers), then the names of the official fine-tuning
# configs (examples/finetune_integration.py, tutorials/Tutorial_Integration.ipynb and Tutorial_Multiomics.ipynb:
# ``layer_size``, ``nhead``, ``nlayers``, from which they set ``embsize = d_hid = layer_size``), which a fine-tuned
# folder's args.json holds when it is that run's config.
ARGS_ALIASES = {"embsize": ("layer_size",), "nheads": ("nhead",), "d_hid": ("layer_size",), "nlayers": ()}
# The names those fine-tuning configs write and ignore when they load a pre-trained model (``load_model``:
# "if load model, batch_size, layer_size, nlayers, nhead will be ignored"; examples/pretrain.py, given
# --load-model, instead copies the loaded args.json's values into the args.json it saves).
FINE_TUNING_CONFIG_NAMES = ("layer_size", "nhead", "nlayers")
ARGS_MEANING = {
    "embsize": "the embedding size",
    "nheads": "the number of attention heads",
    "d_hid": "the feed-forward size",
    "nlayers": "the number of transformer layers",
}
# Optional keys read as whole numbers (their defaults: the released models' values).
ARGS_OPTIONAL_INTEGERS = ("n_layers_cls", "n_bins", "max_seq_len", "impute_MVC_knn_k")


def _from_weights(key: str, state: dict[str, torch.Tensor]) -> tuple[int, str] | None:
    """``key``'s exact value read from the weights' shapes, with the tensor it comes from; None when the weights do
    not hold it (the head count never: it does not change a shape)."""
    if key == "embsize" and "encoder.embedding.weight" in state:
        return state["encoder.embedding.weight"].shape[1], "encoder.embedding.weight (vocabulary, embsize)"
    if key == "d_hid" and "transformer_encoder.layers.0.linear1.weight" in state:
        return (
            state["transformer_encoder.layers.0.linear1.weight"].shape[0],
            "transformer_encoder.layers.0.linear1.weight (d_hid, embsize)",
        )
    layers = {k.split(".")[2] for k in state if k.startswith("transformer_encoder.layers.")}
    if key == "nlayers" and layers and all(index.isdigit() for index in layers):
        if sorted(int(index) for index in layers) == list(range(len(layers))):
            return len(layers), f"transformer_encoder.layers.0 ... {len(layers) - 1}"
    return None


def _whole_number(path: Path, key: str, value: object, allow_null: bool = False) -> int | None:
    """``value`` of ``key`` as a positive int; FmscopeError naming ``path``, the key and the fix otherwise (a
    string "4", a decimal number, true / false, zero or less)."""
    if value is None and allow_null:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        fix = f'Write it as a JSON number, without quotes: "{key}": {int(value)}.'
    else:
        fix = f'Write it as a positive whole number (JSON, without quotes): "{key}": N.'
    kind = {str: "text", bool: "true/false", float: "a decimal number", int: "not above 0"}.get(type(value), "JSON")
    raise FmscopeError(f"{path}: '{key}' is {json.dumps(value)} ({kind}), not a positive whole number.", fix)


def read_args(path: Path, args: object, state: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """The architecture keys of an scGPT folder's ``args.json`` (``args``, parsed from ``path``), checked, under
    the official pre-training names (``ARGS_ALIASES``) -> (args with those keys, notes for the user).

    A key missing under its own name is taken from the official fine-tuning configs' name (``nhead``,
    ``layer_size``), else, for ``embsize`` / ``d_hid`` / ``nlayers``, read exactly from the weights' shapes
    (``state``, after unwrapping); each is said in a note. A fine-tuning config that names the model it loaded
    (``load_model``, beside ``layer_size`` / ``nhead``) has ``layer_size`` / ``nhead`` / ``nlayers`` that those
    scripts ignore: they are not read.
    Refused (FmscopeError naming ``path``, the key and the fix): not a JSON object; ``nheads`` absent (no shape
    holds it); ``nheads`` and ``nhead`` with different values; an ``embsize`` / ``d_hid`` / ``nlayers`` the weights
    contradict; a whole-number key given as text, a decimal number, true / false or <= 0; ``embsize`` not divisible
    by ``nheads``; ``pad_value`` not a number; ``pad_token`` / ``input_emb_style`` not text."""
    if not isinstance(args, dict):
        raise FmscopeError(
            f"{path} holds a JSON {type(args).__name__}, not an object of settings.",
            "Use the args.json saved with the checkpoint (a JSON object: embsize, nheads, d_hid, nlayers ...).",
        )
    read, notes = dict(args), []
    # A fine-tuning config (its own names) that loaded a pre-trained folder, whose args.json then ruled; pretrain.py
    # also saves load_model, but with the loaded model's embsize / nheads / d_hid / nlayers copied in.
    loaded_from = args.get("load_model") if {"layer_size", "nhead"} & set(args) else None
    for key, aliases in ARGS_ALIASES.items():
        named = [name for name in (key, *aliases) if name in args]
        unused = [name for name in named if loaded_from and name in FINE_TUNING_CONFIG_NAMES]
        values = {name: _whole_number(path, name, args[name]) for name in named if name not in unused}
        found = _from_weights(key, state)
        if found is None and len(set(values.values())) > 1:  # else the shapes judge the value used
            shown = " and ".join(f'"{name}": {value}' for name, value in values.items())
            raise FmscopeError(
                f"{path} gives {ARGS_MEANING[key]} twice, differently: {shown}.",
                f'Keep the value the model was trained with, as "{key}", and remove the other.',
            )
        if values:
            name, read[key] = (key, values[key]) if key in values else next(iter(values.items()))
            if found is not None and found[0] != read[key]:
                raise FmscopeError(
                    f"{path} gives {ARGS_MEANING[key]} ('{key}') as \"{name}\": {read[key]}, but the weights "
                    f"have {found[0]} ({found[1]}): this args.json is not the one of these weights.",
                    f'Use the args.json saved with this best_model.pt, or set "{key}": {found[0]}.',
                )
            if name != key:
                notes.append(
                    f"args.json has no '{key}': read {ARGS_MEANING[key]} from '{name}' ({read[key]}), the name "
                    "the official scGPT fine-tuning configs use."
                )
            continue
        because = (
            f" (its {', '.join(repr(name) for name in unused)} is not used: this is the config of a fine-tuning "
            f"run that loaded {loaded_from}, and the official scripts then ignore layer_size, nlayers and nhead)"
            if unused
            else ""
        )
        if found is not None:
            read[key] = found[0]
            notes.append(
                f"args.json has no {'usable ' if unused else ''}'{key}'{because}: read {ARGS_MEANING[key]} "
                f"({found[0]}) from the weights' shape, {found[1]}."
            )
            continue
        source = f"{loaded_from}/args.json" if unused else "the args.json of the model it was fine-tuned from"
        raise FmscopeError(
            f"{path} has no {'usable ' if unused else ''}{' or '.join(repr(name) for name in (key, *aliases))} "
            f"({ARGS_MEANING[key]}){because}, "
            "and the weights' shapes do not hold it"
            + (" (any head count gives the same shapes)." if key == "nheads" else "."),
            f'Add "{key}": N to args.json, N the value the model was trained with ({source} has it).',
        )
    for key in ARGS_OPTIONAL_INTEGERS:
        if key in args:
            read[key] = _whole_number(path, key, args[key], allow_null=key == "impute_MVC_knn_k")
    pad_value = args.get("pad_value", -2)
    if isinstance(pad_value, bool) or not isinstance(pad_value, (int, float)):
        raise FmscopeError(
            f"{path}: 'pad_value' is {json.dumps(pad_value)}, not a number.",
            'Write it as a JSON number, without quotes: "pad_value": -2 (the released models\' value).',
        )
    for key in ("pad_token", "input_emb_style"):
        if key in args and not isinstance(args[key], str):
            raise FmscopeError(
                f"{path}: '{key}' is {json.dumps(args[key])}, not text.",
                f'Write it as a JSON string: "{key}": "{"<pad>" if key == "pad_token" else "continuous"}".',
            )
    if read["embsize"] % read["nheads"]:
        raise FmscopeError(
            f"{path}: embsize {read['embsize']} is not divisible by nheads {read['nheads']}; attention splits the "
            "embedding evenly over the heads.",
            'Set "nheads" to the head count the model was trained with.',
        )
    return read, notes


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
        self.layers = nn.ModuleList(
            EncoderLayer(config.d_model, config.n_heads, config.d_hid) for _ in range(config.n_layers)
        )

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, padding)
        return x


class ExprDecoder(nn.Module):
    """Per-gene expression head (kept so official checkpoints load whole)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(d_model, d_model),
            nn.LeakyReLU(),
            nn.Linear(d_model, d_model),
            nn.LeakyReLU(),
            nn.Linear(d_model, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).squeeze(-1)


class Expert(nn.Module):
    """One expert of the MoE decoder: the same three-layer MLP as the scGPT expression decoder."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(d_model, d_model),
            nn.LeakyReLU(),
            nn.Linear(d_model, d_model),
            nn.LeakyReLU(),
            nn.Linear(d_model, 1),
        )


class Gate(nn.Module):
    def __init__(self, d_model: int, n_experts: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, n_experts)


class MixtureOfExperts(nn.Module):
    def __init__(self, d_model: int, n_experts: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(Expert(d_model) for _ in range(n_experts))
        self.gate = Gate(d_model, n_experts)

    def forward(self, x: torch.Tensor, top: int = 2) -> torch.Tensor:
        """(B, L, d) -> (B, L, 1): the top-``top`` experts by gate weight, weights renormalised to sum 1."""
        weights = torch.softmax(self.gate.gate(x), dim=-1)
        kept, chosen = weights.topk(top, dim=-1)
        weights = torch.zeros_like(weights).scatter(-1, chosen, kept)
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        outputs = torch.stack([expert.fc(x) for expert in self.experts], dim=-2)  # (B, L, E, 1)
        return (weights.unsqueeze(-1) * outputs).sum(dim=-2)


class MoEDecoder(nn.Module):
    """scGPT-spatial's per-gene expression head (mixture of experts)."""

    def __init__(self, d_model: int, n_experts: int) -> None:
        super().__init__()
        self.moe = MixtureOfExperts(d_model, n_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.moe(x).squeeze(-1)


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
        self.decoder = (
            MoEDecoder(config.d_model, config.n_experts)
            if config.expression_decoder == "moe"
            else ExprDecoder(config.d_model)
        )
        if config.cls_head:
            self.cls_decoder = ClsDecoder(config.d_model, config.n_layers_cls)
        if config.mvc_head:
            self.mvc_decoder = MVCDecoder(config.d_model)
        if config.imputation_head:
            self.impute_mvc_decoder = MVCDecoder(config.d_model)
        self.gene_means: dict[int, float] | None = None  # scGPT-spatial: per-gene means by vocabulary id

    def encode(self, genes: torch.Tensor, values: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) gene ids and values, (B, L) True at padding -> (B, L, d_model) token outputs."""
        x = self.encoder(genes) + self.value_encoder(values)
        return self.transformer_encoder(x, padding if padding is not None and padding.any() else None)

    def cell_embedding(
        self, genes: torch.Tensor, values: torch.Tensor, padding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, d_model): the output at the <cls> position (first token)."""
        return self.encode(genes, values, padding)[:, 0, :]

    def expression(self, outputs: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) token outputs -> (B, L) predicted values (MLP or MoE decoder)."""
        return self.decoder(outputs)

    def impute_genes(self, neighbour_mean: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """The imputation decoder on (N, d) neighbourhood means for (N, G) gene ids -> (N, G) values."""
        if not self.config.imputation_head:
            raise FmscopeError(
                "This checkpoint has no neighbour imputation head (impute_mvc_decoder).",
                "Use an scGPT-spatial checkpoint, or the kNN imputation from a reference.",
            )
        return self.impute_mvc_decoder(neighbour_mean, self.encoder(genes))


@dataclass
class LoadReport:
    """What happened to every key of a checkpoint."""

    loaded: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # known optional heads fmscope does not build
    mismatched: list[str] = field(default_factory=list)
    args_notes: list[str] = field(default_factory=list)  # args.json keys read under another name or from shapes

    def summary(self) -> str:
        skipped = ", ".join(f"{prefix}* ({len(keys)})" for prefix, keys in self.skipped_parts().items())
        return (
            f"{len(self.loaded)} loaded ({len(self.renamed)} renamed from a flash-attn layout), "
            f"{len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched, "
            f"{len(self.ignored)} skipped" + (f": {skipped}" if skipped else "")
        )

    def skipped_parts(self) -> dict[str, list[str]]:
        """Skipped keys grouped by the part they belong to (a prefix of ``SKIPPED_PARTS``)."""
        parts: dict[str, list[str]] = {}
        for key in self.ignored:
            parts.setdefault(next(p for p in SKIPPED_PARTS if key.startswith(p)), []).append(key)
        return parts

    def skipped_explanations(self) -> list[str]:
        """One line per skipped part: its keys (the first few) and why fmscope does not need it."""
        return [
            f"skipped {len(keys)} key(s) {prefix}* ({first_keys(keys)}): {SKIPPED_PARTS[prefix]}."
            for prefix, keys in self.skipped_parts().items()
        ]

    def explanations(self) -> list[str]:
        """The lines to tell the user: how args.json was read (``args_notes``), then the skipped parts."""
        return self.args_notes + self.skipped_explanations()


def _rename_flash(key: str) -> str:
    for old, new in FLASH_RENAMES.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def unwrapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the prefixes a training wrapper put on every key (``module.``, ``_orig_mod.``, ``model.``,
    nested)."""
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: tensor for key, tensor in state.items()}
                changed = True
    return state


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


def read_vocab(folder: str | Path) -> dict[str, int]:
    """The gene vocabulary (token -> id) of an scGPT checkpoint folder's ``vocab.json``; FmscopeError when absent
    or unreadable."""
    path = Path(folder).expanduser() / "vocab.json"
    if not path.is_file():
        raise FmscopeError(
            f"{path.parent} lacks vocab.json.",
            "Point to the official checkpoint folder (args.json, vocab.json, best_model.pt).",
        )
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise FmscopeError(
            f"Cannot read the JSON files in {path.parent} ({error}).", "Restore the official files."
        ) from None


def load_scgpt(folder: str | Path, device: str | torch.device = "cpu") -> tuple[ScGPT, dict[str, int], LoadReport]:
    """Load an official scGPT checkpoint folder -> (model in eval mode, gene vocabulary, load report)."""
    folder = Path(folder).expanduser()
    files = {name: folder / name for name in ("args.json", "vocab.json", "best_model.pt")}
    absent = [name for name, path in files.items() if not path.is_file()]
    if absent:
        raise FmscopeError(
            f"{folder} lacks {', '.join(absent)}.",
            "Point to the official checkpoint folder (args.json, vocab.json, best_model.pt).",
        )
    try:
        args = json.loads(files["args.json"].read_text())
    except (ValueError, TypeError) as error:
        raise FmscopeError(
            f"Cannot read the JSON files in {folder} ({error}).", "Restore the official files."
        ) from None
    vocab = read_vocab(folder)
    state = unwrapped(read_state_dict(files["best_model.pt"]))
    args, notes = read_args(files["args.json"], args, state)
    if args.get("pad_token", "<pad>") not in vocab or "<cls>" not in vocab:
        raise FmscopeError(
            f"{files['vocab.json']} lacks the <pad> or <cls> token.", "Use the vocab.json of the release."
        )
    model = ScGPT(ScGPTConfig.from_args(args, n_tokens=max(vocab.values()) + 1).with_heads_of(state))
    report = load_state(model, state, files["best_model.pt"])
    report.args_notes = notes
    if (folder / GENE_MEANS_FILE).is_file():
        model.gene_means = read_gene_means(folder / GENE_MEANS_FILE)
    return model.to(device).eval(), vocab, report


def read_gene_means(path: Path) -> dict[int, float]:
    """scGPT-spatial's ``all_dict_mean_std.csv``: vocabulary id -> mean (column 'mean')."""
    import pandas as pd

    try:
        table = pd.read_csv(path, index_col=0)
        means = {int(index): float(value) for index, value in table["mean"].items()}
    except (ValueError, KeyError) as error:
        raise FmscopeError(
            f"Cannot read {path} ({type(error).__name__}: {error}).",
            "Use the scGPT-spatial release's all_dict_mean_std.csv (index: gene id, column: mean).",
        ) from None
    if not all(value > 0 for value in means.values()):
        raise FmscopeError(f"{path} has non-positive gene means.", "Use the file of the release.")
    return means
