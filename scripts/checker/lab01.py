"""Checks for lab 01 (backpropagation by hand).

Each ``check_*`` function builds its own inputs from a seed, calls the
student's function on private copies, computes the reference with PyTorch
autograd in float64, and compares every quantity. Alongside the reference it
computes, with trusted numpy code, what known mistakes would produce on the
same inputs (the *variants*), so a failure can name the misconception.

Visible checks use the default seed; the hidden checks in the grade cells
pass other seeds and shapes.
"""

from __future__ import annotations

import numpy as np
import torch

import math_utils
from math_utils import log_softmax, one_hot, sigmoid, softmax

from .compare import CheckFailure, Tolerance
from .exercise import ExerciseCheck, charges_once, outcome, score_parts
from .student import call_student, unpack
from .variants import exclusive

DT = torch.float64
PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")


def _leaf(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DT, requires_grad=True)


def _grad_of(fn_torch, z: np.ndarray) -> np.ndarray:
    """Elementwise derivative of a torch activation at ``z`` via autograd."""
    zt = _leaf(z)
    fn_torch(zt).sum().backward()
    return zt.grad.numpy().copy()


# ---------------------------------------------------------------------------
# Exercise 1: the scalar ReLU chain
# ---------------------------------------------------------------------------

#: The worked example: W2 < 0 makes the second ReLU's input negative and every gradient vanishes.
DYING_CASE = dict(x=2.0, w1=0.5, w2=-0.3, w3=0.8, target=1.0)
#: The same network with W2 > 0: the gradient flows (dL/dW2 = -0.608).
FLOWING_CASE = dict(x=2.0, w1=0.5, w2=0.3, w3=0.8, target=1.0)
#: W2 = 0 exactly: the second ReLU sits at its kink (z2 = 0), where PyTorch's derivative is 0.
KINK_CASE = dict(x=2.0, w1=0.5, w2=0.0, w3=0.8, target=1.0)


def _chain_numpy(x, w1, w2, w3, target, gate1, gate2):
    """Backprop through the chain with given ReLU derivatives per layer (for variants)."""
    z1 = w1 * x
    h1 = max(z1, 0.0)
    z2 = w2 * h1
    h2 = max(z2, 0.0)
    y = w3 * h2
    dL_dy = y - target
    dL_dz2 = dL_dy * w3 * gate2(z2)
    dL_dz1 = dL_dz2 * w2 * gate1(z1)
    return 0.5 * (y - target) ** 2, dL_dz1 * x, dL_dz2 * h1, dL_dy * h2


def _right_gate(z):
    return float(z > 0)


def _per_layer(wrong_gate, backprop, right_gate=_right_gate):
    """What a wrong ReLU derivative produces in layer 1, layer 2, or both."""
    return [backprop(wrong_gate, right_gate), backprop(right_gate, wrong_gate),
            backprop(wrong_gate, wrong_gate)]


def _chain_torch(x, w1, w2, w3, target):
    w = [_leaf(v) for v in (w1, w2, w3)]
    h1 = torch.relu(w[0] * x)
    h2 = torch.relu(w[1] * h1)
    loss = 0.5 * (w[2] * h2 - target) ** 2
    loss.backward()
    return [loss.item()] + [wi.grad.item() for wi in w]


