"""Run one released lab's cells in this process, with the release's scripts/ as the course.

Usage: python run_lab.py RELEASE LAB JOBS_JSON -> prints one JSON line per job.

Run as a script in its own interpreter: the release's ``checker`` and ``math_utils`` must be
the first found (the instructor's copies are on the path of the project's own virtualenv).
Each job is ``{"name": ..., "cells": [[label, source], ...], "checks": [[label, source], ...]}``:
the cells run in a fresh namespace named ``__main__`` (as in a notebook kernel), errors
noted and passed over; then each check runs and its outcome is reported.
"""

import json
import os
import re
import sys

release, lab, jobs_file = sys.argv[1], sys.argv[2], sys.argv[3]
scripts = os.path.join(release, "scripts")
sys.path[:] = [scripts] + [p for p in sys.path if not os.path.abspath(p).endswith(os.sep + "scripts")
                           and p not in ("", os.getcwd())]
os.environ.setdefault("MPLBACKEND", "Agg")
os.chdir(os.path.join(release, "labs", lab))
MAGIC = re.compile(r"^\s*[%!].*$", re.M)


def run(source, namespace):
    try:
        exec(compile(MAGIC.sub("", source), "<cell>", "exec"), namespace)
        return None
    except BaseException as exc:  # noqa: BLE001 - every outcome is data here
        return {"type": type(exc).__name__, "message": str(exc)[:2000],
                "misconception": getattr(exc, "misconception", None)}


with open(jobs_file, encoding="utf-8") as handle:
    jobs = json.load(handle)
for job in jobs:
    namespace = {"__name__": "__main__"}
    cell_errors = {label: err for label, src in job["cells"] if (err := run(src, namespace))}
    checks = {label: run(src, namespace) for label, src in job["checks"]}
    import math_utils  # noqa: E402 - where the course came from, for the test to assert
    print(json.dumps({"name": job["name"], "cell_errors": cell_errors, "checks": checks,
                      "math_utils": math_utils.__file__}), flush=True)
