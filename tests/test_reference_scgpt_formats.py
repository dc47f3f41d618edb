"""Single-cell references and scGPT checkpoints as their formats allow them (issue 26): counts wherever the
file keeps them, missing cell-type labels, checkpoint wrappers and upstream key layouts old and new. The
realworld cases S5 and S7 are tests here with the right value, next to Hypothesis tests generating variants
(docs/formats.md names them). Files are written with anndata / scanpy and torch, as users write them.
"""

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope import samples
from fmscope.errors import FmscopeError
from fmscope.omics.deconvolve import deconvolve_nnls
from fmscope.omics.deconvolve_embedding import deconvolve_embedding
from fmscope.omics.models.scgpt import load_scgpt
from fmscope.omics.reference import read_reference

FIXTURE = Path(__file__).parent / "fixtures" / "scgpt_tiny"
FEW = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def pbmc_counts() -> ad.AnnData:
    """pbmc68k_reduced's 700 cells with integer counts rebuilt from its log-normalised .raw and n_counts."""
    pbmc = ad.read_h5ad(samples.sample_data_dir() / "pbmc68k_reduced.h5ad")
    lognorm = pbmc.raw.X.toarray() if sp.issparse(pbmc.raw.X) else np.asarray(pbmc.raw.X)
    scaled_up = np.expm1(lognorm)
    counts = np.round(scaled_up / scaled_up.sum(1, keepdims=True) * pbmc.obs["n_counts"].to_numpy()[:, None])
    return ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=pbmc.obs[["bulk_labels"]].copy(),
        var=pd.DataFrame(index=pbmc.raw.var_names),
    )


@pytest.fixture(scope="module")
def spots(pbmc_counts) -> ad.AnnData:
    """120 pseudo-spots of 8 reference cells each (counts), as in case S7."""
    labels = pbmc_counts.obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(1)
    rows = [rng.choice(np.flatnonzero(np.isin(labels, rng.choice(sorted(set(labels)), 2))), 8) for _ in range(120)]
    matrix = np.stack([np.asarray(pbmc_counts.X[r].sum(0)).ravel() for r in rows])
    return ad.AnnData(X=sp.csr_matrix(matrix), var=pbmc_counts.var.copy())


def _scanpy_way(reference: ad.AnnData) -> ad.AnnData:
    """The scanpy tutorial layout: counts in layers['counts'], X normalised, log1p'd and scaled, no .raw."""
    import scanpy as sc

    scanpy_way = reference.copy()
    scanpy_way.layers["counts"] = scanpy_way.X.copy()
    sc.pp.normalize_total(scanpy_way, target_sum=1e4)
    sc.pp.log1p(scanpy_way)
    sc.pp.scale(scanpy_way, max_value=10)
    return scanpy_way


# --- references --------------------------------------------------------------------------------------------


@pytest.mark.slow  # ~8 s: two deconvolutions of each method
def test_case_s7_a_scanpy_layout_reference_gives_the_control_proportions(pbmc_counts, spots, tmp_path):
    pbmc_counts.write_h5ad(tmp_path / "ref_counts.h5ad")
    _scanpy_way(pbmc_counts).write_h5ad(tmp_path / "ref_scanpy.h5ad")
    control = read_reference(tmp_path / "ref_counts.h5ad", "bulk_labels")
    scanpy_way = read_reference(tmp_path / "ref_scanpy.h5ad", "bulk_labels")
    assert any("layers['counts']" in n for n in scanpy_way.notices)
    expected = deconvolve_nnls(spots, control.adata, "bulk_labels")
    assert np.abs(deconvolve_nnls(spots, scanpy_way.adata, "bulk_labels") - expected).to_numpy().max() <= 0.05
    expected = deconvolve_embedding(spots, control.adata, "bulk_labels", n_pseudo=400)
    got = deconvolve_embedding(spots, scanpy_way.adata, "bulk_labels", n_pseudo=400)
    assert np.abs(got - expected).to_numpy().max() <= 0.05  # was an internal error (NaN from log1p of negatives)


def test_a_reference_with_only_scaled_values_is_refused_by_name(pbmc_counts, tmp_path):
    scaled = _scanpy_way(pbmc_counts)
    del scaled.layers["counts"]
    scaled.write_h5ad(tmp_path / "scaled.h5ad")
    with pytest.raises(FmscopeError, match="scaled values"):
        read_reference(tmp_path / "scaled.h5ad", "bulk_labels")


MISSING = [np.nan, "", "unknown", "Unknown", "nan", "unassigned", "NA"]


