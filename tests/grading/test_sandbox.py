"""The sandbox process on its own: what crosses the boundary, what it refuses, how it stops."""

from __future__ import annotations

import numpy as np
import pytest

from checker.compare import CheckFailure
from checker.student import call_student, student_attr
from coursetools.grading.remote import RemoteObject, SubmissionNames
from coursetools.grading.sandbox import Limits, Sandbox
from coursetools.grading.trusted import TrustedLab
from coursetools.grading.verdict import grade_submission
from fixtures.notebooks import solution_sources

pytestmark = pytest.mark.xdist_group("sandbox")

STUDENT_CODE = '''
import numpy as np

class Counter:
    def __init__(self, params, lr=0.1):
        self.params = [p.copy() for p in params]
        self.lr = lr
    def step(self, grads):
        for p, g in zip(self.params, grads):
            p -= self.lr * g

def twice(f, x):
    return 2 * f(x)

def tensor():
    import torch
    return torch.zeros(2)

def peek(path):
    with open(path) as fh:
        return fh.read()

def spin():
    while True:
        pass

answer = 42
'''


@pytest.fixture
def sandbox(tmp_path):
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=5), workdir=tmp_path) as sb:
        reply, _ = sb.request({"op": "exec", "cell": "student", "source": STUDENT_CODE})
        assert reply["ok"], reply
        yield sb


def _names(sb):
    reply, _ = sb.request({"op": "names"})
    return SubmissionNames(sb, reply["names"], trusted={})


def test_objects_stay_live_across_method_calls(sandbox):
    names = _names(sandbox)
    params = [np.ones((2, 3)), np.arange(4.0)]
    opt = call_student(names["Counter"], "Counter", params=params, lr=0.5).result
    assert isinstance(opt, RemoteObject)
    for _ in range(3):
        call_student(getattr(opt, "step"), "Counter.step", grads=[np.ones((2, 3)), np.ones(4)])
    after = student_attr(opt, "params")
    assert np.array_equal(after[0], np.ones((2, 3)) - 1.5) and np.array_equal(after[1], np.arange(4.0) - 1.5)
    assert np.array_equal(params[0], np.ones((2, 3))), "the grader's own arrays never change"


def test_grader_functions_are_called_back_and_data_comes_back(sandbox):
    names = _names(sandbox)
    call = call_student(names["twice"], "twice", f=lambda x: float(np.sum(x)), x=np.arange(3.0))
    assert call.result == 6.0
    assert names["answer"] == 42


def test_a_call_back_to_the_grader_gets_no_more_memory_than_the_sandbox(tmp_path):
    """Red-team finding (2026-12-02): a cell passed the grader's reference linear layer a (20000, 1) and a
    (1, 20000) array; the grader built the 3.2 GB product itself and the out-of-memory killer took it."""
    code = "def ask(f):\n    return f(12_000)\n"
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=30, memory_bytes=256 * 2**20), workdir=tmp_path) as sb:
        assert sb.request({"op": "exec", "cell": "s", "source": code})[0]["ok"]
        # 12,000 x 12,000 float64 is 1.15 GB: far past the sandbox's 256 MB, so the grader refuses it.
        with pytest.raises(CheckFailure) as failure:
            call_student(_names(sb)["ask"], "ask", f=lambda n: float(np.ones((n, n)).sum()))
    assert "MemoryError" in str(failure.value), str(failure.value)


def test_the_grader_s_cpu_time_in_call_backs_counts_against_the_submission(tmp_path):
    """Red-team finding (2026-12-02): a loop of calls back to the grader used 48 s of the grader's CPU
    against 9 s of the sandbox's under --timeout 10; only the wall-clock backstop stopped it."""
    code = "def hammer(f):\n    while True:\n        f(300_000)\n"
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=2), workdir=tmp_path) as sb:
        assert sb.request({"op": "exec", "cell": "s", "source": code})[0]["ok"]
        with pytest.raises(CheckFailure) as failure:
            call_student(_names(sb)["hammer"], "hammer", f=lambda n: sum(range(n)))
    assert "s of CPU time" in str(failure.value) and "waiting" not in str(failure.value), str(failure.value)


def test_torch_is_refused_in_numpy_only_labs(sandbox):
    with pytest.raises(CheckFailure) as failure:
        call_student(_names(sandbox)["tensor"], "tensor")
    assert failure.value.misconception == "torch-in-numpy-exercise"


def test_reading_outside_the_sandbox_is_refused(sandbox):
    with pytest.raises(CheckFailure) as failure:
        call_student(_names(sandbox)["peek"], "peek", path=__file__)
    assert "not allowed while grading" in str(failure.value)


