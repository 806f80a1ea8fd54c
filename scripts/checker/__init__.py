"""The course checker: compare student work with trusted references and explain mismatches.

Public pieces:

* :func:`compare` and :class:`Tolerance`: one quantity against its reference;
* :data:`CATALOGUE`: the misconception catalogue (``checker.catalogue``);
* ``checker.lab01`` ... : the check functions each lab's grade cells call.
"""

from .catalogue import BY_NAME, CATALOGUE, Evidence, Misconception, diagnose
from .compare import GRADIENT_TOL, CheckFailure, Match, Tolerance, compare

__all__ = ["BY_NAME", "CATALOGUE", "Evidence", "Misconception", "diagnose",
           "GRADIENT_TOL", "CheckFailure", "Match", "Tolerance", "compare"]
