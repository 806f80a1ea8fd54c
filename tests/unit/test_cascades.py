"""A mistake charged once, in-process: a later exercise that calls the student's faulty earlier
function keeps its points when it is right given a correct one (tests/fixtures/cascades.py)."""

from __future__ import annotations

import contextlib
import io

import pytest

from checker import CheckFailure
from fixtures.cascades import CASCADES
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources


@pytest.mark.parametrize("lab", sorted(CASCADES))
def test_later_exercise_keeps_its_points_and_names_the_earlier_function(lab):
    cascade = CASCADES[lab]
    ns = lab_namespace(lab, solution_sources(lab, [cascade.mistake]))
    cells = grade_cells(lab)
    with pytest.raises(CheckFailure):
        exec(compile(cells[cascade.mistake.check], cascade.mistake.check, "exec"), ns)
    for gid in cascade.keeps:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(cells[gid], gid, "exec"), dict(ns))
        assert f"correct given a correct `{cascade.blamed}`" in out.getvalue(), (gid, out.getvalue())


@pytest.mark.parametrize("lab", sorted(CASCADES))
def test_the_cascade_is_real_without_charge_once(lab):
    """Each later check, undecorated (``__wrapped__``), fails on the cascade submission."""
    cascade = CASCADES[lab]
    ns = lab_namespace(lab, solution_sources(lab, [cascade.mistake]))
    for gid in cascade.keeps:
        source = grade_cells(lab)[gid]
        check_name = source.split("(", 1)[0].strip()
        undecorated = dict(ns, **{check_name: ns[check_name].__wrapped__})
        with pytest.raises(CheckFailure):
            exec(compile(source, gid, "exec"), undecorated)
