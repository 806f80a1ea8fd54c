"""Unit tests for ``scripts/math_utils.py``.

Every value and derivative is checked three ways: against PyTorch (float64,
autograd for the derivatives), against ``math_utils.numerical_gradient``
(central differences), and with hypothesis properties over shapes and values
up to |z| = 1e3, where the module promises to stay finite and warning-free.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import math_utils as mu

# ---------------------------------------------------------------------------
# Tolerances (each one says why it is that size)
# ---------------------------------------------------------------------------

# Largest |input| the module promises to handle without overflow or NaN.
VALUE_BOUND = 1e3

# numpy and torch evaluate the same closed forms in float64; what differs is a
# few ulps of rounding and scipy's vs torch's erf/exp. 1e-12 relative is ~4500
# ulps of headroom; the absolute floor covers results that are ~0 (gelu and
# its derivative far left, where 1 + erf(z) cancels on both sides).
TORCH_RTOL = 1e-12
TORCH_ATOL = 1e-14

# log_softmax (and so cross_entropy) is computed as z - (max + log(sum)), torch
# as (z - max) - log(sum): the two differ by rounding at the scale of the
# *inputs*, one ulp of max|z| (2.8e-14 at |z| = 238), which swamps a result
# near 0 such as the log-probability of a near-certain class. Allow a few ulps.
INPUT_SCALE_ULPS = 4

# Central differences with eps = 1e-6 on sums of <= 24 terms: truncation error
# O(eps**2 * f''') ~ 1e-12, round-off ~ ulp(f) / eps ~ 1e-14 / 1e-6 = 1e-8 at
# worst. The absolute floor covers derivatives that cross zero (gelu near
# z = -0.75) or are exactly 0 (relu on the negative side).
NUMERIC_RTOL = 1e-6
NUMERIC_ATOL = 1e-8

# The target for numerical_gradient vs autograd on a smooth function
# whose gradient stays >= 0.4 (so relative_error is never dominated by ~0s).
SMOOTH_FN_REL_TOL = 1e-7

# A slice of softmax holds <= 6 terms, each rounded once in exp and once in the
# division: the sum is 1 to within ~10 ulps (2e-15); 1e-12 is generous.
SUM_TO_ONE_ATOL = 1e-12

# softmax(z + c) vs softmax(z): z + c rounds at ulp(2000) ~ 2.3e-13, which moves
# exp() by as much in relative terms, and slices then renormalise it.
SHIFT_INVARIANCE_RTOL = 1e-9
SHIFT_INVARIANCE_ATOL = 1e-12

# sigmoid(-z) and 1 - sigmoid(z) are each within ~2 ulps (of 1) of the truth,
# so they differ by at most ~4.4e-16 in absolute terms.
SIGMOID_SYMMETRY_ATOL = 1e-15

# gelu(z) - gelu(-z) = z exactly in real arithmetic (Phi(z) + Phi(-z) = 1);
# in float64 each gelu is within a few ulps of |z|.
GELU_ODD_PART_RTOL = 1e-12
GELU_ODD_PART_ATOL = 1e-15

# The test scales by powers of two, which is exact in float64, so the error may
# change only by the rounding of the final division.
SCALE_FREE_RTOL = 1e-14

# Initialisers: with N = 160,000 draws the sample variance has a relative
# standard error of sqrt(2 / N) ~ 0.35 %, so 5 % is ~14 standard errors: the
# test never flakes, yet a wrong fan (2/n_out, 1/n_in) is off by far more.
INIT_SHAPE = (200, 800)  # non-square on purpose: catches a swapped fan_in/fan_out
INIT_VAR_RTOL = 0.05
# The sample mean has a standard error of std / sqrt(N) = std / 400; allow
# 8 standard errors, expressed as a fraction of the std.
INIT_MEAN_ATOL_IN_STD = 8 / 400
# A uniform(-a, a) sample of 160,000 reaches within 0.1 % of the bound with
# probability 1 - (0.999)**160000 ~ 1.
UNIFORM_BOUND_REACH = 0.999

SEED = 20240601

# Hypothesis: enough examples to hit boundaries and mixed signs, few enough to
# keep the file fast; derandomize so CI runs are reproducible, and no example
# database so the test run writes nothing into the repository.
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)

# ---------------------------------------------------------------------------
# Strategies and helpers
# ---------------------------------------------------------------------------

finite_values = st.floats(
    min_value=-VALUE_BOUND, max_value=VALUE_BOUND, allow_nan=False, allow_infinity=False, width=64
)
array_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
float_arrays = hnp.arrays(np.float64, array_shapes, elements=finite_values)

# Inputs at the edges of float64 exp: exp(709.8) overflows, exp(-745.2) is 0;
# plus signed zero, the smallest subnormal and the promised bound.
EXTREME_INPUTS = np.array(
    [-VALUE_BOUND, -745.2, -709.8, -40.0, -1e-300, -0.0, 0.0, 5e-324, 40.0, 709.8, 745.2, VALUE_BOUND]
)


@st.composite
def arrays_and_axis(draw):
    """An array from ``float_arrays`` and a valid (possibly negative) axis of it."""
    values = draw(float_arrays)
    axis = draw(st.integers(min_value=-values.ndim, max_value=values.ndim - 1))
    return values, axis


@st.composite
def prediction_target_pairs(draw):
    """Two float arrays of the same shape: (y_pred, y_true)."""
    shape = draw(array_shapes)
    y_pred = draw(hnp.arrays(np.float64, shape, elements=finite_values))
    y_true = draw(hnp.arrays(np.float64, shape, elements=finite_values))
    return y_pred, y_true


@st.composite
def logits_and_labels(draw):
    """Logits of shape (n_samples, n_classes) and int64 labels in [0, n_classes)."""
    n_samples = draw(st.integers(min_value=1, max_value=6))
    n_classes = draw(st.integers(min_value=1, max_value=6))
    logits = draw(hnp.arrays(np.float64, (n_samples, n_classes), elements=finite_values))
    labels = draw(
        hnp.arrays(np.int64, (n_samples,), elements=st.integers(min_value=0, max_value=n_classes - 1))
    )
    return logits, labels


@contextlib.contextmanager
def strict_float_errors():
    """Turn every warning and every overflow / invalid / divide-by-zero into an error.

    Underflow stays allowed: exp(-1000) quietly becoming 0 is the right answer.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield


