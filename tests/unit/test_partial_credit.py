"""Partial credit per function (issue 17, item 4): lab 01's Exercise 2 asks for four derivative
functions; a submission with three right earns 3/4 of the cell's points, the same in a notebook
(nbgrader's own rule on the executed grade cell) and in the grader's evaluation of the cell."""

from __future__ import annotations

import copy

import nbformat
import pytest
from nbgrader.utils import determine_grade

from checker.exercise import PartialCredit, PartialScore, scoring_by_value
from coursetools.grading.trusted import strip_magics
from coursetools.grading.verdict import _run_cell, _verdict_of_value
from coursetools.paths import solution_notebook
from fixtures.cascades import PARTIAL_CHECK, PARTIAL_LAB, PARTS, RELU_AT_ZERO
from fixtures.notebooks import grade_cells, lab_namespace, nbgrader_meta, solution_sources

LAB, CHECK, CELL = PARTIAL_LAB, PARTIAL_CHECK, RELU_AT_ZERO.cell


def _points() -> float:
    nb = nbformat.read(solution_notebook(LAB), as_version=4)
    return float(next(nbgrader_meta(c)["points"] for c in nb.cells if nbgrader_meta(c).get("grade_id") == CHECK))


class _Cell:
    grade_id, points = CHECK, None


def test_three_of_four_in_the_graders_evaluation():
    ns = lab_namespace(LAB, solution_sources(LAB, [RELU_AT_ZERO]))
    cell = _Cell()
    cell.points = _points()
    with scoring_by_value():
        value = _run_cell(grade_cells(LAB)[CHECK], "<grade>", ns, ns)
    assert isinstance(value, PartialScore) and float(value) == pytest.approx(0.75 * cell.points)
    verdict = _verdict_of_value(cell, value, "")
    assert verdict.points == pytest.approx(0.75 * cell.points) and not verdict.passed
    assert verdict.misconception == "relu-derivative-at-zero" and verdict.parts == PARTS
    # Plain exec (no scoring context): still a failure naming the mistake, carrying the points.
    with pytest.raises(PartialCredit) as failure:
        exec(grade_cells(LAB)[CHECK], dict(ns))
    assert failure.value.points == pytest.approx(0.75 * cell.points)
    assert "[relu-derivative-at-zero]" in str(failure.value) and "3 of 4 functions right" in str(failure.value)


def test_three_of_four_in_a_notebook_as_nbgrader_scores_it():
    """One kernel: setup, Exercise 2 with the mistake, its grade cell (hidden tests in), then the
    right Exercise 2 and the grade cell again; nbgrader's determine_grade scores each grade cell."""
    from nbclient import NotebookClient

    points = _points()
    source = nbformat.read(solution_notebook(LAB), as_version=4)
    setup = next(c for c in source.cells if nbgrader_meta(c).get("grade_id") == "setup")
    grade = next(c for c in source.cells if nbgrader_meta(c).get("grade_id") == CHECK)
    cells = [nbformat.v4.new_code_cell(strip_magics(setup.source))]
    for mistakes in ([RELU_AT_ZERO], []):
        cells += [nbformat.v4.new_code_cell(solution_sources(LAB, mistakes)[CELL]),
                  nbformat.v4.new_code_cell(grade.source, metadata=copy.deepcopy(grade.metadata))]
    nb = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(solution_notebook(LAB).parent)}}).execute()
    assert determine_grade(nb.cells[2]) == (pytest.approx(0.75 * points), points)
    assert determine_grade(nb.cells[4]) == (points, points), "a right submission keeps full points"


def test_every_call_of_the_cell_counts():
    """A cell's value is its last call's: a part that failed on the visible inputs stays failed
    when the hidden call passes it; a new cell starts afresh; all parts wrong is a plain failure."""
    from checker import CheckFailure
    from checker.exercise import score_parts

    wrong = CheckFailure("f is wrong", "some-mistake")
    with scoring_by_value():
        first = score_parts(2.0, {"f": wrong, "g": None}, check="toy")
        last = score_parts(2.0, {"f": None, "g": None}, check="toy")
        assert float(first) == float(last) == 1.0 and last.parts == {"f": "some-mistake", "g": "ok"}
        with pytest.raises(CheckFailure, match="f is wrong"):
            score_parts(2.0, {"f": wrong, "g": wrong}, check="toy")
    with scoring_by_value():
        assert score_parts(2.0, {"f": None, "g": None}, check="toy") is None


def test_partial_credit_points_equal_the_grade_cells_points():
    """A check of several functions returns points: they must be its grade cell's points."""
    from checker import lab01, lab02, lab04, lab05, lab06, lab07

    modules = {"01_backprop": lab01, "02_optimizers": lab02, "04_svd_lora": lab04, "05_probability": lab05,
               "06_training_dynamics": lab06, "07_normalization_regularization": lab07}
    declared = {(lab, name): points for lab, module in modules.items() for name, points in module.POINTS.items()}
    for (lab, check), points in declared.items():
        nb = nbformat.read(solution_notebook(lab), as_version=4)
        cells = [c for c in nb.cells if nbgrader_meta(c).get("grade") and c.source.startswith(check + "(")]
        assert len(cells) == 1 and float(nbgrader_meta(cells[0])["points"]) == points, (lab, check)


def test_a_wrong_logsumexp_costs_its_own_point_only():
    """Lab 05 Exercise 1 (3 functions, 3 points): a logsumexp without its max added back fails, the
    log_softmax built on it is right given a correct one, so 2 of 3 points."""
    from fixtures.mistakes import Mistake

    lab, check = "05_probability", "check_ex1_softmax_family"
    unshifted = Mistake("", "ex1_softmax_family", check,
                        "return np.squeeze(z_max, axis=-1) + np.log(", "return np.log(")
    ns = lab_namespace(lab, solution_sources(lab, [unshifted]))
    with scoring_by_value():
        value = _run_cell(grade_cells(lab)[check], "<grade>", ns, ns)
    assert float(value) == pytest.approx(2.0), value
    assert value.parts["stable_logsumexp"] != "ok"
    assert value.parts["stable_softmax"] == value.parts["stable_log_softmax"] == "ok"


def test_a_cell_is_named_after_its_first_failure_not_the_consequences():
    """The visible call's linear_backward hangs (timeout) and the sandbox is gone; in the hidden call
    both functions then fail as 'crashed'. The cell names the timeout, the root cause (it named
    'crashed' after linear_forward, listed first, and sent the student to the wrong section)."""
    from checker.compare import CheckFailure
    from checker.exercise import score_parts

    hang = CheckFailure("linear_backward did not finish", "timeout")
    gone = CheckFailure("the sandbox process is gone", "crashed")
    with scoring_by_value():
        visible = score_parts(3.0, {"linear_forward": None, "linear_backward": hang}, check="check_linear_layer")
        with pytest.raises(CheckFailure) as hidden:
            score_parts(3.0, {"linear_forward": gone, "linear_backward": gone}, check="check_linear_layer")
    assert float(visible) == 1.5 and visible.failure.misconception == "timeout"
    assert hidden.value.misconception == "timeout", str(hidden.value)
