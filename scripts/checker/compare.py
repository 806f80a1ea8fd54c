"""Compare a student's value with a trusted reference and explain any mismatch.

The failure message follows the course's check contract: which quantity, the
expected and received shapes and dtypes, max absolute and relative error, the
tolerance, and, when recognised, the misconception with its fix and its
TROUBLESHOOTING.md anchor.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

from .catalogue import BY_NAME, CATALOGUE, Evidence, _close, diagnose


@dataclass(frozen=True)
class Tolerance:
    """Pass when every |received - expected| <= atol + rtol * |expected|."""

    atol: float = 1e-10
    rtol: float = 1e-7

    def __str__(self) -> str:
        return f"atol={self.atol:.0e}, rtol={self.rtol:.0e}"


#: float64 gradients against float64 autograd differ by rounding only.
GRADIENT_TOL = Tolerance(atol=1e-10, rtol=1e-7)


@dataclass
class Match:
    """Closeness of one passing comparison."""

    quantity: str
    shape: tuple
    max_abs: float
    max_rel: float


class CheckFailure(AssertionError):
    """A failed check. ``misconception`` is the catalogue name, if recognised.

    ``str(failure)`` is the whole message: ``make grade`` reports it as it is.
    In a notebook IPython calls :meth:`_render_traceback_` instead of printing
    a traceback, so the student reads the message first, with none of the
    checker's own frames above it (the cell still ends in an error, which is
    how nbgrader and Validate see a failed check).
    """

    def __init__(self, message: str, misconception: Optional[str] = None):
        super().__init__(message)
        self.misconception = misconception

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows for this exception: the message, first line in bold red.

        Lines are wrapped at :data:`SHOWN_WIDTH` columns so that nbgrader's Validate
        dialog, which does not wrap, shows them whole.
        """
        from . import notebook  # IPython-only helpers: links and progress after the cell

        notebook.after_failure(self)
        first, *rest = str(self).splitlines() or [""]
        head = _wrap(f"\u2717 Check failed: {first}")
        return ([f"{_RED_BOLD}{line}{_RESET}" for line in head]
                + [part for line in rest for part in _wrap(line)])


_RED_BOLD, _RESET = "\x1b[1;31m", "\x1b[0m"
#: Columns of a failure message as shown in a notebook (``str(failure)`` is not wrapped).
SHOWN_WIDTH = 100


def _wrap(line: str) -> list[str]:
    """One message line as shown: wrapped, continuation lines indented under its text."""
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.wrap(line, SHOWN_WIDTH, subsequent_indent=indent, break_on_hyphens=False,
                         drop_whitespace=True, replace_whitespace=False) or [line]


def describe_type(value) -> str:
    from .student import RemoteValue  # the grader's proxies report the sandboxed object's type

    if isinstance(value, RemoteValue):
        return value.remote_type
    t = type(value)
    module = t.__module__.split(".")[0]
    return t.__name__ if module == "builtins" else f"{module}.{t.__name__}"


_SCALARS = (float, int, np.floating, np.integer)


def to_float_array(value) -> Optional[np.ndarray]:
    """A private float64 copy of a numeric value, or None if it is not one.

    Only plain numpy arrays (not subclasses, which can override comparisons)
    and plain Python or numpy scalars are accepted; anything else, torch
    tensors included, is reported rather than converted through its own,
    possibly lying, hooks.
    """
    t = type(value)
    if t is np.ndarray:
        return np.array(value, dtype=np.float64, copy=True) if value.dtype.kind in "fiub" else None
    if t in (float, int) or (t.__module__ == "numpy" and isinstance(value, _SCALARS)):
        return np.array(float(value), dtype=np.float64)
    return None


def _dtype_of(value) -> str:
    if type(value) is np.ndarray:
        return str(value.dtype)
    dtype = getattr(value, "dtype", None)
    return str(dtype) if dtype is not None else describe_type(value)


def _shape_of(value):
    if type(value) is np.ndarray:
        return value.shape
    if isinstance(value, _SCALARS):
        return ()
    shape = getattr(value, "shape", None)
    try:
        return tuple(shape)
    except TypeError:
        return "n/a"


