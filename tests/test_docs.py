"""The documentation (README.md and docs/*.md) against the code: fast, no model is loaded.

Conventions checked here (state them in docs/benchmarks.md when changing them):

* CLI options. An *invocation* is a line of a shell code block (fence with no language, ``bash``, ``sh``,
  ``shell`` or ``console``; ``\\`` continues a line, ``#`` starts a comment) or an inline backtick span that
  starts with ``fmscope `` (or ``.venv/bin/fmscope ``). Its command is read as the parser reads it
  (``fmscope image-expression train ...``), and every ``--option`` / ``-o`` after it must be an option of that
  command's parser (``fmscope.cli.build_parser()``, subparsers walked). A word after ``fmscope`` that is not a
  command is an unknown command when the invocation has an option (without one it is a name, such as the
  napari layer `fmscope tracks`, or prose in a file tree).
* Figures. Every row with a digit of a table in README.md's headline figures section and in
  docs/benchmarks.md carries the command that produced it: a backticked command in the row itself, or the one
  command of the paragraph just above the table (its caption). A command is a backtick span that runs
  ``python benchmarks/X.py ...`` / ``python scripts/X.py`` / ``python -m pytest tests/...`` (``.venv/bin/``
  and ``xvfb-run ...`` before it allowed), ``fmscope COMMAND ...`` or ``make TARGET``. Each section of
  docs/benchmarks.md that quotes numbers names at least one command.
* Commands. A quoted ``python benchmarks/X.py --opt`` (anywhere in the pages) must name an existing script that
  defines ``--opt``; ``make TARGET`` must be a Makefile target; ``python -m pytest FILE`` an existing test file.
* Links. Every relative link and image path resolves to a file (and ``page.md#section`` to a heading).
* Code spans stay on one line (the checks read them line by line).
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from fmscope.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
OPTION = re.compile(r"(?<![\w-])(--[A-Za-z0-9][\w-]*|-[A-Za-z])(?![\w-])")
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
PROGRAMS = {"python", "python3", "fmscope", "make"}


@dataclass(frozen=True)
class Snippet:
    """Text of a page that may hold an invocation: ``line`` is 1-based in ``page``."""

    page: Path
    line: int
    text: str
    code: bool  # a shell code-block line (else an inline span or a table row)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _fences(lines: list[str]) -> list[str | None]:
    """For each line: the language of the code block it is inside ('' for none given), or None outside."""
    inside: str | None = None
    result: list[str | None] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```"):
            inside = stripped[3:].strip().lower() if inside is None else None
            result.append(None)
        else:
            result.append(inside)
    return result


def _snippets(page: Path) -> list[Snippet]:
    """Shell code lines (continuations joined, comments cut) and inline backtick spans of a page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fences = _fences(lines)
    found: list[Snippet] = []
    pending: tuple[int, str] | None = None
    for number, (line, fence) in enumerate(zip(lines, fences, strict=True), start=1):
        if fence is None:
            found.extend(Snippet(page, number, span, False) for span in SPAN.findall(line))
            continue
        if fence not in SHELL_FENCES:
            continue
        text = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
        start, joined = pending if pending else (number, "")
        joined = f"{joined} {text.rstrip().removesuffix(chr(92))}"
        if text.rstrip().endswith("\\"):
            pending = (start, joined)
        else:
            pending = None
            found.extend(Snippet(page, start, part, True) for part in joined.split("&&"))
    return found


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Subcommand name -> its parser (one level)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _invocation(text: str) -> list[str] | None:
    """The words after ``fmscope`` when ``text`` starts by running it (after a ``$`` prompt or ``VAR=value``
    settings), else None."""
    words = text.split()
    while words and (words[0] == "$" or re.match(r"^[A-Z_][A-Z0-9_]*=", words[0])):
        words = words[1:]
    if words and (words[0] == "fmscope" or words[0].endswith("/fmscope")):
        return words[1:]
    return None


def _check_invocation(parser: argparse.ArgumentParser, words: list[str]) -> tuple[str, list[str]]:
    """Walk ``words`` down the subparsers; returns (command path, problems)."""
    path = ["fmscope"]
    problems = []
    rest = list(words)
    while (commands := _commands(parser)) and rest and not rest[0].startswith("-"):
        name = rest[0].strip("[]`,.;:()")
        if name not in commands:
            problems.append(f"'{' '.join(path)} {name}' is not a command (commands: {', '.join(commands)})")
            return " ".join(path), problems
        parser = commands[name]
        path.append(name)
        rest = rest[1:]
    known = set(parser._option_string_actions)
    for option in OPTION.findall(" ".join(rest)):
        if option not in known:
            problems.append(f"'{' '.join(path)}' has no option {option}")
    return " ".join(path), problems


