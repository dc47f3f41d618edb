"""The batch manifest reader (docs/formats.md, "Batch manifests"): CSV dialects as spreadsheets save them
(separators, BOM, UTF-16 / Windows-1252, line ends, quoting, Excel's sep= line), ids made from paths; the
realworld case T10 is a test here (both Excel exports read, `--dry-run` says "1 of 1 rows ready")."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmscope.batch.manifest import read_manifest
from fmscope.cli import main
from fmscope.errors import FmscopeError

QUICK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ROWS = [
    {"id": "A1", "job": "segment", "input": "scan one.tif", "box": "30 30 66 58; 1 2 3 4"},
    {"id": "b-2", "job": "segment", "input": "sub/scan;2,x.tif", "box": "5 6 7 8"},
]


def manifest_bytes(
    rows,
    separator=",",
    bom=False,
    line_end="\r\n",
    encoding="utf-8",
    quote_all=False,
    header_case=str.lower,
    sep_line=False,
    trailing_empty=False,
) -> bytes:
    """A manifest as a spreadsheet writes it (csv module: quotes values holding the separator)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(
        buffer, delimiter=separator, lineterminator=line_end, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    )
    columns = list(rows[0])
    writer.writerow([header_case(c) for c in columns] + ([""] if trailing_empty else []))
    for row in rows:
        writer.writerow([row[c] for c in columns] + ([""] if trailing_empty else []))
    if trailing_empty:
        writer.writerow([""] * (len(columns) + 1))  # an empty row Excel keeps after a deletion
    text = (f"sep={separator}{line_end}" if sep_line else "") + buffer.getvalue()
    return (("\ufeff" if bom and encoding == "utf-8" else "") + text).encode(encoding)  # utf-16 writes its own mark


def test_excel_exports_bom_crlf_comma_and_semicolon(tmp_path, capsys):
    """case_T10: English Excel "CSV UTF-8" (BOM, CRLF, commas, quoted path) and German Excel (semicolons):
    both read; `fmscope batch --dry-run` says 1 of 1 rows ready."""
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "scan.tif", rng.integers(0, 255, (96, 96), dtype=np.uint8))
    for name, separator in (("comma.csv", ","), ("semicolon.csv", ";")):
        text = (
            f'\ufeffid{separator}job{separator}input{separator}box\r\nA1{separator}segment{separator}"scan.tif"'
            f"{separator}30 30 66 58\r\n"
        )
        (tmp_path / name).write_bytes(text.encode("utf-8"))
        items = read_manifest(tmp_path / name)
        assert [(i.id, i.job, i.input, i.boxes) for i in items] == [
            ("A1", "segment", tmp_path / "scan.tif", ((30.0, 30.0, 66.0, 58.0),))
        ]
        capsys.readouterr()
        assert main(["batch", str(tmp_path / name), "-o", str(tmp_path / f"out_{name}"), "--dry-run"]) == 0
        assert "1 of 1 rows ready" in capsys.readouterr().out
        assert not (tmp_path / f"out_{name}").exists()


@QUICK
@given(
    separator=st.sampled_from([",", ";", "\t", "|"]),
    bom=st.booleans(),
    line_end=st.sampled_from(["\r\n", "\n", "\r"]),
    encoding=st.sampled_from(["utf-8", "utf-16", "cp1252"]),
    quote_all=st.booleans(),
    header_case=st.sampled_from([str.lower, str.upper, str.title, lambda c: f" {c} "]),
    sep_line=st.booleans(),
    trailing_empty=st.booleans(),
)
def test_manifest_dialects_read_the_same_items(
    tmp_path_factory, separator, bom, line_end, encoding, quote_all, header_case, sep_line, trailing_empty
):
    """Whatever the separator, mark, encoding, line ends, quoting, header case or Excel extras: the same items."""
    folder = tmp_path_factory.mktemp("dialect")
    rows = [dict(row, input=row["input"].replace("one", "één")) for row in ROWS]
    path = folder / "m.csv"
    path.write_bytes(
        manifest_bytes(rows, separator, bom, line_end, encoding, quote_all, header_case, sep_line, trailing_empty)
    )
    items = read_manifest(path)
    assert [(i.id, i.input, i.boxes) for i in items] == [
        ("A1", folder / "scan één.tif", ((30.0, 30.0, 66.0, 58.0), (1.0, 2.0, 3.0, 4.0))),
        ("b-2", folder / "sub/scan;2,x.tif", ((5.0, 6.0, 7.0, 8.0),)),
    ]


