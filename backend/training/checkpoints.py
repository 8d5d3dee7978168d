"""Checkpoints: written atomically, pruned, resumed with the same schedule; and the final adapter.

A checkpoint is the adapter exactly as peft saves it (so the folder loads as an adapter as is), or
for a full fine-tune of the language model the whole model as transformers saves it, with its
processor (so the folder loads as a model as is); plus trainer_state.pt (optimizer state, step,
epoch, random state, the spec) and metrics.json. trainer_state.pt holds plain data only, read back
with torch.load(weights_only=True).

One way in and out for every job, one process or several, sharded or not: torch's state_dict
helpers (torch.distributed.checkpoint.state_dict) gather the weights and the optimizer's state whole
onto rank 0's CPU, keyed by parameter name, and put them back on resume, rank 0 reading the files
and sending each rank its part. So a checkpoint is the same files however the job was laid out.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.disk import RESERVE_BYTES, free_bytes, human_size, space_problem, tree_size
from backend.problems import Problem
from backend.training.errors import TrainingError
from backend.training.job_folder import TRAINER_STATE, JobFiles, checkpoint_name, ready_checkpoints
from backend.training.model import trains_full_language_model
from backend.training.processes import Dist
from backend.training.spec import JobSpec

log = logging.getLogger("foodie.train")

# Spec fields that fix the schedule. Resuming with any of them changed would silently train a
# different run than the checkpoint belongs to, so it is refused.
SCHEDULE_FIELDS = ("model", "data_file", "lora_r", "lora_alpha", "target_modules", "trains", "qlora",
                   "projector_from", "full_language_model", "learning_rate", "lr_schedule", "warmup_ratio", "epochs",
                   "batch_size", "grad_accum", "seed", "gpus")


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


def weights_bytes(model, whole: bool) -> int:
    """The bytes of the trained weights, or (`whole`) of every weight: what a checkpoint holds of the
    model. (A sharded weight counts whole: numel() is its full size.)"""
    return sum(p.numel() * p.element_size() for p in model.parameters() if whole or p.requires_grad)


def checkpoint_bytes(model, files: JobFiles, whole: bool) -> int:
    """About how much a checkpoint takes: the newest one's size, or before the first, its weights
    and AdamW's two moments of each trained weight, and a little more."""
    ready = ready_checkpoints(files)
    if ready:
        return tree_size(ready[-1][1])
    return weights_bytes(model, whole) + 2 * weights_bytes(model, False) + 2**20


@dataclass
class Gathered:
    """What a checkpoint keeps of the model and the optimizer, whole and on the CPU, on rank 0 (empty
    on the other ranks), keyed by parameter name."""

    weights: dict  # the trained weights, or every weight (`whole`)
    optimizer: dict  # {"state": {name: ...}, "param_groups": [...]}; empty when not asked for
    whole: bool  # the whole model (a full fine-tune), not only what trains (an adapter)


