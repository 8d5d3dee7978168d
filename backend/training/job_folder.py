"""What a job folder holds: its files' names, the training program's exit statuses, the metrics
writer, and reading it all back. Shared by the training program (which writes), the job store and
worker (which read), and the UI helpers; imports nothing heavy.

    runs/jobs/<job-id>/
        spec.json            the job's spec, exactly as it ran
        train.log            the training program's output (stdout and stderr)
        metrics.jsonl        one JSON object per logged step (and per evaluation)
        result.json          how the last run of the program ended: succeeded / stopped / failed
        checkpoints/step-000040/   adapter_config.json + adapter_model.safetensors (a peft adapter
                                   as is; a full fine-tune's: a whole model folder as transformers
                                   saves it) + trainer_state.pt (optimizer, step, RNG) + metrics.json
        adapter/             the final adapter, peft's standard format
        merged/              base + adapter in one model folder (when the spec asks for it)
        model/               a full fine-tune's final model, a whole model folder (instead of adapter/)

Exports of a job's checkpoints go to <work folder>/exports/ (export.py), outside the job folder.

A checkpoint is written under a hidden temporary name and renamed when complete, so any folder
named step-NNNNNN is whole; a folder starting with "." is never offered.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Exit statuses of the training program (lora.py), read by the worker.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SPEC = 2
EXIT_STOPPED = 75  # sysexits' EX_TEMPFAIL, "try again later": stopped by a signal after saving; resumable

CHECKPOINT_RE = re.compile(r"^step-(\d{6,})$")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or an index of several
TRAINER_STATE = "trainer_state.pt"


@dataclass(frozen=True)
class JobFiles:
    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def model(self) -> Path:
        return self.root / "model"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def is_adapter_dir(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ADAPTER_FILES)


def is_model_dir(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in MODEL_WEIGHTS)


def ready_checkpoints(files: JobFiles) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first."""
    found = []
    if files.checkpoints.is_dir():
        for folder in files.checkpoints.iterdir():
            match = CHECKPOINT_RE.match(folder.name)
            if match and (is_adapter_dir(folder) or is_model_dir(folder)) and (folder / TRAINER_STATE).is_file():
                found.append((int(match.group(1)), folder))
    return sorted(found)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Metrics:
    """Appends one JSON object per line to metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            # Records past the checkpoint we resume from belong to steps that will run again.
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if _record_step(line) is not None and _record_step(line) <= resume_step]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(path)

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def _record_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def read_metrics(path: Path) -> list[dict]:
    """All records of metrics.jsonl; a half-written last line (the program is mid-write) is skipped."""
    records = []
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "step" in record:
                    records.append(record)
    except OSError:
        pass
    return records


def last_train_record(path: Path, window: int = 16_384) -> dict | None:
    """The newest training record (one with a loss), read from the end of the file: cheap to poll."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - window))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "loss" in record:
            return record
    return None


def clock(seconds: float) -> str:
    """h:mm:ss, for the log and the Train tab."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def tail_text(path: Path, lines: int = 40, window: int = 65_536) -> str:
    """The last `lines` lines of a text file (the log), read from the end."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - window))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    # Progress bars redraw their line with \r; show only each line's last state.
    kept = [line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")]
    return "\n".join(kept[-lines:])
