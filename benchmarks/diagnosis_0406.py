"""How well the checks of labs 04-06 reject and name wrong submissions (issue 17).

Runs every held-out mistake (tests/fixtures/mistakes_heldout_0406.py) and every
existing fixture (tests/fixtures/mistakes.py) of labs 04, 05 and 06 through its
own grade cell, in-process (no kernel, no grader), and prints per lab and set:
total, rejected, named right, named wrong, unnamed. "Named right" counts a
held-out mistake whose expected name is ``None`` only when the check names
nothing; naming anything there counts as named wrong.

Usage: .venv/bin/python benchmarks/diagnosis_0406.py [-v]   (-v lists each case)

Measured (rejected / named right / named wrong / unnamed):

    set       lab                   total   before (detectors unchanged)   after (issue 17)
    held-out  04_svd_lora              12   11 /  6 / 1 /  4               12 / 12 / 0 / 0
    held-out  05_probability           14   14 /  3 / 1 / 10               14 / 14 / 0 / 0
    held-out  06_training_dynamics     13   12 /  3 / 0 /  9               13 / 13 / 0 / 0
    fixtures  04 / 05 / 06        18/18/15   all rejected and named right   22/24/21, all right

(two held-out mistakes of lab 06 have no catalogue name; "right" counts them when left unnamed)
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]

from checker import CheckFailure  # noqa: E402
from fixtures.mistakes import MISTAKES  # noqa: E402
from fixtures.mistakes_heldout_0406 import HELDOUT  # noqa: E402
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources  # noqa: E402

LABS = ["04_svd_lora", "05_probability", "06_training_dynamics"]


def outcome(lab: str, mistake) -> str | None:
    """None if the check accepts the submission, else the name it reports ("" for none)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ns = lab_namespace(lab, solution_sources(lab, [mistake]))
        try:
            exec(compile(grade_cells(lab)[mistake.check], mistake.check, "exec"), ns)
        except CheckFailure as failure:
            return failure.misconception or ""
        except Exception as error:  # a crash in the check itself still rejects, unnamed
            return f"!{type(error).__name__}"
    return None


def main(verbose: bool) -> None:
    print(f"{'set':9s} {'lab':22s} {'total':>5s} {'rejected':>8s} {'right':>5s} {'wrong':>5s} {'unnamed':>7s}")
    for label, sets in (("held-out", HELDOUT), ("fixtures", MISTAKES)):
        for lab in LABS:
            counts = dict(total=0, rejected=0, right=0, wrong=0, unnamed=0)
            for m in sets[lab]:
                got = outcome(lab, m)
                counts["total"] += 1
                if got is None:
                    verdict = "ACCEPTED"
                else:
                    counts["rejected"] += 1
                    named = got if got and not got.startswith("!") else None
                    if named == m.misconception:
                        counts["right"] += 1
                        verdict = "right"
                    elif named is None:
                        counts["unnamed"] += 1
                        verdict = "unnamed"
                    else:
                        counts["wrong"] += 1
                        verdict = "WRONG"
                if verbose:
                    print(f"    {verdict:8s} {m.check:28s} expected {m.misconception!s:32s} got {got!r}")
            print(f"{label:9s} {lab:22s} {counts['total']:5d} {counts['rejected']:8d} {counts['right']:5d} "
                  f"{counts['wrong']:5d} {counts['unnamed']:7d}")


if __name__ == "__main__":
    main("-v" in sys.argv)
