"""Values across the sandbox boundary: JSON for structure, arrays as their raw bytes (no pickle).

Only plain data crosses: None, bool, int, float, str, lists, tuples, dicts with
string keys, plain numpy arrays of numeric or bool dtype, and numpy scalars (a
subclass of list, tuple or dict crosses as the plain container).
Anything else stays in the process that owns it and crosses as an opaque
``{"__handle__": id, "type": name}`` reference.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any, Callable

import numpy as np

MAX_DEPTH = 32
MAX_ITEMS = 100_000
MAX_ARRAY_BYTES = 256 * 2**20


class WireError(ValueError):
    """A value could not be encoded or decoded within the limits."""


def encode(value: Any, to_handle: Callable[[Any], dict] | None = None):
    """(tree, arrays): a JSON-able tree and the list of arrays it references.

    ``to_handle(obj)`` turns a non-data object into a handle dict; without it
    such objects raise :class:`WireError`.
    """
    arrays: list[np.ndarray] = []
    count = [0]
    nbytes = [0]

    def enc(v, depth):
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise WireError("value too deeply nested or too large")
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            return v if abs(v) < 2**53 else {"__bigint__": str(v)}
        if t is float:
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if t is np.ndarray and v.dtype.kind in "biuf":
            nbytes[0] += v.nbytes
            if nbytes[0] > MAX_ARRAY_BYTES:
                raise WireError("arrays too large")
            arrays.append(_c_order(v))  # not ascontiguousarray: it makes a 0-d array 1-d
            return {"__array__": len(arrays) - 1}
        if t.__module__ == "numpy" and isinstance(v, (np.floating, np.integer, np.bool_)):
            return {"__npscalar__": str(v.dtype), "value": v.item()}
        # A namedtuple, an OrderedDict or a defaultdict crosses as the plain container, read with the
        # base type's own methods: a check in the notebook accepts them, so the grader must see them too.
        if t is not tuple and issubclass(t, tuple):
            v, t = tuple(tuple.__iter__(v)), tuple
        elif t is not list and issubclass(t, list):
            v, t = list(list.__iter__(v)), list
        elif t is not dict and issubclass(t, dict) and all(type(k) is str for k in dict.keys(v)):
            v, t = dict(dict.items(v)), dict
        if t is list:
            return {"__list__": [enc(x, depth + 1) for x in v]}
        if t is tuple:
            return {"__tuple__": [enc(x, depth + 1) for x in v]}
        if t is dict and all(type(k) is str for k in v):
            return {"__dict__": {k: enc(x, depth + 1) for k, x in v.items()}}
        if to_handle is None:
            raise WireError(f"cannot send a {t.__name__}")
        return to_handle(v)

    return enc(value, 0), arrays


def decode(tree, arrays, from_handle: Callable[[dict], Any] | None = None, from_func=None, from_made=None):
    """Inverse of :func:`encode`. Arrays are copied out of the message buffer.

    ``from_made(recipe, item)`` builds an object a course function makes, on this side
    (``{"__made__": recipe, "item": item}``: a torch model, which cannot cross as data).

    Holds to the same limits as :func:`encode` (depth, items): a message written by
    hand in the sandbox is decoded no further than a real one could go.
    """
    count = [0]

    def dec(v, depth=0):
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise WireError("value too deeply nested or too large")
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is not dict:
            raise WireError("malformed message")
        if "__array__" in v:
            return np.array(arrays[int(v["__array__"])], copy=True)
        if "__list__" in v:
            return [dec(x, depth + 1) for x in _items(v["__list__"], list)]
        if "__tuple__" in v:
            return tuple(dec(x, depth + 1) for x in _items(v["__tuple__"], list))
        if "__dict__" in v:
            return {str(k): dec(x, depth + 1) for k, x in _items(v["__dict__"], dict).items()}
        if "__float__" in v:
            return float(v["__float__"])
        if "__bigint__" in v:
            return int(v["__bigint__"])
        if "__npscalar__" in v:
            dtype = np.dtype(str(v["__npscalar__"]))
            if dtype.kind not in "biuf":
                raise WireError("unknown value in message")
            return dtype.type(v["value"])
        if "__handle__" in v and from_handle is not None:
            return from_handle(v)
        if "__func__" in v and from_func is not None:
            return from_func(v["__func__"])
        if "__made__" in v and from_made is not None:
            recipe, item = v["__made__"], v.get("item")
            if type(recipe) is not dict or not (item is None or type(item) is int):
                raise WireError("malformed message")
            return from_made(recipe, item)
        raise WireError("unknown value in message")

    return dec(tree)


def _items(container, kind):
    if type(container) is not kind:
        raise WireError("malformed message")
    return container


# What an array may be on the wire: bool, integers and floats of a fixed size, in either byte order.
_DTYPE = re.compile(r"[<>|]?(b1|[iu][1248]|f[248])\Z")
MAX_ARRAYS = 10_000
MAX_LAYOUT_BYTES = MAX_ARRAYS * 80


def _c_order(a: np.ndarray) -> np.ndarray:
    """``a``, or a C-ordered copy of it, of the same shape (a 0-d array stays 0-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")


def pack(header: dict, arrays=()) -> bytes:
    """One message: the JSON header, the JSON layout of the arrays, then the arrays' bytes.

    Each JSON part follows its 4-byte length; the layout lists each array's dtype and
    shape, and the arrays' C-ordered bytes follow one another. A message without
    arrays ends after its header. (This replaced an npz archive per message: a zip
    file written and parsed for every call across the boundary.)
    """
    body = json.dumps(header).encode()
    arrays = [_c_order(a) for a in arrays]
    for a in arrays:
        if not _DTYPE.match(a.dtype.str):
            raise WireError(f"cannot send an array of {a.dtype}")
    if not arrays:
        return struct.pack("!I", len(body)) + body
    layout = json.dumps([[a.dtype.str, list(a.shape)] for a in arrays]).encode()
    return b"".join([struct.pack("!I", len(body)), body, struct.pack("!I", len(layout)), layout]
                    + [a.reshape(-1).view(np.uint8).data for a in arrays])


def unpack(payload: bytes, max_header: int | None = None):
    """(header, arrays) of one message; ``max_header`` bounds the JSON header (untrusted senders).

    Everything the layout says is checked before any array is read: a dtype from the
    list above, at most 32 non-negative dimensions, sizes that add up to exactly the
    bytes that follow, within the limits. The arrays are copies, the message's buffer
    is not kept.
    """
    if len(payload) < 4:
        raise WireError("malformed message")
    (n,) = struct.unpack_from("!I", payload, 0)
    if max_header is not None and n > max_header:
        raise WireError("message header too large")
    header = json.loads(payload[4:4 + n].decode())
    offset = 4 + n
    if len(payload) == offset:  # a message without arrays may end after its header
        return header, []
    if len(payload) < offset + 4:
        raise WireError("malformed message")
    (m,) = struct.unpack_from("!I", payload, offset)
    offset += 4
    if m > MAX_LAYOUT_BYTES or len(payload) < offset + m:
        raise WireError("malformed message")
    layout = json.loads(payload[offset:offset + m].decode()) if m else []
    offset += m
    if type(layout) is not list or len(layout) > MAX_ARRAYS:
        raise WireError("too many arrays in one message")
    shapes, total = [], 0
    for entry in layout:
        if type(entry) is not list or len(entry) != 2:
            raise WireError("malformed message")
        dtype_name, shape = entry
        if type(dtype_name) is not str or not _DTYPE.match(dtype_name) or type(shape) is not list \
                or len(shape) > MAX_DEPTH or any(type(d) is not int or not 0 <= d <= MAX_ARRAY_BYTES for d in shape):
            raise WireError("malformed message")
        dtype = np.dtype(dtype_name)
        count = math.prod(shape)
        total += count * dtype.itemsize
        if total > MAX_ARRAY_BYTES:
            raise WireError("arrays too large")
        shapes.append((dtype, shape, count))
    if offset + total != len(payload):
        raise WireError("malformed message")
    arrays = []
    for dtype, shape, count in shapes:
        arrays.append(np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
                      if count else np.empty(shape, dtype=dtype))
        offset += count * dtype.itemsize
    return header, arrays


def write_frame(fd: int, payload: bytes) -> None:
    import os

    data = struct.pack("!Q", len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, n: int, wait=None) -> bytes:
    """Read n bytes; ``wait()`` is called before each read (for timeouts)."""
    import os

    chunks, got = [], 0
    while got < n:
        if wait is not None:
            wait()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, wait=None, limit: int = MAX_ARRAY_BYTES + (64 << 20)) -> bytes:
    (n,) = struct.unpack("!Q", read_exact(fd, 8, wait))
    if n > limit:
        raise WireError("message too large")
    return read_exact(fd, n, wait)


