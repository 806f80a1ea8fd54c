"""`make grade --export canvas|moodle|csv`: the exports are parsed back and agree with the grade rows.

Unit tests write synthetic grade rows (no sandbox, no nbgrader) and read the
files back with the csv and zipfile modules, matching names the way Canvas and
Moodle do (their parsers are restated below, with the code each follows). One
end-to-end test grades a tiny class of two loose Canvas-named notebooks.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import pytest

from coursetools.grading import export
from coursetools.grading.export import LmsIdentity
from coursetools.grading.report import FORMULA_STARTS

pytestmark = pytest.mark.xdist_group("export")

LABS = ["01_backprop", "02_optimizers"]
POINTS = {"01_backprop": 19.0, "02_optimizers": 23.0}
ROWS = [
    {"student": "amy", "lab": "01_backprop", "score": 17.5, "max_score": 19, "status": "graded", "reason": ""},
    {"student": "amy", "lab": "02_optimizers", "score": 23, "max_score": 23, "status": "graded", "reason": ""},
    {"student": "ben", "lab": "01_backprop", "score": 0, "max_score": "", "status": "error",
     "reason": "malformed notebook JSON (line 1: Expecting value)"},
    {"student": "ben", "lab": "02_optimizers", "score": 4, "max_score": 23, "status": "graded", "reason": ""},
    {"student": "cy", "lab": "01_backprop", "score": 19, "max_score": 19, "status": "graded", "reason": ""},
    {"student": "cy", "lab": "02_optimizers", "score": 0, "max_score": "", "status": "error",
     "reason": "missing lab: no 02_optimizers/ folder"},
    {"student": "stray", "lab": "-", "score": 0, "max_score": "", "status": "error", "reason": "not a notebook"},
]
IDS = {  # amy and ben were Canvas downloads (ben late); cy came without an LMS name
    ("amy", "01_backprop"): LmsIdentity("canvas", "smithamy", "1001", "5001"),
    ("amy", "02_optimizers"): LmsIdentity("canvas", "smithamy", "1001", "5002"),
    ("ben", "02_optimizers"): LmsIdentity("canvas", "jonesben", "1002", "5003", late=True),
}
MOODLE_IDS = {
    ("amy", "01_backprop"): LmsIdentity("moodle", "Amy Smith", "301"),
    ("amy", "02_optimizers"): LmsIdentity("moodle", "Amy Smith", "411"),  # participant ids are per assignment
    ("ben", "02_optimizers"): LmsIdentity("moodle", "Ben Jones", "412"),
}


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _graded(student, lab):
    return next(r for r in ROWS if (r["student"], r["lab"]) == (student, lab))


def _expected_cell(student, lab) -> str:
    r = _graded(student, lab)
    return export._number(r["score"]) if r["status"] == "graded" else ""


def _feedback_pages(out: Path, rows=ROWS) -> None:
    """nbgrader's feedback pages, as make grade leaves them, for every graded row."""
    for r in rows:
        if r["status"] == "graded":
            page = out / "feedback" / r["student"] / r["lab"] / f"{r['lab']}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(f"<p>feedback for {r['student']} {r['lab']}</p>", encoding="utf-8")


# --- the gradebook files, parsed back ----------------------------------------------------------------

def test_canvas_gradebook_parses_back(tmp_path):
    path = export.write_canvas(tmp_path, ROWS, IDS, POINTS)
    table = _read(path)
    # canvas-lms GradebookImporter: Student, ID, SIS User ID, SIS Login ID, Section, then assignments.
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"] + LABS
    assert table[1][0] == "Points Possible" and table[1][5:] == ["19", "23"]
    body = {row[1] or row[3]: dict(zip(table[0], row)) for row in table[2:]}
    assert set(body) == {"1001", "1002", "cy"}, "every student once, by Canvas id when the download gave one"
    assert body["1001"]["Student"] == "smithamy" and body["1002"]["Student"] == "jonesben"
    assert body["cy"]["ID"] == "" and body["cy"]["SIS Login ID"] == "cy"
    for key, student in (("1001", "amy"), ("1002", "ben"), ("cy", "cy")):
        for lab in LABS:
            assert body[key][lab] == _expected_cell(student, lab), (student, lab)
    assert body["1002"]["01_backprop"] == "" and body["cy"]["02_optimizers"] == "", "ungraded: empty, not 0"
    assert body["1001"]["01_backprop"] == "17.5"


