"""The background worker: takes queued jobs and runs the training program for each.

    python -m backend.training.worker --workdir runs                 # alone, e.g. on a multi-GPU server
    python -m backend.training.worker --workdir runs --gpus 0,1      # only these GPUs
    python -m backend.training.worker --workdir runs --gpus none     # CPU only

The app starts one as a child process (`spawn(workdir)`) and stops it with SIGTERM (`stop(proc)`).

- One job per free device: each GPU takes one job (a job may ask for several GPUs: it then runs
  under torchrun with DDP); the CPU takes one job at a time. Jobs start in the order they were queued,
  except one that waits for another (`after_job`: LLaVA's stage 2 for stage 1) until that one succeeds.
- Each training program runs in its OWN process group (start_new_session), with CUDA_VISIBLE_DEVICES
  naming its GPUs and stdout/stderr going to the job's train.log: never a pipe, which would block
  the program once nobody reads it. Cancel signals that whole group.
- How a run ended comes from its exit status and the result.json it writes; a process killed
  outright (SIGKILL, the OOM killer) leaves none and its job becomes "interrupted", ready to resume.
- Restarts: the training processes outlive the worker (their own sessions). A worker that starts
  finds the jobs marked running: those whose process is still alive are adopted and watched to the
  end; those whose process is gone become "interrupted".
- One worker per work folder: it holds an exclusive lock on <workdir>/worker.lock; a second one
  waits for the lock (taking over when the first exits). Claims are also atomic in SQLite, so even
  two workers that did not share the lock could never start the same job twice.
- By default, stopping the worker leaves running trainings running (the next worker adopts them);
  with --stop-jobs-on-exit it asks them to save and stop (they become "interrupted").
- Storage errors (a full disk: "database or disk is full", ENOSPC; a disk gone read-only) never end
  the worker: it logs them, waits (1, 2, 4 ... 30 s) and tries the round again. How a job ended is
  decided once, when its process is seen to end, and kept until the store takes it, so a job that
  died of a full disk is still said to have, once space is freed and its row can be written.
- The app runs its worker under a supervisor (supervisor.py), which restarts it within seconds
  when it exits; with --status-fd the worker tells the supervisor how it is (serving, waiting for
  another worker's lock, or stuck on storage) over a pipe, which needs no disk.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from backend.problems import Problem, problem_from_json
from backend.training.job_folder import (
    EXIT_BAD_SPEC,
    EXIT_STOPPED,
    last_train_record,
    read_json,
    ready_checkpoints,
    tail_text,
)
from backend.training.jobs import Job, JobError, JobStore, process_alive, process_start, signal_group
from backend.training.qlora import qlora_shortfall
from backend.training.spec import JobSpec

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CPU_SLOT = "cpu"
# The program's own error lines: "12:00:01 E error: <sentence>", or "error: <sentence>" for a bad spec.
ERROR_LINE = re.compile(r"^(?:\d\d:\d\d:\d\d E )?error: (.+)$")
PROGRESS_KEYS = ("step", "total_steps", "epoch", "loss", "lr", "samples_per_s", "tokens_per_s", "eta_s",
                 "elapsed_s", "gpu_mem_gb", "time")
# What a full or broken disk raises here: SQLite's "database or disk is full" / "disk I/O error" (and
# "database is locked" past its 30 s wait), and OSError (ENOSPC, EROFS, EIO) from the files we write.
STORAGE_ERRORS = (sqlite3.DatabaseError, OSError)
MAX_BACKOFF_S = 30.0


@dataclass
class Running:
    job_id: str
    pid: int
    pid_start: str | None
    slots: tuple[str, ...]  # "cpu" or GPU ids
    proc: subprocess.Popen | None  # None for a process adopted from an earlier worker
    last_progress: dict | None = None
    cancel_passed_on: bool = False
    ending: tuple[str, str | None, int | None] | None = None  # (state, error, exit status) once it ended


def visible_gpus(choice: str = "auto") -> list[str]:
    """GPU ids the worker may hand out: 'auto' (every NVIDIA GPU, as nvidia-smi lists them),
    'none', or ids like '0,1'. nvidia-smi rather than torch: the worker stays light and never
    creates a CUDA context of its own."""
    if choice == "none":
        return []
    if choice != "auto":
        return [part.strip() for part in choice.split(",") if part.strip()]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:  # keep the ids the worker was given, so children see the same physical GPUs
        return [part.strip() for part in env.split(",") if part.strip() and part.strip() != "-1"]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]


def wants_gpu(spec: JobSpec, gpus: list[str]) -> bool:
    """Whether a worker with `gpus` runs this job on GPUs ("auto" takes them when there are any)."""
    return spec.device == "cuda" or (spec.device == "auto" and bool(gpus))


def gpu_shortfall(spec: JobSpec, gpus: list[str]) -> Problem | None:
    """Why a worker with `gpus` could never run this job, or None (it runs now, or once GPUs are free)."""
    if not wants_gpu(spec, gpus) or len(gpus) >= spec.gpus:
        return None
    if not gpus:
        return Problem("no_gpus_for_jobs", "This job is set to train on a GPU (Device: cuda), but the training "
                       "worker sees no GPU on this machine; set Device to cpu or auto.")
    return Problem("worker_lacks_gpus", "This job asks for {wanted} GPUs, but the training worker has {have}; "
                   "set GPUs to {have} or fewer.", wanted=spec.gpus, have=len(gpus))


def waiting_for(store: JobStore, job: Job) -> Job | None:
    """The job this one waits for (spec.after_job) while that one has not succeeded, else None. A job
    deleted meanwhile is waited for no longer: this one starts and says what it misses."""
    if not job.spec.after_job:
        return None
    try:
        first = store.get(job.spec.after_job)
    except JobError:
        return None
    return None if first.state == "succeeded" else first


class Worker:
    def __init__(self, store: JobStore, gpus: list[str], poll_s: float = 0.5,
                 stop_jobs_on_exit: bool = False, exit_with_parent: bool = False,
                 status_fd: int | None = None) -> None:
        self.store, self.gpus, self.poll_s = store, gpus, poll_s
        self.stop_jobs_on_exit = stop_jobs_on_exit
        self.parent = os.getppid() if exit_with_parent else None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.running: dict[str, Running] = {}
        self.stopping = False
        self._lock_handle = None
        self.status_fd = status_fd
        self._said: dict | None = None
        if status_fd is not None:
            os.set_blocking(status_fd, False)  # a supervisor that stops reading must never stop the worker

    def tell(self, state: str, **details) -> None:
        """Say how the worker is to the supervisor (a JSON line on the status pipe), when it changes."""
        message = {"state": state, **details}
        if self.status_fd is None or message == self._said:
            return
        try:
            os.write(self.status_fd, (json.dumps(message) + "\n").encode())
            self._said = message
        except OSError:  # nobody reads (the supervisor is gone), or the pipe is full: say it next time
            pass

    # ---- life cycle ----

    def serve(self) -> None:
        """Hold the work folder's lock, recover, then run jobs until asked to stop."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._ask_to_stop)
        if not self._take_lock():
            return
        log.info("worker %s serving %s on %s", self.name, self.store.workdir,
                 ", ".join(["cpu"] + [f"cuda:{g}" for g in self.gpus]))
        recovered, backoff = False, 0.0
        while not self.stopping:
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                self.tick()
            except STORAGE_ERRORS as err:
                backoff = min(MAX_BACKOFF_S, max(1.0, 2 * backoff))
                log.warning("storage error (%s: %s); trying again in %.0f s", type(err).__name__, err, backoff)
                self.tell("storage", detail=storage_words(err), retry_s=backoff)
                self._sleep(backoff)
                continue
            if backoff:
                log.info("storage works again")
                backoff = 0.0
            self.tell("serving")
            if self.parent is not None and os.getppid() != self.parent:
                log.info("the app that started this worker is gone; stopping")
                break
            time.sleep(self.poll_s)
        self.shutdown()

    def _sleep(self, seconds: float) -> None:
        """Wait, but not past a stop request or the parent's end."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            if self.parent is not None and os.getppid() != self.parent:
                return
            time.sleep(min(self.poll_s, 0.5))

    def _ask_to_stop(self, signum, frame) -> None:
        self.stopping = True

    def _take_lock(self) -> bool:
        path = self.store.workdir / "worker.lock"
        handle = path.open("a+")
        said = False
        while not self.stopping:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    handle.seek(0)
                    holder = handle.read().strip() or "?"
                    log.info("another worker (%s) serves %s; waiting to take over", holder, self.store.workdir)
                    self.tell("waiting", holder=holder)
                    said = True
                time.sleep(1.0)
                continue
            self._lock_handle = handle  # the lock lives as long as this handle stays open
            try:  # the holder's name, for a worker that waits; a full disk may refuse it, the lock holds
                handle.seek(0)
                handle.truncate()
                handle.write(self.name)
                handle.flush()
            except OSError as err:
                log.warning("could not write the worker's name into %s: %s", path, err)
            return True
        handle.close()
        return False

    def shutdown(self) -> None:
        if self.stop_jobs_on_exit and self.running:
            log.info("asking %d training job(s) to save and stop", len(self.running))
            for run in self.running.values():
                signal_group(run.pid, run.pid_start, signal.SIGTERM)
            deadline = time.time() + 120
            while self.running and time.time() < deadline:
                self.tick(start_new=False)
                time.sleep(self.poll_s)
        elif self.running:
            log.info("leaving %d training job(s) running; the next worker adopts them", len(self.running))
        log.info("worker %s stopped", self.name)

    # ---- one round: watch, then start ----

    def recover(self) -> None:
        """Jobs marked running by an earlier worker: adopt the live ones, close the dead ones."""
        for job in self.store.list(("running",)):
            if job.id in self.running:
                continue
            if job.pid is None and job.started and time.time() - job.started < 30:
                continue  # just claimed by a worker that is starting its process right now
            if process_alive(job.pid, job.pid_start):
                slots = self._slots_of(job)
                self.running[job.id] = Running(job.id, job.pid, job.pid_start, slots, None)
                log.info("adopted running job %s (pid %d)", job.id, job.pid)
            else:
                self._finish(job, exit_status=None)

    def tick(self, start_new: bool = True) -> None:
        for job_id, run in list(self.running.items()):
            ended = run.ending is not None or (run.proc.poll() is not None if run.proc
                                               else not process_alive(run.pid, run.pid_start))
            job = self.store.get(job_id)
            if ended:
                if run.ending is None:  # decided once, while the evidence (result.json, the disk) is fresh
                    exit_status = run.proc.returncode if run.proc else None
                    run.ending = (*outcome(job, exit_status), exit_status)
                    with _storage_may_fail():
                        self._update_progress(run, job)
                state, error, exit_status = run.ending
                self.store.finish(job.id, state, error, exit_status)  # a full disk: tried again next round
                log.info("job %s %s%s", job.id, state, f": {str(error)!r}" if error else "")
                del self.running[job_id]
            else:
                self._update_progress(run, job)
                if job.cancel_requested and not run.cancel_passed_on:
                    # Covers a cancel that came between our claim and the pid being recorded.
                    signal_group(run.pid, run.pid_start, signal.SIGTERM)
                    run.cancel_passed_on = True
        if start_new and not self.stopping:
            self.recover()  # a job marked running whose process is gone (e.g. another worker died)
            self._start_queued()

    def _start_queued(self) -> None:
        busy = {slot for run in self.running.values() for slot in run.slots}
        for job in self.store.queued():
            if waiting_for(self.store, job):
                continue  # LLaVA's stage 2 until stage 1 has succeeded (two_stage.py)
            shortfall = gpu_shortfall(job.spec, self.gpus) or qlora_shortfall(job.spec, self.gpus)
            if shortfall:  # queued some other way than the Train tab, which refuses these at once
                if self.store.claim(job.id, self.name, "none"):
                    self.store.finish(job.id, "failed", shortfall, None)
                continue
            free = [g for g in self.gpus if g not in busy]
            if wants_gpu(job.spec, self.gpus):
                if len(free) < job.spec.gpus:
                    continue  # waits for GPUs; later jobs that fit may still start
                slots = tuple(free[: job.spec.gpus])
            else:
                if CPU_SLOT in busy:
                    continue
                slots = (CPU_SLOT,)
            device = "cpu" if slots == (CPU_SLOT,) else "cuda:" + ",".join(slots)
            if not self.store.claim(job.id, self.name, device):
                continue  # cancelled, deleted or taken meanwhile
            self._start(self.store.get(job.id), slots)
            busy.update(slots)

    def _start(self, job: Job, slots: tuple[str, ...]) -> None:
        files = job.files
        files.result.unlink(missing_ok=True)
        program = ["-m", "backend.training.lora", str(files.spec)]
        if len(slots) > 1:
            program = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={len(slots)}"] + program
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   CUDA_VISIBLE_DEVICES="" if slots == (CPU_SLOT,) else ",".join(slots),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
        try:
            with files.log.open("ab") as log_file:
                log_file.write(f"\n===== attempt {job.attempts} of job {job.id} on {job.device}, "
                               f"{time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
                log_file.flush()
                proc = subprocess.Popen([sys.executable, *program], cwd=PROJECT_ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # its own group: cancel signals all of it
        except OSError as err:  # a full disk (the log), a vanished folder: the job cannot start
            log.warning("job %s could not start: %s", job.id, err)
            self.store.finish(job.id, "failed", Problem(
                "job_unstartable", "The training process could not be started ({detail}). If the disk holding "
                "{folder} is full, free some space, then resume the job.", detail=storage_words(err),
                folder=str(files.root)), None)
            return
        start = process_start(proc.pid)
        self.store.set_process(job.id, proc.pid, start)
        self.running[job.id] = Running(job.id, proc.pid, start, slots, proc)
        log.info("started job %s on %s (pid %d)", job.id, job.device, proc.pid)

    def _slots_of(self, job: Job) -> tuple[str, ...]:
        if not job.device or job.device == "cpu":
            return (CPU_SLOT,)
        return tuple(job.device.removeprefix("cuda:").split(","))

    def _update_progress(self, run: Running, job: Job) -> None:
        record = last_train_record(job.files.metrics)
        if record and record != run.last_progress:
            self.store.set_progress(job.id, {k: record[k] for k in PROGRESS_KEYS if k in record})
            run.last_progress = record

    # ---- how did it end? ----

    def _finish(self, job: Job, exit_status: int | None) -> None:
        state, error = outcome(job, exit_status)
        self.store.finish(job.id, state, error, exit_status)
        log.info("job %s %s%s", job.id, state, f": {str(error)!r}" if error else "")


def outcome(job: Job, exit_status: int | None) -> tuple[str, str | None]:
    """The job's final state and, unless it succeeded, a sentence saying why and what next.

    result.json (written by the program as it exits) is believed first; without one the process
    died without a chance to say anything, and its exit status (or its absence) tells the rest."""
    files = job.files
    result = read_json(files.result)
    checkpoints = ready_checkpoints(files)
    resume = (Problem("resume_from_step", "Resume continues from step {step}.", step=checkpoints[-1][0])
              if checkpoints else
              Problem("resume_from_start", "No checkpoint was saved yet, so resume starts from the beginning."))
    if result and result.get("status") == "succeeded":
        return "succeeded", None
    if result and result.get("status") == "stopped":
        if job.cancel_requested:
            return "cancelled", Problem("cancelled", "Cancelled. {resume}", resume=resume)
        return "interrupted", Problem("stopped_by_signal", "Stopped by a signal (the worker or the machine shutting "
                                      "down). {resume}", resume=resume)
    if result and result.get("status") == "failed":
        if result.get("problem"):
            return "failed", problem_from_json(result["problem"])
        return "failed", result.get("error") or Problem("failed_see_log", "Training failed; see the log.")
    if job.cancel_requested:
        return "cancelled", Problem("cancelled", "Cancelled. {resume}", resume=resume)
    if exit_status is not None and exit_status < 0:
        return "interrupted", Problem("process_killed", "The training process was killed ({signal}). {resume}",
                                      signal=signal.Signals(-exit_status).name, resume=resume)
    if exit_status is None:
        return "interrupted", Problem("process_unwatched", "The training process ended while no worker was "
                                      "watching it (the app or machine restarted). {resume}", resume=resume)
    if exit_status == 0:
        return "failed", Problem("ended_silently", "The training process ended without saying how; see the log.")
    last_lines = [line for line in tail_text(files.log, 30).splitlines() if line.strip()]
    said = next((match.group(1) for line in reversed(last_lines) if (match := ERROR_LINE.search(line))), None)
    if said:
        return "failed", said
    if _disk_nearly_full(files.root):
        return "failed", Problem("disk_full_exit", "The training process stopped (exit status {status}) and the disk "
                                 "holding {folder} is full. Free some space, then resume the job.",
                                 status=exit_status, folder=str(files.root))
    if exit_status == EXIT_BAD_SPEC:
        return "failed", Problem("spec_unreadable", "The job's spec could not be read; see the log.")
    if exit_status == EXIT_STOPPED:
        return "interrupted", Problem("stopped", "Stopped. {resume}", resume=resume)
    return "failed", Problem("process_failed", "The training process failed (exit status {status}): {tail}",
                             status=exit_status, tail=last_lines[-1] if last_lines else "no output")


def storage_words(err: BaseException) -> str:
    """A storage error in a few words: "No space left on device", "database or disk is full"."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.strerror or os.strerror(err.errno)
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


