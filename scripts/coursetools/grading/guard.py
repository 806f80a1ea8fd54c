"""The sandbox's audit hook (PEP 578): what student code may read, write and call.

:func:`install_guard` adds one audit hook to the sandbox process before any
student code runs. An audit hook cannot be removed, so the remaining way to get
past it is to change what it *depends on*. It therefore depends on nothing that
student code can reach or change:

* every name the hook uses is bound when it is built, to builtin functions,
  strings, ints, tuples and frozensets (immutable, so a frame or traceback that
  shows the hook's variables shows nothing worth editing); it looks up no
  globals or builtins, and calls no Python helper whose closure could be edited;
* it follows symbolic links itself with ``posix.lstat``/``posix.readlink``
  (not ``os.path.realpath``, whose module globals can be monkeypatched);
* it never calls code of the submission's: paths must arrive as ``str``,
  ``bytes`` or a file descriptor;
* the ways to reach its closure or rewrite running code are refused: the
  ``gc`` object walkers, ``sys.settrace``/``sys.setprofile`` (a tracer can
  write a frame's variables back), new code objects and ``marshal``, ctypes.

On Linux the sandbox adds a seccomp filter and a private mount namespace
(``seccomp.py``, ``sandbox.py``), so the kernel enforces the same boundary.
"""

from __future__ import annotations

import posix
import sys

# Events refused outright: new processes, signals, sockets, foreign calls, and the
# ways to reach or rewrite the hook (gc walkers, tracers, hand-made code objects).
DENIED_EVENTS = frozenset({
    "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "socket.__new__", "socket.connect", "socket.bind",
    "socket.sendto", "socket.sendmsg", "resource.setrlimit", "resource.prlimit", "builtins.input",
    "webbrowser.open", "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata",
    "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at", "ctypes.create_string_buffer",
    "os.setuid", "os.chroot", "os.symlink", "os.link",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile",
    "sys._current_frames", "sys._current_exceptions", "code.__new__", "mmap.__new__",
})
# Events whose path arguments must lie inside the sandbox folder.
WRITE_EVENTS = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime",
    "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copymode", "shutil.copystat",
    "shutil.copytree", "os.setxattr", "os.removexattr", "os.chflags", "os.lchflags", "os.lchmod",
})
# Events whose first path argument must be readable.
READ_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.chdir", "os.listxattr", "os.getxattr",
                         "os.startfile", "shutil.unpack_archive"})
NUMPY_ONLY_BLOCKED = ("torch", "jax", "tensorflow", "cffi")
# _cffi_backend is the C half of cffi: importing it alone gives load_library and raw calls (red team, 2026-12-02).
ALWAYS_BLOCKED = ("cffi", "_cffi_backend", "_posixsubprocess", "_ctypes")


def kept_off_disk(numpy_only: bool) -> tuple[str, ...]:
    """The blocked packages whose files the sandbox's last Landlock layer also makes unreadable."""
    return (NUMPY_ONLY_BLOCKED if numpy_only else ()) + ("cffi", "_cffi_backend")


