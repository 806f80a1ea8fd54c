"""The second held-out round (tests/fixtures/mistakes_heldout_r2.py): labs 01-06, written before the detectors were read.

Every mistake is rejected and never named wrongly, and those a teacher would name are named
right at least 9 times in 10, the bar of the first round (tests/unit/test_checker_0103.py).
benchmarks/diagnosis.py prints the tally per lab.
"""

from __future__ import annotations

import contextlib
import functools
import io

import pytest

from checker import CheckFailure
from fixtures.mistakes_heldout_r2 import HELDOUT
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources

HELD = [(lab, i) for lab in HELDOUT for i in range(len(HELDOUT[lab]))]


@functools.lru_cache(maxsize=None)
def _failure(lab: str, index: int):
    """The CheckFailure of one held-out mistake run through its grade cell, or None if the check passed."""
    mistake = HELDOUT[lab][index]
    ns = lab_namespace(lab, solution_sources(lab, [mistake]))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(grade_cells(lab)[mistake.check], mistake.check, "exec"), ns)
    except CheckFailure as failure:
        return failure
    return None


@pytest.mark.parametrize("lab,index", HELD, ids=[f"{lab}-{HELDOUT[lab][i].id}-{i}" for lab, i in HELD])
def test_heldout_mistake_is_rejected_and_never_named_wrongly(lab, index):
    mistake, failure = HELDOUT[lab][index], _failure(lab, index)
    assert failure is not None, f"{mistake.id} passed the check"
    assert failure.misconception in (mistake.misconception, None), str(failure)


def test_heldout_mistakes_are_named_nine_times_in_ten():
    nameable = [(lab, i) for lab, i in HELD if HELDOUT[lab][i].misconception is not None]
    missed = [HELDOUT[lab][i].id for lab, i in nameable
              if _failure(lab, i) is None or _failure(lab, i).misconception != HELDOUT[lab][i].misconception]
    assert len(missed) <= 0.1 * len(nameable), f"{len(nameable) - len(missed)} of {len(nameable)}: {missed}"
