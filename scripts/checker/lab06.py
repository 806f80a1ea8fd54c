"""Checks for lab 06 (training dynamics: initialisation, gradient flow, debugging runs).

Students may use PyTorch inside the exercises of this lab (``NUMPY_ONLY = False``),
but every function takes and returns plain data: weights arrive as lists of numpy
arrays and the network is built inside the function with the trusted builders of
``nets``; results go back as numpy arrays, floats, ints or strings. Each check
builds the same network with the same builders, computes the reference with
PyTorch in float64 (autograd, ``torch.optim``, ``clip_grad_norm_``, forward hooks),
and passes what the catalogued mistakes would produce on the same inputs (the
*variants*, computed with trusted code) so a failure names the misconception.

The initialisation exercise is random by nature: its check compares sample
variances of many draws with the target variance, with a tolerance that is many
standard errors wide (see :data:`VARIANCE_TOL`), and the activation statistics
of deep networks built from the student's draws with their mean-field
(infinite-width) prediction.

Visible checks use the default seeds; the hidden checks in the grade cells pass
other seeds, shapes and options.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from nets import build_faulty_net, build_mlp, mlp_weights

from .compare import GRADIENT_TOL, CheckFailure, Tolerance, describe_type
from .exercise import ExerciseCheck, charges_once, outcome, score_parts
from .student import Call, MadeBy, call_student, refuse_tensor
from .variants import exclusive

#: Students may use PyTorch inside this lab's exercises (they still return plain data).
NUMPY_ONLY = False
#: Modules the checks import on first use, which the sandbox server imports once before it forks:
#: an optimizer's first ``step`` imports ``torch._dynamo`` (about a second), which every forked
#: sandbox would otherwise pay again.
SANDBOX_PRELOAD = ("torch._dynamo",)

DT = torch.float64

#: Sample variances of >= 2**18 draws have a relative standard error below sqrt(2 / 2**18) = 0.28 %;
#: 3 % is more than ten of them, and far from every catalogued mistake (a factor of 2 or more).
VARIANCE_TOL = Tolerance(atol=0.0, rtol=0.03)
#: Root-mean-square activations of 10-layer, width-256 ReLU networks averaged over 6 draws scatter by
#: about 5.5 % (one standard deviation, at layer 10) around the mean-field prediction for a correct He
#: initialisation; 30 % is five of them. The catalogued mistakes are off by a factor of 30 or more at layer 10.
ACTIVATION_TOL = Tolerance(atol=0.0, rtol=0.3)
#: Gradient norms span many orders of magnitude in a deep sigmoid network: relative error only.
NORM_TOL = Tolerance(atol=0.0, rtol=1e-7)
#: Two equivalent float64 training loops (LinearLR or a hand-written warmup, clip_grad_norm_ or
#: its formula) differ by rounding, amplified a little over a few dozen steps.
LOOP_TOL = Tolerance(atol=1e-12, rtol=1e-7)
#: Epoch indices and one-hot choices are exact.
EXACT_TOL = Tolerance(atol=0.0, rtol=0.0)

__all__ = [
    "NUMPY_ONLY", "VARIANCE_TOL", "ACTIVATION_TOL", "DIAGNOSIS_OPTIONS",
    "check_init", "check_grad_norms", "check_warmup_clipping", "check_nan_locator",
    "check_accumulation", "check_early_stopping", "check_diagnosis",
    "meanfield_rms", "regression_data", "check_overfit_batch", "planted_label_bug",
]


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=DT)


def regression_data(seed: int, n_samples: int, n_in: int, n_out: int = 1, scale: float = 1.0):
    """A seeded regression task: Gaussian inputs and smooth targets from a random tanh teacher.

    Trusted course code; the notebook and the checks use it for every regression task.

    Parameters
    ----------
    seed, n_samples, n_in : int
    n_out : int, default 1
    scale : float, default 1.0
        The targets lie in ``(-scale, scale)``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_in)
    y : ndarray of shape (n_samples, n_out), ``scale * tanh(2 X T)`` for a random ``T`` of shape (n_in, n_out)
        with entries of variance ``1 / n_in``.
    """
    rng = np.random.default_rng(seed + 6000)
    X = rng.normal(size=(n_samples, n_in))
    teacher = rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)
    return X, scale * np.tanh(2.0 * X @ teacher)




def _as_array(result, name: str):
    """A list or tuple of plain numbers becomes a float64 array; anything else is left for compare to judge."""
    if not isinstance(result, (list, tuple)):
        return result
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in result):
        return np.array([float(v) for v in result], dtype=np.float64)
    kinds = sorted({describe_type(v) for v in result})
    raise CheckFailure(f"{name} must return a numpy array of floats; it returned a {describe_type(result)} of "
                       f"{', '.join(kinds)}. Turn a tensor into a number with `.item()`.", "wrong-return-type")


def _array_list(result, name: str, n: int, what: str) -> list:
    if not isinstance(result, (list, tuple)) or len(result) != n:
        got = f"a {describe_type(result)}" + (f" of length {len(result)}" if isinstance(result, (list, tuple)) else "")
        raise CheckFailure(f"{name} must return {what} ({n} here); it returned {got}.", "wrong-return-type")
    for item in result:
        refuse_tensor(item, name)
    return list(result)


# ---------------------------------------------------------------------------
# Exercise 1: Xavier and He initialisation
# ---------------------------------------------------------------------------

#: (n_in, n_out) of the visible variance check: clearly non-square, so fan-in and fan-out differ.
INIT_SHAPES = ((64, 256), (300, 50))
MIN_DRAWS = 2 ** 18


def _plain_matrix(value, name: str, shape) -> np.ndarray:
    """The student's draw as a float64 array of ``shape``, or a failure saying what is wrong."""
    refuse_tensor(value, name)
    if type(value) is not np.ndarray or value.dtype.kind not in "f":
        raise CheckFailure(f"{name} must return a float numpy array; it returned a {describe_type(value)}.",
                           "wrong-return-type")
    if value.shape != tuple(shape):
        raise CheckFailure(f"{name} returned shape {value.shape}; a weight matrix for h @ W has shape "
                           f"(n_in, n_out) = {tuple(shape)}.", "wrong-return-type")
    return np.array(value, dtype=np.float64)


