"""The job store: every training job, its state and its process, in SQLite under the work folder.

Nothing about a job lives only in memory: the UI, the worker and a restarted app all read the same
rows (and the job folders the rows point at), so a closed browser or a restarted app loses nothing.

States:  queued -> running -> succeeded | failed | cancelled | interrupted
         interrupted / cancelled / failed -> queued again by resume (continues from its last checkpoint)

One connection per thread and per process (sqlite3 connections must not cross either); WAL mode
lets the UI read while the worker writes. Writes that must not race (claiming a queued job,
cancelling one) are single UPDATEs guarded by the state they expect.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from backend.problems import problem_from_json, problem_to_json
from backend.training.job_folder import (
    JobFiles,
    is_adapter_dir,
    is_model_dir,
    read_json,
    read_metrics,
    ready_checkpoints,
    tail_text,
)
from backend.training.spec import JobSpec, Problem

log = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
RESUMABLE = ("interrupted", "cancelled", "failed")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL DEFAULT '',
    spec             TEXT NOT NULL,              -- JobSpec as JSON, output_dir filled in
    state            TEXT NOT NULL,
    created          REAL NOT NULL,
    started          REAL,                       -- the latest start (a resumed job starts again)
    finished         REAL,
    device           TEXT,                       -- 'cpu' or 'cuda:0,1' (the GPUs it was given)
    pid              INTEGER,                    -- the training process, leader of its own group
    pid_start        TEXT,                       -- its start time, so a reused pid is not mistaken for it
    worker           TEXT,                       -- host:pid of the worker that started it
    error            TEXT,                       -- a sentence, when it failed or was interrupted
    error_problem    TEXT,                       -- that sentence's key and values as JSON (problems.py)
    exit_status      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0, -- how many times it was started
    progress         TEXT                        -- the last metrics record, as JSON
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created);
"""


class JobError(RuntimeError):
    """Something a person asked for that cannot be done, said in a sentence."""


def _storage_said(method):
    """A job action that meets a full (or broken) disk says so in a sentence (JobError), instead of
    letting sqlite3's or the file system's error reach the page as Gradio's generic one."""

    @functools.wraps(method)
    def said(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, OSError) as err:
            detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            log.warning("%s failed on storage: %s", method.__name__, err)
            raise JobError(Problem("storage_unwritable", "The work folder {folder} cannot be written ({detail}). If "
                                   "its disk is full, free some space, then try again.",
                                   folder=str(self.workdir), detail=detail)) from err

    return said


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    spec: JobSpec
    state: str
    created: float
    started: float | None
    finished: float | None
    device: str | None
    pid: int | None
    pid_start: str | None
    worker: str | None
    error: str | None
    exit_status: int | None
    cancel_requested: bool
    attempts: int
    progress: dict | None

    @property
    def files(self) -> JobFiles:
        return JobFiles(Path(self.spec.output_dir))

    @property
    def is_active(self) -> bool:
        return self.state in ("queued", "running")


@dataclass(frozen=True)
class Checkpoint:
    """An adapter folder ready to load in Chat and Compare, with the metrics it was saved with."""

    job_id: str
    step: int
    path: Path
    final: bool
    metrics: dict

    @property
    def label(self) -> str:
        return f"{self.job_id} · {'final' if self.final else 'step'} {self.step}"