# ---------------------------------------------------------------------------
# An object's state across the boundary, arrays shared by identity
# ---------------------------------------------------------------------------
# A reference class standing in for a student's base class (a mistake charged once) runs its
# methods in the grader on the state of an instance that lives in the sandbox. That state shares
# arrays (an optimizer's ``params`` are the caller's own arrays, ``caller_params`` holds them
# again): :func:`encode` would send each occurrence as a copy of its own, and an update made in
# place would reach one of them only. Here every array crosses once, named by its place in a
# list, and the other side puts the very same object wherever it occurs.


def share(value, arrays: list, memo: dict, depth: int = 0):
    """A tree of ``value`` whose arrays are ``{"a": k}``, ``arrays[k]`` each array once (by identity).

    Dicts become ``{"d": {...}}`` (string keys only); lists and tuples stay lists and tuples; other
    leaves must be what :func:`encode` sends (anything else raises :class:`WireError`). ``memo`` maps
    ``id(array)`` to its index; seed it with arrays already in ``arrays`` to name them again.
    """
    if depth > MAX_DEPTH:
        raise WireError("value too deeply nested")
    t = type(value)
    if t is np.ndarray:
        if value.dtype.kind not in "biuf":
            raise WireError(f"cannot send an array of dtype {value.dtype}")
        if id(value) not in memo:
            memo[id(value)] = len(arrays)
            arrays.append(value)
        return {"a": memo[id(value)]}
    if t is dict:
        if not all(type(k) is str for k in value):
            raise WireError("cannot send a dict with keys that are not strings")
        return {"d": {k: share(v, arrays, memo, depth + 1) for k, v in value.items()}}
    if t is list:
        return [share(v, arrays, memo, depth + 1) for v in value]
    if t is tuple:
        return tuple(share(v, arrays, memo, depth + 1) for v in value)
    if value is None or t in (bool, int, float, str) or \
            (t.__module__ == "numpy" and isinstance(value, (np.floating, np.integer, np.bool_))):
        return value
    raise WireError(f"cannot send a {t.__name__}")


