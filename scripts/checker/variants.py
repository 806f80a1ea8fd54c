"""Keep a check's variants apart: a misconception is named only when one variant alone matches.

A check passes ``variants={name: value or [values]}`` to ``compare``; the
catalogue names the first entry whose value the student's result matches. When
two entries predict the same value on a check's inputs (a division by N that
equals a wrong LoRA scale because N == alpha), the first one in catalogue order
would be named whichever mistake was made. :func:`exclusive` moves every value
that more than one entry predicts under a key that is the tuple of those names
(the failure message then lists them as candidates and names none), and drops
every value equal to the right answer (that mistake is invisible on this input),
so a single name is always unambiguous.
The checks choose inputs on which nothing is ambiguous; tests/unit/test_checker_0103.py
and test_checker_0406.py assert it for every check (:data:`DROPPED` records what was shared).
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from .catalogue import _DETECT_ATOL, _DETECT_RTOL

#: (names, value) of every value :func:`exclusive` found predicted by several names, for the
#: distinguishability tests (the value is kept under the tuple of names, never under one name).
DROPPED: list[tuple[tuple[str, ...], str]] = []
#: Largest (values x values x elements) block :func:`_closeness` compares in one numpy pass (8 MB of
#: float64 differences); larger sets of values go one row at a time.
_PAIRWISE_ELEMENTS = 1 << 20


def _values(value) -> list[np.ndarray]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [np.asarray(v, dtype=np.float64) for v in items if v is not None]


def names_of(key) -> tuple[str, ...]:
    """The misconception names a variants key stands for: one name, or a tuple of candidates."""
    return tuple(key) if isinstance(key, tuple) else (key,)


def exclusive(variants: Mapping[object, object], expected) -> Optional[dict]:
    """``variants`` with each value under the names that predict it, none equal to ``expected``.

    Parameters
    ----------
    variants : mapping of str (or tuple of str) to array_like, list of them, or None
        A tuple key (from an earlier call) stands for several names that predict its values.
    expected : array_like
        The right answer on the same inputs.

    Returns
    -------
    dict or None
        Name -> list of values only that name predicts; tuple of names (sorted) -> list of
        values all of them predict (the message lists them as candidates and names none).
        Names left with no values are omitted; None when nothing is left.
    """
    expected = np.asarray(expected, dtype=np.float64)
    flat = [(names_of(key), v) for key, value in variants.items() for v in _values(value)]
    close = _closeness([v for _, v in flat] + [expected])  # the last row and column: the right answer
    either = (close | close.T)[:, :-1]   # close in one direction or the other, against each variant
    kept: dict[object, list] = {}
    kept_at: dict[object, list[int]] = {}
    for i, (names, v) in enumerate(flat):
        if close[i, -1]:
            continue  # this mistake gives the right answer here: nothing to name
        sharing = sorted({n for j in np.flatnonzero(either[i]) for n in flat[j][0]} | set(names))
        if len(sharing) == 1:
            kept.setdefault(sharing[0], []).append(v)
            continue
        key = tuple(sharing)
        if any(close[i, j] for j in kept_at.get(key, [])):
            continue  # the same shared value, seen from another of its names
        DROPPED.append((key, repr(np.round(v, 6).tolist())))
        kept.setdefault(key, []).append(v)
        kept_at.setdefault(key, []).append(i)
    return kept or None


def _closeness(values: list[np.ndarray]) -> np.ndarray:
    """close[i, j] = ``_close(values[i], values[j])`` for every pair, one numpy pass per value.

    :func:`exclusive` runs on every comparison a check makes (an optimizer check: every
    parameter after every step), so the pairwise test must not cost one call per pair.
    """
    n = len(values)
    close = np.zeros((n, n), dtype=bool)
    by_shape: dict[tuple, list[int]] = {}
    for i, v in enumerate(values):
        if np.all(np.isfinite(v)):  # a value with inf or NaN is close to nothing
            by_shape.setdefault(v.shape, []).append(i)
    for idx in by_shape.values():
        stacked = np.stack([values[j].reshape(-1) for j in idx])   # (m, size)
        bound = _DETECT_ATOL + _DETECT_RTOL * np.abs(stacked)       # tolerance of each as the reference
        if len(idx) ** 2 * stacked.shape[1] <= _PAIRWISE_ELEMENTS:
            # All pairs at once: [row, column] compares value row with value column's tolerance.
            within = np.abs(stacked[:, None, :] - stacked[None, :, :]) <= bound[None, :, :]
            close[np.ix_(idx, idx)] = within.all(axis=2)
            continue
        for row, i in enumerate(idx):   # large values: one row at a time keeps memory at (m, size)
            close[i, idx] = np.all(np.abs(stacked[row] - stacked) <= bound, axis=1)
    return close
