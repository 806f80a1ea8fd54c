"""Intake of `make grade`: finding, opening and parsing submissions, unit-level (no sandbox, no nbgrader).

Each test builds a tiny SUBMITTED folder in tmp_path and calls ``discover``,
``read_notebook`` or ``student_cells`` directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from coursetools.grading.intake import discover, read_notebook, student_cells
from coursetools.grading.trusted import TrustedLab
from fixtures.hostile import LAB
from fixtures.notebooks import nbgrader_meta, submission

MINIMAL = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}


@pytest.fixture(scope="module")
def trusted() -> TrustedLab:
    return TrustedLab.load(LAB)


def _write_json_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- finding 3: nothing in one file raises past the per-student handler ----------------------------

HOSTILE_JSON = {
    # Python refuses int <-> str conversions beyond 4300 digits (ValueError, not JSONDecodeError).
    "integer-5001-digits": '{"nbformat": 4, "cells": [], "x": ' + "7" * 5001 + "}",
    "integer-in-cells": '{"nbformat": 4, "cells": [' + "9" * 20000 + "]}",
    # Nesting deeper than the interpreter's recursion limit (RecursionError).
    "array-nested-100000": '{"nbformat": 4, "cells": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "object-nested-100000": '{"x": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}",
    "nbformat-huge-string": json.dumps({"nbformat": "4" * 1_000_000, "cells": []}),
    "nul-bytes": '{"nbformat": 4, "cells": [], "x": "\u0000"}\u0000',
    "lone-surrogate": '{"nbformat": 4, "cells": ["\\ud800"]}',
    # A lone surrogate in a source is valid JSON but no UTF-8 writer (nbformat.write in the grader,
    # the feedback, the verdict files) can write it back.
    "lone-surrogate-in-source": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": "ex3_linear_layer", "solution": True}},
         "source": "x = '\ud800'", "outputs": [], "execution_count": None}]}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_read_notebook_turns_every_parse_failure_into_a_reason(tmp_path, name):
    path = _write_json_text(tmp_path / "s" / LAB / f"{LAB}.ipynb", HOSTILE_JSON[name])
    nb, reason = read_notebook(path)
    if nb is None:
        assert reason and len(reason) < 300, reason
    else:  # what is accepted can be written back by every UTF-8 writer downstream
        assert reason == "" and isinstance(nb.get("cells"), list)
        json.dumps(nb, ensure_ascii=False).encode("utf-8")


JUNK_CELLS = [
    {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": ["check_ex3_linear_layer"], "grade": True}},
     "source": "print('list id')"},
    {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": {"a": 1}}}, "source": "x = 1"},
    {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": 7}}, "source": ["y = ", 2, "3"]},
    {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": None}}, "source": 12},
    {"cell_type": "code", "metadata": ["not", "a", "dict"], "source": "z = 3"},
    {"cell_type": "code", "metadata": {"nbgrader": "string"}, "source": None},
    {"cell_type": ["code"], "metadata": {}, "source": "w = 4"},
    "a cell that is a string", 42, None, ["list"],
]


def test_junk_cell_metadata_keeps_the_exercise_cells(trusted):
    """Cells with odd types never crash the notebook; the real exercise cells are still taken."""
    nb = json.loads(json.dumps(submission(LAB)))  # plain dicts, as read_notebook returns them
    nb["cells"] = JUNK_CELLS + nb["cells"] + JUNK_CELLS
    cells, solutions = student_cells(trusted, nb)
    expected = {gid: src for gid, src in ((nbgrader_meta(c).get("grade_id"), "".join(c["source"]))
                                         for c in nb["cells"] if isinstance(c, dict)
                                         and isinstance(c.get("metadata"), dict)
                                         and isinstance(c["metadata"].get("nbgrader"), dict)
                                         and c["metadata"]["nbgrader"].get("solution"))}
    assert set(trusted.solution_ids) <= set(expected)
    for gid in trusted.solution_ids:
        assert solutions[gid] == expected[gid], gid
    assert all(isinstance(label, str) and isinstance(src, str) for label, src in cells)
    # A junk grade_id never names a trusted grade cell: its code runs as an added cell, never as a check.
    assert "print('list id')" in [src for _, src in cells]
    assert not any(label in {g.grade_id for g in trusted.grade_cells} for label, _ in cells)


# --- finding 3: OUT that cannot be written stops the command before grading, with one line -------

def _cli():
    from coursetools.grading import cli  # imported here: the intake tests above need no sandbox module

    return cli


def _one_clear_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err), err
    assert err[-1].startswith("make grade: OUT"), err
    return err[-1]


@pytest.fixture()
def tiny_class(tmp_path) -> Path:
    submitted = tmp_path / "submitted"
    _write_json_text(submitted / "amy" / LAB / f"{LAB}.ipynb", json.dumps(MINIMAL))
    return submitted


def test_out_that_is_a_file_fails_before_grading(tiny_class, tmp_path, capsys, monkeypatch):
    cli = _cli()
    monkeypatch.setattr(cli, "ProcessPoolExecutor", None)  # grading must not start
    (tmp_path / "out").write_text("a file")
    assert cli.main([str(tiny_class), str(tmp_path / "out"), "--labs", LAB]) == 2
    assert "not a folder" in _one_clear_line(capsys)
    assert cli.main([str(tiny_class), str(tmp_path / "out" / "below"), "--labs", LAB]) == 2
    _one_clear_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_fails_before_grading(tiny_class, tmp_path, capsys, monkeypatch):
    cli = _cli()
    monkeypatch.setattr(cli, "ProcessPoolExecutor", None)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert cli.main([str(tiny_class), str(out), "--labs", LAB]) == 2
        assert "cannot write" in _one_clear_line(capsys)
    finally:
        out.chmod(0o700)


def test_full_out_fails_before_grading(tiny_class, tmp_path, capsys, monkeypatch):
    """A full disk, simulated: every write into OUT goes to /dev/full (ENOSPC from the kernel)."""
    cli = _cli()
    monkeypatch.setattr(cli, "ProcessPoolExecutor", None)
    out = tmp_path / "out"
    real_open = os.open

    def open_full(path, flags, *args, **kwargs):
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR):
            return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_full)
    assert cli.main([str(tiny_class), str(out), "--labs", LAB]) == 2
    assert "cannot write" in _one_clear_line(capsys)


# --- finding 2: links and non-regular files in SUBMITTED are never followed or read ---------------

def _notebook(path: Path) -> Path:
    return _write_json_text(path, json.dumps(MINIMAL))


def _class_with(tmp_path, plant) -> tuple[Path, Path]:
    """SUBMITTED with an honest alice and a mallory planted by ``plant(submitted, secret)``.

    ``secret`` stands for solutions/ or anything else outside the submission.
    """
    submitted, secret = tmp_path / "submitted", tmp_path / "secret"
    _notebook(submitted / "alice" / LAB / f"{LAB}.ipynb")
    _notebook(secret / LAB / f"{LAB}.ipynb")
    plant(submitted, secret)
    return submitted, secret


NB = f"{LAB}/{LAB}.ipynb"
LINK_PLANTS = {
    "student-folder-linked-to-classmate": lambda s, x: (s / "mallory").symlink_to(s / "alice"),
    "student-folder-linked-outside": lambda s, x: (s / "mallory").symlink_to(x),
    "lab-folder-linked-outside": lambda s, x: ((s / "mallory").mkdir(), (s / "mallory" / LAB).symlink_to(x / LAB)),
    "notebook-linked-outside": lambda s, x: ((s / "mallory" / LAB).mkdir(parents=True),
                                             (s / "mallory" / NB).symlink_to(x / NB)),
    "notebook-relative-link": lambda s, x: ((s / "mallory" / LAB).mkdir(parents=True),
                                            (s / "mallory" / NB).symlink_to(Path("../../alice") / NB)),
    "dangling-link": lambda s, x: ((s / "mallory" / LAB).mkdir(parents=True),
                                   (s / "mallory" / NB).symlink_to(x / "nothing.ipynb")),
    "hard-link-outside": lambda s, x: ((s / "mallory" / LAB).mkdir(parents=True), os.link(x / NB, s / "mallory" / NB)),
    "hard-link-to-classmate": lambda s, x: ((s / "mallory" / LAB).mkdir(parents=True),
                                            os.link(s / "alice" / NB, s / "mallory" / NB)),
    "fifo-notebook": lambda s, x: ((s / "mallory" / LAB).mkdir(parents=True), os.mkfifo(s / "mallory" / NB)),
    "fifo-student": lambda s, x: os.mkfifo(s / "mallory"),
    "fifo-lab": lambda s, x: ((s / "mallory").mkdir(), os.mkfifo(s / "mallory" / LAB)),
    "folder-named-like-notebook": lambda s, x: (s / "mallory" / NB).mkdir(parents=True),
}


@pytest.mark.parametrize("plant", sorted(LINK_PLANTS))
def test_links_and_non_regular_files_are_refused_with_a_reason(tmp_path, plant):
    submitted, _ = _class_with(tmp_path, LINK_PLANTS[plant])
    found = discover(submitted, [LAB])
    mallory = [s for s in found if s.student == "mallory"]
    assert mallory and all(s.path is None and s.problem for s in mallory), mallory
    reasons = " ".join(s.problem for s in mallory)
    expected = ("symbolic link" if "link" in plant and "hard" not in plant else
                "hard link" if "hard" in plant else "not a")
    assert expected in reasons, reasons
    if expected == "not a":  # a FIFO where a folder or a notebook file belongs: named for what it is
        assert "not a regular file" in reasons or "not a folder" in reasons, reasons
    alice = [s for s in found if s.student == "alice"]
    if "classmate" in plant:  # the classmate's own file has two names too: not graded, never shared
        assert alice[0].path is None or plant == "student-folder-linked-to-classmate"
    else:
        assert [s.path.name for s in alice] == [f"{LAB}.ipynb"]


LOOSE_PLANTS = {
    "file-linked-outside": lambda s, x: (s / f"mallory_{LAB}.ipynb").symlink_to(x / NB),
    "folder-linked-outside": lambda s, x: (s / "sub").symlink_to(x / LAB),
    "hard-link-outside": lambda s, x: os.link(x / NB, s / f"mallory_{LAB}.ipynb"),
    "dangling-link": lambda s, x: (s / f"mallory_{LAB}.ipynb").symlink_to(x / "nothing.ipynb"),
    "fifo": lambda s, x: os.mkfifo(s / f"mallory_{LAB}.ipynb"),
}


@pytest.mark.parametrize("plant", sorted(LOOSE_PLANTS))
def test_loose_layout_never_follows_links(tmp_path, plant):
    submitted, secret = tmp_path / "loose", tmp_path / "secret"
    _notebook(submitted / f"alice_{LAB}.ipynb")
    _notebook(secret / LAB / f"{LAB}.ipynb")
    (secret / LAB / f"mallory_{LAB}.ipynb").write_text(json.dumps(MINIMAL))
    LOOSE_PLANTS[plant](submitted, secret)
    found = discover(submitted, [LAB], loose=True)
    graded = [s for s in found if s.path is not None]
    assert [s.student for s in graded] == ["alice"], found
    refused = [s for s in found if s.path is None]
    assert refused and all(s.problem for s in refused), found


def test_read_notebook_refuses_links_at_any_depth(tmp_path):
    real = _notebook(tmp_path / "real" / LAB / f"{LAB}.ipynb")
    assert read_notebook(real)[0] is not None
    (tmp_path / "file-link.ipynb").symlink_to(real)
    (tmp_path / "folder-link").symlink_to(tmp_path / "real")
    os.link(real, tmp_path / "hard.ipynb")
    for path in (tmp_path / "file-link.ipynb", tmp_path / "folder-link" / LAB / f"{LAB}.ipynb"):
        nb, reason = read_notebook(path)
        assert nb is None and "symbolic link" in reason, (path, reason)
    nb, reason = read_notebook(tmp_path / "hard.ipynb")
    assert nb is None and "hard link" in reason, reason


def test_read_notebook_does_not_block_on_a_fifo(tmp_path):
    """Opening a FIFO for reading waits for a writer; the grader must refuse it without opening it so."""
    import threading

    fifo = tmp_path / "s.ipynb"
    os.mkfifo(fifo)
    outcome = {}
    reader = threading.Thread(target=lambda: outcome.update(result=read_notebook(fifo)), daemon=True)
    reader.start()
    reader.join(30)  # a hang guard, not a timing check: a correct read returns at once
    if reader.is_alive():  # release the blocked reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(30)
    assert "result" in outcome and not reader.is_alive()
    nb, reason = outcome["result"]
    assert nb is None and "not a regular file" in reason, reason


# --- finding 5: every entry becomes a graded submission or a row; duplicates are never guessed ----

def test_loose_duplicates_are_all_reported_and_none_is_graded(tmp_path):
    """A file planted with a future timestamp must not silently replace a classmate's work."""
    submitted = tmp_path / "loose"
    honest = _notebook(submitted / f"bob_12345_{LAB}.ipynb")
    planted = _notebook(submitted / "deep" / "er" / f"bob_{LAB}-stub.ipynb")
    os.utime(planted, (4_000_000_000, 4_000_000_000))  # the year 2096
    _notebook(submitted / f"carol_{LAB}.ipynb")
    found = discover(submitted, [LAB], loose=True)
    bob = [s for s in found if s.student == "bob"]
    assert len(bob) == 1 and bob[0].path is None, bob
    assert "duplicate" in bob[0].problem
    assert honest.name in bob[0].problem and planted.name in bob[0].problem, bob[0].problem
    assert [s.path.name for s in found if s.student == "carol"] == [f"carol_{LAB}.ipynb"]


