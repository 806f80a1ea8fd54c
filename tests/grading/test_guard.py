"""The sandbox's defences one by one: the audit hook's path rules, the seccomp filter,
and each known way of getting past an in-process guard, tried in a real sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from coursetools.grading import guard, seccomp
from coursetools.grading.sandbox import Limits, Sandbox
from coursetools.paths import ROOT

SOLUTION = ROOT / "solutions" / "01_backprop" / "01_backprop.ipynb"


# -- the hook's decisions, called directly ---------------------------------------
@pytest.fixture
def hook(tmp_path):
    sandbox = tmp_path / "sandbox"
    readable = tmp_path / "readable"
    secret = tmp_path / "secret"
    for d in (sandbox, readable, secret):
        d.mkdir()
    (readable / "data.txt").write_text("ok")
    (secret / "answers.txt").write_text("42")
    os.symlink(secret, readable / "shortcut")
    return guard.build_hook(str(sandbox), [str(readable)], numpy_only=True), sandbox, readable, secret


def test_reads_inside_the_readable_roots_and_the_sandbox_are_allowed(hook):
    check, sandbox, readable, _ = hook
    check("open", (str(readable / "data.txt"), "r", 0))
    check("open", (str(sandbox / "new.txt"), "w", os.O_WRONLY | os.O_CREAT))
    check("open", (3, "r", 0))  # an already-open descriptor
    check("os.listdir", (str(readable),))


@pytest.mark.parametrize("trick", ["plain", "dotdot", "symlink", "bytes", "relative"])
def test_every_spelling_of_a_secret_path_is_refused(hook, trick, monkeypatch):
    check, sandbox, readable, secret = hook
    path = {
        "plain": str(secret / "answers.txt"),
        "dotdot": f"{readable}/../secret/answers.txt",
        "symlink": str(readable / "shortcut" / "answers.txt"),
        "bytes": os.fsencode(secret / "answers.txt"),
        "relative": "../secret/answers.txt",
    }[trick]
    monkeypatch.chdir(sandbox)
    with pytest.raises(PermissionError, match="reading" if trick != "relative" else "relative path with '..'"):
        check("open", (path, "r", 0))


def test_a_relative_path_cannot_climb_past_a_directory_descriptor(hook, monkeypatch):
    """The 'open' event carries no dir_fd: a relative path is checked against the current folder,
    so after a chdir deeper down, '../..' from a descriptor of the sandbox could reach anywhere."""
    check, sandbox, _, _ = hook
    deeper = sandbox / "a" / "b"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    for path in ("../../x", "a/../../../etc/passwd", b"../x"):
        with pytest.raises(PermissionError, match="relative path"):
            check("open", (path, "r", 0))
    check("open", ("plain.txt", "w", 0))  # a relative path that stays put is still fine


def test_writes_outside_the_sandbox_are_refused_even_in_readable_roots(hook):
    check, _, readable, _ = hook
    with pytest.raises(PermissionError, match="writing"):
        check("open", (str(readable / "data.txt"), "a", 0))
    with pytest.raises(PermissionError, match="writing"):
        check("open", (str(readable / "data.txt"), None, os.O_RDWR))
    with pytest.raises(PermissionError):
        check("os.remove", (str(readable / "data.txt"), None))


def test_directory_descriptors_outside_the_sandbox_and_links_are_refused(hook):
    check, sandbox, readable, _ = hook
    with pytest.raises(PermissionError, match="directory"):
        check("open", (str(readable), None, os.O_RDONLY | os.O_DIRECTORY))
    check("open", (str(sandbox), None, os.O_RDONLY))  # its own folder is fine
    for event in ("os.symlink", "os.link"):
        with pytest.raises(PermissionError):
            check(event, (str(sandbox / "a"), str(sandbox / "b")))


def test_missing_files_read_as_missing_and_odd_path_types_are_refused(hook):
    check, sandbox, _, _ = hook
    with pytest.raises(FileNotFoundError):
        check("open", (str(sandbox / "absent.txt"), "r", 0))

    class Sneaky(str):
        pass

    with pytest.raises(PermissionError, match="type Sneaky"):
        check("open", (Sneaky(str(sandbox / "x")), "r", 0))


@pytest.mark.parametrize("event", ["gc.get_objects", "gc.get_referrers", "sys.settrace", "sys.setprofile",
                                   "code.__new__", "ctypes.dlopen", "os.fork", "subprocess.Popen"])
def test_ways_to_reach_or_rewrite_the_hook_are_refused(hook, event):
    with pytest.raises(PermissionError):
        hook[0](event, ())


@pytest.mark.parametrize("module", ["torch", "torch.nn", "_posixsubprocess", "_ctypes", "cffi", "_cffi_backend"])
def test_imports_refused_in_a_numpy_only_lab(hook, module):
    with pytest.raises(ImportError):
        hook[0]("import", (module, None, [], [], []))


def test_the_hook_depends_on_nothing_student_code_can_change():
    """No global or builtin lookups, and every captured value immutable or a builtin function."""
    check = guard.build_hook("/tmp", ["/usr/lib"], numpy_only=True)
    assert check.__code__.co_names == () or set(check.__code__.co_names) <= {
        "startswith", "rpartition", "split", "reverse", "pop", "append", "st_mode", "__name__"}
    immutable = (str, int, bytes, tuple, frozenset, type(None), type(len), type(str.split), type)
    for cell in check.__closure__:
        value = cell.cell_contents
        assert isinstance(value, immutable), f"mutable state reachable from the hook: {value!r}"
        if isinstance(value, tuple):
            assert all(isinstance(v, (str, int)) for v in value)


# -- the kernel filter, in a child process ---------------------------------------
@pytest.mark.skipif(sys.platform != "linux", reason="seccomp is Linux only")
def test_seccomp_filter_refuses_processes_signals_mounts_and_sockets():
    probe = textwrap.dedent("""
        import ctypes, errno, os, socket, threading
        from coursetools.grading import seccomp
        assert seccomp.install() == "", "filter not installed"
        out = []
        def attempt(label, fn):
            try:
                fn()
                out.append(label + ":allowed")
            except OSError as exc:
                out.append(label + ":" + errno.errorcode[exc.errno])
        attempt("fork", os.fork)
        attempt("kill-init", lambda: os.kill(1, 0))
        attempt("kill-self", lambda: os.kill(os.getpid(), 0))
        attempt("socket", socket.socket)
        libc = ctypes.CDLL(None, use_errno=True)
        def unshare_mounts():
            if libc.unshare(0x00020000) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
        attempt("unshare", unshare_mounts)
        t = threading.Thread(target=lambda: out.append("thread:ran")); t.start(); t.join()
        print(" ".join(sorted(out)))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["fork:EPERM", "kill-init:EPERM", "kill-self:allowed", "socket:EPERM",
                                     "thread:ran", "unshare:EPERM"]


