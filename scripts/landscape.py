"""Loss-landscape toolkit for lab 03: the lab's MLPs, their training, and loss grids.

This module is trusted course code (PyTorch, float64 by default). The lab's
notebook reaches it through ``checker.lab03``; the lab 03 checks use it to build
references; ``benchmarks/landscape_grid.py`` times its two grid evaluators.

Conventions
-----------
* A model is a plain list of numpy arrays ``[W1, b1, W2, b2, ..., WL, bL]`` with
  ``Wk`` of shape ``(n_in, n_out)`` and ``bk`` of shape ``(n_out,)``; a layer
  computes ``h @ W + b``, as in lab 01.
* Every layer but the last is followed by ReLU. With ``skip=True`` a hidden
  layer whose input and output widths agree becomes residual:
  ``h <- h + relu(h @ W + b)``. The last layer gives the logits.
* The loss is the mean softmax cross-entropy over the samples.
* A *stacked* model holds P models at once: every array gets a leading axis
  of length P (``W`` of shape ``(P, n_in, n_out)``, ``b`` of shape ``(P, n_out)``).
* A loss grid has shape ``(len(betas), len(alphas))``: row i, column j holds
  ``L(theta + alphas[j] * d_x + betas[i] * d_y)``, the layout
  ``np.meshgrid(alphas, betas)`` and ``plt.contour`` use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from math_utils import flatten_params

DT = torch.float64

__all__ = [
    "init_mlp", "layer_sizes", "mlp_logits", "mlp_loss", "mlp_accuracy", "TrainResult", "train_mlp",
    "random_direction", "grid_cross_entropy", "loss_grid_batched", "loss_grid_loop", "full_hessian",
]


def _t(a, dtype=DT) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def _labels(y) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y), dtype=torch.long)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def _residual_layers(sizes: Sequence[int]) -> list[bool]:
    """Which layers become residual with ``skip=True``: hidden layers with equal input and output width."""
    n_layers = len(sizes) - 1
    return [k < n_layers - 1 and sizes[k] == sizes[k + 1] for k in range(n_layers)]


def init_mlp(sizes: Sequence[int], seed: int, bias_scale: float = 0.1, skip: bool = False) -> list[np.ndarray]:
    """He-normal weights and small random (non-zero) biases for an MLP.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(n_in, h1, ..., n_classes)``.
    seed : int
    bias_scale : float, default 0.1
        Standard deviation of the biases.
    skip : bool, default False
        For a residual network: the residual branches start 1/sqrt(n_residual) smaller.
        Each block adds its branch to the running sum h, so with plain He
        initialisation the variance of h would double per block (a 16-block
        stack starts with logits in the hundreds); scaled branches keep the
        growth over the whole stack near a factor e.

    Returns
    -------
    list of ndarray ``[W1 (sizes[0], sizes[1]), b1 (sizes[1],), ...]``, float64.
    """
    rng = np.random.default_rng(seed)
    residual = _residual_layers(sizes) if skip else [False] * (len(sizes) - 1)
    branch_scale = 1.0 / np.sqrt(max(1, sum(residual)))
    params = []
    for n_in, n_out, is_residual in zip(sizes[:-1], sizes[1:], residual):
        scale = np.sqrt(2.0 / n_in) * (branch_scale if is_residual else 1.0)
        params.append(rng.normal(0.0, scale, size=(n_in, n_out)))
        params.append(rng.normal(0.0, bias_scale, size=n_out))
    return params


def layer_sizes(weights: Sequence[np.ndarray]) -> tuple[int, ...]:
    """The widths ``(n_in, h1, ..., n_classes)`` of a model given as ``[W1, b1, ...]``."""
    return tuple([np.shape(weights[0])[-2]] + [np.shape(w)[-1] for w in weights[0::2]])


def mlp_logits(params: Sequence[torch.Tensor], X: torch.Tensor, skip: bool = False) -> torch.Tensor:
    """Logits of ONE model, in torch (differentiable).

    Parameters
    ----------
    params : list of torch.Tensor ``[W1, b1, ..., WL, bL]``
    X : torch.Tensor of shape (n_samples, n_in)
    skip : bool
        Residual connections around hidden layers of equal input and output width.

    Returns
    -------
    torch.Tensor of shape (n_samples, n_classes)
    """
    h = X
    n_layers = len(params) // 2
    for k in range(n_layers):
        z = h @ params[2 * k] + params[2 * k + 1]
        if k == n_layers - 1:
            return z
        a = torch.relu(z)
        h = h + a if (skip and a.shape[-1] == h.shape[-1]) else a
    raise ValueError("a model needs at least one layer")


def mlp_loss(weights, X, y, skip: bool = False) -> float:
    """Mean cross-entropy of one model on ``(X, y)``.

    Parameters
    ----------
    weights : list of ndarray
    X : ndarray of shape (n_samples, n_in)
    y : int ndarray of shape (n_samples,)
    skip : bool

    Returns
    -------
    float
    """
    with torch.no_grad():
        logits = mlp_logits([_t(w) for w in weights], _t(X), skip)
        return float(F.cross_entropy(logits, _labels(y)))


def mlp_accuracy(weights, X, y, skip: bool = False) -> float:
    """Fraction of samples whose largest logit is the true class."""
    with torch.no_grad():
        logits = mlp_logits([_t(w) for w in weights], _t(X), skip)
        return float((logits.argmax(dim=1) == _labels(y)).double().mean())


@dataclass
class TrainResult:
    """What :func:`train_mlp` returns.

    Attributes
    ----------
    initial, final : list of ndarray
        The weights before the first and after the last step.
    trajectory : ndarray of shape (n_records, n_params)
        Flattened weights every ``record_every`` steps, first row = initial, last row = final.
    losses : ndarray of shape (steps,)
        Training loss (on the batch used) at every step, before the step.
    """

    initial: list
    final: list
    trajectory: np.ndarray
    losses: np.ndarray


def train_mlp(sizes, X, y, *, steps=300, lr=0.01, seed=0, skip=False, optimizer="adam", batch_size=None,
              record_every=1, progress=False) -> TrainResult:
    """Train an MLP with cross-entropy in float64, recording its weight trajectory.

    Parameters
    ----------
    sizes : sequence of int
        ``(n_in, h1, ..., n_classes)``.
    X : ndarray of shape (n_samples, n_in)
    y : int ndarray of shape (n_samples,)
    steps : int
    lr : float
    seed : int
        Seeds the initial weights and the mini-batch order.
    skip : bool
        Residual hidden layers (see the module docstring).
    optimizer : {"adam", "sgd"}
    batch_size : int or None
        Mini-batch size; None trains on the full batch.
    record_every : int
        Store the flattened weights every this many steps.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    TrainResult
    """
    initial = init_mlp(sizes, seed, skip=skip)
    params = [_t(w).clone().requires_grad_(True) for w in initial]  # a copy: the optimiser updates in place
    Xt, yt = _t(X), _labels(y)
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    gen = torch.Generator().manual_seed(seed)
    n = Xt.shape[0]
    records, losses = [flatten_params(initial)], []
    steps_iter = range(steps)
    if progress:
        from tqdm.auto import tqdm
        steps_iter = tqdm(steps_iter, desc=f"training {'-'.join(map(str, sizes))}", leave=False)
    for step in steps_iter:
        idx = torch.randperm(n, generator=gen)[:batch_size] if batch_size else slice(None)
        loss = F.cross_entropy(mlp_logits(params, Xt[idx], skip), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % record_every == 0 or step == steps - 1:
            records.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
    final = [p.detach().numpy().copy() for p in params]
    return TrainResult(initial, final, np.array(records), np.array(losses))


def random_direction(weights, seed: int) -> list[np.ndarray]:
    """A Gaussian random direction shaped like ``weights`` (not yet normalised)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=np.shape(w)) for w in weights]


