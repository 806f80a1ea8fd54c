"""Checks for lab 05 (probability and information).

Each ``check_*`` function builds its inputs from a seed, calls the student's
functions on private copies through :func:`call_student`, computes the
reference with PyTorch in float64 (``torch.softmax``, ``torch.logsumexp``,
``torch.nn.functional.cross_entropy`` with autograd, ``torch.distributions``...)
and compares every quantity. Next to the reference it computes, with trusted
numpy code, what known mistakes would produce on the same inputs (the
*variants*), so a failure can name the misconception.

Visible checks use the default seed; the hidden checks in the grade cells pass
other seeds and shapes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from math_utils import log_softmax, log_sum_exp, one_hot, sigmoid, softmax

from .compare import CheckFailure
from .exercise import ExerciseCheck, charge_once, charges_once, score_parts
from .student import call_student, unpack
from .variants import exclusive

#: Every exercise of this lab is written in numpy; autograd is only the reference.
NUMPY_ONLY = True

DT = torch.float64


def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DT)


def _leaf(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DT, requires_grad=True)


def _scalar(result):
    """A size-1 array as a 0-d array (so ``[0.3]`` is compared as the scalar it holds); anything else unchanged."""
    if type(result) is np.ndarray and result.size == 1:
        return result.reshape(())
    return result


# ---------------------------------------------------------------------------
# Exercise 1: log-sum-exp, softmax and log-softmax that never overflow
# ---------------------------------------------------------------------------


def _logit_inputs(seed, shape, big=True):
    """Random logits of ``shape``; with ``big``, the first two rows reach |z| = 1e3.

    Row 0 spans -1e3..1e3 (exp overflows without the max shift, and its small
    probabilities underflow to 0, so log(softmax) gives -inf). Row 1 is large
    and nearly constant (every exp overflows unshifted).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, size=shape)
    if big:
        rows = z.reshape(-1, shape[-1])
        rows[0] = np.linspace(-1e3, 1e3, shape[-1])
        if rows.shape[0] > 1:
            rows[1] = 1e3 + rng.normal(0.0, 1.0, size=shape[-1])
        z = rows.reshape(shape)
    return z


def _global_shift(z):
    """softmax, log_softmax and logsumexp shifted by ONE max over the whole array (trusted, for a variant)."""
    with np.errstate(all="ignore"):
        shifted = z - np.max(z)
        total = np.sum(np.exp(shifted), axis=-1, keepdims=True)
        return (np.exp(shifted) / total, shifted - np.log(total),
                np.max(z) + np.log(np.squeeze(total, axis=-1)))


def _logsumexp_all(z):
    """log-sum-exp with the per-row max but the sum over every entry (the wrong set)."""
    z_max = np.max(z, axis=-1, keepdims=True)
    return np.squeeze(z_max, axis=-1) + np.log(np.sum(np.exp(z - z_max)))


#: Grade-cell points of the checks that score each of their functions separately (partial credit:
#: checker.exercise.score_parts); tests/unit/test_partial_credit.py keeps them equal to the notebook's.
POINTS = {"check_softmax_family": 3.0, "check_entropy_kl": 3.0, "check_mle": 2.0}


def _outcome(part) -> CheckFailure | None:
    """None when ``part()`` (the comparisons of one function) passes, else its failure."""
    try:
        part()
    except CheckFailure as failure:
        return failure
    return None


