"""The course as a student meets it: JupyterLab in a real browser.

`make lab` (student mode) serves a scratch copy of the course folder (labs/,
TROUBLESHOOTING.md, one solution notebook and one student attempt with a mistake) on a
free loopback port; Playwright drives Debian's Chromium (/usr/bin/chromium, installed by
`make test`'s set-up; nothing is downloaded). One server for every check:

* each untouched lab, run from the Run menu: the first check's message is the first thing
  in its output (no checker frames above it, first line on screen), nothing failed to
  import, Validate sits in the toolbar, and no instructor panel or news pop-up shows;
  lab 01's Validate dialog reads one short message per failed check;
* a lab 02 attempt with a mistake in Adam: the message names the misconception, its
  TROUBLESHOOTING link opens the section inside JupyterLab, and the progress cell counts
  the passing checks and says why Adam fails;
* the lab 01 solution passes every check, draws its plots, and its progress cell says
  "8 of 8 checks pass".

Screenshots go to build/browser/ (names in the tests below).

Without Chromium or Playwright the test is skipped with the reason, never passed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from coursetools.paths import BUILD, LABS, ROOT, SOLUTIONS, lab_ids, lab_notebook

SHOTS = BUILD / "browser"  # screenshots, kept for review

pytestmark = [pytest.mark.xdist_group("browser"), pytest.mark.notebook]

SOLUTION_LAB = "01_backprop"
# A student's attempt at lab 02: every exercise solved, Adam without bias correction.
ATTEMPT_LAB, ATTEMPT_MISTAKE = "02_optimizers", "adam-missing-bias-correction"
ATTEMPT_NOTEBOOK = f"labs/{ATTEMPT_LAB}/attempt-adam.ipynb"
# In the untouched lab 01, the student then writes exercise 1 differentiating at the activation:
# its dL/dW1 is 0.48 where autograd's is 0.
ZERO_MISTAKE = "grad-wrt-activation-output"
LABS_PRESENT = [lab for lab in lab_ids() if lab_notebook(lab).is_file()]
# The first line of a failed check's output, e.g. "✗ Check failed: scalar_chain is not implemented yet: ..."
NOT_IMPLEMENTED = re.compile(r"\A\s*\u2717 Check failed: [\w.]+ is not implemented yet:\s+replace\s+`raise\s+NotImplementedError\(\)`")
CHECKER_FRAMES = re.compile(r"Traceback|File \S+\.py|site-packages|checker/|\bline \d+\b")
PROGRESS = re.compile(r"(\d+) of (\d+) checks pass")
IMPORT_ERROR = re.compile(r"ModuleNotFoundError|ImportError")

# Generous but bounded: a 2-core machine shared with other work.
START_S, KERNEL_S, RUN_LAB_S, RUN_SOLUTION_S = 180, 120, 180, 300


# --------------------------------------------------------------------------- fixtures

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: str, token: str, root: Path, log: Path):
        self.base, self.token, self.root, self.log = base, token, root, log
        self.closing: list[threading.Thread] = []  # kernel shutdowns under way
        self.closing_errors: list[str] = []

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return json.loads(body) if body else None

    def url(self, notebook: str) -> str:
        # `reset`: a fresh workspace, so the previous test's tabs are not restored.
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def shut_down_kernels(self):
        """Stop the kernels of the sessions open now, in the background: a kernel with torch loaded
        takes a second or two to exit, and the next test need not wait. The sessions are listed here,
        before the next test opens its own."""
        ids = [session["id"] for session in self.api("/api/sessions")]

        def close():
            for i in ids:
                try:
                    self.api(f"/api/sessions/{i}", method="DELETE")
                except OSError as exc:  # reported when the server's fixture ends, not lost with the thread
                    self.closing_errors.append(f"session {i}: {exc}")

        closing = threading.Thread(target=close, daemon=True)
        closing.start()
        self.closing.append(closing)

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture(scope="module")
def lab_server(browser, tmp_path_factory):
    """`make lab` (student mode) serving a scratch course folder: labs/, TROUBLESHOOTING.md, a solution, an attempt."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    from fixtures.mistakes import MISTAKES
    from fixtures.notebooks import nbgrader_meta, solution_sources

    tmp = tmp_path_factory.mktemp("jupyterlab")
    served = tmp / "course"
    skip = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    shutil.copytree(LABS, served / "labs", ignore=skip)
    shutil.copy(ROOT / "TROUBLESHOOTING.md", served / "TROUBLESHOOTING.md")
    shutil.copytree(SOLUTIONS / SOLUTION_LAB, served / "solutions" / SOLUTION_LAB, ignore=skip)
    for lab, name, cell_part, notebook in [(ATTEMPT_LAB, ATTEMPT_MISTAKE, "adam", ATTEMPT_NOTEBOOK)]:
        [mistake] = [m for m in MISTAKES[lab] if m.misconception == name and cell_part in m.cell]
        # The solution notebook with the mistake applied (the solution cells are what a student writes).
        attempt = nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
        sources = solution_sources(lab, [mistake])
        for cell in attempt.cells:
            if nbgrader_meta(cell).get("solution"):
                cell.source = sources[nbgrader_meta(cell)["grade_id"]]
            elif nbgrader_meta(cell).get("grade"):  # as released: without the hidden tests
                cell.source = re.sub(r"\n?### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", "", cell.source,
                                     flags=re.S)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(attempt, served / notebook)
    # Empty settings and workspaces of this run only: what students see comes from `make lab` alone.
    before = {p: p.read_bytes() for p in LABS.rglob("*.ipynb")}

    port, token = _free_port(), secrets.token_hex(16)
    args = (f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token} "
            f"--LabApp.user_settings_dir={tmp / 'settings'} --LabApp.workspaces_dir={tmp / 'workspaces'}")
    log = tmp / "jupyterlab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["make", "lab", f"LAB_ROOT={served}", "MODE=student", f"ARGS={args}"], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", token, served, log)
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                server.api("/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"`make lab` did not come up in {START_S} s:\n{server.log_tail()}")
                time.sleep(1)
        yield server
    finally:
        for closing in server.closing:
            closing.join(timeout=60)
        try:
            server.api("/api/shutdown", method="POST")  # stops the kernels too
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    after = {p: p.read_bytes() for p in LABS.rglob("*.ipynb")}
    assert after == before, "the browser test changed labs/: it must only ever serve a copy"
    assert not server.closing_errors, f"kernels that did not shut down: {server.closing_errors}"


@pytest.fixture(scope="module")
def lab_browser(browser):
    """One browser context for every test here, as one student's browser: JupyterLab's scripts come
    from its caches after the first page (a context per page fetched and compiled them each time).
    Each test opens its own page, with a reset workspace."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        yield context
    finally:
        context.close()


# --------------------------------------------------------------------------- helpers

# What is on screen, cell by cell, in the notebook in front of the student.
READ_CELLS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return [];
  return Array.from(panel.querySelectorAll('.jp-Notebook .jp-Cell')).map(cell => ({
    code: cell.classList.contains('jp-CodeCell'),
    prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
    outputs: Array.from(cell.querySelectorAll('.jp-OutputArea-output')).map(o => ({
      mime: o.getAttribute('data-mime-type') || '', text: o.textContent || ''})),
    images: Array.from(cell.querySelectorAll('.jp-OutputArea-output img'))
      .filter(img => img.complete && img.naturalWidth > 0).length,
  }));
}"""

KERNEL_STATE = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const ind = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
  return {status: ind ? ind.getAttribute('data-status') : null,
          dialog: !!document.querySelector('.jp-Dialog')};
}"""


def _open(page, server: Server, notebook: str, n_cells: int):
    """Open a notebook, accept the kernel if JupyterLab asks, wait for an idle kernel."""
    page.goto(server.url(notebook), wait_until="domcontentloaded", timeout=KERNEL_S * 1000)
    page.wait_for_function(f"() => document.querySelectorAll("
                           f"'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').length === {n_cells}",
                           timeout=KERNEL_S * 1000)
    deadline = time.monotonic() + KERNEL_S
    while True:
        state = page.evaluate(KERNEL_STATE)
        if state["dialog"]:  # "Select Kernel": take the one JupyterLab proposes
            page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
        elif state["status"] == "idle":
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{notebook}: the kernel never became idle (state {state}):\n{server.log_tail()}")
        time.sleep(0.5)


def _run_all(page):
    """Run → Run All Cells, as a student would."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item:not(.lm-mod-disabled)",
                 has_text=re.compile(r"^Run All Cells")).first.click()


