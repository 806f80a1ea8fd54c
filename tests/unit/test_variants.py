"""Issue 17 item 1: a misconception is named only when one variant matches; several list candidates.

``checker.variants.exclusive`` keeps a value that several names predict under the tuple of
those names, and the failure message lists them ("Could be one of: ...") without naming
either: a wrong single name sends the student away from the bug, which is worse than none.
"""

from __future__ import annotations

import numpy as np
import pytest

import checker.variants
from checker import CheckFailure
from checker.exercise import ExerciseCheck
from checker.variants import exclusive

# A LoRA-style scale check whose inputs make two mistakes coincide: N == alpha.
N = ALPHA = 4
R = 3
X = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])
EXPECTED = X * ALPHA / R
DIVIDED_BY_N = EXPECTED / N          # "batch-size-scaling": an extra division by N
NO_SCALING = X                       # "lora-missing-scaling": alpha / r left out ...
UNSCALED_BY_ALPHA = EXPECTED / ALPHA  # ... here written so it equals the division by N


def _check(received, variants, mean_count=None):
    """A constructed check cell: one comparison, its variants through exclusive()."""
    check = ExerciseCheck("scaled_update", reference="the reference formula")
    with pytest.raises(CheckFailure) as failure:
        check.compare("delta W", received, EXPECTED, variants=exclusive(variants, EXPECTED),
                      mean_count=mean_count)
    return failure.value


def test_exclusive_keeps_a_shared_value_under_both_names_and_a_lone_value_under_its_own():
    checker.variants.DROPPED.clear()
    kept = exclusive({"batch-size-scaling": DIVIDED_BY_N, "lora-missing-scaling": [UNSCALED_BY_ALPHA, NO_SCALING],
                      "sign-flipped": EXPECTED}, EXPECTED)
    assert set(kept) == {("batch-size-scaling", "lora-missing-scaling"), "lora-missing-scaling"}
    [shared] = kept[("batch-size-scaling", "lora-missing-scaling")]  # once, not once per name
    np.testing.assert_array_equal(shared, DIVIDED_BY_N)
    [alone] = kept["lora-missing-scaling"]
    np.testing.assert_array_equal(alone, NO_SCALING)
    assert [names for names, _ in checker.variants.DROPPED] == [("batch-size-scaling", "lora-missing-scaling")]
    # A value equal to the right answer names nothing (the "sign-flipped" entry above), and a second pass
    # (lab 07's checks call exclusive on variants that already went through it) changes nothing.
    again = exclusive(kept, EXPECTED)
    assert set(again) == set(kept)


def test_two_variants_that_coincide_are_listed_and_neither_is_named():
    failure = _check(DIVIDED_BY_N, {"batch-size-scaling": DIVIDED_BY_N, "lora-missing-scaling": UNSCALED_BY_ALPHA})
    message = str(failure)
    assert failure.misconception is None, message
    assert ("Could be one of: `lora-missing-scaling` (TROUBLESHOOTING.md#lora-missing-scaling), "
            "`batch-size-scaling` (TROUBLESHOOTING.md#batch-size-scaling).") in message, message
    assert "Likely misconception" not in message and "Fix:" not in message, message
    assert "No known misconception matches" not in message, message
    # The usual figures come first, as for any failure.
    assert message.startswith("delta W (scaled_update) does not match the reference formula: values differ."), message


def test_a_generic_relation_that_also_fits_joins_the_candidates():
    """mean_count = N: the catalogue's generic batch-size relation fits too; still no single name."""
    failure = _check(DIVIDED_BY_N, {"lora-missing-scaling": UNSCALED_BY_ALPHA, "dropout-scaled-by-p": DIVIDED_BY_N},
                     mean_count=N)
    message = str(failure)
    assert failure.misconception is None, message
    for name in ("lora-missing-scaling", "dropout-scaled-by-p", "batch-size-scaling"):
        assert f"`{name}` (TROUBLESHOOTING.md#{name})" in message, message


def test_exactly_one_matching_variant_is_named():
    failure = _check(NO_SCALING, {"batch-size-scaling": DIVIDED_BY_N, "lora-missing-scaling": [UNSCALED_BY_ALPHA,
                                                                                                NO_SCALING]})
    assert failure.misconception == "lora-missing-scaling", str(failure)
    assert "Likely misconception [lora-missing-scaling]" in str(failure)
    assert "Could be one of" not in str(failure)


def test_no_matching_variant_names_nothing_and_lists_nothing():
    failure = _check(EXPECTED + 0.125, {"batch-size-scaling": DIVIDED_BY_N, "lora-missing-scaling": UNSCALED_BY_ALPHA})
    assert failure.misconception is None
    assert "No known misconception matches" in str(failure)
    assert "Could be one of" not in str(failure)


def test_a_shared_value_is_shown_as_candidates_in_the_notebook_with_a_link_each(tmp_path):
    from checker import notebook
    from coursetools.paths import ROOT

    failure = _check(DIVIDED_BY_N, {"batch-size-scaling": DIVIDED_BY_N, "lora-missing-scaling": UNSCALED_BY_ALPHA})
    links = notebook.troubleshooting_links(str(failure), ROOT / "labs" / "04_svd_lora")
    assert [anchor for anchor, _ in links] == ["TROUBLESHOOTING.md#lora-missing-scaling",
                                               "TROUBLESHOOTING.md#batch-size-scaling"], links