def test_moodle_gradebook_and_worksheets_parse_back(tmp_path):
    written = export.write_moodle(tmp_path, ROWS, MOODLE_IDS, POINTS, now=0)
    table = _read(tmp_path / "moodle_grades.csv")
    assert table[0] == ["Username"] + LABS
    assert [row[0] for row in table[1:]] == ["amy", "ben", "cy"]
    for row in table[1:]:
        assert row[1:] == [_expected_cell(row[0], lab) for lab in LABS]
    # assignfeedback_offline_grade_importer needs Identifier, Grade and Last modified (grade); the
    # Identifier is "Participant " + the id it strips off.
    sheets = {p.name: _read(p) for p in written[1:]}
    assert set(sheets) == {f"moodle_{lab}_grading_worksheet.csv" for lab in LABS}
    sheet = sheets["moodle_02_optimizers_grading_worksheet.csv"]
    header = sheet[0]
    assert {"Identifier", "Grade", "Last modified (grade)"} <= set(header)
    by_id = {row[header.index("Identifier")]: dict(zip(header, row)) for row in sheet[1:]}
    assert set(by_id) == {"Participant 411", "Participant 412"}
    assert by_id["Participant 411"]["Grade"] == "23" and by_id["Participant 412"]["Grade"] == "4"
    assert by_id["Participant 412"]["Maximum grade"] == "23" and by_id["Participant 412"]["Full name"] == "Ben Jones"
    assert by_id["Participant 411"]["Last modified (grade)"] == "1970-01-01 00:00:00 UTC"
    assert [r[0] for r in sheets["moodle_01_backprop_grading_worksheet.csv"][1:]] == ["Participant 301"]


def test_moodle_identifier_column_is_email_when_every_id_is_one(tmp_path):
    rows = [dict(r, student=f"{r['student']}@uni.example") for r in ROWS if r["lab"] != "-"]
    export.write_moodle(tmp_path, rows, {}, POINTS)
    assert _read(tmp_path / "moodle_grades.csv")[0][0] == "Email address"
    assert not list(tmp_path.glob("*worksheet*")), "no Moodle participant ids: no worksheet"


def test_plain_csv_parses_back_with_totals_of_graded_labs(tmp_path):
    table = _read(export.write_plain(tmp_path, ROWS))
    assert table[0] == ["student"] + LABS + ["total"]
    body = {row[0]: dict(zip(table[0], row)) for row in table[1:]}
    assert set(body) == {"amy", "ben", "cy"}, "the stray file (lab '-') is no gradebook row"
    for student in body:
        for lab in LABS:
            assert body[student][lab] == _expected_cell(student, lab)
    assert body["amy"]["total"] == "40.5" and body["ben"]["total"] == "4" and body["cy"]["total"] == "19"