@FEW
@given(
    layout=st.sampled_from(["X counts", "scanpy layers", "no X, counts layer", "X lognorm, raw counts"]),
    missing=st.lists(st.sampled_from(MISSING), min_size=0, max_size=6),
    sparse=st.booleans(),
)
def test_reference_layouts_and_missing_labels_read_the_same_cells(pbmc_counts, tmp_path, layout, missing, sparse):
    """Invariant: whatever the layout keeps the counts in, the same counts are read; cells with a missing label
    (NaN, empty, 'unknown' ...) are exactly the ones left out, with a notice."""
    import scanpy as sc

    reference = pbmc_counts[:200].copy()
    if not sparse:
        reference.X = reference.X.toarray()
    labels = reference.obs["bulk_labels"].astype(object).to_numpy()
    labels[: len(missing)] = missing
    reference.obs["bulk_labels"] = labels
    truth = reference[len(missing) :].copy().X  # a copy: normalize_total below works in place
    if layout == "scanpy layers":
        reference = _scanpy_way(reference)
    elif layout == "no X, counts layer":
        reference = ad.AnnData(X=None, layers={"counts": reference.X}, obs=reference.obs, var=reference.var)
    elif layout == "X lognorm, raw counts":
        reference.raw = reference.copy()
        sc.pp.normalize_total(reference, target_sum=1e4)
        sc.pp.log1p(reference)
    path = tmp_path / f"ref_{abs(hash((layout, tuple(map(str, missing)), sparse)))}.h5ad"
    reference.write_h5ad(path)
    read = read_reference(path, "bulk_labels")
    matrix = read.adata.X.toarray() if sp.issparse(read.adata.X) else np.asarray(read.adata.X)
    assert np.array_equal(matrix, truth.toarray() if sp.issparse(truth) else truth)
    assert read.adata.n_obs == 200 - len(missing) and read.adata.raw is None
    assert bool(missing) == any("no label" in n for n in read.notices)


def test_a_reference_without_cell_types_is_refused_naming_the_column(pbmc_counts, tmp_path):
    reference = pbmc_counts[:50].copy()
    reference.obs["bulk_labels"] = ["unknown"] * 49 + ["B cell"]
    reference.write_h5ad(tmp_path / "ref.h5ad")
    with pytest.raises(FmscopeError, match=r"obs\['bulk_labels'\] has 1 cell type"):
        read_reference(tmp_path / "ref.h5ad", "bulk_labels")


# --- scGPT checkpoints -------------------------------------------------------------------------------------


def _layout(state: dict, attention: str) -> dict:
    """The same tensors under the attention key names of a layout the official code saves."""
    renames = {
        "torch": {},
        "flash-attn 1 (Wqkv)": {
            "self_attn.in_proj_weight": "self_attn.Wqkv.weight",
            "self_attn.in_proj_bias": "self_attn.Wqkv.bias",
        },
        "PR #351 (_impl)": {
            "self_attn.in_proj_weight": "self_attn._impl.Wqkv.weight",
            "self_attn.in_proj_bias": "self_attn._impl.Wqkv.bias",
            "self_attn.out_proj.": "self_attn._impl.out_proj.",
        },
    }[attention]
    renamed = {}
    for key, tensor in state.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        renamed[key] = tensor
    return renamed


def _folder(tmp_path: Path, state: dict, name: str, fast: bool = False) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(FIXTURE / "vocab.json", folder)
    args = json.loads((FIXTURE / "args.json").read_text())
    args["fast_transformer"] = fast
    (folder / "args.json").write_text(json.dumps(args))
    torch.save(state, folder / "best_model.pt")
    return folder


def _same_weights(model, control) -> bool:
    expected = control.state_dict()
    return all(torch.equal(tensor, expected[key]) for key, tensor in model.state_dict().items())


