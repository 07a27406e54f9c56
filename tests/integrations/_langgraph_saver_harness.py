"""Backends of the `MemweaveCheckpointSaver` tests, and the writer processes of the
two-process test (`python -m tests.integrations._langgraph_saver_harness`).

Each backend gets options of its own (a fresh namespace) and deletes exactly what the test
created: its tables, or its keys.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memweave.integrations.langgraph import MemweaveCheckpointSaver
from memweave.integrations.langgraph._records import key_of

__all__ = ["SaverBackend", "Writers", "checkpoint", "config"]


def config(thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> Any:
    """A LangGraph config (a `RunnableConfig`) naming a thread, namespace and (optionally) a
    checkpoint."""
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def checkpoint(values: dict[str, Any], version: str = "1") -> Any:
    """A LangGraph `Checkpoint` holding `values`, each channel at `version`."""
    from langgraph.checkpoint.base import empty_checkpoint

    cp: dict[str, Any] = dict(empty_checkpoint())
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = dict.fromkeys(values, version)
    return cp


@dataclass
class SaverBackend:
    """One storage under test, with what the public API cannot do: write garbage, count
    stored values, and delete what the test made."""

    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    made: list[MemweaveCheckpointSaver] = field(default_factory=list)

    @property
    def redis(self) -> bool:
        """Whether the backend is Redis (one server or a Cluster)."""
        return self.url.startswith("redis")

    @property
    def namespace(self) -> str:
        """The savers' namespace: the first part of their key names or table names."""
        return str(self.options.get("namespace", "memweave"))

    def make(self) -> MemweaveCheckpointSaver:
        """A saver on this backend, closed at teardown."""
        saver = MemweaveCheckpointSaver.from_url(self.url, **self.options)
        self.made.append(saver)
        return saver

    async def corrupt(self, thread_id: str, ns: str, checkpoint_id: str, data: bytes) -> None:
        """Overwrite the stored document of a checkpoint with `data`."""
        if self.redis:
            client = self._redis_client()
            try:
                key = f"{self.namespace}:lg:{{{key_of(thread_id)}}}:cp"
                await client.hset(key, f"{key_of(ns)}:{checkpoint_id}", data)
            finally:
                await client.aclose()
            return
        from sqlalchemy import update

        tables = self._tables()
        cp = tables.checkpoints
        statement = (
            update(cp)
            .where(
                cp.c.thread == key_of(thread_id),
                cp.c.ns == key_of(ns),
                cp.c.checkpoint_id == checkpoint_id,
            )
            .values(document=data)
        )
        await self._sql(statement)

    async def blob_count(self, thread_id: str) -> int:
        """How many channel values the thread has stored."""
        if self.redis:
            client = self._redis_client()
            try:
                key = f"{self.namespace}:lg:{{{key_of(thread_id)}}}:bl"
                return int(await client.hlen(key))
            finally:
                await client.aclose()
        from sqlalchemy import func, select

        blobs = self._tables().blobs
        statement = select(func.count()).where(blobs.c.thread == key_of(thread_id))
        return int(await self._sql(statement, scalar=True))

    async def cleanup(self) -> None:
        """Close the savers and delete what the test stored (its tables or its keys)."""
        for saver in self.made:
            await saver.aclose()
        if self.redis:
            client = self._redis_client()
            try:
                pattern = f"{self.namespace}:*"
                keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
                for key in keys:  # one by one: a cluster's keys live in many slots
                    await client.delete(key)
            finally:
                await client.aclose()
        elif not self.url.startswith("sqlite"):
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(self.url)
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(self._tables().metadata.drop_all)
            finally:
                await engine.dispose()

    def _tables(self) -> Any:
        from memweave.integrations.langgraph._saver_sql_schema import saver_tables

        return saver_tables(f"{self.namespace}_")

    async def _sql(self, statement: Any, *, scalar: bool = False) -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(statement)
                return result.scalar() if scalar else None
        finally:
            await engine.dispose()

    def _redis_client(self) -> Any:
        from memweave.providers.redis import client_from_url

        return client_from_url(self.url)


class Writers:
    """Two writer processes, started once and reused: each runs one `_write` job per line it
    reads on stdin, answering `ready` when it waits for the start signal and `done` (or
    `failed`, with the traceback on stderr) when it finished."""

    def __init__(self) -> None:
        command = [sys.executable, "-m", "tests.integrations._langgraph_saver_harness"]
        self.processes = [
            subprocess.Popen(
                command,
                cwd=Path(__file__).resolve().parents[2],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]

    async def run(self, backend: SaverBackend, thread_id: str, count: int, folder: Path) -> None:
        """Both processes put `count` checkpoints on the thread, starting at the same time."""
        for tag, process in zip("pq", self.processes, strict=True):
            job = [backend.url, backend.options, thread_id, tag, count, str(folder)]
            assert process.stdin is not None
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
        for process in self.processes:
            assert await self._answer(process) == "ready"
        (folder / "go").touch()
        for process in self.processes:
            assert await self._answer(process) == "done", "a writer failed (see stderr)"

    @staticmethod
    async def _answer(process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 120)
        return line.strip()

    def stop(self) -> None:
        """End the processes (they exit when their stdin closes)."""
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def _write(
    url: str, options: dict[str, Any], thread_id: str, tag: str, count: int, folder: Path
) -> None:
    """Put `count` checkpoints on the thread, each the child of the previous one, with one
    ordinary write and one error write each; start when `folder/go` appears."""
    from langgraph.checkpoint.serde.types import ERROR

    deadline = time.monotonic() + 60
    while not (folder / "go").exists() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)  # another process gives the signal: a file is all we share
    async with MemweaveCheckpointSaver.from_url(url, **options) as saver:
        parent: str | None = None
        version: str | None = None
        for step in range(count):
            version = saver.get_next_version(version, None)
            cp = checkpoint({"log": [tag, step], "writer": tag}, version)
            metadata = {"source": "loop", "step": step, "writer": tag, "parents": {}}
            stored = await saver.aput(
                config(thread_id, "", parent),
                cp,
                metadata,
                dict.fromkeys(("log", "writer"), version),
            )
            await saver.aput_writes(stored, [("log", f"{tag}-{step}"), (ERROR, "boom")], tag)
            parent = stored["configurable"]["checkpoint_id"]


def _serve() -> None:
    for line in sys.stdin:
        url, options, thread_id, tag, count, folder = json.loads(line)
        print("ready", flush=True)
        try:
            asyncio.run(_write(url, options, thread_id, tag, count, Path(folder)))
        except Exception:  # reported to the test, which fails on it
            traceback.print_exc()
            print("failed", flush=True)
        else:
            print("done", flush=True)


if __name__ == "__main__":
    _serve()
