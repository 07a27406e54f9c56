"""Frameworks are imported only by their adapter modules, and a missing one is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integrations.conftest import ROOT

FRAMEWORKS = (
    "agent_framework",
    "autogen_core",
    "autogen_agentchat",
    "autogen_ext",
    "langchain_core",
    "langgraph",
)

_IMPORT_CORE = f"""
import importlib, json, pkgutil, sys
import memweave, memweave.integrations
skipped = {{}}
def modules(path, prefix):  # walk_packages would import memweave.integrations' subpackages
    for info in pkgutil.iter_modules(path, prefix):
        yield info
        if info.ispkg and info.name != "memweave.integrations":
            try:
                yield from modules(importlib.import_module(info.name).__path__, info.name + ".")
            except ImportError:
                pass
for info in modules(memweave.__path__, "memweave."):
    if info.name.startswith("memweave.integrations.") or info.name.endswith(".__main__"):
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:  # a backend whose optional driver is not installed
        skipped[info.name] = repr(exc)
leaked = sorted(
    name for name in sys.modules if name.split(".")[0] in {list(FRAMEWORKS)!r}
)
imported = sorted(name for name in sys.modules if name.startswith("memweave."))
print(json.dumps({{"leaked": leaked, "skipped": skipped, "imported": imported}}))
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_core_package_imports_no_framework() -> None:
    """Importing memweave and every module outside memweave.integrations loads no framework."""
    done = _run(_IMPORT_CORE)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["leaked"] == [], report
    assert {"memweave.providers.sql", "memweave.reducers.tokens", "memweave.context.vector"} <= set(
        report["imported"]
    )


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [
        ("agent_framework", "agent_framework", "agent-framework"),
        ("autogen", "autogen_core", "autogen"),
        ("langchain", "langchain_core", "langchain"),
    ],
)
def test_missing_framework_names_the_extra(module: str, package: str, extra: str) -> None:
    """Importing an adapter without its framework raises MissingDependency naming the extra."""
    code = f"""
import sys
sys.modules[{package!r}] = None  # makes `import {package}` fail as if it were not installed
from memweave.errors import MissingDependency
try:
    import memweave.integrations.{module}
except MissingDependency as exc:
    assert isinstance(exc, ImportError)
    print(exc.package, exc.extra, exc, sep="|")
"""
    done = _run(code)
    assert done.returncode == 0, done.stderr
    found_package, found_extra, message = done.stdout.strip().split("|")
    assert (found_package, found_extra) == (package, extra)
    assert f"pip install 'memweave[{extra}]'" in message
