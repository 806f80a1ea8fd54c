"""Checks for lab 03 (loss landscapes).

Each ``check_*`` function builds its inputs from a seed (small MLPs, random
data, known or random directions), calls the student's function only through
:func:`call_student` with plain data (lists of numpy arrays, floats, ints,
bools), computes the reference with PyTorch in float64 (``landscape``'s
functional MLP, ``torch.nn.functional.cross_entropy``, autograd's full Hessian)
and compares every returned array. Alongside the reference it computes, with
trusted numpy code, what the catalogued mistakes produce on the same inputs
(the *variants*), so a failure names the misconception.

Students may use PyTorch inside their functions here, but must return numpy
arrays (``NUMPY_ONLY = False``).

Visible checks use the default seed; the hidden checks in the grade cells pass
other seeds, sizes and options (``skip=True``, ragged chunks...).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from landscape import (
    full_hessian, init_mlp, layer_sizes, loss_grid_batched, loss_grid_loop, mlp_accuracy,
    mlp_logits, mlp_loss, random_direction, train_mlp,
)
from math_utils import flatten_params, unflatten_params

from .compare import CheckFailure, Tolerance, describe_type
from .exercise import ExerciseCheck, charges_once
from .student import refuse_tensor, call_student, unpack
from .variants import exclusive

#: Students may use PyTorch inside the exercises of this lab (they still return numpy arrays).
NUMPY_ONLY = False

DT = torch.float64

#: Power iteration converges only as fast as the eigen-gap allows: a looser tolerance than autograd's.
EIGEN_TOL = Tolerance(atol=1e-8, rtol=1e-6)
#: PCA by SVD, by eigendecomposition or by scikit-learn agree to rounding amplified by the spectrum.
PCA_TOL = Tolerance(atol=1e-8, rtol=1e-6)

# Re-exported for the notebook (the lab imports its helpers from here, as lab 01 does).
__all__ = [
    "NUMPY_ONLY", "check_interpolation_losses", "check_filter_normalize", "check_batched_logits",
    "check_loss_grid", "check_hessian_vector_product", "check_top_hessian_eigenvalue", "check_pca_path",
    "reference_filter_normalize", "full_hessian", "init_mlp", "layer_sizes",
    "loss_grid_batched", "loss_grid_loop", "mlp_accuracy", "mlp_logits", "mlp_loss", "random_direction",
    "train_mlp",
]


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=DT)


def _torch_loss(weights, X, y, skip) -> float:
    """Reference loss: the functional MLP and torch's cross_entropy, float64."""
    with torch.no_grad():
        logits = mlp_logits([_tensor(w) for w in weights], _tensor(X), skip)
        return float(F.cross_entropy(logits, torch.as_tensor(y, dtype=torch.long)))


def _data(seed: int, n_samples: int, n_in: int, n_classes: int):
    """Random inputs and labels (every class present when n_samples allows)."""
    rng = np.random.default_rng(seed + 5000)
    X = rng.normal(size=(n_samples, n_in))
    y = rng.permutation(np.arange(n_samples) % n_classes)
    return X, y




def _array_list(result, name: str, like, what: str = "a list of arrays") -> list:
    """Check that ``result`` is a list/tuple with one entry per array of ``like``."""
    if not isinstance(result, (list, tuple)) or len(result) != len(like):
        got = f"a {describe_type(result)}" + (f" of length {len(result)}" if isinstance(result, (list, tuple)) else "")
        raise CheckFailure(f"{name} must return {what} with one entry per parameter array "
                           f"({len(like)} here); it returned {got}.", "wrong-return-type")
    for item in result:
        refuse_tensor(item, name)
    return list(result)


def _plain(value) -> bool:
    """A plain numeric numpy array (no subclass, no object dtype that could run student code)."""
    return type(value) is np.ndarray and value.dtype.kind in "fiu"


