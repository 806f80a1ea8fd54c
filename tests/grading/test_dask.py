"""make grade on Dask workers (issue 20): same grades as the local pool, resumable, workers that prove what they are.

One small class of lab 01 (full marks, the stub, a wrong linear layer, the same wrong layer with two
hostile attacks, and with an attempt to reach the Dask scheduler) is graded once by the local pool and once on a
``LocalCluster(n_workers=2, processes=True, threads_per_worker=1)`` whose first task kills its own
worker; the later runs (a resumed journal, ``--only-new``, a refusing worker, Slurm) reuse the
cluster and grade a notebook or two each. Every run is in one xdist group, so they share it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import stat
import sys
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import pytest

# No importorskip: `make test` installs the [cluster] extra, and these tests must run there.
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

from coursetools.grading import cli, executors, identity  # noqa: E402
from coursetools.grading.journal import JOURNAL  # noqa: E402
from coursetools.paths import ROOT  # noqa: E402
from fixtures.hostile import ATTACKS, LAB, TARGET_CELL, TARGET_CHECK, WRONG_LINEAR  # noqa: E402
from fixtures.notebooks import nbgrader_meta, submission  # noqa: E402

pytestmark = pytest.mark.xdist_group("dask")

HOSTILE = ("patch-checker", "escape-to-root")
# A submission whose linear_backward tries to reach the Dask scheduler (it would submit tasks of its own).
REACH_SCHEDULER = '''
def linear_backward(dL_dY, X, W):
    import socket
    socket.create_connection(("{host}", {port}), timeout=5).sendall(b"grade me 100")
    return dL_dY @ W.T, X.T @ dL_dY, dL_dY.sum(axis=0)
'''
BASE_ARGS = ["--timeout", "8", "--labs", LAB]


class KillFirstTask(WorkerPlugin):
    """Kills the worker process that starts the class's first grading task (a lost node, mid-run)."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or not str(key).startswith("grade-"):
            return
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # one kill per class run; the restarted worker grades normally
        with open(self.marker, "w") as f:
            f.write(str(key))
        os.kill(os.getpid(), signal.SIGKILL)


def _write(path: Path, nb) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _with_target(code: str):
    nb = submission(LAB, demos=False)
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == TARGET_CELL:
            cell.source = code
    return nb


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / JOURNAL).read_text(encoding="utf-8").splitlines()]


