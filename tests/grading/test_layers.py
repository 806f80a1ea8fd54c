"""Each isolation layer of the sandbox on its own, and the faults the grader must tell apart.

Every layer must hold when another one fails (DESIGN.md): so each is tried here alone, in a
plain Python process without the others, against the escapes an outside audit found (issue 15):
a directory descriptor plus ``chdir`` plus ``../..``, ``/proc/<grader pid>/root``, a forged or
stale reply on the grader's pipe, thousands of threads, a status that reads as a kill, and a
grade that depended on how busy the machine was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from coursetools.grading import landlock
from coursetools.grading.isolation import machine_isolation, read_roots
from coursetools.grading.sandbox import (Limits, Sandbox, SandboxDied, SandboxKilled, SandboxTimeout,
                                         SandboxViolation)
from coursetools.grading.trusted import GradeCell, TrustedLab
from coursetools.grading.verdict import grade_submission
from coursetools.paths import ROOT
from fixtures.sandbox_code import BURNER, KILL_ME

pytestmark = pytest.mark.xdist_group("layers")
LINUX = sys.platform == "linux"
SOLUTION = ROOT / "solutions" / "01_backprop" / "01_backprop.ipynb"


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, **kwargs)


# -- Landlock alone ------------------------------------------------------------------------------

@pytest.mark.skipif(landlock.abi_version() < 1, reason="no Landlock in this kernel")
def test_landlock_alone_stops_every_spelling_of_a_path_outside(tmp_path):
    """No namespace, no seccomp, no audit hook: Landlock by itself stops the escapes."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    code = f"""
        import os, sys
        from coursetools.grading import landlock
        secret = {str(SOLUTION)!r}
        parent = os.getppid()
        def attempts():
            fd = os.open({str(tmp_path)!r}, os.O_RDONLY | os.O_DIRECTORY)
            os.chdir({str(tmp_path / 'a' / 'b')!r})
            up = "../" * 12
            tries = {{
                "absolute": lambda: open(secret).read(1),
                "dir_fd": lambda: os.read(os.open(up + secret.lstrip("/"), os.O_RDONLY, dir_fd=fd), 1),
                "proc_root": lambda: open(f"/proc/{{parent}}/root" + secret).read(1),
                "write_outside": lambda: open({str(ROOT / "build" / "landlock-probe")!r}, "w").write("x"),
            }}
            out = {{}}
            for name, attempt in tries.items():
                try:
                    attempt()
                    out[name] = "open"
                except PermissionError:
                    out[name] = "refused"
                except OSError as exc:
                    out[name] = f"errno {{exc.errno}}"
            return out
        before = attempts()
        why = landlock.restrict({read_roots()!r}, [{str(tmp_path)!r}], ["/dev/null"])
        after = attempts()
        open({str(tmp_path / "inside.txt")!r}, "w").write("mine")
        print(repr((why, before, after)))
    """
    (ROOT / "build").mkdir(exist_ok=True)
    run = _python(code)
    assert run.returncode == 0, run.stderr
    why, before, after = eval(run.stdout)
    assert why == ""
    assert before["absolute"] == before["dir_fd"] == before["proc_root"] == "open", before
    assert set(after.values()) == {"refused"}, after
    assert (tmp_path / "inside.txt").read_text() == "mine", "its own folder stays writable"
    (ROOT / "build" / "landlock-probe").unlink(missing_ok=True)


@pytest.mark.skipif(landlock.abi_version() < 1, reason="no Landlock in this kernel")
def test_landlock_alone_keeps_a_refused_package_off_the_disk(tmp_path):
    """A red-team audit (2026-12-02) loaded torch in a numpy-only lab past the audit hook (a pure-Python
    __import__, extension modules loaded under other names) and earned an exercise with autograd. The
    last Landlock layer now leaves torch's files (and cffi's, in every lab) unreadable; the rest of the
    environment stays importable and its folders listable."""
    code = f"""
        import os, sys
        from coursetools.grading import guard, isolation, landlock
        excluded = isolation.package_paths(guard.kept_off_disk(numpy_only=True))
        read, list_only = isolation.roots_without({read_roots()!r}, excluded)
        why = landlock.restrict(read, [{str(tmp_path)!r}], ["/dev/null"], list_only=list_only)
        out = {{"why": why, "excluded": excluded}}
        try:
            import torch
            out["torch"] = "imported"
        except (ImportError, OSError) as exc:
            out["torch"] = type(exc).__name__
        try:
            open(os.path.join([e for e in excluded if e.endswith("torch")][0], "__init__.py"), "rb").read(1)
            out["torch_file"] = "read"
        except PermissionError:
            out["torch_file"] = "refused"
        import sklearn.decomposition, numpy
        out["numpy"] = numpy.ones(2).sum() == 2.0
        out["listing"] = "numpy" in os.listdir(os.path.dirname(os.path.dirname(numpy.__file__)))
        print(repr(out))
    """
    run = _python(code)
    assert run.returncode == 0, run.stderr
    out = eval(run.stdout)
    assert out["why"] == "" and any(e.endswith("/torch") for e in out["excluded"]), out
    assert out["torch"] != "imported" and out["torch_file"] == "refused", out
    assert out["numpy"] and out["listing"], out


# -- seccomp alone ---------------------------------------------------------------------------------

@pytest.mark.skipif(not LINUX, reason="seccomp is Linux")
@pytest.mark.parametrize("attempt, refused", [
    ("os.kill(os.getpid(), signal.SIGKILL)", True),
    ("os.kill(os.getpid(), signal.SIGTERM)", True),
    ("signal.raise_signal(signal.SIGINT)", True),
    ("os.kill(os.getppid(), 0)", True),
    ("os.kill(os.getpid(), 0)", False),
    ("os.fork()", True),
])
def test_seccomp_alone_keeps_outsiders_signals_for_outsiders(attempt, refused):
    run = _python(f"""
        import os, signal
        from coursetools.grading import seccomp
        assert seccomp.install() == ""
        try:
            {attempt}
            print("done")
        except OSError as exc:
            print("refused", exc.errno)
    """)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("refused" if refused else "done"), run.stdout


@pytest.mark.skipif(not LINUX, reason="seccomp is Linux")
@pytest.mark.parametrize("attempt", [
    "os.memfd_create('x')",                                   # memory RLIMIT_AS does not count
    "libc.shmget(0, 1 << 20, 0o1666)",                        # System V shared memory: outlives the sandbox
    "libc.msgget(0, 0o1666)",
    "libc.semget(0, 1, 0o1666)",
])
def test_seccomp_alone_refuses_memory_outside_the_address_space_and_the_sandbox_s_life(attempt):
    # A red-team audit (2026-12-02) held 4.8 GB in memfds under a 3 GB RLIMIT_AS, until the OOM killer
    # took the grader's worker; and left 2 GB of System V segments that the next student's sandbox saw.
    run = _python(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        from coursetools.grading import seccomp
        assert seccomp.install() == ""
        try:
            result = {attempt}
        except OSError as exc:
            print("refused", exc.errno)
        else:
            print("refused", ctypes.get_errno()) if result == -1 else print("done", result)
    """)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "refused 1", run.stdout


