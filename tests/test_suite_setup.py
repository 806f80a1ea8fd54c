"""The test suite's own machinery: xdist groups keep their tests (and shared fixtures) on one worker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

GROUPED = '''
import os, pytest
pytestmark = pytest.mark.xdist_group("one-worker")

@pytest.mark.parametrize("i", range(8))
def test_grouped(i):
    with open(os.environ["WORKERS_FILE"], "a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
'''

UNGROUPED = '''
import pytest

@pytest.mark.parametrize("i", range(8))
def test_free(i):
    pass
'''


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    """pytest 9 with pytest-xdist 3.8 silently spread every group over all workers (see conftest.py)."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_free.py").write_text(UNGROUPED)
    workers_file = tmp_path / "workers.txt"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                          "--dist", "loadgroup", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                         env={**__import__("os").environ, "WORKERS_FILE": str(workers_file)}, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    workers = workers_file.read_text().split()
    assert len(workers) == 8 and len(set(workers)) == 1, workers
