"""Stand-ins, in the grader, for the functions and objects of a sandboxed submission."""

from __future__ import annotations

import builtins

import numpy as np

from checker.compare import CheckFailure
from checker.student import Call, MadeItem, RemoteValue

from . import wire
from .course_view import MISCONCEPTION as NOT_HANDED_OUT, REFUSAL_MARK
from .sandbox import Sandbox, SandboxDied, SandboxTimeout, SandboxViolation


class RemoteObject(RemoteValue):
    """A student function, class, instance or method that lives in the sandbox.

    ``target`` is ``{"name": ...}`` for a top-level name or a handle dict.
    Calls go through :meth:`remote_call`; attributes through :meth:`remote_getattr`.
    """

    def __init__(self, sandbox: Sandbox, target: dict, type_name: str = "function"):
        self._sandbox = sandbox
        self._target = target
        self.remote_type = type_name

    # A check may also call a student function directly.
    def __call__(self, **kwargs):
        return self.remote_call(self._target.get("name", "student function"), kwargs).result

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return self.remote_getattr(attr, self._target.get("name", self.remote_type))

    def _encode(self, value):
        def to_handle(obj):
            if isinstance(obj, MadeItem):  # built in the sandbox by a course function (a torch model)
                recipe = obj.made.recipe()
                recipe["kwargs"], arrays = wire.encode(recipe["kwargs"])  # plain data only: no objects ...
                if arrays:
                    raise wire.WireError("the arguments of a course function the sandbox runs must not be arrays")
                return {"__made__": recipe, "item": obj.item}
            if isinstance(obj, RemoteObject):
                return {k: v for k, v in obj._target.items()} if "__handle__" in obj._target else \
                    {"__handle__": -1}
            if callable(obj):  # a grader-side function the student's code may call (e.g. f in f'(x))
                return {"__func__": self._sandbox.register_callback(obj)}
            raise wire.WireError(f"the grader cannot send a {type(obj).__name__}")
        return wire.encode(value, to_handle)

    def _decode(self, tree, arrays):
        return wire.decode(tree, arrays, from_handle=lambda ref: RemoteObject(
            self._sandbox, ref, ref.get("type", "object")))

    def remote_call(self, name: str, inputs: dict, substitute: dict | None = None) -> Call:
        tree, arrays = self._encode(inputs)
        request = {"op": "call", "target": self._target, "kwargs": tree}
        if substitute:
            # Reference functions that stand in for the student's earlier ones during this call:
            # they run here, in the grader, called back from the sandbox. A reference class stands
            # in for the student's base class the same way, method by method (ReferenceClass).
            request["substitute"] = {name: ReferenceClass(fn).handle(self._sandbox) if isinstance(fn, type)
                                     else {"__func__": self._sandbox.register_callback(fn)}
                                     for name, fn in substitute.items()}
        try:
            reply, reply_arrays = self._sandbox.request(request, arrays)
        except SandboxTimeout as exc:
            raise CheckFailure(f"{name} did not finish ({exc}): is there an endless loop?", "timeout") from None
        except SandboxDied as exc:
            raise CheckFailure(f"{name} ended the Python process running it ({exc}): "
                               f"os._exit, a crash, or more memory than the limit.", "crashed") from None
        except SandboxViolation as exc:
            raise CheckFailure(f"{name}: {exc}.", "sandbox-violation") from None
        status = reply.get("status")
        if status == "not-implemented":
            raise CheckFailure(f"{name} is not implemented yet: replace `raise NotImplementedError()` "
                               f"with your code, then run that cell and this one again.", "not-implemented")
        if status == "error":
            kind, message = reply.get("type", "Exception"), reply.get("message", "")
            if kind == "ImportError" and "numpy-only" in message:
                raise CheckFailure(f"{name} imports PyTorch: {message}. Compute the result with numpy.",
                                   "torch-in-numpy-exercise")
            if kind in ("AttributeError", "ImportError") and REFUSAL_MARK in message:
                raise CheckFailure(f"{name} uses a course function this lab does not hand out: {message}. "
                                   f"See TROUBLESHOOTING.md#{NOT_HANDED_OUT}", NOT_HANDED_OUT)
            if kind == "PermissionError" and "not allowed while grading" in message:
                raise CheckFailure(f"{name} did something grading does not allow: {message}.", "sandbox-violation")
            raise CheckFailure(f"{name} raised {kind}: {message}{reply.get('where', '')}", "raised-exception")
        if status != "ok":
            raise CheckFailure(f"{name}: the grader got no usable answer ({reply}).", "raised-exception")
        try:
            result = self._decode(reply["result"], reply_arrays)
        except wire.WireError as exc:
            raise CheckFailure(f"{name} returned something that is not data: {exc}", "wrong-return-type") from None
        return Call(result, list(reply.get("warnings", [])), list(reply.get("mutated", [])))

    def remote_getattr(self, attr: str, label: str):
        if "__handle__" not in self._target:
            raise CheckFailure(f"{label} has no attribute `{attr}`.", "wrong-return-type")
        try:
            reply, arrays = self._sandbox.request({"op": "getattr", "target": self._target, "attr": attr})
        except (SandboxTimeout, SandboxDied, SandboxViolation) as exc:
            raise CheckFailure(f"reading {label}.{attr} failed: {exc}", "crashed") from None
        if reply.get("missing"):
            raise CheckFailure(f"{label} has no attribute `{attr}`; keep the attribute names the docstring gives.",
                               "wrong-return-type")
        if reply.get("status") == "error":
            raise CheckFailure(f"reading {label}.{attr} raised {reply.get('type')}: {reply.get('message')}",
                               "raised-exception")
        return self._decode(reply["value"], arrays)