@pytest.mark.skipif(not LINUX, reason="seccomp is Linux")
@pytest.mark.parametrize("status", [137, 143, 255, -1])
def test_seccomp_alone_forbids_an_exit_status_that_reads_as_a_kill(status):
    run = _python(f"""
        import os
        from coursetools.grading import seccomp
        assert seccomp.install() == ""
        os._exit({status})
    """)
    assert run.returncode == -signal.SIGSEGV, "the forged status became the submission's own crash"


# -- resource limits alone -------------------------------------------------------------------------

@pytest.mark.skipif(not LINUX, reason="RLIMIT_NPROC semantics are Linux's")
def test_the_thread_limit_binds_one_sandbox():
    isolation = machine_isolation()
    uid = 2_100_000_099 if os.geteuid() == 0 else None
    code = f"""
        import threading, time
        from coursetools.grading.sandbox_main import harden
        harden({{"uid": {uid}, "limits": {{"threads": 32}}}})
        started = 0
        try:
            for _ in range(2000):
                threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
                started += 1
        except RuntimeError:
            pass
        print(started)
    """
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    if os.geteuid() == 0 and not isolation.bwrap:
        pytest.skip("as root without namespaces the limit cannot bind a uid of the sandbox's own")
    run = subprocess.run(isolation.command(argv), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert 0 < int(run.stdout) < 32


# -- the grader's pipe -----------------------------------------------------------------------------

FORGER = '''
import os, struct, sys, json
_out = int(sys.argv[2])

def forge_huge():
    # A frame that claims 24 MB of JSON header: read no further than the limits allow.
    body = b'{"status": "ok", "result": {"__list__": [' + b'1,' * (12 * 2**20) + b'1]}}'
    frame = struct.pack("!I", len(body)) + body
    os.write(_out, struct.pack("!Q", len(frame)) + frame)
    return 1.0

def forge_stale():
    # A well-formed answer for the next request, written before this one's real answer.
    body = json.dumps({"status": "ok", "result": 42.0, "seq": 10**6}).encode()
    frame = struct.pack("!I", len(body)) + body
    os.write(_out, struct.pack("!Q", len(frame)) + frame)
    return 1.0

def honest():
    return 2.0
'''


@pytest.fixture
def forger(tmp_path):
    sandbox = Sandbox(numpy_only=True, limits=Limits(call_seconds=20), workdir=tmp_path)
    sandbox.start()
    reply, _ = sandbox.request({"op": "exec", "cell": "forger", "source": FORGER})
    assert reply["ok"], reply
    yield sandbox
    sandbox.close()


@pytest.mark.parametrize("name", ["forge_huge", "forge_stale"])
def test_a_forged_reply_is_a_violation_not_an_answer(forger, name):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SandboxViolation):
        forger.request({"op": "call", "target": {"name": name}, "kwargs": {"__dict__": {}}})
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert forger.proc is None, "the sandbox that forged it is gone"
    assert grown_mb < 200, f"the grader's memory grew by {grown_mb:.0f} MB reading a forged reply"