def check_softmax_family(stable_softmax, stable_log_softmax, stable_logsumexp, seed=0, shapes=((4, 5), (2, 3, 6))):
    """Check ``stable_softmax(z)``, ``stable_log_softmax(z)`` and ``stable_logsumexp(z)`` along the last axis.

    ``shapes`` lists input shapes (any number of axes); the inputs include rows
    of magnitude 1e3, and numpy must not warn. Give a 3-D shape with distinct
    sizes: only there does a softmax over axis 1 differ from one over the last axis.
    """
    check = ExerciseCheck("softmax family", reference="torch.softmax / log_softmax / logsumexp")
    cases = []
    for k, shape in enumerate(shapes):
        z = _logit_inputs(seed + k, shape)
        other_axes = [a for a in range(len(shape) - 1) if shape[a] > 1]
        cases.append((z, _t(z), f"z shape {shape}", other_axes, _global_shift(z)))

    # logsumexp first: log_softmax is usually built on it, so a wrong logsumexp is named at its source.
    def logsumexp_part():
        for z, zt, where, _, (_, _, global_lse) in cases:
            expected = torch.logsumexp(zt, dim=-1).numpy()
            call = call_student(stable_logsumexp, "stable_logsumexp", z=z)
            check.compare("logsumexp", call.result, expected, call, case=where,
                          variants={**(exclusive({"wrong-axis-reduction": _logsumexp_all(z) if z.ndim > 1 else None},
                                                 expected) or {}),
                                    "max-shift-not-per-row": global_lse})

    def softmax_part():
        for z, zt, where, other_axes, (global_sm, _, _) in cases:
            expected = torch.softmax(zt, dim=-1).numpy()
            call = call_student(stable_softmax, "stable_softmax", z=z)
            check.compare("softmax", call.result, expected, call, case=where,
                          variants={**(exclusive({"softmax-wrong-axis": [softmax(z, axis=a) for a in other_axes]},
                                                 expected) or {}),
                                    "max-shift-not-per-row": global_sm})

    def log_softmax_part():
        for z, zt, where, other_axes, (_, global_lsm, _) in cases:
            expected = torch.log_softmax(zt, dim=-1).numpy()
            call = call_student(stable_log_softmax, "stable_log_softmax", z=z)
            check.compare("log_softmax", call.result, expected, call, case=where,
                          variants={**(exclusive({"softmax-wrong-axis": [log_softmax(z, axis=a) for a in other_axes]},
                                                 expected) or {}),
                                    "max-shift-not-per-row": global_lsm})

    # A log_softmax built on the student's own logsumexp or softmax is right when it is right given
    # correct ones: that mistake costs its own function's share only (a mistake charged once).
    siblings = {"stable_logsumexp": (log_sum_exp, "its own part of this exercise"),
                "stable_softmax": (softmax, "its own part of this exercise")}
    outcomes = {"stable_logsumexp": _outcome(logsumexp_part), "stable_softmax": _outcome(softmax_part),
                "stable_log_softmax": _outcome(lambda: charge_once(log_softmax_part, depends_on=siblings))}
    check.cases = len(cases)
    return score_parts(POINTS["check_softmax_family"], outcomes, check.passed, "check_softmax_family")


# ---------------------------------------------------------------------------
# Exercise 2: temperature
# ---------------------------------------------------------------------------


#: Exercise 1's functions as a correct submission has them. Later exercises call the student's own
#: by name; when a check fails only because of them, it reruns with these in their place, and a
#: mistake made in Exercise 1 costs Exercise 1's points only (checker.exercise.charge_once).
EXERCISE_1_REFERENCES = {
    "stable_softmax": (softmax, "Exercise 1"),
    "stable_log_softmax": (log_softmax, "Exercise 1"),
    "stable_logsumexp": (log_sum_exp, "Exercise 1"),
}


@charges_once(**EXERCISE_1_REFERENCES)
def check_temperature(softmax_with_temperature, seed=0, shape=(3, 6), temperatures=(0.5, 2.0)):
    """Check ``softmax_with_temperature(logits, temperature)`` = softmax(logits / T) along the last axis.

    T = 1 is never used: it cannot tell dividing from multiplying.
    """
    check = ExerciseCheck("softmax_with_temperature", reference="torch.softmax(logits / T)")
    logits = _logit_inputs(seed, shape, big=False) * 10.0  # |logits| ~ 30: a small T must not overflow
    for temperature in temperatures:
        call = call_student(softmax_with_temperature, "softmax_with_temperature",
                            logits=logits, temperature=float(temperature))
        expected = torch.softmax(_t(logits) / temperature, dim=-1).numpy()
        check.compare(f"p at T={temperature:g}", call.result, expected, call,
                      variants={"temperature-multiplied": softmax(logits * temperature, axis=-1)})
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 3: cross-entropy from probabilities
# ---------------------------------------------------------------------------


