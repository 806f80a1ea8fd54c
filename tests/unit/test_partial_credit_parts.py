"""Partial credit per function in every exercise that asks for several functions (issue 17, item 4).

For each such exercise (:data:`PARTS_BY_EXERCISE`), a submission with one function wrong earns the
other functions' share of the grade cell's points, and one with every function wrong earns 0. The
grade cell runs as the grader runs it (``scoring_by_value``: its value is the score) and as plain
``exec`` (a :class:`PartialCredit` failure carrying the points). Where one function may be built on
another (``rank_for_energy`` on ``energy_captured``, ``dropout_backward`` on ``dropout_forward``,
``fit_penalised`` on ``penalty_and_grad``, ``low_rank_approx`` on Exercise 1's ``reduced_svd``), a
wrong helper is charged to the helper only.
"""

from __future__ import annotations

import contextlib
import io

import nbformat
import pytest

from checker import CheckFailure
from checker.exercise import PartialCredit, PartialScore, scoring_by_value
from coursetools.grading.verdict import _run_cell
from coursetools.paths import solution_notebook
from fixtures.mistakes import Mistake
from fixtures.notebooks import grade_cells, lab_namespace, nbgrader_meta, solution_sources


def _wrong(cell: str, check: str, find: str, replace: str) -> Mistake:
    return Mistake("", cell, check, find, replace)


