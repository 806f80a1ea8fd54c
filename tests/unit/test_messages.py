"""How a failed check reads: figures that mean something, the message first, links and progress in a kernel."""

from __future__ import annotations

import re
import traceback

import nbformat
import numpy as np
import pytest

from checker import CheckFailure, compare, notebook
from coursetools.paths import ROOT, lab_notebook


def _failure(received, expected) -> CheckFailure:
    with pytest.raises(CheckFailure) as failure:
        compare("dL/db", np.asarray(received, dtype=np.float64), np.asarray(expected, dtype=np.float64))
    return failure.value


# --------------------------------------------------------------------------- figures

def test_relative_error_is_not_a_number_when_the_reference_is_zero():
    msg = str(_failure([0.48, -0.2], [0.0, 0.0]))
    assert "max abs error: 0.48, max rel error: n/a (reference is 0)" in msg, msg
    assert "max rel error: 0 " not in msg and "max rel error: 0," not in msg


def test_relative_error_says_where_the_largest_error_sits_on_a_zero_reference():
    msg = str(_failure([0.48, 1.0], [0.0, 1.0]))
    assert "max abs error: 0.48, max rel error: 0 over entries whose reference is not 0" in msg, msg
    assert "the largest error, at index (0,), has reference 0" in msg, msg


def test_ordinary_relative_error_is_printed_plainly():
    msg = str(_failure([1.1, 2.2], [1.0, 2.0]))
    assert re.search(r"max abs error: 0\.2, max rel error: 0\.1 \(tolerance atol=", msg), msg


def test_a_float32_sized_difference_says_where_such_differences_come_from_and_names_nothing():
    # Computed in float32 and cast back to float64 (as `gamma * x32` does): the dtype is right, the
    # values are off by float32 rounding, which no detector can tell apart from another tiny slip.
    rng = np.random.default_rng(0)
    expected = rng.normal(size=(4, 3)) / 3.0
    failure = _failure(expected.astype(np.float32).astype(np.float64) * 1.0000001, expected)
    assert failure.misconception is None
    assert "values differ" in str(failure) and "within 1e-05 (relative)" in str(failure), str(failure)
    assert "float32 arithmetic" in str(failure)
    far = _failure(expected * 1.01, expected)
    assert "float32" not in str(far) and "step by step" in str(far), str(far)


def test_a_scalar_with_zero_reference():
    msg = str(_failure(0.5, 0.0))
    assert "max abs error: 0.5, max rel error: n/a (reference is 0)" in msg, msg


def test_non_finite_results_say_so():
    msg = str(_failure([np.nan, 1.0], [1.0, 1.0]))
    assert "max abs error: inf (your result has inf or nan entries)" in msg, msg


# --------------------------------------------------------------------------- the message first

def test_ipython_shows_the_message_and_no_checker_frames():
    failure = _failure([-1.0, -2.0], [1.0, 2.0])
    shown = failure._render_traceback_()
    lines = str(failure).splitlines()
    assert shown[0] == f"\x1b[1;31m\u2717 Check failed: {lines[0]}\x1b[0m"
    assert [line.strip() for line in shown[1:3]] == [line.strip() for line in lines[1:3]]
    assert not any("File " in line or "compare.py" in line for line in shown)


def test_shown_lines_are_wrapped_for_the_validate_dialog_without_losing_words():
    failure = _failure([-1.0, -2.0], [1.0, 2.0])
    shown = [line.replace("\x1b[1;31m", "").replace("\x1b[0m", "") for line in failure._render_traceback_()]
    assert max(map(len, shown)) <= 100
    assert " ".join(" ".join(shown).split()) == " ".join(("\u2717 Check failed: " + str(failure)).split())


def test_a_recognised_mistake_never_shows_the_unrecognised_wording():
    """A plain Python traceback shows the line that raises: it must not be the 'no match' wording."""
    failure = _failure([-1.0, -2.0], [1.0, 2.0])
    assert failure.misconception == "sign-flipped"
    text = "".join(traceback.format_exception(type(failure), failure, failure.__traceback__))
    assert "No known misconception" not in text, text


def test_make_grade_still_reads_the_whole_message():
    failure = _failure([-1.0, -2.0], [1.0, 2.0])
    assert str(failure).startswith("dL/db does not match PyTorch autograd: values differ.")
    assert str(failure).endswith("Read: TROUBLESHOOTING.md#sign-flipped")
    assert isinstance(failure, AssertionError)  # nbgrader counts the cell as failed


# --------------------------------------------------------------------------- links

def test_links_are_relative_to_the_notebook_folder():
    folder = ROOT / "labs" / "01_backprop"
    links = notebook.troubleshooting_links("x\n  Read: TROUBLESHOOTING.md#sign-flipped (see TROUBLESHOOTING.md#sign-flipped)",
                                           folder)
    assert links == [("TROUBLESHOOTING.md#sign-flipped", "../../TROUBLESHOOTING.md#sign-flipped")]
    bundle = notebook.links_bundle(links)
    assert '<a href="../../TROUBLESHOOTING.md#sign-flipped">' in bundle["text/html"]
    assert bundle["text/plain"] == "Read: TROUBLESHOOTING.md#sign-flipped"