# -- each technique in a real sandbox ---------------------------------------------
TECHNIQUES = {
    "gc-walk": "import gc; gc.get_objects()",
    "settrace": "import sys; sys.settrace(lambda *a: None)",
    "ctypes-via-numpy": "import numpy._core._internal as i; i.ctypes.memmove(id(1), id(2), 8)",
    "ctypes-libc": "import ctypes; ctypes.CDLL(None).getpid()",
    "fork-exec-helper": ("import os, subprocess; r, w = os.pipe(); subprocess._fork_exec(["
                         "b'/bin/true'], (b'/bin/true',), True, (w,), None, None, -1, -1, -1, -1, -1, -1, r, w, "
                         "True, False, -1, None, None, None, -1, None, False)"),
    "proc-self-root": f"open('/proc/self/root{SOLUTION}')",
    "dir-fd": ("import os, sys; fd = os.open(sys.prefix, os.O_RDONLY | os.O_DIRECTORY); "
               "os.open('../solutions/01_backprop/01_backprop.ipynb', os.O_RDONLY, dir_fd=fd)"),
    "patched-realpath": ("import os, posixpath\nold = posixpath.join, os.path.realpath\n"
                         "posixpath.join = os.path.realpath = lambda *a, **k: os.getcwd() + '/x'\n"
                         f"try:\n    open({str(SOLUTION)!r})\nfinally:\n    posixpath.join, os.path.realpath = old"),
    "symlink-out": f"import os; os.symlink({str(SOLUTION)!r}, 'answers')",
    "new-code-object": "(lambda: 0).__code__.replace(co_code=b'')",
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=20), workdir=tmp_path_factory.mktemp("sb")) as sb:
        yield sb


@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
def test_technique_is_stopped_in_the_sandbox(sandbox, technique):
    reply, _ = sandbox.request({"op": "exec", "cell": technique, "source": TECHNIQUES[technique]})
    assert not reply["ok"], f"{technique} was not stopped"
    assert reply["error"].split(":")[0] in ("PermissionError", "ImportError", "FileNotFoundError"), reply["error"]
    after, _ = sandbox.request({"op": "exec", "cell": "after", "source": "import numpy as np; x = np.ones(3).sum()"})
    assert after["ok"], "the sandbox still works for honest code afterwards"
