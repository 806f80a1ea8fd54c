"""Record the grader's verdicts through nbgrader's own autograde and gradebook.

nbgrader normally executes each notebook in a kernel next to the student's
code. Here its ``Execute`` step is replaced by :class:`InjectVerdicts`, which
writes each grade cell's output from the trusted verdict (an error output when
the check failed, so nbgrader's own ``SaveAutoGrades`` gives zero). Everything
else (sanitising, the gradebook, late penalties, feedback, the formgrader) is
stock nbgrader. Feedback additionally strips hidden tests from the sources.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from ..offline_html import FeedbackHTMLExporter
from ..paths import SOLUTIONS, tool_env
from . import outputs


class InjectVerdicts(NbGraderPreprocessor):
    """Fill each cell's outputs from ``<verdict_dir>/<student>/<lab>.json``."""

    verdict_dir = Unicode("", help="folder of the grader's verdict files").tag(config=True)

    def preprocess(self, nb, resources):
        student = resources["nbgrader"]["student"]
        lab = resources["nbgrader"]["assignment"]
        data = json.loads((Path(self.verdict_dir) / student / f"{lab}.json").read_text(encoding="utf-8"))
        verdicts = {v["grade_id"]: v for v in data["verdicts"]}
        shown = data.get("cell_outputs", {})
        displays = data.get("displays") or {}
        by_source = {d["source_key"]: d for d in displays.values()}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            cell.outputs, cell.execution_count = [], None
            if gid in verdicts:
                v = verdicts[gid]
                if v["passed"]:
                    if v["message"]:
                        cell.outputs.append(new_output("stream", name="stdout", text=v["message"] + "\n"))
                elif v["points"] > 0:
                    # Partial credit (some of an exercise's functions right): nbgrader scores a cell
                    # whose value is a number by that number, so the gradebook records these points.
                    if v["message"]:
                        cell.outputs.append(new_output("stream", name="stdout", text=v["message"] + "\n"))
                    cell.outputs.append(new_output("execute_result", data={"text/plain": repr(float(v["points"]))},
                                                   execution_count=None))
                else:
                    cell.outputs.append(new_output("error", ename="AssertionError", evalue=v["message"],
                                                   traceback=["AssertionError: " + v["message"]]))
            elif displays:
                # What the student's cell printed and drew: an exercise cell by its id, a demonstration
                # cell the student left as released by its source.
                display = displays.get(gid) if gid else None
                if display is None:
                    display = by_source.get(outputs.source_key(cell.source))
                if display is not None:
                    cell.outputs.extend(outputs.notebook_outputs(display))
            elif gid in shown and shown[gid]:
                cell.outputs.append(new_output("stream", name="stdout", text=shown[gid] + "\n"))
        return nb, resources


CONFIG = '''\
# Written by `make grade`: nbgrader settings for this grading run.
import os

import nbgrader
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, GetGrades,
                                    IgnorePattern, LimitOutput, SaveAutoGrades)

from coursetools.grading.nbgrader_bridge import InjectVerdicts
from coursetools.offline_html import TEMPLATES, MathToMathML

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "math-for-deep-learning"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.Autograde.autograde_preprocessors = [InjectVerdicts, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.InjectVerdicts.verdict_dir = {verdict_dir!r}
# Feedback pages that need no network: math as MathML, a template that loads no CDN script.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor, MathToMathML]
# nbgrader's API insists on its template 'feedback'; TEMPLATES/feedback, first on the path, holds only a
# mathjax.html.j2 that replaces the CDN script the stock header loads.
c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), os.path.join(os.path.dirname(nbgrader.__file__),
                                                                       'server_extensions', 'formgrader', 'templates')]
c.ClearHiddenTests.enforce_metadata = False
'''