# ---------------------------------------------------------------------------
# Loss grids: many models at once, or one after another
# ---------------------------------------------------------------------------


def grid_cross_entropy(logits: torch.Tensor, y: torch.Tensor, class_dim: int = -1) -> torch.Tensor:
    """Mean cross-entropy of each of P models.

    Parameters
    ----------
    logits : torch.Tensor of shape (P, N, C), or (P, C, N) with ``class_dim=1``
    y : torch.Tensor of int64, shape (N,)
    class_dim : int
        The axis holding the classes.

    Returns
    -------
    torch.Tensor of shape (P,)
    """
    if class_dim in (-1, 2):
        logits = logits.transpose(1, 2)
    if logits.shape[1] == 2:
        # Two classes: the loss is softplus of the other class's logit minus the true one's, a single
        # elementwise pass instead of a softmax over a length-2 axis. (threshold 40 keeps softplus exact.)
        sign = (1 - 2 * y).to(logits.dtype)   # +1 where y = 0, -1 where y = 1
        return F.softplus((logits[:, 1, :] - logits[:, 0, :]) * sign, threshold=40.0).mean(dim=-1)
    # cross_entropy takes (batch, C, d1) inputs: here batch = models, d1 = samples.
    return F.cross_entropy(logits, y.expand(logits.shape[0], -1), reduction="none").mean(dim=-1)