def _probs_with_zeros(seed, n, c):
    """Rows of probabilities with an exact 0 in one wrong class per row (when c > 2), and labels."""
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(0.0, 1.5, size=(n, c)), axis=1)
    labels = rng.integers(0, c, size=n)
    if c > 2:
        for i in range(n):
            wrong = rng.choice([j for j in range(c) if j != labels[i]])
            probs[i, wrong] = 0.0
        probs /= probs.sum(axis=1, keepdims=True)
    return probs, labels


def check_cross_entropy_probs(cross_entropy_from_probs, seed=0, shapes=((5, 4),)):
    """Check ``cross_entropy_from_probs(probs, labels) -> loss`` (mean over the batch).

    Some probabilities of wrong classes are exactly 0: ``log`` must never see them.
    """
    check = ExerciseCheck("cross_entropy_from_probs", reference="torch nll_loss(log(probs))")
    for k, (n, c) in enumerate(shapes):
        probs, labels = _probs_with_zeros(seed + k, n, c)
        expected = F.nll_loss(torch.log(_t(probs)), torch.tensor(labels)).item()
        call = call_student(cross_entropy_from_probs, "cross_entropy_from_probs", probs=probs, labels=labels)
        loss = _scalar(call.result)
        check.compare("loss", loss, expected, call, case=f"N={n}, C={c}", mean_count=n,
                      variants={"negative-cross-entropy": -expected})
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 4: cross-entropy from logits (soft or one-hot targets) and its gradient
# ---------------------------------------------------------------------------


def _soft_cross_entropy(logits, targets, axis=1):
    """Trusted numpy loss and gradient for any target rows (even ones not summing to 1)."""
    n = logits.shape[0]
    logp = log_softmax(logits, axis=axis)
    p = np.exp(logp)
    loss = float(-np.sum(targets * logp) / n)
    grad = (p * targets.sum(axis=axis, keepdims=True) - targets) / n
    return loss, grad


def _ce_case(seed, n, c, soft):
    rng = np.random.default_rng(seed + 500)
    logits = _logit_inputs(seed, (n, c))
    targets = rng.dirichlet(np.ones(c), size=n) if soft else one_hot(rng.integers(0, c, size=n), c)
    return logits, targets


#: Epsilons students add inside a log "to avoid log(0)".
_LOG_EPSILONS = (1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-12, 1e-15, 1e-16)


@charges_once(**EXERCISE_1_REFERENCES)
def check_cross_entropy_logits(cross_entropy_from_logits, seed=0, cases=((4, 3, False), (5, 4, True))):
    """Check ``cross_entropy_from_logits(logits, targets) -> (loss, dL_dlogits)`` (mean over the batch).

    ``cases`` lists (N, C, soft): one-hot targets when ``soft`` is False, random
    distributions otherwise. The first rows of logits reach magnitude 1e3.
    """
    check = ExerciseCheck("cross_entropy_from_logits")
    for k, (n, c, soft) in enumerate(cases):
        logits, targets = _ce_case(seed + k, n, c, soft)
        lt = _leaf(logits)
        loss = F.cross_entropy(lt, _t(targets))
        loss.backward()
        call = call_student(cross_entropy_from_logits, "cross_entropy_from_logits", logits=logits, targets=targets)
        got_loss, got_grad = unpack(call.result, "cross_entropy_from_logits", ("loss", "dL_dlogits"))
        where = f"N={n}, C={c}, {'soft' if soft else 'one-hot'} targets"
        axis0_loss, axis0_grad = _soft_cross_entropy(logits, targets, axis=0)
        p = softmax(logits, axis=1)
        # An epsilon inside the log, log(softmax + eps), silences numpy's log(0) warning but caps
        # -log p at -log(eps): the loss is wrong wherever a target class has underflowed to p = 0.
        eps_losses = [float(-np.sum(targets * np.log(p + eps)) / n) for eps in _LOG_EPSILONS]
        check.compare("loss", got_loss, loss.item(), call, case=where, mean_count=n,
                      reference="torch cross_entropy",
                      variants=exclusive({"negative-cross-entropy": -loss.item(), "softmax-wrong-axis": axis0_loss,
                                          "log-of-zero": eps_losses}, loss.item()))
        check.compare("dL/dlogits", got_grad, lt.grad.numpy(), call, case=where, mean_count=n,
                      variants={"batch-size-scaling": p - targets, "softmax-wrong-axis": axis0_grad})
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 5: label smoothing
# ---------------------------------------------------------------------------


