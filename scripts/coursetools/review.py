"""Execute every solution notebook and render it to HTML for review (``make review``).

    python -m coursetools.review [LAB ...] [--out build/review]

Each notebook runs in its own folder, as a student's would; the executed copy
and its HTML go to ``--out`` and nothing in solutions/ is modified.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from tqdm import tqdm

from .offline_html import review_exporter
from .paths import BUILD, lab_ids, solution_notebook


def render(lab: str, out_dir: Path, timeout: int = 300) -> tuple[Path, float]:
    """Execute ``lab``'s solution and write ``<out_dir>/<lab>.html``; returns (path, seconds)."""
    source = solution_notebook(lab)
    nb = nbformat.read(source, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(source.parent)}}).execute()
    seconds = time.perf_counter() - start
    html, _ = review_exporter().from_notebook_node(nb)  # math as MathML: the page needs no network
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{lab}.html"
    target.write_text(html, encoding="utf-8")
    nbformat.write(nb, out_dir / f"{lab}.executed.ipynb")
    return target, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", help="lab ids (default: all)")
    parser.add_argument("--out", type=Path, default=BUILD / "review", help="output folder")
    args = parser.parse_args(argv)
    labs = args.labs or lab_ids()
    for lab in tqdm(labs, desc="executing solutions", unit="lab"):
        target, seconds = render(lab, args.out)
        tqdm.write(f"{lab}: {seconds:.1f} s -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
