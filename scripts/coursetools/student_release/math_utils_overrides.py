"""Student-release bodies for the math_utils functions that a lab hands out but an exercise asks for.

The release tool puts these in place of the instructor's numpy bodies (same
names, signatures and docstrings' first lines): each delegates to PyTorch in
float64, so it computes the same numbers without showing the formula that an
exercise asks students to derive (cross-entropy and its gradient and the MSE in
lab 01, a stable sigmoid in lab 01, softmax, log-softmax and log-sum-exp in lab 05).
Every function defined here replaces the instructor's body of the same name.
"""

import numpy as np
import torch
import torch.nn.functional as F


def _tensor(a, requires_grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


def sigmoid(z):
    """The logistic sigmoid, elementwise (computed by PyTorch in float64)."""
    return torch.sigmoid(_tensor(z)).numpy()


def log_sum_exp(z, axis=-1, keepdims=False):
    """log(sum(exp(z))) along ``axis`` without overflow (computed by PyTorch in float64).

    Returns ``z``'s shape with ``axis`` removed (or kept as 1 with ``keepdims``).
    """
    return torch.logsumexp(_tensor(z), dim=axis, keepdim=keepdims).numpy()


def mse_loss(y_pred, y_true):
    """Mean squared error over every element, as ``torch.nn.MSELoss()`` (a float)."""
    return float(F.mse_loss(_tensor(y_pred), _tensor(y_true)))


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of logits (n_samples, n_classes) against integer labels (a float)."""
    return float(F.cross_entropy(_tensor(logits), torch.as_tensor(np.asarray(labels), dtype=torch.long)))


def cross_entropy_grad(logits, labels):
    """Gradient of :func:`cross_entropy` w.r.t. the logits, by PyTorch autograd; shape of ``logits``."""
    leaf = _tensor(logits, requires_grad=True)
    F.cross_entropy(leaf, torch.as_tensor(np.asarray(labels), dtype=torch.long)).backward()
    return leaf.grad.numpy()


def softmax(z, axis=-1):
    """Softmax along ``axis``; every slice sums to 1 (computed by PyTorch in float64)."""
    return torch.softmax(_tensor(z), dim=axis).numpy()


def log_softmax(z, axis=-1):
    """log(softmax(z)) along ``axis`` without taking the log of 0 (computed by PyTorch in float64)."""
    return torch.log_softmax(_tensor(z), dim=axis).numpy()