def check_scalar_chain(scalar_chain, seed=None, n_random=0):
    """Check ``scalar_chain(x, w1, w2, w3, target) -> (loss, dL_dw1, dL_dw2, dL_dw3)``.

    Runs the two worked cases (dying and flowing ReLU); with ``seed``, adds
    ``n_random`` random cases.
    """
    check = ExerciseCheck("scalar_chain")
    # The flowing case first: there a wrong-side gate and an ignored gate differ.
    cases = [FLOWING_CASE, DYING_CASE, KINK_CASE]
    if seed is not None:
        rng = np.random.default_rng(seed)
        for _ in range(n_random):
            v = rng.normal(0.0, 1.0, size=5) + np.array([1.0, 0.5, 0.0, 0.0, 0.0])
            cases.append(dict(x=float(v[0]), w1=float(v[1]), w2=float(v[2]), w3=float(v[3]), target=float(v[4])))
    wrong_gates = {
        "grad-wrt-activation-output": lambda z: 1.0,
        "relu-derivative-wrong-side": lambda z: float(z < 0),
        "relu-derivative-at-zero": lambda z: float(z >= 0),
    }
    names = ("loss", "dL/dW1", "dL/dW2", "dL/dW3")
    ruled_out: set = set()
    for case in cases:
        call = call_student(scalar_chain, "scalar_chain", **case)
        got = unpack(call.result, "scalar_chain", ("loss", "dL_dw1", "dL_dw2", "dL_dw3"))
        expected = _chain_torch(**case)
        wrong = {k: _per_layer(g, lambda g1, g2: _chain_numpy(**case, gate1=g1, gate2=g2))
                 for k, g in wrong_gates.items()}
        # A mistake that changes the result of a case already passed is not the student's: leave it out.
        # (In the dying case an ignored gate and a wrong-side gate agree; the flowing case, first, tells them apart.)
        live = {k: [v for j, v in enumerate(vs) if (k, j) not in ruled_out] for k, vs in wrong.items()}
        for i, name in enumerate(names):
            check.compare(name, got[i], expected[i], call, case=f"case w2={case['w2']:.3g}",
                          variants=exclusive({k: [v[i] for v in vs] for k, vs in live.items()}, expected[i]))
        ruled_out |= {(k, j) for k, vs in wrong.items() for j, v in enumerate(vs)
                      if not np.allclose(v, expected, rtol=1e-9, atol=1e-12)}
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 2: activation derivatives
# ---------------------------------------------------------------------------


def _activation_inputs(seed, shape):
    """Random z with exact zeros and |z| = 1e3 planted, reshaped to ``shape``."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    z = rng.normal(0.0, 3.0, size=size)
    planted = np.array([0.0, 1e3, -1e3, 1e-3, -1e-3, 0.0])
    z[: min(size, planted.size)] = planted[: min(size, planted.size)]
    return rng.permutation(z).reshape(shape)


#: The points of Exercise 2's grade cell, shared by its four functions (partial credit per function).
ACTIVATION_GRADS_POINTS = 2.0


def check_activation_grads(sigmoid_grad, tanh_grad, relu_grad, leaky_relu_grad, seed=0, shape=(4, 5),
                           negative_slope=0.2):
    """Check the four derivative functions elementwise against autograd, each for its own points.

    The inputs contain exact zeros (where ReLU's derivative convention matters)
    and values of magnitude 1e3 (where a naive sigmoid overflows). When some functions are
    right and others wrong, it returns their points (a :class:`PartialScore`, counting every
    call of the grade cell), which nbgrader and ``make grade`` take as the cell's score
    (checker.exercise.score_parts).
    """
    check = ExerciseCheck("activation derivatives")
    z = _activation_inputs(seed, shape)
    functions = {"sigmoid_grad": sigmoid_grad, "tanh_grad": tanh_grad, "relu_grad": relu_grad,
                 "leaky_relu_grad": leaky_relu_grad}
    outcomes = {}
    for name, fn in functions.items():
        try:
            _check_activation_grad(check, name, fn, z, negative_slope)
            outcomes[name] = None
        except CheckFailure as failure:
            outcomes[name] = failure
    check.cases = 1
    return score_parts(ACTIVATION_GRADS_POINTS, outcomes, check.passed, "check_activation_grads")


def _check_activation_grad(check, name, fn, z, s):
    """Compare one derivative function at ``z`` with autograd (``s``: LeakyReLU's negative slope)."""
    specs = {
        "sigmoid_grad": ({}, torch.sigmoid,
                         {"grad-wrt-activation-output": sigmoid(sigmoid(z)) * (1 - sigmoid(sigmoid(z)))}),
        "tanh_grad": ({}, torch.tanh, {"grad-wrt-activation-output": 1 - np.tanh(np.tanh(z)) ** 2}),
        "relu_grad": ({}, torch.relu,
                      {"relu-derivative-wrong-side": [(z < 0) * 1.0, (z <= 0) * 1.0],
                       "relu-derivative-at-zero": (z >= 0) * 1.0}),
        "leaky_relu_grad": ({"negative_slope": s}, lambda t: torch.nn.functional.leaky_relu(t, s),
                            {"relu-derivative-wrong-side": [np.where(z > 0, s, 1.0), np.where(z >= 0, s, 1.0)],
                             "relu-derivative-at-zero": np.where(z >= 0, 1.0, s)}),
    }
    extra, torch_fn, variants = specs[name]
    call = call_student(fn, name, z=z, **extra)
    expected = _grad_of(torch_fn, z)
    check.compare(f"d {name.replace('_grad', '')}/dz", call.result, expected, call,
                  variants=exclusive(variants, expected))


# ---------------------------------------------------------------------------
# Exercise 3: a batched linear layer
# ---------------------------------------------------------------------------


def _linear_inputs(seed, n, n_in, n_out):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, n_in)), rng.normal(size=(n_in, n_out)) / np.sqrt(n_in),
            rng.normal(size=n_out), rng.normal(size=(n, n_out)))


