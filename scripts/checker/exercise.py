"""Bookkeeping for one check: compare several quantities, print one line on success."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io

from .compare import GRADIENT_TOL, CheckFailure, Match, Tolerance, compare, summarise
from .student import Call, with_references


def charge_once(check, *args, depends_on: dict, **kwargs):
    """Run ``check(*args, **kwargs)``, charging a mistake in an earlier exercise only there.

    Parameters
    ----------
    check : callable
        A check function (raises :class:`CheckFailure` on a mistake).
    depends_on : dict
        ``{name: (reference_function, "Exercise 3")}``: functions from earlier exercises that the
        student's function may call by name.

    When the check fails, it is run again with the reference functions in place of the student's
    own ones. If it passes then, the fault lies in the earlier function, whose own check already
    takes its points: this exercise keeps its points and says so. Otherwise the first failure stands.
    """
    try:
        return check(*args, **kwargs)
    except CheckFailure as failure:
        references = {name: ref for name, (ref, _) in depends_on.items()}
        if not _passes(check, args, kwargs, references):
            raise failure from None
        # Name only the earlier functions whose reference is needed: drop the references one at a
        # time, the latest exercise's first, keeping each drop after which the check still passes
        # (so a wrong Exercise 1 is named, not the Exercise 4 function that merely calls it).
        needed = dict(references)
        for name in reversed(list(depends_on)):
            if len(needed) > 1 and _passes(check, args, kwargs, {k: v for k, v in needed.items() if k != name}):
                del needed[name]
        names = " and ".join(f"`{name}`" for name in needed)
        faults = "; ".join(f"`{name}` fails {depends_on[name][1]}" for name in needed)
        print(f"✓ correct given a correct {names}; {faults}, where that mistake is charged "
              f"(this exercise keeps its points).")
        return None


def _passes(check, args, kwargs, references: dict) -> bool:
    """Whether ``check`` passes with ``references`` in place of the student's functions (output hidden)."""
    try:
        with with_references(references), contextlib.redirect_stdout(io.StringIO()):
            check(*args, **kwargs)
    except CheckFailure:
        return False
    return True


def charges_once(**depends_on):
    """Decorator form of :func:`charge_once`: ``@charges_once(stable_softmax=(softmax, "Exercise 1"))``.

    The decorated check keeps its signature, so grade cells call it as before.
    """
    def decorate(check):
        @functools.wraps(check)
        def charged(*args, **kwargs):
            return charge_once(check, *args, depends_on=depends_on, **kwargs)
        return charged
    return decorate


class ExerciseCheck:
    """Collects the comparisons of one check cell.

    Parameters
    ----------
    exercise : str
        Name shown in messages (usually the student's function name).
    reference : str
        Where the expected values come from.
    tol : Tolerance
    """

    def __init__(self, exercise: str, reference: str = "PyTorch autograd", tol: Tolerance = GRADIENT_TOL):
        self.exercise = exercise
        self.reference = reference
        self.tol = tol
        self.matches: list[Match] = []
        self.cases = 0

    def compare(self, quantity, received, expected, call: Call | None = None, case: str = "", **kwargs) -> Match:
        """:func:`checker.compare.compare` with this check's tolerance and the call's evidence.

        ``case`` (e.g. ``"w2=-0.3"``) is named in a failure, not in the summary.
        """
        if call is not None:
            kwargs.setdefault("warnings", call.warnings)
            kwargs.setdefault("mutated_inputs", call.mutated_inputs)
        kwargs.setdefault("reference", self.reference)
        kwargs.setdefault("tol", self.tol)
        where = f"{self.exercise}, {case}" if case else self.exercise
        match = compare(f"{quantity} ({where})", received, expected, **kwargs)
        match.quantity = quantity
        self.matches.append(match)
        return match

    def passed(self) -> None:
        """Print the one-line success summary (returns None so a notebook shows it once)."""
        print(summarise(self.exercise, self.matches, self.reference, self.tol, self.cases))


# ---------------------------------------------------------------------------
# Partial credit: an exercise of several functions earns its points per correct function
# ---------------------------------------------------------------------------

#: Set while a grader scores a grade cell by its value (``scoring_by_value``).
_SCORING_BY_VALUE: contextvars.ContextVar[object] = contextvars.ContextVar("scoring_by_value", default=None)


@contextlib.contextmanager
def scoring_by_value():
    """Within the block, a check of several functions that some fail returns a :class:`PartialScore`
    (the grade cell's value is its points) instead of raising :class:`PartialCredit`."""
    token = _SCORING_BY_VALUE.set(object())   # also names this cell for the ledger of failed parts
    try:
        yield
    finally:
        _SCORING_BY_VALUE.reset(token)


#: Failed parts of the checks run so far in the current grade cell: {check: {function: failure}}.
#: A cell calls a check several times (visible, then hidden inputs); its value is the last call's,
#: so each call scores every failure seen in the cell, not only its own.
_LEDGER: dict = {"cell": None, "failures": {}}


