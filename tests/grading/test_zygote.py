"""Sandboxes forked from a sandbox server (issue 21): as walled in as a new one, and nothing shared.

A server imports a lab's libraries once and forks each submission's sandbox; each child takes
every per-sandbox layer itself. These tests hold it to what a fresh interpreter gives: the same
layers, nothing left over from the previous child, no way to reach the server, CPU time counted
for the right process, and a kill from outside told apart from the student's crash.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from coursetools.grading import zygote_main
from coursetools.grading.isolation import machine_isolation
from coursetools.grading.sandbox import Limits, Sandbox, SandboxDied, SandboxKilled, SandboxTimeout
from coursetools.grading.zygote import Zygote, ZygotePool
from fixtures.sandbox_code import BURNER, KILL_ME

pytestmark = pytest.mark.xdist_group("zygote")
ISOLATION = machine_isolation()
BWRAP = ISOLATION if ISOLATION.bwrap else None


@pytest.fixture(scope="module")
def server():
    zygote = Zygote(True, [], {}, Limits(call_seconds=30), BWRAP)
    zygote.start()
    yield zygote
    zygote.close()


def _forked(server, tmp_path, limits: Limits | None = None) -> Sandbox:
    """A sandbox to fork from ``server`` (started by ``with``)."""
    return Sandbox(True, limits=limits or Limits(call_seconds=30), isolation=BWRAP, workdir=tmp_path,
                   zygote=server)


def _run(sandbox: Sandbox, source: str) -> str:
    reply, _ = sandbox.request({"op": "exec", "cell": "probe", "source": source})
    assert reply["ok"], reply
    return reply["output"].strip()


def test_a_forked_sandbox_has_every_layer_a_new_one_has(server, tmp_path):
    with Sandbox(True, limits=Limits(call_seconds=30), isolation=BWRAP, workdir=tmp_path) as fresh:
        expected = dict(fresh.layers)
    with _forked(server, tmp_path) as first:
        forked = dict(first.layers)
    with _forked(server, tmp_path) as second:
        next_uid = second.layers["uid"]
    assert {k: v for k, v in forked.items() if k != "uid"} == {k: v for k, v in expected.items() if k != "uid"}
    assert forked["seccomp"] == "on" and forked["audit_hook"] == "on" and forked["NoNewPrivs"] == "1"
    assert forked["CapEff"] == "0000000000000000"
    if BWRAP:
        assert forked["pid_namespace"] and forked["mount_namespace"] and forked["network"] == ["lo"]
    if BWRAP and BWRAP.drop_uid:
        assert forked["uid"] != 0 and next_uid != forked["uid"], "each sandbox is a user of its own"


LEAVE_TRACES = r'''
import os, sys, numpy as np
import math_utils
math_utils.LEFT_BEHIND = "by the previous submission"
np.random.seed(1234)
os.makedirs("locked/inner")
open("locked/inner/answers.txt", "w").write("mine")
os.chmod("locked/inner", 0o000)
os.chmod("locked", 0o500)
open("notes.txt", "w").write("mine")
refused = []
for path in ("/tmp/leak", "/dev/shm/leak", "../leak"):
    try:
        open(path, "w").write("for the next one")
    except OSError:
        refused.append(path)
print(sorted(os.listdir(".")), refused)
'''

LOOK_AROUND = r'''
import os, numpy as np
import math_utils
print(sorted(os.listdir(".")), hasattr(math_utils, "LEFT_BEHIND"),
      np.random.rand() != np.random.RandomState(1234).rand())
'''


def test_nothing_a_sandbox_leaves_reaches_the_next(server, tmp_path):
    with _forked(server, tmp_path) as first:
        left = _run(first, LEAVE_TRACES)
    assert left == "['locked', 'notes.txt'] ['/tmp/leak', '/dev/shm/leak', '../leak']"
    with _forked(server, tmp_path) as second:
        seen = _run(second, LOOK_AROUND)
        scratch = _private_tmp(server)
    assert seen == "[] False True"
    if scratch is not None:
        # Besides: the server's own folder, and the folders bubblewrap made to bind a course kept under /tmp.
        mount_points = {Path(b).relative_to("/tmp").parts[0] for b in BWRAP.binds if Path(b).is_relative_to("/tmp")}
        assert set(scratch) - {zygote_main.SERVER_FOLDER} - mount_points == {"submission"}, \
            f"only the live sandbox's own folder is in the private /tmp: {scratch}"
    assert server.alive, "the folder was cleaned, so the server goes on"


def _private_tmp(server) -> list | None:
    """The server's private /tmp as the grader sees it (root can look in), or None."""
    try:
        return sorted(os.listdir(f"/proc/{server.host_pid}/root/tmp")) if BWRAP else None
    except OSError:
        return None


