"""One reader per omics family (issue 26): the low-level readers of slides, references and scGPT checkpoints
are called only inside their family's reader, so every front end (CLI, napari, batch) reads through it."""

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fmscope"
# low-level call -> the files allowed to make it (the family's reader)
ALLOWED = {
    r"\bread_h5ad\(": {
        "omics/io.py",
        "omics/reference.py",
        "omics/synthetic.py",
    },  # synthetic.py: the packaged PBMC sample it builds tissues from
    r"\bread_zarr\(": {"omics/io.py"},
    r"\bsc\.read_\w+\(|\bread_10x_\w+\(": {"omics/io.py", "omics/visium_counts.py"},  # the slide reader's Visium counts
    r"\bspatialdata_io\.\w+\(": {"omics/io.py"},
    # CSV tables of the omics families: Visium positions and MEX counts (slides), scGPT-spatial gene means (its
    # checkpoint folder), annotation tables (finetune's reader)
    # omics/xenium_files.py: the slide reader's Xenium file check (its refusal quotes a pandas fix)
    # omics/merscope_files.py: the slide reader's MERSCOPE counts and centres joined by cell id
    r"\bpd\.read_csv\(": {
        "omics/io.py",
        "omics/visium_counts.py",
        "omics/models/scgpt.py",
        "omics/finetune.py",
        "omics/xenium_files.py",
        "omics/merscope_files.py",
    },
}


def test_omics_files_are_read_only_through_their_readers():
    calls = {}
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(SRC).as_posix()
        for pattern, allowed in ALLOWED.items():
            code = [
                line
                for line in text.splitlines()
                if re.search(pattern, line) and not line.lstrip().startswith(("#", "def ", '"', "'"))
            ]
            if code and relative not in allowed:
                calls.setdefault(pattern, []).append(relative)
    assert not calls, f"low-level reads outside their family's reader: {calls}"


def test_scgpt_checkpoints_have_one_loader():
    users = sorted(
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if re.search(r"\bload_scgpt\(", p.read_text(encoding="utf-8"))
    )
    loaders = [p for p in users if re.search(r"def load_scgpt\(", (SRC / p).read_text(encoding="utf-8"))]
    assert loaders == ["omics/models/scgpt.py"]
    for path in users:  # every other module loads scGPT through it, never torch.load on best_model.pt
        assert "best_model.pt" not in (SRC / path).read_text(encoding="utf-8") or path == "omics/models/scgpt.py"
