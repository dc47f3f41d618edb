"""fmscope's forms of sam2's memory attention (value after the weights; a repeated input answered) against sam2's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from sam2.modeling.sam.transformer import RoPEAttention  # installed by `make install` (sam2==1.1.0)

from fmscope.imaging.tracking.memory_attention_forms import _form_classes, use_cpu_memory_attention

TOKENS = 32 * 32  # MedSAM2 at 512 px: a 32 x 32 feature grid


def sam2_attention(kv_in_dim: int | None, heads: int = 1, repeat: bool = True) -> RoPEAttention:
    """sam2.1 Hiera-T's memory attention layer at 512 px (kv_in_dim 64: cross, None: self), random weights
    (biases too, so that b_v is checked)."""
    torch.manual_seed(0)
    attention = RoPEAttention(
        rope_theta=10000.0, feat_sizes=[32, 32], rope_k_repeat=repeat, embedding_dim=256, num_heads=heads,
        downsample_rate=1, dropout=0.1, kv_in_dim=kv_in_dim,
    ).eval()  # fmt: skip
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.normal_(0.0, 0.1)
    return attention


def assert_close(ours: torch.Tensor, expected: torch.Tensor) -> None:
    assert ours.shape == expected.shape
    scale = float(expected.abs().max())
    assert scale > 0.1
    assert float((ours - expected).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize(("memories", "pointers"), [(1, 0), (7, 64), (3, 16)])
def test_value_after_attention_equals_sam2s_layer(memories, pointers):
    attention = sam2_attention(64)
    generator = torch.Generator().manual_seed(memories)
    queries = torch.randn(2, TOKENS, 256, generator=generator)
    keys = torch.randn(2, memories * TOKENS + pointers, 64, generator=generator)
    values = torch.randn(2, memories * TOKENS + pointers, 64, generator=generator)
    with torch.no_grad():
        expected = attention(queries, keys.clone(), values, num_k_exclude_rope=pointers)
        attention.__class__ = _form_classes()[0]
        ours = attention(queries, keys.clone(), values, num_k_exclude_rope=pointers)
    assert ours.shape == (2, TOKENS, 256)
    assert_close(ours, expected)


def test_first_self_attention_answers_a_repeated_input_with_its_output():
    attention = sam2_attention(None, repeat=False)
    generator = torch.Generator().manual_seed(3)
    frame, other = (torch.randn(1, TOKENS, 256, generator=generator) for _ in range(2))
    with torch.no_grad():
        expected = {"frame": attention(frame, frame, frame), "other": attention(other, other, other)}
        attention.__class__ = _form_classes()[1]
        projections = []
        attention.q_proj.register_forward_hook(lambda *_: projections.append(1))
        first = attention(frame, frame, frame)
        copy = frame.clone()  # an equal input in a new tensor
        again = attention(copy, copy, copy)
        assert len(projections) == 1
        again.add_(1.0)  # the caller owns what it gets
        assert torch.equal(first, expected["frame"]) and torch.equal(attention(frame, frame, frame), first)
        assert torch.equal(attention(other, other, other), expected["other"]) and len(projections) == 2


def test_training_keeps_sam2s_forward():
    attention = sam2_attention(64)
    attention.__class__ = _form_classes()[0]
    attention.train()
    queries, keys = torch.randn(1, TOKENS, 256), torch.randn(1, TOKENS, 64)
    torch.manual_seed(5)
    ours = attention(queries, keys.clone(), keys)
    attention.__class__ = RoPEAttention
    torch.manual_seed(5)
    assert torch.equal(ours, attention(queries, keys.clone(), keys))  # the same dropout draws: sam2's own path


def test_one_head_cross_attention_with_narrow_memories_and_the_first_self_attention_change():
    layers = [
        SimpleNamespace(cross_attn_image=sam2_attention(64), self_attn=sam2_attention(None, repeat=False)),
        SimpleNamespace(cross_attn_image=sam2_attention(64, heads=4), self_attn=sam2_attention(None, repeat=False)),
        SimpleNamespace(cross_attn_image=sam2_attention(None), self_attn=sam2_attention(None, repeat=False)),
    ]
    assert use_cpu_memory_attention(SimpleNamespace(memory_attention=SimpleNamespace(layers=layers))) == 2
    value_after, remembering = _form_classes()
    assert [type(layer.cross_attn_image) for layer in layers] == [value_after, RoPEAttention, RoPEAttention]
    assert [type(layer.self_attn) for layer in layers] == [remembering, RoPEAttention, RoPEAttention]
