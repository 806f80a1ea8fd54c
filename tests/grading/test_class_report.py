"""The report about the class (issue 19 items 4 and 5), built from small synthetic verdict data.

The class run of test_grade_class.py checks the same page on real grading; here each
part of the report builder is checked on rows written by hand: per question the score
distribution and who made which misconception, per student every lab, the aligned
terminal summary, what a regrade changed, and the figures embedded as PNG.
"""

from __future__ import annotations

import base64
import json
import re

from coursetools.grading import report

LAB1, LAB2 = "01_backprop", "02_optimizers"
MAX = {LAB1: 19.0, LAB2: 30.0}


def _row(student, lab, score, status="graded", reason=""):
    return {"student": student, "lab": lab, "score": score, "max_score": MAX[lab] if status == "graded" else "",
            "status": status, "reason": reason}


def _q(student, lab, question, score, max_score, misconception=""):
    return {"student": student, "lab": lab, "question": question, "score": score, "max_score": max_score,
            "misconception": misconception, "parts": ""}


def _class():
    """Four students, two labs: ann full marks, bob and a long-named student share a mistake, dan's lab 02 broke."""
    long_name = "maximiliana-von-langername"
    rows = [_row("ann", LAB1, 19.0), _row("ann", LAB2, 30.0), _row("bob", LAB1, 16.0), _row("bob", LAB2, 27.5),
            _row(long_name, LAB1, 16.0), _row("dan", LAB2, 0, "error", "malformed notebook JSON")]
    questions = [_q("ann", LAB1, "check_ex3", 3.0, 3.0), _q("bob", LAB1, "check_ex3", 0.0, 3.0, "transposed-grad"),
                 _q(long_name, LAB1, "check_ex3", 0.0, 3.0, "transposed-grad"),
                 _q("ann", LAB2, "check_adam", 4.0, 4.0), _q("bob", LAB2, "check_adam", 1.5, 4.0, "adam-no-bias")]
    return rows, questions, long_name


def test_per_question_distribution_and_who_made_each_misconception(tmp_path):
    rows, questions, long_name = _class()
    summary = report.summarise(rows, questions)
    by_q = {(q["lab"], q["question"]): q for q in summary["questions"]}
    ex3 = by_q[(LAB1, "check_ex3")]
    assert ex3["distribution"] == [(0.0, 2), (3.0, 1)]
    assert ex3["misconceptions"] == [("transposed-grad", ["bob", long_name])]
    assert by_q[(LAB2, "check_adam")]["distribution"] == [(1.5, 1), (4.0, 1)]
    report.write_html(tmp_path, rows, summary, questions)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # Each student who made the mistake links to that student's feedback page of that lab.
    row = re.search(r"<tr><td>01_backprop</td><td>check_ex3</td>.*?</tr>", page, re.S).group(0)
    assert "0: 2, 3: 1" in row
    assert f"href='feedback/bob/{LAB1}/{LAB1}.html'" in row
    assert f"href='feedback/{long_name}/{LAB1}/{LAB1}.html'" in row
    assert "feedback/ann/" not in row, "a student without the mistake is listed under it"


def test_per_student_row_holds_every_lab():
    rows, questions, long_name = _class()
    summary = report.summarise(rows, questions)
    students = dict(summary["students"])
    assert summary["labs"] == [LAB1, LAB2]
    assert sorted(students) == sorted(["ann", "bob", "dan", long_name])
    assert set(students["ann"]) == {LAB1, LAB2} and set(students[long_name]) == {LAB1}
    assert students["dan"][LAB2]["status"] == "error"


def _student_lines(text: str) -> list[str]:
    block = text.split("\nPer student\n", 1)[1].split("\n\n", 1)[0]
    return block.split("\n")


def test_terminal_summary_has_one_aligned_line_per_student():
    rows, questions, long_name = _class()
    lines = _student_lines(report.terminal(report.summarise(rows, questions)))
    header, body = lines[0], lines[1:]
    assert header.split() == ["student", "01", "02", "total"]
    assert [line.split()[0] for line in body] == sorted(["ann", "bob", "dan", long_name])
    assert body[1].split()[1:] == ["16/19", "27.5/30", "43.5/49"]
    assert body[2].split()[1:] == ["-", "error", "-"]
    # Right-aligned columns: every line is as long as the header, and each column ends where its heading does.
    assert {len(line) for line in lines} == {len(header)}, lines
    for heading in ("01", "02", "total"):
        end = header.index(heading) + len(heading)
        assert all(line[end - 1] != " " and (end == len(line) or line[end] == " ") for line in body), (heading, lines)


def test_terminal_columns_count_wide_characters_twice():
    rows = [_row("\u5f20\u4f1f", LAB1, 19.0), _row("ann", LAB1, 3.0)]
    lines = _student_lines(report.terminal(report.summarise(rows, [])))
    assert len({report.width(line) for line in lines}) == 1, lines