def _plain_arrays(items, name: str, like) -> list:
    """Arrays the check computes with (not only compares): plain numeric ndarrays shaped like ``like``."""
    for k, (item, ref) in enumerate(zip(items, like)):
        if not _plain(item):
            raise CheckFailure(f"{name}[{k}] is a {describe_type(item)}; return numpy float arrays.",
                               "wrong-return-type")
        if item.shape != np.shape(ref):
            raise CheckFailure(f"{name}[{k}] has shape {item.shape}; it must have the shape of "
                               f"weights[{k}], {np.shape(ref)}.", "wrong-return-type")
    return items


def _param_label(k: int, like) -> str:
    kind = "W" if np.ndim(like[k]) >= 2 else "b"
    return f"[{k}] ({kind}{k // 2 + 1}, shape {np.shape(like[k])})"


def _model_case(sizes, skip) -> str:
    return f"sizes {'-'.join(map(str, sizes))}" + (", skip=True" if skip else "")


# ---------------------------------------------------------------------------
# Exercise 1: the loss along a straight line between two weight vectors
# ---------------------------------------------------------------------------


def check_interpolation_losses(interpolation_losses, seed=0, sizes=(2, 4, 2), n_samples=12, skip=False):
    """Check ``interpolation_losses(weights_start, weights_end, X, y, alphas, skip) -> (n_alphas,)``.

    The two end points are independent random networks; ``alphas`` runs from
    -0.5 to 1.5, so the line is extrapolated on both sides.
    """
    check = ExerciseCheck("interpolation_losses", reference="torch cross_entropy")
    start, end = init_mlp(sizes, seed), init_mlp(sizes, seed + 1)
    X, y = _data(seed, n_samples, sizes[0], sizes[-1])
    alphas = np.linspace(-0.5, 1.5, 9)

    def line(a, sign=1.0):
        return [w0 + sign * a * (w1 - w0) for w0, w1 in zip(start, end)]

    expected = np.array([_torch_loss(line(a), X, y, skip) for a in alphas])
    flipped = np.array([_torch_loss(line(a, -1.0), X, y, skip) for a in alphas])
    call = call_student(interpolation_losses, "interpolation_losses", weights_start=start, weights_end=end,
                        X=X, y=y, alphas=alphas, skip=skip)
    refuse_tensor(call.result, "interpolation_losses")
    check.compare("losses", call.result, expected, call, case=_model_case(sizes, skip),
                  variants={"sign-flipped": flipped})
    check.cases = 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 2: filter normalisation
# ---------------------------------------------------------------------------


def reference_filter_normalize(direction, weights):
    """Filter-normalised direction (Li et al. 2018) with this lab's convention.

    Every column j of a weight matrix (the incoming weights of output unit j,
    a *filter*) is rescaled to the norm of the same column of the weights;
    every 1-D parameter (bias, normalisation gain or shift) gets 0.
    """
    out = []
    for d, w in zip(direction, weights):
        d, w = np.asarray(d, dtype=np.float64), np.asarray(w, dtype=np.float64)
        if w.ndim <= 1:
            out.append(np.zeros_like(w))
        else:
            out.append(d * (np.linalg.norm(w, axis=0) / np.linalg.norm(d, axis=0)))
    return out


