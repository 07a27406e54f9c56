"""Diagnosing Chroma: where an embedded store's folder lives, and whether a server answers.

A Chroma server does not tell a client whether it persists to disk, so for a server this only
checks that it answers and says what to make sure of.
"""

from __future__ import annotations

from pathlib import Path

from memweave.errors import BackendUnavailable, MissingDependency
from memweave.providers._chroma_client import parse_chroma_url
from memweave.providers._diagnose import Diagnosis, Finding, make_diagnosis
from memweave.providers._diagnose_sqlite import folder_findings

__all__ = ["diagnose_chroma_url"]


async def diagnose_chroma_url(url: str) -> Diagnosis:
    """Diagnose the embedded Chroma folder or the Chroma server `url` names."""
    kind, options = parse_chroma_url(url)
    if kind == "path":
        folder = Path(options["path"])
        findings = folder_findings(folder, "Chroma folder", folder, created=True)
        return make_diagnosis(url, "chroma", findings)
    scheme = "https" if options["ssl"] else "http"
    base = f"{scheme}://{options['host']}:{options['port']}"
    version = await _server_version(base, url)
    finding = Finding(
        severity="info",
        concern="durability",
        setting="persistence",
        found="not visible to a client",
        why="a Chroma server keeps data only where it was told to: a container without a "
        "volume, or a server on a RAM-backed folder, loses everything when it stops",
        fix="run the server with `chroma run --path DIR` on a disk-backed folder (in Docker, "
        "mount a volume on the data folder)",
    )
    return make_diagnosis(url, "chroma-server", [finding], server=version)


async def _server_version(base: str, url: str) -> str | None:
    """The server's version, after checking that its heartbeat answers (API v2, then v1)."""
    try:
        import httpx
    except ImportError as exc:
        raise MissingDependency("httpx", "chroma") from exc
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        for api in ("/api/v2", "/api/v1"):
            try:
                beat = await http.get(f"{api}/heartbeat")
                if beat.status_code == 404:
                    continue
                beat.raise_for_status()
                answer = await http.get(f"{api}/version")
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                raise BackendUnavailable(reason, url=url) from exc
            version = answer.text.strip().strip('"') if answer.is_success else None
            return f"Chroma {version}" if version else None
    raise BackendUnavailable("no Chroma heartbeat at /api/v2 or /api/v1", url=url)
