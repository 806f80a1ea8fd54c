"""Bookkeeping for one check: compare several quantities, print one line on success."""

from __future__ import annotations

from .compare import GRADIENT_TOL, Match, Tolerance, compare, summarise
from .student import Call


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