#: (lab, grade cell) -> {function: a mistake in that function only}, in the check's order.
PARTS_BY_EXERCISE: dict[tuple[str, str], dict[str, Mistake]] = {
    ("01_backprop", "check_ex3_linear_layer"): {
        "linear_forward": _wrong("ex3_linear_layer", "check_ex3_linear_layer",
                                 "    return X @ W + b", "    return X @ W"),
        "linear_backward": _wrong("ex3_linear_layer", "check_ex3_linear_layer",
                                  "    dL_db = dL_dY.sum(axis=0)", "    dL_db = dL_dY.mean(axis=0)"),
    },
    ("02_optimizers", "check_ex7_schedules"): {
        "step_decay_lr": _wrong("ex7_schedules", "check_ex7_schedules", "return base_lr * gamma ** (step // step_size)",
                                "return base_lr * gamma ** (step / step_size)"),
        "linear_warmup_lr": _wrong("ex7_schedules", "check_ex7_schedules", "min(step, warmup_steps)",
                                   "min(step + 1, warmup_steps)"),
        "cosine_lr": _wrong("ex7_schedules", "check_ex7_schedules", "np.cos(np.pi * step / total_steps)",
                            "np.cos(np.pi * (step + 1) / total_steps)"),
    },
    ("02_optimizers", "check_ex10_clip_value"): {
        "clip_grad_value": _wrong("ex10_clip_value", "check_ex10_clip_value", "np.clip(g, -clip_value, clip_value)",
                                  "np.minimum(g, clip_value)"),
        "direction_change": _wrong("ex10_clip_value", "check_ex10_clip_value",
                                   "return float(np.degrees(np.arccos(", "return float((np.arccos("),
    },
    ("02_optimizers", "check_ex11_finetune_schedules"): {
        "warmup_linear_decay_lr": _wrong("ex11_finetune_schedules", "check_ex11_finetune_schedules",
                                         "(total_steps - step) / (total_steps - warmup_steps)",
                                         "(total_steps - step) / total_steps"),
        "multistep_lr": _wrong("ex11_finetune_schedules", "check_ex11_finetune_schedules",
                               "if m <= step)", "if m < step)"),
        "scaled_lr": _wrong("ex11_finetune_schedules", "check_ex11_finetune_schedules",
                            "return base_lr * batch_size / base_batch_size",
                            "return base_lr * (batch_size / base_batch_size) ** 0.5"),
    },
    ("04_svd_lora", "check_ex1_svd"): {
        "reduced_svd": _wrong("ex1_svd", "check_ex1_svd", "np.linalg.svd(M, full_matrices=False)",
                              "np.linalg.svd(M, full_matrices=True)"),
        "reconstruct": _wrong("ex1_svd", "check_ex1_svd", "    return (U * S) @ Vt", "    return U @ Vt"),
    },
    ("04_svd_lora", "check_ex2_low_rank"): {
        "low_rank_approx": _wrong("ex2_low_rank", "check_ex2_low_rank",
                                  "    return (U[:, :k] * S[:k]) @ Vt[:k, :]",
                                  "    return (U[:, :k + 1] * S[:k + 1]) @ Vt[:k + 1, :]"),
        "rank_k_errors": _wrong("ex2_low_rank", "check_ex2_low_rank",
                                "frobenius = float(np.sqrt(np.sum(S[k:] ** 2)))",
                                "frobenius = float(np.sum(S[k:] ** 2))"),
    },
    ("04_svd_lora", "check_ex3_energy"): {
        "energy_captured": _wrong("ex3_energy", "check_ex3_energy", "    squared = S ** 2", "    squared = S"),
        "rank_for_energy": _wrong("ex3_energy", "check_ex3_energy", "np.argmax(energy >= target)",
                                  "np.argmax(energy > target)"),
    },
    ("04_svd_lora", "check_ex5_lora_layer"): {
        "lora_forward": _wrong("ex5_lora_layer", "check_ex5_lora_layer",
                               "    return x @ W.T + scale * (x @ A.T) @ B.T", "    return x @ W.T + (x @ A.T) @ B.T"),
        "lora_backward": _wrong("ex5_lora_layer", "check_ex5_lora_layer",
                                "    dL_dx = dL_dy @ W + dL_dh @ A", "    dL_dx = dL_dy @ W"),
    },
    ("06_training_dynamics", "check_ex1_init"): {
        "xavier_normal": _wrong("ex1_init", "check_ex1_init", "np.sqrt(2.0 / (n_in + n_out))",
                                "np.sqrt(1.0 / (n_in + n_out))"),
        "he_normal": _wrong("ex1_init", "check_ex1_init", "np.sqrt(2.0 / n_in)", "np.sqrt(2.0 / n_out)"),
    },
    ("06_training_dynamics", "check_ex4_nan_locator"): {
        # NaN only: an inf (the overflowing exp) is not found.
        "nonfinite_modules": _wrong("ex4_nan_locator", "check_ex4_nan_locator",
                                    "not torch.isfinite(output).all()", "torch.isnan(output).any()"),
        "first_nonfinite_module": _wrong("ex4_nan_locator", "check_ex4_nan_locator",
                                         "return hits[0] if hits else None", "return hits[-1] if hits else None"),
    },
    ("07_normalization_regularization", "check_ex1_batchnorm"): {
        "batchnorm_forward": _wrong("ex1_batchnorm", "check_ex1_batchnorm", "    var = x.var(axis=0)  #",
                                    "    var = x.var(axis=0, ddof=1)  #"),
        "batchnorm_backward": _wrong("ex1_batchnorm", "check_ex1_batchnorm", "    dbeta = dy.sum(axis=0)",
                                     "    dbeta = dy.mean(axis=0)"),
    },
    ("07_normalization_regularization", "check_ex2_running"): {
        "batchnorm_update_running": _wrong("ex2_running", "check_ex2_running", "x.var(axis=0, ddof=1)",
                                           "x.var(axis=0)"),
        "batchnorm_eval": _wrong("ex2_running", "check_ex2_running",
                                 "    return gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
                                 "    return gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta"),
    },
    ("07_normalization_regularization", "check_ex3_layer_rms"): {
        "layernorm_forward": _wrong("ex3_layer_rms", "check_ex3_layer_rms",
                                    "    return gamma * (x - mu) / np.sqrt(var + eps) + beta",
                                    "    return gamma * (x - mu) / (np.sqrt(var) + eps) + beta"),
        "layernorm_backward": _wrong("ex3_layer_rms", "check_ex3_layer_rms",
                                     "    return dx, (dy * x_hat).sum(axis=0), dy.sum(axis=0)",
                                     "    return dx, (dy * x_hat).sum(axis=0), dy.mean(axis=0)"),
        "rmsnorm_forward": _wrong("ex3_layer_rms", "check_ex3_layer_rms",
                                  "    return gamma * x / np.sqrt(mean_square + eps)",
                                  "    return gamma * x / (np.sqrt(mean_square) + eps)"),
        "rmsnorm_backward": _wrong("ex3_layer_rms", "check_ex3_layer_rms",
                                   "    dx = (g - x_hat * (g * x_hat).mean(axis=1, keepdims=True)) / rms",
                                   "    dx = g / rms"),
    },
    ("07_normalization_regularization", "check_ex4_dropout"): {
        "dropout_forward": _wrong("ex4_dropout", "check_ex4_dropout", "    return x * mask / (1.0 - p)",
                                  "    return x * mask"),
        "dropout_backward": _wrong("ex4_dropout", "check_ex4_dropout", "    return dy * mask / (1.0 - p)",
                                   "    return dy * mask / p"),
    },
    ("07_normalization_regularization", "check_ex8_penalties"): {
        "penalty_and_grad": _wrong("ex8_penalties", "check_ex8_penalties", "lam * np.sign(w)",
                                   "lam * np.where(w >= 0, 1.0, -1.0)"),
        "fit_penalised": _wrong("ex8_penalties", "check_ex8_penalties", "w = w - lr * (grad + lam * w)",
                                "w = w - lr * (grad + 2 * lam * w)"),
    },
    ("07_normalization_regularization", "check_ex9_mixup"): {
        "mixup": _wrong("ex9_mixup", "check_ex9_mixup", "    Y_mixed = mix * Y + (1.0 - mix) * Y[perm]",
                        "    Y_mixed = Y"),
        "mixup_cross_entropy": _wrong("ex9_mixup", "check_ex9_mixup",
                                      "    return loss, (softmax(logits, axis=1) - Y_mixed) / n",
                                      "    return loss, softmax(logits, axis=1) - Y_mixed"),
    },
}

