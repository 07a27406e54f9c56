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

from memweave._urls import mask_url
from memweave.cli._common import scrub

__all__ = [
    "backend_info",
    "base_manifest",
    "markdown_report",
    "markdown_table",
    "ms",
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


def _table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    align = ["---:" if index in right else "---" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def ms(value: object) -> str:
    """A latency in ms for a table: four significant digits, `-` for none."""
    return "-" if value is None else f"{float(value):.4g}"  # type: ignore[arg-type]


def _history_section(result: dict[str, Any]) -> list[str]:
    rows = []
    for row in result["results"]:
        floor = row.get("floor_p50_ms")
        ratio = f"{row['p50_ms'] / floor:.2f}x" if floor else "-"
        rows.append(
            [
                row["backend"],
                f"{row['n']:,}",
                row["operation"],
                ms(row["p50_ms"]),
                ms(row["p95_ms"]),
                ms(floor),
                ratio,
            ]
        )
    return [
        "## History backends",
        "",
        "Latency per call; the floor is the raw client (redis-py, SQLAlchemy Core) doing the "
        "same storage work in the same run.",
        "",
        *_table(
            ["backend", "N", "operation", "p50 ms", "p95 ms", "floor p50 ms", "vs floor"],
            rows,
            right={1, 3, 4, 5, 6},
        ),
        "",
        *_history_peers(result),
        "![append latency](history_append.png)",
        "",
        "![read latency](history_read.png)",
    ]


def _history_peers(result: dict[str, Any]) -> list[str]:
    """The peers measured beside memweave, and the ones skipped, with why."""
    statuses: list[dict[str, Any]] = result.get("peers") or []
    rows = []
    for row in result["results"]:
        for peer in row.get("peers") or []:
            ratio = peer.get("ratio_to_memweave")
            rows.append(
                [
                    row["backend"],
                    f"{row['n']:,}",
                    row["operation"],
                    peer["peer"],
                    ms(peer["p50_ms"]),
                    ms(peer["p95_ms"]),
                    str(peer["samples"]),
                    ms(row["p50_ms"]),
                    "-" if ratio is None else f"{ratio:.2f}x",
                    peer.get("note") or "",
                ]
            )
    if not rows and not statuses:
        return []
    lines = [
        "### Peers",
        "",
        "The stores users compare memweave with, on the same server in the same run, each "
        "through its own public async API on a fresh session of the same messages (converted "
        "before timing). `vs memweave` is the peer's p50 over memweave's: above 1, the peer "
        "is slower. `runs` counts the timed calls: a slow peer stops after about 5 seconds "
        "per operation (at least 3 calls; 0.5 seconds with --quick).",
        "",
    ]
    if rows:
        header = ["backend", "N", "operation", "peer", "p50 ms", "p95 ms", "runs"]
        header += ["memweave p50 ms", "vs memweave", "note"]
        lines += [*_table(header, rows, right={1, 4, 5, 6, 7, 8}), ""]
    for status in statuses:
        version = f" {status['version']}" if status.get("version") else ""
        where = f"{status['peer']} ({status['package']}{version}) on {status['backend']}"
        if status["status"] == "measured":
            notes = "; ".join(status.get("notes") or [])
            lines.append(f"- {where}" + (f": {notes}" if notes else ""))
        else:
            lines.append(f"- skipped {where}: {status.get('reason')}")
    return [*lines, ""] if statuses else lines


def _reducers_section(result: dict[str, Any]) -> list[str]:
    results = result["results"]
    params = result.get("parameters", {})
    rows: list[list[str]] = [
        ["TokenBudgetReducer, first call", ms(results.get("first_call_ms")), "-", ""]
    ]

    def add(label: str, summary: dict[str, Any] | None, note: str = "") -> None:
        if summary:
            rows.append([label, ms(summary["p50_ms"]), ms(summary["p95_ms"]), note])

    add("TokenBudgetReducer, per turn", results.get("per_turn"))
    add("MessageCountReducer, per turn", results.get("count_reducer_per_turn"))
    add("floor: slicing the window", results.get("floor_slice"))
    speedup = results.get("speedup_vs_naive")
    add(
        "naive: re-encode every message",
        results.get("naive_per_turn"),
        f"memweave {speedup:,.0f}x faster" if speedup else "",
    )
    peer = results.get("langchain") or {}
    if peer.get("status") == "measured":
        add(
            "LangChain trim_messages + tiktoken",
            peer["per_turn"],
            f"memweave {peer['speedup']:,.0f}x faster; identical windows "
            f"{peer['windows_identical']}/{peer['windows_compared']}",
        )
    elif peer:
        rows.append(["LangChain trim_messages + tiktoken", "skipped", "-", peer.get("reason", "")])
    intro = (
        f"{params.get('messages', 0):,} messages ({results.get('history_tokens', 0):,} tokens, "
        f"{params.get('encoding', '?')}) cut to {params.get('max_tokens', 0):,} tokens "
        f"({results.get('window_messages', '?')} messages kept); {params.get('turns', '?')} "
        "turns of one new message each."
    )
    return [
        "## Reducers",
        "",
        intro,
        "",
        *_table(["operation", "p50 ms", "p95 ms", "note"], rows, right={1, 2}),
        "",
        "![reducer cost per turn](reducers.png)",
    ]


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


def markdown_report(results: dict[str, Any], extra_sections: list[list[str]]) -> str:
    """Render `report.md` from the results document and any suite sections built elsewhere."""
    manifest = results["manifest"]
    lines = ["# memweave benchmark report", "", *_manifest_section(manifest), ""]
    if "history" in results:
        lines += [*_history_section(results["history"]), ""]
    if "reducers" in results:
        lines += [*_reducers_section(results["reducers"]), ""]
    for section in extra_sections:
        lines += [*section, ""]
    lines.append("Raw numbers, versions and settings: `results.json`.")
    return "\n".join(lines) + "\n"


def markdown_table(
    header: list[str], rows: list[list[str]], right: set[int] | None = None
) -> list[str]:
    """A Markdown table; `right` holds the indexes of right-aligned columns."""
    return _table(header, rows, right)