class NbgraderCourse:
    """``OUT`` as an nbgrader course directory: source/, release/, submitted/, autograded/, feedback/."""

    def __init__(self, root: Path, db_url: str | None = None):
        self.root = Path(root)
        self.db_url = db_url or f"sqlite:///{self.root / 'gradebook.db'}"
        self.verdict_dir = self.root / ".verdicts"
        self._api = None
        self._feedback = None

    def prepare(self, labs: list[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # hidden tests and the gradebook live here
        self.verdict_dir.mkdir(exist_ok=True)
        (self.root / "nbgrader_config.py").write_text(CONFIG.format(verdict_dir=str(self.verdict_dir)),
                                                      encoding="utf-8")
        for lab in labs:
            shutil.copytree(SOLUTIONS / lab, self.root / "source" / lab, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
            self.generate_assignment(lab)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """nbgrader's command line, in a process of its own (for what the in-process API lacks)."""
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--db={self.db_url}",
                               "--log-level=ERROR"], cwd=self.root, capture_output=True, text=True, env=tool_env())
        if proc.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def api(self):
        """nbgrader's own API on this course, in this process (no interpreter start per step: seconds each)."""
        if self._api is None:
            self._api = nbgrader_api(self.root, self.db_url)
        return self._api

    def generate_assignment(self, lab: str) -> None:
        _succeeded(self.api().generate_assignment(lab, force=True), f"generate_assignment {lab}")

    def add(self, student: str, lab: str, notebook, verdicts: dict) -> None:
        target = self.root / "submitted" / student / lab / f"{lab}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
        (self.verdict_dir / student).mkdir(exist_ok=True)
        (self.verdict_dir / student / f"{lab}.json").write_text(json.dumps(verdicts), encoding="utf-8")

    def record(self, student: str, lab: str, notebook, verdicts: dict) -> None:
        """Record one graded submission through nbgrader's autograde, and write its feedback page.

        One submission at a time, as its verdicts arrive: the grader records while its workers
        grade the rest (nbgrader's autograde of one student costs what it costs in a batch).
        """
        self.add(student, lab, notebook, verdicts)
        _succeeded(self.api().autograde(lab, student, force=True), f"autograde {lab} {student}")
        _succeeded(self.feedback_page(lab, student), f"generate_feedback {lab} {student}")

    def feedback_page(self, lab: str, student: str) -> dict:
        """nbgrader's generate_feedback for one student, through one converter kept for the whole run.

        ``NbGraderAPI.generate_feedback`` builds a new HTML exporter per call, and with it compiles
        nbconvert's Jinja templates again (a third of a page's cost); one page at a time, as make grade
        records them, that was paid per submission. The kept converter compiles them once, as a batch does.
        """
        from nbgrader.utils import capture_log, temp_attrs

        if self._feedback is None:
            self._feedback = _kept_feedback_converter(self.api())
        with temp_attrs(self._feedback.coursedir, assignment_id=lab, student_id=student):
            return capture_log(self._feedback)

    def reconcile(self, labs: list[str], keep: set[tuple[str, str]]) -> None:
        """Forget every submission of ``labs`` that this run did not grade: OUT then agrees with SUBMITTED.

        A rerun into an existing OUT would otherwise keep a withdrawn or
        now-broken submission's old grade in the gradebook, its feedback and
        nbgrader's copies while grades.csv says otherwise. For each lab of this
        run, every (student, lab) not in ``keep`` (the ones graded now, which
        autograde then overwrites) loses its gradebook submission, its
        ``submitted/``, ``autograded/`` and ``feedback/`` folders and its
        verdict file; a student left with no submission at all leaves the
        gradebook. Labs outside this run (``--labs``) are not touched.
        """
        from nbgrader.api import Gradebook

        with Gradebook(self.db_url) as gb:
            known = {a.name for a in gb.assignments}
            for lab in labs:
                if lab not in known:
                    continue
                for sub in list(gb.assignment_submissions(lab)):
                    if (sub.student.id, lab) not in keep:
                        gb.remove_submission(lab, sub.student.id)
            for student in list(gb.students):
                if not student.submissions:
                    gb.remove_student(student.id)
        for folder in ("submitted", "autograded", "feedback"):
            base = self.root / folder
            if not base.is_dir() or base.is_symlink():
                continue
            for student_dir in sorted(base.iterdir()):
                for lab in labs:
                    if (student_dir.name, lab) not in keep:
                        _remove(student_dir / lab)
                _remove_if_empty(student_dir)
        if self.verdict_dir.is_dir():
            for student_dir in sorted(self.verdict_dir.iterdir()):
                for lab in labs:
                    if (student_dir.name, lab) not in keep:
                        _remove(student_dir / f"{lab}.json")
                _remove_if_empty(student_dir)

    def scores(self, lab: str) -> dict[str, dict[str, tuple[float, float]]]:
        """student -> grade_id -> (score, max_score), as nbgrader recorded them."""
        from nbgrader.api import Gradebook

        out: dict[str, dict] = {}
        with Gradebook(self.db_url) as gb:
            for sub in gb.assignment_submissions(lab):
                nb = gb.find_submission_notebook(lab, lab, sub.student.id)
                out[sub.student.id] = {g.name: (float(g.score), float(g.max_score)) for g in nb.grades}
        return out


def nbgrader_api(root: Path, db_url: str):
    """An ``NbGraderAPI`` for the course at ``root``, configured by its nbgrader_config.py."""
    _in_process_nbgrader()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    # nbgrader runs `alembic` by name when it creates a gradebook: this interpreter's bin/ must be on PATH.
    os.environ["PATH"] = tool_env()["PATH"] if os.path.dirname(sys.executable) not in \
        os.environ.get("PATH", "").split(os.pathsep) else os.environ["PATH"]
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url
    config.Application.log_level = "ERROR"
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def alembic_head() -> str:
    """The gradebook schema's alembic revision, as ``alembic heads`` prints it, read in this process.

    nbgrader asks a new ``alembic`` process for it whenever it creates a gradebook: two seconds
    of every make grade into a new OUT, for a constant of the installed nbgrader.
    """
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


def _validate_checked_schema(instance, schema) -> None:
    """``jsonschema.validate`` with the schema checked once, not on every call.

    nbgrader validates every cell's metadata against its own constant schema, and
    ``jsonschema.validate`` checks that schema itself each time (nine tenths of the cost).
    """
    import jsonschema

    key = id(schema)
    validator = _VALIDATORS.get(key)
    if validator is None or validator.schema is not schema:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = _VALIDATORS[key] = cls(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error


_VALIDATORS: dict = {}


def _in_process_nbgrader() -> None:
    """nbgrader's per-call constants computed once in this process (same values, same errors)."""
    import types

    import jsonschema
    import nbgrader.api
    from nbgrader.nbgraderformat import common

    nbgrader.api.get_alembic_version = alembic_head
    if nbgrader.api.Gradebook.__init__ is not _gradebook_init:
        global _GRADEBOOK_INIT
        _GRADEBOOK_INIT = nbgrader.api.Gradebook.__init__
        nbgrader.api.Gradebook.__init__ = _gradebook_init
    if not isinstance(common.jsonschema, types.SimpleNamespace):
        common.jsonschema = types.SimpleNamespace(validate=_validate_checked_schema,
                                                  ValidationError=jsonschema.ValidationError)


# db_url -> the SQLAlchemy engine every nbgrader Gradebook on it uses, while shared_gradebook_engine(db_url)
# is active (None until its first Gradebook has made one).
_SHARED_ENGINES: dict = {}
_GRADEBOOK_INIT = None


def _gradebook_init(self, db_url, course_id="default_course", authenticator=None):
    """``Gradebook.__init__``, on the kept engine of a db_url that shared_gradebook_engine() holds.

    nbgrader opens a new Gradebook about ten times per autograded notebook (the converter and
    each of its preprocessors), and each one makes a new engine, checks every table of the
    schema, and compiles every SQL statement it then runs afresh (SQLAlchemy caches compiled
    statements per engine): 18 ms for a Gradebook and one query, against 3 ms on a kept engine.
    A kept engine skips only the table check, done once by its first Gradebook; the course is
    looked up as nbgrader does it. ``Gradebook.close`` disposes the engine's connections as
    before; the engine, and its statement cache, stay for the next Gradebook.
    """
    engine = _SHARED_ENGINES.get(db_url)
    if engine is None:
        _GRADEBOOK_INIT(self, db_url, course_id, authenticator)
        if db_url in _SHARED_ENGINES:
            _SHARED_ENGINES[db_url] = self.engine
        return
    from sqlalchemy.orm import scoped_session, sessionmaker

    self.engine = engine
    self.db = scoped_session(sessionmaker(autoflush=True, bind=engine, future=True))  # as nbgrader makes it
    self.check_course(course_id=course_id)
    self.course_id = course_id
    self.authenticator = authenticator


@contextlib.contextmanager
def shared_gradebook_engine(db_url: str):
    """Within: nbgrader's Gradebooks on ``db_url`` in this process share one engine (see _gradebook_init).

    Only for a stretch in which nothing else replaces or removes the database file: a kept
    engine would not see a new file at the same path.
    """
    _in_process_nbgrader()
    if db_url in _SHARED_ENGINES:  # nested: the outer scope keeps it
        yield
        return
    _SHARED_ENGINES[db_url] = None
    try:
        yield
    finally:
        engine = _SHARED_ENGINES.pop(db_url, None)
        if engine is not None:
            engine.dispose()


def _kept_feedback_converter(api):
    """nbgrader's GenerateFeedback (configured as the API configures it) that builds its exporter once."""
    from nbconvert.writers import FilesWriter
    from nbgrader.converters import GenerateFeedback
    from traitlets.config import Config

    class KeptFeedback(GenerateFeedback):
        _built = False
        exporter_class = FeedbackHTMLExporter

        def start(self) -> None:  # BaseConverter.start, with the writer and exporter made on the first call only
            self.init_notebooks()
            if not self._built:
                self.writer = FilesWriter(parent=self, config=self.config)
                self.exporter = self.exporter_class(parent=self, config=self.config)
                for pp in self.preprocessors:
                    self.exporter.register_preprocessor(pp)
                self._built = True
            here = os.getcwd()
            os.chdir(self.coursedir.root)
            try:
                self.convert_notebooks()
            finally:
                os.chdir(here)

    config = Config()
    config.HTMLExporter.template_name = "feedback"  # as NbGraderAPI.generate_feedback sets it
    converter = KeptFeedback(coursedir=api.coursedir, parent=api)
    converter.update_config(config)
    converter.force = True
    return converter


def _succeeded(result: dict, what: str) -> None:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('error', '')[-3000:]}\n{result.get('log', '')[-3000:]}")


def _remove(path: Path) -> None:
    """Delete ``path`` inside OUT without following a link (a link is removed, not its target)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _remove_if_empty(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()
    except OSError:
        pass


def graded_notebook(release_path: Path, solutions: dict[str, str]):
    """The released notebook with the submission's exercise cells: what nbgrader grades and shows."""
    nb = nbformat.read(release_path, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id") in solutions:
            cell.source = solutions[meta["grade_id"]]
    return nb
