"""Grader side of the sandbox server: one pre-imported process per lab that forks each sandbox.

A fresh sandbox is a new interpreter that imports numpy, matplotlib and (for some labs)
torch: most of a second per submission, longer than grading a typical notebook. A
:class:`Zygote` pays that once per lab and worker: it starts ``zygote_main`` in the
namespaces a sandbox gets (bubblewrap), and each :class:`ZygoteChild` it forks takes the
per-sandbox layers itself (its own uid, limits, Landlock, seccomp, audit hook) before it
reads any request. :class:`ZygotePool` keeps the servers of one grading process.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict

from .isolation import Isolation, read_roots, sandbox_uid
from ..paths import ROOT

CHILD_FOLDER = "submission"


class ZygoteGone(RuntimeError):
    """The sandbox server ended or stopped answering (killed from outside, or out of memory)."""


def sandbox_env() -> dict:
    """The environment of every sandbox process: one BLAS thread, no display, no bytecode files."""
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
    }
    if os.environ.get("MDL_SANDBOX_DEBUG"):
        env["MDL_SANDBOX_DEBUG"] = "1"  # a maintainer's switch: the sandbox's own errors on stderr
    return env


def grader_namespaces() -> dict:
    """The grader's own namespace ids, for a sandbox to tell whether its namespaces are new ones."""
    from .sandbox_main import namespace_ids

    return namespace_ids()


def bwrap_child_pid(info_r: int, seconds: float) -> int | None:
    """The sandboxed process's pid, from bubblewrap's --info-fd (JSON, written once it has started)."""
    data = b""
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and select.select([info_r], [], [], end - time.monotonic())[0]:
            chunk = os.read(info_r, 4096)
            if not chunk:
                break
            data += chunk
            try:
                return int(json.loads(data)["child-pid"])
            except ValueError:
                continue
    finally:
        os.close(info_r)
    return None


def bwrap_command_pid(info_r: int, seconds: float) -> int | None:
    """The pid of the command bubblewrap runs (not of bubblewrap's own init, which --info-fd names).

    With a new PID namespace bubblewrap's init is process 1 there and the command process 2:
    the grader measures the command's CPU time and must find its pid.
    """
    init = bwrap_child_pid(info_r, seconds)
    if init is None:
        return None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pid = host_pid_of(2, init)
        if pid is not None:
            return pid
        time.sleep(0.002)
    return None


