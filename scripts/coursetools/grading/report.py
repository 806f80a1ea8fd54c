"""grades.csv, grades_by_question.csv, report.html and the terminal summary.

Student ids, lab names and reasons come from folder and file names in
SUBMITTED, so every field is neutralised where it leaves the grader: control
characters are shown escaped (:func:`printable`: a name cannot clear the
screen, retitle the terminal or forge a summary line), CSV cells cannot start
a spreadsheet formula (:func:`csv_cell`, OWASP's rule), and HTML is escaped.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import quote

PROBE_BYTES = 2**20
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
RESULTS = "results.json"  # this run's rows, raw, for the next run to compare with
_ESCAPED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value) -> str:
    """``value`` as text with every control or format character shown escaped.

    C0 and C1 controls (ESC sequences, newlines, NUL, DEL), format characters
    (bidirectional overrides, zero-width ones) and line or paragraph separators
    become ``\\n``, ``\\x1b``, ``\\u202e``...; bytes that were not UTF-8 in a file
    name (``os.listdir`` keeps them as lone surrogates) become ``\\xff``.
    """
    text = str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = ord(ch)
            out.append(_ESCAPED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
        else:
            out.append(ch)
    return "".join(out)


def csv_cell(value) -> str:
    """A CSV field that no spreadsheet runs as a formula (OWASP): a leading quote before = + - @ tab CR.

    ``printable`` runs first, so tab and CR are already escaped; the bare "-"
    that marks "no lab" is left as it is (one character cannot be a formula).
    """
    text = printable(value)
    if text.startswith(FORMULA_STARTS) and text != "-":
        return "'" + text
    return text


def out_problem(out: Path) -> str:
    """Why ``out`` cannot take the results, or "" when it can: checked before any grading starts.

    Creates the folder if needed and writes (and removes) a probe file of
    ``PROBE_BYTES``, so a read-only, misplaced or full ``OUT`` is found before
    hours of grading, not when the results are written.
    """
    if out.exists() and not out.is_dir():
        return "is not a folder"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"
    probe = out / f".make-grade-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            block = b"\0" * 65536
            for _ in range(PROBE_BYTES // len(block)):
                os.write(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass
    return ""


def write_csvs(out: Path, rows: list[dict], question_rows: list[dict]) -> None:
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["student", "lab", "score", "max_score", "status", "reason"])
        w.writeheader()
        w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    with open(out / "grades_by_question.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["student", "lab", "question", "score", "max_score", "misconception", "parts"])
        w.writeheader()
        w.writerows({k: csv_cell(v) for k, v in r.items()} for r in question_rows)


def write_results(out: Path, rows: list[dict], question_rows: list[dict]) -> None:
    """``OUT/results.json``: this run's rows as the grader made them, for the next run to compare with.

    The CSVs neutralise names for spreadsheets; this file keeps them as they are (JSON escapes
    control characters and lone surrogates), so a rerun matches students exactly.
    """
    data = {"rows": rows, "question_rows": question_rows}
    (out / RESULTS).write_text(json.dumps(data, ensure_ascii=True, default=str), encoding="utf-8")


def read_previous(out: Path) -> dict | None:
    """The results an earlier run left in ``OUT`` (``results.json``), or None when there are none."""
    try:
        data = json.loads((out / RESULTS).read_text(encoding="utf-8"))
        if isinstance(data.get("rows"), list) and isinstance(data.get("question_rows"), list):
            return data
    except (OSError, ValueError, AttributeError):
        pass
    return None


def keep_previous(out: Path) -> None:
    """Move the last run's grades.csv, grades_by_question.csv and results.json into ``OUT/previous/``.

    Called just before this run's files replace them: the instructor can still open
    what a regrade changed, and :func:`compare` has read them already.
    """
    if not (out / RESULTS).is_file():
        return
    previous = out / "previous"
    if previous.is_symlink() or (previous.exists() and not previous.is_dir()):
        previous.unlink()
    previous.mkdir(exist_ok=True)
    for name in ("grades.csv", "grades_by_question.csv", RESULTS):
        if (out / name).is_file() and not (out / name).is_symlink():
            os.replace(out / name, previous / name)


def _score(row: dict | None) -> float | None:
    if row is None or row.get("status") != "graded":
        return None
    return float(row["score"])


def compare(previous: dict | None, rows: list[dict], question_rows: list[dict]) -> list[dict]:
    """Who gained or lost points since the previous run, per student and lab of this run.

    Only labs graded now are compared (a run with ``--labs`` says nothing about the others).
    Each change: student, lab, before and after (None: not graded then / now), delta (0 when
    either is None) and the questions whose score moved, as (question, before, after).
    """
    if not previous:
        return []
    labs = {r["lab"] for r in rows}
    old_rows = {(r["student"], r["lab"]): r for r in previous["rows"] if r.get("lab") in labs}
    new_rows = {(r["student"], r["lab"]): r for r in rows}
    old_q = {(r["student"], r["lab"], r["question"]): float(r["score"])
             for r in previous["question_rows"] if r.get("lab") in labs}
    new_q = {(r["student"], r["lab"], r["question"]): float(r["score"]) for r in question_rows}
    changes = []
    for key in sorted(set(old_rows) | set(new_rows)):
        before, after = _score(old_rows.get(key)), _score(new_rows.get(key))
        if before == after:
            continue
        student, lab = key
        questions = sorted((q, old_q.get((s, l, q)), new_q.get((s, l, q)))
                           for (s, l, q) in set(old_q) | set(new_q)
                           if (s, l) == key and old_q.get((s, l, q)) != new_q.get((s, l, q)))
        delta = after - before if before is not None and after is not None else 0.0
        changes.append({"student": student, "lab": lab, "before": before, "after": after, "delta": delta,
                        "questions": questions})
    return changes


def summarise(rows: list[dict], question_rows: list[dict], previous: dict | None = None) -> dict:
    """What the report and the terminal show about the class.

    Per question: mean, pass rate, the score distribution (score -> students) and each
    misconception with the students who made it; per student: every lab's row; across the
    class: misconception counts; ``changes``: who gained or lost points since ``previous``
    (:func:`read_previous`), empty on a first run.
    """
    per_q = defaultdict(list)
    for r in question_rows:
        per_q[(r["lab"], r["question"])].append(r)
    questions = []
    for (lab, q), rs in sorted(per_q.items()):
        max_score = float(rs[0]["max_score"])
        scores = [float(r["score"]) for r in rs]
        students_by_mistake = defaultdict(list)
        for r in sorted(rs, key=lambda r: r["student"]):
            if r["misconception"]:
                students_by_mistake[r["misconception"]].append(r["student"])
        questions.append({"lab": lab, "question": q, "n": len(rs), "max": max_score,
                          "mean": sum(scores) / len(scores), "pass_rate": sum(s == max_score for s in scores) / len(rs),
                          "distribution": sorted(Counter(scores).items()),
                          "misconceptions": sorted(students_by_mistake.items(), key=lambda kv: (-len(kv[1]), kv[0]))})
    misconceptions = Counter((r["lab"], r["question"], r["misconception"]) for r in question_rows if r["misconception"])
    by_name = Counter(r["misconception"] for r in question_rows if r["misconception"])
    graded = [r for r in rows if r["status"] == "graded"]
    problems = [r for r in rows if r["status"] != "graded"]
    labs = sorted({r["lab"] for r in rows})
    students = defaultdict(dict)
    for r in rows:
        students[r["student"]][r["lab"]] = r
    return {"questions": questions, "misconceptions": misconceptions.most_common(), "by_name": by_name.most_common(),
            "graded": graded, "problems": problems, "labs": labs, "students": sorted(students.items()),
            "changes": compare(previous, rows, question_rows), "compared": previous is not None}


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters two, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def _pad(text: str, columns: int, right: bool = False) -> str:
    fill = " " * max(columns - width(text), 0)
    return fill + text if right else text + fill


def _points(value: float) -> str:
    return f"{value:g}"


def _lab_cell(row: dict | None) -> str:
    if row is None:
        return "-"
    if row["status"] != "graded":
        return "error"
    return f"{_points(float(row['score']))}/{_points(float(row['max_score']))}"


def _short_labs(labs: list[str]) -> list[str]:
    """Column headings: each lab's number ("01") when those are unique, else the whole id."""
    short = [printable(lab).split("_")[0] for lab in labs]
    return short if len(set(short)) == len(short) else [printable(lab) for lab in labs]


