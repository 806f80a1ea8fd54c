"""Benchmark: the test suite's autograding of fixture submissions, fresh kernels vs warm ones (issue 21).

    .venv/bin/python benchmarks/autograde_kernels.py              # every lab
    .venv/bin/python benchmarks/autograde_kernels.py 02_optimizers

tests/notebooks/test_autograde.py has stock nbgrader autograde, per lab, the untouched stub and
every mistake group (tests/fixtures/autograded.py). Each of them used to get a fresh kernel: IPython's
start-up and the setup cell's imports (numpy, torch, matplotlib, the checker) before a
submission whose own cells take well under a second. Now they run in kernels forked from a server
that imported those modules once (tests/fixtures/warm_kernels.py). This script autogrades the same
submissions both ways, in two scratch courses, and prints per lab the seconds, the ratio, and
whether every grade cell got the same score and the same outputs. Stream outputs are compared with
consecutive chunks of one stream joined: how ipykernel splits stdout into messages depends on timing.
The warm server's one-time start is printed apart; the suite pays it once per xdist worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# As the test suite runs (tests/conftest.py): one BLAS/OpenMP thread per process, set before numpy loads.
for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]

import nbformat  # noqa: E402
from tqdm import tqdm  # noqa: E402

from coursetools.paths import lab_ids  # noqa: E402
from fixtures.course import ScratchCourse  # noqa: E402
from fixtures.mistakes import MISTAKES  # noqa: E402
from fixtures.notebooks import group_mistakes, nbgrader_meta, representatives, submission  # noqa: E402
from fixtures.warm_kernels import KernelServer  # noqa: E402


def graded_cells(course: ScratchCourse, lab: str, student: str) -> dict:
    """grade_id -> (score, outputs), with consecutive chunks of one stream joined."""
    scores = course.scores(lab, student)
    nb = nbformat.read(course.root / "autograded" / student / lab / f"{lab}.ipynb", as_version=4)
    cells = {}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta.get("grade"):
            continue
        outputs: list = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and outputs and outputs[-1][0] == out.name:
                outputs[-1] = (out.name, outputs[-1][1] + out.text)
            elif out.output_type == "stream":
                outputs.append((out.name, out.text))
            else:
                outputs.append((out.output_type, json.dumps({k: v for k, v in out.items() if k != "metadata"},
                                                            sort_keys=True)))
        cells[meta["grade_id"]] = (scores[meta["grade_id"]], outputs)
    return cells


def autograde(lab: str, warm: bool) -> tuple[float, dict]:
    """Seconds for nbgrader's autograde of the stub and the mistake groups, and what it gave each grade cell."""
    course = ScratchCourse(Path(tempfile.mkdtemp(prefix=f"bench-{lab}-")))
    course.add_lab(lab)
    students = {"stub": submission(lab, solved=False, demos=False)}
    for i, group in enumerate(group_mistakes(lab, representatives(lab))):
        students[f"mistakes{i}"] = submission(lab, group, demos=False)
    for student, nb in students.items():
        course.submit(student, lab, nb)
    start = time.perf_counter()
    course.autograde(lab, list(students), warm=warm)
    seconds = time.perf_counter() - start
    return seconds, {s: graded_cells(course, lab, s) for s in students}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", help="lab ids (default: every lab with mistake fixtures)")
    args = parser.parse_args(argv)
    labs = args.labs or [lab for lab in lab_ids() if MISTAKES.get(lab)]

    start = time.perf_counter()
    KernelServer.instance()
    server_s = time.perf_counter() - start
    rows = []
    for lab in tqdm(labs, desc="autograding", unit="lab"):
        cold_s, cold = autograde(lab, warm=False)
        warm_s, warm = autograde(lab, warm=True)
        rows.append((lab, len(cold), sum(len(c) for c in cold.values()), cold_s, warm_s, cold == warm))

    print(f"\n{'lab':34} {'notebooks':>9} {'cells':>6} {'fresh s':>8} {'warm s':>7} {'ratio':>6}  same scores+outputs")
    for lab, n, cells, cold_s, warm_s, same in rows:
        print(f"{lab:34} {n:9d} {cells:6d} {cold_s:8.1f} {warm_s:7.1f} {cold_s / warm_s:5.1f}x  {'yes' if same else 'NO'}")
    cold_total, warm_total = sum(r[3] for r in rows), sum(r[4] for r in rows)
    print(f"{'all':34} {sum(r[1] for r in rows):9d} {sum(r[2] for r in rows):6d} {cold_total:8.1f} "
          f"{warm_total:7.1f} {cold_total / warm_total:5.1f}x  {'yes' if all(r[5] for r in rows) else 'NO'}")
    print(f"warm kernel server start (once per process): {server_s:.1f} s")
    return 0 if all(r[5] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
