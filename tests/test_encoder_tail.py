"""The encoder split used to train the last stage, and LoRA merged into plain weights."""

from __future__ import annotations

import torch

from fmscope.imaging.models.sam_parts import sam_modeling
from fmscope.training.encoder_tail import add_lora, plain_state, remove_lora, split_encoder


class TinyVitNet(torch.nn.Module):
    """A SAM network stand-in holding a small random ViT image encoder (SAM's own class)."""

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = sam_modeling().ImageEncoderViT(
            img_size=64,
            patch_size=8,
            embed_dim=32,
            depth=5,
            num_heads=2,
            out_chans=16,
            window_size=4,
            global_attn_indexes=(1, 4),
            use_rel_pos=True,
        )


def _nets(segmenter):
    torch.manual_seed(0)
    return [(segmenter.model.net, torch.randn(1, 3, 256, 256)), (TinyVitNet().eval(), torch.randn(1, 3, 64, 64))]


def test_head_then_tail_is_the_encoder(segmenter):
    for net, x in _nets(segmenter):
        split = split_encoder(net)
        with torch.inference_mode():
            assert torch.equal(split.tail(split.head(x)), net.image_encoder(x))
        assert all(any(k.startswith(f"{p}.") for k in net.state_dict()) for p in split.parts)
        if net is segmenter.model.net:
            assert split.parts == ["image_encoder.layers.3", "image_encoder.neck"]  # TinyViT's last stage
    assert split.parts == [
        "image_encoder.blocks.2",
        "image_encoder.blocks.3",
        "image_encoder.blocks.4",
        "image_encoder.neck",
    ]


def test_lora_trains_adapters_only_and_merges_into_plain_weights():
    net = TinyVitNet().eval()
    split = split_encoder(net)
    x = torch.randn(1, 3, 64, 64)
    base = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        untouched = net.image_encoder(x)
    adapters = add_lora(split, rank=2, alpha=2.0, seed=0)
    assert len(adapters) == 2 * 3 * 4  # A and B of qkv, proj, lin1, lin2 in each of the 3 tail blocks
    with torch.no_grad():
        assert torch.equal(net.image_encoder(x), untouched)  # B starts at zero
        for b in adapters[1::2]:
            b.normal_()
        adapted = net.image_encoder(x)
    assert not torch.allclose(adapted, untouched)
    state = plain_state(net, split.parts)
    assert not [k for k in state if "parametrizations" in k]
    qkv = "image_encoder.blocks.4.attn.qkv.weight"
    assert not torch.equal(state[qkv], base[qkv])
    assert torch.equal(state["image_encoder.blocks.4.norm1.weight"], base["image_encoder.blocks.4.norm1.weight"])

    remove_lora(net)  # back to the base weights
    assert all(torch.equal(v, base[k]) for k, v in net.state_dict().items())
    fresh = TinyVitNet().eval()
    fresh.load_state_dict(base)
    fresh.load_state_dict(state, strict=False)
    with torch.no_grad():
        assert torch.allclose(fresh.image_encoder(x), adapted, atol=1e-5)
