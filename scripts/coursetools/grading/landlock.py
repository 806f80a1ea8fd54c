"""Landlock file-system rules for the sandbox process (Linux 5.13 and newer).

Landlock is enforced by the kernel at every path resolution, whatever the path's
spelling: relative to a directory descriptor, after ``chdir``, through symbolic links or
``/proc/<pid>/root``. Once applied, the process (and its threads) may read only beneath
the folders given and write only beneath its own folder; where the kernel's Landlock ABI
is 6 or newer, it may also not signal processes outside its domain or reach abstract Unix
sockets, and from ABI 4 it may not bind or connect TCP ports.

Three system calls through ``ctypes`` rather than the ``landlock`` package from PyPI:
that binding is a pre-release (1.0.0.dev5) with no ABI-6 scoping, and this is the whole
of what is needed.
"""

from __future__ import annotations

import ctypes
import os
import platform

# Same numbers on x86-64 and arm64 (generic syscall table).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV


def _fs_rights(abi: int) -> int:
    """Every file-system right the kernel's ABI knows (all of them are then 'handled': denied by default)."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI (0 when Landlock is missing or disabled)."""
    if os.uname().sysname != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def restrict(read: list[str], write: list[str], read_write_files: list[str] = (), list_only: list[str] = ()) -> str:
    """Apply Landlock to this process: read beneath ``read``, everything beneath ``write``.

    ``read_write_files`` are single files (such as ``/dev/null``) that may be read and written.
    Folders in ``list_only`` may be listed, with everything beneath them, but no file beneath them
    read unless ``read`` allows it (what :func:`~coursetools.grading.isolation.roots_without` gives
    for the folders above a package kept out).
    Paths that do not exist are skipped. Returns "" when applied, else why not (the
    sandbox then relies on its other layers, and says so).
    """
    abi = abi_version()
    if abi < 1:
        return "Landlock is not available in this kernel"
    handled = _fs_rights(abi)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    attr = _RulesetAttr(handled, (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
                        (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ruleset = int(libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)))
    if ruleset < 0:
        return f"landlock_create_ruleset failed: errno {ctypes.get_errno()}"
    try:
        read_rights = READ_FILE | READ_DIR
        rules = [(p, read_rights) for p in read] + [(p, READ_DIR) for p in list_only] + \
                [(p, handled) for p in write] + \
                [(p, READ_FILE | WRITE_FILE | (TRUNCATE if abi >= 3 else 0)) for p in read_write_files]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not on this machine: nothing to allow
            try:
                if not os.path.isdir(f"/proc/self/fd/{fd}"):
                    rights &= FILE_RIGHTS  # a rule on a file may carry file rights only
                rule = _PathBeneathAttr(rights, fd)
                if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    return f"landlock_add_rule({path}) failed: errno {ctypes.get_errno()}"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}"
        if libc.syscall(_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            return f"landlock_restrict_self failed: errno {ctypes.get_errno()}"
    finally:
        os.close(ruleset)
    return ""
