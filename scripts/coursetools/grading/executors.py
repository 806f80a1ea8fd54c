"""Where ``make grade`` runs its sandboxes: the local process pool (default) or Dask workers.

``--executor local`` keeps today's pool of spawned processes. ``--executor dask`` sends each
submission to a Dask distributed cluster: an existing one (``--scheduler tcp://host:8786``), or
Slurm batch jobs that dask-jobqueue submits (``--slurm JOBS [--slurm-queue Q]``). Either way a task
carries the notebook's *bytes* and their sha256 (no path: a worker needs no shared file system)
and returns the same data-only verdict; intake, the gradebook, feedback and the report stay with
the grader that submitted. Dask and dask-jobqueue are the optional extra ``[cluster]``.

A worker proves what it is before it grades (:func:`grade_task`): the lab's course hash and the
pinned package versions must equal the submitting side's, and with ``--require-isolation full``
its sandboxes must report every isolation layer; otherwise it refuses, and the refusal is an
infrastructure fault (reported, never journaled, never charged to the student).

Every result passes through the journal (``journal.py``) as it arrives. A worker that dies mid-task
(a lost node, the out-of-memory killer) makes the scheduler run the task elsewhere, a bounded number
of times (``distributed.scheduler.allowed-failures``, :data:`WORKER_LOSS_RETRIES` for clusters this
module starts); a student's own crash or timeout is a verdict and is never retried.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import socket
import sys
import tempfile
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from . import identity
from .intake import MAX_NOTEBOOK_BYTES, _open_no_follow, _Refused
from .journal import Journal, is_final

WORKER_LOSS_RETRIES = 2   # a task whose worker died is run again at most this many times
IN_FLIGHT_PER_WORKER = 4  # notebooks read and queued ahead of each worker (memory stays bounded)


def read_bytes(path: Path) -> tuple[bytes | None, str]:
    """The notebook's raw bytes, read without following a link, or None and why not (as intake reads it)."""
    try:
        fd = _open_no_follow(Path(os.path.abspath(path)))
    except _Refused as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror}"
    try:
        chunks, total = [], 0
        while total <= MAX_NOTEBOOK_BYTES:
            chunk = os.read(fd, 2**20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror}"
    finally:
        os.close(fd)
    if total > MAX_NOTEBOOK_BYTES:
        return None, f"file too large (over {MAX_NOTEBOOK_BYTES / 2**20:.0f} MB)"
    return b"".join(chunks), ""


def grade_bytes(student: str, lab: str, data: bytes, digest: str, isolation, limits) -> dict:
    """Worker: grade one notebook given as bytes, exactly as the local pool grades a file; never raises.

    The bytes go to a private temporary file that intake's own reader then reads (the same checks
    of JSON, nbformat and Unicode as a file in SUBMITTED gets).
    """
    from . import cli

    if hashlib.sha256(data).hexdigest() != digest:
        return {"student": student, "lab": lab, "status": "error", "retry": True,
                "reason": "infrastructure error, not graded: the notebook's bytes changed on the way to the worker"}
    try:
        if lab not in cli._LABS:
            from .trusted import TrustedLab

            cli._LABS[lab] = TrustedLab.load(lab)
            cli._LABS[lab].globals()
        with tempfile.TemporaryDirectory(prefix="mdl-task-") as folder:
            path = Path(folder) / f"{lab}.ipynb"
            path.write_bytes(data)
            result = cli._grade_one(student, lab, str(path), isolation, limits)
    except Exception as exc:  # the grader's own failure on this task: reported, graded again next run
        return {"student": student, "lab": lab, "status": "error", "retry": True, "reason": f"grader error: {exc}"}
    return result


# -- the Dask worker's side ---------------------------------------------------------------------------

class _WorkerState:
    """What one Dask worker process sets up once: its isolation, its sandbox servers, its layers."""

    def __init__(self, limits):
        from . import cli
        from .isolation import machine_isolation
        from .zygote import default_pool

        os.environ.setdefault("MPLBACKEND", "Agg")
        cli._limit_threads(1)   # one Dask thread per worker process: numpy and torch get one each
        cli._POOL = default_pool()
        self.isolation = machine_isolation()
        self.layers = cli.probe_layers(self.isolation, limits)
        self.hashes: dict[str, str] = {}
        self.host = socket.gethostname()

    def lab_hash(self, lab: str) -> str:
        if lab not in self.hashes:
            self.hashes[lab] = identity.lab_hash(lab)
        return self.hashes[lab]


