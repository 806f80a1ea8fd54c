"""Grade one submission: student cells in the sandbox, trusted grade cells in the grader."""

from __future__ import annotations

import ast
import contextlib
import io
import numbers
import time
import traceback
from dataclasses import asdict, dataclass, field

from checker.compare import CheckFailure
from checker.exercise import describe_parts, scoring_by_value

from . import outputs
from .course_view import MISCONCEPTION as NOT_HANDED_OUT, REFUSAL_MARK
from .remote import SubmissionNames
from .isolation import Isolation
from .sandbox import Limits, Sandbox, SandboxDied, SandboxKilled, SandboxTimeout, SandboxViolation
from .trusted import TrustedLab, strip_magics
from .zygote import ZygoteGone, ZygotePool

OUTPUT_CAP = 20_000


@dataclass
class Verdict:
    """The outcome of one grade cell for one submission."""

    grade_id: str
    points: float
    max_points: float
    passed: bool
    message: str = ""        # the check's failure message, or its success line(s)
    misconception: str = ""  # catalogue name when the check recognised one
    parts: str = ""          # per function of a several-function check: "sigmoid_grad ok; relu_grad <mistake>"


@dataclass
class SubmissionResult:
    student: str
    lab: str
    status: str = "graded"   # or "error"
    reason: str = ""
    verdicts: list = field(default_factory=list)
    cell_outputs: dict = field(default_factory=dict)  # exercise grade_id -> text shown under it
    displays: dict = field(default_factory=dict)      # cell label -> what it showed (see SubmissionRunner.keep_display)
    layers: dict = field(default_factory=dict)        # the isolation layers its sandbox reported
    timings: dict = field(default_factory=dict)       # wall seconds: "start" (sandboxes), "cells", "checks"

    def to_json(self) -> dict:
        d = asdict(self)
        return d

    @property
    def score(self) -> float:
        return sum(v["points"] if isinstance(v, dict) else v.points for v in self.verdicts)


