"""The student release (`make release`): no answer key inside, visible checks that work, verdicts
that agree with `make grade`, an environment that installs from the release alone, and updates
that keep a student's edits.

The release is built once per session (``release`` fixture) into a temporary folder.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest

from coursetools import release as release_tool
from coursetools.grading import course_view
from coursetools.paths import ROOT, lab_notebook, solution_notebook
from fixtures.hostile import BORROWS, LAB as BORROW_LAB

RUN_LAB = Path(__file__).with_name("run_lab.py")
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
# A statement of at least this many AST nodes is distinctive enough to count on its own; shorter
# ones (``z1 = w1 * x``) count as a run of RUN consecutive statements.
MIN_NODES = 12
RUN = 3


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Path:
    return release_tool.build(tmp_path_factory.mktemp("release") / "mdl-labs")


@pytest.fixture(scope="session")
def labs() -> list[str]:
    return release_tool.released_labs()


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _released_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)


# -- what is in the release ---------------------------------------------------------------------

def test_release_is_a_git_repository_with_the_student_course_only(release, labs):
    files = {str(p.relative_to(release)) for p in _released_files(release)}
    for lab in labs:
        assert f"labs/{lab}/{lab}.ipynb" in files
    for needed in ("README.md", "TROUBLESHOOTING.md", "pyproject.toml", "environment.yml", "Makefile",
                   "binder/requirements.txt", "binder/postBuild", "scripts/math_utils.py",
                   "scripts/course_access.py", "scripts/checker/__init__.py"):
        assert needed in files
    for banned in ("solutions/", "tests/", "benchmarks/", "coursetools", "gradebook", "nbgrader_config",
                   ".db", "grading"):
        assert not [f for f in files if banned in f], f"{banned} shipped: {[f for f in files if banned in f]}"
    log = subprocess.run(["git", "log", "--oneline"], cwd=release, capture_output=True, text=True, check=True)
    assert log.stdout.strip(), "the release is not committed"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=release, capture_output=True, text=True)
    assert status.stdout == ""


def _node_count(node: ast.AST) -> int:
    return sum(1 for _ in ast.walk(node))


def _bodies(tree: ast.AST):
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body


def _trivial(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Pass, ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True  # a docstring
    return isinstance(stmt, ast.Return) and (stmt.value is None or _node_count(stmt.value) <= 4)


def _fingerprints(tree: ast.AST, public: set[str]) -> set[str]:
    """ast.dump of every distinctive statement, every run of RUN statements and every function body."""
    prints = set()
    for body in _bodies(tree):
        stmts = [s for s in body if not _trivial(s)]
        dumps = [ast.dump(s) for s in stmts]
        prints |= {d for s, d in zip(stmts, dumps) if _node_count(s) >= MIN_NODES and d not in public}
        prints |= {"\n".join(dumps[i:i + RUN]) for i in range(len(dumps) - RUN + 1)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            stmts = [s for s in (node.body if isinstance(node.body, list) else []) if not _trivial(s)]
            if stmts and sum(map(_node_count, stmts)) >= MIN_NODES:
                prints.add("BODY:" + "\n".join(ast.dump(s) for s in stmts))
    return prints


def _parse_block(block: str) -> ast.AST | None:
    block = textwrap.dedent(block)
    for candidate in (block, "def _cell():\n" + textwrap.indent(block, "    ")):
        try:
            return ast.parse(candidate)
        except SyntaxError:
            continue
    return None


def _public_code(release: Path) -> set[str]:
    """Code the student notebooks show anyway (given cells): not an answer wherever it appears."""
    public = set()
    for nb_path in release.glob("labs/*/*.ipynb"):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            if cell.cell_type == "code" and (tree := _parse_block(re.sub(r"^\s*[%!].*$", "", cell.source, flags=re.M))):
                public |= {ast.dump(node) for node in ast.walk(tree) if isinstance(node, ast.stmt)}
                public |= _fingerprints(tree, set())
    return public


def _python_sources(release: Path):
    """(label, source) of every Python text in the release: modules, notebook cells, fenced blocks."""
    for path in _released_files(release):
        rel = path.relative_to(release)
        if path.suffix == ".py":
            yield str(rel), path.read_text(encoding="utf-8")
        elif path.suffix == ".ipynb":
            for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
                if cell.cell_type == "code":
                    yield f"{rel} cell {i}", re.sub(r"^\s*[%!].*$", "", cell.source, flags=re.M)
        elif path.suffix == ".md":
            for i, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)):
                yield f"{rel} block {i}", block


def _answers(labs: list[str], public: set[str]) -> dict[str, str]:
    """Fingerprint -> "lab exercise" for every solution block's code that students are not shown."""
    answers: dict[str, str] = {}
    for lab in labs:
        for cell in nbformat.read(solution_notebook(lab), as_version=4).cells:
            for block in SOLUTION.findall(cell.source):
                tree = _parse_block(block)
                assert tree is not None, f"{lab}: a solution block does not parse"
                for fingerprint in _fingerprints(tree, public) - public:
                    answers.setdefault(fingerprint, f"{lab} {_meta(cell).get('grade_id')}")
    return answers


