"""sam2's memory attention on the CPU in two cheaper forms of the same computation.

sam2's memory attention conditions the current frame on the tracked objects' memories: per layer a
self-attention over the frame's N_q tokens (N_q = 1,024 for MedSAM2 at 512 px), a cross-attention to
the memories and an MLP, for a batch of B objects. On the CPU it is about half of a tracked frame
(docs/backends.md). Two of its operations are changed here, exactly (equal within fp32 rounding):

1. **Value projection after the attention weights** (each layer's ``cross_attn_image``, a one-head
   ``RoPEAttention``): the memories are up to 7 frames of N_q tokens plus object-pointer tokens, each of
   ``kv_in_dim`` = 64 channels that ``k_proj`` / ``v_proj`` widen to 256. Every row of the softmax weights
   ``P`` sums to one, so ``P (M W_v^T + b_v) = (P M) W_v^T + b_v`` (M: N_k x 64 memory values) and the
   weighted sum runs on 64 channels instead of 256: a quarter of the second matrix product. sam2's CPU path
   calls torch's fused attention kernel, which needs values as wide as keys, so the weights are computed here
   in blocks of query rows (a block of 256 x 7,232 fp32 scores is 7 MB). The keys are rotated by RoPE with
   the frame's frequencies broadcast over the memory frames, in place (sam2 copies the frequencies once per
   memory frame and the keys once more).
2. **The first layer's self-attention once per frame**: its input is the current frame's features, the same
   for every object, and sam2 (1.1.0) runs each object through the memory attention on its own; the layer
   remembers its last input and output and answers an equal input (compared value by value) with that output
   (under a lock: objects tracked side by side on several threads share the remembered pair).

Both fall back to sam2's own ``forward`` wherever they are not the same computation or not a gain: in
training (dropout), off the CPU (the fused GPU kernel is kept), under autocast, with several heads (the
weighted sums would be heads x 64 wide) or ``kv_in_dim`` not below the internal width. The designs are the
algebra above, not taken from a project; ``benchmarks/backends.py --sections medsam2`` measures them
against sam2 as shipped.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

QUERY_ROWS_PER_BLOCK = 256


def use_cpu_memory_attention(predictor: torch.nn.Module) -> int:
    """Give the memory-attention layers of sam2 ``predictor`` this module's forms (in place).

    Only the classes of the attention modules change: their parameters, names and the state dict stay
    sam2's. Returns the number of attention modules changed (0 for a memory attention of another shape).
    """
    from sam2.modeling.sam.transformer import RoPEAttention

    value_after, remembering = _form_classes()
    changed = 0
    for index, layer in enumerate(predictor.memory_attention.layers):
        cross = layer.cross_attn_image
        if type(cross) is RoPEAttention and cross.num_heads == 1 and cross.kv_in_dim < cross.internal_dim:
            cross.__class__ = value_after
            changed += 1
        if index == 0 and type(layer.self_attn) is RoPEAttention:  # later layers' inputs differ per object
            layer.self_attn.__class__ = remembering
            changed += 1
    return changed


def _sam2s_path(module: torch.nn.Module, q: torch.Tensor) -> bool:
    """Whether ``module`` must run sam2's own forward on queries ``q``."""
    return module.training or q.device.type != "cpu" or torch.is_autocast_enabled("cpu")


def _rotate_(tokens: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """RoPE in place: tokens (B, r * T, C) float32 (a view whose last two axes are contiguous), as C / 2 (real,
    imaginary) pairs, times frequencies (T, C / 2) complex, repeated over the r groups of T tokens. Returns
    ``tokens``."""
    batch, count, _ = tokens.shape
    pairs = torch.view_as_complex(tokens.view(batch, count // frequencies.shape[0], frequencies.shape[0], -1, 2))
    pairs.mul_(frequencies)
    return tokens


def _form_classes() -> tuple[type, type]:
    """The two forms as subclasses of sam2's ``RoPEAttention`` (sam2 imported lazily, classes made once)."""
    global _CLASSES
    if _CLASSES is None:
        from sam2.modeling.sam.transformer import RoPEAttention

        class ValueAfterRoPEAttention(RoPEAttention):
            """One-head RoPE cross-attention whose weighted sum runs on the ``kv_in_dim``-channel values."""

            def forward(
                self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
            ) -> torch.Tensor:
                """q: B x N_q x 256 queries; k, v: B x N_k x kv_in_dim memories (N_k = r x N_q rotated tokens,
                then ``num_k_exclude_rope`` object pointers, not rotated). Returns B x N_q x 256."""
                if _sam2s_path(self, q) or q.dtype != torch.float32:
                    return super().forward(q, k, v, num_k_exclude_rope)
                # sam2's video predictor keeps memories in bfloat16; object pointers (float32) concatenated to them
                # promote them, but a backwards pass from the video's last frame has no pointer and sam2's own layer
                # fails there on the mixed dtypes: promoted here as the concatenation does
                k, v = k.to(q.dtype), v.to(q.dtype)
                if self.freqs_cis.shape[0] != q.shape[1]:
                    side = q.shape[1] ** 0.5
                    self.freqs_cis = self.compute_cis(end_x=side, end_y=side)
                queries = _rotate_(self.q_proj(q), self.freqs_cis).mul_(self.internal_dim**-0.5)  # torch's scale
                keys = self.k_proj(k)
                _rotate_(keys[:, : keys.shape[1] - num_k_exclude_rope], self.freqs_cis)
                keys_t = keys.transpose(1, 2)  # B x C x N_k
                weighted = q.new_empty(q.shape[0], q.shape[1], v.shape[-1])  # B x N_q x kv_in_dim
                for item in range(q.shape[0]):
                    for start in range(0, q.shape[1], QUERY_ROWS_PER_BLOCK):
                        rows = slice(start, start + QUERY_ROWS_PER_BLOCK)
                        weights = torch.mm(queries[item, rows], keys_t[item])
                        torch.softmax(weights, dim=-1, out=weights)
                        torch.mm(weights, v[item], out=weighted[item, rows])
                return self.out_proj(F.linear(weighted, self.v_proj.weight, self.v_proj.bias))

        class RememberingRoPEAttention(RoPEAttention):
            """RoPE self-attention that answers a repeat of its last input with its last output."""

            last: tuple[torch.Tensor, torch.Tensor] | None = None

            def forward(
                self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
            ) -> torch.Tensor:
                """q = k = v: B x N x C tokens (sam2 passes one tensor thrice); returns B x N x C."""
                if _sam2s_path(self, q) or not (q is k is v):
                    return super().forward(q, k, v, num_k_exclude_rope)
                with _REMEMBERING_LOCK:  # objects tracked side by side: the second waits for the first's output
                    last = self.last
                    if last is not None and last[0].shape == q.shape and torch.equal(last[0], q):
                        return last[1].clone()
                    out = super().forward(q, k, v, num_k_exclude_rope)
                    self.last = (q.detach().clone(), out.detach().clone())
                    return out

        _CLASSES = (ValueAfterRoPEAttention, RememberingRoPEAttention)
    return _CLASSES


_CLASSES: tuple[type, type] | None = None
_REMEMBERING_LOCK = threading.Lock()
