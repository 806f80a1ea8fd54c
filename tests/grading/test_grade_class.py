"""`make grade` on a class with honest, hostile and broken submissions (one run, many assertions)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest

from coursetools.grading import cli
from coursetools.grading.intake import discover
from coursetools.paths import ROOT
from fixtures.hostile import ATTACKS, BORROWS, CALLBACK_LOOP, LAB, TARGET_CELL, TARGET_CHECK, WRONG_LINEAR
from fixtures.notebooks import nbgrader_meta, submission

pytestmark = pytest.mark.xdist_group("grade-class")


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _edited_grade_cells(nb):
    """Tamper with grade cells: blank one and give it 100 points, delete, duplicate, split, relabel."""
    cells = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        gid = meta.get("grade_id")
        if gid == "check_ex3_linear_layer":
            cell.source = "pass"
            meta["points"] = 100
        elif gid == "check_ex4_mse":
            continue  # deleted
        elif gid == "check_ex5_softmax_ce":
            cells.append(nbformat.from_dict(json.loads(json.dumps(cell))))  # duplicated
        elif gid == "check_ex6_mlp":
            first, second = nbformat.from_dict(json.loads(json.dumps(cell))), cell
            first.source, second.source = "print('half')", "print('other half')"
            cells.append(first)
        elif gid == "check_ex7_numerical_grad":
            meta.update(grade=False, solution=True, locked=False)
            cell.source = "numerical_grad = lambda f, x, eps=1e-5: 0 * x"
        cells.append(cell)
    nb.cells = cells
    return nb


def _write(path: Path, nb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


# Session scope: a module-scoped fixture is set up again whenever xdist runs another module's
# tests in between (each class run took minutes, and ran twice).
@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    submitted, out = base / "submitted", base / "out"
    _write(submitted / "alice" / LAB / f"{LAB}.ipynb", submission(LAB))
    _write(submitted / "bob" / LAB / f"{LAB}.ipynb", submission(LAB, solved=False))
    # The attacks, their baseline and the borrows leave out the lab's demonstration cells (a training
    # run and plots, about 0.9 s a notebook): each one is in an exercise cell, and alice's whole
    # notebook covers the demonstrations.
    baseline = submission(LAB, demos=False)  # the attacks' wrong code, without any attack
    for cell in baseline.cells:
        if nbgrader_meta(cell).get("grade_id") == TARGET_CELL:
            cell.source = WRONG_LINEAR
    _write(submitted / "baseline" / LAB / f"{LAB}.ipynb", baseline)
    for attack in ATTACKS:
        nb = submission(LAB, demos=False)
        code = attack.code.format(root=ROOT, submitted=submitted, out=out)
        for cell in nb.cells:
            if nbgrader_meta(cell).get("grade_id") == TARGET_CELL:
                cell.source = WRONG_LINEAR + code
        if attack.name == "edit-grade-cells":
            nb = _edited_grade_cells(nb)
        _write(submitted / attack.name / LAB / f"{LAB}.ipynb", nb)
    for borrow in BORROWS + [CALLBACK_LOOP]:
        nb = submission(LAB, demos=False)
        for cell in nb.cells:
            if nbgrader_meta(cell).get("grade_id") == borrow.cell:
                cell.source = borrow.code.format(root=ROOT)
        _write(submitted / borrow.name / LAB / f"{LAB}.ipynb", nb)
    # Broken input, one student each.
    (submitted / "erin" / LAB).mkdir(parents=True)
    (submitted / "erin" / LAB / f"{LAB}.ipynb").write_text('{"cells": [', encoding="utf-8")
    nb3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}
    (submitted / "olga" / LAB).mkdir(parents=True)
    (submitted / "olga" / LAB / f"{LAB}.ipynb").write_text(json.dumps(nb3), encoding="utf-8")
    _write(submitted / "dave" / LAB / "lab1.ipynb", submission(LAB))
    (submitted / "frank").mkdir()
    (submitted / "jack" / LAB).mkdir(parents=True)
    (submitted / "jack" / LAB / f"{LAB}.ipynb").write_bytes(b'{"cells": "\xff\xfe caf\xe9"}')
    _write(submitted / "kim" / "lab_one" / "lab_one.ipynb", submission(LAB))

    before_submitted = _tree_digest(submitted)
    code = cli.main([str(submitted), str(out), "--workers", "2", "--timeout", "8", "--labs", LAB])
    rows = {(r["student"]): r for r in _csv(out / "grades.csv")}
    questions = {}
    for r in _csv(out / "grades_by_question.csv"):
        questions.setdefault(r["student"], {})[r["question"]] = r
    return dict(code=code, out=out, submitted=submitted, rows=rows, questions=questions,
                before_submitted=before_submitted, after_submitted=_tree_digest(submitted),
                )


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_command_exits_zero_and_writes_every_output(graded):
    out = graded["out"]
    assert graded["code"] == 0
    for name in ("grades.csv", "grades_by_question.csv", "report.html", "gradebook.db"):
        assert (out / name).is_file(), name
    assert (out / "feedback" / "alice" / LAB / f"{LAB}.html").is_file()


def test_honest_submissions_are_graded_normally(graded):
    rows = graded["rows"]
    assert (rows["alice"]["score"], rows["alice"]["max_score"], rows["alice"]["status"]) == ("19.0", "19.0", "graded")
    assert (rows["bob"]["score"], rows["bob"]["status"]) == ("0.0", "graded")


def test_the_baseline_loses_exactly_the_exercises_using_the_wrong_code(graded):
    questions = graded["questions"]["baseline"]
    scores = {q: float(r["score"]) for q, r in questions.items()}
    # Exercise 3 earns per function: the wrong code's linear_forward is right (1.5 of 3), its
    # linear_backward is not. The MLP reuses linear_backward: its check is rerun with the reference
    # in its place, and the mistake is charged once, in the exercise where it was made.
    assert scores[TARGET_CHECK] == 1.5 and scores["check_ex6_mlp"] == 4
    assert questions[TARGET_CHECK]["parts"].startswith("linear_forward ok; linear_backward "), questions[TARGET_CHECK]
    assert sum(scores.values()) == 19 - 1.5
    page = (graded["out"] / "feedback" / "baseline" / LAB / f"{LAB}.html").read_text(encoding="utf-8")
    assert "correct given a correct" in page and "linear_backward" in page


# Attacks whose linear_backward ends or hangs the sandbox process when it is called.
STOPS_ITS_PROCESS = {"exit-and-crash", "endless-loop"}


@pytest.mark.parametrize("attack", [a.name for a in ATTACKS])
def test_attack_earns_nothing_for_its_exercise_and_spares_the_rest(graded, attack):
    """The attacked function earns nothing (its exercise at most what the same wrong code earns unattacked:
    linear_forward's part); every other exercise scores what the same code scores unattacked."""
    row = graded["rows"][attack]
    assert row["status"] == "graded", row
    assert row["max_score"] == "19.0", "the maximum comes from the instructor's notebook, not the submission"
    baseline = graded["questions"]["baseline"]
    for question, r in graded["questions"][attack].items():
        if question == TARGET_CHECK:
            assert float(r["score"]) <= float(baseline[question]["score"]), f"{attack} earned points by attacking"
            assert "linear_backward ok" not in r["parts"], f"{attack}: the attacked function was credited {r}"
        elif question == "check_ex6_mlp" and attack in STOPS_ITS_PROCESS:
            # The MLP calls the attacked linear_backward, which kills or hangs the sandbox: there is no
            # process left to recheck it with the reference in, so it is charged too (never credited).
            assert float(r["score"]) == 0 and r["misconception"] in ("crashed", "timeout"), r
        else:
            assert float(r["score"]) == float(baseline[question]["score"]), f"{attack}: {question} {r}"


@pytest.mark.parametrize("borrow", BORROWS + [CALLBACK_LOOP], ids=[b.name for b in BORROWS + [CALLBACK_LOOP]])
def test_exercise_attacks_earn_nothing_for_their_exercise(graded, borrow):
    """math_utils holds lab 01's answers: borrowing them, by any route, scores zero for that exercise only;
    so does an endless loop of calls back to the grader."""
    questions = graded["questions"][borrow.name]
    assert float(questions[borrow.check]["score"]) == 0, f"{borrow.name} earned points with the course's own code"
    if borrow.misconception:
        assert questions[borrow.check]["misconception"] == borrow.misconception, questions[borrow.check]
    # The MLP calls the activation derivatives and the loss: a borrowed (refused) one is charged once,
    # in its own exercise; the MLP is rechecked with the reference in its place and keeps its points.
    affected = (borrow.check,)
    others = {q: float(r["score"]) for q, r in questions.items() if q not in affected}
    full = {q: float(r["score"]) for q, r in graded["questions"]["alice"].items() if q not in affected}
    assert others == full, f"{borrow.name}: the other exercises were not graded normally"
    if borrow.misconception == "course-function-not-handed-out":
        page = (graded["out"] / "feedback" / borrow.name / LAB / f"{LAB}.html").read_text(encoding="utf-8")
        assert "hands out only make_rng, relative_error from math_utils" in page


def test_every_reason_in_the_feedback_has_a_troubleshooting_section(graded):
    """Misconceptions and the grader's own reasons (timeout, crashed...) all link to a section."""
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', (ROOT / "TROUBLESHOOTING.md").read_text(encoding="utf-8")))
    reasons = {r["misconception"] for qs in graded["questions"].values() for r in qs.values() if r["misconception"]}
    assert {"timeout", "crashed", "not-defined", "course-function-not-handed-out"} <= reasons, reasons
    assert reasons <= anchors, f"no TROUBLESHOOTING.md section for {sorted(reasons - anchors)}"


def test_torch_in_a_numpy_exercise_is_named(graded):
    assert graded["questions"]["torch-in-numpy-exercise"][TARGET_CHECK]["misconception"] == "torch-in-numpy-exercise"


def test_endless_loop_and_crash_are_reported_as_such(graded):
    assert graded["questions"]["endless-loop"][TARGET_CHECK]["misconception"] == "timeout"
    assert graded["questions"]["exit-and-crash"][TARGET_CHECK]["misconception"] == "crashed"


def test_no_file_was_read_or_written_outside_the_sandbox(graded):
    assert graded["after_submitted"] == graded["before_submitted"], "SUBMITTED was modified"
    for target in (ROOT / "scripts" / "checker" / "lab01.py", ROOT / "scripts" / "math_utils.py"):
        assert "# tampered" not in target.read_text(encoding="utf-8"), f"{target} was written to"
    feedback = (graded["out"] / "feedback" / "write-course-files" / LAB / f"{LAB}.html").read_text(encoding="utf-8")
    assert f"WROTE {ROOT}" not in feedback and f"WROTE {graded['submitted']}" not in feedback
    assert "# tampered" not in (graded["out"] / "grades.csv").read_text(encoding="utf-8")
    assert not (graded["out"] / "tampered-by-config").exists(), "code planted in OUT's nbgrader config ran"
    escape = (graded["out"] / "feedback" / "escape-to-root" / LAB / f"{LAB}.html").read_text(encoding="utf-8")
    assert "ESCAPED" not in escape


def test_feedback_shows_failure_messages_but_never_hidden_test_code(graded):
    out = graded["out"]
    for student in ("bob", "read-hidden-files", "edit-grade-cells"):
        page = (out / "feedback" / student / LAB / f"{LAB}.html").read_text(encoding="utf-8")
        assert "BEGIN HIDDEN TESTS" not in page and "seed=9301" not in page
    page = (out / "feedback" / "lying-objects" / LAB / f"{LAB}.html").read_text(encoding="utf-8")
    assert "does not match" in page


def test_output_is_capped(graded):
    page = graded["out"] / "feedback" / "huge-output" / LAB / f"{LAB}.html"
    assert page.stat().st_size < 5 * 2**20


@pytest.mark.parametrize("student,reason", [
    ("erin", "malformed notebook JSON"), ("olga", "nbformat 3"), ("dave", "wrong file name"),
    ("frank", "empty folder"), ("jack", "not UTF-8"), ("kim", "unknown folder 'lab_one'"),
])
def test_broken_input_is_reported_with_a_reason(graded, student, reason):
    row = graded["rows"][student]
    assert row["status"] == "error" and reason in row["reason"], row


def test_misuse_exits_two(tmp_path):
    assert cli.main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    (tmp_path / "sub").mkdir()
    assert cli.main([str(tmp_path / "sub"), str(tmp_path / "sub" / "out")]) == 2
    assert cli.main([str(tmp_path / "sub"), str(tmp_path / "out"), "--labs", "99_nothing"]) == 2


def test_missing_lab_and_loose_layout_are_understood(tmp_path):
    (tmp_path / "amy" / "01_backprop").mkdir(parents=True)
    (tmp_path / "amy" / "01_backprop" / "01_backprop.ipynb").write_text("{}")
    (tmp_path / "ben" / "02_x").mkdir(parents=True)
    (tmp_path / "ben" / "02_x" / "02_x.ipynb").write_text("{}")
    found = {(s.student, s.lab): s.problem for s in discover(tmp_path, ["01_backprop", "02_x"])}
    assert "missing lab" in found[("amy", "02_x")] and "missing lab" in found[("ben", "01_backprop")]
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("jdoe_12345_01_backprop.ipynb", "asmith_01_backprop-1.ipynb", "notes.txt", "random.ipynb"):
        (loose / name).write_text("{}")
    found = {(s.student, s.lab): s for s in discover(loose, ["01_backprop"], loose=True)}
    assert found[("jdoe", "01_backprop")].path.name == "jdoe_12345_01_backprop.ipynb"
    assert found[("asmith", "01_backprop")].path is not None
    assert "not a notebook" in found[("notes", "-")].problem
    assert "cannot tell" in found[("random", "-")].problem


def test_report_shows_every_student_and_links_each_mistake_to_existing_feedback(graded):
    """report.html of the class run: a row per student, both figures, and every feedback link it holds
    (students listed under a misconception, scores in the per-student table) opens a page that exists."""
    from urllib.parse import unquote

    out = graded["out"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("src='data:image/png;base64,") == 2, "histogram and heat map are embedded"
    table = page.split("<h2>Per student</h2>", 1)[1].split("</table>", 1)[0]
    for student in ("alice", "bob", "baseline", "erin"):
        assert f"<tr><td>{student}</td>" in table, student
    links = re.findall(r"href='(feedback/[^']+)'", page)
    assert f"feedback/baseline/{LAB}/{LAB}.html" in links
    missing = [link for link in links if not (out / unquote(link)).is_file()]
    assert not missing, missing[:5]
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {r["student"] for r in saved["rows"]} == set(graded["rows"])


def test_feedback_of_a_solution_shows_its_own_figures_and_printed_lines(graded):
    """alice's whole notebook (the solution, demonstrations included): the feedback shows what her cells
    printed and the figures they drew, as PNGs in the page, and the gradebook's notebook holds them."""
    out = graded["out"]
    page = (out / "feedback" / "alice" / LAB / f"{LAB}.html").read_text(encoding="utf-8")
    assert page.count("src=\"data:image/png;base64,") >= 1, "no figure of alice's in her feedback"
    assert "dL/dw1 = " in page, "a demonstration cell's printed line is missing"
    saved = json.loads((out / ".verdicts" / "alice" / f"{LAB}.json").read_text(encoding="utf-8"))
    drawn = sum(len(d["figures"]) for d in saved["displays"].values())
    assert page.count("src=\"data:image/png;base64,") == drawn
    graded_nb = nbformat.read(out / "autograded" / "alice" / LAB / f"{LAB}.ipynb", as_version=4)
    assert sum(o.output_type == "display_data" for c in graded_nb.cells for o in c.get("outputs", [])) == drawn