def _signed(value: float) -> str:
    return f"{value:+g}"


def describe_change(change: dict) -> str:
    """One line: "alice 01_backprop 16/… -> 19 (+3): check_ex3 0 -> 3"."""
    p = printable

    def shown(value):
        return "not graded" if value is None else _points(value)

    head = f"{p(change['student'])} {p(change['lab'])}: {shown(change['before'])} -> {shown(change['after'])}"
    if change["before"] is not None and change["after"] is not None:
        head += f" ({_signed(change['delta'])})"
    moved = [f"{p(q)} {'-' if b is None else _points(b)} -> {'-' if a is None else _points(a)}"
             for q, b, a in change["questions"][:6]]
    more = len(change["questions"]) - len(moved)
    return head + (f"; {', '.join(moved)}" if moved else "") + (f" and {more} more" if more > 0 else "")


def terminal(summary: dict) -> str:
    """The summary printed after grading, in aligned columns; every name and reason goes through :func:`printable`."""
    p = printable
    lines = [f"Graded {len(summary['graded'])} submission(s); {len(summary['problems'])} could not be graded."]
    labs = summary.get("labs", [])
    if summary.get("students"):
        heads = _short_labs(labs)
        names = [p(student) for student, _ in summary["students"]]
        table = [[_lab_cell(by_lab.get(lab)) for lab in labs] for _, by_lab in summary["students"]]
        totals = []
        for _, by_lab in summary["students"]:
            graded = [r for r in by_lab.values() if r["status"] == "graded"]
            totals.append(f"{_points(sum(float(r['score']) for r in graded))}/"
                          f"{_points(sum(float(r['max_score']) for r in graded))}" if graded else "-")
        name_w = max([width(n) for n in names] + [len("student")])
        col_w = [max([width(h)] + [width(row[i]) for row in table]) for i, h in enumerate(heads)]
        total_w = max([len("total")] + [width(t) for t in totals])
        lines.append("\nPer student")
        lines.append("  " + "  ".join([_pad("student", name_w)] + [_pad(h, w, True) for h, w in zip(heads, col_w)]
                                      + [_pad("total", total_w, True)]))
        for name, cells, total in zip(names, table, totals):
            lines.append("  " + "  ".join([_pad(name, name_w)] + [_pad(c, w, True) for c, w in zip(cells, col_w)]
                                          + [_pad(total, total_w, True)]))
    if summary["questions"]:
        labels = [f"{p(q['lab'])}/{p(q['question'])}" for q in summary["questions"]]
        label_w = max([width(x) for x in labels] + [len("question")])
        means = [f"{q['mean']:.2f}/{_points(q['max'])}" for q in summary["questions"]]
        mean_w = max([width(m) for m in means] + [len("mean")])
        lines.append("\nPer question")
        lines.append(f"  {_pad('question', label_w)}  {_pad('mean', mean_w, True)}  pass rate")
        for label, mean, q in zip(labels, means, summary["questions"]):
            lines.append(f"  {_pad(label, label_w)}  {_pad(mean, mean_w, True)}  {q['pass_rate']:>9.0%}")
    if summary["by_name"]:
        lines.append("\nMost common misconceptions")
        for name, n in summary["by_name"][:10]:
            lines.append(f"  {n:4d}  {p(name)}")
    if summary.get("compared"):
        changes = summary["changes"]
        lines.append(f"\nSince the previous run in this OUT: {len(changes)} grade(s) changed"
                     + (" (OUT/previous/ holds the earlier files)" if changes else ""))
        for change in changes:
            lines.append("  " + describe_change(change))
    if summary["problems"]:
        lines.append("\nNot graded")
        for r in summary["problems"]:
            lines.append(f"  {p(r['student'])}/{p(r['lab'])}: {p(r['reason'])}")
    return "\n".join(lines)


