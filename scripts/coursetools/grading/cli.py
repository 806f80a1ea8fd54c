"""``make grade SUBMITTED=<dir> OUT=<dir>``: grade a whole class.

    python -m coursetools.grading SUBMITTED OUT [--workers N] [--db URL] [--loose [--pattern RE]]
                                  [--export canvas|moodle|csv ...]

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
import contextlib
import functools
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from ..paths import ROOT, lab_ids, lab_notebook
from . import executors, export, report
from .intake import Submission, discover, pattern_problem, read_notebook, student_cells
from .isolation import Isolation, machine_isolation
from .sandbox import Limits, Sandbox, SandboxKilled
from .trusted import TrustedLab
from .zygote import ZygotePool, default_pool

_LABS: dict[str, TrustedLab] = {}
_POOL: ZygotePool | None = None   # this worker's sandbox servers
LAST_RUN: dict = {}               # where the last run's time went (benchmarks/grade_throughput.py prints it)


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the grader that started it dies (no orphaned workers)."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the grader died before the line above: nobody is waiting for us
        os._exit(1)


def _init_worker(labs: list[str], threads: int = 1) -> None:
    global _POOL
    _die_with_parent()
    _limit_threads(threads)
    _POOL = default_pool()
    import atexit

    atexit.register(_leave_without_teardown)  # registered last, so it runs first
    os.environ.setdefault("MPLBACKEND", "Agg")
    for lab in labs:
        _LABS[lab] = TrustedLab.load(lab)
        _LABS[lab].globals()


def _leave_without_teardown() -> None:
    """A worker's last act: close its sandbox servers, flush its output, and exit at once.

    A spawned worker otherwise finalises its interpreter on the way out (torch's and matplotlib's
    modules, their caches): about a second per worker at the very end of every make grade, a
    wait that no other work overlaps. Nothing of a worker's state outlives it: its results have
    been sent, its sandbox servers are closed here, each notebook's folder went with its task.
    """
    if _POOL is not None:
        _POOL.close()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def _limit_threads(threads: int) -> None:
    """Give this worker's numpy and torch ``threads`` threads: the workers already share the cores.

    A check's own numpy and torch work (references, mean-field predictions) ran up to 10x slower
    with every worker's BLAS and OpenMP threads competing for the same cores.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    import torch

    torch.set_num_threads(threads)


def _grade_one(student: str, lab: str, path: str, isolation: Isolation | None, limits: Limits) -> dict:
    """Worker: read, rebuild and grade one submission; never raises."""
    from .verdict import grade_submission

    nb, problem = read_notebook(Path(path))
    if nb is None:
        return {"student": student, "lab": lab, "status": "error", "reason": problem}
    trusted = _LABS[lab]
    try:
        cells, solutions = student_cells(trusted, nb)
        for attempt in (1, 2):
            try:
                with tempfile.TemporaryDirectory(prefix="mdl-sandbox-") as workdir:
                    result = grade_submission(trusted, student, cells, limits, isolation, workdir, _POOL)
                break
            except SandboxKilled as exc:
                # Killed from outside (out-of-memory killer, an operator): grade it again once, then
                # report the machine's fault; never charge it to the student.
                if attempt == 2:
                    return {"student": student, "lab": lab, "status": "error",
                            "reason": f"infrastructure error, not graded (regrade it): {exc}, twice"}
    except Exception as exc:  # the grader's own failure on this file: report it, go on
        return {"student": student, "lab": lab, "status": "error", "reason": f"grader error: {exc}"}
    data = asdict(result)
    data["solutions"] = solutions
    return data


def describe_layers(isolation: Isolation, layers: dict) -> str:
    """One line per isolation layer a sandbox on this machine has (as it reported them before any student code)."""
    def mark(ok):
        return "on " if ok else "OFF"

    ns = [name for name, ok in (("pid", layers.get("pid_namespace")), ("mount", layers.get("mount_namespace")),
                                ("network", layers.get("network") == ["lo"])) if ok]
    lines = [
        f"  {mark(isolation.bwrap and ns)} namespaces (bubblewrap): {', '.join(ns) or 'none'}",
        f"  {mark(layers.get('uid', 0) != 0)} unprivileged user: uid {layers.get('uid')}, capabilities "
        f"{layers.get('CapEff', '?')}",
        f"  {mark(str(layers.get('landlock', '')).startswith('ABI'))} Landlock: {layers.get('landlock')}",
        f"  {mark(layers.get('seccomp') == 'on')} seccomp filter: {layers.get('seccomp')}",
        f"  {mark(layers.get('audit_hook') == 'on')} audit hook",
        f"  {mark(layers.get('threads_limited'))} limits: CPU time, memory {layers.get('RLIMIT_AS', 0) / 2**30:.1f} GB, "
        f"threads {layers.get('RLIMIT_NPROC')}{'' if layers.get('threads_limited') else ' (not enforced for root)'}, "
        f"open files {layers.get('RLIMIT_NOFILE')}",
    ]
    return "\n".join(lines)


