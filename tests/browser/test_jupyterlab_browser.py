"""The course as a student meets it: JupyterLab in a real browser.

`make lab` serves a scratch copy of labs/ (plus one solution notebook) on a free
loopback port; Playwright drives Debian's Chromium (/usr/bin/chromium, installed by
`make test`'s set-up; nothing is downloaded). For every student lab the test runs all
cells from the Run menu and reads what is on screen: the first check fails with the
catalogue's "not implemented yet" message, nothing failed to import, and the nbgrader
"Validate" button sits in the notebook toolbar. The lab 01 solution, run the same way,
passes every check and draws its plots. Screenshots go to build/browser/.

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
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from coursetools.paths import BUILD, LABS, ROOT, SOLUTIONS, lab_ids, lab_notebook

pytestmark = [pytest.mark.xdist_group("browser"), pytest.mark.notebook]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = BUILD / "browser"
SOLUTION_LAB = "01_backprop"
LABS_PRESENT = [lab for lab in lab_ids() if lab_notebook(lab).is_file()]
# The exception line under the traceback, e.g. "CheckFailure: scalar_chain is not implemented yet: ..."
NOT_IMPLEMENTED = re.compile(r"^\w+: [\w.]+ is not implemented yet: replace `raise NotImplementedError\(\)`", re.M)
IMPORT_ERROR = re.compile(r"ModuleNotFoundError|ImportError")

# Generous but bounded: a 2-core machine shared with other work.
START_S, KERNEL_S, RUN_LAB_S, RUN_SOLUTION_S = 180, 120, 180, 300


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed (run `make env`)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Chromium not found at {CHROMIUM}: `make env` installs Debian's chromium "
                    "only as root with apt-get (or set CHROMIUM=/path/to/chromium)")
    with sync_api.sync_playwright() as p:
        # launch() gives the browser a fresh, temporary user-data-dir.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                              chromium_sandbox=False, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: str, token: str, root: Path, log: Path):
        self.base, self.token, self.root, self.log = base, token, root, log

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def url(self, notebook: str) -> str:
        # `reset`: a fresh workspace, so the previous test's tabs are not restored.
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def shut_down_kernels(self):
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture(scope="module")
def lab_server(browser, tmp_path_factory):
    """`make lab` serving a scratch copy of labs/ and of one solution folder."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    tmp = tmp_path_factory.mktemp("jupyterlab")
    served = tmp / "labs"
    skip = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    shutil.copytree(LABS, served, ignore=skip)
    shutil.copytree(SOLUTIONS / SOLUTION_LAB, served / "solutions" / SOLUTION_LAB, ignore=skip)
    # Lab settings and workspaces of this run only, and no news pop-up over the screenshots.
    notification = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    before = {p: p.read_bytes() for p in LABS.rglob("*.ipynb")}

    port, token = _free_port(), secrets.token_hex(16)
    args = (f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token} "
            f"--LabApp.user_settings_dir={tmp / 'settings'} --LabApp.workspaces_dir={tmp / 'workspaces'}")
    log = tmp / "jupyterlab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["make", "lab", f"LABS_DIR={served}", f"ARGS={args}"], cwd=ROOT,
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
        element.page.wait_for_timeout(300)
        if moved < 2:
            return


def _screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _text(cell) -> str:
    return "\n".join(o["text"] for o in cell["outputs"])


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("lab", LABS_PRESENT)
def test_a_student_running_an_untouched_lab_sees_the_first_check_fail_helpfully(browser, lab_server, lab):
    path = lab_server.root / lab / f"{lab}.ipynb"
    n_cells = len(nbformat.read(path, as_version=4).cells)
    first_check = _grade_cells(path)[0]
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        _open(page, lab_server, f"{lab}/{lab}.ipynb", n_cells)
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

        # The bottom of the failing check's output: the message the student reads.
        _scroll_to_bottom_of(_cell(page, first_check).locator(".jp-OutputArea-output").last)
        _screenshot(page, f"lab-{lab}")

        shown = _text(cells[first_check])
        assert NOT_IMPLEMENTED.search(shown), (
            f"{lab}: the first check cell does not show the catalogue's not-implemented message:\n{shown[-1500:]}")
        everything = "\n".join(_text(c) for c in cells)
        assert not IMPORT_ERROR.search(everything), f"{lab}: an import failed:\n{everything[-2000:]}"
        # Everything above the first check ran, and ran cleanly (imports, set-up, plots).
        for i, cell in enumerate(cells[:first_check]):
            if cell["code"]:
                assert re.search(r"\[\d+\]", cell["prompt"]), f"{lab}: cell {i} above the first check did not run"
                assert "Traceback" not in _text(cell), f"{lab}: cell {i} failed:\n{_text(cell)[-1500:]}"
    finally:
        page.close()
        lab_server.shut_down_kernels()


def test_the_solution_notebook_passes_every_check_and_draws_its_plots(browser, lab_server):
    path = lab_server.root / "solutions" / SOLUTION_LAB / f"{SOLUTION_LAB}.ipynb"
    n_cells = len(nbformat.read(path, as_version=4).cells)
    grade_cells = _grade_cells(path)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    try:
        _open(page, lab_server, f"solutions/{SOLUTION_LAB}/{SOLUTION_LAB}.ipynb", n_cells)
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
    finally:
        page.close()
        lab_server.shut_down_kernels()
