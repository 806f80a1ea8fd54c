"""Checks for lab 02 (optimizers from scratch).

An optimizer check builds parameters and a seeded sequence of gradients, runs
the student's optimizer and the matching ``torch.optim`` optimizer side by
side in float64, and compares every parameter after every step. The gradient
sequence does not depend on the parameters, so two correct implementations
differ by rounding only, and a wrong one shows its mistake from the first step
at which the mistake matters.

Alongside torch, trusted numpy code runs the same steps while making each
catalogued mistake (the *variants*), so a failure can name the misconception.

Schedules are compared with ``torch.optim.lr_scheduler`` and with the worked
table of the training-deep-networks reference; gradient clipping with
``torch.nn.utils.clip_grad_norm_``.

The student's objects are touched only through :func:`call_student` and
:func:`student_attr`, so the same checks run against a sandboxed submission.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from .compare import GRADIENT_TOL, CheckFailure, Tolerance, describe_type
from .exercise import ExerciseCheck, charges_once, outcome, score_parts
from .student import Call, call_student, student_attr, unpack
from .variants import exclusive

#: Every exercise of this lab is numpy only; the grader blocks ``import torch`` in student code.
NUMPY_ONLY = True

DT = torch.float64

#: Parameters after each step, float64 against float64: only rounding may differ.
OPTIM_TOL = GRADIENT_TOL

#: The reference table prints six decimals: half a unit in the last place.
TABLE_TOL = Tolerance(atol=5e-7, rtol=0.0)

#: Steps run per optimizer case (the issue asks for at least 50).
N_STEPS = 60

#: Grade-cell points of the checks that score each of their functions separately (partial credit per
#: function: checker.exercise.score_parts); tests/unit/test_partial_credit.py keeps them equal to the
#: notebook's.
POINTS = {"check_schedules": 2.0, "check_clip_value": 2.0, "check_finetune_schedules": 3.0}


# ---------------------------------------------------------------------------
# Trusted numpy optimizers that can make one named mistake (for the variants)
# ---------------------------------------------------------------------------


class _NumpyOptimizer:
    """The update rules of this lab in plain numpy, right or with one ``mistake``.

    ``kind`` is one of sgd, momentum, nesterov, rmsprop, adam, adamw; ``mistake``
    is a catalogue name, one of the ways of :data:`_REBINDING` (or None for the
    right update). Used only to compute what a mistake produces; the reference
    itself is always ``torch.optim``.
    """

    def __init__(self, kind, params, hyper, mistake=None):
        self.kind, self.hyper, self.mistake = kind, dict(hyper), mistake
        self.initial_lr = hyper["lr"]
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.first = [np.zeros_like(p) for p in self.params]   # velocity, square average or m
        self.second = [np.zeros_like(p) for p in self.params]  # v (Adam)
        self.t = 0

    def set_lr(self, lr):
        """A new learning rate between steps; the hyperparameter-cached mistake keeps the first one."""
        if self.mistake != "hyperparameter-cached":
            self.hyper["lr"] = lr

    def step(self, grads):
        self.t += 1
        with np.errstate(all="ignore"):  # the t = 0 mistake divides by zero on purpose
            for i, g in enumerate(grads):
                self.params[i] = self._update(i, self.params[i], np.asarray(g, dtype=np.float64))

    def _update(self, i, p, g):
        h, mistake = self.hyper, self.mistake
        lr, wd = h["lr"], h.get("weight_decay", 0.0)
        if mistake in ("params-rebound", "caller-params-rebound"):
            return p
        if mistake == "state-rebound":  # the running averages never carry over to the next step
            self.first[i], self.second[i] = np.zeros_like(p), np.zeros_like(p)
        if self.kind == "sgd":
            if mistake == "weight-decay-not-scaled-by-lr":
                return p - lr * g - wd * p
            update = lr * (g + wd * p)
            return p + update if mistake == "sign-flipped" else p - update
        if self.kind in ("momentum", "nesterov"):
            mu = h["momentum"]
            g = g + wd * p
            if mistake == "momentum-lr-folded":  # v = mu v + lr g, p -= v: torch's only while lr is constant
                v = self.first[i] = mu * self.first[i] + lr * g
                return p - (lr * g + mu * v) if self.kind == "nesterov" else p - v
            v = self.first[i] = mu * self.first[i] + ((1.0 - mu) * g if mistake == "momentum-dampened-form" else g)
            if self.kind == "nesterov" and mistake != "nesterov-without-lookahead":
                return p - lr * (g + mu * v)
            return p - lr * v
        if self.kind == "rmsprop":
            alpha, eps = h["alpha"], h["eps"]
            s = self.first[i] = alpha * self.first[i] + (1.0 - alpha) * g * g
            denom = {"rmsprop-eps-inside-sqrt": lambda: np.sqrt(s + eps),
                     "std-used-as-variance": lambda: s + eps}.get(mistake, lambda: np.sqrt(s) + eps)()
            return p - lr * g / denom
        # Adam (coupled L2 decay) and AdamW (decoupled decay)
        beta1, beta2 = h["betas"]
        decay = {"adamw-decay-through-gradient": "coupled", "adam-decay-decoupled": "decoupled",
                 "weight-decay-not-scaled-by-lr": "unscaled", "decay-rebound": "none",
                 "decay-lr-cached": "cached"}.get(mistake, "decoupled" if self.kind == "adamw" else "coupled")
        if decay == "coupled":
            g = g + wd * p
        elif decay == "decoupled":
            p = p * (1.0 - lr * wd)
        elif decay == "unscaled":
            p = p * (1.0 - wd)
        elif decay == "cached":  # the decay factor computed once, in __init__, from the first lr
            p = p * (1.0 - self.initial_lr * wd)
        m = self.first[i] = beta1 * self.first[i] + (1.0 - beta1) * g
        v = self.second[i] = beta2 * self.second[i] + (1.0 - beta2) * g * g
        t = self.t - 1 if mistake == "adam-t-starts-at-zero" else self.t
        m_hat, v_hat = m / (1.0 - beta1 ** t), v / (1.0 - beta2 ** t)
        if mistake in ("adam-missing-bias-correction", "adam-m-uncorrected"):
            m_hat = m
        if mistake in ("adam-missing-bias-correction", "adam-v-uncorrected"):
            v_hat = v
        if mistake == "adam-eps-inside-sqrt":
            return p - lr * m_hat / np.sqrt(v_hat + h["eps"])
        return p - lr * m_hat / (np.sqrt(v_hat) + h["eps"])


def _torch_optimizer(kind, leaves, hyper):
    h = dict(hyper)
    if kind == "sgd":
        return torch.optim.SGD(leaves, lr=h["lr"], weight_decay=h.get("weight_decay", 0.0))
    if kind in ("momentum", "nesterov"):
        return torch.optim.SGD(leaves, lr=h["lr"], momentum=h["momentum"], nesterov=kind == "nesterov",
                               weight_decay=h.get("weight_decay", 0.0))
    if kind == "rmsprop":
        return torch.optim.RMSprop(leaves, lr=h["lr"], alpha=h["alpha"], eps=h["eps"])
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(leaves, lr=h["lr"], betas=h["betas"], eps=h["eps"], weight_decay=h.get("weight_decay", 0.0))


#: Simulated mistakes reported under another catalogue name: the ways of losing an update by rebinding a
#: name (x = x - ...) instead of changing the array (the parameters never change, AdamW's decay is lost),
#: the state lost between steps (rebound, or re-created in step()), and the partial forms of two mistakes.
_REPORTED_AS = {"params-rebound": "update-not-in-place", "decay-rebound": "update-not-in-place",
                "state-rebound": "optimizer-state-reset", "decay-lr-cached": "hyperparameter-cached",
                "adam-m-uncorrected": "adam-missing-bias-correction",
                "adam-v-uncorrected": "adam-missing-bias-correction",
                "adam-eps-inside-sqrt": "rmsprop-eps-inside-sqrt"}

#: Mistakes whose variants each optimizer check computes.
_VARIANTS = {
    "sgd": ("sign-flipped", "weight-decay-not-scaled-by-lr", "params-rebound", "hyperparameter-cached"),
    "momentum": ("momentum-dampened-form", "params-rebound", "state-rebound", "momentum-lr-folded",
                 "hyperparameter-cached"),
    "nesterov": ("nesterov-without-lookahead", "momentum-dampened-form", "params-rebound", "state-rebound",
                 "momentum-lr-folded", "hyperparameter-cached"),
    "rmsprop": ("rmsprop-eps-inside-sqrt", "std-used-as-variance", "params-rebound", "state-rebound",
                "hyperparameter-cached"),
    "adam": ("adam-t-starts-at-zero", "adam-missing-bias-correction", "adam-m-uncorrected", "adam-v-uncorrected",
             "adam-eps-inside-sqrt", "adam-decay-decoupled", "params-rebound", "state-rebound",
             "hyperparameter-cached"),
    "adamw": ("adamw-decay-through-gradient", "weight-decay-not-scaled-by-lr",
              "adam-t-starts-at-zero", "adam-missing-bias-correction", "adam-m-uncorrected", "adam-v-uncorrected",
              "adam-eps-inside-sqrt", "params-rebound", "state-rebound", "decay-rebound", "hyperparameter-cached",
              "decay-lr-cached"),
}
#: Mistakes that only show when weight_decay > 0.
_DECAY_MISTAKES = ("weight-decay-not-scaled-by-lr", "adam-decay-decoupled", "adamw-decay-through-gradient",
                   "decay-rebound", "decay-lr-cached")

#: The learning rate changes twice during every optimizer case, as a scheduler would change it:
#: (fraction of the run after which it changes, factor applied to the base rate).
LR_CHANGES = ((1 / 3, 0.37), (2 / 3, 1.9))

_TORCH_NAMES = {"sgd": "torch.optim.SGD", "momentum": "torch.optim.SGD(momentum)",
                "nesterov": "torch.optim.SGD(nesterov=True)", "rmsprop": "torch.optim.RMSprop",
                "adam": "torch.optim.Adam", "adamw": "torch.optim.AdamW"}


def make_gradient_sequence(seed, shapes, n_steps=N_STEPS):
    """Initial parameters and a seeded gradient sequence for an optimizer check.

    Each tensor gets its own gradient scale (from 0.05 to 3), so adaptive
    optimizers and epsilon placement are exercised on small and large gradients.

    Returns
    -------
    params : list of ndarray, one per shape
    grads : list (one per step) of lists of ndarray shaped like ``params``
    """
    rng = np.random.default_rng(seed)
    params = [rng.normal(0.0, 1.0, size=s) for s in shapes]
    scales = np.geomspace(0.05, 3.0, num=len(shapes)) if len(shapes) > 1 else np.array([1.0])
    drift = [rng.normal(0.0, 1.0, size=s) for s in shapes]  # a steady direction momentum can build on
    grads = [[scale * (0.5 * d + rng.normal(0.0, 1.0, size=s)) for s, scale, d in zip(shapes, scales, drift)]
             for _ in range(n_steps)]
    return params, grads


def _describe(hyper):
    return ", ".join(f"{k}={v}" for k, v in hyper.items())


def _student_params(opt, name, n):
    params = student_attr(opt, "params", name)
    if not isinstance(params, (list, tuple)) or len(params) != n:
        got = type(params).__name__ + (f" of length {len(params)}" if isinstance(params, (list, tuple)) else "")
        raise CheckFailure(f"{name}.params must stay a list of {n} arrays, one per parameter; it is a {got}.",
                           "wrong-return-type")
    return params


def _method(opt, method, name):
    try:
        return getattr(opt, method)
    except AttributeError:
        raise CheckFailure(f"{name} has no method `{method}`; keep the names of the Optimizer interface.",
                           "wrong-return-type") from None


def _step(step_fn, name, grads, k):
    """Call the student's step; name the t = 0 mistake when plain-float bias correction divides by 0."""
    try:
        return call_student(step_fn, f"{name}.step", grads=grads)
    except CheckFailure as failure:
        if k == 1 and name in ("Adam", "AdamW") and "ZeroDivisionError" in str(failure):
            raise CheckFailure(
                f"{failure}\n"
                f"  Likely misconception [adam-t-starts-at-zero]: Adam's step counter is 0 at the first step, "
                f"so 1 - beta**t = 0 (the division by zero above).\n"
                f"  Fix: Start with self.t = 0 and increment it at the top of step(), before the bias corrections.\n"
                f"  Read: TROUBLESHOOTING.md#adam-t-starts-at-zero", "adam-t-starts-at-zero") from None
        raise