def test_cli_options_in_docs_exist() -> None:
    """Every ``fmscope COMMAND --option`` in the README and docs/ is an option of that command's parser."""
    parser = build_parser()
    problems: list[str] = []
    checked = 0
    for page in PAGES:
        for snippet in _snippets(page):
            words = _invocation(snippet.text)
            if words is None:
                continue
            _, found = _check_invocation(parser, words)
            if not OPTION.search(" ".join(words)) and any("not a command" in f for f in found):
                continue  # a name such as the napari layer `fmscope tracks`, or prose in a file tree: no invocation
            checked += 1
            problems.extend(f"{snippet.where}: {problem}  [{snippet.text.strip()[:100]}]" for problem in found)
    assert checked > 30, f"only {checked} fmscope invocations found: is the snippet reader broken?"
    assert not problems, "options or commands in the docs that the CLI does not have:\n" + "\n".join(problems)


def test_option_check_catches_a_wrong_option() -> None:
    """The checker itself: a made-up option and a made-up command are reported, real ones are not."""
    parser = build_parser()
    assert _check_invocation(parser, "segment IMG --box 1 2 3 4 -o out.tif".split())[1] == []
    assert _check_invocation(parser, "image-expression predict S --grid-um 50 -o x.zarr".split())[1] == []
    assert "no option --bogus" in _check_invocation(parser, "segment IMG --bogus".split())[1][0]
    assert "no option --grid-um" in _check_invocation(parser, "image-expression train S --grid-um 5".split())[1][0]
    assert "not a command" in _check_invocation(parser, "no-such-command --x".split())[1][0]


def _command_problem(span: str) -> str | None | bool:
    """False when ``span`` is not a command; None when it is a valid one; else what is wrong with it."""
    try:
        words = shlex.split(span)
    except ValueError:
        words = span.split()
    if words and words[0] == "xvfb-run":  # xvfb-run [-a] [-s "..."] PROGRAM ...
        words = words[1:]
        while words and Path(words[0]).name not in PROGRAMS:
            words = words[1:]
    if len(words) < 2 or Path(words[0]).name not in PROGRAMS:
        return False
    program, target = Path(words[0]).name, words[1]
    if program == "fmscope":
        return None
    if program == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M)
        return None if target in targets else f"'make {target}': no such Makefile target"
    if target == "-m" and words[2:3] == ["pytest"]:
        tests = [word for word in words[3:] if not word.startswith("-")]
        missing = [t for t in tests if not (ROOT / t.split("::")[0]).exists()]
        return f"no test file {missing[0]}" if missing else None
    if not target.startswith(("benchmarks/", "scripts/")):
        return False
    script = ROOT / target
    if not script.is_file():
        return f"no script {target}"
    source = script.read_text(encoding="utf-8")
    for option in OPTION.findall(" ".join(words[2:])):
        if f'"{option}"' not in source:
            return f"{target} defines no option {option}"
    return None


def test_scripts_and_targets_in_docs_exist() -> None:
    """Every ``python benchmarks/X.py --opt`` / ``make TARGET`` / ``python -m pytest tests/...`` quoted anywhere in
    the README and docs/ names a script defining ``--opt``, a Makefile target, a test file."""
    problems = []
    for page in PAGES:
        for snippet in _snippets(page):
            problem = _command_problem(snippet.text.strip())
            if problem:
                problems.append(f"{snippet.where}: `{snippet.text.strip()[:100]}`: {problem}")
    assert not problems, "\n".join(problems)


def _tables(lines: list[str], first: int, last: int) -> list[tuple[int, list[int]]]:
    """Tables in lines[first:last] (0-based): (index of the header line, indices of the body rows)."""
    tables = []
    index = first
    while index < last:
        if (
            lines[index].lstrip().startswith("|")
            and index + 1 < last
            and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[index + 1])
        ):
            body = []
            row = index + 2
            while row < last and lines[row].lstrip().startswith("|"):
                body.append(row)
                row += 1
            tables.append((index, body))
            index = row
        else:
            index += 1
    return tables


def _caption(lines: list[str], header: int) -> str:
    """The paragraph just above a table (blank lines skipped; stops at a heading, table or blank line)."""
    index = header - 1
    while index >= 0 and not lines[index].strip():
        index -= 1
    paragraph = []
    while index >= 0 and lines[index].strip() and not lines[index].lstrip().startswith(("#", "|")):
        paragraph.insert(0, lines[index])
        index -= 1
    return " ".join(paragraph)


def _section_bounds(lines: list[str], title_word: str | None) -> tuple[int, int]:
    """(first, last) line indices of the ``## ...`` section whose title has ``title_word``; the whole page if None."""
    if title_word is None:
        return 0, len(lines)
    fences = _fences(lines)
    starts = [i for i, line in enumerate(lines) if fences[i] is None and re.match(r"^##\s", line)]
    for position, start in enumerate(starts):
        if title_word in lines[start].lower():
            return start + 1, starts[position + 1] if position + 1 < len(starts) else len(lines)
    raise AssertionError(f"no '## ... {title_word} ...' section")