def test_lab_points_come_from_the_released_notebook_else_a_graded_row(tmp_path):
    nb = {"cells": [{"metadata": {"nbgrader": {"grade": True, "points": 3}}},
                    {"metadata": {"nbgrader": {"grade": True, "points": 4.5}}},
                    {"metadata": {"nbgrader": {"solution": True}}}, {"metadata": {}}]}
    (tmp_path / "lab.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    assert export.lab_points(tmp_path / "lab.ipynb") == 7.5
    assert export.lab_points(tmp_path / "absent.ipynb") is None
    table = _read(export.write_canvas(tmp_path, ROWS, {}, points=None))
    assert table[1][5:] == ["19", "23"], "max_score of the graded rows"


def test_ungraded_cells_are_named_in_the_terminal_lines(tmp_path):
    _feedback_pages(tmp_path)
    lines = export.write_exports(tmp_path, ROWS, ["csv", "canvas", "csv"], IDS, POINTS)
    text = "\n".join(lines)
    assert text.count("export csv:") == 1, "an export given twice is written once"
    assert "2 submission(s) not graded are left empty" in text
    assert "ben/01_backprop" in text and "cy/02_optimizers" in text and "stray" not in text
    assert "cy/01_backprop: no canvas id" in text, "a page Canvas could not match is said, not dropped silently"
    with pytest.raises(ValueError, match="unknown export"):
        export.write_exports(tmp_path, ROWS, ["blackboard"])


# --- file names as the LMS parses them -----------------------------------------------------------------

def _canvas_parse(filename: str):
    """canvas-lms Assignment#infer_comment_context_from_filename: the first two all-digit '_' parts."""
    digits = [part for part in Path(filename).name.split("_") if re.fullmatch(r"\d+", part)]
    return tuple(digits[:2])


def _moodle_parse(path: str):
    """assignfeedback_file_zip_importer::is_valid_filename_for_import: participant, plugin, rest."""
    parts = path.split("/")
    while parts:
        info = parts.pop(0).split("_", 4)
        if len(info) >= 4 and info[1].isdigit():
            return info[1], info[2], info[3], "/".join(([info[4]] if len(info) == 5 else [""]) + parts)
    return None


def test_canvas_feedback_zip_names_match_each_submission(tmp_path):
    _feedback_pages(tmp_path)
    zips, notes = export.write_feedback_upload(tmp_path, ROWS, IDS, "canvas")
    assert [z.name for z in zips] == ["01_backprop.zip", "02_optimizers.zip"]
    with zipfile.ZipFile(tmp_path / "feedback_upload" / "canvas" / "02_optimizers.zip") as z:
        names = sorted(z.namelist())
        assert names == ["jonesben_late_1002_5003_02_optimizers_feedback.html",
                         "smithamy_1001_5002_02_optimizers_feedback.html"]
        assert {_canvas_parse(n) for n in names} == {("1001", "5002"), ("1002", "5003")}
        assert "feedback for amy 02_optimizers" in z.read(names[1]).decode()
    unpacked = tmp_path / "feedback_upload" / "canvas" / "02_optimizers"
    assert sorted(p.name for p in unpacked.iterdir()) == names
    assert notes == ["cy/01_backprop: no canvas id in the submitted file's name; its feedback is only in OUT/feedback"]


def test_moodle_feedback_zip_names_match_each_participant(tmp_path):
    _feedback_pages(tmp_path)
    export.write_feedback_upload(tmp_path, ROWS, MOODLE_IDS, "moodle")
    with zipfile.ZipFile(tmp_path / "feedback_upload" / "moodle" / "02_optimizers.zip") as z:
        names = sorted(z.namelist())
    assert names == ["Amy Smith_411_assignsubmission_file/02_optimizers_feedback.html",
                     "Ben Jones_412_assignsubmission_file/02_optimizers_feedback.html"]
    # A folder named <name>_<id>_assignsubmission_file (Moodle 4.1's own download layout) leaves the
    # importer an empty first part, hence the leading "/" (it files the page at the feedback area's root).
    assert [_moodle_parse(n) for n in names] == [
        ("411", "assignsubmission", "file", "/02_optimizers_feedback.html"),
        ("412", "assignsubmission", "file", "/02_optimizers_feedback.html")]


def test_plain_feedback_is_one_file_per_student_and_lab_and_a_rerun_leaves_nothing_stale(tmp_path):
    _feedback_pages(tmp_path)
    export.write_feedback_upload(tmp_path, ROWS, {}, "csv")
    base = tmp_path / "feedback_upload" / "csv"
    assert sorted(str(p.relative_to(base)) for p in base.rglob("*.html")) == [
        "01_backprop/amy_01_backprop_feedback.html", "01_backprop/cy_01_backprop_feedback.html",
        "02_optimizers/amy_02_optimizers_feedback.html", "02_optimizers/ben_02_optimizers_feedback.html"]
    # Rerun after amy's 01_backprop became ungradable: her old page is gone from folder and zip.
    rerun = [dict(r, status="error", reason="regraded: error") if (r["student"], r["lab"]) == ("amy", "01_backprop")
             else r for r in ROWS]
    export.write_feedback_upload(tmp_path, rerun, {}, "csv")
    assert sorted(p.name for p in (base / "01_backprop").iterdir()) == ["cy_01_backprop_feedback.html"]
    with zipfile.ZipFile(base / "01_backprop.zip") as z:
        assert z.namelist() == ["cy_01_backprop_feedback.html"]


@pytest.mark.parametrize("path, expected", [
    ("smithamy_1001_5001_01_backprop.ipynb", LmsIdentity("canvas", "smithamy", "1001", "5001")),
    ("jonesben_late_1002_5003_01_backprop-1.ipynb", LmsIdentity("canvas", "jonesben", "1002", "5003", True)),
    ("Amy Smith_301_assignsubmission_file/01_backprop.ipynb", LmsIdentity("moodle", "Amy Smith", "301")),
    ("Amy Smith_301_assignsubmission_file_01_backprop.ipynb", LmsIdentity("moodle", "Amy Smith", "301")),
    ("jdoe_12345_01_backprop.ipynb", None),  # the README's loose example: a student id, not a Canvas name
    ("amy/01_backprop/01_backprop.ipynb", None),
])
def test_lms_ids_are_read_from_download_names(path, expected):
    assert export.identify(path, "01_backprop") == expected


MOODLE_PATTERN = r"_(?P<student>\d+)_assignsubmission_file_(?P<lab>\d\d_[a-z_]+)"


def test_moodle_download_read_with_the_readme_pattern_keeps_participant_ids(tmp_path):
    """The --pattern the README gives for Moodle's flat download: student = participant id, name kept."""
    from coursetools.grading.intake import discover

    for name in ("Amy Smith_301_assignsubmission_file_01_backprop.ipynb",
                 "Ben Jones_302_assignsubmission_file_01_backprop.ipynb"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    found = discover(tmp_path, ["01_backprop"], loose=True, pattern=MOODLE_PATTERN)
    assert sorted((s.student, s.lab, s.problem) for s in found) == [("301", "01_backprop", ""),
                                                                   ("302", "01_backprop", "")]
    assert export.identities(tmp_path.resolve(), found) == {
        ("301", "01_backprop"): LmsIdentity("moodle", "Amy Smith", "301"),
        ("302", "01_backprop"): LmsIdentity("moodle", "Ben Jones", "302")}


# --- crafted names: no escape from the folder, no formula ----------------------------------------------

CRAFTED = ["../../escaped", "/etc/passwd", "a\x00b", "..", "=cmd|' /C calc'!A0", "+1+cmd", "@SUM(A1)",
           "-2+3", "\tx", "evil\\..\\..\\win", "x\\123", "a/77"]  # the last two: digits after a separator


def test_crafted_names_stay_inside_and_inject_no_formula(tmp_path):
    out = tmp_path / "out"
    rows, ids, moodle_ids = [], {}, {}
    for i, name in enumerate(CRAFTED):
        rows.append({"student": name, "lab": "01_backprop", "score": 1, "max_score": 19, "status": "graded",
                     "reason": ""})
        ids[(name, "01_backprop")] = LmsIdentity("canvas", name, str(100 + i), str(900 + i))
        moodle_ids[(name, "01_backprop")] = LmsIdentity("moodle", name, str(100 + i))
    # The feedback page each crafted student would have, placed where a naive join would look.
    (out / "feedback").mkdir(parents=True)
    for name in CRAFTED:
        page = out / "feedback" / export.safe_name(name) / "01_backprop" / "01_backprop.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<p>page</p>", encoding="utf-8")
    before_outside = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(out))
    for system, lms_ids in (("canvas", ids), ("moodle", moodle_ids), ("csv", {})):
        export.write_exports(out, rows, [system], lms_ids, POINTS)
        base = out / "feedback_upload" / system
        with zipfile.ZipFile(base / "01_backprop.zip") as z:
            names = z.namelist()
        assert len(names) == len(CRAFTED), (system, names)
        for n in names:
            assert "\x00" not in n and not n.startswith("/") and ".." not in Path(n).parts, n
            assert (base / "01_backprop" / n).resolve().is_relative_to((base / "01_backprop").resolve())
        if system == "canvas":
            assert sorted(_canvas_parse(n) for n in names) == sorted((str(100 + i), str(900 + i))
                                                                     for i in range(len(CRAFTED)))
        if system == "moodle":
            assert sorted(_moodle_parse(n)[0] for n in names) == sorted(str(100 + i) for i in range(len(CRAFTED)))
    assert sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(out)) == before_outside
    assert not (tmp_path / "escaped").exists() and not Path("/etc/passwd_01_backprop_feedback.html").exists()
    for sheet in out.glob("*.csv"):
        for row in _read(sheet):
            for cell in row:
                assert not cell.startswith(FORMULA_STARTS) or cell == "-", (sheet.name, cell)
                assert "\x00" not in cell


