"""The sandbox process: runs one submission's code and answers calls with data.

Started by :class:`coursetools.grading.sandbox.Sandbox` as
``python -m coursetools.grading.sandbox_main FD_IN FD_OUT``. Before any student
code runs it installs, on Linux, a seccomp filter (``seccomp.py``: no new
programs or processes, no signals to others, no mounts, no sockets), then an
audit hook (``guard.py``; PEP 578, it cannot be removed) that

* allows reads only of the Python installation and the sandbox folder, and
  writes only inside the sandbox folder;
* refuses subprocesses, signals to other processes, sockets, ctypes, the ways
  to reach or rewrite the hook itself, and (for numpy-only labs) importing torch.

Before that, the course's own modules (``math_utils``, ``landscape``, ``nets``,
``checker``) are cut down to what the lab's setup cell hands out
(``course_view.py``): the rest of them holds reference answers.

Checks run in the grader, never next to the code they judge. In numpy-only
labs the course's ``checker`` package is replaced by inert stubs (it would
bring torch in); in labs that use torch, the lab's checker module is imported
before the guard so the helpers it offers students keep working.
"""

from __future__ import annotations

import copy
import importlib.abc
import importlib.machinery
import io
import linecache
import os
import sys
import traceback
import types
import warnings

from coursetools.grading import course_view  # standard library only: safe before the environment is set

CELL_PREFIX = "<cell "


class CappedText(io.TextIOBase):
    """A text sink that keeps the first ``cap`` characters and counts the rest."""

    def __init__(self, cap=20_000):
        self.cap, self.parts, self.kept, self.dropped = cap, [], 0, 0

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        room = self.cap - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self):
        tail = f"\n... [{self.dropped} more characters of output not kept]" if self.dropped else ""
        return "".join(self.parts) + tail


FIGURES_PER_CELL = 8           # figures a cell's reply carries at most
FIGURE_BYTES = 1 * 2**20       # largest PNG kept of one figure
FIGURE_DPI = 80


def cell_figures() -> tuple[list, int]:
    """The figures a cell left open, as PNG bytes (numpy uint8 arrays: plain data on the wire), then closed.

    What the notebook's inline backend shows under a cell: every open matplotlib figure,
    drawn once and closed. Returns (arrays, how many were left out: past ``FIGURES_PER_CELL``
    or larger than ``FIGURE_BYTES``).
    """
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return [], 0
    import numpy as np

    numbers = plt.get_fignums()
    kept, dropped = [], 0
    for number in numbers:
        if len(kept) >= FIGURES_PER_CELL:
            dropped += 1
            continue
        buf = io.BytesIO()
        try:
            plt.figure(number).savefig(buf, format="png", dpi=FIGURE_DPI)
        except Exception:
            dropped += 1
            continue
        if buf.tell() > FIGURE_BYTES:
            dropped += 1
            continue
        kept.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    plt.close("all")
    return kept, dropped


