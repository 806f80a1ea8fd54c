"""Measure how well the checks reject and *name* wrong submissions (issue 17).

    .venv/bin/python benchmarks/diagnosis.py                  # every lab with a held-out set, both sets
    .venv/bin/python benchmarks/diagnosis.py 02_optimizers -v # one lab, one line per mistake
    .venv/bin/python benchmarks/diagnosis.py 04 05 06         # a lab may be given by its number

Every fixture of ``tests/fixtures/mistakes.py`` (the set the detectors were written against) and
every held-out one (written without reading the detectors: ``tests/fixtures/mistakes_heldout.py``
for labs 01-03, ``mistakes_heldout_0406.py`` for labs 04-06, ``mistakes_heldout_07.py`` for lab 07,
and a second round for labs 01-06, ``mistakes_heldout_r2.py``)
is applied to the solution and run through its grade cell in-process (no kernel, no grader), as
tests/unit/test_checker*.py do. Per lab and set it prints:

* rejected     -- the check raised (a CheckFailure, or any other exception: a crash still rejects);
* named right  -- it named the entry a teacher expects;
* named wrong  -- it named another entry (worse than none: the Fix line misleads), or named
  anything where the fixture expects ``None``;
* unnamed      -- rejected without a name; the last column counts those whose fixture expects
  ``None``, for which no name is the right answer.

Nothing is written; the run takes a few seconds per lab.

Round 2, the set "heldout2" (labs 01-06, 40 mistakes, written 2026-12-02 before the detectors were read):

    lab                   total   before                      after
    01_backprop               7    7 / 5 / 0 / 2 (2)           7 / 5 / 0 / 2 (2)
    02_optimizers             7    7 / 4 / 0 / 3 (2)           7 / 5 / 0 / 2 (2)
    03_loss_landscapes        6    6 / 2 / 1 / 3 (2)           6 / 4 / 0 / 2 (2)   (one expected name revised)
    04_svd_lora               6    6 / 1 / 1 / 4 (2)           6 / 3 / 0 / 3 (3)
    05_probability            7    7 / 6 / 0 / 1 (1)           7 / 6 / 0 / 1 (1)
    06_training_dynamics      7    7 / 5 / 0 / 2 (2)           7 / 5 / 0 / 2 (2)

"After": clipping capped on the negative side only, one of filter normalisation's two norms on
the wrong axis, the energy squared after the sums and LoRA scaled by alpha over a dimension that
is not the rank are named; lab 04's rank_k_errors and low_rank_approx name nothing after a case
that passed (a mistake that holds for every k fails the first case; a later failure is an edge case).

Measured history (rejected / named right / named wrong / unnamed).

Labs 04-06 (formerly benchmarks/diagnosis_0406.py; its "right" counted a held-out mistake that
expects ``None`` as right when left unnamed, where this script counts it in "unnamed" and in the
last column):

    set       lab                   total   before (detectors unchanged)   after (issue 17)
    held-out  04_svd_lora              12   11 /  6 / 1 /  4               12 / 12 / 0 / 0
    held-out  05_probability           14   14 /  3 / 1 / 10               14 / 14 / 0 / 0
    held-out  06_training_dynamics     13   12 /  3 / 0 /  9               13 / 13 / 0 / 0
    fixtures  04 / 05 / 06        18/18/15   all rejected and named right   22/24/21, all right

(two held-out mistakes of lab 06 have no catalogue name; "right" counts them when left unnamed)
Re-measured by this script when the two were folded: held-out 04 12 / 12 / 0 / 0 (0), 05 14 / 14 / 0 / 0 (0),
06 13 / 11 / 0 / 2 (2); fixtures 22 / 24 / 24, all rejected and named right.

Labs 01-03 (measured when the two scripts were folded into this one; unnamed (no name expected)):

    set       lab                   total   measured
    held-out  01_backprop              15   15 / 14 / 0 / 1 (1)
    held-out  02_optimizers            18   18 / 14 / 0 / 4 (4)
    held-out  03_loss_landscapes       16   16 / 12 / 0 / 4 (4)
    fixtures  01 / 02 / 03        26/36/15   all rejected and named right

Lab 07 (its held-out set written before lab 07's detectors were read):

    set       lab                               total   before (detectors unchanged)   after
    held-out  07_normalization_regularization      32   32 / 21 / 0 / 11 (3)           32 / 28 / 0 / 4 (3)
    fixtures  07_normalization_regularization      27   all rejected and named right   the same

"After": the backward checks also predict a path through the statistics left out in part, eps
added to the standard deviation, and dgamma / dbeta summed over the features; RMSNorm divided by
the standard deviation; dropout's eval mode masked or rescaled (by 1 / (1 - p) or 1 - p); AdamW with
the head's decay (or step) at the body's rate, and with the decay added to the gradient. The one
nameable miss left is RMSNorm computed in float32 and cast back by gamma: its values are off by
1.2e-7 relative (rtol 1e-7), below what any detector can tell from a different small mistake.
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
from fixtures.mistakes_heldout import HELDOUT as HELDOUT_0103  # noqa: E402
from fixtures.mistakes_heldout_07 import HELDOUT as HELDOUT_07  # noqa: E402
from fixtures.mistakes_heldout_0406 import HELDOUT as HELDOUT_0406  # noqa: E402
from fixtures.mistakes_heldout_r2 import HELDOUT as HELDOUT_R2  # noqa: E402
from fixtures.notebooks import grade_cells, lab_namespace, solution_sources  # noqa: E402

#: Every lab's first held-out set (the three files cover disjoint labs), and the second round (labs 01-06).
HELDOUT: dict[str, list[Mistake]] = {**HELDOUT_0103, **HELDOUT_0406, **HELDOUT_07}
SETS = (("fixtures", MISTAKES), ("heldout", HELDOUT), ("heldout2", HELDOUT_R2))
LABS = tuple(sorted(HELDOUT))
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
            print(f"    {outcome:8s} {m.cell:20s} {m.check:28s} expected {m.misconception!s:32s} got {name}")
    return counts


def resolve(lab: str) -> str:
    """A lab's folder name from itself or its number ("07")."""
    if lab in LABS:
        return lab
    matches = [name for name in LABS if name.startswith(f"{lab}_")]
    if len(matches) != 1:
        raise SystemExit(f"unknown lab {lab!r}; labs with a held-out set: {', '.join(LABS)}")
    return matches[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labs", nargs="*", default=list(LABS), help="labs (folder name or number); default all")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per mistake")
    args = parser.parse_args(argv)
    header = f"{'lab':32s} {'set':8s} {'total':>5s} {'rejected':>8s} {'right':>6s} {'wrong':>6s} {'unnamed':>8s}"
    print(header + "   (unnamed where no name is expected)")
    for lab in map(resolve, args.labs):
        for set_name, fixtures in SETS:
            if lab not in fixtures:
                continue
            if args.verbose:
                print(f"  {lab} {set_name}:")
            c = tally(lab, fixtures.get(lab, []), args.verbose)
            print(f"{lab:32s} {set_name:8s} {c['total']:5d} {c['rejected']:8d} {c['right']:6d} "
                  f"{c['wrong']:6d} {c['unnamed']:8d}   ({c['unnamed_ok']})")


if __name__ == "__main__":
    main()