def _grade(submitted: Path, out: Path, *extra: str) -> tuple[int, str]:
    """cli.main, with what it wrote on stderr (the journal's and the executor's lines)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([str(submitted), str(out), *BASE_ARGS, *extra])
    return code, err.getvalue()


@pytest.fixture(scope="session")
def dask_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("dask-class")
    submitted = base / "submitted"
    marker = base / "killed-worker"
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      memory_limit=0) as cluster:
        host, port = cluster.scheduler_address.removeprefix("tcp://").rsplit(":", 1)
        _write(submitted / "alice" / LAB / f"{LAB}.ipynb", submission(LAB, demos=False))
        _write(submitted / "bob" / LAB / f"{LAB}.ipynb", submission(LAB, solved=False, demos=False))
        _write(submitted / "baseline" / LAB / f"{LAB}.ipynb", _with_target(WRONG_LINEAR))
        for attack in (a for a in ATTACKS if a.name in HOSTILE):
            out_guess = base / "dask"
            code = attack.code.format(root=ROOT, submitted=submitted, out=out_guess)
            _write(submitted / attack.name / LAB / f"{LAB}.ipynb", _with_target(WRONG_LINEAR + code))
        _write(submitted / "reach-scheduler" / LAB / f"{LAB}.ipynb",
               _with_target(WRONG_LINEAR + REACH_SCHEDULER.format(host=host, port=port)))

        local_code, _ = _grade(submitted, base / "local", "--workers", "2")
        with Client(cluster.scheduler_address) as client:
            import cloudpickle

            cloudpickle.register_pickle_by_value(sys.modules[__name__])
            client.register_plugin(KillFirstTask(str(marker)), name="kill-first-task")
        dask_code, dask_err = _grade(submitted, base / "dask", "--executor", "dask",
                                     "--scheduler", cluster.scheduler_address)
        with Client(cluster.scheduler_address) as client:
            client.unregister_worker_plugin("kill-first-task")

        # An interrupted run: the journal holds the first two verdicts and no complete mark.
        resumed = base / "resumed"
        resumed.mkdir()
        kept = [line for line in (base / "dask" / JOURNAL).read_text(encoding="utf-8").splitlines()
                if "key" in json.loads(line)][:2]
        (resumed / JOURNAL).write_text("\n".join(kept) + "\n", encoding="utf-8")
        resumed_code, resumed_err = _grade(submitted, resumed, "--executor", "dask",
                                           "--scheduler", cluster.scheduler_address)

        # --only-new after that complete run: bob now hands in the solution; only bob is graded again.
        only_new_submitted = base / "only-new-submitted"
        shutil.copytree(submitted, only_new_submitted)
        _write(only_new_submitted / "bob" / LAB / f"{LAB}.ipynb", submission(LAB, demos=False))
        shutil.copytree(resumed, base / "only-new")
        only_new_code, only_new_err = _grade(only_new_submitted, base / "only-new", "--only-new", "--executor",
                                             "dask", "--scheduler", cluster.scheduler_address)

        # The submitting side holds another course: every worker refuses, nothing is graded or journaled.
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(identity, "lab_hash", lambda lab: "0" * 64)
            refused_code, _ = _grade(submitted, base / "refused", "--executor", "dask",
                                     "--scheduler", cluster.scheduler_address)
    return dict(base=base, submitted=submitted, marker=marker, local_code=local_code, dask_code=dask_code,
                dask_err=dask_err, resumed_code=resumed_code, resumed_err=resumed_err, kept=kept,
                only_new_code=only_new_code, only_new_err=only_new_err, refused_code=refused_code)


def test_dask_gives_the_local_pools_csvs_even_with_a_worker_killed_mid_run(dask_class):
    base = dask_class["base"]
    assert dask_class["local_code"] == 0 and dask_class["dask_code"] == 0
    assert "grading on Dask: 2 worker thread(s)" in dask_class["dask_err"]
    assert dask_class["marker"].read_text().startswith("grade-"), "no worker was killed mid-run"
    for name in ("grades.csv", "grades_by_question.csv"):
        assert _csv(base / "dask" / name) == _csv(base / "local" / name), name
    rows = _csv(base / "dask" / "grades.csv")
    assert len(rows) == 6 and all(r["status"] == "graded" for r in rows), rows


def test_each_submission_is_journaled_once_after_the_worker_loss(dask_class):
    entries = _journal(dask_class["base"] / "dask")
    keys = [e["key"] for e in entries if "key" in e]
    assert len(keys) == len(set(keys)) == 6
    assert {json.loads(k)[0] for k in keys} == {"alice", "bob", "baseline", "reach-scheduler", *HOSTILE}
    assert "complete" in entries[-1]


def test_hostile_submissions_earn_nothing_on_dask_workers(dask_class):
    questions = {}
    for r in _csv(dask_class["base"] / "dask" / "grades_by_question.csv"):
        questions.setdefault(r["student"], {})[r["question"]] = r
    # Each attack sits on the baseline's wrong linear_backward: it earns what that code earns, no more.
    for student in (*HOSTILE, "reach-scheduler"):
        for question, r in questions[student].items():
            assert float(r["score"]) == float(questions["baseline"][question]["score"]), (student, r)
    assert float(questions["baseline"][TARGET_CHECK]["score"]) < 3
    reach = questions["reach-scheduler"][TARGET_CHECK]
    assert reach["misconception"] == "sandbox-violation" and "linear_backward sandbox-violation" in reach["parts"]
    assert float(questions["alice"][TARGET_CHECK]["score"]) == 3
    escape = (dask_class["base"] / "dask" / "feedback" / "escape-to-root" / LAB / f"{LAB}.html").read_text(
        encoding="utf-8")
    assert "ESCAPED" not in escape
    assert "# tampered" not in (ROOT / "scripts" / "checker" / "lab01.py").read_text(encoding="utf-8")


def test_an_interrupted_run_resumes_from_its_journal(dask_class):
    base = dask_class["base"]
    assert dask_class["resumed_code"] == 0
    assert "journal: 2 verdict(s) from an interrupted run" in dask_class["resumed_err"]
    entries = _journal(base / "resumed")
    assert [json.dumps(e) for e in entries[:2]] == [json.dumps(json.loads(line)) for line in dask_class["kept"]]
    keys = [e["key"] for e in entries if "key" in e]
    assert len(keys) == len(set(keys)) == 6, "a submission was recorded twice, or not at all"
    assert _csv(base / "resumed" / "grades.csv") == _csv(base / "local" / "grades.csv")


def test_only_new_grades_just_the_changed_notebook(dask_class):
    base = dask_class["base"]
    assert dask_class["only_new_code"] == 0
    assert "journal: 6 verdict(s) from the last run (--only-new)" in dask_class["only_new_err"]
    entries = _journal(base / "only-new")
    keys = [json.loads(e["key"]) for e in entries if "key" in e]
    assert [k[0] for k in keys].count("bob") == 2, "bob's new notebook was not graded (or the old one lost)"
    assert len(keys) == 7 and len({tuple(k) for k in keys}) == 7
    rows = {r["student"]: r for r in _csv(base / "only-new" / "grades.csv")}
    assert rows["bob"]["score"] == "19.0" and rows["alice"]["score"] == "19.0"


def test_a_worker_with_another_course_refuses_and_nothing_is_journaled(dask_class):
    base = dask_class["base"]
    assert dask_class["refused_code"] == 0
    rows = _csv(base / "refused" / "grades.csv")
    assert len(rows) == 6 and all(r["status"] == "error" and "refused by worker" in r["reason"]
                                  and "its course differs" in r["reason"] for r in rows), rows
    assert [e for e in _journal(base / "refused") if "key" in e] == []


def test_report_shows_the_workers_isolation(dask_class):
    page = (dask_class["base"] / "dask" / "report.html").read_text(encoding="utf-8")
    assert "Isolation of the workers" in page
    missing = identity.missing_layers(cli.probe_layers(cli.machine_isolation(), cli.Limits()))
    assert ("every layer" in page) == (not missing)


def test_a_degraded_worker_is_refused_under_require_isolation_full(monkeypatch):
    """A worker whose sandboxes lack seccomp refuses every task when the grader asks for full isolation."""
    state = executors._WorkerState.__new__(executors._WorkerState)
    state.layers = {"pid_namespace": True, "mount_namespace": True, "network": ["lo"], "uid": 5,
                    "CapEff": "0000000000000000", "threads_limited": True, "landlock": "ABI 7",
                    "seccomp": "unavailable", "audit_hook": "on"}
    state.hashes, state.host, state.isolation = {}, "degraded-node", None
    monkeypatch.setattr(executors, "_WORKER", state)
    expect = executors.expectations([LAB], require_isolation="full")
    result = executors.grade_task("amy", LAB, b"{}", "0" * 64, expect, cli.Limits())
    assert result["status"] == "error" and result["retry"], result
    assert "refused by worker degraded-node" in result["reason"] and "seccomp" in result["reason"]
    other = dict(expect, versions={"numpy": "0.0.1"})
    other["require_isolation"] = "any"
    result = executors.grade_task("amy", LAB, b"{}", "0" * 64, other, cli.Limits())
    assert "pinned packages differ" in result["reason"] and "numpy" in result["reason"], result


def test_executor_options_are_checked(tmp_path):
    (tmp_path / "sub").mkdir()
    out = str(tmp_path / "out")
    assert cli.main([str(tmp_path / "sub"), out, "--executor", "dask"]) == 2
    assert cli.main([str(tmp_path / "sub"), out, "--scheduler", "tcp://x:1"]) == 2
    assert cli.main([str(tmp_path / "sub"), out, "--executor", "dask", "--slurm", "0"]) == 2
    assert cli.main([str(tmp_path / "sub"), out, "--executor", "dask", "--slurm", "1", "--scheduler", "tcp://x:1"]) == 2


# -- Slurm, through dask-jobqueue, against stand-in sbatch/squeue/scancel ---------------------------------

FAKE_SLURM = {
    "sbatch": """
        # Stand-in for sbatch: keeps a copy of the job script and runs it here, in the background.
        script="${@: -1}"
        id=$(( $(ls "$MDL_FAKE_SLURM" | grep -c '\\.sh$') + 4000 ))
        cp "$script" "$MDL_FAKE_SLURM/$id.sh"
        setsid bash "$MDL_FAKE_SLURM/$id.sh" > "$MDL_FAKE_SLURM/$id.log" 2>&1 < /dev/null &
        echo $! > "$MDL_FAKE_SLURM/$id.pid"
        echo "Submitted batch job $id"
    """,
    "scancel": """
        for id in "$@"; do
            kill -TERM -- "-$(cat "$MDL_FAKE_SLURM/$id.pid")" 2>/dev/null || true
            echo "$id" >> "$MDL_FAKE_SLURM/cancelled"
        done
    """,
    "squeue": """
        echo "JOBID PARTITION NAME ST"
        for pid in "$MDL_FAKE_SLURM"/*.pid; do
            [ -e "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null && echo "$(basename "$pid" .pid) fake mdl-grade R"
        done
        true
    """,
}


def test_slurm_runs_end_to_end_on_stand_in_commands(tmp_path, monkeypatch, dask_class):
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in FAKE_SLURM.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body), encoding="utf-8")
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MDL_FAKE_SLURM", str(state))
    submitted = tmp_path / "submitted"
    shutil.copytree(dask_class["submitted"] / "alice", submitted / "alice")
    shutil.copytree(dask_class["submitted"] / "bob", submitted / "bob")
    code, err = _grade(submitted, tmp_path / "out", "--executor", "dask", "--slurm", "1", "--slurm-queue", "gradeq")
    assert code == 0, err
    scripts = sorted(state.glob("*.sh"))
    assert len(scripts) == 1, "one Slurm job for --slurm 1"
    job = scripts[0].read_text(encoding="utf-8")
    assert "#SBATCH -p gradeq" in job and sys.executable in job and "--nthreads 1" in job
    assert (state / "cancelled").read_text().split() == [scripts[0].stem], "the job was not cancelled at the end"
    local = {r["student"]: r for r in _csv(dask_class["base"] / "local" / "grades.csv")}
    for r in _csv(tmp_path / "out" / "grades.csv"):
        assert r == local[r["student"]], r
    deadline = time.monotonic() + 30  # scancel's SIGTERM ends the worker: nothing keeps running
    while time.monotonic() < deadline:
        pid = int((state / f"{scripts[0].stem}.pid").read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the stand-in Slurm job still runs after scancel")


# -- item 3: the sandbox applies its own layers, whatever threads its parent has ----------------------------

def test_a_sandbox_started_from_a_threaded_parent_gets_every_layer(tmp_path):
    """Dask workers always have threads: a sandbox started there (no preexec_fn) reports what a probe reports."""
    from coursetools.grading.sandbox import Limits, Sandbox

    isolation, limits = cli.machine_isolation(), Limits()
    expected = cli.probe_layers(isolation, limits)
    stop = threading.Event()
    lock = threading.Lock()

    def busy():  # threads that hold a lock and allocate while the sandbox starts, as a worker's do
        while not stop.is_set():
            with lock:
                bytearray(1 << 16)

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    seen: dict = {}

    def start_from_a_thread():
        with Sandbox(numpy_only=True, limits=limits, isolation=isolation, workdir=tmp_path) as sandbox:
            seen.update(sandbox.layers)

    try:
        starter = threading.Thread(target=start_from_a_thread)
        starter.start()
        starter.join(timeout=180)
    finally:
        stop.set()
    assert seen, "the sandbox did not start from a thread"
    assert {k: v for k, v in seen.items() if k != "uid"} == {k: v for k, v in expected.items() if k != "uid"}
    assert identity.missing_layers(seen) == identity.missing_layers(expected)