def as_tensor(values, requires_grad=False):
    """A float64 torch copy of a numpy array (of any strides: torch rejects negative ones)."""
    contiguous = np.ascontiguousarray(values, dtype=np.float64)
    return torch.tensor(contiguous, dtype=torch.float64, requires_grad=requires_grad)


def torch_value_and_input_grad(torch_fn, z):
    """``torch_fn(z)`` and d(sum torch_fn(z))/dz by autograd, both as numpy arrays.

    For an elementwise function the gradient of the sum is the derivative itself.
    """
    z_tensor = as_tensor(z, requires_grad=True)
    out = torch_fn(z_tensor)
    out.sum().backward()
    return out.detach().numpy(), z_tensor.grad.numpy()


def assert_close_to_torch(actual, expected, input_scale=0.0):
    """Equal to the torch reference within TORCH_RTOL / TORCH_ATOL.

    ``input_scale`` (max |input|) widens the absolute tolerance to
    INPUT_SCALE_ULPS ulps of it, for results that inherit the inputs' rounding.
    """
    atol = max(TORCH_ATOL, INPUT_SCALE_ULPS * float(np.spacing(input_scale)))
    np.testing.assert_allclose(actual, expected, rtol=TORCH_RTOL, atol=atol)


def moderate_inputs(shape, rng):
    """Values with 0.1 <= |z| <= 3: smooth region of every activation, kinks avoided.

    ReLU and LeakyReLU are not differentiable at 0, so central differences are
    only meaningful at least eps away from it.
    """
    magnitudes = rng.uniform(0.1, 3.0, size=shape)
    signs = rng.choice([-1.0, 1.0], size=shape)
    return signs * magnitudes