@contextlib.contextmanager
def _storage_may_fail():
    """A write whose failure only costs freshness (a progress line): logged, not raised."""
    try:
        yield
    except STORAGE_ERRORS as err:
        log.warning("could not record progress: %s", err)


def _disk_nearly_full(folder: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(folder).free < 16 * 2**20
    except OSError:
        return False


# ---- for the app ----------------------------------------------------------------------------


def spawn(workdir: Path, gpus: str = "auto", stop_jobs_on_exit: bool = False,
          log_file: Path | None = None, status_fd: int | None = None) -> subprocess.Popen:
    """Start a worker as a child of the calling process (the app). It exits when its parent does,
    so a killed app leaves no stray worker (its training jobs keep running and are adopted later).
    `status_fd`: the write end of a pipe the worker tells its state on (supervisor.py). Its log is
    opened for appending; where that fails (a full disk may refuse even that), the worker's output
    is dropped rather than the worker not started."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = log_file or workdir / "worker.log"
    args = [sys.executable, "-m", "backend.training.worker", "--workdir", str(workdir), "--gpus", gpus,
            "--exit-with-parent"]
    if stop_jobs_on_exit:
        args.append("--stop-jobs-on-exit")
    if status_fd is not None:
        args += ["--status-fd", str(status_fd)]
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
    try:
        handle = log_file.open("ab")
    except OSError:
        handle = open(os.devnull, "wb")  # noqa: SIM115 (closed below, once the child has it)
    with handle:
        return subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                                stderr=subprocess.STDOUT, pass_fds=(status_fd,) if status_fd is not None else ())


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Ask a spawned worker to stop (SIGTERM), waiting up to `timeout_s` before killing it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Foodie Studio's queued training jobs.")
    parser.add_argument("--workdir", type=Path, default=Path("runs"), help="the work folder (default: runs)")
    parser.add_argument("--gpus", default="auto", help="auto, none, or GPU ids like 0,1 (default: auto)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks at the queue")
    parser.add_argument("--stop-jobs-on-exit", action="store_true",
                        help="on SIGTERM/SIGINT, ask running jobs to save and stop (default: leave them running)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one exits (used by the app)")
    parser.add_argument("--status-fd", type=int, help="a pipe to report the worker's state on (used by the app)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s worker: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stdout)
    worker = None
    backoff = 0.0
    while worker is None:  # the job store itself may not open on a full disk: wait for it, as for any storage
        try:
            store = JobStore(args.workdir)
            worker = Worker(store, visible_gpus(args.gpus), args.poll, args.stop_jobs_on_exit, args.exit_with_parent,
                            args.status_fd)
        except STORAGE_ERRORS as err:
            backoff = min(MAX_BACKOFF_S, max(1.0, 2 * backoff))
            log.warning("cannot open the job store (%s); trying again in %.0f s", err, backoff)
            time.sleep(backoff)
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