_WORKER: _WorkerState | None = None


def worker_state(limits) -> _WorkerState:
    global _WORKER
    if _WORKER is None:
        _WORKER = _WorkerState(limits)
    return _WORKER


def grade_task(student: str, lab: str, data: bytes, digest: str, expect: dict, limits) -> dict:
    """A Dask task: check that this worker holds the grader's course, packages and isolation, then grade.

    ``expect`` holds the submitting side's ``labs`` (lab -> course hash), ``versions`` (pinned
    distribution -> version) and ``require_isolation`` ("full" or "any"). Returns the verdict dict
    :func:`grade_bytes` returns, with ``worker`` (host, isolation layers missing) added, or a refusal.
    """
    try:
        state = worker_state(limits)
    except Exception as exc:  # no sandbox can start on this worker
        return {"student": student, "lab": lab, "status": "error", "retry": True,
                "reason": f"refused by worker {socket.gethostname()}: a sandbox cannot start there ({exc})"}
    missing = identity.missing_layers(state.layers)
    worker = {"host": state.host, "missing_layers": missing}
    why = identity.refusal(expect["labs"], expect["versions"], lab, state.lab_hash)
    if not why and expect.get("require_isolation") == "full" and missing:
        why = "its sandboxes lack isolation layers (--require-isolation full): " + ", ".join(missing)
    if why:
        return {"student": student, "lab": lab, "status": "error", "retry": True, "worker": worker,
                "reason": f"refused by worker {state.host}: {why}"}
    result = grade_bytes(student, lab, data, digest, state.isolation, limits)
    result["worker"] = worker
    return result


# -- the submitting side ------------------------------------------------------------------------------

class LocalExecutor:
    """Today's pool of spawned processes (``cli._init_worker`` set each one up).

    A worker that dies (the out-of-memory killer, an operator's kill) breaks a
    ``ProcessPoolExecutor`` for good: the notebooks it held come back as infrastructure
    errors (:func:`outcome`), and ``make_pool``, when given, starts a fresh pool for the
    rest of the class instead of stopping it.
    """

    name = "local"

    def __init__(self, pool: concurrent.futures.Executor, workers: int, isolation, limits, make_pool=None):
        self.pool, self.workers, self.isolation, self.limits = pool, workers, isolation, limits
        self.make_pool, self.replaced = make_pool, []

    def submit(self, student, lab, data, digest, expect):
        try:
            return self.pool.submit(grade_bytes, student, lab, data, digest, self.isolation, self.limits)
        except BrokenProcessPool:
            if self.make_pool is None:
                raise
            print("make grade: a grading worker died (killed from outside); the rest of the class goes to a "
                  "fresh pool, and its notebooks in progress are marked for regrading", file=sys.stderr)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self.make_pool()
            self.replaced.append(self.pool)
            return self.pool.submit(grade_bytes, student, lab, data, digest, self.isolation, self.limits)

    def wait_any(self, futures):
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
        return done

    def close(self):
        for pool in self.replaced:   # the first pool is cli.py's to shut down
            pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Tasks on a Dask distributed cluster, through a ``distributed.Client``."""

    name = "dask"

    def __init__(self, client, limits, cluster=None):
        self.client, self.limits, self.cluster = client, limits, cluster
        self.workers = max(1, sum(client.nthreads().values())) if client.nthreads() else 1

    @classmethod
    def connect(cls, limits, scheduler: str | None = None, slurm_jobs: int | None = None,
                slurm_queue: str | None = None, memory_gb: float = 3.0, timeout: float = 300.0):
        """A client of the cluster at ``scheduler``, or of ``slurm_jobs`` Slurm jobs of one worker each."""
        try:
            import dask
            from distributed import Client
        except ImportError:
            raise SystemExit("make grade: --executor dask needs the cluster extra: pip install -e '.[cluster]'")
        if scheduler:
            client = Client(scheduler, timeout=timeout)
            return cls(client, limits)
        from dask_jobqueue import SLURMCluster

        # One single-threaded worker per job, started by this very interpreter; the scheduler runs here.
        dask.config.set({"distributed.scheduler.allowed-failures": WORKER_LOSS_RETRIES})
        cluster = SLURMCluster(
            queue=slurm_queue, cores=1, processes=1, memory=f"{memory_gb + 2:g}GB",
            walltime="12:00:00", python=sys.executable, job_name="mdl-grade",
            job_script_prologue=[f"cd {Path(__file__).resolve().parents[3]}"],
            worker_extra_args=["--nthreads", "1"], scheduler_options={"dashboard_address": None})
        cluster.scale(jobs=slurm_jobs)
        client = Client(cluster, timeout=timeout)
        client.wait_for_workers(1, timeout=timeout)
        return cls(client, limits, cluster)

    def submit(self, student, lab, data, digest, expect):
        return self.client.submit(grade_task, student, lab, data, digest, expect, self.limits, pure=False,
                                  key=f"grade-{lab}-{digest[:16]}-{hashlib.sha256(student.encode()).hexdigest()[:8]}")

    def wait_any(self, futures):
        from distributed import wait

        return wait(futures, return_when="FIRST_COMPLETED").done

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def outcome(future, student: str, lab: str) -> dict:
    """A finished future's verdict; a task that failed (its worker lost too often) becomes an infrastructure error."""
    try:
        return future.result()
    except Exception as exc:  # KilledWorker, a lost connection: the machine's fault, graded again next run
        return {"student": student, "lab": lab, "status": "error", "retry": True,
                "reason": f"worker lost, not graded (regrade it): {type(exc).__name__}: {exc}"}


