"""The misconception catalogue: every known mistake, in one place, as data.

Each :class:`Misconception` has a name (also its TROUBLESHOOTING.md anchor),
a detector, a one-line explanation and a one-line fix. A detector looks at the
:class:`Evidence` of one failed comparison and returns a short detail string
when the evidence fits the mistake, or ``None``.

Two kinds of detector exist:

* *relations*: the received array is a simple function of the right answer
  (its transpose, its negative, a multiple of it by the batch size...). These
  work for any exercise with no exercise-specific code.
* *variants*: the exercise's check computes, with trusted code, what the
  mistake would produce on the same inputs and passes it in
  ``Evidence.variants[name]``. The detector compares against it.

Entries are tried in catalogue order; the first match is reported, so the
exercise-specific variants come first.

Labs add entries by appending to ``CATALOGUE`` (keep names unique and add a
TROUBLESHOOTING.md section with the same anchor; tests enforce both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np


@dataclass
class Evidence:
    """What a failed comparison knows, handed to every detector.

    Attributes
    ----------
    quantity : str
        Name of the compared quantity, e.g. ``"dL/dW1"``.
    received : ndarray or None
        The student's value as a float64 array (None if it was not numeric).
    received_type : str
        Type name of what the student returned (``"torch.Tensor"``...).
    expected : ndarray
        The trusted reference, float64.
    variants : mapping of str to ndarray
        Misconception name -> what that mistake produces on these inputs.
    mean_count : int or None
        The count a mean-reduced loss divides by (batch size, or number of
        elements for MSE), used to recognise a missing or extra division.
    warnings : sequence of str
        Messages of RuntimeWarnings raised while the student's code ran.
    mutated_inputs : sequence of str
        Names of input arrays the student's code modified in place.
    """

    quantity: str
    received: Optional[np.ndarray]
    received_type: str
    expected: np.ndarray
    received_dtype: str = ""
    variants: Mapping[str, np.ndarray] = field(default_factory=dict)
    mean_count: Optional[int] = None
    warnings: Sequence[str] = ()
    mutated_inputs: Sequence[str] = ()


@dataclass(frozen=True)
class Misconception:
    """One catalogued mistake.

    Attributes
    ----------
    name : str
        Stable identifier, kebab-case; also the TROUBLESHOOTING.md anchor.
    title : str
        What the mistake is, in a few words.
    fix : str
        One line telling the student what to change.
    detector : callable
        ``detector(evidence) -> str | None``.
    labs : tuple of str
        The labs whose checks can provoke it (for documentation).
    """

    name: str
    title: str
    fix: str
    detector: Callable[[Evidence], Optional[str]]
    labs: tuple = ()

    @property
    def anchor(self) -> str:
        return f"TROUBLESHOOTING.md#{self.name}"


# ---------------------------------------------------------------------------
# Detector building blocks
# ---------------------------------------------------------------------------

# Loose on purpose: a detector recognises a *pattern*; the strict tolerance is
# the check's business.
_DETECT_RTOL = 1e-5
_DETECT_ATOL = 1e-8


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        return False
    return bool(np.all(np.abs(a - b) <= _DETECT_ATOL + _DETECT_RTOL * np.abs(b)))


def _usable(ev: Evidence) -> bool:
    return ev.received is not None and ev.received.size > 0


def _nontrivial(ev: Evidence) -> bool:
    """A relation like 'negated' says nothing when the expected value is ~0."""
    return bool(np.max(np.abs(ev.expected), initial=0.0) > 1e-12)


def variant(name: str) -> Callable[[Evidence], Optional[str]]:
    """Detector matching the exercise-supplied variant for ``name``."""

    def detect(ev: Evidence) -> Optional[str]:
        wrongs = ev.variants.get(name)
        if wrongs is None or not _usable(ev) or _close(ev.received, ev.expected):
            return None
        # A variant may be one array or a list of them (several ways to make the mistake).
        for wrong in (wrongs if isinstance(wrongs, (list, tuple)) else [wrongs]):
            if _close(ev.received, np.asarray(wrong, dtype=np.float64)):
                return "your values equal what this mistake produces on the same inputs"
        return None

    return detect


def variant_with_nonfinite(name: str) -> Callable[[Evidence], Optional[str]]:
    """Like :func:`variant`, for mistakes whose signature is *where* the result turns NaN or inf.

    Matches when the received value is non-finite exactly where the supplied variant is (at
    least one entry), with the same infinities, and close to it everywhere else.
    """

    def detect(ev: Evidence) -> Optional[str]:
        wrongs = ev.variants.get(name)
        if wrongs is None or not _usable(ev):
            return None
        for wrong in (wrongs if isinstance(wrongs, (list, tuple)) else [wrongs]):
            wrong = np.asarray(wrong, dtype=np.float64)
            if wrong.shape != ev.received.shape:
                continue
            bad = ~np.isfinite(wrong)
            if not bad.any() or not np.array_equal(bad, ~np.isfinite(ev.received)):
                continue
            same_inf = np.array_equal(np.nan_to_num(wrong[bad], nan=0.0), np.nan_to_num(ev.received[bad], nan=0.0))
            if same_inf and _close(ev.received[~bad], wrong[~bad]):
                return (f"your values are NaN or inf in the same {int(bad.sum())} place(s) as this mistake's, "
                        f"and equal to them elsewhere")
        return None

    return detect


def _scale_factor(ev: Evidence) -> Optional[float]:
    """c such that received ~= c * expected, if one exists (least squares fit)."""
    if not _usable(ev) or ev.received.shape != ev.expected.shape or not _nontrivial(ev):
        return None
    r, e = ev.received.ravel(), ev.expected.ravel()
    if not np.all(np.isfinite(r)):
        return None
    c = float(np.dot(r, e) / np.dot(e, e))
    return c if _close(r, c * e) else None


def _any_of(*detectors):
    def detect(ev: Evidence) -> Optional[str]:
        for d in detectors:
            found = d(ev)
            if found:
                return found
        return None

    return detect


def _is_tensor(ev: Evidence) -> Optional[str]:
    if ev.received_type.startswith("torch"):
        return f"your function returned a {ev.received_type}, not a numpy array"
    return None


def _mutated(ev: Evidence) -> Optional[str]:
    if ev.mutated_inputs:
        return "your code modified its input(s) in place: " + ", ".join(ev.mutated_inputs)
    return None


def _overflow(ev: Evidence) -> Optional[str]:
    noisy = [w for w in ev.warnings if "overflow" in w or "invalid value" in w]
    if noisy:
        return f"numpy warned while your code ran: '{noisy[0]}'"
    if _usable(ev) and ev.received.shape == ev.expected.shape:
        bad = ~np.isfinite(ev.received) & np.isfinite(ev.expected)
        if np.any(bad):
            return f"{int(bad.sum())} value(s) are NaN or inf where the reference is finite"
    return None


def _transposed(ev: Evidence) -> Optional[str]:
    if not _usable(ev) or ev.received.ndim != 2 or ev.expected.ndim != 2:
        return None
    if ev.received.shape == ev.expected.T.shape and _close(ev.received.T, ev.expected):
        if ev.received.shape != ev.expected.shape or not _close(ev.received, ev.expected):
            return (f"received shape {ev.received.shape} is the transpose of "
                    f"{ev.expected.shape} and its transpose matches")
    return None


def _not_summed(ev: Evidence) -> Optional[str]:
    # A leading axis of length 1 is a keepdims slip, not an unsummed batch.
    if not _usable(ev) or ev.received.ndim != ev.expected.ndim + 1 or ev.received.shape[0] < 2:
        return None
    if ev.received.shape[1:] == ev.expected.shape and _close(ev.received.sum(axis=0), ev.expected):
        return (f"received shape {ev.received.shape} keeps the batch axis; "
                f"summed over axis 0 it matches")
    return None


def _reshaped(ev: Evidence) -> Optional[str]:
    if not _usable(ev) or ev.received.shape == ev.expected.shape:
        return None
    if ev.received.size == ev.expected.size and _close(ev.received.reshape(ev.expected.shape), ev.expected):
        return (f"the values are right but the shape is {ev.received.shape}, "
                f"expected {ev.expected.shape}")
    return None


def _wrong_dtype(ev: Evidence) -> Optional[str]:
    if ev.received_dtype and ev.received_dtype != "float64" and _usable(ev) and _close(ev.received, ev.expected):
        return f"the values are right but the dtype is {ev.received_dtype}"
    return None


def _scale_is(targets, label):
    def detect(ev: Evidence) -> Optional[str]:
        c = _scale_factor(ev)
        if c is None:
            return None
        for t in targets(ev):
            if t and abs(c - t) <= 1e-6 * max(1.0, abs(t)):
                return f"received = {c:.6g} x expected ({label})"
        return None

    return detect


def _batch_factors(ev: Evidence):
    n = ev.mean_count
    if not n or n in (1, 2):  # 2 would be indistinguishable from factor-of-two
        return ()
    return (float(n), 1.0 / n)


# ---------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------

CATALOGUE: list[Misconception] = [
    # -- exercise-specific variants first: they are the most precise --------
    Misconception(
        "grad-wrt-activation-output",
        "derivative taken with respect to the activation's output instead of its input",
        "Evaluate f'(z) at the pre-activation z (the layer's input to f), and "
        "multiply the upstream gradient dL/dh by it to get dL/dz.",
        variant("grad-wrt-activation-output"), ("01_backprop",)),
    Misconception(
        "relu-derivative-wrong-side",
        "ReLU gate open on the wrong side of zero",
        "The ReLU derivative is 1 where z > 0 and 0 where z <= 0: mask with (z > 0).",
        variant("relu-derivative-wrong-side"), ("01_backprop",)),
    Misconception(
        "relu-derivative-at-zero",
        "ReLU derivative at exactly z = 0 taken as 1",
        "PyTorch uses 0 for the ReLU derivative at z = 0: use (z > 0), not (z >= 0).",
        variant("relu-derivative-at-zero"), ("01_backprop",)),
    Misconception(
        "wrong-axis-reduction",
        "summed (or averaged) over the wrong axis",
        "Reduce over the batch axis (axis=0) so the result has the parameter's shape.",
        variant("wrong-axis-reduction"), ("01_backprop", "07_normalization_regularization")),
    Misconception(
        "softmax-wrong-axis",
        "softmax normalised over the wrong axis",
        "Normalise over the class axis (axis=1 or -1, keepdims=True): each row must sum to 1.",
        variant("softmax-wrong-axis"), ("01_backprop",)),
    Misconception(
        "forward-difference",
        "one-sided (forward) difference instead of a central difference",
        "Use (f(x + eps) - f(x - eps)) / (2 * eps): its error is O(eps**2), not O(eps).",
        variant("forward-difference"), ("01_backprop",)),
    Misconception(
        "dict-key-order",
        "two dicts paired by position (zip of their values) instead of by key",
        "Look every array up by its name: {name: params[name] - lr * grads[name] for name in params}; "
        "two dicts with the same keys need not list them in the same order.",
        variant("dict-key-order"), ("01_backprop",)),
    # -- lab 02 entries (variants and lab-specific detectors) ---------------
    Misconception(
        "adam-t-starts-at-zero",
        "Adam's step counter is 0 at the first step, so the bias correction divides by 1 - beta**0 = 0",
        "Start with self.t = 0 and increment it at the top of step(), before the bias corrections: "
        "the first step uses t = 1.",
        # The mistake yields NaN/inf, which variant() never matches: compare where the non-finite values sit.
        _any_of(variant("adam-t-starts-at-zero"), lambda ev: (
            "NaN or inf from the first step, exactly where this mistake puts them"
            if ev.variants.get("adam-t-starts-at-zero") is not None and _usable(ev)
            and ev.received.shape == ev.expected.shape and np.all(np.isfinite(ev.expected))
            and not np.all(np.isfinite(ev.received))
            and np.array_equal(~np.isfinite(ev.received), ~np.isfinite(
                np.asarray(ev.variants["adam-t-starts-at-zero"], dtype=np.float64)))
            else None)),
        ("02_optimizers",)),
    Misconception(
        "adam-missing-bias-correction",
        "Adam without bias correction (m and v used as they are)",
        "Divide m by (1 - beta1**t) and v by (1 - beta2**t) before the update; "
        "without it the first steps are too large by up to 1/sqrt(1 - beta2).",
        variant("adam-missing-bias-correction"), ("02_optimizers",)),
    Misconception(
        "adam-decay-decoupled",
        "Adam's weight_decay applied to the weights directly (that is AdamW)",
        "torch.optim.Adam adds weight_decay * p to the gradient before the moments (L2); "
        "only AdamW shrinks the weights directly by lr * weight_decay * p.",
        variant("adam-decay-decoupled"), ("02_optimizers",)),
    Misconception(
        "adamw-decay-through-gradient",
        "AdamW's decay added to the gradient (that is Adam with L2, not decoupled weight decay)",
        "Shrink the weights directly, p *= 1 - lr * weight_decay, then take the Adam step with the raw gradient.",
        variant("adamw-decay-through-gradient"), ("02_optimizers", "07_normalization_regularization")),
    Misconception(
        "weight-decay-not-scaled-by-lr",
        "weight decay not multiplied by the learning rate",
        "The decay step is lr * weight_decay * p (torch convention): p *= 1 - lr * weight_decay, "
        "not p *= 1 - weight_decay.",
        variant("weight-decay-not-scaled-by-lr"), ("02_optimizers",)),
    Misconception(
        "momentum-dampened-form",
        "momentum in the dampened form v = mu * v + (1 - mu) * g",
        "PyTorch's momentum adds the whole gradient: v = mu * v + g, then p -= lr * v.",
        variant("momentum-dampened-form"), ("02_optimizers",)),
    Misconception(
        "nesterov-without-lookahead",
        "Nesterov step taken along the velocity alone (plain momentum)",
        "After v = mu * v + g, step along the look-ahead direction: p -= lr * (g + mu * v).",
        variant("nesterov-without-lookahead"), ("02_optimizers",)),
    Misconception(
        "update-not-in-place",
        "an array rebound to a new one (x = x - ...) instead of updated in place, so the change is lost",
        "Update the stored arrays themselves: p -= lr * v, v *= mu; v += g (or assign back into the list, "
        "self.velocity[i] = ...).",
        variant("update-not-in-place"), ("02_optimizers",)),
    Misconception(
        "rmsprop-eps-inside-sqrt",
        "epsilon inside the square root",
        "PyTorch's RMSprop (and Adam) add eps after the root: g / (np.sqrt(s) + eps), not g / np.sqrt(s + eps).",
        variant("rmsprop-eps-inside-sqrt"), ("02_optimizers",)),
    Misconception(
        "schedule-off-by-one",
        "learning-rate schedule shifted by one step",
        "Step 0 is the first step: the schedule's value at step t uses t itself "
        "(warmup starts at start_factor * peak, cosine at its peak), not t + 1 or t - 1.",
        variant("schedule-off-by-one"), ("02_optimizers",)),
    Misconception(
        "cosine-ignores-warmup",
        "cosine after warmup measured from step 0 over all steps instead of from the end of warmup",
        "After warmup the cosine runs over the remaining steps: progress = (t - warmup_steps) / "
        "(total_steps - warmup_steps).",
        variant("cosine-ignores-warmup"), ("02_optimizers",)),
    Misconception(
        "clipping-per-tensor",
        "each gradient clipped by its own norm instead of by the global norm",
        "Compute one norm over all gradients, sqrt(sum of every squared entry), and scale every "
        "gradient by the same factor.",
        variant("clipping-per-tensor"), ("02_optimizers",)),
    Misconception(
        "clip-norm-missing-epsilon",
        "clipping scale max_norm / total_norm without PyTorch's + 1e-6",
        "Scale by min(1, max_norm / (total_norm + 1e-6)), as torch.nn.utils.clip_grad_norm_ does.",
        variant("clip-norm-missing-epsilon"), ("02_optimizers",)),
    Misconception(
        "optimizer-state-reset",
        "the optimizer's state (velocity, running averages) starts again from zero at every step",
        "Create the buffers once, in __init__, and update them in place in step() (v *= mu; v += g), "
        "or store the new array back (self.velocity[i] = mu * v + g); never re-create them in step().",
        variant("optimizer-state-reset"), ("02_optimizers",)),
    Misconception(
        "momentum-lr-folded",
        "the learning rate folded into the velocity (v = mu * v + lr * g; p -= v)",
        "Keep lr out of the buffer, as torch does: v = mu * v + g, then p -= lr * v. The folded form "
        "agrees only while lr never changes; after a scheduler changes it, the old rate stays inside v.",
        variant("momentum-lr-folded"), ("02_optimizers",)),
    Misconception(
        "hyperparameter-cached",
        "a hyper-parameter (or a value computed from it) read once in __init__, so changing it later has no effect",
        "Read self.lr (and every hyper-parameter) inside step(), each time it runs: a scheduler changes "
        "opt.lr between steps, and a factor like 1 - lr * weight_decay must use the current rate.",
        variant("hyperparameter-cached"), ("02_optimizers",)),
    Misconception(
        "linear-decay-over-total",
        "the linear decay after warmup spread over total_steps instead of the total_steps - warmup_steps left",
        "After warmup use peak_lr * max(0, (total_steps - step) / (total_steps - warmup_steps)): the decay "
        "starts at peak_lr at step warmup_steps and reaches 0 exactly at total_steps.",
        variant("linear-decay-over-total"), ("02_optimizers",)),
    Misconception(
        "lr-scaling-sqrt",
        "the learning rate scaled with the square root of the batch-size ratio where the linear rule was asked for",
        "The linear scaling rule multiplies the learning rate by the same factor as the batch size: "
        "base_lr * batch_size / base_batch_size.",
        variant("lr-scaling-sqrt"), ("02_optimizers",)),
    Misconception(
        "clip-value-one-sided",
        "clipping by value that caps only one side (np.minimum(g, c) or np.maximum(g, -c)), leaving the other",
        "Clamp to both sides: np.clip(g, -clip_value, clip_value).",
        variant("clip-value-one-sided"), ("02_optimizers",)),
    Misconception(
        "angle-in-radians",
        "an angle returned in radians where degrees were asked for",
        "Convert at the end: np.degrees(np.arccos(cosine)) (and clip the cosine to [-1, 1] first).",
        variant("angle-in-radians"), ("02_optimizers",)),
    # -- end of lab 02 entries --
    # -- lab 03 entries (variants and lab-specific detectors) ---------------
    Misconception(
        "direction-not-filter-normalised",
        "direction normalised as a whole (globally or per layer) instead of filter by filter",
        "Rescale every column d[:, j] of a weight matrix's direction to the norm of the weights' column "
        "W[:, j]: d * (norm(W, axis=0) / norm(d, axis=0)).",
        variant("direction-not-filter-normalised"), ("03_loss_landscapes",)),
    Misconception(
        "filter-norm-wrong-axis",
        "filters taken along the wrong axis (rows instead of columns)",
        "With W of shape (n_in, n_out) a filter is the column W[:, j] feeding output unit j: "
        "take both norms with axis=0.",
        variant("filter-norm-wrong-axis"), ("03_loss_landscapes",)),
    Misconception(
        "bias-perturbed",
        "biases (1-D parameters) perturbed although the lab's convention leaves them alone",
        "Give every 1-D parameter (bias, normalisation gain or shift) a zero direction: np.zeros_like(b).",
        variant("bias-perturbed"), ("03_loss_landscapes",)),
    Misconception(
        "grid-axes-swapped",
        "loss grid with its axes swapped (rows must follow betas, columns alphas)",
        "Build the points with np.meshgrid(alphas, betas) (indexing='xy') so that "
        "grid[i, j] = L(theta + alphas[j] * d_x + betas[i] * d_y), shape (len(betas), len(alphas)).",
        variant("grid-axes-swapped"), ("03_loss_landscapes",)),
    Misconception(
        "power-iteration-no-renormalisation",
        "power iteration without re-normalising the iterate",
        "Divide by the norm after every Hessian-vector product (v = Hv / ||Hv||) and read the eigenvalue "
        "as the Rayleigh quotient v . Hv of that unit vector.",
        _any_of(
            variant("power-iteration-no-renormalisation"),
            # Without rescaling, v grows or shrinks like |lambda|**k: inf, NaN or absurd magnitudes.
            lambda ev: ("the value is inf/NaN or orders of magnitude away from the reference: "
                        "the iterate grew or shrank without bound"
                        if "power-iteration-no-renormalisation" in ev.variants and _usable(ev)
                        and ev.received.shape == ev.expected.shape
                        and (not np.all(np.isfinite(ev.received))
                             or np.any(np.abs(ev.received) > 1e3 * np.abs(ev.expected))
                             # (an exact 0 is a loop that never ran, not an iterate that shrank)
                             or np.any((np.abs(ev.received) < 1e-3 * np.abs(ev.expected)) & (ev.received != 0)))
                        else None)),
        ("03_loss_landscapes",)),
    Misconception(
        "power-iteration-norm-not-rayleigh",
        "power iteration read out as ||Hv|| instead of the Rayleigh quotient v . Hv",
        "Return v . Hv for the unit iterate v (before replacing v by Hv / ||Hv||): ||Hv|| is |lambda| only "
        "once v has converged, and loses the sign of a negative eigenvalue.",
        variant("power-iteration-norm-not-rayleigh"), ("03_loss_landscapes",)),
    Misconception(
        "pca-path-wrong-origin",
        "path projected about the wrong origin (the PCA mean, or zero) instead of the final weights",
        "Project the offsets from the final weights without re-centring them: "
        "coords = (trajectory - trajectory[-1]) @ directions.T, not pca.transform(...).",
        variant("pca-path-wrong-origin"), ("03_loss_landscapes",)),
    # -- end of lab 03 entries --
    # -- lab 04 entries (variants and lab-specific detectors) ---------------
    Misconception(
        "svd-full-matrices",
        "full SVD factors (full_matrices=True, numpy's default) where the reduced ones are needed",
        "Call np.linalg.svd(M, full_matrices=False): U is (m, p), S (p,), Vt (p, n) with p = min(m, n).",
        variant("svd-full-matrices"), ("04_svd_lora",)),
    Misconception(
        "rank-k-error-from-kept",
        "rank-k error computed from the kept singular values instead of the discarded ones",
        "The error is what was thrown away: Frobenius sqrt(sum(S[k:]**2)), spectral S[k] (0 when k == len(S)).",
        variant("rank-k-error-from-kept"), ("04_svd_lora",)),
    Misconception(
        "rank-k-off-by-one",
        "rank off by one (a 0-based index used as a count, or one singular value too many or too few)",
        "Keep S[:k] (k values); sigma_{k+1} is S[k]; a rank is a count, the first index reaching a target plus one.",
        variant("rank-k-off-by-one"), ("04_svd_lora",)),
    Misconception(
        "energy-not-squared",
        "energy computed from the singular values instead of their squares",
        "Energy is sigma squared: np.cumsum(S**2) / np.sum(S**2).",
        variant("energy-not-squared"), ("04_svd_lora",)),
    Misconception(
        "lora-init-swapped",
        "LoRA factors initialised the other way round (B random, A zero)",
        "Initialise A (r, d_in) at random and B (d_out, r) to zeros, so B A = 0 and A gets a gradient once B moves.",
        variant("lora-init-swapped"), ("04_svd_lora",)),
    Misconception(
        "lora-missing-scaling",
        "LoRA path not scaled by alpha / r",
        "Multiply the adapter's contribution, and so every gradient through it, by scale = alpha / r with r = A.shape[0].",
        variant("lora-missing-scaling"), ("04_svd_lora",)),
    Misconception(
        "lora-gradient-transposed",
        "LoRA gradient for A or B transposed",
        "Shape each gradient like its factor: dL/dA = (scale * dL_dy @ B).T @ x is (r, d_in), "
        "dL/dB = scale * dL_dy.T @ (x @ A.T) is (d_out, r).",
        variant("lora-gradient-transposed"), ("04_svd_lora",)),
    Misconception(
        "lora-dx-missing-adapter",
        "dL/dx missing the adapter path (only dL_dy @ W)",
        "x reaches y through W and through A, B: dL/dx = dL_dy @ W + scale * dL_dy @ B @ A.",
        variant("lora-dx-missing-adapter"), ("04_svd_lora",)),
    Misconception(
        "norm-not-rooted",
        "a squared norm where the norm belongs (the square root is missing)",
        "A Frobenius (or 2-) norm is the square ROOT of the sum of squares: np.sqrt(np.sum(a**2)), "
        "np.linalg.norm(a) or tensor.norm(), never the sum of squares itself.",
        variant("norm-not-rooted"), ("04_svd_lora", "06_training_dynamics")),
    Misconception(
        "comparison-at-tie",
        "the wrong side of a tie: a value exactly at the threshold counted the other way (< for <=, > for >=)",
        "Read the rule's inequality literally: a rank reaches the target when energy >= target; an epoch "
        "improves only when loss < best - min_delta, so an equal loss is no improvement.",
        variant("comparison-at-tie"), ("04_svd_lora", "06_training_dynamics")),
    # -- end of lab 04 entries --
    # -- lab 05 entries (variants and lab-specific detectors) ---------------
    Misconception(
        "max-shift-not-per-row",
        "one max over the whole array subtracted before exp, instead of one max per row (per slice)",
        "Shift each slice by its own max: z - np.max(z, axis=-1, keepdims=True). A single global max "
        "underflows every row far below it to exp(...) = 0, then 0 / 0 or log(0).",
        # Before log-of-zero: the global shift also makes numpy warn about log(0).
        variant_with_nonfinite("max-shift-not-per-row"), ("05_probability",)),
    Misconception(
        "log-base-two",
        "log base 2 (bits) where the natural log (nats) is asked for",
        "Use np.log (natural log): the result is in nats; np.log2 gives bits, 1 / ln 2 = 1.4427 times larger.",
        variant("log-base-two"), ("05_probability",)),
    Misconception(
        "std-used-as-variance",
        "a standard deviation used where the variance belongs, or the reverse",
        "Variance = sigma**2. A Gaussian's formulas use sigma**2 in (x - mu)**2 / (2 sigma**2) and the "
        "variance ratio (sigma_p / sigma_q)**2; the MLE of the variance is np.mean((x - mu)**2), not np.std(x); "
        "an argument named var is already squared.",
        variant("std-used-as-variance"), ("05_probability",)),
    Misconception(
        "negative-cross-entropy",
        "cross-entropy without its leading minus sign (the loss comes out negative)",
        "Cross-entropy is -sum(y * log p) averaged over the batch: log p <= 0, so the minus makes it >= 0.",
        variant("negative-cross-entropy"), ("05_probability",)),
    Misconception(
        "kl-arguments-swapped",
        "KL divergence with its two distributions swapped (KL(q || p) instead of KL(p || q))",
        "KL(p || q) = sum p * log(p / q): the first argument is the weight and the numerator; "
        "for Gaussians, sigma_q and mu_q go in the denominators.",
        variant("kl-arguments-swapped"), ("05_probability",)),
    Misconception(
        "temperature-multiplied",
        "logits multiplied by the temperature instead of divided by it",
        "Use softmax(logits / T): T > 1 flattens the distribution, T < 1 sharpens it.",
        variant("temperature-multiplied"), ("05_probability",)),
    Misconception(
        "label-smoothing-mass",
        "label-smoothing mass spread differently from PyTorch's label_smoothing",
        "Build targets = (1 - eps) * one_hot + eps / C: every class, the true one included, "
        "gets eps / C, and each row still sums to 1.",
        variant("label-smoothing-mass"), ("05_probability",)),
    Misconception(
        "mle-unbiased-variance",
        "Gaussian maximum-likelihood variance divided by N - 1",
        "The MLE of the variance divides by N: np.mean((x - mu_hat)**2), or np.var(x) with its default ddof=0.",
        variant("mle-unbiased-variance"), ("05_probability",)),
    Misconception(
        "log-of-zero",
        "np.log applied to a probability that is exactly 0 (-inf, then NaN from 0 * -inf)",
        "Never hand a 0 to np.log: use log-softmax for log p, pick log p of the true class only, "
        "and for p * log p use np.log(np.where(p > 0, p, 1.0)) so 0 * log 0 counts as 0.",
        # Named when numpy reported log(0) and no overflow (an overflow is unstable-exp-overflow's case),
        # or when the values are what log(p + eps) gives (the epsilon silences the warning).
        _any_of(variant("log-of-zero"), lambda ev: None if any("overflow" in w for w in ev.warnings) else next(
            (f"numpy warned '{w}' while your code ran" for w in ev.warnings
             if "divide by zero encountered in log" in w), None)),
        ("05_probability",)),
    # -- end of lab 05 entries --
    # -- lab 06 entries (variants and lab-specific detectors) ---------------
    Misconception(
        "he-variance-wrong",
        "He initialisation with the wrong variance (fan-out instead of fan-in, or 1 / n_in instead of 2 / n_in)",
        "Draw W of shape (n_in, n_out) with standard deviation sqrt(2 / n_in): n_in = W.shape[0] is the fan-in, "
        "and the 2 makes up for ReLU zeroing half of its inputs.",
        # The check judges sample statistics (random) against each mistake and passes the ones they fit.
        variant("he-variance-wrong"), ("06_training_dynamics",)),
    Misconception(
        "init-std-as-variance",
        "the target variance passed where numpy expects a standard deviation",
        "rng.normal(loc, scale, size) takes the standard deviation: scale = np.sqrt(2 / n_in) (He) or "
        "np.sqrt(2 / (n_in + n_out)) (Xavier), not the variance itself.",
        variant("init-std-as-variance"), ("06_training_dynamics",)),
    Misconception(
        "nan-locator-not-first",
        "the module reported is not the first to produce a non-finite value (a later one, or the whole model)",
        "Hooks fire in execution order, children before their container: keep the first name whose output "
        "is not finite (hits[0]), not the last one, and do not order by model.named_modules().",
        variant("nan-locator-not-first"), ("06_training_dynamics",)),
    Misconception(
        "accumulation-not-divided-by-k",
        "gradient accumulation without dividing each micro-batch loss by k (k times the big-batch gradient)",
        "Backpropagate loss / k for each of the k micro-batches, so the summed .grad equals the mean over "
        "the whole batch.",
        variant("accumulation-not-divided-by-k"), ("06_training_dynamics",)),
    Misconception(
        "clipping-after-step",
        "gradients clipped after optimizer.step(), when the update has already used them",
        "Clip between loss.backward() and optimizer.step(): backward, clip_grad_norm_, step.",
        variant("clipping-after-step"), ("06_training_dynamics",)),
    Misconception(
        "missing-zero-grad",
        "gradients never zeroed between steps, so every step adds the new gradient to all the old ones",
        "Call optimizer.zero_grad() once per step, before loss.backward() (or right after optimizer.step()).",
        variant("missing-zero-grad"), ("06_training_dynamics",)),
    Misconception(
        "early-stopping-off-by-one",
        "early stopping one epoch too early or too late (patience counted off by one)",
        "Count the epochs without improvement since the best one and stop at the epoch where that count "
        "reaches patience: best at epoch 4 with patience 2 stops at epoch 6.",
        variant("early-stopping-off-by-one"), ("06_training_dynamics",)),
    Misconception(
        "wrong-diagnosis",
        "a diagnosis that the evidence of the run contradicts",
        "Re-read the reproduction's log: how the loss moves, what the gradient norms show, and how the "
        "validation loss moves against the training loss; keep the option that predicts all of it.",
        variant("wrong-diagnosis"), ("06_training_dynamics",)),
    Misconception(
        "xavier-variance-wrong",
        "Xavier initialisation with the wrong variance (one fan only, 2 / n_in or 2 / n_out, or 1 / (n_in + n_out))",
        "Xavier (Glorot) normal draws with variance 2 / (n_in + n_out), both fans: standard deviation "
        "np.sqrt(2 / (n_in + n_out)). He's 2 / n_in is for ReLU layers.",
        variant("xavier-variance-wrong"), ("06_training_dynamics",)),
    Misconception(
        "accumulation-zeroed-per-micro-batch",
        "gradients zeroed before every micro-batch, so only the last micro-batch's gradient is left",
        "Zero the gradients once per optimizer step, before the first micro-batch; inside the loop only "
        "call (loss / k).backward(), which adds into .grad.",
        variant("accumulation-zeroed-per-micro-batch"), ("06_training_dynamics",)),
    Misconception(
        "early-stopping-wait-not-reset",
        "the patience counter is not reset to 0 when the loss improves",
        "Count epochs without improvement since the LAST improvement: set wait = 0 whenever a new best "
        "is recorded, and add 1 otherwise.",
        variant("early-stopping-wait-not-reset"), ("06_training_dynamics",)),
    Misconception(
        "overfit-threshold-inclusive",
        "a row whose loss equals the threshold flagged as suspect (>= where the rule says strictly above)",
        "Flag a row when its final loss is strictly above the threshold: np.flatnonzero(final_losses > threshold).",
        variant("overfit-threshold-inclusive"), ("06_training_dynamics",)),
    Misconception(
        "overfit-flag-by-accuracy",
        "suspect rows chosen by a wrong arg-max instead of by their loss, which flags one row of a conflicting pair",
        "Flag by each row's final cross-entropy: both rows of one input with two labels stay near ln 2, but the "
        "arg-max gets one of them right.",
        variant("overfit-flag-by-accuracy"), ("06_training_dynamics",)),
    # -- end of lab 06 entries --
    # -- lab 07 entries (variants and lab-specific detectors) ---------------
    Misconception(
        "batchnorm-unbiased-variance",
        "BatchNorm's training-mode forward pass normalised with the unbiased variance (divided by N - 1)",
        "Normalise with the biased batch variance, x.var(axis=0) (divide by N); only the running variance "
        "uses N - 1.",
        variant("batchnorm-unbiased-variance"), ("07_normalization_regularization",)),
    Misconception(
        "norm-eps-outside-sqrt",
        "epsilon added to the standard deviation instead of to the variance",
        "Divide by np.sqrt(var + eps), as PyTorch's BatchNorm, LayerNorm and RMSNorm do, not by np.sqrt(var) + eps.",
        variant("norm-eps-outside-sqrt"), ("07_normalization_regularization",)),
    Misconception(
        "norm-backward-ignores-stats",
        "normalisation backward pass that treats the mean and variance as constants",
        "The statistics depend on x: dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps) with "
        "g = dy * gamma and the means over the normalised axis (RMSNorm: no mean(g) term).",
        variant("norm-backward-ignores-stats"), ("07_normalization_regularization",)),
    Misconception(
        "layernorm-wrong-axis",
        "normalised over the wrong axis (BatchNorm's axis for LayerNorm, or LayerNorm's for BatchNorm)",
        "BatchNorm normalises each feature over the batch (axis=0); LayerNorm each sample over its features "
        "(axis=1, keepdims=True).",
        variant("layernorm-wrong-axis"), ("07_normalization_regularization",)),
    Misconception(
        "running-var-biased",
        "running variance updated with the biased batch variance",
        "torch.nn.BatchNorm1d keeps the unbiased estimate: use x.var(axis=0, ddof=1) in the running update.",
        variant("running-var-biased"), ("07_normalization_regularization",)),
    Misconception(
        "bn-momentum-convention",
        "BatchNorm momentum used in the opposite convention (momentum as the weight of the old value)",
        "In PyTorch momentum weighs the new batch statistic: running = (1 - momentum) * running + momentum * batch.",
        variant("bn-momentum-convention"), ("07_normalization_regularization",)),
    Misconception(
        "eval-uses-batch-stats",
        "eval mode normalised with the batch's statistics instead of the running ones",
        "In eval() BatchNorm is a fixed map: gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta.",
        variant("eval-uses-batch-stats"), ("07_normalization_regularization",)),
    Misconception(
        "rmsnorm-subtracts-mean",
        "RMSNorm that subtracts the mean (from x, or inside the root by dividing by the standard deviation)",
        "RMSNorm divides x itself by sqrt(mean(x**2) + eps) over the features; it never centres x.",
        variant("rmsnorm-subtracts-mean"), ("07_normalization_regularization",)),
    Misconception(
        "dropout-not-rescaled",
        "dropout without the 1 / (1 - p) rescaling of the kept units",
        "Inverted dropout returns x * mask / (1 - p) (and its backward dy * mask / (1 - p)), so the expected "
        "output equals x.",
        variant("dropout-not-rescaled"), ("07_normalization_regularization",)),
    Misconception(
        "dropout-scaled-by-p",
        "kept units divided by the drop probability p instead of the keep probability 1 - p",
        "p is the probability of dropping (PyTorch's convention): divide the kept units by 1 - p.",
        variant("dropout-scaled-by-p"), ("07_normalization_regularization",)),
    Misconception(
        "dropout-in-eval",
        "dropout (its mask or a rescaling) applied in eval mode",
        "With training=False dropout is the identity: return x unchanged (a copy), no mask, no rescaling.",
        variant("dropout-in-eval"), ("07_normalization_regularization",)),
    Misconception(
        "ln-placement-swapped",
        "Pre-LN and Post-LN swapped (the LayerNorm placed where the other design puts it)",
        "Post-LN: h = LN(h + F(h)). Pre-LN: h = h + F(LN(h)), plus one LN before the read-out.",
        variant("ln-placement-swapped"), ("07_normalization_regularization",)),
    Misconception(
        "weight-decay-on-every-parameter",
        "weight decay applied to biases and normalisation weights too",
        "Decay only the parameters with p.ndim >= 2 (weight matrices); biases and norm gains/shifts get "
        "weight_decay = 0.",
        variant("weight-decay-on-every-parameter"), ("07_normalization_regularization",)),
    Misconception(
        "head-lr-not-scaled",
        "the head's parameters updated with the body's learning rate",
        "Use head_lr_factor * lr for every parameter whose name starts with 'head.', in the Adam step and in "
        "the decay step.",
        variant("head-lr-not-scaled"), ("07_normalization_regularization",)),
    Misconception(
        "l1-grad-at-zero",
        "L1 gradient at w = 0 taken as +lam or -lam",
        "PyTorch's gradient of |w| at 0 is 0: use lam * np.sign(w), whose value at 0 is 0.",
        variant("l1-grad-at-zero"), ("07_normalization_regularization",)),
    Misconception(
        "l1-subgradient-no-zeros",
        "L1 fitted with plain (sub)gradient steps, which oscillate around 0 instead of landing on it",
        "Take the gradient step on the data loss only, then soft-threshold: w = np.sign(z) * "
        "np.maximum(np.abs(z) - lr * lam, 0.0).",
        variant("l1-subgradient-no-zeros"), ("07_normalization_regularization",)),
    Misconception(
        "mixup-targets-not-mixed",
        "mixup that mixes the inputs but keeps the original (hard) targets",
        "Mix the one-hot targets with the same weight and permutation as the inputs: "
        "mix * Y + (1 - mix) * Y[perm], and use the soft targets in the loss.",
        variant("mixup-targets-not-mixed"), ("07_normalization_regularization",)),
    Misconception(
        "mixup-weights-swapped",
        "mixup weights swapped (mix on the permuted example)",
        "mix weighs the original example: mix * X + (1 - mix) * X[perm].",
        variant("mixup-weights-swapped"), ("07_normalization_regularization",)),
    Misconception(
        "group-split-by-sample",
        "folds split by sample (plain k-fold), so one group lands in several folds",
        "Assign whole groups to folds: largest group first, each to the fold with the fewest samples so far; "
        "every sample of a group gets its group's fold.",
        variant("group-split-by-sample"), ("07_normalization_regularization",)),
    # -- end of lab 07 entries --
    # -- failures that are not about the numbers ----------------------------
    Misconception(
        "torch-in-numpy-exercise",
        "PyTorch used in a numpy-only exercise",
        "Compute the result with numpy operations and return a numpy array; "
        "autograd is the reference the check uses, not part of the answer.",
        _is_tensor, ("01_backprop",)),
    Misconception(
        "input-mutated",
        "the function changed its input arrays in place",
        "Work on a copy (x = x.copy()) or restore every entry you perturb.",
        _mutated, ("01_backprop",)),
    Misconception(
        "unstable-exp-overflow",
        "exp overflowed (softmax or sigmoid without the stable form)",
        "Shift logits by their max before exp (softmax), or use exp(-|z|) (sigmoid).",
        _overflow, ("01_backprop",)),
    # -- generic relations between received and expected ---------------------
    Misconception(
        "transposed-gradient",
        "gradient transposed (matrix product in the wrong order)",
        "A gradient has the shape of what it differentiates: for Y = X @ W, "
        "dL/dW = X.T @ dL/dY and dL/dX = dL/dY @ W.T.",
        _transposed, ("01_backprop",)),
    Misconception(
        "bias-gradient-not-summed",
        "bias gradient not summed over the batch",
        "The bias is shared by every example: dL/db = dL/dY.sum(axis=0).",
        _not_summed, ("01_backprop",)),
    Misconception(
        "shape-mismatch-reshape",
        "right values in the wrong shape (an extra or missing axis)",
        "Return the shape the docstring gives: drop keepdims=True, or reshape/squeeze the result.",
        _reshaped, ("01_backprop",)),
    Misconception(
        "wrong-dtype",
        "right values in the wrong dtype (bool, int or float32)",
        "Return float64: convert masks with .astype(np.float64) and keep the inputs' float64 precision.",
        _wrong_dtype, ("01_backprop",)),
    Misconception(
        "sign-flipped",
        "sign flipped",
        "Check the order of the subtraction (prediction - target) and any minus sign "
        "(cross-entropy is -sum(y log p); gradient descent subtracts lr * grad).",
        _any_of(variant("sign-flipped"), _scale_is(lambda ev: (-1.0,), "negated")),
        ("01_backprop",)),
    Misconception(
        "batch-size-scaling",
        "missing or extra division by the batch size",
        "A mean-reduced loss divides by the number of averaged terms exactly once; "
        "its gradient carries the same 1/N.",
        _any_of(variant("batch-size-scaling"), _scale_is(_batch_factors, "a factor of the batch size")),
        ("01_backprop",)),
    Misconception(
        "factor-of-two",
        "off by a factor of two",
        "d/dx x**2 = 2x; a central difference divides by 2 * eps.",
        _scale_is(lambda ev: (2.0, 0.5), "a factor of 2"), ("01_backprop",)),
]

BY_NAME: dict[str, Misconception] = {m.name: m for m in CATALOGUE}


def diagnose(ev: Evidence) -> Optional[tuple[Misconception, str]]:
    """The first catalogued misconception that explains ``ev``, with its detail."""
    for m in CATALOGUE:
        try:
            detail = m.detector(ev)
        except Exception:  # a detector must never hide the real failure
            detail = None
        if detail:
            return m, detail
    return None