def _wait_until_done(page, done_js: str, timeout_s: int, what: str):
    """Wait until `done_js(cells)` holds, no cell is queued ([*]) and the kernel is idle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        _wait_for(page, done_js, timeout_s)
    except PlaywrightTimeout:
        shot = _screenshot(page, f"timeout-{re.sub(r'[^A-Za-z0-9_-]+', '-', what)}")
        pytest.fail(f"{what}: not finished after {timeout_s} s (screenshot: {shot})")
    page.wait_for_timeout(500)  # the last output is painted
    return page.evaluate(READ_CELLS)


def _wait_for(page, done_js: str, timeout_s: int):
    page.wait_for_function(
        f"""() => {{
          const cells = ({READ_CELLS})();
          const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
          return cells.length > 0 && !cells.some(c => c.code && c.prompt.includes('*'))
                 && ind && ind.getAttribute('data-status') === 'idle' && ({done_js})(cells);
        }}""",
        timeout=timeout_s * 1000, polling=500)


def _grade_cells(path: Path) -> list[int]:
    nb = nbformat.read(path, as_version=4)
    return [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade")]


def _cell(page, index: int):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def _scroll_to_bottom_of(element):
    """Scroll the notebook until the element's bottom edge sits at the bottom of the view.

    Cells above are laid out lazily (content-visibility), so positions move while
    scrolling: repeat until the edge stays put.
    """
    for _ in range(10):
        moved = element.evaluate("""el => {
          const scroller = el.closest('.jp-WindowedPanel-outer') || el.closest('.jp-Notebook');
          const delta = el.getBoundingClientRect().bottom - scroller.getBoundingClientRect().bottom + 16;
          scroller.scrollTop += delta;
          return Math.abs(delta);
        }""")
        if moved < 2:  # in place: nothing was scrolled, so nothing is left to lay out
            return
        element.page.wait_for_timeout(300)


def _scroll_to_top_of(element, margin: int = 60):
    """Scroll the notebook until the element's top edge sits just below the top of the view."""
    for _ in range(10):
        moved = element.evaluate(f"""el => {{
          const scroller = el.closest('.jp-WindowedPanel-outer') || el.closest('.jp-Notebook');
          const delta = el.getBoundingClientRect().top - scroller.getBoundingClientRect().top - {margin};
          scroller.scrollTop += delta;
          return Math.abs(delta);
        }}""")
        if moved < 2:  # in place: nothing was scrolled, so nothing is left to lay out
            return
        element.page.wait_for_timeout(300)