def _png(fig, tight: bool = False) -> str:
    """The figure as base64 PNG text for a data: URL (the page then needs no file beside it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight" if tight else None)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def warm_up() -> None:
    """Import what report.html's figures need: called in a thread while the workers grade, so the
    import (half a second) is not part of the run's last, single-process step."""
    import matplotlib.backends.backend_agg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


def _figure(**kwargs):
    """A matplotlib Figure drawn by Agg, without pyplot: no global backend, no figure manager to close,
    and not pyplot's import (a third of a second of make grade's last, single-process, step)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _label(value, limit: int = 40) -> str:
    """A name as matplotlib draws it: printable, shortened, and '$' escaped (no mathtext from a name)."""
    text = printable(value)
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return text.replace("$", r"\$")


def _histograms(rows: list[dict]) -> str:
    """Base64 PNG: the distribution of total scores (percent) per lab, four labs a row."""
    by_lab = defaultdict(list)
    for r in rows:
        if r["status"] == "graded":
            by_lab[r["lab"]].append(100.0 * float(r["score"]) / max(float(r["max_score"]), 1e-9))
    if not by_lab:
        return ""
    per_row = min(len(by_lab), 4)
    n_rows = -(-len(by_lab) // per_row)
    fig = _figure(figsize=(4.2 * per_row, 3.0 * n_rows))
    axes = fig.subplots(n_rows, per_row, squeeze=False)
    for ax in axes.flat[len(by_lab):]:
        ax.set_visible(False)
    for ax, (lab, pct) in zip(axes.flat, sorted(by_lab.items())):
        ax.hist(pct, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.001], color="#4c72b0", edgecolor="white")
        ax.set_title(f"{_label(lab)} (n={len(pct)})")
        ax.set_xlabel("score (%)")
        ax.set_ylabel("students")
        ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _png(fig)


HEATMAP_MAX = 40  # questions (rows) and misconceptions (columns) drawn at most: the most frequent


def _heatmap(question_rows: list[dict]) -> str:
    """Base64 PNG: students per (question, misconception), questions down, misconceptions across."""
    counts = Counter((f"{r['lab']}/{r['question']}", r["misconception"]) for r in question_rows if r["misconception"])
    if not counts:
        return ""
    import numpy as np

    by_question, by_name = Counter(), Counter()
    for (q, name), n in counts.items():
        by_question[q] += n
        by_name[name] += n
    questions = sorted(q for q, _ in by_question.most_common(HEATMAP_MAX))
    names = [name for name, _ in by_name.most_common(HEATMAP_MAX)]
    grid = np.array([[counts.get((q, name), 0) for name in names] for q in questions], dtype=float)
    fig = _figure(figsize=(3.0 + 0.45 * len(names), 2.0 + 0.35 * len(questions)))
    ax = fig.subplots()
    image = ax.imshow(np.where(grid > 0, grid, np.nan), cmap="OrRd", aspect="auto", vmin=0)
    ax.set_xticks(range(len(names)), [_label(n) for n in names], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(questions)), [_label(q, 50) for q in questions], fontsize=8)
    for i, j in zip(*np.nonzero(grid)):
        ax.text(j, i, f"{grid[i, j]:g}", ha="center", va="center", fontsize=7)
    ax.set_title("students per question and misconception")
    from matplotlib.ticker import MaxNLocator

    fig.colorbar(image, ax=ax, fraction=0.04, label="students", ticks=MaxNLocator(integer=True))
    return _png(fig, tight=True)


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:4px 8px;"
         "vertical-align:top;overflow-wrap:break-word}td.num{text-align:right;white-space:nowrap}"
         "img{max-width:100%}.gain{color:#1a7f37}.loss{color:#b42318}.err{color:#b42318}"
         "pre,.wrap{white-space:pre-wrap;overflow-wrap:anywhere}")


def feedback_href(student: str, lab: str) -> str:
    """The feedback page's address relative to ``OUT/report.html`` (each part percent-encoded)."""
    def part(value) -> str:
        return quote(str(value).encode("utf-8", "surrogateescape"), safe="")

    return f"feedback/{part(student)}/{part(lab)}/{part(lab)}.html"