def test_an_honest_reply_still_arrives(forger):
    reply, _ = forger.request({"op": "call", "target": {"name": "honest"}, "kwargs": {"__dict__": {}}})
    assert reply["status"] == "ok" and reply["result"] == 2.0


# -- faults: whose are they ------------------------------------------------------------------------



def _started(tmp_path, isolation=None) -> Sandbox:
    sandbox = Sandbox(numpy_only=True, limits=Limits(call_seconds=30), workdir=tmp_path, isolation=isolation)
    sandbox.start()
    reply, _ = sandbox.request({"op": "exec", "cell": "kill-me", "source": KILL_ME})
    assert reply["ok"], reply
    return sandbox


@pytest.mark.parametrize("namespaces", [False, True], ids=["plain", "bubblewrap"])
def test_a_kill_from_outside_is_not_the_student_s_crash(tmp_path, namespaces):
    isolation = machine_isolation() if namespaces else None
    if namespaces and not isolation.bwrap:
        pytest.skip("no bubblewrap here")
    sandbox = _started(tmp_path, isolation)
    threading.Timer(1.0, os.kill, (sandbox.pid, signal.SIGKILL)).start()  # the OOM killer, an operator
    with pytest.raises(SandboxKilled):
        sandbox.request({"op": "call", "target": {"name": "wait_here"}, "kwargs": {"__dict__": {}}})


@pytest.mark.parametrize("namespaces", [False, True], ids=["plain", "bubblewrap"])
def test_an_exit_status_of_137_is_the_student_s_own_crash(tmp_path, namespaces):
    isolation = machine_isolation() if namespaces else None
    if namespaces and not isolation.bwrap:
        pytest.skip("no bubblewrap here")
    sandbox = _started(tmp_path, isolation)
    with pytest.raises(SandboxDied):
        sandbox.request({"op": "call", "target": {"name": "exit_as_if_killed"}, "kwargs": {"__dict__": {}}})


