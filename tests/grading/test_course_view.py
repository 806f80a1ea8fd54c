"""The course's own modules, as a submission sees them while it is graded.

``math_utils``, ``landscape``, ``nets`` and ``checker`` hold reference
implementations of exercises. In the sandbox each lab reaches only the names
its setup cell imports and what those need (``course_view.seal``); the rest is
deleted from the modules' namespaces and their source cannot be read.
"""

from __future__ import annotations

import ast
import sys
import textwrap

import nbformat
import numpy as np
import pytest

from coursetools.grading import course_view, wire
from coursetools.grading.sandbox import Limits, Sandbox
from coursetools.grading.trusted import TrustedLab, nbgrader_meta, strip_magics
from coursetools.paths import ROOT, lab_ids, solution_notebook

SCRIPTS = str(ROOT / "scripts")


# -- seal() on a small made-up course, in this process ----------------------

FAKE_UTILS = '''
import numpy as np

SCALE = 2.0

def _square(x):
    return x * x

def helper(x):
    """Handed out: needs _square and SCALE."""
    return SCALE * _square(x)

def answer(x):
    """An exercise's reference implementation: must disappear."""
    return np.tanh(x)

class Meter:
    def read(self):
        return _unit()

def _unit():
    return "m"

def make_meter():
    return Meter()

def with_default(x, f=_square):
    return f(x)
'''


@pytest.fixture
def fake_course(tmp_path, monkeypatch):
    (tmp_path / "fake_utils.py").write_text(FAKE_UTILS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("fake_utils", None)


def test_seal_keeps_what_is_handed_out_and_what_it_needs(fake_course):
    kept = course_view.seal({"fake_utils": ["helper", "make_meter", "with_default"]}, str(fake_course))
    import fake_utils

    assert kept == {"fake_utils": ["helper", "make_meter", "with_default"]}
    assert fake_utils.helper(3.0) == 18.0
    assert fake_utils.make_meter().read() == "m", "a class's methods keep the names they use"
    assert fake_utils.with_default(4.0) == 16.0
    assert "answer" not in vars(fake_utils) and "answer" not in fake_utils.helper.__globals__
    with pytest.raises(AttributeError, match=course_view.REFUSAL_MARK + " only helper, make_meter, with_default"):
        fake_utils.answer
    with pytest.raises(ImportError):
        exec("from fake_utils import answer", {})


def test_seal_leaves_a_whole_module_import_alone(fake_course):
    course_view.seal({"fake_utils": None}, str(fake_course))
    import fake_utils

    assert fake_utils.answer(0.0) == 0.0


def test_global_names_follow_nested_code():
    def outer():
        return lambda: SCRIPTS + str(np.pi)
    assert {"SCRIPTS", "np", "str"} <= course_view.global_names(outer.__code__)


# -- every lab, in a real sandbox ------------------------------------------

def _exercise_names(lab: str) -> set[str]:
    """Functions and classes the lab's exercises ask students to write."""
    names = set()
    for cell in nbformat.read(solution_notebook(lab), as_version=4).cells:
        if cell.cell_type == "code" and nbgrader_meta(cell).get("solution"):
            for node in ast.parse(strip_magics(cell.source)).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    names.add(node.name)
    return names


PROBE = textwrap.dedent('''
    import sys as _sys
    reachable = {}
    for _name, _module in list(_sys.modules.items()):
        _file = getattr(_module, "__file__", None) or ""
        if _file.startswith(%r) and "/coursetools/" not in _file:
            reachable[_name] = sorted(k for k, v in vars(_module).items() if not k.startswith("__") and callable(v))
''' % (SCRIPTS + "/"))


@pytest.fixture(scope="module", params=lab_ids())
def sealed_lab(request, tmp_path_factory):
    trusted = TrustedLab.load(request.param)
    with Sandbox(trusted.numpy_only, preload=trusted.preload, handed_out=trusted.handed_out,
                 limits=Limits(call_seconds=60), workdir=tmp_path_factory.mktemp("sealed")) as sb:
        for gid, source in trusted.setup_cells:
            reply, _ = sb.request({"op": "exec", "cell": gid, "source": strip_magics(source)})
            assert reply["ok"], f"{request.param} setup cell {gid}: {reply}"
        yield request.param, trusted, sb


def test_no_exercise_answer_is_reachable_from_a_lab(sealed_lab):
    lab, trusted, sb = sealed_lab
    reply, _ = sb.request({"op": "exec", "cell": "probe", "source": PROBE})
    assert reply["ok"], reply
    reply, arrays = sb.request({"op": "get", "name": "reachable"})
    reachable = wire.decode(reply["value"], arrays)
    assert "math_utils" in reachable, "the probe found no course module: its path test is wrong"
    exercises = _exercise_names(lab)
    allowed = _handed_out_and_callees(trusted)
    for module, names in reachable.items():
        leaked = [n for n in names if n in exercises or n.startswith(("reference_", "_reference"))]
        assert not leaked, f"{lab}: {module} still offers {leaked} to the submission"
        extra = sorted(set(names) - allowed.get(module, set()))
        assert not extra, f"{lab}: {module} offers {extra}, which the lab neither hands out nor needs"
    if lab == "01_backprop":  # math_utils holds four of its exercises' answers
        assert reachable["math_utils"] == ["make_rng", "relative_error"]
    # Helpers that compute an exercise by another method (issue 15, finding 9): lab 03's loop over grid
    # points answers Exercise 4, its full Hessian Exercises 6 and 7.
    by_another_method = {"03_loss_landscapes": {"loss_grid_loop", "full_hessian"}}.get(lab, set())
    offered = {name for names in reachable.values() for name in names}
    assert not offered & by_another_method, f"{lab} hands out {sorted(offered & by_another_method)}"


def _handed_out_and_callees(trusted) -> dict[str, set[str]]:
    """What each course module may offer a lab: the names it hands out and those their code loads."""
    import importlib

    roots, allowed = [], {}
    for module, names in trusted.handed_out.items():
        if names is None or not module.startswith(("math_utils", "landscape", "nets", "checker")):
            continue
        real = importlib.import_module(module)
        allowed.setdefault(module, set()).update(names)
        roots += [getattr(real, name) for name in names if not name.startswith("check_")]
    keep, _ = course_view.needed(roots, course_view.course_modules(SCRIPTS))
    for module, names in keep.items():
        allowed.setdefault(module, set()).update(names)
    return allowed


def test_course_source_cannot_be_read_back(sealed_lab):
    lab, _, sb = sealed_lab
    for source in (f"open({SCRIPTS + '/math_utils.py'!r}).read()",
                   f"import os; os.listdir({SCRIPTS!r})",
                   "import importlib, math_utils; importlib.reload(math_utils)"):
        reply, _ = sb.request({"op": "exec", "cell": "read-back", "source": source})
        assert not reply["ok"] and "PermissionError" in reply["error"], f"{lab}: {source} -> {reply}"
