"""Checkpoints: written atomically, pruned, resumed with the same schedule; and the final adapter.

A checkpoint is the adapter exactly as peft saves it (so the folder loads as an adapter as is),
plus trainer_state.pt (optimizer state, step, epoch, random state, the spec) and metrics.json.
trainer_state.pt holds plain data only, read back with torch.load(weights_only=True).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path

import torch

from backend.disk import RESERVE_BYTES, free_bytes, human_size, space_problem, tree_size
from backend.problems import Problem
from backend.training.errors import TrainingError
from backend.training.job_folder import TRAINER_STATE, JobFiles, checkpoint_name, ready_checkpoints
from backend.training.processes import Dist
from backend.training.spec import JobSpec

log = logging.getLogger("foodie.train")

# Spec fields that fix the schedule. Resuming with any of them changed would silently train a
# different run than the checkpoint belongs to, so it is refused.
SCHEDULE_FIELDS = ("model", "data_file", "lora_r", "lora_alpha", "target_modules", "learning_rate",
                   "lr_schedule", "warmup_ratio", "epochs", "batch_size", "grad_accum", "seed", "gpus")


def is_disk_full(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen)
        # safetensors (Rust) and torch.save report a full disk as text, not as an OSError.
        if "No space left" in text or "StorageFull" in text or "os error 28" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    """Make a checkpoint durable before it is renamed into view (a power cut must not leave a
    complete-looking folder of empty files)."""
    for path in folder.iterdir():
        if path.is_dir():
            _fsync_tree(path)
            continue
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_bytes(model, files: JobFiles) -> int:
    """About how much a checkpoint takes: the newest one's size, or before the first, the trainable
    weights three times (the adapter, and AdamW's two moments of each weight) and a little more."""
    ready = ready_checkpoints(files)
    if ready:
        return tree_size(ready[-1][1])
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return 3 * trainable + 2**20


def _disk_full(files: JobFiles, name: str, needed: int, free: int | None) -> TrainingError:
    return TrainingError(
        "disk_full_checkpoint", "The disk holding {folder} is full: checkpoint {name} could not be saved (it needs "
        "about {needed}, and {free} is free), and nothing half-written was kept. Free some space (or keep fewer "
        "checkpoints), then resume the job.", folder=files.root, name=name, needed=human_size(needed + RESERVE_BYTES),
        free=human_size(free or 0))


def save_checkpoint(model, optimizer, files: JobFiles, spec: JobSpec, step: int, epoch: float,
                    summary: dict, keep_last: int, keep: int | None = None) -> Path:
    """Write checkpoints/step-NNNNNN atomically: into a hidden folder, fsync, rename. The free space
    is checked first; on any failure the hidden folder is removed, so no half checkpoint is ever
    offered; a full disk becomes a sentence that says how much is needed. Then prune to the newest
    `keep_last`, and the checkpoint of step `keep` (the best so far)."""
    final = files.checkpoints / checkpoint_name(step)
    partial = files.checkpoints / f".{final.name}.partial"
    needed = checkpoint_bytes(model, files)
    free = free_bytes(files.root)
    if free is not None and needed + RESERVE_BYTES > free:
        raise _disk_full(files, final.name, needed, free)
    try:
        files.checkpoints.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        model.save_pretrained(partial)  # adapter_config.json + adapter_model.safetensors
        torch.save({"step": step, "epoch": epoch, "optimizer": optimizer.state_dict(),
                    "rng": rng_state(), "spec": spec.to_dict()}, partial / TRAINER_STATE)
        (partial / "metrics.json").write_text(json.dumps({"step": step, "epoch": epoch, **summary}),
                                              encoding="utf-8")
        _fsync_tree(partial)
        if final.exists():  # left by a run that died right after saving this same step
            shutil.rmtree(final)
        os.rename(partial, final)
    except BaseException as err:
        shutil.rmtree(partial, ignore_errors=True)
        if is_disk_full(err):
            raise _disk_full(files, final.name, needed, free_bytes(files.root)) from err
        raise
    for old_step, old in ready_checkpoints(files)[:-keep_last]:
        if old_step != keep:
            shutil.rmtree(old, ignore_errors=True)
    log.info("saved checkpoint %s", final.name)
    return final


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomically(target: Path, write, needed: int, room: Path, what: Problem, full: Problem) -> None:
    """`write(partial)` makes a folder (or a file) at a hidden name beside `target`, which is made
    durable and renamed to `target` (replacing one there) once whole. Refused first with a sentence
    when the disk holding `room` lacks `needed` bytes (`what` names the write in it); on any failure
    the partial is removed, and a full disk met midway is `full`. Either raises TrainingError."""
    partial = target.with_name(f".{target.name}.partial")
    _remove(partial)
    short = space_problem(room, needed, what)
    if short:
        raise TrainingError(short)
    try:
        write(partial)
        if partial.is_dir():
            _fsync_tree(partial)
        else:
            with partial.open("rb") as handle:
                os.fsync(handle.fileno())
        if target.exists():
            _remove(target)
        os.rename(partial, target)
    except BaseException as err:
        _remove(partial)
        if is_disk_full(err):
            raise TrainingError(full) from err
        raise


def save_final(model, processor, files: JobFiles, spec: JobSpec, summary: dict) -> None:
    """adapter/ (peft's standard format) and, when asked, merged/ (a full transformers model)."""

    def write_final(target: Path, write, needed: int) -> None:
        write_atomically(target, write, needed, files.root,
                         Problem("space_final", "The final {name}", name=target.name),
                         Problem("disk_full_final", "The disk holding {folder} is full: the final {name} could not be "
                                 "saved. Free some space, then resume the job.", folder=files.root, name=target.name))

    def write_adapter(folder: Path) -> None:
        model.save_pretrained(folder)
        (folder / "training.json").write_text(json.dumps({"base_model": spec.model, **summary}), encoding="utf-8")

    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    write_final(files.adapter, write_adapter, trainable + 2**20)
    log.info("saved the final adapter to %s", files.adapter)
    if spec.merge:
        def write_merged(folder: Path) -> None:
            merged = model.merge_and_unload()  # folds B @ A * scale into the base weights
            merged.config.use_cache = True
            merged.save_pretrained(folder)
            processor.save_pretrained(folder)
        whole = sum(p.numel() * p.element_size() for p in model.parameters())
        write_final(files.merged, write_merged, whole + 2**20)
        log.info("saved the merged model to %s", files.merged)


def resume(folder: Path, spec: JobSpec, peft_model, optimizer, device) -> int:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    # weights_only: tensors, numbers, strings and containers of them, nothing else. That is all a
    # checkpoint holds (AdamW's state, the step, Python's and torch's random state as a tuple of ints
    # and a byte tensor, the spec as plain JSON values), and a pickle planted in the work folder can
    # run no code here.
    try:
        state = torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise TrainingError("checkpoint_unsafe", "Checkpoint {name} cannot be read as plain data ({detail}); "
                            "delete that checkpoint folder to resume from an earlier one, or start a new job.",
                            name=folder.name, detail=str(err).splitlines()[0][:200]) from err
    changed = [name for name in SCHEDULE_FIELDS if state["spec"].get(name) != getattr(spec, name)]
    if changed:
        raise TrainingError("checkpoint_settings", "Checkpoint {name} was made with different settings "
                            "({settings}), so it cannot be continued with these; start a new job instead.",
                            name=folder.name, settings=", ".join(changed))
    set_peft_model_state_dict(peft_model, load_file(folder / "adapter_model.safetensors", device=str(device)))
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    log.info("resumed from checkpoint %s (step %d, epoch %.2f)", folder.name, state["step"], state["epoch"])
    return int(state["step"])


def save(peft_model, optimizer, files, spec, step, epoch, summary, dist: Dist, keep: int | None = None) -> None:
    """A checkpoint of this step, written by rank 0 while the other ranks wait (`keep`: a step whose
    checkpoint pruning leaves alone)."""
    if dist.is_main:
        save_checkpoint(peft_model, optimizer, files, spec, step, epoch, summary, spec.keep_last, keep)
    if dist.world > 1:
        torch.distributed.barrier()  # nobody races ahead (or exits) while rank 0 writes