def expectations(labs: list[str], require_isolation: str = "any") -> dict:
    """What every worker must match: this side's course hash per lab and its pinned versions."""
    return {"labs": {lab: identity.lab_hash(lab) for lab in labs}, "versions": identity.pinned_versions(),
            "require_isolation": require_isolation}


def graded_results(jobs, executor, journal: Journal, expect: dict):
    """Yield one result per job, from the journal when it holds the verdict, else from ``executor``.

    Notebooks are read here, just before their task is submitted, at most
    ``IN_FLIGHT_PER_WORKER`` per worker ahead, so memory does not grow with the class.
    Each final result is journaled the moment it arrives.
    """
    window = max(2, IN_FLIGHT_PER_WORKER * executor.workers)
    pending: dict = {}
    queue = iter(jobs)
    exhausted = False
    while True:
        while not exhausted and len(pending) < window:
            job = next(queue, None)
            if job is None:
                exhausted = True
                break
            data, problem = read_bytes(job.path)
            if data is None:
                yield {"student": job.student, "lab": job.lab, "status": "error", "reason": problem}
                continue
            digest = hashlib.sha256(data).hexdigest()
            lab_hash = expect["labs"][job.lab]
            earlier = journal.lookup(job.student, job.lab, digest, lab_hash)
            if earlier is not None:
                yield dict(earlier, reused=True)
                continue
            pending[executor.submit(job.student, job.lab, data, digest, expect)] = (job, digest, lab_hash)
        if not pending:
            return
        for future in executor.wait_any(list(pending)):
            job, digest, lab_hash = pending.pop(future)
            result = outcome(future, job.student, job.lab)
            journal.record(job.student, job.lab, digest, lab_hash, result)
            yield result


def worker_summary(results: list[dict]) -> list[dict]:
    """Per worker host: how many notebooks it graded and the isolation layers its sandboxes lacked."""
    hosts: dict = {}
    for r in results:
        worker = r.get("worker") or {"host": socket.gethostname(),
                                      "missing_layers": identity.missing_layers(r.get("layers") or {})}
        key = (worker["host"], tuple(worker.get("missing_layers") or ()))
        hosts[key] = hosts.get(key, 0) + 1
    return [{"host": host, "missing_layers": list(missing), "notebooks": count}
            for (host, missing), count in sorted(hosts.items())]


def final(results) -> list[dict]:
    return [r for r in results if is_final(r)]


# -- make grade's options and the object cli.py drives -------------------------------------------------

def add_arguments(parser) -> None:
    """``--executor``, ``--scheduler``, ``--slurm``, ``--slurm-queue``, ``--only-new``, ``--require-isolation``."""
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="local: a process pool on this machine (default); dask: a Dask cluster "
                             "(--scheduler or --slurm; needs pip install -e '.[cluster]')")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="with --executor dask: the address of a running Dask scheduler (tcp://host:8786)")
    parser.add_argument("--slurm", type=int, default=None, metavar="JOBS",
                        help="with --executor dask: submit JOBS Slurm batch jobs of one worker each (dask-jobqueue)")
    parser.add_argument("--slurm-queue", default=None, metavar="Q", help="with --slurm: the partition (sbatch -p)")
    parser.add_argument("--only-new", action="store_true",
                        help="grade only notebooks that changed, or whose lab's checks changed, since the "
                             "journal in OUT (an interrupted run always resumes)")
    parser.add_argument("--require-isolation", choices=("any", "full"), default="any",
                        help="full: refuse to grade on a machine or worker whose sandboxes lack any isolation layer")


