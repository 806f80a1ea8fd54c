"""Find submissions, read them defensively, and keep only what the grader may use.

Two layouts are accepted:

* nbgrader's: ``SUBMITTED/<student>/<lab>/<lab>.ipynb``;
* loose files as a learning-management system exports them
  (``--loose``): ``SUBMITTED/<anything>.ipynb`` where the file name contains
  the student id and the lab id, e.g. ``jdoe_12345_01_backprop.ipynb``. A
  regular expression with the named groups ``student`` and ``lab`` (as in
  nbgrader's ``zip_collect``) says how; the default takes the text before the
  first underscore as the student and finds a known lab id in the rest.

Every problem becomes a :class:`Submission` with a ``problem`` instead of an
exception, so one broken file never stops the others. Nothing is written to
``SUBMITTED``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .trusted import TrustedLab

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_NOTEBOOK_BYTES = 50 * 2**20


@dataclass
class Submission:
    student: str
    lab: str
    path: Path | None = None
    problem: str = ""


def _lab_folders(student_dir: Path, labs: list[str]) -> list[Submission]:
    found = []
    entries = sorted(p for p in student_dir.iterdir() if not p.name.startswith("."))
    if not entries:
        return [Submission(student_dir.name, "-", None, "empty folder: nothing was submitted")]
    for entry in entries:
        if entry.is_dir() and entry.name in labs:
            target = entry / f"{entry.name}.ipynb"
            if target.is_file():
                found.append(Submission(student_dir.name, entry.name, target))
                continue
            others = sorted(p.name for p in entry.glob("*.ipynb"))
            reason = (f"wrong file name: found {', '.join(others)}, expected {entry.name}.ipynb" if others
                      else f"missing notebook: {entry.name}/ has no {entry.name}.ipynb")
            found.append(Submission(student_dir.name, entry.name, None, reason))
        else:
            kind = "folder" if entry.is_dir() else "file"
            found.append(Submission(student_dir.name, entry.name, None,
                                    f"unknown {kind} '{entry.name}': expected one of the labs ({', '.join(labs)})"))
    return found


def discover(submitted: Path, labs: list[str], loose: bool = False, pattern: str | None = None) -> list[Submission]:
    """Every (student, lab) found under ``submitted``, each with its notebook or its problem."""
    if loose:
        return discover_loose(submitted, labs, pattern)
    result = []
    for student_dir in sorted(p for p in submitted.iterdir() if not p.name.startswith(".")):
        if not student_dir.is_dir():
            result.append(Submission(student_dir.stem, "-", None,
                                     f"'{student_dir.name}' is a file at the top level; "
                                     f"expected <student>/<lab>/<lab>.ipynb (or use --loose)"))
        elif not STUDENT_ID.match(student_dir.name):
            result.append(Submission(student_dir.name, "-", None, "student id has unsupported characters"))
        else:
            result.extend(_lab_folders(student_dir, labs))
    # A lab that others submitted but this student did not is reported as missing.
    submitted_labs = {s.lab for s in result if s.lab in labs}
    have: dict[str, set] = {}
    for s in result:
        have.setdefault(s.student, set()).add(s.lab)
    for student, student_labs in sorted(have.items()):
        if student_labs & set(labs):
            for lab in sorted(submitted_labs - student_labs):
                result.append(Submission(student, lab, None, f"missing lab: no {lab}/ folder"))
    return result


def discover_loose(submitted: Path, labs: list[str], pattern: str | None = None) -> list[Submission]:
    regex = re.compile(pattern) if pattern else None
    result = []
    for path in sorted(p for p in submitted.rglob("*") if p.is_file() and not p.name.startswith(".")):
        student = lab = None
        if regex:
            m = regex.search(path.name)
            if m:
                student, lab = m.group("student"), m.group("lab")
        else:
            for candidate in sorted(labs, key=len, reverse=True):
                if candidate in path.stem:
                    lab = candidate
                    student = path.stem.split(candidate)[0].split("_")[0].strip("_-") or None
                    break
        if path.suffix != ".ipynb":
            result.append(Submission(student or path.stem, lab or "-", None, f"not a notebook: {path.name}"))
        elif not student or not lab or lab not in labs:
            result.append(Submission(path.stem, "-", None,
                                     f"cannot tell student and lab from the file name '{path.name}'"))
        elif not STUDENT_ID.match(student):
            result.append(Submission(student, lab, None, "student id has unsupported characters"))
        else:
            result.append(Submission(student, lab, path))
    seen: dict[tuple, Submission] = {}
    for s in result:
        key = (s.student, s.lab)
        if s.path is not None and key in seen and seen[key].path is not None:
            # Two files for one student and lab: take the newest, say so.
            older, newer = sorted([seen[key], s], key=lambda x: x.path.stat().st_mtime)
            seen[key] = newer
            continue
        seen.setdefault(key, s)
    return list(seen.values()) + [s for s in result if s.path is None and (s.student, s.lab) not in seen]


def _short(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for reasons that quote a submission's content."""
    try:
        text = repr(value) if not isinstance(value, str) else value
    except Exception:  # a repr that cannot be computed (an int past the digit limit)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def read_notebook(path: Path) -> tuple[dict | None, str]:
    """The notebook as a dict, or None and the reason it cannot be graded; never raises.

    Whatever the file holds (integers past Python's digit limit, nesting past
    the recursion limit, NUL bytes, lone surrogates), the outcome is a reason,
    so one file can only ever cost its own student's row.
    """
    try:
        return _read_notebook(path)
    except MemoryError:
        return None, "the notebook is too large to read"
    except RecursionError:
        return None, "malformed notebook JSON (nested too deeply)"
    except Exception as exc:  # noqa: BLE001 - one file must never stop the class
        return None, f"cannot read the notebook ({type(exc).__name__}: {_short(str(exc), 120)})"


