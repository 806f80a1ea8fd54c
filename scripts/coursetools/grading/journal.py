"""OUT/journal.jsonl: every verdict as it arrives, so an interrupted run resumes and a regrade can skip work.

One JSON line per graded submission, written (and fsync-ed) the moment its verdict reaches the
grader, keyed by the student, the lab, the sha256 of the notebook's bytes and the lab's course hash
(``identity.lab_hash``: the instructor's notebooks and the checks). A run that ends writes a
``{"complete": ...}`` line.

* A run that did not end (SIGINT, a lost node, a killed grader) left no complete line: the next run
  into the same OUT takes every verdict the journal holds for an unchanged notebook and unchanged
  checks, and grades only the rest. Each submission is recorded once: a key seen again (a task
  that ran twice after a worker was lost) keeps its first verdict.
* ``--only-new`` does the same after a complete run: only changed notebooks, and notebooks of labs
  whose checks changed, are graded again.
* Otherwise a run after a complete one grades everything, in a fresh journal.

Only verdicts are journaled. An infrastructure failure (a worker lost too often, a worker that
refused the task, the grader's own error) is not: the next run grades that submission again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

JOURNAL = "journal.jsonl"
# Reasons that are the machine's fault, never the student's: such a result is not journaled.
INFRASTRUCTURE = ("infrastructure error", "grader error", "refused by", "worker lost", "not graded:")


def is_final(result: dict) -> bool:
    """Whether ``result`` is the submission's verdict (graded, or the student's own broken file)."""
    if result.get("retry"):
        return False
    return result.get("status") == "graded" or not str(result.get("reason", "")).startswith(INFRASTRUCTURE)


def key_of(student: str, lab: str, digest: str, lab_hash: str) -> str:
    return json.dumps([student, lab, digest, lab_hash])


class Journal:
    """The journal of one OUT folder (see the module's docstring for when earlier verdicts are reused)."""

    def __init__(self, out: Path, only_new: bool = False):
        self.path = Path(out) / JOURNAL
        self.entries: dict[str, dict] = {}
        self.reused = 0
        self.resumed = False
        complete, entries = self._read()
        if entries and (only_new or not complete):
            self.entries = entries
            self.resumed = not complete
        elif self.path.exists():
            self.path.replace(self.path.with_name(JOURNAL + ".previous"))
        # Line-buffered appends; each line is fsync-ed in record().
        self._file = open(self.path, "a", encoding="utf-8")
        if self.entries and complete:  # --only-new after a complete run: this run's journal starts anew
            self._file.truncate(0)
            for key, result in self.entries.items():
                self._write({"key": key, "result": result})

    def _read(self) -> tuple[bool, dict[str, dict]]:
        complete, entries = False, {}
        try:
            with open(self.path, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return False, {}
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # the last line of a run killed while writing it
            if not isinstance(item, dict):
                continue
            if "complete" in item:
                complete = True
            elif "key" in item and isinstance(item.get("result"), dict):
                complete = False  # lines after a complete mark belong to a later, unfinished run
                entries.setdefault(item["key"], item["result"])
        return complete, entries

    def lookup(self, student: str, lab: str, digest: str, lab_hash: str) -> dict | None:
        result = self.entries.get(key_of(student, lab, digest, lab_hash))
        if result is not None:
            self.reused += 1
        return result

    def record(self, student: str, lab: str, digest: str, lab_hash: str, result: dict) -> bool:
        """Journal ``result`` once; False when the key was recorded already or the result is not final."""
        key = key_of(student, lab, digest, lab_hash)
        if key in self.entries or not is_final(result):
            return False
        self.entries[key] = result
        self._write({"key": key, "result": result})
        return True

    def _write(self, item: dict) -> None:
        self._file.write(json.dumps(item) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def complete(self) -> None:
        self._write({"complete": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "verdicts": len(self.entries)})

    def close(self) -> None:
        self._file.close()
