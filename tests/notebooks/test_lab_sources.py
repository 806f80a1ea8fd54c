"""labs/ is what nbgrader generates from solutions/ now, and every notebook is committed clean."""

from __future__ import annotations

import json

import nbformat
import pytest

from coursetools.build_labs import differences, edited_cells
from coursetools.paths import LABS, ROOT, SOLUTIONS, lab_ids, lab_notebook, solution_notebook
from fixtures.autograded import lab_params

ALL_NOTEBOOKS = sorted(p for d in (LABS, SOLUTIONS) for p in d.glob("**/*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("lab", lab_ids())
def test_lab_matches_fresh_nbgrader_generation(lab):
    assert differences(lab) == [], "labs/ is out of sync with solutions/: run `make labs`"


def test_every_solution_has_a_lab_and_no_stray_labs():
    assert sorted(p.name for p in LABS.iterdir() if p.is_dir()) == lab_ids()


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in ALL_NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has stored outputs"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("lab", lab_ids())
def test_released_lab_has_no_solutions_or_hidden_tests(lab):
    text = lab_notebook(lab).read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "seed=9301"):
        assert marker not in text
    assert edited_cells(lab_notebook(lab)) == []


@pytest.mark.parametrize("lab", lab_ids())
def test_solution_has_enough_graded_exercises_with_hidden_checks(lab):
    nb = json.loads(solution_notebook(lab).read_text(encoding="utf-8"))
    grade_cells = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    assert len(grade_cells) >= 6
    for cell in grade_cells:
        meta = cell["metadata"]["nbgrader"]
        assert meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert "### BEGIN HIDDEN TESTS" in "".join(cell["source"]), f"{meta['grade_id']} has no hidden checks"


def _validate_invert(path) -> str:
    """What ``nbgrader validate --invert PATH`` prints, from nbgrader's Validator in this process.

    The same code, configured by the course's nbgrader_config.py, without an interpreter start
    and nbgrader import (about 2.4 s) per lab; the kernel still runs the whole notebook. The kernel
    is forked warm (fixtures/warm_kernels.py): a fresh one spent about 6 s of each lab's 8 s starting
    and importing. Each lab's setup cell still runs in a fresh kernel in the solution's autograde
    (fixtures/autograded.py) and, untouched as released, in the browser test.
    """
    import io

    from nbgrader.validator import Validator
    from traitlets.config.loader import PyFileConfigLoader

    from fixtures.warm_kernels import warm_config

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    warm_config(config)
    validator = Validator(config=config, invert=True)
    validator.stream = io.StringIO()  # where `nbgrader validate` prints (stdout by default)
    validator.validate_and_print(str(path))
    return validator.stream.getvalue()


@pytest.mark.notebook
@pytest.mark.parametrize("lab", lab_params(lab_ids()))
def test_nbgrader_validate_passes_on_solution(lab, autograded_courses):
    """nbgrader's Validator judges the solution as `nbgrader validate` does after running it: no grade
    cell fails. It reads the run nbgrader's autograde already made of the solution (shared with
    test_autograde.py) instead of executing every lab once more."""
    from nbgrader.validator import Validator

    _, course, _ = autograded_courses[lab]
    nb = nbformat.read(course.root / "autograded" / "solution" / lab / f"{lab}.ipynb", as_version=4)
    validator = Validator()
    failed = [cell.metadata["nbgrader"].get("grade_id") for cell in validator._get_failed_cells(nb)]
    passed = validator._get_passed_cells(nb)
    assert failed == [] and passed, f"grade cells that fail on the solution: {failed}"


@pytest.mark.notebook
@pytest.mark.parametrize("lab", lab_ids())
def test_nbgrader_validate_invert_fails_every_grade_cell_of_the_stub(lab):
    out = _validate_invert(lab_notebook(lab))
    assert "Success! The notebook does not pass any tests." in out, out