def test_a_regrade_shows_who_gained_or_lost_points(tmp_path):
    """Run 1 is written to OUT; a check then changed: bob gains 3 on check_ex3, ann loses 1.5 on Adam,
    dan's broken notebook now grades, and the long-named student's notebook is withdrawn."""
    rows, questions, long_name = _class()
    report.write_csvs(tmp_path, rows, questions)
    report.write_results(tmp_path, rows, questions)
    previous = report.read_previous(tmp_path)
    assert previous == json.loads(json.dumps({"rows": rows, "question_rows": questions}))

    new_rows = [_row("ann", LAB1, 19.0), _row("ann", LAB2, 28.5), _row("bob", LAB1, 19.0), _row("bob", LAB2, 27.5),
                _row("dan", LAB2, 12.0)]
    new_questions = [_q("ann", LAB1, "check_ex3", 3.0, 3.0), _q("bob", LAB1, "check_ex3", 3.0, 3.0),
                     _q("ann", LAB2, "check_adam", 2.5, 4.0, "adam-no-bias"),
                     _q("bob", LAB2, "check_adam", 1.5, 4.0, "adam-no-bias"), _q("dan", LAB2, "check_adam", 4.0, 4.0)]
    summary = report.summarise(new_rows, new_questions, previous)
    changes = {(c["student"], c["lab"]): c for c in summary["changes"]}
    assert set(changes) == {("ann", LAB2), ("bob", LAB1), ("dan", LAB2), (long_name, LAB1)}
    assert (changes[("bob", LAB1)]["delta"], changes[("bob", LAB1)]["questions"]) == (3.0, [("check_ex3", 0.0, 3.0)])
    assert (changes[("ann", LAB2)]["delta"], changes[("ann", LAB2)]["questions"]) == (-1.5, [("check_adam", 4.0, 2.5)])
    assert (changes[("dan", LAB2)]["before"], changes[("dan", LAB2)]["after"]) == (None, 12.0)
    assert (changes[(long_name, LAB1)]["before"], changes[(long_name, LAB1)]["after"]) == (16.0, None)

    text = report.terminal(summary)
    assert "Since the previous run in this OUT: 4 grade(s) changed" in text
    assert f"bob {LAB1}: 16 -> 19 (+3); check_ex3 0 -> 3" in text
    assert f"ann {LAB2}: 30 -> 28.5 (-1.5); check_adam 4 -> 2.5" in text
    assert f"{long_name} {LAB1}: 16 -> not graded" in text

    report.keep_previous(tmp_path)
    report.write_csvs(tmp_path, new_rows, new_questions)
    report.write_results(tmp_path, new_rows, new_questions)
    report.write_html(tmp_path, new_rows, summary, new_questions)
    kept = tmp_path / "previous"
    assert sorted(p.name for p in kept.iterdir()) == ["grades.csv", "grades_by_question.csv", "results.json"]
    assert "maximiliana" in (kept / "grades.csv").read_text(encoding="utf-8")
    assert "maximiliana" not in (tmp_path / "grades.csv").read_text(encoding="utf-8")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Changes since the previous run</h2>" in page and "class='num gain'>+3<" in page
    assert "class='num loss'>-1.5<" in page


def test_a_regrade_of_some_labs_compares_only_those_labs():
    rows, questions, _ = _class()
    previous = {"rows": rows, "question_rows": questions}
    only_lab1 = [r for r in rows if r["lab"] == LAB1]
    summary = report.summarise(only_lab1, [q for q in questions if q["lab"] == LAB1], previous)
    assert summary["compared"] and summary["changes"] == []
    assert "0 grade(s) changed" in report.terminal(summary)
    first_run = report.summarise(rows, questions)
    assert not first_run["compared"] and "previous run" not in report.terminal(first_run)


def test_missing_or_broken_results_are_no_previous_run(tmp_path):
    assert report.read_previous(tmp_path) is None
    (tmp_path / "results.json").write_text("{not json", encoding="utf-8")
    assert report.read_previous(tmp_path) is None


def test_odd_names_survive_the_round_trip_to_the_next_run(tmp_path):
    """results.json keeps names exactly (the CSVs neutralise them): an undecodable or formula-like name
    is the same student in the next run, so it is not reported as withdrawn and new."""
    names = ["ann\udcff", "=1+1", "bob\x1b[2J"]
    rows = [_row(n, LAB1, 10.0) for n in names]
    report.write_results(tmp_path, rows, [])
    summary = report.summarise(rows, [], report.read_previous(tmp_path))
    assert summary["compared"] and summary["changes"] == []


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_report_embeds_a_histogram_and_a_heat_map_and_fetches_nothing(tmp_path):
    rows, questions, _ = _class()
    questions.append(_q("cost$ly", LAB1, "check_$x^2$", 0.0, 1.0, "dollar-$signs$"))  # no mathtext from names
    report.write_html(tmp_path, rows, report.summarise(rows, questions), questions)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    pngs = _pngs(page)
    assert len(pngs) == 2 and all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 2000 for p in pngs)
    assert "alt='score histograms per lab'" in page and "alt='question by misconception heat map'" in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page), "the page fetches something"
    assert "<script" not in page


def test_heat_map_is_left_out_when_nobody_made_a_mistake(tmp_path):
    rows = [_row("ann", LAB1, 19.0)]
    questions = [_q("ann", LAB1, "check_ex3", 3.0, 3.0)]
    report.write_html(tmp_path, rows, report.summarise(rows, questions), questions)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert len(_pngs(page)) == 1 and "heat map" not in page


def test_links_to_feedback_are_percent_encoded():
    href = report.feedback_href("<x' onclick='y>/..", "01_backprop")
    assert href == "feedback/%3Cx%27%20onclick%3D%27y%3E%2F../01_backprop/01_backprop.html"
    assert report.feedback_href("ann\udcff", "01_backprop").startswith("feedback/ann%FF/")


def test_a_crafted_student_name_injects_nothing_into_the_report(tmp_path):
    evil = "<script>alert(1)</script>' onmouseover='x"
    rows = [_row(evil, LAB1, 3.0)]
    questions = [_q(evil, LAB1, "check_ex3", 0.0, 3.0, "<b>bold</b>")]
    report.write_html(tmp_path, rows, report.summarise(rows, questions), questions)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<b>bold" not in page and "' onmouseover='" not in page
