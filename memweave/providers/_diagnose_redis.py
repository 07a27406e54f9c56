"""Diagnosing Redis: persistence, eviction and failed saves, on every master of a Cluster.

Settings are read with `CONFIG GET` and, where a managed Redis refuses it, from `INFO`
(which still shows `maxmemory-policy` and whether the append-only file is on).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from memweave.errors import BackendUnavailable, MissingDependency
from memweave.providers._diagnose import Diagnosis, Finding, make_diagnosis

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.exceptions import RedisClusterException, RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency("redis", "redis") from exc

__all__ = ["diagnose_redis_client", "diagnose_redis_url"]

_CONFIG_FIX = (
    "CONFIG SET {name} {value}, then CONFIG REWRITE to keep it across restarts (or "
    "`{name} {value}` in redis.conf); on a managed Redis, in the service's settings"
)
_AOF_FIX = (
    "turn on the append-only file: CONFIG SET appendonly yes, then CONFIG REWRITE (or "
    "`appendonly yes` in redis.conf); with appendfsync everysec a crash of the host loses at "
    "most about a second, with always nothing"
)


async def diagnose_redis_url(url: str) -> Diagnosis:
    """Diagnose the Redis (or Redis Cluster) `url` names, with a client of its own."""
    from memweave.providers.redis import client_from_url

    client = client_from_url(url)
    try:
        return await _diagnose(client, url)
    finally:
        await client.aclose()


async def diagnose_redis_client(client: Redis | RedisCluster) -> Diagnosis:
    """Diagnose the server behind a caller's client (which stays open)."""
    return await _diagnose(client, _where(client))


async def _diagnose(client: Redis | RedisCluster, url: str) -> Diagnosis:
    with _unavailable(url):
        if isinstance(client, RedisCluster):
            await client.initialize()
            findings: list[Finding] = []
            server = None
            for node in client.get_primaries():
                config, info = await _read(client, node)
                server = server or _version(info)
                findings += _check(config, info, node.name, cluster=True)
            return make_diagnosis(url, "redis-cluster", findings, server=server)
        config, info = await _read(client, None)
        return make_diagnosis(url, "redis", _check(config, info, None), server=_version(info))


def _where(client: Redis | RedisCluster) -> str:
    """A password-free URL naming the server a caller's client talks to."""
    if isinstance(client, RedisCluster):
        node = next(iter(client.nodes_manager.startup_nodes.values()), None)
        return f"redis+cluster://{node.host}:{node.port}" if node else "redis+cluster://"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


@contextmanager
def _unavailable(url: str) -> Iterator[None]:
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as exc:
        raise BackendUnavailable(f"{type(exc).__name__}: {exc}", url=url) from exc


async def _read(
    client: Redis | RedisCluster, node: Any
) -> tuple[dict[str, str] | ResponseError, dict[str, Any]]:
    """`CONFIG GET *` (or the error refusing it) and `INFO` of one server."""
    target: dict[str, Any] = {} if node is None else {"target_nodes": node}
    config: dict[str, str] | ResponseError
    try:
        raw = await client.config_get("*", **target)
        config = {_text(key): _text(value) for key, value in raw.items()}
    except ResponseError as exc:  # managed Redis: CONFIG renamed away or not permitted
        config = exc
    try:
        info: dict[str, Any] = await client.info(**target)
    except ResponseError:
        info = {}
    return config, info


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _version(info: dict[str, Any]) -> str | None:
    version = info.get("redis_version")
    return f"Redis {version}" if version is not None else None


def _check(
    config: dict[str, str] | ResponseError,
    info: dict[str, Any],
    where: str | None,
    *,
    cluster: bool = False,
) -> list[Finding]:
    """The findings of one server from what `_read` got."""
    settings = dict(config) if isinstance(config, dict) else {}
    # INFO still answers where CONFIG GET is refused.
    if "maxmemory-policy" not in settings and "maxmemory_policy" in info:
        settings["maxmemory-policy"] = _text(info["maxmemory_policy"])
        settings["maxmemory"] = _text(info.get("maxmemory", 0))
    if "appendonly" not in settings and "aof_enabled" in info:
        settings["appendonly"] = "yes" if str(info["aof_enabled"]) == "1" else "no"
    findings: list[Finding] = []
    missing = [
        name
        for name in ("save", "appendonly", "appendfsync", "maxmemory-policy")
        if name not in settings
    ]
    if missing:
        reason = f"CONFIG GET was refused ({config})" if isinstance(config, ResponseError) else ""
        findings.append(
            Finding(
                severity="warning",
                concern="unchecked",
                setting=", ".join(missing),
                found=reason or "not reported by the server",
                where=where,
                why="these settings decide whether a restart loses conversations or memory "
                "pressure evicts them, and could not be read",
                fix="check with your Redis provider that persistence (AOF) is on and "
                "maxmemory-policy is noeviction, or run doctor with a user allowed CONFIG GET",
            )
        )
    findings += _persistence(settings, where)
    findings += _eviction(settings, where)
    findings += _failed_saves(settings, info, where)
    if cluster and int(info.get("connected_slaves", 0) or 0) == 0:
        findings.append(
            Finding(
                severity="warning",
                concern="durability",
                setting="replicas",
                found="0",
                where=where,
                why="when this master's host fails, no replica takes over: its slots' "
                "conversations are unavailable, and lost unless its disk survives",
                fix="give every master a replica (redis-cli --cluster add-node NEW:PORT "
                "ANY:PORT --cluster-slave --cluster-master-id ID)",
            )
        )
    return findings