def unshare(tree, arrays: list, depth: int = 0):
    """Inverse of :func:`share`: ``{"a": k}`` becomes the object ``arrays[k]`` itself, wherever it occurs."""
    if depth > MAX_DEPTH:
        raise WireError("value too deeply nested")
    t = type(tree)
    if t is dict:
        if set(tree) == {"a"} and type(tree["a"]) is int and 0 <= tree["a"] < len(arrays) \
                and type(arrays[tree["a"]]) is np.ndarray:
            return arrays[tree["a"]]
        if set(tree) == {"d"} and type(tree["d"]) is dict:
            return {str(k): unshare(v, arrays, depth + 1) for k, v in tree["d"].items()}
        raise WireError("malformed shared value")
    if t is list:
        return [unshare(v, arrays, depth + 1) for v in tree]
    if t is tuple:
        return tuple(unshare(v, arrays, depth + 1) for v in tree)
    return tree


def made_recipe(recipe: dict):
    """(module, function, kwargs, key) of a ``__made__`` recipe, checked for shape (kwargs decoded)."""
    module, function, key = recipe.get("module"), recipe.get("function"), recipe.get("key")
    if type(module) is not str or type(function) is not str or function.startswith("_"):
        raise WireError("malformed course-function recipe")
    kwargs = decode(recipe.get("kwargs", {"__dict__": {}}), [])
    if type(kwargs) is not dict:
        raise WireError("malformed course-function recipe")
    return module, function, kwargs, key
