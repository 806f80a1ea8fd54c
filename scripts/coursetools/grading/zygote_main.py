"""The sandbox server ("zygote"): imports a lab's libraries once, then forks one sandbox per submission.

Started by :class:`coursetools.grading.zygote.Zygote` as
``python -m coursetools.grading.sandbox_main --zygote CONTROL_FD CONFIG``, inside the
same bubblewrap namespaces a single sandbox gets. It never runs student code. It
imports numpy, matplotlib, the lab's handed-out modules (and torch, for labs that
use it), cuts the course's modules down (``course_view.seal``) and applies the first
Landlock layer; then, for every request of the grader, it forks a child that takes
every per-sandbox layer itself, in the order a fresh sandbox takes them:

1. ``PR_SET_PDEATHSIG`` and, when the grader is root, an unprivileged uid of its own;
   resource limits (``sandbox_main.harden``);
2. its own folder (``/tmp/submission``, made after the uid drop);
3. the second Landlock layer (writes only in its folder), the seccomp filter (no new
   processes: the child cannot fork again), the audit hook.

Fork costs milliseconds where a new interpreter importing torch costs most of a second.

What one child could leave for the next is removed before the next starts: the grader
kills a child before asking for the next one; the server waits for it, then a cleaner
process running as the child's own user deletes every file that user owns in the
private ``/tmp`` and ``/dev/shm``. The server reports the child's exit status before it
cleans, and whether the cleaning succeeded after. When the cleaning fails, or takes longer
than the grader waits (``Limits.clean_seconds``), the grader kills this server and starts
a fresh one: the private tmpfs, with whatever is left in it, goes with the server's mount
namespace. The server is not dumpable, so a child (the same user when the
grader is not root) cannot read or write its memory through ``/proc`` or ``ptrace``.

Control messages are JSON, one per datagram on a ``SOCK_SEQPACKET`` socket; a spawn
request carries the child's two pipe ends as ``SCM_RIGHTS``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

MAX_CONTROL_BYTES = 1 << 20
# Folders of the private tmpfs where a child can have left files (only inside bubblewrap).
SCRATCH_DIRS = ("/tmp", "/dev/shm")
SERVER_FOLDER = ".server"


def _send(control: socket.socket, message: dict) -> None:
    control.send(json.dumps(message).encode())


def _recv(control: socket.socket):
    data, fds, _, _ = socket.recv_fds(control, MAX_CONTROL_BYTES, 4)
    if not data:
        return None, []
    return json.loads(data), fds


def main(control_fd: int, config_json: str) -> None:
    import ctypes
    import resource
    import signal

    config = json.loads(config_json)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG: die with the grader
    libc.prctl(4, 0, 0, 0, 0)                # PR_SET_DUMPABLE 0: no ptrace, no /proc/<pid>/mem
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The children's address-space limit must leave room for what is imported here.
    memory = config.get("limits", {}).get("memory_bytes")
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
    os.environ.setdefault("MPLBACKEND", "Agg")
    control = socket.socket(fileno=control_fd)
    from coursetools.grading import landlock, sandbox_main, wire  # noqa: F401  (wire: loaded before the guard)

    init, _ = _recv(control)
    if init is None:
        return
    root = init["children_root"]
    # The server's own home (matplotlib's font cache): beside the children's folder, not in it.
    sandbox_main.enter_folder(os.path.join(root, SERVER_FOLDER))
    # All of /proc, not /proc/self: that would name this server's folder, not a child's. Each child's
    # own ruleset narrows it to its /proc/self (a process is bound by every ruleset it inherited).
    early = landlock.restrict(init["read_roots"] + [init["scripts_dir"], "/proc"] + sandbox_main.SYSTEM_FILES,
                              [root], ["/dev/null"])
    hints = sandbox_main.prepare(init)
    server_pid = os.getpid()
    _send(control, {"ready": True, "pid": server_pid})
    live: int | None = None
    while True:
        message, fds = _recv(control)
        if message is None:
            return
        op = message.get("op")
        if op == "spawn" and live is None and len(fds) == 2:
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(init, message, fds, early, hints, libc, server_pid)
            for fd in fds:
                os.close(fd)
            live = pid
            _send(control, {"pid": pid})
        elif op == "reap" and message.get("pid") == live:
            status = _wait(live, float(message.get("wait_seconds", 5.0)))
            if status is None:
                _send(control, {"running": True})
                continue
            live = None
            # The child's outcome first: however long the cleaning takes, the grader has it, and a
            # grader that stops waiting for the cleaner replaces this server instead.
            _send(control, {"returncode": _returncode(status)})
            clean = _clean(message.get("uid"), message["sandbox_dir"], scan_scratch=bool(init.get("private_tmp")),
                           keep=[os.path.join(root, SERVER_FOLDER)] + list(init.get("binds", [])))
            _send(control, {"clean": clean})
        else:
            for fd in fds:
                os.close(fd)
            _send(control, {"error": f"refused: {op} (live child: {live})"})


def _child(init: dict, message: dict, fds: list, early: str, hints: dict, libc, server_pid: int) -> None:
    """The forked sandbox: take the per-sandbox layers, then serve the grader. Never returns."""
    code = 1
    try:
        from coursetools.grading import sandbox_main

        libc.prctl(4, 1, 0, 0, 0)  # dumpable again: its own /proc files readable to itself, as before
        applied = sandbox_main.harden({"uid": message.get("uid"), "limits": message.get("limits", {})})
        if os.getppid() != server_pid:
            os._exit(1)  # the server died before PDEATHSIG was set
        sandbox_dir = message["sandbox_dir"]
        sandbox_main.enter_folder(sandbox_dir)
        _reseed()
        layers = sandbox_main.wall_in(init, sandbox_dir, early, applied)
        sandbox_main.serve(fds[0], fds[1], hints, layers)
        code = 0
    except BaseException:
        if os.environ.get("MDL_SANDBOX_DEBUG"):
            import traceback

            traceback.print_exc()
    finally:
        os._exit(code)


def _reseed() -> None:
    """Fresh random state per child, as a new interpreter would have (forked children share the server's)."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def _wait(pid: int, seconds: float):
    """The child's wait status once it has ended, or None when it is still running after ``seconds``."""
    import time

    end = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= end:
            return None
        time.sleep(0.005)


def _returncode(status: int) -> int:
    """As subprocess reports it: the exit code, or minus the signal that ended the process."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _clean(uid: int | None, sandbox_dir: str, scan_scratch: bool, keep=()) -> bool:
    """Delete what the ended child left (as its own user, in a process of its own); True when nothing is left.

    ``keep`` lists paths that are not the child's: the server's own folder, and the bind mounts of a
    course kept under /tmp with the folders bubblewrap made for them (the cleaner looks inside
    those folders, and removes whatever else is there).
    """
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            if uid is not None and os.getuid() == 0:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            owner = os.getuid()
            kept = {os.path.normpath(k) for k in keep}
            on_the_way = {str(parent) for k in kept for parent in Path(k).parents}
            targets = [sandbox_dir]
            folders = list(SCRATCH_DIRS) if scan_scratch else []
            while folders:
                folder = folders.pop()
                try:
                    with os.scandir(folder) as entries:
                        for entry in entries:
                            if entry.path in kept or entry.stat(follow_symlinks=False).st_uid != owner:
                                continue
                            if entry.path in on_the_way and entry.is_dir(follow_symlinks=False):
                                folders.append(entry.path)
                            else:
                                targets.append(entry.path)
                except OSError:
                    pass
            for path in targets:
                _remove(path)
            code = 0 if not any(os.path.lexists(p) for p in targets) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _remove(path: str) -> None:
    """Delete ``path`` and all beneath it, links never followed; folders the child closed are opened first.

    Raises on anything it cannot delete (a tree too deep, say): the caller then reports the
    server unclean and the grader starts a fresh one.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(path)
        return
    os.chmod(path, 0o700)  # its owner may always open it up again (lstat said: a folder, not a link)
    for name in os.listdir(path):
        _remove(os.path.join(path, name))
    os.rmdir(path)
