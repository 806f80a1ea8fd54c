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
    # Only xdist among the installed plugins: loading them all (nbval, playwright, ...) in the run and
    # in each of its workers took 10-45 s; none of them bears on how xdist schedules groups.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist", "-n", "2",
                          "--dist", "loadgroup", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                         env={**__import__("os").environ, "WORKERS_FILE": str(workers_file),
                              "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    workers = workers_file.read_text().split()
    assert len(workers) == 8 and len(set(workers)) == 1, workers


def test_every_process_of_the_suite_runs_numpy_and_torch_on_one_thread():
    """The suite runs a process per core; a second BLAS/OpenMP thread each made small products 10-80x slower."""
    import numpy  # noqa: F401  (loaded, so threadpoolctl sees its BLAS)
    import torch
    from threadpoolctl import threadpool_info

    pools = {info["internal_api"]: info["num_threads"] for info in threadpool_info()}
    assert pools.get("openblas", pools.get("mkl")) == 1, pools
    assert torch.get_num_threads() == 1


def test_make_grade_workers_share_the_cores_instead_of_oversubscribing_them():
    """Each of make grade's workers limits its own numpy and torch to its share of the cores."""
    code = ("import numpy, torch\n"
            "from threadpoolctl import threadpool_info\n"
            "from coursetools.grading.cli import _limit_threads\n"
            "_limit_threads(1)\n"
            "print(sorted({i['num_threads'] for i in threadpool_info()}), torch.get_num_threads())\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "scripts")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["[1]", "1"], out.stdout + out.stderr


def test_in_process_verdicts_are_computed_once_and_shared_through_the_session_folder(tmp_path, monkeypatch):
    """The grading and autograde tests judge the same fixtures in-process: the second asker (here, the
    other worker, standing in as a process with an empty memory) reads the first one's verdicts;
    other sources get their own."""
    from fixtures import notebooks
    from fixtures.notebooks import group_mistakes, representatives

    lab = "05_probability"
    group = group_mistakes(lab, representatives(lab))[0]
    monkeypatch.setenv(notebooks.VERDICT_CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(notebooks, "_VERDICTS", {})
    right = notebooks.run_checks(lab, notebooks.solution_sources(lab))
    wrong = notebooks.run_checks(lab, notebooks.solution_sources(lab, group))
    assert set(right.values()) == {None}
    assert {m.misconception for m in group} <= set(wrong.values())
    assert len(list(tmp_path.glob("*.json"))) == 2

    def not_again(*args):
        raise AssertionError("the checks ran again")

    monkeypatch.setattr(notebooks, "_VERDICTS", {})
    monkeypatch.setattr(notebooks, "_grade_cell_failures", not_again)
    assert notebooks.run_checks(lab, notebooks.solution_sources(lab, group)) == wrong
    assert notebooks.check_points(lab, notebooks.solution_sources(lab)) == dict.fromkeys(right)


def test_a_warm_kernel_runs_a_notebook_as_a_fresh_one_would(tmp_path, monkeypatch):
    """test_autograde's mistake groups run in kernels forked from a server that imported the labs' modules.

    The kernel gets the notebook's folder and the manager's environment, is the server's child, already
    has torch loaded, draws inline plots, is interrupted when a cell runs past nbclient's timeout, and is
    gone once nbclient shuts it down.
    """
    import os
    import time

    import nbformat
    from nbclient import NotebookClient

    from fixtures.warm_kernels import KernelServer, WarmKernelManager

    monkeypatch.setenv("MFDL_WARM_KERNEL_PROBE", "from-the-manager")
    cells = [
        "import os, sys\nprint('warm' if 'torch' in sys.modules else 'cold', os.getcwd(), "
        "os.environ['MFDL_WARM_KERNEL_PROBE'], os.getpid(), os.getppid())",
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nimport torch\nplt.plot([1, 2]); print(torch.ones(2).sum().item())",
        "import time\ntime.sleep(60)",
        "print('after the interrupt')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, kernel_manager_class=WarmKernelManager, timeout=5, interrupt_on_timeout=True,
                            allow_errors=True, resources={"metadata": {"path": str(tmp_path)}})
    started = time.monotonic()
    client.execute()
    assert time.monotonic() - started < 50, "the sleeping cell was not interrupted"
    state, cwd, probe, pid, ppid = nb.cells[0].outputs[0]["text"].split()
    assert (state, cwd, probe) == ("warm", str(tmp_path), "from-the-manager")
    assert int(ppid) == KernelServer.instance().proc.pid and int(pid) != os.getpid()
    assert nb.cells[1].outputs[0]["text"].strip() == "2.0"
    assert any("image/png" in o.get("data", {}) for o in nb.cells[1].outputs), "no inline plot"
    assert nb.cells[3].outputs[0]["text"].strip() == "after the interrupt"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the kernel {pid} outlived its notebook")


def test_only_this_interpreters_ipykernel_is_forked():
    """Another kernel or interpreter starts as jupyter_client starts it."""
    from fixtures.warm_kernels import ipykernel_arguments

    here = sys.executable
    assert ipykernel_arguments([here, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "c.json"]) == \
        ["-f", "c.json"]
    assert ipykernel_arguments([here, "-m", "ipykernel_launcher", "-f", "c.json"]) == ["-f", "c.json"]
    assert ipykernel_arguments(["/usr/bin/false", "-m", "ipykernel_launcher", "-f", "c.json"]) is None
    assert ipykernel_arguments([here, "-m", "other_kernel", "-f", "c.json"]) is None
