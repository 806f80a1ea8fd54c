"""Math rendered to MathML before a page is written (coursetools/offline_html.py): no MathJax, no network."""

from __future__ import annotations

import re

import nbformat
import pytest

from coursetools import offline_html
from coursetools.paths import lab_ids, solution_notebook


def test_inline_and_display_math_become_mathml_and_code_stays_as_written():
    source = ("Inline $a_1 < b$ and a price \\$5, code `$x$` and\n\n$$\\frac{\\partial L}{\\partial W}$$\n\n"
              "```python\nprint('$y$')\n```\n")
    out = offline_html.markdown_math_to_mathml(source)
    assert out.count('<math display="inline">') == 1 and out.count('<math display="block">') == 1
    assert "<mfrac>" in out and "&lt;" in out
    assert "`$x$`" in out and "print('$y$')" in out and "\\$5" in out


def test_aligned_rows_become_a_table():
    out = offline_html.tex_to_mathml("\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}", True)
    assert out.count("<mtr>") == 2 and "&amp;" not in out and "<mi>&" not in out


@pytest.mark.parametrize("tex", [
    "\\text{<img src=x onerror=alert(1)>}",
    "\\text{<script>alert(1)</script>}",
    "\\href{javascript:alert(1)}{x}",
    "\\mathrm{</math><script>alert(1)</script>}",
    "x \" onmouseover=\"alert(1)",
])
def test_crafted_math_cannot_inject_markup(tex):
    """latex2mathml copies \\text verbatim and keeps \\href targets: the allowlist rebuild removes both."""
    out = offline_html.tex_to_mathml(tex, False)
    assert "<script" not in out and "<img" not in out and "javascript" not in out and "onmouseover=" not in out
    tags = set(re.findall(r"</?([a-zA-Z][\w-]*)", out))
    assert tags <= offline_html.ELEMENTS, tags


def test_tex_it_cannot_read_is_shown_as_escaped_code():
    out = offline_html.tex_to_mathml("\\frac{<b>", True)
    assert "<b>" not in out
    assert out.startswith("<math") or out.startswith('<code class="tex-fallback">')


def test_every_formula_of_every_lab_converts():
    """769 formulas when this was written: none may fall back to TeX shown as code."""
    count = 0
    for lab in lab_ids():
        nb = nbformat.read(solution_notebook(lab), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown" and "$" in cell.source:
                out = offline_html.markdown_math_to_mathml(cell.source)
                count += out.count("<math ")
                assert "tex-fallback" not in out, (lab, cell.source[:200])
                visible = re.sub(r"`[^`]*`", "", out)
                assert "$$" not in visible, (lab, cell.source[:200])
    assert count > 100


def test_review_page_loads_no_script_and_has_no_raw_math():
    nb = nbformat.read(solution_notebook("02_optimizers"), as_version=4)
    page, _ = offline_html.review_exporter().from_notebook_node(nb)
    assert "<script" not in page, re.findall(r"<script[^>]*>", page)[:3]
    assert not re.search(r"(src|href)=\"https?:", page)
    assert page.count("<math") > 50 and "white-space: pre-wrap" in page


def _feedback_like_notebook():
    """A lab's markdown (math included), a printed output and a figure without alt text."""
    nb = nbformat.read(solution_notebook(lab_ids()[0]), as_version=4)
    nb.cells = nb.cells[:12]
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
    code = nbformat.v4.new_code_cell("print('hi')", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="hi\n"),
        nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})])
    nb.cells.append(code)
    return nb


def test_feedback_exporter_writes_the_page_html_exporter_writes_without_its_soup_pass():
    """FeedbackHTMLExporter skips HTMLExporter's BeautifulSoup round trip: same text, same images,
    every image with its alt text (what that pass added), the lab's markdown rendered as before."""
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    nb = _feedback_like_notebook()
    # nbgrader's feedback template extends the classic one: compare there.
    stock, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    page, _ = offline_html.render_without_soup(offline_html.FeedbackHTMLExporter(template_name="classic"), nb)
    ours, theirs = BeautifulSoup(page, "html.parser"), BeautifulSoup(stock, "html.parser")
    assert ours.get_text() == theirs.get_text()
    assert [img.get("src") for img in ours.find_all("img")] == [img.get("src") for img in theirs.find_all("img")]
    assert all(img.get("alt") == offline_html.ALT_TEXT for img in ours.find_all("img"))
    assert len(ours.find_all("img")) >= 1


def test_feedback_exporter_renders_each_markdown_text_once_and_the_same_way():
    from nbconvert import HTMLExporter

    nb = _feedback_like_notebook()
    exporter = offline_html.FeedbackHTMLExporter(template_name="classic")
    first, _ = offline_html.render_without_soup(exporter, nb)
    cached = len(exporter._markdown)
    assert cached >= 5
    second, _ = offline_html.render_without_soup(exporter, nb)
    assert second == first and len(exporter._markdown) == cached
    # A cell with attachments is rendered afresh (its images are its own).
    assert exporter.markdown2html({"cell": {"attachments": {"a.png": {}}}}, "# Title") == \
        HTMLExporter().markdown2html({"cell": {"attachments": {"a.png": {}}}}, "# Title")


def test_feedback_exporter_highlights_each_code_text_once_and_as_nbconvert_does():
    """Pygments lexes a code text once per exporter; the HTML is nbconvert's, and what the output depends on
    (the language, a cell's magics language) keeps texts apart."""
    from nbconvert.filters.highlight import Highlight2HTML

    nb = _feedback_like_notebook()
    exporter = offline_html.FeedbackHTMLExporter(template_name="classic")
    first, _ = offline_html.render_without_soup(exporter, nb)
    codes = {c.source for c in nb.cells if c.cell_type == "code"}
    assert len(exporter._highlight_cache) == len(codes) >= 1
    second, _ = offline_html.render_without_soup(exporter, nb)
    assert second == first and len(exporter._highlight_cache) == len(codes)

    stock = Highlight2HTML(pygments_lexer="ipython3")
    highlight = exporter.highlighter(Highlight2HTML(pygments_lexer="ipython3"))
    source = "x = 1  # a comment\necho $HOME"
    assert highlight(source) == stock(source)
    assert highlight(source, metadata={"magics_language": "bash"}) == stock(source, metadata={"magics_language": "bash"})
    assert highlight(source, metadata={"magics_language": "bash"}) != highlight(source)
    assert highlight(source, language="c") == stock(source, language="c") != highlight(source)
