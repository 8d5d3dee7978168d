"""Checkpoints: written atomically, pruned, resumed with the same schedule; and the final adapter.

A checkpoint is the adapter exactly as peft saves it (so the folder loads as an adapter as is),
plus trainer_state.pt (optimizer state, step, epoch, random state, the spec) and metrics.json.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import shutil
from pathlib import Path

import torch

from backend.training.errors import TrainingError
from backend.training.job_folder import TRAINER_STATE, JobFiles, checkpoint_name, ready_checkpoints
from backend.training.processes import Dist
from backend.training.spec import JobSpec

log = logging.getLogger("foodie.train")

# Spec fields that fix the schedule. Resuming with any of them changed would silently train a
# different run than the checkpoint belongs to, so it is refused.
SCHEDULE_FIELDS = ("model", "data_file", "lora_r", "lora_alpha", "target_modules", "trains", "qlora",
                   "projector_from", "learning_rate", "lr_schedule", "warmup_ratio", "epochs", "batch_size",
                   "grad_accum", "seed", "gpus")


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
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(model, optimizer, files: JobFiles, spec: JobSpec, step: int, epoch: float,
                    summary: dict, keep_last: int) -> Path:
    """Write checkpoints/step-NNNNNN atomically: into a hidden folder, fsync, rename. On any failure
    the hidden folder is removed, so no half checkpoint is ever offered; a full disk becomes a
    sentence. Then prune to the newest `keep_last`."""
    final = files.checkpoints / checkpoint_name(step)
    partial = files.checkpoints / f".{final.name}.partial"
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
            raise TrainingError(
                "disk_full_checkpoint", "The disk holding {folder} is full: checkpoint {name} could not be "
                "saved, and nothing half-written was kept. Free some space (or keep fewer checkpoints), then "
                "resume the job.", folder=files.root, name=final.name) from err
        raise
    for _, old in ready_checkpoints(files)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("saved checkpoint %s", final.name)
    return final


def save_final(model, processor, files: JobFiles, spec: JobSpec, summary: dict) -> None:
    """adapter/ (peft's standard format) and, when asked, merged/ (a full transformers model)."""

    def write_atomically(target: Path, write) -> None:
        partial = target.with_name(f".{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            write(partial)
            if target.exists():
                shutil.rmtree(target)
            os.rename(partial, target)
        except BaseException as err:
            shutil.rmtree(partial, ignore_errors=True)
            if is_disk_full(err):
                raise TrainingError("disk_full_final", "The disk holding {folder} is full: the final {name} "
                                    "could not be saved. Free some space, then resume the job.",
                                    folder=files.root, name=target.name) from err
            raise

    def write_adapter(folder: Path) -> None:
        model.save_pretrained(folder)
        (folder / "training.json").write_text(json.dumps({"base_model": spec.model, **summary}), encoding="utf-8")

    write_atomically(files.adapter, write_adapter)
    log.info("saved the final adapter to %s", files.adapter)
    if spec.merge:
        def write_merged(folder: Path) -> None:
            if spec.qlora:  # in bf16 from the dequantized base, not re-quantized (qlora.py)
                from backend.training.qlora import write_merged_bf16

                write_merged_bf16(model, spec, files.adapter, folder, processor)
                return
            # folds B @ A * scale into the base weights, and puts modules trained whole in place
            merged = model.merge_and_unload()
            merged.to(merged.get_input_embeddings().weight.dtype)  # those trained in fp32 back to the base's dtype
            merged.config.use_cache = True
            merged.save_pretrained(folder)
            processor.save_pretrained(folder)
        write_atomically(files.merged, write_merged)
        log.info("saved the merged model to %s", files.merged)


def resume(folder: Path, spec: JobSpec, peft_model, optimizer, device) -> int:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=False)
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


def save(peft_model, optimizer, files, spec, step, epoch, summary, dist: Dist) -> None:
    """A checkpoint of this step, written by rank 0 while the other ranks wait."""
    if dist.is_main:
        save_checkpoint(peft_model, optimizer, files, spec, step, epoch, summary, spec.keep_last)
    if dist.world > 1:
        torch.distributed.barrier()  # nobody races ahead (or exits) while rank 0 writes