def compare(
    quantity: str,
    received,
    expected,
    *,
    tol: Tolerance = GRADIENT_TOL,
    reference: str = "PyTorch autograd",
    variants: Union[Mapping[str, np.ndarray], Callable[[], Optional[Mapping]], None] = None,
    mean_count: Optional[int] = None,
    warnings: Sequence[str] = (),
    mutated_inputs: Sequence[str] = (),
    require_float64: bool = True,
) -> Match:
    """Check ``received`` against ``expected``; raise :class:`CheckFailure` if they differ.

    Parameters
    ----------
    quantity : str
        Name shown to the student, e.g. ``"dL/dW1"``.
    received : any
        What the student's code returned (untrusted).
    expected : array_like
        Trusted reference value.
    tol : Tolerance
    reference : str
        Where ``expected`` came from, for the message.
    variants : mapping, or a callable returning one, optional
        Misconception name -> what that mistake would produce here. A callable is called only
        when the comparison fails: working out which mistakes are distinguishable on every
        comparison (an optimizer check: every parameter after every step) costs more than the
        comparison itself, and only a failure is diagnosed.
    mean_count : int, optional
        Count divided by in a mean reduction (for batch-size detection).
    warnings : sequence of str
        RuntimeWarnings seen while the student's code ran. An overflow or
        invalid-value warning fails the check even if the numbers agree.
    mutated_inputs : sequence of str
        Inputs the student's code modified in place; fails the check.
    require_float64 : bool, default True
        Fail float32 or integer results (gradient checks run in float64).

    Returns
    -------
    Match
    """
    expected = np.array(expected, dtype=np.float64, copy=True)
    got = to_float_array(received)
    ev = Evidence(
        quantity=quantity, received=got, received_type=describe_type(received),
        received_dtype=str(received.dtype) if type(received) is np.ndarray else "",
        expected=expected, variants={} if callable(variants) else dict(variants or {}), mean_count=mean_count,
        warnings=tuple(warnings), mutated_inputs=tuple(mutated_inputs),
    )

    problem = None
    max_abs = max_rel = float("nan")
    if got is None:
        problem = f"received a {ev.received_type}, expected a numpy array (or a float for a scalar)"
    elif got.shape != expected.shape:
        problem = "shapes differ"
    else:
        abs_err = np.abs(got - expected)
        finite = np.isfinite(got)
        max_abs = float(np.max(abs_err, initial=0.0)) if np.all(finite) else float("inf")
        # Relative error is only meaningful where the reference is not zero (NaN: nowhere).
        nonzero = expected != 0
        rel = abs_err[nonzero] / np.abs(expected[nonzero])
        max_rel = (float(np.max(rel)) if rel.size else float("nan")) if np.all(finite) else float("inf")
        within = np.all(finite) and bool(np.all(abs_err <= tol.atol + tol.rtol * np.abs(expected)))
        if not within:
            problem = "values differ"
        elif require_float64 and type(received) is np.ndarray and received.dtype != np.float64:
            problem = f"dtype is {received.dtype}; the check runs in float64"
        elif ev.mutated_inputs:
            problem = "the function modified its inputs"
        elif any("overflow" in w or "invalid value" in w for w in ev.warnings):
            problem = "numpy raised a warning while your code ran"

    if problem is None:
        return Match(quantity, expected.shape, max_abs, max_rel)
    if callable(variants):
        ev.variants = dict(variants() or {})
    shown = f"shape {_shape_of(received)}, {_dtype_of(received)}"
    message, name = failure_message(ev, problem, reference, tol, shown, max_abs, max_rel)
    raise CheckFailure(message, name)


def error_figures(expected: np.ndarray, received: Optional[np.ndarray], max_abs: float, max_rel: float,
                  tol: Tolerance, problem: str) -> str:
    """The error line of a failure message, printing only figures that mean something.

    A relative error divides by the reference, so it is left out where the
    reference is 0 ("n/a (reference is 0)"), and qualified when the largest
    absolute error sits on an entry whose reference is 0.
    """
    if not (np.isfinite(max_abs) or max_abs == float("inf")):
        return f"  max abs error: not computable ({problem}) (tolerance {tol})"
    if max_abs == float("inf"):
        return f"  max abs error: inf (your result has inf or nan entries) (tolerance {tol})"
    if np.isnan(max_rel):
        rel = "max rel error: n/a (reference is 0)"
    else:
        rel = f"max rel error: {max_rel:.3g}"
        worst = np.unravel_index(np.argmax(np.abs(received - expected)), expected.shape) if expected.ndim else ()
        if max_abs > 0 and expected[worst] == 0:
            where = f", at index {tuple(int(i) for i in worst)}," if expected.ndim else ""
            rel += f" over entries whose reference is not 0 (the largest error{where} has reference 0)"
    return f"  max abs error: {max_abs:.3g}, {rel} (tolerance {tol})"


