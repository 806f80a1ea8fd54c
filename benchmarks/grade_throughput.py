"""Grading throughput: plain sequential ``nbgrader autograde`` versus ``make grade``.

    .venv/bin/python benchmarks/grade_throughput.py [--students 24] [--workers N]

Generates N submissions of lab 01 (the solution, the stub and groups of the
catalogued mistakes, cycled), grades them both ways, checks that every
student's score on every question is identical, and prints notebooks per
minute for both, the ratio (target: at least 10x), where make grade's time
went (sandbox start-up, the student's cells, the checks, recording in
nbgrader's gradebook), and the per-notebook start-up cost of each way: a
Jupyter kernel with the lab's imports, a new sandbox interpreter, and a
sandbox forked from the lab's sandbox server (what make grade does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the mistake fixtures live with the tests

from coursetools.grading import cli  # noqa: E402
from coursetools.grading.isolation import machine_isolation  # noqa: E402
from coursetools.grading.sandbox import Limits, Sandbox  # noqa: E402
from coursetools.grading.zygote import Zygote  # noqa: E402
from coursetools.grading.trusted import TrustedLab, strip_magics  # noqa: E402
from coursetools.paths import tool_env  # noqa: E402
from fixtures.mistakes import MISTAKES  # noqa: E402
from fixtures.notebooks import submission  # noqa: E402
from nbgrader.api import Gradebook  # noqa: E402

LAB = "01_backprop"


def make_class(folder: Path, n: int) -> list[str]:
    """n students: solution, stub, and one mistake group each, cycled."""
    mistakes = MISTAKES[LAB]
    variants = [("solution", [])] + [("stub", None)] + [(m.id, [m]) for m in mistakes]
    students = []
    for i in range(n):
        _, edits = variants[i % len(variants)]
        nb = submission(LAB, solved=False) if edits is None else submission(LAB, edits)
        student = f"s{i:03d}"
        path = folder / student / LAB / f"{LAB}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        students.append(student)
    return students


def plain_nbgrader(submitted: Path, work: Path) -> tuple[float, float, dict]:
    """Stock nbgrader: one kernel per notebook, grade cells run next to the student's code.

    Returns the seconds of ``autograde``, of ``generate_feedback`` (make grade writes both), and the scores.
    """
    course = work / "plain"
    shutil.copytree(ROOT / "solutions" / LAB, course / "solutions" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(submitted, course / "submitted")
    db = f"sqlite:///{course / 'gradebook.db'}"
    run = lambda *a: subprocess.run([sys.executable, "-m", "nbgrader", *a, f"--db={db}", "--log-level=ERROR"],  # noqa: E731
                                    cwd=course, check=True, env=tool_env(), capture_output=True)
    run("generate_assignment", LAB, "--force")
    start = time.perf_counter()
    run("autograde", LAB, "--force")
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    run("generate_feedback", LAB, "--force")
    feedback_seconds = time.perf_counter() - start
    scores = {}
    with Gradebook(db) as gb:
        for sub in gb.assignment_submissions(LAB):
            nb = gb.find_submission_notebook(LAB, LAB, sub.student.id)
            scores[sub.student.id] = {g.name: float(g.score) for g in nb.grades}
    return seconds, feedback_seconds, scores


def make_grade(submitted: Path, work: Path, workers: int) -> tuple[float, dict]:
    out = work / "graded"
    start = time.perf_counter()
    cli.main([str(submitted), str(out), "--workers", str(workers), "--labs", LAB])
    seconds = time.perf_counter() - start
    import csv

    scores: dict = {}
    with open(out / "grades_by_question.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            scores.setdefault(r["student"], {})[r["question"]] = float(r["score"])
    return seconds, scores


def startup_costs(repeats: int = 5) -> dict:
    """Seconds (median of ``repeats``) to get lab 01's setup cells run: in a fresh kernel, in a new sandbox
    interpreter, and in a sandbox forked from a sandbox server (plus the server's own one-off start)."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    trusted = TrustedLab.load(LAB)
    trusted.globals()
    isolation = machine_isolation()
    limits = Limits()
    setup = "\n".join(strip_magics(src) for _, src in trusted.setup_cells)

    def run_setup(sandbox):
        with sandbox:
            for gid, src in trusted.setup_cells:
                sandbox.request({"op": "exec", "cell": gid, "source": strip_magics(src)})

    def median_of(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    kernel = median_of(lambda: NotebookClient(new_notebook(cells=[new_code_cell(setup)]),
                                              kernel_name="python3").execute())
    with tempfile.TemporaryDirectory() as d:
        fresh = median_of(lambda: run_setup(Sandbox(trusted.numpy_only, preload=trusted.preload,
                                                     handed_out=trusted.handed_out, limits=limits,
                                                     isolation=isolation, workdir=Path(d))))
        start = time.perf_counter()
        server = Zygote(trusted.numpy_only, trusted.preload, trusted.handed_out, limits, isolation)
        server.start()
        server_start = time.perf_counter() - start
        try:
            forked = median_of(lambda: run_setup(Sandbox(trusted.numpy_only, preload=trusted.preload,
                                                         handed_out=trusted.handed_out, limits=limits,
                                                         isolation=isolation, workdir=Path(d), zygote=server)))
        finally:
            server.close()
    return {"kernel": kernel, "fresh": fresh, "forked": forked, "server": server_start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mdl-bench-") as tmp:
        work = Path(tmp)
        submitted = work / "submitted"
        make_class(submitted, args.students)
        plain_s, plain_feedback_s, plain_scores = plain_nbgrader(submitted, work)
        ours_s, our_scores = make_grade(submitted, work, args.workers)
        phases = dict(cli.LAST_RUN)
    costs = startup_costs()
    same = plain_scores == our_scores
    n = args.students
    print("\n=== grading throughput, lab 01 ===")
    print(f"submissions                      {n}")
    print(f"cores                            {os.cpu_count()} (make grade --workers {args.workers})")
    print(f"plain nbgrader autograde         {plain_s:7.1f} s   {n / plain_s * 60:6.1f} notebooks/min")
    print(f"make grade (everything)          {ours_s:7.1f} s   {n / ours_s * 60:6.1f} notebooks/min")
    ratio = plain_s / ours_s
    print(f"speed-up                         {ratio:7.2f}x   (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
    with_feedback = plain_s + plain_feedback_s
    print(f"plain autograde + generate_feedback {with_feedback:5.1f} s   {n / with_feedback * 60:6.1f} notebooks/min   "
          f"speed-up {with_feedback / ours_s:.2f}x (make grade writes the feedback pages too)")
    print(f"identical scores                 {'yes' if same else 'NO'} ({sum(len(v) for v in plain_scores.values())} "
          f"question scores compared)")
    print(f"\nwhere make grade's {ours_s:.1f} s went (wall; the first three are summed over {args.workers} workers):")
    for label, key in (("sandbox start (fork, or a server's start)", "start"), ("setup + student cells", "cells"),
                       ("checks (grade cells)", "checks")):
        print(f"  {label:42s} {phases.get(key, 0.0):7.1f} s   {phases.get(key, 0.0) / n * 1e3:7.0f} ms/notebook")
    after = phases.get("recording_after", phases.get("recording", 0.0))
    overlapped = phases.get("recording", 0.0) - after
    other = ours_s - phases.get("grading", 0.0) - after
    print(f"  {'grading phase, wall':42s} {phases.get('grading', 0.0):7.1f} s")
    print(f"  {'recording in nbgrader (autograde, feedback)':42s} {phases.get('recording', 0.0):7.1f} s   "
          f"{phases.get('recording', 0.0) / n * 1e3:7.0f} ms/notebook, {overlapped:.1f} s of it during the "
          f"grading phase (in the grader's own process, as each verdict arrived)")
    print(f"  {'after the grading phase: gradebook read, reports':42s} {after + other:7.1f} s")
    print(f"\nstart-up per notebook (lab 01's setup cells run, median of 5):")
    print(f"  kernel + lab imports (nbgrader)            {costs['kernel']:7.3f} s")
    print(f"  new sandbox interpreter                    {costs['fresh']:7.3f} s")
    print(f"  sandbox forked from the lab's server       {costs['forked']:7.3f} s   "
          f"({costs['fresh'] / costs['forked']:.0f}x less; the server itself starts once per lab and worker "
          f"in {costs['server']:.2f} s)")
    if not same:
        for student in sorted(set(plain_scores) | set(our_scores)):
            if plain_scores.get(student) != our_scores.get(student):
                print(f"  {student}: nbgrader {plain_scores.get(student)} vs make grade {our_scores.get(student)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
