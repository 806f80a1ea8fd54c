"""What of the course's own modules a submission can reach while it is graded.

``math_utils``, ``landscape``, ``nets`` and the ``checker`` package hold
reference implementations of many exercises (``math_utils.sigmoid_grad`` *is*
lab 01's exercise 2). A lab hands students a few of those names in its setup
cell (``from math_utils import make_rng, relative_error``); everything else must
be out of reach, or one import line would earn an exercise's points.

:func:`seal` runs in the sandbox before its audit hook goes up. It keeps, in
each course module, the names the lab hands out and whatever those need to
work (followed through the global names their code loads, their defaults,
closures and classes), and deletes the rest from the module's own namespace.
Deleting from the real namespace matters: every function's ``__globals__`` *is*
that namespace, so no reference a submission can find leads to a deleted name.
The audit hook then refuses reads of the course's source folder, so a fresh
copy cannot be loaded from disk either.

Functions of the ``checker`` package that a lab hands out become inert
stand-ins: checks run in the grader, never next to the code they judge.
"""

from __future__ import annotations

import dis
import functools
import os
import sys
import types

#: In every refusal message; the grader recognises it and names the misconception.
REFUSAL_MARK = "while grading, this lab hands out"
MISCONCEPTION = "course-function-not-handed-out"

# Names every module keeps: the import system and the interpreter need them.
_MODULE_DUNDERS = frozenset({"__name__", "__doc__", "__package__", "__path__", "__builtins__",
                             "__spec__", "__loader__", "__file__", "__cached__"})
_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"})


def course_modules(scripts_dir: str, exclude: str = "coursetools") -> dict[str, types.ModuleType]:
    """Loaded modules whose source lies in ``scripts_dir``, the grader's own package excepted.

    By file, not by name: the sandbox itself runs as ``__main__``.
    """
    root = os.path.realpath(scripts_dir) + os.sep
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not isinstance(module, types.ModuleType) or not isinstance(path, str):
            continue
        path = os.path.realpath(path)
        if path.startswith(root) and not path.startswith(root + exclude + os.sep):
            found[name] = module
    return found


def global_names(code: types.CodeType) -> set[str]:
    """Global names the code (and code nested in it: lambdas, inner functions) loads or stores."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in _LOADS}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def needed(roots, course: dict[str, types.ModuleType]) -> tuple[dict[str, set[str]], set[str]]:
    """The names each course module must keep for ``roots`` to work.

    Returns ``(keep, whole)``: ``keep[module]`` the global names its functions
    reach, and ``whole`` the modules reached as module objects (kept entire,
    since any attribute of them may be used).
    """
    course_dicts = {id(m.__dict__): name for name, m in course.items()}
    keep: dict[str, set[str]] = {name: set() for name in course}
    whole: set[str] = set()
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            if obj.__name__ in course and obj.__name__ not in whole:
                whole.add(obj.__name__)
                stack.extend(vars(obj).values())
        elif isinstance(obj, types.FunctionType):
            owner = course_dicts.get(id(obj.__globals__))
            if owner is None:
                continue  # numpy's, torch's or the student's own: nothing of the course behind it
            for name in global_names(obj.__code__):
                if name in obj.__globals__:
                    keep[owner].add(name)
                    stack.append(obj.__globals__[name])
            stack.extend(obj.__defaults__ or ())
            stack.extend((obj.__kwdefaults__ or {}).values())
            stack.extend(cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))
            stack.extend(vars(obj).values())
        elif isinstance(obj, (staticmethod, classmethod)):
            stack.append(obj.__func__)
        elif isinstance(obj, property):
            stack.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, functools.partial):
            stack.extend((obj.func, *obj.args, *obj.keywords.values()))
        elif isinstance(obj, type):
            if _module_of(obj) in course:
                stack.extend(vars(obj).values())
                stack.extend(obj.__bases__)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif _module_of(type(obj)) in course:
            stack.append(type(obj))
            stack.extend(getattr(obj, "__dict__", {}).values())
    return keep, whole


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _module_of(obj) -> str:
    return getattr(obj, "__module__", None) or ""


def inert_check(name: str):
    """A stand-in for a check function: in the sandbox a check only says where it really runs."""
    def inert(*args, **kwargs):
        print(f"[{name}: the grader runs this check outside your code]")
    inert.__name__ = inert.__qualname__ = name
    return inert


def offered(kept: list[str]) -> str:
    return f"only {', '.join(kept)}" if kept else "nothing"


def _refusal(module_name: str, kept: list[str]):
    offered_names = offered(kept)

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(f"{module_name}.{attr}: {REFUSAL_MARK} {offered_names} from {module_name}; "
                             f"write the exercise's math yourself")
    return __getattr__


def seal(handed_out: dict[str, list[str] | None], scripts_dir: str) -> dict[str, list[str]]:
    """Cut every course module down to what the lab hands out; returns what each module keeps.

    Parameters
    ----------
    handed_out : dict
        ``{module: [names]}`` as the lab's setup cells import them
        (``from module import names``); ``None`` for a whole module
        (``import module``), which is then left as it is.
    scripts_dir : str
        The folder the course's modules are loaded from.
    """
    for name in handed_out:
        try:
            __import__(name)
        except ImportError:
            pass  # the setup cell will report it
    course = course_modules(scripts_dir)
    roots: list = []
    whole_by_request = {name for name, names in handed_out.items() if names is None and name in course}
    for name in whole_by_request:
        roots.append(course[name])
    for name, names in handed_out.items():
        module = course.get(name)
        if module is None or names is None:
            continue
        for attr in names:
            value = module.__dict__.get(attr)
            if isinstance(value, types.FunctionType) and _module_of(value).split(".")[0] == "checker":
                module.__dict__[attr] = inert_check(attr)
            elif attr in module.__dict__:
                roots.append(value)
    keep, whole = needed(roots, course)
    for name, names in handed_out.items():
        if name in keep and names is not None:
            keep[name] |= {attr for attr in names if attr in course[name].__dict__}
    kept_by_module = {}
    for name, module in course.items():
        if name in whole:
            kept_by_module[name] = sorted(k for k in vars(module) if not k.startswith("__"))
            continue
        namespace = module.__dict__
        for attr in list(namespace):
            if attr in _MODULE_DUNDERS or attr in keep[name]:
                continue
            if isinstance(namespace[attr], types.ModuleType) and namespace[attr].__name__ in course:
                continue  # a package's submodule: itself cut down
            del namespace[attr]
        kept = sorted(attr for attr in keep[name] if attr in (handed_out.get(name) or ()))
        namespace["__getattr__"] = _refusal(name, kept)
        kept_by_module[name] = kept
    return kept_by_module
