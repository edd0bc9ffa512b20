"""The README and docs/ as a user meets them: short, a quick start first, links that resolve,
install commands that work without PyPI, and every `edgemobile …` command they show accepted
by the CLI's own parser. Plain text checks: no TensorFlow, no data, well under a second."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from support.paths import ROOT
from edgemobile.cli.main import build_parser

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _code_blocks(text: str, lang: str = "bash") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _shell_lines(text: str) -> list[str]:
    """Logical lines of the bash blocks: backslash continuations joined, comments dropped."""
    lines = []
    for block in _code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at &&, ;, | and parentheses (shell-quoted)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            commands.append(words)
            words = []
        else:
            words.append(token)
    return [c for c in [*commands, words] if c]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_is_short_and_starts_with_a_quick_start():
    text = _text(README)
    assert len(text.splitlines()) <= MAX_README_LINES
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Quick start"
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for needed in ("git clone", "python3 -m venv", 'pip install -e ".[convert]"', "Python ≥ 3.10",
                   "edgemobile convert", "--weights", "--calibration", "--reference-weights", "python -m pytest"):
        assert needed in quick, f"the quick start does not show {needed!r}"


def test_links_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", _text(page)):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", _text(dest), re.M)}
                if anchor not in anchors:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_pip_installs_quote_extras_and_never_ask_pypi_for_edgemobile():
    bad = []
    for page in PAGES:
        for line in re.findall(r"pip install [^`\n]*", _text(page)):
            line = line.split(" #", 1)[0]
            for word in re.findall(r"(?<![\"'\w./-])[\w./-]*\[[\w,]+\][^\s\"']*", line):
                bad.append(f"{page.name}: unquoted extras {word!r} in {line!r} (zsh expands the brackets)")
            # edgemobile is not on PyPI: a bare requirement name would look it up there
            if re.search(r"""(?:^|\s)["']?edgemobile(?:\[[\w,]+\])?(?:["'\s]|$)(?!\s*@)""", line + " "):
                bad.append(f"{page.name}: {line!r} installs edgemobile from PyPI, where it is not")
    assert not bad, bad


def test_ci_runs_the_readmes_test_command():
    tests_section = _text(README).split("\n## Tests", 1)[1]
    command = _code_blocks(tests_section)[0].strip()
    assert command == "python -m pytest"
    ci = [line.strip() for line in _text(ROOT / ".ci" / "run").splitlines() if line.strip()]
    assert ci[-1] == command


def test_every_command_is_in_the_commands_table():
    table = _text(README).split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    missing = [name for name in commands if f"`edgemobile {name}" not in table]
    assert not missing, f"commands missing from the README's table: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shown_commands_parse(page, capsys):
    """Every `edgemobile …` line in a bash block is accepted by the CLI parser (no invented
    flags). A command added on another branch is checked once it is registered here."""
    parser = build_parser()
    known = next(a for a in parser._actions if a.dest == "command").choices
    for line in _shell_lines(_text(page)):
        for words in _commands(line):
            if words[:1] != ["edgemobile"] or len(words) < 2 or words[1] not in known:
                continue
            try:
                parser.parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{page.name}: {shlex.join(words)!r} is rejected by the CLI: {capsys.readouterr().err}")


def test_tools_named_in_the_docs_exist():
    named = {m for page in PAGES for m in re.findall(r"tools/[\w]+\.py", _text(page))}
    assert named, "the docs name no tool that regenerates their tables"
    assert not [t for t in named if not (ROOT / t).is_file()]
