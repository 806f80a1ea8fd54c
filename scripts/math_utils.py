"""Shared math for the Math for Deep Learning labs.

Every lab imports from here (``from math_utils import softmax``); nothing in
this module is graded, it is the trusted toolbox the labs build on. All
functions work on numpy arrays, are vectorised, and stay finite and
warning-free for inputs of magnitude up to at least 1e3.

Conventions
-----------
* A batch is the first axis: ``X`` has shape ``(n_samples, n_features)``.
* A linear layer is ``Y = X @ W + b`` with ``W`` of shape ``(n_in, n_out)``
  and ``b`` of shape ``(n_out,)``.
* Losses use mean reduction, as PyTorch does by default.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import erf

__all__ = [
    "sigmoid", "sigmoid_grad", "tanh", "tanh_grad", "relu", "relu_grad",
    "leaky_relu", "leaky_relu_grad", "gelu", "gelu_grad",
    "log_sum_exp", "softmax", "log_softmax", "one_hot",
    "mse_loss", "mse_loss_grad", "cross_entropy", "cross_entropy_grad",
    "numerical_gradient", "relative_error", "check_gradient",
    "he_init", "xavier_init", "make_rng",
]

# ---------------------------------------------------------------------------
# Activations and their derivatives (derivatives are w.r.t. the *input* z)
# ---------------------------------------------------------------------------


def sigmoid(z):
    """Logistic sigmoid 1 / (1 + exp(-z)), computed without overflow.

    Parameters
    ----------
    z : ndarray of any shape

    Returns
    -------
    ndarray, same shape as ``z``, values in [0, 1].
    """
    z = np.asarray(z, dtype=np.float64)
    # exp(-|z|) is at most 1, so it never overflows; pick the algebraically
    # equal form that uses it on each side of zero.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_grad(z):
    """Derivative of :func:`sigmoid` at ``z``: s(z) * (1 - s(z)). Same shape as ``z``."""
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh(z):
    """Hyperbolic tangent (numpy's is already stable). Same shape as ``z``."""
    return np.tanh(np.asarray(z, dtype=np.float64))


def tanh_grad(z):
    """Derivative of tanh at ``z``: 1 - tanh(z)**2. Same shape as ``z``."""
    t = np.tanh(np.asarray(z, dtype=np.float64))
    return 1.0 - t * t


def relu(z):
    """max(z, 0), elementwise. Same shape as ``z``."""
    z = np.asarray(z, dtype=np.float64)
    return np.maximum(z, 0.0)


def relu_grad(z):
    """Derivative of ReLU at ``z``: 1 where z > 0, else 0.

    At exactly z = 0 the derivative is taken as 0, the convention PyTorch uses.
    """
    z = np.asarray(z, dtype=np.float64)
    return (z > 0).astype(np.float64)


def leaky_relu(z, negative_slope=0.01):
    """z where z > 0, ``negative_slope * z`` elsewhere. Same shape as ``z``."""
    z = np.asarray(z, dtype=np.float64)
    return np.where(z > 0, z, negative_slope * z)


def leaky_relu_grad(z, negative_slope=0.01):
    """Derivative of LeakyReLU at ``z``: 1 where z > 0, ``negative_slope`` elsewhere."""
    z = np.asarray(z, dtype=np.float64)
    return np.where(z > 0, 1.0, negative_slope)


def gelu(z):
    """Exact GELU, z * Phi(z) with Phi the standard normal CDF (PyTorch's default)."""
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))


def gelu_grad(z):
    """Derivative of exact GELU: Phi(z) + z * phi(z). Same shape as ``z``."""
    z = np.asarray(z, dtype=np.float64)
    cdf = 0.5 * (1.0 + erf(z / np.sqrt(2.0)))
    # exp(-z**2 / 2) underflows quietly to 0 for large |z|, which is the limit.
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    return cdf + z * pdf


# ---------------------------------------------------------------------------
# Softmax family
# ---------------------------------------------------------------------------


def log_sum_exp(z, axis=-1, keepdims=False):
    """log(sum(exp(z))) along ``axis``, shifted by the max so it never overflows.

    Parameters
    ----------
    z : ndarray of any shape
    axis : int, default -1
    keepdims : bool, default False

    Returns
    -------
    ndarray, ``z``'s shape with ``axis`` removed (or kept as 1).
    """
    z = np.asarray(z, dtype=np.float64)
    z_max = np.max(z, axis=axis, keepdims=True)
    out = z_max + np.log(np.sum(np.exp(z - z_max), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax(z, axis=-1):
    """Softmax along ``axis``; every slice sums to 1. Same shape as ``z``."""
    z = np.asarray(z, dtype=np.float64)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    exp_z = np.exp(shifted)
    return exp_z / np.sum(exp_z, axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    """log(softmax(z)) without ever taking the log of 0. Same shape as ``z``."""
    z = np.asarray(z, dtype=np.float64)
    # Subtract the max first, then the log-sum: entries near 0 keep their
    # relative precision (as PyTorch computes it).
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def one_hot(labels, n_classes):
    """Integer labels of shape (n,) to a float64 one-hot matrix of shape (n, n_classes)."""
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], n_classes), dtype=np.float64)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