def _cross_entropy_from_logits(logits, targets):
    """Exercise 4's function as a correct submission has it (stand-in for the student's own)."""
    return _soft_cross_entropy(logits, targets)


@charges_once(**EXERCISE_1_REFERENCES, cross_entropy_from_logits=(_cross_entropy_from_logits, "Exercise 4"))
def check_label_smoothing(label_smoothing_cross_entropy, seed=0, shapes=((4, 5),), smoothing=0.1):
    """Check ``label_smoothing_cross_entropy(logits, labels, smoothing) -> (loss, dL_dlogits)``
    against ``F.cross_entropy(..., label_smoothing=smoothing)`` and autograd.
    """
    check = ExerciseCheck("label_smoothing_cross_entropy", reference="torch cross_entropy(label_smoothing=)")
    for k, (n, c) in enumerate(shapes):
        rng = np.random.default_rng(seed + k)
        logits = rng.normal(0.0, 2.0, size=(n, c))
        labels = rng.integers(0, c, size=n)
        lt = _leaf(logits)
        loss = F.cross_entropy(lt, torch.tensor(labels), label_smoothing=smoothing)
        loss.backward()
        call = call_student(label_smoothing_cross_entropy, "label_smoothing_cross_entropy",
                            logits=logits, labels=labels, smoothing=float(smoothing))
        got_loss, got_grad = unpack(call.result, "label_smoothing_cross_entropy", ("loss", "dL_dlogits"))
        y = one_hot(labels, c)
        wrong_targets = [(1 - smoothing) * y + smoothing / (c - 1) * (1 - y),  # spread over the C-1 others
                         y + smoothing / c,                                    # mass never taken from the label
                         (1 - smoothing) * y + smoothing,                      # eps per class, not eps / C
                         (1 - smoothing) * y + smoothing / n]                  # eps / N: the batch size, not C
        wrong = [_soft_cross_entropy(logits, t) for t in wrong_targets]
        where = f"N={n}, C={c}, smoothing={smoothing:g}"
        check.compare("loss", got_loss, loss.item(), call, case=where, mean_count=n,
                      variants=exclusive({"label-smoothing-mass": [w[0] for w in wrong],
                                          "negative-cross-entropy": -loss.item()}, loss.item()))
        check.compare("dL/dlogits", got_grad, lt.grad.numpy(), call, case=where, mean_count=n,
                      variants=exclusive({"label-smoothing-mass": [w[1] for w in wrong]}, lt.grad.numpy()))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 6: entropy and KL divergence of categorical distributions
# ---------------------------------------------------------------------------