def _cell_key():
    """What identifies the grade cell being run: the scoring block, or the kernel's execution count."""
    scoring = _SCORING_BY_VALUE.get()
    if scoring is not None:
        return scoring
    from .notebook import _shell
    shell = _shell()
    return ("kernel", shell.execution_count) if getattr(shell, "kernel", None) is not None else None


def _with_earlier_failures(check: str, outcomes: dict) -> dict:
    """``outcomes`` with the failures of earlier calls of ``check`` in this cell (when scoring by value)."""
    cell = _cell_key()
    if cell is None:
        return outcomes
    if _LEDGER["cell"] != cell:
        _LEDGER["cell"], _LEDGER["failures"] = cell, {}
    seen = _LEDGER["failures"].setdefault(check, {})
    for name, failure in outcomes.items():
        if failure is not None:
            seen.setdefault(name, failure)
    return {name: seen.get(name) for name in outcomes}


def _earliest(check: str, failed: dict) -> CheckFailure:
    """The failure that happened first in this cell: the root cause the cell is named after.

    A function that hangs or kills the sandbox during the visible call makes every function fail
    in the hidden call (no process left): those later failures are consequences, not the mistake.
    """
    ledger = _LEDGER["failures"].get(check, {}) if _cell_key() is not None else {}
    for name in ledger:
        if name in failed:
            return failed[name]
    return next(iter(failed.values()))


def _scored_by_value() -> bool:
    """In a grader's scoring block, or in a Jupyter kernel, where nbgrader reads the cell's value.

    Only a kernel (a shell with a ``kernel``) counts: an IPython shell some other code started in
    this process does not turn plain ``exec`` of a grade cell into scoring by value.
    """
    if _SCORING_BY_VALUE.get() is not None:
        return True
    from .notebook import _shell
    return getattr(_shell(), "kernel", None) is not None


class PartialScore(float):
    """The points a check of several functions earned when some of them fail.

    A float, so the grade cell's last value is what nbgrader (and ``make grade``) take as the
    cell's score; ``parts`` maps each function to "ok" or the name of its mistake.
    """

    def __new__(cls, points: float, parts: dict, failure: CheckFailure):
        score = super().__new__(cls, points)
        score.parts, score.failure = parts, failure
        return score

    def __repr__(self) -> str:   # nbgrader parses text/plain as a number: show nothing else
        return repr(float(self))

    __str__ = __repr__


class PartialCredit(CheckFailure):
    """Raised instead of returning a :class:`PartialScore` outside a scoring context (plain ``exec``):
    the check still fails, naming the first wrong function's mistake, and carries the points."""

    def __init__(self, score: PartialScore, message: str):
        super().__init__(message, score.failure.misconception)
        self.points, self.parts = float(score), score.parts


def outcome(part) -> CheckFailure | None:
    """None when ``part()`` (the comparisons of one function of a check) passes, else its failure."""
    try:
        part()
    except CheckFailure as failure:
        return failure
    return None


def describe_parts(parts: dict) -> str:
    """``"sigmoid_grad ok; relu_grad relu-derivative-at-zero"``: one entry per function."""
    return "; ".join(f"{name} {outcome}" for name, outcome in parts.items())


def score_parts(points: float, outcomes: dict, summary=None, check: str = ""):
    """Points per correct function for a check of several functions.

    Parameters
    ----------
    points : float
        The grade cell's points, shared equally by the functions.
    outcomes : dict
        ``{function name: None when right, else its CheckFailure}``, in the exercise's order.
    summary : callable, optional
        Prints the success line when every function is right.
    check : str
        Names the check in the ledger of the cell's failed parts (several calls in one cell).

    Returns
    -------
    None when every function is right (full points); a :class:`PartialScore` when some are;
    raises the first failure when none is (no points, its message as usual). Outside a
    scoring context a partial result raises :class:`PartialCredit` instead.
    """
    key = check or ",".join(outcomes)
    outcomes = _with_earlier_failures(key, outcomes)
    failed = {name: f for name, f in outcomes.items() if f is not None}
    if not failed:
        if summary is not None:
            summary()
        return None
    first = _earliest(key, failed)
    if len(failed) == len(outcomes):
        raise first
    parts = {name: "ok" if f is None else (f.misconception or "wrong") for name, f in outcomes.items()}
    right = len(outcomes) - len(failed)
    score = PartialScore(points * right / len(outcomes), parts, first)
    lines = [f"✗ {name}: {failure}" for name, failure in failed.items()]
    lines.append(f"{right} of {len(outcomes)} functions right ({', '.join(n for n, f in outcomes.items() if f is None)}): "
                 f"{float(score):g} of {points:g} points.")
    message = "\n".join(lines)
    if not _scored_by_value():
        raise PartialCredit(score, message)
    print(message)
    return score