def test_unquoted_separator_in_a_value_and_missing_columns_are_refused_by_name(tmp_path):
    (tmp_path / "extra.csv").write_text("job;input;box\nsegment;a;b.tif;1 2 3 4\n")
    with pytest.raises(FmscopeError, match="row 1 has 4 fields, the header 3: a semicolon inside a value"):
        read_manifest(tmp_path / "extra.csv")
    (tmp_path / "nojob.csv").write_text("task;input\nsegment;a.tif\n")
    with pytest.raises(FmscopeError, match="no column job .its header, read with the semicolon as separator"):
        read_manifest(tmp_path / "nojob.csv")


@QUICK
@given(
    names=st.lists(
        st.sampled_from(
            ["scan 1.tif", "scan-1.tif", "scän.tif", "a/b/c.nii.gz", r"C:\data\x.tif", ".hidden.tif", "same.tif"]
        ),
        min_size=1,
        max_size=5,
    )
)
def test_ids_made_from_paths_name_folders_and_are_unique(tmp_path_factory, names):
    folder = tmp_path_factory.mktemp("ids")
    path = folder / "m.csv"
    path.write_bytes(manifest_bytes([{"job": "segment", "input": n, "box": "1 2 3 4"} for n in names]))
    ids = [item.id for item in read_manifest(path)]
    assert len({i.lower() for i in ids}) == len(ids)
    assert all(i and not i.startswith(".") and all(c.isascii() and (c.isalnum() or c in "-_.") for c in i) for i in ids)


def test_ids_differing_only_in_case_are_refused(tmp_path):
    (tmp_path / "m.csv").write_text("id,job,input\nA1,segment,a.tif\na1,segment,b.tif\n")
    with pytest.raises(FmscopeError, match="same id 'a1'.*upper and lower case"):
        read_manifest(tmp_path / "m.csv")


@QUICK
@given(
    values=st.lists(
        st.tuples(st.none() | st.integers(0, 400), st.none() | st.integers(0, 3)), min_size=1, max_size=5
    ).filter(lambda rows: any(s is None for s, _ in rows) or any(c is None for _, c in rows)),
    float_format=st.sampled_from([None, "%.1f", "%.2f", "%g", "%.3e"]),
    separator=st.sampled_from([",", ";", "\t"]),
)
def test_integer_columns_pandas_writes_as_floats_are_read_as_their_integers(
    tmp_path_factory, values, float_format, separator
):
    """NUE4: pandas keeps an integer column with an empty cell as float64 and `to_csv` writes `10.0` (or
    `10.00`, `1.000e+01` with a float_format): a whole number written as a float is that integer."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("floats")
    frame = pd.DataFrame(
        {
            "job": ["track"] * len(values),
            "input": [f"clip{k}.tif" for k in range(len(values))],
            "box": ["1 2 3 4"] * len(values),
            "slice": [np.nan if s is None else s for s, _ in values],
            "channel": [np.nan if c is None else c for _, c in values],
        }
    )
    path = folder / "m.csv"
    frame.to_csv(path, index=False, float_format=float_format, sep=separator)
    items = read_manifest(path)
    assert [(i.slice, i.channel) for i in items] == list(values)
    assert all(type(i.slice) in (int, type(None)) and type(i.channel) in (int, type(None)) for i in items)


def test_a_fractional_or_non_numeric_slice_is_refused_naming_its_column(tmp_path):
    (tmp_path / "half.csv").write_text("job,input,box,slice,channel\nvolume,ct.nii.gz,1 2 3 4,10.5,\n")
    with pytest.raises(FmscopeError, match=r"Row 1: slice '10.5' is not a whole number") as caught:
        read_manifest(tmp_path / "half.csv")
    assert "Int64" in caught.value.fix and "channel" not in str(caught.value)
    (tmp_path / "word.csv").write_text("job,input,box,channel\ntrack,a.tif,1 2 3 4,green\n")
    with pytest.raises(FmscopeError, match=r"Row 1: channel 'green' is not a number"):
        read_manifest(tmp_path / "word.csv")