def write_html(out: Path, rows: list[dict], summary: dict, question_rows: list[dict] | None = None) -> None:
    """``OUT/report.html``: one self-contained page (figures inlined as PNG, no script, nothing fetched)."""
    def e(value) -> str:
        return html.escape(printable(value), quote=True)

    def student_link(student, lab) -> str:
        return f"<a href='{html.escape(feedback_href(student, lab), quote=True)}'>{e(student)}</a>"

    graded_pairs = {(r["student"], r["lab"]) for r in summary["graded"]}
    parts = ["<!doctype html><meta charset='utf-8'><title>Grading report</title>",
             f"<style>{STYLE}</style>",
             "<h1>Grading report</h1>",
             f"<p>{len(summary['graded'])} submission(s) graded, {len(summary['problems'])} not graded.</p>"]
    png = _histograms(rows)
    if png:
        parts.append(f"<h2>Score distribution</h2><img alt='score histograms per lab' "
                     f"src='data:image/png;base64,{png}'>")
    if summary.get("compared"):
        parts.append(f"<h2>Changes since the previous run</h2><p>{len(summary['changes'])} grade(s) changed; "
                     "the earlier files are in <code>previous/</code>.</p>")
        if summary["changes"]:
            parts.append("<table><tr><th>student</th><th>lab</th><th>before</th><th>now</th><th>change</th>"
                         "<th>questions that moved</th></tr>")
            for c in summary["changes"]:
                cls = "gain" if c["delta"] > 0 else "loss" if c["delta"] < 0 else ""
                moved = "; ".join(f"{e(q)}: {'-' if b is None else _points(b)} → {'-' if a is None else _points(a)}"
                                  for q, b, a in c["questions"])
                parts.append(f"<tr><td>{e(c['student'])}</td><td>{e(c['lab'])}</td>"
                             f"<td class='num'>{'not graded' if c['before'] is None else _points(c['before'])}</td>"
                             f"<td class='num'>{'not graded' if c['after'] is None else _points(c['after'])}</td>"
                             f"<td class='num {cls}'>{_signed(c['delta']) if cls else ''}</td><td>{moved}</td></tr>")
            parts.append("</table>")
    labs = summary.get("labs", [])
    if summary.get("students"):
        parts.append("<h2>Per student</h2><table><tr><th>student</th>"
                     + "".join(f"<th>{e(lab)}</th>" for lab in labs) + "<th>total</th></tr>")
        for student, by_lab in summary["students"]:
            cells = []
            for lab in labs:
                r = by_lab.get(lab)
                if r is None:
                    cells.append("<td class='num'>-</td>")
                elif r["status"] != "graded":
                    cells.append(f"<td class='err' title='{e(r['reason'])}'>not graded</td>")
                else:
                    text = e(_lab_cell(r))
                    link = (f"<a href='{html.escape(feedback_href(student, lab), quote=True)}'>{text}</a>"
                            if (student, lab) in graded_pairs else text)
                    cells.append(f"<td class='num'>{link}</td>")
            graded = [r for r in by_lab.values() if r["status"] == "graded"]
            total = (f"{_points(sum(float(r['score']) for r in graded))}/"
                     f"{_points(sum(float(r['max_score']) for r in graded))}") if graded else "-"
            parts.append(f"<tr><td>{e(student)}</td>{''.join(cells)}<td class='num'>{total}</td></tr>")
        parts.append("</table>")
    heat = _heatmap(question_rows or [])
    if heat:
        parts.append(f"<h2>Misconceptions by question</h2><img alt='question by misconception heat map' "
                     f"src='data:image/png;base64,{heat}'>")
    parts.append("<h2>Per question</h2><table><tr><th>lab</th><th>question</th><th>n</th>"
                 "<th>mean</th><th>max</th><th>pass rate</th><th>scores (points: students)</th>"
                 "<th>misconceptions and who made them</th></tr>")
    for q in summary["questions"]:
        spread = ", ".join(f"{_points(score)}: {n}" for score, n in q.get("distribution", []))
        mistakes = "<br>".join(
            f"<a href='TROUBLESHOOTING.md#{e(name)}'>{e(name)}</a> ({len(who)}): "
            + ", ".join(student_link(s, q["lab"]) for s in who)
            for name, who in q.get("misconceptions", []))
        parts.append(f"<tr><td>{e(q['lab'])}</td><td>{e(q['question'])}</td><td class='num'>{q['n']}</td>"
                     f"<td class='num'>{q['mean']:.2f}</td><td class='num'>{_points(q['max'])}</td>"
                     f"<td class='num'>{q['pass_rate']:.0%}</td><td>{spread}</td><td>{mistakes}</td></tr>")
    parts.append("</table><h2>Most common misconceptions</h2><table><tr><th>count</th><th>misconception</th>"
                 "<th>lab / question</th></tr>")
    for (lab, q, name), n in summary["misconceptions"]:
        parts.append(f"<tr><td class='num'>{n}</td><td><a href='TROUBLESHOOTING.md#{e(name)}'>{e(name)}</a></td>"
                     f"<td>{e(lab)} / {e(q)}</td></tr>")
    parts.append("</table><h2>Not graded</h2><table><tr><th>student</th><th>lab</th><th>reason</th></tr>")
    for r in summary["problems"]:
        parts.append(f"<tr><td>{e(r['student'])}</td><td>{e(r['lab'])}</td><td class='wrap'>{e(r['reason'])}</td></tr>")
    parts.append("</table>")
    (out / "report.html").write_text("\n".join(parts), encoding="utf-8")
