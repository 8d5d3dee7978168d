"""The training program's moving parts that are not the model: processes and signals, the
learning-rate schedule, the data order, and the metrics file. Used by lora.py."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.problems import ProblemError

log = logging.getLogger("foodie.train")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class TrainingError(ProblemError, RuntimeError):
    """A failure with a sentence that tells the person what to do: raise TrainingError("key",
    "English {value}.", value=...), so that the Train tab can say it in the page's language."""


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a torchrun launch (rank 0 of 1 when run alone)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(use_cuda: bool) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    dist = Dist(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), world)
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
    # nccl between GPUs; gloo lets the same code run as several CPU processes (used by the tests).
    torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist


class StopFlag:
    """SIGTERM / SIGINT ask the loop to finish its current step, save a checkpoint and exit.

    A cancel sends SIGTERM to the whole process group, and torchrun forwards it again: repeats are
    ignored, so a checkpoint being written is never cut short. SIGKILL (or Ctrl-\\) stops it at once."""

    def __init__(self) -> None:
        self.requested = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if not self.requested:
            log.info("%s received: finishing this step (with several processes, the next one too), then "
                     "saving and stopping", signal.Signals(signum).name)
        self.requested = True


def quiet_data_worker(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGINT. A cancel signals the whole process group; the
    training process decides when to stop, and a worker dying of SIGTERM would turn a clean stop
    into a failure. (They still exit when the training process does.)"""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_loader(loader: torch.utils.data.DataLoader):
    """iter(loader), which forks the workers, with the stop signals held back meanwhile: a cancel
    arriving during the fork reaches neither a worker (not yet ignoring it) nor is it lost (the
    training process receives it right after)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def lr_at(step: int, total: int, warmup: int, peak: float, schedule: str) -> float:
    """Learning rate for optimiser step `step` (0-based): linear warmup, then cosine to 0 or flat."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def clock(seconds: float) -> str:
    """h:mm:ss, for the log and the Train tab."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
    slowest rank held 4.0% more tokens than the mean (1.0% balanced; bench/README.md)."""
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


class Metrics:
    """Appends one JSON object per line to metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            # Records past the checkpoint we resume from belong to steps that will run again.
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if _record_step(line) is not None and _record_step(line) <= resume_step]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(path)

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def _record_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