def test_hidden_entries_are_reported_not_skipped(tmp_path):
    submitted = tmp_path / "submitted"
    _notebook(submitted / "alice" / LAB / f"{LAB}.ipynb")
    _notebook(submitted / ".eve" / LAB / f"{LAB}.ipynb")
    _notebook(submitted / "alice" / f".{LAB}" / f"{LAB}.ipynb")
    found = discover(submitted, [LAB])
    hidden = [s for s in found if "hidden" in s.problem]
    assert len(hidden) == 2 and all(s.path is None for s in hidden), found
    assert [s.path for s in found if s.path is not None] == [submitted / "alice" / LAB / f"{LAB}.ipynb"]
    loose = tmp_path / "loose"
    _notebook(loose / f"alice_{LAB}.ipynb")
    _notebook(loose / f".eve_{LAB}.ipynb")
    _notebook(loose / ".old" / f"bob_{LAB}.ipynb")
    found = discover(loose, [LAB], loose=True)
    hidden = [s for s in found if "hidden" in s.problem]
    assert len(hidden) == 2 and all(s.path is None for s in hidden), found
    assert [s.student for s in found if s.path is not None] == ["alice"]


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling-link"])
def test_loose_entries_named_like_notebooks_are_rows(tmp_path, kind):
    submitted = tmp_path / "loose"
    _notebook(submitted / f"alice_{LAB}.ipynb")
    odd = submitted / f"bob_{LAB}.ipynb"
    {"folder": odd.mkdir, "fifo": lambda: os.mkfifo(odd),
     "dangling-link": lambda: odd.symlink_to(tmp_path / "gone.ipynb")}[kind]()
    found = discover(submitted, [LAB], loose=True)
    bob = [s for s in found if s.student == "bob"]
    assert len(bob) == 1 and bob[0].path is None and odd.name in bob[0].problem, found


def test_a_loose_pattern_without_both_groups_is_misuse(tiny_class, tmp_path, capsys):
    """A --pattern that does not compile or lacks a named group used to raise mid-discovery."""
    cli = _cli()
    for pattern in ("[", "(?P<student>[a-z]+)_", "(?P<lab>\\d\\d_\\w+)"):
        assert cli.main([str(tiny_class), str(tmp_path / "out"), "--loose", "--pattern", pattern]) == 2
        assert "--pattern" in capsys.readouterr().err