def _filter_variants(direction, weights) -> dict:
    """What each catalogued normalisation mistake produces, as lists of arrays."""
    d = [np.asarray(a, dtype=np.float64) for a in direction]
    w = [np.asarray(a, dtype=np.float64) for a in weights]
    is_matrix = [a.ndim >= 2 for a in w]
    right = reference_filter_normalize(d, w)

    def norm(arrays):
        return np.sqrt(sum(float(np.sum(a * a)) for a in arrays))

    def with_biases(mats, biases_from):
        return [m if mat else b for m, b, mat in zip(mats, biases_from, is_matrix)]

    zeros = [np.zeros_like(a) for a in w]
    # Normalised globally: one factor for the whole direction, over all parameters or over the matrices only.
    glob = []
    for d_norm, w_norm in [(norm(d), norm(w)),
                           (norm([a for a, m in zip(d, is_matrix) if m]), norm([a for a, m in zip(w, is_matrix) if m]))]:
        scaled = [a * (w_norm / d_norm) for a in d]
        glob += [with_biases(scaled, zeros), scaled]
    # Normalised per layer (one factor per array, the Frobenius norm): still not per filter.
    per_array = [a * (np.linalg.norm(b) / np.linalg.norm(a)) for a, b in zip(d, w)]
    glob += [with_biases(per_array, zeros), per_array]
    # Filters taken as rows (axis=1) instead of columns.
    rows = [a * (np.linalg.norm(b, axis=1, keepdims=True) / np.linalg.norm(a, axis=1, keepdims=True)) if m else a
            for a, b, m in zip(d, w, is_matrix)]
    # ... or for one of the two norms only: the weights' rows over the direction's columns, or the reverse.
    mixed = [[a * (np.linalg.norm(b, axis=1, keepdims=True) / np.linalg.norm(a, axis=0)) if m else a
              for a, b, m in zip(d, w, is_matrix)],
             [a * (np.linalg.norm(b, axis=0) / np.linalg.norm(a, axis=1, keepdims=True)) if m else a
              for a, b, m in zip(d, w, is_matrix)]]
    wrong_axis = [with_biases(mats, biases) for mats in [rows] + mixed for biases in (zeros, per_array)]
    # Right matrices, but the biases perturbed: raw, rescaled as a whole, or element by element.
    elementwise = [a * (np.abs(b) / np.abs(a)) for a, b in zip(d, w)]
    perturbed = [with_biases(right, d), with_biases(right, per_array), with_biases(right, elementwise)]
    # Squared column norms (sum of squares, the root forgotten) for the weights' or the direction's.
    squares = [[a * (np.sum(b * b, axis=0) / np.linalg.norm(a, axis=0)) if m else z
                for a, b, m, z in zip(d, w, is_matrix, zeros)],
               [a * (np.linalg.norm(b, axis=0) / np.sum(a * a, axis=0)) if m else z
                for a, b, m, z in zip(d, w, is_matrix, zeros)]]
    return {"direction-not-filter-normalised": glob, "filter-norm-wrong-axis": wrong_axis,
            "bias-perturbed": perturbed, "norm-not-rooted": squares}


def _known_direction(weights):
    """A direction of ones: each filter becomes ones / sqrt(n_in) times its weight column's norm."""
    return [np.ones_like(np.asarray(w, dtype=np.float64)) for w in weights]


def check_filter_normalize(filter_normalize, seed=0, sizes=(2, 3, 2)):
    """Check ``filter_normalize(direction, weights) -> list of arrays``.

    Two directions: all ones (worked by hand in the notebook) and a random one.
    """
    check = ExerciseCheck("filter_normalize", reference="the filter-normalisation formula")
    weights = init_mlp(sizes, seed)
    for label, direction in [("a direction of ones", _known_direction(weights)),
                             (f"random direction, seed {seed + 7}", random_direction(weights, seed + 7))]:
        expected = reference_filter_normalize(direction, weights)
        variants = _filter_variants(direction, weights)
        call = call_student(filter_normalize, "filter_normalize", direction=direction, weights=weights)
        got = _array_list(call.result, "filter_normalize", weights)
        for k in range(len(weights)):
            # The arrays are compared in order, so when a bias is reached the matrices before it were
            # right: a wrong bias can only be the bias mistake (and a wrong matrix never is).
            relevant = {"bias-perturbed"} if np.ndim(weights[k]) == 1 else set(variants) - {"bias-perturbed"}
            check.compare(f"direction{_param_label(k, weights)}", got[k], expected[k], call,
                          case=f"{_model_case(sizes, False)}, {label}",
                          variants=exclusive({name: [v[k] for v in vs] for name, vs in variants.items()
                                              if name in relevant}, expected[k]))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 3: the logits of P models at once
# ---------------------------------------------------------------------------


def _stack(seed, sizes, n_models):
    """``n_models`` random models stacked along a new leading axis."""
    models = [init_mlp(sizes, seed + 100 * p) for p in range(n_models)]
    return models, [np.stack(arrays) for arrays in zip(*models)]


