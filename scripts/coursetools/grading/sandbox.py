"""Parent side of the sandbox: start it with limits, talk to it, kill it on a timeout."""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .isolation import Isolation, mount_isolation
from ..paths import ROOT


class SandboxDied(RuntimeError):
    """The sandbox process exited (os._exit, a crash, the memory limit)."""


class SandboxTimeout(RuntimeError):
    """The sandbox did not answer in time (an endless loop); it has been killed."""


@dataclass
class Limits:
    """Resource limits of one sandbox process."""

    memory_bytes: int = 3 * 2**30   # address space: numpy needs some head room
    cpu_seconds: int = 600          # a backstop; wall-clock timeouts act first
    file_bytes: int = 50 * 2**20    # largest file the submission may write in its folder
    call_seconds: float = 60.0      # one function call or one cell, callbacks to the grader included
    notebook_seconds: float = 600.0  # everything of one notebook: slow-but-finite code cannot stall a class
    start_seconds: float = 60.0


def seccomp_available() -> str:
    """"" when a sandbox process can install its seccomp filter here, else why not."""
    probe = subprocess.run([sys.executable, "-c", "from coursetools.grading import seccomp; print(seccomp.install())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else f"seccomp probe failed: {probe.stderr[-200:]}"


class Sandbox:
    """One submission's code, running in its own process.

    Parameters
    ----------
    numpy_only : bool
        Refuse ``import torch`` (and other frameworks) in student code.
    preload : list of str
        Modules imported before the guard is installed.
    handed_out : dict
        ``{module: [names]}`` of the course's modules that the lab's setup cells
        import (``TrustedLab.handed_out``); the sandbox deletes every other name
        of the course's modules before student code runs (``course_view.seal``).
    isolation : Isolation or None
        Mount isolation to apply; None for the audit hook alone.
    """

    def __init__(self, numpy_only: bool, preload=(), limits: Limits | None = None,
                 isolation: Isolation | None = None, workdir: Path | None = None, handed_out=None):
        self.limits = limits or Limits()
        self.numpy_only = numpy_only
        self.preload = list(preload)
        self.handed_out = dict(handed_out or {})
        self.isolation = isolation
        self.workdir = workdir
        self.proc = None
        self.callbacks: dict[int, object] = {}
        self.deadline: float | None = None  # time.monotonic() when the notebook's budget runs out

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        limits, isolation = self.limits, self.isolation

        def preexec():
            os.setsid()
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if isolation is not None and not mount_isolation(isolation):
                os._exit(70)

        env = {
            "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coursetools.grading.sandbox_main", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=env, cwd="/", preexec_fn=preexec)
        os.close(to_child_r)
        os.close(from_child_w)
        self.fd_out, self.fd_in = to_child_w, from_child_r
        sandbox_dir = "/tmp/submission" if isolation is not None else str(self.workdir)
        # Not the course's scripts/: what a lab hands out is loaded before the guard, and the
        # rest of those modules (reference answers) must not be loadable afresh from disk.
        read_roots = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix,
                             "/usr/lib", "/usr/share", "/usr/local/lib", "/etc", "/sys/devices/system/cpu"})
        self._send({"sandbox_dir": sandbox_dir, "read_roots": read_roots, "numpy_only": self.numpy_only,
                    "preload": self.preload, "handed_out": self.handed_out, "scripts_dir": str(ROOT / "scripts")})
        header, _ = self._recv(self.limits.start_seconds)
        if not header.get("ready"):
            raise SandboxDied("the sandbox did not start")

    def close(self) -> None:
        if self.proc is None:
            return
        for fd in (self.fd_out, self.fd_in):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- messages --------------------------------------------------------
    def _send(self, header: dict, arrays=()) -> None:
        try:
            wire.write_frame(self.fd_out, wire.pack(header, arrays))
        except (BrokenPipeError, OSError) as exc:
            raise SandboxDied(f"the sandbox process is gone ({exc})") from None

    def _recv(self, timeout: float, deadline: float | None = None):
        """One message; ``deadline`` (monotonic) ends the wait early, e.g. a request's or the notebook's."""
        deadline = time.monotonic() + timeout if deadline is None else deadline

        def wait():
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd_in], [], [], left)[0]:
                self.close()
                if self.deadline is not None and deadline >= self.deadline:
                    raise SandboxTimeout(f"the notebook's grading time ({self.limits.notebook_seconds:.0f} s) "
                                         f"ran out")
                raise SandboxTimeout(f"no answer within {timeout:.0f} s")

        try:
            return wire.unpack(wire.read_frame(self.fd_in, wait))
        except EOFError:
            code = self.proc.wait() if self.proc else None
            self.close()
            raise SandboxDied(f"the sandbox process exited (code {code})") from None

    def request(self, header: dict, arrays=()):
        """Send one request and wait for its answer, serving callbacks meanwhile.

        One deadline covers the request and every callback it makes: code that calls a
        grader function in an endless loop times out like any other endless loop.
        """
        timeout = self.limits.call_seconds
        deadline = time.monotonic() + timeout
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)
        self._send(header, arrays)
        while True:
            reply, reply_arrays = self._recv(timeout, deadline)
            if reply.get("op") != "callback":
                return reply, reply_arrays
            self._serve_callback(reply, reply_arrays)

    def _serve_callback(self, msg, arrays) -> None:
        fn = self.callbacks.get(int(msg["func"]))
        try:
            args = wire.decode(msg["args"], arrays)
            tree, out = wire.encode(fn(*args))
            self._send({"result": tree}, out)
        except Exception as exc:
            self._send({"error": f"{type(exc).__name__}: {exc}"})

    def register_callback(self, fn) -> int:
        fid = len(self.callbacks) + 1
        self.callbacks[fid] = fn
        return fid