class _StubChecker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``checker`` and ``checker.*`` as modules of inert functions."""

    def find_spec(self, name, path=None, target=None):
        if name == "checker" or name.startswith("checker."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def __getattr__(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return course_view.inert_check(attr)

        module.__getattr__ = __getattr__
        return module

    def exec_module(self, module):
        pass


class Runner:
    """Holds the submission's namespace and the objects handed out as handles."""

    def __init__(self, wire, send, recv, course_kept=None):
        self.wire, self.send, self.recv = wire, send, recv
        self.seq = 0  # the request being answered: every frame sent carries it
        self.course_kept: dict[str, list[str]] = dict(course_kept or {})  # course module -> names handed out
        self.ns: dict = {"__name__": "__main__"}
        self.handles: dict[int, object] = {}

    # -- handles ---------------------------------------------------------
    def to_handle(self, obj):
        hid = len(self.handles) + 1
        self.handles[hid] = obj
        t = type(obj)
        module = t.__module__.split(".")[0]
        type_name = t.__name__ if module == "builtins" else f"{module}.{t.__name__}"
        return {"__handle__": hid, "type": type_name, "callable": callable(obj)}

    def from_handle(self, ref):
        return self.handles[int(ref["__handle__"])]

    def callback(self, fid):
        """A stand-in for a grader-side function: each call is a round trip to the grader."""

        def call_grader(*args, **kwargs):
            # Keywords too: a student's function may call the earlier one as f(x, lr=lr).
            tree, arrays = self.wire.encode([list(args), kwargs], self.made_by)
            self.send({"op": "callback", "func": fid, "args": tree, "seq": self.seq}, arrays)
            header, arrays = self.recv()
            if header.get("error"):
                raise RuntimeError(header["error"])
            return self.wire.decode(header["result"], arrays)

        return call_grader

    def made_by(self, obj) -> dict:
        """How an object a course function built crosses to the grader: the call that built it.

        ``nets.build_faulty_net`` marks the model and input it returns (``_made_by``); the grader
        builds its own from the same arguments (a reference standing in for the student's earlier
        function gets a model that cannot cross as data). Anything else cannot be sent.
        """
        made = getattr(obj, "_made_by", None)
        if type(made) is not dict:
            raise self.wire.WireError(f"cannot send a {type(obj).__name__}")
        kwargs, arrays = self.wire.encode(made.get("kwargs", {}))
        if arrays:
            raise self.wire.WireError(f"cannot send a {type(obj).__name__}")
        return {"__made__": {"module": made.get("module"), "function": made.get("function"), "kwargs": kwargs},
                "item": made.get("item")}

    def builder(self):
        """``from_made`` for one request: builds each recipe the grader sent once, with this side's copy
        of the course function (what the lab hands out), and hands out the item asked for."""
        built = {}

        def build(recipe, item):
            module, function, kwargs, key = self.wire.made_recipe(recipe)
            if function not in self.course_kept.get(module, []) or module not in sys.modules:
                raise self.wire.WireError(f"{module}.{function} is not a course function this lab hands out")
            if key not in built:
                built[key] = getattr(sys.modules[module], function)(**kwargs)
            return built[key] if item is None else built[key][item]

        return build

    def reference_class(self, name: str, fid, methods) -> type:
        """A stand-in for a reference class of the grader's (``remote.ReferenceClass``).

        Each method sends the instance's data attributes and its arguments to the grader, where the
        reference method runs, and writes the state that comes back into the instance: arrays in
        place (the caller's arrays an optimizer holds stay the caller's), other values rebound.
        Attributes that are not data (a function the student stored) stay here, unseen.
        """
        import numpy as np

        call = self.callback(fid)
        wire = self.wire

        def forward(method):
            def reference_method(obj, *args, **kwargs):
                state = {}
                for key, value in vars(obj).items():
                    try:
                        wire.share(value, [], {})
                    except wire.WireError:
                        continue
                    state[key] = value
                arrays: list = []
                tree = wire.share([state, list(args), kwargs], arrays, {})
                reply = call(method, tree, arrays)
                if type(reply) is not list or len(reply) != 2 or type(reply[1]) is not list:
                    raise RuntimeError("the grader's reference method sent no state back")
                back = list(reply[1])
                for i, mine in enumerate(arrays[:len(back)]):
                    new = back[i]
                    if type(new) is np.ndarray and new.shape == mine.shape and new.dtype == mine.dtype \
                            and mine.flags.writeable:
                        np.copyto(mine, new)
                        back[i] = mine  # the same object wherever it occurs: aliases stay aliases
                new_state, result = wire.unshare(reply[0], back)
                attributes = vars(obj)
                for key in state:
                    if key not in new_state:
                        attributes.pop(key, None)
                attributes.update(new_state)
                return result

            reference_method.__name__ = reference_method.__qualname__ = str(method)
            return reference_method

        return type(name, (), {"__module__": "grader", **{str(m): forward(str(m)) for m in methods}})

    def explain(self, exc: BaseException) -> str:
        """The exception's message, plus why when it names a course module the lab does not hand out."""
        message = str(exc)
        module = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
        if module in self.course_kept:
            offered = course_view.offered(self.course_kept[module])
            message += f" ({course_view.REFUSAL_MARK} {offered} from {module}; write the exercise's math yourself)"
        return message

    def encode(self, value):
        return self.wire.encode(value, self.to_handle)

    # -- operations ------------------------------------------------------
    def op_exec(self, msg, arrays):
        out = CappedText()
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        error = None
        filename = f"{CELL_PREFIX}{msg['cell']}>"
        # The cell's own source, kept as IPython keeps it: a traceback quotes the student's line, and
        # inspect.getsource or torch.jit.script work as in the notebook (only the student's code).
        linecache.cache[filename] = (len(msg["source"]), None, msg["source"].splitlines(True), filename)
        figures, dropped = [], 0
        try:
            exec(compile(msg["source"], filename, "exec"), self.ns)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included: the cell failed
            error = f"{type(exc).__name__}: {self.explain(exc)}{where(exc)}"
        finally:
            try:
                figures, dropped = cell_figures()  # its own prints still go to the capped output
            except BaseException:  # a figure that cannot be drawn is left out, never a failed cell
                pass
            sys.stdout, sys.stderr = old
        return ({"ok": error is None, "error": error, "output": out.text(), "figures_dropped": dropped},
                figures)

    def op_names(self, msg, arrays):
        kinds = {}
        for name, value in list(self.ns.items()):
            if not name.startswith("__") and not isinstance(value, types.ModuleType):
                kinds[name] = "callable" if callable(value) else "value"
        return {"names": kinds}, []

    def op_get(self, msg, arrays):
        if msg["name"] not in self.ns:
            return {"missing": True}, []
        tree, out = self.encode(self.ns[msg["name"]])
        return {"value": tree}, out

    def op_getattr(self, msg, arrays):
        obj = self.from_handle(msg["target"])
        try:
            value = getattr(obj, msg["attr"])
        except AttributeError:
            return {"missing": True}, []
        if not callable(value):
            # A snapshot of data; a method must stay bound to the live object it updates.
            try:
                value = copy.deepcopy(value)
            except Exception:
                pass
        tree, out = self.encode(value)
        return {"value": tree}, out

    def op_call(self, msg, arrays):
        import numpy as np

        target = msg["target"]
        fn = self.ns.get(target["name"]) if "name" in target else self.from_handle(target)
        kwargs = self.wire.decode(msg["kwargs"], arrays, from_handle=self.from_handle,
                                  from_func=self.callback, from_made=self.builder())
        # Arrays, and flat lists / tuples / dicts of arrays (a model's parameters): both can be
        # changed in place, and the check reports it (as checker.student does in a notebook).
        originals = {k: snap for k, v in kwargs.items() if (snap := _snapshot(v)) is not None}
        # The grader's reference functions in place of the student's earlier ones (a mistake charged once);
        # a reference class in place of the student's base class: a subclass called here is rebuilt on it.
        substitute = {str(name): self.reference_class(str(name), ref["__class__"], ref.get("methods", []))
                      if "__class__" in ref else self.callback(ref["__func__"])
                      for name, ref in msg.get("substitute", {}).items()}
        if isinstance(fn, type):
            fn = rebased(fn, {name: ref for name, ref in substitute.items() if isinstance(ref, type)})
        missing = object()
        saved = {name: self.ns.get(name, missing) for name in substitute}
        out = CappedText()
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        try:
            self.ns.update(substitute)
            with warnings.catch_warnings(record=True) as caught, \
                    np.errstate(over="warn", invalid="warn", divide="warn"):
                warnings.simplefilter("always")
                result = fn(**kwargs)
        except NotImplementedError:
            return {"status": "not-implemented", "output": out.text()}, []
        except BaseException as exc:
            return {"status": "error", "type": type(exc).__name__, "message": self.explain(exc)[:2000],
                    "where": where(exc), "output": out.text()}, []
        finally:
            sys.stdout, sys.stderr = old
            for name, value in saved.items():
                if value is missing:
                    self.ns.pop(name, None)
                else:
                    self.ns[name] = value
        mutated = [k for k, before in originals.items() if _snapshot(kwargs[k]) is None
                   or not _same_arrays(_snapshot(kwargs[k]), before)]
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        tree, out_arrays = self.encode(result)
        return {"status": "ok", "result": tree, "warnings": messages[:20], "mutated": mutated,
                "output": out.text()}, out_arrays


