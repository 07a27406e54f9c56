"""What a benchmark run records: the manifest (versions, machine, git commit, backends), and the
Markdown report built from `results.json`."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from memweave._urls import mask_url
from memweave.cli._common import scrub
from memweave.cli._report_suites import (
    SECTIONS,
    history_section,
    markdown_table,
    ms,
    reducers_section,
)

__all__ = [
    "SECTIONS",
    "backend_info",
    "base_manifest",
    "markdown_report",
    "markdown_table",
    "ms",
    "servers_used",
    "write_results",
]


_PACKAGES = (
    "memweave",
    "pydantic",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "aiomysql",
    "redis",
    "chromadb",
    "onnxruntime",
    "tiktoken",
    "openai",
    "numpy",
    "rich",
    "matplotlib",
    "langchain-core",
    "langchain-community",
    "agent-framework-core",
    "agent-framework-redis",
)

_BACKEND_NAMES = {
    "memory": "memory",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "mysql": "mariadb",
    "mysql+aiomysql": "mariadb",
    "mariadb+aiomysql": "mariadb",
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "redis-cluster",
    "rediss+cluster": "redis-cluster",
}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return round(pages * size / 2**30, 1)


def _git() -> dict[str, Any] | None:
    """The commit of the source checkout memweave runs from, when it runs from one."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH is what the user runs
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def base_manifest(argv: list[str], suites: list[str]) -> dict[str, Any]:
    """The part of the manifest every run has: command, versions, machine, git commit."""
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": " ".join(["memweave", *(mask_url(arg) for arg in argv)]),
        "suites": suites,
        "memweave": _version("memweave"),
        "git": _git(),
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpus": os.cpu_count(),
            "memory_gb": _memory_gb(),
        },
        "packages": {name: _version(name) for name in _PACKAGES},
    }


async def _server_version(url: str, scheme: str) -> str | None:
    if scheme.startswith("redis") or scheme.startswith("rediss"):
        from redis.asyncio import Redis
        from redis.exceptions import RedisError

        if "cluster" in scheme:
            return None
        client = Redis.from_url(url)
        try:
            info = await client.info("server")
            return f"Redis {info.get('redis_version')}"
        except (RedisError, OSError):
            return None
        finally:
            await client.aclose()
    if scheme.startswith(("postgresql", "mysql", "mariadb")):
        from sqlalchemy.exc import SQLAlchemyError
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                version = connection.dialect.server_version_info or ()
                name = connection.dialect.name
            return f"{name} {'.'.join(str(part) for part in version)}".strip()
        except (SQLAlchemyError, OSError):
            return None
        finally:
            await engine.dispose()
    return None


async def backend_info(url: str) -> dict[str, Any]:
    """One backend of a run: its masked URL, name, driver and (best effort) server version."""
    scheme = url.split("://", 1)[0].lower()
    name = _BACKEND_NAMES.get(scheme, scheme)
    drivers = {
        "sqlite": ["sqlalchemy", "aiosqlite"],
        "postgresql": ["sqlalchemy", "asyncpg"],
        "mariadb": ["sqlalchemy", "aiomysql"],
        "redis": ["redis"],
        "redis-cluster": ["redis"],
    }.get(name, [])
    server: str | None
    if name == "sqlite":
        server = f"SQLite {sqlite3.sqlite_version}"
    elif name == "memory":
        server = "in-process"
    else:
        server = await _server_version(url, scheme)
    return {
        "url": mask_url(url),
        "backend": name,
        "drivers": {driver: _version(driver) for driver in drivers},
        "server": server,
    }


def write_results(out: Path, results: dict[str, Any], secrets: Iterable[str] = ()) -> Path:
    """Write `results.json` into `out`, with every one of `secrets` replaced by `***`."""
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    # A secret may sit in the JSON with escapes (a quote, a backslash): scrub that form too.
    escaped = {json.dumps(secret, ensure_ascii=False)[1:-1] for secret in secrets}
    text = scrub(text, {*secrets, *escaped})
    path = out / "results.json"
    path.write_text(text, encoding="utf-8")
    return path


# -- Markdown -----------------------------------------------------------------------------------