def _run_optimizer_case(check, kind, cls, name, shapes, hyper, seed, n_steps, call_zero_grad=True):
    """One optimizer, one set of shapes and hyper-parameters, ``n_steps`` steps against torch.

    With ``call_zero_grad``, ``zero_grad()`` is called before every step, as in a training
    loop. The first case of each check does it; that is enough to catch a zero_grad that
    resets the state, and each call is a round trip to the grader's sandbox.
    """
    params0, grad_seq = make_gradient_sequence(seed, shapes, n_steps)
    leaves = [torch.tensor(p, dtype=DT, requires_grad=True) for p in params0]
    reference = _torch_optimizer(kind, leaves, hyper)
    mistakes = [m for m in _VARIANTS[kind] if hyper.get("weight_decay", 0.0) or m not in _DECAY_MISTAKES]
    sims = _MistakenRuns(kind, params0, hyper, mistakes)
    lr_at = {max(1, int(round(f * n_steps))) + 1: factor * hyper["lr"] for f, factor in LR_CHANGES}

    opt = call_student(cls, name, params=params0, **hyper).result
    step_fn = _method(opt, "step", name)
    set_lr = _method(opt, "set_lr", name)
    zero_grad = _method(opt, "zero_grad", name) if call_zero_grad else None
    shapes_text = ", ".join(str(tuple(s)) for s in shapes)
    lr = hyper["lr"]
    for k, grads in enumerate(grad_seq, start=1):
        if k in lr_at:  # a scheduler's change between two steps: the next step must use the new rate
            lr = lr_at[k]
            reference.param_groups[0]["lr"] = lr
            sims.set_lr(lr)
            call_student(set_lr, f"{name}.set_lr", lr=lr)
        for leaf, g in zip(leaves, grads):
            leaf.grad = torch.tensor(g, dtype=DT)
        reference.step()
        sims.step(grads)
        if zero_grad is not None:  # the loop a student would write: zero_grad() must not reset the state
            call_student(zero_grad, f"{name}.zero_grad")
        call = _step(step_fn, name, grads, k)
        got = _student_params(opt, name, len(shapes))
        lr_text = f"lr changed to {lr:.4g} before this step; " if k in lr_at else ""
        where = f"after step {k} of {n_steps}; {lr_text}shapes {shapes_text}; {_describe(hyper)}"
        for i, leaf in enumerate(leaves):
            expected = leaf.detach().numpy()
            # Worked out only if the comparison fails (compare calls it at once, before the next step).
            kept = functools.partial(_kept_variants, sims, i, expected)
            check.compare(f"params[{i}]", got[i], expected, call, case=where, variants=kept)
        if k in (1, n_steps):
            _compare_caller_arrays(check, opt, name, leaves, params0, call, where)
    check.cases += 1


