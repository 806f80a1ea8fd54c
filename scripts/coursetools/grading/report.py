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
import os
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

PROBE_BYTES = 2**20
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
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


def summarise(rows: list[dict], question_rows: list[dict]) -> dict:
    """Per question: mean score, pass rate; across the class: misconception counts."""
    per_q = defaultdict(list)
    for r in question_rows:
        per_q[(r["lab"], r["question"])].append(r)
    questions = []
    for (lab, q), rs in sorted(per_q.items()):
        max_score = float(rs[0]["max_score"])
        scores = [float(r["score"]) for r in rs]
        questions.append({"lab": lab, "question": q, "n": len(rs), "max": max_score,
                          "mean": sum(scores) / len(scores), "pass_rate": sum(s == max_score for s in scores) / len(rs)})
    misconceptions = Counter((r["lab"], r["question"], r["misconception"]) for r in question_rows if r["misconception"])
    by_name = Counter(r["misconception"] for r in question_rows if r["misconception"])
    graded = [r for r in rows if r["status"] == "graded"]
    problems = [r for r in rows if r["status"] != "graded"]
    return {"questions": questions, "misconceptions": misconceptions.most_common(), "by_name": by_name.most_common(),
            "graded": graded, "problems": problems}


def terminal(summary: dict) -> str:
    """The summary printed after grading; every name and reason goes through :func:`printable`."""
    p = printable
    lines = [f"Graded {len(summary['graded'])} submission(s); {len(summary['problems'])} could not be graded."]
    if summary["questions"]:
        lines.append("\nPer question                              mean     pass rate")
        for q in summary["questions"]:
            lines.append(f"  {p(q['lab'])}/{p(q['question']):<34} {q['mean']:.2f}/{q['max']:.0f}   "
                         f"{q['pass_rate']:.0%}")
    if summary["by_name"]:
        lines.append("\nMost common misconceptions")
        for name, n in summary["by_name"][:10]:
            lines.append(f"  {n:4d}  {p(name)}")
    if summary["problems"]:
        lines.append("\nNot graded")
        for r in summary["problems"]:
            lines.append(f"  {p(r['student'])}/{p(r['lab'])}: {p(r['reason'])}")
    return "\n".join(lines)


def _histograms(rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_lab = defaultdict(list)
    for r in rows:
        if r["status"] == "graded":
            by_lab[r["lab"]].append(100.0 * float(r["score"]) / max(float(r["max_score"]), 1e-9))
    if not by_lab:
        return ""
    fig, axes = plt.subplots(1, len(by_lab), figsize=(4.5 * len(by_lab), 3.2), squeeze=False)
    for ax, (lab, pct) in zip(axes[0], sorted(by_lab.items())):
        ax.hist(pct, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.001], color="#4c72b0", edgecolor="white")
        ax.set_title(f"{lab} (n={len(pct)})")
        ax.set_xlabel("score (%)")
        ax.set_ylabel("students")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_html(out: Path, rows: list[dict], summary: dict) -> None:
    def e(value) -> str:
        return html.escape(printable(value), quote=True)

    png = _histograms(rows)
    parts = ["<!doctype html><meta charset='utf-8'><title>Grading report</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>",
             "<h1>Grading report</h1>",
             f"<p>{len(summary['graded'])} submission(s) graded, {len(summary['problems'])} not graded.</p>"]
    if png:
        parts.append(f"<h2>Score distribution</h2><img alt='score histograms' src='data:image/png;base64,{png}'>")
    parts.append("<h2>Per question</h2><table><tr><th>lab</th><th>question</th><th>n</th>"
                 "<th>mean</th><th>max</th><th>pass rate</th></tr>")
    for q in summary["questions"]:
        parts.append(f"<tr><td>{e(q['lab'])}</td><td>{e(q['question'])}</td><td>{q['n']}</td>"
                     f"<td>{q['mean']:.2f}</td><td>{q['max']:.0f}</td><td>{q['pass_rate']:.0%}</td></tr>")
    parts.append("</table><h2>Most common misconceptions</h2><table><tr><th>count</th><th>misconception</th>"
                 "<th>lab / question</th></tr>")
    for (lab, q, name), n in summary["misconceptions"]:
        parts.append(f"<tr><td>{n}</td><td><a href='TROUBLESHOOTING.md#{e(name)}'>{e(name)}</a></td>"
                     f"<td>{e(lab)} / {e(q)}</td></tr>")
    parts.append("</table><h2>Not graded</h2><table><tr><th>student</th><th>lab</th><th>reason</th></tr>")
    for r in summary["problems"]:
        parts.append(f"<tr><td>{e(r['student'])}</td><td>{e(r['lab'])}</td><td>{e(r['reason'])}</td></tr>")
    parts.append("</table>")
    (out / "report.html").write_text("\n".join(parts), encoding="utf-8")
