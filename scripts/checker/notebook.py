"""What a student sees around the checks in JupyterLab: links after a failure, and a progress view.

Everything here is for a live IPython kernel and does nothing elsewhere (the
grader's trusted process and plain Python have no IPython shell):

* after a cell ends in a :class:`~checker.compare.CheckFailure`, every
  ``TROUBLESHOOTING.md#<section>`` its message names is shown again as a link that
  opens that section inside JupyterLab (the message itself stays plain text,
  which is what ``make grade`` and Validate report);
* every cell's outcome is remembered, so :func:`progress` (the last cell of
  each lab) can say "6 of 8 checks pass" and which checks fail and why.

The links are relative to the notebook's folder and point at the
TROUBLESHOOTING.md found in it or above it; `make lab` serves the folder that
holds both labs/ and TROUBLESHOOTING.md, so JupyterLab can open them.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

TROUBLESHOOTING = "TROUBLESHOOTING.md"
ANCHOR = re.compile(r"TROUBLESHOOTING\.md#([a-z0-9]+(?:-[a-z0-9]+)*)")
CHECK_ID = re.compile(r"check_ex(\d+)_(\w+)")


@dataclass
class Outcome:
    """How a cell's last run ended."""

    status: str            # "pass", "partial", "fail" (a check failed) or "error" (the cell raised something else)
    message: str = ""      # the failure message, or "Type: message" for another error
    misconception: str = ""
    points: Optional[float] = None   # for "partial": the points the cell earned


# Cell outcomes of this kernel session, by cell id and by source (grade cells are read-only).
_by_cell_id: dict[str, Outcome] = {}
_by_source: dict[str, Outcome] = {}
_pending_failure = None
_installed = False


def _shell():
    """The running IPython shell, or None (without importing IPython where it is not loaded)."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython half-imported
        return None
    return get_ipython()


def install() -> bool:
    """Register the after-cell hook once in a running IPython shell; False where there is none."""
    global _installed
    shell = _shell()
    if shell is None:
        return False
    if not _installed:
        shell.events.register("post_run_cell", _after_cell)
        _installed = True
    return True


def after_failure(failure) -> None:
    """Called while IPython renders a CheckFailure: show its links once the cell has finished."""
    global _pending_failure
    if install():
        _pending_failure = failure


def _after_cell(result) -> None:
    global _pending_failure
    from .compare import CheckFailure

    error = result.error_in_exec or result.error_before_exec
    # A check of several functions may return the points it earned (a float carrying its failure).
    value = getattr(result, "result", None)
    partial = getattr(value, "failure", None) if isinstance(value, float) else None
    if isinstance(error, CheckFailure):
        outcome = Outcome("fail", str(error), error.misconception or "")
    elif error is None and isinstance(partial, CheckFailure):
        outcome = Outcome("partial", str(partial), partial.misconception or "", float(value))
    elif error is not None:
        outcome = Outcome("error", f"{type(error).__name__}: {error}")
    else:
        outcome = Outcome("pass")
    info = getattr(result, "info", None)
    cell_id = getattr(info, "cell_id", None)
    if cell_id:
        _by_cell_id[cell_id] = outcome
    source = getattr(info, "raw_cell", None)
    if source is not None:
        _by_source[source.strip()] = outcome
    failure, _pending_failure = _pending_failure, None
    if outcome.status == "partial":
        failure = error = partial
    if failure is not None and failure is error:
        links = troubleshooting_links(str(failure))
        if links:
            from IPython.display import display

            display(links_bundle(links), raw=True)


def troubleshooting_path(start: Optional[Path] = None) -> Optional[str]:
    """The relative path from ``start`` (the kernel's folder: the notebook's) to TROUBLESHOOTING.md.

    Looks in ``start`` and the folders above it; None if there is none.
    """
    here = Path(start or os.getcwd()).resolve()
    for up, folder in enumerate([here, *here.parents]):
        if (folder / TROUBLESHOOTING).is_file():
            return "/".join([".."] * up + [TROUBLESHOOTING])
    return None


def troubleshooting_links(message: str, start: Optional[Path] = None) -> list[tuple[str, str]]:
    """(anchor text as written in the message, relative href) for every reference in ``message``."""
    path = troubleshooting_path(start)
    if path is None:
        return []
    anchors = dict.fromkeys(ANCHOR.findall(message))
    return [(f"{TROUBLESHOOTING}#{a}", f"{path}#{a}") for a in anchors]


def links_bundle(links: list[tuple[str, str]]) -> dict:
    """A display bundle: HTML links JupyterLab opens in a tab, plain text elsewhere."""
    items = " &nbsp; ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in links)
    return {
        "text/html": f'<div class="mdl-read">Read: {items} (opens in JupyterLab)</div>',
        "text/plain": "\n".join(f"Read: {text}" for text, _ in links),
    }


# --------------------------------------------------------------------------- progress

@dataclass
class CheckRow:
    """One grade cell of the lab and its outcome in this kernel session."""

    label: str
    points: float
    outcome: Optional[Outcome]   # None: not run since the kernel started


def _notebook_path() -> Optional[Path]:
    """The notebook this kernel runs: JupyterLab names it in JPY_SESSION_NAME; else the folder's only one."""
    named = os.environ.get("JPY_SESSION_NAME", "")
    if named.endswith(".ipynb") and Path(named).is_file():
        return Path(named)
    found = sorted(Path.cwd().glob("*.ipynb"))
    return found[0] if len(found) == 1 else None


