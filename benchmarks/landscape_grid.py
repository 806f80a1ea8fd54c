"""Benchmark: a loss-landscape grid of lab 03's model, one forward pass per point vs batched.

    .venv/bin/python benchmarks/landscape_grid.py                 # 51 x 51, float32 and float64, 1 and 2 threads
    .venv/bin/python benchmarks/landscape_grid.py --dtypes float32 --threads 2 --repeats 5

The model is the one lab 03 slices first: a 2-16-16-2 ReLU MLP trained on 100
``make_moons`` points (``train_mlp(..., steps=300, lr=0.01, seed=0)``), cut along
two filter-normalised random directions. Two evaluators compute the same grid:

* ``loss_grid_loop``: one forward pass per grid point in a Python loop;
* ``loss_grid_batched``: the lab's method, blocks of stacked perturbed weights
  evaluated with batched matrix products, plus the refinements its docstring
  lists (layer 1 combined from three products, the last layer's weights
  combined per point, biases folded into the products, preallocated buffers).

For every dtype and thread count it prints both times (best of ``--repeats``),
the speed-up, the median of the per-repeat ratios and the largest difference
between the two grids (they must agree to 1e-4 in float32 and 1e-10 in float64,
or the benchmark stops). It then runs the batched path alone at resolution 101
in a fresh process and prints that process's peak resident memory
(``resource.getrusage``; PyTorch's allocations are invisible to ``tracemalloc``).
The course's targets: batched at least 20x faster than the loop at 51 x 51 on
2 CPU cores, in float32 and in float64, with 1 and with 2 PyTorch threads; and
under 2 GB of memory at 101 x 101.

It then says where the batched time goes with one thread: the hidden layers'
stacked products (one per block and hidden layer, every point with its own
weights) timed alone give a floor no per-point-weights evaluator can beat, with
their GFLOP/s beside those of one large matrix product on the same core. Where
that floor is close to the batched time, the speed-up is bound by the core's
arithmetic, not by Python.

One headline per precision says whether every thread count met the 20x target,
judged by the paired ratio: the two evaluators run in alternation, so a burst
of load from other work on the machine slows both and largely cancels in each
pair's ratio, while the best-of times can come from different moments. On a
machine shared with other work, run with ``--repeats 7`` or more. float32 is
plenty for a contour plot (CPUs multiply float32 matrices about twice as fast
as float64); the float64 rows are what the notebook's own float64
``loss_grid`` can expect. The lab's notebook runs with one PyTorch thread
(``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.datasets import make_moons

from checker.lab03 import reference_filter_normalize
from landscape import layer_sizes, loss_grid_batched, loss_grid_loop, random_direction, train_mlp
from math_utils import grid_axes

SIZES = (2, 16, 16, 2)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
TARGET_RATIO = 20.0
TARGET_MEMORY_MB = 2048.0


def lab_model():
    """The lab's data, trained model and filter-normalised plane (as in the notebook's section 4)."""
    X, y = make_moons(n_samples=100, noise=0.3, random_state=0)
    weights = train_mlp(SIZES, X, y, steps=300, lr=0.01, seed=0).final
    d_x = reference_filter_normalize(random_direction(weights, seed=1), weights)
    d_y = reference_filter_normalize(random_direction(weights, seed=2), weights)
    return X, y, weights, d_x, d_y


def timed(fn):
    """(wall time in seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def race(loop, batched, repeats, batched_runs=3):
    """Time the two evaluators in alternation, so that both meet the same machine load.

    Returns the best loop time, the best batched time (each repeat runs the
    fast batched path ``batched_runs`` times), the median of the per-repeat
    ratios, and the two grids of the last repeat.
    """
    loop_times, batched_times, ratios = [], [], []
    for _ in range(repeats):
        runs = [timed(batched) for _ in range(batched_runs)]
        t_batched, grid_b = min(runs, key=lambda r: r[0])
        t_loop, grid_l = timed(loop)
        loop_times.append(t_loop)
        batched_times.append(t_batched)
        ratios.append(t_loop / t_batched)
    return min(loop_times), min(batched_times), float(np.median(ratios)), grid_l, grid_b


def hidden_product_floor(weights, n_samples: int, n_points: int, dtype_name: str, block: int = 64,
                         repeats: int = 20) -> tuple[float, float, float]:
    """What the hidden layers' stacked products alone cost for a whole grid, on one BLAS thread.

    Every hidden layer after the first is, per block of ``block`` points, one
    stacked product ``(block, N, n_in + 1) @ (block, n_in + 1, n_out)`` (the +1
    is the bias row). No evaluator that multiplies each point's own weights can
    do less arithmetic, so this time is a floor under the batched path.

    Returns
    -------
    seconds : float
        The products for ``n_points`` points (best of ``repeats``, scaled from one block).
    stacked_gflops, dense_gflops : float
        The rate of those products, and of one large matrix product in the same
        precision on the same core, in GFLOP/s.
    """
    from threadpoolctl import threadpool_limits

    np_dtype = np.dtype(dtype_name)
    rng = np.random.default_rng(0)
    sizes = layer_sizes(weights)
    shapes = [(sizes[k] + 1, sizes[k + 1]) for k in range(1, len(sizes) - 2)]
    if not shapes:
        return 0.0, float("nan"), float("nan")
    operands = [(rng.normal(size=(block, n_samples, rows)).astype(np_dtype),
                 rng.normal(size=(block, rows, cols)).astype(np_dtype),
                 np.empty((block, n_samples, cols), dtype=np_dtype)) for rows, cols in shapes]
    flops = sum(2 * block * n_samples * rows * cols for rows, cols in shapes)
    big_a = rng.normal(size=(2048, 256)).astype(np_dtype)
    big_b = rng.normal(size=(256, 256)).astype(np_dtype)

    def best(fn):
        fn()
        return min(timed(fn)[0] for _ in range(repeats))

    with threadpool_limits(limits=1, user_api="blas"):
        t_block = best(lambda: [np.matmul(a, b, out=o) for a, b, o in operands])
        t_dense = best(lambda: big_a @ big_b)
    return t_block * n_points / block, flops / t_block / 1e9, 2 * 2048 * 256 * 256 / t_dense / 1e9


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def memory_probe(resolution: int, dtype_name: str, chunk_size: int | None) -> dict:
    """Run only the batched grid at ``resolution`` and report this process's peak memory."""
    torch.set_num_threads(1)
    X, y, weights, d_x, d_y = lab_model()
    axis = grid_axes(resolution, 1.0)
    before = peak_rss_mb()
    start = time.perf_counter()
    grid = loss_grid_batched(weights, d_x, d_y, X, y, axis, axis, chunk_size=chunk_size, dtype=DTYPES[dtype_name])
    seconds = time.perf_counter() - start
    return {"resolution": resolution, "dtype": dtype_name, "seconds": seconds, "peak_mb": peak_rss_mb(),
            "before_mb": before, "finite": bool(np.all(np.isfinite(grid)))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=51, help="grid points per axis (default 51)")
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated: float32, float64")
    parser.add_argument("--threads", default=None,
                        help="comma-separated torch thread counts (default: 1 and the number of cores)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed runs per evaluator; the best counts")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="grid points per stacked block (default: loss_grid_batched's own choice)")
    parser.add_argument("--memory-resolution", type=int, default=101, help="resolution of the memory probe")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_resolution, args.dtypes.split(",")[0], args.chunk_size)))
        return 0

    cores = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    torch.set_num_threads(1)
    X, y, weights, d_x, d_y = lab_model()
    axis = grid_axes(args.resolution, 1.0)
    n_points = axis.size ** 2
    n_params = sum(w.size for w in weights)

    print(f"Loss-grid benchmark: lab 03 model {'-'.join(map(str, layer_sizes(weights)))} ({n_params} parameters), "
          f"{X.shape[0]} make_moons points")
    chunk = "loss_grid_batched's default" if args.chunk_size is None else str(args.chunk_size)
    print(f"machine: {cores} CPU cores, torch {torch.__version__}, numpy {np.__version__}, chunk_size {chunk}, "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"grid: {args.resolution} x {args.resolution} = {n_points} points; times are the best of {args.repeats} "
          f"alternating runs, speed-up = best loop / best batched, (paired) = median of the per-run ratios, "
          f"max |diff| = largest difference between the two grids\n")
    header = (f"{'dtype':8s} {'threads':>7s} {'loop, one forward per point':>30s} {'batched':>20s} {'speed-up':>9s} "
              f"{'(paired)':>9s} {'max |diff|':>11s}")
    print(header)
    print("-" * len(header))
    rows, one_thread = {}, {}
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            loss_grid_batched(weights, d_x, d_y, X, y, axis[:3], axis[:3], dtype=dtype)  # warm-up
            t_loop, t_batched, paired, grid_l, grid_b = race(
                lambda: loss_grid_loop(weights, d_x, d_y, X, y, axis, axis, dtype=dtype),
                lambda: loss_grid_batched(weights, d_x, d_y, X, y, axis, axis, chunk_size=args.chunk_size,
                                          dtype=dtype),
                args.repeats)
            max_diff = float(np.max(np.abs(grid_b - grid_l)))
            ratio = t_loop / t_batched
            rows[(dtype_name, n_threads)] = paired
            if n_threads == 1:
                one_thread[dtype_name] = (t_loop, t_batched)
            print(f"{dtype_name:8s} {n_threads:7d} {1e3 * t_loop:10.1f} ms ({1e6 * t_loop / n_points:5.1f} us/point) "
                  f"{1e3 * t_batched:8.1f} ms ({1e6 * t_batched / n_points:4.1f} us/pt) {ratio:8.1f}x "
                  f"{paired:8.1f}x {max_diff:11.1e}", flush=True)
            # Both must compute the same grid, to the precision of the dtype.
            tol = 1e-4 if dtype == torch.float32 else 1e-10
            assert np.allclose(grid_b, grid_l, rtol=tol, atol=tol), \
                f"the two evaluators disagree ({dtype_name}): max |diff| {max_diff:.1e}, tolerance {tol:.0e}"
    torch.set_num_threads(1)

    probe_dtype = "float64" if "float64" in dtypes else dtypes[0]
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", "--dtypes", probe_dtype,
           "--memory-resolution", str(args.memory_resolution)]
    if args.chunk_size is not None:
        cmd += ["--chunk-size", str(args.chunk_size)]
    probe = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    memory_met = probe["peak_mb"] < TARGET_MEMORY_MB
    print(f"\nmemory: batched path at {probe['resolution']} x {probe['resolution']} ({probe_dtype}, "
          f"{probe['seconds']:.2f} s) in a fresh process: peak resident {probe['peak_mb']:.0f} MB for the whole "
          f"process; evaluating the grid raised the peak by {probe['peak_mb'] - probe['before_mb']:.0f} MB over "
          f"what imports, data and training had reached (target < {TARGET_MEMORY_MB:.0f} MB: "
          f"{'met' if memory_met else 'NOT met'})")

    print("\nwhere the batched time goes, 1 thread (the hidden layers' stacked products timed alone, "
          "blocks of 64 points):")
    for dtype_name, (t_loop, t_batched) in one_thread.items():
        t_floor, stacked, dense = hidden_product_floor(weights, X.shape[0], n_points, dtype_name)
        if t_floor == 0.0:
            continue
        print(f"  {dtype_name}: the products take {1e3 * t_floor:.1f} of the batched {1e3 * t_batched:.1f} ms, at "
              f"{stacked:.0f} GFLOP/s (one large matrix product on this core: {dense:.0f} GFLOP/s); the other "
              f"{1e3 * max(0.0, t_batched - t_floor):.1f} ms are layer 1, the ReLUs, the last layer, the loss and "
              f"Python. With nothing but the products the speed-up would be {t_loop / t_floor:.0f}x; "
              f"{TARGET_RATIO:.0f}x leaves them {1e3 * max(0.0, t_loop / TARGET_RATIO - t_floor):.1f} ms")

    print()
    for dtype_name in dtypes:
        paired = {n: rows[(dtype_name, n)] for n in threads}
        met = all(r >= TARGET_RATIO for r in paired.values())
        cells = ", ".join(f"{r:.1f}x with {n} thread{'s' if n != 1 else ''}" for n, r in paired.items())
        print(f"headline {dtype_name}: batched vs loop (paired) {cells} "
              f"(target >= {TARGET_RATIO:.0f}x with every thread count: {'met' if met else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