def test_a_notebook_killed_twice_is_an_infrastructure_error_never_a_zero(monkeypatch, tmp_path):
    from coursetools.grading import cli

    calls = []

    def killed(*args, **kwargs):
        calls.append(1)
        raise SandboxKilled("the sandbox was killed from outside by SIGKILL")

    nb = tmp_path / "01_backprop.ipynb"
    nb.write_text(ROOT.joinpath("labs", "01_backprop", "01_backprop.ipynb").read_text())
    monkeypatch.setitem(cli._LABS, "01_backprop", TrustedLab.load("01_backprop"))
    monkeypatch.setattr("coursetools.grading.verdict.grade_submission", killed)
    row = cli._grade_one("ann", "01_backprop", str(nb), None, Limits())
    assert len(calls) == 2, "graded again once"
    assert row["status"] == "error" and row["reason"].startswith("infrastructure error"), row


# -- CPU time, not wall-clock time -----------------------------------------------------------------



def _burning_lab() -> TrustedLab:
    """Four one-point checks: three calls that each need 0.3 s of CPU, one that needs 3 s."""
    cells = [GradeCell(f"q{i}", f"from checker.student import call_student\n"
                                f"assert call_student(burn, 'burn', seconds={s}).result == {s}", 1.0)
             for i, s in enumerate([0.3, 0.3, 0.3, 3.0])]
    return TrustedLab("01_backprop", setup_cells=[("setup", "import numpy as np")], solution_ids=["burner"],
                      grade_cells=cells, numpy_only=True, checker_module="checker.lab01")


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def test_a_grading_worker_killed_from_outside_does_not_stop_the_class():
    """Red-team finding (2026-12-02): the out-of-memory killer took a grading worker, the process pool
    broke, and the next submission raised BrokenProcessPool out of make grade: no grades.csv for anyone.
    The notebooks the dead worker held are infrastructure errors to regrade; the rest go to a new pool."""
    import concurrent.futures
    import functools
    import multiprocessing

    from coursetools.grading import executors

    make_pool = functools.partial(concurrent.futures.ProcessPoolExecutor, 1,
                                  mp_context=multiprocessing.get_context("spawn"))
    first = make_pool()
    executor = executors.LocalExecutor(first, 1, None, Limits(), make_pool=make_pool)
    try:
        doomed = first.submit(os._exit, 9)       # the worker dies as under the out-of-memory killer
        lost = executors.outcome(doomed, "ann", "01_backprop")
        assert lost["status"] == "error" and lost["retry"] and "worker lost" in lost["reason"], lost
        # The next notebook is graded by a fresh pool (its digest is wrong on purpose: a quick answer).
        after = executor.submit("bob", "01_backprop", b"{}", "0" * 64, {})
        result = executors.outcome(after, "bob", "01_backprop")
        assert executor.pool is not first
        assert result["student"] == "bob" and "bytes changed" in result["reason"], result
    finally:
        first.shutdown(wait=True)
        executor.close()


def test_a_grade_does_not_depend_on_how_busy_the_machine_is(tmp_path):
    lab = _burning_lab()
    limits = Limits(call_seconds=0.8, notebook_seconds=60, wall_factor=40)  # the backstop stays out of the way
    alone = grade_submission(lab, "ann", {"burner": BURNER}, limits, workdir=tmp_path)
    load = _busy(os.cpu_count() or 1)
    try:
        started = time.monotonic()
        busy = grade_submission(lab, "ann", {"burner": BURNER}, limits, workdir=tmp_path)
        busy_wall = time.monotonic() - started
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    scores = [[v.points for v in result.verdicts] for result in (alone, busy)]
    assert scores[0] == scores[1] == [1.0, 1.0, 1.0, 0.0], (scores, busy_wall)
    assert busy.verdicts[-1].misconception == "timeout"


# -- the grader dies: nothing of it stays behind ---------------------------------------------------