REACH_THE_SERVER = r'''
import os, signal
server = os.getppid()
outcomes = {}
tries = {
    "kill": lambda: os.kill(server, signal.SIGKILL),
    "stop": lambda: os.kill(server, signal.SIGSTOP),
    "mem": lambda: open(f"/proc/{server}/mem", "rb").read(1),
    "environ": lambda: open(f"/proc/{server}/environ", "rb").read(1),
    "cmdline": lambda: open(f"/proc/{server}/cmdline", "rb").read(1),
}
for name, attempt in tries.items():
    try:
        attempt()
        outcomes[name] = "done"
    except (OSError, RuntimeError) as exc:
        outcomes[name] = "refused"
print(sorted(outcomes.items()))
'''


def test_a_sandbox_cannot_reach_its_server(server, tmp_path):
    with _forked(server, tmp_path) as child:
        outcomes = _run(child, REACH_THE_SERVER)
    assert "done" not in outcomes, outcomes
    with _forked(server, tmp_path) as after:
        assert _run(after, "print(6 * 7)") == "42", "the server still forks sandboxes"




@pytest.mark.parametrize("how", ["new interpreter", "forked"])
def test_cpu_time_is_counted_for_the_process_that_runs_the_code(server, tmp_path, how):
    """Under bubblewrap the grader once read the CPU time of bubblewrap's init, not of the sandbox:
    the CPU limit never fired and only the wall-clock backstop (4x) stopped endless code."""
    limits = Limits(call_seconds=0.5, wall_factor=200)
    sandbox = _forked(server, tmp_path, limits) if how == "forked" else \
        Sandbox(True, limits=limits, isolation=BWRAP, workdir=tmp_path)
    with sandbox:
        _run(sandbox, BURNER)
        sandbox.request({"op": "call", "target": {"name": "burn"}, "kwargs": {"__dict__": {"seconds": 0.3}}})
        assert sandbox.cpu_used() >= 0.25
        with pytest.raises(SandboxTimeout, match="of CPU time"):
            sandbox.request({"op": "call", "target": {"name": "burn"}, "kwargs": {"__dict__": {"seconds": 20.0}}})




def test_a_forked_sandbox_killed_from_outside_is_not_the_student_s_crash(server, tmp_path):
    with _forked(server, tmp_path) as child:
        _run(child, KILL_ME)
        threading.Timer(1.0, os.kill, (child.pid, signal.SIGKILL)).start()  # the OOM killer, an operator
        with pytest.raises(SandboxKilled):
            child.request({"op": "call", "target": {"name": "wait_here"}, "kwargs": {"__dict__": {}}})
    with _forked(server, tmp_path) as child:
        _run(child, KILL_ME)
        with pytest.raises(SandboxDied):
            child.request({"op": "call", "target": {"name": "exit_as_if_killed"}, "kwargs": {"__dict__": {}}})


def test_a_killed_server_is_the_machine_s_fault_and_the_pool_starts_another(tmp_path):
    pool = ZygotePool()
    try:
        first = pool.get(True, [], {}, Limits(call_seconds=30), BWRAP)
        child = Sandbox(True, limits=Limits(call_seconds=30), isolation=BWRAP, workdir=tmp_path, zygote=first)
        child.start()
        _run(child, KILL_ME)
        os.kill(first.host_pid, signal.SIGKILL)
        with pytest.raises(SandboxKilled):
            child.request({"op": "call", "target": {"name": "wait_here"}, "kwargs": {"__dict__": {}}})
        child.close()
        second = pool.get(True, [], {}, Limits(call_seconds=30), BWRAP)
        assert second is not first and second.alive
        with Sandbox(True, limits=Limits(call_seconds=30), isolation=BWRAP, workdir=tmp_path, zygote=second) as sb:
            assert _run(sb, "print('fresh')") == "fresh"
    finally:
        pool.close()


LEAVE_A_HEAP = r'''
import os
fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
for _ in range(200):
    os.mkdir("d", dir_fd=fd)
    inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = inner
for i in range(20000):
    os.mkfifo(str(i), dir_fd=fd)
os._exit(0)
'''