# ---------------------------------------------------------------------------
# Case tables
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationCase:
    """An elementwise activation, its derivative, and the torch reference."""

    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]
    torch_forward: Callable[[torch.Tensor], torch.Tensor]


ACTIVATION_CASES = [
    ActivationCase("sigmoid", mu.sigmoid, mu.sigmoid_grad, torch.sigmoid),
    ActivationCase("tanh", mu.tanh, mu.tanh_grad, torch.tanh),
    ActivationCase("relu", mu.relu, mu.relu_grad, F.relu),
    ActivationCase("leaky_relu", mu.leaky_relu, mu.leaky_relu_grad, F.leaky_relu),  # both default to 0.01
    ActivationCase(
        "leaky_relu_slope_0.2",
        partial(mu.leaky_relu, negative_slope=0.2),
        partial(mu.leaky_relu_grad, negative_slope=0.2),
        partial(F.leaky_relu, negative_slope=0.2),
    ),
    ActivationCase("gelu", mu.gelu, mu.gelu_grad, partial(F.gelu, approximate="none")),
]
activation_params = pytest.mark.parametrize(
    "case", [pytest.param(case, id=case.name) for case in ACTIVATION_CASES]
)

# (name, numpy function taking an axis, torch function taking a dim)
SOFTMAX_FAMILY_CASES = [
    ("softmax", mu.softmax, lambda t, axis: torch.softmax(t, dim=axis)),
    ("log_softmax", mu.log_softmax, lambda t, axis: F.log_softmax(t, dim=axis)),
    ("log_sum_exp", mu.log_sum_exp, lambda t, axis: torch.special.logsumexp(t, dim=axis)),
]
softmax_family_params = pytest.mark.parametrize(
    "numpy_fn, torch_fn",
    [pytest.param(numpy_fn, torch_fn, id=name) for name, numpy_fn, torch_fn in SOFTMAX_FAMILY_CASES],
)

# ---------------------------------------------------------------------------
# Activations: forward and derivative against torch, numerical gradient
# ---------------------------------------------------------------------------


@activation_params
@PROPERTY_SETTINGS
@given(z=float_arrays)
@example(z=EXTREME_INPUTS)
def test_activation_and_derivative_match_torch_autograd(case, z):
    """Forward value and derivative equal torch's, with no warning or NaN, for |z| <= 1e3."""
    with strict_float_errors():
        value = case.forward(z)
        derivative = case.derivative(z)
    torch_value, torch_derivative = torch_value_and_input_grad(case.torch_forward, z)

    assert value.shape == z.shape and derivative.shape == z.shape
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(derivative))
    assert_close_to_torch(value, torch_value)
    assert_close_to_torch(derivative, torch_derivative)


@activation_params
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)])
def test_activation_derivative_matches_numerical_gradient(case, shape):
    """The analytic derivative equals central differences of sum(f(z)) on moderate inputs."""
    z = moderate_inputs(shape, np.random.default_rng(SEED))

    numeric = mu.numerical_gradient(lambda x: np.sum(case.forward(x)), z)

    np.testing.assert_allclose(case.derivative(z), numeric, rtol=NUMERIC_RTOL, atol=NUMERIC_ATOL)


@pytest.mark.parametrize("zero", [0.0, -0.0], ids=["+0", "-0"])
def test_kink_derivatives_at_zero_follow_pytorch(zero):
    """At exactly 0, relu' is 0 and leaky_relu' is the negative slope, as in PyTorch."""
    z = np.array([zero])
    _, torch_relu_grad = torch_value_and_input_grad(F.relu, z)
    _, torch_leaky_grad = torch_value_and_input_grad(partial(F.leaky_relu, negative_slope=0.2), z)

    assert mu.relu_grad(z)[0] == 0.0 == torch_relu_grad[0]
    assert mu.leaky_relu_grad(z, negative_slope=0.2)[0] == 0.2 == torch_leaky_grad[0]