def test_the_answer_scan_finds_the_answer_key_in_the_instructors_modules(release, labs):
    """The scan below is able to fail: over this repository's own checker it finds lab 01's chain rule."""
    answers = _answers(labs, _public_code(release))
    source = (ROOT / "scripts" / "checker" / "lab01.py").read_text(encoding="utf-8")
    found = {answers[f] for f in _fingerprints(ast.parse(source), set()) & answers.keys()}
    assert "01_backprop ex1_scalar_chain" in found, found


def test_no_solution_code_in_any_released_file(release, labs):
    answers = _answers(labs, _public_code(release))
    assert len(answers) > 50, "the fingerprinting found too little solution code to be a test"
    leaks = []
    for label, source in _python_sources(release):
        if label.startswith("TROUBLESHOOTING.md"):
            # Deliberately exempt: each section ends in a one-line ❌/✅ fix of the mistake a check
            # has just named (the course's feedback design); those lines match solution statements.
            continue
        tree = _parse_block(source)
        if tree is None and " block " in label:
            # A fragment in a document (pseudo-code, a traceback): its lines one by one.
            trees = [t for line in source.splitlines() if (t := _parse_block(line.strip())) is not None]
            tree = ast.Module(body=[s for t in trees for s in t.body], type_ignores=[])
        assert tree is not None, f"{label} does not parse"
        leaks += [f"{label} contains {answers[f]}'s code" for f in _fingerprints(tree, set()) & answers.keys()]
    assert not leaks, "\n".join(leaks)


def test_no_hidden_test_or_solution_marker_in_any_released_file(release, labs):
    hidden_lines = set()
    for lab in labs:
        for cell in nbformat.read(solution_notebook(lab), as_version=4).cells:
            for block in HIDDEN.findall(cell.source):
                hidden_lines |= {line.strip() for line in block.splitlines() if len(line.strip()) > 12}
    assert hidden_lines
    for path in _released_files(release):
        if path.suffix == ".bin":
            text = path.read_bytes().decode("latin-1")
        else:
            text = path.read_text(encoding="utf-8")
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{path}: {marker}"
        assert not [line for line in hidden_lines if line in text], f"{path} holds hidden-test code"


def test_math_utils_ships_no_answer_and_equals_the_instructors_numbers(release):
    """The torch-backed helpers compute what the instructor's numpy ones do (float64, rtol 1e-12)."""
    import numpy as np

    import math_utils as instructor

    source = (release / "scripts" / "math_utils.py").read_text(encoding="utf-8")
    for name in release_tool.OVERRIDDEN:
        assert f"def {name}(" in source
    code = f"""
import sys, json, numpy as np
sys.path.insert(0, {str(release / 'scripts')!r})
import math_utils as mu
assert mu.__file__.startswith({str(release)!r}), mu.__file__
rng = np.random.default_rng(0)
z = rng.normal(size=(5, 4)) * 30; labels = rng.integers(0, 4, size=5); y = rng.normal(size=(5, 4))
out = dict(sigmoid=mu.sigmoid(z), log_sum_exp=mu.log_sum_exp(z, axis=1), lse_keep=mu.log_sum_exp(z, axis=0, keepdims=True),
           mse_loss=mu.mse_loss(z, y), cross_entropy=mu.cross_entropy(z, labels),
           cross_entropy_grad=mu.cross_entropy_grad(z, labels), softmax=mu.softmax(z, axis=0),
           log_softmax=mu.log_softmax(z))
print(json.dumps({{k: np.asarray(v).tolist() for k, v in out.items()}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=release)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4)) * 30
    labels = rng.integers(0, 4, size=5)
    y = rng.normal(size=(5, 4))
    want = dict(sigmoid=instructor.sigmoid(z), log_sum_exp=instructor.log_sum_exp(z, axis=1),
                lse_keep=instructor.log_sum_exp(z, axis=0, keepdims=True), mse_loss=instructor.mse_loss(z, y),
                cross_entropy=instructor.cross_entropy(z, labels),
                cross_entropy_grad=instructor.cross_entropy_grad(z, labels),
                softmax=instructor.softmax(z, axis=0), log_softmax=instructor.log_softmax(z))
    for key, value in want.items():
        np.testing.assert_allclose(np.asarray(got[key]), value, rtol=1e-12, atol=1e-15, err_msg=key)


# -- visible checks, and local verdicts that agree with make grade ------------------------------

def _run_lab(release: Path, lab: str, jobs: list[dict], tmp_path: Path) -> dict[str, dict]:
    jobs_file = tmp_path / f"{lab}-jobs.json"
    jobs_file.write_text(json.dumps(jobs), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(RUN_LAB), str(release), lab, str(jobs_file)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            results[result["name"]] = result
    for result in results.values():
        assert result["math_utils"].startswith(str(release)), "the instructor's math_utils was imported"
    return results


def _given_checker_cells(release: Path, lab: str) -> list:
    """Given cells (no nbgrader role) that call the course's checker, e.g. the progress view."""
    nb = nbformat.read(release / "labs" / lab / f"{lab}.ipynb", as_version=4)
    return [(f"given-{i}", c.source) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and not _meta(c) and re.search(r"^\s*(from|import) checker", c.source, re.M)]


