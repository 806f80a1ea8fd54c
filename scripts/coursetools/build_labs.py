"""Regenerate labs/ from solutions/ with ``nbgrader generate_assignment``, or check they agree.

    python -m coursetools.build_labs            # regenerate every lab (make labs)
    python -m coursetools.build_labs --check    # exit 1 if labs/ differs from a fresh generation
    python -m coursetools.build_labs 01_backprop --force

A student's edits are never overwritten silently: if a lab notebook's exercise
cells no longer match the stubs nbgrader released (nbgrader stores a checksum
per cell), the lab is skipped unless ``--force`` is given, and then the old
notebook is first copied to ``<lab>.ipynb.bak-<timestamp>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbgrader.utils import compute_checksum

from .paths import LABS, ROOT, SOLUTIONS, lab_ids, lab_notebook


def generate(lab: str, dest_labs: Path) -> Path:
    """Run nbgrader on a scratch copy of the course and put the student notebook under ``dest_labs``.

    Working on a copy keeps nbgrader's gradebook and logs out of the repository.
    """
    with tempfile.TemporaryDirectory(prefix="mdl-generate-") as tmp:
        course = Path(tmp)
        shutil.copytree(SOLUTIONS / lab, course / "solutions" / lab)
        shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
        result = _generate_assignment(course, lab)
        generated = course / "labs" / lab / f"{lab}.ipynb"
        if not result.get("success") or not generated.is_file():
            raise RuntimeError(f"nbgrader generate_assignment {lab} failed:\n{result.get('error', '')}\n"
                               f"{result.get('log', '')}")
        target = lab_notebook(lab, dest_labs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(generated, target)
        return target


def _generate_assignment(course: Path, lab: str) -> dict:
    """``nbgrader generate_assignment LAB --force --no-db`` in ``course``, through nbgrader's API in this
    process (same converter and config; no interpreter start and nbgrader import, about 2.4 s a lab)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    config.GenerateAssignment.no_database = True  # what --no-db sets
    config.SaveCells.enabled = False
    config.Application.log_level = "WARN"
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    return api.generate_assignment(lab, force=True, create=False)


def edited_cells(path: Path) -> list[str]:
    """grade_ids of cells whose source no longer matches the checksum nbgrader released."""
    nb = nbformat.read(path, as_version=4)
    edited = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if "checksum" in meta and compute_checksum(cell) != meta["checksum"]:
            edited.append(meta.get("grade_id", "?"))
    return edited


def differences(lab: str) -> list[str]:
    """Why labs/<lab> differs from what nbgrader generates now (empty if identical)."""
    with tempfile.TemporaryDirectory(prefix="mdl-check-") as tmp:
        fresh = generate(lab, Path(tmp))
        current = lab_notebook(lab)
        if not current.is_file():
            return [f"{current.relative_to(ROOT)} is missing"]
        a = json.loads(fresh.read_text(encoding="utf-8"))
        b = json.loads(current.read_text(encoding="utf-8"))
        if a == b:
            return []
        problems = []
        if len(a["cells"]) != len(b["cells"]):
            problems.append(f"cell count {len(b['cells'])} != {len(a['cells'])} generated")
        for i, (ca, cb) in enumerate(zip(a["cells"], b["cells"])):
            if ca != cb:
                problems.append(f"cell {i} ({ca.get('metadata', {}).get('nbgrader', {}).get('grade_id', ca['cell_type'])}) differs")
        if a.get("metadata") != b.get("metadata"):
            problems.append("notebook metadata differs")
        return problems or ["notebook differs"]


def main(argv=None, labs_dir: Path = LABS) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", help="lab ids (default: all)")
    parser.add_argument("--check", action="store_true", help="only compare labs/ with a fresh generation")
    parser.add_argument("--force", action="store_true", help="overwrite labs with student edits (after a backup)")
    args = parser.parse_args(argv)
    labs = args.labs or lab_ids()
    status = 0
    for lab in labs:
        if args.check:
            diff = differences(lab)
            print(f"{lab}: {'in sync' if not diff else 'OUT OF SYNC: ' + '; '.join(diff)}")
            status |= bool(diff)
            continue
        current = lab_notebook(lab, labs_dir)
        if current.is_file():
            edited = edited_cells(current)
            if edited and not args.force:
                print(f"{lab}: skipped, {current} has edited exercise cells "
                      f"({', '.join(edited)}); rerun with --force to back it up and regenerate.")
                status = 1
                continue
            if edited:
                backup = current.with_name(current.name + time.strftime(".bak-%Y%m%d-%H%M%S"))
                shutil.copy(current, backup)
                print(f"{lab}: backed up the edited notebook to {backup}")
        generate(lab, labs_dir)
        print(f"{lab}: regenerated {lab_notebook(lab, labs_dir)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
