"""Fixtures of the fault suite: servers of its own, and the faults each backend can suffer.

Every server here is started by the suite on a free loopback port and signalled by pid; the
shared servers are never killed or paused. MariaDB is the one shared server the suite uses:
as a user it creates for one test, killing only that user's connections (never pausing or
killing the server). A server that cannot start skips its tests with the reason, and fails
them under `MEMWEAVE_REQUIRE_SERVICES=1`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from tests.conftest import service_unavailable
from tests.faults._servers import (
    DURABLE_REDIS,
    PostgresServer,
    RedisNodes,
    postgres_available,
    redis_server_available,
    scratch_parent,
    wait_for,
)

TIMEOUT = 3.0
"""The `timeout=` (seconds) of every provider the suite builds, unless a test says otherwise:
small, so a fault surfaces fast, yet roomy enough for a retry on a loaded 2-core CI machine."""

DEFAULT_MYSQL_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"

S = TypeVar("S", RedisNodes, PostgresServer)


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers `xdist_group`; register it here too, so `-p no:xdist` runs work
    # under --strict-markers.
    config.addinivalue_line("markers", "xdist_group(name): run on the same xdist worker")


def _started(what: str, missing: str | None, make: Callable[[], S]) -> S:
    """`make()` a server and start it (three tries: a free port may be taken meanwhile)."""
    if missing is not None:
        service_unavailable(what, missing)
    failure: BaseException | None = None
    for _ in range(3):
        server: S | None = None
        try:
            server = make()
            server.start()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            if server is not None:
                server.stop()
            failure = exc
        else:
            return server
    service_unavailable(what, f"could not start it: {failure}")
    raise AssertionError("unreachable")  # service_unavailable skips or fails


def _shared_server() -> None:
    raise NotImplementedError("the suite never signals a server it did not start")


@dataclass
class Target:
    """One backend under fault: its URL and what a test can do to its server."""

    name: str
    url: str
    kill_connections: Callable[[], int]
    """End the provider's connections server-side; how many. Called from the killer thread."""
    crash: Callable[[], None] = _shared_server
    """SIGKILL the server (every process of it)."""
    restart: Callable[[], None] = _shared_server
    """Start it again on the same port, with the same data; return once it serves."""
    pause: Callable[[], None] = _shared_server
    """SIGSTOP the server."""
    resume: Callable[[], None] = _shared_server
    """SIGCONT the server."""
    options: dict[str, Any] = field(default_factory=dict)
    """Options every provider on this target gets (e.g. a namespace)."""


@pytest.fixture
def session_id() -> str:
    """A fresh session id."""
    return f"faults-{uuid.uuid4().hex}"


@pytest.fixture
def redis_node() -> Iterator[RedisNodes]:
    """A durable (`appendfsync always`) `redis-server` of this test's own."""
    server = _started(
        "a local redis-server",
        redis_server_available(),
        lambda: RedisNodes(1, options=DURABLE_REDIS, parent=scratch_parent()),
    )
    yield server
    server.stop()


@pytest.fixture
def redis_target(redis_node: RedisNodes) -> Iterator[Target]:
    """The Redis backend on `redis_node`, killed with `CLIENT KILL TYPE normal`."""
    import redis

    port = redis_node.ports[0]
    admin = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)

    def kill_connections() -> int:
        return int(admin.client_kill_filter(_type="normal", skipme=True))

    yield Target(
        "redis",
        redis_node.url,
        kill_connections,
        crash=lambda: redis_node.kill(port),
        restart=lambda: redis_node.restart(port),
        pause=lambda: redis_node.pause(port),
        resume=lambda: redis_node.resume(port),
    )
    admin.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the suite's own, shared by its tests (each leaves it running)."""
    server = _started("a local PostgreSQL server", postgres_available(), PostgresServer)
    yield server
    server.stop()