def failure_message(ev: Evidence, problem: str, reference: str, tol: Tolerance, received_shown: str,
                    max_abs: float, max_rel: float) -> tuple[str, Optional[str]]:
    """The failure message of :func:`compare` and the misconception it names, if any.

    Built here rather than next to the ``raise``: a traceback (in a plain
    Python session) then shows the ``raise`` line, not the message's
    alternative wording for an unrecognised mistake.
    """
    expected, received = ev.expected, ev.received
    lines = [
        f"{ev.quantity} does not match {reference}: {problem}.",
        f"  expected: shape {expected.shape}, float64",
        f"  received: {received_shown}",
        error_figures(expected, received, max_abs, max_rel, tol, problem),
    ]
    found = diagnose(ev)
    candidates = shared_candidates(ev)
    if candidates:
        if found and found[0].name not in candidates:
            candidates.append(found[0].name)  # another detector fits too: one more candidate, still no name
        return "\n".join(lines + candidate_lines(candidates)), None
    if not found:
        near = (problem == "values differ" and received is not None and received.shape == expected.shape
                and _close(received, expected))
        return "\n".join(lines + [_UNRECOGNISED_NEAR if near else _UNRECOGNISED]), None
    m, detail = found
    lines += [
        f"  Likely misconception [{m.name}]: {m.title} ({detail}).",
        f"  Fix: {m.fix}",
        f"  Read: {m.anchor}",
    ]
    return "\n".join(lines), m.name


def shared_candidates(ev: Evidence) -> list[str]:
    """Names whose shared value (a tuple key of :func:`checker.variants.exclusive`) the student's result matches.

    In catalogue order; empty when no shared value matches.
    """
    if ev.received is None:
        return []
    names: set[str] = set()
    for key, values in ev.variants.items():
        if not isinstance(key, tuple):
            continue
        for value in (values if isinstance(values, (list, tuple)) else [values]):
            if value is not None and _close(ev.received, np.asarray(value, dtype=np.float64)):
                names.update(key)
    order = {m.name: i for i, m in enumerate(CATALOGUE)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def candidate_lines(names: Sequence[str]) -> list[str]:
    """The message lines for a result that several catalogued mistakes explain equally well."""
    listed = ", ".join(f"`{n}` ({BY_NAME[n].anchor if n in BY_NAME else 'TROUBLESHOOTING.md#' + n})"
                       for n in names)
    return ([f"  Could be one of: {listed}.",
             "  On these inputs those mistakes give the same values, so the check cannot tell which one you made:"]
            + [f"    `{n}`: {BY_NAME[n].title}" for n in names if n in BY_NAME])


# Within the detectors' loose tolerance but outside the check's: too small a difference to tell one
# mistake from another, so no name, only where differences of this size usually come from.
_UNRECOGNISED_NEAR = ("  No known misconception matches, but every value is within 1e-05 (relative) of the "
                      "reference: differences this small usually come from float32 arithmetic somewhere (a cast, "
                      "np.float32 data, a torch tensor in its default float32) or from a small constant such as "
                      "eps used differently (TROUBLESHOOTING.md#reading-a-failed-check).")
_UNRECOGNISED = ("  No known misconception matches; compare your shapes and formulas step by step "
                 "(TROUBLESHOOTING.md#reading-a-failed-check).")


def summarise(exercise: str, matches: Sequence[Match], reference: str, tol: Tolerance, n_cases: int) -> str:
    """The one line printed when a whole check passes."""
    names = ", ".join(dict.fromkeys(m.quantity for m in matches))
    worst = max((m.max_abs for m in matches), default=0.0)
    cases = f"{n_cases} case{'s' if n_cases != 1 else ''}"
    return (f"\u2713 {exercise}: {names} match {reference} on {cases} "
            f"(max abs error {worst:.1e}, tolerance {tol})")