#: The points of Exercise 3's grade cell, shared by linear_forward and linear_backward.
LINEAR_LAYER_POINTS = 3.0


def check_linear_layer(linear_forward, linear_backward, seed=0, shapes=((5, 3, 7),)):
    """Check ``linear_forward(X, W, b)`` and ``linear_backward(dL_dY, X, W)``, each for its own points.

    ``shapes`` lists (n_samples, n_in, n_out) triples. The upstream gradient
    dL/dY is random, so every entry of every gradient is exercised. N, n_in and
    n_out differ from each other and from 2 and no two are in a ratio of 2, so a
    division by one of them is never mistaken for another or for a factor of two.
    A square W (n_in == n_out) lets a missing transpose run without a shape error.
    The two functions are independent (the backward pass is given X and W), so one
    wrong function costs its half of the points only (checker.exercise.score_parts).
    """
    check = ExerciseCheck("linear layer")
    cases = []
    for k, (n, n_in, n_out) in enumerate(shapes):
        X, W, b, dL_dY = _linear_inputs(seed + k, n, n_in, n_out)
        Xt, Wt, bt = _leaf(X), _leaf(W), _leaf(b)
        Yt = Xt @ Wt + bt
        Yt.backward(torch.tensor(dL_dY, dtype=DT))
        cases.append((X, W, b, dL_dY, Xt, Wt, bt, Yt, f"N={n}, n_in={n_in}, n_out={n_out}", n, n_in == n_out))

    def forward_part():
        for X, W, b, _, _, _, _, Yt, where, _, _ in cases:
            call = call_student(linear_forward, "linear_forward", X=X, W=W, b=b)
            check.compare("Y", call.result, Yt.detach().numpy(), call, case=where, reference="PyTorch forward")

    def backward_part():
        for X, W, _, dL_dY, Xt, Wt, bt, _, where, n, square in cases:
            call = call_student(linear_backward, "linear_backward", dL_dY=dL_dY, X=X, W=W)
            dL_dX, dL_dW, dL_db = unpack(call.result, "linear_backward", ("dL_dX", "dL_dW", "dL_db"))
            check.compare("dL/dX", dL_dX, Xt.grad.numpy(), call, case=where, mean_count=n,
                          variants=exclusive({"transposed-gradient": dL_dY @ W} if square else {},
                                             Xt.grad.numpy()))
            check.compare("dL/dW", dL_dW, Wt.grad.numpy(), call, case=where, mean_count=n)
            check.compare("dL/db", dL_db, bt.grad.numpy(), call, case=where, mean_count=n,
                          variants=exclusive({"wrong-axis-reduction": dL_dY.sum(axis=1)}, bt.grad.numpy()))

    outcomes = {"linear_forward": outcome(forward_part), "linear_backward": outcome(backward_part)}
    check.cases = len(cases)
    return score_parts(LINEAR_LAYER_POINTS, outcomes, check.passed, "check_linear_layer")


# ---------------------------------------------------------------------------
# Exercise 4: mean squared error
# ---------------------------------------------------------------------------


def check_mse(mse_loss_and_grad, seed=0, shapes=((6, 1),)):
    """Check ``mse_loss_and_grad(y_pred, y_true) -> (loss, dL_dy_pred)`` (mean over all elements)."""
    check = ExerciseCheck("mse_loss_and_grad")
    for k, shape in enumerate(shapes):
        rng = np.random.default_rng(seed + k)
        y_pred, y_true = rng.normal(size=shape), rng.normal(size=shape)
        yt = _leaf(y_pred)
        loss = torch.nn.functional.mse_loss(yt, torch.tensor(y_true, dtype=DT))
        loss.backward()
        call = call_student(mse_loss_and_grad, "mse_loss_and_grad", y_pred=y_pred, y_true=y_true)
        got_loss, got_grad = unpack(call.result, "mse_loss_and_grad", ("loss", "dL_dy_pred"))
        count = y_pred.size
        check.compare("loss", got_loss, loss.item(), call, mean_count=count, reference="torch mse_loss")
        # The wrong counts: rows instead of elements, outputs per row instead of elements.
        check.compare("dL/dy_pred", got_grad, yt.grad.numpy(), call, mean_count=count,
                      variants=exclusive({"batch-size-scaling": [2 * (y_pred - y_true) / shape[0],
                                                                 2 * (y_pred - y_true) / shape[-1]]},
                                         yt.grad.numpy()))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 5: softmax cross-entropy from logits
