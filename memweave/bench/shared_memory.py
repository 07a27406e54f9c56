"""Shared-collection benchmark: `VectorMemory` reads while another catalogue writes to the same
Chroma collection, as the workers of a service do.

Run as `python -m memweave.bench.shared_memory` (`--help` for the options). A writer memory
fills one embedded Chroma collection with `--users` users of `--per-user` memories each; a
reader memory with a catalogue file of its own then opens on the same client. It reports, each
as p50/p95 over `--searches` hybrid searches (k=10) of random users:

- **open**: opening the reader and its first search (nothing of the collection is read but the
  searched user's keys);
- **cold user**: a search of a user this reader never used (the user's memories catalogued);
- **steady**: a search of a used user, nothing written meanwhile;
- **raw Chroma**: in the same loop as steady, the collection's own filtered nearest-neighbour
  query for the searched user (`collection.query(where={"scope": ...})`, 40 results);
- **after a foreign write**: a search of a used user right after the writer added a memory for
  another user (Chroma's record count moved, so the searched user's keys are read again).

The embedder is a deterministic hashing one (no model), so the figures are the stores' own.
`--json` prints a JSON report with the versions and the machine instead of a table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memweave.bench._stats import Timings
from memweave.context import VectorMemory

__all__ = ["HashingEmbeddings", "main", "print_table", "run"]

_WORDS = (
    "tea",
    "coffee",
    "train",
    "paris",
    "lyon",
    "cat",
    "dog",
    "garden",
    "piano",
    "violin",
    "river",
    "hiking",
    "book",
    "film",
    "museum",
    "bread",
    "cheese",
    "winter",
    "summer",
    "rain",
    "sea",
    "mountain",
    "bike",
    "market",
    "office",
    "school",
)


class HashingEmbeddings:
    """A deterministic bag-of-words embedder (no model): each word adds one at a slot chosen
    by its hash. Enough for the stores to index and rank real vectors."""

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions
        self.name = f"memweave-bench/hashing-{dimensions}"

    def _vector(self, text: str) -> list[float]:
        values = np.zeros(self.dimensions, dtype=np.float32)
        for word in text.lower().split():
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            values[int.from_bytes(digest, "big") % self.dimensions] += 1.0
        norm = float(np.linalg.norm(values)) or 1.0
        return [float(value) for value in values / norm]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text."""
        return [self._vector(text) for text in texts]


def _note(rng: random.Random, user: int, n: int) -> str:
    words = " ".join(rng.choice(_WORDS) for _ in range(8))
    return f"user {user} note {n}: {words}"


async def _timed(timings: Timings, call: Awaitable[Any]) -> None:
    start = time.perf_counter()
    await call
    timings.samples.append((time.perf_counter() - start) * 1000)


async def run(
    *, users: int = 500, per_user: int = 40, searches: int = 200, seed: int = 7
) -> dict[str, Any]:
    """Fill a collection and measure the reader (see the module docstring); returns the
    report."""
    import chromadb

    for name, value in (("users", users), ("per_user", per_user), ("searches", searches)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if users < 2:
        raise ValueError("users must be at least 2 (a searched one and a written one)")
    rng = random.Random(seed)
    embedder = HashingEmbeddings()
    timings = {
        name: Timings() for name in ("open", "cold_user", "steady", "after_write", "raw_chroma")
    }
    with tempfile.TemporaryDirectory(prefix="memweave-bench-") as folder:
        client = chromadb.PersistentClient(str(Path(folder) / "chroma"))
        writer = VectorMemory(
            client=client, lexical_path=Path(folder) / "writer.db", embedder=embedder
        )
        started = time.perf_counter()
        for user in range(users):
            await asyncio.gather(
                *(
                    writer.add(_note(rng, user, n), user_id=f"u{user}", session_id=f"s{n % 4}")
                    for n in range(per_user)
                )
            )
        fill_s = time.perf_counter() - started
        reader = VectorMemory(
            client=client, lexical_path=Path(folder) / "reader.db", embedder=embedder
        )
        query = " ".join(rng.choice(_WORDS) for _ in range(3))
        await _timed(timings["open"], reader.search(query, user_id="u0", k=10, min_score=0.0))
        used = [0]
        for user in rng.sample(range(1, users), min(users - 1, searches)):
            cold = reader.search(query, user_id=f"u{user}", k=10, min_score=0.0)
            await _timed(timings["cold_user"], cold)
            used.append(user)
        collection: Any = client.get_collection(reader.collection_name)
        [vector] = await embedder.embed([query])

        async def search(user: int) -> None:
            await reader.search(query, user_id=f"u{user}", k=10, min_score=0.0)

        async def raw(user: int) -> None:
            collection.query(
                query_embeddings=[vector],
                n_results=40,
                where={"scope": {"$eq": f"user:u{user}"}},
                include=[],
            )

        for _ in range(searches):
            user = rng.choice(used)
            await _timed(timings["steady"], search(user))
            await _timed(timings["raw_chroma"], raw(user))
        for n in range(searches):
            user = rng.choice(used)
            other = rng.choice([u for u in range(users) if u != user])
            await writer.add(f"fresh note {n}", user_id=f"u{other}")
            await _timed(timings["after_write"], search(user))
        records = collection.count()
        await reader.aclose()
        await writer.aclose()
    return {
        "records": records,
        "users": users,
        "per_user": per_user,
        "fill_s": fill_s,
        "timings": {name: t.summary() for name, t in timings.items()},
        "versions": {"python": platform.python_version(), "chromadb": chromadb.__version__},
        "machine": {"processor": platform.processor(), "system": platform.platform()},
    }


def print_table(report: dict[str, Any]) -> None:
    """Print the results as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"VectorMemory on a shared collection of {report['records']:,} records "
        f"({report['users']:,} users)"
    )
    for column in ("operation", "p50 ms", "p95 ms", "samples"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    labels = {
        "open": "open + first search",
        "cold_user": "search, user not used before",
        "steady": "search, nothing written meanwhile",
        "after_write": "search after another catalogue's write",
        "raw_chroma": "raw Chroma filtered query (floor)",
    }
    for name, label in labels.items():
        summary = report["timings"][name]
        table.add_row(
            label, f"{summary['p50_ms']:.1f}", f"{summary['p95_ms']:.1f}", str(summary["samples"])
        )
    Console(width=None if sys.stdout.isatty() else 100).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse the options, run, print the table or `--json`."""
    parser = argparse.ArgumentParser(
        prog="python -m memweave.bench.shared_memory",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--users", type=int, default=500, help="users in the collection")
    parser.add_argument("--per-user", type=int, default=40, help="memories per user")
    parser.add_argument("--searches", type=int, default=200, help="searches per figure")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    options = parser.parse_args(argv)
    try:
        report = asyncio.run(
            run(users=options.users, per_user=options.per_user, searches=options.searches)
        )
    except ValueError as exc:
        parser.error(str(exc))
    if options.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
