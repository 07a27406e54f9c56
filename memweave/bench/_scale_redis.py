"""Throwaway Redis servers for `memweave.bench.scale`, and what it reads from them.

The benchmark starts its own `redis-server` processes on free loopback ports (one node, and a
3-master Cluster), so it may reset and read the SLOWLOG and `INFO commandstats` without
touching a shared server, and removes everything by stopping them. Against a server given
by URL, it only reads SLOWLOG entries newer than the run's start (by id).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from memweave.bench._scale_backends import SESSION_TEMPLATE, Target, session_id
from memweave.providers import ChatHistoryProvider

if TYPE_CHECKING:
    from memweave.bench._scale_export import Row

__all__ = [
    "RAW_CLIENT_NAME",
    "SLOWLOG_LIMIT_MS",
    "RedisProcesses",
    "RedisTarget",
    "Slowlog",
    "command_calls",
    "redis_server_available",
    "slowlog_entries",
]

RAW_CLIENT_NAME = "memweave-bench-raw"
"""`CLIENT SETNAME` of the benchmark's own raw connections, so SLOWLOG entries of seeding
and floors are told apart from memweave's commands."""

SLOWLOG_LIMIT_MS = 10.0
"""Issue 11's limit: no command memweave sends may run longer on the server."""

_SLOWLOG_LENGTH = 100_000  # entries kept (and read) between two marks

_BUS_OFFSET = 10000  # a Cluster node's bus listens on port + 10000
# Commands a client sends about the server rather than the data: left out of the shares.
_ADMIN_COMMANDS = frozenset(
    {"info", "cluster", "command", "config", "slowlog", "ping", "client", "hello", "readonly"}
)