def rebased(cls: type, classes: dict) -> type:
    """``cls`` rebuilt with each base named in ``classes`` replaced by that class (a class cascade).

    The same as ``checker.student.rebased`` (the checker is not importable here in numpy-only labs):
    the student's subclass on a reference base, its own methods unchanged, ``super()`` bound to the
    rebuilt class. Bases that are themselves the student's classes built on a named one are rebuilt
    too. ``cls`` itself when nothing is replaced or it cannot be rebuilt.
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


def _snapshot(value):
    """{key: copy} of an array or of a flat list / tuple / dict of arrays, else None."""
    import numpy as np

    if type(value) is np.ndarray:
        return {(): value.copy()}
    if type(value) in (list, tuple) and value and all(type(v) is np.ndarray for v in value):
        return {i: v.copy() for i, v in enumerate(value)}
    if type(value) is dict and value and all(type(v) is np.ndarray for v in value.values()):
        return {k: v.copy() for k, v in value.items()}
    return None


def _same_arrays(now: dict, before: dict, _all=all) -> bool:
    """Whether every array still holds its values (NaN where it held NaN), as the notebook's own check says.

    Only methods and operators of ndarray, bytes and dict (built-in types no cell can patch) and ``all``
    bound at definition: a student cell that replaces ``numpy.array_equal`` or ``builtins.all`` cannot
    hide an input it changed (a red-team audit's cell did so and kept 3 points of a mutating function).
    Equal bytes settle it at once; otherwise the values are compared, so that -0.0 written over 0.0
    counts as unchanged here as it does at home.
    """
    if now.keys() != before.keys():
        return False  # the container itself was emptied, extended or re-keyed

    def same(a, b):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.tobytes() == b.tobytes():
            return True
        return bool(((a == b) | ((a != a) & (b != b))).all())

    return _all(same(a, before[k]) for k, a in now.items())


def where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(CELL_PREFIX)]
    if not frames:
        return ""
    f = frames[-1]
    source = f": {f.line.strip()}" if f.line else ""
    return f" (in {f.filename[len(CELL_PREFIX):-1]}, line {f.lineno}{source})"


def harden(config: dict) -> dict:
    """The sandbox's own layers, applied first thing, before it reads any input.

    ``config`` comes from the grader on the command line (trusted): the unprivileged uid to
    become when started as root, and the resource limits. Returns what was applied.
    """
    import ctypes
    import resource
    import signal

    applied = {}
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the grader (also without bwrap)
    uid = config.get("uid")
    if os.getuid() == 0 and uid is not None:
        # A real unprivileged user, outside any user namespace: no capability survives this.
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getuid() == 0:
            raise SystemExit("could not drop root")
    applied["uid"] = os.getuid()
    limits = config.get("limits", {})
    for name, value, hard_extra in (("RLIMIT_AS", limits.get("memory_bytes"), 0),
                                    ("RLIMIT_CPU", limits.get("cpu_seconds"), 5),
                                    ("RLIMIT_FSIZE", limits.get("file_bytes"), 0),
                                    ("RLIMIT_NPROC", limits.get("threads"), 0),
                                    ("RLIMIT_NOFILE", limits.get("open_files"), 0),
                                    ("RLIMIT_CORE", 0, 0)):
        if value is None:
            continue
        resource.setrlimit(getattr(resource, name), (int(value), int(value) + hard_extra))
        applied[name] = int(value)
    # The thread limit counts per user: it binds this sandbox alone only under a uid of its own.
    applied["threads_limited"] = os.getuid() != 0 and uid is not None or _in_own_user_namespace()
    return applied


def _in_own_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def layers_seen(sandbox_dir: str, grader_namespaces: dict | None = None) -> dict:
    """What walls this process is inside, read from the kernel before any student code runs.

    ``grader_namespaces`` holds the grader's own namespace ids (``/proc/self/ns/*``): a namespace
    of the sandbox's is a new one when its id differs.
    """
    with open("/proc/self/mountinfo") as f:
        root_fs = [line.split(" - ")[1].split()[0] for line in f if line.split()[4] == "/"]
    with open("/proc/self/net/dev") as f:
        interfaces = sorted(line.split(":")[0].strip() for line in f.read().splitlines()[2:])
    mine = namespace_ids()
    if grader_namespaces and "pid" in mine and "pid" in grader_namespaces:
        own_pid_namespace = mine["pid"] != grader_namespaces["pid"]
    else:
        # In a fresh PID namespace bubblewrap is process 1 and the sandbox process 2; outside one,
        # those numbers belong to init and kthreadd.
        own_pid_namespace = os.getpid() <= 2
    seen = {"pid_namespace": own_pid_namespace, "network": interfaces,
            "mount_namespace": bool(root_fs) and root_fs[-1] == "tmpfs"}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("CapEff", "NoNewPrivs", "Seccomp:")):
                key, value = line.split(":", 1)
                seen[key] = value.strip()
    return seen


def namespace_ids() -> dict:
    """``{"pid": "pid:[4026531836]", ...}``: this process's namespaces, as the kernel names them."""
    ids = {}
    for kind in ("pid", "net", "mnt", "user", "ipc"):
        try:
            ids[kind] = os.readlink(f"/proc/self/ns/{kind}")
        except OSError:
            pass
    return ids


# Files of /proc and /dev the libraries read (torch's cpuinfo, numpy's random seeding).
SYSTEM_FILES = ["/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/dev/urandom"]


def enter_folder(sandbox_dir: str) -> None:
    """Make ``sandbox_dir`` the working folder, home and temporary folder of this process."""
    os.makedirs(sandbox_dir, mode=0o700, exist_ok=True)
    os.chdir(sandbox_dir)
    os.environ["HOME"] = os.environ["MPLCONFIGDIR"] = os.environ["TMPDIR"] = sandbox_dir


def prepare(init: dict) -> dict:
    """Import what every lab uses and cut the course's modules down; no student code yet.

    Runs after the first Landlock layer (which allows reading the course's scripts/) and
    before the second. Returns ``{module: [names kept]}`` for the runner's messages.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Import what every lab uses before the guard, so the guard only has to allow reads.
    import numpy  # noqa: F401
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import math_utils  # noqa: F401
    # asyncio rewrites code objects when it is imported (types.coroutine), which the guard refuses
    # later; scikit-learn and others import it, so a student's own `from sklearn... import` works.
    import asyncio  # noqa: F401
    for name in init.get("preload", []):
        try:
            __import__(name)
        except ImportError:
            pass  # `from module import name` lists names that are not modules
    from coursetools.grading import guard, isolation

    # The last Landlock layer's rules, worked out once (a server forks many sandboxes from here).
    init["late_rules"] = isolation.roots_without(
        init["read_roots"] + SYSTEM_FILES, isolation.package_paths(guard.kept_off_disk(init["numpy_only"])))
    if init["numpy_only"]:
        # The checker imports torch; in a numpy-only lab the submission gets inert stand-ins instead.
        sys.meta_path.insert(0, _StubChecker())
        for name in [m for m in sys.modules if m == "checker" or m.startswith("checker.")]:
            del sys.modules[name]
    # The course's modules keep only what the lab hands out (the rest holds reference answers),
    # and no source line read so far stays cached where student code could exec it.
    runner_hints = course_view.seal(init.get("handed_out", {}), init["scripts_dir"])
    linecache.clearcache()
    return runner_hints


def wall_in(init: dict, sandbox_dir: str, early: str, applied: dict) -> dict:
    """The last layers, in this order: Landlock without scripts/, seccomp, the audit hook.

    ``early`` is what the first Landlock layer reported ("" when applied). Returns the layers
    this process is inside, as the grader prints them.
    """
    from coursetools.grading import guard, landlock, seccomp

    # The second Landlock layer drops scripts/: the sealed modules' source stays out of reach. It also
    # keeps the packages the audit hook refuses off the disk (torch in a numpy-only lab, cffi always),
    # so that a way past the hook's import check still finds no file to load.
    read, list_only = init["late_rules"]
    late = landlock.restrict(read, [sandbox_dir], ["/dev/null"], list_only=list_only)
    kernel_filter = seccomp.install()
    layers = dict(layers_seen(sandbox_dir, init.get("grader_namespaces")), **applied)
    guard.disarm_ctypes()
    guard.install_guard(sandbox_dir, init["read_roots"], init["numpy_only"])
    layers["landlock"] = (f"ABI {init.get('landlock_abi', '?')}" if not (early or late) else (early or late))
    layers["seccomp"] = kernel_filter or "on"
    layers["audit_hook"] = "on"
    return layers


def serve(fd_in: int, fd_out: int, runner_hints: dict, layers: dict) -> None:
    """Say ready, then answer the grader's requests until it closes the pipe."""
    from coursetools.grading import wire

    def send(header, arrays=()):
        wire.write_frame(fd_out, wire.pack(header, arrays))

    def recv():
        return wire.unpack(wire.read_frame(fd_in))

    runner = Runner(wire, send, recv, runner_hints)
    send({"ready": True, "layers": layers})
    ops = {"exec": runner.op_exec, "names": runner.op_names, "get": runner.op_get,
           "getattr": runner.op_getattr, "call": runner.op_call}
    while True:
        try:
            msg, arrays = recv()
        except EOFError:
            return
        runner.seq = msg.get("seq", 0)
        op = ops.get(msg.get("op"))
        if op is None:
            send({"error": "unknown op", "seq": runner.seq})
            continue
        try:
            header, out_arrays = op(msg, arrays)
        except wire.WireError as exc:
            header, out_arrays = {"status": "error", "type": "WireError", "message": str(exc), "where": ""}, []
        except Exception as exc:  # a bug here must not hang the grader
            header, out_arrays = {"status": "error", "type": type(exc).__name__, "message": str(exc), "where": ""}, []
        header["seq"] = runner.seq
        send(header, out_arrays)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--zygote":
        from coursetools.grading import zygote_main

        zygote_main.main(int(sys.argv[2]), sys.argv[3])
        return
    fd_in, fd_out = int(sys.argv[1]), int(sys.argv[2])
    import json

    config = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    applied = harden(config)
    os.environ.setdefault("MPLBACKEND", "Agg")
    from coursetools.grading import landlock, wire  # noqa: E402  (after the environment is set)

    init, _ = wire.unpack(wire.read_frame(fd_in))
    sandbox_dir = init["sandbox_dir"]
    enter_folder(sandbox_dir)
    # A first Landlock layer before any library starts a thread (a ruleset binds the threads made
    # after it): reads only of Python, the system and the course's scripts/, writes only here.
    early = landlock.restrict(init["read_roots"] + [init["scripts_dir"]] + SYSTEM_FILES, [sandbox_dir],
                              ["/dev/null"])
    runner_hints = prepare(init)
    layers = wall_in(init, sandbox_dir, early, applied)
    serve(fd_in, fd_out, runner_hints, layers)


if __name__ == "__main__":
    main()
