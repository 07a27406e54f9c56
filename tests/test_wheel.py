"""The wheel alone runs `memweave bench`: built from this checkout, installed into a fresh venv
in a temporary folder, and run there, where no source checkout is importable.

The new venv reuses this venv's installed dependencies through a `.pth` line (so the test needs
no network), but memweave itself comes only from the wheel: the editable install's hooks are
`.pth` files, which Python does not read in a folder added that way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]

CHECKOUT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding memweave installed from a freshly built wheel."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        dist,
        CHECKOUT,
        cwd=root,
        env=dict(os.environ),
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("memweave-*.whl")

    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = _run(
        python,
        "-c",
        "import sysconfig; print(sysconfig.get_path('purelib'))",
        cwd=root,
        env=dict(os.environ),
    ).stdout.strip()
    (Path(purelib) / "_deps_from_test_venv.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8"
    )
    installed = _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=root,
        env=dict(os.environ),
    )
    assert installed.returncode == 0, installed.stderr
    return env_dir


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = str(home)
    return env


def test_memweave_is_imported_from_the_wheel_not_the_checkout(
    wheel_venv: Path, tmp_path: Path
) -> None:
    """Outside the checkout, `memweave` and `memweave.bench` resolve to the installed wheel."""
    probe = _run(
        wheel_venv / "bin" / "python",
        "-c",
        "import json, importlib.util, memweave, memweave.bench.history as h; "
        "print(json.dumps([memweave.__file__, h.__file__, "
        "importlib.util.find_spec('benchmarks') is None]))",
        cwd=tmp_path,
        env=_clean_env(tmp_path),
    )
    assert probe.returncode == 0, probe.stderr
    package, suite, no_checkout_shims = json.loads(probe.stdout)
    assert Path(package).is_relative_to(wheel_venv)
    assert Path(suite).is_relative_to(wheel_venv)
    assert no_checkout_shims


def test_wheel_installed_command_runs_a_benchmark(wheel_venv: Path, tmp_path: Path) -> None:
    """`memweave bench history --url memory://` from the wheel writes results, report, charts."""
    out = tmp_path / "results"
    ran = _run(
        wheel_venv / "bin" / "memweave",
        "bench",
        "history",
        "--url",
        "memory://",
        "--quick",
        "--out",
        out,
        cwd=tmp_path,
        env=_clean_env(tmp_path),
    )
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert manifest["manifest"]["suites"] == ["history"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "memory" in report
    assert list(out.glob("*.png"))
    assert not (tmp_path / "memweave.db").exists()