def _read_notebook(path: Path) -> tuple[dict | None, str]:
    try:
        size = path.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            return None, f"file too large ({size / 2**20:.0f} MB)"
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start})"
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"malformed notebook JSON (line {exc.lineno}: {exc.msg})"
    except RecursionError:
        return None, "malformed notebook JSON (nested too deeply)"
    except ValueError as exc:  # an integer past the int/str digit limit, and the like
        return None, f"malformed notebook JSON ({_short(str(exc), 80)})"
    if not isinstance(nb, dict):
        return None, "not a Jupyter notebook (the JSON is not an object)"
    if nb.get("nbformat") != 4:
        return None, f"nbformat {_short(nb.get('nbformat'))} notebook; save it with Jupyter 4 or newer (nbformat 4)"
    if not isinstance(nb.get("cells"), list):
        return None, "not a Jupyter notebook (no list of cells)"
    return nb, ""


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def student_cells(trusted: TrustedLab, nb: dict) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """What of a submission runs: its exercise cells and any code cells it added, in its order.

    Grade cells and locked cells are never taken from the submission (the
    trusted versions run instead), whatever its metadata claims; an exercise id
    that appears twice counts once. Returns ``(cells, solutions)``: the
    (label, source) list to execute and the exercise sources by grade_id.
    """
    trusted_ids = {g.grade_id for g in trusted.grade_cells} | {gid for gid, _ in trusted.setup_cells}
    solutions: dict[str, str] = {}
    cells: list[tuple[str, str]] = []
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata")
        nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
        gid = nbg.get("grade_id") if isinstance(nbg, dict) else None
        if not isinstance(gid, str):
            gid = None  # a list, dict or number is no grade_id: the cell counts as one the student added
        if gid in trusted.solution_ids:
            if gid in solutions:
                continue  # a duplicated exercise cell: the first one counts
            solutions[gid] = _source(cell)
            cells.append((gid, solutions[gid]))
        elif gid in trusted_ids:
            continue  # a grade or locked cell: the trusted version is used
        else:
            cells.append((f"added cell {i}", _source(cell)))
    for gid in trusted.solution_ids:
        solutions.setdefault(gid, trusted.stub_sources.get(gid, ""))
    return cells, solutions
