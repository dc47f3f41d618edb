"""The checkpoint reader (docs/formats.md, "Checkpoints"): wrappers and key prefixes that training scripts add
(sam2's trainer, MedSAM / LiteMedSAM scripts, DDP, torch.compile, Lightning), on every imaging loader; SAM 2
layouts old (2024) and new (2.1). The realworld case T7 is a test here (a DDP MedSAM2 checkpoint loads the
same weights as the release layout)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope import checkpoints
from fmscope.errors import FmscopeError

sys.path.insert(0, str(Path(__file__).parent))
QUICK = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    return net.state_dict()


@QUICK
@given(
    prefixes=st.lists(st.sampled_from(["module.", "_orig_mod.", "model."]), max_size=2),
    wrappers=st.lists(st.sampled_from(list(checkpoints.WRAPPER_KEYS)), max_size=2),
    extras=st.booleans(),
)
def test_wrappers_and_prefixes_in_any_combination_give_the_model_weights(tmp_path_factory, prefixes, wrappers, extras):
    """Weights under 'model' / 'state_dict' / ... (nested, beside optimiser state and counters) with DDP,
    torch.compile or Lightning prefixes: the same tensors under the model's own key names."""
    state = small_state()
    prefix = "".join(prefixes)
    payload: object = {prefix + key: value for key, value in state.items()}
    for wrapper in wrappers:
        payload = {wrapper: payload, **({"epoch": 3, "optimizer": {"state": {}, "lr": [0.1]}} if extras else {})}
    path = tmp_path_factory.mktemp("ckpt") / "weights.pt"
    torch.save(payload, path)
    read = checkpoints.read_state_dict(path)
    assert list(read) == list(state) and all(torch.equal(read[k], state[k]) for k in state)


def test_a_prefix_on_some_keys_only_and_a_file_without_weights_are_refused_by_name(tmp_path):
    state = small_state()
    mixed = {("module." + key if i % 2 else key): value for i, (key, value) in enumerate(state.items())}
    torch.save({"model": mixed}, tmp_path / "mixed.pt")
    with pytest.raises(FmscopeError, match=r"keys start with the 'module\.' prefix of DistributedDataParallel"):
        checkpoints.read_state_dict(tmp_path / "mixed.pt")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "counters.pt")
    with pytest.raises(FmscopeError, match="holds no state dict of tensors .a dict with keys epoch, optimizer"):
        checkpoints.read_state_dict(tmp_path / "counters.pt")


def test_litemedsam_fine_tuning_checkpoint_under_ddp_loads_the_same_network(tmp_path):
    """LiteMedSAM's train script saves {"model": ..., "epoch": ..., "optimizer": ...}; under DDP every key
    starts with 'module.': the segmenter loader reads the same weights as the release file."""
    from fmscope.imaging.models import load_model

    release = checkpoints.read_state_dict(checkpoints.resolve("litemedsam"))
    torch.save(
        {"model": {f"module.{k}": v for k, v in release.items()}, "epoch": 7, "best_loss": 0.1},
        tmp_path / "lite_medsam_ddp.pth",
    )
    loaded = load_model("litemedsam", checkpoint=tmp_path / "lite_medsam_ddp.pth", device="cpu")
    assert all(torch.equal(value, release[key]) for key, value in loaded.net.state_dict().items())


@pytest.mark.slow
def test_medsam2_ddp_checkpoint_and_sam2_2024_layout(tmp_path):
    """case_T7 (random SAM2.1 Hiera-T weights in the official layout): a DDP training checkpoint loads the
    same weights (the release layout: test_tracking_medsam2; bare and wrapped: the property test above);
    weights in the first SAM 2 layout (2024, no no_obj_embed_spatial) are built from sam2's SAM 2 config
    instead of being refused."""
    from fmscope.imaging.tracking.sam2_model import _build, describe_state_dict, load_sam2

    state = {k: v.detach().clone() for k, v in _build("configs/sam2.1/sam2.1_hiera_t.yaml", 512).state_dict().items()}
    files = {"ddp.pt": {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}}  # release: elsewhere
    for name, content in files.items():
        torch.save(content, tmp_path / name)
        loaded = load_sam2("medsam2", tmp_path / name, device="cpu").predictor.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state), name
        (tmp_path / name).unlink()
    old = _build("configs/sam2/sam2_hiera_t.yaml", 512).state_dict()
    assert describe_state_dict(old) == "SAM 2 (2024, not 2.1) Hiera-T"
    torch.save({"model": old}, tmp_path / "MedSAM2_pretrain.pth")
    loaded = load_sam2("medsam2", tmp_path / "MedSAM2_pretrain.pth", device="cpu").predictor.state_dict()
    assert set(loaded) == set(old) and all(torch.equal(loaded[k], old[k]) for k in old)