class SubmissionRunner:
    """Keeps a sandbox with the submission's cells loaded, restarting it after a crash or timeout."""

    def __init__(self, trusted: TrustedLab, cells: list[tuple[str, str]], limits: Limits,
                 isolation: Isolation | None, workdir, pool: ZygotePool | None = None):
        self.trusted, self.cells, self.limits = trusted, cells, limits
        self.isolation, self.workdir, self.pool = isolation, workdir, pool
        self.sandbox: Sandbox | None = None
        self.names: dict = {}
        self.bad_cells: set[str] = set()   # cells that hung or killed the process: skipped on restart
        self.cell_outputs: dict[str, str] = {}
        self.text_spent = 0   # characters of printed output kept so far (outputs.NOTEBOOK_TEXT_CHARS)
        self.displays: dict[str, dict] = {}  # every student cell's printed text and figures, for the feedback
        self.deadline: float | None = None   # wall-clock backstop of the notebook (time.monotonic())
        self.cpu_spent = 0.0                 # CPU seconds used by this notebook's earlier sandboxes
        self.layers: dict = {}
        self.timings = {"start": 0.0, "cells": 0.0, "checks": 0.0}

    def cpu_used(self) -> float:
        """CPU seconds the submission's code has used, over every sandbox it needed."""
        live = self.sandbox.cpu_used() if self.sandbox is not None and self.sandbox.pid else 0.0
        return self.cpu_spent + live

    def out_of_time(self) -> bool:
        over_wall = self.deadline is not None and time.monotonic() >= self.deadline
        return over_wall or self.cpu_used() >= self.limits.notebook_seconds

    def ensure(self) -> Sandbox:
        if self.sandbox is not None and self.sandbox.proc is not None:
            return self.sandbox
        if self.sandbox is not None:
            self.cpu_spent += max(self.sandbox.cpu_seen, self.sandbox.cpu_used())
            self.sandbox = None
        if self.out_of_time():
            raise SandboxTimeout(f"the notebook's grading time ({self.limits.notebook_seconds:.0f} s of CPU) ran out")
        started = time.perf_counter()  # a sandbox server's own start-up included, when one is needed
        zygote = None
        if self.pool is not None:
            try:
                zygote = self.pool.get(self.trusted.numpy_only, self.trusted.preload, self.trusted.handed_out,
                                       self.limits, self.isolation)
            except ZygoteGone as exc:
                raise SandboxKilled(f"the sandbox server did not start ({exc})") from None
        self.sandbox = Sandbox(self.trusted.numpy_only, preload=self.trusted.preload,
                               handed_out=self.trusted.handed_out, limits=self.limits, isolation=self.isolation,
                               workdir=self.workdir, cpu_allowance=self.limits.notebook_seconds - self.cpu_spent,
                               zygote=zygote)
        self.sandbox.start()
        self.timings["start"] += time.perf_counter() - started
        started = time.perf_counter()
        try:
            return self._load_cells()
        finally:
            self.timings["cells"] += time.perf_counter() - started

    def _load_cells(self) -> Sandbox:
        """Run the setup cells and the student's cells in the new sandbox, skipping cells that hung it before."""
        self.layers = self.sandbox.layers
        self.sandbox.deadline = self.deadline
        cells = list(self.trusted.setup_cells) + list(self.cells)
        setup_ids = {gid for gid, _ in self.trusted.setup_cells}
        for gid, source in cells:
            if gid in self.bad_cells:
                continue
            try:
                reply, figures = self.sandbox.request({"op": "exec", "cell": gid, "source": strip_magics(source)})
            except (SandboxTimeout, SandboxDied, SandboxViolation) as exc:
                self.bad_cells.add(gid)
                self.cell_outputs[gid] = f"This cell did not finish: {exc}"
                self.keep_display(gid, source, self.cell_outputs[gid], [], 0, False)
                self.sandbox.close()
                return self.ensure()
            text = reply.get("output", "")
            if not reply.get("ok"):
                text += f"\n{reply.get('error')}"
            if gid in self.trusted.solution_ids:
                self.cell_outputs[gid] = text.strip()[:OUTPUT_CAP]
            if gid not in setup_ids:
                self.keep_display(gid, source, text, figures, reply.get("figures_dropped"), bool(reply.get("ok")))
        reply, _ = self.sandbox.request({"op": "names"})
        self.names = reply.get("names", {})
        return self.sandbox

    def keep_display(self, label: str, source: str, text: str, figures, dropped, ok: bool) -> None:
        """Keep what a student cell showed, as plain data for the feedback page (outputs.py).

        An exercise cell's error is the student's to see; a demonstration cell that fails only
        in the sandbox (it calls a course helper that runs outside student code while grading)
        shows its figures but not that error, which the student's own notebook never showed.
        """
        if not ok and label not in self.trusted.solution_ids:
            text = ""
        display, self.text_spent = outputs.charge_text(outputs.cell_display(source, text, figures, dropped),
                                                       self.text_spent)
        self.displays[label] = display

    def close(self):
        if self.sandbox is not None:
            self.sandbox.close()


