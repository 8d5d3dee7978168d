"""Foodie Studio's LoRA training program: one job, run as its own process.

Single process (CPU, or one GPU):

    python -m backend.training.lora runs/jobs/<job-id>/spec.json

Several GPUs of one machine, data parallel (DDP; one process per GPU, each holds the whole model;
or, with "shard": true in the spec, FSDP2: each holds a slice of it, sharding.py):

    CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun --standalone --nproc_per_node=4 -m backend.training.lora spec.json

Several machines: the same on each, with torchrun's rendezvous instead of --standalone (the exact
command is in docs/training.md, "Several machines").

The background worker (backend/training/worker.py) starts this program for each job, with its
output going to the job's train.log. Everything the program writes is under the spec's output_dir
(job_folder.py lists it). Run again on the same spec, it resumes from the newest checkpoint there,
with the same schedule: optimizer state, learning-rate step, data order and random state all restored.

What it trains: by default LoRA adapters on the linear layers of the LANGUAGE MODEL only, the vision
tower and the projector frozen (they also have q_proj/k_proj/... layers, so the adapter's target
modules are an explicit list of full names, never a pattern). The spec's `trains` adds LoRA on the
vision tower, the projector trained whole, or the decoder trained whole instead of its LoRA
(trained_parts.py); `qlora` keeps the frozen base in 4 bits (qlora.py); `full_language_model`
trains every weight of the language model, for the sharded full fine-tune (sharding.py). The loss
counts answer tokens only, in every turn (encoding.py).

How: train() below reads top to bottom: set-up, data, model, optimizer, resume, the loop, the final
adapter. A job trains on one of two paths, chosen once before the model loads (model.packs()):
packed rows for the families the fast path serves (families.py: Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
InternVL), padded batches for the others (the log says why). model.py makes
the model ready for its path; the loop hands each step to the path's StepRunner (steps.py) and
never asks which it is. plain_loop.py is the plain recipe both are measured and tested against.

Exit status: 0 done; 1 failed (the reason is in result.json and the last lines of the log);
2 the spec is invalid; 75 stopped by SIGTERM/SIGINT after saving a checkpoint (resumable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from backend.problems import Problem, problem_to_json
from backend.training import checkpoints
from backend.training.checkpoint_scores import checkpoint_scorer
from backend.training.encoding import IGNORE_INDEX, SampleDataset, collate
from backend.training.errors import TrainingError
from backend.training.job_data import read_job_data
from backend.training.job_folder import (
    EXIT_BAD_SPEC,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    JobFiles,
    Metrics,
    checkpoint_name,
    clock,
    ready_checkpoints,
    write_json_atomic,
)
from backend.training.model import build_model, model_type_of, packs, why_padded
from backend.training.processes import Dist, StopFlag, quiet_data_worker, setup_distributed, start_loader
from backend.training.qlora import optimizer_for
from backend.training.samples import Sample, SampleError
from backend.training.schedule import lr_at
from backend.training.sharding import shard
from backend.training.spec import JobSpec, SpecError
from backend.training.step_totals import StepClock, StepInFlight, StepLog, StepTotals
from backend.training.steps import answer_loss, step_runner

log = logging.getLogger("foodie.train")


def be_deterministic() -> None:
    """Deterministic kernels from here on: cuBLAS with a fixed workspace (read when its first handle is
    made, so before the model's first product), and torch's deterministic algorithms. Where an operation
    has none, torch warns instead of failing: the job runs, and the warning says what still varies.
    (Flash attention's backward pass is made strict on its own: flash_varlen._strict_if_deterministic.)"""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    log.info("deterministic kernels: two runs of this job give the same losses")


# ----------------------------------------------------------------------------------------------
# The run


def train(spec: JobSpec, files: JobFiles, stop: StopFlag) -> int:
    """The job, from its newest checkpoint (if any) to its last step; returns the exit status."""
    # ---- set-up: devices, precision, processes ----
    on_gpu = spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available())
    if on_gpu and not torch.cuda.is_available():
        raise TrainingError("no_gpu_visible", "This job asks for a GPU, but none is visible to it "
                            "(CUDA_VISIBLE_DEVICES={visible}).",
                            visible=os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    dist = setup_distributed(on_gpu, spec.shard)
    device = torch.device("cuda", dist.local_rank) if on_gpu else torch.device("cpu")
    use_bf16 = on_gpu and spec.bf16 and torch.cuda.is_bf16_supported()
    weights_dtype = torch.bfloat16 if use_bf16 else torch.float32  # LoRA weights stay fp32 either way
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (LoRA's) on tensor cores
    random.seed(spec.seed + dist.rank)
    torch.manual_seed(spec.seed + dist.rank)
    if spec.deterministic:
        be_deterministic()
    if not dist.is_main:
        log.setLevel(logging.WARNING)
    log.info("job %s: %r on %s (%s, %d process%s)", files.root.name, spec.model, device,
             "bf16" if use_bf16 else "fp32", dist.world, "" if dist.world == 1 else "es")

    # ---- data, and the path: packed rows or padded batches, chosen here once ----
    # (before the model: a broken data file is reported without waiting for the load)
    from backend.models.loading import load_processor, resolve

    processor = load_processor(resolve(spec.model))
    model_type = model_type_of(spec)
    packed = packs(spec, model_type)
    if why_padded(spec, model_type):
        log.info("padded batches, not packed rows: %s", why_padded(spec, model_type))
    data = read_job_data(spec, processor, packed, dist, on_gpu, weights_dtype)
    # A new job's first loader starts before the model loads, so its workers decode the first
    # pictures meanwhile instead of during the first step (a resumed job's starts in the loop).
    early_loader = None if ready_checkpoints(files) else data.loader_from(0)

    # ---- model: frozen base + what trains (LoRA on the language model by default), made ready for the
    # path, and sharded across the processes when asked (then every use goes through `root`) ----
    model, processor, source, _ = build_model(spec, device, weights_dtype, processor, packed)
    root = shard(model) if spec.shard else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    log.info("%.2f M trainable parameters of %.1f M", sum(p.numel() for p in trainable) / 1e6,
             sum(p.numel() for p in model.parameters()) / 1e6)
    if on_gpu:  # what stays for the whole job; the step's peak (metrics: gpu_mem_gb) adds what a step needs
        log.info("the model holds %.2f GB of GPU memory before the first step (%.2f GB at most while loading)",
                 torch.cuda.memory_allocated(device) / 2**30, torch.cuda.max_memory_allocated(device) / 2**30)

    # ---- optimizer, and the step's forward and backward passes for the path (steps.py) ----
    # AdamW, fused on a GPU (one kernel for all trained tensors), or bitsandbytes' paged one (qlora.py)
    optimizer = optimizer_for(spec, trainable, on_gpu)
    steps = step_runner(packed, model, data.cache, spec.pack_tokens, dist, device, weights_dtype, autocast, root)
    if stop.requested:  # stopped while loading: nothing new to save
        return EXIT_STOPPED

    # ---- resume from the newest checkpoint, if any ----
    if dist.is_main and files.checkpoints.is_dir():
        for partial in files.checkpoints.glob(".*.partial"):  # a save cut short by SIGKILL
            shutil.rmtree(partial, ignore_errors=True)
    step = 0
    saved = ready_checkpoints(files)
    if saved:
        step = checkpoints.resume(saved[-1][1], spec, model, optimizer, dist)
    last_saved = step

    # ---- the loop: one optimiser step a turn ----
    total_steps, steps_per_epoch = data.total_steps, data.steps_per_epoch
    model.train()
    progress = StepLog(Metrics(files.metrics, step, dist.is_main), spec.log_every, total_steps, steps_per_epoch,
                       step, device)
    # each checkpoint scored on the job's evaluation set, when it names one (checkpoint_scores.py)
    scorer = checkpoint_scorer(spec, data.dataset.samples, model, processor, source, device, weights_dtype,
                               progress.metrics, dist, autocast)
    scorer.restore(saved, steps_per_epoch)
    last: StepTotals | None = None  # the newest step whose totals have been read
    in_flight: StepInFlight | None = None  # the step whose totals are still on their way
    eval_loss = None
    for upcoming in data.step_batches(step, early_loader):
        started = StepClock(device)
        # -- learning rate for this step (set by hand: resuming needs only the step number) --
        lr = lr_at(step, total_steps, data.warmup_steps, spec.learning_rate, spec.lr_schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr

        # -- forward and backward over the step's micro-batches: the gradients add up --
        micro_batches = list(upcoming)  # a wait for the loader's workers counts in the step's time
        try:
            sums = steps.forward_backward(micro_batches)
        except BaseException:
            if in_flight is not None:  # the step before did finish: its record is not lost with this one
                with contextlib.suppress(Exception):
                    progress.write(in_flight)
            raise

        # -- clip, step --
        if spec.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, spec.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        done = StepInFlight(step, lr, sums.loss_sum, (sums.answer_tokens, sums.samples, sums.tokens),
                            stop.requested, started, dist.world)

        # -- log the step before: its totals arrived while this step's kernels were queued --
        if in_flight is not None:
            last = progress.write(in_flight)
        in_flight = done

        # -- what this step ends with: an evaluation, a checkpoint, a stop --
        evaluating = bool(data.eval_samples) and (
            (spec.eval_every and step % spec.eval_every == 0)
            or (not spec.eval_every and step % steps_per_epoch == 0) or step == total_steps)
        due = (spec.save_every and step % spec.save_every == 0 and step < total_steps) or (
            scorer.scores and step == total_steps)  # a scored job's last step is a checkpoint too
        # One rank sees a stop request at once; with several, every rank learns of any rank's
        # request from the same step's summed totals, so all stop at the same step.
        stopping = stop.requested if dist.world == 1 else last is not None and last.stop_asked
        if evaluating or due or stopping or step == total_steps:  # these need this step's loss now
            last, in_flight = progress.write(in_flight), None
            stopping = stopping or last.stop_asked

        # -- evaluate on the held-out samples --
        epoch_float = step / steps_per_epoch
        if evaluating:
            eval_loss = evaluate(root or model, data.eval_samples, processor, spec, dist, device, autocast,
                                 data.pad_id)
            progress.metrics.write({"step": step, "epoch": round(epoch_float, 4), "eval_loss": round(eval_loss, 6),
                                    "time": time.time()})
            log.info("step %d | eval loss %.4f on %d held-out samples", step, eval_loss, len(data.eval_samples))
            model.train()

        # -- checkpoint (scored, when the job names an evaluation set), and stop if asked --
        stopping_early = False
        if (due or stopping) and step > last_saved:
            checkpoints.save(model, processor, optimizer, files, spec, step, epoch_float,
                             {"loss": last.loss, "eval_loss": eval_loss}, dist, keep=scorer.keep)
            last_saved = step
            stopping_early = scorer.score(step, epoch_float, files.checkpoints / checkpoint_name(step))
        if stopping:
            log.info("stopped at step %d of %d; resume continues from here", step, total_steps)
            return EXIT_STOPPED
        if stopping_early:
            break

    # ---- done: the final adapter (and merged model), or the fine-tuned model ----
    steps.log_summary()
    summary = {"step": step, "total_steps": total_steps, "loss": last.loss if last else None, "eval_loss": eval_loss,
               **scorer.use_best(model, files, step, device)}
    checkpoints.save_final(model, processor, files, spec, summary, dist)
    log.info("done: %d steps in %s", step, clock(time.time() - progress.run_start))
    return EXIT_OK


@torch.no_grad()
def evaluate(model, samples: list[Sample], processor, spec: JobSpec, dist: Dist, device, autocast,
             pad_id: int) -> float:
    """Mean answer-token loss over the held-out samples (each rank takes its share), on padded
    batches whatever the path. `model` is the model, or the FSDP2 root that runs it. Every rank runs
    as many batches: one whose share is a sample short repeats one, which counts nothing (a sharded
    model's forward pass needs every rank)."""
    model.eval()
    share = samples[dist.rank :: dist.world]
    counted = len(share)
    share += samples[: -(-len(samples) // dist.world) - counted]
    dataset = SampleDataset(share, processor, spec.max_image_pixels, spec.max_length)
    loader = torch.utils.data.DataLoader(dataset, batch_size=spec.batch_size, num_workers=spec.data_workers,
                                         collate_fn=lambda items: collate(items, pad_id),
                                         worker_init_fn=quiet_data_worker)
    totals = torch.zeros(2, device=device)  # (loss sum, answer tokens)
    seen = 0
    for batch in start_loader(loader):
        batch["labels"][max(0, counted - seen) :] = IGNORE_INDEX  # repeated samples: run, not counted
        seen += len(batch["labels"])
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        with autocast:
            logits = model(**batch).logits
        totals[0] += answer_loss(logits, labels)
        totals[1] += (labels[:, 1:] != IGNORE_INDEX).sum()
    if dist.world > 1:
        torch.distributed.all_reduce(totals)
    return float(totals[0] / totals[1].clamp(min=1))


def out_of_memory_sentence(spec: JobSpec, packed: bool) -> Problem:
    """What to change after a CUDA out-of-memory error. Packed rows hold a whole step's samples (up to
    pack_tokens), so there raising gradient accumulation makes rows longer instead of shorter."""
    if not packed:
        return Problem("out_of_memory", "The GPU ran out of memory (batch size {batch}, pictures up to {pixels} "
                       "pixels). Try gradient checkpointing, smaller pictures, or a smaller batch size (raise "
                       "gradient accumulation to keep the effective batch).",
                       batch=spec.batch_size, pixels=spec.max_image_pixels)
    return Problem("out_of_memory_packed", "The GPU ran out of memory (batch size {batch}, pictures up to {pixels} "
                   "pixels). Try gradient checkpointing, smaller pictures, or a smaller batch size. This model trains "
                   "on packed rows of up to {tokens} tokens: a smaller pack_tokens in the spec also "
                   "helps, a larger gradient accumulation does not.",
                   batch=spec.batch_size, pixels=spec.max_image_pixels, tokens=spec.pack_tokens)



# ----------------------------------------------------------------------------------------------
# Entry point


def _setup_logging(files: JobFiles, rank: int) -> None:
    """Progress lines go to stdout, which the worker points at train.log. Run by hand (stdout a
    terminal), the lines are also appended to train.log, so the job folder is complete either way."""
    fmt = logging.Formatter(f"%(asctime)s{'' if rank == 0 else f' [rank {rank}]'} %(levelname).1s %(message)s",
                            "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    try:
        same = os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(files.log))
    except (OSError, ValueError):
        same = False
    if not same and rank == 0:
        handlers.append(logging.FileHandler(files.log, encoding="utf-8"))
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m backend.training.lora path/to/spec.json", file=sys.stderr)
        return EXIT_BAD_SPEC
    spec_path = Path(argv[0])
    try:
        spec = JobSpec.load(spec_path).validate()
    except (OSError, ValueError) as err:  # SpecError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
    files = JobFiles(Path(spec.output_dir) if spec.output_dir else spec_path.parent)
    files.root.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    _setup_logging(files, rank)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork
    # Packed rows change length every step; expandable segments let the CUDA allocator grow blocks
    # in place instead of fragmenting (read when CUDA starts, which is later, in train()).
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    if rank == 0:
        files.result.unlink(missing_ok=True)
    stop = StopFlag()

    # The error is a Problem where we can say it in other languages; details from elsewhere (a
    # library's message) stay as they were written.
    status, error = EXIT_FAILED, None
    try:
        status = train(spec, files, stop)
    except torch.OutOfMemoryError:
        error = out_of_memory_sentence(spec, packs(spec, model_type_of(spec)))
    except TrainingError as err:
        error = err.problem
    except (SampleError, SpecError) as err:
        error = Problem("data_unusable", "The training data cannot be used: {why}", why=str(err))
    except Exception as err:  # anything else: the sentence we can give, the traceback in the log
        if checkpoints.is_disk_full(err):
            error = Problem("disk_full", "The disk holding {folder} is full. Free some space, then resume the job "
                            "(it continues from its last checkpoint).", folder=str(files.root))
        else:
            log.exception("training failed")
            from backend.models.loading import ModelLoadError

            error = (err.problem if isinstance(err, ModelLoadError) else
                     Problem("training_failed", "Training failed: {kind}: {detail}", kind=type(err).__name__,
                             detail=str(err)))
    if error:
        log.error("error: %s", error)
    if rank == 0:
        outcome = {EXIT_OK: "succeeded", EXIT_STOPPED: "stopped"}.get(status, "failed")
        try:
            write_json_atomic(files.result, {"status": outcome, "exit_status": status, "error": error,
                                             "problem": problem_to_json(error) if error else None,
                                             "time": time.time()})
        except OSError:
            log.error("could not write %s (the disk may be full)", files.result)
    return status


if __name__ == "__main__":
    sys.exit(main())