def test_sample_statistics_that_fit_two_initialisation_mistakes_list_both():
    """Lab 06's initialisation checks judge a fit within a band: fitting two predictions names neither."""
    import checker.lab06

    got = np.array([0.0101, 0.0202])
    predicted = {"he-variance-wrong": [np.array([0.01, 0.02])], "xavier-variance-wrong": [np.array([0.0102, 0.0203])],
                 "init-std-as-variance": [np.array([0.1, 0.14])]}
    fitting = checker.lab06._fitting_variants(got, predicted)
    assert list(fitting) == [("he-variance-wrong", "xavier-variance-wrong")]
    check = ExerciseCheck("he_init", reference="the target variance")
    with pytest.raises(CheckFailure) as failure:
        check.compare("sample variance of the weights", got, np.array([0.02, 0.04]), variants=fitting)
    assert failure.value.misconception is None, str(failure.value)
    assert "`he-variance-wrong`" in str(failure.value) and "`xavier-variance-wrong`" in str(failure.value)
    one = checker.lab06._fitting_variants(got, {k: v for k, v in predicted.items() if k != "xavier-variance-wrong"})
    assert list(one) == ["he-variance-wrong"]


def test_variants_given_as_a_callable_are_worked_out_only_when_the_comparison_fails():
    """An optimizer check compares every parameter after every step: its variants come as a callable,
    called for a failure only, and then named exactly as a mapping would be."""
    calls = []

    def variants():
        calls.append(1)
        return exclusive({"batch-size-scaling": DIVIDED_BY_N}, EXPECTED)

    check = ExerciseCheck("scaled_update", reference="the reference formula")
    check.compare("update", EXPECTED.copy(), EXPECTED, variants=variants)
    assert calls == []
    with pytest.raises(CheckFailure) as lazy:
        check.compare("update", DIVIDED_BY_N, EXPECTED, variants=variants)
    assert calls == [1] and lazy.value.misconception == "batch-size-scaling"
    with pytest.raises(CheckFailure) as eager:
        check.compare("update", DIVIDED_BY_N, EXPECTED, variants=variants())
    assert str(lazy.value) == str(eager.value)


@pytest.mark.parametrize("seed", range(5))
def test_all_pairs_at_once_and_one_row_at_a_time_agree(seed, monkeypatch):
    """_closeness compares small sets of values in one numpy pass and large ones row by row: the same
    verdicts, values within tolerance of each other (one direction only), infinities and NaN included."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(4, 3))
    values = [base, base * (1 + 5e-9), base + 1.0, -base, base.copy(), np.full((4, 3), np.nan),
              rng.normal(size=(2, 2)), np.where(base > 0, np.inf, base), 1e-9 * base]
    pairwise = checker.variants._closeness(values)
    monkeypatch.setattr(checker.variants, "_PAIRWISE_ELEMENTS", 0)
    rowwise = checker.variants._closeness(values)
    assert pairwise.dtype == bool and (pairwise == rowwise).all()
    assert pairwise[0, 4] and pairwise[0, 1] and not pairwise[0, 2] and not pairwise[5].any()


def test_lab02_runs_its_mistaken_optimizers_only_for_a_failure_and_replays_them_exactly(monkeypatch):
    """Lab 02's optimizer checks record the gradients and rate changes and replay the catalogued mistakes
    only when a comparison fails; the replay gives what stepping them alongside the check gave."""
    from checker import lab02

    made = []
    real = lab02._NumpyOptimizer

    class Counted(real):
        def __init__(self, *args, **kwargs):
            made.append(args[3] if len(args) > 3 else kwargs.get("mistake"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lab02, "_NumpyOptimizer", Counted)

    lab02.check_adam(lab02_reference_adam())  # passes (a failure raises CheckFailure)
    assert made == [], f"mistaken runs made for a right answer: {made}"
    mistaken = lab02_reference_adam(bias_correction=False)
    with pytest.raises(CheckFailure) as failure:
        lab02.check_adam(mistaken)
    assert failure.value.misconception == "adam-missing-bias-correction", str(failure.value)
    assert set(made) == set(lab02._VARIANTS["adam"]) - set(lab02._DECAY_MISTAKES)  # the first case has no decay

    # Replayed at step k, or stepped alongside from the start: the same arrays.
    params0, grads = lab02.make_gradient_sequence(3, [(2, 3), (4,)], n_steps=7)
    hyper = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}
    mistakes = list(lab02._VARIANTS["adam"])
    lazy = lab02._MistakenRuns("adam", params0, hyper, mistakes)
    eager = [(m, real("adam", params0, hyper, m)) for m in mistakes]
    for k, g in enumerate(grads, start=1):
        if k == 4:
            lazy.set_lr(0.02)
            for _, run in eager:
                run.set_lr(0.02)
        lazy.step(g)
        for _, run in eager:
            run.step(g)
        if k in (2, 3, 7):  # a first failure after some steps, then catching up twice
            for i in range(2):
                replayed = lazy.variants(i)
                stepped: dict = {}
                for m, run in eager:
                    stepped.setdefault(lab02._REPORTED_AS.get(m, m), []).append(run.params[i])
                assert replayed.keys() == stepped.keys()
                for name in stepped:
                    for a, b in zip(replayed[name], stepped[name]):
                        np.testing.assert_array_equal(a, b)


def lab02_reference_adam(bias_correction=True):
    """Adam as lab 02's solution writes it (from the solution notebook), or with its fixture mistake."""
    from fixtures.mistakes import MISTAKES
    from fixtures.notebooks import lab_namespace, solution_sources

    mistakes = [] if bias_correction else \
        [m for m in MISTAKES["02_optimizers"] if m.misconception == "adam-missing-bias-correction"][:1]
    return lab_namespace("02_optimizers", solution_sources("02_optimizers", mistakes))["Adam"]
