"""Keep a check's variants apart: a misconception is named only when one variant alone matches.

A check passes ``variants={name: value or [values]}`` to ``compare``; the
catalogue names the first entry whose value the student's result matches. When
two entries predict the same value on a check's inputs (a division by N that
equals a wrong LoRA scale because N == alpha), the first one in catalogue order
would be named whichever mistake was made. :func:`exclusive` drops every value
that more than one entry predicts, and every value equal to the right answer
(that mistake is invisible on this input), so a match is always unambiguous.
The checks choose inputs on which nothing needs dropping; tests/unit/test_checker.py
asserts it for every check of labs 04-06 (:data:`DROPPED` records what was dropped).
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from .catalogue import _close

#: (name, value) pairs dropped by :func:`exclusive` as ambiguous, for the distinguishability test.
DROPPED: list[tuple[tuple[str, ...], str]] = []


def _values(value) -> list[np.ndarray]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [np.asarray(v, dtype=np.float64) for v in items if v is not None]


def exclusive(variants: Mapping[str, object], expected) -> Optional[dict]:
    """``variants`` without values that equal ``expected`` or that another name also predicts.

    Parameters
    ----------
    variants : mapping of str to array_like, list of them, or None
    expected : array_like
        The right answer on the same inputs.

    Returns
    -------
    dict or None
        Name -> list of unambiguous values (names left with none are omitted); None when empty.
    """
    expected = np.asarray(expected, dtype=np.float64)
    flat = [(name, v) for name, value in variants.items() for v in _values(value)]
    kept: dict[str, list] = {}
    for name, v in flat:
        if _close(v, expected):
            continue  # this mistake gives the right answer here: nothing to name
        rivals = sorted({other for other, w in flat if other != name and _close(v, w)})
        if rivals:
            DROPPED.append(((name, *rivals), repr(np.round(v, 6).tolist())))
            continue
        kept.setdefault(name, []).append(v)
    return kept or None