# ---------------------------------------------------------------------------
# Losses (mean reduction) and their gradients
# ---------------------------------------------------------------------------


def mse_loss(y_pred, y_true):
    """Mean squared error over every element, as ``torch.nn.MSELoss()``.

    Parameters
    ----------
    y_pred, y_true : ndarray, same shape

    Returns
    -------
    float
    """
    diff = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.mean(diff * diff))


def mse_loss_grad(y_pred, y_true):
    """Gradient of :func:`mse_loss` w.r.t. ``y_pred``: 2 (y_pred - y_true) / size."""
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return 2.0 * (y_pred - np.asarray(y_true, dtype=np.float64)) / y_pred.size


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy from logits, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
    labels : int ndarray of shape (n_samples,)

    Returns
    -------
    float
    """
    logp = log_softmax(logits, axis=1)
    n = logp.shape[0]
    return float(-np.mean(logp[np.arange(n), np.asarray(labels)]))


def cross_entropy_grad(logits, labels):
    """Gradient of :func:`cross_entropy` w.r.t. the logits: (softmax - one_hot) / n_samples.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
    """
    p = softmax(logits, axis=1)
    return (p - one_hot(labels, p.shape[1])) / p.shape[0]


# ---------------------------------------------------------------------------
# Gradient checking
# ---------------------------------------------------------------------------


def numerical_gradient(f: Callable[[np.ndarray], float], x, eps=1e-6):
    """Central-difference gradient of a scalar function, for any array shape.

    Parameters
    ----------
    f : callable
        Maps an array shaped like ``x`` to a scalar.
    x : ndarray of any shape
        Point at which to differentiate. Not modified.
    eps : float, default 1e-6
        Step; the error of central differences is O(eps**2).

    Returns
    -------
    ndarray of ``x``'s shape, float64.
    """
    x = np.array(x, dtype=np.float64)  # a private copy: the caller's x is untouched
    grad = np.zeros_like(x)
    # Index the array itself: a flat view would silently be a copy for
    # non-C-ordered input (a transpose), and the perturbations would be lost.
    for idx in np.ndindex(x.shape):
        original = x[idx]
        x[idx] = original + eps
        f_plus = float(f(x))
        x[idx] = original - eps
        f_minus = float(f(x))
        x[idx] = original
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(a, b, floor=1e-12):
    """Largest elementwise |a - b| / max(|a| + |b|, floor): 0 means identical.

    Scale-free, so the same threshold works for large and small gradients.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.maximum(np.abs(a) + np.abs(b), floor)
    return float(np.max(np.abs(a - b) / denom)) if a.size else 0.0