class _MistakenRuns:
    """The catalogued mistakes of one optimizer case (:class:`_NumpyOptimizer`), run only when asked.

    The check records each step's gradients and each change of learning rate; a failed comparison
    (:meth:`variants`) replays them, from the initial parameters or from where the last replay
    stopped. A right answer, the common case, never runs them: they were about half of an optimizer
    check's time. The recorded arrays are the check's own (the student only gets deep copies).
    """

    def __init__(self, kind, params0, hyper, mistakes):
        self.kind, self.params0, self.hyper, self.mistakes = kind, params0, hyper, mistakes
        self.events: list = []  # ("lr", rate) or ("step", grads), in the order the check made them
        self.runs = None
        self.replayed = 0

    def set_lr(self, lr):
        self.events.append(("lr", lr))

    def step(self, grads):
        self.events.append(("step", grads))

    def variants(self, i):
        """Mistake name -> list of what each way of making it gives for ``params[i]`` at this step."""
        if self.runs is None:
            self.runs = [(m, _NumpyOptimizer(self.kind, self.params0, self.hyper, m)) for m in self.mistakes]
        for what, value in self.events[self.replayed:]:
            for _, run in self.runs:
                if what == "lr":
                    run.set_lr(value)
                else:
                    run.step(value)
        self.replayed = len(self.events)
        variants: dict = {}
        for m, run in self.runs:
            variants.setdefault(_REPORTED_AS.get(m, m), []).append(run.params[i])
        return variants


def _kept_variants(runs, i, expected):
    """:func:`exclusive`'s verdict on the mistakes of ``runs`` for ``params[i]``.

    One array, not a list of one, where there is one (adam-t-starts-at-zero's NaN detector wants it).
    """
    return {m: ws[0] if len(ws) == 1 else ws for m, ws in (exclusive(runs.variants(i), expected) or {}).items()}


def _compare_caller_arrays(check, opt, name, leaves, params0, call, where):
    """The arrays the caller passed in (``Optimizer.caller_params``) must hold the update too.

    ``self.params = [p - lr * g ...]`` or ``self.params[i] = ...`` leave ``self.params`` right
    but the caller's own arrays (a model's weights) untouched.
    """
    try:
        held = student_attr(opt, "caller_params", name)
    except CheckFailure:
        return  # a class that bypasses Optimizer.__init__: only self.params can be checked
    if not isinstance(held, (list, tuple)) or len(held) != len(leaves):
        return
    for i, leaf in enumerate(leaves):
        expected = leaf.detach().numpy()
        check.compare(f"the caller's params[{i}] (the array passed to {name}(...))", held[i], expected, call,
                      case=where, variants=exclusive({"update-not-in-place": params0[i]}, expected))


