"""The streaming-export probe of `memweave.bench.scale`, run in a subprocess of its own.

`python -m memweave.bench._scale_export '<json>'` opens one target, reads one session from its
first message to its last (memweave's `iter_messages`, or the raw client's keyset pages for
the floor), and prints one JSON line: messages read, seconds, and the peak memory growth of
the process while reading. The peak is the kernel's high-water mark (`VmHWM`) reset just
before the read (`/proc/self/clear_refs`), so setting up (imports, connections, and for the
in-process memory store the seeding) does not count; where that reset is not available, it
falls back to `ru_maxrss`, which may include set-up.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memweave._codec import decode_many, encode
from memweave.bench._scale_backends import make_target
from memweave.bench._workload import make_conversation
from memweave.messages import ChatMessage

__all__ = ["Row", "as_messages", "export_rows", "main"]

_BASE_MESSAGES = 2_000  # workload messages cycled (with fresh ids) to build a long session

Row = tuple[str, str, bytes]
"""One stored message: its id, its role and its encoded form (`memweave._codec.encode`)."""


def export_rows(total: int, batch: int = 5_000) -> Iterator[list[Row]]:
    """`total` realistic messages as stored rows in batches, oldest first, none held longer.

    The shared workload's first 2,000 messages repeat with fresh ids (`e<index>`). Each row
    is exactly `encode()` of that message with its new id: the id is swapped in the encoded
    JSON, where it occurs once (checked), which costs microseconds instead of a model copy
    and an encode per message.
    """
    base = make_conversation(min(total, _BASE_MESSAGES), seed=11)
    encoded = [(m.role, encode(m), f'"id":{json.dumps(m.id)}'.encode()) for m in base]
    for _, data, marker in encoded:
        if data.count(marker) != 1:
            raise RuntimeError(f"cannot swap the id of an encoded workload message: {data[:80]!r}")
    index = 0
    while index < total:
        rows: list[Row] = []
        for k in range(index, min(total, index + batch)):
            role, data, marker = encoded[k % len(encoded)]
            new_id = f"e{k}"
            rows.append((new_id, role, data.replace(marker, f'"id":"{new_id}"'.encode(), 1)))
        yield rows
        index += len(rows)


def as_messages(rows: list[Row]) -> list[ChatMessage]:
    """The messages of stored rows."""
    return decode_many([data for _, _, data in rows], session_id="export")


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux); False when unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _peak_kib(reset: bool) -> int:
    peak = _status_kib("VmHWM") if reset else None
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes there, KiB here


async def _probe(job: dict[str, Any]) -> dict[str, Any]:
    target = make_target(**job["target"])
    session: str = job["session"]
    page_size: int = job["page_size"]
    floor = job["mode"] == "floor"
    history = target.provider()
    try:
        # The memory store lives in this process, so the probe fills it itself.
        for rows in export_rows(job.get("seed_messages") or 0):
            if floor:
                await target.floor_store(session, [data for _, _, data in rows])
            else:
                await history.add_messages(session, as_messages(rows))
        await history.count_messages(session)  # connect before measuring
        gc.collect()
        reset = _reset_peak()
        before = _status_kib("VmRSS") or _peak_kib(reset)
        started = time.perf_counter()
        read = 0
        if floor:
            async for page in target.floor_pages(session, page_size):
                read += len([json.loads(row) for row in page])
        else:
            async for _ in history.iter_messages(session, page_size=page_size):
                read += 1
        seconds = time.perf_counter() - started
        peak = _peak_kib(reset)
    finally:
        await history.aclose()
        if floor or target.name != "memory":
            await _close_raw(target)
    return {
        "messages": read,
        "seconds": seconds,
        "messages_per_s": read / seconds if seconds > 0 else None,
        "rss_before_mb": before / 1024,
        "peak_mb": peak / 1024,
        "peak_growth_mb": max(0, peak - before) / 1024,
        "peak_method": "VmHWM reset before the read" if reset else "ru_maxrss (includes set-up)",
    }


async def _close_raw(target: Any) -> None:
    """Release the raw client's connections without removing anything."""
    engine = getattr(target, "_engine", None)
    if engine is not None:
        await engine.dispose()
    client = getattr(target, "_client", None)
    if client is not None:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    """Run one probe described by the JSON argument; print its JSON result."""
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(args[0])
    print(json.dumps(asyncio.run(_probe(job))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