def _figure_problems(page: Path, title_word: str | None) -> tuple[int, list[str]]:
    """Rows with a digit and no command (own or caption's), and invalid commands; returns (rows checked, problems)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    first, last = _section_bounds(lines, title_word)
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
    problems: list[str] = []
    rows_checked = 0
    for header, body in _tables(lines, first, last):
        caption_commands = set()
        for span in SPAN.findall(_caption(lines, header)):
            problem = _command_problem(span)
            if problem is not False:
                caption_commands.add(span)
                if problem:
                    problems.append(f"{name}:{header + 1}: caption command `{span}`: {problem}")
        for row in body:
            spans = SPAN.findall(lines[row])
            commands = []
            for span in spans:
                problem = _command_problem(span)
                if problem is not False:
                    commands.append(span)
                    if problem:
                        problems.append(f"{name}:{row + 1}: `{span}`: {problem}")
            if not re.search(r"\d", SPAN.sub("", lines[row])):
                continue
            rows_checked += 1
            if not commands and len(caption_commands) != 1:
                problems.append(
                    f"{name}:{row + 1}: a figure with no command in its row, and "
                    f"{len(caption_commands)} commands in the table's caption: {lines[row][:90]}"
                )
    return rows_checked, problems


def test_readme_headline_figures_carry_their_commands() -> None:
    rows, problems = _figure_problems(ROOT / "README.md", "figures")
    assert rows >= 5, f"the README's figures section has {rows} figure rows"
    assert not problems, "\n".join(problems)


def test_benchmark_figures_carry_their_commands() -> None:
    page = ROOT / "docs" / "benchmarks.md"
    rows, problems = _figure_problems(page, None)
    assert rows >= 50, f"docs/benchmarks.md has {rows} figure rows"
    lines = page.read_text(encoding="utf-8").splitlines()
    fences = _fences(lines)
    starts = [i for i, line in enumerate(lines) if fences[i] is None and re.match(r"^#{2,3}\s", line)]
    for position, start in enumerate(starts):
        end = starts[position + 1] if position + 1 < len(starts) else len(lines)
        section = "\n".join(lines[start + 1 : end])
        has_numbers = re.search(r"\d", SPAN.sub("", section))
        if has_numbers and not any(_command_problem(span) is not False for span in SPAN.findall(section)):
            problems.append(
                f"docs/benchmarks.md:{start + 1}: section '{lines[start]}' quotes figures, names no command"
            )
    assert not problems, "\n".join(problems)


def test_figure_check_catches_a_row_without_command(tmp_path: Path) -> None:
    """The checker itself: a caption with one command covers its rows; under two, a row needs its own."""
    assert _command_problem("python benchmarks/tracking.py --many 16 20") is None
    assert _command_problem("xvfb-run -a .venv/bin/python benchmarks/napari_latency.py") is None
    assert "defines no option" in _command_problem("python benchmarks/tracking.py --no-such-option")
    assert "no script" in _command_problem("python benchmarks/nothing.py")
    assert "no such Makefile target" in _command_problem("make nothing")
    assert _command_problem("benchmarks/tracking.py") is False
    page = tmp_path / "figures.md"
    page.write_text(
        "One command, `python benchmarks/segment.py`:\n\n| figure | value |\n|---|---|\n| encoder | 1007 ms |\n"
        "\nTwo, `python benchmarks/segment.py` and `make bench`:\n\n| figure | value |\n|---|---|\n"
        "| encoder | 1007 ms |\n| decoder (`python benchmarks/speed.py`) | 40 ms |\n| no number | - |\n"
    )
    rows, problems = _figure_problems(page, None)
    assert rows == 3
    assert len(problems) == 1 and "figures.md:11:" in problems[0], problems


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading text."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    lines = page.read_text(encoding="utf-8").splitlines()
    fences = _fences(lines)
    anchors: set[str] = set()
    for line, fence in zip(lines, fences, strict=True):
        if fence is None and (match := re.match(r"^#{1,6}\s+(.*)$", line)):
            slug = _slug(match.group(1))
            candidate, count = slug, 0
            while candidate in anchors:
                count += 1
                candidate = f"{slug}-{count}"
            anchors.add(candidate)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link or image of a page names a file that exists (and a heading, for ``#section``); every
    code span closes on its line."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fences = _fences(lines)
    problems = []
    for number, (line, fence) in enumerate(zip(lines, fences, strict=True), start=1):
        if fence is not None:
            continue
        if line.count("`") % 2 and not line.lstrip().startswith("```"):
            problems.append(
                f"{page.relative_to(ROOT)}:{number}: a `code span` runs over a line end: keep it on one "
                "line (the checks above read spans line by line)"
            )
        for target in LINK.findall(SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            path_part, _, anchor = target.partition("#")
            file = (page.parent / path_part).resolve() if path_part else page
            if not file.exists():
                problems.append(f"{page.relative_to(ROOT)}:{number}: {target} does not exist")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                problems.append(f"{page.relative_to(ROOT)}:{number}: {target}: no heading '#{anchor}' in {file.name}")
    assert not problems, "\n".join(problems)


def test_readme_states_the_test_command_and_stays_short() -> None:
    """CI runs the README's test command (``make test``, stated near the top); the README stays a front page."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert any("make test" in line for line in lines[:30])
    assert len(lines) <= 260, f"README.md has {len(lines)} lines: move detail to docs/"
