"""A training step's totals read back from the GPU one step late, and written to the metrics and the log.

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

import logging
import time
from dataclasses import dataclass

import torch

from backend.training.job_folder import Metrics, clock

log = logging.getLogger("foodie.train")


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

    def seconds_to(self, end: StepClock) -> float:
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


class StepLog:
    """Each step's figures into metrics.jsonl (every `log_every` steps and the last) and the job log."""

    def __init__(self, metrics: Metrics, log_every: int, total_steps: int, steps_per_epoch: int, first_step: int,
                 device: torch.device) -> None:
        self.metrics, self.log_every, self.total_steps = metrics, log_every, total_steps
        self.steps_per_epoch, self.first_step, self.device = steps_per_epoch, first_step, device
        self.run_start, self.clock = time.time(), StepClock(device)

    def write(self, in_flight: StepInFlight) -> StepTotals:
        """The step's totals, read (waiting for that step alone) and written where due."""
        totals = in_flight.read(self.clock)
        step, total_steps = totals.step, self.total_steps
        if step % self.log_every and step != total_steps:
            return totals
        elapsed = totals.elapsed  # to the step's end on the device, however late it is read
        eta = elapsed / max(1, step - self.first_step) * (total_steps - step)
        seconds = max(totals.seconds, 1e-9)
        record = {"step": step, "total_steps": total_steps, "epoch": round(step / self.steps_per_epoch, 4),
                  "loss": round(totals.loss, 6), "lr": totals.lr,
                  "samples": totals.samples, "tokens": totals.tokens,  # this step, all ranks
                  "samples_per_s": round(totals.samples / seconds, 3),
                  "tokens_per_s": round(totals.tokens / seconds, 1),
                  "eta_s": round(eta, 1), "elapsed_s": round(elapsed, 2), "time": time.time()}
        if self.device.type == "cuda":
            record["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
        self.metrics.write(record)
        log.info("step %d/%d | epoch %.2f | loss %.4f | lr %.2e | %.1f samples/s | %.0f tok/s | eta %s",
                 step, total_steps, record["epoch"], totals.loss, totals.lr, record["samples_per_s"],
                 record["tokens_per_s"], clock(eta))
        return totals