def _manifest_section(manifest: dict[str, Any]) -> list[str]:
    machine = manifest["machine"]
    git = manifest.get("git") or {}
    commit = git.get("commit")
    lines = [
        f"- command: `{manifest['command']}`",
        f"- run at: {manifest['created_at']}",
        f"- memweave {manifest.get('memweave')}, git commit "
        + (f"`{commit}`{' (with local changes)' if git.get('dirty') else ''}" if commit else "n/a"),
        f"- machine: {machine['platform']}, {machine['cpus']} CPUs"
        + (f", {machine['memory_gb']} GB RAM" if machine.get("memory_gb") else "")
        + f", Python {machine['python']}",
    ]
    for backend in manifest.get("backends", []):
        drivers = ", ".join(f"{k} {v}" for k, v in backend["drivers"].items())
        lines.append(
            f"- backend {backend['backend']}: `{backend['url']}`"
            + (f", {backend['server']}" if backend.get("server") else "")
            + (f" ({drivers})" if drivers else "")
        )
    dataset = manifest.get("dataset")
    if dataset:
        lines.append(
            f"- dataset: `{Path(dataset['path']).name}` sha256 `{dataset['sha256']}`, "
            f"{len(dataset['conversations'])} conversations "
            f"({', '.join(dataset['conversations'])}), {dataset['questions']:,} questions"
        )
    retrieval = manifest.get("retrieval")
    if retrieval:
        lines.append(
            f"- retrieval: embeddings {retrieval['embedding_model']} "
            f"({retrieval['dimensions']} dimensions), modes {', '.join(retrieval['modes'])}, "
            f"k {', '.join(map(str, retrieval['k']))}, ingest {retrieval.get('ingest')}"
        )
    llm = manifest.get("llm")
    if llm:
        lines.append(f"- answer model: `{llm.get('model')}` at `{llm.get('base_url')}`")
    return lines


def _where(url: str) -> str:
    """Where a server URL points: `127.0.0.1:6379 (local)`, `db.example.com:5432 (remote)`."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable address"
    if parts.scheme.startswith("unix") or (not host and parts.path):
        return f"unix socket {unquote(parts.path)} (local)"
    local = host in ("localhost", "::1") or bool(host and host.startswith("127."))
    address = f"{host}:{port}" if port else str(host)
    return f"{address} ({'local' if local else 'remote'})"


def _server_line(backend: str, url: str | None, server: str | None) -> str:
    """`Redis 7.0.15 at 127.0.0.1:6379 (local)`, `SQLite 3.45.1, embedded (file ...)`."""
    if backend == "memory":
        return "memory (in-process Python objects, no server)"
    if backend == "sqlite":
        path = url.split("///", 1)[1].split("?", 1)[0] if url and "///" in url else None
        name = server or f"SQLite {sqlite3.sqlite_version}"
        return f"{name}, embedded" + (f" (file `{Path(path).name}`)" if path else "")
    name = server or f"{backend} (server version not read)"
    return f"{name} at {_where(url)}" if url else name


def servers_used(results: dict[str, Any]) -> list[str]:
    """Every server (or embedded engine) the run used, with its version and address, and the
    suites that used it, one line each: `Redis 7.0.15 at 127.0.0.1:6379 (local): history,
    reducers (budgeted reads)`."""
    used: dict[str, list[str]] = {}

    def add(line: str, suite: str) -> None:
        suites = used.setdefault(line, [])
        if suite not in suites:
            suites.append(suite)

    manifest = results.get("manifest", {})
    if "history" in results:
        for backend in manifest.get("backends", []):
            add(_server_line(backend["backend"], backend["url"], backend.get("server")), "history")
    reducers = (results.get("reducers") or {}).get("results") or {}
    for name, entry in ((reducers.get("budgeted_read") or {}).get("backends") or {}).items():
        if entry.get("status") == "measured":
            line = _server_line(name, entry.get("url"), entry.get("server"))
            add(line, "reducers (budgeted reads)")
    for entry in (results.get("scale") or {}).get("backends", []):
        if entry.get("status") == "measured":
            backend = {"postgres": "postgresql"}.get(entry["backend"], entry["backend"])
            add(_server_line(backend, entry.get("url"), entry.get("server")), "scale")
    if "retrieval" in results:
        version = (manifest.get("packages") or {}).get("chromadb")
        add(f"Chroma {version or '(version unknown)'}, embedded in a temporary folder", "retrieval")
    llm = manifest.get("llm")
    if llm:
        add(f"model server `{llm.get('base_url') or 'the OpenAI API'}`", "retrieval (answers)")
    return [f"{line}: {', '.join(suites)}" for line, suites in used.items()]


def markdown_report(results: dict[str, Any], extra_sections: list[list[str]]) -> str:
    """Render `report.md` from the results document and any suite sections built elsewhere."""
    manifest = results["manifest"]
    lines = ["# memweave benchmark report", "", *_manifest_section(manifest), ""]
    servers = servers_used(results)
    if servers:
        lines += ["Servers and engines:", "", *(f"- {line}" for line in servers), ""]
    if "history" in results:
        lines += [*history_section(results["history"]), ""]
    if "reducers" in results:
        lines += [*reducers_section(results["reducers"]), ""]
    for section in extra_sections:
        lines += [*section, ""]
    lines.append("Raw numbers, versions and settings: `results.json`.")
    return "\n".join(lines) + "\n"
