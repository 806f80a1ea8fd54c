"""What make grade computes once in its own process instead of per call (issue 21): same values, same errors."""

from __future__ import annotations

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
