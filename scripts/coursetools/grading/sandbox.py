"""Parent side of the sandbox: start it walled in, talk to it, stop it on CPU time, tell crashes from kills.

Limits are CPU time, not wall-clock time, so a grade never depends on how busy the machine
is: the grader reads the sandbox's CPU time from ``/proc`` while it waits, and stops a call
(or the whole notebook) that used more than its share. A wall-clock backstop several times
larger catches code that sleeps or blocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import wire
from .isolation import Isolation, read_roots, sandbox_uid
from .seccomp import EXTERNAL_SIGNALS
from .zygote import Zygote, ZygoteChild, ZygoteGone, bwrap_command_pid, grader_namespaces, sandbox_env
from ..paths import ROOT

# What a sandbox may send back at most: one frame, its JSON header, the items in it.
MAX_REPLY_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 2 * 2**20
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_slots = iter(range(1, 1 << 30))


class SandboxDied(RuntimeError):
    """The sandbox process ended by itself (os._exit, a crash, the memory limit): the student's doing."""


class SandboxTimeout(RuntimeError):
    """The sandbox used up its CPU time (or the wall-clock backstop); it has been killed."""


class SandboxKilled(BaseException):
    """The sandbox was killed from outside (the out-of-memory killer, an operator): not the student's doing.

    A BaseException, so no check's ``except Exception`` turns it into a failed exercise: it
    reaches the grader, which grades the notebook again or reports an infrastructure fault.
    """


class SandboxViolation(RuntimeError):
    """The sandbox sent something that is not an answer to the grader's request (a forged or stale frame)."""