def _persistence(settings: dict[str, str], where: str | None) -> list[Finding]:
    aof = settings.get("appendonly")
    save = settings.get("save")
    if aof == "no" and save is not None and not save.strip():
        return [
            Finding(
                severity="error",
                concern="durability",
                setting="appendonly",
                found='no, save ""',
                where=where,
                why="persistence is off: a restart or crash of Redis loses every stored "
                "conversation",
                fix=_AOF_FIX,
            )
        ]
    if aof == "no":
        found = f'no, save "{save}"' if save is not None else "no"
        return [
            Finding(
                severity="warning",
                concern="durability",
                setting="appendonly",
                found=found,
                where=where,
                why="at most RDB snapshots: a crash of Redis loses every write since the last "
                "snapshot, which can be minutes of acknowledged messages",
                fix=_AOF_FIX,
            )
        ]
    fsync = settings.get("appendfsync")
    if aof == "yes" and fsync == "no":
        return [
            Finding(
                severity="warning",
                concern="durability",
                setting="appendfsync",
                found="no",
                where=where,
                why="the operating system decides when the append-only file reaches the disk "
                "(about every 30 s): a power loss or OS crash loses that much acknowledged "
                "history",
                fix=_CONFIG_FIX.format(name="appendfsync", value="everysec"),
            )
        ]
    if aof == "yes" and fsync == "everysec":
        return [
            Finding(
                severity="info",
                concern="durability",
                setting="appendfsync",
                found="everysec",
                where=where,
                why="a power loss or OS crash can lose about the last second of acknowledged "
                "writes (a crash of Redis alone loses nothing)",
                fix=_CONFIG_FIX.format(name="appendfsync", value="always")
                + " (every write then waits for the disk)",
            )
        ]
    return []


def _eviction(settings: dict[str, str], where: str | None) -> list[Finding]:
    policy = settings.get("maxmemory-policy")
    if policy is None or policy == "noeviction":
        limit = _bytes(settings.get("maxmemory"))
        if policy is None or not limit:
            return []
        return [
            Finding(
                severity="info",
                concern="eviction",
                setting="maxmemory",
                found=_size(limit),
                where=where,
                why="with noeviction, once memory is full writes fail (add_messages raises "
                "BackendUnavailable) and nothing stored is lost",
                fix="watch used_memory, or raise maxmemory before it is reached",
            )
        ]
    limit = _bytes(settings.get("maxmemory"))
    every_key = policy.startswith("allkeys-")
    reach = (
        f"when memory reaches maxmemory ({_size(limit)})"
        if limit
        else "as soon as a maxmemory limit is set (managed services set one)"
    )
    which = (
        "any key, including whole conversations or part of one"
        if every_key
        else "keys with a TTL: sessions stored with ttl= can vanish (whole or in part) "
        "before they expire"
    )
    if limit:
        severity = "error" if every_key else "warning"
    else:
        severity = "warning" if every_key else "info"
    return [
        Finding(
            severity=severity,
            concern="eviction",
            setting="maxmemory-policy",
            found=policy,
            where=where,
            why=f"{reach}, Redis silently evicts {which}",
            fix=_CONFIG_FIX.format(name="maxmemory-policy", value="noeviction")
            + "; a full memory then fails writes instead of deleting history",
        )
    ]


def _failed_saves(
    settings: dict[str, str], info: dict[str, Any], where: str | None
) -> list[Finding]:
    checks = [
        ("rdb_last_bgsave_status", settings.get("save", "x").strip() != ""),
        ("aof_last_write_status", settings.get("appendonly") == "yes"),
    ]
    return [
        Finding(
            severity="warning",
            concern="durability",
            setting=name,
            found=_text(info[name]),
            where=where,
            why="the last save to disk failed: what was stored since is not on disk, and "
            "Redis may refuse writes until a save succeeds",
            fix="read the Redis log for the cause (disk full, permissions), fix it, then "
            "run BGSAVE (or BGREWRITEAOF)",
        )
        for name, applies in checks
        if applies and name in info and _text(info[name]) not in ("ok", "")
    ]


def _bytes(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _size(count: int) -> str:
    """`count` bytes in the largest binary unit that keeps it at 1 or more."""
    for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if count >= 1024**power:
            return f"{count / 1024**power:.4g} {unit}"
    return f"{count} B"
