"""`diagnose` on Redis (own throwaway servers and Cluster), Chroma, memory, and its arguments
(`namespace`, the deprecated `table_prefix`).

The Redis servers are throwaway `redis-server` processes on free loopback ports, started
with the settings under test and stopped by pid (`tests._redis_servers`); SQL backends are in
`test_diagnose_sql.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from memweave import ChatMessage
from memweave.errors import BackendUnavailable, ConfigurationError
from memweave.providers import SUPPORTED_SCHEMES, Diagnosis, Finding, diagnose
from memweave.providers._diagnose import _SCHEMES
from memweave.providers.sql import SQLChatHistoryProvider
from tests._redis_cluster import redis_cluster_url
from tests._redis_servers import (
    durable_redis_url,
    free_port,
    throwaway_redis,
    unsafe_redis_url,
)
from tests.conformance._harness_chroma import chroma_server_url

__all__ = ["chroma_server_url", "durable_redis_url", "redis_cluster_url", "unsafe_redis_url"]

_SHM = Path("/dev/shm")

_EVICTING = [
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]


@pytest.fixture(scope="module")
def scratch_redis_url() -> Iterator[str]:
    """A server whose settings each test sets itself (CONFIG SET, ACL SETUSER)."""
    yield from throwaway_redis("--appendonly", "yes", "--appendfsync", "always")


def _setting(diagnosis: Diagnosis, setting: str) -> list[Finding]:
    return [finding for finding in diagnosis.findings if finding.setting == setting]


async def _configure(url: str, **settings: str) -> None:
    client = Redis.from_url(url)
    try:
        for name, value in settings.items():
            await client.config_set(name.replace("_", "-"), value)
    finally:
        await client.aclose()


# -- Redis ----------------------------------------------------------------------------------------


async def test_diagnose_redis_reports_persistence_off(unsafe_redis_url: str) -> None:
    """A Redis without AOF and without RDB snapshots is an error about durability."""
    diagnosis = await diagnose(unsafe_redis_url)
    [finding] = _setting(diagnosis, "appendonly")
    assert (finding.severity, finding.concern, finding.found) == (
        "error",
        "durability",
        'no, save ""',
    )
    assert "appendonly yes" in finding.fix
    assert not diagnosis.durable


async def test_diagnose_redis_reports_allkeys_eviction(unsafe_redis_url: str) -> None:
    """`allkeys-lru` with maxmemory set is an error: any history key can be evicted."""
    diagnosis = await diagnose(unsafe_redis_url)
    [finding] = _setting(diagnosis, "maxmemory-policy")
    assert (finding.severity, finding.concern, finding.found) == (
        "error",
        "eviction",
        "allkeys-lru",
    )
    assert "100 MiB" in finding.why
    assert "noeviction" in finding.fix


async def test_diagnose_redis_durable_setup_is_ok(durable_redis_url: str) -> None:
    """AOF with everysec and noeviction leave only a note about the last second."""
    diagnosis = await diagnose(durable_redis_url)
    assert diagnosis.ok
    assert diagnosis.durable
    assert [(f.setting, f.severity) for f in diagnosis.findings] == [("appendfsync", "info")]
    assert diagnosis.backend == "redis"
    assert diagnosis.server is not None
    assert diagnosis.server.startswith("Redis ")


@pytest.mark.parametrize("policy", _EVICTING)
async def test_diagnose_redis_flags_every_evicting_policy(
    scratch_redis_url: str, policy: str
) -> None:
    """Every maxmemory-policy but noeviction, with maxmemory set, is an eviction problem."""
    await _configure(scratch_redis_url, maxmemory="50mb", maxmemory_policy=policy)
    diagnosis = await diagnose(scratch_redis_url)
    [finding] = _setting(diagnosis, "maxmemory-policy")
    expected = "error" if policy.startswith("allkeys-") else "warning"
    assert (finding.severity, finding.concern, finding.found) == (expected, "eviction", policy)
    assert not diagnosis.ok


async def test_diagnose_redis_noeviction_is_not_a_problem(scratch_redis_url: str) -> None:
    """noeviction with a limit is a note (writes fail when full), not a problem."""
    await _configure(scratch_redis_url, maxmemory="50mb", maxmemory_policy="noeviction")
    diagnosis = await diagnose(scratch_redis_url)
    assert diagnosis.ok
    assert [(f.setting, f.severity) for f in diagnosis.findings] == [("maxmemory", "info")]


async def test_diagnose_redis_appendfsync_no_is_a_warning(scratch_redis_url: str) -> None:
    """An AOF the OS flushes when it likes is a durability warning."""
    await _configure(scratch_redis_url, appendfsync="no", maxmemory="0")
    try:
        diagnosis = await diagnose(scratch_redis_url)
    finally:
        await _configure(scratch_redis_url, appendfsync="always")
    [finding] = _setting(diagnosis, "appendfsync")
    assert (finding.severity, finding.found) == ("warning", "no")


async def test_diagnose_redis_config_refused_is_a_finding(scratch_redis_url: str) -> None:
    """A user denied CONFIG GET gets an 'unchecked' warning; INFO still shows the policy."""
    await _configure(scratch_redis_url, maxmemory="50mb", maxmemory_policy="volatile-lru")
    user, password = f"doctor{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = Redis.from_url(scratch_redis_url)
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys="*", commands=["+@all", "-config"]
    )
    try:
        url = scratch_redis_url.replace("redis://", f"redis://{user}:{password}@")
        diagnosis = await diagnose(url)
    finally:
        await admin.acl_deluser(user)
        await admin.aclose()
    [unchecked] = [f for f in diagnosis.findings if f.concern == "unchecked"]
    assert unchecked.severity == "warning"
    assert "save" in unchecked.setting
    assert "CONFIG GET was refused" in unchecked.found
    assert [f.found for f in _setting(diagnosis, "maxmemory-policy")] == ["volatile-lru"]
    assert password not in diagnosis.model_dump_json()
    assert not diagnosis.durable


async def test_diagnose_redis_client_is_left_open(durable_redis_url: str) -> None:
    """`client=` diagnoses a caller's client and does not close it."""
    client = Redis.from_url(durable_redis_url)
    try:
        diagnosis = await diagnose(client=client)
        assert diagnosis.ok
        assert await client.ping()
    finally:
        await client.aclose()


