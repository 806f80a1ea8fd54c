"""What make grade computes once in its own process instead of per call (issue 21): same values, same errors."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import jsonschema
import nbformat
import pytest

from coursetools.grading import nbgrader_bridge
from coursetools.grading.trusted import TrustedLab
from coursetools.paths import SCRIPTS, solution_notebook


def test_the_gradebook_revision_is_the_one_alembic_prints():
    """nbgrader stamps a new gradebook with `alembic heads`; make grade reads the same revision in-process."""
    from nbgrader.dbutil import _temp_alembic_ini

    alembic = Path(sys.executable).parent / "alembic"
    with _temp_alembic_ini("sqlite:////tmp/unused-gradebook.db") as ini:
        printed = subprocess.run([str(alembic), "-c", ini, "heads"], capture_output=True, text=True, check=True)
    assert nbgrader_bridge.alembic_head() == printed.stdout.split("\n")[0].split(" ")[0]


def test_cell_metadata_is_validated_as_nbgrader_validates_it():
    """The schema checked once, then every cell: valid metadata passes, invalid raises jsonschema's error."""
    from nbgrader.nbgraderformat import v3

    nbgrader_bridge._in_process_nbgrader()
    validator = v3.MetadataValidatorV3()
    nb = nbformat.read(solution_notebook("01_backprop"), as_version=4)
    validator.validate_nb(nb)  # the course's own notebook is valid
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    for bad in ({"points": "three"}, {"grade_id": 7}, {"solution": "yes"}):
        broken = nbformat.from_dict(cell)
        broken.metadata.nbgrader.update(bad)
        with pytest.raises(jsonschema.ValidationError) as ours:
            validator.validate_cell(broken)
        with pytest.raises(jsonschema.ValidationError) as theirs:
            jsonschema.validate(broken.metadata["nbgrader"], validator.schema)
        assert ours.value.message == theirs.value.message


@pytest.mark.parametrize("lab", ["01_backprop", "02_optimizers", "04_svd_lora"])
def test_the_sandbox_server_preloads_the_libraries_the_lab_s_demonstrations_import(lab):
    """scikit-learn, imported by a demonstration cell, is imported once by the server, not per notebook;
    no course module is preloaded beyond what the setup cells hand out, and no torch in a numpy-only lab."""
    trusted = TrustedLab.load(lab)
    assert "sklearn.datasets" in trusted.demo_imports and "sklearn.datasets" in trusted.preload
    course = {p.stem for p in SCRIPTS.iterdir()}
    from_setup = set(trusted.handed_out) | {f"{m}.{a}" for m, attrs in trusted.handed_out.items() for a in attrs or ()}
    for name in trusted.preload:
        assert name.split(".")[0] not in course or name in from_setup, name
    assert "checker" in trusted.demo_imports and "checker" not in trusted.preload  # the progress cell's import
    if trusted.numpy_only:
        assert not [n for n in trusted.preload if n.split(".")[0] == "torch"]


def test_the_grader_reads_notebooks_without_jsonschema_s_format_grammar(tmp_path):
    """make grade's processes skip rfc3987_syntax (0.8 s per process) and still refuse an invalid notebook."""
    probe = (
        "import sys, coursetools.grading.cli, nbformat\n"
        "assert sys.modules.get('rfc3987_syntax') is None, 'rfc3987_syntax was imported'\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')])\n"
        "nb.cells[0]['execution_count'] = 'one'\n"
        "try:\n    nbformat.validate(nb)\nexcept nbformat.ValidationError:\n    print('refused')\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused"


def _gradebook_contents(db_url: str) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        return {(a.name, s.id): gb.find_submission(a.name, s.id).score
                for a in gb.assignments for s in gb.students}


def test_gradebooks_on_one_database_share_an_engine_only_inside_the_scope(tmp_path):
    """Inside shared_gradebook_engine(url), nbgrader's Gradebooks reuse one SQLAlchemy engine (its compiled
    statements with it) and write what fresh Gradebooks read; outside, every Gradebook makes its own as before,
    and the kept engine is disposed on leaving."""
    from nbgrader.api import Gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with nbgrader_bridge.shared_gradebook_engine(url):
        with Gradebook(url) as first:   # creates the database: nbgrader's full start-up
            first.add_assignment("lab")
            first.add_student("ada")
            first.add_submission("lab", "ada")
            engine = first.engine
        with Gradebook(url) as second, Gradebook(other) as elsewhere:
            assert second.engine is engine
            assert elsewhere.engine is not engine   # only the scope's database is shared
            second.add_student("grace")
            second.add_submission("lab", "grace")
        with nbgrader_bridge.shared_gradebook_engine(url), Gradebook(url) as nested:
            assert nested.engine is engine
        with Gradebook(url) as third:   # the nested scope's end did not end the outer one
            assert third.engine is engine and third.course_id == "default_course"
    assert url not in nbgrader_bridge._SHARED_ENGINES
    with Gradebook(url) as after:
        assert after.engine is not engine
    assert _gradebook_contents(url) == {("lab", "ada"): 0.0, ("lab", "grace"): 0.0}


def test_make_grade_records_the_same_gradebook_with_a_shared_engine(tmp_path):
    """One class recorded with and without the kept engine: the same scores, grade by grade."""
    from nbgrader.api import Gradebook

    from coursetools.paths import lab_notebook

    nb = nbgrader_bridge.graded_notebook(lab_notebook("01_backprop"), {})
    grade_cells = [c.metadata.nbgrader for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    # Passed, partly right, wrong, in turn: nbgrader records full, partial and zero scores.
    verdicts = [{"grade_id": m["grade_id"], "points": m["points"] * (1.0, 0.5, 0.0)[i % 3], "max_points": m["points"],
                 "passed": i % 3 == 0, "message": "", "misconception": ""} for i, m in enumerate(grade_cells)]
    scores = []
    for shared in (False, True):
        course = nbgrader_bridge.NbgraderCourse(tmp_path / f"out-{shared}")
        scope = nbgrader_bridge.shared_gradebook_engine(course.db_url) if shared else contextlib.nullcontext()
        with scope:
            course.prepare(["01_backprop"])
            for student in ("ada", "grace"):
                course.record(student, "01_backprop", nb, {"verdicts": verdicts, "cell_outputs": {}, "displays": {}})
        with Gradebook(course.db_url) as gb:
            scores.append({(student, g.name): g.score for student in ("ada", "grace")
                           for g in gb.find_submission_notebook("01_backprop", "01_backprop", student).grades})
    assert scores[0] == scores[1]
    assert sorted(set(scores[0].values())) == sorted({v["points"] for v in verdicts})
