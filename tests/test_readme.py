"""Every ```python block of README.md runs as written.

Each block runs in a fresh interpreter, in a fresh temporary working folder (so `chat.db`,
`./memory` and friends start empty), with `TIKTOKEN_CACHE_DIR` passed on and Chroma's model
read from `~/.cache/chroma` (tests/conftest.py puts it there), and without the network: HTTP
goes to a dead proxy (`OFFLINE`), so a block that would download something fails. Blocks that
need a model use `ScriptedChatClient` (or the framework's own offline client),
with a comment showing the real client. The block runs as a script (`__name__ ==
"__main__"`), and its standard input holds empty lines, so an `input()` prompt reads an empty
answer.

A block that cannot run on its own is a *fragment*: an HTML comment right before it says so
and why, `<!-- fragment: needs Flask, which no memweave extra installs -->`. A fragment is
only compiled (top-level `await` allowed); fragments stay few. A non-fragment block never
uses top-level `await` (`asyncio.run(main())` instead).

A failure names the README line of the block and its first line.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

README = Path(__file__).resolve().parents[1] / "README.md"

FRAGMENT = re.compile(r"^\s*<!--\s*fragment:\s*(?P<reason>.*?)\s*-->\s*$", re.DOTALL)
"""The marker of a fragment, with its reason."""

MAX_FRAGMENTS = 4
"""Fragments are the exception: more than this many means blocks should be made to run."""

OFFLINE = {
    name: "http://127.0.0.1:9"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
} | {"NO_PROXY": "127.0.0.1,localhost,::1", "no_proxy": "127.0.0.1,localhost,::1"}
"""Environment that sends every HTTP request to a closed port, except local servers'."""

TIMEOUT_S = 300
"""Longest a block may run (loading Chroma's model on a busy 2-core machine takes a while)."""


@dataclass(frozen=True)
class Block:
    """One ```python block of the README."""

    line: int
    """README line of the opening fence (1-based)."""
    code: str
    """The block's text."""
    fragment: str | None
    """Why the block is a fragment, or None for a block that runs."""

    @property
    def first_line(self) -> str:
        """The block's first non-blank line, which names it in failures."""
        return next((text.strip() for text in self.code.splitlines() if text.strip()), "")

    @property
    def where(self) -> str:
        """`README.md line N (first line)`."""
        return f"README.md line {self.line} ({self.first_line!r})"


def readme_blocks() -> list[Block]:
    """The ```python blocks of README.md, in order, each with its fragment marker if any."""
    tokens = MarkdownIt("commonmark").parse(README.read_text(encoding="utf-8"))
    blocks = []
    for index, token in enumerate(tokens):
        if (
            token.type != "fence"
            or token.info.split()[:1] not in (["python"], ["py"])
            or token.map is None
        ):
            continue
        before = tokens[index - 1] if index else None
        marker = FRAGMENT.match(before.content) if before and before.type == "html_block" else None
        reason = marker.group("reason") if marker else None
        blocks.append(Block(token.map[0] + 1, token.content, reason))
    return blocks


BLOCKS = readme_blocks()
RUNNABLE = [block for block in BLOCKS if block.fragment is None]
FRAGMENTS = [block for block in BLOCKS if block.fragment is not None]


def _id(block: Block) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", block.first_line).strip("-")[:40]
    return f"L{block.line}-{slug}"


def test_readme_has_python_blocks() -> None:
    """The README's Python blocks are found (a broken parser would pass every test below)."""
    assert len(RUNNABLE) >= 10, [block.where for block in BLOCKS]


def test_readme_fragments_are_few_and_say_why() -> None:
    """Fragments are the exception, and each marker gives its reason."""
    assert len(FRAGMENTS) <= MAX_FRAGMENTS, [block.where for block in FRAGMENTS]
    for block in FRAGMENTS:
        assert block.fragment, f"{block.where}: a fragment marker must say why"


@pytest.mark.parametrize("block", FRAGMENTS, ids=_id)
def test_readme_fragment_compiles(block: Block) -> None:
    """A fragment is valid Python (top-level `await` allowed)."""
    try:
        compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        pytest.fail(
            f"{block.where} does not compile: {exc.msg} (its line {exc.lineno})", pytrace=False
        )


@pytest.mark.parametrize("block", RUNNABLE, ids=_id)
def test_readme_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    """A block runs as written in a fresh interpreter and an empty working folder."""
    try:
        compile(block.code, block.where, "exec")
    except SyntaxError as exc:
        hint = " (use asyncio.run(main()))" if "await" in str(exc.msg) else ""
        pytest.fail(
            f"{block.where} does not compile: {exc.msg} (its line {exc.lineno}){hint}; "
            "mark it <!-- fragment: why --> "
            "only if it cannot run on its own",
            pytrace=False,
        )
    script = tmp_path / "readme_block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1"}
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            input="\n" * 50,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.where} ran longer than {TIMEOUT_S} s: {exc.stderr!r}", pytrace=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-25:])
        pytest.fail(
            f"{block.where} failed with exit status {done.returncode}:\n{tail}", pytrace=False
        )
