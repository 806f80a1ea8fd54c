"""Containers that are subclasses of tuple, list or dict cross the sandbox boundary as plain data.

A namedtuple returned by ``linear_backward`` or an OrderedDict returned by ``sgd_step`` passes
its check in the notebook; under make grade it used to cross as an opaque handle (a
``RemoteObject``, "must return a tuple"; "must return a dict"), costing every point of a
correct answer (issue 17 item 6).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict, namedtuple

import numpy as np

from coursetools.grading.wire import decode, encode
from fixtures.alternatives import ALTERNATIVES
from fixtures.notebooks import solution_sources

Pair = namedtuple("Pair", "first second")


def _round_trip(value):
    tree, arrays = encode(value, lambda obj: {"__handle__": 7, "type": type(obj).__name__})
    return decode(tree, arrays, from_handle=lambda handle: ("handle", handle["type"]))


def test_subclassed_containers_cross_as_the_plain_container():
    got = _round_trip([Pair(np.arange(2.0), 1.5), OrderedDict(W=np.ones(1)), defaultdict(float, {"b": 2.0})])
    assert type(got[0]) is tuple and type(got[1]) is dict and type(got[2]) is dict
    np.testing.assert_array_equal(got[0][0], np.arange(2.0))
    assert got[0][1] == 1.5 and list(got[1]) == ["W"] and got[2] == {"b": 2.0}


def test_a_container_that_lies_about_its_items_crosses_with_what_it_holds():
    class Lying(tuple):
        def __iter__(self):
            return iter(("forged",))

    class LyingDict(dict):
        def items(self):
            return [("forged", 1)]

        def keys(self):
            return ["forged"]

    assert _round_trip(Lying((1, 2))) == (1, 2)
    assert _round_trip(LyingDict(a=1)) == {"a": 1}


def test_a_dict_subclass_with_other_keys_still_crosses_as_a_handle():
    assert _round_trip(OrderedDict({1: 2.0})) == ("handle", "OrderedDict")


def test_make_grade_gives_full_points_to_a_namedtuple_and_an_ordereddict(tmp_path):
    """Lab 01's alternatives return a namedtuple (Exercise 3) and an OrderedDict (Exercise 8)."""
    from coursetools.grading.trusted import TrustedLab
    from coursetools.grading.verdict import grade_submission

    lab = "01_backprop"
    checks = {"check_ex3_linear_layer", "check_ex8_sgd_step"}
    trusted = TrustedLab.load(lab)
    only = dataclasses.replace(trusted, grade_cells=[c for c in trusted.grade_cells if c.grade_id in checks])
    alternatives = [a for a in ALTERNATIVES[lab] if a.check in checks]
    assert "namedtuple" in alternatives[0].replace[-1] and "OrderedDict" in alternatives[1].replace[0]
    verdicts = grade_submission(only, "ann", solution_sources(lab, alternatives), workdir=tmp_path).verdicts
    assert [(v.grade_id, v.points) for v in verdicts] == [(c.grade_id, c.points) for c in only.grade_cells], \
        [v.message for v in verdicts]


def test_the_grader_rebuilds_only_what_it_lists_with_small_integers():
    """A model a sandbox sends back crosses as the call that built it: the grader builds its own copy
    only for a function of REBUILDABLE that the lab hands out, with its keywords, small integers."""
    import pytest

    from coursetools.grading.sandbox import Sandbox
    from coursetools.grading.wire import WireError

    sandbox = Sandbox(numpy_only=False, handed_out={"nets": ["build_faulty_net", "build_mlp"]})

    def recipe(function="build_faulty_net", **kwargs):
        return {"module": "nets", "function": function, "kwargs": encode(kwargs)[0]}

    model = sandbox._rebuild(recipe(seed=3, fault=1), 0)
    assert type(model).__name__ == "FaultyNet"
    for bad in (recipe("build_mlp", weights=[], biases=[]), recipe(seed=3, fault=1, n_blocks=10**7),
                recipe(seed=2**40, fault=1), recipe(seed=1.5, fault=None), recipe("_linear", seed=1)):
        with pytest.raises(WireError):
            sandbox._rebuild(bad, 0)
    with pytest.raises(WireError):   # not handed out by this lab
        Sandbox(numpy_only=False, handed_out={"nets": ["build_mlp"]})._rebuild(recipe(seed=3, fault=1), 0)