async def test_diagnose_redis_cluster_checks_every_master(redis_cluster_url: str) -> None:
    """Each master of a Cluster is checked, and a master without replicas is a warning."""
    diagnosis = await diagnose(redis_cluster_url)
    assert diagnosis.backend == "redis-cluster"
    persistence = _setting(diagnosis, "appendonly")
    replicas = _setting(diagnosis, "replicas")
    assert len({f.where for f in persistence}) == 3
    assert {f.where for f in replicas} == {f.where for f in persistence}
    assert all(f.severity == "warning" for f in replicas)


@pytest.fixture(scope="module")
def replicated_cluster_url() -> Iterator[str]:
    """A Cluster of 3 masters with one replica each, persisted by AOF, never evicting."""
    yield from throwaway_redis(
        "--appendonly", "yes", "--appendfsync", "always", nodes=6, cluster=True, replicas=1
    )


async def test_diagnose_redis_cluster_with_replicas_is_ok(replicated_cluster_url: str) -> None:
    """A Cluster whose masters all have a replica and persist every write has no findings."""
    diagnosis = await diagnose(replicated_cluster_url)
    assert diagnosis.findings == ()
    assert diagnosis.durable


async def test_diagnose_redis_unreachable_raises_backend_unavailable() -> None:
    """A server that does not answer is `BackendUnavailable`, never a driver error."""
    with pytest.raises(BackendUnavailable):
        await diagnose(f"redis://127.0.0.1:{free_port()}/0")


# -- Chroma, memory -------------------------------------------------------------------------------


@pytest.mark.skipif(not _SHM.is_dir(), reason="no /dev/shm (tmpfs) on this system")
async def test_diagnose_chroma_folder_on_tmpfs_is_an_error() -> None:
    """An embedded Chroma folder on a RAM-backed filesystem is lost at reboot."""
    folder = _SHM / f"memweave-doctor-{uuid.uuid4().hex}"
    diagnosis = await diagnose(f"chroma://{folder}")
    [finding] = _setting(diagnosis, "filesystem")
    assert (finding.severity, finding.found) == ("error", "tmpfs")
    assert not folder.exists()