def redis_server_available() -> str | None:
    """None when `redis-server` and `redis-cli` are installed, else why not."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return "redis-server or redis-cli is not installed"
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + _BUS_OFFSET < 65536 and port not in ports and _port_free(port + _BUS_OFFSET):
            ports.append(port)
    return ports


def _cli(port: int, *args: str, timeout: float = 10) -> str:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.stdout + result.stderr


def _syncing_replica(port: int) -> bool:
    info = _cli(port, "info", "replication")
    return "role:slave" in info and "master_link_status:up" not in info


class RedisProcesses:
    """`nodes` throwaway `redis-server` processes: one plain server, or a Cluster.

    Nothing is persisted unless `options` turn it on; `stop()` ends the processes and removes
    their folder.

    Args:
        nodes: How many servers to start.
        cluster: Join them into a Cluster.
        replicas: Replicas per master in the Cluster (`nodes` must allow it).
        node_timeout_ms: The Cluster's `cluster-node-timeout` (how soon a failover starts).
        options: More `redis-server` arguments, given last so they override the defaults
            (e.g. `("--appendonly", "yes")`).
        parent: Where to make the nodes' folder (default: the system's temporary folder).
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        cluster: bool = False,
        replicas: int = 0,
        node_timeout_ms: int = 5000,
        options: Sequence[str] = (),
        parent: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.options = tuple(options)
        self.ports = _free_ports(nodes)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._folder = Path(tempfile.mkdtemp(prefix="memweave-bench-redis-", dir=parent))

    @property
    def url(self) -> str:
        """The URL of the first node: `redis://` or `redis+cluster://`."""
        scheme = "redis+cluster" if self.cluster else "redis"
        suffix = "" if self.cluster else "/0"
        return f"{scheme}://127.0.0.1:{self.ports[0]}{suffix}"

    def start(self, timeout: float = 30) -> RedisProcesses:
        """Start the nodes (and join them into a Cluster); return self once all are ready.

        Raises:
            RuntimeError: A node exited or the Cluster did not become ready in `timeout`.
        """
        for port in self.ports:
            (self._folder / str(port)).mkdir(parents=True)
            self.processes.append(self.launch(port))
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while "PONG" not in _cli(port, "ping"):
                self._check_alive(deadline)
                time.sleep(0.05)
        if self.cluster:
            self._create_cluster(deadline, timeout)
        return self

    def launch(self, port: int) -> subprocess.Popen[bytes]:
        """Start the server of `port` (again, after it stopped: same folder, same files)."""
        folder = self._folder / str(port)
        command = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(folder),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.cluster:
            command += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(folder / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
            ]  # fmt: skip
        command += self.options
        with (folder / "redis.log").open("ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def _create_cluster(self, deadline: float, timeout: float) -> None:
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}")
        for port in self.ports:
            while "cluster_state:ok" not in _cli(port, "cluster", "info"):
                self._check_alive(deadline)
                time.sleep(0.1)
            # A replica is ready once it has its master's data (else a failover could not start).
            while _syncing_replica(port):
                self._check_alive(deadline)
                time.sleep(0.1)

    def _check_alive(self, deadline: float) -> None:
        dead = [p.args for p in self.processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"redis-server exited early: {dead}")
        if time.monotonic() > deadline:
            raise RuntimeError("the benchmark's redis-server did not become ready in time")

    def stop(self) -> None:
        """Stop every node (killing one that does not exit) and remove its folder. Idempotent."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self._folder, ignore_errors=True)


async def slowlog_entries(client: Any, after_id: int) -> list[dict[str, Any]]:
    """The SLOWLOG entries with an id above `after_id`, newest first, as plain dicts.

    Each dict holds `id`, `duration_us`, `command` (cut to 200 characters) and `client_name`.
    """
    entries = await client.slowlog_get(_SLOWLOG_LENGTH)
    found = []
    for entry in entries:
        if int(entry["id"]) <= after_id:
            continue
        command = entry.get("command", b"")
        if isinstance(command, bytes):
            command = command.decode(errors="replace")
        name = entry.get("client_name", b"") or b""
        found.append(
            {
                "id": int(entry["id"]),
                "duration_us": int(entry["duration"]),
                "command": str(command)[:200],
                "client_name": name.decode(errors="replace") if isinstance(name, bytes) else name,
            }
        )
    return found


class Slowlog:
    """The SLOWLOG entries of the run, sorted into its phases.

    `mark(phase)` files every entry logged since the previous mark under `phase` (`"setup"`:
    seeding, where the benchmark stores thousands of messages per call, and clean-up; or
    `"measured"`). Entries of the benchmark's raw client (named `RAW_CLIENT_NAME`) are kept
    apart: those of the measured phase are the floors' own slow commands.
    """

    def __init__(self, client: Any, *, owned: bool) -> None:
        self.client = client
        self.owned = owned
        self.last_id = -1
        self.phases: dict[str, list[dict[str, Any]]] = {}
        self.raw: dict[str, list[dict[str, Any]]] = {}
        self.threshold_us: int | None = None

    async def start(self) -> None:
        """Note where the log stands; on a server of our own, log every command over 1 ms."""
        if self.owned:
            await self.client.config_set("slowlog-log-slower-than", 1000)
            await self.client.config_set("slowlog-max-len", _SLOWLOG_LENGTH)
            await self.client.slowlog_reset()
        config = await self.client.config_get("slowlog-log-slower-than")
        self.threshold_us = int(config["slowlog-log-slower-than"])
        found = await self.client.slowlog_get(1)
        self.last_id = int(found[0]["id"]) if found else -1

    async def mark(self, phase: str, part: str) -> None:
        """File the entries logged since the last mark under `phase`, tagged with `part`."""
        found = await slowlog_entries(self.client, self.last_id)
        if found:
            self.last_id = max(entry["id"] for entry in found)
        for entry in found:
            if entry["command"].upper().startswith(("SLOWLOG", "CONFIG")):
                continue  # this class's own reads of the log
            entry["part"] = part
            into = self.raw if entry["client_name"] == RAW_CLIENT_NAME else self.phases
            into.setdefault(phase, []).append(entry)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per phase of memweave's commands, then `floor` for the raw client's measured ones:
        entries, the slowest (ms, overall and per part), how many over the limit, the five
        slowest."""
        groups = {phase: self.phases.get(phase, []) for phase in ("measured", "setup")}
        groups["floor"] = self.raw.get("measured", [])
        out = {}
        for name, entries in groups.items():
            worst = sorted(entries, key=lambda e: -e["duration_us"])
            out[name] = {
                "logged_slower_than_us": self.threshold_us,
                "owned_server": self.owned,
                "entries": len(worst),
                "max_ms": worst[0]["duration_us"] / 1000 if worst else 0.0,
                "over_10ms": sum(e["duration_us"] > SLOWLOG_LIMIT_MS * 1000 for e in worst),
                "max_ms_by_part": {
                    part: max(e["duration_us"] for e in worst if e["part"] == part) / 1000
                    for part in dict.fromkeys(e["part"] for e in worst)
                },
                "slowest": worst[:5],
            }
        return out


def command_calls(stats: dict[str, Any]) -> dict[str, int]:
    """Calls per data command from one node's `INFO commandstats` (admin commands left out)."""
    calls: dict[str, int] = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_").lower()
        if name.split("|")[0] in _ADMIN_COMMANDS:
            continue
        calls[name] = int(value["calls"]) if isinstance(value, dict) else 0
    return calls


_REDIS_SEED_CONCURRENCY = 64


