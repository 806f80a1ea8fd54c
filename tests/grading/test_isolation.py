"""The sandbox's mount namespace, checked at the kernel level (no audit hook, plain /bin/sh).

As root the grader unshares a mount namespace directly; as any other user it
creates a user namespace of its own first (instructors rarely grade as root).
Either way the hidden folders are empty, every file system but a fresh /tmp is
read-only, and an unprivileged sandbox keeps no capability after exec.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest

from coursetools.grading.isolation import Isolation, mount_isolation, mount_isolation_available
from coursetools.paths import BUILD, ROOT

pytestmark = pytest.mark.skipif(not mount_isolation_available(),
                                reason="this machine gives no mount namespace (neither root nor user namespaces)")

NOBODY = 65534
PR_SET_DUMPABLE = 4
NO_NAMESPACE = 70  # the preexec's exit code when no namespace could be made


@pytest.fixture
def course_dirs():
    """A 'solutions' folder with a world-readable secret and a world-writable folder, outside /tmp."""
    base = BUILD / f"isolation-{os.getpid()}"
    secret_dir, writable = base / "solutions", base / "writable"
    for d in (base, secret_dir, writable):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o777)
    secret = secret_dir / "answers.txt"
    secret.write_text("the answers\n")
    secret.chmod(0o644)
    yield secret, writable
    shutil.rmtree(base, ignore_errors=True)


def _sh(script: str, isolation: Isolation | None, as_nobody: bool) -> subprocess.CompletedProcess:
    def preexec():
        if as_nobody:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            # A uid change makes the process non-dumpable, which hands /proc/self to root; a
            # process started as that user (an instructor's `make grade`) is dumpable already.
            ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1)
        if isolation is not None and not mount_isolation(isolation):
            os._exit(70)
    run = subprocess.run(["/bin/sh", "-c", script], preexec_fn=preexec, capture_output=True, text=True,
                         cwd="/", timeout=60)
    assert run.returncode != NO_NAMESPACE, "the mount namespace could not be made"
    return run


USERS = [pytest.param(False, id="as-root"), pytest.param(True, id="as-unprivileged-user")]


@pytest.mark.parametrize("as_nobody", USERS)
def test_hidden_folders_are_empty_and_the_rest_is_read_only(course_dirs, as_nobody):
    if os.geteuid() != 0:
        pytest.skip("switching users needs root; the unprivileged path is the one this run takes anyway")
    secret, writable = course_dirs
    # Without the namespace both work: the folders are readable and writable by anyone.
    assert _sh(f"cat {secret} && touch {writable}/x && rm {writable}/x", None, as_nobody).returncode == 0
    isolation = Isolation(hide=[str(secret.parent)], readonly=[str(ROOT)])  # as `make grade` sets it up
    run = _sh(f"cat {secret}", isolation, as_nobody)
    assert run.returncode != 0 and "the answers" not in run.stdout, run
    run = _sh(f"touch {writable}/x", isolation, as_nobody)
    assert run.returncode != 0 and "Read-only file system" in run.stderr, run
    run = _sh("echo scratch > /tmp/scratch && cat /tmp/scratch", isolation, as_nobody)
    assert run.returncode == 0 and run.stdout == "scratch\n", run
    assert not (writable / "x").exists()


def test_an_unprivileged_sandbox_keeps_no_capability():
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    run = _sh("grep CapEff /proc/self/status", Isolation(), as_nobody=True)
    assert run.returncode == 0 and run.stdout.split()[1] == "0000000000000000", run