# ---------------------------------------------------------------------------


def _ce_inputs(seed, n, n_classes, big_row):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, n_classes))
    labels = rng.integers(0, n_classes, size=n)
    if big_row:
        # Logits of magnitude 1e3: exp overflows unless shifted by the max.
        logits[0] = np.linspace(-1e3, 1e3, n_classes)
        labels[0] = n_classes - 1
    return logits, labels


def _ce_global_shift(logits, labels):
    """Loss and gradient when the logits are shifted by their global max instead of each row's.

    Mathematically the same; numerically, every row far below the global max underflows:
    exp(...) = 0, log(0) = -inf, so the loss is inf (the variant keeps those non-finite values).
    """
    n = logits.shape[0]
    with np.errstate(all="ignore"):
        shifted = logits - logits.max()
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -np.mean(log_probs[np.arange(n), labels])
        grad = (np.exp(log_probs) - one_hot(labels, logits.shape[1])) / n
    return loss, grad


def _ce_wrong_axis(logits, labels):
    p0 = softmax(logits, axis=0)
    n = logits.shape[0]
    loss = -np.mean(log_softmax(logits, axis=0)[np.arange(n), labels])
    return loss, (p0 - one_hot(labels, logits.shape[1])) / n


def check_softmax_cross_entropy(softmax_cross_entropy, seed=0, shapes=((4, 3),), big_row=True):
    """Check ``softmax_cross_entropy(logits, labels) -> (loss, dL_dlogits)`` (mean over the batch).

    With ``big_row``, the first row of logits spans -1e3..1e3.
    """
    check = ExerciseCheck("softmax_cross_entropy")
    for k, (n, c) in enumerate(shapes):
        logits, labels = _ce_inputs(seed + k, n, c, big_row)
        lt = _leaf(logits)
        loss = torch.nn.functional.cross_entropy(lt, torch.tensor(labels))
        loss.backward()
        call = call_student(softmax_cross_entropy, "softmax_cross_entropy", logits=logits, labels=labels)
        got_loss, got_grad = unpack(call.result, "softmax_cross_entropy", ("loss", "dL_dlogits"))
        wrong_loss, wrong_grad = _ce_wrong_axis(logits, labels)
        global_loss, global_grad = _ce_global_shift(logits, labels)
        right_grad = lt.grad.numpy()
        # The non-finite global-shift variant is never close to anything, so exclusive() keeps it apart.
        check.compare("loss", got_loss, loss.item(), call, mean_count=n, reference="torch cross_entropy",
                      variants={**(exclusive({"softmax-wrong-axis": wrong_loss}, loss.item()) or {}),
                                "max-shift-not-per-row": global_loss})
        check.compare("dL/dlogits", got_grad, right_grad, call, mean_count=n,
                      variants={**(exclusive({"softmax-wrong-axis": wrong_grad,
                                              # divided by the number of classes instead of the batch size
                                              "batch-size-scaling": right_grad * n / c}, right_grad) or {}),
                                "max-shift-not-per-row": global_grad})
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 6: a 3-layer MLP, forward and backward
# ---------------------------------------------------------------------------


def make_mlp_params(seed, sizes):
    """He-scaled weights and non-zero biases for layer ``sizes`` (n_in, h1, h2, n_classes).

    Biases are random, not zero, so some ReLU units start inactive and a wrong
    ReLU gate changes the gradient.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = rng.normal(0.0, np.sqrt(2.0 / a), size=(a, b))
        params[f"b{i}"] = rng.normal(0.0, 0.5, size=b)
    return params


def _mlp_numpy(params, X, labels, gate1, gate2):
    """Trusted backward pass with configurable ReLU derivatives per layer (for variants)."""
    Z1 = X @ params["W1"] + params["b1"]
    H1 = np.maximum(Z1, 0)
    Z2 = H1 @ params["W2"] + params["b2"]
    H2 = np.maximum(Z2, 0)
    logits = H2 @ params["W3"] + params["b3"]
    n = X.shape[0]
    dZ3 = (softmax(logits, axis=1) - one_hot(labels, logits.shape[1])) / n
    dZ2 = (dZ3 @ params["W3"].T) * gate2(Z2)
    dZ1 = (dZ2 @ params["W2"].T) * gate1(Z1)
    return {"W3": H2.T @ dZ3, "b3": dZ3.sum(0), "W2": H1.T @ dZ2, "b2": dZ2.sum(0),
            "W1": X.T @ dZ1, "b1": dZ1.sum(0)}


def _relu_mask(z):
    return (z > 0) * 1.0


def _linear_forward(X, W, b):
    """Exercise 3's ``linear_forward`` as a correct submission has it."""
    return X @ W + b


