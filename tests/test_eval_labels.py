"""`fmscope eval --label N` on multi-label files as MSD / KiTS ship them (1 = organ, 2 = tumour), NIfTI written by
nibabel: a label in neither file is refused naming the labels each holds, never scored as a perfect match of two
empty masks; two files with no label at all print nan, said (nnU-Net's 0 / 0: MIC-DKFZ/nnUNet#1065); NUC8."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from fmscope.cli import main


def test_a_label_in_neither_file_is_refused_and_empty_masks_are_not_a_perfect_score(tmp_path, capsys):
    ii, jj, _ = np.mgrid[:48, :48, :4]
    truth = np.zeros((48, 48, 4), np.uint8)
    truth[(ii - 24) ** 2 + (jj - 24) ** 2 < 200] = 1  # organ
    truth[(ii - 20) ** 2 + (jj - 26) ** 2 < 20] = 2  # tumour
    pred = ((ii - 25) ** 2 + (jj - 24) ** 2 < 190).astype(np.uint8)
    affine = np.diag([0.8, 0.8, 2.5, 1])
    for name, array in (("truth", truth), ("pred", pred), ("empty", np.zeros_like(pred))):
        nib.save(nib.Nifti1Image(array, affine), tmp_path / f"{name}.nii.gz")

    def evaluate(*files_and_options) -> tuple[int, str, str]:
        code = main(["eval", *map(str, files_and_options)])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = evaluate(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz", "--label", 1)
    assert code == 0 and out.startswith("dice 0.8951")
    code, out, _ = evaluate(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz", "--label", 2)  # missed: 0, scored
    assert code == 0 and out.startswith("dice 0.0000")
    code, out, err = evaluate(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz", "--label", 3)
    assert code == 1 and out == "" and "Traceback" not in err
    assert "Label 3 is in neither the prediction (labels: 1) nor the truth (labels: 1, 2)" in err
    code, out, err = evaluate(tmp_path / "empty.nii.gz", tmp_path / "empty.nii.gz")
    assert code == 0 and out.startswith("dice nan  nsd@1mm nan") and "both masks are empty" in err
