"""Correct work never loses points (issue 17 item 6), in-process: every alternative passes its check.

tests/fixtures/alternatives.py holds, for every graded exercise of labs 01-07, a correct
implementation written another way (a library route, loops, another formula). Here each runs
through its own grade cell alone, and all of a lab's alternatives together (as the one
``alternatives`` student of tests/grading/test_grade_labs.py does under ``make grade``): every
grade cell passes, with full points.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest

from coursetools.paths import lab_ids
from fixtures.alternatives import ALTERNATIVES
from fixtures.notebooks import check_points, grade_cells, lab_namespace, solution_sources

CASES = [(lab, a) for lab in ALTERNATIVES for a in ALTERNATIVES[lab]]


def test_every_graded_exercise_of_every_lab_has_an_alternative():
    for lab in lab_ids():
        covered = {a.check for a in ALTERNATIVES.get(lab, [])}
        assert covered == set(grade_cells(lab)), (lab, sorted(set(grade_cells(lab)) - covered))
        cells = [a.cell for a in ALTERNATIVES[lab]]
        assert len(cells) == len(set(cells)), f"{lab}: one alternative per cell, so they fit in one notebook"


@pytest.mark.parametrize("lab,alternative", CASES, ids=[f"{lab}-{a.id}" for lab, a in CASES])
def test_alternative_passes_its_check(lab, alternative):
    ns = lab_namespace(lab, solution_sources(lab, [alternative]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        exec(compile(grade_cells(lab)[alternative.check], alternative.check, "exec"), ns)
    assert "\u2713" in out.getvalue(), out.getvalue()
    assert "correct given a correct" not in out.getvalue(), out.getvalue()  # passed on its own, not by charge-once


@pytest.mark.parametrize("lab", list(ALTERNATIVES))
def test_all_of_a_labs_alternatives_together_score_full_points(lab):
    """The notebook make grade gets: every alternative at once, every check passes."""
    points = check_points(lab, solution_sources(lab, ALTERNATIVES[lab]))
    assert all(p is None for p in points.values()), {gid: p for gid, p in points.items() if p is not None}