def build_hook(sandbox_dir: str, read_roots, numpy_only: bool):
    """The audit hook for a sandbox folder, readable roots and import policy (not yet installed).

    Returns a function ``hook(event, args)`` that raises ``PermissionError``
    (``ImportError`` for a refused import, ``FileNotFoundError`` for a path
    that does not resolve) to stop an operation.
    """
    sandbox = posix.getcwd() if not sandbox_dir else _resolve_now(sandbox_dir)
    readable = tuple(_resolve_now(r) for r in read_roots) + (sandbox, "/proc/self", "/dev/null", "/dev/urandom")
    # Containment as `p in exact or p.startswith(prefixes)`: str methods cannot be patched.
    sandbox_exact, sandbox_prefixes = frozenset({sandbox}), (sandbox.rstrip("/") + "/",)
    readable_exact = frozenset(readable)
    readable_prefixes = tuple(r.rstrip("/") + "/" for r in readable)
    blocked = (NUMPY_ONLY_BLOCKED if numpy_only else ()) + ALWAYS_BLOCKED
    blocked_prefixes = tuple(b + "." for b in blocked)
    blocked_exact = frozenset(blocked)
    denied, writes, reads = DENIED_EVENTS, WRITE_EVENTS, READ_EVENTS
    write_flags = posix.O_WRONLY | posix.O_RDWR | posix.O_CREAT | posix.O_TRUNC | posix.O_APPEND
    lstat, stat, readlink, getcwd = posix.lstat, posix.stat, posix.readlink, posix.getcwd
    S_IFMT, S_IFLNK, S_IFDIR = 0o170000, 0o120000, 0o040000
    type_, str_, bytes_, int_, len_ = type, str, bytes, int, len
    decode, reversed_, OSError_ = bytes.decode, reversed, OSError
    PermissionError_, ImportError_, FileNotFoundError_ = PermissionError, ImportError, FileNotFoundError

    def hook(event, args):
        # Gather (path, writing) pairs to check; everything else is decided here.
        if event == "open":
            if len_(args) < 3:
                raise PermissionError_("not allowed while grading: open with unexpected arguments")
            path, mode, flags = args[0], args[1], args[2]
            if type_(path) is int_ or path is None:
                return  # an already-open file descriptor
            writing = False
            if type_(mode) is str_:
                for c in mode:
                    if c == "w" or c == "a" or c == "x" or c == "+":
                        writing = True
            if type_(flags) is int_ and flags & write_flags:
                writing = True
            paths = (path,)
            opening = True
        elif event == "import":
            name = args[0]
            if type_(name) is str_ and (name in blocked_exact or name.startswith(blocked_prefixes)):
                raise ImportError_(f"{name} is not available while grading"
                                   + (": this lab's exercises are numpy-only" if name.startswith("torch") else ""))
            return
        elif event in denied:
            raise PermissionError_(f"not allowed while grading: {event}")
        elif event in writes:
            paths, writing, opening = args, True, False
        elif event in reads:
            paths, writing, opening = args[:1], False, False
        else:
            return
        for path in paths:
            kind = type_(path)
            if kind is int_ or path is None:
                continue  # a directory file descriptor or an unused argument
            if kind is bytes_:
                path = decode(path, "utf-8", "surrogateescape")
            elif kind is not str_:
                raise PermissionError_(f"not allowed while grading: a path of type {kind.__name__}; "
                                       f"pass a str")
            # A relative path may be opened against a directory descriptor (dir_fd=), which the
            # 'open' event does not report: it is resolved here against the current directory, so
            # it must not climb ('..'), or it could reach past the descriptor's folder unseen.
            if not path.startswith("/"):
                for part in path.split("/"):
                    if part == "..":
                        raise PermissionError_(f"not allowed while grading: a relative path with '..' "
                                               f"({path!r}); use an absolute path")
            # Resolve like the kernel: absolute, '.' and '..' applied, symbolic links followed.
            pending = (getcwd() + "/" + path if not path.startswith("/") else path).split("/")
            pending.reverse()
            resolved, links, exists = "", 0, True
            while pending:
                name = pending.pop()
                if name == "" or name == ".":
                    continue
                if name == "..":
                    resolved = resolved.rpartition("/")[0]
                    continue
                candidate = resolved + "/" + name
                if exists:
                    try:
                        mode_bits = lstat(candidate).st_mode
                    except OSError_:
                        exists = False
                        mode_bits = 0
                    if mode_bits & S_IFMT == S_IFLNK:
                        links += 1
                        if links > 40:
                            raise PermissionError_("not allowed while grading: too many symbolic links")
                        target = readlink(candidate)
                        if target.startswith("/"):
                            resolved = ""
                        for part in reversed_(target.split("/")):
                            pending.append(part)
                        continue
                resolved = candidate
            resolved = resolved or "/"
            in_sandbox = resolved in sandbox_exact or resolved.startswith(sandbox_prefixes)
            if writing:
                if not in_sandbox:
                    raise PermissionError_(f"not allowed while grading: writing {path!r}")
                continue
            if not (in_sandbox or resolved in readable_exact or resolved.startswith(readable_prefixes)):
                raise PermissionError_(f"not allowed while grading: reading {path!r}")
            if opening and not in_sandbox and exists:
                # A directory descriptor outside the sandbox would let `dir_fd=` reach past this hook.
                try:
                    if stat(resolved).st_mode & S_IFMT == S_IFDIR:
                        raise PermissionError_(f"not allowed while grading: opening directory {path!r}")
                except OSError_ as exc:
                    if type_(exc) is PermissionError_:
                        raise
            if not exists and opening:
                raise FileNotFoundError_(2, "No such file or directory", path)

    return hook


def _resolve_now(path: str) -> str:
    """``os.path.realpath`` while the process is still trusted (before the hook exists)."""
    import os

    return os.path.realpath(path)


# ctypes calls through already-made function objects raise no audit event, and
# numpy and torch keep references to the ctypes module: take away its raw-memory
# and foreign-call tools. Its type constructors stay (torch imports modules that
# build pointer types on a first optimizer step).
CTYPES_TOOLS = ("memmove", "memset", "cast", "string_at", "wstring_at", "pythonapi", "cdll", "pydll",
                "CDLL", "PyDLL", "LibraryLoader", "CFUNCTYPE", "PYFUNCTYPE", "_CFuncPtr", "_cast",
                "_string_at", "_wstring_at", "_memmove_addr", "_memset_addr", "_cast_addr",
                "_string_at_addr", "_wstring_at_addr", "_dlopen", "util")


def disarm_ctypes() -> None:
    """Replace ctypes' memory and foreign-call tools with a function that refuses."""
    ctypes = sys.modules.get("ctypes")
    if ctypes is None:
        return

    def refused(*args, **kwargs):
        raise PermissionError("not allowed while grading: ctypes")

    for name in CTYPES_TOOLS:
        if hasattr(ctypes, name):
            setattr(ctypes, name, refused)


def install_guard(sandbox_dir: str, read_roots, numpy_only: bool) -> None:
    """Install the audit hook. After this, the process can only do what grading needs."""
    for name in [m for m in sys.modules if m in ALWAYS_BLOCKED]:
        # Already-imported modules would bypass the import check (ctypes itself stays, disarmed).
        del sys.modules[name]
    sys.addaudithook(build_hook(sandbox_dir, read_roots, numpy_only))