ONE_WRONG = [(lab, gid, name) for (lab, gid), parts in PARTS_BY_EXERCISE.items() for name in parts]


def _points(lab: str, gid: str) -> float:
    nb = nbformat.read(solution_notebook(lab), as_version=4)
    return float(next(nbgrader_meta(c)["points"] for c in nb.cells if nbgrader_meta(c).get("grade_id") == gid))


def _scored(lab: str, gid: str, mistakes) -> tuple[object, str]:
    """The grade cell's value as the grader scores it, and what it printed."""
    ns = lab_namespace(lab, solution_sources(lab, mistakes))
    out = io.StringIO()
    with scoring_by_value(), contextlib.redirect_stdout(out):
        value = _run_cell(grade_cells(lab)[gid], "<grade>", ns, ns)
    return value, out.getvalue()


@pytest.mark.parametrize("lab, gid, wrong", ONE_WRONG, ids=[f"{g}-{n}" for _, g, n in ONE_WRONG])
def test_one_function_wrong_earns_the_others_points(lab, gid, wrong):
    parts = PARTS_BY_EXERCISE[(lab, gid)]
    points = _points(lab, gid)
    value, _ = _scored(lab, gid, [parts[wrong]])
    assert isinstance(value, PartialScore), value
    assert float(value) == pytest.approx(points * (len(parts) - 1) / len(parts))
    assert list(value.parts) == list(parts), "one entry per function, in the exercise's order"
    assert [n for n, o in value.parts.items() if o != "ok"] == [wrong], value.parts
    # Plain exec (a notebook's Validate outside a kernel): still a failure, carrying the same points.
    ns = lab_namespace(lab, solution_sources(lab, [parts[wrong]]))
    with pytest.raises(PartialCredit) as failure, contextlib.redirect_stdout(io.StringIO()):
        exec(compile(grade_cells(lab)[gid], gid, "exec"), ns)
    assert failure.value.points == pytest.approx(float(value))
    assert f"{len(parts) - 1} of {len(parts)} functions right" in str(failure.value)


@pytest.mark.parametrize("lab, gid", list(PARTS_BY_EXERCISE), ids=[g for _, g in PARTS_BY_EXERCISE])
def test_every_function_wrong_earns_nothing(lab, gid):
    with pytest.raises(CheckFailure) as failure:
        _scored(lab, gid, list(PARTS_BY_EXERCISE[(lab, gid)].values()))
    assert not isinstance(failure.value, PartialCredit), "no function right: no points"


@pytest.mark.parametrize("lab, gid", list(PARTS_BY_EXERCISE), ids=[g for _, g in PARTS_BY_EXERCISE])
def test_every_function_right_earns_full_points(lab, gid):
    value, out = _scored(lab, gid, [])
    assert value is None and "✓" in out, out   # None: nbgrader gives the cell its full points


#: A function built on a wrong helper it may call: (lab, grade cell, the helper's mistake, the caller
#: rewritten to call the helper, the helper named in the message).
BUILT_ON_A_HELPER = [
    ("04_svd_lora", "check_ex3_energy", PARTS_BY_EXERCISE[("04_svd_lora", "check_ex3_energy")]["energy_captured"],
     None, "energy_captured"),
    ("07_normalization_regularization", "check_ex4_dropout",
     PARTS_BY_EXERCISE[("07_normalization_regularization", "check_ex4_dropout")]["dropout_forward"],
     _wrong("ex4_dropout", "check_ex4_dropout", "    return dy * mask / (1.0 - p)",
            "    return dropout_forward(dy, mask, p)"), "dropout_forward"),
    # first_nonfinite_module calls nonfinite_modules on a model: under make grade both live in the sandbox.
    ("06_training_dynamics", "check_ex4_nan_locator",
     PARTS_BY_EXERCISE[("06_training_dynamics", "check_ex4_nan_locator")]["nonfinite_modules"], None,
     "nonfinite_modules"),
    ("07_normalization_regularization", "check_ex8_penalties",
     _wrong("ex8_penalties", "check_ex8_penalties", "return float(0.5 * lam * (w ** 2).sum()), lam * w",
            "return float(0.5 * lam * (w ** 2).sum()), 2 * lam * w"),
     _wrong("ex8_penalties", "check_ex8_penalties", "w = w - lr * (grad + lam * w)",
            "w = w - lr * (grad + penalty_and_grad(w, lam, kind)[1])"), "penalty_and_grad"),
]


