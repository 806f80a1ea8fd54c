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
from fixtures.course import ScratchCourse
from fixtures.mistakes import MISTAKES
from fixtures.notebooks import (cells_by_id, check_points, group_mistakes, representatives, solution_sources,
                                submission)

LABS = [lab for lab in lab_ids() if lab in MISTAKES]


@pytest.fixture(scope="session")
def autograded_courses(tmp_path_factory) -> dict:
    """lab -> (lab, course, groups), each lab autograded once per session, when a test first needs it.

    Not a parametrized module fixture: xdist interleaves modules on a worker, and pytest then set
    up a lab's course again (nbgrader autograde of every fixture submission, minutes each).
    """
    return {"factory": tmp_path_factory}


def _autograde(lab: str, tmp_path_factory):
    """One scratch course with the solution, the stub and every mistake group autograded by nbgrader."""
    course = ScratchCourse(tmp_path_factory.mktemp(f"course-{lab}"))
    course.add_lab(lab)
    course.submit("solution", lab, submission(lab))
    course.submit("stub", lab, submission(lab, solved=False))
    groups = group_mistakes(lab, representatives(lab))
    for i, group in enumerate(groups):
        course.submit(f"mistakes{i}", lab, submission(lab, group))
    course.autograde(lab)
    return lab, course, groups


# One xdist group per lab: a lab's tests share one worker (and its autograded course); labs spread.
@pytest.fixture(params=[pytest.param(lab, marks=pytest.mark.xdist_group(f"autograde-{lab}")) for lab in LABS])
def graded(request, autograded_courses):
    lab = request.param
    if lab not in autograded_courses:
        autograded_courses[lab] = _autograde(lab, autograded_courses["factory"])
    return autograded_courses[lab]


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
