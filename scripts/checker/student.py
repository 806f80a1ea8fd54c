"""Run a student's function: copy its inputs, catch its errors and warnings.

Everything a check learns from a call is collected in a :class:`Call`, so the
comparison can mention warnings and in-place edits, and a crash becomes a
check failure with a readable message instead of a bare traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
import sys
import traceback
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compare import CheckFailure


class RemoteValue:
    """Base class of the grader's stand-ins for objects living in a sandbox process.

    The grader (``coursetools.grading.remote``) subclasses it; :func:`call_student`
    and :func:`student_attr` forward to these methods, so every check works both
    in a notebook and against a sandboxed submission without change.
    """

    remote_type = "object"

    def remote_call(self, name: str, inputs: dict, substitute: dict | None = None) -> "Call":
        raise NotImplementedError

    def remote_getattr(self, attr: str, label: str):
        raise NotImplementedError


class MadeBy:
    """Arguments built where the student's function runs, by a course function the lab hands out.

    A torch model cannot cross into the grader's sandbox: a check that calls the student's function
    on ``build_faulty_net(seed, fault)`` passes ``made[0], made[1]`` for
    ``made = MadeBy("nets", "build_faulty_net", seed=seed, fault=fault)``. In a notebook the check
    builds it here; under ``make grade`` the sandbox builds it with its own (handed-out) copy of the
    function, once per call however many items are used, and only the result of the student's
    function comes back. ``kwargs`` must be plain data.
    """

    def __init__(self, module: str, function: str, **kwargs):
        self.module, self.function, self.kwargs = module, function, kwargs

    def __getitem__(self, item: int) -> "MadeItem":
        return MadeItem(self, item)

    def build(self):
        import importlib

        return getattr(importlib.import_module(self.module), self.function)(**self.kwargs)

    def recipe(self) -> dict:
        """What the sandbox is told: plain data (``wire``'s ``__made__``)."""
        return {"module": self.module, "function": self.function, "kwargs": dict(self.kwargs), "key": id(self)}


@dataclass(frozen=True)
class MadeItem:
    """Item ``item`` of what a :class:`MadeBy` builds (its whole result for ``item=None``)."""

    made: MadeBy
    item: int | None = None


def _built(inputs: dict) -> dict:
    """``inputs`` with every :class:`MadeItem` built here (each :class:`MadeBy` once)."""
    results: dict = {}
    out = {}
    for k, v in inputs.items():
        if isinstance(v, MadeItem):
            if id(v.made) not in results:
                results[id(v.made)] = v.made.build()
            v = results[id(v.made)] if v.item is None else results[id(v.made)][v.item]
        out[k] = v
    return out


@dataclass
class Call:
    """Outcome of one call to a student's function."""

    result: Any
    warnings: list = field(default_factory=list)
    mutated_inputs: list = field(default_factory=list)


_CHECKER_DIR = os.path.dirname(os.path.abspath(__file__))

# A course function the lab does not hand out refuses with these words, in the grader's sandbox
# (coursetools.grading.course_view) and in the student release's kernel (course_access): a call
# that hits one fails here with the reason `make grade` gives, so local and graded verdicts agree.
REFUSAL_MARK = "while grading, this lab hands out"
NOT_HANDED_OUT = "course-function-not-handed-out"


def _lent(function):
    """A check's own function handed to the student's code (e.g. the ``f`` of a numerical gradient).

    The student's code calls it through this checker frame: in the student release, course
    functions called straight from a notebook obey the lab's hand-out list (course_access).
    """
    def lent(*args, **kwargs):
        return function(*args, **kwargs)

    lent.__name__, lent.__doc__ = function.__name__, function.__doc__
    return lent


# Names of the student's namespace replaced by reference functions while a check runs
# (``with_references``): how a mistake in an earlier exercise is charged once, not again.
_SUBSTITUTES: contextvars.ContextVar[dict] = contextvars.ContextVar("substitutes", default={})


@contextlib.contextmanager
def with_references(references: dict):
    """Within the block, every student call sees ``references`` ({name: function}) in place of
    the student's own functions of those names (their earlier exercises)."""
    token = _SUBSTITUTES.set({**_SUBSTITUTES.get(), **references})
    try:
        yield
    finally:
        _SUBSTITUTES.reset(token)


@contextlib.contextmanager
def _substituted(fn, references: dict):
    """Put ``references`` into the module namespace ``fn`` reads its globals from, then restore it."""
    namespace = getattr(fn, "__globals__", None)
    if not references or not isinstance(namespace, dict):
        yield
        return
    missing = object()
    saved = {name: namespace.get(name, missing) for name in references}
    namespace.update({name: ref if isinstance(ref, type) else _lent(ref) for name, ref in references.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def rebased(cls: type, classes: dict) -> type:
    """``cls`` rebuilt with each base named in ``classes`` replaced by that class (a class cascade).

    How a subclass (``NesterovSGD(SGDMomentum)``) is checked with a reference in place of the
    student's earlier class: the same methods, on the reference base, ``super()`` bound to the
    rebuilt class. Bases that are themselves the student's classes built on a named one are rebuilt
    too. Returns ``cls`` itself when nothing is replaced or it cannot be rebuilt. The grader's
    sandbox does the same (``coursetools.grading.sandbox_main.rebased``, on a stand-in base whose
    methods call the reference back in the grader).
    """
    if not classes:
        return cls
    try:
        return _rebase(cls, classes, {})
    except Exception:  # an exotic class (slots, a metaclass of its own): no stand-in, the check stands
        return cls


def _rebase(cls: type, classes: dict, memo: dict) -> type:
    if cls in memo:
        return memo[cls]
    bases = []
    for base in cls.__bases__:
        ref = classes.get(base.__name__)
        if ref is not None and base is not ref:
            bases.append(ref)
        elif base.__module__ == cls.__module__ and any(k.__name__ in classes for k in base.__mro__):
            bases.append(_rebase(base, classes, memo))
        else:
            bases.append(base)
    if bases == list(cls.__bases__):
        memo[cls] = cls
        return cls
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    new = type(cls)(cls.__name__, tuple(bases), namespace)
    new.__qualname__ = cls.__qualname__
    for key, value in namespace.items():
        fixed = _bound_to(value, cls, new)
        if fixed is not value:
            setattr(new, key, fixed)
    memo[cls] = new
    return new


def _bound_to(value, old: type, new: type):
    """``value`` (a method, static or class method, property) with its ``__class__`` cell on ``new``."""
    if isinstance(value, (staticmethod, classmethod)):
        inner = _bound_to(value.__func__, old, new)
        return value if inner is value.__func__ else type(value)(inner)
    if isinstance(value, property):
        parts = [_bound_to(f, old, new) if f is not None else None for f in (value.fget, value.fset, value.fdel)]
        return value if parts == [value.fget, value.fset, value.fdel] else property(*parts, value.__doc__)
    if not isinstance(value, types.FunctionType) or "__class__" not in value.__code__.co_freevars:
        return value
    cells = list(value.__closure__)
    i = value.__code__.co_freevars.index("__class__")
    if cells[i].cell_contents is not old:
        return value
    cells[i] = types.CellType(new)
    fixed = types.FunctionType(value.__code__, value.__globals__, value.__name__, value.__defaults__, tuple(cells))
    fixed.__kwdefaults__, fixed.__qualname__, fixed.__doc__ = value.__kwdefaults__, value.__qualname__, value.__doc__
    fixed.__dict__.update(value.__dict__)
    return fixed


#: Code that is not the student's: the course's modules (scripts/, the checker among them) and the
#: Python installation (numpy, scipy, the standard library). A traceback names the student's own line.
_NOT_STUDENT = tuple(dict.fromkeys(os.path.join(os.path.abspath(d), "") for d in (
    os.path.dirname(_CHECKER_DIR), sys.prefix, sys.base_prefix, sys.exec_prefix)))


def _is_students(filename: str) -> bool:
    return not (filename.startswith("<frozen") or os.path.abspath(filename).startswith(_NOT_STUDENT))


def _cell_label(filename: str) -> str:
    """How the student knows the code block: IPython's ``In[5]`` for a notebook cell, else its name."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        label = shell.compile.format_code_name(filename) if shell is not None else None
    except Exception:  # no IPython, or one without cell names: the file name will do
        label = None
    return label[1] if label else os.path.basename(filename)


def _where(exc: BaseException) -> str:
    """' (in <cell>, line N: source)' of the innermost frame of the student's own code, if any.

    Frames of numpy, scipy or the course's modules that the student's line called are skipped:
    the line to fix is the student's (the sandbox reports ``make grade``'s the same way).
    """
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not os.path.abspath(f.filename).startswith(_CHECKER_DIR)]
    own = [f for f in frames if _is_students(f.filename)]
    if not (own or frames):
        return ""
    f = (own or frames)[-1]
    source = f": {f.line.strip()}" if f.line else ""
    return f" (in {_cell_label(f.filename)}, line {f.lineno}{source})"


def _numpy_only_lab() -> bool:
    """Whether the lab whose check is calling is numpy-only (its checker module's ``NUMPY_ONLY``, True by default)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("checker.lab"):
            return bool(frame.f_globals.get("NUMPY_ONLY", True))
        frame = frame.f_back
    return False


def _is_torch(value) -> bool:
    if isinstance(value, types.ModuleType):
        return value.__name__.split(".")[0] == "torch"
    owner = getattr(value, "__module__", None) if callable(value) else type(value).__module__
    return isinstance(owner, str) and owner.split(".")[0] == "torch"


def _torch_names(fn) -> list[str]:
    """Names bound to PyTorch that ``fn``'s code uses (``import torch`` inside it included), also
    through the student's own functions it calls by name."""
    namespace = getattr(fn, "__globals__", None)
    code = getattr(fn, "__code__", None)
    if not isinstance(namespace, dict) or not isinstance(code, types.CodeType):
        return []
    found, seen, stack = [], set(), [code]
    while stack:
        code = stack.pop()
        if code in seen:
            continue
        seen.add(code)
        for name in code.co_names:
            value = namespace.get(name)
            if name == "torch" or _is_torch(value):
                found.append(name)
            elif isinstance(value, types.FunctionType) and value.__globals__ is namespace:
                stack.append(value.__code__)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return list(dict.fromkeys(found))


def call_student(fn, name: str, **inputs) -> Call:
    """Call ``fn(**inputs)`` on private copies of the inputs.

    Parameters
    ----------
    fn : callable
        The student's function.
    name : str
        Its name, for messages.
    **inputs
        Keyword arguments; they are deep-copied so the student cannot change the
        check's own data, and arrays and flat lists / tuples / dicts of arrays are
        compared afterwards to report in-place edits (``make grade``'s sandbox
        does the same on its side).

    Raises
    ------
    CheckFailure
        If ``fn`` is not callable or raises an ``Exception``.
    """
    references = _SUBSTITUTES.get()
    if isinstance(fn, RemoteValue):
        return fn.remote_call(name, inputs, substitute=references or None)
    if not callable(fn):
        raise CheckFailure(f"{name} is not a function (got {type(fn).__name__}); "
                           f"run the cell that defines it first.")
    if isinstance(fn, type):  # a class built on the student's earlier class: on the reference's instead
        fn = rebased(fn, {k: v for k, v in references.items() if isinstance(v, type)})
    torch_used = _torch_names(fn) if _numpy_only_lab() else []
    inputs = _built(inputs)
    # Deep copies: nothing the student does to its arguments reaches the check's own data.
    copies = {k: (_lent(v) if isinstance(v, types.FunctionType) else v if callable(v) else copy.deepcopy(v))
              for k, v in inputs.items()}
    # Arrays, and lists / tuples / dicts of arrays (a model's parameters): both can be changed in place.
    originals = {k: copy.deepcopy(v) for k, v in copies.items() if _arrays_in(v) is not None}
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="warn", invalid="warn", divide="warn"):
        warnings.simplefilter("always")
        try:
            with _substituted(fn, references):
                result = fn(**copies)
        except NotImplementedError:
            raise CheckFailure(
                f"{name} is not implemented yet: replace `raise NotImplementedError()` "
                f"with your code, then run that cell and this one again.", "not-implemented") from None
        except Exception as exc:  # the student's bug becomes a readable failure
            if isinstance(exc, (AttributeError, ImportError)) and REFUSAL_MARK in str(exc):
                raise CheckFailure(f"{name} uses a course function this lab does not hand out: {exc}. "
                                   f"See TROUBLESHOOTING.md#{NOT_HANDED_OUT}", NOT_HANDED_OUT) from None
            raise CheckFailure(
                f"{name} raised {type(exc).__name__}: {exc}{_where(exc)}\n"
                f"  Inputs: " + ", ".join(
                    f"{k} shape {v.shape}" if isinstance(v, np.ndarray) else _shown(k, v)
                    for k, v in inputs.items()), "raised-exception") from None
    if torch_used and not _holds_tensor(result):
        # make grade refuses torch in a numpy-only lab: the notebook says so too rather than pass the
        # check (a tensor returned is left to the comparison, which names the mistake in full).
        raise CheckFailure(f"{name} uses PyTorch ({', '.join(torch_used)}): this lab's exercises are numpy-only, "
                           f"and make grade does not allow torch in them. Compute the result with numpy.",
                           "torch-in-numpy-exercise")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    mutated = [k for k, v in originals.items() if _changed(copies[k], v)]
    return Call(result, messages, mutated)


def _shown(name: str, value) -> str:
    """``name=value`` for a message; a value whose repr runs long (a model) by its type only."""
    text = repr(value)
    return f"{name}={text}" if len(text) <= 80 else f"{name}: a {type(value).__name__}"


def _holds_tensor(value, depth: int = 0) -> bool:
    """Whether a result is a torch object, or tuples / lists / dicts holding one (a few levels deep)."""
    if isinstance(value, (tuple, list, dict)):
        items = value.values() if isinstance(value, dict) else value
        return depth < 4 and any(_holds_tensor(v, depth + 1) for v in items)
    return _is_torch(value) and not isinstance(value, types.ModuleType)


def _arrays_in(value):
    """The arrays of an array or of a flat list / tuple / dict of arrays (keyed), else None."""
    if isinstance(value, np.ndarray):
        return {(): value}
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        return dict(enumerate(value))
    if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
        return dict(value)
    return None


def _changed(now, before) -> bool:
    """Whether an input (array or container of arrays) differs from its snapshot after the call."""
    now_arrays, before_arrays = _arrays_in(now), _arrays_in(before)
    if now_arrays is None or now_arrays.keys() != before_arrays.keys():
        return True  # the container itself was emptied, extended or re-keyed
    return any(a.shape != before_arrays[k].shape or not _same(a, before_arrays[k]) for k, a in now_arrays.items())


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays, NaN equal to NaN where the dtype has one (strings and objects have none)."""
    numeric = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return bool(np.array_equal(a, b, equal_nan=numeric))


def unpack(result, name: str, fields: tuple[str, ...]):
    """Check that a function returned a tuple of ``len(fields)`` items and return it."""
    if not isinstance(result, (tuple, list)) or len(result) != len(fields):
        got = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise CheckFailure(f"{name} must return a tuple ({', '.join(fields)}); it returned {got}.",
                           "wrong-return-type")
    return tuple(result)


def student_attr(obj, attr: str, name: str = ""):
    """Read an attribute of an object the student's code returned (e.g. an optimizer's ``params``).

    Checks read student state only through this function and :func:`call_student`,
    never by holding on to arrays they passed in: the grader runs student code in
    another process, where both calls are forwarded and the values come back as data.
    """
    label = name or type(obj).__name__
    if isinstance(obj, RemoteValue):
        return obj.remote_getattr(attr, label)
    try:
        return copy.deepcopy(getattr(obj, attr))
    except AttributeError:
        raise CheckFailure(f"{label} has no attribute `{attr}`; keep the attribute names the docstring gives.",
                           "wrong-return-type") from None


def refuse_tensor(value, name: str) -> None:
    """Fail when a torch tensor (or its grader proxy) comes back where numpy data is due.

    For labs where students may compute with PyTorch but must return numpy.
    """
    from .compare import describe_type

    kind = describe_type(value)
    if kind.startswith("torch"):
        raise CheckFailure(
            f"{name} returned a {kind}; compute with PyTorch if you like, but return numpy data: "
            f"`t.detach().numpy()` for an array, `t.item()` for a number.", "wrong-return-type")