def probe_layers(isolation: Isolation, limits: Limits) -> dict:
    """Fork one empty sandbox, as every submission's is forked, and return the layers it reports."""
    servers = ZygotePool(keep=1)
    try:
        with tempfile.TemporaryDirectory(prefix="mdl-probe-") as workdir:
            with Sandbox(numpy_only=True, limits=limits, isolation=isolation, workdir=Path(workdir),
                         zygote=servers.get(True, [], {}, limits, isolation)) as sandbox:
                return dict(sandbox.layers)
    finally:
        servers.close()


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
    p.add_argument("--timeout", type=float, default=60.0,
                   help="CPU seconds per cell or function call (default 60; waiting is cut at 4x that wall time)")
    p.add_argument("--notebook-timeout", type=float, default=600.0,
                   help="CPU seconds for all of one notebook's cells and calls (default 600)")
    p.add_argument("--memory-gb", type=float, default=3.0, help="memory limit per sandbox (default 3)")
    p.add_argument("--export", action="append", choices=export.SYSTEMS, default=[],
                   help="also write a gradebook file and feedback_upload/ for this LMS (repeatable)")
    executors.add_arguments(p)  # --executor local|dask, --scheduler, --slurm, --only-new, --require-isolation
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
    if executors.argument_problem(args):
        print(f"make grade: {executors.argument_problem(args)}", file=sys.stderr)
        return 2
    if args.pattern is not None and pattern_problem(args.pattern):
        print(f"make grade: --pattern {args.pattern!r} {pattern_problem(args.pattern)}", file=sys.stderr)
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
    # By lab: a worker then forks a lab's sandboxes from one server before it needs the next lab's.
    jobs = sorted((s for s in found if s.path is not None), key=lambda s: (s.lab, s.student))
    labs_used = sorted({s.lab for s in jobs})
    limits = Limits(memory_bytes=int(args.memory_gb * 2**30), call_seconds=args.timeout,
                    notebook_seconds=args.notebook_timeout)
    isolation = machine_isolation()
    from .nbgrader_bridge import NbgraderCourse

    course = NbgraderCourse(out, args.db)
    workers = max(1, min(args.workers, len(jobs)))
    with contextlib.ExitStack() as stack:
        # Spawned, not forked: a parent that has imported torch has threads, and a fork of a threaded
        # process can deadlock (a grading run hung with both workers idle).
        pool = None
        make_pool = functools.partial(ProcessPoolExecutor, workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_init_worker,
                                      initargs=(labs_used, max(1, (os.cpu_count() or 1) // workers)))
        if jobs and args.executor == "local":
            pool = make_pool()
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)  # on an error, queued notebooks go
            # Start the workers now: their imports and the lab's setup take seconds, which this process's
            # probe of the sandbox and nbgrader's assignment then no longer wait for.
            for _ in range(workers):
                pool.submit(int)
        try:
            layers = probe_layers(isolation, limits)
        except Exception as exc:
            print(f"make grade: a sandbox cannot start on this machine ({exc}); nothing was graded", file=sys.stderr)
            return 1
        print("isolation of each submission on this machine:\n" + describe_layers(isolation, layers), file=sys.stderr)
        if executors.isolation_problem(args, layers):
            print(f"make grade: {executors.isolation_problem(args, layers)}; nothing was graded", file=sys.stderr)
            return 1
        # The local pool or Dask workers, behind the journal in OUT (executors.py).
        pool = executors.runner(args, out, stack, pool, workers, labs_used, isolation, limits, make_pool)
        return _grade_and_record(args, out, found, jobs, labs, labs_used, limits, isolation, course, pool, workers,
                                 started)


def _grade_and_record(args, out, found, jobs, labs, labs_used, limits, isolation, course, pool, workers,
                      started) -> int:
    from .nbgrader_bridge import graded_notebook, shared_gradebook_engine

    results: list[dict] = []
    threading.Thread(target=report.warm_up, daemon=True).start()
    recording_overlapped = 0.0
    # One SQLAlchemy engine for nbgrader's many Gradebooks on OUT's gradebook while recording.
    with shared_gradebook_engine(course.db_url):
        course.prepare(labs_used)  # nbgrader's assignments, while the workers grade
        for r in tqdm(pool.results(jobs), total=len(jobs), desc="grading", unit="notebook"):
            results.append(r)
            if r.get("status") == "graded":
                # Into nbgrader's gradebook now, while the workers grade the rest, not all at the end.
                recording_started = time.perf_counter()
                course.record(r["student"], r["lab"], graded_notebook(lab_notebook(r["lab"]), r["solutions"]),
                              {"verdicts": r["verdicts"], "cell_outputs": r["cell_outputs"],
                               "displays": r.get("displays", {})})
                recording_overlapped += time.perf_counter() - recording_started
    graded_seconds = time.perf_counter() - started
    recording_started = time.perf_counter()
    # A rerun: what is no longer submitted, or no longer gradable, keeps no old grade or feedback in OUT.
    course.reconcile(labs, {(r["student"], r["lab"]) for r in results if r.get("status") == "graded"})

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
        recorded = course.scores(lab)
        for r in sorted(lab_results, key=lambda x: x["student"]):
            book = recorded.get(r["student"], {})
            status, reason = "graded", ""
            for v in r["verdicts"]:
                if book.get(v["grade_id"], (None,))[0] != v["points"]:
                    status, reason = "error", f"gradebook disagrees with the grader on {v['grade_id']}"
                question_rows.append({"student": r["student"], "lab": lab, "question": v["grade_id"],
                                      "score": v["points"], "max_score": v["max_points"],
                                      "misconception": v["misconception"] if not v["passed"] else "",
                                      "parts": v.get("parts", "")})
            rows.append({"student": r["student"], "lab": lab, "score": sum(v["points"] for v in r["verdicts"]),
                         "max_score": sum(v["max_points"] for v in r["verdicts"]), "status": status,
                         "reason": reason})
    rows.sort(key=lambda r: (r["student"], r["lab"]))
    recorded_tail = time.perf_counter() - recording_started
    recorded_seconds = recording_overlapped + recorded_tail
    # A regrade into an existing OUT: who gained or lost points since the last run (its results.json).
    summary = report.summarise(rows, question_rows, previous=report.read_previous(out))
    print(report.terminal(summary))  # first: if OUT fails now (a full disk), the grades were still shown
    try:
        report.keep_previous(out)  # the last run's files move to OUT/previous/
        report.write_csvs(out, rows, question_rows)
        report.write_results(out, rows, question_rows)
        report.write_html(out, rows, summary, question_rows)
        pool.finish(out, results)  # the journal's run is complete; report.html shows the workers' isolation
        if args.export:  # after grades.csv: the exports hold the same rows, in an LMS's layout
            ids = export.identities(args.submitted.resolve(), found)
            points = {lab: export.lab_points(lab_notebook(lab)) for lab in labs}
            print("\n".join(export.write_exports(out, rows, args.export, ids, points)))
    except OSError as exc:
        print(f"make grade: writing the results into OUT={args.out} failed ({exc.strerror or exc}); "
              f"the summary above is what was graded", file=sys.stderr)
        return 2
    total = time.perf_counter() - started
    LAST_RUN.clear()
    LAST_RUN.update(phase_seconds(results), notebooks=len(jobs), total=total, grading=graded_seconds,
                    recording=recorded_seconds, recording_after=recorded_tail)
    print(f"\n{len(jobs)} notebook(s) in {total:.1f} s ({graded_seconds:.1f} s grading in sandboxes, "
          f"{recorded_seconds:.1f} s recording in nbgrader's gradebook, {recording_overlapped:.1f} s of it while "
          f"grading; {len(jobs) / max(total, 1e-9) * 60:.1f} notebooks/min). Results in {out}")
    return 0


def phase_seconds(results: list[dict]) -> dict:
    """Wall seconds the workers spent, summed over notebooks: starting sandboxes, running cells, checks."""
    totals = {"start": 0.0, "cells": 0.0, "checks": 0.0}
    for r in results:
        for phase, seconds in (r.get("timings") or {}).items():
            totals[phase] = totals.get(phase, 0.0) + float(seconds)
    return totals


if __name__ == "__main__":
    sys.exit(main())
