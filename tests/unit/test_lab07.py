"""Lab 07: the evidence its graded diagnoses rest on, variants that never need dropping, held-out mistakes.

Exercises 6 and 10 grade a reading of measurements the notebook makes with trusted code
(checker.lab07). If that code changed so that the measurements said something else, the
graded answer would silently become false; these tests pin the facts the answers cite.

The held-out wrong submissions of tests/fixtures/mistakes_heldout_07.py (written without
reading the detectors) are all rejected, never named wrongly, and named right at least 9
times in 10, the bar labs 01-03 meet (benchmarks/diagnosis.py prints the tally).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold, KFold

import checker.variants
from checker import CheckFailure, lab07
from fixtures.mistakes_heldout_07 import HELDOUT
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources

LAB = "07_normalization_regularization"


@pytest.fixture(scope="module")
def curves():
    """The notebook's four training runs: 12 blocks, full-batch Adam, lr 1e-4 (150 steps) and 3e-2 (100)."""
    return {(placement, lr): lab07.train_residual_stack(placement, depth=12, lr=lr, n_steps=n_steps)
            for placement in ("post", "pre") for lr, n_steps in ((1e-4, 150), (3e-2, 100))}


def test_both_placements_train_at_scenario_a_settings(curves):
    # Option (c) of exercise 6: at lr 1e-4 both losses fall well below their start (2.5 -> about 0.95).
    for placement in ("post", "pre"):
        losses = curves[(placement, 1e-4)]
        assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], (placement, losses[[0, -1]])


def test_post_ln_stalls_at_a_large_learning_rate_where_pre_ln_trains(curves):
    post, pre = curves[("post", 3e-2)], curves[("pre", 3e-2)]
    assert post[-1] > 2.0, post[[0, 10, -1]]        # a plateau near the loss of guessing (ln 10 = 2.30)
    assert pre[-1] < 0.05, pre[[0, 10, -1]]


@pytest.mark.parametrize("depth", [12, 24])
def test_no_gradient_vanishes_at_the_notebooks_scale(depth):
    # Option (a) says Post-LN's first blocks receive vanishing gradients: at this scale they do not.
    blocks, W_out = lab07.residual_stack_weights(depth, 32, 64, 10, seed=0)
    X, labels = lab07.classification_data(0, 128, 32, 10)
    for placement in ("post", "pre"):
        norms = lab07._stack_grad_norms(X, labels, blocks, W_out, placement)
        ratio = norms[0, 0] / norms[-1, 0]
        assert 0.5 < ratio < 2.0, (placement, depth, ratio)


def test_train_eval_gap_comes_from_running_statistics():
    # Option (c) of exercise 10: no dropout, eval() far worse on the same batch, and re-estimating the
    # running statistics alone (no weight changes) closes the gap.
    log = lab07.train_eval_log()
    assert log["dropout_p"] == 0.0
    assert log["eval_mode_loss"] > 2.0 * log["train_mode_loss"]
    assert abs(log["eval_after_recalibration"] - log["train_mode_loss"]) < 0.02 * log["train_mode_loss"]
    assert np.max(np.abs(log["running_mean"] - log["batch_mean"])) > 0.5


def test_holding_out_a_site_reports_a_larger_error_than_random_folds():
    # The covariate-shift demo's claim, with scikit-learn's splitters instead of the student's.
    x, y, site = lab07.hospital_data()
    features = np.vander(x, 4)

    def cv_error(splits):
        errors = []
        for train, test in splits:
            coef, *_ = np.linalg.lstsq(features[train], y[train], rcond=None)
            errors.append(np.mean((features[test] @ coef - y[test]) ** 2))
        return np.mean(errors)

    random_folds = cv_error(KFold(6, shuffle=True, random_state=0).split(x))
    site_folds = cv_error(GroupKFold(6).split(x, groups=site))
    assert site_folds > 1.3 * random_folds, (site_folds, random_folds)


def test_no_variant_of_lab07_had_to_be_dropped_as_ambiguous():
    # checker.variants.exclusive drops values that two mistakes (or the right answer) share; the
    # lab's inputs are chosen so that none is dropped and every named mistake is unambiguous.
    checker.variants.DROPPED.clear()
    ns = lab_namespace(LAB, solution_sources(LAB))
    for gid, source in grade_cells(LAB).items():
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(source, gid, "exec"), ns)
    assert checker.variants.DROPPED == [], checker.variants.DROPPED


@pytest.fixture(scope="module")
def heldout_failures():
    """The CheckFailure (or None: accepted) of each held-out mistake, run once through its grade cell."""
    failures = []
    for mistake in HELDOUT[LAB]:
        ns = lab_namespace(LAB, solution_sources(LAB, [mistake]))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(grade_cells(LAB)[mistake.check], mistake.check, "exec"), ns)
            failures.append((mistake, None))
        except CheckFailure as failure:
            failures.append((mistake, failure))
    return failures


def test_every_heldout_mistake_is_rejected_and_never_named_wrongly(heldout_failures):
    accepted = [m.id for m, failure in heldout_failures if failure is None]
    assert accepted == [], f"accepted: {accepted}"
    wrong = [(m.id, f.misconception) for m, f in heldout_failures if f.misconception not in (m.misconception, None)]
    assert wrong == [], wrong


def test_heldout_mistakes_are_named_nine_times_in_ten(heldout_failures):
    nameable = [(m, f) for m, f in heldout_failures if m.misconception is not None]
    unnamed = [m.id for m, f in nameable if f is None or f.misconception != m.misconception]
    assert len(unnamed) <= 0.1 * len(nameable), f"{len(nameable) - len(unnamed)} of {len(nameable)}: {unnamed}"