@dataclass
class RedisTarget(Target):
    """A Redis server (single node), keys in a fresh namespace; floors under another prefix."""

    raw_prefix: str = ""
    owned_server: bool = False
    """Whether the benchmark started this server (then it resets and reads SLOWLOG freely)."""
    _client: Any = None

    def __post_init__(self) -> None:
        if not self.raw_prefix:
            self.raw_prefix = f"memweave-bench-raw-{uuid.uuid4().hex[:10]}"

    def _extra_spec(self) -> dict[str, Any]:
        return {"raw_prefix": self.raw_prefix, "owned_server": self.owned_server}

    @property
    def client(self) -> Any:
        """The raw client (bytes in, bytes out), named so SLOWLOG tells its commands apart."""
        if self._client is None:
            from redis.asyncio import Redis

            self._client = Redis.from_url(self.url, client_name=RAW_CLIENT_NAME)
        return self._client

    async def seed_sessions(self, history: ChatHistoryProvider, start: int, stop: int) -> None:
        """Memweave's own append script per session, sent in pipelines of 2,000 sessions.

        This is what `add_messages` sends on a single server (same script, keys and
        arguments), without a round trip per session; where the provider's internals
        differ, it falls back to `add_messages` from 64 tasks."""
        try:
            from memweave.providers import _redis_scripts as scripts
            from memweave.providers.base import StoredRecord
            from memweave.providers.redis import RedisChatHistoryProvider

            provider = cast("RedisChatHistoryProvider", history)
            keys_of = provider._session_keys
            append, pipelined = scripts.APPEND, scripts.pipelined
        except (ImportError, AttributeError):
            await self._seed_concurrently(history, start, stop)
            return
        records = [StoredRecord.of(message) for message in SESSION_TEMPLATE]
        tail: list[str | bytes | int] = []
        for record in records:
            tail += (record.role[0] + record.id, record.data)
        await history.add_messages(session_id(start), SESSION_TEMPLATE)  # loads the scripts
        chunks = iter(range(start + 1, stop, 2_000))

        async def worker() -> None:
            # A few pipelines in flight keep the server busy while this process builds the
            # next one and parses the last one's replies.
            for first in chunks:
                calls = [
                    append.call(keys_of(sid).script, [0, 0, sid, 0, *tail])
                    for sid in map(session_id, range(first, min(stop, first + 2_000)))
                ]
                await pipelined(provider._client, calls)

        await asyncio.gather(*(worker() for _ in range(3)))

    async def seed_long_session(
        self, history: ChatHistoryProvider, session: str, batches: Iterable[list[Row]]
    ) -> None:
        """Each batch as one run of memweave's append script, as `add_messages` sends it
        (falling back to `add_messages` where the provider's internals differ)."""
        try:
            from memweave.providers import _redis_scripts as scripts
            from memweave.providers.redis import RedisChatHistoryProvider

            provider = cast("RedisChatHistoryProvider", history)
            keys = provider._session_keys(session).script
            append, client = scripts.APPEND, provider._client
        except (ImportError, AttributeError):
            await super().seed_long_session(history, session, batches)
            return
        await history.count_messages(session)  # loads the scripts
        for rows in batches:
            args: list[str | bytes | int] = [0, 0, session, 0]
            for message_id, role, data in rows:
                args += (role[0] + message_id, data)
            await append(client, keys, args)
            await self.floor_store(session, [data for _, _, data in rows])

    async def _seed_concurrently(self, history: ChatHistoryProvider, start: int, stop: int) -> None:
        pending = iter(range(start, stop))

        async def worker() -> None:
            for index in pending:
                await history.add_messages(session_id(index), SESSION_TEMPLATE)

        await asyncio.gather(*(worker() for _ in range(_REDIS_SEED_CONCURRENCY)))

    def _key(self, *parts: str) -> str:
        return ":".join([self.raw_prefix, *parts])

    async def floor_sessions(self, start: int, stop: int) -> None:
        key = self._key("ids")
        for first in range(start, stop, 10_000):
            # Equal scores (the message count) keep the set in code-point order for BYLEX.
            count = len(SESSION_TEMPLATE)
            members = {session_id(i): count for i in range(first, min(stop, first + 10_000))}
            await self.client.zadd(key, members)

    async def floor_list(self, after: str, limit: int) -> list[str]:
        found = await self.client.zrangebylex(
            self._key("ids"), b"(" + after.encode(), b"+", start=0, num=limit
        )
        return [member.decode() for member in found]

    async def floor_info(self, session: str) -> object:
        return await self.client.zscore(self._key("ids"), session)

    async def floor_store(self, session: str, rows: Sequence[bytes]) -> None:
        key = self._key("msgs", session)
        for start in range(0, len(rows), 1000):
            await self.client.rpush(key, *rows[start : start + 1000])

    async def floor_tail(self, session: str, count: int) -> list[Any]:
        rows = await self.client.lrange(self._key("msgs", session), -count, -1)
        return [json.loads(row) for row in rows]

    async def floor_pages(self, session: str, page_size: int) -> AsyncIterator[list[bytes]]:
        key = self._key("msgs", session)
        start = 0
        while True:
            rows = cast("list[bytes]", await self.client.lrange(key, start, start + page_size - 1))
            if not rows:
                return
            yield rows
            start += len(rows)

    async def cleanup(self) -> None:
        try:
            for pattern in (f"{self.options['namespace']}:*", f"{self.raw_prefix}:*"):
                batch: list[bytes] = []
                async for key in self.client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) == 1000:
                        await self.client.unlink(*batch)
                        batch.clear()
                if batch:
                    await self.client.unlink(*batch)
        finally:
            await self.client.aclose()
            self._client = None
