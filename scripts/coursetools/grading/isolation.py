"""The sandbox's private mount namespace: secrets hidden, file systems read-only, a fresh /tmp.

Applied in the sandbox's child process before it execs Python (``Sandbox.start``'s
``preexec_fn``). As root the namespace is unshared directly; as any other user inside
a user namespace of its own, where the kernel allows unprivileged ones. The seccomp
filter the sandbox installs next (``seccomp.py``) stops it from undoing any of this.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from dataclasses import dataclass, field


@dataclass
class Isolation:
    """What the sandbox hides: paths mounted over with an empty tmpfs, when the OS allows it."""

    hide: list = field(default_factory=list)
    readonly: list = field(default_factory=list)


_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18)


def mount_isolation(isolation: Isolation) -> bool:
    """In the child, before exec: private mount namespace, secrets hidden, every file system
    read-only but a fresh /tmp (the seccomp filter then stops the sandbox from undoing this)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not _new_mount_namespace(libc):
        return False
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return False
    for path in isolation.readonly:
        p = os.fsencode(path)
        libc.mount(p, p, None, _MS_BIND | _MS_REC, None)
        libc.mount(None, p, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None)
    for path in isolation.hide:
        libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=64k,mode=000")
    for point, flags in _mount_points():
        if not point.startswith((b"/proc", b"/sys", b"/dev")):
            libc.mount(None, point, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | flags, None)
    # A course (or its virtual environment) kept under /tmp would vanish under the fresh /tmp:
    # hold it by descriptor, then bind it back in, read-only, with the folders hidden inside it.
    under_tmp = [p for p in isolation.readonly if p == "/tmp" or p.startswith("/tmp/")]
    held = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in under_tmp]
    if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=512m,mode=1777") != 0:
        return False
    for path, fd in held:
        os.makedirs(path, exist_ok=True)
        target = os.fsencode(path)
        if libc.mount(f"/proc/self/fd/{fd}".encode(), target, None, _MS_BIND | _MS_REC, None) != 0:
            return False
        os.close(fd)
        flags = _statvfs_flags(path)
        libc.mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | flags, None)
        if not os.statvfs(path).f_flag & os.ST_RDONLY:
            return False
    return True


def _statvfs_flags(path: str) -> int:
    """The mount flags of ``path`` a remount must keep (a user namespace may not drop them)."""
    f_flag = os.statvfs(path).f_flag
    pairs = ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, 8),
             (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))
    return sum(ms for st, ms in pairs if f_flag & st)


def _new_mount_namespace(libc) -> bool:
    """Enter a private mount namespace: directly as root, else inside a user namespace of our own.

    The user namespace maps only this user to itself (not to root inside), so once the sandbox
    execs Python it holds no capability there: it gets the mounts, not the power to change them.
    """
    if libc.unshare(_CLONE_NEWNS) == 0:
        return True
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
        return False  # unprivileged user namespaces are disabled on this machine
    try:
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                           ("/proc/self/gid_map", f"{gid} {gid} 1")):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
    except OSError:
        return False
    return True


def _mount_points():
    """(mount point, flags to keep) for every mount of this namespace, from /proc/self/mountinfo."""
    keep = {b"nosuid": _MS_NOSUID, b"nodev": _MS_NODEV, b"noexec": 8, b"noatime": 1024,
            b"nodiratime": 2048, b"relatime": 1 << 21}
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace(b"\\040", b" ")
            yield point, sum(keep.get(o, 0) for o in fields[5].split(b","))


def mount_isolation_available() -> bool:
    """Whether this machine lets the grader give each sandbox a private mount namespace."""
    probe = subprocess.run([sys.executable, "-c", "import sys; sys.exit(0)"],
                           preexec_fn=lambda: os._exit(0 if mount_isolation(Isolation()) else 3))
    return probe.returncode == 0
