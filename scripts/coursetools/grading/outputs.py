"""What a student's cells showed, as plain data for the feedback page: capped text and checked PNG figures.

The sandbox returns each cell's printed text and the figures it left open as PNG bytes in
numpy uint8 arrays (``sandbox_main.cell_figures``; never pickles). The grader trusts none
of it: a figure is kept only when it is a 1-D uint8 array that starts with PNG's signature
and ends with its IEND chunk, no larger than :data:`FIGURE_BYTES`, at most
:data:`FIGURES_PER_CELL` a cell and :data:`NOTEBOOK_FIGURE_BYTES` a notebook; it travels
on as base64 text (only ``A-Z a-z 0-9 + / =``, so it cannot close the ``<img>`` attribute
it ends up in). Text stays text: nbconvert escapes it in the page. Whatever is left out is
counted, and the page says so under the cell.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
from nbformat.v4 import new_output

TEXT_CAP = 20_000                    # characters of one cell's printed output kept
NOTEBOOK_TEXT_CHARS = 200_000        # characters of printed output kept from all of one notebook's cells
FIGURES_PER_CELL = 8
FIGURE_BYTES = 1 * 2**20             # one PNG
NOTEBOOK_FIGURE_BYTES = 2 * 2**20    # all of one notebook's PNGs: feedback pages stay small enough to upload
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"          # the IEND chunk's type and CRC: the last 8 bytes of every PNG


def source_key(source: str) -> str:
    """A short digest of a cell's source: finds a demonstration cell the student left as released."""
    return hashlib.sha256(source.strip().encode("utf-8", "surrogatepass")).hexdigest()[:20]


def png_bytes(array) -> bytes | None:
    """The PNG in ``array`` (as the sandbox sent it), or None when it is not one within the limits."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 1 or array.size > FIGURE_BYTES:
        return None
    data = array.tobytes()
    if not data.startswith(PNG_SIGNATURE) or not data.endswith(PNG_END):
        return None
    return data


def cell_display(source: str, text: str, figures, left_out) -> dict:
    """One cell's display: ``{"source_key", "text", "figures": [base64 PNG], "figures_left_out"}``."""
    kept, refused = [], 0
    for array in list(figures)[:FIGURES_PER_CELL]:
        png = png_bytes(array)
        if png is None:
            refused += 1
        else:
            kept.append(base64.b64encode(png).decode("ascii"))
    refused += max(0, len(figures) - FIGURES_PER_CELL)
    left_out = left_out if type(left_out) is int and 0 <= left_out < 10**6 else 0
    text = str(text).strip()
    if len(text) > TEXT_CAP:
        text = text[:TEXT_CAP] + f"\n... [{len(text) - TEXT_CAP} more characters of output not kept]"
    return {"source_key": source_key(source), "text": text, "figures": kept, "figures_left_out": left_out + refused}


def charge_text(display: dict, spent: int) -> tuple[dict, int]:
    """``display`` with its text cut to what is left of :data:`NOTEBOOK_TEXT_CHARS` after ``spent``.

    Applied cell by cell as the notebook runs, so that twenty thousand cells of capped output
    (a red-team notebook: 770 MB in OUT, 1.35 GB in the grader) cost no more than the budget.
    Returns the display and the characters spent so far.
    """
    text = display["text"]
    left = max(0, NOTEBOOK_TEXT_CHARS - spent)
    if len(text) > left:
        note = f"[output not kept: this notebook printed more than {NOTEBOOK_TEXT_CHARS} characters in all]"
        display = dict(display, text=(text[:left] + "\n" + note) if left else note)
    return display, spent + min(len(text), left)


def within_budget(displays: dict[str, dict]) -> dict[str, dict]:
    """``displays`` with figures past :data:`NOTEBOOK_FIGURE_BYTES` (in cell order) left out and counted."""
    spent, out = 0, {}
    for label, display in displays.items():
        kept = []
        left_out = display["figures_left_out"]
        for figure in display["figures"]:
            size = len(figure) * 3 // 4
            if spent + size > NOTEBOOK_FIGURE_BYTES:
                left_out += 1
                continue
            spent += size
            kept.append(figure)
        out[label] = dict(display, figures=kept, figures_left_out=left_out)
    return out


def _figure_ok(figure) -> bool:
    """A figure read back from a verdict file: base64 of a PNG (the file is the grader's, checked again anyway)."""
    if not isinstance(figure, str) or len(figure) > FIGURE_BYTES * 4 // 3 + 4:
        return False
    try:
        data = base64.b64decode(figure, validate=True)
    except ValueError:
        return False
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END)


def notebook_outputs(display: dict) -> list:
    """The cell's outputs in the graded notebook: its printed text, each figure, and what was left out."""
    outputs = []
    text = display.get("text")
    if isinstance(text, str) and text:
        outputs.append(new_output("stream", name="stdout", text=text + "\n"))
    for figure in display.get("figures", []):
        if _figure_ok(figure):
            outputs.append(new_output("display_data", data={"image/png": figure, "text/plain": "<Figure>"}))
    left_out = display.get("figures_left_out", 0)
    if type(left_out) is int and left_out > 0:
        outputs.append(new_output("stream", name="stdout", text=(
            f"[{left_out} more figure(s) not kept: at most {FIGURES_PER_CELL} a cell, "
            f"{FIGURE_BYTES // 2**20} MB each, {NOTEBOOK_FIGURE_BYTES // 2**20} MB a notebook]\n")))
    return outputs
