"""Measure how well the checks reject and *name* wrong submissions (issue 17).

    .venv/bin/python benchmarks/diagnosis.py                      # labs 01-03, both sets
    .venv/bin/python benchmarks/diagnosis.py 02_optimizers -v     # one lab, one line per mistake

Every fixture of ``tests/fixtures/mistakes.py`` (the set the detectors were written
against) and of ``tests/fixtures/mistakes_heldout.py`` (written without reading the
detectors) is applied to the solution and run through its grade cell in-process, as
tests/unit/test_checker.py does. Per lab and set it prints:

* rejected     -- the check raised (a CheckFailure or any other exception);
* named right  -- it named the entry a teacher expects;
* named wrong  -- it named another entry (worse than none: the Fix line misleads);
* unnamed      -- rejected without a name (right when the fixture expects ``None``).

Nothing is written; the run takes a few seconds per lab.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]

from checker import CheckFailure  # noqa: E402
from fixtures.mistakes import MISTAKES, Mistake  # noqa: E402
from fixtures.mistakes_heldout import HELDOUT  # noqa: E402
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources  # noqa: E402

LABS = ("01_backprop", "02_optimizers", "03_loss_landscapes")
UNNAMED = (None, "", "raised-exception")


def diagnose(lab: str, mistake: Mistake) -> tuple[str, str | None]:
    """(outcome, name): outcome is "accepted", "right", "wrong" or "unnamed"."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            ns = lab_namespace(lab, solution_sources(lab, [mistake]))
            exec(compile(grade_cells(lab)[mistake.check], mistake.check, "exec"), ns)
        except CheckFailure as failure:
            name = failure.misconception
        except Exception as error:  # a crash inside the check still rejects, without a name
            name = f"<{type(error).__name__}>"
        else:
            return "accepted", None
    if name in UNNAMED or name.startswith("<"):
        return "unnamed", name
    return ("right" if name == mistake.misconception else "wrong"), name


def tally(lab: str, mistakes: list[Mistake], verbose: bool) -> dict[str, int]:
    counts = {"total": 0, "rejected": 0, "right": 0, "wrong": 0, "unnamed": 0, "unnamed_ok": 0}
    for m in mistakes:
        outcome, name = diagnose(lab, m)
        counts["total"] += 1
        if outcome != "accepted":
            counts["rejected"] += 1
            counts[outcome] += 1
            if outcome == "unnamed" and m.misconception is None:
                counts["unnamed_ok"] += 1
        if verbose:
            print(f"    {outcome:8s} {m.check:28s} expected {m.misconception!s:36s} got {name}")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labs", nargs="*", default=list(LABS))
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per mistake")
    args = parser.parse_args(argv)
    header = f"{'lab':20s} {'set':8s} {'total':>5s} {'rejected':>8s} {'right':>6s} {'wrong':>6s} {'unnamed':>8s}"
    print(header + "   (unnamed where no name is expected)")
    for lab in args.labs:
        for set_name, fixtures in (("fixtures", MISTAKES), ("heldout", HELDOUT)):
            if args.verbose:
                print(f"  {lab} {set_name}:")
            c = tally(lab, fixtures.get(lab, []), args.verbose)
            print(f"{lab:20s} {set_name:8s} {c['total']:5d} {c['rejected']:8d} {c['right']:6d} "
                  f"{c['wrong']:6d} {c['unnamed']:8d}   ({c['unnamed_ok']})")


if __name__ == "__main__":
    main()