def check_batched_logits(batched_logits, seed=0, sizes=(2, 4, 3), n_models=3, n_samples=5, skip=False):
    """Check ``batched_logits(stacked_weights, X, skip) -> (P, n_samples, n_classes)``.

    The reference runs the P models one after another through torch.
    """
    check = ExerciseCheck("batched_logits", reference="PyTorch forward, one model at a time")
    models, stacked = _stack(seed, sizes, n_models)
    X, _ = _data(seed, n_samples, sizes[0], sizes[-1])
    with torch.no_grad():
        expected = np.stack([mlp_logits([_tensor(w) for w in m], _tensor(X), skip).numpy() for m in models])
    call = call_student(batched_logits, "batched_logits", stacked_weights=stacked, X=X, skip=skip)
    refuse_tensor(call.result, "batched_logits")
    check.compare("logits", call.result, expected, call,
                  case=f"{_model_case(sizes, skip)}, P={n_models}, N={n_samples}")
    check.cases = 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 4: a loss grid, evaluated in batches
# ---------------------------------------------------------------------------


def _batched_logits(stacked_weights, X, skip=False):
    """Exercise 3's ``batched_logits`` as a correct submission has it: (P, n_samples, n_classes) float64."""
    params = [torch.as_tensor(np.asarray(w, dtype=np.float64)) for w in stacked_weights]
    h = torch.as_tensor(np.asarray(X, dtype=np.float64))
    n_layers = len(params) // 2
    with torch.no_grad():
        for k in range(n_layers):
            z = torch.matmul(h, params[2 * k]) + params[2 * k + 1][:, None, :]
            if k == n_layers - 1:
                break
            a = torch.relu(z)
            h = h + a if (skip and a.shape[-1] == h.shape[-1]) else a
    return z.numpy()


@charges_once(batched_logits=(_batched_logits, "Exercise 3"))
def check_loss_grid(loss_grid, seed=0, sizes=(2, 4, 2), n_samples=10, skip=False, n_alpha=5, n_beta=4,
                    chunk_size=7):
    """Check ``loss_grid(weights, direction_x, direction_y, X, y, alphas, betas, skip, chunk_size)``.

    The grid is not square, so swapped axes show up as a shape; ``chunk_size``
    does not divide the number of points, so the last chunk is ragged.
    """
    check = ExerciseCheck("loss_grid", reference="torch cross_entropy at every grid point")
    weights = init_mlp(sizes, seed)
    dx, dy = reference_filter_normalize(random_direction(weights, seed + 1), weights), \
        reference_filter_normalize(random_direction(weights, seed + 2), weights)
    X, y = _data(seed, n_samples, sizes[0], sizes[-1])
    alphas, betas = np.linspace(-1.0, 1.0, n_alpha), np.linspace(-0.6, 0.9, n_beta)

    def point(a, b, u=dx, v=dy):
        return [w + a * p + b * q for w, p, q in zip(weights, u, v)]

    expected = np.array([[_torch_loss(point(a, b), X, y, skip) for a in alphas] for b in betas])
    swapped_dirs = np.array([[_torch_loss(point(a, b, dy, dx), X, y, skip) for a in alphas] for b in betas])
    swapped = [expected.T, expected.T.reshape(expected.shape), swapped_dirs]
    # One mean over a whole chunk (models and samples together) instead of one per grid point.
    flat = expected.ravel()
    chunk_means = np.concatenate([np.full(len(flat[i:i + chunk_size]), flat[i:i + chunk_size].mean())
                                  for i in range(0, flat.size, chunk_size)]).reshape(expected.shape)
    # Log-softmax over the samples (axis 1 of (P, N, C)) instead of the classes.
    with torch.no_grad():
        def over_samples(a, b):
            logits = mlp_logits([_tensor(w) for w in point(a, b)], _tensor(X), skip)
            log_p = torch.log_softmax(logits, dim=0)
            return float(-log_p[torch.arange(len(y)), torch.as_tensor(y, dtype=torch.long)].mean())
        wrong_axis = np.array([[over_samples(a, b) for a in alphas] for b in betas])
    call = call_student(loss_grid, "loss_grid", weights=weights, direction_x=dx, direction_y=dy, X=X, y=y,
                        alphas=alphas, betas=betas, skip=skip, chunk_size=chunk_size)
    refuse_tensor(call.result, "loss_grid")
    check.compare("loss grid", call.result, expected, call, mean_count=n_samples,
                  case=f"{_model_case(sizes, skip)}, {n_beta} betas x {n_alpha} alphas, chunk_size={chunk_size}",
                  variants=exclusive({"grid-axes-swapped": swapped, "wrong-axis-reduction": chunk_means,
                                      "softmax-wrong-axis": wrong_axis}, expected))
    check.cases = 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 5: Hessian-vector products by double backward