def test_case_s5_an_scgpt_checkpoint_in_the_pr351_layout_loads_the_same(tmp_path):
    control, _, _ = load_scgpt(FIXTURE)
    state = torch.load(FIXTURE / "best_model.pt", map_location="cpu", weights_only=True)
    model, _, report = load_scgpt(_folder(tmp_path, _layout(state, "PR #351 (_impl)"), "fa2", fast=True))
    assert len(report.renamed) == 8 and _same_weights(model, control)
    genes, values = torch.tensor([[1, 5, 9, 12]]), torch.tensor([[-2.0, 1.0, 3.0, 7.0]])
    assert torch.allclose(model.cell_embedding(genes, values), control.cell_embedding(genes, values), atol=1e-6)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attention=st.sampled_from(["torch", "flash-attn 1 (Wqkv)", "PR #351 (_impl)"]),
    prefixes=st.lists(st.sampled_from(["module.", "_orig_mod.", "model."]), max_size=2),
    wrapper=st.sampled_from([None, "model", "state_dict"]),
)
def test_scgpt_wrappers_prefixes_and_key_layouts_load_the_same_weights(tmp_path, attention, prefixes, wrapper):
    """Invariant: any wrapper dict, DDP / torch.compile prefix and official attention layout loads the very same
    weights as the official-layout file."""
    control, _, _ = load_scgpt(FIXTURE)
    state = _layout(torch.load(FIXTURE / "best_model.pt", map_location="cpu", weights_only=True), attention)
    prefix = "".join(prefixes)
    state = {prefix + key: tensor for key, tensor in state.items()}
    saved = state if wrapper is None else {wrapper: state, "epoch": torch.tensor(3)}
    name = f"c{abs(hash((attention, prefix, wrapper)))}"
    model, _, report = load_scgpt(_folder(tmp_path, saved, name, fast=attention != "torch"))
    assert _same_weights(model, control) and not report.missing and not report.unexpected


def test_a_foreign_key_is_still_refused_naming_it(tmp_path):
    state = torch.load(FIXTURE / "best_model.pt", map_location="cpu", weights_only=True)
    state["transformer_encoder.layers.0.self_attn._impl.rotary.freq"] = torch.ones(2)
    with pytest.raises(FmscopeError, match="rotary.freq"):
        load_scgpt(_folder(tmp_path, state, "foreign"))


ARCHITECTURE_KEYS = ("embsize", "nheads", "d_hid", "nlayers")  # read_args's order
OFFICIAL_ALIASES = {"embsize": "layer_size", "nheads": "nhead"}  # the fine-tuning configs' names (d_hid: canonical)