def gather(model, optimizer, spec: JobSpec) -> Gathered:
    """The weights (and, given an `optimizer`, its state) from every rank's shards onto rank 0's
    CPU. Every rank must call it (the shards are sent by all); unsharded, it copies to the CPU."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    whole = trains_full_language_model(spec)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=not whole)
    weights = get_model_state_dict(model, options=options)
    state = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else {}
    return Gathered(weights, state, whole)


def write_weights(model, processor, folder: Path, gathered: Gathered) -> None:
    """The gathered weights as a folder that loads as it is: a whole model (config, weights,
    processor) for transformers, or an adapter (adapter_config.json + adapter_model.safetensors) for
    peft. Rank 0 only."""
    model.save_pretrained(folder, state_dict=gathered.weights)
    if gathered.whole:
        processor.save_pretrained(folder)


def _disk_full(files: JobFiles, name: str, needed: int, free: int | None) -> TrainingError:
    return TrainingError(
        "disk_full_checkpoint", "The disk holding {folder} is full: checkpoint {name} could not be saved (it needs "
        "about {needed}, and {free} is free), and nothing half-written was kept. Free some space (or keep fewer "
        "checkpoints), then resume the job.", folder=files.root, name=name, needed=human_size(needed + RESERVE_BYTES),
        free=human_size(free or 0))


def save_checkpoint(model, processor, gathered: Gathered, files: JobFiles, spec: JobSpec, step: int, epoch: float,
                    summary: dict, keep_last: int, keep: int | None = None) -> Path:
    """Write checkpoints/step-NNNNNN atomically: into a hidden folder, fsync, rename. The free space
    is checked first; on any failure the hidden folder is removed, so no half checkpoint is ever
    offered; a full disk becomes a sentence that says how much is needed. Then prune to the newest
    `keep_last`, and the checkpoint of step `keep` (the best so far)."""
    final = files.checkpoints / checkpoint_name(step)
    partial = files.checkpoints / f".{final.name}.partial"
    needed = checkpoint_bytes(model, files, gathered.whole)
    free = free_bytes(files.root)
    if free is not None and needed + RESERVE_BYTES > free:
        raise _disk_full(files, final.name, needed, free)
    try:
        files.checkpoints.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        write_weights(model, processor, partial, gathered)
        torch.save({"step": step, "epoch": epoch, "optimizer": gathered.optimizer,
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


def save_final(model, processor, files: JobFiles, spec: JobSpec, summary: dict, dist: Dist) -> None:
    """adapter/ (peft's standard format) and, when asked, merged/ (a full transformers model); for a
    full fine-tune of the language model, model/ (a full transformers model). Every rank calls it
    (a sharded model's weights are gathered from all); rank 0 writes while the others wait."""
    gathered = gather(model, None, spec)
    if dist.is_main:
        write_final(model, processor, gathered, files, spec, summary)
    if dist.world > 1:
        torch.distributed.barrier()


def write_final(model, processor, gathered: Gathered, files: JobFiles, spec: JobSpec, summary: dict) -> None:
    """save_final's writing, rank 0's part."""

    def write_part(target: Path, write, needed: int) -> None:
        write_atomically(target, write, needed, files.root,
                         Problem("space_final", "The final {name}", name=target.name),
                         Problem("disk_full_final", "The disk holding {folder} is full: the final {name} could not be "
                                 "saved. Free some space, then resume the job.", folder=files.root, name=target.name))

    def write_trained(folder: Path) -> None:
        write_weights(model, processor, folder, gathered)
        (folder / "training.json").write_text(json.dumps({"base_model": spec.model, **summary}), encoding="utf-8")

    target = files.model if gathered.whole else files.adapter
    write_part(target, write_trained, weights_bytes(model, gathered.whole) + 2**20)
    log.info("saved the final %s to %s", "model" if gathered.whole else "adapter", target)
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
        write_part(files.merged, write_merged, weights_bytes(model, True) + 2**20)
        log.info("saved the merged model to %s", files.merged)


def resume(folder: Path, spec: JobSpec, model, optimizer, dist: Dist) -> int:
    """The model's trained weights, the optimizer's state and the random state put back as checkpoint
    `folder` holds them; returns its step. Rank 0 reads the files and sends every rank its part (with
    several processes every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    read: dict | TrainingError = {}
    if dist.is_main:
        try:
            read = read_checkpoint(folder, spec, model, optimizer)
        except TrainingError as err:
            read = err
    if torch.distributed.is_initialized():
        # rank 0's step, random state or failure, for all (the weights go below, tensor by tensor)
        told = [read if not isinstance(read, dict) else
                {"step": read["step"], "epoch": read["epoch"], "rng": read["rng"]} if dist.is_main else None]
        torch.distributed.broadcast_object_list(told)
        if isinstance(told[0], TrainingError):
            raise told[0]
        read = {**read, **told[0]} if dist.is_main else told[0]
    elif isinstance(read, TrainingError):
        raise read
    options = StateDictOptions(full_state_dict=True, strict=False,
                               broadcast_from_rank0=torch.distributed.is_initialized())
    set_model_state_dict(model, read.get("weights", {}), options=options)
    set_optimizer_state_dict(model, optimizer, read.get("optimizer", {}), options=options)
    set_rng_state(read["rng"])
    log.info("resumed from checkpoint %s (step %d, epoch %.2f)", folder.name, read["step"], read["epoch"])
    return int(read["step"])


def read_checkpoint(folder: Path, spec: JobSpec, model, optimizer) -> dict:
    """Checkpoint `folder` as plain data: step, epoch, random state, and the trained weights and the
    optimizer's state keyed by parameter name. TrainingError when it cannot be read or belongs to a
    job with other settings."""
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
    defaults = JobSpec()  # a setting newer than the checkpoint had its default then
    changed = [name for name in SCHEDULE_FIELDS
               if state["spec"].get(name, getattr(defaults, name)) != getattr(spec, name)]
    if changed:
        raise TrainingError("checkpoint_settings", "Checkpoint {name} was made with different settings "
                            "({settings}), so it cannot be continued with these; start a new job instead.",
                            name=folder.name, settings=", ".join(changed))
    weights = (whole_model_weights(folder, model) if trains_full_language_model(spec)
               else adapter_weights(folder, model))
    return {"step": state["step"], "epoch": state["epoch"], "rng": state["rng"], "weights": weights,
            "optimizer": optimizer_state_by_name(state["optimizer"], model, optimizer)}


def adapter_weights(folder: Path, peft_model) -> dict:
    """A checkpoint's adapter weights under the model's own parameter names: peft saves them without
    the adapter's name ("lora_A.weight" for the model's "lora_A.default.weight"), and its own
    renaming, run on the names, says which is which."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    names = {name: name for name, p in peft_model.named_parameters() if p.requires_grad}
    saved_as = get_peft_model_state_dict(peft_model, state_dict=names)  # saved name -> the model's
    return {saved_as[name]: tensor for name, tensor in load_file(folder / "adapter_model.safetensors").items()}


def whole_model_weights(folder: Path, model) -> dict:
    """A full fine-tune's trained weights from its checkpoint, loaded by transformers as any model
    folder is (its files name the weights the way checkpoints on the hub do, not as the model does),
    on the CPU, in fp32."""
    from transformers import AutoModelForImageTextToText

    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    saved = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    return {name: tensor for name, tensor in saved.state_dict().items() if name in trained}


def optimizer_state_by_name(saved: dict, model, optimizer) -> dict:
    """The optimizer's state keyed by parameter name, as gather() saves it. Checkpoints written before
    (optimizer.state_dict()) number the parameters in the optimizer's order instead."""
    if not any(isinstance(key, int) for key in saved["state"]) and not any(
            isinstance(p, int) for group in saved["param_groups"] for p in group["params"]):
        return saved
    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    return {"state": {order[i]: value for i, value in saved["state"].items()},
            "param_groups": [{**group, "params": [order[i] for i in group["params"]]}
                             for group in saved["param_groups"]]}


def save(model, processor, optimizer, files, spec, step, epoch, summary, dist: Dist, keep: int | None = None) -> None:
    """A checkpoint of this step: every rank sends its shards (sharding.py) to rank 0, which writes it
    while the others wait (`keep`: a step whose checkpoint pruning leaves alone)."""
    gathered = gather(model, optimizer, spec)
    if dist.is_main:
        save_checkpoint(model, processor, gathered, files, spec, step, epoch, summary, spec.keep_last, keep)
    if dist.world > 1:
        torch.distributed.barrier()  # nobody races ahead (or exits) while rank 0 writes