class JobStore:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.jobs_dir = self.workdir / "jobs"
        self.db_path = self.workdir / "jobs.sqlite"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)
            _add_missing_columns(conn)

    # ---- connection ----

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never reuse a connection across fork
            conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast commits
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self._conn().execute(sql, params)

    # ---- what the UI calls ----

    @_storage_said
    def submit(self, spec: JobSpec) -> Job:
        """Check the spec, give the job a folder, queue it. Raises SpecError with every problem, and
        JobError when the work folder cannot be written (its folder is then removed again)."""
        spec.validate()
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True)
        try:
            spec = spec.with_changes(output_dir=str(folder.resolve()),
                                     data_file=str(Path(spec.data_file).resolve()),
                                     image_root=str(spec.images_dir.resolve()),
                                     eval_file=str(Path(spec.eval_file).resolve()) if spec.eval_file else "")
            spec.save(JobFiles(folder).spec)
            self._execute("INSERT INTO jobs (id, name, spec, state, created) VALUES (?, ?, ?, 'queued', ?)",
                          (job_id, spec.name, spec.to_json(), time.time()))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        log.info("queued job %s (%r)", job_id, spec.name or spec.model)
        return self.get(job_id)

    def list(self, states: tuple[str, ...] | None = None) -> list[Job]:
        """All jobs (or those in `states`), newest first."""
        if states:
            rows = self._execute(f"SELECT * FROM jobs WHERE state IN ({','.join('?' * len(states))}) "
                                 "ORDER BY created DESC", tuple(states))
        else:
            rows = self._execute("SELECT * FROM jobs ORDER BY created DESC")
        return [_job(row) for row in rows.fetchall()]

    def get(self, job_id: str) -> Job:
        row = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(Problem("no_job", "There is no job {job} (it may have been deleted).", job=job_id))
        return _job(row)

    @_storage_said
    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once. A running one is asked to stop: its whole process
        group gets SIGTERM, the program finishes its step, saves a checkpoint and exits, and the
        worker then marks it cancelled (resume continues from that checkpoint)."""
        job = self.get(job_id)
        if job.state == "queued":
            updated = self._execute("UPDATE jobs SET state = 'cancelled', finished = ? "
                                    "WHERE id = ? AND state = 'queued'", (time.time(), job_id)).rowcount
            if updated:
                return self.get(job_id)
            job = self.get(job_id)  # a worker took it a moment ago
        if job.state != "running":
            raise JobError(Problem("cannot_cancel",
                                   "Job {job} is {state}; only queued or running jobs can be cancelled.",
                                   job=job_id, state=job.state))
        self._execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        if job.pid:
            signal_group(job.pid, job.pid_start, signal.SIGTERM)
        return self.get(job_id)

    @_storage_said
    def resume(self, job_id: str) -> Job:
        """Queue an interrupted, cancelled or failed job again; it continues from its last checkpoint."""
        job = self.get(job_id)
        updated = self._execute(
            "UPDATE jobs SET state = 'queued', error = NULL, error_problem = NULL, exit_status = NULL, "
            "cancel_requested = 0, pid = NULL, pid_start = NULL, finished = NULL "
            f"WHERE id = ? AND state IN ({','.join('?' * len(RESUMABLE))})",
            (job_id, *RESUMABLE)).rowcount
        if not updated:
            raise JobError(Problem("cannot_resume",
                                   "Job {job} is {state}; only an interrupted, cancelled or failed job can be resumed.",
                                   job=job_id, state=job.state))
        return self.get(job_id)

    @_storage_said
    def delete(self, job_id: str) -> None:
        """Remove a job and its folder (checkpoints included). Refused while it runs."""
        job = self.get(job_id)
        deleted = self._execute("DELETE FROM jobs WHERE id = ? AND state != 'running'", (job_id,)).rowcount
        if not deleted:
            raise JobError(Problem("cannot_delete", "Job {job} is running; cancel it before deleting it.", job=job_id))
        shutil.rmtree(job.files.root, ignore_errors=True)

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        """Checkpoints of this job ready to load: each complete one, then the final adapter (or, for a full
        fine-tune with `full_language_model`, each a whole model folder, then the final model)."""
        files = self.get(job_id).files
        found = [Checkpoint(job_id, step, folder, False, read_json(folder / "metrics.json") or {})
                 for step, folder in ready_checkpoints(files)]
        final = next((folder for folder in (files.adapter, files.model) if is_adapter_dir(folder)
                      or is_model_dir(folder)), None)
        if final is not None:
            summary = read_json(final / "training.json") or {}
            found.append(Checkpoint(job_id, int(summary.get("step", 0)), final, True, summary))
        return found

    def metrics(self, job_id: str) -> list[dict]:
        return read_metrics(self.get(job_id).files.metrics)

    def log_tail(self, job_id: str, lines: int = 40) -> str:
        return tail_text(self.get(job_id).files.log, lines)

    # ---- what the worker calls ----

    def queued(self) -> list[Job]:
        """Queued jobs, oldest first (first come, first served)."""
        rows = self._execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY created").fetchall()
        return [_job(row) for row in rows]

    def claim(self, job_id: str, worker: str, device: str) -> bool:
        """Move a queued job to running for `worker`. Atomic: of two workers, exactly one wins."""
        return self._execute(
            "UPDATE jobs SET state = 'running', worker = ?, device = ?, started = ?, finished = NULL, "
            "error = NULL, error_problem = NULL, exit_status = NULL, pid = NULL, pid_start = NULL, "
            "attempts = attempts + 1 "
            "WHERE id = ? AND state = 'queued'", (worker, device, time.time(), job_id)).rowcount == 1

    def set_process(self, job_id: str, pid: int, pid_start: str | None) -> None:
        self._execute("UPDATE jobs SET pid = ?, pid_start = ? WHERE id = ?", (pid, pid_start, job_id))

    def set_progress(self, job_id: str, progress: dict) -> None:
        self._execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))

    def finish(self, job_id: str, state: str, error: str | None, exit_status: int | None) -> None:
        """`error`: a sentence, or a Problem, which is kept with its key and values so that the UI can
        say it in another language."""
        assert state in FINISHED, state
        problem = json.dumps(problem_to_json(error), ensure_ascii=False) if isinstance(error, Problem) else None
        self._execute("UPDATE jobs SET state = ?, error = ?, error_problem = ?, exit_status = ?, finished = ? "
                      "WHERE id = ? AND state = 'running'",
                      (state, error, problem, exit_status, time.time(), job_id))


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """A jobs.sqlite made by an older version lacks the newer columns; CREATE TABLE IF NOT EXISTS
    leaves its table as it was."""
    have = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
    if "error_problem" not in have:
        try:
            conn.execute("ALTER TABLE jobs ADD COLUMN error_problem TEXT")
        except sqlite3.OperationalError as err:  # the app and the worker opened it at the same moment
            if "duplicate column" not in str(err):
                raise


def _job(row: sqlite3.Row) -> Job:
    error = row["error"]
    if error is not None and row["error_problem"]:
        error = problem_from_json(json.loads(row["error_problem"]))
    return Job(
        id=row["id"], name=row["name"], spec=JobSpec.from_dict(json.loads(row["spec"])), state=row["state"],
        created=row["created"], started=row["started"], finished=row["finished"], device=row["device"],
        pid=row["pid"], pid_start=row["pid_start"], worker=row["worker"], error=error,
        exit_status=row["exit_status"], cancel_requested=bool(row["cancel_requested"]),
        attempts=row["attempts"], progress=json.loads(row["progress"]) if row["progress"] else None)


# ---- processes ----------------------------------------------------------------------------


def process_start(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, from /proc), or None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in (...) may contain spaces


def process_alive(pid: int | None, start: str | None) -> bool:
    """Is the process we started still there (and not a zombie, and not a new one with its pid)?"""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields_after_name = stat.rsplit(")", 1)[1].split()
    if fields_after_name[0] in ("Z", "X"):
        return False
    return start is None or fields_after_name[19] == start


def signal_group(pid: int, pid_start: str | None, signum: int) -> bool:
    """Send `signum` to the process group led by `pid` (the training program and, under torchrun,
    its workers). Returns False when the process is gone already."""
    if not process_alive(pid, pid_start):
        return False
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    return True
