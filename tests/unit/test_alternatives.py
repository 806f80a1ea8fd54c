"""Correct work never loses points (issue 17 item 6), in-process: every alternative passes its check.

tests/fixtures/alternatives.py holds, for every graded exercise of labs 01-07, a correct
implementation written another way (a library route, loops, another formula). Here all of a
lab's alternatives run together, as the one ``alternatives`` student of
tests/grading/test_grade_labs.py does under ``make grade``, and every grade cell must pass on
the student's own functions: full points, and not by charge-once (a check that passes only
with the reference in place of an earlier function says "correct given a correct ...").
"""

from __future__ import annotations

import contextlib
import io
import warnings

import pytest

from coursetools.paths import lab_ids
from fixtures.alternatives import ALTERNATIVES
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources


def test_every_graded_exercise_of_every_lab_has_an_alternative():
    for lab in lab_ids():
        covered = {a.check for a in ALTERNATIVES.get(lab, [])}
        assert covered == set(grade_cells(lab)), (lab, sorted(set(grade_cells(lab)) - covered))
        cells = [a.cell for a in ALTERNATIVES[lab]]
        assert len(cells) == len(set(cells)), f"{lab}: one alternative per cell, so they fit in one notebook"


@pytest.mark.parametrize("lab", list(ALTERNATIVES))
def test_every_alternative_passes_its_check_on_its_own_functions(lab):
    ns = lab_namespace(lab, solution_sources(lab, ALTERNATIVES[lab]))
    how = {a.check: a.how for a in ALTERNATIVES[lab]}
    refused = {}
    for gid, source in grade_cells(lab).items():
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                exec(compile(source, gid, "exec"), ns)
        except Exception as error:  # a CheckFailure, PartialCredit included, or a crash
            refused[gid] = f"{how[gid]}: {type(error).__name__}: {error}"
            continue
        if "\u2713" not in out.getvalue() or "correct given a correct" in out.getvalue():
            refused[gid] = f"{how[gid]}: {out.getvalue()}"
    assert not refused, "\n".join(f"{gid}: {why}" for gid, why in refused.items())
