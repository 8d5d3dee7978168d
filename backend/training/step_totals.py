"""A training step's totals read back from the GPU one step late.

Reading a step's loss (`.item()`) right after its backward pass makes the CPU wait for the GPU to
finish the whole step before it starts on the next one, and the next forward pass is bound by the
CPU handing kernels over: the GPU then idles while Python catches up. Here the loss is copied to
page-locked memory behind the step's kernels and read after the next step's kernels have been
queued, by which time it has long arrived (on an H200, the backward pass of a 10,215-token row
was handed over in 81 ms and done at 107 ms: bench/profile_step_parts.py).

With several ranks, the totals are summed across them on the GPU in the same queue, and carry
whether any rank was asked to stop: every rank reads the same sum at the same step, so all stop
together, one step after the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepTotals:
    """One step's figures, over all ranks."""

    step: int
    lr: float
    loss: float  # per answer token
    answer_tokens: int
    samples: int
    tokens: int
    seconds: float  # from the step's start to its end, as the device ran it
    elapsed: float  # from the run's start to the step's end, likewise
    stop_asked: bool  # by any rank


class StepClock:
    """Marks a point in the device's queue: on a GPU, an event that takes the time when the GPU
    reaches it; on a CPU, where work runs as it is called, the time now."""

    def __init__(self, device: torch.device) -> None:
        self.event = None
        self.wall = time.perf_counter()
        if device.type == "cuda":
            self.event = torch.cuda.Event(enable_timing=True)
            self.event.record()

    def seconds_to(self, end: "StepClock") -> float:
        """Seconds from this mark to `end` (both reached: call after waiting for `end`)."""
        if self.event is not None and end.event is not None:
            return self.event.elapsed_time(end.event) / 1e3
        return end.wall - self.wall


class StepInFlight:
    """A finished step's totals on their way to the CPU; `read()` waits for them alone."""

    def __init__(self, step: int, lr: float, loss_sum: torch.Tensor, counts: tuple[int, int, int],
                 stop_asked: bool, started: StepClock, world: int) -> None:
        # loss_sum: the step's summed loss, on the device; counts: answer tokens, samples, tokens
        self.step, self.lr, self.started = step, lr, started
        self.counts, self.stop_asked = counts, stop_asked  # this rank's
        self.summed = world > 1
        values = loss_sum.detach().reshape(1).to(torch.float64)
        if self.summed:
            mine = torch.tensor([*counts, float(stop_asked)], dtype=torch.float64)
            if values.is_cuda:
                mine = mine.pin_memory().to(values.device, non_blocking=True)
            values = torch.cat([values, mine])
            torch.distributed.all_reduce(values)
        self.host = values
        if values.is_cuda:
            self.host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True).copy_(values, non_blocking=True)
        self.ended = StepClock(values.device)

    def read(self, run_start: StepClock) -> StepTotals:
        """The totals, waiting for this step's work alone; times measured from `run_start` too."""
        if self.ended.event is not None:
            self.ended.event.synchronize()
        values = self.host.tolist()
        answer_tokens, samples, tokens, stop = values[1:] if self.summed else (*self.counts, self.stop_asked)
        return StepTotals(self.step, self.lr, values[0] / max(1, answer_tokens), int(answer_tokens), int(samples),
                          int(tokens), self.started.seconds_to(self.ended), run_start.seconds_to(self.ended),
                          bool(stop))
