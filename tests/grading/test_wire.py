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


# -- arrays on the wire: raw bytes under a checked layout ------------------------------------------

import struct  # noqa: E402

import pytest  # noqa: E402

from coursetools.grading import wire  # noqa: E402


@pytest.mark.parametrize("array", [
    np.array(3.5), np.array(7, dtype=np.int64), np.zeros((0, 4)), np.arange(10, dtype=">i4"),
    np.array([True, False]), np.asfortranarray(np.arange(12.0).reshape(3, 4)), np.arange(24.0).reshape(6, 4)[::2, 1:],
    np.float16([1, 2]), np.uint8([1, 255]), np.float32([[1.5]]), np.ones((2, 1, 3, 1))],
    ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_an_array_crosses_with_its_dtype_shape_and_values(array):
    """Encoded, packed, unpacked and decoded: the same array. A 0-d array crossed as shape (1,)
    before (np.ascontiguousarray makes it 1-d): a check comparing shapes failed under make grade."""
    tree, arrays = encode({"x": array, "rest": [array, 1.0]})
    header, received = wire.unpack(wire.pack({"tree": tree}, arrays))
    got = decode(header["tree"], received)
    for value in (got["x"], got["rest"][0]):
        assert value.dtype == array.dtype and value.shape == array.shape and value.flags.writeable
        np.testing.assert_array_equal(value, array)


def _message(layout, data: bytes, header=b"{}") -> bytes:
    body = json_bytes(layout) if not isinstance(layout, bytes) else layout
    return struct.pack("!I", len(header)) + header + struct.pack("!I", len(body)) + body + data


def json_bytes(value) -> bytes:
    import json

    return json.dumps(value).encode()


@pytest.mark.parametrize("layout, data", [
    ([["|O", [1]]], b"\0" * 8),                           # object: would be a pointer
    ([["<c16", [1]]], b"\0" * 16),                        # complex: not a kind the wire sends
    ([["[('a', '<f8')]", [1]]], b"\0" * 8),              # structured
    ([["<M8[s]", [1]]], b"\0" * 8),                       # datetime
    ([["<f8", [-1]]], b""),                               # negative dimension
    ([["<f8", [1.0]]], b"\0" * 8),                        # not an integer
    ([["<f8", [True]]], b"\0" * 8),                       # a bool is not a size
    ([["<f8", [2]]], b"\0" * 8),                          # fewer bytes than the layout says
    ([["<f8", [1]]], b"\0" * 16),                         # more bytes than the layout says
    ([["<f8", [2**40, 2**40]]], b""),                      # more than the limit
    ([["<f8", [0, 10**30]]], b""),                        # an empty array with an absurd dimension
    ([["<f8", [1] * 40]], b"\0" * 8),                     # too many dimensions
    ([["<f8"]], b""),                                     # no shape
    ({"a": 1}, b""),                                      # not a list
    ([[1, [1]]], b"\0" * 8),                              # dtype not a name
    (b"[", b""),                                          # not JSON
])
def test_a_forged_layout_is_refused_before_any_array_is_read(layout, data):
    with pytest.raises((wire.WireError, ValueError)):
        wire.unpack(_message(layout, data), max_header=1 << 20)


def test_too_many_arrays_or_a_cut_message_is_refused():
    many = [["|u1", [0]]] * (wire.MAX_ARRAYS + 1)
    with pytest.raises(wire.WireError):
        wire.unpack(_message(many, b""))
    whole = wire.pack({"a": 1}, [np.arange(3.0)])
    for cut in (2, 9, len(whole) - 1):
        with pytest.raises((wire.WireError, ValueError)):
            wire.unpack(whole[:cut])
    assert wire.unpack(wire.pack({"a": 1})) == ({"a": 1}, [])


def test_an_array_the_wire_does_not_carry_is_not_sent():
    with pytest.raises(wire.WireError):
        wire.pack({}, [np.array([object()])])
    with pytest.raises(wire.WireError):
        wire.pack({}, [np.array([1 + 2j])])