def test_no_link_without_a_troubleshooting_file(tmp_path):
    assert notebook.troubleshooting_links("Read: TROUBLESHOOTING.md#sign-flipped", tmp_path) == []


# --------------------------------------------------------------------------- progress

def test_progress_counts_passes_and_names_failures(monkeypatch):
    path = lab_notebook("01_backprop")
    nb = nbformat.read(path, as_version=4)
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
              and not c.metadata["nbgrader"].get("solution")]
    monkeypatch.setattr(notebook, "_by_cell_id", {checks[0].id: notebook.Outcome("pass")})
    monkeypatch.setattr(notebook, "_by_source", {checks[1].source.strip(): notebook.Outcome(
        "fail", "sigmoid_grad does not match PyTorch autograd: values differ.\n  Read: TROUBLESHOOTING.md#x",
        "grad-wrt-activation-output")})
    rows = notebook.check_rows(path)
    text = notebook.progress_text(rows)
    assert text.splitlines()[0].startswith(f"1 of {len(checks)} checks pass (")
    assert "\u2713 Exercise 1 (scalar_chain): passes" in text
    assert ("\u2717 Exercise 2 (activation_grads): sigmoid_grad does not match PyTorch autograd: values differ. "
            "[grad-wrt-activation-output]") in text
    assert "\u00b7 Exercise 3 (linear_layer): not run yet" in text
    page = notebook.progress_html(rows, path.parent)
    assert '<a href="../../TROUBLESHOOTING.md#x">' in page


def test_partial_credit_counts_its_points_but_not_as_a_pass(monkeypatch):
    path = lab_notebook("01_backprop")
    nb = nbformat.read(path, as_version=4)
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
              and not c.metadata["nbgrader"].get("solution")]
    monkeypatch.setattr(notebook, "_by_cell_id", {checks[0].id: notebook.Outcome("pass")})
    monkeypatch.setattr(notebook, "_by_source", {checks[1].source.strip(): notebook.Outcome(
        "partial", "relu_grad does not match PyTorch autograd: values differ.", "relu-derivative-at-zero", 1.5)})
    rows = notebook.check_rows(path)
    text = notebook.progress_text(rows)
    first_points = rows[0].points
    assert text.splitlines()[0].startswith(f"1 of {len(checks)} checks pass ({first_points + 1.5:g} of "), text
    assert f"partial credit (1.5 of {rows[1].points:g} points): relu_grad does not match" in text, text


def test_in_an_ipython_shell_a_failure_is_followed_by_its_link_and_counted(monkeypatch, tmp_path):
    """The kernel path end to end, in an in-process IPython shell."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    (tmp_path / "TROUBLESHOOTING.md").write_text("# T\n")
    lab = tmp_path / "lab"
    lab.mkdir()
    monkeypatch.chdir(lab)
    monkeypatch.setattr(notebook, "_installed", False)
    monkeypatch.setattr(notebook, "_by_cell_id", {})
    monkeypatch.setattr(notebook, "_by_source", {})
    shell = InteractiveShell.instance()
    try:
        assert notebook.install()
        code = ("import numpy as np\nfrom checker import compare\n"
                "compare('dL/db', -np.ones(2), np.ones(2))")
        with capture_output(display=True) as shown:
            result = shell.run_cell(code)
        assert isinstance(result.error_in_exec, CheckFailure)
        out = shown.stdout
        assert out.lstrip().splitlines()[0].endswith("\u2717 Check failed: dL/db does not match PyTorch autograd: "
                                                     "values differ.\x1b[0m"), out
        assert "Traceback" not in out and "compare.py" not in out, out
        [links] = [o.data for o in shown.outputs]
        assert '<a href="../TROUBLESHOOTING.md#sign-flipped">' in links["text/html"]
        assert notebook._by_source[code.strip()].misconception == "sign-flipped"
    finally:
        shell.events.unregister("post_run_cell", notebook._after_cell)
        InteractiveShell.clear_instance()


def test_in_an_ipython_shell_a_returned_partial_score_is_recorded_with_its_link(monkeypatch, tmp_path):
    """A check that returns the points it earned (a float carrying its CheckFailure) is partial, not a pass."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    (tmp_path / "TROUBLESHOOTING.md").write_text("# T\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(notebook, "_installed", False)
    monkeypatch.setattr(notebook, "_by_cell_id", {})
    monkeypatch.setattr(notebook, "_by_source", {})
    shell = InteractiveShell.instance()
    try:
        assert notebook.install()
        shell.run_cell("from checker import CheckFailure\n"
                       "class Points(float):\n    pass\n"
                       "score = Points(1.5)\n"
                       "score.failure = CheckFailure('relu_grad: values differ.\\n  Read: "
                       "TROUBLESHOOTING.md#relu-derivative-at-zero', 'relu-derivative-at-zero')")
        with capture_output(display=True) as shown:
            shell.run_cell("score")
        outcome = notebook._by_source["score"]
        assert (outcome.status, outcome.points, outcome.misconception) == ("partial", 1.5, "relu-derivative-at-zero")
        assert any('href="TROUBLESHOOTING.md#relu-derivative-at-zero"' in o.data.get("text/html", "")
                   for o in shown.outputs), [o.data for o in shown.outputs]
    finally:
        shell.events.unregister("post_run_cell", notebook._after_cell)
        InteractiveShell.clear_instance()
