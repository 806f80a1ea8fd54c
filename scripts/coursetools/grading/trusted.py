"""What the grader trusts about a lab: read from solutions/, never from a submission."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..paths import SCRIPTS, lab_notebook, solution_notebook


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def imported_modules(source: str) -> list[str]:
    """Modules a cell imports by absolute name (``import a.b``, ``from a.b import c``), in order.

    A cell that is not Python (a syntax error the student must fix) imports nothing here.
    """
    try:
        tree = ast.parse(strip_magics(source))
    except SyntaxError:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return list(dict.fromkeys(names))


def strip_magics(source: str) -> str:
    """Cell source without IPython magics and shell escapes (they are not Python)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


@dataclass
class GradeCell:
    grade_id: str
    source: str     # with hidden tests: it runs only in the grader
    points: float


@dataclass
class TrustedLab:
    """A lab's structure, from the instructor's notebook.

    Attributes
    ----------
    setup_cells : list of (grade_id, source)
        Locked code cells that are not grade cells, run before student code.
    solution_ids : list of str
        Exercise cells, in notebook order.
    grade_cells : list of GradeCell
    numpy_only : bool
        From the lab's checker module (``NUMPY_ONLY``), default True.
    checker_preload : list of str
        From the lab's checker module (``SANDBOX_PRELOAD``): modules its checks import on first
        use, imported once by the sandbox server in labs that are not numpy-only.
    demo_imports : list of str
        Libraries the lab's own demonstration cells import (``from sklearn.datasets import ...``):
        preloaded in the sandbox server, so a forked sandbox does not import them per notebook.
    """

    lab: str
    setup_cells: list = field(default_factory=list)
    solution_ids: list = field(default_factory=list)
    grade_cells: list = field(default_factory=list)
    stub_sources: dict = field(default_factory=dict)
    numpy_only: bool = True
    checker_module: str = ""
    checker_preload: list = field(default_factory=list)
    demo_imports: list = field(default_factory=list)
    _globals: dict | None = None

    @classmethod
    def load(cls, lab: str) -> "TrustedLab":
        nb = nbformat.read(solution_notebook(lab), as_version=4)
        stub = nbformat.read(lab_notebook(lab), as_version=4)
        trusted = cls(lab)
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            if cell.cell_type == "code" and not meta.get("solution") and not meta.get("grade"):
                trusted.demo_imports += [m for m in imported_modules(cell.source) if m not in trusted.demo_imports]
            if cell.cell_type != "code" or not meta:
                continue
            if meta.get("grade") and not meta.get("solution"):
                trusted.grade_cells.append(GradeCell(meta["grade_id"], cell.source, float(meta.get("points", 0))))
            elif meta.get("solution"):
                trusted.solution_ids.append(meta["grade_id"])
            elif meta.get("locked"):
                trusted.setup_cells.append((meta["grade_id"], cell.source))
        trusted.stub_sources = {nbgrader_meta(c)["grade_id"]: c.source for c in stub.cells
                                if nbgrader_meta(c).get("solution")}
        module_name = trusted.checker_module = f"checker.lab{lab[:2]}"
        try:
            checker = importlib.import_module(module_name)
        except ImportError:
            checker = None
        trusted.numpy_only = bool(getattr(checker, "NUMPY_ONLY", True))
        trusted.checker_preload = list(getattr(checker, "SANDBOX_PRELOAD", ()))
        return trusted

    @property
    def preload(self) -> list[str]:
        """Modules the sandbox imports before its guard: those the trusted setup cells import.

        Importing them is safe (the instructor chose them) and lets libraries that
        use ctypes at import time (scikit-learn's threadpoolctl) load before ctypes
        is taken away. In numpy-only labs torch and the checker stay out.
        """
        # SANDBOX_PRELOAD: what the checks import lazily (torch.optim's first step imports torch._dynamo).
        names: list[str] = [] if self.numpy_only else ["torch", self.checker_module, *self.checker_preload]
        for module, attrs in self.handed_out.items():
            names += [module] + [f"{module}.{attr}" for attr in attrs or ()]  # an attr may be a submodule
        # Importing a library costs every notebook that uses it (scikit-learn: half a second) unless the
        # server has it; preloading only imports it, it hands nothing out. The course's own modules are
        # left out: what a sandbox may use of them is what the setup cells hand out, nothing else.
        course = {path.stem for path in SCRIPTS.iterdir()}
        names += [m for m in self.demo_imports if m.split(".")[0] not in course]
        if self.numpy_only:
            names = [n for n in names if n.split(".")[0] not in ("torch", "checker", "jax", "tensorflow")]
        return list(dict.fromkeys(names))

    @property
    def handed_out(self) -> dict[str, list[str] | None]:
        """What the setup cells import, by module: ``{module: [names]}``, ``None`` for a whole module.

        In the sandbox the course's own modules are cut down to these names
        (``course_view.seal``): the rest of ``math_utils`` or ``checker`` holds
        reference answers.
        """
        handed: dict[str, list[str] | None] = {}
        for _, source in self.setup_cells:
            for node in ast.walk(ast.parse(strip_magics(source))):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        handed[alias.name] = None
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [alias.name for alias in node.names]
                    if "*" in names or handed.get(node.module, []) is None:
                        handed[node.module] = None
                    else:
                        handed[node.module] = list(dict.fromkeys(handed.get(node.module, []) + names))
        return handed

    @property
    def max_score(self) -> float:
        return sum(g.points for g in self.grade_cells)

    def globals(self) -> dict:
        """A fresh copy of the namespace the trusted setup cells create in the grader."""
        if self._globals is None:
            os.environ.setdefault("MPLBACKEND", "Agg")
            ns: dict = {"__name__": f"grader_{self.lab}"}
            with contextlib.redirect_stdout(io.StringIO()):
                for gid, source in self.setup_cells:
                    exec(compile(strip_magics(source), f"<setup {gid}>", "exec"), ns)
            self._globals = ns
        return dict(self._globals)
