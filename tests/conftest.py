"""Shared pytest setup: tests/fixtures importable as `fixtures`; xdist groups that hold under pytest 9."""

import os
import sys
from pathlib import Path

# Before numpy or torch load anywhere: the suite runs one process per core (xdist workers, and the
# kernels, graders and sandboxes they start), so each gets one BLAS/OpenMP thread. With two threads
# each on a busy 2-core machine, numpy's small matrix products ran 10-80x slower once torch was
# imported (OpenBLAS's and torch's OpenMP threads spin against each other): lab 06's init check
# took 3.5 s instead of 0.5 s. Set here, the variables reach every process the suite starts.
for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import pytest  # noqa: E402

try:
    from _pytest.nodeid import coerce_node_id  # pytest 9: a node's id is structured
except ImportError:  # pragma: no cover - older pytest keeps the string xdist writes
    coerce_node_id = None

# tests/ itself is not a package; the fixtures package sits beside the tests.
sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    """One folder for the in-process verdicts the session's processes share (fixtures/notebooks.py).

    Made by the controller (or a run without xdist) before its workers start, so they inherit it;
    removed when the session ends, so no later run reads a verdict of other code.
    """
    import tempfile

    try:
        from fixtures.notebooks import VERDICT_CACHE_ENV
    except ImportError:  # this conftest copied alone (test_suite_setup.py's nested runs)
        return
    if hasattr(config, "workerinput"):
        return
    config._verdict_cache = tempfile.mkdtemp(prefix="mfdl-verdicts-")
    os.environ[VERDICT_CACHE_ENV] = config._verdict_cache


def pytest_unconfigure(config):
    import shutil

    folder = getattr(config, "_verdict_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Keep each ``xdist_group`` on one worker (``--dist loadgroup``), as pytest-xdist means to.

    pytest-xdist 3.8 marks a grouped test by appending ``@group`` to ``item._nodeid``; pytest 9
    derives ``nodeid`` from ``item._id`` instead, so the mark was lost and every group was spread
    over all workers: each worker then set up the group's expensive shared fixtures (a class
    graded, a lab autograded) for itself. Same suffix, set where pytest 9 reads it.
    """
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers only
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix):
            if coerce_node_id is None:
                item._nodeid = item.nodeid + suffix
            else:
                item._id = coerce_node_id(item.nodeid + suffix)


@pytest.fixture(scope="session")
def autograded_courses(tmp_path_factory):
    """Every lab's fixture submissions autograded by nbgrader, once per session (fixtures/autograded.py).

    Session scope, not a module fixture parametrized by lab: xdist interleaves modules on a worker,
    and pytest would then autograde a lab again (minutes each).
    """
    from fixtures.autograded import AutogradedCourses

    return AutogradedCourses(tmp_path_factory)
