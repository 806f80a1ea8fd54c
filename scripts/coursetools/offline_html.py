"""Pages that show their math with no network: review pages (``make review``) and feedback pages.

nbconvert's and nbgrader's HTML templates load MathJax (and require.js) from a CDN, so a
page opened in an exam room or a classroom without that network shows raw ``$$...$$``.
Here the math is rendered before the page is written: :class:`MathToMathML` turns every
``$...$`` and ``$$...$$`` of a markdown cell into MathML (latex2mathml, pure Python), which
browsers draw themselves (Chromium since 109, Firefox, Safari), with no script at all.
The templates in ``templates/`` load no script: ``offline_lab`` (review pages) drops
JupyterLab's, and ``feedback/`` (first on the path of nbgrader's own feedback template) holds
only a ``mathjax.html.j2`` whose macro, which the stock headers call, writes nothing instead; :data:`CSS` (MathML blocks, long output lines that wrap) is inlined.

latex2mathml copies ``\\text{...}`` verbatim and keeps ``\\href`` targets, so its output is
rebuilt through an allowlist of MathML elements and attributes (:func:`sanitise_mathml`):
a student's markdown answer cannot put markup or script into a feedback page through math.
"""

from __future__ import annotations

import functools
import html
import re
from html.parser import HTMLParser
from pathlib import Path

