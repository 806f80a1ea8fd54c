"""Issue 17 for labs 04-06: variants apart by construction, and the held-out mistakes.

* Every comparison the checks of labs 04-06 make on the solution (visible and
  hidden inputs) is recorded; the values its variants predict for different
  misconceptions, and the generic relations the catalogue tests afterwards
  (negation, a factor of 2, a factor of the mean count), must be pairwise
  different, so a name given is the only one that fits.
* The held-out wrong submissions of tests/fixtures/mistakes_heldout_0406.py are
  all rejected, and never named wrongly (benchmarks/diagnosis.py counts them).
"""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
import pytest

import checker.exercise
import checker.lab06
import checker.variants
from checker import CheckFailure
from checker.catalogue import _close
from fixtures.mistakes import MISTAKES
from fixtures.mistakes_heldout_0406 import HELDOUT
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources

LABS = ("04_svd_lora", "05_probability", "06_training_dynamics")


def _flat(variants) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, value in (variants or {}).items():
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v is not None:
                out.append((name, np.asarray(v, dtype=np.float64)))
    return out


#: A specific entry that refines a generic one: both name the same mistake, the specific one first.
REFINES = {frozenset({"negative-cross-entropy", "sign-flipped"})}

#: Coincidences no input can avoid, on cases placed after others that tell the names apart:
#: at k = 1 the largest kept singular value S[0] is also S[k - 1] (check_low_rank puts k >= 2 first).
INHERENT = {frozenset({"rank-k-error-from-kept", "rank-k-off-by-one"})}


def _generic(expected: np.ndarray, mean_count) -> list[tuple[str, np.ndarray]]:
    """What the catalogue's generic relations would recognise on this comparison (none for integer answers)."""
    if mean_count is False or not np.max(np.abs(expected), initial=0.0) > 1e-12:
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
        # Integer answers (ranks, epochs, counts: require_float64=False) get no generic scale relations:
        # a rank of 2 for 1 is an off-by-one, not a factor of two.
        calls.append((quantity, np.asarray(expected, dtype=np.float64), kwargs.get("variants"),
                      kwargs.get("mean_count") if kwargs.get("require_float64", True) else False))
        return real(quantity, received, expected, **kwargs)

    predicted, real_fit = [], checker.lab06._fitting_variants

    def recording_fit(received, options):
        predicted.append(options)
        return real_fit(received, options)

    checker.exercise.compare, checker.lab06._fitting_variants = recording, recording_fit
    checker.variants.DROPPED.clear()
    try:
        for lab in LABS:
            ns = lab_namespace(lab, solution_sources(lab))
            for gid, source in grade_cells(lab).items():
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(source, gid, "exec"), ns)
    finally:
        checker.exercise.compare, checker.lab06._fitting_variants = real, real_fit
    return calls, predicted, list(checker.variants.DROPPED)


def test_checks_compare_with_variants(recorded):
    calls, predicted, _ = recorded
    assert sum(1 for *_, variants, _ in calls if variants) > 50  # the recorder saw the checks' variants
    assert predicted


def test_variants_are_pairwise_distinguishable_on_every_check_input(recorded):
    calls, _, _ = recorded
    clashes = []
    for quantity, expected, variants, mean_count in calls:
        values = [(n, v) for n, v in _flat(variants) if not _close(v, expected)] + _generic(expected, mean_count)
        for (a, va), (b, vb) in itertools.combinations(values, 2):
            if a != b and frozenset({a, b}) not in REFINES and _close(va, vb):
                clashes.append(f"{quantity}: {a} and {b} predict the same value")
    assert not clashes, "\n".join(clashes)


def test_no_variant_had_to_be_dropped_as_ambiguous(recorded):
    _, _, dropped = recorded
    avoidable = [(names, value) for names, value in dropped if frozenset(names) not in INHERENT]
    assert not avoidable, avoidable[:10]


def test_initialisation_mistakes_are_apart_at_the_checks_band(recorded):
    """Sample statistics are judged within VARIANT_BAND of each prediction: the bands of two names never overlap."""
    _, predicted, _ = recorded
    band = checker.lab06.VARIANT_BAND
    for options in predicted:
        flat = [(name, np.asarray(v, dtype=np.float64)) for name, vs in options.items() for v in vs]
        for (a, va), (b, vb) in itertools.combinations(flat, 2):
            if a != b:
                # Some entry must be out of both bands, or one sample could fit both mistakes.
                apart = np.abs(va - vb) > band * (np.abs(va) + np.abs(vb))
                assert np.any(apart), (a, b, va, vb)


HELD = [(lab, m) for lab in LABS for m in HELDOUT[lab]]


@pytest.mark.parametrize("lab,mistake", HELD, ids=[f"{lab}-{m.id}" for lab, m in HELD])
def test_heldout_mistake_is_rejected_and_never_named_wrongly(lab, mistake):
    ns = lab_namespace(lab, solution_sources(lab, [mistake]))
    with pytest.raises(CheckFailure) as failure, contextlib.redirect_stdout(io.StringIO()):
        exec(compile(grade_cells(lab)[mistake.check], mistake.check, "exec"), ns)
    assert failure.value.misconception in (mistake.misconception, None), str(failure.value)


@pytest.mark.parametrize("cell,function", [("ex3_warmup_clipping", "train_with_warmup_and_clipping"),
                                           ("ex10_overfit_flag", "overfit_and_flag")])
def test_a_mistake_is_named_even_when_the_student_leaves_autograd_switched_off(cell, function):
    """Lab 06 runs its mistaken reference loops only for a failed comparison, so after the student's
    function: one that ends with torch.set_grad_enabled(False) must not break them (a crash instead of
    the message) nor change the name."""
    import torch

    lab = "06_training_dynamics"
    mistake = next(m for m in MISTAKES[lab] if m.cell == cell and m.misconception == "missing-zero-grad")
    sources = solution_sources(lab, [mistake])
    sources[cell] += (f"\n\n_own_{function} = {function}\n\n\ndef {function}(*args, **kwargs):\n"
                      f"    result = _own_{function}(*args, **kwargs)\n    torch.set_grad_enabled(False)\n"
                      f"    return result\n")
    ns = lab_namespace(lab, sources)
    try:
        with pytest.raises(CheckFailure) as failure, contextlib.redirect_stdout(io.StringIO()):
            exec(compile(grade_cells(lab)[mistake.check], mistake.check, "exec"), ns)
    finally:
        torch.set_grad_enabled(True)
    assert failure.value.misconception == "missing-zero-grad", str(failure.value)