# ---------------------------------------------------------------------------
# Activations: properties
# ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(z=float_arrays)
@example(z=EXTREME_INPUTS)
def test_sigmoid_is_a_probability_and_symmetric(z):
    """sigmoid(z) lies in [0, 1] and sigmoid(-z) = 1 - sigmoid(z)."""
    with strict_float_errors():
        s = mu.sigmoid(z)
        s_of_negated = mu.sigmoid(-z)

    assert np.all((s >= 0.0) & (s <= 1.0))
    np.testing.assert_allclose(s_of_negated, 1.0 - s, rtol=0, atol=SIGMOID_SYMMETRY_ATOL)


@PROPERTY_SETTINGS
@given(z=float_arrays)
@example(z=EXTREME_INPUTS)
def test_tanh_is_odd_and_bounded(z):
    """tanh lies in [-1, 1], is odd, and its derivative lies in [0, 1]."""
    with strict_float_errors():
        t = mu.tanh(z)
        derivative = mu.tanh_grad(z)

    assert np.all(np.abs(t) <= 1.0)
    np.testing.assert_array_equal(mu.tanh(-z), -t)  # np.tanh is correctly odd, bit for bit
    assert np.all((derivative >= 0.0) & (derivative <= 1.0))


@PROPERTY_SETTINGS
@given(z=float_arrays)
@example(z=EXTREME_INPUTS)
def test_relu_family_pieces(z):
    """relu(z) - relu(-z) = z exactly, relu >= 0, and leaky_relu = relu(z) - slope * relu(-z)."""
    with strict_float_errors():
        positive_part = mu.relu(z)
        leaky = mu.leaky_relu(z, negative_slope=0.1)
        relu_derivative = mu.relu_grad(z)

    assert np.all(positive_part >= 0.0)
    np.testing.assert_array_equal(positive_part - mu.relu(-z), z)
    # Not np.sign: 0.1 * (-5e-324) underflows to -0.0, whose sign is 0.
    assert np.all((leaky > 0) == (z > 0)) and np.all(np.abs(leaky) <= np.abs(z))
    np.testing.assert_array_equal(leaky, positive_part - 0.1 * mu.relu(-z))
    np.testing.assert_array_equal(relu_derivative, (z > 0).astype(np.float64))


@PROPERTY_SETTINGS
@given(z=float_arrays)
@example(z=EXTREME_INPUTS)
def test_gelu_odd_part_is_identity_and_derivative_is_bounded(z):
    """gelu(z) - gelu(-z) = z, and gelu' stays within its extrema at z = -+sqrt(2)."""
    with strict_float_errors():
        odd_part = mu.gelu(z) - mu.gelu(-z)
        derivative = mu.gelu_grad(z)

    # gelu'' = phi(z) (2 - z**2) vanishes at z = +-sqrt(2): these are gelu's extreme slopes.
    def exact_gelu_grad(x):
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))) + x * math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    min_slope, max_slope = exact_gelu_grad(-math.sqrt(2.0)), exact_gelu_grad(math.sqrt(2.0))
    np.testing.assert_allclose(odd_part, z, rtol=GELU_ODD_PART_RTOL, atol=GELU_ODD_PART_ATOL)
    assert np.all(derivative >= min_slope - TORCH_ATOL)
    assert np.all(derivative <= max_slope + TORCH_ATOL)


# ---------------------------------------------------------------------------
# Softmax family
# ---------------------------------------------------------------------------


@softmax_family_params
@PROPERTY_SETTINGS
@given(z_and_axis=arrays_and_axis())
@example(z_and_axis=(EXTREME_INPUTS, -1))
@example(z_and_axis=(EXTREME_INPUTS.reshape(3, 4), 0))
def test_softmax_family_matches_torch(numpy_fn, torch_fn, z_and_axis):
    """softmax, log_softmax and log_sum_exp equal torch's along any axis, warning-free."""
    z, axis = z_and_axis
    with strict_float_errors():
        result = numpy_fn(z, axis=axis)
    expected = torch_fn(as_tensor(z), axis).numpy()

    assert result.shape == expected.shape
    assert np.all(np.isfinite(result))
    assert_close_to_torch(result, expected, input_scale=np.max(np.abs(z)))


