"""The course checker: compare student work with trusted references and explain mismatches.

Public pieces:

* :func:`compare` and :class:`Tolerance`: one quantity against its reference;
* :data:`CATALOGUE`: the misconception catalogue (``checker.catalogue``);
* ``checker.lab01`` ... : the check functions each lab's grade cells call;
* :func:`progress`: the lab's checks that pass in this kernel session (last cell of each lab).
"""

from .catalogue import BY_NAME, CATALOGUE, Evidence, Misconception, diagnose
from .compare import GRADIENT_TOL, CheckFailure, Match, Tolerance, compare
from .notebook import install as _install_notebook_hook, progress

# In a Jupyter kernel: remember each cell's outcome for progress(), link TROUBLESHOOTING after a failure.
_install_notebook_hook()

__all__ = ["BY_NAME", "CATALOGUE", "Evidence", "Misconception", "diagnose",
           "GRADIENT_TOL", "CheckFailure", "Match", "Tolerance", "compare", "progress"]