def check_rows(notebook: Path) -> list[CheckRow]:
    """The grade cells of ``notebook`` (as saved) with what this session recorded for each."""
    # Plain JSON, not nbformat: importing nbformat (jsonschema and all) costs a student's
    # kernel over a second, and only cell sources and metadata are read here.
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    rows = []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        gid = meta.get("grade_id", "")
        numbered = CHECK_ID.fullmatch(gid)
        label = f"Exercise {int(numbered[1])} ({numbered[2]})" if numbered else gid
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        outcome = _by_cell_id.get(cell.get("id", "")) or _by_source.get(source.strip())
        rows.append(CheckRow(label, float(meta.get("points", 0)), outcome))
    return rows


def progress_text(rows: list[CheckRow]) -> str:
    """The progress view as plain text (the first line is the count)."""
    passed = [r for r in rows if r.outcome and r.outcome.status == "pass"]
    points = sum(r.points for r in passed) + sum(r.outcome.points or 0.0 for r in rows
                                                  if r.outcome and r.outcome.status == "partial")
    total = sum(r.points for r in rows)
    lines = [f"{len(passed)} of {len(rows)} checks pass ({points:g} of {total:g} points)"]
    for row in rows:
        lines.append(f"  {_mark(row)} {row.label}: {_why(row)}")
    return "\n".join(lines)


def _mark(row: CheckRow) -> str:
    if row.outcome is None:
        return "\u00b7"
    return "\u2713" if row.outcome.status == "pass" else "\u2717"


def _why(row: CheckRow) -> str:
    if row.outcome is None:
        return "not run yet (run its check cell)"
    if row.outcome.status == "pass":
        return "passes"
    first = row.outcome.message.splitlines()[0] if row.outcome.message else "failed"
    if row.outcome.status == "partial":
        first = f"partial credit ({row.outcome.points:g} of {row.points:g} points): {first}"
    if row.outcome.misconception:
        first += f" [{row.outcome.misconception}]"
    return first


def progress_html(rows: list[CheckRow], start: Optional[Path] = None) -> str:
    """The progress view as an HTML table, failures linked to their TROUBLESHOOTING section."""
    head = html.escape(progress_text(rows).splitlines()[0])
    body = []
    for row in rows:
        why = html.escape(_why(row))
        if row.outcome and row.outcome.status != "pass":
            links = troubleshooting_links(row.outcome.message, start)
            if links:
                why += " " + " ".join(f'<a href="{html.escape(h)}">{html.escape(t)}</a>' for t, h in links)
        colour = {"\u2713": "#1a7f37", "\u2717": "#cf222e"}.get(_mark(row), "#6e7781")
        body.append(f'<tr><td style="color:{colour};font-weight:bold">{_mark(row)}</td>'
                    f'<td style="text-align:left">{html.escape(row.label)}</td>'
                    f'<td style="text-align:left">{why}</td></tr>')
    return (f'<div class="mdl-progress"><p><b>{head}</b></p>'
            f'<table><tr><th></th><th style="text-align:left">Check</th>'
            f'<th style="text-align:left">Result</th></tr>{"".join(body)}</table></div>')


def progress(notebook: Optional[str] = None) -> None:
    """Show how many of this lab's checks pass in this kernel session, which fail, and why.

    Parameters
    ----------
    notebook : str, optional
        The lab's notebook; by default the one this kernel runs. Its grade
        cells are read from the saved file; their outcomes are those of this
        session (a check not run since the kernel started shows as not run).
    """
    path = Path(notebook) if notebook else _notebook_path()
    if path is None:
        print("progress(): could not tell which notebook this is; call progress('<lab>.ipynb').")
        return
    rows = check_rows(path)
    if _shell() is None:
        print(progress_text(rows))
        return
    from IPython.display import display

    display({"text/html": progress_html(rows, path.parent), "text/plain": progress_text(rows)}, raw=True)
