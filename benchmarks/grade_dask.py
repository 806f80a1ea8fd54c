"""make grade on Dask: the same class graded by the local pool and by 1 and 2 Dask workers.

    .venv/bin/python benchmarks/grade_dask.py [--students 12] [--workers 2]

Needs the ``[cluster]`` extra. Generates a class of lab 01 (as benchmarks/grade_throughput.py does),
grades it with ``--executor local --workers W`` and on a ``LocalCluster`` of 1 and of W single-threaded
worker processes (``--executor dask --scheduler``), checks that all runs wrote the same grades.csv and
grades_by_question.csv, and prints for each: notebooks/min over the whole command and over the grading
phase alone. It also prints Dask's scheduling overhead per notebook (a no-op task carrying a
notebook's bytes, submitted and gathered the way make grade does) and, from the measured cost of one
notebook on one core, the wall time of 12,000 notebooks (2,000 students, six labs) on N cores.
Run it on a quiet machine: every figure is wall-clock time.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from coursetools.grading import cli  # noqa: E402
from grade_throughput import LAB, make_class  # noqa: E402


def _grade(submitted: Path, out: Path, *extra: str) -> dict:
    started = time.perf_counter()
    code = cli.main([str(submitted), str(out), "--labs", LAB, *extra])
    if code != 0:
        raise SystemExit(f"make grade exited {code} ({' '.join(extra)})")
    return dict(cli.LAST_RUN, wall=time.perf_counter() - started)


def _digest(data: bytes) -> str:
    """The no-op task: what a worker does with a notebook's bytes before it grades them."""
    return hashlib.sha256(data).hexdigest()


def scheduling_overhead(client, submitted: Path, rounds: int = 3) -> float:
    """Seconds per notebook that Dask adds: a no-op task with the notebook's bytes, submitted and gathered."""
    payloads = [p.read_bytes() for p in sorted(submitted.rglob("*.ipynb"))]
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        futures = [client.submit(_digest, data, pure=False) for data in payloads]
        client.gather(futures)
        best = min(best, (time.perf_counter() - started) / len(payloads))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    work = Path(tempfile.mkdtemp(prefix="mdl-grade-dask-"))
    try:
        submitted = work / "submitted"
        make_class(submitted, args.students)
        runs = {f"local pool, {args.workers} processes": _grade(submitted, work / "local", "--workers",
                                                                str(args.workers))}
        overhead = None
        cluster_start = {}
        for n in sorted({1, args.workers}):
            started = time.perf_counter()
            with LocalCluster(n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
                with Client(cluster) as client:
                    client.wait_for_workers(n)
                    cluster_start[n] = time.perf_counter() - started  # the local pool's wall includes its start
                    if overhead is None:
                        overhead = scheduling_overhead(client, submitted)
                runs[f"Dask, {n} worker(s)"] = _grade(submitted, work / f"dask{n}", "--executor", "dask",
                                                      "--scheduler", cluster.scheduler_address)
        reference = {name: (work / "local" / name).read_bytes() for name in ("grades.csv", "grades_by_question.csv")}
        for folder in (f"dask{n}" for n in sorted({1, args.workers})):
            for name, data in reference.items():
                if (work / folder / name).read_bytes() != data:
                    raise SystemExit(f"{folder}/{name} differs from the local pool's")
        print(f"\n{args.students} notebooks of {LAB}; identical grades.csv and grades_by_question.csv in every run\n")
        print(f"{'executor':28s} {'wall s':>8s} {'nb/min':>8s} {'grading s':>10s} {'nb/min (grading)':>17s}")
        for name, run in runs.items():
            print(f"{name:28s} {run['wall']:8.1f} {args.students / run['wall'] * 60:8.1f} {run['grading']:10.1f} "
                  f"{args.students / run['grading'] * 60:17.1f}")
        print("(Dask's wall leaves out starting the cluster: " +
              ", ".join(f"{s:.1f} s for {n} worker(s)" for n, s in cluster_start.items()) +
              "; the local pool's includes starting its processes)")
        print(f"\nDask scheduling overhead: {overhead * 1000:.1f} ms per notebook "
              f"(a no-op task with the notebook's bytes)")
        one = runs["Dask, 1 worker(s)"]
        n = args.students
        # Steady state, per notebook: a worker core's seconds (forking its sandbox, the student's cells,
        # the checks; the worker's one-off start-up left out) and the grader's own seconds recording it
        # in nbgrader's gradebook and writing its feedback page (one process, overlapping the grading).
        per_core = (one.get("start", 0) + one.get("cells", 0) + one.get("checks", 0)) / n
        per_record = one.get("recording", 0) / n
        print(f"one notebook: {per_core:.2f} s of a worker core (sandbox {one.get('start', 0) / n:.2f} s, "
              f"cells {one.get('cells', 0) / n:.2f} s, checks {one.get('checks', 0) / n:.2f} s) and "
              f"{per_record:.2f} s of the grader recording it")
        for cores in (2, 16, 64, 256):
            grading, recording = 12_000 * per_core / cores / 3600, 12_000 * per_record / 3600
            print(f"  12,000 notebooks on {cores:3d} worker cores: {max(grading, recording):5.2f} h "
                  f"(grading {grading:.2f} h, recording {recording:.2f} h, which overlap)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