def check_gradient(analytic, numeric, tol=1e-6):
    """Compare an analytic gradient with a numerical one.

    Returns
    -------
    (passed, error) : (bool, float)
        ``error`` is :func:`relative_error`; ``passed`` is ``error < tol``
        and the shapes agree.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        return False, float("inf")
    error = relative_error(analytic, numeric)
    return error < tol, error


# ---------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------


def make_rng(seed):
    """A numpy Generator; every random draw in the course goes through one."""
    return np.random.default_rng(seed)


def he_init(n_in, n_out, rng):
    """He (Kaiming) normal initialisation for ReLU layers: N(0, 2 / n_in).

    Returns
    -------
    ndarray of shape (n_in, n_out)
    """
    return rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))


def xavier_init(n_in, n_out, rng, uniform=False):
    """Xavier (Glorot) initialisation for tanh/sigmoid layers: variance 2 / (n_in + n_out).

    Parameters
    ----------
    uniform : bool, default False
        Draw from U(-a, a) with a = sqrt(6 / (n_in + n_out)) instead of a normal.

    Returns
    -------
    ndarray of shape (n_in, n_out)
    """
    if uniform:
        limit = np.sqrt(6.0 / (n_in + n_out))
        return rng.uniform(-limit, limit, size=(n_in, n_out))
    return rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), size=(n_in, n_out))


# ---------------------------------------------------------------------------
# Lab 02 additions (append above the end marker; extend __all__ here too)
# ---------------------------------------------------------------------------

__all__ += ["rosenbrock", "rosenbrock_grad", "quadratic_bowl", "quadratic_bowl_grad"]


def rosenbrock(xy, a=1.0, b=100.0):
    """Rosenbrock's banana function (a - x)**2 + b (y - x**2)**2; minimum 0 at (a, a**2).

    Parameters
    ----------
    xy : ndarray of shape (..., 2)
        Points; the last axis holds (x, y), so a whole grid is evaluated at once.
    a, b : float

    Returns
    -------
    ndarray of shape (...)
    """
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[..., 0], xy[..., 1]
    return (a - x) ** 2 + b * (y - x * x) ** 2


def rosenbrock_grad(xy, a=1.0, b=100.0):
    """Gradient of :func:`rosenbrock`, shape (..., 2) like ``xy``."""
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[..., 0], xy[..., 1]
    valley = y - x * x  # distance from the parabola y = x**2 along y
    return np.stack([-2.0 * (a - x) - 4.0 * b * x * valley, 2.0 * b * valley], axis=-1)


def _bowl_hessian(condition, angle):
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return rotation @ np.diag([1.0, float(condition)]) @ rotation.T


def quadratic_bowl(xy, condition=25.0, angle=0.0):
    """Ill-conditioned quadratic 0.5 * p^T H p with H's eigenvalues 1 and ``condition``.

    Parameters
    ----------
    xy : ndarray of shape (..., 2)
    condition : float
        Ratio of the largest to the smallest curvature (the condition number of H).
    angle : float
        Rotation of the bowl's axes in radians; 0 aligns the steep direction with y.

    Returns
    -------
    ndarray of shape (...); the minimum is 0 at the origin.
    """
    xy = np.asarray(xy, dtype=np.float64)
    return 0.5 * np.einsum("...i,ij,...j->...", xy, _bowl_hessian(condition, angle), xy)


def quadratic_bowl_grad(xy, condition=25.0, angle=0.0):
    """Gradient H p of :func:`quadratic_bowl`, shape (..., 2) like ``xy``."""
    xy = np.asarray(xy, dtype=np.float64)
    return xy @ _bowl_hessian(condition, angle)  # H is symmetric: (H p)^T = p^T H


# -- end of lab 02 additions --

# ---------------------------------------------------------------------------
# Lab 03 additions (append above the end marker; extend __all__ here too)
# ---------------------------------------------------------------------------
__all__ += ["flatten_params", "unflatten_params", "grid_axes"]


def flatten_params(params):
    """Concatenate a list of parameter arrays into one float64 vector.

    Parameters
    ----------
    params : list of ndarray
        Any shapes, e.g. ``[W1 (n_in, h), b1 (h,), W2 (h, n_out), b2 (n_out,)]``.

    Returns
    -------
    ndarray of shape (n_params,), with n_params = sum of the arrays' sizes, in list order.
    """
    if len(params) == 0:
        return np.zeros(0)
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in params])


def unflatten_params(vector, like):
    """Split a flat vector back into arrays shaped like ``like`` (inverse of :func:`flatten_params`).

    Parameters
    ----------
    vector : ndarray of shape (n_params,)
    like : list of ndarray
        Arrays whose shapes (and order) the pieces take.

    Returns
    -------
    list of ndarray, float64 copies, one per entry of ``like``.

    Raises
    ------
    ValueError
        If ``vector`` does not have exactly sum of the sizes of ``like`` entries.
    """
    vector = np.asarray(vector, dtype=np.float64).ravel()
    sizes = [int(np.size(p)) for p in like]
    if vector.size != sum(sizes):
        raise ValueError(f"vector has {vector.size} entries, the shapes need {sum(sizes)}")
    pieces, start = [], 0
    for p, size in zip(like, sizes):
        pieces.append(vector[start:start + size].reshape(np.shape(p)).copy())
        start += size
    return pieces


def grid_axes(resolution, span=1.0):
    """Evenly spaced coordinates for one axis of a loss-landscape grid.

    Parameters
    ----------
    resolution : int
        Number of points (>= 2); an odd number puts a point exactly at 0.
    span : float or (float, float), default 1.0
        The axis covers [-span, span], or [lo, hi] when a pair is given.

    Returns
    -------
    ndarray of shape (resolution,)
    """
    if int(resolution) < 2:
        raise ValueError("resolution must be at least 2")
    lo, hi = (-span, span) if np.ndim(span) == 0 else span
    return np.linspace(float(lo), float(hi), int(resolution))
# -- end of lab 03 additions --

# ---------------------------------------------------------------------------
# Lab 04 additions (append above the end marker; extend __all__ here too)
# ---------------------------------------------------------------------------
# -- end of lab 04 additions --

# ---------------------------------------------------------------------------
# Lab 05 additions (append above the end marker; extend __all__ here too)
# ---------------------------------------------------------------------------
# -- end of lab 05 additions --

# ---------------------------------------------------------------------------
# Lab 06 additions (append above the end marker; extend __all__ here too)
# ---------------------------------------------------------------------------
# -- end of lab 06 additions --