def _first_line_on_screen(page, output) -> bool:
    """Whether the first line of an output's text lies inside the browser's view."""
    box = output.bounding_box()
    view = page.viewport_size
    return box is not None and 0 <= box["y"] and box["y"] + 20 <= view["height"]


def _failure_output(page, index: int):
    """The error output of a cell (JupyterLab renders it with the stderr mime type)."""
    return _cell(page, index).locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').first


def _student_mode_problems(page) -> list[str]:
    """Instructor panels, the nbgrader menu or a pop-up that a student must not see."""
    found = page.evaluate("""() => {
      const problems = [];
      const menus = Array.from(document.querySelectorAll('.lm-MenuBar-item')).map(m => m.textContent.trim());
      if (menus.some(m => /nbgrader/i.test(m))) problems.push('Nbgrader menu: ' + menus.join(', '));
      const titled = Array.from(document.querySelectorAll('[title], .lm-TabBar-tabLabel'))
        .map(e => (e.getAttribute('title') || '') + ' ' + e.textContent);
      for (const name of ['Create Assignment', 'Formgrader', 'Course List', 'Assignment List'])
        if (titled.some(t => t.includes(name))) problems.push(name + ' panel');
      const toasts = document.querySelectorAll('.Toastify__toast, .jp-Notification-Toast');
      if (toasts.length) problems.push('pop-up: ' + Array.from(toasts).map(t => t.textContent).join(' | '));
      return problems;
    }""")
    return found