def argument_problem(args) -> str:
    """Why these executor options do not go together ("" when they do)."""
    if args.executor == "dask" and bool(args.scheduler) == bool(args.slurm):
        return "--executor dask needs exactly one of --scheduler ADDRESS and --slurm JOBS"
    if args.executor == "local" and (args.scheduler or args.slurm or args.slurm_queue):
        return "--scheduler, --slurm and --slurm-queue go with --executor dask"
    if args.slurm is not None and args.slurm < 1:
        return "--slurm needs at least one job"
    if args.slurm_queue and not args.slurm:
        return "--slurm-queue goes with --slurm"
    return ""


def isolation_problem(args, layers: dict) -> str:
    """With ``--require-isolation full``: why this machine's own sandboxes do not qualify ("" when they do)."""
    missing = identity.missing_layers(layers)
    if args.require_isolation == "full" and missing and args.executor == "local":
        return "--require-isolation full: this machine's sandboxes lack " + ", ".join(missing)
    return ""


class Runner:
    """One run's executor, journal and expectations, as ``cli._grade_and_record`` uses them."""

    def __init__(self, executor, journal: Journal, expect: dict, stack):
        self.executor, self.journal, self.expect = executor, journal, expect
        stack.callback(journal.close)
        if executor is not None:
            stack.callback(executor.close)

    def results(self, jobs):
        if self.journal.entries:
            print(f"journal: {len(self.journal.entries)} verdict(s) from "
                  f"{'an interrupted run' if self.journal.resumed else 'the last run (--only-new)'} in OUT "
                  f"are reused where the notebook and its lab's checks are unchanged", file=sys.stderr)
        if not jobs:
            return iter(())
        return graded_results(jobs, self.executor, self.journal, self.expect)

    def finish(self, out: Path, results: list[dict]) -> None:
        """The run ended: mark the journal complete and add the workers' isolation to report.html."""
        self.journal.complete()
        add_isolation_section(Path(out) / "report.html", worker_summary([r for r in results
                                                                          if r.get("status") == "graded"]))


def runner(args, out: Path, stack, pool, workers: int, labs_used: list[str], isolation, limits,
           make_pool=None) -> Runner:
    """The executor ``args`` ask for (``pool``: the local process pool cli.py started, when local;
    ``make_pool``: how to start another one if a worker dies)."""
    expect = expectations(labs_used, args.require_isolation)
    journal = Journal(out, only_new=args.only_new)
    if args.executor == "local" or not labs_used:
        executor = LocalExecutor(pool, workers, isolation, limits, make_pool) if pool is not None else None
        return Runner(executor, journal, expect, stack)
    executor = DaskExecutor.connect(limits, scheduler=args.scheduler, slurm_jobs=args.slurm,
                                    slurm_queue=args.slurm_queue, memory_gb=args.memory_gb)
    print(f"grading on Dask: {executor.workers} worker thread(s), course "
          f"{identity.course_hash(expect['labs'])[:12]}", file=sys.stderr)
    return Runner(executor, journal, expect, stack)


def add_isolation_section(page: Path, hosts: list[dict]) -> None:
    """A table in report.html: which worker graded how many notebooks, and which isolation layers it lacked."""
    import html

    if not page.is_file() or not hosts:
        return
    rows = "".join(
        f"<tr><td>{html.escape(h['host'])}</td><td>{h['notebooks']}</td>"
        f"<td>{'every layer' if not h['missing_layers'] else 'lacked: ' + html.escape(', '.join(h['missing_layers']))}"
        f"</td></tr>" for h in hosts)
    section = (f'<h2 id="isolation">Isolation of the workers</h2>\n<p>Layers each sandbox reported before any '
               f'student code ran: {html.escape(", ".join(identity.FULL_ISOLATION))}.</p>\n'
               f"<table><tr><th>worker</th><th>notebooks</th><th>isolation</th></tr>{rows}</table>\n")
    text = page.read_text(encoding="utf-8")
    text = text.replace("</body>", section + "</body>", 1) if "</body>" in text else text + section
    page.write_text(text, encoding="utf-8")
