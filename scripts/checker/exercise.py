"""Bookkeeping for one check: compare several quantities, print one line on success."""

from __future__ import annotations

import contextlib
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
        try:
            with with_references(references), contextlib.redirect_stdout(io.StringIO()):
                check(*args, **kwargs)
        except CheckFailure:
            raise failure from None
        names = " and ".join(f"`{name}`" for name in depends_on)
        faults = "; ".join(f"`{name}` fails {exercise}" for name, (_, exercise) in depends_on.items())
        print(f"✓ correct given a correct {names}; {faults}, where that mistake is charged "
              f"(this exercise keeps its points).")
        return None


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