def _plane_operands(weights, direction_x, direction_y, X, skip, dtype):
    """What :func:`loss_grid_batched` precomputes once for the plane ``theta + a d_x + b d_y``.

    Every operand is built for the three "models" theta, d_x and d_y side by
    side, so that the coefficients ``[1, a, b]`` of a grid point, multiplied
    with it, give that point's array: everything on the plane is linear in the
    weights. Activations carry a constant column of ones, which multiplies the
    bias row of the next layer's augmented matrix ``[W; b]``: the bias costs no
    separate pass.

    * Layer 1 is linear in (a, b) as a whole: ``first[m]`` is
      ``[X @ W1_m + b1_m, e_m]`` of model m, shape (N, h1 + 1). The ones column
      ``e`` is 1 for theta and 0 for the directions (for a residual layer 1 it
      is 0 everywhere: its input ``[X, 1]`` brings the 1).
    * Hidden layer k >= 2 is ``[W_k; b_k]``, shape (n_in + 1, n_out), with one
      more column ``[0, ..., 0, 1]`` for theta (0 for the directions, and 0
      everywhere for a residual layer, where ``h + relu(z)`` keeps the input's
      1) when another hidden layer follows and needs the ones column. They are
      flattened side by side in ``hidden``.
    * The last layer's weights and bias are those of the three models, combined
      per point by the same coefficients (a product of (P, 3) with (3, n_in *
      rows)) and applied as one stacked matrix-vector product. With two classes
      only the difference of the two logits matters (the loss is
      ``softplus(z_other - z_true)``), so it has the single column
      ``W[:, 1] - W[:, 0]`` and bias ``b[1] - b[0]``.

    Returns
    -------
    first : ndarray of shape (3, N, h1 + 1)
    hidden : ndarray of shape (3, n_hidden_numbers)
    hidden_shapes : list of (n_in + 1, n_out or n_out + 1), one per hidden layer after the first
    last, last_bias : ndarrays of shape (3, n_in, rows) and (3, rows), or None for a one-layer model
        ``rows`` is 1 for two classes (the logit difference), else n_classes.
    residual : list of bool, one per layer
    x_aug : ndarray of shape (N, n_in + 1), or None
        ``[X, 1]``, the input a residual first layer adds to its output.
    """
    sizes = layer_sizes(weights)
    n_layers = len(sizes) - 1
    residual = _residual_layers(sizes) if skip else [False] * n_layers
    Xt = _t(X, dtype)
    models = [[_t(p, dtype) for p in m] for m in (weights, direction_x, direction_y)]
    first = torch.zeros(3, Xt.shape[0], sizes[1] + 1, dtype=dtype)
    for m, params in enumerate(models):
        torch.addmm(params[1], Xt, params[0], out=first[m, :, :-1])
    x_aug = torch.cat([Xt, torch.ones(Xt.shape[0], 1, dtype=dtype)], dim=1).numpy() if residual[0] else None
    first[0, :, -1] = 0.0 if residual[0] else 1.0
    hidden, hidden_shapes, last, last_bias = [], [], None, None
    for k in range(1, n_layers):
        n_in, n_out = sizes[k], sizes[k + 1]
        if k == n_layers - 1:
            rows = 1 if n_out == 2 else n_out
            last, last_bias = torch.zeros(3, n_in, rows, dtype=dtype), torch.zeros(3, rows, dtype=dtype)
            for m, params in enumerate(models):
                W, b = params[2 * k], params[2 * k + 1]
                if n_out == 2:
                    last[m, :, 0], last_bias[m, 0] = W[:, 1] - W[:, 0], b[1] - b[0]
                else:
                    last[m], last_bias[m] = W, b
            last, last_bias = last.numpy(), last_bias.numpy()
            break
        cols = n_out + 1 if k < n_layers - 2 else n_out   # the ones column, for the next hidden layer's bias
        mats = torch.zeros(3, n_in + 1, cols, dtype=dtype)
        for m, params in enumerate(models):
            mats[m, :n_in, :n_out], mats[m, n_in, :n_out] = params[2 * k], params[2 * k + 1]
        if cols > n_out:
            mats[0, n_in, n_out] = 0.0 if residual[k] else 1.0
        hidden.append(mats.reshape(3, -1))
        hidden_shapes.append((n_in + 1, cols))
    hidden = torch.cat(hidden, dim=1) if hidden else torch.zeros(3, 0, dtype=dtype)
    return first.numpy(), hidden.numpy(), hidden_shapes, last, last_bias, residual, x_aug


