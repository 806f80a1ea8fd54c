"""The checker: every grade cell accepts the solution, rejects the stub, and names each catalogued mistake.

These tests run the notebooks' code in-process (no kernel), so they are fast
and cover every fixture; tests/notebooks/ repeats the important cases through
nbgrader's real autograde.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
import torch

from checker import BY_NAME, CATALOGUE, CheckFailure, Tolerance, compare
from coursetools.paths import lab_ids, lab_notebook, solution_notebook
from fixtures.mistakes import MISTAKES
from fixtures.notebooks import cells_by_id, grade_cells, lab_namespace, solution_sources

LABS = lab_ids()


@pytest.mark.parametrize("lab", LABS)
def test_solution_passes_every_check(lab, capsys):
    ns = lab_namespace(lab, solution_sources(lab))
    for gid, source in grade_cells(lab).items():
        exec(compile(source, gid, "exec"), ns)
        printed = capsys.readouterr().out
        assert printed.count("\u2713") >= 1, f"{gid} printed no success line: {printed!r}"
        assert all(line.startswith("\u2713") for line in printed.strip().splitlines()), printed


@pytest.mark.parametrize("lab", LABS)
def test_stub_fails_every_check_as_not_implemented(lab):
    stub = cells_by_id(nbformat.read(lab_notebook(lab), as_version=4), "solution")
    ns = lab_namespace(lab, stub)
    for gid, source in grade_cells(lab).items():
        with pytest.raises(CheckFailure) as failure:
            exec(compile(source, gid, "exec"), ns)
        assert failure.value.misconception == "not-implemented", (gid, str(failure.value))
        assert "raise NotImplementedError()" in str(failure.value)


CASES = [(lab, m) for lab, ms in MISTAKES.items() for m in ms]


@pytest.mark.parametrize("lab,mistake", CASES, ids=[f"{lab}-{m.id}" for lab, m in CASES])
def test_mistake_is_rejected_and_named(lab, mistake):
    ns = lab_namespace(lab, solution_sources(lab, [mistake]))
    with pytest.raises(CheckFailure) as failure:
        exec(compile(grade_cells(lab)[mistake.check], mistake.check, "exec"), ns)
    message = str(failure.value)
    assert failure.value.misconception == mistake.misconception, message
    # The check contract: quantity, shapes, error, tolerance, misconception, fix, link.
    assert "does not match" in message
    assert "expected: shape" in message and "received: shape" in message
    assert "tolerance atol=" in message
    assert f"[{mistake.misconception}]" in message and "Fix: " in message
    assert f"TROUBLESHOOTING.md#{mistake.misconception}" in message


@pytest.mark.parametrize("lab,mistake", CASES, ids=[f"{lab}-{m.id}" for lab, m in CASES])
def test_mistake_leaves_other_checks_passing_in_their_own_exercise_only(lab, mistake):
    """A fixture must be a *small* edit: the edited exercise fails, independent earlier ones still pass."""
    ns = lab_namespace(lab, solution_sources(lab, [mistake]))
    order = list(grade_cells(lab))
    for gid in order[: order.index(mistake.check)]:
        exec(compile(grade_cells(lab)[gid], gid, "exec"), ns)


def test_every_catalogue_entry_is_provoked_by_a_fixture():
    provoked = {m.misconception for ms in MISTAKES.values() for m in ms}
    missing = [m.name for m in CATALOGUE if m.name not in provoked]
    assert not missing, f"catalogue entries without a provoking fixture: {missing}"


def test_catalogue_names_are_unique_anchors():
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names))
    for m in CATALOGUE:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", m.name), m.name
        assert m.title and m.fix and callable(m.detector)
        assert BY_NAME[m.name] is m


# ---------------------------------------------------------------------------
# compare(): the message, and values that try to pass for something else
# ---------------------------------------------------------------------------

EXPECTED = np.arange(6, dtype=np.float64).reshape(2, 3) + 1.0


def _failure(received, **kwargs) -> CheckFailure:
    with pytest.raises(CheckFailure) as failure:
        compare("dL/dW", received, EXPECTED, **kwargs)
    return failure.value


def test_pass_returns_closeness():
    match = compare("dL/dW", EXPECTED + 1e-12, EXPECTED)
    assert match.max_abs == pytest.approx(1e-12, rel=1e-3)
    assert match.shape == (2, 3)


def test_failure_message_has_every_part():
    msg = str(_failure(EXPECTED * 1.01, tol=Tolerance(atol=1e-9, rtol=1e-6)))
    assert msg.startswith("dL/dW does not match PyTorch autograd")
    assert "expected: shape (2, 3), float64" in msg and "received: shape (2, 3), float64" in msg
    assert re.search(r"max abs error: 0\.06, max rel error: 0\.01 \(tolerance atol=1e-09, rtol=1e-06\)", msg), msg
    assert "reading-a-failed-check" in msg  # unrecognised: points to the general section


@pytest.mark.parametrize("received,name", [
    (EXPECTED.T.copy(), "transposed-gradient"),
    (-EXPECTED, "sign-flipped"),
    (2 * EXPECTED, "factor-of-two"),
    (EXPECTED.reshape(1, 2, 3), "shape-mismatch-reshape"),
    (torch.tensor(EXPECTED), "torch-in-numpy-exercise"),
])
def test_generic_relations_are_named(received, name):
    assert _failure(received).misconception == name


def test_batch_scaling_needs_the_mean_count():
    assert _failure(EXPECTED * 7, mean_count=7).misconception == "batch-size-scaling"
    assert _failure(EXPECTED / 7, mean_count=7).misconception == "batch-size-scaling"
    assert _failure(EXPECTED * 7).misconception is None


class LyingArray(np.ndarray):
    """An ndarray subclass whose comparisons always say 'equal'."""

    def __eq__(self, other):
        return np.ones(np.shape(self), dtype=bool)

    def __array_ufunc__(self, *args, **kwargs):
        return np.zeros(2)


class FakeNumber:
    def __array__(self, dtype=None, copy=None):
        return EXPECTED.copy()

    def __float__(self):
        return 1.0


@pytest.mark.parametrize("received", [
    np.zeros((2, 3)).view(LyingArray), FakeNumber(), EXPECTED.tolist(), True, "1.0", None,
    EXPECTED.astype(object),
], ids=["ndarray-subclass", "__array__-object", "list", "bool", "str", "None", "object-array"])
def test_values_that_are_not_plain_arrays_are_rejected(received):
    failure = _failure(received)
    assert "received" in str(failure)


def test_float32_is_rejected_even_when_close():
    failure = _failure(EXPECTED.astype(np.float32))
    assert "dtype is float32" in str(failure) and failure.misconception == "wrong-dtype"


def test_nan_and_overflow_warning_fail_with_overflow_misconception():
    bad = EXPECTED.copy()
    bad[0, 0] = np.nan
    assert _failure(bad).misconception == "unstable-exp-overflow"
    failure = _failure(EXPECTED.copy(), warnings=["overflow encountered in exp"])
    assert failure.misconception == "unstable-exp-overflow"


def test_mutated_input_fails_even_when_values_match():
    assert _failure(EXPECTED.copy(), mutated_inputs=["x"]).misconception == "input-mutated"
