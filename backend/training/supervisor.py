"""The app's training worker, kept alive: started with the app, restarted within seconds whenever it
exits (killed, crashed, out of memory), and asked how it is, so the Train tab can say plainly when no
worker runs and why.

    supervisor = Supervisor(workdir)     # app.py
    supervisor.start()
    supervisor.status()                  # WorkerStatus, for the Train tab (ui/train.py)
    supervisor.stop()                    # SIGTERM to the worker; its trainings keep running

A restarted worker adopts the jobs the last one held, as after an app restart (worker.py:
Worker.recover): a training still running is watched to its end, one that ended meanwhile is marked
by its result.json. A worker that keeps dying young (it ran under `YOUNG_S`) is restarted after
1, 2, 4 ... up to `MAX_DELAY_S` seconds, so a worker that cannot start does not spin; one that had
run for a while is restarted at once.

The worker tells its state (serving, waiting for another worker's lock, stuck on storage) over a
pipe (worker.py: --status-fd), which works when the disk is full and its log cannot be written.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from backend.problems import Problem
from backend.training import worker as worker_module

log = logging.getLogger(__name__)

POLL_S = 0.25
YOUNG_S = 10.0  # a worker that exits sooner than this after its start counts as failing to start
MAX_DELAY_S = 30.0


@dataclass(frozen=True)
class WorkerStatus:
    running: bool
    pid: int | None  # the worker process, while one runs
    state: str  # "serving", "starting", "waiting" (another worker holds the lock), "storage", "down", "stopped"
    restarts: int  # how many times the worker was started again
    last_exit: Problem | None  # how the last worker ended ("it was killed (SIGKILL)")
    last_exit_at: float | None  # when (time.time())
    restart_in_s: float | None  # while down: seconds until the next start
    detail: str = ""  # "storage": what fails; "waiting": who holds the lock
    retry_s: float | None = None  # "storage": the worker's next try


def exit_reason(status: int) -> Problem:
    """How a process ended, from its Popen return code, as a clause for a sentence."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return Problem("worker_killed", "it was killed ({signal})", signal=name)
    return Problem("worker_exited", "it exited with status {status}", status=status)


class Supervisor:
    def __init__(self, workdir: Path, gpus: str = "auto", log_file: Path | None = None) -> None:
        self.workdir, self.gpus, self.log_file = Path(workdir), gpus, log_file
        self.proc: subprocess.Popen | None = None
        self._started_at = 0.0
        self._restarts = 0
        self._young_exits = 0
        self._last_exit: Problem | None = None
        self._last_exit_at: float | None = None
        self._next_start = 0.0
        self._said: dict = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- life cycle ----

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop watching and ask the worker to stop (SIGTERM); trainings keep running for the next one."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            proc = self.proc
        if proc is not None:
            worker_module.stop(proc, timeout_s)

    # ---- what the Train tab shows ----

    def status(self) -> WorkerStatus:
        with self._lock:
            proc, said = self.proc, dict(self._said)
            running = proc is not None and proc.poll() is None
            if self._stopping.is_set():
                state = "stopped"
            elif not running:
                state = "down"
            else:
                state = said.get("state", "starting")
            detail = said.get("detail") or said.get("holder") or ""
            return WorkerStatus(
                running=running, pid=proc.pid if running else None, state=state, restarts=self._restarts,
                last_exit=self._last_exit, last_exit_at=self._last_exit_at,
                restart_in_s=None if running or state == "stopped" else max(0.0, self._next_start - time.monotonic()),
                detail=str(detail), retry_s=said.get("retry_s") if state == "storage" else None)

    # ---- the watch ----

    def _spawn(self) -> None:
        read_end, write_end = os.pipe()
        try:
            proc = worker_module.spawn(self.workdir, self.gpus, log_file=self.log_file, status_fd=write_end)
        except OSError as err:  # no memory for a process, a work folder gone: try again later
            os.close(read_end)
            with self._lock:
                self.proc = None
                self._note_exit(Problem("worker_unstartable", "it could not be started ({detail})",
                                        detail=err.strerror or str(err)), young=True)
            log.warning("the training worker could not be started: %s", err)
            return
        finally:
            os.close(write_end)  # the worker holds its own copy; EOF here means it is gone
        with self._lock:
            self.proc, self._said, self._started_at = proc, {}, time.monotonic()
        threading.Thread(target=self._listen, args=(proc, read_end), name="worker-status", daemon=True).start()
        log.info("training worker started (pid %d)", proc.pid)

    def _listen(self, proc: subprocess.Popen, read_end: int) -> None:
        """The worker's status lines, until its end of the pipe closes."""
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                with self._lock:
                    if self.proc is proc and isinstance(message, dict):
                        self._said = message

    def _note_exit(self, reason: Problem, young: bool) -> None:
        """Record an exit and when to start again (the caller holds the lock)."""
        self._last_exit, self._last_exit_at = reason, time.time()
        self._young_exits = self._young_exits + 1 if young else 0
        delay = 0.0 if not self._young_exits else min(MAX_DELAY_S, 2.0 ** (self._young_exits - 1))
        self._next_start = time.monotonic() + delay

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_S):
            with self._lock:
                proc = self.proc
                if proc is not None and proc.poll() is not None:
                    lived = time.monotonic() - self._started_at
                    self._note_exit(exit_reason(proc.returncode), young=lived < YOUNG_S)
                    self.proc = None
                    log.warning("the training worker (pid %d) stopped: %s after %.0f s; starting another%s",
                                proc.pid, self._last_exit, lived,
                                f" in {self._next_start - time.monotonic():.0f} s" if self._young_exits else "")
                due = self.proc is None and time.monotonic() >= self._next_start
            if due and not self._stopping.is_set():
                with self._lock:
                    self._restarts += 1
                self._spawn()
