"""A training step's forward and backward passes: one object per path, chosen once before the loop.

train() (lora.py) hands its StepRunner each optimiser step's micro-batches; the runner does every
forward and backward pass of the step, so the LoRA weights' gradients add up, and the loop clips and
steps the optimizer after. Two paths, which learn the same thing (the same samples in the same steps,
the loss on the same answer tokens normalised by the step's count of them; tests/test_training_packed.py
and tests/test_training_reference.py check it):

- PaddedSteps: each micro-batch as collated, padded to its longest sample, through the model's own
  forward pass. Any model family.
- PackedSteps: the step's samples regrouped into rows of up to pack_tokens tokens with no padding,
  each picture through the frozen vision tower once per run (within the cache's budget), logits
  only for answer tokens (packed.py). The families whose Family.fast_path says so.

With several processes, each runner wraps in DDP what its passes go through: the peft model for the
padded path, PackedLoss (the model and its loss) for the packed one. A sharded job (sharding.py)
runs them through FSDP2's root instead, which reduces the gradients itself; its ranks agree on each
step's answer tokens and number of passes first.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import nullcontext
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F

from backend.training.encoding import IGNORE_INDEX
from backend.training.packed import (
    PackedCache,
    PackedLoss,
    PackedRow,
    pack,
    prepared_samples,
    split_rows,
    split_rows_further,
)
from backend.training.processes import Dist
from backend.training.sharding import ShardedModel, StepAgreement

log = logging.getLogger("foodie.train")


class StepSums(NamedTuple):
    """This rank's part of one optimiser step."""

    loss_sum: torch.Tensor  # summed answer-token loss, a scalar on the device (read late: step_totals.py)
    answer_tokens: int
    samples: int
    tokens: int  # real tokens, padding left out


class StepRunner(ABC):
    """One optimiser step's forward and backward passes over its micro-batches (what the loader gave
    for the step: up to grad_accum of them). The gradients add up in the LoRA weights; the caller
    clips them and steps the optimizer."""

    def __init__(self, module: torch.nn.Module, dist: Dist, device: torch.device, autocast: torch.autocast,
                 root: ShardedModel | None = None) -> None:
        self.dist, self.device, self.autocast = dist, device, autocast
        # what the passes go through: DDP-wrapped with several processes, FSDP2's root when sharded
        self.module = for_ranks(module, dist, device, root)
        self.agreement = StepAgreement(dist.world) if root is not None else None

    @abstractmethod
    def forward_backward(self, micro_batches: list) -> StepSums:
        """This rank's passes of one step over `micro_batches`, as the job's loader gave them."""

    def log_summary(self) -> None:  # noqa: B027 (a hook: most paths have nothing to add)
        """After the last step: what is worth knowing about how the passes went (nothing, by default)."""

    @abstractmethod
    def summed_loss(self, one) -> torch.Tensor:
        """The summed answer-token loss of one forward pass (fp32, on the device)."""

    def step_shape(self, answer_tokens: int, passes: int) -> tuple[float, int]:
        """What each pass's summed loss is divided by, and how many passes this rank runs.

        One process, or DDP: this rank's answer tokens, and its own passes. Sharded: every rank divides
        by the mean answer tokens per rank, since FSDP averages the ranks' gradients: so every token of
        the step weighs the same, as in one process. And every rank runs as many passes as the rank with
        most, since each pass gathers every layer from all ranks."""
        if self.agreement is None:
            return max(1, answer_tokens), passes
        total, most = self.agreement.agree(answer_tokens, passes)
        return max(1, total) / self.dist.world, most

    def backward_each(self, passes: list, divisor: float, runs: int, counts: list[tuple[int, int]],
                      answer_tokens: int) -> StepSums:
        """Forward and backward through each of the step's passes, each loss divided by `divisor`
        (step_shape), so every token weighs the same whichever pass it sits in. With DDP, the
        gradients are summed across processes after the last pass only. Passes beyond this rank's own
        (`runs` more than `passes`) repeat its last one with a weight of 0: they only keep this rank in
        step with the others' collectives."""
        loss_sum = None  # on the device: reading it here would wait for the GPU (step_totals.py)
        for i in range(runs):
            counted = i < len(passes)
            holding_back = isinstance(self.module, torch.nn.parallel.DistributedDataParallel) and i < runs - 1
            with self.module.no_sync() if holding_back else nullcontext():
                loss = self.summed_loss(passes[min(i, len(passes) - 1)]) / divisor
                (loss if counted else loss * 0).backward()
            if counted:
                summed = loss.detach() * divisor
                loss_sum = summed if loss_sum is None else loss_sum + summed
        if loss_sum is None:  # no micro-batch (a rank given none this step)
            loss_sum = torch.zeros((), device=self.device)
        return StepSums(loss_sum, answer_tokens, sum(n for n, _ in counts), sum(t for _, t in counts))


class PaddedSteps(StepRunner):
    """Each micro-batch as collated: padded to its longest sample, through the model's forward pass
    (the vision tower runs on every picture at every step, logits come for every position).
    Built as PaddedSteps(peft_model, dist, device, autocast)."""

    def forward_backward(self, micro_batches: list[dict]) -> StepSums:
        answer_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro_batches)
        # read on the CPU, before the batches are copied to the device
        counts = [(b["labels"].shape[0], int(b["attention_mask"].sum())) for b in micro_batches]
        divisor, runs = self.step_shape(answer_tokens, len(micro_batches))
        return self.backward_each(micro_batches, divisor, runs, counts, answer_tokens)

    def summed_loss(self, batch: dict) -> torch.Tensor:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("labels")  # (B, T)
        with self.autocast:
            logits = self.module(**batch, use_cache=False).logits  # (B, T, vocab)
        return answer_loss(logits, labels)