def _draws(fn, name: str, n_in: int, n_out: int, seed: int, min_draws: int = MIN_DRAWS):
    """Enough seeded draws of ``fn`` to reach ``min_draws`` entries; also checks seeding."""
    per_call = n_in * n_out
    n_calls = max(2, -(-min_draws // per_call))
    samples, caught = [], []
    for j in range(n_calls):
        call = call_student(fn, name, n_in=n_in, n_out=n_out, seed=seed + j)
        samples.append(_plain_matrix(call.result, name, (n_in, n_out)))
        caught += call.warnings
    again = _plain_matrix(call_student(fn, name, n_in=n_in, n_out=n_out, seed=seed).result, name, (n_in, n_out))
    if not np.array_equal(again, samples[0]):
        raise CheckFailure(f"{name}(n_in={n_in}, n_out={n_out}, seed={seed}) returned different arrays on two "
                           f"calls: draw from np.random.default_rng(seed) so that a seed fixes the draw.",
                           "wrong-return-type")
    if np.array_equal(samples[0], samples[1]):
        raise CheckFailure(f"{name} returned the same array for seeds {seed} and {seed + 1}: use the seed "
                           f"(rng = np.random.default_rng(seed)) for the draw.", "wrong-return-type")
    return np.concatenate([s.ravel() for s in samples]), caught


#: How close (relative, on every entry) sample statistics must come to what a mistake produces for the
#: check to name it. The catalogued mistakes are a factor of 2 or more away from the right values, and
#: sample error is a few per cent, so the bands never overlap.
VARIANT_BAND = 0.25


def _fitting_variants(received: np.ndarray, predicted: dict) -> dict:
    """The mistakes whose predicted statistics ``received`` fits within :data:`VARIANT_BAND`.

    Sample statistics are random, so the catalogue's exact-match detectors cannot compare them with
    a mistake's prediction directly: this check judges the fit and hands the detector the received
    values themselves for the one mistake they fit (and nothing for the others). When they fit
    several, the values go under the tuple of those names, as :func:`checker.variants.exclusive`
    does: the message lists the candidates and names none.
    """
    fitting = {}
    for name, options in predicted.items():
        for option in options:
            option = np.asarray(option, dtype=np.float64)
            if option.shape == received.shape and np.all(np.isfinite(received)) and np.all(
                    np.abs(received - option) <= VARIANT_BAND * np.abs(option)):
                fitting[name] = received.copy()
    if len(fitting) > 1:
        return {tuple(sorted(fitting)): received.copy()}
    return fitting


def _variance_case(check, fn, name, shapes, seed, target, variants):
    """Pooled sample variance and mean of many draws per shape, against ``target(n_in, n_out)``."""
    got_var, got_mean, want_var, caught, n_min = [], [], [], [], None
    for k, (n_in, n_out) in enumerate(shapes):
        values, w = _draws(fn, name, n_in, n_out, seed + 100 * k)
        got_var.append(float(np.mean(values ** 2) - np.mean(values) ** 2))
        got_mean.append(float(np.mean(values)))
        want_var.append(target(n_in, n_out))
        caught += w
        n_min = values.size if n_min is None else min(n_min, values.size)
    call = Call(None, caught, [])
    where = "shapes (n_in, n_out) " + ", ".join(str(s) for s in shapes)
    predicted = {m: [np.array([f(a, b) for a, b in shapes]) for f in fs] for m, fs in variants.items()}
    check.compare("sample variance of the weights", np.array(got_var), np.array(want_var), call, case=where,
                  tol=VARIANCE_TOL, reference="the target variance",
                  variants=_fitting_variants(np.array(got_var), predicted))
    # Six standard errors of the mean, sd / sqrt(n), for the largest target variance.
    mean_tol = Tolerance(atol=6.0 * np.sqrt(max(want_var) / n_min), rtol=0.0)
    check.compare("sample mean of the weights", np.array(got_mean), np.zeros(len(shapes)), call, case=where,
                  tol=mean_tol, reference="zero mean")
    check.cases += len(shapes)


def meanfield_rms(activation: str, gain: float, depth: int, input_var: float = 1.0) -> np.ndarray:
    """Root-mean-square activation of each layer of an infinitely wide network (mean-field recursion).

    With ``Var(W) = gain / n_in`` and no biases, layer l's pre-activations are Gaussian with
    variance ``q_l = gain * E[h_{l-1}**2]``; the expectation over that Gaussian is taken with
    80-point Gauss-Hermite quadrature.

    Parameters
    ----------
    activation : {"relu", "tanh", "sigmoid", "identity"}
    gain : float
        ``n_in * Var(W)``: 2 for He, 1 for Xavier with ``n_in = n_out``.
    depth : int
    input_var : float
        Variance of the (zero-mean Gaussian) input.

    Returns
    -------
    ndarray of shape (depth,)
        ``sqrt(E[h_l**2])`` for l = 1..depth.
    """
    fns = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
           "identity": lambda z: z}
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    second_moment, out = input_var, []
    for _ in range(depth):
        q = gain * second_moment
        second_moment = float(np.sum(weights * fns[activation](np.sqrt(q) * nodes) ** 2))
        out.append(np.sqrt(second_moment))
    return np.array(out)


def _activation_rms(fn, name, activation, width, depth, n_nets, seed, n_samples=64):
    """RMS activation per layer of ``n_nets`` networks drawn with the student's function, averaged."""
    act = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[activation]
    rms, caught = np.zeros(depth), []
    for net in range(n_nets):
        h = np.random.default_rng(seed + 7919 * net).normal(size=(n_samples, width))
        for layer in range(depth):
            call = call_student(fn, name, n_in=width, n_out=width, seed=seed + 1000 * net + layer)
            caught += call.warnings
            h = act(h @ _plain_matrix(call.result, name, (width, width)))
            rms[layer] += np.sqrt(np.mean(h * h)) / n_nets
    return rms, caught


#: Variance each catalogued mistake gives, as a function of (n_in, n_out): the wrong fan, the other
#: scheme's variance, or the variance passed as a standard deviation.
XAVIER_MISTAKES = {"xavier-variance-wrong": [lambda a, b: 2.0 / a, lambda a, b: 2.0 / b, lambda a, b: 1.0 / (a + b)],
                   "init-std-as-variance": [lambda a, b: (2.0 / (a + b)) ** 2]}
HE_MISTAKES = {"he-variance-wrong": [lambda a, b: 2.0 / b, lambda a, b: 1.0 / a, lambda a, b: 2.0 / (a + b)],
               "init-std-as-variance": [lambda a, b: (2.0 / a) ** 2]}


#: The points of Exercise 1's grade cell, shared by xavier_normal and he_normal, and of Exercise 4's,
#: shared by nonfinite_modules and first_nonfinite_module (partial credit per function:
#: checker.exercise.score_parts); tests/unit/test_partial_credit.py keeps them equal to the notebook's.
INIT_POINTS = 3.0
POINTS = {"check_init": INIT_POINTS, "check_nan_locator": 2.0}


def check_init(xavier_normal, he_normal, seed=0, shapes=INIT_SHAPES, width=256, depth=10, n_nets=6):
    """Check ``xavier_normal(n_in, n_out, seed)`` and ``he_normal(n_in, n_out, seed)``, each for its own points.

    1. Statistically: the pooled sample variance of many seeded draws (>= 2**18 entries per
       shape) is within 3 % of 2 / (n_in + n_out) (Xavier) and 2 / n_in (He), and the sample
       mean within six standard errors of 0.
    2. By the activations they produce: ``depth``-layer networks of width ``width`` (ReLU with
       He, tanh with Xavier; inputs N(0, 1)) keep the root-mean-square activation of each layer,
       averaged over ``n_nets`` networks, within 30 % of its mean-field prediction.
    """
    by_variance = ExerciseCheck("xavier_normal / he_normal", reference="the target variance", tol=VARIANCE_TOL)
    by_activations = ExerciseCheck("xavier_normal / he_normal", reference="the mean-field prediction",
                                   tol=ACTIVATION_TOL)

    def part(fn, name, variance_seed, target, mistakes, activation, gain, wrong):
        def run():
            _variance_case(by_variance, fn, name, shapes, variance_seed, target, mistakes)
            got, caught = _activation_rms(fn, name, activation, width, depth, n_nets, seed + 500)
            expected = meanfield_rms(activation, gain, depth)
            predicted = {m: [meanfield_rms(activation, g, depth)] for m, g in wrong.items()}
            predicted["init-std-as-variance"] = [meanfield_rms(activation, gain ** 2 / width, depth)]
            by_activations.compare(f"RMS activations of a {activation} network ({name})", got, expected,
                                   Call(None, caught, []),
                                   case=f"{depth} layers of width {width}, mean of {n_nets} networks",
                                   variants=_fitting_variants(got, predicted))
            by_activations.cases += 1
        return run

    outcomes = {
        "xavier_normal": outcome(part(xavier_normal, "xavier_normal", seed, lambda a, b: 2.0 / (a + b),
                                      XAVIER_MISTAKES, "tanh", 1.0, {"xavier-variance-wrong": 2.0})),
        "he_normal": outcome(part(he_normal, "he_normal", seed + 50, lambda a, b: 2.0 / a,
                                  HE_MISTAKES, "relu", 2.0, {"he-variance-wrong": 1.0})),
    }

    def summary():
        by_variance.passed()
        by_activations.passed()

    return score_parts(INIT_POINTS, outcomes, summary, "check_init")


# ---------------------------------------------------------------------------
# Exercise 2: the per-layer gradient-norm probe
# ---------------------------------------------------------------------------

#: (activation, residual, norm, sizes) of the visible cases.
GRAD_NORM_CASES = (
    ("sigmoid", False, None, (6, 16, 16, 16, 16, 16, 16, 1)),
    ("relu", True, "layer", (5, 12, 12, 12, 12, 2)),
    ("tanh", False, "batch", (4, 10, 10, 10, 3)),
)


def _reference_grad_norms(weights, biases, X, y, activation, residual, norm):
    model = build_mlp(weights, biases, activation, residual, norm)
    loss = F.mse_loss(model(_t(X)), _t(y))
    grads = torch.autograd.grad(loss, [layer.weight for layer in model.linears])
    return np.array([float(g.norm()) for g in grads])


def check_grad_norms(per_layer_grad_norms, seed=0, cases=GRAD_NORM_CASES, n_samples=32):
    """Check ``per_layer_grad_norms(weights, biases, X, y, activation, residual, norm) -> (n_layers,)``:
    the Frobenius norm of dL/dW of every linear layer, input to output, for the mean squared error,
    against autograd."""
    check = ExerciseCheck("per_layer_grad_norms", reference="torch autograd", tol=NORM_TOL)
    for j, (activation, residual, norm, sizes) in enumerate(cases):
        init = "he" if activation == "relu" else "xavier"
        weights, biases = mlp_weights(sizes, seed + j, init, bias_std=0.1)
        X, y = regression_data(seed + j, n_samples, sizes[0], sizes[-1])
        expected = _reference_grad_norms(weights, biases, X, y, activation, residual, norm)
        call = call_student(per_layer_grad_norms, "per_layer_grad_norms", weights=weights, biases=biases,
                            X=X, y=y, activation=activation, residual=residual, norm=norm)
        refuse_tensor(call.result, "per_layer_grad_norms")
        result = _as_array(call.result, "per_layer_grad_norms")
        case = (f"{activation}, sizes {'-'.join(map(str, sizes))}, residual={residual}, norm={norm!r}")
        # mean_count: a sum-reduced loss scales every norm by y.size (batch-size-scaling).
        check.compare("gradient norms", result, expected, call, case=case, mean_count=y.size,
                      variants=exclusive({"norm-not-rooted": expected ** 2}, expected))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 3: warmup and clipping in a training loop
# ---------------------------------------------------------------------------

MOMENTUM = 0.9


def _reference_run(weights, biases, X, y, lr, warmup_steps, start_factor, max_norm, n_steps, mistake=None):
    """The training loop of the exercise, right or with one named mistake (trusted code)."""
    model = build_mlp(weights, biases, "relu")
    X, y = _t(X), _t(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_steps)
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when the scheduler steps first: that is one variant
        for _ in range(n_steps):
            if mistake != "missing-zero-grad":
                optimizer.zero_grad()
            loss = F.mse_loss(model(X), y)
            losses.append(loss.item())
            loss.backward()
            if mistake == "clipping-per-tensor":
                for p in model.parameters():
                    torch.nn.utils.clip_grad_norm_(p, max_norm)
            elif mistake not in ("clipping-after-step", "no-clipping"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            if mistake == "scheduler-before-optimizer":
                scheduler.step()
            optimizer.step()
            if mistake == "clipping-after-step":
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # changes .grad after its last use
            if mistake not in ("scheduler-before-optimizer", "no-scheduler-step"):
                scheduler.step()
    return np.array(losses)


#: Visible cases: (seed, sizes, lr, warmup_steps, start_factor, max_norm, n_steps). Clipping is
#: active in most steps and every mistake's run stays finite, so each one is recognised.
WARMUP_CASES = ((0, (8, 32, 32, 1), 0.1, 10, 0.1, 1.0, 30),)


def _warmup_variants(weights, biases, X, y, hyper, expected):
    """What each catalogued mistake of the loop gives on one case, through :func:`exclusive`.

    Called after the student's function has run (on copies of these inputs), so with grad mode
    switched on again whatever that function left it at.
    """
    with torch.enable_grad():
        variants = {m: _reference_run(weights, biases, X, y, **hyper, mistake=m)
                    for m in ("clipping-after-step", "missing-zero-grad", "clipping-per-tensor")}
        variants["schedule-off-by-one"] = [_reference_run(weights, biases, X, y, **hyper, mistake=m)
                                           for m in ("scheduler-before-optimizer", "no-scheduler-step")]
    return exclusive(variants, expected)


def check_warmup_clipping(train_with_warmup_and_clipping, cases=WARMUP_CASES):
    """Check ``train_with_warmup_and_clipping(weights, biases, X, y, lr, warmup_steps, start_factor,
    max_norm, n_steps) -> losses (n_steps,)`` against the same loop written with ``torch.optim.SGD``
    (momentum 0.9), ``LinearLR`` and ``clip_grad_norm_``, step for step."""
    check = ExerciseCheck("train_with_warmup_and_clipping", reference="the torch.optim training loop", tol=LOOP_TOL)
    for seed, sizes, lr, warmup_steps, start_factor, max_norm, n_steps in cases:
        weights, biases = mlp_weights(sizes, seed + 3, "he", bias_std=0.1)
        X, y = regression_data(seed, 64, sizes[0], sizes[-1], scale=2.0)
        hyper = dict(lr=lr, warmup_steps=warmup_steps, start_factor=start_factor, max_norm=max_norm, n_steps=n_steps)
        expected = _reference_run(weights, biases, X, y, **hyper)
        call = call_student(train_with_warmup_and_clipping, "train_with_warmup_and_clipping", weights=weights,
                            biases=biases, X=X, y=y, **hyper)
        refuse_tensor(call.result, "train_with_warmup_and_clipping")
        result = _as_array(call.result, "train_with_warmup_and_clipping")
        case = f"sizes {'-'.join(map(str, sizes))}, " + ", ".join(f"{k}={v}" for k, v in hyper.items())
        # The five mistaken runs are made only if the comparison fails (they cost five times the reference).
        variants = functools.partial(_warmup_variants, weights, biases, X, y, hyper, expected)
        check.compare("loss at every step", result, expected, call, case=case, variants=variants)
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 4: the NaN/Inf locator
# ---------------------------------------------------------------------------

#: Visible cases (seed, fault): one of each kind of fault (seed % 4), and a healthy network.
NAN_CASES = ((0, 2), (1, 0), (2, 4), (3, 3), (4, None))


def _trace(model, x):
    """Module names in the order their forward hooks fire (first firing), the non-finite ones, and
    the names in registration order (``model.named_modules()``)."""
    order, bad = [], []

    def hook_for(name):
        def hook(module, inputs, output):
            if name not in order:
                order.append(name)
            if isinstance(output, torch.Tensor) and not bool(torch.isfinite(output).all()):
                bad.append(name)
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    registration = [n for n, _ in model.named_modules()]
    return order, bad, registration


def _forward_trace(seed, fault):
    return _trace(*build_faulty_net(seed, fault))


def _nonfinite_modules(model, x):
    """Exercise 4's ``nonfinite_modules`` as a correct submission has it: ``first_nonfinite_module``
    built on a wrong one is checked with this in its place (a mistake charged once)."""
    return list(_trace(model, x)[1])


def _position(order, name):
    return -1.0 if name is None else float(order.index(name))


def _check_nonfinite_modules(check, nonfinite_modules, traces):
    """``nonfinite_modules(model, x)`` on each case's faulty net, built where the function runs
    (under make grade, in the sandbox: ``MadeBy``), against forward hooks in the grader."""
    for (seed, fault), (order, bad, registration) in traces.items():
        made = MadeBy("nets", "build_faulty_net", seed=seed, fault=fault)
        call = call_student(nonfinite_modules, "nonfinite_modules", model=made[0], x=made[1])
        got = call.result
        if not isinstance(got, (list, tuple)) or not all(isinstance(n, str) and n in order for n in got):
            raise CheckFailure(
                f"nonfinite_modules(model, x) for build_faulty_net(seed={seed}, fault={fault}) returned {got!r}; "
                f"return a list of module names as model.named_modules() gives them (such as {order[0]!r}), "
                f"[] if every output is finite.", "wrong-return-type")
        check.compare("positions in execution order of the modules returned", np.array([_position(order, n) for n in got]),
                      np.array([_position(order, n) for n in bad]), call,
                      case=f"build_faulty_net(seed={seed}, fault={fault}): you returned {list(got)!r}, the non-finite "
                           f"outputs come from {bad!r}, in this order")
        check.cases += 1


@charges_once(nonfinite_modules=(_nonfinite_modules, "its own part of this exercise"))
def _check_first_nonfinite_module(check, first_nonfinite_module, traces):
    """``first_nonfinite_module(seed, fault)``; when it calls a wrong ``nonfinite_modules``, it keeps its
    share if it is right given a right one."""
    for (seed, fault), (order, bad, registration) in traces.items():
        expected = bad[0] if bad else None
        call = call_student(first_nonfinite_module, "first_nonfinite_module", seed=seed, fault=fault)
        got = call.result
        if got is not None and (not isinstance(got, str) or got not in order):
            raise CheckFailure(
                f"first_nonfinite_module(seed={seed}, fault={fault}) returned {got!r}; return a module name as "
                f"model.named_modules() gives it (such as {order[0]!r}), or None if every output is finite.",
                "wrong-return-type")
        wrong = []
        if bad:
            wrong.append(_position(order, bad[-1]))  # the last non-finite output: the whole model
            in_registration_order = [n for n in registration if n in bad]
            wrong.append(_position(order, in_registration_order[0]))
        wrong = [w for w in wrong if w != _position(order, expected)]
        check.compare("position in execution order of the module returned", _position(order, got),
                      _position(order, expected), call,
                      case=f"seed={seed}, fault={fault}: you returned {got!r}, the first non-finite "
                           f"output comes from {expected!r}",
                      variants={"nan-locator-not-first": wrong} if wrong else None)
        check.cases += 1


def check_nan_locator(nonfinite_modules, first_nonfinite_module, cases=NAN_CASES):
    """Check ``nonfinite_modules(model, x)`` and ``first_nonfinite_module(seed, fault)``, each for its own points.

    Both run on ``nets.build_faulty_net(seed, fault)`` for every case. ``nonfinite_modules`` must list
    the names (as in ``model.named_modules()``) of the modules whose output holds a NaN or an inf, in
    execution order; ``first_nonfinite_module`` the first of them, None when every output is finite.
    Names are compared as their positions in execution order (-1 for None). A
    ``first_nonfinite_module`` that calls a wrong ``nonfinite_modules`` keeps its share when it is
    right with a correct one in its place.
    """
    traces = {(seed, fault): _forward_trace(seed, fault) for seed, fault in cases}
    reference = "forward hooks in execution order"
    checks = {"nonfinite_modules": ExerciseCheck("nonfinite_modules", reference=reference, tol=EXACT_TOL),
              "first_nonfinite_module": ExerciseCheck("first_nonfinite_module", reference=reference, tol=EXACT_TOL)}
    outcomes = {
        "nonfinite_modules": outcome(lambda: _check_nonfinite_modules(
            checks["nonfinite_modules"], nonfinite_modules, traces)),
        "first_nonfinite_module": outcome(lambda: _check_first_nonfinite_module(
            checks["first_nonfinite_module"], first_nonfinite_module, traces)),
    }

    def summary():
        for check in checks.values():
            check.passed()

    return score_parts(POINTS["check_nan_locator"], outcomes, summary, "check_nan_locator")


# ---------------------------------------------------------------------------
# Exercise 5: gradient accumulation
# ---------------------------------------------------------------------------

#: Visible cases: (seed, sizes, n_samples, k, norm).
ACCUMULATION_CASES = ((0, (6, 16, 16, 3), 35, 5, None), (1, (5, 8, 8, 8, 4), 36, 3, "layer"))


def _big_batch_grads(weights, biases, X, y, norm):
    model = build_mlp(weights, biases, "tanh", norm=norm)
    loss = F.mse_loss(model(_t(X)), _t(y))
    return [g.numpy().copy() for g in torch.autograd.grad(loss, list(model.parameters()))]


def _last_micro_batch_grads(weights, biases, X, y, k, norm):
    """What is left when .grad is zeroed before every micro-batch: the last one's gradient / k."""
    model = build_mlp(weights, biases, "tanh", norm=norm)
    X_last, y_last = torch.chunk(_t(X), k)[-1], torch.chunk(_t(y), k)[-1]
    loss = F.mse_loss(model(X_last), y_last) / k
    return [g.numpy().copy() for g in torch.autograd.grad(loss, list(model.parameters()))]


def check_accumulation(accumulated_gradients, cases=ACCUMULATION_CASES):
    """Check ``accumulated_gradients(weights, biases, X, y, k, norm) -> list of arrays``: the
    gradients left in ``.grad`` by k micro-batches of ``loss / k`` equal the big batch's, float64."""
    check = ExerciseCheck("accumulated_gradients", reference="one big-batch backward pass", tol=GRADIENT_TOL)
    for seed, sizes, n_samples, k, norm in cases:
        weights, biases = mlp_weights(sizes, seed + 11, "xavier", bias_std=0.1)
        X, y = regression_data(seed + 11, n_samples, sizes[0], sizes[-1])
        expected = _big_batch_grads(weights, biases, X, y, norm)
        call = call_student(accumulated_gradients, "accumulated_gradients", weights=weights, biases=biases,
                            X=X, y=y, k=k, norm=norm)
        got = _array_list(call.result, "accumulated_gradients", len(expected),
                          "a list of gradient arrays in the order of model.parameters()")
        names = [n for n, _ in build_mlp(weights, biases, "tanh", norm=norm).named_parameters()]
        case = f"sizes {'-'.join(map(str, sizes))}, N={n_samples}, k={k}, norm={norm!r}"
        last_only = _last_micro_batch_grads(weights, biases, X, y, k, norm)
        micro = n_samples // k  # rows per micro-batch
        for name, g, want, last in zip(names, got, expected, last_only):
            # Micro-batch means not divided by k: their sum is k times the big batch's mean; divided by
            # the micro-batch size instead: k / micro times. A sum-reduced loss: micro * n_out times more.
            check.compare("gradients", g, want, call, case=f"{case}, {name}.grad", mean_count=micro * y.shape[1],
                          variants=exclusive({"accumulation-not-divided-by-k": [k * want, k / micro * want],
                                              "accumulation-zeroed-per-micro-batch": last}, want))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 6: early stopping
# ---------------------------------------------------------------------------


def reference_early_stopping(val_losses, patience, min_delta=0.0, mistake=None):
    """(best_epoch, stop_epoch) of the lab's early-stopping rule (trusted code).

    An epoch improves when its loss is below ``best - min_delta``; training stops at the epoch
    that completes ``patience`` epochs in a row without improvement, or runs to the last epoch.
    ``mistake`` = "comparison-at-tie" (a loss equal to best - min_delta improves) or
    "early-stopping-wait-not-reset" (the counter keeps counting after an improvement) gives what
    that mistake returns, for the check's variants.
    """
    best, best_epoch, wait = np.inf, 0, 0
    for epoch, loss in enumerate(val_losses):
        improves = loss <= best - min_delta if mistake == "comparison-at-tie" else loss < best - min_delta
        if improves:
            best, best_epoch = loss, epoch
            if mistake != "early-stopping-wait-not-reset":
                wait = 0
        else:
            wait += 1
            if wait >= patience:
                return best_epoch, epoch
    return best_epoch, len(val_losses) - 1


#: The worked curve of the notebook: best at epoch 4, stop at epoch 6 with patience 2.
WORKED_CURVE = (1.0, 0.8, 0.7, 0.72, 0.69, 0.71, 0.73, 0.74, 0.75, 0.76)
#: A plateau: epochs 3 and 4 tie the best loss exactly. With patience 3 the rule stops at epoch 5
#: (best 2); counting a tie as an improvement stops at 7 (best 4), patience off by one at 4 or 6.
PLATEAU_CURVE = (1.0, 0.8, 0.7, 0.7, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79, 0.8)
#: An improvement after a wait: with patience 3 the rule stops at epoch 7 (best 4); a counter that
#: is not reset at epoch 4 stops at epoch 5, patience off by one at 6 or 8.
RESET_CURVE = (1.0, 0.9, 0.95, 0.96, 0.85, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95)


def _val_curve(seed, n_epochs):
    """A noisy U-shaped validation curve, as an overfitting run draws it."""
    rng = np.random.default_rng(seed + 6600)
    t = np.linspace(0.0, 1.0, n_epochs)
    turn = rng.uniform(0.3, 0.6)
    return 0.5 + 2.0 * (t - turn) ** 2 + 0.03 * rng.normal(size=n_epochs)


def check_early_stopping(early_stopping, seed=0, cases=((15, 3, 0.0), (40, 5, 0.0), (40, 4, 0.01), (25, 30, 0.0))):
    """Check ``early_stopping(val_losses, patience, min_delta) -> (best_epoch, stop_epoch)`` on the
    worked curve and on seeded noisy curves ``(n_epochs, patience, min_delta)``; the last visible
    case never stops."""
    check = ExerciseCheck("early_stopping", reference="the early-stopping rule", tol=EXACT_TOL)
    inputs = ([(np.array(WORKED_CURVE), 2, 0.0), (np.array(PLATEAU_CURVE), 3, 0.0), (np.array(RESET_CURVE), 3, 0.0)]
              + [(_val_curve(seed + j, n), p, d) for j, (n, p, d) in enumerate(cases)])
    for val_losses, patience, min_delta in inputs:
        best, stop = reference_early_stopping(val_losses, patience, min_delta)
        call = call_student(early_stopping, "early_stopping", val_losses=val_losses, patience=patience,
                            min_delta=min_delta)
        if not isinstance(call.result, (tuple, list)) or len(call.result) != 2:
            raise CheckFailure(f"early_stopping must return a tuple (best_epoch, stop_epoch); it returned a "
                               f"{describe_type(call.result)}.", "wrong-return-type")
        got_best, got_stop = call.result
        for value, what in ((got_best, "best_epoch"), (got_stop, "stop_epoch")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise CheckFailure(f"early_stopping must return two ints (epoch indices); {what} is a "
                                   f"{describe_type(value)}.", "wrong-return-type")
        # Patience off by one: stopping one epoch early can also change which epoch was best so far.
        shifted = [reference_early_stopping(val_losses, p, min_delta) for p in (patience - 1, patience + 1) if p >= 1]
        case = f"{len(val_losses)} epochs, patience={patience}, min_delta={min_delta}"
        others = {m: reference_early_stopping(val_losses, patience, min_delta, mistake=m)
                  for m in ("comparison-at-tie", "early-stopping-wait-not-reset")}
        check.compare("stop_epoch", int(got_stop), stop, call, case=case, require_float64=False,
                      variants=exclusive({"early-stopping-off-by-one": [float(s) for _, s in shifted],
                                          **{m: float(s) for m, (_, s) in others.items()}}, stop))
        check.compare("best_epoch", int(got_best), best, call, case=case, require_float64=False,
                      variants=exclusive({"early-stopping-off-by-one": [float(b) for b, _ in shifted],
                                          **{m: float(b) for m, (b, _) in others.items()}}, best))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercises 7-9: diagnoses
# ---------------------------------------------------------------------------

#: The options every diagnosis chooses from (the notebook lists the same text).
DIAGNOSIS_OPTIONS = {
    "a": "the learning rate is too small: every step is too timid to move the loss",
    "b": "vanishing gradients: the error signal dies on its way back, so the early layers barely learn",
    "c": "exploding updates: a step far too large (a learning rate too high for the largest gradients, "
         "no warmup, no clipping) throws the weights out of range",
    "d": "overfitting: the network memorises the training set instead of what generalises",
    "e": "the labels do not belong to the inputs (a data-loading bug), so there is nothing to learn",
}

#: scenario -> (right option, why each wrong option does not fit the evidence).
_SCENARIOS = {
    "flat-loss": ("b", {
        "a": "a learning rate ten times larger gives the same flat curve; the step size is not what is missing",
        "c": "nothing grows: the loss never rises and no value is NaN",
        "d": "the training loss itself does not fall, so nothing is being memorised",
        "e": "the fixed network learns the same data; and the gradient norms of the first layers, tens of millions of "
             "times smaller than the last layer's, already explain the flat curve",
    }),
    "nan-loss": ("c", {
        "a": "the loss fell well for hundreds of steps; a timid step does not produce NaN",
        "b": "the gradient norm right before the NaN is hundreds of times larger than usual, not smaller",
        "d": "overfitting shows as validation loss rising while training loss keeps falling, never as NaN",
        "e": "the loss fell for hundreds of steps, so inputs and labels do belong together",
    }),
    "val-rises": ("d", {
        "a": "the training loss falls to almost zero; the steps are big enough",
        "b": "every layer learns: the training loss reaches almost zero",
        "c": "no value explodes; the losses stay finite and smooth",
        "e": "the validation loss first falls, so the network did learn something that generalises",
    }),
}


def check_diagnosis(diagnosis, scenario, calls=1):
    """Check a diagnosis function ``diagnosis() -> letter`` for ``scenario`` (flat-loss, nan-loss, val-rises).

    The choice is compared as a one-hot vector over the options. With ``calls > 1`` the function
    is called several times and must give the same answer every time (a function returning a
    random letter can pass one call by luck).
    """
    right, why_not = _SCENARIOS[scenario]
    options = sorted(DIAGNOSIS_OPTIONS)
    check = ExerciseCheck(f"diagnosis ({scenario})", reference="the evidence of the reproduction", tol=EXACT_TOL)
    answers = []
    for _ in range(calls):
        call = call_student(diagnosis, f"the diagnosis of scenario {scenario}")
        got = call.result
        if not isinstance(got, str) or got.strip().lower() not in DIAGNOSIS_OPTIONS:
            raise CheckFailure(f"the diagnosis must return one letter among {', '.join(options)}; it returned "
                               f"{got!r}.", "wrong-return-type")
        answers.append(got.strip().lower())
    if len(set(answers)) > 1:
        raise CheckFailure(f"the diagnosis of scenario {scenario} returned {answers} on {calls} calls: "
                           f"return one fixed letter.", "wrong-return-type")
    choice = answers[0]

    def one_hot(letter):
        return np.array([1.0 if o == letter else 0.0 for o in options])

    try:
        check.compare("chosen option (one-hot over a-e)", one_hot(choice), one_hot(right), call,
                      case=f"you chose ({choice})",
                      variants={"wrong-diagnosis": [one_hot(o) for o in options if o != right]})
    except CheckFailure as failure:
        raise CheckFailure(f"{failure}\n  Why not ({choice}): {why_not[choice]}.", failure.misconception) from None
    check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 10: overfit one batch, and the label bug it exposes
# ---------------------------------------------------------------------------


def planted_label_bug(seed: int, n_samples: int, n_in: int, n_classes: int, n_conflicts: int = 1):
    """A classification batch with a planted label bug (trusted course code).

    The bug is the one a merge of two annotation files produces: ``n_conflicts`` inputs appear
    twice in the batch, each time with a different label. No network can fit both copies (it
    gives identical inputs identical outputs), so the best it can do on such a pair is a
    probability near 1/2 for each label, a cross-entropy near ln 2 on both rows.

    Parameters
    ----------
    seed, n_samples, n_in, n_classes : int
    n_conflicts : int, default 1
        Number of duplicated inputs with conflicting labels (0: a clean batch).

    Returns
    -------
    X : ndarray of shape (n_samples, n_in), float64
    labels : int64 ndarray of shape (n_samples,)
    conflicting : int64 ndarray
        Sorted indices of the ``2 * n_conflicts`` rows involved.
    """
    rng = np.random.default_rng(seed + 6100)
    X = rng.normal(size=(n_samples, n_in))
    labels = rng.integers(0, n_classes, size=n_samples)
    rows = rng.choice(n_samples, size=2 * n_conflicts, replace=False)
    for original, copy in rows.reshape(-1, 2):
        X[copy] = X[original]
        labels[copy] = (labels[original] + 1 + rng.integers(0, n_classes - 1)) % n_classes
    return X, labels.astype(np.int64), np.sort(rows).astype(np.int64)


def _reference_overfit(weights, biases, X, labels, n_steps, lr, mistake=None):
    """Adam on one batch (mean cross-entropy, ReLU MLP): losses before each update and the
    per-example cross-entropy after the last one (trusted code; ``mistake`` gives a variant)."""
    model = build_mlp(weights, biases, "relu")
    X, y = _t(X), torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(n_steps):
        if mistake != "missing-zero-grad":
            optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = model(X)
        final = F.cross_entropy(logits, y, reduction="none").numpy().copy()
    return np.array(losses), final, logits.numpy().argmax(axis=1)


def _missing_zero_grad_run(weights, biases, X, labels, n_steps, lr):
    """:func:`_reference_overfit` without ``zero_grad()``, with grad mode on whatever the student's code left."""
    with torch.enable_grad():
        return _reference_overfit(weights, biases, X, labels, n_steps, lr, mistake="missing-zero-grad")


def _zero_grad_variant(run, index: int, expected):
    """The ``missing-zero-grad`` variant of item ``index`` of ``run()`` (losses, final losses)."""
    return exclusive({"missing-zero-grad": run()[index]}, expected)


def _indicator(indices, n: int) -> np.ndarray:
    flags = np.zeros(n)
    flags[np.asarray(indices, dtype=np.int64)] = 1.0
    return flags


#: Visible cases: (seed, sizes, n_samples, n_conflicts, n_steps, lr, threshold). "tie" sets the threshold
#: to one example's final loss exactly (the check's reference value), so "above" must be strict.
OVERFIT_CASES = ((0, (5, 24, 24, 3), 7, 1, 80, 0.02, 0.25), (1, (4, 16, 16, 5), 9, 0, 60, 0.02, "tie"))


def check_overfit_batch(overfit_and_flag, cases=OVERFIT_CASES):
    """Check ``overfit_and_flag(weights, biases, X, labels, n_steps, lr, threshold) -> (losses,
    final_losses, suspects)`` against the same Adam loop in float64 torch: the mean cross-entropy
    before every update, every example's cross-entropy after the last update, and the indices whose
    final loss is strictly above ``threshold`` — which must be exactly the rows of the planted label bug
    (:func:`planted_label_bug`).
    """
    check = ExerciseCheck("overfit_and_flag", reference="the torch.optim.Adam loop", tol=LOOP_TOL)
    for seed, sizes, n_samples, n_conflicts, n_steps, lr, threshold in cases:
        weights, biases = mlp_weights(sizes, seed + 7, "he", bias_std=0.1)
        X, labels, conflicting = planted_label_bug(seed, n_samples, sizes[0], sizes[-1], n_conflicts)
        losses, final, predicted = _reference_overfit(weights, biases, X, labels, n_steps, lr)
        tie = threshold == "tie"
        if tie:
            clean = np.setdiff1d(np.arange(n_samples), conflicting)
            threshold = float(np.sort(final[clean])[clean.size // 2])  # a clean example's loss, exactly
        flagged = np.flatnonzero(final > threshold)
        # The course's own guarantee: with a threshold between ln 2 and the clean rows' losses, the
        # reference run flags exactly the planted rows (a failure here is a bug in the course, not yours).
        assert tie or np.array_equal(flagged, conflicting), (seed, flagged, conflicting)
        call = call_student(overfit_and_flag, "overfit_and_flag", weights=weights, biases=biases, X=X,
                            labels=labels, n_steps=n_steps, lr=lr, threshold=threshold)
        result = call.result
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise CheckFailure(f"overfit_and_flag must return a tuple (losses, final_losses, suspects); it returned "
                               f"a {describe_type(result)}.", "wrong-return-type")
        for item in result:
            refuse_tensor(item, "overfit_and_flag")
        got_losses = _as_array(result[0], "overfit_and_flag")
        got_final = _as_array(result[1], "overfit_and_flag")
        suspects = np.asarray(result[2])
        if suspects.ndim != 1 or (suspects.size and suspects.dtype.kind not in "iu"):
            raise CheckFailure(f"overfit_and_flag must return the suspects as a 1-D array of int indices; it returned "
                               f"a {describe_type(result[2])} of dtype {suspects.dtype} and shape {suspects.shape}.",
                               "wrong-return-type")
        if suspects.size and (suspects.min() < 0 or suspects.max() >= n_samples):
            raise CheckFailure(f"overfit_and_flag returned suspect indices {suspects.tolist()}; they must be row "
                               f"indices of the batch, 0 to {n_samples - 1}.", "wrong-return-type")
        case = (f"sizes {'-'.join(map(str, sizes))}, N={n_samples}, n_steps={n_steps}, lr={lr}, "
                f"threshold={threshold:.6g}, planted conflicting rows {conflicting.tolist()}")
        # The run without zero_grad() is made only if one of these two comparisons fails.
        zero_grad_run = functools.cache(functools.partial(_missing_zero_grad_run, weights, biases, X, labels,
                                                          n_steps, lr))
        check.compare("mean cross-entropy before every update", got_losses, losses, call, case=case,
                      mean_count=n_samples, variants=functools.partial(_zero_grad_variant, zero_grad_run, 0, losses))
        check.compare("per-example cross-entropy after the last update", got_final, final, call, case=case,
                      variants=functools.partial(_zero_grad_variant, zero_grad_run, 1, final))
        got_flags = _indicator(suspects, n_samples)
        # Judged on the student's own final losses (which match the reference to LOOP_TOL), so a loss
        # equal to the threshold in their run is a tie in their run: "above" means strictly above.
        own_rule = _indicator(np.flatnonzero(got_final > threshold), n_samples)
        variants = exclusive({"overfit-threshold-inclusive": _indicator(np.flatnonzero(got_final >= threshold),
                                                                        n_samples),
                              "overfit-flag-by-accuracy": _indicator(np.flatnonzero(predicted != labels),
                                                                     n_samples)}, own_rule)
        check.compare("suspect rows (1 = flagged) from your final losses", got_flags, own_rule, call, case=case,
                      tol=EXACT_TOL, require_float64=False, variants=variants)
        check.compare("suspect rows (1 = flagged) against the reference run", got_flags,
                      _indicator(flagged, n_samples), call, case=case, tol=EXACT_TOL, require_float64=False,
                      variants=variants)
        check.cases += 1
    return check.passed()
