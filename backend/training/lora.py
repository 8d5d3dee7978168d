"""Foodie Studio's LoRA training program: one job, run as its own process.

Single process (CPU, or one GPU):

    python -m backend.training.lora runs/jobs/<job-id>/spec.json

Several GPUs of one machine, data parallel (DDP; one process per GPU, each sees the whole model):

    CUDA_VISIBLE_DEVICES=0,1,2,3 torchrun --standalone --nproc_per_node=4 -m backend.training.lora spec.json

The background worker (backend/training/worker.py) starts this program for each job, with its
output going to the job's train.log. Everything the program writes is under the spec's output_dir
(layout.py lists it). Run again on the same spec, it resumes from the newest checkpoint there, with
the same schedule: optimizer state, learning-rate step, data order and random state all restored.

What it trains: LoRA adapters on the linear layers of the LANGUAGE MODEL only. The vision tower and
the projector stay frozen (they also have q_proj/k_proj/... layers, so the adapter's target modules
are an explicit list of full names under the language model, never a pattern). The loss counts
answer tokens only, in every turn (encoding.py).

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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from backend.problems import Problem, problem_to_json
from backend.training import checkpoints
from backend.training.encoding import IGNORE_INDEX, SampleDataset, collate
from backend.training.errors import TrainingError
from backend.training.job_data import read_job_data
from backend.training.job_folder import (EXIT_BAD_SPEC, EXIT_FAILED, EXIT_OK, EXIT_STOPPED, JobFiles, Metrics, clock,
                                         ready_checkpoints, write_json_atomic)
from backend.training.lora_forward import (LowPrecisionAdapters, fold_lora_scaling,
                                           join_frozen_and_adapter_weights, keep_lora_inputs_in_model_dtype)
from backend.training.packed import (PACKED_MODEL_TYPES, PackedCache, PackedLoss, apply_fused_kernels,
                                     compile_decoder_layers, pack, prepared_samples, speed_up_vision_tower, split_rows,
                                     use_packed_attention)
from backend.training.processes import Dist, StopFlag, quiet_data_worker, setup_distributed, start_loader
from backend.training.samples import Sample, SampleError
from backend.training.schedule import lr_at
from backend.training.spec import JobSpec, SpecError
from backend.training.step_totals import StepClock, StepInFlight, StepLog, StepTotals
from backend.training.vision_kernels import start_triton_early

log = logging.getLogger("foodie.train")


# ----------------------------------------------------------------------------------------------
# Model


def language_model_targets(model: torch.nn.Module, short_names: list[str]) -> list[str]:
    """Full names of the linear layers called `short_names` inside the language model.

    Vision towers have q_proj/k_proj/v_proj too; matching by short name alone would put LoRA on
    them. The list is saved as the adapter's target_modules: explicit names load everywhere (LMDeploy
    cannot read a pattern)."""
    decoder = model.get_decoder()
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if prefix is None:
        raise TrainingError("no_language_model", "Could not find the language model inside this model, so "
                            "LoRA cannot be placed on it.")
    wanted = set(short_names)
    targets = [name for name, module in model.named_modules()
               if name.startswith(prefix + ".") and name.rsplit(".", 1)[-1] in wanted
               and isinstance(module, torch.nn.Linear)]
    if not targets:
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in decoder.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        raise TrainingError("targets_not_linear", "None of the target modules ({targets}) is a linear layer of "
                            "the language model; its linear layers are called {linear}.",
                            targets=", ".join(short_names), linear=", ".join(linear))
    return targets


class BuiltModel(NamedTuple):
    model: torch.nn.Module  # the peft model
    processor: object
    source: object  # the ModelSource it was loaded from
    packed: bool  # whether this job trains on packed rows (packs())


def build_model(spec: JobSpec, device: torch.device, dtype: torch.dtype, processor=None) -> BuiltModel:
    """Base model (frozen) + LoRA on the language model, made ready for the path it trains on."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from backend.models.loading import load_processor, resolve

    source = resolve(spec.model)
    processor = processor or load_processor(source)
    model = AutoModelForImageTextToText.from_pretrained(source.location, dtype=dtype)
    model.requires_grad_(False)  # vision tower, projector, embeddings, lm_head: all frozen
    # The KV cache only helps generation. In transformers 5 the text config keeps its own use_cache
    # (True), which this does not reach: our training forwards pass use_cache=False themselves, so
    # that bench_train_speed's baseline, built here too, keeps the plain recipe's default.
    model.config.use_cache = False
    packed = packs(spec, model.config.model_type)
    compiled = packed and spec.compile_layers and device.type == "cuda"
    if packed:
        use_packed_attention(model)
        speed_up_vision_tower(model, on_cuda=device.type == "cuda")
        # Liger's kernels cannot be traced by torch.compile (dynamo fails on their autograd functions);
        # compiled layers get inductor's own fused kernels instead
        if spec.fused_kernels and device.type == "cuda" and not compiled and apply_fused_kernels(model):
            log.info("Liger's fused RMSNorm, SwiGLU and rotary kernels are on")
    targets = language_model_targets(model, spec.target_modules)
    config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=targets, bias="none", task_type="CAUSAL_LM")
    # peft saves target_modules condensed to the shortest name suffixes that still match only these
    # layers (e.g. "q_proj" when the vision tower has none): still explicit names, never a pattern.
    model = get_peft_model(model, config)  # LoRA weights are created in fp32 even on a bf16 base
    log.info("LoRA r=%d alpha=%d on %d linear layers of the language model", spec.lora_r, spec.lora_alpha,
             len(targets))
    if packed:
        keep_lora_inputs_in_model_dtype(model)
        # compiled layers keep separate operations, which inductor fuses (and its dropout mask is
        # regenerated in the backward pass instead of stored)
        fold_lora_scaling(model, fused_backward=not compiled)
    if compiled:
        compile_decoder_layers(model)
        log.info("decoder layers go through torch.compile (the first steps include compiling them)")
    if spec.gradient_checkpointing:
        # Non-reentrant checkpointing works with a frozen embedding layer (no input grads needed).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    if packed and not compiled:
        join_frozen_and_adapter_weights(model)  # after the move, which makes new weights
        model.low_precision_adapters = LowPrecisionAdapters(model, dtype)
    return BuiltModel(model, processor, source, packed)