class ReferenceClass:
    """A trusted class whose methods the sandbox calls back, on the state of an instance living there.

    How a class cascade is charged once under ``make grade``: the student's subclass (say
    ``NesterovSGD(SGDMomentum)``) is rebuilt in the sandbox on a stand-in base whose every method is a
    call back to the grader. The stand-in sends the instance's data attributes (shared arrays kept
    shared: ``wire.share``) and the call's arguments; this class runs the reference method on a
    fresh instance holding that state, here in the grader, and sends the state back, which the
    sandbox writes into its instance (arrays in place). The reference's code never enters the
    sandbox; what crosses is data the student's own code could have computed.
    """

    def __init__(self, cls: type):
        self.cls = cls
        # Every function of the class and its bases (object's excluded): __init__, step, set_lr, ...
        self.methods = sorted({name for klass in cls.__mro__[:-1] for name, value in vars(klass).items()
                               if callable(value) and not (name.startswith("__") and name != "__init__")})

    def handle(self, sandbox: Sandbox) -> dict:
        return {"__class__": sandbox.register_callback(self.run), "methods": self.methods}

    def run(self, method, tree, arrays):
        """Run ``method`` on an instance with the sandbox's state; (state and result, arrays) back."""
        if method not in self.methods:
            raise AttributeError(f"{self.cls.__name__} has no method {method!r} to call back")
        if type(arrays) is not list or not all(type(a) is np.ndarray for a in arrays):
            raise TypeError("a reference method takes a list of arrays")
        state, args, kwargs = wire.unshare(tree, arrays)
        if type(state) is not dict or type(args) is not list or type(kwargs) is not dict:
            raise TypeError("a reference method takes a state, a list of arguments and a dict of keywords")
        obj = object.__new__(self.cls)
        vars(obj).update(state)
        result = getattr(self.cls, method)(obj, *args, **kwargs)
        # The arrays that came in keep their numbers (the sandbox updates its own in place); new ones follow.
        out, memo = list(arrays), {id(a): i for i, a in enumerate(arrays)}
        return [wire.share([vars(obj), result], out, memo), out]


class SubmissionNames(dict):
    """The local namespace a trusted grade cell runs in.

    Names the cell assigns stay here. Any other name is looked up in the
    trusted globals first (so a submission cannot replace a check function or
    a builtin), then fetched from the sandbox: functions and objects as
    :class:`RemoteObject`, plain data as values.
    """

    def __init__(self, sandbox: Sandbox, names: dict[str, str], trusted: dict):
        super().__init__()
        self._sandbox, self._names, self._trusted = sandbox, names, trusted

    def __missing__(self, key):
        if key in self._trusted or hasattr(builtins, key) or key not in self._names:
            raise KeyError(key)
        if self._names[key] == "callable":
            return RemoteObject(self._sandbox, {"name": key})
        reply, arrays = self._sandbox.request({"op": "get", "name": key})
        if reply.get("missing"):
            raise KeyError(key)
        return wire.decode(reply["value"], arrays, from_handle=lambda ref: RemoteObject(
            self._sandbox, ref, ref.get("type", "object")))

    def __getitem__(self, key):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        return self.__missing__(key)
