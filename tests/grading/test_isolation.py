"""The sandbox's namespaces on their own, at the kernel level (plain processes, none of the sandbox's
in-process layers: no uid switch, Landlock, seccomp filter or audit hook).

bubblewrap builds a new root holding only the system, the Python installation and the course's
scripts/: solutions/, tests/, SUBMITTED and OUT are not there at all, every file system but a
fresh /tmp is read-only, the PID namespace shows no process of the grader's (so /proc/<pid>/root
leads nowhere), and there is no network but loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from coursetools.grading.isolation import machine_isolation
from coursetools.paths import BUILD, ROOT

ISOLATION = machine_isolation()
pytestmark = [pytest.mark.skipif(not ISOLATION.bwrap, reason="no bubblewrap namespaces on this machine "
                                                            "(make grade says so and relies on the other layers)"),
              pytest.mark.xdist_group("isolation")]


def _inside(code: str) -> subprocess.CompletedProcess:
    """Run Python code in the sandbox's namespaces alone."""
    return subprocess.run(ISOLATION.command([sys.executable, "-c", code]), capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def out_dir():
    """An OUT-like folder of the grader's, world-readable and world-writable, with a config file in it."""
    out = BUILD / f"isolation-out-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o777)
    (out / "nbgrader_config.py").write_text("c = get_config()\n")
    (out / "nbgrader_config.py").chmod(0o666)
    yield out
    (out / "nbgrader_config.py").unlink()
    out.rmdir()


def test_the_grader_s_files_are_not_there(out_dir):
    solution = ROOT / "solutions" / "01_backprop" / "01_backprop.ipynb"
    assert solution.is_file() and (out_dir / "nbgrader_config.py").is_file()
    run = _inside(f"import os; print([os.path.exists(p) for p in ({str(solution)!r}, {str(out_dir)!r}, "
                  f"{str(ROOT / 'tests')!r}, {str(ROOT / '.git')!r})])")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[False, False, False, False]"


def test_every_file_system_but_tmp_is_read_only():
    run = _inside(
        "import os, sys\n"
        "for path in (sys.prefix + '/x', os.path.dirname(os.__file__) + '/x', '/usr/x', '/x'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print(exc.errno)\n"
        "open('/tmp/scratch', 'w').write('ok'); print(open('/tmp/scratch').read())\n")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split()
    assert "wrote" not in run.stdout and lines[-1] == "ok", run.stdout


def test_no_process_of_the_grader_is_visible():
    grader = os.getpid()
    run = _inside(f"import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())); "
                  f"print(os.path.exists('/proc/{grader}/root/{ROOT}'))")
    assert run.returncode == 0, run.stderr
    pids, reaches_grader = run.stdout.splitlines()
    assert eval(pids) == [1, 2], "only bubblewrap (1) and the sandbox (2) exist in its PID namespace"
    assert reaches_grader == "False"


def test_there_is_no_network_but_loopback():
    run = _inside("print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]))")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['lo']"


def test_no_capability_survives_and_root_is_dropped_by_the_sandbox_itself():
    from coursetools.grading.sandbox_main import harden

    code = ("import json, sys; from coursetools.grading.sandbox_main import harden; "
            "print(harden({'uid': 2100000077})); print(open('/proc/self/status').read())")
    run = _inside(code)
    assert run.returncode == 0, run.stderr
    status = dict(line.split(":", 1) for line in run.stdout.splitlines()[1:] if ":" in line)
    assert status["CapEff"].strip() == "0000000000000000"
    if os.geteuid() == 0:
        assert status["Uid"].split()[:3] == ["2100000077"] * 3, "a real unprivileged user, not root"
    assert harden  # imported here too: the function the sandbox runs first


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root; this run is unprivileged "
                                              "and takes that path in every other test")
def test_an_instructor_who_is_not_root_gets_the_same_namespaces(tmp_path):
    """The path a grader without root takes: bubblewrap inside a user namespace of its own (plain /bin/sh,
    since this machine's Python lives in a folder only root may enter)."""
    from dataclasses import replace

    unprivileged = replace(ISOLATION, binds=[], drop_uid=False, user_namespace=True)
    script = ("id -u; grep CapEff /proc/self/status; cat /proc/[0-9]*/cmdline | grep -a -c 'pyt[e]st'; "
              f"test -e {ROOT}/solutions && echo visible || echo absent; touch /usr/x 2>/dev/null || echo ro")
    run = subprocess.run(unprivileged.command(["/bin/sh", "-c", script]), capture_output=True, text=True,
                         timeout=60, user=65534, group=65534, extra_groups=[], cwd="/")
    assert run.returncode == 0, run.stderr
    uid, caps, processes, solutions, readonly = run.stdout.split("\n")[:5]
    assert uid == "65534" and caps.split()[1] == "0000000000000000"
    assert processes == "0", "no process of the grader's is visible"
    assert solutions == "absent" and readonly == "ro"