def _check_optimizer(kind, cls, name, cases, seed, n_steps):
    check = ExerciseCheck(name, reference=f"{_TORCH_NAMES[kind]} step for step", tol=OPTIM_TOL)
    for j, (shapes, hyper) in enumerate(cases):
        _run_optimizer_case(check, kind, cls, name, shapes, hyper, seed + j, n_steps, call_zero_grad=j == 0)
    return check.passed()


# ---------------------------------------------------------------------------
# Exercises 1-6: the optimizers
# ---------------------------------------------------------------------------

_SHAPES = ((3,), (2, 4), (5, 1))


def check_sgd(SGD, seed=0, shapes=_SHAPES, lr=0.07, weight_decay=0.05, n_steps=N_STEPS):
    """Check ``SGD(params, lr, weight_decay)`` against ``torch.optim.SGD``, without and with weight decay."""
    cases = [(shapes, dict(lr=lr, weight_decay=0.0)), (shapes, dict(lr=lr, weight_decay=weight_decay))]
    return _check_optimizer("sgd", SGD, "SGD", cases, seed, n_steps)


def check_momentum(SGDMomentum, seed=0, shapes=_SHAPES, lr=0.05, momentum=0.8, weight_decay=0.01,
                   n_steps=N_STEPS):
    """Check ``SGDMomentum(params, lr, momentum, weight_decay)`` against ``torch.optim.SGD(momentum=...)``."""
    cases = [(shapes, dict(lr=lr, momentum=momentum, weight_decay=0.0)),
             (shapes, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))]
    return _check_optimizer("momentum", SGDMomentum, "SGDMomentum", cases, seed, n_steps)


# ---------------------------------------------------------------------------
# Exercises 2 and 5 as a correct submission has them: the base classes of Exercises 3 and 6
# ---------------------------------------------------------------------------
# NesterovSGD subclasses the student's SGDMomentum, AdamW the student's Adam. When the subclass fails
# only because of its base, it passes rebuilt on these (checker.student.rebased; under make grade
# they run in the grader, called back from the sandbox) and keeps its points: the mistake is charged
# in the base's own exercise (checker.exercise.charge_once).


class _Optimizer:
    """The notebook's (locked) ``Optimizer`` base class."""

    def __init__(self, params):
        self.params = [np.asarray(p, dtype=np.float64) for p in params]
        self.caller_params = tuple(self.params)

    def set_lr(self, lr):
        self.lr = lr

    def zero_grad(self):
        pass

    def step(self, grads):
        raise NotImplementedError()