@pytest.mark.parametrize("lab, gid, helper_mistake, caller, helper", BUILT_ON_A_HELPER,
                         ids=[h for *_, h in BUILT_ON_A_HELPER])
def test_a_wrong_helper_is_charged_to_the_helper_only(lab, gid, helper_mistake, caller, helper):
    """The caller is right given a right helper: it keeps its share, and the message says why."""
    points = _points(lab, gid)
    value, out = _scored(lab, gid, [helper_mistake] + ([caller] if caller else []))
    assert float(value) == pytest.approx(points / 2), (value, out)
    assert value.parts[helper] != "ok" and sum(o == "ok" for o in value.parts.values()) == 1, value.parts
    assert f"correct given a correct `{helper}`" in out, out


def test_low_rank_approx_built_on_a_wrong_reduced_svd_keeps_its_points():
    """Exercise 2's low_rank_approx calls Exercise 1's reduced_svd (squared singular values): the
    mistake costs Exercise 1 only; Exercise 2 keeps full points and names reduced_svd."""
    lab = "04_svd_lora"
    wrong_svd = _wrong("ex1_svd", "check_ex1_svd", "    U, S, Vt = np.linalg.svd(M, full_matrices=False)\n",
                       "    U, S, Vt = np.linalg.svd(M, full_matrices=False)\n    S = S ** 2\n")
    calls_it = _wrong("ex2_low_rank", "check_ex2_low_rank", "    U, S, Vt = np.linalg.svd(M, full_matrices=False)",
                      "    U, S, Vt = reduced_svd(M)")
    value, out = _scored(lab, "check_ex2_low_rank", [wrong_svd, calls_it])
    assert value is None, (value, out)
    assert "correct given a correct `reduced_svd`; `reduced_svd` fails Exercise 1" in out, out
    value, _ = _scored(lab, "check_ex1_svd", [wrong_svd, calls_it])   # charged there: reduced_svd's share
    assert float(value) == pytest.approx(_points(lab, "check_ex1_svd") / 2) and value.parts["reduced_svd"] != "ok"


def test_nan_locator_parts_under_the_grader(tmp_path, capsys):
    """Lab 06 Exercise 4 in a sandbox: nonfinite_modules runs on models the sandbox builds itself
    (a torch model cannot cross), first_nonfinite_module built on a wrong nonfinite_modules keeps its
    share (the reference runs in the grader on its own copy of the model the student's code passed)."""
    from checker.lab06 import check_nan_locator
    from coursetools.grading.remote import SubmissionNames
    from coursetools.grading.sandbox import Limits, Sandbox

    lab, gid = "06_training_dynamics", "check_ex4_nan_locator"
    parts = PARTS_BY_EXERCISE[(lab, gid)]
    setup = "import torch\nfrom nets import build_faulty_net\n"
    with Sandbox(numpy_only=False, preload=["torch"], handed_out={"nets": ["build_faulty_net"]},
                 limits=Limits(call_seconds=60), workdir=tmp_path) as sandbox:
        def scored(mistakes):
            reply, _ = sandbox.request({"op": "exec", "cell": "student",
                                        "source": setup + solution_sources(lab, mistakes)["ex4_nan_locator"]})
            assert reply["ok"], reply
            reply, _ = sandbox.request({"op": "names"})
            names = SubmissionNames(sandbox, reply["names"], trusted={})
            with scoring_by_value():
                return check_nan_locator(names["nonfinite_modules"], names["first_nonfinite_module"])

        assert scored([]) is None, capsys.readouterr().out
        value = scored([parts["nonfinite_modules"]])
        assert float(value) == pytest.approx(_points(lab, gid) / 2), value
        assert value.parts == {"nonfinite_modules": "wrong", "first_nonfinite_module": "ok"}, value.parts
        assert "correct given a correct `nonfinite_modules`" in capsys.readouterr().out
        value = scored([parts["first_nonfinite_module"]])
        assert value.parts == {"nonfinite_modules": "ok", "first_nonfinite_module": "nan-locator-not-first"}
        with pytest.raises(CheckFailure):
            scored(list(parts.values()))
