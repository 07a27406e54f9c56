"""A process writing a SQLite file SIGKILLed mid-batch: the file stays sound, batches whole."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from pathlib import Path

import pytest

from memweave.providers import from_url
from tests.faults._batches import tally
from tests.faults.conftest import TIMEOUT

pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
KILLS = 3
SIZE = 200
FILLER = 1000
"""Each batch is about 200 KB of JSON, so a write takes long enough to be killed midway."""
LINE_WAIT = 60.0
"""Longest wait for the writer's next line (its start-up included) before failing."""


async def _writer_run(
    path: Path, session_id: str, first: int, rng: random.Random
) -> tuple[set[int], int]:
    """Start a writer at batch `first`, SIGKILL it inside a batch after one was acknowledged.

    Returns:
        The batches it acknowledged, and the last one it began.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults._sqlite_writer",
        str(path), session_id, str(first), str(SIZE), str(FILLER),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    acknowledged: set[int] = set()
    began = first - 1
    last_time = 0.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), LINE_WAIT)).decode()
            if not line:
                raise AssertionError(f"the writer exited by itself with {await process.wait()}")
            word, k = line.split()
            if word == "begin":
                began, started = int(k), loop.time()
                if acknowledged:  # kill somewhere inside this batch
                    await asyncio.sleep(rng.uniform(0, last_time))
                    process.kill()
                    break
            else:
                acknowledged.add(int(k))
                last_time = loop.time() - started
        rest = await asyncio.wait_for(process.stdout.read(), LINE_WAIT)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    for line in rest.decode().splitlines():  # acknowledged before the kill, read after it
        word, k = line.split()
        if word == "ack":
            acknowledged.add(int(k))
        else:
            began = int(k)
    return acknowledged, began


async def test_add_messages_in_killed_sqlite_writer_leaves_whole_batches(
    tmp_path: Path, session_id: str
) -> None:
    """SIGKILLs of a writer process mid-batch: integrity_check ok, no batch partial or lost."""
    path = tmp_path / "history.db"
    rng = random.Random(13)
    acknowledged: set[int] = set()
    first = 0
    for _ in range(KILLS):
        acked, began = await _writer_run(path, session_id, first, rng)
        acknowledged |= acked
        first = began + 1  # the killed batch is never sent again: it must be whole or absent
    with sqlite3.connect(path) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
    history = from_url(f"sqlite+aiosqlite:///{path}", timeout=TIMEOUT)
    try:
        stored = [message.id for message in await history.list_messages(session_id)]
    finally:
        await history.aclose()
    result = tally(stored, batches=first, size=SIZE, acknowledged=acknowledged)
    print(result.line("sqlite writer SIGKILL", kills=KILLS, integrity=integrity))
    assert integrity == [("ok",)]
    assert (result.lost, result.duplicated, result.partial) == (0, 0, 0), result
    assert result.sound, result