class _SGDMomentum(_Optimizer):
    """Exercise 2's ``SGDMomentum``, right."""

    def __init__(self, params, lr=0.01, momentum=0.9, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = [np.zeros_like(p) for p in self.params]

    def step(self, grads):
        for p, g, v in zip(self.params, grads, self.velocity):
            g = g + self.weight_decay * p
            v *= self.momentum
            v += g
            p -= self.lr * v


class _Adam(_Optimizer):
    """Exercise 5's ``Adam``, right."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr, (self.beta1, self.beta2), self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]

    def step(self, grads):
        self.t += 1
        bias_correction1, bias_correction2 = 1.0 - self.beta1 ** self.t, 1.0 - self.beta2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = g + self.weight_decay * p
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            p -= self.lr * (m / bias_correction1) / (np.sqrt(v / bias_correction2) + self.eps)


@charges_once(SGDMomentum=(_SGDMomentum, "Exercise 2"))
def check_nesterov(NesterovSGD, seed=0, shapes=_SHAPES, lr=0.03, momentum=0.9, weight_decay=0.02,
                   n_steps=N_STEPS):
    """Check ``NesterovSGD(params, lr, momentum, weight_decay)`` against ``torch.optim.SGD(nesterov=True)``."""
    cases = [(shapes, dict(lr=lr, momentum=momentum, weight_decay=0.0)),
             (shapes, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))]
    return _check_optimizer("nesterov", NesterovSGD, "NesterovSGD", cases, seed, n_steps)


def check_rmsprop(RMSProp, seed=0, shapes=_SHAPES, lr=0.01, alpha=0.9, eps=1e-3, n_steps=N_STEPS):
    """Check ``RMSProp(params, lr, alpha, eps)`` against ``torch.optim.RMSprop``.

    ``eps`` is far above its default so that where it sits (outside or inside
    the square root) changes the numbers visibly.
    """
    cases = [(shapes, dict(lr=lr, alpha=alpha, eps=eps))]
    return _check_optimizer("rmsprop", RMSProp, "RMSProp", cases, seed, n_steps)


def check_adam(Adam, seed=0, shapes=_SHAPES, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1,
               n_steps=N_STEPS):
    """Check ``Adam(params, lr, betas, eps, weight_decay)`` against ``torch.optim.Adam``.

    The first case has no weight decay (bias correction from step 1 on); the
    second has ``weight_decay`` > 0, which Adam adds to the gradient (coupled
    L2), so a decoupled (AdamW-style) decay is told apart and named.
    """
    cases = [(shapes, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=0.0)),
             (shapes, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))]
    return _check_optimizer("adam", Adam, "Adam", cases, seed, n_steps)


@charges_once(Adam=(_Adam, "Exercise 5"))
def check_adamw(AdamW, seed=0, shapes=_SHAPES, lr=0.01, betas=(0.85, 0.98), eps=5e-3, weight_decay=0.2,
                n_steps=N_STEPS):
    """Check ``AdamW(params, lr, betas, eps, weight_decay)`` against ``torch.optim.AdamW``.

    ``eps`` is large enough to matter at step 1, where Adam's step is otherwise lr * sign(g): with
    a tiny eps, decay lost and decay through the gradient give the same first step and cannot be told apart.
    """
    cases = [(shapes, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))]
    return _check_optimizer("adamw", AdamW, "AdamW", cases, seed, n_steps)


# ---------------------------------------------------------------------------
# Exercises 7-8: learning-rate schedules
# ---------------------------------------------------------------------------

#: The worked table of the training-deep-networks reference (seed 003): peak 0.1,
#: linear warmup from 0.001 over 100 steps, cosine over 1000 steps. Its cosine rows
#: (250 to 1000) follow the cosine over all 1000 steps, not over the 900 after warmup.
REFERENCE_TABLE = {0: 0.001000, 50: 0.050500, 100: 0.100000, 250: 0.085355,
                   500: 0.050000, 750: 0.014645, 1000: 0.000000}
TABLE_PEAK, TABLE_WARMUP, TABLE_TOTAL, TABLE_START_FACTOR = 0.1, 100, 1000, 0.01
TABLE_REFERENCE = "the reference table (peak 0.1, 100 warmup steps, 1000 total)"


def _torch_lrs(make_scheduler, base_lr, n_steps):
    """Learning rate in effect at steps 0..n_steps-1 of a torch scheduler."""
    leaf = torch.zeros(1, dtype=DT, requires_grad=True)
    opt = torch.optim.SGD([leaf], lr=base_lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = make_scheduler(opt)
        lrs = []
        for _ in range(n_steps):
            lrs.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            scheduler.step()
    return np.array(lrs)


def _scalar(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if type(value) is np.ndarray and value.shape == () and value.dtype.kind in "fi":
        return float(value)
    return None


def _student_lrs(fn, name, steps, **kwargs):
    """The student's schedule at each step, as one float64 array, with the calls' evidence."""
    values, caught = [], []
    for t in steps:
        call = call_student(fn, name, step=int(t), **kwargs)
        value = _scalar(call.result)
        if value is None:
            raise CheckFailure(f"{name}(step={int(t)}, ...) must return a float (the learning rate); "
                               f"it returned a {describe_type(call.result)}.", "wrong-return-type")
        values.append(value)
        caught += call.warnings
    return np.array(values), Call(None, caught, [])


# The schedules' closed forms, used for the variants (the reference is torch).
def _warmup(t, peak, warmup, start_factor):
    return peak * (start_factor + (1.0 - start_factor) * min(t, warmup) / warmup)


def _cosine(t, peak, total, min_lr):
    return min_lr + 0.5 * (peak - min_lr) * (1.0 + np.cos(np.pi * t / total))


def _step_decay(t, base, step_size, gamma):
    return base * gamma ** (t // step_size)


def _warmup_cosine(t, peak, warmup, total, start_factor, min_lr, shift_warmup=0, shift_cosine=0,
                   global_cosine=False):
    if t < warmup:
        return _warmup(t + shift_warmup, peak, warmup, start_factor)
    if global_cosine:
        return _cosine(t, peak, total, min_lr)
    return _cosine(t - warmup + shift_cosine, peak, total - warmup, min_lr)


def _shifted(fn, steps):
    """What an off-by-one produces: the schedule one step late and one step early."""
    return [np.array([fn(t + 1) for t in steps]), np.array([fn(t - 1) for t in steps])]


def _compare_schedule(check, quantity, fn, name, steps, expected, kwargs, closed_form, case, reference=None,
                      extra_variants=None):
    got, call = _student_lrs(fn, name, steps, **kwargs)
    variants = {"schedule-off-by-one": _shifted(closed_form, steps)}
    for key, value in (extra_variants or {}).items():  # several ways to make the same mistake: a list
        variants[key] = variants.get(key, []) + (value if isinstance(value, list) else [value])
    extra = {"reference": reference} if reference else {}
    check.compare(quantity, got, expected, call, case=case, variants=variants, **extra)
    check.cases += 1


def check_schedules(step_decay_lr, linear_warmup_lr, cosine_lr, base_lr=0.3, step_size=7, gamma=0.5,
                    warmup_steps=10, start_factor=0.1, total_steps=50, min_lr=0.01, table=True):
    """Check the three basic schedules against torch's StepLR, LinearLR and CosineAnnealingLR, each for
    its own points.

    Every step from 0 to a few past the schedule's horizon is compared. With
    ``table``, the warmup and cosine rows of the reference table are checked too.
    """
    check = ExerciseCheck("learning-rate schedules", reference="torch.optim.lr_scheduler")
    table_check = ExerciseCheck("learning-rate schedules", reference=TABLE_REFERENCE, tol=TABLE_TOL)
    lr_sched = torch.optim.lr_scheduler

    def step_decay_part():
        steps = np.arange(5 * step_size + 3)
        expected = _torch_lrs(lambda o: lr_sched.StepLR(o, step_size=step_size, gamma=gamma), base_lr, steps.size)
        kwargs = dict(base_lr=base_lr, step_size=step_size, gamma=gamma)
        _compare_schedule(check, "step_decay_lr", step_decay_lr, "step_decay_lr", steps, expected, kwargs,
                          lambda t: _step_decay(t, base_lr, step_size, gamma), _describe(kwargs),
                          reference="torch StepLR")

    def warmup_part():
        steps = np.arange(warmup_steps + 6)
        expected = _torch_lrs(lambda o: lr_sched.LinearLR(o, start_factor=start_factor, end_factor=1.0,
                                                          total_iters=warmup_steps), base_lr, steps.size)
        kwargs = dict(peak_lr=base_lr, warmup_steps=warmup_steps, start_factor=start_factor)
        _compare_schedule(check, "linear_warmup_lr", linear_warmup_lr, "linear_warmup_lr", steps, expected, kwargs,
                          lambda t: _warmup(t, base_lr, warmup_steps, start_factor), _describe(kwargs),
                          reference="torch LinearLR")
        if table:
            rows = [t for t in REFERENCE_TABLE if t <= TABLE_WARMUP]
            kwargs = dict(peak_lr=TABLE_PEAK, warmup_steps=TABLE_WARMUP, start_factor=TABLE_START_FACTOR)
            _compare_schedule(table_check, f"linear_warmup_lr at steps {rows}", linear_warmup_lr, "linear_warmup_lr",
                              rows, [REFERENCE_TABLE[t] for t in rows], kwargs,
                              lambda t: _warmup(t, TABLE_PEAK, TABLE_WARMUP, TABLE_START_FACTOR), _describe(kwargs))

    def cosine_part():
        steps = np.arange(total_steps + 1)
        expected = _torch_lrs(lambda o: lr_sched.CosineAnnealingLR(o, T_max=total_steps, eta_min=min_lr),
                              base_lr, steps.size)
        kwargs = dict(base_lr=base_lr, total_steps=total_steps, min_lr=min_lr)
        # The horizon off by one too: a cosine over total_steps - 1 or total_steps + 1 steps.
        _compare_schedule(check, "cosine_lr", cosine_lr, "cosine_lr", steps, expected, kwargs,
                          lambda t: _cosine(t, base_lr, total_steps, min_lr), _describe(kwargs),
                          reference="torch CosineAnnealingLR",
                          extra_variants={"schedule-off-by-one": [
                              np.array([_cosine(t, base_lr, total_steps + d, min_lr) for t in steps])
                              for d in (-1, 1) if total_steps + d > 0]})
        if table:
            rows = [t for t in REFERENCE_TABLE if t > TABLE_WARMUP]
            kwargs = dict(base_lr=TABLE_PEAK, total_steps=TABLE_TOTAL, min_lr=0.0)
            _compare_schedule(table_check, f"cosine_lr at steps {rows}", cosine_lr, "cosine_lr",
                              rows, [REFERENCE_TABLE[t] for t in rows], kwargs,
                              lambda t: _cosine(t, TABLE_PEAK, TABLE_TOTAL, 0.0), _describe(kwargs))

    outcomes = {"step_decay_lr": outcome(step_decay_part), "linear_warmup_lr": outcome(warmup_part),
                "cosine_lr": outcome(cosine_part)}

    def summary():
        check.passed()
        if table:
            table_check.passed()

    return score_parts(POINTS["check_schedules"], outcomes, summary, "check_schedules")


def _linear_warmup_lr(step, peak_lr, warmup_steps, start_factor=0.01):
    """Exercise 7's ``linear_warmup_lr`` as a correct submission has it."""
    return float(_warmup(step, peak_lr, warmup_steps, start_factor))


def _cosine_lr(step, base_lr, total_steps, min_lr=0.0):
    """Exercise 7's ``cosine_lr`` as a correct submission has it."""
    return float(_cosine(step, base_lr, total_steps, min_lr))


def _step_decay_lr(step, base_lr, step_size, gamma=0.1):
    """Exercise 7's ``step_decay_lr`` as a correct submission has it."""
    return float(_step_decay(step, base_lr, step_size, gamma))


#: Exercise 7's schedules, which ``warmup_cosine_lr`` may call by name: when it fails only because of
#: them, it passes with these in their place and the mistake costs Exercise 7's points only
#: (checker.exercise.charge_once).
EXERCISE_7_REFERENCES = {"step_decay_lr": (_step_decay_lr, "Exercise 7"),
                         "linear_warmup_lr": (_linear_warmup_lr, "Exercise 7"),
                         "cosine_lr": (_cosine_lr, "Exercise 7")}


@charges_once(**EXERCISE_7_REFERENCES)
def check_warmup_cosine(warmup_cosine_lr, peak_lr=0.2, warmup_steps=8, total_steps=60, start_factor=0.05,
                        min_lr=0.002, table=True):
    """Check ``warmup_cosine_lr`` against torch's SequentialLR(LinearLR, CosineAnnealingLR).

    The cosine runs over the ``total_steps - warmup_steps`` steps after warmup.
    With ``table``, the reference table's rows that this schedule shares
    (0, 50, 100 and 1000) are checked too.
    """
    check = ExerciseCheck("warmup_cosine_lr", reference="torch SequentialLR(LinearLR, CosineAnnealingLR)")
    lr_sched = torch.optim.lr_scheduler

    def torch_schedule(o, peak, warmup, total, s, low):
        return lr_sched.SequentialLR(o, [lr_sched.LinearLR(o, start_factor=s, end_factor=1.0, total_iters=warmup),
                                         lr_sched.CosineAnnealingLR(o, T_max=total - warmup, eta_min=low)],
                                     milestones=[warmup])

    def variants_for(steps, args):
        return {"schedule-off-by-one": [np.array([_warmup_cosine(t, *args, shift_cosine=d) for t in steps])
                                        for d in (1, -1)]
                + [np.array([_warmup_cosine(t, *args, shift_warmup=d) for t in steps]) for d in (1, -1)],
                "cosine-ignores-warmup": [np.array([_warmup_cosine(t, *args, global_cosine=True) for t in steps]),
                                          # shifted to start after warmup, but still spread over all total steps
                                          np.array([_warmup_cosine(t, *args[:2], args[2] + args[1], *args[3:])
                                                    for t in steps])]}

    args = (peak_lr, warmup_steps, total_steps, start_factor, min_lr)
    steps = np.arange(total_steps + 1)
    expected = _torch_lrs(lambda o: torch_schedule(o, *args), peak_lr, steps.size)
    kwargs = dict(peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps,
                  start_factor=start_factor, min_lr=min_lr)
    _compare_schedule(check, "learning rate", warmup_cosine_lr, "warmup_cosine_lr", steps, expected, kwargs,
                      lambda t: _warmup_cosine(t, *args), _describe(kwargs), extra_variants=variants_for(steps, args))

    check.passed()
    if table:
        check = ExerciseCheck("warmup_cosine_lr", reference=TABLE_REFERENCE, tol=TABLE_TOL)
        args = (TABLE_PEAK, TABLE_WARMUP, TABLE_TOTAL, TABLE_START_FACTOR, 0.0)
        rows = [0, 50, 100, 1000]  # the rows where the table's cosine and this one agree (see REFERENCE_TABLE)
        kwargs = dict(peak_lr=TABLE_PEAK, warmup_steps=TABLE_WARMUP, total_steps=TABLE_TOTAL,
                      start_factor=TABLE_START_FACTOR, min_lr=0.0)
        _compare_schedule(check, f"learning rate at steps {rows}", warmup_cosine_lr, "warmup_cosine_lr",
                          rows, [REFERENCE_TABLE[t] for t in rows], kwargs, lambda t: _warmup_cosine(t, *args),
                          _describe(kwargs), extra_variants=variants_for(rows, args))
        check.passed()


# ---------------------------------------------------------------------------
# Exercise 9: gradient clipping by global norm
# ---------------------------------------------------------------------------

_CLIP_SHAPES = ((4, 3), (5,), (2, 2, 2))
#: (gradient scale, max_norm): clipped with small norms (where PyTorch's 1e-6 shows),
#: clipped with ordinary norms, and below the threshold (left untouched).
_CLIP_CASES = ((0.004, 0.005), (1.0, 1.0), (1.0, 100.0))


def check_clip_grad_norm(clip_grad_norm, seed=0, shapes=_CLIP_SHAPES, cases=_CLIP_CASES):
    """Check ``clip_grad_norm(grads, max_norm) -> (total_norm, clipped)`` against
    ``torch.nn.utils.clip_grad_norm_``: the returned norm and every clipped gradient.
    """
    check = ExerciseCheck("clip_grad_norm", reference="torch clip_grad_norm_")
    for j, (scale, max_norm) in enumerate(cases):
        rng = np.random.default_rng(seed + j)
        grads = [scale * rng.normal(size=s) for s in shapes]
        leaves = [torch.zeros(s, dtype=DT, requires_grad=True) for s in shapes]
        for leaf, g in zip(leaves, grads):
            leaf.grad = torch.tensor(g, dtype=DT)
        total = float(torch.nn.utils.clip_grad_norm_(leaves, max_norm))

        call = call_student(clip_grad_norm, "clip_grad_norm", grads=grads, max_norm=max_norm)
        got_norm, got = unpack(call.result, "clip_grad_norm", ("total_norm", "clipped"))
        if not isinstance(got, (list, tuple)) or len(got) != len(grads):
            raise CheckFailure(f"clip_grad_norm must return the clipped gradients as a list of {len(grads)} "
                               f"arrays; it returned a {describe_type(got)}.", "wrong-return-type")
        state = "clipped" if total > max_norm else "below the threshold"
        where = f"case {j + 1}: global norm {total:.4g}, max_norm {max_norm} ({state})"
        norms = [np.sqrt(np.sum(g * g)) for g in grads]
        per_tensor = [g * min(1.0, max_norm / (n + 1e-6)) for g, n in zip(grads, norms)]
        no_eps = [g * min(1.0, max_norm / total) for g in grads]
        check.compare("total_norm", got_norm, total, call, case=where,
                      variants=exclusive({"norm-not-rooted": total ** 2}, total))
        for i, leaf in enumerate(leaves):
            expected = leaf.grad.numpy()
            check.compare(f"clipped[{i}]", got[i], expected, call, case=where,
                          variants=exclusive({"clipping-per-tensor": per_tensor[i],
                                              "clip-norm-missing-epsilon": no_eps[i]}, expected))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 10: the fine-tuning schedule, MultiStepLR, the linear scaling rule
# ---------------------------------------------------------------------------


def _warmup_linear_decay(t, peak, warmup, total, horizon=None):
    """Linear warmup from 0, then linear decay to 0 at ``total`` (``horizon``: the decay's length, for a variant)."""
    if t < warmup:
        return peak * t / warmup
    horizon = total - warmup if horizon is None else horizon
    return peak * max(0.0, (total - t) / horizon)


def _multistep(t, base, milestones, gamma):
    return base * gamma ** sum(1 for m in milestones if m <= t)


def check_finetune_schedules(warmup_linear_decay_lr, multistep_lr, scaled_lr, peak_lr=0.4, warmup_steps=6,
                             total_steps=27, milestones=(5, 11, 19), gamma=0.3,
                             batch_cases=((0.1, 256, 768), (0.3, 64, 24), (0.05, 96, 96))):
    """Check the fine-tuning recipe against ``LambdaLR``, ``MultiStepLR`` against torch's, and the linear
    scaling rule ``lr * batch_size / base_batch_size``, each function for its own points.

    The schedules run a few steps past ``total_steps`` (the decay must stay at 0) and ``milestones`` holds a
    step equal to ``warmup_steps - 1`` or others in range, so a milestone falls exactly on a step.
    """
    check = ExerciseCheck("warmup_linear_decay_lr / multistep_lr / scaled_lr", reference="torch.optim.lr_scheduler")
    n = total_steps + 4
    steps = np.arange(n)

    def lam(t):  # the fine-tuning recipe, as Hugging Face's get_linear_schedule_with_warmup writes it
        return t / warmup_steps if t < warmup_steps else max(0.0, (total_steps - t) / (total_steps - warmup_steps))

    def decay_part():
        expected = _torch_lrs(lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lam), peak_lr, n)
        kwargs = dict(peak_lr=peak_lr, warmup_steps=warmup_steps, total_steps=total_steps)
        _compare_schedule(check, "learning rate (warmup then linear decay)", warmup_linear_decay_lr,
                          "warmup_linear_decay_lr", steps, expected, kwargs,
                          lambda t: _warmup_linear_decay(t, peak_lr, warmup_steps, total_steps),
                          f"peak_lr={peak_lr}, warmup_steps={warmup_steps}, total_steps={total_steps}, "
                          f"steps 0..{n - 1}", reference="torch LambdaLR",
                          extra_variants={"linear-decay-over-total": np.array(
                              [_warmup_linear_decay(t, peak_lr, warmup_steps, total_steps, horizon=total_steps)
                               for t in steps])})

    def multistep_part():
        expected = _torch_lrs(lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma),
                              peak_lr, n)
        kwargs = dict(base_lr=peak_lr, milestones=list(milestones), gamma=gamma)
        _compare_schedule(check, "learning rate (MultiStepLR)", multistep_lr, "multistep_lr", steps, expected,
                          kwargs, lambda t: _multistep(t, peak_lr, milestones, gamma),
                          f"base_lr={peak_lr}, milestones={list(milestones)}, gamma={gamma}, steps 0..{n - 1}",
                          reference="torch MultiStepLR")

    def scaling_part():
        # Batch ratios of 4 or 1/4 are avoided: there the square-root rule gives half (or twice) the linear
        # one, and the mistake could not be told from a factor of two.
        for base_lr, base_batch, batch in batch_cases:
            call = call_student(scaled_lr, "scaled_lr", base_lr=base_lr, base_batch_size=base_batch,
                                batch_size=batch)
            got = _scalar(call.result)
            if got is None:
                raise CheckFailure(f"scaled_lr must return a float; it returned a {describe_type(call.result)}.",
                                   "wrong-return-type")
            want = base_lr * batch / base_batch
            check.compare("scaled learning rate", got, want, call, require_float64=False,
                          case=f"base_lr={base_lr}, base_batch_size={base_batch}, batch_size={batch}",
                          reference="the linear scaling rule", variants=exclusive(
                              {"lr-scaling-sqrt": base_lr * np.sqrt(batch / base_batch)}, want))
            check.cases += 1

    outcomes = {"warmup_linear_decay_lr": outcome(decay_part), "multistep_lr": outcome(multistep_part),
                "scaled_lr": outcome(scaling_part)}
    return score_parts(POINTS["check_finetune_schedules"], outcomes, check.passed, "check_finetune_schedules")