_BLAS_CONTROLLER = None


def _single_threaded_blas():
    """A context in which numpy's BLAS runs on one thread.

    OpenBLAS splits a product over its own threads once it is large enough
    (the layer-1 product of a block of 64 points already is), whatever
    ``torch.set_num_threads`` says; on a machine busy with other work those
    extra threads mostly wait for one another. The per-point matrices are far
    too small for threads to help, so the grid keeps BLAS on one thread.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:    # finding the loaded BLAS libraries takes milliseconds: once per process
        from threadpoolctl import ThreadpoolController
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


# Blocks when the caller does not choose: at most this many grid points, and at most this many
# bytes in a block's buffers. On the lab's 2-16-16-2 model (100 samples) that gives 70 points in
# float64 and 128 in float32, where both ran fastest: smaller blocks pay more Python per point,
# larger ones spill out of the CPU's 1 MiB per-core L2 cache.
_BLOCK_POINTS = 128
_BLOCK_BYTES = 1 << 21


def _mean_softplus(d, scratch, out):
    """``out[p] = mean_n log(1 + exp(d[p, n]))``, destroying d; scratch is like d.

    Computed as ``relu(d) + log1p(exp(-|d|))``, which never overflows, in numpy
    passes over the block (in float64 faster here than torch's softplus).
    """
    np.abs(d, out=scratch)
    np.add(d, scratch, out=d)                    # 2 relu(d), exactly
    np.negative(scratch, out=scratch)
    np.exp(scratch, out=scratch)
    np.log1p(scratch, out=scratch)
    np.multiply(d, 0.5, out=d)
    np.add(scratch, d, out=scratch)
    np.matmul(scratch, np.full(d.shape[1], 1.0 / d.shape[1], dtype=d.dtype), out=out)


def loss_grid_batched(weights, direction_x, direction_y, X, y, alphas, betas, skip=False, chunk_size=None,
                      dtype=DT, progress=False) -> np.ndarray:
    """Loss on the plane ``theta + a d_x + b d_y``, evaluated block by block of stacked models.

    Each block of grid points becomes one stacked model (every weight gets a
    leading axis of length ``chunk_size``), so a whole block costs a few batched
    matrix products instead of ``chunk_size`` separate forward passes: the
    method of the lab's ``loss_grid`` exercise. Refinements that leave the
    numbers unchanged up to rounding remove most of the remaining work (see
    :func:`_plane_operands`):

    * the first layer is linear in (a, b), ``X W1(a, b) = X W1 + a X U1 + b X V1``:
      three products computed once, then one product of the block's (P, 3)
      coefficients ``[1, a, b]`` with them gives the block's pre-activations;
    * one product of the same coefficients with the stacked ``[theta; d_x; d_y]``
      gives the block's perturbed hidden weights (no per-layer arithmetic);
    * activations carry a constant column of ones that folds each hidden bias
      into its matrix product, so a hidden layer is one stacked product
      (numpy's: on the course's CPU it multiplies these small float64 matrices
      about twice as fast as torch's) and one in-place ReLU;
    * the last layer's per-point weights come from one product of the
      coefficients with ``W_L`` of theta, d_x and d_y, and its logits from one
      stacked matrix-vector product; with two classes it computes only the
      logit difference;
    * every block reuses the same preallocated buffers, and numpy's BLAS stays
      on one thread (see :func:`_single_threaded_blas`);
    * with ``torch.get_num_threads()`` = T > 1, T Python threads share the
      blocks, each computing on one thread (torch is set to one thread for the
      duration of the call and restored afterwards).

    Parameters
    ----------
    weights, direction_x, direction_y : list of ndarray, same shapes
    X : ndarray of shape (n_samples, n_in)
    y : int ndarray of shape (n_samples,)
    alphas : ndarray of shape (n_alpha,)
    betas : ndarray of shape (n_beta,)
    skip : bool
    chunk_size : int or None
        Grid points per stacked block; bounds the memory (two buffers of
        ``chunk_size * n_samples * (width + 1)`` numbers and one of
        ``chunk_size * n_samples * rows``, per thread). None: 128
        points, fewer if these buffers would exceed 2 MiB.
    dtype : torch.dtype, default float64
        The precision of the arithmetic.
    progress : bool
        Show a tqdm bar over the blocks.

    Returns
    -------
    ndarray of shape (n_beta, n_alpha), float64
    """
    A, B = np.meshgrid(np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64))
    n_points = A.size
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    coeffs = np.stack([np.ones(n_points), A.ravel(), B.ravel()], axis=1).astype(np_dtype)     # (n_points, 3)
    first, hidden, hidden_shapes, last, last_bias, residual, x_aug = _plane_operands(
        weights, direction_x, direction_y, X, skip, dtype)
    n_samples, n_classes = np.shape(X)[0], layer_sizes(weights)[-1]
    # Two classes: the loss is softplus(sign * (z1 - z0)), sign +1 where y = 0 and -1 where y = 1.
    sign = (1 - 2 * np.asarray(y)).astype(np_dtype)
    cols_max = max([first.shape[2]] + [cols for _, cols in hidden_shapes])
    last_rows = 0 if last is None else last.shape[2]
    point_bytes = (2 * cols_max + last_rows) * n_samples * np_dtype.itemsize
    if chunk_size is None:
        chunk_size = max(1, min(_BLOCK_POINTS, _BLOCK_BYTES // point_bytes))
    block = max(1, min(int(chunk_size), n_points))
    offsets = np.cumsum([0] + [rows * cols for rows, cols in hidden_shapes])
    out = np.empty(n_points, dtype=np_dtype)

    if last is not None:
        point_bias = (coeffs @ last_bias)[:, None, :].copy()        # (n_points, 1, rows): the last layer's
    first_flat, last_flat = first.reshape(3, -1), None if last is None else last.reshape(3, -1)

    def run_blocks(starts, bar=None):
        """Evaluate the blocks beginning at ``starts``, writing their losses into ``out``."""
        # Two activation buffers used in turn (a layer reads one and writes the other), one for the
        # last layer's three products, one for the block's perturbed hidden weights; a ragged last
        # block uses their leading parts. The torch views share the activation buffers' memory: ReLU
        # runs in torch, several times faster at it than np.maximum.
        buffers = [np.empty(block * n_samples * cols_max, dtype=np_dtype) for _ in range(2)]
        buffers_t = [torch.from_numpy(buffer) for buffer in buffers]
        last_buffer = np.empty(last_rows * block * n_samples, dtype=np_dtype)
        last_weights = np.empty((block, 0 if last is None else last_flat.shape[1]), dtype=np_dtype)
        scratch = np.empty(block * n_samples, dtype=np_dtype)
        params = np.empty((block, hidden.shape[1]), dtype=np_dtype)
        views = {}

        def views_for(P):
            """Every view a block of P points uses, made once per block size (Python time adds up)."""
            size = P * first[0].size
            v = {"z1": buffers[0][:size].reshape(P, -1), "h1": buffers[0][:size].reshape(P, n_samples, -1),
                 "relu1": buffers_t[0][:size], "params": params[:P], "layers": []}
            idx = 0
            for k, (rows, cols) in enumerate(hidden_shapes, start=1):
                idx, size = 1 - idx, P * n_samples * cols
                W = params[:P, offsets[k - 1]:offsets[k]].reshape(P, rows, cols)
                z = buffers[idx][:size].reshape(P, n_samples, cols)
                v["layers"].append((W, z, buffers_t[idx][:size], residual[k], cols))
            if last is not None:
                n_in = last.shape[1]
                # The last layer's input: the last hidden activations, or layer 1's without its ones column
                # (a row stride BLAS takes as it is).
                v["h_last"] = v["layers"][-1][1] if hidden_shapes else v["h1"][:, :, :n_in]
                v["weights"] = last_weights[:P]                                   # (P, n_in * rows)
                v["weights_3d"] = v["weights"].reshape(P, n_in, last_rows)
                v["logits"] = last_buffer[:P * n_samples * last_rows].reshape(P, n_samples, last_rows)
                v["scratch"] = scratch[:P * n_samples].reshape(P, n_samples)
            return v

        for s in starts:
            if bar is not None:
                bar.update(1)
            c = coeffs[s:s + block]
            P = c.shape[0]
            v = views.get(P) or views.setdefault(P, views_for(P))
            np.matmul(c, first_flat, out=v["z1"])
            h = v["h1"]                                                        # (P, N, h1 + 1)
            if last is None:                  # a one-layer model: layer 1 gives the logits
                logits = torch.from_numpy(h[:, :, :n_classes])
                out[s:s + P] = grid_cross_entropy(logits, _labels(y)).numpy()
                continue
            v["relu1"].relu_()
            if residual[0]:
                np.add(h, x_aug, out=h)
            if hidden_shapes:
                np.matmul(c, hidden, out=v["params"])
            for W, z, z_t, is_residual, cols in v["layers"]:
                np.matmul(h, W, out=z)
                z_t.relu_()
                if is_residual:
                    np.add(z, h[:, :, :cols], out=z)   # a ones column of z is 0 and h's is 1
                h = z
            # The last layer: each point's weights from [1, a, b], one stacked product, the point's bias.
            np.matmul(c, last_flat, out=v["weights"])
            logits = np.matmul(v["h_last"], v["weights_3d"], out=v["logits"])
            np.add(logits, point_bias[s:s + P], out=logits)                      # (P, N, rows)
            if last_rows == 1:                                         # two classes: the logit difference
                d = logits.reshape(P, n_samples)
                np.multiply(d, sign, out=d)
                _mean_softplus(d, v["scratch"], out[s:s + P])
            else:
                logits_t = torch.from_numpy(logits).permute(0, 2, 1)
                out[s:s + P] = grid_cross_entropy(logits_t, _labels(y), class_dim=1).numpy()

    # Blocks are independent: with several torch threads, as many Python threads take a share of
    # them each (numpy and torch release the GIL while they compute), every one running its
    # products and ReLUs on a single thread.
    starts = list(range(0, n_points, block))
    n_workers = max(1, min(torch.get_num_threads(), len(starts)))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(starts), desc="loss grid", leave=False)
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with _single_threaded_blas():
            if n_workers == 1:
                run_blocks(starts, bar)
            else:
                from concurrent.futures import ThreadPoolExecutor
                with ThreadPoolExecutor(n_workers) as pool:
                    for future in [pool.submit(run_blocks, starts[w::n_workers], bar) for w in range(n_workers)]:
                        future.result()
    finally:
        torch.set_num_threads(threads_before)
        if bar is not None:
            bar.close()
    return out.astype(np.float64).reshape(A.shape)


def loss_grid_loop(weights, direction_x, direction_y, X, y, alphas, betas, skip=False, dtype=DT,
                   progress=False) -> np.ndarray:
    """The same grid as :func:`loss_grid_batched`, one forward pass per point (the slow baseline)."""
    theta = [_t(w, dtype) for w in weights]
    dx = [_t(d, dtype) for d in direction_x]
    dy = [_t(d, dtype) for d in direction_y]
    Xt, yt = _t(X, dtype), _labels(y)
    alphas, betas = np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64)
    grid = np.empty((betas.size, alphas.size))
    rows = range(betas.size)
    if progress:
        from tqdm.auto import tqdm
        rows = tqdm(rows, desc="loss grid (loop)", leave=False)
    with torch.no_grad():
        for i in rows:
            for j in range(alphas.size):
                a, b = float(alphas[j]), float(betas[i])
                point = [w + a * u + b * v for w, u, v in zip(theta, dx, dy)]
                grid[i, j] = F.cross_entropy(mlp_logits(point, Xt, skip), yt).item()
    return grid


# ---------------------------------------------------------------------------
# The full Hessian (small models only)
# ---------------------------------------------------------------------------


def full_hessian(weights, X, y, skip=False) -> np.ndarray:
    """The Hessian of the loss w.r.t. all parameters, flattened in list order.

    Costs n_params backward passes: for models of at most a few hundred parameters.

    Returns
    -------
    ndarray of shape (n_params, n_params), symmetric.
    """
    Xt, yt = _t(X), _labels(y)

    def loss_of(flat):
        params, start = [], 0
        for w in weights:
            size = int(np.size(w))
            params.append(flat[start:start + size].reshape(np.shape(w)))
            start += size
        return F.cross_entropy(mlp_logits(params, Xt, skip), yt)

    H = torch.autograd.functional.hessian(loss_of, _t(flatten_params(weights)))
    H = H.numpy()
    return 0.5 * (H + H.T)  # exact symmetry; autograd's asymmetry is rounding only