def test_an_endless_loop_is_stopped(sandbox):
    with pytest.raises(CheckFailure) as failure:
        call_student(_names(sandbox)["spin"], "spin")
    assert failure.value.misconception == "timeout"
    assert sandbox.proc is None, "the looping process was killed"


# Every function the submission defines sleeps before it answers: finite, and each call within
# the per-call limit, but together more than the notebook may take.
SLOW_EVERYTHING = '''
import functools as _functools, time as _time
def _slow(f):
    @_functools.wraps(f)
    def slowed(*args, **kwargs):
        _time.sleep(2)
        return f(*args, **kwargs)
    return slowed
for _name, _value in list(globals().items()):
    if callable(_value) and getattr(_value, "__module__", None) == "__main__" and not _name.startswith("_"):
        globals()[_name] = _slow(_value)
'''


def test_a_notebook_cannot_take_more_than_its_grading_time(tmp_path):
    trusted = TrustedLab.load("01_backprop")
    cells = list(solution_sources("01_backprop").items()) + [("added cell", SLOW_EVERYTHING)]
    # The added cell makes every student function sleep: no CPU is used, so the notebook's wall-clock
    # backstop (notebook_seconds x wall_factor) is what stops it. A factor of 1.5 instead of the
    # default 4 stops it after 7.5 s instead of 20.
    result = grade_submission(trusted, "slowpoke", cells,
                              Limits(call_seconds=30, notebook_seconds=5, wall_factor=1.5), workdir=tmp_path)
    assert len(result.verdicts) == len(trusted.grade_cells), "every grade cell gets a verdict"
    out_of_time = [v for v in result.verdicts if "used up its 5 s of grading time" in v.message]
    assert out_of_time and all(v.points == 0 and v.misconception == "timeout" for v in out_of_time)
    assert result.verdicts[-1] in out_of_time, "the last exercises were not waited for"


def test_a_container_of_arrays_changed_in_place_is_reported(tmp_path):
    """The grader snapshots lists and dicts of arrays too (a model's parameters), as a notebook's check does."""
    code = ("def step(params, grads):\n    params[0] -= grads[0]\n    return None\n"
            "def rekey(weights):\n    weights['extra'] = weights['W'] * 0\n    return None\n"
            "def honest(params):\n    return [p * 2 for p in params]\n")
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=10), workdir=tmp_path) as sb:
        assert sb.request({"op": "exec", "cell": "s", "source": code})[0]["ok"]
        names = _names(sb)
        params = [np.ones(3), np.arange(2.0)]
        assert call_student(names["step"], "step", params=params, grads=[np.ones(3), np.ones(2)]).mutated_inputs \
            == ["params"]
        assert call_student(names["rekey"], "rekey", weights={"W": np.ones(2)}).mutated_inputs == ["weights"]
        assert call_student(names["honest"], "honest", params=params).mutated_inputs == []


def test_a_patched_comparison_cannot_hide_an_input_changed_in_place(tmp_path):
    """Red-team finding (2026-12-02): the sandbox compared inputs before and after a call with
    numpy.array_equal, which a cell can replace; a mutating function then kept its points."""
    code = ("import builtins\nimport numpy as np\n"
            "np.array_equal = lambda a, b, equal_nan=False: True\n"
            "np.testing.assert_array_equal = lambda *a, **k: None\n"
            "builtins.all = lambda iterable: True\n"
            "def shift(logits):\n    logits -= logits.max(axis=1, keepdims=True)\n    return logits.sum()\n")
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=10), workdir=tmp_path) as sb:
        assert sb.request({"op": "exec", "cell": "s", "source": code})[0]["ok"]
        logits = np.arange(6.0).reshape(2, 3)
        assert call_student(_names(sb)["shift"], "shift", logits=logits).mutated_inputs == ["logits"]


def test_an_in_place_write_of_equal_values_is_no_mutation_as_at_home(tmp_path):
    # checker.student (the notebook's own check) compares values with NaN equal to NaN; the sandbox
    # must agree, so a check that passes at home passes under make grade: -0.0 over 0.0 changes no value.
    code = "def relu_inplace(x):\n    x += 0.0\n    return float(x[0])\n"
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=10), workdir=tmp_path) as sb:
        assert sb.request({"op": "exec", "cell": "s", "source": code})[0]["ok"]
        x = np.array([-0.0, 1.0, np.nan])
        assert call_student(_names(sb)["relu_inplace"], "relu_inplace", x=x).mutated_inputs == []
