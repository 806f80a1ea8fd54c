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
from fixtures.mistakes import MISTAKES
from fixtures.notebooks import group_mistakes, representatives, run_checks, solution_sources, submission

pytestmark = pytest.mark.xdist_group("grade-labs")
LABS = [lab for lab in lab_ids() if MISTAKES.get(lab)]


@pytest.fixture(scope="module")
def class_results(tmp_path_factory):
    base = tmp_path_factory.mktemp("labs-class")
    submitted, out = base / "submitted", base / "out"
    expected = {}
    for lab in LABS:
        students = {"solution": [], "stub": None}
        students.update({f"mistakes{i}": g for i, g in enumerate(group_mistakes(lab, representatives(lab)))})
        for student, group in students.items():
            nb = submission(lab, solved=False) if group is None else submission(lab, group)
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
    return expected, rows, totals


@pytest.mark.parametrize("lab", LABS)
def test_solution_full_marks_and_stub_zero(class_results, lab):
    _, _, totals = class_results
    solution, stub = totals[("solution", lab)], totals[("stub", lab)]
    assert solution["status"] == "graded" and solution["score"] == solution["max_score"], solution
    assert stub["status"] == "graded" and float(stub["score"]) == 0, stub


@pytest.mark.parametrize("lab", LABS)
def test_grader_and_in_process_checks_agree_on_every_cell(class_results, lab):
    expected, rows, _ = class_results
    for r in rows:
        if r["lab"] != lab or (r["student"], lab) not in expected:
            continue
        want = expected[(r["student"], lab)][r["question"]]
        if want is None:
            assert float(r["score"]) == float(r["max_score"]), r
        else:
            assert float(r["score"]) == 0, r
            assert r["misconception"] == want, r
