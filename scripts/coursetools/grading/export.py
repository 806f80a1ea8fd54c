"""``--export canvas|moodle|csv``: the grades as a gradebook file an LMS imports, feedback named for bulk upload.

Input: the rows of ``grades.csv`` (one per student and lab: score, max_score,
status, reason) and, for ``--loose`` runs, the LMS's own ids, read from the
names the LMS gave the downloaded files (:func:`identities`). Output, in
``OUT``:

``canvas``
    ``canvas_grades.csv`` in the layout of Canvas's gradebook export, which its
    gradebook import reads back (Canvas guide "How do I import grades in the
    Gradebook?"; canvas-lms ``GradebookImporter``): header ``Student, ID,
    SIS User ID, SIS Login ID, Section``, then one column per lab, titled with
    the lab id (Canvas matches a column to an assignment by ``Title (id)`` or by
    its exact title, and creates the assignment when none has that title);
    the second row has ``Points Possible`` in the first cell and each lab's
    maximum below its title. ``ID`` is the Canvas user id when the submission
    was a Canvas download (``doejohn_[late_]<user id>_<attachment id>_<file>``);
    otherwise it is empty and the student id goes into ``SIS Login ID``, which
    Canvas also matches on.
    ``feedback_upload/canvas/<lab>.zip`` (and the same files unpacked in
    ``feedback_upload/canvas/<lab>/``) for the assignment's "Upload Submission
    Comments" (re-upload): each feedback page is named like the student's
    downloaded file, ``<name>_[late_]<user id>_<attachment id>_<lab>_feedback.html``;
    Canvas takes the first two all-digit ``_`` parts of a name as user and
    attachment id (``Assignment#infer_comment_context_from_filename``) and
    attaches the file as a comment to that submission.
``moodle``
    ``moodle_grades.csv`` for the gradebook's "Import > CSV file": an identifier
    column (``Email address`` when every student id is an e-mail address,
    else ``Username``; map it to that user field on import), then one column
    per lab. A Moodle download names files by each student's *participant id*,
    which is per assignment and unknown to the gradebook import, so when the
    submissions were Moodle downloads, ``moodle_<lab>_grading_worksheet.csv`` is
    also written per lab: the assignment's offline grading worksheet
    (``Identifier`` = ``Participant <id>``, ``Full name``, ``Grade``,
    ``Maximum grade``, ``Last modified (grade)``; the columns
    ``assignfeedback_offline_grade_importer`` looks up), for "Upload grading
    worksheet".
    ``feedback_upload/moodle/<lab>.zip`` (and unpacked) for "Upload multiple
    feedback files in a zip": one folder per student named as Moodle's download
    names it, ``<Full name>_<participant id>_assignsubmission_file/``, holding
    ``<lab>_feedback.html`` (``assignfeedback_file_zip_importer`` reads the
    participant id from the second ``_`` part of a path component).
``csv``
    ``grades_wide.csv``: ``student``, one column per lab, ``total``, and
    ``feedback_upload/csv/<lab>/<student>_<lab>_feedback.html``.

A submission that could not be graded (status ``error``: missing, refused,
crashed, an infrastructure failure) gets an **empty** cell in every format, not
a zero: an empty cell is "no grade" to both importers (Canvas's importer sets
the grade to blank; Moodle's ``update_grade_item`` turns ``''`` into no grade),
so the grader's own failure is never charged as a zero; ``grades.csv`` keeps the reason, and
:func:`write_exports` returns a note naming every such cell. Rows without a lab
(a stray file, ``lab`` = ``-``) are not gradebook entries and are skipped.
Every text cell goes through :func:`report.csv_cell` (no spreadsheet formula),
every file name through :func:`safe_name` (no ``/``, ``..``, NUL or control
character), and every path written is checked to lie inside its folder. A rerun replaces
``feedback_upload/<system>/`` whole, so no page from an earlier run is uploaded.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .report import csv_cell, printable

SYSTEMS = ("canvas", "moodle", "csv")
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_POINTS_ROW = "Points Possible"
# Canvas's download name: sortable name without punctuation, "late" when late, user id, attachment id, file.
CANVAS_NAME = re.compile(r"^(?P<name>[^_/]*[^_/\d][^_/]*)_(?:(?P<late>late|LATE)_)?"
                         r"(?P<user>[1-9]\d*)_(?P<attachment>[1-9]\d*)_(?P<file>.+)$")
# Moodle's download name (a folder per student since 3.1, or a prefix on each file): full name, participant id.
MOODLE_NAME = re.compile(r"^(?P<name>[^_/]+)_(?P<participant>\d+)_assignsubmission_file(?:_(?P<file>.*))?$")
MOODLE_ID_PREFIX = "Participant "  # Moodle's string 'hiddenuser', stripped from the Identifier on import


@dataclass(frozen=True)
class LmsIdentity:
    """What an LMS download's file name says about one student's submission of one lab."""

    system: str             # "canvas" or "moodle"
    name: str               # Canvas: sortable name as in the file name; Moodle: full name
    user_id: str            # Canvas: user id; Moodle: participant id (per assignment)
    attachment_id: str = ""  # Canvas only: the submitted file's id
    late: bool = False      # Canvas only: the download marked the file late


def identify(relative_name: str, lab: str | None = None) -> LmsIdentity | None:
    """The LMS identity in a downloaded file's path (relative to SUBMITTED), or None when it has none.

    Canvas ids are never zero-padded and, when ``lab`` is given, the file part
    after them must still name the lab: ``jdoe_12345_01_backprop.ipynb`` is a
    student id and a lab, not user 12345's attachment 01.
    """
    for part in Path(relative_name).parts:
        m = MOODLE_NAME.match(part)
        if m:
            return LmsIdentity("moodle", m["name"], m["participant"])
    m = CANVAS_NAME.match(Path(relative_name).name)
    if m and (lab is None or lab in m["file"]):
        return LmsIdentity("canvas", m["name"], m["user"], m["attachment"], bool(m["late"]))
    return None


def identities(submitted: Path, found) -> dict[tuple[str, str], LmsIdentity]:
    """``(student, lab) -> LmsIdentity`` for every discovered submission whose file an LMS named."""
    result = {}
    for s in found:
        if s.path is None:
            continue
        try:
            rel = str(Path(s.path).relative_to(submitted))
        except ValueError:
            rel = Path(s.path).name
        ident = identify(rel, s.lab)
        if ident:
            result[(s.student, s.lab)] = ident
    return result


def lab_points(notebook: Path) -> float | None:
    """The points of a released lab: the sum of its nbgrader grade cells' points (None if unreadable)."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    total = 0.0
    for cell in nb.get("cells", []):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if meta.get("grade"):
            total += float(meta.get("points", 0) or 0)
    return total