def _distributions(seed, n, c):
    """Two batches of strictly positive distributions, and a copy of the first with exact zeros."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(c, 2.0), size=n)
    q = rng.dirichlet(np.full(c, 2.0), size=n)
    p_zeros = p.copy()
    p_zeros[:, rng.integers(0, c - 1)] = 0.0  # a class no row can have
    p_zeros[0, :-1] = 0.0  # one row is certain (all mass on the last class): entropy 0
    p_zeros /= p_zeros.sum(axis=1, keepdims=True)
    return p, q, p_zeros


def _entropy_torch(p):
    return torch.special.entr(_t(p)).sum(dim=-1).numpy()


def _kl_torch(p, q):
    # F.kl_div(log q, p) = p * (log p - log q), with 0 * log 0 taken as 0.
    return F.kl_div(torch.log(_t(q)), _t(p), reduction="none").sum(dim=-1).numpy()


def _kl_numpy(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def check_entropy_kl(entropy, kl_divergence, seed=0, n=4, c=5):
    """Check ``entropy(p)`` and ``kl_divergence(p, q)`` (natural log, along the last axis).

    Three cases: strictly positive ``p`` and ``q`` (where swapping the
    arguments gives a different finite number), ``KL(p || p) = 0``, and ``p``
    with exact zeros (where 0 * log 0 must count as 0).
    """
    check = ExerciseCheck("entropy and kl_divergence", reference="torch entr / kl_div")
    p, q, p_zeros = _distributions(seed, n, c)
    cases = (("p > 0", p), ("p with zeros", p_zeros))

    def entropy_part():
        for label, dist in cases:
            call = call_student(entropy, "entropy", p=dist)
            expected = _entropy_torch(dist)
            safe = np.where(dist > 0, dist, 1.0)
            check.compare("H(p)", call.result, expected, call, case=label,
                          variants=exclusive({"log-base-two": expected / np.log(2.0),
                                              # summed over the batch axis: one value per class (n != c)
                                              "wrong-axis-reduction": -np.sum(dist * np.log(safe), axis=0)
                                              if dist.shape[0] != dist.shape[1] else None}, expected))

    def kl_part():
        for label, dist in cases:
            call = call_student(kl_divergence, "kl_divergence", p=dist, q=q)
            expected = _kl_torch(dist, q)
            check.compare("KL(p || q)", call.result, expected, call, case=label,
                          variants=exclusive({"kl-arguments-swapped": _kl_numpy(q, dist) if label == "p > 0" else None,
                                              "log-base-two": expected / np.log(2.0)}, expected))
            if label == "p > 0":
                call = call_student(kl_divergence, "kl_divergence", p=dist, q=dist.copy())
                check.compare("KL(p || p)", call.result, np.zeros(n), call, case="q = p")

    outcomes = {"entropy": _outcome(entropy_part), "kl_divergence": _outcome(kl_part)}
    check.cases = len(cases)
    return score_parts(POINTS["check_entropy_kl"], outcomes, check.passed, "check_entropy_kl")


# ---------------------------------------------------------------------------
# Exercise 7: KL divergence between two Gaussians
# ---------------------------------------------------------------------------


def _gaussian_kl_numpy(mu_p, sigma_p, mu_q, sigma_q):
    return (np.log(sigma_q / sigma_p) + (sigma_p ** 2 + (mu_p - mu_q) ** 2) / (2 * sigma_q ** 2) - 0.5)


def check_gaussian_kl(gaussian_kl, seed=0, size=6):
    """Check ``gaussian_kl(mu_p, sigma_p, mu_q, sigma_q)`` = KL(N(mu_p, sigma_p^2) || N(mu_q, sigma_q^2)),
    elementwise, against ``torch.distributions.kl_divergence``. Includes a pair of equal Gaussians.
    """
    check = ExerciseCheck("gaussian_kl", reference="torch.distributions.kl_divergence")
    rng = np.random.default_rng(seed)
    mu_p, mu_q = rng.normal(0.0, 1.5, size=size), rng.normal(0.0, 1.5, size=size)
    sigma_p, sigma_q = rng.uniform(0.3, 2.5, size=size), rng.uniform(0.3, 2.5, size=size)
    mu_q[0], sigma_q[0] = mu_p[0], sigma_p[0]  # identical pair: KL = 0
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(_t(mu_p), _t(sigma_p)), torch.distributions.Normal(_t(mu_q), _t(sigma_q)))
    call = call_student(gaussian_kl, "gaussian_kl", mu_p=mu_p, sigma_p=sigma_p, mu_q=mu_q, sigma_q=sigma_q)
    dmu = mu_p - mu_q
    sigma_as_var = [  # sigma where sigma**2 belongs: in the variance ratio only, in the mean term only, or both
        0.5 * (sigma_p / sigma_q + (dmu / sigma_q) ** 2 - 1.0) - np.log(sigma_p / sigma_q),
        0.5 * ((sigma_p / sigma_q) ** 2 + dmu ** 2 / sigma_q - 1.0) - np.log(sigma_p / sigma_q),
        0.5 * (sigma_p / sigma_q + dmu ** 2 / sigma_q - 1.0 - np.log(sigma_p / sigma_q))]
    check.compare("KL(p || q)", call.result, expected.numpy(), call,
                  variants=exclusive({"kl-arguments-swapped": _gaussian_kl_numpy(mu_q, sigma_q, mu_p, sigma_p),
                                      "std-used-as-variance": sigma_as_var}, expected.numpy()))
    check.cases = 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 8: maximum-likelihood estimates
# ---------------------------------------------------------------------------


def check_mle(bernoulli_mle, gaussian_mle, seed=0, n_samples=10):
    """Check ``bernoulli_mle(x) -> p_hat`` and ``gaussian_mle(x) -> (mu_hat, var_hat)``.

    The reference maximises the likelihood with PyTorch: the closed forms
    ``torch.mean`` and ``torch.var(correction=0)``, confirmed by a zero
    autograd gradient of the negative log-likelihood at that point.
    """
    check = ExerciseCheck("mle", reference="torch mean / var(correction=0)")
    rng = np.random.default_rng(seed)
    flips = (rng.random(n_samples) < 0.3).astype(np.float64)
    flips[:2] = (1.0, 0.0)  # never all equal: p_hat strictly inside (0, 1)
    x = rng.normal(1.5, 2.0, size=n_samples)

    p_ref = torch.mean(_t(flips))
    mu_ref, var_ref = torch.mean(_t(x)), torch.var(_t(x), correction=0)
    # The closed forms are stationary points of the NLL (autograd agrees to rounding).
    params = _leaf([p_ref.item(), mu_ref.item(), var_ref.item()])
    bern = -(_t(flips) * torch.log(params[0]) + (1 - _t(flips)) * torch.log(1 - params[0])).sum()
    gauss = F.gaussian_nll_loss(params[1].expand(n_samples), _t(x), params[2].expand(n_samples),
                                full=True, reduction="sum")
    (bern + gauss).backward()
    if float(params.grad.abs().max()) > 1e-8:
        raise RuntimeError("internal: the reference MLE is not a stationary point of the NLL")

    def bernoulli_part():
        call = call_student(bernoulli_mle, "bernoulli_mle", x=flips)
        check.compare("p_hat", _scalar(call.result), p_ref.item(), call,
                      case=f"n={n_samples}")

    def gaussian_part():
        call = call_student(gaussian_mle, "gaussian_mle", x=x)
        mu_hat, var_hat = unpack(call.result, "gaussian_mle", ("mu_hat", "var_hat"))
        check.compare("mu_hat", _scalar(mu_hat), mu_ref.item(), call, case=f"n={n_samples}")
        check.compare("var_hat", _scalar(var_hat), var_ref.item(), call,
                      case=f"n={n_samples}",
                      variants=exclusive({"mle-unbiased-variance": var_ref.item() * n_samples / (n_samples - 1),
                                          "std-used-as-variance": np.sqrt(var_ref.item())}, var_ref.item()))

    outcomes = {"bernoulli_mle": _outcome(bernoulli_part), "gaussian_mle": _outcome(gaussian_part)}
    check.cases = 1
    return score_parts(POINTS["check_mle"], outcomes, check.passed, "check_mle")


# ---------------------------------------------------------------------------
# Exercise 9: Gaussian negative log-likelihood and its gradient
# ---------------------------------------------------------------------------


def check_gaussian_nll(gaussian_nll, seed=0, shapes=((6, 1),), var=0.3):
    """Check ``gaussian_nll(y_pred, y_true, var) -> (loss, dL_dy_pred)`` (mean over every element,
    constant included) against ``F.gaussian_nll_loss(full=True)`` and autograd.

    Keep ``var`` away from 0.5, 1 and 2: there var**2 and 2 * var (or var) coincide, so using var as a
    standard deviation would look like a factor of two.
    """
    check = ExerciseCheck("gaussian_nll", reference="torch gaussian_nll_loss(full=True)")
    for k, shape in enumerate(shapes):
        rng = np.random.default_rng(seed + k)
        y_pred, y_true = rng.normal(size=shape), rng.normal(size=shape)
        yt = _leaf(y_pred)
        loss = F.gaussian_nll_loss(yt, _t(y_true), torch.full(shape, var, dtype=DT), full=True)
        loss.backward()
        call = call_student(gaussian_nll, "gaussian_nll", y_pred=y_pred, y_true=y_true, var=float(var))
        got_loss, got_grad = unpack(call.result, "gaussian_nll", ("loss", "dL_dy_pred"))
        count = y_pred.size
        where = f"shape {shape}, var={var:g}"
        diff = y_pred - y_true
        var_as_std = [  # var used as a standard deviation: squared in the quadratic term and/or the log
            float(np.mean(0.5 * np.log(2.0 * np.pi * var) + diff ** 2 / (2.0 * var ** 2))),
            float(np.mean(0.5 * np.log(2.0 * np.pi * var ** 2) + diff ** 2 / (2.0 * var ** 2))),
            float(np.mean(0.5 * np.log(2.0 * np.pi * var ** 2) + diff ** 2 / (2.0 * var)))]
        check.compare("loss", got_loss, loss.item(), call, case=where, mean_count=count,
                      variants=exclusive({"std-used-as-variance": var_as_std}, loss.item()))
        check.compare("dL/dy_pred", got_grad, yt.grad.numpy(), call, case=where, mean_count=count,
                      variants=exclusive({"batch-size-scaling": diff / (var * shape[0]),
                                          "std-used-as-variance": diff / (var ** 2 * count)}, yt.grad.numpy()))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 10: gradient of cross-entropy vs MSE with respect to the logit
# ---------------------------------------------------------------------------


def check_logit_gradients(logit_gradients, seed=0, size=8):
    """Check ``logit_gradients(z, y) -> (dBCE_dz, dMSE_dz)`` per example, for p = sigmoid(z),
    BCE = -[y log p + (1 - y) log(1 - p)] and MSE = (p - y)^2.

    The logits include confidently wrong ones (|z| up to 30).
    """
    check = ExerciseCheck("logit_gradients")
    rng = np.random.default_rng(seed)
    z = rng.uniform(-8.0, 8.0, size=size)
    y = rng.integers(0, 2, size=size).astype(np.float64)
    z[:2], y[:2] = (-30.0, 30.0), (1.0, 0.0)  # confidently wrong: MSE's gradient vanishes here

    zt = _leaf(z)
    F.binary_cross_entropy_with_logits(zt, _t(y), reduction="sum").backward()
    dbce = zt.grad.numpy().copy()
    zt = _leaf(z)
    ((torch.sigmoid(zt) - _t(y)) ** 2).sum().backward()
    dmse = zt.grad.numpy().copy()

    call = call_student(logit_gradients, "logit_gradients", z=z, y=y)
    got_bce, got_mse = unpack(call.result, "logit_gradients", ("dBCE_dz", "dMSE_dz"))
    p = sigmoid(z)
    check.compare("dBCE/dz", got_bce, dbce, call,
                  variants={"grad-wrt-activation-output": (p - y) / (p * (1 - p))})
    check.compare("dMSE/dz", got_mse, dmse, call, variants={"grad-wrt-activation-output": 2 * (p - y)})
    check.cases = 1
    return check.passed()
