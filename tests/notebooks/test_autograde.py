"""Fixture submissions graded by nbgrader's real autograde.

Per lab: the solution earns full marks, the untouched stub earns zero, and every
misconception the lab provokes (one representative fixture each) loses its
exercise's points with the misconception named in the autograded notebook and
in the feedback HTML. Mistakes in independent exercises share a submission,
which keeps the number of kernel runs small; every fixture is also checked
in-process (tests/unit/test_checker.py) and through `make grade`
(tests/grading/test_grade_labs.py).
"""

from __future__ import annotations

import nbformat
import pytest

from coursetools.paths import lab_ids, solution_notebook
from fixtures.autograded import lab_params
from fixtures.mistakes import MISTAKES
from fixtures.notebooks import cells_by_id, check_points, solution_sources

LABS = [lab for lab in lab_ids() if lab in MISTAKES]


@pytest.fixture(params=lab_params(LABS))
def graded(request, autograded_courses):
    """(lab, course, groups) of one lab, autograded once per session and shared (fixtures/autograded.py)."""
    return autograded_courses[request.param]


def test_every_cell_of_the_solution_runs_without_error(graded):
    """What nbval's --nbval-lax checked (every cell runs), read from nbgrader's own run of the solution."""
    lab, course, _ = graded
    nb = nbformat.read(course.root / "autograded" / "solution" / lab / f"{lab}.ipynb", as_version=4)
    code_cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert code_cells and all(c.get("execution_count") for _, c in code_cells if c.source.strip()), \
        "nbgrader did not run every cell"
    errors = [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in code_cells for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == [], "\n".join(errors)


def test_solution_scores_full_marks(graded):
    lab, course, _ = graded
    score, max_score = course.total(lab, "solution")
    assert max_score > 0 and score == max_score


def test_stub_scores_zero(graded):
    lab, course, _ = graded
    score, max_score = course.total(lab, "stub")
    assert max_score > 0 and score == 0
    grade_ids = cells_by_id(nbformat.read(solution_notebook(lab), as_version=4), "grade")
    for gid in grade_ids:
        assert "not implemented yet" in course.graded_output(lab, "stub", gid)


def test_each_mistake_loses_its_points_and_is_named_in_feedback(graded):
    lab, course, groups = graded
    for i, group in enumerate(groups):
        student = f"mistakes{i}"
        scores = course.scores(lab, student)
        feedback = course.feedback_html(lab, student)
        points = check_points(lab, solution_sources(lab, group))
        for m in group:
            score, max_score = scores[m.check]
            # All of the check's points, or (partial credit per function) those of the wrong function.
            assert score == (points[m.check] or 0.0) < max_score, f"{m.id}: scored {score}/{max_score}"
            shown = course.graded_output(lab, student, m.check)
            assert f"[{m.misconception}]" in shown, f"{m.id} not named:\n{shown}"
            assert f"[{m.misconception}]" in feedback and f"#{m.misconception}" in feedback


def test_autograde_agrees_with_the_checks_run_in_process(graded):
    """Every grade cell of every submission: full points exactly where the check passes."""
    lab, course, groups = graded
    for student, group in [("solution", [])] + [(f"mistakes{i}", g) for i, g in enumerate(groups)]:
        expected = check_points(lab, solution_sources(lab, group))
        scores = course.scores(lab, student)
        for gid, points in expected.items():
            score, max_score = scores[gid]
            assert score == (max_score if points is None else points), f"{student}/{gid}: {score}/{max_score}"