# ---------------------------------------------------------------------------


def check_hessian_vector_product(hessian_vector_product, seed=0, sizes=(2, 3, 2), n_samples=8, skip=False):
    """Check ``hessian_vector_product(weights, X, y, vector, skip) -> list of arrays`` against H @ v.

    H is the full Hessian built by autograd (one backward pass per parameter).
    """
    check = ExerciseCheck("hessian_vector_product", reference="the full autograd Hessian times v")
    weights = init_mlp(sizes, seed)
    X, y = _data(seed, n_samples, sizes[0], sizes[-1])
    vector = random_direction(weights, seed + 3)
    H = full_hessian(weights, X, y, skip)
    expected = unflatten_params(H @ flatten_params(vector), weights)
    call = call_student(hessian_vector_product, "hessian_vector_product", weights=weights, X=X, y=y,
                        vector=vector, skip=skip)
    got = _array_list(call.result, "hessian_vector_product", weights)
    for k in range(len(weights)):
        check.compare(f"Hv{_param_label(k, weights)}", got[k], expected[k], call, mean_count=n_samples,
                      case=_model_case(sizes, skip))
    check.cases = 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 6: the largest Hessian eigenvalue by power iteration
# ---------------------------------------------------------------------------


def _unnormalised_power_iteration(H, v0, n_iters):
    """What power iteration gives when the iterate is never rescaled (for the variants).

    Two starting conventions (v0 as given, v0 normalised once) and two
    read-outs (v . Hv before the last update, and the final iterate's norm).
    """
    eigen_values, norms = [], []
    for v in (v0.copy(), v0 / np.linalg.norm(v0)):
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            value = float("nan")
            for _ in range(n_iters):
                Hv = H @ v
                value = float(v @ Hv)
                v = Hv
        eigen_values.append(value)
        norms.append(float(np.linalg.norm(v)))
    return eigen_values, norms


def _power_iteration(H, v0, n_iters, readout="rayleigh"):
    """Power iteration as the exercise specifies it (unit start, re-normalised, Rayleigh quotient).

    ``readout="norm"`` returns ||Hv|| instead of v . Hv: the same number once v has converged to an
    eigenvector of a positive eigenvalue, and wrong before convergence or when the dominant one is negative.
    """
    v = v0 / np.linalg.norm(v0)
    value = 0.0
    for _ in range(n_iters):
        Hv = H @ v
        value = float(v @ Hv) if readout == "rayleigh" else float(np.linalg.norm(Hv))
        v = Hv / np.linalg.norm(Hv)
    return value, v


def _check_short_power_iteration(check, top_hessian_eigenvalue, weights, X, y, v0, H, skip, n_iters, label):
    """A run of one or two iterations, compared with the same iterations done on the full Hessian.

    Far from convergence the Rayleigh quotient, ||Hv|| and an unnormalised start all give different
    numbers, so this case tells those mistakes apart (the long runs cannot: there they coincide).
    """
    start = flatten_params(v0)
    expected_value, expected_vector = _power_iteration(H, start, n_iters)
    norm_value, _ = _power_iteration(H, start, n_iters, readout="norm")
    unnormalised, _ = _unnormalised_power_iteration(H, start, n_iters)
    grown = [np.linalg.matrix_power(H, n_iters) @ u for u in (start, start / np.linalg.norm(start))]
    call = call_student(top_hessian_eigenvalue, "top_hessian_eigenvalue", weights=weights, X=X, y=y, v0=v0,
                        n_iters=n_iters, skip=skip)
    value, vector = unpack(call.result, "top_hessian_eigenvalue", ("eigenvalue", "eigenvector"))
    refuse_tensor(value, "top_hessian_eigenvalue")
    vector = _plain_arrays(_array_list(vector, "top_hessian_eigenvalue (eigenvector)", weights,
                                       what="an eigenvector as a list of arrays"),
                           "top_hessian_eigenvalue (eigenvector)", weights)
    where = f"{label}, n_iters={n_iters}"
    reference = f"the same {n_iters} iteration(s) on the full autograd Hessian"
    check.compare("eigenvalue", value, expected_value, call, case=where, reference=reference,
                  variants=exclusive({"power-iteration-norm-not-rayleigh": norm_value,
                                      "power-iteration-no-renormalisation": unnormalised}, expected_value))
    check.compare("eigenvector (the last iterate)", flatten_params(vector), expected_vector, call, case=where,
                  reference=reference,
                  variants=exclusive({"power-iteration-no-renormalisation": grown}, expected_vector))


