"""A mistake is charged once: a function that calls the student's faulty earlier function keeps its
points when it is right given a correct earlier function (in a notebook and under the grader)."""

from __future__ import annotations

import numpy as np
import pytest

from checker.compare import CheckFailure, compare
from checker.exercise import charge_once
from checker.student import call_student

STUDENT = '''
import numpy as np

def double(x):
    return 3 * x          # the earlier exercise: wrong

def quadruple(x):
    return double(double(x))   # the later one: right, given a right `double`

def quadruple_wrong(x):
    return double(x) + 1

def quadruple_by_keyword(x):
    return double(x=double(x=x))   # right too: the earlier function called by keyword
'''


def _check_quadruple(fn, name="quadruple"):
    x = np.arange(1.0, 4.0)
    compare(f"{name}(x)", call_student(fn, name, x=x).result, 4 * x)
    print("matched")


def _reference_double(x):
    return 2 * x


def _names():
    ns: dict = {"__name__": "__main__"}
    exec(STUDENT, ns)
    return ns


def test_right_given_a_right_earlier_function_keeps_its_points(capsys):
    ns = _names()
    with pytest.raises(CheckFailure):
        _check_quadruple(ns["quadruple"])
    charge_once(_check_quadruple, ns["quadruple"], depends_on={"double": (_reference_double, "Exercise 1")})
    out = capsys.readouterr().out
    assert "correct given a correct `double`; `double` fails Exercise 1" in out
    assert ns["double"](1.0) == 3.0, "the student's own function is back in place afterwards"


def test_a_mistake_of_its_own_is_still_charged():
    ns = _names()
    with pytest.raises(CheckFailure):
        charge_once(_check_quadruple, ns["quadruple_wrong"], "quadruple_wrong",
                    depends_on={"double": (_reference_double, "Exercise 1")})


def test_the_grader_substitutes_in_the_sandbox_too(tmp_path, capsys):
    from coursetools.grading.remote import SubmissionNames
    from coursetools.grading.sandbox import Limits, Sandbox

    with Sandbox(numpy_only=True, limits=Limits(call_seconds=20), workdir=tmp_path) as sandbox:
        reply, _ = sandbox.request({"op": "exec", "cell": "student", "source": STUDENT})
        assert reply["ok"], reply
        reply, _ = sandbox.request({"op": "names"})
        names = SubmissionNames(sandbox, reply["names"], trusted={})
        charge_once(_check_quadruple, names["quadruple"], depends_on={"double": (_reference_double, "Exercise 1")})
        assert "correct given a correct `double`" in capsys.readouterr().out
        with pytest.raises(CheckFailure):
            charge_once(_check_quadruple, names["quadruple_wrong"], "quadruple_wrong",
                        depends_on={"double": (_reference_double, "Exercise 1")})
        assert call_student(names["double"], "double", x=1.0).result == 3.0, "restored in the sandbox"
        # The reference stands in for `double` by a call back to the grader, keywords included (they
        # were dropped, and a right function that calls by keyword lost its points under make grade).
        charge_once(_check_quadruple, names["quadruple_by_keyword"], "quadruple_by_keyword",
                    depends_on={"double": (_reference_double, "Exercise 1")})
        assert "correct given a correct `double`" in capsys.readouterr().out


# A class cascade: the later exercise's class subclasses the student's faulty earlier class.
STUDENT_CLASSES = '''
import numpy as np

class Accumulator:                       # the earlier exercise: its buffer starts at one, not zero
    def __init__(self, params, lr=0.1):
        self.params = [np.asarray(p, dtype=np.float64) for p in params]
        self.caller_params = tuple(self.params)
        self.lr = lr
        self.buffer = [np.ones_like(p) for p in self.params]

    def step(self, grads):
        for p, g, b in zip(self.params, grads, self.buffer):
            b += g
            p -= self.lr * b

class Halving(Accumulator):              # the later one: right, given a right Accumulator
    def __init__(self, params, lr=0.1, factor=0.5):
        super().__init__(params, lr=lr)
        self.factor = factor
        self.log = print                 # not data: stays in the sandbox, never sent to the grader

    def step(self, grads):
        super().step(grads)
        for p in self.params:
            p *= self.factor

class HalvingWrong(Accumulator):         # wrong on a wrong base: still charged
    def step(self, grads):
        Accumulator.step(self, grads)
        for p in self.params:
            p *= 0.25
'''