# ---------------------------------------------------------------------------
# Exercise 11: clipping by value against clipping by norm
# ---------------------------------------------------------------------------

#: Angles near 0 come out of arccos with an error up to about 1e-6 degrees (arccos is steep near 1).
ANGLE_TOL = Tolerance(atol=1e-5, rtol=1e-9)

_VALUE_SHAPES = ((3, 4), (5,), (7, 1))
#: (scale of the gradients, clip_value, max_norm); None for max_norm = the global norm itself (a tie).
_VALUE_CASES = ((1.0, 0.5, 1.5), (0.3, 5.0, None))


def _angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two vectors in degrees, by the formula that stays accurate near 0 and 180 degrees."""
    ua, ub = a / a.norm(), b / b.norm()
    return float(torch.rad2deg(2.0 * torch.atan2((ua - ub).norm(), (ua + ub).norm())))


def check_clip_value(clip_grad_value, direction_change, seed=0, shapes=_VALUE_SHAPES, cases=_VALUE_CASES):
    """Check ``clip_grad_value(grads, clip_value) -> list`` against ``torch.nn.utils.clip_grad_value_`` and
    ``direction_change(grads, clipped) -> degrees`` against a float64 torch angle, for clipping by value and
    by global norm (``clip_grad_norm_``). Some entries sit exactly at ``±clip_value``. Each function earns
    its own points.
    """
    check = ExerciseCheck("clip_grad_value / direction_change", reference="torch clip_grad_value_ / clip_grad_norm_",
                          tol=ANGLE_TOL)  # the loosest of the two: the clipped arrays are compared exactly
    prepared = []
    for j, (scale, clip_value, max_norm) in enumerate(cases):
        rng = np.random.default_rng(seed + 20 + j)
        grads = [scale * rng.normal(size=s) for s in shapes]
        grads[0].flat[0], grads[1].flat[-1] = clip_value, -clip_value  # ties: exactly at the threshold
        flat = torch.tensor(np.concatenate([g.ravel() for g in grads]), dtype=DT)
        if max_norm is None:
            max_norm = float(flat.norm())
        value_leaves = [_leaf_with_grad(g) for g in grads]
        torch.nn.utils.clip_grad_value_(value_leaves, clip_value)
        by_value = [leaf.grad.numpy().copy() for leaf in value_leaves]
        norm_leaves = [_leaf_with_grad(g) for g in grads]
        torch.nn.utils.clip_grad_norm_(norm_leaves, max_norm)
        by_norm = [leaf.grad.numpy().copy() for leaf in norm_leaves]
        where = f"case {j + 1}: shapes {list(shapes)}, clip_value={clip_value}, max_norm={max_norm:.6g}"
        prepared.append((grads, clip_value, flat, by_value, by_norm, where))

    def clip_part():
        for grads, clip_value, _, by_value, _, where in prepared:
            call = call_student(clip_grad_value, "clip_grad_value", grads=grads, clip_value=clip_value)
            got = call.result
            if not isinstance(got, (list, tuple)) or len(got) != len(grads):
                raise CheckFailure(f"clip_grad_value must return a list of {len(grads)} arrays; it returned a "
                                   f"{describe_type(got)}.", "wrong-return-type")
            for i, want in enumerate(by_value):
                check.compare(f"clip_grad_value(...)[{i}]", got[i], want, call, case=where, tol=EXACT_CLIP_TOL,
                              # Capped on one side only: the positive entries, or the negative ones.
                              variants=exclusive({"clip-value-one-sided": [np.minimum(grads[i], clip_value),
                                                                           np.maximum(grads[i], -clip_value)]},
                                                 want))

    # direction_change gets torch's clipped gradients, not the student's: the two are scored apart.
    def angle_part():
        for grads, _, flat, by_value, by_norm, where in prepared:
            for label, clipped in (("by value", by_value), ("by global norm", by_norm)):
                want = _angle_degrees(flat, torch.tensor(np.concatenate([c.ravel() for c in clipped]), dtype=DT))
                call = call_student(direction_change, "direction_change", grads=grads, clipped=clipped)
                value = _scalar(call.result)
                if value is None:
                    raise CheckFailure(f"direction_change must return a float (degrees); it returned a "
                                       f"{describe_type(call.result)}.", "wrong-return-type")
                check.compare(f"direction change {label} (degrees)", value, want, call, case=where, tol=ANGLE_TOL,
                              require_float64=False,
                              variants=exclusive({"angle-in-radians": np.deg2rad(want)}, want))

    outcomes = {"clip_grad_value": outcome(clip_part), "direction_change": outcome(angle_part)}
    check.cases = len(prepared)
    return score_parts(POINTS["check_clip_value"], outcomes, check.passed, "check_clip_value")


#: Clipping by value only copies or replaces entries: exact.
EXACT_CLIP_TOL = Tolerance(atol=0.0, rtol=0.0)


def _leaf_with_grad(grad: np.ndarray) -> torch.Tensor:
    """A float64 leaf whose .grad holds a copy of ``grad`` (for torch's in-place clipping utilities)."""
    leaf = torch.zeros(grad.shape, dtype=DT, requires_grad=True)
    leaf.grad = torch.tensor(grad, dtype=DT)
    return leaf