def _screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _text(cell) -> str:
    return "\n".join(o["text"] for o in cell["outputs"])


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("lab", LABS_PRESENT)
def test_a_student_running_an_untouched_lab_sees_the_first_check_fail_helpfully(lab_browser, lab_server, lab):
    notebook = f"labs/{lab}/{lab}.ipynb"
    path = lab_server.root / notebook
    n_cells = len(nbformat.read(path, as_version=4).cells)
    first_check = _grade_cells(path)[0]
    page = lab_browser.new_page()
    try:
        _open(page, lab_server, notebook, n_cells)
        # The nbgrader extension's button, in the notebook's own toolbar.
        toolbar = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar")
        validate = toolbar.get_by_text("Validate", exact=True)
        try:
            validate.wait_for(state="visible", timeout=30_000)
        except Exception:  # Playwright's TimeoutError
            pytest.fail(f"{lab}: the nbgrader Validate button is not in the notebook toolbar")

        _run_all(page)
        cells = _wait_until_done(page, f"cells => cells[{first_check}].outputs.length > 0",
                                 RUN_LAB_S, f"{lab}: run all")

        # The failing check's cell at the top of the view: its message is the first thing under it.
        failure = _failure_output(page, first_check)
        _scroll_to_top_of(_cell(page, first_check))
        _screenshot(page, f"lab-{lab}-first-check-message")

        shown = _text(cells[first_check])
        assert NOT_IMPLEMENTED.search(shown), (
            f"{lab}: the first check's output does not start with its message:\n{shown[:1500]}")
        assert not CHECKER_FRAMES.search(shown), f"{lab}: checker frames shown to the student:\n{shown[:1500]}"
        assert _first_line_on_screen(page, failure), f"{lab}: the message's first line is off screen"
        problems = _student_mode_problems(page)
        assert not problems, f"{lab}: a student sees {problems}"
        everything = "\n".join(_text(c) for c in cells)
        assert not IMPORT_ERROR.search(everything), f"{lab}: an import failed:\n{everything[-2000:]}"
        # Everything above the first check ran, and ran cleanly (imports, set-up, plots).
        for i, cell in enumerate(cells[:first_check]):
            if cell["code"]:
                assert re.search(r"\[\d+\]", cell["prompt"]), f"{lab}: cell {i} above the first check did not run"
                assert "Traceback" not in _text(cell), f"{lab}: cell {i} failed:\n{_text(cell)[-1500:]}"

        if lab == SOLUTION_LAB:  # Validate, once: its dialog lists each failed check by its message
            validate.click()  # saves the notebook, then runs it in a fresh kernel on the server
            page.wait_for_function("() => { const d = document.querySelector('.jp-Dialog-content');"
                                   " return d && /validation/i.test(d.textContent); }",
                                   timeout=RUN_LAB_S * 1000, polling=500)
            dialog = page.locator(".jp-Dialog-content")
            page.wait_for_timeout(300)
            _screenshot(page, f"validate-{lab}")
            report = dialog.inner_text()
            assert "is not implemented yet" in report, report[:1500]
            assert not CHECKER_FRAMES.search(report), f"Validate shows checker frames:\n{report[:2000]}"
            page.keyboard.press("Escape")
            _write_exercise_1_wrongly_and_check_it(page, path, first_check)
    finally:
        page.close()
        lab_server.shut_down_kernels()


def _write_exercise_1_wrongly_and_check_it(page, path: Path, check: int):
    """Type a wrong exercise 1 (gradient at the activation), run it and its check, read the message.

    Autograd's dL/dW1 is 0 in the dead-ReLU case and the mistake gives 0.48: no relative error
    can be printed there, and none is.
    """
    from fixtures.mistakes import MISTAKES
    from fixtures.notebooks import solution_sources

    [mistake] = [m for m in MISTAKES[SOLUTION_LAB] if m.misconception == ZERO_MISTAKE and m.cell.startswith("ex1_")]
    source = re.sub(r"\s*### (BEGIN|END) SOLUTION", "", solution_sources(SOLUTION_LAB, [mistake])[mistake.cell])
    nb = nbformat.read(path, as_version=4)
    exercise = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == mistake.cell)
    _scroll_to_top_of(_cell(page, exercise))
    _cell(page, exercise).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)  # no key events: the editor adds no indentation of its own
    page.keyboard.press("Control+Enter")
    _cell(page, check).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    cells = _wait_until_done(page, f"cells => /max abs error/.test(cells[{check}].outputs.map(o => o.text).join())",
                             KERNEL_S, "lab 01: exercise 1 rewritten")
    shown = _text(cells[check])
    assert re.match(r"\s*\u2717 Check failed: dL/dW1 \(scalar_chain", shown), shown[:1500]
    assert "max abs error: 0.48, max rel error: n/a (reference is 0)" in shown, shown[:1500]
    assert f"[{ZERO_MISTAKE}]" in shown and not CHECKER_FRAMES.search(shown), shown[:1500]
    _scroll_to_top_of(_cell(page, check))
    assert _first_line_on_screen(page, _failure_output(page, check)), "the message is off screen"
    _screenshot(page, f"lab-{SOLUTION_LAB}-ex1-mistake-message")