def safe_name(text: str, limit: int = 120) -> str:
    """``text`` as one file-name component: no separator, NUL, control character, leading dot or ``..``."""
    name = printable(text)  # controls, NUL, bidi overrides become visible escapes
    name = re.sub(r"[/\\\x00]", "_", name).replace("\\", "_")
    name = name.strip().lstrip(".") or "_"
    return name[:limit]


def _number(value) -> str:
    x = float(value)
    return str(int(x)) if x == int(x) else f"{x:.4f}".rstrip("0").rstrip(".")


def _table(rows: list[dict]):
    """Students (sorted), labs (sorted) and ``(student, lab) -> row`` of the gradebook rows."""
    entries = {(r["student"], r["lab"]): r for r in rows if r.get("lab") not in (None, "", "-")}
    students = sorted({s for s, _ in entries})
    labs = sorted({lab for _, lab in entries})
    return students, labs, entries


def _score(row: dict | None) -> str:
    """A gradebook cell: the score when graded, empty when not (never a zero for the grader's failure)."""
    return _number(row["score"]) if row and row.get("status") == "graded" else ""


def _points(labs: list[str], entries: dict, points: dict[str, float] | None) -> dict[str, str]:
    """Each lab's maximum: ``points`` (from the released notebook) first, else a graded row's max_score."""
    result = {}
    for lab in labs:
        value = (points or {}).get(lab)
        if value is None:
            value = next((r["max_score"] for (_, rl), r in entries.items()
                          if rl == lab and r.get("status") == "graded" and r.get("max_score") != ""), None)
        result[lab] = "" if value is None else _number(value)
    return result


def _inside(folder: Path, name: str) -> Path:
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise ValueError(f"refusing to write {printable(name)!r} outside {folder}")
    return path


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([csv_cell(h) for h in header])
        w.writerows([[csv_cell(c) for c in row] for row in rows])


def write_canvas(out: Path, rows: list[dict], ids: dict, points: dict | None = None) -> Path:
    """``OUT/canvas_grades.csv``: Canvas's gradebook import layout (see the module docstring)."""
    students, labs, entries = _table(rows)
    maxima = _points(labs, entries, points)
    table = [[CANVAS_POINTS_ROW, "", "", "", ""] + [maxima[lab] for lab in labs]]
    for student in students:
        canvas = next((ids[(student, lab)] for lab in labs
                       if (student, lab) in ids and ids[(student, lab)].system == "canvas"), None)
        ident = [canvas.name, canvas.user_id, "", ""] if canvas else [student, "", "", student]
        table.append(ident + [""] + [_score(entries.get((student, lab))) for lab in labs])
    path = out / "canvas_grades.csv"
    _write_csv(path, CANVAS_HEADER + labs, table)
    return path


def write_moodle(out: Path, rows: list[dict], ids: dict, points: dict | None = None,
                 now: float | None = None) -> list[Path]:
    """``OUT/moodle_grades.csv`` and, for Moodle downloads, one grading worksheet per lab."""
    students, labs, entries = _table(rows)
    id_column = "Email address" if students and all("@" in s for s in students) else "Username"
    path = out / "moodle_grades.csv"
    _write_csv(path, [id_column] + labs,
               [[student] + [_score(entries.get((student, lab))) for lab in labs] for student in students])
    written = [path]
    maxima = _points(labs, entries, points)
    # Moodle compares this with the grade's own time and skips older rows unless told to ignore it.
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    for lab in labs:
        sheet = []
        for student in students:
            ident = ids.get((student, lab))
            if ident and ident.system == "moodle":
                sheet.append([f"{MOODLE_ID_PREFIX}{ident.user_id}", ident.name,
                              _score(entries.get((student, lab))), maxima[lab], stamp])
        if sheet:
            sheet_path = _inside(out, safe_name(f"moodle_{lab}_grading_worksheet.csv"))
            _write_csv(sheet_path, ["Identifier", "Full name", "Grade", "Maximum grade", "Last modified (grade)"],
                       sheet)
            written.append(sheet_path)
    return written


