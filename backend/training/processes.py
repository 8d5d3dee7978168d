"""The training program as processes: where it sits in a torchrun launch, the stop signals it
answers, and the DataLoader workers that must not die of them. Used by lora.py and job_data.py."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import weakref
from dataclasses import dataclass

import torch

log = logging.getLogger("foodie.train")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a torchrun launch (rank 0 of 1 when run alone)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(use_cuda: bool, sharded: bool = False) -> Dist:
    """This process's place in a torchrun launch, with the process group started when there are
    several processes, or when the job is `sharded` (FSDP2 needs a group, even of one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and not sharded:
        return Dist()
    dist = Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
    # nccl between GPUs; gloo lets the same code run as several CPU processes (used by the tests).
    backend = "nccl" if use_cuda else "gloo"
    if "MASTER_ADDR" in os.environ:  # started by torchrun
        torch.distributed.init_process_group(backend=backend)
    else:  # one process started alone: a group of one, with nothing to meet over the network
        torch.distributed.init_process_group(backend=backend, store=torch.distributed.HashStore(), rank=0,
                                             world_size=1)
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
        batches = iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    if getattr(batches, "_workers", None):
        _open_loaders.add(batches)
    return batches


# Every loader start_loader began with worker processes, while it lives. At exit, multiprocessing ends
# its children with SIGTERM and waits for them; a worker still there (train() raised with its loader
# open, in a process that called train() itself, as the benchmarks do) ignores that, and the wait
# would never end.
_open_loaders: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_loaders() -> None:
    """Registered after multiprocessing's own exit handler, so it runs before it: each open loader is
    shut down as its iterator does when deleted (its workers told to finish, and its SIGCHLD watch
    removed, so their ending is no error), and any worker still alive then is killed."""
    for batches in list(_open_loaders):
        workers = list(batches._workers)
        batches._shutdown_workers()  # torch's own shutdown (private, but what its __del__ calls)
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)