class PackedSteps(StepRunner):
    """The step's samples regrouped into rows of up to `pack_tokens` tokens (packed.py). The loss is
    normalised by the whole step's answer tokens, so how they are grouped changes nothing but speed
    (fewer, larger matrix products) and memory."""

    def __init__(self, model: torch.nn.Module, cache: PackedCache, pack_tokens: int, dist: Dist,
                 device: torch.device, dtype: torch.dtype, autocast: torch.autocast,
                 root: ShardedModel | None = None) -> None:
        super().__init__(PackedLoss(model), dist, device, autocast, root)
        self.model, self.cache, self.pack_tokens, self.dtype = model, cache, pack_tokens, dtype
        # LoRA's A and B in the compute dtype, cast once a step (build_model makes them where they help)
        self.adapters = getattr(model, "low_precision_adapters", None)

    def forward_backward(self, micro_batches: list[list]) -> StepSums:
        items = [item for batch in micro_batches for item in batch]  # (index, encoded sample or None)
        prepared = prepared_samples(self.cache, items, self.model, self.device, self.dtype)  # new pictures: the tower
        grouped = split_rows(prepared, self.pack_tokens)
        answer_tokens = sum(len(sample.answer_at) for sample in prepared)
        divisor, runs = self.step_shape(answer_tokens, len(grouped))
        # Sharded, a rank that has fewer rows than another splits its rows (each sample's own
        # tokens and loss unchanged) before it runs extra passes that count nothing.
        rows = [pack(row) for row in split_rows_further(grouped, runs)]
        counts = [(row.samples, row.bounds[-1]) for row in rows]
        # A and B cast for the step's rows once (the optimizer changes them after)
        with self.adapters.step() if self.adapters is not None else nullcontext():
            return self.backward_each(rows, divisor, runs, counts, answer_tokens)

    def summed_loss(self, row: PackedRow) -> torch.Tensor:
        with self.autocast:
            return self.module(row)

    def log_summary(self) -> None:
        cache = self.cache
        log.info("packed batches: samples prepared %d times, reused from the cache %d times; the prepared "
                 "samples showed %d pictures, %d of them went through the vision tower (%.2f GB cached%s)",
                 cache.computed, cache.reused, cache.picture_slots, cache.pictures_computed, cache.used / 2**30,
                 " in CPU memory" if cache.on_host else "")


def step_runner(packed: bool, model: torch.nn.Module, cache: PackedCache | None, pack_tokens: int, dist: Dist,
                device: torch.device, dtype: torch.dtype, autocast: torch.autocast,
                root: ShardedModel | None = None) -> StepRunner:
    """The passes of the path the job trains on: packed rows (`packed`, with the picture cache
    `cache`; model.packs() decides) or padded batches. `model` is the model being trained, built for
    that path; `root` its FSDP2 root when the job is sharded (sharding.shard)."""
    if packed:
        return PackedSteps(model, cache, pack_tokens, dist, device, dtype, autocast, root)
    return PaddedSteps(model, dist, device, autocast, root)


def for_ranks(module: torch.nn.Module, dist: Dist, device: torch.device, root: ShardedModel | None = None):
    """What a step's passes go through: `module` through FSDP2's `root` when the job is sharded (FSDP
    reduces the gradients); in DDP when there are several processes (each holds the whole model);
    as it is alone.

    broadcast_buffers off: DDP would walk the whole module tree in Python before every forward pass
    to send buffers (the rotary tables) that never change; 3-4% of a rank's time on 2 H200s (py-spy,
    2026-11-30)."""
    if root is not None:
        return partial(root, call=module)
    if dist.world == 1:
        return module
    trainable = [p for p in module.parameters() if p.requires_grad]
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[dist.local_rank] if device.type == "cuda" else None,
        bucket_cap_mb=one_bucket_mb(trainable), broadcast_buffers=False)


def one_bucket_mb(trainable: list[torch.Tensor]) -> float:
    """A DDP bucket size that holds every trainable gradient, so the all-reduce runs once, after the
    backward pass, instead of bucket by bucket during it. LoRA's gradients are small (2 H200s sum the
    2B recipe's 148 M in 1.9 ms, bench/bench_allreduce.py), and NCCL's kernels running beside the
    backward pass slowed it more than the overlap saved: steps after the first epoch went from 0.29 s
    to 0.27 s on 2 H200s (2026-11-30, bench/bench_train_scaling.py)."""
    return sum(p.numel() * p.element_size() for p in trainable) / 2**20 + 1


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over answer tokens. Position t predicts token t+1, so logits drop their
    last position and labels their first. Only answer positions are upcast to fp32: the full
    (B, T, vocab) logits in fp32 would cost gigabytes with a 150k vocabulary."""
    shifted = labels[:, 1:]  # (B, T-1)
    keep = shifted != IGNORE_INDEX
    return F.cross_entropy(logits[:, :-1][keep].float(), shifted[keep], reduction="sum")