def host_pid_of(ns_pid: int, parent: int) -> int | None:
    """The pid, as this side numbers it, of ``parent``'s child that is ``ns_pid`` in its own PID namespace."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("PPid:", "NSpid:")))
        except (OSError, ValueError):
            continue
        if int(fields.get("PPid", "0").strip() or 0) == parent and \
                int(fields.get("NSpid", "0").split()[-1]) == ns_pid:
            return int(entry)
    return None


class Zygote:
    """One sandbox server: a lab's imports done once, one forked sandbox at a time.

    Parameters
    ----------
    numpy_only, preload, handed_out
        As for :class:`coursetools.grading.sandbox.Sandbox`.
    limits : Limits
        The per-sandbox limits (the server's own address space is held to the same memory limit).
    isolation : Isolation or None
        The namespaces the server (and so every sandbox it forks) lives in.
    """

    def __init__(self, numpy_only: bool, preload, handed_out, limits, isolation: Isolation | None):
        self.numpy_only, self.preload, self.handed_out = numpy_only, list(preload), dict(handed_out or {})
        self.limits = limits
        self.isolation = isolation if isolation is not None and isolation.bwrap else None
        self.proc: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.host_pid: int | None = None
        self.children_root: str | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        self.retired = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.retired

    def start(self) -> None:
        from . import landlock

        control, remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        info_r, info_w = os.pipe() if self.isolation else (None, None)
        config = {"limits": self.limits.kernel_limits()}
        argv = [sys.executable, "-m", "coursetools.grading.sandbox_main", "--zygote", str(remote.fileno()),
                json.dumps(config)]
        fds = (remote.fileno(),) + ((info_w,) if info_w is not None else ())
        self.proc = subprocess.Popen(
            self.isolation.command(argv, info_w) if self.isolation else argv,
            pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=None if os.environ.get("MDL_SANDBOX_DEBUG") else subprocess.DEVNULL,
            env=sandbox_env(), cwd="/", start_new_session=True)
        remote.close()
        if info_w is not None:
            os.close(info_w)
        self.control = control
        self.host_pid = self.proc.pid
        if info_r is not None:
            self.host_pid = bwrap_command_pid(info_r, self.limits.start_seconds)
            if self.host_pid is None:
                self.close()
                raise ZygoteGone("the sandbox server did not start (no process in its namespace)")
        if self.isolation:
            self.children_root = "/tmp"  # bubblewrap's private tmpfs
        else:
            self._scratch = tempfile.TemporaryDirectory(prefix="mdl-zygote-")
            self.children_root = self._scratch.name
        self._send({"children_root": self.children_root, "private_tmp": bool(self.isolation),
                    "binds": list(self.isolation.binds) if self.isolation else [],
                    "read_roots": read_roots(), "numpy_only": self.numpy_only, "preload": self.preload,
                    "handed_out": self.handed_out, "scripts_dir": str(ROOT / "scripts"),
                    "landlock_abi": landlock.abi_version(), "grader_namespaces": grader_namespaces()})
        reply = self._recv(self.limits.start_seconds)
        if not reply.get("ready"):
            self.close()
            raise ZygoteGone("the sandbox server did not start")

    @property
    def sandbox_dir(self) -> str:
        return os.path.join(self.children_root, CHILD_FOLDER)

    def spawn(self, uid: int | None, limits, pipe_ends: tuple[int, int]) -> "ZygoteChild":
        """Fork one sandbox that reads requests from ``pipe_ends[0]`` and answers on ``pipe_ends[1]``."""
        if self.retired:
            raise ZygoteGone("this sandbox server is retired (what a sandbox left could not be removed)")
        self._send({"op": "spawn", "uid": uid, "limits": limits.kernel_limits(), "sandbox_dir": self.sandbox_dir},
                   fds=list(pipe_ends))
        reply = self._recv(self.limits.start_seconds)
        if "pid" not in reply:
            self.retire()
            raise ZygoteGone(f"the sandbox server refused a sandbox: {reply.get('error')}")
        ns_pid = int(reply["pid"])
        host_pid = host_pid_of(ns_pid, self.host_pid) if self.isolation else ns_pid
        if host_pid is None:
            self.retire()
            raise ZygoteGone("the sandbox server's child could not be found")
        return ZygoteChild(self, ns_pid, host_pid, uid)

    def reap(self, child: "ZygoteChild", wait_seconds: float) -> int | None:
        """The child's return code once it has ended (None while it runs); the server then cleans up after it."""
        self._send({"op": "reap", "pid": child.ns_pid, "uid": child.uid, "wait_seconds": wait_seconds,
                    "sandbox_dir": self.sandbox_dir})
        reply = self._recv(wait_seconds + self.limits.start_seconds)
        if reply.get("running"):
            return None
        if "returncode" not in reply:
            self.retire()
            raise ZygoteGone(f"the sandbox server could not reap its child: {reply.get('error')}")
        code = int(reply["returncode"])
        try:
            clean = self._recv(self.limits.clean_seconds).get("clean")
        except ZygoteGone:
            clean = False
        if not clean:
            # Files of this child survived, or the cleaner is still at them: the child's outcome stands,
            # the server goes now (with its tmpfs) and the next sandbox gets a fresh one.
            self.retire()
            self.close()
        return code

    def retire(self) -> None:
        """Fork no more sandboxes from this server; the pool starts a new one."""
        self.retired = True

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    # -- control messages --------------------------------------------------
    def _send(self, message: dict, fds=()) -> None:
        if self.control is None:
            raise ZygoteGone("the sandbox server is closed")
        try:
            socket.send_fds(self.control, [json.dumps(message).encode()], list(fds))
        except OSError as exc:
            self.retire()
            raise ZygoteGone(f"the sandbox server is gone ({exc})") from None

    def _recv(self, seconds: float) -> dict:
        self.control.settimeout(seconds)
        try:
            data = self.control.recv(1 << 20)
        except (OSError, socket.timeout) as exc:
            self.retire()
            raise ZygoteGone(f"the sandbox server did not answer ({exc})") from None
        if not data:
            self.retire()
            raise ZygoteGone("the sandbox server is gone")
        return json.loads(data)


class ZygoteChild:
    """One forked sandbox, as :class:`~coursetools.grading.sandbox.Sandbox` drives it.

    ``pid`` is its pid on the grader's side (for CPU time and kills); ``ns_pid`` the server's.
    """

    def __init__(self, zygote: Zygote, ns_pid: int, pid: int, uid: int | None):
        self.zygote, self.ns_pid, self.pid, self.uid = zygote, ns_pid, pid, uid
        self.returncode: int | None = None
        self.killed_by_grader = False

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, ended_by_itself: bool = False) -> int:
        """Its return code; a child that closed its pipes but lingers is killed (and marked so)."""
        if self.returncode is not None:
            return self.returncode
        try:
            code = self.zygote.reap(self, 2.0 if ended_by_itself else 0.0)
            if code is None:
                self.killed_by_grader = ended_by_itself
                self.kill()
                code = self.zygote.reap(self, 10.0)
        except ZygoteGone:
            code = -signal.SIGKILL  # the server died, and its children with it (PR_SET_PDEATHSIG)
        self.returncode = code if code is not None else -signal.SIGKILL
        return self.returncode


class ZygotePool:
    """The sandbox servers of one grading process, one per lab configuration, the ``keep`` most recent."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self.servers: OrderedDict = OrderedDict()

    def get(self, numpy_only: bool, preload, handed_out, limits, isolation: Isolation | None) -> Zygote:
        isolation = isolation if isolation is not None and isolation.bwrap else None
        key = json.dumps([numpy_only, list(preload), handed_out, limits.kernel_limits(),
                          [isolation.bwrap, isolation.binds, isolation.drop_uid, isolation.user_namespace]
                          if isolation else None], sort_keys=True)
        server = self.servers.pop(key, None)
        if server is not None and not server.alive:
            server.close()
            server = None
        if server is None:
            server = Zygote(numpy_only, preload, handed_out, limits, isolation)
            server.start()
        self.servers[key] = server
        while len(self.servers) > self.keep:
            _, old = self.servers.popitem(last=False)
            old.close()
        return server

    def close(self) -> None:
        while self.servers:
            _, server = self.servers.popitem()
            server.close()


_default_pool: ZygotePool | None = None


def default_pool() -> ZygotePool:
    """This process's pool (closed when the process exits; bubblewrap's --die-with-parent covers a crash)."""
    global _default_pool
    if _default_pool is None:
        import atexit

        _default_pool = ZygotePool()
        atexit.register(_default_pool.close)
    return _default_pool