def test_a_sandbox_that_leaves_more_than_the_cleaner_removes_in_time_is_charged_and_its_server_replaced(tmp_path):
    """Red team (2026-12-02): a million FIFOs at the end of an 800-deep chain, then os._exit(0). The
    server cleaned for minutes before it answered, the grader gave up on it and reported the sandbox
    killed from outside twice: the student escaped a grade and the worker was held for 385 s. The
    child's own exit is now its outcome, and a server still cleaning after ``clean_seconds`` is
    killed (its tmpfs goes with it) instead of waited for."""
    pool = ZygotePool()
    limits = Limits(call_seconds=30, clean_seconds=0.001)  # no cleaner removes 20,000 FIFOs in 1 ms
    try:
        first = pool.get(True, [], {}, limits, BWRAP)
        with Sandbox(True, limits=limits, isolation=BWRAP, workdir=tmp_path, zygote=first) as child:
            with pytest.raises(SandboxDied, match=r"exited \(code 0\)"):
                child.request({"op": "exec", "cell": "heap", "source": LEAVE_A_HEAP})
        assert first.retired and first.proc is None, "the server was killed, not waited for"
        second = pool.get(True, [], {}, limits, BWRAP)
        assert second is not first and second.alive
        with Sandbox(True, limits=limits, isolation=BWRAP, workdir=tmp_path, zygote=second) as after:
            assert _run(after, "import os; print(os.listdir('.'))") == "[]"
    finally:
        pool.close()


def test_the_cleaner_removes_folders_a_sandbox_made_unreadable(tmp_path):
    folder = tmp_path / "submission"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "f.txt").write_text("x")
    (folder / "a" / "b").chmod(0o000)
    (folder / "a").chmod(0o500)
    os.symlink("/etc/passwd", folder / "link")
    assert zygote_main._clean(None, str(folder), scan_scratch=False)
    assert not folder.exists()
    assert os.path.exists("/etc/passwd"), "a link is removed, never followed"


def test_the_cleaner_keeps_the_course_binds_and_removes_the_rest_around_them(tmp_path, monkeypatch):
    """A course kept under /tmp is bound into the private /tmp at its own path: the folders bubblewrap
    made for it are the user's own when the grader is not root, yet must survive (a failed clean
    retires the server after every submission), while a file a child put beside them must not."""
    scratch = tmp_path / "tmp"
    bind = scratch / "course" / "scripts"
    bind.mkdir(parents=True)
    (bind / "math_utils.py").write_text("# bound read-only in a real sandbox")
    (scratch / "course" / "left-by-a-child.txt").write_text("x")
    (scratch / zygote_main.SERVER_FOLDER).mkdir()
    (scratch / "stray").mkdir()
    (scratch / "stray" / "f").write_text("x")
    monkeypatch.setattr(zygote_main, "SCRATCH_DIRS", (str(scratch),))
    assert zygote_main._clean(None, str(scratch / "submission"), scan_scratch=True,
                              keep=[str(scratch / zygote_main.SERVER_FOLDER), str(bind)])
    assert sorted(p.name for p in scratch.iterdir()) == [zygote_main.SERVER_FOLDER, "course"]
    assert sorted(p.name for p in (scratch / "course").iterdir()) == ["scripts"]
    assert (bind / "math_utils.py").is_file()


def _start_lab_server(lab: str) -> int:
    """In a make-grade worker: start the lab's sandbox server, as its first notebook would; its pid."""
    from coursetools.grading import cli

    trusted = cli._LABS[lab]
    server = cli._POOL.get(trusted.numpy_only, trusted.preload, trusted.handed_out, Limits(), BWRAP)
    return server.proc.pid


def test_a_worker_closes_its_sandbox_servers_when_it_leaves():
    """Workers exit without finalising their interpreter (cli._leave_without_teardown), but never
    before their sandbox servers are gone: none outlives make grade's pool."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    from coursetools.grading import cli

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=cli._init_worker,
                               initargs=(["05_probability"], 1))
    try:
        pid = pool.submit(_start_lab_server, "05_probability").result(timeout=300)
        assert Path(f"/proc/{pid}").exists()
        worker = next(iter(pool._processes.values()))
    finally:
        pool.shutdown(wait=True)
    worker.join(timeout=60)
    assert worker.exitcode == 0
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "the sandbox server outlived its worker"


def test_a_lab_s_lazy_checker_imports_are_made_once_by_the_server(tmp_path):
    """Lab 06's checks step torch.optim optimizers, whose first step imports torch._dynamo (about a
    second): the server imports it before forking, so no forked sandbox pays for it again."""
    from coursetools.grading.trusted import TrustedLab

    trusted = TrustedLab.load("06_training_dynamics")
    assert not trusted.numpy_only and "torch._dynamo" in trusted.preload
    limits = Limits(call_seconds=60)
    zygote = Zygote(trusted.numpy_only, trusted.preload, trusted.handed_out, limits, BWRAP)
    zygote.start()
    try:
        with Sandbox(trusted.numpy_only, preload=trusted.preload, limits=limits, isolation=BWRAP,
                     workdir=tmp_path, handed_out=trusted.handed_out, zygote=zygote) as child:
            assert _run(child, "import sys\nprint('torch._dynamo' in sys.modules)") == "True"
    finally:
        zygote.close()
