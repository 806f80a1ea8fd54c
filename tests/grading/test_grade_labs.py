"""`make grade` agrees with the checks, lab by lab: the solution full, the stub zero, each mistake named.

The sandboxed grader and the in-process checks (tests/unit/test_checker.py)
must reach the same verdict on every grade cell of every fixture submission.
"""

from __future__ import annotations

import csv

import nbformat
import pytest

from coursetools.grading import cli
from coursetools.paths import lab_ids
from fixtures.alternatives import ALTERNATIVES
from fixtures.cascades import (CASCADES, HELPER_CHECK, HELPER_LAB, HELPER_PARTS, NAN_ONLY, PARTIAL_CHECK, PARTIAL_LAB,
                               PARTS, RELU_AT_ZERO)
from fixtures.mistakes import MISTAKES
from fixtures.notebooks import group_mistakes, representatives, run_checks, solution_sources, submission

pytestmark = pytest.mark.xdist_group("grade-labs")
LABS = [lab for lab in lab_ids() if MISTAKES.get(lab)]


# Session scope: a module-scoped fixture is set up again whenever xdist runs another module's
# tests in between (each class run took minutes, and ran twice).
@pytest.fixture(scope="session")
def class_results(tmp_path_factory):
    base = tmp_path_factory.mktemp("labs-class")
    submitted, out = base / "submitted", base / "out"
    expected = {}
    for lab in LABS:
        students = {"solution": [], "stub": None}
        students.update({f"mistakes{i}": g for i, g in enumerate(group_mistakes(lab, representatives(lab)))})
        if lab in CASCADES:
            students["cascade"] = [c.mistake for c in CASCADES[lab]]
        if lab == PARTIAL_LAB:
            students["partial"] = [RELU_AT_ZERO]
        if lab == HELPER_LAB:
            students["partial"] = [NAN_ONLY]
        if ALTERNATIVES.get(lab):  # correct work written another way (issue 17 item 6): full marks
            students["alternatives"] = ALTERNATIVES[lab]
        for student, group in students.items():
            # The whole notebook for the solution; the stub and the mistake fixtures without the lab's
            # demonstration cells (no check reads them; the solution's run covers them in the sandbox, and
            # test_grade_class.py and test_export.py grade a whole untouched stub).
            nb = submission(lab, solved=False, demos=False) if group is None else \
                submission(lab, group, demos=bool(not group))
            path = submitted / student / lab / f"{lab}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
            if group is not None:
                expected[(student, lab)] = run_checks(lab, solution_sources(lab, group))
    assert cli.main([str(submitted), str(out), "--workers", "2", "--labs", *LABS]) == 0
    with open(out / "grades_by_question.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        totals = {(r["student"], r["lab"]): r for r in csv.DictReader(f)}
    return expected, rows, totals, out


@pytest.mark.parametrize("lab", LABS)
def test_solution_full_marks_and_stub_zero(class_results, lab):
    _, _, totals, _ = class_results
    solution, stub = totals[("solution", lab)], totals[("stub", lab)]
    assert solution["status"] == "graded" and solution["score"] == solution["max_score"], solution
    assert stub["status"] == "graded" and float(stub["score"]) == 0, stub


@pytest.mark.parametrize("lab", LABS)
def test_grader_and_in_process_checks_agree_on_every_cell(class_results, lab):
    expected, rows, _, _ = class_results
    for r in rows:
        if r["lab"] != lab or (r["student"], lab) not in expected:
            continue
        want = expected[(r["student"], lab)][r["question"]]
        if want is None:
            assert float(r["score"]) == float(r["max_score"]), r
        else:
            if r["parts"]:  # several functions, some of them right: partial credit
                assert 0 < float(r["score"]) < float(r["max_score"]), r
            else:
                assert float(r["score"]) == 0, r
            assert r["misconception"] == want, r


@pytest.mark.parametrize("lab", [lab for lab in LABS if ALTERNATIVES.get(lab)])
def test_correct_work_written_another_way_scores_full_marks(class_results, lab):
    """Every exercise done another valid way (library routes, loops, other formulas: one
    notebook per lab, tests/fixtures/alternatives.py) scores full marks under make grade."""
    _, rows, totals, _ = class_results
    total = totals[("alternatives", lab)]
    assert total["status"] == "graded" and float(total["score"]) == float(total["max_score"]) > 0, total
    lost = [r for r in rows if r["student"] == "alternatives" and r["lab"] == lab
            and float(r["score"]) != float(r["max_score"])]
    assert not lost, lost


@pytest.mark.parametrize("lab", [lab for lab in LABS if lab in CASCADES])
def test_a_mistake_is_charged_once(class_results, lab):
    """The cascade submission: the later exercises that call the faulty earlier function (or subclass
    the faulty earlier class) keep their points under the grader, and its feedback says they are
    right given a correct one."""
    _, rows, _, out = class_results
    scores = {r["question"]: r for r in rows if r["student"] == "cascade" and r["lab"] == lab}
    feedback = (out / "feedback" / "cascade" / lab / f"{lab}.html").read_text(encoding="utf-8")
    for cascade in CASCADES[lab]:  # functions calling an earlier one, classes built on an earlier one
        earlier = scores[cascade.mistake.check]
        assert float(earlier["score"]) < float(earlier["max_score"]), earlier  # charged there (in part or whole)
        for gid in cascade.keeps:
            assert float(scores[gid]["score"]) == float(scores[gid]["max_score"]) > 0, scores[gid]
        assert feedback.count(f"correct given a correct `{cascade.blamed}`") >= len(cascade.keeps), cascade.blamed


@pytest.mark.skipif(PARTIAL_LAB not in LABS, reason="no fixtures for that lab")
def test_partial_credit_per_function(class_results):
    """Three of Exercise 2's four derivatives right: 3/4 of its points, parts shown, gradebook agrees."""
    _, rows, totals, _ = class_results
    row = next(r for r in rows if r["student"] == "partial" and r["lab"] == PARTIAL_LAB
               and r["question"] == PARTIAL_CHECK)
    assert float(row["score"]) == pytest.approx(0.75 * float(row["max_score"])), row
    assert row["parts"] == PARTS and row["misconception"] == "relu-derivative-at-zero", row
    assert totals[("partial", PARTIAL_LAB)]["status"] == "graded", "nbgrader's gradebook agrees with the grader"


@pytest.mark.skipif(HELPER_LAB not in LABS, reason="no fixtures for that lab")
def test_partial_credit_with_a_helper_charged_once(class_results):
    """Lab 06 Exercise 4: nonfinite_modules wrong (NaN only) loses its share; first_nonfinite_module,
    which calls it on a model that lives in the sandbox, keeps its own, and its feedback says why."""
    _, rows, totals, out = class_results
    row = next(r for r in rows if r["student"] == "partial" and r["lab"] == HELPER_LAB
               and r["question"] == HELPER_CHECK)
    assert float(row["score"]) == pytest.approx(0.5 * float(row["max_score"])), row
    assert row["parts"] == HELPER_PARTS, row
    feedback = (out / "feedback" / "partial" / HELPER_LAB / f"{HELPER_LAB}.html").read_text(encoding="utf-8")
    assert "correct given a correct `nonfinite_modules`" in feedback
    assert totals[("partial", HELPER_LAB)]["status"] == "graded"
