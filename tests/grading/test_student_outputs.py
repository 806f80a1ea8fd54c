"""The student's own outputs in feedback (issue 19 item 1): printed text and figures, as plain data.

The sandbox sends each cell's figures as PNG bytes in uint8 arrays (never pickles); the grader
keeps only real PNGs within the caps (outputs.py) and nbgrader's step puts them, with the
cell's printed text, under the cell in the graded notebook and the feedback page. A flood of
text or figures is capped and the page says so; crafted output stays text.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

from coursetools.grading import outputs
from coursetools.grading.sandbox import Limits, Sandbox
from fixtures.feedback_pages import exercise_ids, verdicts, write_feedback

pytestmark = pytest.mark.xdist_group("sandbox")

LAB = "01_backprop"
EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>\x1b[2J"


def _png(color="C0") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0], color=color)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    return buf.getvalue()


def _array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def test_only_real_pngs_within_the_caps_are_kept():
    png = _png()
    not_png = _array(b"<svg onload=alert(1)>" + b"\0" * 64)
    truncated = _array(png[:-20])
    as_floats = np.frombuffer(png[: len(png) // 8 * 8], dtype=np.float64)
    two_d = _array(png)[: len(png) // 2 * 2].reshape(2, -1)
    display = outputs.cell_display("plt.plot(x)", "hello", [_array(png), not_png, truncated, as_floats, two_d], 3)
    assert len(display["figures"]) == 1 and base64.b64decode(display["figures"][0]) == png
    assert display["figures_left_out"] == 3 + 4
    assert display["source_key"] == outputs.source_key("  plt.plot(x)\n")


def test_a_flood_is_capped_and_says_so():
    png = _array(_png())
    display = outputs.cell_display("", "x" * (outputs.TEXT_CAP + 500), [png] * 20, 0)
    assert len(display["figures"]) == outputs.FIGURES_PER_CELL
    assert display["figures_left_out"] == 20 - outputs.FIGURES_PER_CELL
    assert display["text"].endswith("[500 more characters of output not kept]")
    cells = outputs.within_budget({f"cell {i}": dict(display) for i in range(200)})
    kept = sum(len(d["figures"]) for d in cells.values())
    assert kept * len(png) <= outputs.NOTEBOOK_FIGURE_BYTES < (kept + 1) * len(png)
    nb_outputs = outputs.notebook_outputs(cells["cell 199"])
    assert "more figure(s) not kept" in nb_outputs[-1]["text"]


def test_a_flood_of_cells_keeps_no_more_text_than_the_notebook_budget(tmp_path):
    """Red-team finding (2026-12-02): 20,000 cells each printing 20,000 characters (a 3.2 MB notebook)
    put 770 MB into OUT and 1.35 GB into the grader; the per-cell cap had no notebook total."""
    from coursetools.grading.trusted import TrustedLab
    from coursetools.grading.verdict import grade_submission
    from fixtures.notebooks import solution_sources

    flood = [(f"added cell {i}", "print('x' * 30_000)") for i in range(60)]   # 60 x 20,000 kept per cell
    cells = list(solution_sources(LAB).items()) + flood
    result = grade_submission(TrustedLab.load(LAB), "flooder", cells, Limits(call_seconds=30), workdir=tmp_path)
    texts = [d["text"] for d in result.displays.values()]
    note = f"this notebook printed more than {outputs.NOTEBOOK_TEXT_CHARS} characters in all"
    assert sum(len(t) for t in texts) <= outputs.NOTEBOOK_TEXT_CHARS + len(texts) * 200, sum(map(len, texts))
    assert any(note in t for t in texts) and note in result.displays["added cell 59"]["text"]
    assert all(v.points == v.max_points for v in result.verdicts), "the output budget costs no points"


def test_a_forged_figure_in_a_verdict_file_is_not_shown():
    forged = {"text": "", "figures": ["x' onerror='alert(1)", base64.b64encode(b"GIF89a").decode()],
              "figures_left_out": 0}
    assert outputs.notebook_outputs(forged) == []


def test_the_sandbox_returns_figures_as_arrays_and_caps_them(tmp_path):
    code = ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "for i in range(11):\n    plt.figure(figsize=(2, 1.5)); plt.plot([0, i])\n"
            "print('x' * 50_000)\n")
    with Sandbox(numpy_only=True, limits=Limits(call_seconds=30), workdir=tmp_path) as sb:
        reply, arrays = sb.request({"op": "exec", "cell": "plots", "source": code})
        assert reply["ok"], reply
        assert len(arrays) == 8 and reply["figures_dropped"] == 3
        assert all(outputs.png_bytes(a) is not None for a in arrays)
        assert "more characters of output not kept" in reply["output"]
        # Figures are closed once sent: the next cell starts with none.
        reply, arrays = sb.request({"op": "exec", "cell": "next", "source": "print(len(plt.get_fignums()))"})
        assert reply["output"].strip() == "0" and arrays == []


def test_feedback_shows_the_students_figure_and_text_in_place_and_escapes_crafted_output(tmp_path):
    """A made-up verdict file: the exercise cell printed crafted markup and drew a figure; the page shows
    the figure under that cell, the markup as text, and the flood note under the next exercise."""
    png = _png()
    exercises = exercise_ids(LAB)
    displays = {exercises[0]: outputs.cell_display("", f"training accuracy 99%\n{EVIL}", [_array(png)], 0),
                exercises[1]: outputs.cell_display("", "", [_array(png)] * 10, 0)}
    page = write_feedback(tmp_path / "course", LAB, "ann",
                          {"verdicts": verdicts(LAB), "cell_outputs": {}, "displays": displays})
    html = page.read_text(encoding="utf-8")
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 1 + outputs.FIGURES_PER_CELL and base64.b64decode(images[0]) == png
    assert "training accuracy 99%" in html
    assert "<script>alert" not in html and "<img src=x" not in html and "&lt;script&gt;alert(1)" in html
    assert "[2 more figure(s) not kept" in html
    # In place: exercise 1's text and figure come before its check; exercise 2's figures after it.
    first_check = html.index(f'<a name="{verdicts(LAB)[0]["grade_id"]}">')  # the grade cell itself, not the contents
    assert html.index("training accuracy 99%") < html.index(images[0]) < first_check
    assert html.index("[2 more figure(s) not kept") > html.rindex(images[1]) > first_check
    # The gradebook's notebook (what the formgrader shows) holds the same outputs.
    import nbformat

    graded = nbformat.read(tmp_path / "course" / "autograded" / "ann" / LAB / f"{LAB}.ipynb", as_version=4)
    shown = [o for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == exercises[0]
             for o in c.outputs]
    assert [o.output_type for o in shown] == ["stream", "display_data"] and EVIL in shown[0].text
