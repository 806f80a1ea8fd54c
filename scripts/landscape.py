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


def _transposed(arrays, dtype):
    """Each W (n_in, n_out) as W.T (n_out, n_in) and each b (n_out,) as a column (n_out, 1)."""
    return [_t(a, dtype).T.contiguous() if np.ndim(a) == 2 else _t(a, dtype).unsqueeze(-1) for a in arrays]


def loss_grid_batched(weights, direction_x, direction_y, X, y, alphas, betas, skip=False, chunk_size=64,
                      dtype=DT, progress=False) -> np.ndarray:
    """Loss on the plane ``theta + a d_x + b d_y``, evaluated chunk by chunk of stacked models.

    Each chunk of grid points becomes one stacked model (every weight gets a
    leading axis of length ``chunk_size``), so a whole chunk costs a few batched
    matrix products instead of ``chunk_size`` separate forward passes: the
    method of the lab's ``loss_grid`` exercise. Two refinements leave the numbers
    unchanged: the layers run transposed, ``W.T @ h.T`` with activations of
    shape (P, width, N), so that the long sample axis is the contiguous one;
    and the first layer, which is linear in (a, b), combines three products
    computed once instead of multiplying X by every stacked W1.

    Parameters
    ----------
    weights, direction_x, direction_y : list of ndarray, same shapes
    X : ndarray of shape (n_samples, n_in)
    y : int ndarray of shape (n_samples,)
    alphas : ndarray of shape (n_alpha,)
    betas : ndarray of shape (n_beta,)
    skip : bool
    chunk_size : int
        Grid points per stacked model; bounds the memory (activations take
        about chunk_size * n_samples * width numbers).
    dtype : torch.dtype, default float64
    progress : bool
        Show a tqdm bar over the chunks.

    Returns
    -------
    ndarray of shape (n_beta, n_alpha), float64
    """
    A, B = np.meshgrid(np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64))
    a_all, b_all = _t(A.ravel(), dtype), _t(B.ravel(), dtype)
    theta, dx, dy = (_transposed(arrays, dtype) for arrays in (weights, direction_x, direction_y))
    XT, yt = _t(X, dtype).T.contiguous(), _labels(y)
    n_layers = len(theta) // 2
    # Layer 1 is linear in (a, b): X(W + a U + b V) = XW + a XU + b XV, three products computed once.
    first = [torch.matmul(p[0], XT) + p[1] for p in (theta, dx, dy)]       # each (h1, N)
    out = torch.empty(a_all.shape[0], dtype=dtype)
    starts = range(0, a_all.shape[0], chunk_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="loss grid", leave=False)
    with torch.no_grad():
        for s in starts:
            a = a_all[s:s + chunk_size].view(-1, 1, 1)  # one coefficient per stacked model
            b = b_all[s:s + chunk_size].view(-1, 1, 1)
            zT = torch.addcmul(torch.addcmul(first[0], a, first[1]), b, first[2])   # (P, h1, N)
            hT = XT
            for k in range(1, n_layers):
                act = torch.relu_(zT)
                hT = hT + act if (skip and act.shape[-2] == hT.shape[-2]) else act
                W = torch.addcmul(torch.addcmul(theta[2 * k], a, dx[2 * k]), b, dy[2 * k])        # (P, n_out, n_in)
                bias = torch.addcmul(torch.addcmul(theta[2 * k + 1], a, dx[2 * k + 1]), b, dy[2 * k + 1])
                zT = torch.baddbmm(bias, W, hT)                                                   # (P, n_out, N)
            out[s:s + chunk_size] = grid_cross_entropy(zT, yt, class_dim=1)
    return out.double().numpy().reshape(A.shape)


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

