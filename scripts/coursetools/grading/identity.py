"""What a grading worker must share with the grader that submits to it: the course and the packages.

A verdict is only as good as the checks and the numbers behind it. A Dask worker on another
machine grades with *its* copy of the course (the instructor's notebooks and the checker) and
*its* numpy and torch; :func:`lab_hash` and :func:`pinned_versions` describe both, the submitting
side sends its own with every task, and a worker whose copy differs refuses the task
(:func:`refusal`) instead of grading against other checks. The same lab hash keys the journal
(``journal.py``): a lab whose checks changed is graded again by ``--only-new``.

:func:`missing_layers` says which isolation layers a sandbox's report lacks (``--require-isolation full``).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from importlib import metadata

from ..paths import ROOT, lab_notebook, solution_notebook

# The isolation layers a sandbox reports (sandbox_main.harden), each checked on its own.
FULL_ISOLATION = {
    "pid namespace": lambda layers: layers.get("pid_namespace") is True,
    "mount namespace": lambda layers: layers.get("mount_namespace") is True,
    "no network": lambda layers: layers.get("network") == ["lo"],
    "unprivileged user": lambda layers: layers.get("uid", 0) != 0 and layers.get("CapEff") == "0000000000000000",
    "resource limits": lambda layers: layers.get("threads_limited") is True,
    "Landlock": lambda layers: str(layers.get("landlock", "")).startswith("ABI"),
    "seccomp": lambda layers: layers.get("seccomp") == "on",
    "audit hook": lambda layers: layers.get("audit_hook") == "on",
}


def lab_files(lab: str) -> list:
    """The files whose content decides ``lab``'s grades: its two notebooks and the course modules its checks use.

    The shared modules (``math_utils``, ``checker/*`` but the other labs' own ``checker/labNN.py``)
    count for every lab; the grader's machinery (``coursetools``) does not: a change there is a
    new grader, not new checks (regrade everything, without ``--only-new``).
    """
    scripts = ROOT / "scripts"
    own_checker = f"lab{lab[:2]}.py"
    modules = [p for p in scripts.glob("*.py")]
    for p in (scripts / "checker").rglob("*.py"):
        if "__pycache__" in p.parts:
            continue
        if re.fullmatch(r"lab\d\d\.py", p.name) and p.name != own_checker and p.parent == scripts / "checker":
            continue
        modules.append(p)
    return [solution_notebook(lab), lab_notebook(lab)] + sorted(modules)


def lab_hash(lab: str) -> str:
    """sha256 over the names and contents of :func:`lab_files` (the lab's course hash)."""
    digest = hashlib.sha256()
    for path in lab_files(lab):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def course_hash(lab_hashes: dict[str, str]) -> str:
    """One hash for the labs graded together (printed, and compared by a worker)."""
    return hashlib.sha256("".join(f"{lab}={h};" for lab, h in sorted(lab_hashes.items())).encode()).hexdigest()


def pinned_names() -> list[str]:
    """The distributions pyproject.toml pins for the course (``name==version``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return sorted({re.split(r"[=<>!~;\[ ]", dep, maxsplit=1)[0].strip().lower()
                   for dep in project["dependencies"]})


def pinned_versions(names: list[str] | None = None) -> dict[str, str | None]:
    """This interpreter's version of each pinned distribution (None when it is not installed)."""
    versions = {}
    for name in names if names is not None else pinned_names():
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def refusal(expected_labs: dict[str, str], expected_versions: dict[str, str | None], lab: str,
            own_hash) -> str:
    """Why this worker must not grade ``lab`` for a grader expecting these hashes and versions ("" if it may).

    ``own_hash`` is a callable giving this worker's hash of a lab (cached by the caller).
    """
    theirs = expected_labs.get(lab)
    mine = own_hash(lab)
    if theirs != mine:
        return (f"its course differs from the grader's: lab {lab} hashes to {mine[:12]} here, "
                f"{str(theirs)[:12]} on the submitting side (another checkout of solutions/ or scripts/checker/)")
    mine_versions = pinned_versions(list(expected_versions))
    differ = [f"{name} {mine_versions[name]} here, {want} there" for name, want in sorted(expected_versions.items())
              if mine_versions[name] != want]
    if differ:
        return "its pinned packages differ from the grader's: " + "; ".join(differ)
    return ""


def missing_layers(layers: dict) -> list[str]:
    """The isolation layers a sandbox's report lacks, in words (empty: every layer held)."""
    if not layers:
        return list(FULL_ISOLATION)
    return [name for name, held in FULL_ISOLATION.items() if not held(layers)]