@PROPERTY_SETTINGS
@given(z_and_axis=arrays_and_axis())
@example(z_and_axis=(EXTREME_INPUTS, -1))
def test_softmax_slices_are_distributions(z_and_axis):
    """Every softmax slice lies in [0, 1] and sums to 1; log_softmax <= 0 and is its log."""
    z, axis = z_and_axis
    with strict_float_errors():
        probabilities = mu.softmax(z, axis=axis)
        log_probabilities = mu.log_softmax(z, axis=axis)

    assert np.all((probabilities >= 0.0) & (probabilities <= 1.0))
    np.testing.assert_allclose(probabilities.sum(axis=axis), 1.0, rtol=0, atol=SUM_TO_ONE_ATOL)
    assert np.all(log_probabilities <= 0.0)
    with np.errstate(under="ignore"):  # exp(-2000) -> 0 is expected, and equals the softmax
        np.testing.assert_allclose(np.exp(log_probabilities), probabilities, rtol=TORCH_RTOL, atol=TORCH_ATOL)


@PROPERTY_SETTINGS
@given(z_and_axis=arrays_and_axis(), shift=finite_values)
def test_softmax_is_shift_invariant(z_and_axis, shift):
    """softmax(z + c) = softmax(z): adding a constant to every logit changes nothing."""
    z, axis = z_and_axis
    with strict_float_errors():
        shifted = mu.softmax(z + shift, axis=axis)

    np.testing.assert_allclose(
        shifted, mu.softmax(z, axis=axis), rtol=SHIFT_INVARIANCE_RTOL, atol=SHIFT_INVARIANCE_ATOL
    )


@PROPERTY_SETTINGS
@given(z_and_axis=arrays_and_axis())
@example(z_and_axis=(EXTREME_INPUTS, -1))
def test_log_sum_exp_is_between_max_and_max_plus_log_n(z_and_axis):
    """max(z) <= log_sum_exp(z) <= max(z) + log(n), and keepdims keeps the axis as 1."""
    z, axis = z_and_axis
    with strict_float_errors():
        result = mu.log_sum_exp(z, axis=axis)
        kept = mu.log_sum_exp(z, axis=axis, keepdims=True)

    slice_max = np.max(z, axis=axis)
    slice_length = z.shape[axis]
    assert np.all(result >= slice_max)
    # Slack of a few ulps of |max| + log(n) for the final rounding of max + log(sum).
    rounding_slack = INPUT_SCALE_ULPS * np.spacing(np.abs(slice_max) + np.log(slice_length))
    assert np.all(result <= slice_max + np.log(slice_length) + rounding_slack)
    assert kept.shape == tuple(1 if i == axis % z.ndim else side for i, side in enumerate(z.shape))
    np.testing.assert_array_equal(np.squeeze(kept, axis=axis), result)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(pair=prediction_target_pairs())
def test_mse_loss_and_grad_match_torch_autograd(pair):
    """mse_loss equals F.mse_loss (mean) and mse_loss_grad equals its autograd gradient."""
    y_pred, y_true = pair
    with strict_float_errors():
        loss = mu.mse_loss(y_pred, y_true)
        grad = mu.mse_loss_grad(y_pred, y_true)
    y_pred_tensor = as_tensor(y_pred, requires_grad=True)
    torch_loss = F.mse_loss(y_pred_tensor, as_tensor(y_true))
    torch_loss.backward()

    assert isinstance(loss, float) and loss >= 0.0
    assert grad.shape == y_pred.shape
    assert_close_to_torch(loss, torch_loss.item())
    assert_close_to_torch(grad, y_pred_tensor.grad.numpy())


