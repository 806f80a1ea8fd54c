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