class _Accumulator:
    """The earlier exercise's class as a correct submission has it (its buffer starts at zero)."""

    def __init__(self, params, lr=0.1):
        self.params = [np.asarray(p, dtype=np.float64) for p in params]
        self.caller_params = tuple(self.params)
        self.lr = lr
        self.buffer = [np.zeros_like(p) for p in self.params]

    def step(self, grads):
        for p, g, b in zip(self.params, grads, self.buffer):
            b += g
            p -= self.lr * b


ACCUMULATOR = {"Accumulator": (_Accumulator, "Exercise 1")}


def _check_halving(cls, name="Halving"):
    """Three steps of ``cls``; its params and the caller's own arrays against trusted numpy."""
    from checker.student import student_attr

    rng = np.random.default_rng(7)
    params = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(3)]
    opt = call_student(cls, name, params=params, lr=0.3).result
    step = opt.step   # as lab 02's checks take a method (student_attr would copy the instance)
    expected, buffers = [p.copy() for p in params], [np.zeros_like(p) for p in params]
    for k, gs in enumerate(grads, start=1):
        call_student(step, f"{name}.step", grads=gs)
        for e, b, g in zip(expected, buffers, gs):
            b += g
            e -= 0.3 * b
            e *= 0.5
        for attr in ("params", "caller_params"):
            got = student_attr(opt, attr, name)
            for i, e in enumerate(expected):
                compare(f"{name}.{attr}[{i}] after step {k}", got[i], e)
    print("matched")


def _classes():
    ns: dict = {"__name__": "__main__"}
    exec(STUDENT_CLASSES, ns)
    return ns


def test_a_subclass_right_given_a_right_base_class_keeps_its_points(capsys):
    ns = _classes()
    with pytest.raises(CheckFailure):
        _check_halving(ns["Halving"])
    charge_once(_check_halving, ns["Halving"], depends_on=ACCUMULATOR)
    assert "correct given a correct `Accumulator`; `Accumulator` fails Exercise 1" in capsys.readouterr().out
    assert ns["Halving"].__bases__ == (ns["Accumulator"],), "the student's class itself is left as it was"
    with pytest.raises(CheckFailure):
        charge_once(_check_halving, ns["HalvingWrong"], "HalvingWrong", depends_on=ACCUMULATOR)


def test_a_class_cascade_under_the_grader(tmp_path, capsys):
    """The subclass is rebuilt in the sandbox on a stand-in whose methods run the reference in the
    grader: the caller's arrays (aliased by params and caller_params) still get every update."""
    from coursetools.grading.remote import SubmissionNames
    from coursetools.grading.sandbox import Limits, Sandbox

    with Sandbox(numpy_only=True, limits=Limits(call_seconds=20), workdir=tmp_path) as sandbox:
        reply, _ = sandbox.request({"op": "exec", "cell": "student", "source": STUDENT_CLASSES})
        assert reply["ok"], reply
        reply, _ = sandbox.request({"op": "names"})
        names = SubmissionNames(sandbox, reply["names"], trusted={})
        with pytest.raises(CheckFailure):
            _check_halving(names["Halving"])
        charge_once(_check_halving, names["Halving"], depends_on=ACCUMULATOR)
        assert "correct given a correct `Accumulator`; `Accumulator` fails Exercise 1" in capsys.readouterr().out
        with pytest.raises(CheckFailure):
            charge_once(_check_halving, names["HalvingWrong"], "HalvingWrong", depends_on=ACCUMULATOR)
        # The student's own classes are untouched in the sandbox: the plain check fails as before.
        with pytest.raises(CheckFailure):
            _check_halving(names["Halving"])


def test_shared_arrays_cross_once_and_come_back_as_the_same_objects():
    from coursetools.grading import wire

    a, b = np.arange(3.0), np.ones((2, 2))
    state = {"params": [a, b], "caller_params": (a, b), "lr": 0.1, "nested": {"x": a}}
    arrays: list = []
    tree = wire.share(state, arrays, {})
    assert len(arrays) == 2
    header, sent = wire.unpack(wire.pack({"t": wire.encode(tree)[0]}, wire.encode(tree)[1]))
    back = wire.unshare(wire.decode(header["t"], sent), arrays)
    assert back["params"][0] is back["caller_params"][0] is back["nested"]["x"] is a
    with pytest.raises(wire.WireError):
        wire.share({"f": print}, [], {})
    with pytest.raises(wire.WireError):
        wire.unshare({"a": 5}, arrays)   # an index past the arrays sent