def test_a_mistake_names_its_misconception_links_to_troubleshooting_and_shows_in_progress(lab_browser, lab_server):
    path = lab_server.root / ATTEMPT_NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    adam_check = next(i for i, c in enumerate(nb.cells)
                      if c.metadata.get("nbgrader", {}).get("grade_id") == "check_ex5_adam")
    page = lab_browser.new_page()
    try:
        _open(page, lab_server, ATTEMPT_NOTEBOOK, len(nb.cells))
        _run_all(page)
        cells = _wait_until_done(page, f"cells => cells[{adam_check}].outputs.length > 0",
                                 RUN_LAB_S, "lab 02 attempt: run all")
        shown = _text(cells[adam_check])
        assert re.match(r"\s*\u2717 Check failed: .*\(Adam\b", shown), shown[:1500]
        assert f"[{ATTEMPT_MISTAKE}]" in shown and not CHECKER_FRAMES.search(shown), shown[:2000]
        _scroll_to_top_of(_cell(page, adam_check))
        assert _first_line_on_screen(page, _failure_output(page, adam_check)), "Adam's message is off screen"
        _screenshot(page, f"lab-{ATTEMPT_LAB}-adam-mistake-message")

        # The Read: reference, as a link under the message, opens the section inside JupyterLab.
        link = _cell(page, adam_check).locator("a", has_text=f"TROUBLESHOOTING.md#{ATTEMPT_MISTAKE}")
        link.click()
        heading = page.locator(".jp-MarkdownViewer:not(.lm-mod-hidden) h3", has_text=ATTEMPT_MISTAKE).first
        heading.wait_for(state="visible", timeout=30_000)
        page.wait_for_timeout(1000)  # the viewer scrolls to the fragment once rendered
        assert _first_line_on_screen(page, heading), "the TROUBLESHOOTING section is not scrolled into view"
        _screenshot(page, f"troubleshooting-{ATTEMPT_MISTAKE}")

        # Back to the notebook: the progress cell (the last one) counts and explains.
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="attempt-adam.ipynb").click()
        last = len(nb.cells) - 1
        _scroll_to_top_of(_cell(page, last))
        _cell(page, last).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")  # run it in place (Shift+Enter would add a cell below)
        cells = _wait_until_done(page, f"cells => cells[{last}].outputs.length > 0", KERNEL_S,
                                 "lab 02 attempt: progress")
        report = _text(cells[last])
        count = PROGRESS.search(report)
        assert count, report
        passed, total = map(int, count.groups())
        assert total == len(_grade_cells(path)) and 0 < passed < total, report
        assert re.search(rf"\u2717\s*Exercise 5 \(adam\).*\[{ATTEMPT_MISTAKE}\]", report), report
        assert "not run yet" in report, report
        _scroll_to_top_of(_cell(page, last))
        _screenshot(page, f"progress-{ATTEMPT_LAB}-adam-mistake")
    finally:
        page.close()
        lab_server.shut_down_kernels()


def test_the_solution_notebook_passes_every_check_and_draws_its_plots(lab_browser, lab_server):
    notebook = f"solutions/{SOLUTION_LAB}/{SOLUTION_LAB}.ipynb"
    path = lab_server.root / notebook
    n_cells = len(nbformat.read(path, as_version=4).cells)
    grade_cells = _grade_cells(path)
    page = lab_browser.new_page()
    try:
        _open(page, lab_server, notebook, n_cells)
        _run_all(page)
        # Done when every code cell shows an execution count: Run All stops at an error.
        cells = _wait_until_done(
            page, r"cells => cells.every(c => !c.code || /\[\d+\]/.test(c.prompt))",
            RUN_SOLUTION_S, f"solution {SOLUTION_LAB}: run all")

        errors = [(i, _text(c)) for i, c in enumerate(cells) if "Traceback" in _text(c)]
        assert not errors, f"error output in cell {errors[0][0]}:\n{errors[0][1][-1500:]}"
        ticks = 0
        for i in grade_cells:
            lines = [ln for ln in _text(cells[i]).splitlines() if ln.strip()]
            assert lines and all(ln.startswith("✓") for ln in lines), f"check cell {i} shows:\n{lines}"
            ticks += len(lines)
        assert ticks >= len(grade_cells) >= 8

        with_plot = [i for i, c in enumerate(cells) if c["images"]]
        assert with_plot, "no plot was rendered"
        _cell(page, with_plot[0]).scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        _screenshot(page, f"solution-{SOLUTION_LAB}")

        progress = _text(cells[-1])
        assert f"{len(grade_cells)} of {len(grade_cells)} checks pass" in progress, progress
        _scroll_to_top_of(_cell(page, len(cells) - 1))
        _screenshot(page, f"progress-solution-{SOLUTION_LAB}")
    finally:
        page.close()
        lab_server.shut_down_kernels()
