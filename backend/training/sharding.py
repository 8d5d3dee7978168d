"""A job's model sharded across its processes with FSDP2 (torch's `fully_shard`): each process
holds a slice of every trained weight, of its gradient and of its optimizer state, and gathers a
layer's weights whole only while that layer runs. For a model whose full fine-tune (or a large
model's LoRA) does not fit one GPU. Why FSDP2 rather than DeepSpeed ZeRO-3: docs/training.md.

What is sharded (`shard`): the language model. Each decoder layer is a unit of its own (gathered
just before it runs, freed after, gathered again for its backward pass); the rest of the language
model (embeddings, final norm, LM head, tied or not) is the root's unit. The vision tower and
projector stay whole on every process (`ignored_params`): they are frozen, so they have no
gradient or optimizer state to split, and the packed path runs them in prepare(), outside any
forward pass FSDP hooks into.

Every use of the model goes through the root's forward (`ShardedModel`), so FSDP's root hooks run
around each one: a training pass through PackedLoss or the model's own forward, or a held-out batch.

Processes must run the same collectives in the same order: `StepAgreement` has them agree, once a
step, on the step's answer tokens over all ranks (each token weighs the same, as in one process)
and on how many passes the step takes (a rank with fewer runs an extra one that counts nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger("foodie.train")


class ShardedModel(torch.nn.Module):
    """FSDP2's root: holds the model, and runs each use of it inside its own forward pass.

    `root(**batch)` is the model's forward pass; `root(row, call=packed_loss)` runs any other
    callable that uses the model (PackedLoss, which calls the embeddings, the language model and
    the LM head one by one). Either way the root's hooks gather the root's unit first and the
    decoder layers' own hooks gather each layer, whatever path the job's passes take."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, call: Callable | None = None, **kwargs):
        return (self.model if call is None else call)(*args, **kwargs)


def trained_part(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules FSDP shards: the language model (get_decoder) and its LM head. The rest, the
    vision tower and projector, is never trained here."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [base.get_decoder(), base.get_output_embeddings()]


def shard(model: torch.nn.Module) -> ShardedModel:
    """`model` (on its device, the process group started) sharded in place across the job's processes;
    returns the root that every use of it goes through. Parameters are replaced by sharded ones
    (DTensors): an optimizer must be made from model.parameters() after this."""
    from torch.distributed.fsdp import fully_shard

    # Each rank keeps its slice of the weights it holds now, so all must hold the same: rank 0's, as
    # DDP makes them (LoRA's initial weights are random, drawn with each rank's own seed).
    if torch.distributed.get_world_size() > 1:
        for parameter in model.parameters():
            if parameter.requires_grad:
                torch.distributed.broadcast(parameter.data, src=0)
    decoder, head = trained_part(model)
    for layer in decoder.layers:
        fully_shard(layer)
    sharded = {id(p) for module in (decoder, head) for p in module.parameters()}
    whole = {p for p in model.parameters() if id(p) not in sharded}
    root = ShardedModel(model)
    fully_shard(root, ignored_params=whole)
    log.info("FSDP2: %d decoder layers and the rest of the language model sharded over %d process%s; %.1f M "
             "frozen parameters (vision tower, projector) kept whole on each", len(decoder.layers),
             torch.distributed.get_world_size(), "" if torch.distributed.get_world_size() == 1 else "es",
             sum(p.numel() for p in whole) / 1e6)
    return root


class StepAgreement:
    """What the ranks of a sharded job settle together at each step, before its passes: the step's
    answer tokens over all ranks, and the most passes any rank takes.

    Over gloo, on the CPU: the counts are known there, and an NCCL collective would make the CPU
    wait for the GPU to finish the step before (a gloo group beside NCCL does not)."""

    def __init__(self, world: int) -> None:
        self.world = world
        on_gpu = torch.distributed.get_backend() != "gloo"
        self.group = torch.distributed.new_group(backend="gloo") if on_gpu and world > 1 else None

    def agree(self, answer_tokens: int, passes: int) -> tuple[int, int]:
        """(answer tokens of the step on all ranks, the most passes a rank takes)."""
        if self.world == 1:
            return answer_tokens, passes
        tokens, most = torch.tensor([answer_tokens]), torch.tensor([passes])
        torch.distributed.all_reduce(tokens, group=self.group)
        torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX, group=self.group)
        return int(tokens), int(most)
