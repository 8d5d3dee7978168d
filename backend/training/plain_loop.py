"""The plain LoRA recipe for a vision-language model, the way a course or the Hugging Face Trainer
runs it: the reference the training program (lora.py) is measured against (bench/bench_train_speed.py
times it as its baseline) and tested against (tests/test_training_reference.py: the same loss at
every step, on either of the program's paths).

    run = train_plain(spec, torch.device("cuda"))  # spec: a JobSpec, the settings train() reads
    run.losses                                     # each optimiser step's loss per answer token

Three sections, as in TRL's examples/scripts/sft_vlm.py: the model (the base frozen, LoRA on the
language model's linear layers), the data (padded batches, labels on answer tokens only) and the
training (the model's own forward pass with labels, the loss normalised by the step's answer tokens,
AdamW, warmup then cosine, clipping). With `qlora` it is the plain peft + bitsandbytes recipe: the
4-bit base, then peft's prepare_model_for_kbit_training (bench/bench_qlora.py's baseline). It runs
one process and keeps nothing: no checkpoints, no evaluation, no metrics file. What the training
program does instead, and why it learns the same: steps.py and packed.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.training.encoding import IGNORE_INDEX, SampleDataset, collate
from backend.training.processes import Dist
from backend.training.samples import read_samples
from backend.training.schedule import epoch_order, lr_at
from backend.training.spec import JobSpec
from backend.training.trained_parts import place, train_whole_in_fp32


@dataclass
class PlainRun:
    seconds: float  # the training loop's, first step to last (loading left out)
    losses: list[float]  # per optimiser step: its loss per answer token
    padded_tokens: int  # tokens through the model, padding included
    step_ends: list[float]  # seconds from the first step's start to each step's end
    model: torch.nn.Module  # the peft model, trained
    processor: object


def train_plain(spec: JobSpec, device: torch.device) -> PlainRun:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from backend.models.loading import load_processor, resolve

    # ---- model: the base frozen, LoRA on the language model's linear layers ----
    torch.manual_seed(spec.seed)  # LoRA's A starts random (B at zero): as train() seeds it
    source = resolve(spec.model)
    processor = load_processor(source)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if spec.qlora:  # the plain peft + bitsandbytes recipe, on the 4-bit base the training program uses
        from peft import prepare_model_for_kbit_training

        from backend.training.qlora import four_bit_config

        model = AutoModelForImageTextToText.from_pretrained(source.location, dtype=dtype, device_map={"": str(device)},
                                                            quantization_config=four_bit_config(source.family))
        # as peft's guides do: the other weights to fp32, checkpointing with inputs that ask for gradients
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model = AutoModelForImageTextToText.from_pretrained(source.location, dtype=dtype)
    model.requires_grad_(False)
    model.config.use_cache = False  # a KV cache only helps generation
    # explicit names under the language model: the vision tower has q_proj/k_proj/v_proj too (and
    # whatever else the spec's `trains` asks for: trained_parts.py)
    placement = place(model, spec)
    model = get_peft_model(model, LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha,
                                             lora_dropout=spec.lora_dropout, target_modules=placement.peft_targets(),
                                             modules_to_save=placement.whole or None, bias="none",
                                             task_type="CAUSAL_LM"))
    train_whole_in_fp32(model)
    if spec.gradient_checkpointing and not spec.qlora:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]  # LoRA's A and B, fp32
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=spec.weight_decay)

    # ---- data: chat-template tokens, labels on answer tokens only (encoding.py), padded batches ----
    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    dataset = SampleDataset(samples, processor, spec.max_image_pixels, spec.max_length)
    pad_id = processor.tokenizer.pad_token_id
    steps_per_epoch = math.ceil(math.ceil(len(dataset) / spec.batch_size) / spec.grad_accum)
    total = steps_per_epoch * spec.epochs
    warmup = round(spec.warmup_ratio * total)

    # ---- training ----
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    losses, padded_tokens, step, step_ends = [], 0, 0, []
    model.train()
    _sync(device)
    start = time.perf_counter()
    for epoch in range(spec.epochs):
        # the training program's order (schedule.py): both see the same samples in the same steps
        order = epoch_order(len(dataset), spec.seed, epoch, Dist())
        batches = [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
        loader = iter(torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=spec.data_workers,
                                                  collate_fn=lambda items: collate(items, pad_id),
                                                  pin_memory=device.type == "cuda"))
        for _ in range(steps_per_epoch):
            group = [batch for _, batch in zip(range(spec.grad_accum), loader)]  # grad_accum micro-batches
            answer_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in group)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr_at(step, total, warmup, spec.learning_rate, spec.lr_schedule)
            step_loss = 0.0
            for batch in group:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                padded_tokens += batch["input_ids"].numel()
                with autocast:
                    # As the Trainer does it: labels in, the model's loss out, summed over the answer
                    # tokens and divided by the whole step's count of them (num_items_in_batch), so
                    # the micro-batches' gradients add up to the step's mean.
                    loss = model(**batch, num_items_in_batch=answer_tokens).loss
                loss.backward()
                step_loss += loss.item()
            if spec.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, spec.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(step_loss)  # .item() above waited for the step's passes; the optimizer's is queued
            step_ends.append(time.perf_counter() - start)
    _sync(device)
    return PlainRun(time.perf_counter() - start, losses, padded_tokens, step_ends, model, processor)


def _sync(device: torch.device) -> None:
    """Wait for the GPU, so the clock reads when its work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize()
