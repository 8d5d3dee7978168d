"""What a job trains on at each step: the learning rate, and the order of its samples in each epoch
(on each rank). Both are functions of their arguments only, so a resumed job continues exactly the
schedule the interrupted one would have followed."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch

from backend.training.processes import Dist


def lr_at(step: int, total: int, warmup: int, peak: float, schedule: str) -> float:
    """Learning rate for optimiser step `step` (0-based): linear warmup, then cosine to 0 or flat."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_order(n: int, seed: int, epoch: int, dist: Dist, groups: Sequence[Hashable] | None = None,
                lengths: Sequence[int] | None = None, step_size: int = 0) -> list[int]:
    """This rank's samples for `epoch`, in order. A function of its arguments only, so a resumed run
    sees exactly the batches the interrupted one would have seen.

    With several GPUs each rank keeps the same share of the samples in every epoch, shuffled anew
    within it: the pictures a rank encoded and cached in the first epoch are the ones it meets again,
    instead of about half of them moving to another GPU, to be decoded and encoded there once more.
    Samples in one group (`groups[i]`: the photos sample i shows) stay on one rank, so a photo asked
    about several times goes through the vision tower on one GPU only. Every epoch still covers every
    sample once; ranks get the same number of samples, a few seen twice to even them.

    With `lengths` (about how many tokens each sample is) and `step_size` (samples per rank and
    step), each step of several ranks holds about the same number of tokens on every rank: the ranks
    wait for the slowest at every step's gradient sum, and with random steps of 16 photo samples the
    slowest rank held 4.0% more tokens than the mean, 1.0% balanced (2026-11, counted on the bench's
    256 photo samples: bench/bench_train_scaling.py)."""
    if dist.world == 1:
        shard = list(range(n))
    else:
        shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 - 1)).tolist()
        shard = _share(shuffled, dist, groups, lengths)
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = [shard[i] for i in torch.randperm(len(shard), generator=generator).tolist()]
    if dist.world > 1 and lengths is not None and step_size > 0:
        order = _even_steps(order, lengths, step_size, generator)
    return order


def step_parts(order: list[int], step_size: int, dist: Dist) -> list[list[int]]:
    """This rank's part of each step when all ranks share one order (a sharded job, whose every pass
    needs every rank): `order` cut into steps of `step_size` samples per rank, and each step into
    contiguous parts, one per rank, whose sizes differ by one at most. So the job sees the samples
    one process would see, in the same steps, however many processes share it. A last step of fewer
    samples than ranks takes some again from the epoch's start, so that no rank is without one."""
    whole = step_size * dist.world
    parts = []
    for start in range(0, len(order), whole):
        step = order[start : start + whole]
        step += order[: max(0, dist.world - len(step))]
        size, longer = divmod(len(step), dist.world)
        first = dist.rank * size + min(dist.rank, longer)
        parts.append(step[first : first + size + (dist.rank < longer)])
    return parts


def _even_steps(order: list[int], lengths: Sequence[int], step_size: int, generator: torch.Generator) -> list[int]:
    """`order` regrouped into steps of `step_size` that each take one sample from every stratum of
    similar lengths (the samples sorted by length, cut into as many strata as there are steps'
    places), dealt to the steps at random: every step gets about the mean number of tokens, and
    which samples meet in a step still changes every epoch. A last, partial step keeps the last
    samples of the shuffled order."""
    full = len(order) // step_size
    if full < 2:
        return order
    body, tail = order[: full * step_size], order[full * step_size :]
    by_length = sorted(body, key=lambda index: lengths[index])  # stable: equal lengths stay shuffled
    steps: list[list[int]] = [[] for _ in range(full)]
    for start in range(0, len(by_length), full):
        for step, index in zip(torch.randperm(full, generator=generator).tolist(), by_length[start : start + full]):
            steps[step].append(index)
    return [index for step in steps for index in step] + tail


def _share(shuffled: list[int], dist: Dist, groups: Sequence[Hashable] | None,
           lengths: Sequence[int] | None = None) -> list[int]:
    """This rank's share of the shuffled samples: every world-th one, or, with groups, whole groups
    dealt in turn to the rank that has fewest so far (of those, the one with fewest tokens, given
    `lengths`); then the shares evened out."""
    if groups is None:
        shares = [shuffled[rank :: dist.world] for rank in range(dist.world)]
    else:
        members: dict[Hashable, list[int]] = {}
        for index in shuffled:
            members.setdefault(groups[index], []).append(index)
        shares = [[] for _ in range(dist.world)]
        tokens = [0] * dist.world
        for group in members.values():
            # the first of the smallest: the same choice on every rank
            rank = min(range(dist.world), key=lambda r: (len(shares[r]), tokens[r] if lengths else 0))
            shares[rank].extend(group)
            tokens[rank] += sum(lengths[i] for i in group) if lengths else 0
    longest = max(len(share) for share in shares)
    mine = shares[dist.rank]
    return (mine * (longest // max(1, len(mine)) + 1))[:longest] if mine else []
