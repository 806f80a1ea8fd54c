"""Where things are in the course repository."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions"
LABS = ROOT / "labs"
SCRIPTS = ROOT / "scripts"  # the course's own modules (math_utils, checker, coursetools...)
BUILD = ROOT / "build"


def lab_ids() -> list[str]:
    """Every lab, in order: the folders of solutions/ holding a notebook of the same name."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if (p / f"{p.name}.ipynb").is_file())


def solution_notebook(lab: str) -> Path:
    return SOLUTIONS / lab / f"{lab}.ipynb"


def lab_notebook(lab: str, labs_dir: Path = LABS) -> Path:
    return labs_dir / lab / f"{lab}.ipynb"


def tool_env() -> dict[str, str]:
    """os.environ with this interpreter's bin/ first on PATH.

    nbgrader shells out to helpers such as ``alembic`` by name; a venv's python
    run without activating the venv would not find them.
    """
    import os
    import sys

    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env