from jinja2 import pass_context
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Style sheet of every offline page (written by the templates' mathjax macro).
CSS = """
math[display="block"] { display: block math; margin: 0.6em 0; overflow-x: auto; overflow-y: hidden; }
math { font-size: 1.1em; }
.tex-fallback { font-family: monospace; }
/* Long lines wrap instead of running off the page: check messages, printed output, code. */
pre, .output_area pre, .jp-OutputArea-output pre, .jp-RenderedText pre, .highlight pre {
  white-space: pre-wrap !important; overflow-wrap: anywhere; word-break: break-word;
}
img { max-width: 100%; height: auto; }
"""

# MathML that latex2mathml writes and browsers draw; anything else is dropped (its text kept).
ELEMENTS = frozenset("""math mrow mi mn mo ms mtext mspace msub msup msubsup munder mover munderover mfrac
    msqrt mroot mstyle mtable mtr mtd mpadded mphantom menclose merror semantics annotation mmultiscripts
    mprescripts none""".split())
ATTRIBUTES = frozenset("""xmlns display mathvariant stretchy fence separator minsize maxsize symmetric largeop
    movablelimits accent accentunder lspace rspace form width height depth linebreak columnalign columnspacing
    rowspacing columnlines rowlines frame displaystyle scriptlevel notation linethickness encoding""".split())
_SAFE_VALUE = re.compile(r"[\w .,:#%+-]*\Z")  # a length, a keyword, a namespace URL's characters

# $$...$$ (over several lines) or $...$ (one paragraph), never after a backslash.
_MATH = re.compile(r"(?<!\\)\$\$(?P<block>.+?)(?<!\\)\$\$|(?<![\\$])\$(?!\$)(?P<inline>(?:\\.|[^$\\\n]|\n(?!\s*\n))+?)(?<!\\)\$",
                   re.S)
# Code that markdown shows as it is: fenced blocks and inline code spans (a run of n backticks to the next run of n).
_CODE = re.compile(r"^(?P<fence>```|~~~).*?^(?P=fence)[^\n]*$|(?P<ticks>`+).+?(?<!`)(?P=ticks)(?!`)", re.S | re.M)


class _Rebuild(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ELEMENTS:
            return
        kept = "".join(f' {name}="{html.escape(value, quote=True)}"' for name, value in attrs
                       if name in ATTRIBUTES and value is not None and _SAFE_VALUE.match(value)
                       and not value.lower().lstrip().startswith(("javascript", "data", "vbscript")))
        self.out.append(f"<{tag}{kept}>")
        self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in ELEMENTS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in self.open:
            while self.open:
                last = self.open.pop()
                self.out.append(f"</{last}>")
                if last == tag:
                    break

    def handle_data(self, data):
        self.out.append(html.escape(data, quote=False))


def sanitise_mathml(markup: str) -> str:
    """``markup`` rebuilt from allowlisted MathML elements and attributes; all text escaped."""
    parser = _Rebuild()
    parser.feed(markup)
    parser.close()
    return "".join(parser.out) + "".join(f"</{tag}>" for tag in reversed(parser.open))


@functools.lru_cache(maxsize=8192)
def tex_to_mathml(tex: str, display: bool) -> str:
    """One formula as sanitised MathML; TeX that latex2mathml cannot read is shown as code, escaped.

    Cached: every feedback page of a class holds the lab's same formulas (about 90 in lab 01), and
    converting them again cost a tenth of a page's time.
    """
    from latex2mathml.converter import convert

    # latex2mathml lays out align* as a table but not aligned (its & would show): the same rows.
    source = re.sub(r"\\(begin|end)\{aligned\}", r"\\\1{align*}", tex)
    try:
        markup = convert(source, display="block" if display else "inline")
    except Exception:  # any TeX it does not know: the formula as written, never a failed page
        return f'<code class="tex-fallback">{html.escape(tex.strip(), quote=False)}</code>'
    return sanitise_mathml(markup)


def markdown_math_to_mathml(source: str) -> str:
    """A markdown cell's text with every formula replaced by MathML; code spans and fences untouched."""
    out, start = [], 0
    for code in _CODE.finditer(source):
        out.append(_convert_math(source[start:code.start()]))
        out.append(code.group(0))
        start = code.end()
    out.append(_convert_math(source[start:]))
    return "".join(out)


def _convert_math(text: str) -> str:
    def one(match):
        block = match.group("block")
        if block is not None:
            return "\n\n" + tex_to_mathml(block, True) + "\n\n"
        return tex_to_mathml(match.group("inline"), False)

    return _MATH.sub(one, text)


class MathToMathML(Preprocessor):
    """nbconvert preprocessor: the math of every markdown cell as MathML (the page then needs no MathJax)."""

    # On by default: nbgrader registers its converters' preprocessors without enabling them.
    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        # After CSSHTMLHeaderPreprocessor, which replaces resources["inlining"]: the templates inline this list.
        resources.setdefault("inlining", {}).setdefault("css", []).append(CSS)
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown" and "$" in cell.source:
            cell.source = markdown_math_to_mathml(cell.source)
        return cell, resources


_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)", re.I)
ALT_TEXT = "No description has been provided for this image"


class FeedbackHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter for nbgrader's (classic) feedback template, without its soup pass.

    After rendering, HTMLExporter parses the whole page with BeautifulSoup to give images an
    ``alt`` text and JupyterLab's cells a ``tabindex``, and writes it out again: a quarter of a
    feedback page's time. The classic template has no JupyterLab cells, so here only the images
    get their ``alt``, on the rendered text; a JupyterLab-style page takes HTMLExporter's own way.
    """

    def from_notebook_node(self, nb, resources=None, **kw):
        if self.template_name != "feedback":
            return super().from_notebook_node(nb, resources, **kw)
        return render_without_soup(self, nb, resources, **kw)

    @pass_context
    def markdown2html(self, context, source):
        """HTMLExporter's markdown filter, remembered per text: a class's pages share the lab's markdown."""
        if context.get("cell", {}).get("attachments") or self.embed_images:
            return super().markdown2html(context, source)
        key = source  # the notebook's path matters only to embedded images, and they bypass the cache
        if key not in self._markdown:
            if len(self._markdown) > 4096:
                self._markdown.clear()
            self._markdown[key] = super().markdown2html(context, source)
        return self._markdown[key]

    @property
    def _markdown(self) -> dict:
        cache = self.__dict__.get("_markdown_cache")
        if cache is None:
            cache = self.__dict__["_markdown_cache"] = {}
        return cache

    def highlighter(self, highlight):
        """nbconvert's ``highlight_code`` filter ``highlight``, remembered per code text for this exporter.

        Pygments re-lexes every code cell of every page (a quarter of a feedback page's time), while a
        class's pages share the lab's code cells. What the filter's output depends on is the key: the
        text, the language (the call's, else the notebook's lexer) and the cell's ``magics_language``;
        its formatter options are the filter's configuration, the same for every page.
        """
        cache = self.__dict__.setdefault("_highlight_cache", {})

        def highlight_code(source, language=None, metadata=None):
            key = (source, language or highlight.pygments_lexer, (metadata or {}).get("magics_language"),
                   repr(highlight.extra_formatter_options))
            if key not in cache:
                if len(cache) > 4096:
                    cache.clear()
                cache[key] = highlight(source, language=language, metadata=metadata)
            return cache[key]

        return highlight_code


def render_without_soup(exporter: HTMLExporter, nb, resources=None, **kw):
    """``exporter.from_notebook_node`` as HTMLExporter does it, but its soup pass done on the text.

    For templates without JupyterLab's cells (classic, nbgrader's feedback): images get the alt
    text HTMLExporter would give them; nothing else of that pass applies there.
    """
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    langinfo = nb.metadata.get("language_info", {})
    lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
    highlight = exporter.filters.get("highlight_code")
    if highlight is None:
        highlight = Highlight2HTML(pygments_lexer=lexer, parent=exporter)
        if isinstance(exporter, FeedbackHTMLExporter):
            highlight = exporter.highlighter(highlight)
    exporter.register_filter("highlight_code", highlight)
    resources = exporter._init_resources(resources)
    exporter.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=exporter._nb_metadata,
                                                                       parent=exporter, resources=resources))
    page, resources = TemplateExporter.from_notebook_node(exporter, nb, resources, **kw)
    return _IMG_WITHOUT_ALT.sub(f'<img alt="{ALT_TEXT}"', page), resources


def review_exporter():
    """nbconvert's HTMLExporter for review pages: JupyterLab's look, math as MathML, no script loaded."""

    exporter = HTMLExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="offline_lab")
    exporter.register_preprocessor(MathToMathML(), enabled=True)
    return exporter