def _children() -> dict[int, int]:
    """{pid: parent pid} of every process on the machine."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    table[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return table


def _descendants(root: int) -> set[int]:
    table, found, frontier = _children(), set(), {root}
    while frontier:
        frontier = {pid for pid, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.skipif(not LINUX, reason="parent-death signals are Linux's")
def test_killing_the_grader_leaves_no_worker_or_sandbox_running(tmp_path):
    import nbformat

    from fixtures.notebooks import nbgrader_meta, submission

    nb = submission("01_backprop")
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == "ex3_linear_layer":
            cell.source = "while True:\n    pass\n"
    path = tmp_path / "submitted" / "spinner" / "01_backprop" / "01_backprop.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    grader = subprocess.Popen([sys.executable, "-m", "coursetools.grading", str(tmp_path / "submitted"),
                               str(tmp_path / "out"), "--workers", "1", "--timeout", "600",
                               "--labs", "01_backprop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen: set[int] = set()
        for _ in range(1200):  # until the spinning sandbox runs (at most about two minutes)
            seen |= _descendants(grader.pid)
            if any("sandbox_main" in _cmdline(pid) and "-c" not in _cmdline(pid) for pid in seen):
                break
            time.sleep(0.1)
        assert any("sandbox_main" in _cmdline(pid) for pid in seen), "no sandbox was started"
        seen |= _descendants(grader.pid)
        grader.kill()
        grader.wait()
        for _ in range(300):  # each one dies within a moment of its parent; allow 30 s on a busy machine
            alive = {pid for pid in seen if _running(pid)}
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, [(pid, _cmdline(pid)) for pid in alive]
    finally:
        if grader.poll() is None:
            grader.kill()
        for pid in _descendants(grader.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_a_library_the_lab_environment_has_can_be_imported_by_student_code(tmp_path):
    """Correct work written another way (scikit-learn's TruncatedSVD for a low-rank approximation)
    must not be refused: importing it used to trip the guard (asyncio rewrites code objects)."""
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=60), workdir=tmp_path) as sandbox:
        reply, _ = sandbox.request({"op": "exec", "cell": "svd", "source": (
            "import numpy as np\nfrom sklearn.decomposition import TruncatedSVD\n"
            "A = np.random.default_rng(0).normal(size=(7, 5))\n"
            "print(TruncatedSVD(n_components=2, random_state=0).fit_transform(A).shape)\n")})
    assert reply["ok"], reply
    assert "(7, 2)" in reply["output"]


@pytest.mark.skipif(landlock.abi_version() < 1, reason="no Landlock in this kernel")
def test_a_numpy_only_sandbox_cannot_read_torch_or_cffi_from_disk(tmp_path):
    # The audit hook lets `open` read the Python installation; the files of the packages it refuses
    # to import are kept out by the kernel, so no way past the hook's import check finds them.
    torch_init = os.path.join(os.path.dirname(__import__("importlib.util").util.find_spec("torch").origin))
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=60), workdir=tmp_path) as sandbox:
        reply, _ = sandbox.request({"op": "exec", "cell": "peek", "source": (
            f"for path in [{torch_init!r} + '/__init__.py', {np.__file__!r}]:\n"
            "    try:\n        open(path, 'rb').read(1)\n        print('read', path)\n"
            "    except PermissionError:\n        print('refused', path)\n")})
    assert reply["ok"], reply
    assert f"refused {torch_init}/__init__.py" in reply["output"], reply["output"]
    assert f"read {np.__file__}" in reply["output"], reply["output"]


def test_make_grade_names_the_layers_this_machine_gives():
    from coursetools.grading.cli import describe_layers, probe_layers

    isolation = machine_isolation()
    text = describe_layers(isolation, probe_layers(isolation, Limits()))
    lines = {line.split(":")[0][6:].split(" (")[0]: line[:5].strip() for line in text.splitlines()}
    assert set(lines) == {"namespaces", "unprivileged user", "Landlock", "seccomp filter", "audit hook", "limits"}
    assert lines["audit hook"] == "on"
    if LINUX:
        assert lines["seccomp filter"] == "on"
    if landlock.abi_version() >= 1:
        assert lines["Landlock"] == "on"
    if isolation.bwrap:
        assert lines["namespaces"] == lines["unprivileged user"] == lines["limits"] == "on", text