@pytest.fixture
def postgres_target(postgres_server: PostgresServer) -> Iterator[Target]:
    """The SQL backend on `postgres_server`, killed with `pg_terminate_backend`."""
    import psycopg

    postgres_server.ensure_running()
    admin: list[Any] = []

    def kill_connections() -> int:
        if not admin:  # opened in the killer's thread, used there only
            admin.append(psycopg.connect(postgres_server.dsn, autocommit=True))
        return postgres_server.terminate_clients(admin[0])

    yield Target(
        "postgres",
        postgres_server.url,
        kill_connections,
        crash=postgres_server.kill,
        restart=postgres_server.restart,
        pause=postgres_server.pause,
        resume=postgres_server.resume,
    )
    for conn in admin:
        conn.close()
    postgres_server.ensure_running()  # the next test finds it serving, whatever happened


@dataclass
class _MariaDB:
    """A user of the shared MariaDB made for one test, and a root connection to watch it."""

    user: str
    admin: Any

    def kill_connections(self) -> int:
        """`KILL CONNECTION` each connection of `user`, and wait until they are gone."""
        import pymysql

        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE user = %s", (self.user,)
            )
            ids = [int(row[0]) for row in cursor.fetchall()]
            killed = 0
            for thread_id in ids:
                try:
                    cursor.execute("KILL CONNECTION %s", (thread_id,))
                    killed += 1
                except pymysql.err.MySQLError:  # it had ended meanwhile
                    pass

            def gone() -> bool:
                return self._remaining(cursor, ids) == 0

            wait_for("the killed MariaDB connections to end", gone, 10, every=0.005)
        return killed

    def _remaining(self, cursor: Any, ids: list[int]) -> int:
        if not ids:
            return 0
        cursor.execute(
            "SELECT count(*) FROM information_schema.processlist WHERE user = %s AND id IN %s",
            (self.user, ids),
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
async def mariadb_target() -> AsyncIterator[Target]:
    """The SQL backend on the shared MariaDB as a user of this test's own, whose connections
    alone are killed; the user and its tables are dropped afterwards."""
    import pymysql
    from sqlalchemy.engine import make_url

    from memweave.providers.sql import SQLChatHistoryProvider

    root = make_url(os.environ.get("MEMWEAVE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL))
    connect = {
        "host": root.host or "127.0.0.1",
        "port": root.port or 3306,
        "user": root.username or "root",
        "password": root.password or "",
        "database": root.database or "test",
        "autocommit": True,
        "connect_timeout": 5,
    }
    try:
        admin = pymysql.connect(**connect)
    except pymysql.err.MySQLError as exc:
        service_unavailable("MariaDB/MySQL", f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable") from exc
    user = f"mwf{uuid.uuid4().hex[:12]}"
    password = secrets.token_hex(12)
    database = str(connect["database"]).replace("`", "``")  # quoted as an identifier
    try:
        with admin.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@'%%'", (user,))
    except pymysql.err.MySQLError as exc:
        admin.close()
        service_unavailable("a MariaDB user of the test's own", f"{type(exc).__name__}: {exc}")
    url = root.set(username=user, password=password).render_as_string(hide_password=False)
    server = _MariaDB(user, admin)
    yield Target("mariadb", url, server.kill_connections, options={"namespace": user})
    dropper = SQLChatHistoryProvider(url, namespace=user)
    try:
        async with dropper.engine.begin() as conn:
            await conn.run_sync(dropper.metadata.drop_all)
    finally:
        await dropper.aclose()
        with admin.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        admin.close()


@pytest.fixture(params=["redis", "postgres", "mariadb"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each backend the connection-kill scenario runs on."""
    value: Target = request.getfixturevalue(f"{request.param}_target")
    return value


@pytest.fixture
def redis_cluster() -> Iterator[RedisNodes]:
    """A Redis Cluster of this test's own: 3 masters, 1 replica each, 1 s node timeout."""
    cluster = _started(
        "a local 6-node Redis Cluster",
        redis_server_available(),
        lambda: RedisNodes(
            6,
            cluster=True,
            replicas=1,
            node_timeout_ms=1000,
            options=("--repl-diskless-sync-delay", "0"),
            parent=scratch_parent(),
        ),
    )
    yield cluster
    cluster.stop()


def deadline(seconds: float) -> float:
    """A `time.monotonic()` deadline `seconds` from now."""
    return time.monotonic() + seconds
