"""Issue 17 for labs 01-03: variants apart by construction, and the held-out mistakes.

* Every comparison the checks of labs 01-03 make on the solution (visible and
  hidden inputs) is recorded; the values its variants predict for different
  misconceptions, and the generic relations the catalogue tests afterwards
  (negation, a factor of 2, a factor of the mean count), must be pairwise
  different, so a name given is the only one that fits; and no variant had to be
  dropped by ``variants.exclusive`` as ambiguous.
* The held-out wrong submissions of tests/fixtures/mistakes_heldout.py are all
  rejected, never named wrongly, and named right in at least 9 cases in 10 of those
  a name is expected for (benchmarks/diagnosis.py prints the tally).
"""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
import pytest

import checker.exercise
import checker.variants
from checker import CheckFailure
from checker.catalogue import _close
from fixtures.mistakes_heldout import HELDOUT
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources

LABS = ("01_backprop", "02_optimizers", "03_loss_landscapes")


def _flat(variants) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, value in (variants or {}).items():
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v is not None:
                out.append((name, np.asarray(v, dtype=np.float64)))
    return out


def _generic(expected: np.ndarray, mean_count) -> list[tuple[str, np.ndarray]]:
    """What the catalogue's generic scale relations would recognise on this comparison."""
    if not np.max(np.abs(expected), initial=0.0) > 1e-12:
        return []
    rel = [("sign-flipped", -expected), ("factor-of-two", 2 * expected), ("factor-of-two", expected / 2)]
    if mean_count and mean_count not in (1, 2):
        rel += [("batch-size-scaling", expected * mean_count), ("batch-size-scaling", expected / mean_count)]
    return rel


@pytest.fixture(scope="module")
def recorded():
    """Every compare() of the labs' grade cells run on the solutions, with its variants; and what was dropped."""
    calls, real = [], checker.exercise.compare

    def recording(quantity, received, expected, **kwargs):
        if callable(kwargs.get("variants")):  # worked out lazily by the check: here, on every comparison
            kwargs["variants"] = kwargs["variants"]()
        calls.append((quantity, np.asarray(expected, dtype=np.float64), kwargs.get("variants"),
                      kwargs.get("mean_count")))
        return real(quantity, received, expected, **kwargs)

    checker.exercise.compare = recording
    checker.variants.DROPPED.clear()
    try:
        for lab in LABS:
            ns = lab_namespace(lab, solution_sources(lab))
            for gid, source in grade_cells(lab).items():
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(source, gid, "exec"), ns)
    finally:
        checker.exercise.compare = real
    return calls, list(checker.variants.DROPPED)


def test_checks_compare_with_variants(recorded):
    calls, _ = recorded
    assert sum(1 for *_, variants, _ in calls if variants) > 100  # the recorder saw the checks' variants


def test_variants_are_pairwise_distinguishable_on_every_check_input(recorded):
    calls, _ = recorded
    clashes = set()
    for quantity, expected, variants, mean_count in calls:
        values = [(n, v) for n, v in _flat(variants) if not _close(v, expected)] + _generic(expected, mean_count)
        for (a, va), (b, vb) in itertools.combinations(values, 2):
            if a != b and _close(va, vb):
                clashes.add(f"{quantity}: {a} and {b} predict the same value")
    assert not clashes, "\n".join(sorted(clashes)[:20])


def test_no_variant_had_to_be_dropped_as_ambiguous(recorded):
    _, dropped = recorded
    assert not dropped, dropped[:10]


HELD = [(lab, m) for lab in LABS for m in HELDOUT[lab]]


def _named(lab, mistake):
    ns = lab_namespace(lab, solution_sources(lab, [mistake]))
    with pytest.raises(CheckFailure) as failure, contextlib.redirect_stdout(io.StringIO()):
        exec(compile(grade_cells(lab)[mistake.check], mistake.check, "exec"), ns)
    return failure.value


@pytest.mark.parametrize("lab,mistake", HELD, ids=[f"{lab}-{m.id}" for lab, m in HELD])
def test_heldout_mistake_is_rejected_and_never_named_wrongly(lab, mistake):
    failure = _named(lab, mistake)
    assert failure.misconception in (mistake.misconception, None), str(failure)


def test_heldout_mistakes_are_named_nine_times_in_ten():
    nameable = [(lab, m) for lab, m in HELD if m.misconception is not None]
    right = sum(_named(lab, m).misconception == m.misconception for lab, m in nameable)
    assert right >= 0.9 * len(nameable), f"{right} of {len(nameable)} named right"