def _linear_backward(dL_dY, X, W):
    """Exercise 3's ``linear_backward`` as a correct submission has it."""
    return dL_dY @ W.T, X.T @ dL_dY, dL_dY.sum(axis=0)


def _softmax_cross_entropy(logits, labels):
    """Exercise 5's ``softmax_cross_entropy`` as a correct submission has it."""
    return math_utils.cross_entropy(logits, labels), math_utils.cross_entropy_grad(logits, labels)


#: The earlier exercises' functions an MLP may call by name, as a correct submission has them: when
#: the MLP check fails only because of one of them, it passes with these in their place and the
#: mistake costs that earlier exercise's points only (checker.exercise.charge_once).
MLP_DEPENDENCIES = {
    "sigmoid_grad": (math_utils.sigmoid_grad, "Exercise 2"),
    "tanh_grad": (math_utils.tanh_grad, "Exercise 2"),
    "relu_grad": (math_utils.relu_grad, "Exercise 2"),
    "leaky_relu_grad": (math_utils.leaky_relu_grad, "Exercise 2"),
    "linear_forward": (_linear_forward, "Exercise 3"),
    "linear_backward": (_linear_backward, "Exercise 3"),
    "softmax_cross_entropy": (_softmax_cross_entropy, "Exercise 5"),
}


@charges_once(**MLP_DEPENDENCIES)
def check_mlp(mlp_forward, mlp_backward, seed=0, sizes=(2, 5, 4, 3), n_samples=7):
    """Check ``mlp_forward(params, X) -> (logits, cache)`` and
    ``mlp_backward(params, cache, labels) -> grads`` parameter by parameter.

    The first sample is all zeros and the first bias of layer 1 is 0, so Z1[0, 0] = 0
    exactly: a ReLU derivative of 1 at the kink changes dL/db1.
    """
    check = ExerciseCheck("mlp")
    rng = np.random.default_rng(seed + 1000)
    params = make_mlp_params(seed, sizes)
    params["b1"][0] = 0.0
    X = rng.normal(size=(n_samples, sizes[0]))
    X[0] = 0.0
    labels = rng.integers(0, sizes[-1], size=n_samples)

    leaves = {k: _leaf(v) for k, v in params.items()}
    h = torch.tensor(X, dtype=DT)
    for i in (1, 2, 3):
        h = h @ leaves[f"W{i}"] + leaves[f"b{i}"]
        if i < 3:
            h = torch.relu(h)
    torch.nn.functional.cross_entropy(h, torch.tensor(labels)).backward()

    call = call_student(mlp_forward, "mlp_forward", params=params, X=X)
    logits, cache = unpack(call.result, "mlp_forward", ("logits", "cache"))
    check.compare("logits", logits, h.detach().numpy(), call, reference="PyTorch forward")

    call = call_student(mlp_backward, "mlp_backward", params=params, cache=cache, labels=labels)
    grads = call.result
    if not isinstance(grads, dict) or set(PARAM_NAMES) - set(grads):
        missing = sorted(set(PARAM_NAMES) - set(grads)) if isinstance(grads, dict) else PARAM_NAMES
        raise CheckFailure(f"mlp_backward must return a dict with keys {', '.join(PARAM_NAMES)}; "
                           f"missing: {', '.join(missing)}.", "wrong-return-type")
    wrong_gates = {
        "grad-wrt-activation-output": lambda z: 1.0,
        "relu-derivative-wrong-side": lambda z: (z <= 0) * 1.0,
        "relu-derivative-at-zero": lambda z: (z >= 0) * 1.0,
    }
    backprop = lambda g1, g2: _mlp_numpy(params, X, labels, g1, g2)  # noqa: E731
    wrong = {k: _per_layer(g, backprop, _relu_mask) for k, g in wrong_gates.items()}
    for name in PARAM_NAMES:
        expected = leaves[name].grad.numpy()
        check.compare(f"dL/d{name}", grads[name], expected, call, mean_count=n_samples,
                      variants=exclusive({k: [v[name] for v in vs] for k, vs in wrong.items()}, expected))
    check.cases = 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 7: numerical gradient by central differences