@PROPERTY_SETTINGS
@given(logits_labels=logits_and_labels())
@example(logits_labels=(EXTREME_INPUTS.reshape(3, 4), np.array([0, 3, 1])))
def test_cross_entropy_and_grad_match_torch_autograd(logits_labels):
    """cross_entropy equals F.cross_entropy (mean) and its gradient equals autograd's."""
    logits, labels = logits_labels
    with strict_float_errors():
        loss = mu.cross_entropy(logits, labels)
        grad = mu.cross_entropy_grad(logits, labels)
    logits_tensor = as_tensor(logits, requires_grad=True)
    torch_loss = F.cross_entropy(logits_tensor, torch.from_numpy(labels))
    torch_loss.backward()

    assert isinstance(loss, float) and math.isfinite(loss) and loss >= 0.0
    assert grad.shape == logits.shape
    assert_close_to_torch(loss, torch_loss.item(), input_scale=np.max(np.abs(logits)))
    assert_close_to_torch(grad, logits_tensor.grad.numpy())
    # Each row is (softmax - one_hot) / n: it sums to 0.
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, rtol=0, atol=SUM_TO_ONE_ATOL)


def test_loss_gradients_match_numerical_gradient():
    """mse_loss_grad and cross_entropy_grad equal central differences on moderate inputs."""
    rng = np.random.default_rng(SEED)
    y_pred, y_true = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    logits, labels = rng.normal(scale=2.0, size=(5, 4)), rng.integers(0, 4, size=5)

    numeric_mse = mu.numerical_gradient(lambda p: mu.mse_loss(p, y_true), y_pred)
    numeric_ce = mu.numerical_gradient(lambda z: mu.cross_entropy(z, labels), logits)

    np.testing.assert_allclose(mu.mse_loss_grad(y_pred, y_true), numeric_mse, rtol=NUMERIC_RTOL, atol=NUMERIC_ATOL)
    np.testing.assert_allclose(
        mu.cross_entropy_grad(logits, labels), numeric_ce, rtol=NUMERIC_RTOL, atol=NUMERIC_ATOL
    )


def test_one_hot_matches_torch():
    """one_hot gives float64 rows with a single 1 at the label, as F.one_hot."""
    labels = np.array([2, 0, 3, 3, 1])

    encoded = mu.one_hot(labels, 5)

    assert encoded.shape == (5, 5) and encoded.dtype == np.float64
    np.testing.assert_array_equal(encoded, F.one_hot(torch.from_numpy(labels), num_classes=5).numpy())
    np.testing.assert_array_equal(encoded.sum(axis=1), 1.0)
    np.testing.assert_array_equal(encoded.argmax(axis=1), labels)


# ---------------------------------------------------------------------------
# Gradient checking tools
# ---------------------------------------------------------------------------


def smooth_numpy_fn(x):
    """sum(exp(x / 2) + x**3 / 3): smooth, gradient exp(x / 2) / 2 + x**2 >= 0.4 everywhere."""
    return float(np.sum(np.exp(0.5 * x) + x**3 / 3.0))


def smooth_torch_fn(x):
    """Torch twin of :func:`smooth_numpy_fn`."""
    return torch.sum(torch.exp(0.5 * x) + x**3 / 3.0)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 2)], ids=["0d", "1d", "2d", "3d"])
def test_numerical_gradient_matches_autograd_for_any_shape(shape):
    """numerical_gradient agrees with autograd to ~1e-7 relative and returns x's shape."""
    x = np.random.default_rng(SEED).uniform(-2.0, 2.0, size=shape)
    x_before = x.copy()
    x_tensor = as_tensor(x, requires_grad=True)
    smooth_torch_fn(x_tensor).backward()

    numeric = mu.numerical_gradient(smooth_numpy_fn, x)

    assert numeric.shape == x.shape and numeric.dtype == np.float64
    assert mu.relative_error(numeric, x_tensor.grad.numpy()) < SMOOTH_FN_REL_TOL
    np.testing.assert_array_equal(x, x_before)  # the caller's array is untouched


def test_numerical_gradient_perturbs_one_coordinate_at_a_time_and_never_writes_x():
    """Every point f sees is x with at most one entry moved; a read-only x is fine.

    Separable test functions cannot tell whether earlier perturbations were undone,
    so record the points themselves.
    """
    x = np.random.default_rng(SEED).uniform(-2.0, 2.0, size=(3, 4))
    x.setflags(write=False)  # any in-place write to the caller's array raises
    points_seen = []

    def recording_fn(point):
        points_seen.append(point.copy())
        return smooth_numpy_fn(point)

    mu.numerical_gradient(recording_fn, x)

    assert points_seen
    for point in points_seen:
        assert point.shape == x.shape
        assert np.count_nonzero(point != x) <= 1