def _hessian_vector_product(weights, X, y, vector, skip=False):
    """Exercise 6's ``hessian_vector_product`` as a correct submission has it (double backward)."""
    params = [torch.tensor(np.asarray(w, dtype=np.float64), requires_grad=True) for w in weights]
    loss = F.cross_entropy(mlp_logits(params, _tensor(X), skip), torch.as_tensor(np.asarray(y), dtype=torch.long))
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g_dot_v = sum((g * _tensor(v)).sum() for g, v in zip(grads, vector))
    return [h.numpy() for h in torch.autograd.grad(g_dot_v, params)]


@charges_once(hessian_vector_product=(_hessian_vector_product, "Exercise 6"))
def check_top_hessian_eigenvalue(top_hessian_eigenvalue, seed=0, sizes=(2, 4, 2), n_samples=10, skip=False,
                                 n_iters=150, short_iters=(1, 2)):
    """Check ``top_hessian_eigenvalue(weights, X, y, v0, n_iters, skip) -> (eigenvalue, eigenvector)``.

    The reference is the eigenvalue of largest magnitude of the full Hessian
    (``np.linalg.eigh``); the check verifies the eigen-gap is wide enough for
    ``n_iters`` iterations to reach ``EIGEN_TOL``. The eigenvector must have
    norm 1 and be parallel to the reference eigenvector (|cos| = 1; its sign is free).
    First, runs of ``short_iters`` iterations are compared step for step with the same
    iterations on the full Hessian (where ||Hv|| and v . Hv still differ).

    (A dominant eigenvalue that is negative would expose ||Hv|| at convergence too, but the
    Hessians of these ReLU MLPs' cross-entropy do not have one: their indefinite part comes in
    +/- pairs and the positive semi-definite Gauss-Newton part tips the balance to the positive side.)
    """
    check = ExerciseCheck("top_hessian_eigenvalue", reference="np.linalg.eigh of the full autograd Hessian",
                          tol=EIGEN_TOL)
    weights = init_mlp(sizes, seed)
    X, y = _data(seed, n_samples, sizes[0], sizes[-1])
    v0 = random_direction(weights, seed + 11)
    H = full_hessian(weights, X, y, skip)
    eigvals, eigvecs = np.linalg.eigh(H)
    order = np.argsort(-np.abs(eigvals))
    top, second = eigvals[order[0]], eigvals[order[1]]
    if abs(second / top) ** n_iters > 1e-6:  # the check's own case must be solvable
        raise RuntimeError(f"eigen-gap too small for {n_iters} iterations: |l2/l1| = {abs(second / top):.4f}")
    top_vector = eigvecs[:, order[0]]
    for k in short_iters:
        _check_short_power_iteration(check, top_hessian_eigenvalue, weights, X, y, v0, H, skip, k,
                                     _model_case(sizes, skip))

    call = call_student(top_hessian_eigenvalue, "top_hessian_eigenvalue", weights=weights, X=X, y=y, v0=v0,
                        n_iters=n_iters, skip=skip)
    value, vector = unpack(call.result, "top_hessian_eigenvalue", ("eigenvalue", "eigenvector"))
    refuse_tensor(value, "top_hessian_eigenvalue")
    vector = _plain_arrays(_array_list(vector, "top_hessian_eigenvalue (eigenvector)", weights,
                                       what="an eigenvector as a list of arrays"),
                           "top_hessian_eigenvalue (eigenvector)", weights)
    wrong_values, wrong_norms = _unnormalised_power_iteration(H, flatten_params(v0), n_iters)
    where = f"{_model_case(sizes, skip)}, n_iters={n_iters}"
    check.compare("eigenvalue", value, top, call, case=where,
                  variants={"power-iteration-no-renormalisation": wrong_values})
    with np.errstate(over="ignore", invalid="ignore"):
        flat = flatten_params(vector)
        norm = float(np.linalg.norm(flat))
    check.compare("||eigenvector||", norm, 1.0, call, case=where,
                  variants={"power-iteration-no-renormalisation": wrong_norms})
    cosine = abs(float(flat @ top_vector)) / norm if norm > 0 and np.isfinite(norm) else float("nan")
    check.compare("|cos(eigenvector, reference)|", cosine, 1.0, call, case=where)
    check.cases = 1 + len(short_iters)
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 7: the optimiser's path in the plane of its first two principal components
# ---------------------------------------------------------------------------


