"""What the Train tab shows, as plain data: job rows with progress, loss curves, log tails,
adapters ready to load, GPU memory. Everything is read from the job store and the job folders, so
a reloaded page (or a restarted app) shows exactly what a page that never closed would."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from backend.training.jobs import Checkpoint, Job, JobError, JobStore
from backend.training.spec import JobSpec


@dataclass(frozen=True)
class JobRow:
    id: str
    name: str
    state: str
    model: str
    device: str
    created: float
    step: int
    total_steps: int
    epoch: float
    samples_per_s: float | None
    eta_s: float | None
    loss: float | None
    gpu_mem_gb: float | None
    error: str
    spec: JobSpec  # the settings it runs with

    @property
    def fraction(self) -> float:
        """0..1 for a progress bar."""
        if self.state == "succeeded":
            return 1.0
        return self.step / self.total_steps if self.total_steps else 0.0

def job_row(job: Job) -> JobRow:
    p = job.progress or {}
    return JobRow(
        id=job.id, name=job.name or Path(job.spec.data_file).stem, state=job.state,
        model=Path(job.spec.model).name or job.spec.model, device=job.device or job.spec.device,
        created=job.created, step=int(p.get("step", 0)), total_steps=int(p.get("total_steps", 0)),
        epoch=float(p.get("epoch", 0.0)), samples_per_s=p.get("samples_per_s"), eta_s=p.get("eta_s"),
        loss=p.get("loss"), gpu_mem_gb=p.get("gpu_mem_gb"), error=job.error or "", spec=job.spec)


def job_status(row: JobRow) -> dict:
    """Where a job stands, as plain data for an API client: its state (queued, running, succeeded,
    failed, cancelled, interrupted), step of total_steps, epoch, the latest training loss, samples
    per second, seconds left (while running), the fraction done, and why it failed (English)."""
    return {"id": row.id, "name": row.name, "state": row.state, "step": row.step, "total_steps": row.total_steps,
            "epoch": row.epoch, "loss": row.loss, "samples_per_s": row.samples_per_s,
            "eta_s": row.eta_s if row.state == "running" else None, "fraction": row.fraction,
            "device": row.device, "error": str(row.error)}


def job_rows(store: JobStore) -> list[JobRow]:
    """Every job, newest first, with its latest progress."""
    return [job_row(job) for job in store.list()]


@dataclass(frozen=True)
class LossCurve:
    train: list[tuple[int, float]]  # (step, loss)
    eval: list[tuple[int, float]]  # (step, held-out loss)

    def rows(self) -> list[dict]:
        """Long format for a line plot: one row per point, `series` telling train from held-out."""
        return ([{"step": s, "loss": v, "series": "train"} for s, v in self.train]
                + [{"step": s, "loss": v, "series": "held-out"} for s, v in self.eval])


def loss_curve(store: JobStore, job_id: str) -> LossCurve:
    records = store.metrics(job_id)
    return LossCurve(train=[(r["step"], r["loss"]) for r in records if "loss" in r],
                     eval=[(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r])


@dataclass(frozen=True)
class AccuracyPoint:
    step: int
    accuracy: float
    questions: int
    eval_set: str
    trained_on: bool
    method: str  # how the choices were read: "letter" or "reply" (backend/evaluation/scoring.py)
    chance: float  # the accuracy of picking at random


def accuracy_curve(store: JobStore, job_id: str) -> list[AccuracyPoint]:
    """Each scored checkpoint's accuracy on the job's evaluation set, by step."""
    return [AccuracyPoint(r["step"], r["eval_accuracy"], r.get("eval_questions", 0), r.get("eval_set", ""),
                          bool(r.get("trained_on")), r.get("eval_method", "reply"), r.get("eval_chance", 0.0))
            for r in store.metrics(job_id) if "eval_accuracy" in r]


def best_point(points: list[AccuracyPoint]) -> AccuracyPoint | None:
    """The best accuracy, the earliest step on a tie (as the training program keeps it)."""
    return max(points, key=lambda p: (p.accuracy, -p.step)) if points else None


def log_tail(store: JobStore, job_id: str, lines: int = 40) -> str:
    return store.log_tail(job_id, lines)


def ready_adapters(store: JobStore) -> list[Checkpoint]:
    """Every checkpoint any job has ready to load in Chat and Compare (adapters, and a full fine-tune's
    whole models): newest job first, each job's final one before its intermediate ones (newest first)."""
    found: list[Checkpoint] = []
    for job in store.list():  # newest first
        try:
            found.extend(sorted(store.checkpoints(job.id), key=lambda c: (not c.final, -c.step)))
        except JobError:  # deleted meanwhile
            continue
    return found


@dataclass(frozen=True)
class GpuMemory:
    index: int
    name: str
    used_mb: int
    total_mb: int

    @property
    def text(self) -> str:
        return f"GPU {self.index} ({self.name}): {self.used_mb / 1024:.1f} / {self.total_mb / 1024:.1f} GB"


def gpu_memory() -> list[GpuMemory]:
    """Memory in use on each NVIDIA GPU (all processes), from nvidia-smi; [] without GPUs. Asking
    nvidia-smi rather than torch keeps the app from creating a CUDA context just to look."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.used,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            try:
                gpus.append(GpuMemory(int(parts[0]), parts[1], int(float(parts[2])), int(float(parts[3]))))
            except ValueError:
                continue
    return gpus


def age_text(when: float | None, now: float | None = None) -> str:
    if not when:
        return ""
    delta = int((now or time.time()) - when)
    if delta < 60:
        return f"{delta} s ago"
    if delta < 3600:
        return f"{delta // 60} min ago"
    return f"{delta // 3600} h ago"
