"""The Makefile's install steps: runtime for `make lab`, test tools for `make test`, and a .venv
left by another Python rebuilt with a message (all through `make -n`, so nothing is installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coursetools.paths import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make_n(*args: str) -> subprocess.CompletedProcess:
    """`make -n` (prints the recipes, runs none) with the given targets and variables."""
    return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _fake_venv(path: Path, version: str | None = None) -> Path:
    """A real venv (without pip: fast) made by this interpreter; ``version`` rewrites what pyvenv.cfg says."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    if version is not None:
        cfg = path / "pyvenv.cfg"
        lines = [f"version = {version}" if line.startswith("version") else line
                 for line in cfg.read_text().splitlines()]
        cfg.write_text("\n".join(lines) + "\n")
    return path


def _runs_another_version(exe: str) -> bool:
    """``exe`` starts (a pyenv shim may not) and is not this interpreter's version."""
    proc = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() != str(sys.version_info[:2])


def test_make_lab_installs_runtime_only_and_never_apt(tmp_path):
    venv = _fake_venv(tmp_path / "venv")
    out = _make_n("lab", f"VENV={venv}").stdout
    assert "pip install --disable-pip-version-check -q -e ." in out
    assert ".[test]" not in out and "apt-get" not in out and "browser" not in out, out
    assert venv.exists(), "a working venv of a supported Python was removed"


def test_make_test_adds_the_test_tools_and_chromium(tmp_path):
    venv = _fake_venv(tmp_path / "venv")
    out = _make_n("test", f"VENV={venv}").stdout
    assert "-e '.[test,cluster]'" in out and "browser" in out, out  # cluster: make grade's Dask tests


def test_a_venv_whose_python_is_gone_is_rebuilt_with_a_message(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(tmp_path / "uninstalled-python3.11")
    out = _make_n("env", f"VENV={venv}").stdout
    assert f"Rebuilding {venv}: its Python no longer runs" in out, out
    assert not venv.exists()


def test_a_venv_built_by_another_python_version_is_rebuilt(tmp_path):
    # Its interpreter was upgraded in place (3.10 -> this one): the packages it had are gone.
    venv = _fake_venv(tmp_path / "venv", version="3.10.4")
    out = _make_n("env", f"VENV={venv}").stdout
    assert f"Rebuilding {venv}: it was built by Python" in out, out
    assert not venv.exists()


def test_pythons_other_than_the_venvs_are_noticed_on_request(tmp_path):
    candidates = [shutil.which(f"python3.{minor}") for minor in (11, 12, 13, 14)]
    candidates += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob("3.1[1-4]*/bin/python3.1?"))
    other = next((exe for exe in candidates if exe and _runs_another_version(exe)), None)
    if other is None:
        pytest.skip("only one supported Python on this machine")
    venv = _fake_venv(tmp_path / "venv")
    out = _make_n("env", f"VENV={venv}", f"PYTHON={other}").stdout
    assert f"PYTHON={other} is another version" in out, out
    assert not venv.exists()


def test_readme_formgrader_instructions_run():
    """README sends instructors to JupyterLab's Formgrader and names `nbgrader formgrade`: both exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`nbgrader formgrader`" not in readme.replace("no `nbgrader formgrader` command", "")
    bin_dir = Path(sys.executable).parent
    for command in (["nbgrader", "formgrade", "--help"], ["jupyter", "lab", "--help"]):
        proc = subprocess.run([str(bin_dir / command[0]), *command[1:]], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([str(bin_dir / "jupyter"), "server", "extension", "list"], capture_output=True,
                          text=True, timeout=120)
    assert "nbgrader.server_extensions.formgrader" in proc.stdout + proc.stderr