# --- end to end: make grade --loose --export on two Canvas-named notebooks -----------------------------

def test_make_grade_loose_canvas_export_end_to_end(tmp_path):
    import nbformat

    from coursetools.grading import cli
    from fixtures.hostile import LAB
    from fixtures.notebooks import submission

    submitted, out = tmp_path / "submitted", tmp_path / "out"
    submitted.mkdir()
    # Without the lab's demonstration cells: nothing here reads them (test_grade_class.py grades whole notebooks).
    nbformat.write(submission(LAB, demos=False), submitted / f"smithamy_1001_5001_{LAB}.ipynb")
    nbformat.write(submission(LAB, solved=False, demos=False), submitted / f"jonesben_late_1002_5003_{LAB}-1.ipynb")
    code = cli.main([str(submitted), str(out), "--workers", "1", "--timeout", "8", "--labs", LAB, "--loose",
                     "--export", "canvas", "--export", "csv"])
    assert code == 0
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        grades = {r["student"]: r for r in csv.DictReader(f)}
    assert set(grades) == {"smithamy", "jonesben"} and all(r["status"] == "graded" for r in grades.values())
    table = _read(out / "canvas_grades.csv")
    assert table[1][0] == "Points Possible" and table[1][5] == export._number(grades["smithamy"]["max_score"])
    body = {row[1]: row for row in table[2:]}
    assert set(body) == {"1001", "1002"}, "rows carry the Canvas user ids from the download names"
    assert body["1001"][5] == export._number(grades["smithamy"]["score"])
    assert body["1002"][5] == export._number(grades["jonesben"]["score"])
    assert float(body["1001"][5]) > float(body["1002"][5]), "the solved notebook outscores the stub"
    with zipfile.ZipFile(out / "feedback_upload" / "canvas" / f"{LAB}.zip") as z:
        assert sorted(_canvas_parse(n) for n in z.namelist()) == [("1001", "5001"), ("1002", "5003")]
    wide = {row[0]: row for row in _read(out / "grades_wide.csv")[1:]}
    assert wide["smithamy"][1] == body["1001"][5]
