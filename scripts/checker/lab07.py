"""Checks for lab 07 (normalisation and regularisation).

Students write every exercise in numpy (``NUMPY_ONLY = True``). Each ``check_*``
function builds its inputs from a seed, calls the student's function on private
copies, computes the reference with PyTorch in float64 (``F.batch_norm``,
``nn.BatchNorm1d`` in ``train()``/``eval()``, ``F.layer_norm``, ``F.rms_norm``,
autograd, ``torch.optim.AdamW`` with parameter groups) or with scikit-learn
(``GroupKFold``), and passes what the catalogued mistakes would produce on the
same inputs (the *variants*, computed with trusted code) so a failure names the
misconception.

Sizes are chosen so that no two of N (samples), D (features), H (hidden width),
C (classes) coincide or equal 2, so a transposed or wrongly reduced result has
the wrong shape or the wrong values, never the right ones by accident.

This module also holds the trusted demos the notebook calls (torch training
runs, the logs the diagnoses are read from, the hospital data): they are not
exercises.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .compare import GRADIENT_TOL, CheckFailure, Tolerance, describe_type
from .exercise import ExerciseCheck, charge_once, charges_once, outcome, score_parts
from .student import call_student, unpack
from .variants import exclusive

#: Every exercise of this lab is numpy only.
NUMPY_ONLY = True

DT = torch.float64
# The tensors here are tiny: one thread beats two that wait for each other (as lab 06's setup does).
torch.set_num_threads(1)
#: PyTorch's default epsilon of BatchNorm1d, LayerNorm and (here) RMSNorm.
EPS = 1e-5
#: Gradient norms and Adam updates: relative error only would fail on exact zeros, so a tiny atol.
NORM_TOL = Tolerance(atol=1e-12, rtol=1e-7)
#: Fold indices, counts of exact zeros and one-hot choices are exact.
EXACT_TOL = Tolerance(atol=0.0, rtol=0.0)

#: Grade-cell points of the checks that score each of their functions separately (partial credit per
#: function: checker.exercise.score_parts); tests/unit/test_partial_credit.py keeps them equal to the
#: notebook's.
POINTS = {"check_batchnorm_train": 3.0, "check_batchnorm_running": 2.0, "check_layer_rms_norm": 3.0,
          "check_dropout": 2.0, "check_penalties": 2.0, "check_mixup": 2.0}

__all__ = [
    "NUMPY_ONLY", "EPS", "PLACEMENT_OPTIONS", "TRAIN_EVAL_OPTIONS",
    "check_batchnorm_train", "check_batchnorm_running", "check_layer_rms_norm", "check_dropout",
    "check_residual_grad_norms", "check_placement_diagnosis", "check_adamw_groups", "check_penalties",
    "check_mixup", "check_train_eval_diagnosis", "check_group_kfold",
    "residual_stack_weights", "classification_data", "train_residual_stack", "train_eval_log",
    "hospital_data", "adamw_example_params", "sparse_regression_data",
]


class _Check(ExerciseCheck):
    """ExerciseCheck whose variants pass through :func:`checker.variants.exclusive`.

    A value two mistakes predict, or one equal to the right answer, names nothing.
    """

    def compare(self, quantity, received, expected, call=None, case="", **kwargs):
        if kwargs.get("variants"):
            kwargs["variants"] = exclusive(kwargs["variants"], expected)
        return super().compare(quantity, received, expected, call, case=case, **kwargs)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=DT)


def _leaf(a) -> torch.Tensor:
    return _t(a).clone().requires_grad_(True)


def _norm_inputs(seed, n, d, small_feature=True):
    """x (n, d) with features of different scales and offsets; one feature (or sample) has a tiny spread.

    A spread comparable to sqrt(eps) is the threshold where eps stops being negligible: there
    sqrt(var + eps) and sqrt(var) + eps differ clearly.
    """
    rng = np.random.default_rng(seed + 7000)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(0.0, 2.0, size=d)
    if small_feature:
        x[:, 0] = 0.7 + 3e-3 * rng.normal(size=n)
    return x


def _bn_numpy(x, gamma, beta, eps, ddof=0, eps_outside=False):
    mu = x.mean(axis=0)
    var = x.var(axis=0, ddof=ddof)
    std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return gamma * (x - mu) / std + beta


def _ln_numpy(x, gamma, beta, eps, axis=1, eps_outside=False, center=True):
    mu = x.mean(axis=axis, keepdims=True) if center else 0.0
    var = ((x - mu) ** 2).mean(axis=axis, keepdims=True)
    std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    out = (x - mu) / std * gamma
    return out if beta is None else out + beta


def _norm_backward(dy, x, gamma, eps, axis, center=True, eps_outside=False, mean_path=True, variance_path=True,
                   param_axis=0):
    """(dx, dgamma, dbeta) of BatchNorm (axis 0), LayerNorm (axis 1) or RMSNorm (axis 1, ``center=False``).

    With the defaults, the lab's formula: ``dx = (g - mean(g) - x_hat * mean(g * x_hat)) / std`` with
    ``g = dy * gamma`` and the means over ``axis``. The flags give what a catalogued mistake computes:
    eps added to the standard deviation, or a path through the mean or the variance left out
    (norm-backward-ignores-stats treats the statistics as constants, wholly or in part), or dgamma and
    dbeta summed over ``param_axis`` 1 (the features) instead of 0 (the samples).
    """
    kw = dict(axis=axis, keepdims=True)
    mu = x.mean(**kw) if center else 0.0
    var = ((x - mu) ** 2).mean(**kw)
    std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    x_hat = (x - mu) / std
    g = dy * gamma
    dx = g
    if center and mean_path:
        dx = dx - g.mean(**kw)
    if variance_path:
        dx = dx - x_hat * (g * x_hat).mean(**kw)
    return dx / std, (dy * x_hat).sum(axis=param_axis), dy.sum(axis=param_axis)


def _backward_variants(dy, x, gamma, eps, axis, center=True):
    """What the catalogued mistakes give for a normalisation's (dx, dgamma, dbeta): three variants dicts.

    dgamma and dbeta sum over the samples (axis 0) in all three normalisations; summing over the
    features instead is wrong-axis-reduction.
    """
    def backward(**mistake):
        return _norm_backward(dy, x, gamma, eps, axis, center=center, **mistake)

    constants = [backward(mean_path=False, variance_path=False)[0]]
    if center:   # RMSNorm has no path through a mean: only "no path at all" is its mistake
        constants += [backward(variance_path=False)[0], backward(mean_path=False)[0]]
    eps_dx, eps_dgamma, _ = backward(eps_outside=True)
    _, axis_dgamma, axis_dbeta = backward(param_axis=1)
    return ({"norm-backward-ignores-stats": constants, "norm-eps-outside-sqrt": eps_dx},
            {"norm-eps-outside-sqrt": eps_dgamma, "wrong-axis-reduction": axis_dgamma},
            {"wrong-axis-reduction": axis_dbeta})


# ---------------------------------------------------------------------------
# Exercise 1: BatchNorm in training mode, forward and backward
# ---------------------------------------------------------------------------

#: (N, D) of the visible cases: N != D, neither is 2.
BN_SHAPES = ((6, 4), (5, 7))


def check_batchnorm_train(batchnorm_forward, batchnorm_backward, seed=0, shapes=BN_SHAPES, eps=EPS):
    """Check ``batchnorm_forward(x, gamma, beta, eps) -> y`` and
    ``batchnorm_backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta)`` (training mode: batch statistics,
    biased variance) against ``F.batch_norm(..., training=True)`` and autograd."""
    check = _Check("batchnorm_forward / batchnorm_backward")
    cases = []
    for k, (n, d) in enumerate(shapes):
        rng = np.random.default_rng(seed + 100 + k)
        x = _norm_inputs(seed + k, n, d)
        gamma, beta, dy = rng.uniform(0.5, 2.0, size=d), rng.normal(size=d), rng.normal(size=(n, d))
        xt, gt, bt = _leaf(x), _leaf(gamma), _leaf(beta)
        yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
        yt.backward(_t(dy))
        cases.append((x, gamma, beta, dy, yt.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy(),
                      f"N={n}, D={d}, eps={eps:g}"))

    def forward_part():
        for x, gamma, beta, _, y_ref, _, _, _, where in cases:
            call = call_student(batchnorm_forward, "batchnorm_forward", x=x, gamma=gamma, beta=beta, eps=eps)
            check.compare("y", call.result, y_ref, call, case=where, reference="F.batch_norm",
                          variants={"batchnorm-unbiased-variance": _bn_numpy(x, gamma, beta, eps, ddof=1),
                                    "norm-eps-outside-sqrt": _bn_numpy(x, gamma, beta, eps, eps_outside=True),
                                    "layernorm-wrong-axis": _ln_numpy(x, gamma, beta, eps)})

    def backward_part():
        for x, gamma, _, dy, _, dx_ref, dgamma_ref, dbeta_ref, where in cases:
            call = call_student(batchnorm_backward, "batchnorm_backward", dy=dy, x=x, gamma=gamma, eps=eps)
            dx, dgamma, dbeta = unpack(call.result, "batchnorm_backward", ("dx", "dgamma", "dbeta"))
            dx_wrong, dgamma_wrong, dbeta_wrong = _backward_variants(dy, x, gamma, eps, axis=0)
            n = x.shape[0]   # dgamma and dbeta sum over the batch: a mean is a batch-size-scaling slip
            check.compare("dL/dx", dx, dx_ref, call, case=where, variants=dx_wrong)
            check.compare("dL/dgamma", dgamma, dgamma_ref, call, case=where, variants=dgamma_wrong, mean_count=n)
            check.compare("dL/dbeta", dbeta, dbeta_ref, call, case=where, variants=dbeta_wrong, mean_count=n)

    outcomes = {"batchnorm_forward": outcome(forward_part), "batchnorm_backward": outcome(backward_part)}
    check.cases = len(cases)
    return score_parts(POINTS["check_batchnorm_train"], outcomes, check.passed, "check_batchnorm_train")


# ---------------------------------------------------------------------------
# Exercise 2: running statistics and eval mode
# ---------------------------------------------------------------------------


def _running_update(running_mean, running_var, x, momentum, ddof=1, swapped=False):
    mean, var = x.mean(axis=0), x.var(axis=0, ddof=ddof)
    keep, take = (momentum, 1.0 - momentum) if swapped else (1.0 - momentum, momentum)
    return keep * running_mean + take * mean, keep * running_var + take * var


def check_batchnorm_running(batchnorm_update_running, batchnorm_eval, seed=0, n_batches=3, n=6, d=5,
                            momentum=0.1, eps=EPS):
    """Check ``batchnorm_update_running(running_mean, running_var, x, momentum) -> (mean, var)`` and
    ``batchnorm_eval(x, gamma, beta, running_mean, running_var, eps) -> y`` against
    ``torch.nn.BatchNorm1d``: its buffers after each ``train()`` forward pass (momentum in torch's
    convention, unbiased batch variance), then its output in ``eval()``."""
    check = _Check("batchnorm_update_running / batchnorm_eval", reference="torch.nn.BatchNorm1d")
    rng = np.random.default_rng(seed + 200)
    bn = torch.nn.BatchNorm1d(d, eps=eps, momentum=momentum, dtype=DT)
    gamma, beta = rng.uniform(0.5, 2.0, size=d), rng.normal(size=d)
    with torch.no_grad():
        bn.weight.copy_(_t(gamma)); bn.bias.copy_(_t(beta))
        bn.running_mean.copy_(_t(rng.normal(size=d))); bn.running_var.copy_(_t(rng.uniform(0.5, 2.0, size=d)))
    batches = []
    for b in range(n_batches):
        x = _norm_inputs(seed + 10 * b + 1, n, d)
        mean0, var0 = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
        bn.train()
        with torch.no_grad():
            bn(_t(x))
        batches.append((b, x, mean0, var0, bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()))
    # eval(): the same layer normalises a new batch with its running statistics.
    x_eval = _norm_inputs(seed + 99, n + 1, d)
    bn.eval()
    with torch.no_grad():
        expected = bn(_t(x_eval)).numpy()
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()

    def update_part():
        for b, x, mean0, var0, mean_ref, var_ref in batches:
            call = call_student(batchnorm_update_running, "batchnorm_update_running", running_mean=mean0,
                                running_var=var0, x=x, momentum=momentum)
            got_mean, got_var = unpack(call.result, "batchnorm_update_running", ("running_mean", "running_var"))
            where = f"batch {b}, N={n}, D={d}, momentum={momentum}"
            swapped = _running_update(mean0, var0, x, momentum, swapped=True)
            check.compare("running_mean", got_mean, mean_ref, call, case=where,
                          variants={"bn-momentum-convention": swapped[0]})
            check.compare("running_var", got_var, var_ref, call, case=where,
                          variants={"running-var-biased": _running_update(mean0, var0, x, momentum, ddof=0)[1],
                                    "bn-momentum-convention": swapped[1]})

    # batchnorm_eval gets torch's running statistics, not the student's: the two are scored apart.
    def eval_part():
        call = call_student(batchnorm_eval, "batchnorm_eval", x=x_eval, gamma=gamma, beta=beta, running_mean=rm,
                            running_var=rv, eps=eps)
        check.compare("y in eval mode", call.result, expected, call, case=f"N={n + 1}, D={d}",
                      variants={"eval-uses-batch-stats": _bn_numpy(x_eval, gamma, beta, eps),
                                "norm-eps-outside-sqrt": gamma * (x_eval - rm) / (np.sqrt(rv) + eps) + beta})

    outcomes = {"batchnorm_update_running": outcome(update_part), "batchnorm_eval": outcome(eval_part)}
    check.cases = n_batches + 1
    return score_parts(POINTS["check_batchnorm_running"], outcomes, check.passed, "check_batchnorm_running")


# ---------------------------------------------------------------------------
# Exercise 3: LayerNorm and RMSNorm
# ---------------------------------------------------------------------------


def _rms_centred(x, gamma, eps):
    """What RMSNorm gives with the mean subtracted: from x and its mean square (LayerNorm without beta),
    only inside the root (dividing by the standard deviation, x.var or x.std), or only from x."""
    centred = x - x.mean(axis=1, keepdims=True)
    mean_square, variance = (x ** 2).mean(axis=1, keepdims=True), (centred ** 2).mean(axis=1, keepdims=True)
    return [gamma * centred / np.sqrt(variance + eps), gamma * x / np.sqrt(variance + eps),
            gamma * centred / np.sqrt(mean_square + eps)]


LN_SHAPES = ((5, 6), (3, 8))


def _sample_inputs(seed, n, d):
    """Rows with different offsets and scales; row 0 nearly constant (spread ~ sqrt(eps))."""
    x = _norm_inputs(seed, d, n, small_feature=True).T.copy()
    return x


def check_layer_rms_norm(layernorm_forward, layernorm_backward, rmsnorm_forward, rmsnorm_backward, seed=0,
                         shapes=LN_SHAPES, eps=EPS):
    """Check LayerNorm (``layernorm_forward(x, gamma, beta, eps)``, ``layernorm_backward(dy, x, gamma, eps)
    -> (dx, dgamma, dbeta)``) and RMSNorm (``rmsnorm_forward(x, gamma, eps)``, ``rmsnorm_backward(dy, x,
    gamma, eps) -> (dx, dgamma)``), each sample normalised over its D features, against ``F.layer_norm``,
    ``F.rms_norm`` and autograd."""
    check = _Check("layernorm / rmsnorm")
    cases = []
    for k, (n, d) in enumerate(shapes):
        rng = np.random.default_rng(seed + 300 + k)
        x = _sample_inputs(seed + 30 + k, n, d)
        gamma, beta, dy = rng.uniform(0.5, 2.0, size=d), rng.normal(size=d), rng.normal(size=(n, d))
        xt, gt, bt = _leaf(x), _leaf(gamma), _leaf(beta)
        yt = F.layer_norm(xt, (d,), gt, bt, eps=eps)
        yt.backward(_t(dy))
        layer = (yt.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy())
        xt, gt = _leaf(x), _leaf(gamma)
        yt = F.rms_norm(xt, (d,), gt, eps=eps)
        yt.backward(_t(dy))
        rms = (yt.detach().numpy(), xt.grad.numpy(), gt.grad.numpy())
        cases.append((x, gamma, beta, dy, layer, rms, f"N={n}, D={d}, eps={eps:g}"))

    def layernorm_forward_part():
        for x, gamma, beta, _, (y_ref, _, _, _), _, where in cases:
            call = call_student(layernorm_forward, "layernorm_forward", x=x, gamma=gamma, beta=beta, eps=eps)
            check.compare("LayerNorm y", call.result, y_ref, call, case=where, reference="F.layer_norm",
                          variants={"layernorm-wrong-axis": _ln_numpy(x, gamma, beta, eps, axis=0),
                                    "norm-eps-outside-sqrt": _ln_numpy(x, gamma, beta, eps, eps_outside=True)})

    def layernorm_backward_part():
        for x, gamma, _, dy, (_, dx_ref, dgamma_ref, dbeta_ref), _, where in cases:
            call = call_student(layernorm_backward, "layernorm_backward", dy=dy, x=x, gamma=gamma, eps=eps)
            dx, dgamma, dbeta = unpack(call.result, "layernorm_backward", ("dx", "dgamma", "dbeta"))
            dx_wrong, dgamma_wrong, dbeta_wrong = _backward_variants(dy, x, gamma, eps, axis=1)
            n = x.shape[0]
            check.compare("LayerNorm dL/dx", dx, dx_ref, call, case=where, variants=dx_wrong)
            check.compare("LayerNorm dL/dgamma", dgamma, dgamma_ref, call, case=where, variants=dgamma_wrong,
                          mean_count=n)
            check.compare("LayerNorm dL/dbeta", dbeta, dbeta_ref, call, case=where, variants=dbeta_wrong,
                          mean_count=n)

    def rmsnorm_forward_part():
        for x, gamma, _, _, _, (y_ref, _, _), where in cases:
            call = call_student(rmsnorm_forward, "rmsnorm_forward", x=x, gamma=gamma, eps=eps)
            check.compare("RMSNorm y", call.result, y_ref, call, case=where, reference="F.rms_norm",
                          variants={"rmsnorm-subtracts-mean": _rms_centred(x, gamma, eps),
                                    "norm-eps-outside-sqrt": _ln_numpy(x, gamma, None, eps, eps_outside=True,
                                                                       center=False)})

    def rmsnorm_backward_part():
        for x, gamma, _, dy, _, (_, dx_ref, dgamma_ref), where in cases:
            call = call_student(rmsnorm_backward, "rmsnorm_backward", dy=dy, x=x, gamma=gamma, eps=eps)
            dx, dgamma = unpack(call.result, "rmsnorm_backward", ("dx", "dgamma"))
            dx_wrong, dgamma_wrong, _ = _backward_variants(dy, x, gamma, eps, axis=1, center=False)
            check.compare("RMSNorm dL/dx", dx, dx_ref, call, case=where, variants=dx_wrong)
            check.compare("RMSNorm dL/dgamma", dgamma, dgamma_ref, call, case=where, variants=dgamma_wrong,
                          mean_count=x.shape[0])

    outcomes = {"layernorm_forward": outcome(layernorm_forward_part),
                "layernorm_backward": outcome(layernorm_backward_part),
                "rmsnorm_forward": outcome(rmsnorm_forward_part),
                "rmsnorm_backward": outcome(rmsnorm_backward_part)}
    check.cases = len(cases)
    return score_parts(POINTS["check_layer_rms_norm"], outcomes, check.passed, "check_layer_rms_norm")


# ---------------------------------------------------------------------------
# Exercise 4: inverted dropout
# ---------------------------------------------------------------------------

#: Many rows of one sample: the mean over them estimates the expected output of dropout.
N_EXPECTATION_ROWS = 20000


def check_dropout(dropout_forward, dropout_backward, seed=0, shape=(5, 7), p=0.3):
    """Check ``dropout_forward(x, mask, p, training) -> y`` and ``dropout_backward(dy, mask, p) -> dx``
    (inverted dropout: ``mask`` is True where a unit is kept, kept units are divided by 1 - p) against
    the same product differentiated by autograd; ``training=False`` must return ``x`` unchanged (as
    ``nn.Dropout(p).eval()`` does); and the mean output over many random masks must stay within six
    standard errors of ``x`` (the expected activation is preserved). Each function earns its own points."""
    check = _Check("dropout_forward / dropout_backward")
    rng = np.random.default_rng(seed + 400)
    x, dy = rng.normal(size=shape) + 1.0, rng.normal(size=shape)
    mask = rng.random(shape) >= p
    mask.flat[0], mask.flat[1] = True, False  # both kinds of unit, whatever the draw
    where = f"shape {shape}, p={p}"
    xt = _leaf(x)
    yt = xt * _t(mask) / (1.0 - p)
    yt.backward(_t(dy))
    variants = {"dropout-not-rescaled": x * mask, "dropout-scaled-by-p": x * mask / p}

    # E[mask / (1 - p)] = 1: the mean over many masks of one row estimates x itself.
    rel_tol = 6.0 * float(np.sqrt(p / (1.0 - p) / N_EXPECTATION_ROWS))
    expectation = _Check("dropout_forward", reference="x (within six standard errors)",
                         tol=Tolerance(atol=0.0, rtol=rel_tol))
    row = x.reshape(-1)[: x.shape[-1]].copy()
    rows = np.tile(row, (N_EXPECTATION_ROWS, 1))
    masks = rng.random(rows.shape) >= p

    def forward_part():
        call = call_student(dropout_forward, "dropout_forward", x=x, mask=mask, p=p, training=True)
        check.compare("y in training mode", call.result, yt.detach().numpy(), call, case=where,
                      reference="torch (x * mask / (1 - p))", variants=variants)
        with torch.no_grad():
            expected_eval = torch.nn.Dropout(p).eval()(_t(x)).numpy()
        call = call_student(dropout_forward, "dropout_forward", x=x, mask=mask, p=p, training=False)
        check.compare("y in eval mode", call.result, expected_eval, call, case=where,
                      reference="nn.Dropout(p).eval()",
                      # In eval: the mask and rescaling of training, the mask alone, the rescaling alone,
                      # or classic (non-inverted) dropout's test-time scaling by the keep probability.
                      variants={"dropout-in-eval": [yt.detach().numpy(), x * mask, x / (1.0 - p), x * (1.0 - p)]})
        call = call_student(dropout_forward, "dropout_forward", x=rows, mask=masks, p=p, training=True)
        got = call.result
        mean = np.mean(got, axis=0) if type(got) is np.ndarray and got.shape == rows.shape else got
        expectation.compare("mean output over many masks", mean, row, call,
                            case=f"{N_EXPECTATION_ROWS} masks, p={p}")

    def backward_part():
        call = call_student(dropout_backward, "dropout_backward", dy=dy, mask=mask, p=p)
        check.compare("dL/dx", call.result, xt.grad.numpy(), call, case=where,
                      variants={"dropout-not-rescaled": dy * mask, "dropout-scaled-by-p": dy * mask / p})

    # dropout_backward may reuse dropout_forward (the same product): a wrong forward is charged there only.
    sibling = {"dropout_forward": (_dropout_forward, "its own part of this exercise")}
    outcomes = {"dropout_forward": outcome(forward_part),
                "dropout_backward": outcome(lambda: charge_once(backward_part, depends_on=sibling))}
    check.cases = expectation.cases = 1

    def summary():
        check.passed()
        expectation.passed()

    return score_parts(POINTS["check_dropout"], outcomes, summary, "check_dropout")


def _dropout_forward(x, mask, p, training=True):
    """``dropout_forward`` as a correct submission has it."""
    return x * mask / (1.0 - p) if training else x.copy()


# ---------------------------------------------------------------------------
# Exercise 5: Pre-LN vs Post-LN residual stacks
# ---------------------------------------------------------------------------


def residual_stack_weights(depth, d, hidden, n_classes, seed):
    """Seeded weights of the lab's residual stack, drawn as PyTorch's default ``nn.Linear`` init.

    Trusted course code. ``U(-1/sqrt(n_in), 1/sqrt(n_in))`` is what ``nn.Linear`` draws by default
    (Kaiming-uniform with a = sqrt(5)), the "default initialisation" of the seeds' scenario A.

    Returns
    -------
    blocks : list of (W1, W2), W1 of shape (d, hidden), W2 of shape (hidden, d)
    W_out : ndarray of shape (d, n_classes)
    """
    rng = np.random.default_rng(seed + 5000)

    def draw(n_in, n_out):
        return rng.uniform(-1.0, 1.0, size=(n_in, n_out)) / np.sqrt(n_in)

    blocks = [(draw(d, hidden), draw(hidden, d)) for _ in range(depth)]
    return blocks, draw(d, n_classes)


def classification_data(seed, n, d, n_classes):
    """Gaussian inputs (n, d) and labels (n,) from a random linear teacher (trusted course code)."""
    rng = np.random.default_rng(seed + 5500)
    X = rng.normal(size=(n, d))
    return X, (X @ rng.normal(size=(d, n_classes))).argmax(axis=1)


def _stack_forward(X, blocks, W_out, placement, eps=EPS):
    """Logits of the residual stack (torch, float64); ``blocks`` are lists of torch leaves."""
    h = X
    for W1, W2 in blocks:
        if placement == "post":
            h = F.layer_norm(h + torch.relu(h @ W1) @ W2, (h.shape[1],), eps=eps)
        else:
            h = h + torch.relu(F.layer_norm(h, (h.shape[1],), eps=eps) @ W1) @ W2
    if placement == "pre":
        h = F.layer_norm(h, (h.shape[1],), eps=eps)
    return h @ W_out


def _stack_grad_norms(X, labels, blocks, W_out, placement):
    leaves = [(_leaf(W1), _leaf(W2)) for W1, W2 in blocks]
    loss = F.cross_entropy(_stack_forward(_t(X), leaves, _t(W_out), placement), torch.as_tensor(labels))
    grads = torch.autograd.grad(loss, [w for pair in leaves for w in pair])
    return np.array([float(g.norm()) for g in grads]).reshape(len(blocks), 2)


#: (depth, N, D, H, C) of the visible cases: the lab's depths 12 and 24, small widths.
STACK_CASES = ((12, 10, 6, 9, 5), (24, 7, 5, 8, 3))


def _layernorm_forward(x, gamma, beta, eps=EPS):
    """Exercise 3's ``layernorm_forward`` as a correct submission has it."""
    return _ln_numpy(x, gamma, beta, eps)


