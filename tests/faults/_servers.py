"""Throwaway servers the fault suite kills, pauses and restarts, by pid and on loopback only.

Redis reuses the benchmarks' `RedisProcesses` (one server, or a Cluster with replicas);
PostgreSQL is an `initdb` cluster of its own in a temporary folder, run as the `postgres`
user when the tests run as root (`initdb` refuses root). Nothing here touches a server it
did not start; the shared servers (5432, 3306, 6379) are never signalled.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memweave.bench._scale_redis import RedisProcesses, redis_server_available
from memweave.bench._scale_redis import _cli as _redis_cli

__all__ = [
    "DURABLE_REDIS",
    "PostgresServer",
    "RedisNodes",
    "free_port",
    "postgres_available",
    "redis_server_available",
    "scratch_parent",
    "wait_for",
]

DURABLE_REDIS = ("--appendonly", "yes", "--appendfsync", "always")
"""`redis-server` arguments under which an acknowledged write survives a SIGKILL."""


def scratch_parent() -> str | None:
    """Where the servers keep their files: `/dev/shm` (memory) when usable, else the default
    temporary folder. A SIGKILL ends the process, not the machine, so what was written (and
    fsynced) before it survives either way; memory just makes each fsync cheap, so the suite
    does not wait on a disk that other jobs share."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, ready: Any, timeout: float, *, every: float = 0.02) -> None:
    """Poll `ready()` until it is true; raise `RuntimeError` naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


class RedisNodes(RedisProcesses):
    """`RedisProcesses` whose nodes a test kills (SIGKILL), pauses (SIGSTOP) and restarts.

    Every node is addressed by its port; a restarted node listens on the same port and reads
    the same folder (so its append-only file, with `DURABLE_REDIS`).
    """

    def _process(self, port: int) -> subprocess.Popen[bytes]:
        return self.processes[self.ports.index(port)]

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port` and reap it."""
        process = self._process(port)
        process.kill()
        process.wait(timeout=10)

    def pause(self, port: int) -> None:
        """SIGSTOP the node on `port`: its sockets stay open, nothing answers."""
        self._process(port).send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        """SIGCONT the node on `port`."""
        process = self._process(port)
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)

    def restart(self, port: int, timeout: float = 20) -> None:
        """Start the node on `port` again (after `kill`) and wait until it answers `PING`.

        A node still loading its data answers `LOADING`, so this also waits for that.
        """
        process = self.launch(port)
        self.processes[self.ports.index(port)] = process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited on restart")
            return "PONG" in _redis_cli(port, "ping")

        wait_for(f"redis-server on port {port} answering after a restart", answers, timeout)

    def masters(self) -> list[int]:
        """Ports of the live Cluster masters that serve slots, as a live node reports them."""
        for port in self.live_ports():
            lines = _redis_cli(port, "cluster", "nodes").splitlines()
            found = []
            for line in lines:
                fields = line.split()
                if len(fields) > 8 and "master" in fields[2] and "fail" not in fields[2]:
                    found.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
            if found:
                return found
        return []

    def holding(self, pattern: str) -> list[int]:
        """Ports of the live masters holding a key that matches the glob `pattern`."""
        return [port for port in self.masters() if _redis_cli(port, "--scan", "--pattern", pattern)]

    def live_ports(self) -> list[int]:
        """Ports of the nodes whose process is running."""
        pairs = zip(self.ports, self.processes, strict=True)
        return [port for port, process in pairs if process.poll() is None]

    def stop(self) -> None:
        """Resume paused nodes, then stop every node and remove the folder (idempotent)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
        super().stop()


def _stat(pid: int | str) -> list[str] | None:
    """The fields of `/proc/<pid>/stat` after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (Linux `/proc`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _send(pids: Iterable[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


_PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        result = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(result.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    candidates = sorted(
        Path("/").glob(_PG_BIN_GLOB.lstrip("/")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(candidates):
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    return None


def postgres_available() -> str | None:
    """None when PostgreSQL's server binaries can be run here, else why not."""
    if _postgres_bin() is None:
        return f"initdb/postgres not found (pg_config --bindir, {_PG_BIN_GLOB})"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


class PostgresServer:
    """A PostgreSQL cluster of its own: `initdb` in a temporary folder, one `postgres` process.

    `kill()` (SIGKILL) and `pause()` (SIGSTOP) reach the postmaster and every backend, as a
    crash or a frozen machine would; they find the backends by their parent pid. fsync
    stays on (the default), so a committed transaction survives a SIGKILL. Authentication is
    `trust` for the `postgres` user, on 127.0.0.1 and a socket in the temporary folder.
    """

    def __init__(self) -> None:
        bindir = _postgres_bin()
        if bindir is None:
            raise RuntimeError(postgres_available() or "no PostgreSQL binaries")
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="memweave-faults-pg-", dir=scratch_parent()))
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.sockets.mkdir()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._paused: list[int] = []
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            self._run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            for path in (self.folder, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        """The asyncpg URL of the `postgres` database as the `postgres` user."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60) -> PostgresServer:
        """Run `initdb` (first time only), start the server, wait until it takes queries.

        Raises:
            RuntimeError: `initdb` failed, or the server exited or did not get ready in time.
        """
        if not (self.data / "PG_VERSION").exists():
            initdb = [
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions",
            ]  # fmt: skip
            result = subprocess.run(
                initdb,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=self.folder,
                **self._run_as,
            )
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")
        self._launch(timeout)
        return self

    def _launch(self, timeout: float) -> None:
        command = [
            str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.sockets), "-c", "listen_addresses=127.0.0.1",
            "-c", "max_connections=40", "-c", "shared_buffers=16MB",
            "-c", "fsync=on", "-c", "synchronous_commit=on",
        ]  # fmt: skip
        with (self.folder / "postgres.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
                **self._run_as,
            )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                tail = (self.folder / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres exited with {process.returncode}: {tail}")
            return self.ready()

        wait_for(f"PostgreSQL on port {self.port} taking queries", answers, timeout, every=0.05)

    def ready(self) -> bool:
        """Whether the server takes a query now (after crash recovery, not before)."""
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    @property
    def dsn(self) -> str:
        """A libpq connection string for the admin connections of the tests."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    @property
    def running(self) -> bool:
        """Whether the postmaster process is alive (paused counts as alive)."""
        return self.process is not None and self.process.poll() is None

    def _processes(self) -> list[int]:
        """The postmaster's pid, then those of its children (backends call setsid(), so a
        process group would not reach them)."""
        if not self.running:
            return []
        assert self.process is not None
        return [self.process.pid, *_children(self.process.pid)]

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, and wait until all are gone."""
        pids = self._processes()
        _send(pids, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)
        # A restart needs the old backends gone: they hold the old shared memory.
        wait_for("the killed PostgreSQL processes to end", lambda: not any(map(_alive, pids)), 10)

    def pause(self) -> None:
        """SIGSTOP the postmaster, then every backend: connections stay open, none answers."""
        self._paused = self._processes()
        _send(self._paused, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what `pause()` stopped."""
        _send(reversed(self._paused), signal.SIGCONT)
        self._paused = []

    def restart(self, timeout: float = 60) -> None:
        """Start the server again after `kill()` (same port, same data: crash recovery)."""
        self._launch(timeout)

    def ensure_running(self, timeout: float = 60) -> None:
        """Resume a paused server, or restart a stopped one; return once it takes queries."""
        if self.running:
            self.resume()
            wait_for("PostgreSQL taking queries after SIGCONT", self.ready, timeout, every=0.05)
        else:
            self.restart(timeout)

    def stop(self) -> None:
        """Stop the server (fast shutdown, SIGKILL if it hangs) and remove its folder."""
        if self.running:
            assert self.process is not None
            self.resume()
            self.process.send_signal(signal.SIGINT)  # fast shutdown: ends open sessions
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def terminate_clients(self, conn: Any) -> int:
        """End every client connection but `conn`'s own, waiting until each has exited.

        Returns:
            How many connections were ended.
        """
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
        return int(row[0]) if row else 0
