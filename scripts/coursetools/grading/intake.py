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

Intake never follows a link. Zip and LMS extraction keep symbolic links, and a
link (or a hard link, which is the same file under a second name) to
``solutions/`` or to a classmate's notebook would otherwise be graded as the
student's work. So every entry is looked at with ``lstat``: a symbolic link
(file or folder, at any depth), a notebook with more than one name on disk
(``st_nlink > 1``) and anything that is not a regular file (FIFO, socket,
device, a folder named like a notebook) are refused with a reason. Reading
repeats the checks on the descriptor it reads from: every folder on the way is
opened with ``O_NOFOLLOW`` and the file with ``O_NOFOLLOW | O_NONBLOCK``
(a FIFO cannot block the grader), then ``fstat`` decides before any byte is
read. Entries whose names start with ``.`` are reported ("hidden entry
skipped"), never silently dropped.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .trusted import TrustedLab

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_NOTEBOOK_BYTES = 50 * 2**20
LAYOUT = "expected <student>/<lab>/<lab>.ipynb (or use --loose)"


@dataclass
class Submission:
    student: str
    lab: str
    path: Path | None = None
    problem: str = ""


def _kind(st: os.stat_result) -> str:
    """What an ``lstat`` result is, in words."""
    mode = st.st_mode
    for test, name in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "folder"), (stat.S_ISREG, "file"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _refusal(rel: str, st: os.stat_result) -> str:
    """Why the entry ``rel`` (``lstat`` result ``st``) cannot be read as a notebook, or ""."""
    if stat.S_ISLNK(st.st_mode):
        return f"'{rel}' is a symbolic link; links are never followed (submit the file itself)"
    if not stat.S_ISREG(st.st_mode):
        return f"'{rel}' is not a regular file but a {_kind(st)}"
    if st.st_nlink > 1:
        return (f"'{rel}' is a hard link (the same file has {st.st_nlink} names on disk); "
                f"submit a file of your own")
    return ""


def _listing(folder: Path) -> list[tuple[str, os.stat_result]]:
    """The entries of ``folder`` with their ``lstat`` results, sorted by name; nothing is followed."""
    entries = []
    with os.scandir(folder) as it:
        for entry in it:
            entries.append((entry.name, entry.stat(follow_symlinks=False)))
    return sorted(entries, key=lambda e: e[0])


def _hidden(student: str, lab: str, rel: str) -> Submission:
    return Submission(student, lab, None, f"hidden entry '{rel}' skipped: names starting with '.' are not graded")


def _lab_folders(student_dir: Path, student: str, labs: list[str]) -> list[Submission]:
    found = []
    try:
        entries = _listing(student_dir)
    except OSError as exc:
        return [Submission(student, "-", None, f"unreadable folder '{student}': {exc.strerror}")]
    if not entries:
        return [Submission(student, "-", None, "empty folder: nothing was submitted")]
    for name, st in entries:
        rel = f"{student}/{name}"
        if name.startswith("."):
            found.append(_hidden(student, name, rel))
        elif stat.S_ISLNK(st.st_mode):
            found.append(Submission(student, name, None, _refusal(rel, st)))
        elif name in labs and not stat.S_ISDIR(st.st_mode):
            found.append(Submission(student, name, None, f"'{rel}' is not a folder but a {_kind(st)}; {LAYOUT}"))
        elif name in labs:
            found.append(_lab_notebook(student_dir / name, student, name))
        else:
            found.append(Submission(student, name, None,
                                    f"unknown {_kind(st)} '{name}': expected one of the labs ({', '.join(labs)})"))
    return found


def _lab_notebook(lab_dir: Path, student: str, lab: str) -> Submission:
    """The submission in ``<student>/<lab>/``: its notebook, or why there is none to grade."""
    rel = f"{student}/{lab}/{lab}.ipynb"
    try:
        entries = dict(_listing(lab_dir))
    except OSError as exc:
        return Submission(student, lab, None, f"unreadable folder '{student}/{lab}': {exc.strerror}")
    st = entries.get(f"{lab}.ipynb")
    if st is None:
        others = sorted(n for n in entries if n.endswith(".ipynb"))
        reason = (f"wrong file name: found {', '.join(others)}, expected {lab}.ipynb" if others
                  else f"missing notebook: {lab}/ has no {lab}.ipynb")
        return Submission(student, lab, None, reason)
    refusal = _refusal(rel, st)
    return Submission(student, lab, None if refusal else lab_dir / f"{lab}.ipynb", refusal)


def discover(submitted: Path, labs: list[str], loose: bool = False, pattern: str | None = None) -> list[Submission]:
    """Every (student, lab) found under ``submitted``, each with its notebook or its problem.

    ``submitted`` itself is resolved (the operator named it); below it nothing
    is followed, and every path returned is free of links, which
    :func:`read_notebook` checks again as it opens the file.
    """
    submitted = Path(submitted).resolve()
    if loose:
        return discover_loose(submitted, labs, pattern)
    result = []
    for name, st in _listing(submitted):
        if name.startswith("."):
            result.append(_hidden(name, "-", name))
        elif stat.S_ISLNK(st.st_mode):
            result.append(Submission(name, "-", None, _refusal(name, st)))
        elif stat.S_ISREG(st.st_mode):
            result.append(Submission(Path(name).stem, "-", None, f"'{name}' is a file at the top level; {LAYOUT}"))
        elif not stat.S_ISDIR(st.st_mode):
            result.append(Submission(name, "-", None, f"'{name}' is not a folder but a {_kind(st)}; {LAYOUT}"))
        elif not STUDENT_ID.match(name):
            result.append(Submission(name, "-", None, "student id has unsupported characters"))
        else:
            result.extend(_lab_folders(submitted / name, name, labs))
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


def _walk(folder: Path, unreadable: list[Submission], rel: str = ""):
    """``(rel, path, lstat)`` of every entry below ``folder``: links and hidden folders are not entered.

    A folder that cannot be listed (permissions, removed meanwhile) is added to
    ``unreadable`` as a row; the walk goes on.
    """
    try:
        entries = _listing(folder)
    except OSError as exc:
        unreadable.append(Submission(folder.name, "-", None, f"unreadable folder '{rel or '.'}': {exc.strerror}"))
        return
    for name, st in entries:
        entry_rel = f"{rel}{name}"
        yield entry_rel, folder / name, st
        if stat.S_ISDIR(st.st_mode) and not name.startswith("."):
            yield from _walk(folder / name, unreadable, entry_rel + "/")


def _student_and_lab(name: str, labs: list[str], regex: re.Pattern | None) -> tuple[str | None, str | None]:
    stem = Path(name).stem
    if regex:
        m = regex.search(name)
        return (m.group("student"), m.group("lab")) if m else (None, None)
    for candidate in sorted(labs, key=len, reverse=True):
        if candidate in stem:
            return stem.split(candidate)[0].split("_")[0].strip("_-") or None, candidate
    return None, None


def pattern_problem(pattern: str) -> str:
    """Why ``pattern`` cannot name submissions (``--pattern``), or "" when it can."""
    try:
        groups = re.compile(pattern).groupindex
    except re.error as exc:
        return f"is not a regular expression ({exc})"
    missing = [g for g in ("student", "lab") if g not in groups]
    return f"has no named group {' or '.join(repr(g) for g in missing)}" if missing else ""


def discover_loose(submitted: Path, labs: list[str], pattern: str | None = None) -> list[Submission]:
    """Every notebook under ``submitted`` named after a student and a lab; every other entry as a row."""
    regex = re.compile(pattern) if pattern else None
    result: list[Submission] = []
    candidates: dict[tuple[str, str], list[tuple[str, Path, os.stat_result]]] = {}
    for rel, path, st in _walk(Path(submitted), result):
        name = path.name
        is_dir = stat.S_ISDIR(st.st_mode)
        if name.startswith("."):
            result.append(_hidden(Path(name).stem or name, "-", rel + ("/" if is_dir else "")))
            continue
        if is_dir and not name.endswith(".ipynb"):
            continue  # an ordinary folder: its entries are walked
        student, lab = _student_and_lab(name, labs, regex)
        if not name.endswith(".ipynb"):
            refusal = _refusal(rel, st)
            result.append(Submission(student or path.stem, lab or "-", None,
                                     refusal if stat.S_ISLNK(st.st_mode) else f"not a notebook: {rel}"))
        elif not student or not lab or lab not in labs:
            result.append(Submission(path.stem, "-", None, _refusal(rel, st) or
                                     f"cannot tell student and lab from the file name '{rel}'"))
        elif not STUDENT_ID.match(student):
            result.append(Submission(student, lab, None, "student id has unsupported characters"))
        else:
            candidates.setdefault((student, lab), []).append((rel, path, st))
    for (student, lab), entries in sorted(candidates.items()):
        if len(entries) > 1:
            # No rule picks one: timestamps and names are under the submitter's control.
            result.append(Submission(student, lab, None,
                                     f"duplicate submissions: {', '.join(rel for rel, _, _ in entries)}; "
                                     f"none was graded (keep exactly one file per student and lab)"))
            continue
        rel, path, st = entries[0]
        refusal = _refusal(rel, st)
        result.append(Submission(student, lab, None if refusal else path, refusal))
    return result


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
    so one file can only ever cost its own student's row. No component of
    ``path`` may be a symbolic link (``discover`` returns paths below a
    resolved ``SUBMITTED``), and the file must be a regular file with one name.
    """
    try:
        return _read_notebook(Path(os.path.abspath(path)))
    except MemoryError:
        return None, "the notebook is too large to read"
    except RecursionError:
        return None, "malformed notebook JSON (nested too deeply)"
    except Exception as exc:  # noqa: BLE001 - one file must never stop the class
        return None, f"cannot read the notebook ({type(exc).__name__}: {_short(str(exc), 120)})"


class _Refused(Exception):
    pass


def _open_no_follow(path: Path) -> int:
    """A read descriptor for the regular file ``path``, reached without following any link.

    Each folder on the way is opened relative to the previous one with
    ``O_NOFOLLOW``; the file is ``lstat``-ed first (a FIFO or device is never
    opened), opened with ``O_NOFOLLOW | O_NONBLOCK`` and ``fstat``-ed, so a
    swap between the check and the open is caught too.
    """
    parts = path.parts
    fd = os.open(parts[0], os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts[1:-1], start=1):
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _Refused(f"'{Path(*parts[:i + 1])}' is a symbolic link or not a folder; "
                                   f"links are never followed") from None
                raise
            os.close(fd)
            fd = nxt
        refusal = _refusal(path.name, os.stat(parts[-1], dir_fd=fd, follow_symlinks=False))
        if refusal:
            raise _Refused(refusal)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
        try:
            file_fd = os.open(parts[-1], flags, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Refused(f"'{path.name}' is a symbolic link; links are never followed") from None
            raise
    finally:
        os.close(fd)
    refusal = _refusal(path.name, os.fstat(file_fd))
    if refusal:
        os.close(file_fd)
        raise _Refused(refusal)
    return file_fd


def _read_notebook(path: Path) -> tuple[dict | None, str]:
    try:
        fd = _open_no_follow(path)
    except _Refused as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror}"
    try:
        size = os.fstat(fd).st_size
        if size > MAX_NOTEBOOK_BYTES:
            return None, f"file too large ({size / 2**20:.0f} MB)"
        chunks, total = [], 0
        while total <= MAX_NOTEBOOK_BYTES:  # the size can change after fstat: read at most the limit
            chunk = os.read(fd, 2**20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_NOTEBOOK_BYTES:
            return None, f"file too large (over {MAX_NOTEBOOK_BYTES / 2**20:.0f} MB)"
        raw = b"".join(chunks)
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror}"
    finally:
        os.close(fd)
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
    try:  # a \ud800 escape is valid JSON, but no UTF-8 writer downstream (nbformat, feedback) can write it
        json.dumps(nb, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return None, f"the notebook holds text that is not valid Unicode (a lone surrogate, position {exc.start})"
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