def _layernorm_backward(dy, x, gamma, eps=EPS):
    """Exercise 3's ``layernorm_backward`` as a correct submission has it: (dx, dgamma, dbeta)."""
    return _norm_backward(dy, x, gamma, eps, axis=1)


# A mistake in Exercise 3's LayerNorm costs Exercise 3 only: the residual stack that calls it is
# rechecked with these in its place (checker.exercise.charge_once).
@charges_once(layernorm_forward=(_layernorm_forward, "Exercise 3"),
              layernorm_backward=(_layernorm_backward, "Exercise 3"))
def check_residual_grad_norms(residual_grad_norms, seed=0, cases=STACK_CASES):
    """Check ``residual_grad_norms(X, labels, blocks, W_out, placement) -> (depth, 2)``: the Frobenius
    norms of dL/dW1 and dL/dW2 of every block (input first) for the mean cross-entropy, with LayerNorm
    (no affine parameters, eps 1e-5) after the residual sum (``"post"``) or at the entrance of each
    branch plus once before the read-out (``"pre"``), against autograd."""
    check = _Check("residual_grad_norms", reference="torch autograd", tol=NORM_TOL)
    for j, (depth, n, d, hidden, n_classes) in enumerate(cases):
        blocks, W_out = residual_stack_weights(depth, d, hidden, n_classes, seed + j)
        X, labels = classification_data(seed + j, n, d, n_classes)
        norms = {placement: _stack_grad_norms(X, labels, blocks, W_out, placement) for placement in ("post", "pre")}
        for placement, other in (("post", "pre"), ("pre", "post")):
            expected = norms[placement]
            call = call_student(residual_grad_norms, "residual_grad_norms", X=X, labels=labels,
                                blocks=[list(b) for b in blocks], W_out=W_out, placement=placement)
            check.compare("gradient norms (dL/dW1, dL/dW2 per block)", call.result, expected, call,
                          case=f"placement={placement!r}, depth={depth}, N={n}, D={d}, H={hidden}, C={n_classes}",
                          mean_count=n,
                          variants={"ln-placement-swapped": norms[other]})
        check.cases += 1
    return check.passed()


