"""The CSV reader for batch manifests and box files: the dialects spreadsheets save (docs/formats.md).

Read as written: UTF-8 with or without a byte-order mark (Excel "CSV UTF-8"), UTF-16 with its mark
(Excel "Unicode Text"), Windows-1252 when the bytes are not UTF-8 (Excel "CSV (Comma delimited)" on
Windows); CRLF, LF or CR line ends; fields separated by ``,`` ``;`` (European locales), tab or ``|``,
told from the header (the separator that yields the required columns), or given by Excel's
``sep=;`` first line; quoted fields (separators, quotes and line breaks inside); header names in
any case and with spaces around them; empty trailing columns and empty rows (Excel keeps them
after a deletion). Refused by name: a row with more fields than the header (an unquoted separator
inside a value), a named column missing, an unnamed column holding values.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from fmscope.errors import FmscopeError

SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}


@dataclass(frozen=True)
class CsvTable:
    """The header (names stripped and lower-cased), the rows as {name: value} with their 1-based data-row
    numbers (empty rows left out, numbers kept as in the file), the separator and the encoding read."""

    columns: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str]], ...]
    separator: str
    encoding: str

    @property
    def separator_name(self) -> str:
        return SEPARATORS.get(self.separator, repr(self.separator))


def _decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name) from the file's bytes."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "UTF-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "UTF-8 with BOM"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "Windows-1252"


def _fields(line: str, separator: str) -> list[str]:
    return next(csv.reader([line], delimiter=separator), [])


def read_csv_table(path: str | os.PathLike, required: tuple[str, ...], what: str = "table") -> CsvTable:
    """The CSV at ``path``; ``required``: column names (lower case) the header must hold, which decide
    the separator. Raises :class:`FmscopeError` naming the problem (and the separator tried)."""
    path = Path(path)
    try:
        text, encoding = _decode(path.read_bytes())
    except (OSError, UnicodeDecodeError) as error:
        raise FmscopeError(
            f"Cannot read {path} as a {what} ({type(error).__name__}: {str(error)[:120]}).", "Save it as CSV UTF-8."
        ) from None
    lines = text.lstrip("\ufeff").splitlines(keepends=True)  # a mark written twice (a re-saved file)
    separator = None
    first = lines[0].rstrip("\r\n") if lines else ""
    if first.lower().startswith("sep=") and len(first) == 5:
        separator, lines = first[4], lines[1:]  # Excel's separator line
    header_line = next((line for line in lines if line.strip()), "")
    if separator is None:

        def score(candidate: str) -> tuple[int, int]:
            names = {name.strip().lower() for name in _fields(header_line, candidate)}
            return len(set(required) & names), len(names)

        separator = max(SEPARATORS, key=score)  # the separator that yields the required columns
    reader = csv.reader(io.StringIO("".join(lines), newline=""), delimiter=separator)
    rows = list(reader)
    while rows and not any(field.strip() for field in rows[0]):
        rows.pop(0)
    if not rows:
        raise FmscopeError(f"{path} is empty.", f"Write a header ({', '.join(required)}) and one row per item.")
    names = [name.strip().lower() for name in rows[0]]
    data = [(number, fields) for number, fields in enumerate(rows[1:], start=1) if any(f.strip() for f in fields)]
    unnamed = [i for i, name in enumerate(names) if not name]
    for i in unnamed:
        if any(i < len(fields) and fields[i].strip() for _, fields in data):
            raise FmscopeError(
                f"{path}: column {i + 1} holds values but has no name in the header.",
                "Name it in the header, or delete the column.",
            )
    missing = [name for name in required if name not in names]
    if missing:
        seen = ", ".join(name for name in names if name) or "nothing"
        raise FmscopeError(
            f"{path} has no column {', '.join(missing)} (its header, read with the "
            f"{SEPARATORS.get(separator, repr(separator))} as separator, holds: {seen[:200]}).",
            f"The header needs {', '.join(required)}; fields may be separated by commas, "
            "semicolons or tabs (Excel: save as 'CSV UTF-8').",
        )
    table = []
    for number, fields in data:
        if len(fields) > len(names) and any(f.strip() for f in fields[len(names) :]):
            raise FmscopeError(
                f"{path}: row {number} has {len(fields)} fields, the header {len(names)}: a "
                f"{SEPARATORS.get(separator, repr(separator))} inside a value that is not quoted?",
                'Put quotes around values that hold the separator ("a;b"), or save from a '
                "spreadsheet, which quotes them.",
            )
        table.append((number, {name: (fields[i] if i < len(fields) else "") for i, name in enumerate(names) if name}))
    return CsvTable(tuple(name for name in names if name), tuple(table), separator, encoding)
