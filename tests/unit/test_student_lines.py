"""A student's exception names the student's own line (issue 17 item 6), in the notebook and in make grade.

A student function that raises, on its own line or inside numpy called from its line, is
reported as "<name> raised <Error>: ... (in <cell>, line N: <source>)", N counted in the
student's cell: never a line of numpy or of the course's modules (the checker used to name
numpy's ``raise`` line when the error came from numpy's Python code).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import pytest

from checker import CheckFailure
from checker.student import call_student
from fixtures.alternatives import Alternative
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources

LAB = "01_backprop"
ANCHOR = "    dL_dy_pred = 2.0 * diff / diff.size"
#: The student's own ``raise``, and a numpy call that raises inside numpy's Python code.
OWN_RAISE = Alternative("ex4_mse", "check_ex4_mse", "raises on its own line", ANCHOR,
                        ANCHOR + "\n    if diff.ndim == 2:\n        raise ValueError('my own bug')")
IN_NUMPY = Alternative("ex4_mse", "check_ex4_mse", "numpy raises for the student's line", ANCHOR,
                       ANCHOR + "\n    np.linalg.norm(diff, axis=(0, 1, 2))")
CASES = {"own-raise": (OWN_RAISE, "raise ValueError('my own bug')", "ValueError: my own bug"),
         "inside-numpy": (IN_NUMPY, "np.linalg.norm(diff, axis=(0, 1, 2))",
                          "ValueError: Improper number of dimensions to norm.")}


def _line_of(source: str, text: str) -> int:
    [number] = [i for i, line in enumerate(source.splitlines(), start=1) if line.strip() == text]
    return number


@pytest.mark.parametrize("case", list(CASES))
def test_in_process_the_message_names_the_students_cell_and_line(case):
    student, text, error = CASES[case]
    sources = solution_sources(LAB, [student])
    ns = lab_namespace(LAB, sources)
    with pytest.raises(CheckFailure) as failure, contextlib.redirect_stdout(io.StringIO()):
        exec(compile(grade_cells(LAB)[student.check], student.check, "exec"), ns)
    message = str(failure.value)
    line = _line_of(sources["ex4_mse"], text)
    assert f"mse_loss_and_grad raised {error} (in ex4_mse, line {line})" in message, message
    assert message.count(" line ") == 1 and "raise ValueError(\"Improper" not in message, message  # not numpy's line


def test_in_an_ipython_cell_the_message_names_the_cell_as_ipython_does():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("import numpy as np\n"
                       "def student_norm(x):\n"
                       "    y = x * 2.0\n"
                       "    return np.linalg.norm(y, axis=(0, 1, 2))\n", store_history=True)
        count = shell.execution_count - 1
        with pytest.raises(CheckFailure) as failure:
            call_student(shell.user_ns["student_norm"], "student_norm", x=np.ones((2, 2)))
    finally:
        InteractiveShell.clear_instance()
    message = str(failure.value)
    assert f"(in In[{count}], line 4: return np.linalg.norm(y, axis=(0, 1, 2)))" in message, message


def test_make_grade_names_the_students_cell_and_line(tmp_path):
    """The sandbox's report (sandbox_main.where): the same cell, line and source, for both cases."""
    from coursetools.grading.trusted import TrustedLab
    from coursetools.grading.verdict import grade_submission

    trusted = TrustedLab.load(LAB)
    only_mse = dataclasses.replace(trusted, grade_cells=[c for c in trusted.grade_cells
                                                         if c.grade_id == "check_ex4_mse"])
    for student, text, error in CASES.values():
        sources = solution_sources(LAB, [student])
        [verdict] = grade_submission(only_mse, "ann", sources, workdir=tmp_path).verdicts
        line = _line_of(sources["ex4_mse"], text)
        assert not verdict.passed and verdict.misconception == "raised-exception", verdict
        assert f"mse_loss_and_grad raised {error} (in ex4_mse, line {line}: {text})" in verdict.message, verdict.message


def test_a_cells_own_source_is_there_in_the_sandbox_as_in_a_notebook(tmp_path):
    """The sandbox keeps each cell's source as IPython does: inspect.getsource (and so
    torch.jit.script) works on the student's function, and a cell's error quotes its line."""
    from coursetools.grading.sandbox import Limits, Sandbox

    with Sandbox(numpy_only=True, limits=Limits(call_seconds=60), workdir=tmp_path) as sandbox:
        reply, _ = sandbox.request({"op": "exec", "cell": "ex_source", "source": (
            "import inspect\ndef twice(x):\n    return 2 * x\nprint(inspect.getsource(twice).splitlines()[1])\n")})
        assert reply["ok"] and "return 2 * x" in reply["output"], reply
        reply, _ = sandbox.request({"op": "exec", "cell": "ex_error", "source": "x = 1\ny = x / 0\n"})
    assert reply["error"] == "ZeroDivisionError: division by zero (in ex_error, line 2: y = x / 0)", reply