def train_residual_stack(placement, depth=12, lr=1e-4, n_steps=150, seed=0, n=128, d=32, hidden=64,
                         n_classes=10):
    """Full-batch Adam on the lab's residual stack (trusted demo code, torch, float64).

    Returns the cross-entropy at every step, ndarray of shape (n_steps,).
    """
    torch.set_num_threads(1)
    blocks, W_out = residual_stack_weights(depth, d, hidden, n_classes, seed)
    X, labels = classification_data(seed, n, d, n_classes)
    leaves = [(_leaf(W1), _leaf(W2)) for W1, W2 in blocks]
    head = _leaf(W_out)
    params = [w for pair in leaves for w in pair] + [head]
    optimizer = torch.optim.Adam(params, lr=lr)
    X, y = _t(X), torch.as_tensor(labels)
    losses = []
    for _ in range(n_steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(_stack_forward(X, leaves, head, placement), y)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return np.array(losses)


# ---------------------------------------------------------------------------
# Multiple-choice diagnoses (exercises 6 and 10)
# ---------------------------------------------------------------------------

#: Which placement trains at scenario A's settings (12 blocks, Adam, lr 1e-4, default init)?
PLACEMENT_OPTIONS = {
    "a": "only Pre-LN trains: Post-LN's gradients vanish on their way to the first blocks and its loss stays flat",
    "b": "only Post-LN trains: Pre-LN's residual stream grows with depth and its loss stays flat",
    "c": "both train at these settings, so the placement alone does not explain a flat loss here; Post-LN "
         "stalls only at large learning rates (no warmup), where Pre-LN still trains",
    "d": "neither trains: lr 1e-4 is too small for a 12-block stack",
}

_PLACEMENT_WHY_NOT = {
    "a": "the reproduction's Post-LN loss falls as fast as Pre-LN's at lr 1e-4, and its first block's gradient "
         "norm is as large as its last block's: nothing vanishes at this depth and initialisation",
    "b": "Pre-LN's loss falls at every learning rate of the reproduction",
    "d": "both losses fall well below the starting value within 150 steps at lr 1e-4",
}

#: What changes between train() and eval() in the log of section 9?
TRAIN_EVAL_OPTIONS = {
    "a": "dropout: eval() keeps every unit, and a network without dropout noise always has a higher loss",
    "b": "overfitting: the network memorised its training batches, so any other evaluation is worse",
    "c": "BatchNorm's running statistics: train() normalises with the batch's own mean and variance, eval() "
         "with running averages that have not caught up with them (momentum 0.01, few steps)",
    "d": "a bug in the loss: the two modes compute the cross-entropy differently",
}

_TRAIN_EVAL_WHY_NOT = {
    "a": "the network has no dropout layer (p = 0 in the log); and dropout noise raises the train-mode loss, "
         "it does not make eval() worse",
    "b": "both losses in the log are measured on the same training batch, and re-estimating the running "
         "statistics closes the whole gap without changing a weight",
    "d": "the same F.cross_entropy computes both numbers; the log's last line shows eval() matching train() "
         "once the running statistics are re-estimated",
}


def _check_choice(choice_fn, title, options, right, why_not, calls):
    letters = sorted(options)
    check = _Check(title, reference="the evidence of the reproduction", tol=EXACT_TOL)
    answers = []
    for _ in range(calls):
        call = call_student(choice_fn, title)
        got = call.result
        if not isinstance(got, str) or got.strip().lower() not in options:
            raise CheckFailure(f"{title} must return one letter among {', '.join(letters)}; it returned {got!r}.",
                               "wrong-return-type")
        answers.append(got.strip().lower())
    if len(set(answers)) > 1:
        raise CheckFailure(f"{title} returned {answers} on {calls} calls: return one fixed letter.",
                           "wrong-return-type")
    choice = answers[0]

    def one_hot(letter):
        return np.array([1.0 if o == letter else 0.0 for o in letters])

    try:
        check.compare("chosen option (one-hot over " + ", ".join(letters) + ")", one_hot(choice), one_hot(right),
                      call, case=f"you chose ({choice})",
                      variants={"wrong-diagnosis": [one_hot(o) for o in letters if o != right]})
    except CheckFailure as failure:
        raise CheckFailure(f"{failure}\n  Why not ({choice}): {why_not[choice]}.", failure.misconception) from None
    check.cases += 1
    return check.passed()


def check_placement_diagnosis(placement_diagnosis, calls=1):
    """Check ``placement_diagnosis() -> letter`` among :data:`PLACEMENT_OPTIONS` (one-hot, exact)."""
    return _check_choice(placement_diagnosis, "placement_diagnosis", PLACEMENT_OPTIONS, "c", _PLACEMENT_WHY_NOT,
                         calls)


def check_train_eval_diagnosis(train_eval_diagnosis, calls=1):
    """Check ``train_eval_diagnosis() -> letter`` among :data:`TRAIN_EVAL_OPTIONS` (one-hot, exact)."""
    return _check_choice(train_eval_diagnosis, "train_eval_diagnosis", TRAIN_EVAL_OPTIONS, "c",
                         _TRAIN_EVAL_WHY_NOT, calls)


def train_eval_log(seed=0, n=128, d=6, hidden=16, n_classes=5, n_steps=30, momentum=0.01):
    """The log of section 9 (trusted demo code): a BatchNorm classifier, no dropout, trained briefly.

    Returns a dict of the numbers the notebook prints: the train()- and eval()-mode losses on the same
    batch, the running mean against the batch mean of the first features, and the eval() loss after the
    running statistics are re-estimated (cumulative average over forward passes in train(), no update
    of any weight).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 9000)
    X = rng.normal(size=(n, d)) * 3.0 + 5.0
    y = ((X - 5.0) @ rng.normal(size=(d, n_classes))).argmax(axis=1)
    X, y = _t(X), torch.as_tensor(y)
    model = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.BatchNorm1d(hidden, momentum=momentum),
                                torch.nn.ReLU(), torch.nn.Dropout(0.0), torch.nn.Linear(hidden, n_classes)).to(DT)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(n_steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
    bn = model[1]
    with torch.no_grad():
        model.train()
        train_loss = F.cross_entropy(model(X), y).item()  # one more buffer update; the loss uses batch stats
        batch_mean = model[0](X).mean(dim=0).numpy()
        running_mean = bn.running_mean.numpy().copy()
        model.eval()
        eval_loss = F.cross_entropy(model(X), y).item()
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        model.train()
        model(X)
        model.eval()
        recalibrated = F.cross_entropy(model(X), y).item()
    return {"steps": n_steps, "momentum": momentum, "dropout_p": 0.0, "train_mode_loss": train_loss,
            "eval_mode_loss": eval_loss, "batch_mean": batch_mean[:4], "running_mean": running_mean[:4],
            "eval_after_recalibration": recalibrated}


# ---------------------------------------------------------------------------
# Exercise 7: AdamW with parameter groups
# ---------------------------------------------------------------------------


def adamw_example_params(seed, d=5, hidden=7, n_classes=3):
    """Names and seeded values of a small network's parameters (trusted course code).

    Two blocks (linear with bias, LayerNorm weight and bias) and a head; every value is non-zero.
    """
    rng = np.random.default_rng(seed + 7700)
    shapes = [("blocks.0.linear.weight", (d, hidden)), ("blocks.0.linear.bias", (hidden,)),
              ("blocks.0.norm.weight", (hidden,)), ("blocks.0.norm.bias", (hidden,)),
              ("blocks.1.linear.weight", (hidden, hidden)), ("blocks.1.linear.bias", (hidden,)),
              ("blocks.1.norm.weight", (hidden,)), ("blocks.1.norm.bias", (hidden,)),
              ("head.weight", (hidden, n_classes)), ("head.bias", (n_classes,))]
    names = [name for name, _ in shapes]
    values = [rng.normal(size=shape) + (1.0 if name.endswith("norm.weight") else 0.0) for name, shape in shapes]
    return names, values


def _adamw_reference(names, params, grads_per_step, lr, weight_decay, head_lr_factor, betas, eps,
                     decay_all=False, head_step_scaled=True, head_decay_scaled=True, coupled=False):
    """The parameters after torch's AdamW with the lab's groups, or with a catalogued mistake.

    ``decay_all``: 1-D parameters decayed too; ``head_step_scaled`` / ``head_decay_scaled`` False: the
    head's Adam step / decoupled decay uses the body's learning rate; ``coupled``: the decay added to the
    gradient (torch.optim.Adam's weight_decay, Adam with L2).
    """
    leaves = [_leaf(p) for p in params]
    groups = {}
    for name, leaf, value in zip(names, leaves, params):
        decay = decay_all or value.ndim >= 2
        groups.setdefault((decay, name.startswith("head.")), []).append(leaf)
    param_groups = []
    for (decay, head), ps in groups.items():
        step_lr = lr * head_lr_factor if head and head_step_scaled else lr
        decay_lr = lr * head_lr_factor if head and head_decay_scaled else lr
        # torch's AdamW shrinks p by 1 - group lr * group weight_decay: this product sets the decay's rate.
        group_decay = (weight_decay * decay_lr / step_lr) if decay else 0.0
        param_groups.append({"params": ps, "lr": step_lr,
                             "weight_decay": (weight_decay if decay else 0.0) if coupled else group_decay})
    optimizer = (torch.optim.Adam if coupled else torch.optim.AdamW)(param_groups, lr=lr, betas=betas, eps=eps)
    for grads in grads_per_step:
        for leaf, g in zip(leaves, grads):
            leaf.grad = _t(g)
        optimizer.step()
    return [leaf.detach().numpy().copy() for leaf in leaves]


def check_adamw_groups(adamw_grouped, seed=0, n_steps=1, lr=1e-2, weight_decay=0.1, head_lr_factor=10.0,
                       betas=(0.9, 0.999), eps=1e-8, sizes=(5, 7, 3)):
    """Check ``adamw_grouped(names, params, grads_per_step, lr, weight_decay, head_lr_factor, betas, eps)
    -> list of arrays``: the parameters after ``len(grads_per_step)`` AdamW steps with no weight decay on
    1-D parameters (biases, normalisation weights) and ``head_lr_factor * lr`` for names starting with
    ``"head."``, against ``torch.optim.AdamW`` with the same groups."""
    check = _Check("adamw_grouped", reference="torch.optim.AdamW with parameter groups", tol=NORM_TOL)
    names, params = adamw_example_params(seed, *sizes)
    rng = np.random.default_rng(seed + 7800)
    grads_per_step = [[rng.normal(size=p.shape) for p in params] for _ in range(n_steps)]
    hyper = dict(lr=lr, weight_decay=weight_decay, head_lr_factor=head_lr_factor, betas=betas, eps=eps)
    expected = _adamw_reference(names, params, grads_per_step, **hyper)
    decay_all = _adamw_reference(names, params, grads_per_step, **hyper, decay_all=True)
    head_plain = [_adamw_reference(names, params, grads_per_step, **hyper, **scaled)
                  for scaled in ({"head_step_scaled": False, "head_decay_scaled": False},
                                 {"head_step_scaled": False}, {"head_decay_scaled": False})]
    through_gradient = _adamw_reference(names, params, grads_per_step, **hyper, coupled=True)
    call = call_student(adamw_grouped, "adamw_grouped", names=names, params=params, grads_per_step=grads_per_step,
                        **hyper)
    got = call.result
    if not isinstance(got, (list, tuple)) or len(got) != len(params):
        raise CheckFailure(f"adamw_grouped must return a list of {len(params)} arrays (one per name); it returned "
                           f"a {describe_type(got)}.", "wrong-return-type")
    for i, (name, g, want) in enumerate(zip(names, got, expected)):
        check.compare(name, g, want, call, case=f"{n_steps} step(s), " + ", ".join(f"{k}={v}" for k, v in hyper.items()),
                      variants={"weight-decay-on-every-parameter": decay_all[i],
                                "head-lr-not-scaled": [plain[i] for plain in head_plain],
                                "adamw-decay-through-gradient": through_gradient[i]})
    check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 8: L1 and L2 penalties, and the sparsity they produce
# ---------------------------------------------------------------------------


def _soft_threshold(z, t):
    return torch.sign(z) * torch.clamp(z.abs() - t, min=0.0)


def _fit_reference(X, y, lam, lr, n_steps, kind, mistake=None):
    """Full-batch (proximal) gradient descent on 1/(2N) ||Xw - y||^2 + penalty, from w = 0 (torch)."""
    Xt, yt = _t(X), _t(y)
    w = torch.zeros(X.shape[1], dtype=DT)
    for _ in range(n_steps):
        grad = Xt.T @ (Xt @ w - yt) / X.shape[0]
        if kind == "l2":
            w = w - lr * (grad + lam * w)
        elif mistake == "subgradient":
            w = w - lr * (grad + lam * torch.sign(w))
        else:
            w = _soft_threshold(w - lr * grad, lr * lam)
    return w.numpy()


def sparse_regression_data(seed, n, d, n_informative):
    """A regression whose true weights are zero except ``n_informative`` of them (trusted course code)."""
    rng = np.random.default_rng(seed + 8800)
    X = rng.normal(size=(n, d))
    w_true = np.zeros(d)
    w_true[rng.choice(d, size=n_informative, replace=False)] = rng.choice([-1.0, 1.0], n_informative) * \
        rng.uniform(1.0, 3.0, n_informative)
    return X, X @ w_true + 0.5 * rng.normal(size=n), w_true


def check_penalties(penalty_and_grad, fit_penalised, seed=0, d=9, lam=0.3, fit_case=(40, 11, 3, 0.4, 0.1, 150)):
    """Check ``penalty_and_grad(w, lam, kind) -> (value, grad)`` (``"l1"``: lam * sum|w|; ``"l2"``:
    lam / 2 * sum w**2; w holds exact zeros, where torch's gradient of |w| is 0) against autograd, and
    ``fit_penalised(X, y, lam, lr, n_steps, kind) -> w``: gradient descent for L2, proximal gradient
    (soft-thresholding) for L1, from w = 0, step for step against the same loop in torch, with the
    number of exact zeros compared exactly. Each function earns its own points."""
    check = _Check("penalty_and_grad / fit_penalised")
    rng = np.random.default_rng(seed + 800)
    w = rng.normal(size=d)
    w[[1, 4]] = 0.0  # |w| has a kink at 0: the gradient convention matters there

    def penalty_part():
        for kind in ("l1", "l2"):
            wt = _leaf(w)
            value = lam * wt.abs().sum() if kind == "l1" else 0.5 * lam * (wt ** 2).sum()
            value.backward()
            call = call_student(penalty_and_grad, "penalty_and_grad", w=w, lam=lam, kind=kind)
            got_value, got_grad = unpack(call.result, "penalty_and_grad", ("value", "grad"))
            where = f"kind={kind!r}, lam={lam}, D={d}, w with exact zeros"
            check.compare("penalty", got_value, value.item(), call, case=where)
            variants = {"l1-grad-at-zero": [lam * np.where(w >= 0, 1.0, -1.0), lam * np.where(w > 0, 1.0, -1.0)]} \
                if kind == "l1" else None
            check.compare("d penalty / dw", got_grad, wt.grad.numpy(), call, case=where, variants=variants)

    n, d_fit, n_informative, lam_fit, lr, n_steps = fit_case
    X, y, _ = sparse_regression_data(seed, n, d_fit, n_informative)

    def fit_part():
        for kind in ("l1", "l2"):
            expected = _fit_reference(X, y, lam_fit, lr, n_steps, kind)
            call = call_student(fit_penalised, "fit_penalised", X=X, y=y, lam=lam_fit, lr=lr, n_steps=n_steps,
                                kind=kind)
            where = f"kind={kind!r}, N={n}, D={d_fit}, lam={lam_fit}, lr={lr}, {n_steps} steps"
            variants = {"l1-subgradient-no-zeros": _fit_reference(X, y, lam_fit, lr, n_steps, kind, "subgradient")} \
                if kind == "l1" else None
            check.compare("w after training", call.result, expected, call, case=where, tol=NORM_TOL,
                          reference="the same loop in torch", variants=variants)
            got = np.asarray(call.result, dtype=np.float64)
            n_zero = float(np.sum(expected == 0.0))
            wrong = float(np.sum(_fit_reference(X, y, lam_fit, lr, n_steps, kind, "subgradient") == 0.0))
            check.compare("number of exact zeros in w", float(np.sum(got == 0.0)), n_zero, call, case=where,
                          tol=EXACT_TOL, reference="the same loop in torch",
                          variants={"l1-subgradient-no-zeros": wrong} if kind == "l1" and wrong != n_zero else None)

    # fit_penalised may call penalty_and_grad for the penalty's gradient: a wrong one is charged there only.
    sibling = {"penalty_and_grad": (_penalty_and_grad, "its own part of this exercise")}
    outcomes = {"penalty_and_grad": outcome(penalty_part),
                "fit_penalised": outcome(lambda: charge_once(fit_part, depends_on=sibling))}
    check.cases = 3
    return score_parts(POINTS["check_penalties"], outcomes, check.passed, "check_penalties")


def _penalty_and_grad(w, lam, kind):
    """``penalty_and_grad`` as a correct submission has it (the gradient of |w| is 0 at 0)."""
    if kind == "l1":
        return float(lam * np.abs(w).sum()), lam * np.sign(w)
    return float(0.5 * lam * (w ** 2).sum()), lam * w


# ---------------------------------------------------------------------------
# Exercise 9: mixup
# ---------------------------------------------------------------------------


def check_mixup(mixup, mixup_cross_entropy, seed=0, n=6, d=4, n_classes=5, mix=0.7):
    """Check ``mixup(X, Y, mix, perm) -> (X_mixed, Y_mixed)`` (``mix * X + (1 - mix) * X[perm]``, the same
    for the one-hot targets) and ``mixup_cross_entropy(logits, Y_mixed) -> (loss, dL/dlogits)`` (mean over
    the batch) against ``F.cross_entropy`` with probability targets and autograd; the loss must also equal
    ``mix * CE(labels) + (1 - mix) * CE(labels[perm])``, which the check computes separately in torch.
    Each function earns its own points."""
    check = _Check("mixup / mixup_cross_entropy")
    rng = np.random.default_rng(seed + 900)
    X = rng.normal(size=(n, d))
    labels = rng.integers(0, n_classes, size=n)
    labels[:n_classes] = rng.permutation(n_classes)[: min(n, n_classes)]
    Y = np.eye(n_classes)[labels]
    perm = rng.permutation(n)
    where = f"N={n}, D={d}, C={n_classes}, mix={mix}"
    Xt, Yt, pt = _t(X), _t(Y), torch.as_tensor(perm)
    want_X = (mix * Xt + (1 - mix) * Xt[pt]).numpy()
    want_Y = (mix * Yt + (1 - mix) * Yt[pt]).numpy()

    def mixup_part():
        call = call_student(mixup, "mixup", X=X, Y=Y, mix=mix, perm=perm)
        X_mixed, Y_mixed = unpack(call.result, "mixup", ("X_mixed", "Y_mixed"))
        check.compare("X_mixed", X_mixed, want_X, call, case=where, reference="torch",
                      variants={"mixup-weights-swapped": (1 - mix) * X + mix * X[perm]})
        check.compare("Y_mixed", Y_mixed, want_Y, call, case=where, reference="torch",
                      variants={"mixup-targets-not-mixed": Y, "mixup-weights-swapped": (1 - mix) * Y + mix * Y[perm]})

    logits = rng.normal(0.0, 2.0, size=(n, n_classes))
    lt = _leaf(logits)
    loss = F.cross_entropy(lt, _t(want_Y))
    loss.backward()
    with torch.no_grad():
        as_two_losses = (mix * F.cross_entropy(_t(logits), torch.as_tensor(labels))
                         + (1 - mix) * F.cross_entropy(_t(logits), torch.as_tensor(labels[perm]))).item()
    assert abs(as_two_losses - loss.item()) < 1e-12  # the identity the notebook derives

    # mixup_cross_entropy gets the right mixed targets, not the student's: the two are scored apart.
    def cross_entropy_part():
        call = call_student(mixup_cross_entropy, "mixup_cross_entropy", logits=logits, Y_mixed=want_Y)
        got_loss, got_grad = unpack(call.result, "mixup_cross_entropy", ("loss", "dL_dlogits"))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        check.compare("loss", got_loss, loss.item(), call, case=where,
                      reference="F.cross_entropy(logits, Y_mixed)", mean_count=n,
                      variants={"mixup-targets-not-mixed": float(-np.mean(np.log(p[np.arange(n), labels])))})
        check.compare("dL/dlogits", got_grad, lt.grad.numpy(), call, case=where, mean_count=n)

    outcomes = {"mixup": outcome(mixup_part), "mixup_cross_entropy": outcome(cross_entropy_part)}
    check.cases = 1
    return score_parts(POINTS["check_mixup"], outcomes, check.passed, "check_mixup")


# ---------------------------------------------------------------------------
# Exercise 11: group k-fold
# ---------------------------------------------------------------------------

#: Sizes of the sites of the visible case: ties in size (two 4s, two 6s), and folds that tie while filling.
GROUP_SIZES = (6, 3, 4, 9, 4, 6, 2, 5)


def _groups_from_sizes(sizes, seed, labels=None):
    rng = np.random.default_rng(seed + 1100)
    ids = np.repeat(np.arange(len(sizes)) if labels is None else np.asarray(labels), sizes)
    return ids[rng.permutation(ids.size)]


def check_group_kfold(group_kfold, seed=0, sizes=GROUP_SIZES, n_splits=3, labels=None):
    """Check ``group_kfold(groups, n_splits) -> fold`` (an int fold index per sample) against
    ``sklearn.model_selection.GroupKFold(n_splits)``: the largest groups first (np.argsort(sizes,
    kind="stable")[::-1] over np.unique's order), each to the fold holding the fewest samples so far
    (the first such fold on a tie). Compared exactly."""
    from sklearn.model_selection import GroupKFold, KFold

    check = _Check("group_kfold", reference="sklearn GroupKFold", tol=EXACT_TOL)
    groups = _groups_from_sizes(sizes, seed, labels)
    expected = np.zeros(groups.size)
    for fold, (_, test) in enumerate(GroupKFold(n_splits=n_splits).split(np.zeros(groups.size), groups=groups)):
        expected[test] = fold
    by_sample = np.zeros(groups.size)
    for fold, (_, test) in enumerate(KFold(n_splits=n_splits).split(np.zeros(groups.size))):
        by_sample[test] = fold
    call = call_student(group_kfold, "group_kfold", groups=groups, n_splits=n_splits)
    got = call.result
    if type(got) is np.ndarray and got.dtype.kind in "iu":
        got = got.astype(np.float64)
    check.compare("fold of every sample", got, expected, call, require_float64=False,
                  case=f"{len(sizes)} groups of sizes {tuple(sizes)}, n_splits={n_splits}",
                  variants={"group-split-by-sample": by_sample})
    check.cases += 1
    return check.passed()


def hospital_data(seed=0, n_sites=6, n_per_site=60):
    """Covariate shift across sites (trusted demo code).

    Each site draws its input x from its own range (site k centred at -3 + 1.2 k), while the label
    rule y = sin(x) + 0.1 noise is the same everywhere: p(x) shifts, p(y | x) does not.

    Returns
    -------
    x : ndarray (n_sites * n_per_site,), y : same shape, site : int ndarray of the same shape
    """
    rng = np.random.default_rng(seed + 1200)
    centres = -3.0 + 1.2 * np.arange(n_sites)
    site = np.repeat(np.arange(n_sites), n_per_site)
    x = centres[site] + 0.6 * rng.normal(size=site.size)
    y = np.sin(x) + 0.1 * rng.normal(size=site.size)
    order = rng.permutation(site.size)
    return x[order], y[order], site[order]
