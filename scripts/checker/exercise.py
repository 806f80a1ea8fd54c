"""Bookkeeping for one check: compare several quantities, print one line on success."""

from __future__ import annotations

import contextlib
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