def write_plain(out: Path, rows: list[dict]) -> Path:
    """``OUT/grades_wide.csv``: student, one column per lab, total of the graded labs."""
    students, labs, entries = _table(rows)
    table = []
    for student in students:
        cells = [_score(entries.get((student, lab))) for lab in labs]
        table.append([student] + cells + [_number(sum(float(c) for c in cells if c != ""))])
    path = out / "grades_wide.csv"
    _write_csv(path, ["student"] + labs + ["total"], table)
    return path


def upload_name(system: str, student: str, lab: str, ident: LmsIdentity | None) -> str | None:
    """The path (inside the lab's folder) under which ``system`` matches a feedback page, or None if it cannot."""
    page = f"{safe_name(lab)}_feedback.html"
    if system == "canvas":
        if not ident or ident.system != "canvas":
            return None
        late = "late_" if ident.late else ""
        # No "_" in the name part: Canvas takes the first two all-digit "_" parts as the ids.
        name = safe_name(ident.name).replace("_", "-")
        return f"{name}_{late}{ident.user_id}_{ident.attachment_id}_{page}"
    if system == "moodle":
        if not ident or ident.system != "moodle":
            return None
        folder = safe_name(ident.name).replace("_", " ")  # Moodle reads the id from the second "_" part
        return f"{folder}_{ident.user_id}_assignsubmission_file/{page}"
    return f"{safe_name(student)}_{page}"


def write_feedback_upload(out: Path, rows: list[dict], ids: dict, system: str) -> tuple[list[Path], list[str]]:
    """``OUT/feedback_upload/<system>/<lab>/`` and ``<lab>.zip``: each graded submission's feedback page.

    The page is nbgrader's ``OUT/feedback/<student>/<lab>/<lab>.html``. Returns
    the zips written and a note for every page that could not be placed.
    """
    students, labs, entries = _table(rows)
    base = out / "feedback_upload" / system
    if base.is_symlink() or base.is_file():
        base.unlink()
    elif base.exists():
        shutil.rmtree(base)  # our own output from an earlier run: stale pages must not be uploaded
    zips, notes = [], []
    for lab in labs:
        placed = []
        for student in students:
            row = entries.get((student, lab))
            if not row or row.get("status") != "graded":
                continue
            source = out / "feedback" / safe_name(student) / safe_name(lab) / f"{safe_name(lab)}.html"
            name = upload_name(system, student, lab, ids.get((student, lab)))
            if name is None:
                notes.append(f"{printable(student)}/{printable(lab)}: no {system} id in the submitted file's name; "
                             f"its feedback is only in OUT/feedback")
                continue
            if not source.is_file():
                notes.append(f"{printable(student)}/{printable(lab)}: no feedback page to upload")
                continue
            folder = base / safe_name(lab)
            target = folder / name
            if not target.resolve().is_relative_to(folder.resolve()) or ".." in Path(name).parts:
                notes.append(f"{printable(student)}/{printable(lab)}: unsafe upload name refused")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            placed.append((name, target))
        if placed:
            zip_path = _inside(base, f"{safe_name(lab)}.zip")
            with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
                for name, target in placed:
                    z.write(target, name)
            zips.append(zip_path)
    return zips, notes


def write_exports(out: Path, rows: list[dict], systems, ids: dict | None = None,
                  points: dict[str, float] | None = None) -> list[str]:
    """Every export in ``systems``; returns lines for the terminal (files written, empty cells, notes)."""
    ids = ids or {}
    lines = []
    for system in dict.fromkeys(systems):  # each once, in the order given
        if system == "canvas":
            written = [write_canvas(out, rows, ids, points)]
        elif system == "moodle":
            written = write_moodle(out, rows, ids, points)
        elif system == "csv":
            written = [write_plain(out, rows)]
        else:
            raise ValueError(f"unknown export {system!r}; choose from {', '.join(SYSTEMS)}")
        zips, notes = write_feedback_upload(out, rows, ids, system)
        lines.append(f"export {system}: {', '.join(str(p.relative_to(out)) for p in written + zips)}")
        lines.extend(f"  {n}" for n in notes)
    _, _, entries = _table(rows)
    empty = sorted((s, lab) for (s, lab), r in entries.items() if r.get("status") != "graded")
    if systems and empty:
        lines.append(f"export: {len(empty)} submission(s) not graded are left empty (see grades.csv for why): "
                     + ", ".join(f"{printable(s)}/{printable(lab)}" for s, lab in empty))
    return lines