def _lab_cells(release: Path, lab: str):
    """(setup cells, exercise cells, visible check cells) of the released notebook, by grade id."""
    nb = nbformat.read(release / "labs" / lab / f"{lab}.ipynb", as_version=4)
    setup, exercises, checks = [], [], []
    for cell in nb.cells:
        meta = _meta(cell)
        if cell.cell_type != "code" or not meta:
            continue
        if meta.get("solution"):
            exercises.append((meta["grade_id"], cell.source))
        elif meta.get("grade"):
            checks.append((meta["grade_id"], cell.source))
        elif meta.get("locked"):
            setup.append((meta["grade_id"], cell.source))
    return setup, exercises, checks


def _solutions(lab: str) -> dict[str, str]:
    return {_meta(c)["grade_id"]: c.source for c in nbformat.read(solution_notebook(lab), as_version=4).cells
            if _meta(c).get("solution")}


@pytest.mark.notebook
@pytest.mark.parametrize("lab", release_tool.released_labs())
def test_visible_checks_pass_with_the_solution_and_fail_untouched(release, lab, tmp_path):
    """Setup, exercise and visible check cells of the released notebook, in a kernel-like namespace
    with the release's own course modules: the solution pasted in passes every check, the
    untouched notebook none."""
    setup, exercises, checks = _lab_cells(release, lab)
    assert exercises and checks
    solved = _solutions(lab)
    given = _given_checker_cells(release, lab)  # the progress view runs after the checks
    jobs = [{"name": "untouched", "cells": setup + exercises, "checks": checks},
            {"name": "solved", "cells": setup + [(gid, solved[gid]) for gid, _ in exercises], "checks": checks},
            {"name": "given", "cells": setup + exercises, "checks": given}]
    results = _run_lab(release, lab, jobs, tmp_path)
    assert not results["solved"]["cell_errors"], (lab, results["solved"]["cell_errors"])
    assert not any(results["given"]["checks"].values()), (lab, results["given"]["checks"])
    failed = {gid: r for gid, r in results["solved"]["checks"].items() if r}
    assert not failed, f"{lab}: visible checks fail on the solution: {failed}"
    passed = [gid for gid, r in results["untouched"]["checks"].items() if not r]
    assert not passed, f"{lab}: visible checks pass on the untouched notebook: {passed}"


