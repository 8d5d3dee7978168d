"""A training job's samples, how they are dealt into steps, and the loaders that decode them.

train() (lora.py) reads this before it loads the model, so a data file with no usable sample is
reported at once, and the first epoch's loader workers decode pictures while the weights load.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.training.encoding import SampleDataset, collate, estimated_tokens
from backend.training.errors import TrainingError
from backend.training.packed import PackedCache, UnpreparedSamples
from backend.training.processes import Dist, quiet_data_worker, start_loader
from backend.training.samples import Sample, read_samples
from backend.training.schedule import epoch_order, step_parts
from backend.training.spec import JobSpec

log = logging.getLogger("foodie.train")

# Encoded samples are kept in memory between epochs when they fit in this much.
CACHE_BYTES = 512 * 2**20


@dataclass
class JobData:
    spec: JobSpec
    dist: Dist
    on_gpu: bool
    packed: bool
    pixel_dtype: torch.dtype  # what the packed path's loader hands pictures over in
    dataset: SampleDataset
    eval_samples: list[Sample]
    cache: PackedCache | None  # the packed path's prepared samples and picture embeddings
    pad_id: int
    groups: list  # per sample: the photos it shows (kept on one rank), or its own index
    lengths: list[int] | None  # per sample, its estimated tokens (with several ranks, to even out steps)
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches of `epoch`, as sample indices: from its own share of the samples,
        or in a sharded job from its part of each step of the order one process would take."""
        spec, size = self.spec, self.spec.batch_size
        if spec.shard:
            parts = step_parts(epoch_order(len(self.dataset), spec.seed, epoch, Dist()), size * spec.grad_accum,
                               self.dist)
            return [part[i : i + size] for part in parts for i in range(0, len(part), size)]
        order = epoch_order(len(self.dataset), spec.seed, epoch, self.dist, self.groups, self.lengths,
                            size * spec.grad_accum)
        return [order[i : i + size] for i in range(0, len(order), size)]

    def loader_from(self, step: int):
        """The micro-batches of `step`'s epoch from that step on, decoded by the loader's workers as
        they are needed (a resumed job starts mid-epoch)."""
        epoch = step // self.steps_per_epoch
        first = (step % self.steps_per_epoch) * self.spec.grad_accum  # the batches already trained on
        return self.open_loader(epoch, self.epoch_batches(epoch)[first:])

    def step_batches(self, step: int, early_loader=None):
        """Each step's micro-batches (grad_accum of them; fewer at an epoch's end), from `step` to the
        job's last, each step's still to be taken from the loader: take them all before asking for
        the next step's. An epoch's loader opens when its first step is due; `early_loader`, opened
        before the model loaded, serves `step`'s epoch."""
        while step < self.total_steps:
            loader = early_loader if early_loader is not None else self.loader_from(step)
            early_loader = None
            for _ in range(step % self.steps_per_epoch, self.steps_per_epoch):
                yield itertools.islice(loader, self.spec.grad_accum)
                step += 1

    def open_loader(self, epoch: int, batches: list[list[int]]):
        """The micro-batches of `batches`, decoded by the loader's workers as they are needed."""
        spec, cache = self.spec, self.cache
        workers = spec.data_workers
        if self.packed:  # the loader decodes only what is not prepared yet (set fixed when its workers fork)
            source, collate_fn = UnpreparedSamples(self.dataset, set(cache.samples), self.pixel_dtype), list
            if all(i in cache.samples for batch in batches for i in batch):
                workers = 0  # nothing left to decode: starting worker processes would be all it did
        else:
            pad_id = self.pad_id
            source, collate_fn = self.dataset, (lambda items: collate(items, pad_id))
        # its own generator: making a loader then draws nothing from the global one (LoRA's initial
        # weights and the dropout masks), wherever in the job it is made
        seeds = torch.Generator().manual_seed(spec.seed * 10_000 + epoch * 100 + self.dist.rank)
        loader = torch.utils.data.DataLoader(
            source, batch_sampler=batches, num_workers=workers, generator=seeds,
            collate_fn=collate_fn, pin_memory=self.on_gpu, worker_init_fn=quiet_data_worker)
        return start_loader(loader)


def read_job_data(spec: JobSpec, processor, packed: bool, dist: Dist, on_gpu: bool,
                  pixel_dtype: torch.dtype) -> JobData:
    """The job's training and held-out samples, read and checked, and the step schedule they give."""
    train_samples, problems = read_samples(Path(spec.data_file), spec.images_dir)
    for problem in problems:
        log.warning("skipped: %s", problem)
    if not train_samples:
        raise TrainingError("no_usable_sample", "{path} holds no usable sample ({skipped} skipped).",
                            path=spec.data_file, skipped=len(problems))
    eval_samples: list[Sample] = []
    if spec.eval_file:
        eval_samples, eval_problems = read_samples(Path(spec.eval_file), spec.images_dir)
        for problem in eval_problems:
            log.warning("held-out sample skipped: %s", problem)
    # Keep encoded samples in memory when they are few and small and decoded in this process
    # (Qwen2-VL patches cost ~24 bytes per pixel); otherwise decode each time, in DataLoader workers.
    small = len(train_samples) * spec.max_image_pixels * 24 < CACHE_BYTES
    dataset = SampleDataset(train_samples, processor, spec.max_image_pixels, spec.max_length,
                            cache=small and spec.data_workers == 0 and not packed)
    # QLoRA, the memory-first recipe, keeps the picture embeddings in CPU memory (as its embedding table)
    cache = PackedCache(int(spec.vision_cache_gb * 2**30), on_host=spec.qlora and on_gpu) if packed else None
    pad_id = processor.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = processor.tokenizer.eos_token_id

    # the photos each sample shows (a sample without any is a group of its own), kept on one rank;
    # with several ranks, each step's tokens shared out evenly between them
    groups = [tuple(sample.images) or index for index, sample in enumerate(dataset.samples)]
    lengths = ([estimated_tokens(sample, spec.max_image_pixels) for sample in dataset.samples]
               if dist.world > 1 and not spec.shard else None)
    step_size = spec.batch_size * spec.grad_accum
    if spec.shard:  # the ranks take parts of each step of one order (JobData.epoch_batches)
        steps_per_epoch = math.ceil(len(dataset) / (step_size * dist.world))
    else:
        per_rank = len(epoch_order(len(dataset), spec.seed, 0, dist, groups, lengths, step_size))
        steps_per_epoch = math.ceil(math.ceil(per_rank / spec.batch_size) / spec.grad_accum)
    total_steps = steps_per_epoch * spec.epochs
    log.info("%d training samples, %d held-out; %d epochs x %d steps = %d steps; effective batch %d",
             len(train_samples), len(eval_samples), spec.epochs, steps_per_epoch, total_steps,
             step_size * dist.world)
    return JobData(spec, dist, on_gpu, packed, pixel_dtype, dataset, eval_samples, cache, pad_id, groups, lengths,
                   steps_per_epoch, total_steps, round(spec.warmup_ratio * total_steps))
