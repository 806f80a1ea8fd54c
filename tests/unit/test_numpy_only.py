"""Torch in a numpy-only lab: the notebook says what make grade says, instead of passing the check.

A lab 01 function that computes its answer with PyTorch and returns numpy passed its check in
the notebook, and scored 0 under make grade (the sandbox refuses torch in numpy-only labs): the
student saw a tick and lost the points. Now the notebook's check refuses it too, with the same
misconception; labs that allow torch (03, 06) are unaffected (tests/fixtures/alternatives.py uses
torch there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import pytest

from checker import CheckFailure
from fixtures.alternatives import Alternative
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources

LAB = "01_backprop"
ANCHOR = "    dL_dy_pred = 2.0 * diff / diff.size"
TORCH_INSIDE = Alternative("ex4_mse", "check_ex4_mse", "autograd computes the gradient", ANCHOR,
                           "    import torch\n"
                           "    t = torch.tensor(y_pred, requires_grad=True)\n"
                           "    torch.mean((t - torch.tensor(y_true)) ** 2).backward()\n"
                           "    dL_dy_pred = t.grad.numpy()")
TORCH_IN_A_HELPER = Alternative("ex4_mse", "check_ex4_mse", "a helper of the student's uses torch",
                                ("def mse_loss_and_grad", ANCHOR),
                                ("import torch\n\n\ndef _grad(d):\n    return (2.0 * torch.as_tensor(d) / d.size).numpy()\n\n\n"
                                 "def mse_loss_and_grad", "    dL_dy_pred = _grad(diff)"))


@pytest.mark.parametrize("student", [TORCH_INSIDE, TORCH_IN_A_HELPER], ids=["inside", "helper"])
def test_the_notebook_check_refuses_torch_in_a_numpy_only_lab(student):
    ns = lab_namespace(LAB, solution_sources(LAB, [student]))
    with pytest.raises(CheckFailure) as failure, contextlib.redirect_stdout(io.StringIO()):
        exec(compile(grade_cells(LAB)[student.check], student.check, "exec"), ns)
    assert failure.value.misconception == "torch-in-numpy-exercise", str(failure.value)
    assert "numpy-only" in str(failure.value)


def test_make_grade_gives_the_same_verdict(tmp_path):
    from coursetools.grading.trusted import TrustedLab
    from coursetools.grading.verdict import grade_submission

    trusted = TrustedLab.load(LAB)
    only = dataclasses.replace(trusted, grade_cells=[c for c in trusted.grade_cells if c.grade_id == "check_ex4_mse"])
    [verdict] = grade_submission(only, "ann", solution_sources(LAB, [TORCH_INSIDE]), workdir=tmp_path).verdicts
    assert verdict.points == 0 and verdict.misconception == "torch-in-numpy-exercise", verdict
