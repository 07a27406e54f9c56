"""Conformance harness for `ChromaChatHistoryProvider`: embedded, and on a Chroma server that
this test session starts itself (`chroma run` on 127.0.0.1 and a free port) and stops."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memweave.providers import ChatHistoryProvider, StoredRecord
from tests.conftest import service_unavailable

if TYPE_CHECKING:
    from memweave.providers.chroma import ChromaChatHistoryProvider

__all__ = ["chroma_harness", "chroma_server", "chroma_server_harness", "chroma_server_url"]


class ChromaHarness:
    """Builds Chroma providers on one URL; writes raw entries and expiries through the
    provider's own collection."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def make(self, **options: Any) -> ChatHistoryProvider:
        from memweave.providers.chroma import ChromaChatHistoryProvider

        return ChromaChatHistoryProvider(self.url, **options)

    def isolated_options(self) -> dict[str, Any]:
        return {"namespace": f"mwi-{uuid.uuid4().hex[:12]}"}

    async def drop_isolated(self, history: ChatHistoryProvider) -> None:
        provider = self._provider(history)

        def drop(collection: Any) -> None:
            provider._client.delete_collection(collection.name)

        await provider._run(drop)

    @staticmethod
    def _provider(history: ChatHistoryProvider) -> ChromaChatHistoryProvider:
        from memweave.providers.chroma import ChromaChatHistoryProvider

        assert isinstance(history, ChromaChatHistoryProvider)
        return history

    async def write_raw(self, history: ChatHistoryProvider, session_id: str, data: bytes) -> None:
        provider = self._provider(history)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            # Chroma documents are text: keep the garbage, as text that is still garbage.
            data = data.decode("latin-1").encode("utf-8")
        record = StoredRecord(f"raw-{uuid.uuid4().hex}", "user", data)
        await provider._append(session_id, [record], max_messages=None, ttl=provider.ttl)

    async def expire_now(self, history: ChatHistoryProvider, session_id: str) -> None:
        from memweave.providers._chroma_sessions import session_key

        provider = self._provider(history)

        def expire(collection: Any, key: str) -> None:
            got = collection.get(ids=[key], include=["metadatas"])
            if got["ids"]:
                meta = {**got["metadatas"][0], "expires": 1.0}
                collection.update(ids=[key], metadatas=[meta])

        await provider._run(expire, session_key(session_id))


@pytest.fixture(scope="session")
def chroma_harness(tmp_path_factory: pytest.TempPathFactory) -> ChromaHarness:
    """Embedded Chroma in a folder of this test session."""
    folder = tmp_path_factory.mktemp("chroma-history")
    return ChromaHarness("chroma", f"chroma://{folder}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _heartbeat(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def chroma_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start a Chroma server on 127.0.0.1 and a free port; yield its URL and process (which
    the caller may pause by pid), and stop it after."""
    executable = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which(
        "chroma"
    )
    if executable is None:
        service_unavailable("a Chroma server", "the `chroma` command is not installed")
    folder = tempfile.mkdtemp(prefix="memweave-chroma-server-")
    port = _free_port()
    server = subprocess.Popen(
        [str(executable), "run", "--path", folder, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _heartbeat(port):
            if server.poll() is not None or time.monotonic() > deadline:
                service_unavailable(
                    "a Chroma server", f"`chroma run` did not start (exit code {server.poll()})"
                )
            time.sleep(0.2)
        yield f"chroma+http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def chroma_server_url() -> Iterator[str]:
    """A Chroma server started on 127.0.0.1 for this test session (stopped after it)."""
    with chroma_server() as (url, _):
        yield url


@pytest.fixture(scope="session")
def chroma_server_harness(chroma_server_url: str) -> ChromaHarness:
    """Chroma on its own server: several processes share one store."""
    return ChromaHarness("chroma_server", chroma_server_url)


HARNESSES: list[tuple[str, dict[str, str]]] = [
    (
        "chroma_harness",
        {
            "multi_process": (
                "embedded Chroma is one process's store; processes share histories through a "
                "Chroma server (the chroma_server backend runs this rule)"
            )
        },
    ),
    ("chroma_server_harness", {}),
]
