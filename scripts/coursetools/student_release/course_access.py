"""Which course functions each lab hands out, enforced in your own kernel as the grader does.

A lab's first cell imports a few helpers (``from math_utils import make_rng``).
When your notebook is graded, every other function of the course's modules is
out of reach, because several of them would answer an exercise. This module
applies the same rule while you work, so a notebook that passes its checks at
home does not lose the points at grading:

* a course function called from your own code (the notebook's ``__main__``)
  works only if the lab you are working on hands it out; otherwise it raises an
  ``AttributeError`` naming what the lab does hand out, and the check reports
  ``course-function-not-handed-out`` (see TROUBLESHOOTING.md);
* the course's modules call each other freely (a check may use anything).

The lab you are working on is the one whose checks your notebook imported
(``from checker.lab01 import ...``). The tables below are written by the
course's release tool from each lab's first cell.
"""

from __future__ import annotations

import inspect
import marshal
import os
import sys

#: In every refusal message (the grader uses the same words).
REFUSAL_MARK = "while grading, this lab hands out"
MISCONCEPTION = "course-function-not-handed-out"

#: {lab: {module: [names the lab's first cell imports]}}; filled in by the release tool.
HANDED_OUT: dict[str, dict[str, list[str]]] = {}
#: {checker module: lab}: importing a lab's checks says which lab this kernel works on.
LAB_OF_CHECKER: dict[str, str] = {}

_COMPILED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_compiled")


def current_labs() -> list[str]:
    """The labs whose checks this kernel imported (normally exactly one)."""
    return [lab for module, lab in LAB_OF_CHECKER.items() if module in sys.modules]


def offered(module: str, labs: list[str]) -> str:
    names = set.intersection(*(set(HANDED_OUT.get(lab, {}).get(module, ())) for lab in labs)) if labs else set()
    return f"only {', '.join(sorted(names))}" if names else "nothing"


def refusal(module: str, name: str, labs: list[str]) -> AttributeError:
    """The grader's message for a course function the lab does not hand out."""
    return AttributeError(f"{module}.{name}: {REFUSAL_MARK} {offered(module, labs)} from {module}; "
                          f"write the exercise's math yourself")


def handed_out(module: str, name: str, labs: list[str], function=None) -> bool:
    """Whether every lab in ``labs`` hands out ``module.name``, directly or as the same function
    re-exported by another course module (lab 03 hands out landscape's ``mlp_loss`` through
    ``checker.lab03``; the grader keeps it for the same reason: it is the same object)."""
    def by_lab(lab):
        table = HANDED_OUT.get(lab, {})
        if name in table.get(module, ()):
            return True
        return function is not None and any(
            getattr(sys.modules.get(other), alias, None) is function
            for other, aliases in table.items() for alias in aliases)
    return all(by_lab(lab) for lab in labs)


def _from_student(frame) -> bool:
    """Code in the notebook itself (cells and the functions they define) runs as ``__main__``."""
    return frame is not None and frame.f_globals.get("__name__") == "__main__"


def _guarded(function, module: str, name: str):
    def guarded(*args, **kwargs):
        if _from_student(sys._getframe(1)):
            labs = current_labs()
            if labs and not handed_out(module, name, labs, guarded):
                raise refusal(module, name, labs)
        return function(*args, **kwargs)

    guarded.__name__, guarded.__qualname__ = function.__name__, function.__qualname__
    guarded.__doc__, guarded.__module__ = function.__doc__, module
    try:
        guarded.__signature__ = inspect.signature(function)
    except (TypeError, ValueError):
        pass
    return guarded


def withheld(module: str, name: str):
    """A stand-in for a course function no lab hands out (its body would answer an exercise)."""
    def stand_in(*args, **kwargs):
        raise refusal(module, name, current_labs() or list(HANDED_OUT))

    stand_in.__name__ = stand_in.__qualname__ = name
    stand_in.__module__ = module
    stand_in.__doc__ = f"Not part of the student release: {module}.{name} answers an exercise."
    return stand_in


def guard(namespace: dict, module: str, withheld_names=()) -> None:
    """Wrap every function defined in ``namespace`` (a course module's globals) so that calls from a
    notebook obey its lab's list, and add stand-ins for the functions the release leaves out."""
    for name, value in list(namespace.items()):
        if name.startswith("__") or not inspect.isfunction(value):
            continue
        if value.__module__ == namespace.get("__name__"):
            namespace[name] = _guarded(value, module, name)
    for name in withheld_names:
        namespace[name] = withheld(module, name)


#: Course modules that only serve the student's own notebook (the progress view, links after a
#: failure): nothing in them answers an exercise, and the notebook calls them directly.
UNGUARDED = frozenset({"checker.notebook"})


def load_compiled(namespace: dict, module: str) -> None:
    """Run the release's compiled copy of ``module`` in ``namespace`` (the stub module's globals).

    The course's checks and model helpers ship as bytecode, one copy per Python version: their
    reference computations would otherwise be an answer key in plain sight.
    """
    tag = sys.implementation.cache_tag
    path = os.path.join(_COMPILED, tag, module + ".bin")
    if not os.path.exists(path):
        built = sorted(os.listdir(_COMPILED)) if os.path.isdir(_COMPILED) else []
        raise ImportError(f"{module}: this release of the course was built for {', '.join(built) or 'no Python'}, "
                          f"not {tag}; use one of those Python versions (see README.md)", name=module)
    with open(path, "rb") as handle:
        magic, code = handle.read(16), handle.read()
    import importlib.util

    if magic[:4] != importlib.util.MAGIC_NUMBER:
        raise ImportError(f"{module}: compiled for another Python build than {tag}; rebuild the release",
                          name=module)
    exec(marshal.loads(code), namespace)
    if module not in UNGUARDED:
        guard(namespace, module)
