"""docs/formats.md names a test for every row, and those tests exist (file::name)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_row_of_formats_md_names_existing_tests():
    text = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert rows
    missing = []
    for row in rows:
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row.rsplit("|", 2)[-2])
        assert named, f"a row names no test: {row[:100]}"
        for file, name in named:
            source = ROOT / file
            text = source.read_text(encoding="utf-8") if source.is_file() else ""
            if not re.search(rf"^def {name}\(", text, re.MULTILINE):
                missing.append(f"{file}::{name}")
    assert not missing, f"docs/formats.md names tests that do not exist: {missing}"
