"""``make grade SUBMITTED=<dir> OUT=<dir>``: grade a whole class.

    python -m coursetools.grading SUBMITTED OUT [--workers N] [--db URL] [--loose [--pattern RE]]

Every submission is graded in its own sandbox process, several at a time
(``--workers``, default: every core); the verdicts are then recorded through
nbgrader's autograde into its gradebook (``OUT/gradebook.db`` or ``--db``), so
the formgrader works on the result. Writes ``OUT/grades.csv``,
``OUT/grades_by_question.csv``, ``OUT/feedback/<student>/<lab>/<lab>.html`` and
``OUT/report.html``. Exits 0 even when some submissions cannot be graded (they
are listed, with reasons); 2 when the command itself is misused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from ..paths import ROOT, lab_ids, lab_notebook
from . import report
from .intake import Submission, discover, read_notebook, student_cells
from .isolation import Isolation, mount_isolation_available
from .sandbox import Limits, seccomp_available
from .trusted import TrustedLab

_LABS: dict[str, TrustedLab] = {}


def _init_worker(labs: list[str]) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    for lab in labs:
        _LABS[lab] = TrustedLab.load(lab)
        _LABS[lab].globals()


def _grade_one(student: str, lab: str, path: str, isolation: Isolation | None, limits: Limits) -> dict:
    """Worker: read, rebuild and grade one submission; never raises."""
    from .verdict import grade_submission

    nb, problem = read_notebook(Path(path))
    if nb is None:
        return {"student": student, "lab": lab, "status": "error", "reason": problem}
    trusted = _LABS[lab]
    try:
        cells, solutions = student_cells(trusted, nb)
        with tempfile.TemporaryDirectory(prefix="mdl-sandbox-") as workdir:
            result = grade_submission(trusted, student, cells, limits, isolation, workdir)
    except Exception as exc:  # the grader's own failure on this file: report it, go on
        return {"student": student, "lab": lab, "status": "error", "reason": f"grader error: {exc}"}
    data = asdict(result)
    data["solutions"] = solutions
    return data


def _isolation(submitted: Path, out: Path) -> Isolation | None:
    if not mount_isolation_available():
        return None
    hide = [p for p in (ROOT / "solutions", ROOT / "tests", ROOT / ".git", ROOT / "build", submitted, out)
            if p.is_dir()]
    readonly = [str(ROOT)] + [p for p in {sys.prefix, sys.base_prefix} if not Path(p).is_relative_to(ROOT)]
    return Isolation(hide=[str(p) for p in hide], readonly=readonly)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="make grade", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submitted", type=Path, help="folder of submissions")
    p.add_argument("out", type=Path, help="output folder (created; becomes an nbgrader course folder)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel sandboxes (default: all cores)")
    p.add_argument("--db", default=None, help="gradebook database URL (default: sqlite in OUT)")
    p.add_argument("--loose", action="store_true", help="SUBMITTED holds loose notebooks named after student and lab")
    p.add_argument("--pattern", default=None, help="with --loose: regex with named groups 'student' and 'lab'")
    p.add_argument("--labs", nargs="*", default=None, help="labs to grade (default: every lab found)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per cell or function call (default 60)")
    p.add_argument("--notebook-timeout", type=float, default=600.0,
                   help="seconds for all of one notebook's cells and calls (default 600)")
    p.add_argument("--memory-gb", type=float, default=3.0, help="memory limit per sandbox (default 3)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    submitted, out = args.submitted.resolve(), args.out.resolve()
    if not submitted.is_dir():
        print(f"make grade: SUBMITTED={args.submitted} is not a folder", file=sys.stderr)
        return 2
    if out == submitted or out.is_relative_to(submitted):
        print("make grade: OUT must not be inside SUBMITTED (nothing is ever written there)", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("make grade: --workers must be at least 1", file=sys.stderr)
        return 2
    problem = report.out_problem(out)
    if problem:  # before any grading: a read-only, misplaced or full OUT would lose every result
        print(f"make grade: OUT={args.out} {problem}; nothing was graded", file=sys.stderr)
        return 2
    known = lab_ids()
    labs = args.labs or known
    unknown = [lab for lab in labs if lab not in known]
    if unknown:
        print(f"make grade: unknown lab(s) {unknown}; known: {known}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    found = discover(submitted, labs, loose=args.loose, pattern=args.pattern)
    jobs = [s for s in found if s.path is not None]
    labs_used = sorted({s.lab for s in jobs})
    limits = Limits(memory_bytes=int(args.memory_gb * 2**30), call_seconds=args.timeout,
                    notebook_seconds=args.notebook_timeout)
    isolation = _isolation(submitted, out)
    if isolation is None:
        print("note: this machine does not allow private mount namespaces; sandboxes rely on the audit hook "
              "and resource limits alone", file=sys.stderr)
    kernel_filter = seccomp_available()
    if kernel_filter:
        print(f"note: {kernel_filter}; sandboxes rely on the audit hook for what it would refuse", file=sys.stderr)

    from .nbgrader_bridge import NbgraderCourse, graded_notebook

    course = NbgraderCourse(out, args.db)
    course.prepare(labs_used)
    results: list[dict] = []
    if jobs:
        workers = min(args.workers, len(jobs))
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(labs_used,)) as pool:
            futures = [pool.submit(_grade_one, s.student, s.lab, str(s.path), isolation, limits) for s in jobs]
            for fut in tqdm(as_completed(futures), total=len(futures), desc="grading", unit="notebook"):
                results.append(fut.result())
    graded_seconds = time.perf_counter() - started

    rows, question_rows = [], []
    for s in found:
        if s.path is None:
            rows.append({"student": s.student, "lab": s.lab, "score": 0, "max_score": "", "status": "error",
                         "reason": s.problem})
    by_lab: dict[str, list[dict]] = {}
    for r in results:
        if r.get("status") != "graded":
            rows.append({"student": r["student"], "lab": r["lab"], "score": 0, "max_score": "",
                         "status": "error", "reason": r["reason"]})
        else:
            by_lab.setdefault(r["lab"], []).append(r)
    for lab, lab_results in sorted(by_lab.items()):
        for r in lab_results:
            nb = graded_notebook(lab_notebook(lab), r["solutions"])
            course.add(r["student"], lab, nb, {"verdicts": r["verdicts"], "cell_outputs": r["cell_outputs"]})
        course.autograde(lab)
        recorded = course.scores(lab)
        for r in sorted(lab_results, key=lambda x: x["student"]):
            book = recorded.get(r["student"], {})
            status, reason = "graded", ""
            for v in r["verdicts"]:
                if book.get(v["grade_id"], (None,))[0] != v["points"]:
                    status, reason = "error", f"gradebook disagrees with the grader on {v['grade_id']}"
                question_rows.append({"student": r["student"], "lab": lab, "question": v["grade_id"],
                                      "score": v["points"], "max_score": v["max_points"],
                                      "misconception": v["misconception"] if not v["passed"] else ""})
            rows.append({"student": r["student"], "lab": lab, "score": sum(v["points"] for v in r["verdicts"]),
                         "max_score": sum(v["max_points"] for v in r["verdicts"]), "status": status,
                         "reason": reason})
    rows.sort(key=lambda r: (r["student"], r["lab"]))
    report.write_csvs(out, rows, question_rows)
    summary = report.summarise(rows, question_rows)
    report.write_html(out, rows, summary)
    print(report.terminal(summary))
    total = time.perf_counter() - started
    print(f"\n{len(jobs)} notebook(s) in {total:.1f} s ({graded_seconds:.1f} s in sandboxes, "
          f"{len(jobs) / max(total, 1e-9) * 60:.1f} notebooks/min). Results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