def test_numerical_gradient_accepts_lists_and_ints():
    """A list of ints is differentiated as float64; the step is not truncated to 0."""
    numeric = mu.numerical_gradient(smooth_numpy_fn, [1, -1, 0])

    expected = 0.5 * np.exp(0.5 * np.array([1.0, -1.0, 0.0])) + np.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(numeric, expected, rtol=SMOOTH_FN_REL_TOL)


@pytest.mark.parametrize(
    "make_view",
    [lambda a: a.T, np.asfortranarray, lambda a: a[::-1, ::2]],
    ids=["transposed", "fortran_order", "negative_and_step_strides"],
)
def test_numerical_gradient_of_non_c_ordered_input(make_view):
    """Transposed, Fortran-ordered and strided inputs are differentiated like any other array.

    Regression: a flat view of a Fortran-ordered private copy is itself a copy,
    so the perturbations never reached f and the gradient came back all zeros.
    """
    x = make_view(np.random.default_rng(SEED).uniform(-2.0, 2.0, size=(4, 6)))
    x_tensor = as_tensor(x, requires_grad=True)
    smooth_torch_fn(x_tensor).backward()

    numeric = mu.numerical_gradient(smooth_numpy_fn, x)

    assert numeric.shape == x.shape
    assert mu.relative_error(numeric, x_tensor.grad.numpy()) < SMOOTH_FN_REL_TOL


# Nonzero entries have |x| >= 1e-6, so after scaling by >= 2**-10 every
# |a| + |b| is 0 or far above relative_error's 1e-12 floor: scale-freeness holds.
gradient_like_values = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-6, max_value=VALUE_BOUND),
    st.floats(min_value=-VALUE_BOUND, max_value=-1e-6),
)


@st.composite
def gradient_pairs(draw):
    """Two same-shaped arrays of gradient-like values."""
    shape = draw(array_shapes)
    first = draw(hnp.arrays(np.float64, shape, elements=gradient_like_values))
    second = draw(hnp.arrays(np.float64, shape, elements=gradient_like_values))
    return first, second


@PROPERTY_SETTINGS
@given(pair=gradient_pairs(), scale_exponent=st.integers(min_value=-10, max_value=10))
def test_relative_error_is_zero_symmetric_bounded_and_scale_free(pair, scale_exponent):
    """relative_error(a, a) = 0, it is symmetric, lies in [0, 1], and ignores a common scale."""
    a, b = pair
    scale = 2.0**scale_exponent  # a power of two: the scaling itself is exact

    error = mu.relative_error(a, b)

    assert mu.relative_error(a, a) == 0.0
    assert error == mu.relative_error(b, a)
    assert 0.0 <= error <= 1.0
    assert math.isclose(mu.relative_error(scale * a, scale * b), error, rel_tol=SCALE_FREE_RTOL)


def test_relative_error_reports_the_worst_element():
    """The error is the largest elementwise one, not an average that hides an outlier."""
    exact = np.array([1.0, 1.0, 1.0, 1.0])
    one_entry_wrong = np.array([1.0, 1.0, 1.0, 3.0])

    assert mu.relative_error(exact, one_entry_wrong) == pytest.approx(0.5)  # |1 - 3| / (1 + 3)


def test_relative_error_of_empty_arrays_is_zero():
    """Empty gradients (a layer with no parameters) compare as identical."""
    assert mu.relative_error(np.empty((0, 3)), np.empty((0, 3))) == 0.0


@pytest.mark.parametrize(
    "analytic_shape, numeric_shape",
    [((3,), (1, 3)), ((2, 3), (3, 2)), ((4,), (5,))],
)
def test_check_gradient_rejects_shape_mismatch(analytic_shape, numeric_shape):
    """Differently shaped gradients fail with error inf, even where they would broadcast."""
    passed, error = mu.check_gradient(np.ones(analytic_shape), np.ones(numeric_shape))

    assert passed is False
    assert error == float("inf")


