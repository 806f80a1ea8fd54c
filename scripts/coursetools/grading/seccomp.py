"""A seccomp filter for the sandbox process (Linux, x86-64 and arm64).

The audit hook (``guard.py``) is Python-level; a submission that corrupts
interpreter memory, or reaches a C function that raises no audit event (such
as ``_posixsubprocess.fork_exec``), gets past it. This filter makes the kernel
refuse what grading never needs, whatever the Python code does:

* starting programs and new processes (``execve``, ``fork``; ``clone`` only
  for threads), so nothing runs without the audit hook;
* signals to any process but itself, ``ptrace`` and reading or writing other
  processes' memory;
* mounting, unmounting, ``unshare``, ``setns``, ``chroot``: the mount
  namespace that hides solutions and submissions stays as it was set up;
* sockets, BPF, kernel modules, keyrings, ``open_by_handle_at``;
* memory outside the address space and outside the sandbox's life: ``memfd_create``
  (a file in memory that ``RLIMIT_AS`` does not count: a hundred of them once took
  gigabytes until the out-of-memory killer chose the grader), ``memfd_secret``, and
  System V shared memory, message queues and semaphores and POSIX message queues
  (they outlive the process, and the next sandbox of the same server could attach them).

Refused calls fail with ``EPERM`` (``ENOSYS`` for ``clone3``, so the C
library falls back to ``clone``, whose flags the filter can inspect).

Two rules keep a sandbox's death honest, so the grader can tell the student's crash
from a kill by someone else (the out-of-memory killer, an operator), which must never
be charged to the student: the sandbox cannot send itself the signals an outsider
sends (``EXTERNAL_SIGNALS``), and cannot exit with a status of 128 or more (which
would read as "killed by a signal" through bubblewrap); such an exit dies by SIGSEGV
instead, the student's own crash.
"""

from __future__ import annotations

import os
import platform
import signal
import struct

_ERRNO = 0x00050000
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_EPERM, _ENOSYS = 1, 38
_CLONE_THREAD = 0x00010000

# (audit arch, {name: number}) per machine.
_SYSCALLS = {
    "x86_64": (0xC000003E, {
        "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "clone": 56, "clone3": 435,
        "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442,
        "socket": 41, "socketpair": 53, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
        "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
        "keyctl": 250, "add_key": 248, "request_key": 249,
        "name_to_handle_at": 303, "open_by_handle_at": 304, "personality": 135, "io_uring_setup": 425,
        "memfd_create": 319, "memfd_secret": 447, "shmget": 29, "shmat": 30, "msgget": 68, "semget": 64,
        "mq_open": 240,
    }),
    "aarch64": (0xC00000B7, {
        "execve": 221, "execveat": 281, "clone": 220, "clone3": 435,
        "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442,
        "socket": 198, "socketpair": 199, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
        "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "keyctl": 219, "add_key": 217, "request_key": 218,
        "name_to_handle_at": 264, "open_by_handle_at": 265, "personality": 92, "io_uring_setup": 425,
        "memfd_create": 279, "memfd_secret": 447, "shmget": 194, "shmat": 196, "msgget": 186, "semget": 190,
        "mq_open": 180,
    }),
}
for _numbers, _extra in ((_SYSCALLS["x86_64"][1], {"exit": 60, "exit_group": 231, "fcntl": 72,
                                                     "setrlimit": 160, "prlimit64": 302, "seccomp": 317}),
                         (_SYSCALLS["aarch64"][1], {"exit": 93, "exit_group": 94, "fcntl": 25,
                                                      "setrlimit": 164, "prlimit64": 261, "seccomp": 277})):
    _numbers.update(_extra)
# Handled with argument checks below, not refused outright.
_CHECKED = ("clone", "clone3", "kill", "tkill", "tgkill", "exit", "exit_group", "fcntl", "prlimit64", "seccomp")
# Signals an outsider sends: a sandbox that dies of one was killed, it did not crash.
EXTERNAL_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                              signal.SIGUSR1, signal.SIGUSR2, signal.SIGSTOP, signal.SIGTSTP})
_F_SETSIG = 10  # fcntl: choose the signal sent on I/O readiness (could be one of the above)

# BPF opcodes.
_LD_W_ABS, _JEQ_K, _JSET_K, _JGE_K, _RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
_NR, _ARCH = 0, 4  # offsets in struct seccomp_data


def _arg(i: int) -> int:
    """Offset of the low 32 bits of argument ``i`` (little-endian machines)."""
    return 16 + 8 * i


