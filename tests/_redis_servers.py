"""Throwaway Redis servers with the settings a test needs, on free loopback ports.

The processes are the benchmarks' own (`memweave.bench._scale_redis.RedisProcesses`), started
once per test module and stopped by pid. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from memweave.bench._scale_redis import RedisProcesses, redis_server_available
from tests.conftest import service_unavailable

__all__ = ["durable_redis_url", "free_port", "throwaway_redis", "unsafe_redis_url"]


def throwaway_redis(
    *options: str, nodes: int = 1, cluster: bool = False, replicas: int = 0
) -> Iterator[str]:
    """Start `redis-server` processes with `options` (one server, or a Cluster of `nodes`
    with `replicas` per master), yield the URL, and stop them; skip (or fail under
    `MEMWEAVE_REQUIRE_SERVICES`) when they cannot start."""
    what = "a throwaway Redis Cluster" if cluster else "a throwaway redis-server"
    missing = redis_server_available()
    if missing is not None:
        service_unavailable(what, missing)
    server = RedisProcesses(nodes, cluster=cluster, replicas=replicas, options=options)
    try:
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        server.stop()
        service_unavailable(what, str(exc))
    try:
        yield server.url
    finally:
        server.stop()


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def unsafe_redis_url() -> Iterator[str]:
    """A server with no persistence that evicts any key at 100 MB."""
    yield from throwaway_redis("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru")


@pytest.fixture(scope="module")
def durable_redis_url() -> Iterator[str]:
    """A server with the append-only file synced every second, never evicting."""
    yield from throwaway_redis(
        "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"
    )