@pytest.mark.notebook
def test_every_borrow_route_fails_locally_as_make_grade_says(release, tmp_path):
    """tests/fixtures/hostile.py's borrows pass in an instructor kernel; in the release they fail the
    check with make grade's reason and message."""
    setup, exercises, checks = _lab_cells(release, BORROW_LAB)
    solved = _solutions(BORROW_LAB)
    jobs = []
    for borrow in BORROWS:
        cells = setup + [(gid, borrow.code.format(root=release) if gid == borrow.cell else solved[gid])
                         for gid, _ in exercises]
        jobs.append({"name": borrow.name, "cells": cells, "checks": [c for c in checks if c[0] == borrow.check]})
    results = _run_lab(release, BORROW_LAB, jobs, tmp_path)
    assert student_refusal_mark() == course_view.REFUSAL_MARK
    for borrow in BORROWS:
        outcome = results[borrow.name]["checks"][borrow.check]
        assert outcome, f"{borrow.name} passed its check locally (cell errors: {results[borrow.name]['cell_errors']})"
        assert outcome["misconception"] == course_view.MISCONCEPTION, (borrow.name, outcome)
        assert course_view.REFUSAL_MARK in outcome["message"], (borrow.name, outcome)
        assert f"TROUBLESHOOTING.md#{course_view.MISCONCEPTION}" in outcome["message"]
        if borrow.misconception:  # the routes make grade names (the others it reports as not-defined)
            assert borrow.misconception == outcome["misconception"]


def student_refusal_mark() -> str:
    from checker import student

    return student.REFUSAL_MARK


@pytest.mark.notebook
def test_a_later_labs_helper_is_refused_in_an_earlier_lab(release, tmp_path):
    """math_utils.cross_entropy is handed out by lab 02 and answers lab 01: lab 01 may not call it."""
    setup, _, _ = _lab_cells(release, "01_backprop")
    probe = ("import math_utils\n"
             "def softmax_cross_entropy(logits, labels):\n"
             "    return math_utils.cross_entropy(logits, labels), math_utils.cross_entropy_grad(logits, labels)\n"
             "softmax_cross_entropy(__import__('numpy').zeros((2, 3)), __import__('numpy').array([0, 1]))\n")
    lab02_setup, _, _ = _lab_cells(release, "02_optimizers")
    results = _run_lab(release, "01_backprop", [
        {"name": "lab01", "cells": setup, "checks": [("probe", probe)]},
    ], tmp_path)
    outcome = results["lab01"]["checks"]["probe"]
    assert outcome and course_view.REFUSAL_MARK in outcome["message"] and "cross_entropy" in outcome["message"]
    results = _run_lab(release, "02_optimizers", [
        {"name": "lab02", "cells": lab02_setup, "checks": [("probe", probe)]},
    ], tmp_path)
    assert results["lab02"]["checks"]["probe"] is None, results["lab02"]


# -- install from the release alone; updates over a student's edits -----------------------------

@pytest.mark.notebook
def test_release_installs_in_a_fresh_venv_and_runs_every_setup_cell(release, labs, tmp_path):
    """A real venv (no system site-packages) from the release's own Makefile and pyproject.

    pip may take wheels from its cache (torch 2.13.0 CPU is a local wheel here); the Makefile's
    CPU index is turned off (TORCH_INDEX=) since this machine reaches PyPI only.
    """
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(release), str(work)], check=True)
    venv = tmp_path / "venv"
    start = time.monotonic()
    # PIP_NO_COMPILE: pip would byte-compile every installed file (torch's thousands) up front; the
    # interpreter does it on first import anyway, and here it doubled the install time.
    proc = subprocess.run(["make", "env", f"VENV={venv}", "TORCH_INDEX=", f"PYTHON={sys.executable}"],
                          cwd=work, capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "PIP_NO_COMPILE": "1"})
    install_s = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"fresh install of the release environment: {install_s:.0f} s")
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    for tool in ("pytest", "hypothesis", "playwright", "nbval"):
        assert f"\n{tool}==" not in "\n" + freeze, f"{tool} installed for students"
    # Every lab's setup cell, each in a fresh notebook-like namespace, in one interpreter of the new venv.
    jobs = {lab: "\n".join(re.sub(r"^\s*[%!].*$", "", src, flags=re.M) for _, src in _lab_cells(work, lab)[0])
            for lab in labs}
    code = f"""
import inspect, json, os, sys
jobs = json.loads({json.dumps(json.dumps(jobs))})
for lab, source in jobs.items():
    os.chdir(os.path.join({str(work)!r}, "labs", lab))
    exec(compile(source, lab + " setup", "exec"), {{"__name__": "__main__"}})
    checks = sys.modules["checker.lab" + lab[:2]]
    # The checks' own code has no readable source (behind the guard's wrapper, if any).
    for name, fn in vars(checks).items():
        if inspect.isfunction(fn) and fn.__module__ == checks.__name__:
            inner = [c.cell_contents for c in fn.__closure__ or ()
                     if inspect.isfunction(c.cell_contents) and c.cell_contents is not fn]
            for f in inner or [fn]:
                try:
                    inspect.getsource(f)
                except (OSError, TypeError):
                    continue
                raise AssertionError(lab + ": readable source of " + name)
    print(lab, "setup ok", flush=True)
import math_utils
assert math_utils.__file__.startswith({str(work)!r}), math_utils.__file__
"""
    run = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                         timeout=600, env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    for lab in labs:
        assert f"{lab} setup ok" in run.stdout