async def test_diagnose_chroma_folder_on_disk_is_ok(tmp_path: Path) -> None:
    """An embedded Chroma folder on a writable disk has no findings."""
    diagnosis = await diagnose(f"chroma://{tmp_path / 'chroma'}")
    assert diagnosis.findings == ()
    assert not (tmp_path / "chroma").exists()


async def test_diagnose_chroma_server_answers(chroma_server_url: str) -> None:
    """A Chroma server is reached and its version read; its persistence is a note."""
    diagnosis = await diagnose(chroma_server_url)
    assert diagnosis.backend == "chroma-server"
    assert diagnosis.ok
    assert diagnosis.server is not None
    assert diagnosis.server.startswith("Chroma ")


async def test_diagnose_chroma_server_unreachable_raises() -> None:
    """A Chroma server that does not answer is `BackendUnavailable`."""
    with pytest.raises(BackendUnavailable):
        await diagnose(f"chroma+http://127.0.0.1:{free_port()}")


async def test_diagnose_memory_is_not_durable() -> None:
    """The in-memory backend is reported as not outliving the process."""
    diagnosis = await diagnose("memory://")
    assert not diagnosis.durable
    assert [f.concern for f in diagnosis.findings] == ["durability"]


# -- arguments and the result ---------------------------------------------------------------------


def test_diagnose_knows_every_supported_scheme() -> None:
    """Every URL scheme `from_url` takes can be diagnosed."""
    assert set(_SCHEMES) == set(SUPPORTED_SCHEMES)


@pytest.mark.parametrize(
    ("url", "client"),
    [(None, None), ("memory://", object()), ("ftp://host", None), (None, object())],
)
async def test_diagnose_rejects_bad_targets(url: str | None, client: object) -> None:
    """Neither or both targets, an unknown scheme or client type: `ConfigurationError`."""
    with pytest.raises(ConfigurationError):
        await diagnose(url, client=client)


def test_diagnosis_json_round_trip_keeps_everything() -> None:
    """A diagnosis dumped to JSON and validated back is equal, with `ok` and `durable` shown."""
    finding = Finding(
        severity="warning", concern="eviction", setting="s", found="v", why="w", fix="f"
    )
    diagnosis = Diagnosis(url="redis://x", backend="redis", findings=(finding,))
    dumped = diagnosis.model_dump(mode="json")
    assert (dumped["ok"], dumped["durable"]) == (False, False)
    del dumped["ok"], dumped["durable"]
    assert Diagnosis.model_validate(dumped) == diagnosis


async def test_diagnose_namespace_does_not_apply_to_redis(durable_redis_url: str) -> None:
    """A namespace only names SQL tables: one SQL could not hold (`app:v1`) is fine for Redis."""
    diagnosis = await diagnose(durable_redis_url, namespace="app:v1")
    assert diagnosis.ok


async def test_diagnose_namespace_and_table_prefix_together_is_refused() -> None:
    """Both names of one option: `ConfigurationError` naming both, before anything connects."""
    with pytest.raises(ConfigurationError, match="table_prefix"):
        await diagnose("sqlite+aiosqlite:///x.db", namespace="app", table_prefix="app_")


async def test_diagnose_table_prefix_warns_and_checks_those_tables(tmp_path: Path) -> None:
    """The deprecated `table_prefix="app_"` warns and checks the tables `namespace="app"` does."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    async with SQLChatHistoryProvider(url, namespace="app") as history:
        await history.add_messages("s", [ChatMessage.user("hi")])
    with pytest.warns(DeprecationWarning, match=r"diagnose\(\)\(table_prefix=...\)"):
        old = await diagnose(url, table_prefix="app_")
    new = await diagnose(url, namespace="app")
    default = await diagnose(url)
    assert old.findings == new.findings
    assert "tables" not in {f.setting for f in new.findings}
    assert "tables" in {f.setting for f in default.findings}


@pytest.mark.parametrize("namespace", ["no-dashes", "9starts_with_digit", ""])
async def test_diagnose_sql_rejects_a_namespace_sql_cannot_hold(namespace: str) -> None:
    """A namespace that cannot start a table name is `ConfigurationError` naming it."""
    with pytest.raises(ConfigurationError, match="namespace must be"):
        await diagnose("sqlite+aiosqlite:///x.db", namespace=namespace)
