"""Repository invariants: one environment, working README commands, links that resolve."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

from checker import CATALOGUE
from coursetools import build_labs
from coursetools.paths import LABS, ROOT, lab_ids, lab_notebook
from fixtures.notebooks import submission

README = (ROOT / "README.md").read_text(encoding="utf-8")
TROUBLESHOOTING = (ROOT / "TROUBLESHOOTING.md").read_text(encoding="utf-8")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_environment_yml_matches_pip_install():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    pip_side = set(project["dependencies"]) | set(extras["test"]) | set(extras["cluster"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert env["channels"] == ["conda-forge"]
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda_deps and "pip" in conda_deps
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section, "the conda env must install the project itself (math_utils, checker)"
    assert set(pip_section) - {"-e ."} == pip_side
    assert project["requires-python"].startswith(">=3.11")


def test_torch_is_pinned_to_the_course_version():
    assert "torch==2.13.0" in _pyproject()["project"]["dependencies"]


def test_every_catalogue_entry_has_a_troubleshooting_section():
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', TROUBLESHOOTING))
    missing = [m.name for m in CATALOGUE if m.name not in anchors]
    assert not missing, f"TROUBLESHOOTING.md lacks sections for {missing}"


def test_every_troubleshooting_link_in_the_code_resolves():
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', TROUBLESHOOTING))
    texts = [p.read_text(encoding="utf-8") for d in ("scripts", "solutions") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".ipynb")]
    linked = {a for t in texts for a in re.findall(r"TROUBLESHOOTING\.md#([a-z0-9-]+)", t)}
    assert linked, "no links found: the pattern is wrong"
    assert linked <= anchors, f"dangling links: {sorted(linked - anchors)}"
    internal = set(re.findall(r"\]\(#([a-z0-9-]+)\)", TROUBLESHOOTING))
    assert internal <= anchors, f"dangling in-page links: {sorted(internal - anchors)}"


def test_readme_shows_the_two_commands_first_and_every_make_target_exists():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make lab", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    for target in set(re.findall(r"`make ([a-z-]+)", README)):
        assert target in targets, f"README mentions `make {target}` but the Makefile has no such target"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_make_labs_never_overwrites_a_students_edits(tmp_path):
    lab = lab_ids()[0]
    edited = submission(lab)  # exercise cells filled in, as a student would
    target = lab_notebook(lab, tmp_path)
    target.parent.mkdir(parents=True)
    nbformat.write(edited, target)
    before = target.read_bytes()
    assert build_labs.main([lab], labs_dir=tmp_path) == 1
    assert target.read_bytes() == before
    assert build_labs.main([lab, "--force"], labs_dir=tmp_path) == 0
    backups = list(target.parent.glob(f"{lab}.ipynb.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    assert target.read_bytes() == lab_notebook(lab).read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.notebook
def test_make_lab_serves_the_labs_with_nbgrader_and_leaves_them_untouched():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    before = {p: p.read_bytes() for p in LABS.rglob("*.ipynb")}
    port, token = _free_port(), "mdl-test-token"
    args = f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    proc = subprocess.Popen(["make", "lab", f"ARGS={args}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/contents/labs/01_backprop?token={token}", timeout=5) as r:
                    listing = r.read().decode()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"JupyterLab did not come up:\n{proc.stdout.read() if proc.poll() is not None else ''}")
                time.sleep(1)
        assert "01_backprop.ipynb" in listing
        # The page config lists the federated extensions JupyterLab will load.
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10) as r:
            page = r.read().decode()
        assert "@jupyter/nbgrader" in page
        # Student mode (the default): nbgrader's instructor panels are switched off for this launch.
        assert re.search(r'"disabledExtensions": \[[^\]]*"@jupyter/nbgrader:formgrader"', page), page[:2000]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert {p: p.read_bytes() for p in LABS.rglob("*.ipynb")} == before
