"""A throwaway 3-node Redis Cluster on free loopback ports, started once per test process.

The processes are the benchmarks' own (`memweave.bench._scale_redis.RedisProcesses`), so tests
and benchmarks start and stop throwaway servers one way.
"""

from __future__ import annotations

import atexit
import subprocess

import pytest

from memweave.bench._scale_redis import RedisProcesses, redis_server_available
from tests.conftest import service_unavailable

__all__ = ["redis_cluster_url"]

_NODES = 3

_started: RedisProcesses | str | None = None
"""This process's cluster, or why it could not start (so each test skips with the reason)."""


def _shared_cluster(config: pytest.Config) -> str:
    global _started
    if _started is None:
        missing = redis_server_available()
        if missing is not None:
            _started = missing
        else:
            for attempt in range(3):  # a free port may be taken before a node binds it
                cluster = RedisProcesses(_NODES, cluster=True)
                config.add_cleanup(cluster.stop)
                atexit.register(cluster.stop)
                try:
                    cluster.start()
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    cluster.stop()
                    _started = f"could not start it (attempt {attempt + 1}): {exc}"
                else:
                    _started = cluster
                    break
    if not isinstance(_started, RedisProcesses):
        service_unavailable("a local 3-node Redis Cluster", str(_started))
        raise AssertionError("unreachable")  # service_unavailable skips or fails
    return _started.url


@pytest.fixture(scope="session")
def redis_cluster_url(pytestconfig: pytest.Config) -> str:
    """`redis+cluster://` URL of a 3-node cluster this test process started (and stops).

    The cluster is shared by every module that imports this fixture, within one process.
    """
    return _shared_cluster(pytestconfig)