# ---------------------------------------------------------------------------

#: Central differences with eps = 1e-4 are accurate to ~1e-8 here; forward ones to ~1e-4.
NUMERICAL_TOL = Tolerance(atol=1e-6, rtol=1e-5)


def _wiggly(x):
    return float(np.sum(np.sin(x) * x ** 2) + 0.5 * np.sum(x) ** 2)


def _wiggly_torch(x):
    return (torch.sin(x) * x ** 2).sum() + 0.5 * x.sum() ** 2


def check_numerical_grad(numerical_grad, seed=0, shapes=((3, 4),), eps=1e-4):
    """Check ``numerical_grad(f, x, eps) -> grad`` (same shape as ``x``) on a smooth function."""
    check = ExerciseCheck("numerical_grad", tol=NUMERICAL_TOL)
    for k, shape in enumerate(shapes):
        x = np.random.default_rng(seed + k).normal(size=shape)
        xt = _leaf(x)
        _wiggly_torch(xt).backward()
        forward, backward = np.zeros_like(x), np.zeros_like(x)
        for i in np.ndindex(x.shape):
            up, down = x.copy(), x.copy()
            up[i] += eps
            down[i] -= eps
            forward[i] = (_wiggly(up) - _wiggly(x)) / eps
            backward[i] = (_wiggly(x) - _wiggly(down)) / eps
        call = call_student(numerical_grad, "numerical_grad", f=_wiggly, x=x, eps=eps)
        check.compare("df/dx", call.result, xt.grad.numpy(), call,
                      variants=exclusive({"forward-difference": [forward, backward]}, xt.grad.numpy()))
        check.cases += 1
    return check.passed()


# ---------------------------------------------------------------------------
# Exercise 8: one step of gradient descent
# ---------------------------------------------------------------------------


def _key_order_with_same_shapes_swapped(params) -> list:
    """The parameter names with the first two same-shaped entries swapped (b1 and b2 when h1 == h2)."""
    names = list(params)
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            if params[a].shape == params[names[j]].shape:
                names[i], names[j] = names[j], names[i]
                return names
    return names[::-1]


def check_sgd_step(sgd_step, seed=0, sizes=(2, 4, 4, 3), lr=0.1):
    """Check ``sgd_step(params, grads, lr) -> new_params`` against ``torch.optim.SGD``.

    ``grads`` comes in another key order than ``params`` (b2 before b1: with h1 == h2 they have
    the same shape), so pairing the two dicts by position instead of by name gives wrong values.
    """
    check = ExerciseCheck("sgd_step", reference="torch.optim.SGD")
    params = make_mlp_params(seed, sizes)
    grads_by_name = make_mlp_params(seed + 1, sizes)
    grads = {k: grads_by_name[k] for k in _key_order_with_same_shapes_swapped(params)}
    by_position = {name: params[name] - lr * g if params[name].shape == g.shape else None
                   for name, g in zip(params, grads.values())}
    leaves = {k: _leaf(v) for k, v in params.items()}
    opt = torch.optim.SGD(list(leaves.values()), lr=lr)
    for k, leaf in leaves.items():
        leaf.grad = torch.tensor(grads[k], dtype=DT)
    opt.step()
    call = call_student(sgd_step, "sgd_step", params=params, grads=grads, lr=lr)
    new = call.result
    if not isinstance(new, dict) or set(PARAM_NAMES) - set(new):
        raise CheckFailure(f"sgd_step must return a dict with keys {', '.join(PARAM_NAMES)}.",
                           "wrong-return-type")
    for name in PARAM_NAMES:
        # Updating the dict's arrays in place is allowed here, so no mutation check.
        expected = leaves[name].detach().numpy()
        check.compare(f"new {name}", new[name], expected, call, mutated_inputs=(),
                      variants=exclusive({"sign-flipped": params[name] + lr * grads[name],
                                          "dict-key-order": by_position[name]}, expected))
    check.cases = 1
    return check.passed()


#: Grade-cell points of the checks that score each of their functions separately (partial credit:
#: checker.exercise.score_parts); tests/unit/test_partial_credit.py keeps them equal to the notebook's.
POINTS = {"check_activation_grads": ACTIVATION_GRADS_POINTS, "check_linear_layer": LINEAR_LAYER_POINTS}