@contextlib.contextmanager
def memory_ceiling(extra_bytes: int):
    """Inside, this process's address space may grow by at most ``extra_bytes`` (RLIMIT_AS, soft limit).

    An allocation past it raises ``MemoryError`` in the code that asked, instead of taking the machine's
    memory until the out-of-memory killer chooses a process. The soft limit is put back on the way out
    (the hard limit is left alone, so it can be). Where the limit cannot be read or set, nothing changes.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        ceiling = min(v for v in (size + extra_bytes, soft, hard) if v != resource.RLIM_INFINITY)
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass
class Limits:
    """Resource limits of one sandbox process.

    ``call_seconds`` and ``notebook_seconds`` are CPU seconds of the sandbox; waiting for an
    answer also stops after ``wall_factor`` times as many wall-clock seconds (code that sleeps).
    """

    memory_bytes: int = 3 * 2**30   # address space: numpy needs some head room
    cpu_seconds: int = 1200         # the kernel's backstop for one sandbox process (RLIMIT_CPU)
    file_bytes: int = 50 * 2**20    # largest file the submission may write in its folder
    threads: int = 64               # threads and processes of the sandbox's own user (RLIMIT_NPROC)
    open_files: int = 256
    call_seconds: float = 60.0      # CPU time of one function call or one cell
    notebook_seconds: float = 600.0  # CPU time of all of one notebook: slow-but-finite code cannot stall a class
    wall_factor: float = 4.0
    start_seconds: float = 120.0    # wall-clock, for the grader's own start-up of a sandbox
    # Wall-clock for a sandbox server to delete what one forked sandbox left; past it the server is
    # replaced instead (its private tmpfs goes with it). A red-team submission left an 800-deep
    # chain of folders holding a million FIFOs, which took the cleaner minutes.
    clean_seconds: float = 10.0

    def kernel_limits(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpu_seconds": self.cpu_seconds,
                "file_bytes": self.file_bytes, "threads": self.threads, "open_files": self.open_files}


def seccomp_available() -> str:
    """"" when a sandbox process can install its seccomp filter here, else why not."""
    probe = subprocess.run([sys.executable, "-c", "from coursetools.grading import seccomp; print(seccomp.install())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else f"seccomp probe failed: {probe.stderr[-200:]}"


def cpu_seconds_of(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads); 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


#: Course functions whose results (torch models: not data) a sandbox may send back to the grader as the
#: call that made them, with the keywords allowed: the grader builds its own copy (a reference that
#: stands in for a student's earlier function gets the model the student's code passed it).
REBUILDABLE = {("nets", "build_faulty_net"): ("seed", "fault")}


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
        Namespaces (bubblewrap) to start the sandbox in; None for the in-process layers alone.
    cpu_allowance : float or None
        CPU seconds this sandbox may use in all (what is left of the notebook's budget).
    zygote : Zygote or None
        A sandbox server (started with the same ``numpy_only``, ``preload``, ``handed_out`` and
        isolation) to fork this sandbox from, instead of starting a new interpreter.
    """

    def __init__(self, numpy_only: bool, preload=(), limits: Limits | None = None,
                 isolation: Isolation | None = None, workdir: Path | None = None, handed_out=None,
                 cpu_allowance: float | None = None, zygote: Zygote | None = None):
        self.limits = limits or Limits()
        self.numpy_only = numpy_only
        self.preload = list(preload)
        self.handed_out = dict(handed_out or {})
        self.isolation = isolation if isolation is not None and isolation.bwrap else None
        self.workdir = workdir
        self.proc = None
        self.pid: int | None = None          # the sandboxed Python, as this side numbers it
        self.callbacks: dict[int, object] = {}
        self.deadline: float | None = None   # wall-clock backstop of the notebook (time.monotonic())
        self.cpu_allowance = cpu_allowance
        self.cpu_base = 0.0                  # CPU time the start-up used (the grader's, not the student's)
        self.callback_cpu = 0.0              # the grader's CPU time in calls the sandbox made back to it
        self.cpu_seen = 0.0                  # the largest CPU reading while waiting
        self.layers: dict = {}
        self.seq = 0
        self.exit_code: int | None = None
        self.zygote = zygote

    # -- lifecycle -------------------------------------------------------
    def _uid(self) -> int | None:
        """An unprivileged uid of its own when the grader is root (and bubblewrap is there)."""
        isolation = self.isolation
        return sandbox_uid(os.getpid() * 64 + next(_slots)) if isolation and isolation.drop_uid else None

    def start(self) -> None:
        if self.zygote is not None:
            self._start_forked()
            return
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        info_r, info_w = os.pipe() if self.isolation else (None, None)
        isolation = self.isolation
        config = {"limits": self.limits.kernel_limits(), "uid": self._uid()}
        env = sandbox_env()
        argv = [sys.executable, "-m", "coursetools.grading.sandbox_main", str(to_child_r), str(from_child_w),
                json.dumps(config)]
        fds = (to_child_r, from_child_w) + ((info_w,) if info_w is not None else ())
        # No preexec_fn (unsafe in a threaded parent): every limit is applied by the sandbox itself.
        self.proc = subprocess.Popen(
            isolation.command(argv, info_w) if isolation else argv,
            pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            # MDL_SANDBOX_DEBUG=1 shows the sandbox's own errors (a maintainer's switch, never in grading).
            stderr=None if os.environ.get("MDL_SANDBOX_DEBUG") else subprocess.DEVNULL,
            env=env, cwd="/", start_new_session=True)
        for fd in fds:
            os.close(fd)
        self.fd_out, self.fd_in = to_child_w, from_child_r
        self.pid = self.proc.pid
        if info_r is not None:
            # The sandboxed Python (bubblewrap's init is not it): its CPU time is what the limits count.
            self.pid = bwrap_command_pid(info_r, self.limits.start_seconds)
        sandbox_dir = isolation.sandbox_dir if isolation else str(self.workdir)
        from . import landlock

        self._send({"sandbox_dir": sandbox_dir, "read_roots": read_roots(), "numpy_only": self.numpy_only,
                    "preload": self.preload, "handed_out": self.handed_out, "scripts_dir": str(ROOT / "scripts"),
                    "landlock_abi": landlock.abi_version(), "grader_namespaces": grader_namespaces()})
        self._await_ready()

    def _start_forked(self) -> None:
        """This sandbox as a child of the sandbox server: the imports are done, every layer is its own."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.proc = self.zygote.spawn(self._uid(), self.limits, (to_child_r, from_child_w))
        except ZygoteGone as exc:
            for fd in (to_child_w, from_child_r):
                os.close(fd)
            raise SandboxKilled(f"the sandbox server is gone ({exc})") from None
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.fd_out, self.fd_in = to_child_w, from_child_r
        self.pid = self.proc.pid
        self._await_ready()

    def _await_ready(self) -> None:
        header, _ = self._recv(None, time.monotonic() + self.limits.start_seconds, expect_seq=False)
        if not header.get("ready"):
            raise SandboxDied("the sandbox did not start")
        self.layers = header.get("layers", {})
        self.cpu_base = cpu_seconds_of(self.pid)
        self.cpu_seen = 0.0  # read while starting, before the base was known: the start-up is not the student's

    def cpu_used(self) -> float:
        """CPU seconds the submission's code has used in this sandbox so far, with the grader's CPU
        seconds in the calls it made back to the grader (they run on the submission's behalf)."""
        return max(0.0, cpu_seconds_of(self.pid) - self.cpu_base) + self.callback_cpu

    def close(self) -> None:
        if self.proc is None:
            return
        for fd in (self.fd_out, self.fd_in):
            try:
                os.close(fd)
            except OSError:
                pass
        if isinstance(self.proc, ZygoteChild):
            self.proc.kill()  # the child alone: its process group is the server's
        else:
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

    def _recv(self, cpu_limit: float | None, wall_deadline: float, expect_seq: bool = True):
        """One message from the sandbox.

        Stops the sandbox when its CPU time passes ``cpu_limit`` (seconds, as :meth:`cpu_used`
        counts) or the wall clock passes ``wall_deadline`` (monotonic); refuses frames that are
        too large, malformed, or not for the current request.
        """

        def wait():
            while True:
                left = wall_deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise SandboxTimeout(self._timeout_message(wall=True))
                if select.select([self.fd_in], [], [], min(left, 0.05))[0]:
                    return
                self.cpu_seen = max(self.cpu_seen, self.cpu_used())
                if cpu_limit is not None and self.cpu_seen > cpu_limit:
                    self.close()
                    raise SandboxTimeout(self._timeout_message(wall=False))

        try:
            frame = wire.read_frame(self.fd_in, wait, limit=MAX_REPLY_BYTES)
            header, arrays = wire.unpack(frame, max_header=MAX_HEADER_BYTES)
        except EOFError:
            raise self._ended() from None
        except (wire.WireError, ValueError, KeyError, TypeError, RecursionError, OSError) as exc:
            self.close()
            raise SandboxViolation(f"the sandbox sent a malformed message ({type(exc).__name__})") from None
        if not isinstance(header, dict) or (expect_seq and header.get("seq") != self.seq):
            self.close()
            raise SandboxViolation("the sandbox sent a message that answers no request of the grader's "
                                   "(written straight to the grader's pipe)")
        return header, arrays

    def _timeout_message(self, wall: bool) -> str:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return f"the notebook's grading time ({self.limits.notebook_seconds:.0f} s of CPU) ran out"
        if wall:
            return (f"no answer within {self.limits.call_seconds * self.limits.wall_factor:.0f} s "
                    f"(waiting, not computing: sleep, input or a lock)")
        if self.cpu_allowance is not None and self.cpu_used() >= self.cpu_allowance:
            return f"the notebook's grading time ({self.limits.notebook_seconds:.0f} s of CPU) ran out"
        return f"no answer within {self.limits.call_seconds:.0f} s of CPU time"

    def _ended(self) -> Exception:
        """Why the sandbox process is gone: its own crash, its CPU limit, or a kill from outside."""
        proc = self.proc
        used = max(self.cpu_used(), self.cpu_seen)
        forked = isinstance(proc, ZygoteChild)
        code = (proc.wait(ended_by_itself=True) if forked else proc.wait()) if proc is not None else None
        self.close()
        self.exit_code = code
        if forked and proc.killed_by_grader:
            return SandboxDied("the sandbox closed its connection to the grader")
        sig = None
        if code is not None and code < 0:
            sig = -code                      # without bubblewrap, or bubblewrap itself was killed
        elif code is not None and code > 128 and self.isolation is not None and not forked:
            sig = code - 128                 # bubblewrap reports its child's death by signal so;
            # the sandbox cannot exit with such a status itself (the seccomp filter refuses it).
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and used >= self.limits.cpu_seconds):
            return SandboxTimeout(f"the sandbox reached its CPU limit ({self.limits.cpu_seconds} s)")
        if sig in EXTERNAL_SIGNALS:
            name = signal.Signals(sig).name
            return SandboxKilled(f"the sandbox was killed from outside by {name} (the out-of-memory killer "
                                 f"or an operator), not by the submission")
        what = f"signal {signal.Signals(sig).name}" if sig else f"code {code}"
        return SandboxDied(f"the sandbox process exited ({what})")

    def request(self, header: dict, arrays=()):
        """Send one request and wait for its answer, serving callbacks meanwhile.

        One CPU budget covers the request and every callback it makes: code that calls a
        grader function in an endless loop times out like any other endless loop.
        """
        self.seq += 1
        header = dict(header, seq=self.seq)
        cpu_limit = self.cpu_used() + self.limits.call_seconds
        if self.cpu_allowance is not None:
            cpu_limit = min(cpu_limit, self.cpu_allowance)
        wall = time.monotonic() + self.limits.call_seconds * self.limits.wall_factor
        if self.deadline is not None:
            wall = min(wall, self.deadline)
        self._send(header, arrays)
        while True:
            reply, reply_arrays = self._recv(cpu_limit, wall)
            if reply.get("op") != "callback":
                return reply, reply_arrays
            self._serve_callback(reply, reply_arrays)
            # Checked here too: a sandbox that calls back without pause never leaves the grader waiting.
            self.cpu_seen = max(self.cpu_seen, self.cpu_used())
            if self.cpu_seen > cpu_limit:
                self.close()
                raise SandboxTimeout(self._timeout_message(wall=False))

    def _serve_callback(self, msg, arrays) -> None:
        fn = self.callbacks.get(msg.get("func")) if type(msg.get("func")) is int else None
        if fn is None:
            self.close()
            raise SandboxViolation("the sandbox called back a function the grader never gave it")
        try:
            args, kwargs = wire.decode(msg["args"], arrays, from_made=self._rebuild)
            if not isinstance(args, list) or not isinstance(kwargs, dict) or \
                    not all(isinstance(k, str) for k in kwargs):
                raise TypeError("a call back to the grader takes a list of arguments and a dict of keywords")
            # The grader's work on the sandbox's behalf gets the sandbox's limits: its CPU time counts
            # against the submission's, and it may take no more memory than the sandbox may (a red-team
            # cell had a reference linear layer build a 20,000 x 20,000 product in the grader).
            start = time.thread_time()
            try:
                with memory_ceiling(self.limits.memory_bytes):
                    value = fn(*args, **kwargs)
            finally:
                self.callback_cpu += time.thread_time() - start
            tree, out = wire.encode(value)
            self._send({"result": tree}, out)
        except SandboxDied:
            raise
        except Exception as exc:
            self._send({"error": f"{type(exc).__name__}: {exc}"})

    def _rebuild(self, recipe: dict, item):
        """An object the sandbox's copy of a course function built, built again here from the same call.

        Only for a call the grader can afford and trust whatever the sandbox says: a function of
        :data:`REBUILDABLE` that this lab hands out, with those keywords only, small integers.
        """
        module, function, kwargs, _ = wire.made_recipe(recipe)
        allowed = REBUILDABLE.get((module, function))
        names = self.handed_out.get(module)
        if allowed is None or not isinstance(names, (list, tuple)) or function not in names:
            raise wire.WireError(f"the grader does not build {module}.{function}")
        if set(kwargs) - set(allowed) or not all(v is None or (type(v) is int and abs(v) < 2**31)
                                                 for v in kwargs.values()):
            raise wire.WireError(f"the grader builds {module}.{function} with small integer {', '.join(allowed)} only")
        import importlib

        value = getattr(importlib.import_module(module), function)(**kwargs)
        return value if item is None else value[item]

    def register_callback(self, fn) -> int:
        fid = len(self.callbacks) + 1
        self.callbacks[fid] = fn
        return fid