def test_check_gradient_passes_matching_and_fails_wrong_gradients():
    """A correct gradient passes (against central differences); one off by 1e-3 fails."""
    x = np.random.default_rng(SEED).uniform(-2.0, 2.0, size=(3, 4))
    analytic = 0.5 * np.exp(0.5 * x) + x**2
    numeric = mu.numerical_gradient(smooth_numpy_fn, x)

    passed, error = mu.check_gradient(analytic, numeric, tol=SMOOTH_FN_REL_TOL)
    failed, wrong_error = mu.check_gradient(analytic * (1.0 + 1e-3), numeric, tol=SMOOTH_FN_REL_TOL)

    assert bool(passed) is True and error < SMOOTH_FN_REL_TOL
    assert bool(failed) is False and wrong_error > SMOOTH_FN_REL_TOL
    assert mu.check_gradient(analytic, analytic) == (True, 0.0)


# ---------------------------------------------------------------------------
# Initialisation and randomness
# ---------------------------------------------------------------------------


def assert_zero_mean_with_variance(weights, expected_variance):
    """Sample mean ~ 0 and sample variance within INIT_VAR_RTOL of ``expected_variance``."""
    expected_std = math.sqrt(expected_variance)
    assert abs(weights.mean()) < INIT_MEAN_ATOL_IN_STD * expected_std
    assert weights.var() == pytest.approx(expected_variance, rel=INIT_VAR_RTOL)


INIT_CASES = [
    pytest.param(mu.he_init, lambda n_in, n_out: 2.0 / n_in, id="he"),
    pytest.param(mu.xavier_init, lambda n_in, n_out: 2.0 / (n_in + n_out), id="xavier_normal"),
    pytest.param(
        partial(mu.xavier_init, uniform=True), lambda n_in, n_out: 2.0 / (n_in + n_out), id="xavier_uniform"
    ),
]


@pytest.mark.parametrize("init_fn, expected_variance", INIT_CASES)
def test_init_shape_and_variance(init_fn, expected_variance):
    """Weights have shape (n_in, n_out), mean 0 and the documented variance."""
    n_in, n_out = INIT_SHAPE

    weights = init_fn(n_in, n_out, mu.make_rng(SEED))

    assert weights.shape == (n_in, n_out) and weights.dtype == np.float64
    assert_zero_mean_with_variance(weights, expected_variance(n_in, n_out))


@pytest.mark.parametrize("init_fn, expected_variance", INIT_CASES)
def test_init_is_reproducible_from_the_seed(init_fn, expected_variance):
    """Same seed, same weights; another seed, other weights."""
    first = init_fn(3, 5, mu.make_rng(SEED))
    again = init_fn(3, 5, mu.make_rng(SEED))
    other = init_fn(3, 5, mu.make_rng(SEED + 1))

    assert first.shape == (3, 5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_xavier_uniform_stays_inside_its_bound():
    """U(-a, a) with a = sqrt(6 / (n_in + n_out)): no sample outside, extremes near +-a."""
    n_in, n_out = INIT_SHAPE
    bound = math.sqrt(6.0 / (n_in + n_out))

    weights = mu.xavier_init(n_in, n_out, mu.make_rng(SEED), uniform=True)

    assert np.all(np.abs(weights) <= bound)
    assert weights.max() > UNIFORM_BOUND_REACH * bound
    assert weights.min() < -UNIFORM_BOUND_REACH * bound


def test_make_rng_is_a_reproducible_generator():
    """make_rng returns a numpy Generator whose stream depends only on the seed."""
    rng = mu.make_rng(SEED)

    assert isinstance(rng, np.random.Generator)
    np.testing.assert_array_equal(rng.normal(size=8), mu.make_rng(SEED).normal(size=8))
    assert not np.array_equal(mu.make_rng(SEED).normal(size=8), mu.make_rng(SEED + 1).normal(size=8))