def one_bucket_mb(trainable: list[torch.Tensor]) -> float:
    """A DDP bucket size that holds every trainable gradient, so the all-reduce runs once, after the
    backward pass, instead of bucket by bucket during it. LoRA's gradients are small (2 H200s sum the
    2B recipe's 148 M in 1.9 ms, bench/bench_allreduce.py), and NCCL's kernels running beside the
    backward pass slowed it more than the overlap saved: steps after the first epoch went from 0.29 s
    to 0.27 s on 2 H200s (bench/README.md)."""
    return sum(p.numel() * p.element_size() for p in trainable) / 2**20 + 1


def packs(spec: JobSpec, model_type: str) -> bool:
    """Whether this job trains on packed rows (packed.py): asked for, and a Qwen2-VL-family model."""
    return spec.packed and model_type in PACKED_MODEL_TYPES


def model_type_of(spec: JobSpec) -> str:
    """The model_type in the job's model config ("" when it cannot be read), without loading it."""
    from transformers import AutoConfig

    from backend.models.loading import resolve

    try:
        return AutoConfig.from_pretrained(resolve(spec.model).location).model_type
    except Exception:  # an error path's helper: the advice falls back to the padded path's
        return ""


# ----------------------------------------------------------------------------------------------
# The run


def train(spec: JobSpec, files: JobFiles, stop: StopFlag) -> int:
    # ---- setup: devices, precision, processes ----
    on_gpu = spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available())
    if on_gpu and not torch.cuda.is_available():
        raise TrainingError("no_gpu_visible", "This job asks for a GPU, but none is visible to it "
                            "(CUDA_VISIBLE_DEVICES={visible}).",
                            visible=os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    dist = setup_distributed(on_gpu)
    device = torch.device("cuda", dist.local_rank) if on_gpu else torch.device("cpu")
    use_bf16 = on_gpu and spec.bf16 and torch.cuda.is_bf16_supported()
    weights_dtype = torch.bfloat16 if use_bf16 else torch.float32  # LoRA weights stay fp32 either way
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (LoRA's) on tensor cores
    random.seed(spec.seed + dist.rank)
    torch.manual_seed(spec.seed + dist.rank)
    if not dist.is_main:
        log.setLevel(logging.WARNING)
    log.info("job %s: %s on %s (%s, %d process%s)", files.root.name, spec.model, device,
             "bf16" if use_bf16 else "fp32", dist.world, "" if dist.world == 1 else "es")

    # ---- data (before the model: a broken data file is reported without waiting for the load) ----
    from backend.models.loading import load_processor, resolve

    processor = load_processor(resolve(spec.model))
    packed = packs(spec, model_type_of(spec))
    data = read_job_data(spec, processor, packed, dist, on_gpu, weights_dtype)
    cache, eval_samples, pad_id = data.cache, data.eval_samples, data.pad_id
    steps_per_epoch, total_steps, warmup_steps = data.steps_per_epoch, data.total_steps, data.warmup_steps

    # A new job's first loader starts before the model loads, so its workers decode the first
    # pictures meanwhile instead of during the first step (a resumed job starts mid-epoch: below).
    early_loader = None if ready_checkpoints(files) else data.open_loader(0, data.epoch_batches(0))
    if packed:  # after the loader's fork: a child forked while another thread works can inherit its locks
        start_triton_early(device)

    # ---- model: frozen base + LoRA on the language model ----
    model, processor, _, built_packed = build_model(spec, device, weights_dtype, processor)
    if built_packed != packed:  # both read the model's config.json: it changed between the reads
        raise TrainingError("config_changed", "The config.json of {model} changed while the job was loading it; "
                            "start the job again.", model=spec.model)
    adapters = getattr(model, "low_precision_adapters", None)  # LoRA's weights cast once a step
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    log.info("%.2f M trainable parameters of %.1f M", n_trainable / 1e6, n_total / 1e6)

    # ---- optimizer ----
    # fused: one kernel for all LoRA tensors instead of one per tensor
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay,
                                  betas=(0.9, 0.999), fused=on_gpu or None)
    loss_module = PackedLoss(model) if packed else None
    if dist.world > 1:
        # broadcast_buffers off: DDP would walk the whole module tree in Python before every forward to
        # send buffers (the rotary tables) that never change; 3-4% of a rank's time on 2 H200s (py-spy)
        ddp = dict(device_ids=[dist.local_rank] if on_gpu else None, bucket_cap_mb=one_bucket_mb(trainable),
                   broadcast_buffers=False)
        if packed:
            loss_module = torch.nn.parallel.DistributedDataParallel(loss_module, **ddp)
        else:
            model = torch.nn.parallel.DistributedDataParallel(model, **ddp)
    peft_model = getattr(model, "module", model)

    if stop.requested:  # stopped while loading: nothing new to save
        return EXIT_STOPPED

    # ---- resume from the newest checkpoint, if any ----
    if dist.is_main and files.checkpoints.is_dir():
        for partial in files.checkpoints.glob(".*.partial"):  # a save cut short by SIGKILL
            shutil.rmtree(partial, ignore_errors=True)
    step = 0
    saved = ready_checkpoints(files)
    if saved:
        step = checkpoints.resume(saved[-1][1], spec, peft_model, optimizer, device)
    last_saved = step

    # ---- training loop ----
    model.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16)
    passes = StepPasses(spec, dist, device, weights_dtype, cache, peft_model, model, loss_module, autocast, adapters)
    progress = StepLog(Metrics(files.metrics, step, dist.is_main), spec.log_every, total_steps, steps_per_epoch,
                       step, device)
    last: StepTotals | None = None  # the newest step whose totals have been read
    in_flight: StepInFlight | None = None  # the step whose totals are still on their way
    eval_loss = None
    while step < total_steps:
        epoch = step // steps_per_epoch
        if early_loader is not None:  # epoch 0 from its first batch: opened before the model loaded
            micro_batches, early_loader = early_loader, None
        else:
            first = (step % steps_per_epoch) * spec.grad_accum  # skip the batches already trained on
            micro_batches = data.open_loader(epoch, data.epoch_batches(epoch)[first:])

        for _ in range(step % steps_per_epoch, steps_per_epoch):
            started = StepClock(device)
            # -- learning rate for this step (set by hand: resuming needs only the step number) --
            lr = lr_at(step, total_steps, warmup_steps, spec.learning_rate, spec.lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # -- forward / backward over grad_accum micro-batches --
            group_batches = [b for _, b in zip(range(spec.grad_accum), micro_batches)]
            try:
                loss_sum, step_tokens, samples, real_tokens = passes.run(group_batches)
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
            done = StepInFlight(step, lr, loss_sum, (step_tokens, samples, real_tokens), stop.requested, started,
                                dist.world)

            # -- log the step before: its totals arrived while this step's kernels were queued --
            if in_flight is not None:
                last = progress.write(in_flight)
            in_flight = done

            end_of_epoch = step % steps_per_epoch == 0
            evaluating = bool(eval_samples) and ((spec.eval_every and step % spec.eval_every == 0)
                                                 or (not spec.eval_every and end_of_epoch) or step == total_steps)
            due = spec.save_every and step % spec.save_every == 0 and step < total_steps
            # One rank sees a stop request at once; with several, every rank learns of any rank's
            # request from the same step's summed totals, so all stop at the same step.
            stopping = stop.requested if dist.world == 1 else last is not None and last.stop_asked
            if evaluating or due or stopping or step == total_steps:  # these need this step's loss now
                last, in_flight = progress.write(in_flight), None
                stopping = stopping or last.stop_asked

            # -- evaluate on the held-out samples --
            epoch_float = step / steps_per_epoch
            if evaluating:
                eval_loss = evaluate(model, eval_samples, processor, spec, dist, device, autocast, pad_id)
                progress.metrics.write({"step": step, "epoch": round(epoch_float, 4), "eval_loss": round(eval_loss, 6),
                                        "time": time.time()})
                log.info("step %d | eval loss %.4f on %d held-out samples", step, eval_loss, len(eval_samples))
                model.train()

            # -- checkpoint, and stop if asked --
            if (due or stopping) and step > last_saved:
                checkpoints.save(peft_model, optimizer, files, spec, step, epoch_float,
                                 {"loss": last.loss, "eval_loss": eval_loss}, dist)
                last_saved = step
            if stopping:
                log.info("stopped at step %d of %d; resume continues from here", step, total_steps)
                return EXIT_STOPPED

    if cache is not None:
        log.info("packed batches: samples prepared %d times, reused from the cache %d times; the prepared "
                 "samples showed %d pictures, %d of them went through the vision tower (%.2f GB cached)",
                 cache.computed, cache.reused, cache.picture_slots, cache.pictures_computed, cache.used / 2**30)
    # ---- finish: the final adapter (and merged model) ----
    summary = {"step": step, "total_steps": total_steps, "loss": last.loss if last else None, "eval_loss": eval_loss}
    if dist.is_main:
        checkpoints.save_final(peft_model, processor, files, spec, summary)
    if dist.world > 1:
        torch.distributed.barrier()
    log.info("done: %d steps in %s", step, clock(time.time() - progress.run_start))
    return EXIT_OK


@dataclass
class StepPasses:
    """A step's forward and backward passes over its micro-batches: the gradients add up, the
    optimizer steps after. Packed (cache given): the step's samples regrouped into rows; padded:
    each micro-batch as collated."""

    spec: JobSpec
    dist: Dist
    device: torch.device
    weights_dtype: torch.dtype
    cache: PackedCache | None  # the packed path's prepared samples (None: padded batches)
    peft_model: torch.nn.Module
    model: torch.nn.Module  # the padded path's, wrapped by DDP where there is one
    loss_module: torch.nn.Module | None  # the packed path's, wrapped by DDP where there is one
    autocast: torch.autocast
    adapters: LowPrecisionAdapters | None

    def run(self, group_batches: list) -> tuple[torch.Tensor, int, int, int]:
        """This rank's summed loss (normalised by the step's answer tokens, times them; a tensor on
        the device), answer tokens, samples and real tokens."""
        spec, packed = self.spec, self.cache is not None
        if packed:
            # The step's samples are regrouped into rows of up to pack_tokens tokens: the loss is
            # normalised by the whole step's answer tokens, so how they are grouped changes
            # nothing but speed (fewer, larger matrix products) and memory.
            prepared = prepared_samples(self.cache, [item for items in group_batches for item in items],
                                        self.peft_model, self.device, self.weights_dtype)
            group_batches = [pack(row) for row in split_rows(prepared, spec.pack_tokens)]
            step_tokens = sum(row.answer_tokens for row in group_batches)
        else:
            # Normalise by the answer tokens of the whole step, so every token weighs the same
            # whether it sits in a short or a long micro-batch.
            step_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in group_batches)
        ddp_module = self.loss_module if packed else self.model  # whose no_sync() holds back gradient sync
        loss_sum = None  # on the device: reading it here would wait for the GPU (step_totals.py)
        samples = real_tokens = 0
        # LoRA's A and B in bf16, cast once for the step's rows (the optimizer changes them after)
        with self.adapters.step() if self.adapters is not None else nullcontext():
            for i, batch in enumerate(group_batches):
                last = i == len(group_batches) - 1
                # DDP: sync gradients only on the last micro-batch of the step.
                holding_back = self.dist.world > 1 and not last
                with ddp_module.no_sync() if holding_back else nullcontext():
                    if packed:
                        samples += batch.samples
                        real_tokens += batch.bounds[-1]
                        with self.autocast:
                            loss = self.loss_module(batch) / max(1, step_tokens)
                    else:
                        real_tokens += int(batch["attention_mask"].sum())  # on the CPU, before the copy
                        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                        labels = batch.pop("labels")  # (B, T)
                        samples += labels.shape[0]
                        with self.autocast:
                            logits = self.model(**batch, use_cache=False).logits  # (B, T, vocab)
                        loss = answer_loss(logits, labels) / max(1, step_tokens)
                    loss.backward()
                summed = loss.detach() * max(1, step_tokens)
                loss_sum = summed if loss_sum is None else loss_sum + summed
        if loss_sum is None:  # no micro-batch (a rank given none this step)
            loss_sum = torch.zeros((), device=self.device)
        return loss_sum, step_tokens, samples, real_tokens


