"""Review, feedback and report pages opened in Chromium with the network blocked (issue 19 item 2).

Every request that is not a file: or data: URL is aborted and recorded; each page must make
none, and its math must be laid out by the browser: a fraction's numerator drawn above its
denominator (MathML written before the page is, coursetools/offline_html.py), not raw ``$$``.
The feedback page is lab 01's solution graded in the sandbox (its own figures and printed lines),
one check's message made a long line that must wrap inside the page, recorded by make grade's
nbgrader step; the report comes from made-up rows.

Screenshots go to build/browser/: offline-review-02_optimizers.png, offline-equation.png (an
equation close up), offline-feedback-01_backprop.png (the wrapped message),
offline-feedback-student-figure-01_backprop.png (a figure the student's cell drew in the sandbox) and offline-report.png.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest

from coursetools.grading import report
from coursetools.grading.intake import student_cells
from coursetools.grading.sandbox import Limits
from coursetools.grading.trusted import TrustedLab
from coursetools.grading.verdict import grade_submission
from coursetools.offline_html import review_exporter
from coursetools.paths import BUILD, solution_notebook
from fixtures.feedback_pages import write_feedback
from fixtures.notebooks import submission

SHOTS = BUILD / "browser"  # screenshots, kept for review

pytestmark = [pytest.mark.xdist_group("browser")]

FEEDBACK_LAB, REVIEW_LAB = "01_backprop", "02_optimizers"
LONG_LINE = "max abs error " + " ".join(f"{i * 0.37:.6f}" for i in range(120))  # one line, far wider than a page


def _open_offline(browser, path: Path):
    """A page at ``path`` with every non-file request aborted; returns (page, the URLs it asked for)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    asked: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            asked.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.goto(path.as_uri(), wait_until="load")
    return page, asked


def _screenshot(target, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    target.screenshot(path=str(path))
    return path


# A fraction is laid out when its numerator sits wholly above its denominator (without MathML
# layout the two would share one line).
FRACTIONS_LAID_OUT = """() => {
  const fracs = [...document.querySelectorAll('math mfrac')];
  return {count: fracs.length, laidOut: fracs.filter(f => {
    const [num, den] = f.children;
    if (!num || !den) return false;
    const a = num.getBoundingClientRect(), b = den.getBoundingClientRect();
    return a.height > 0 && b.height > 0 && a.bottom <= b.top + 1;
  }).length};
}"""


def _assert_math_rendered(page, name: str):
    fracs = page.evaluate(FRACTIONS_LAID_OUT)
    assert fracs["count"] > 0 and fracs["laidOut"] == fracs["count"], fracs
    assert "$$" not in page.inner_text("body"), "raw TeX left on the page"
    equation = page.locator("math[display=block]:has(mfrac)").first
    equation.scroll_into_view_if_needed()
    return _screenshot(page, name)


def test_review_page_renders_math_with_the_network_blocked(browser, tmp_path):
    nb = nbformat.read(solution_notebook(REVIEW_LAB), as_version=4)
    html, _ = review_exporter().from_notebook_node(nb)
    path = tmp_path / f"{REVIEW_LAB}.html"
    path.write_text(html, encoding="utf-8")
    page, asked = _open_offline(browser, path)
    try:
        assert asked == [], f"the review page asked the network for {asked}"
        _assert_math_rendered(page, f"offline-review-{REVIEW_LAB}")
        block = page.locator("math[display=block]:has(mfrac)").first
        box = block.bounding_box()
        assert box and box["height"] > 20, box
        _screenshot(block, "offline-equation")
    finally:
        page.context.close()


def test_feedback_page_renders_math_and_wraps_long_lines_with_the_network_blocked(browser, tmp_path):
    # The solution notebook, demonstrations included, graded in the sandbox: its cells' own printed
    # lines and figures; one check's message is then made a long line.
    trusted = TrustedLab.load(FEEDBACK_LAB)
    cells, _ = student_cells(trusted, submission(FEEDBACK_LAB))
    result = grade_submission(trusted, "ann", cells, Limits(call_seconds=60), None, tmp_path)
    assert sum(len(d["figures"]) for d in result.displays.values()) >= 1, "the solution drew no figure"
    failing = result.verdicts[2]
    failing.passed, failing.points = False, 0.0
    failing.message, failing.misconception = f"linear_backward: dW does not match.\n{LONG_LINE}", "transposed"
    data = {"verdicts": [asdict(v) for v in result.verdicts], "cell_outputs": result.cell_outputs,
            "displays": result.displays}
    path = write_feedback(tmp_path / "course", FEEDBACK_LAB, "ann", data)
    page, asked = _open_offline(browser, path)
    try:
        assert asked == [], f"the feedback page asked the network for {asked}"
        _assert_math_rendered(page, f"offline-feedback-math-{FEEDBACK_LAB}")
        message = page.locator("pre", has_text="max abs error").first
        message.scroll_into_view_if_needed()
        widths = message.evaluate("e => ({scroll: e.scrollWidth, client: e.clientWidth, "
                                  "page: document.documentElement.scrollWidth, view: window.innerWidth})")
        assert widths["scroll"] <= widths["client"] + 1, f"the long message line does not wrap: {widths}"
        assert widths["page"] <= widths["view"], f"the page scrolls sideways: {widths}"
        _screenshot(page, f"offline-feedback-{FEEDBACK_LAB}")
        # The student's own figure, drawn from the page itself (a data: URL), under its cell.
        image = page.locator("img[src^='data:image/png']").first
        image.scroll_into_view_if_needed()
        assert image.evaluate("i => i.complete && i.naturalWidth > 100"), "the student's figure did not load"
        page.evaluate("window.scrollBy(0, -200)")
        _screenshot(page, f"offline-feedback-student-figure-{FEEDBACK_LAB}")
    finally:
        page.context.close()


def test_report_page_shows_its_figures_with_the_network_blocked(browser, tmp_path):
    rows = [{"student": s, "lab": FEEDBACK_LAB, "score": score, "max_score": 19.0, "status": "graded", "reason": ""}
            for s, score in (("ann", 19.0), ("bob", 16.0), ("cy", 16.0), ("dee", 7.0))]
    rows.append({"student": "eve", "lab": FEEDBACK_LAB, "score": 0, "max_score": "", "status": "error",
                 "reason": "malformed notebook JSON " + LONG_LINE})
    questions = [{"student": s, "lab": FEEDBACK_LAB, "question": q, "score": 0.0, "max_score": 3.0,
                  "misconception": m, "parts": ""}
                 for s, q, m in (("bob", "check_ex3_linear_layer", "transposed-weight-gradient"),
                                 ("cy", "check_ex3_linear_layer", "transposed-weight-gradient"),
                                 ("dee", "check_ex5_softmax_ce", "softmax-not-stabilised"),
                                 ("dee", "check_ex3_linear_layer", "missing-bias-gradient"))]
    report.write_html(tmp_path, rows, report.summarise(rows, questions), questions)
    page, asked = _open_offline(browser, tmp_path / "report.html")
    try:
        assert asked == [], f"the report asked the network for {asked}"
        images = page.evaluate("() => [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        assert len(images) == 2 and all(ok for _, ok in images), images
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the report scrolls sideways"
        page.set_viewport_size({"width": 1100, "height": 2400})
        _screenshot(page, "offline-report")
    finally:
        page.context.close()