def _run_cell(source: str, label: str, ns: dict, local) -> object:
    """Run a grade cell as IPython does: every statement, then the value of a trailing expression
    (None when the cell ends otherwise). That value is what nbgrader takes as partial credit."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, label, "exec"), ns, local)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), label, "eval"), ns, local)


def _verdict_of_value(cell, value, message: str) -> Verdict:
    """Full points, or, when the cell's value is a number (nbgrader's partial credit), that many
    points within [0, cell.points]; a check of several functions records which are right."""
    parts = getattr(value, "parts", None)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return Verdict(cell.grade_id, cell.points, cell.points, True, message)
    points = min(max(float(value), 0.0), float(cell.points))
    failure = getattr(value, "failure", None)
    return Verdict(cell.grade_id, points, cell.points, points == cell.points, message,
                   getattr(failure, "misconception", "") or "", describe_parts(parts) if parts else "")


def _explain_missing(name: str, runner: SubmissionRunner) -> tuple[str, str]:
    """Why ``name`` is missing, and the misconception: a failed cell's error, if any, says it."""
    failed = [f"{gid}: {out.splitlines()[-1]}" for gid, out in runner.cell_outputs.items()
              if out and ("Error" in out.splitlines()[-1] or "did not finish" in out)]
    hint = f" A cell of yours failed: {'; '.join(failed)}" if failed else " Run the cell that defines it."
    if any(REFUSAL_MARK in line for line in failed):
        return (f"{name} is not defined.{hint} See TROUBLESHOOTING.md#{NOT_HANDED_OUT}", NOT_HANDED_OUT)
    return f"{name} is not defined.{hint}", "not-defined"


def grade_submission(trusted: TrustedLab, student: str, cells, limits: Limits | None = None,
                     isolation: Isolation | None = None, workdir=None, pool: ZygotePool | None = None
                     ) -> SubmissionResult:
    """Run every trusted grade cell of ``trusted`` against a submission.

    ``cells`` is the submission's code to run, in order: a list of
    (label, source), or a dict grade_id -> source of exercise cells only.
    ``pool`` holds sandbox servers to fork the sandbox from (None: a new interpreter each time).
    """
    if isinstance(cells, dict):
        cells = [(gid, cells.get(gid, "")) for gid in trusted.solution_ids]
    result = SubmissionResult(student, trusted.lab)
    limits = limits or Limits()
    runner = SubmissionRunner(trusted, cells, limits, isolation, workdir, pool)
    runner.deadline = time.monotonic() + limits.notebook_seconds * limits.wall_factor
    try:
        for cell in trusted.grade_cells:
            if runner.out_of_time():
                result.verdicts.append(Verdict(
                    cell.grade_id, 0.0, cell.points, False,
                    f"Not graded: this notebook used up its {limits.notebook_seconds:.0f} s of grading time "
                    f"(CPU) before this check (slow or endless code in an earlier exercise).", "timeout"))
                continue
            out = io.StringIO()
            started = None
            try:
                sandbox = runner.ensure()
                started = time.perf_counter()
                local = SubmissionNames(sandbox, runner.names, trusted.globals())
                ns = trusted.globals()
                with contextlib.redirect_stdout(out), scoring_by_value():
                    value = _run_cell(cell.source, f"<grade {cell.grade_id}>", ns, local)
                verdict = _verdict_of_value(cell, value, out.getvalue().strip())
            except CheckFailure as failure:
                verdict = Verdict(cell.grade_id, 0.0, cell.points, False, str(failure),
                                  failure.misconception or "")
            except NameError as exc:
                name = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
                verdict = Verdict(cell.grade_id, 0.0, cell.points, False, *_explain_missing(name, runner))
            except SandboxTimeout as exc:
                verdict = Verdict(cell.grade_id, 0.0, cell.points, False,
                                  f"Your code did not finish in its grading time: {exc}", "timeout")
            except (SandboxDied, SandboxViolation) as exc:
                verdict = Verdict(cell.grade_id, 0.0, cell.points, False,
                                  f"Your code stopped the grader's process: {exc}", "crashed")
            except Exception as exc:  # a failure inside the check on odd student data: no points, say why
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                verdict = Verdict(cell.grade_id, 0.0, cell.points, False,
                                  f"The check could not use what your code returned: {last}", "raised-exception")
            result.verdicts.append(verdict)
            if started is not None:
                runner.timings["checks"] += time.perf_counter() - started
    finally:
        runner.close()
    result.cell_outputs = runner.cell_outputs
    result.displays = outputs.within_budget(runner.displays)
    result.layers = runner.layers
    result.timings = runner.timings
    return result