def _insn(code, k, jt=0, jf=0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def build_filter(machine: str, own_pid: int) -> bytes:
    """The filter program (packed ``struct sock_filter`` array) for ``machine``.

    Raises ``KeyError`` for a machine with no syscall table here.
    """
    arch, numbers = _SYSCALLS[machine]
    deny = _ERRNO | _EPERM
    prog = [_insn(_LD_W_ABS, _ARCH), _insn(_JEQ_K, arch, jt=1), _insn(_RET_K, _KILL_PROCESS),
            _insn(_LD_W_ABS, _NR)]
    if machine == "x86_64":
        # The x32 ABI numbers syscalls from 0x40000000; nothing here uses it.
        prog += [_insn(_JGE_K, 0x40000000, jf=1), _insn(_RET_K, deny)]
    # clone: threads only.
    prog += [_insn(_JEQ_K, numbers["clone"], jf=4), _insn(_LD_W_ABS, _arg(0)),
             _insn(_JSET_K, _CLONE_THREAD, jf=1), _insn(_RET_K, _ALLOW), _insn(_RET_K, deny)]
    prog += [_insn(_JEQ_K, numbers["clone3"], jf=1), _insn(_RET_K, _ERRNO | _ENOSYS)]
    # kill(pid, sig), tkill(tid, sig), tgkill(tgid, tid, sig): to itself only, never an outsider's signal.
    for name, sig_arg in (("kill", 1), ("tkill", 1), ("tgkill", 2)):
        n = len(EXTERNAL_SIGNALS)
        body = [_insn(_LD_W_ABS, _arg(0)), _insn(_JEQ_K, own_pid, jf=n + 2), _insn(_LD_W_ABS, _arg(sig_arg))]
        body += [_insn(_JEQ_K, int(sig), jt=n - i) for i, sig in enumerate(sorted(EXTERNAL_SIGNALS))]
        body += [_insn(_RET_K, _ALLOW), _insn(_RET_K, deny)]
        prog += [_insn(_JEQ_K, numbers[name], jf=len(body))] + body
    # exit / exit_group: no status of 128 or more (it would read as death by a signal).
    for name in ("exit", "exit_group"):
        prog += [_insn(_JEQ_K, numbers[name], jf=4), _insn(_LD_W_ABS, _arg(0)),
                 _insn(_JSET_K, 0x80, jf=1), _insn(_RET_K, deny), _insn(_RET_K, _ALLOW)]
    # fcntl(fd, F_SETSIG, sig): refused; prlimit64 only to read limits (new_limit NULL).
    prog += [_insn(_JEQ_K, numbers["fcntl"], jf=4), _insn(_LD_W_ABS, _arg(1)),
             _insn(_JEQ_K, _F_SETSIG, jf=1), _insn(_RET_K, deny), _insn(_RET_K, _ALLOW)]
    prog += [_insn(_JEQ_K, numbers["prlimit64"], jf=6), _insn(_LD_W_ABS, _arg(2)),
             _insn(_JEQ_K, 0, jf=3), _insn(_LD_W_ABS, _arg(2) + 4), _insn(_JEQ_K, 0, jf=1),
             _insn(_RET_K, _ALLOW), _insn(_RET_K, deny)]
    # seccomp(2) itself stays allowed: a process can only add filters, never remove one.
    prog += [_insn(_JEQ_K, numbers["seccomp"], jf=1), _insn(_RET_K, _ALLOW)]
    for name, nr in numbers.items():
        if name not in _CHECKED:
            prog += [_insn(_JEQ_K, nr, jf=1), _insn(_RET_K, deny)]
    prog.append(_insn(_RET_K, _ALLOW))
    return b"".join(prog)


def install() -> str:
    """Install the filter on this process; returns "" or why it could not be installed.

    The filter is inherited by threads and cannot be removed. Requires
    ``no_new_privs``, which is set first (it also stops set-uid programs).
    """
    import ctypes

    machine = platform.machine()
    if os.uname().sysname != "Linux" or machine not in _SYSCALLS:
        return f"no seccomp filter for {os.uname().sysname} {machine}"
    program = build_filter(machine, os.getpid())
    count = len(program) // 8
    buffer = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(count, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}"
    # seccomp(SET_MODE_FILTER, TSYNC): every thread of the process, not only this one.
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(_SYSCALLS[machine][1]["seccomp"], 1, 1, ctypes.byref(fprog)) == 0:
        return ""
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return f"prctl(SECCOMP) failed: errno {ctypes.get_errno()}"
    return ""
