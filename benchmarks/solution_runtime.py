"""Benchmark: how long each solution notebook takes to run end to end.

    .venv/bin/python benchmarks/solution_runtime.py            # every lab, best of 1
    .venv/bin/python benchmarks/solution_runtime.py 03_loss_landscapes --repeats 3

Each notebook runs in a fresh kernel in its own folder, as a student's would
(``nbclient``, the machinery ``make review`` and nbval use). Two figures per lab:
the kernel's start-up (until it answers) and the cells themselves. The course's
budgets (DESIGN.md): every solution under 30 s on a 2-core CPU, all labs together
under 3 min. Nothing in solutions/ is modified.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from tqdm import tqdm

from coursetools.paths import lab_ids, solution_notebook

LAB_BUDGET_S = 30.0
TOTAL_BUDGET_S = 180.0


def run_once(lab: str, timeout: int = 300) -> tuple[float, float]:
    """Execute ``lab``'s solution once; returns (kernel start-up seconds, cell seconds)."""
    source = solution_notebook(lab)
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        ready = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        done = time.perf_counter()
    return ready - start, done - ready


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", help="lab ids (default: all)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per lab; the best is reported")
    args = parser.parse_args(argv)
    labs = args.labs or lab_ids()

    best: dict[str, tuple[float, float]] = {}
    with tqdm(total=len(labs) * args.repeats, desc="running solutions", unit="run") as bar:
        for lab in labs:
            runs = []
            for _ in range(args.repeats):
                runs.append(run_once(lab))
                bar.update()
            best[lab] = min(runs, key=sum)

    print(f"\n=== solution notebooks end to end ({os.cpu_count()} cores, best of {args.repeats}) ===")
    print(f"{'lab':28s} {'kernel':>8s} {'cells':>8s} {'total':>8s} {'budget':>8s}  ratio")
    for lab, (kernel_s, cells_s) in best.items():
        total = kernel_s + cells_s
        verdict = "ok" if total <= LAB_BUDGET_S else "OVER"
        print(f"{lab:28s} {kernel_s:7.1f}s {cells_s:7.1f}s {total:7.1f}s {LAB_BUDGET_S:7.0f}s  "
              f"{total / LAB_BUDGET_S:.2f} {verdict}")
    all_labs = sum(sum(t) for t in best.values())
    verdict = "ok" if all_labs <= TOTAL_BUDGET_S else "OVER"
    print(f"{'all labs':28s} {'':8s} {'':8s} {all_labs:7.1f}s {TOTAL_BUDGET_S:7.0f}s  "
          f"{all_labs / TOTAL_BUDGET_S:.2f} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