def _git(cwd: Path, *args: str) -> str:
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    return subprocess.run(["git", *env_args, *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def test_a_course_update_keeps_a_students_edited_lab(release, tmp_path):
    """nbgitpuller over an edited lab: the student's edits survive, the update's new files arrive."""
    from nbgitpuller.pull import GitPuller

    origin = tmp_path / "origin"
    subprocess.run(["git", "clone", "-q", "--bare", str(release), str(origin)], check=True)
    student = tmp_path / "student" / "mdl-labs"
    for _ in GitPuller(str(origin), str(student), branch="main").pull():
        pass
    lab = student / "labs" / "01_backprop" / "01_backprop.ipynb"
    nb = nbformat.read(lab, as_version=4)
    exercise = next(c for c in nb.cells if _meta(c).get("grade_id") == "ex8_sgd_step")
    exercise.source = exercise.source.replace("raise NotImplementedError()", "return params  # my attempt")
    nbformat.write(nb, lab)
    edited = lab.read_bytes()

    # The instructor publishes an update: a new lab folder and a changed README (never edited by students).
    instructor = tmp_path / "instructor"
    subprocess.run(["git", "clone", "-q", str(origin), str(instructor)], check=True)
    (instructor / "labs" / "99_update").mkdir()
    (instructor / "labs" / "99_update" / "notes.md").write_text("a new lab\n")
    (instructor / "README.md").write_text((instructor / "README.md").read_text() + "\nUpdated.\n")
    _git(instructor, "add", "-A")
    _git(instructor, "commit", "-q", "-m", "update")
    _git(instructor, "push", "-q", "origin", "main")

    for _ in GitPuller(str(origin), str(student), branch="main").pull():
        pass
    assert lab.read_bytes() == edited, "the update overwrote the student's edits"
    assert (student / "labs" / "99_update" / "notes.md").exists()
    assert (student / "README.md").read_text().endswith("Updated.\n")


def test_an_update_that_would_change_a_released_notebook_is_refused(release, tmp_path):
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(release), str(checkout)], check=True)
    lab = checkout / "labs" / "01_backprop" / "01_backprop.ipynb"
    lab.write_bytes(lab.read_bytes().replace(b"YOUR CODE HERE", b"YOUR  CODE HERE", 1))
    _git(checkout, "commit", "-q", "-am", "an earlier release shipped another version")
    with pytest.raises(SystemExit, match="would change notebooks students may have edited: labs/01_backprop"):
        release_tool.build(checkout, commit=False)
    assert lab.exists(), "the refused update deleted files"


# -- which course helpers compute an exercise's answer: found by running them, not by name ----

def _recipes(n_args: int):
    """Argument tuples (made fresh per call: a Generator is consumed) for an n-argument function."""
    def z():
        return np.random.default_rng(1).normal(size=(4, 3))

    def y():
        return np.random.default_rng(2).normal(size=(4, 3))

    def probs(seed):
        p = np.abs(np.random.default_rng(seed).normal(size=(4, 3))) + 0.1
        return p / p.sum(axis=1, keepdims=True)

    labels = np.array([0, 2, 1, 2])
    recipes = {1: [lambda: (z(),), lambda: (np.abs(z()) + 0.1,), lambda: (np.linspace(-3, 3, 7),)],
               2: [lambda: (z(), y()), lambda: (z(), labels), lambda: (z(), 3), lambda: (labels, 3),
                   lambda: (5 * z(), labels[::-1].copy()), lambda: (probs(3), probs(4)),
                   lambda: (lambda x: float(np.sum(np.sin(x))), z())],
               3: [lambda: (z(), y(), 0.1), lambda: (4, 3, np.random.default_rng(5)),
                   lambda: (z(), 1, False)]}
    return recipes.get(n_args, [])


def _outputs(value) -> list:
    items = value if isinstance(value, (tuple, list)) else [value]
    out = []
    for item in items:
        try:
            array = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if array.size:
            out.append(array)
    return out