def out_of_memory_sentence(spec: JobSpec, packed: bool) -> Problem:
    """What to change after a CUDA out-of-memory error. Packed rows hold a whole step's samples (up to
    pack_tokens), so there raising gradient accumulation makes rows longer instead of shorter."""
    if not packed:
        return Problem("out_of_memory", "The GPU ran out of memory (batch size {batch}, pictures up to {pixels} "
                       "pixels). Try gradient checkpointing, smaller pictures, or a smaller batch size (raise "
                       "gradient accumulation to keep the effective batch).",
                       batch=spec.batch_size, pixels=spec.max_image_pixels)
    return Problem("out_of_memory_packed", "The GPU ran out of memory (batch size {batch}, pictures up to {pixels} "
                   "pixels). Try gradient checkpointing, smaller pictures, or a smaller batch size. Qwen2-VL-family "
                   "models train on packed rows of up to {tokens} tokens: a smaller pack_tokens in the spec also "
                   "helps, a larger gradient accumulation does not.",
                   batch=spec.batch_size, pixels=spec.max_image_pixels, tokens=spec.pack_tokens)


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over answer tokens. Position t predicts token t+1, so logits drop their
    last position and labels their first. Only answer positions are upcast to fp32: the full
    (B, T, vocab) logits in fp32 would cost gigabytes with a 150k vocabulary."""
    shifted = labels[:, 1:]  # (B, T-1)
    keep = shifted != IGNORE_INDEX
    return F.cross_entropy(logits[:, :-1][keep].float(), shifted[keep], reduction="sum")


@torch.no_grad()
def evaluate(model, samples: list[Sample], processor, spec: JobSpec, dist: Dist, device, autocast,
             pad_id: int) -> float:
    """Mean answer-token loss over the held-out samples (each rank takes its share)."""
    model.eval()
    dataset = SampleDataset(samples[dist.rank :: dist.world], processor, spec.max_image_pixels, spec.max_length)
    loader = torch.utils.data.DataLoader(dataset, batch_size=spec.batch_size, num_workers=spec.data_workers,
                                         collate_fn=lambda items: collate(items, pad_id),
                                         worker_init_fn=quiet_data_worker)
    totals = torch.zeros(2, device=device)  # (loss sum, answer tokens)
    for batch in start_loader(loader):
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        with autocast:
            logits = model(**batch).logits
        totals[0] += answer_loss(logits, labels)
        totals[1] += (labels[:, 1:] != IGNORE_INDEX).sum()
    if dist.world > 1:
        torch.distributed.all_reduce(totals)
    return float(totals[0] / totals[1].clamp(min=1))


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