def _synthetic_trajectory(seed, n_steps, n_params):
    """A path that settles: drift along one direction, a decaying swing along another, noise."""
    rng = np.random.default_rng(seed + 900)
    end = rng.normal(size=n_params)
    drift, swing = rng.normal(size=n_params), rng.normal(size=n_params)
    t = np.linspace(0.0, 1.0, n_steps)[:, None]
    path = end + (1 - t) ** 2 * 3.0 * drift + np.exp(-3 * t) * np.sin(9 * t) * swing
    path += 0.05 * (1 - t) * rng.normal(size=(n_steps, n_params))
    path[-1] = end
    return path


def _pca_reference(trajectory):
    """Directions (2, P), path coordinates (T, 2) relative to the last point, explained-variance ratios (2,)."""
    offsets = trajectory - trajectory[-1]
    centred = offsets - offsets.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    directions = vt[:2]
    return directions, offsets @ directions.T, (s[:2] ** 2) / np.sum(s ** 2)


def check_pca_path(pca_path, seed=0, n_steps=25, n_params=30):
    """Check ``pca_path(trajectory) -> (directions, coords, explained_variance_ratio)``.

    A principal direction's sign is arbitrary: each received direction (and
    its coordinate column) is flipped to agree with the reference before comparing.
    """
    check = ExerciseCheck("pca_path", reference="the SVD of the centred trajectory", tol=PCA_TOL)
    trajectory = _synthetic_trajectory(seed, n_steps, n_params)
    directions, coords, ratio = _pca_reference(trajectory)
    call = call_student(pca_path, "pca_path", trajectory=trajectory)
    got_dirs, got_coords, got_ratio = unpack(call.result, "pca_path",
                                             ("directions", "coords", "explained_variance_ratio"))
    for item in (got_dirs, got_coords, got_ratio):
        refuse_tensor(item, "pca_path")
    where = f"T={n_steps} steps, {n_params} parameters"
    check.compare("explained_variance_ratio", got_ratio, ratio, call, case=where)

    signs = np.ones(2)
    if _plain(got_dirs) and got_dirs.shape == directions.shape:
        signs = np.where(np.sum(got_dirs * directions, axis=1) < 0, -1.0, 1.0)
        got_dirs = got_dirs * signs[:, None]
    check.compare("directions (sign-aligned)", got_dirs, directions, call, case=where)

    offsets = trajectory - trajectory[-1]
    wrong_origin = [(offsets - offsets.mean(axis=0)) @ directions.T, trajectory @ directions.T,
                    (trajectory - trajectory.mean(axis=0)) @ directions.T,
                    (trajectory - trajectory[0]) @ directions.T]
    if _plain(got_coords) and got_coords.shape == coords.shape:
        got_coords = got_coords * signs[None, :]
    check.compare("coords (sign-aligned)", got_coords, coords, call, case=where,
                  variants={"pca-path-wrong-origin": wrong_origin})
    check.cases = 1
    return check.passed()
