"""A process appending large batches to a SQLite file until it is killed (the fault suite's).

Run as `python -m tests.faults._sqlite_writer PATH SESSION FIRST SIZE FILLER`: it appends
batches `FIRST, FIRST+1, ...` (see `tests.faults._batches.batch`) and prints `begin K` before
and `ack K` after each `add_messages`, flushing each line, so the parent knows what was
acknowledged when it sends SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys

from memweave.providers import from_url
from tests.faults._batches import batch

__all__ = ["main"]


async def _append_forever(path: str, session_id: str, first: int, size: int, filler: int) -> None:
    history = from_url(f"sqlite+aiosqlite:///{path}")
    k = first
    while True:
        messages = batch(k, size, filler=filler)
        print(f"begin {k}", flush=True)
        await history.add_messages(session_id, messages)
        print(f"ack {k}", flush=True)
        k += 1


def main(argv: list[str]) -> None:
    """Append batches to the SQLite file `argv[0]` until killed."""
    path, session_id, first, size, filler = argv
    asyncio.run(_append_forever(path, session_id, int(first), int(size), int(filler)))


if __name__ == "__main__":
    main(sys.argv[1:])