def _args_folder(tmp_path: Path, args: object, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file in ("vocab.json", "best_model.pt"):
        shutil.copy(FIXTURE / file, folder)
    (folder / "args.json").write_text(json.dumps(args))
    return folder


@FEW
@given(
    actions=st.fixed_dictionaries(
        {
            key: st.sampled_from(["keep", "drop", "text", "decimal"] + (["alias"] if key in OFFICIAL_ALIASES else []))
            for key in ARCHITECTURE_KEYS
        }
    )
)
def test_args_json_keys_renamed_dropped_or_retyped_load_the_same_model_or_are_refused_naming_the_key(
    tmp_path_factory, actions
):
    """NUG1, an scGPT folder whose args.json has the architecture keys under the official fine-tuning configs'
    names (nhead, layer_size), lacks some, or gives them as text ("4") or decimals (4.0): each key is read
    under its alias or, for embsize / d_hid / nlayers, from the weights' shapes, said in a note, and the model
    loaded is the official one; a retyped key, or no head count at all, is refused naming args.json, the key
    and the fix (was: KeyError 'nheads' / TypeError as fmscope bugs)."""
    official = json.loads((FIXTURE / "args.json").read_text())
    args = {key: value for key, value in official.items() if key not in ARCHITECTURE_KEYS}
    for key, action in actions.items():
        value = official[key]
        if action == "keep":
            args[key] = value
        elif action == "alias":
            args[OFFICIAL_ALIASES[key]] = value
        elif action == "text":
            args[key] = str(value)
        elif action == "decimal":
            args[key] = float(value)
    folder = _args_folder(tmp_path_factory.mktemp("args"), args, "scGPT_finetuned")
    refused = [
        key
        for key in ARCHITECTURE_KEYS
        if actions[key] in ("text", "decimal")
        or (key, actions[key]) == ("nheads", "drop")
        # layer_size is also d_hid in those configs: the fixture's d_hid (64) differs from its embsize (32)
        or (key == "d_hid" and actions["d_hid"] == "drop" and actions["embsize"] == "alias")
    ]
    if refused:
        with pytest.raises(FmscopeError) as raised:
            load_scgpt(folder)
        message = str(raised.value)
        assert str(folder / "args.json") in message and f"'{refused[0]}'" in message and "Fix: " in message
        if actions[refused[0]] == "text":
            assert f'"{refused[0]}": {official[refused[0]]}.' in message  # the exact fix: the number unquoted
        return
    control, _, _ = load_scgpt(FIXTURE)
    model, _, report = load_scgpt(folder)
    assert _same_weights(model, control) and model.config == control.config
    changed = [key for key, action in actions.items() if action != "keep"]
    assert len(report.args_notes) == len(changed)
    assert all(any(f"no '{key}'" in note for note in report.args_notes) for key in changed)


def test_an_args_json_that_contradicts_its_weights_or_itself_is_refused_naming_the_keys(tmp_path):
    """The shapes judge embsize / d_hid / nlayers, whatever name gave them; a head count given twice differently, or
    not dividing embsize, is refused; a fine-tuning config that loaded a pre-trained model (load_model) has a
    layer_size / nhead / nlayers its script ignored (examples/finetune_integration.py): not read, so without
    nheads it is refused, pointing to the loaded model's args.json."""
    official = json.loads((FIXTURE / "args.json").read_text())
    cases = {
        "layer_size": (
            {**{k: v for k, v in official.items() if k != "embsize"}, "layer_size": 64},
            r'embedding size .\'embsize\'. as "layer_size": 64, but the weights have 32',
        ),
        "nlayers": (
            {**official, "nlayers": 3},
            r'"nlayers": 3, but the weights have 2 .transformer_encoder.layers.0 \.\.\. 1',
        ),
        "twice": (
            {**official, "nhead": 8},
            r'number of attention heads twice, differently: "nheads": 4 and "nhead": 8',
        ),
        "indivisible": ({**official, "nheads": 3}, "embsize 32 is not divisible by nheads 3"),
        "list": ([official], "holds a JSON list, not an object of settings"),
        "pad_value": ({**official, "pad_value": "-2"}, r"'pad_value' is \"-2\", not a number"),
        "n_bins": ({**official, "n_bins": "51"}, r'Fix: Write it as a JSON number, without quotes: "n_bins": 51\.'),
        "tutorial config": (
            {
                **{k: v for k, v in official.items() if k != "nheads"},
                "nhead": 4,
                "layer_size": 128,
                "load_model": "../save/scGPT_human",
            },
            r"no usable 'nheads' or 'nhead' .* loaded \.\./save/scGPT_human.*\n"
            r"Fix: .*\.\./save/scGPT_human/args\.json has it",
        ),
    }
    for name, (args, message) in cases.items():
        with pytest.raises(FmscopeError, match=message):
            load_scgpt(_args_folder(tmp_path, args, name.replace(" ", "_")))
    # examples/pretrain.py given --load-model saves the loaded model's values beside load_model: read as they are
    model, _, report = load_scgpt(_args_folder(tmp_path, {**official, "load_model": "../save/scGPT_human"}, "pretrain"))
    assert model.config.n_heads == 4 and not report.args_notes


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_an_ill_typed_head_count_is_one_clear_error_on_either_backend(tmp_path, capsys, backend):
    """`fmscope embed --backend torch|openvino` on a folder with "nheads": "4": exit 1, the message names args.json,
    the key and the fix, nothing written (was: TypeError on torch, accepted on OpenVINO); with "nhead" it embeds the
    same cells as the official folder, the alias said in a note."""
    from fmscope.cli import main

    official = json.loads((FIXTURE / "args.json").read_text())
    genes = [gene for gene in json.loads((FIXTURE / "vocab.json").read_text()) if not gene.startswith("<")]
    rng = np.random.default_rng(0)
    cells = ad.AnnData(rng.poisson(2, (12, len(genes))).astype(np.float32), var=pd.DataFrame(index=genes))
    cells.obsm["spatial"] = rng.uniform(0, 100, (12, 2))
    cells.write_h5ad(tmp_path / "cells.h5ad")
    text = _args_folder(tmp_path, {**official, "nheads": "4"}, "text")
    alias = _args_folder(tmp_path, {**{k: v for k, v in official.items() if k != "nheads"}, "nhead": 4}, "alias")

    def embed(folder: Path, output: str) -> tuple[int, str]:
        options = ["--microns-per-unit", "1", "--device", "cpu", "--backend", backend, "-o", str(tmp_path / output)]
        code = main(["embed", str(tmp_path / "cells.h5ad"), "--checkpoint", str(folder), *options])
        return code, capsys.readouterr().err

    code, err = embed(text, "text.h5ad")
    assert code == 1 and not (tmp_path / "text.h5ad").exists() and "Traceback" not in err
    assert f"{text / 'args.json'}: 'nheads' is \"4\" (text), not a positive whole number." in err
    assert 'Fix: Write it as a JSON number, without quotes: "nheads": 4.' in err
    code, err = embed(alias, "alias.h5ad")
    assert code == 0 and "note: args.json has no 'nheads': read the number of attention heads from 'nhead' (4)" in err
    assert embed(FIXTURE, "official.h5ad")[0] == 0
    embedded = ad.read_h5ad(tmp_path / "alias.h5ad").obsm["X_fmscope"]
    assert np.array_equal(embedded, ad.read_h5ad(tmp_path / "official.h5ad").obsm["X_fmscope"])