def _same_everywhere(course_fn, solution_fn) -> bool:
    """Both run on at least one recipe, and on every recipe both run on, an output of the solution
    equals the course function's (rtol 1e-9, atol 1e-12)."""
    n_args = len([p for p in inspect.signature(course_fn).parameters.values() if p.default is p.empty])
    n_sol = len([p for p in inspect.signature(solution_fn).parameters.values() if p.default is p.empty])
    if n_args != n_sol:
        return False
    agreed: set = set()
    for recipe in _recipes(n_args):
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                ours, theirs = _outputs(course_fn(*recipe())), _outputs(solution_fn(*recipe()))
        except Exception:  # noqa: BLE001 - a recipe that does not fit this function
            continue
        same = [a for a in ours for b in theirs if a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-12)]
        if not same:
            return False
        # Evidence is two different numbers at least: two functions may both return 1.0 by chance.
        agreed |= {round(float(v), 9) for a in same for v in np.unique(a)}
    return len(agreed) >= 2


def _solution_functions(labs: list[str]) -> dict[str, object]:
    """Every function the exercise cells of the solutions define ("lab grade_id name" -> function)."""
    functions = {}
    for lab in labs:
        namespace = {"__name__": "solution"}
        for cell in nbformat.read(solution_notebook(lab), as_version=4).cells:
            meta = _meta(cell)
            if cell.cell_type != "code" or not (meta.get("solution") or meta.get("locked") and not meta.get("grade")):
                continue
            exec(compile(re.sub(r"^\s*[%!].*$", "", cell.source, flags=re.M), lab, "exec"), namespace)
            if meta.get("solution"):
                for name, value in namespace.items():
                    if inspect.isfunction(value) and value.__module__ == "solution":
                        functions.setdefault(f"{lab} {meta['grade_id']} {name}", value)
    return functions


def test_every_readable_helper_that_computes_an_exercises_answer_is_torch_backed(release, labs):
    """Run every instructor math_utils function against every exercise's solution function on the
    same inputs: the ones that agree answer that exercise, so the release must either leave them out
    (stand-ins) or ship them torch-backed (OVERRIDDEN), never with their numpy body."""
    import math_utils as instructor

    solutions = _solution_functions(labs)
    assert len(solutions) > 40
    answering = {}
    for name, fn in vars(instructor).items():
        if inspect.isfunction(fn) and fn.__module__ == "math_utils" and not name.startswith("_"):
            hits = [key for key, sol in solutions.items() if _same_everywhere(fn, sol)]
            if hits:
                answering[name] = hits
    # The scan is able to find them: these are known answers.
    for known in ("sigmoid_grad", "relu_grad", "softmax", "log_sum_exp", "cross_entropy", "cross_entropy_grad",
                  "mse_loss"):
        assert known in answering, (known, sorted(answering))
    released = (release / "scripts" / "math_utils.py").read_text(encoding="utf-8")
    kept = {node.name for node in ast.parse(released).body if isinstance(node, ast.FunctionDef)}
    readable_answers = {name: hits for name, hits in answering.items()
                        if name in kept and name not in release_tool.OVERRIDDEN}
    assert not readable_answers, f"released with their formula: {readable_answers}"


def test_launch_files_pin_the_runtime_only_with_cpu_torch(release):
    """binder/requirements.txt, environment.yml and pyproject.toml of the release pin the same runtime
    packages as this repository (torch as its CPU-only build for Binder), and nothing for tests."""
    import tomllib

    import yaml

    runtime = set(release_tool.runtime_pins())
    instructor = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert runtime <= set(instructor) and any(p.startswith("torch==") for p in runtime)
    project = tomllib.loads((release / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(project["dependencies"]) == runtime and "optional-dependencies" not in project
    lines = [line.strip() for line in (release / "binder" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert f"--extra-index-url {release_tool.CPU_INDEX}" in lines
    pins = {line.replace("+cpu", "") for line in lines if not line.startswith("--")}
    assert pins == runtime and "torch==2.13.0+cpu" in lines
    env = yaml.safe_load((release / "environment.yml").read_text(encoding="utf-8"))
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip_section) - {"-e ."} == runtime
    assert (release / "binder" / "postBuild").stat().st_mode & 0o111, "postBuild must be executable"
    assert "python-3.11" in (release / "binder" / "runtime.txt").read_text()
    makefile = (release / "Makefile").read_text(encoding="utf-8")
    assert "apt-get" not in makefile and "[test]" not in makefile
