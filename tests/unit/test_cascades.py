"""A mistake charged once, in-process: a later exercise that calls the student's faulty earlier
function keeps its points when it is right given a correct one (tests/fixtures/cascades.py)."""

from __future__ import annotations

import contextlib
import io

import pytest

from checker import CheckFailure
from fixtures.cascades import CASCADES, MORE_CASCADES, WRONG_ON_WRONG
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources


ALL_CASCADES = [(lab, c) for lab, cs in sorted(CASCADES.items()) for c in cs] + MORE_CASCADES


@pytest.mark.parametrize("lab, cascade", ALL_CASCADES, ids=[f"{lab}-{c.blamed}" for lab, c in ALL_CASCADES])
def test_later_exercise_keeps_its_points_and_names_the_earlier_function(lab, cascade):
    ns = lab_namespace(lab, solution_sources(lab, [cascade.mistake]))
    cells = grade_cells(lab)
    with pytest.raises(CheckFailure):
        exec(compile(cells[cascade.mistake.check], cascade.mistake.check, "exec"), ns)
    for gid in cascade.keeps:
        check_name = cells[gid].split("(", 1)[0].strip()
        # The cascade is real: the check without charge-once (its ``__wrapped__``) fails ...
        with pytest.raises(CheckFailure):
            exec(compile(cells[gid], gid, "exec"), dict(ns, **{check_name: ns[check_name].__wrapped__}))
        # ... and with it, the exercise keeps its points and names the earlier function.
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(cells[gid], gid, "exec"), ns)
        assert f"correct given a correct `{cascade.blamed}`" in out.getvalue(), (gid, out.getvalue())


@pytest.mark.parametrize("lab, base, own", WRONG_ON_WRONG, ids=[f"{lab}-{own.cell}" for lab, _, own in WRONG_ON_WRONG])
def test_a_later_mistake_of_its_own_is_still_charged(lab, base, own):
    """A subclass wrong in itself, on a wrong base class: the reference base does not rescue it."""
    ns = lab_namespace(lab, solution_sources(lab, [base, own]))
    cells = grade_cells(lab)
    with pytest.raises(CheckFailure), contextlib.redirect_stdout(io.StringIO()):
        exec(compile(cells[own.check], own.check, "exec"), ns)
