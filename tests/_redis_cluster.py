"""A throwaway 3-node Redis Cluster on free loopback ports, started once per test process."""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import service_unavailable

__all__ = ["RedisClusterProcesses", "redis_cluster_url"]

_NODES = 3
_BUS_OFFSET = 10000  # Redis Cluster's bus listens on port + 10000


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


class RedisClusterProcesses:
    """Three `redis-server --cluster-enabled yes` processes joined into one cluster."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = _free_ports(_NODES)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """`redis+cluster://` URL of the first node."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 30) -> None:
        """Start the nodes, create the cluster, and wait until every node reports it ok."""
        for port in self.ports:
            node_dir = self.workdir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            command = [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(node_dir),
                "--daemonize", "no",
            ]  # fmt: skip
            with (node_dir / "redis.log").open("wb") as log:
                self.processes.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while "PONG" not in _cli(port, "ping"):
                self._check_alive(deadline)
                time.sleep(0.05)
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {created.stdout}{created.stderr}"
            )
        for port in self.ports:
            while "cluster_state:ok" not in _cli(port, "cluster", "info"):
                self._check_alive(deadline)
                time.sleep(0.1)

    def _check_alive(self, deadline: float) -> None:
        dead = [p.args for p in self.processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"redis-server exited early: {dead}")
        if time.monotonic() > deadline:
            raise RuntimeError("Redis Cluster did not become ready in time")

    def stop(self) -> None:
        """Stop every node, killing any that does not exit promptly. Idempotent."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()


_started: RedisClusterProcesses | str | None = None
"""This process's cluster, or why it could not start (so each test skips with the reason)."""


def _shared_cluster(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    global _started
    if _started is None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            _started = "redis-server or redis-cli is not installed"
        else:
            for attempt in range(3):  # a free port may be taken before a node binds it
                cluster = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster"))
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
    if not isinstance(_started, RedisClusterProcesses):
        service_unavailable("a local 3-node Redis Cluster", str(_started))
        raise AssertionError("unreachable")  # service_unavailable skips or fails
    return _started.url


@pytest.fixture(scope="session")
def redis_cluster_url(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`redis+cluster://` URL of a 3-node cluster this test process started (and stops).

    The cluster is shared by every module that imports this fixture, within one process.
    """
    return _shared_cluster(pytestconfig, tmp_path_factory)
