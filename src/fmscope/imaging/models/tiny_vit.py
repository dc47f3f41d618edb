"""TinyViT image encoder in the layout of the LiteMedSAM checkpoint.

Written for fmscope from the TinyViT paper (Wu et al., ECCV 2022) and the shapes of the
tensors in ``lite_medsam.pth``; parameter names follow that checkpoint so it loads with
strict key matching. LiteMedSAM's variant keeps full resolution in the patch embedding
(1x1 convolutions, stride 1) and does not downsample before the last stage, so a 256 px
input gives a 256 x 64 x 64 embedding, the grid SAM's prompt encoder and decoder expect.

Stage layout for LiteMedSAM (channels, grid): (64, 256) -> (128, 128) -> (160, 64) -> (320, 64).

Layout changes between (B, H, W, C) and (B, C, H, W) go through 3-D token tensors (:func:`channels_first`,
:func:`channels_last`) and the MLP runs on (B, H*W, C) tokens: the same values as 4-D permutes in torch (bit for
bit, and as fast), but OpenVINO's CPU plugin gives a 4-D (B, H, W, C) tensor next to a convolution the
channels-last layout of its dimension 1 (memory order B, W, C, H), so each 4-D permute ran as a strided copy
(15 ms for one 128 x 128 x 128 tensor at 1 thread, a sixth of an fp32 pass) plus reorders before every
fully-connected layer; through 3-D tensors the pass is ~1.2x faster (docs/backends.md, profile section).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fmscope.imaging.models.sam_parts import sam_modeling


@dataclass(frozen=True)
class TinyViTConfig:
    """Architecture of a TinyViT encoder with a SAM neck."""

    img_size: int = 256
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    merge_strides: tuple[int, ...] = (2, 2, 1)  # stride of the merge after stage i
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    out_chans: int = 256


class ConvBN(nn.Sequential):
    """Convolution without bias followed by batch norm (names ``c`` and ``bn``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class PatchEmbed(nn.Module):
    """Two pointwise conv-BN layers with a GELU between them (no downsampling)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, dim // 2), nn.GELU(), ConvBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: expand 1x1, depthwise 3x3, project 1x1, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, kernel=3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Change width (and optionally halve the grid) between stages: 1x1, depthwise 3x3, 1x1."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, kernel=3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        return self.conv3(x)


class WindowAttention(nn.Module):
    """Multi-head attention inside square windows with a learned bias per (|dy|, |dx|) offset."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        # Offsets (|dy|, |dx|) are numbered dy * window + dx, the order of the checkpoint's table.
        index = (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()
        self.register_buffer("bias_index", index, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (windows, window*window, dim) -> same shape."""
        n_windows, n_tokens, _ = tokens.shape
        qkv = self.qkv(self.norm(tokens)).view(n_windows, n_tokens, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (windows, heads, tokens, head_dim)
        bias = self.attention_biases[:, self.bias_index].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(n_windows, n_tokens, -1))


class Mlp(nn.Module):
    """Pre-norm two-layer perceptron with GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, C, H, W), through (B, H*W, C) (see the module's docstring)."""
    b, h, w, c = x.shape
    return x.reshape(b, h * w, c).transpose(1, 2).reshape(b, c, h, w)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C), through (B, C, H*W) (see the module's docstring)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h * w).transpose(1, 2).reshape(b, h, w, c)


def _to_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nH * nW, window * window, C), padding bottom/right as needed."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    ph, pw = h + pad_h, w + pad_w
    x = x.view(b, ph // window, window, pw // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c), (ph, pw)


def _from_windows(
    x: torch.Tensor, window: int, batch: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`_to_windows`, cropping the padding away."""
    ph, pw = padded
    c = x.shape[-1]
    x = x.view(batch, ph // window, pw // window, window, window, c).transpose(2, 3).reshape(batch, ph, pw, c)
    return x[:, : size[0], : size[1]]


class TinyViTBlock(nn.Module):
    """Window attention, depthwise 3x3 'local' convolution, MLP; on (B, H, W, C) tensors."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, kernel=3, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        windows, padded = _to_windows(x, self.window)
        x = x + _from_windows(self.attn(windows), self.window, b, padded, (h, w))
        tokens = self.local_conv(channels_first(x)).reshape(b, c, h * w).transpose(1, 2)  # (B, H*W, C)
        return (tokens + self.mlp(tokens)).reshape(b, h, w, c)


class ConvStage(nn.Module):
    """First stage: MBConv blocks on (B, C, H, W), then a merge into (B, H', W', C')."""

    def __init__(self, dim: int, out_dim: int, depth: int, expand_ratio: float, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return channels_last(self.downsample(x))


class AttentionStage(nn.Module):
    """A stage of TinyViT blocks on (B, H, W, C), optionally followed by a merge."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, out_dim: int | None, stride: int
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, num_heads, window, mlp_ratio) for _ in range(depth))
        self.downsample = None if out_dim is None else PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = channels_last(self.downsample(channels_first(x)))
        return x


class TinyViT(nn.Module):
    """TinyViT backbone plus the SAM neck; (B, 3, S, S) in [0, 1] -> (B, 256, S/4, S/4)."""

    def __init__(self, config: TinyViTConfig = TinyViTConfig()) -> None:
        super().__init__()
        dims, n = config.embed_dims, len(config.embed_dims)
        self.config = config
        self.patch_embed = PatchEmbed(3, dims[0])
        stages: list[nn.Module] = [
            ConvStage(dims[0], dims[1], config.depths[0], config.mbconv_expand_ratio, config.merge_strides[0])
        ]
        for i in range(1, n):
            last = i == n - 1
            stages.append(
                AttentionStage(
                    dims[i],
                    config.depths[i],
                    config.num_heads[i],
                    config.window_sizes[i],
                    config.mlp_ratio,
                    out_dim=None if last else dims[i + 1],
                    stride=1 if last else config.merge_strides[i],
                )
            )
        self.layers = nn.ModuleList(stages)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], config.out_chans, 1, bias=False),
            sam_modeling().common.LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, 3, padding=1, bias=False),
            sam_modeling().common.LayerNorm2d(config.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.neck(channels_first(x))
