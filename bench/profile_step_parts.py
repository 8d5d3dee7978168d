"""What a later-epoch packed training step spends its GPU time on (pictures already cached): the
same rows through the step as built, and through variants that each take one part away or do it
another way, timed side by side in one run, plus the top GPU kernels. A tool for finding what to
speed up next; bench_train_speed.py is the benchmark.

    python3 bench/profile_step_parts.py                  # Qwen2-VL-2B shape, 64 photo samples
    python3 bench/profile_step_parts.py --dry-run        # narrow model on a CPU, to check it runs

Variants: as built; each LoRA layer as separate autograd operations (not one LoraLinear node);
each with a product and an in-place add over the output (no joint [W | scaling B] products); A and
B cast in each layer (not once a step); attention through torch's varlen_attn operator; the
language model's RMSNorm through torch's own kernel instead of Liger's (two ways: rounded as
transformers rounds, or one kernel; an experiment, with their distance to transformers'); LoRA on
q, o, gate and down only (what three LoRA calls a layer cost: the most that grouping q/k/v and
gate/up into one call each could save); LoRA dropout off; adapters off (input gradients through the
frozen layers only: what the base model alone costs); the optimizer step alone. The variants are
timed round after round (--rounds), each round's figure printed beside the median: these hosts
drift by 10-30% within a run, more than most variants differ. With --compile instead (a model built without Liger, whose
patches are class-wide and whose kernels inductor would replace): eager against every decoder
layer through torch.compile, and the vision tower eager against compiled.

Before them, for three rows: how long the CPU takes to hand the forward and backward passes to the
GPU against how long they take to finish (close: the pass waits on Python, not on kernels);
--cpu-profile adds cProfile's tables over three forward passes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from profile_packed_step import set_up


@contextmanager
def dropout_off(model):
    from peft.tuners.lora import LoraLayer

    saved = []
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for name in list(module.lora_dropout):
                saved.append((module, name, module.lora_dropout[name]))
                module.lora_dropout[name] = torch.nn.Identity()
    try:
        yield
    finally:
        for module, name, dropout in saved:
            module.lora_dropout[name] = dropout


@contextmanager
def lora_as_separate_operations(model):
    """The folded LoRA forward as separate autograd operations, not one LoraLinear node."""
    folded = [m for m in model.modules() if getattr(m, "fused_backward", False)]
    for module in folded:
        module.fused_backward = False
    try:
        yield
    finally:
        for module in folded:
            module.fused_backward = True


def issue_times(loss_module, rows, autocast, sync) -> None:
    """How long the CPU takes to hand a row's forward and backward pass to the GPU, against how
    long they take to finish: where the two are close, the GPU waits for Python (the pass is bound
    by launching kernels, not by running them)."""
    for row in rows[:3]:
        sync()
        t0 = time.perf_counter()
        with autocast:
            loss = loss_module(row)
        t1 = time.perf_counter()
        sync()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        sync()
        t4 = time.perf_counter()
        print(f"row of {row.bounds[-1]} tokens: forward handed over in {(t1 - t0) * 1e3:.1f} ms, done in "
              f"{(t2 - t0) * 1e3:.1f} ms; backward handed over in {(t3 - t2) * 1e3:.1f} ms, done in "
              f"{(t4 - t2) * 1e3:.1f} ms", flush=True)


def forward_cpu_profile(loss_module, rows, autocast, sync, top: int) -> None:
    """Python's own profiler over the forward pass of three rows (the main thread only: the backward
    pass's Python parts run in autograd's own thread): which Python functions the CPU spends the
    launching on."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    for row in rows[:3]:
        sync()
        profiler.enable()
        with autocast:
            loss = loss_module(row)
        profiler.disable()
        loss.backward()
    sync()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    stats.print_callees("packed_sdpa|varlen_attn|_folded_forward|rms_norm_forward")


@contextmanager
def no_joint_products(model):
    """LoraLinear with a product and an in-place add over the output in every layer, not one product
    over [x | low] where the layer has a joint weight."""
    joined = [(m, m.joint_weight) for m in model.modules() if getattr(m, "joint_weight", None) is not None]
    for module, _ in joined:
        module.joint_weight = None
    try:
        yield
    finally:
        for module, joint in joined:
            module.joint_weight = joint


@contextmanager
def casts_in_each_layer(model):
    """Each LoRA layer casts its own A and B, not the copies LowPrecisionAdapters makes once a step."""
    adapters = getattr(model, "low_precision_adapters", None)
    layers = adapters.layers if adapters is not None else None
    if adapters is not None:
        adapters.layers = {}
    try:
        yield
    finally:
        if adapters is not None:
            adapters.layers = layers


@contextmanager
def torchs_varlen_operator():
    """Attention through torch's varlen_attn (a torch.library custom operator), not flash_varlen's
    direct calls of the same kernels."""
    from backend.training import flash_varlen

    direct = flash_varlen.flash_varlen

    def through_operator(query, key, value, cu_seqlens, longest, scale, causal):
        options = flash_varlen._VARLEN_CAUSAL if causal else flash_varlen._VARLEN_FULL
        return flash_varlen._varlen(query, key, value, cu_seqlens, cu_seqlens, longest, longest, scale=scale, **options)

    flash_varlen.flash_varlen = through_operator
    try:
        yield
    finally:
        flash_varlen.flash_varlen = direct


def _rounded_as_transformers(self, x: torch.Tensor) -> torch.Tensor:
    """transformers' RMSNorm arithmetic (normalised in fp32, rounded to x's dtype, times the weight)
    with torch's own rms_norm kernel for the normalising."""
    return self.weight * torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=self.variance_epsilon).to(x.dtype)


def _one_kernel(self, x: torch.Tensor) -> torch.Tensor:
    """torch's rms_norm with the weight, in one kernel (weight applied before the one rounding)."""
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), self.weight, self.variance_epsilon)


@contextmanager
def torchs_rms_norm(model, forward):
    """The language model's RMSNorm through torch's own kernel instead of Liger's Triton one (whose
    Python launcher costs ~100 us of CPU a call on the device's hosts): an experiment, not built in."""
    import types

    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon")]
    saved = [(m, vars(m).get("forward")) for m in norms]
    for module in norms:
        module.forward = types.MethodType(forward, module)
    try:
        yield
    finally:
        for module, previous in saved:
            if previous is None:
                del module.forward
            else:
                module.forward = previous


def rms_norm_differences(model, device, dtype) -> None:
    """How far each torch variant lands from transformers' own RMSNorm arithmetic on one norm."""
    norm = next((m for m in model.modules() if type(m).__name__.endswith("RMSNorm")
                 and hasattr(m, "variance_epsilon")), None)
    if norm is None:
        return
    x = torch.randn(4096, norm.weight.shape[-1], device=device, dtype=dtype) * 3
    with torch.no_grad():
        reference = norm.weight * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True)
                                                         + norm.variance_epsilon)).to(dtype)
        for label, forward in (("rounded as transformers", _rounded_as_transformers), ("one kernel", _one_kernel)):
            got = forward(norm, x)
            print(f"torch's rms_norm, {label}: bit-identical to transformers' {(got == reference).float().mean():.4f}, "
                  f"relative difference {((got.float() - reference.float()).norm() / reference.float().norm()):.2e}",
                  flush=True)


@contextmanager
def adapters_off(model):
    """peft's own switch, and the embeddings made to need a gradient, so the backward pass still runs
    through every layer (the input gradients a frozen base always costs)."""
    from backend.training import packed

    embedding = packed._inner(model).get_input_embeddings()
    hook = embedding.register_forward_hook(lambda module, args, out: out.requires_grad_(True))
    try:
        with model.disable_adapter():
            yield
    finally:
        hook.remove()


@contextmanager
def adapters_only_on(model, kept: tuple[str, ...] = ("q_proj", "o_proj", "gate_proj", "down_proj")):
    """LoRA on these projections only; the others (k, v and up of Qwen2's decoder) run as frozen
    layers. Against as built, what three LoRA calls a layer cost: the most that doing q/k/v and
    gate/up each as one call over their shared input could save (it would keep their GPU work)."""
    from peft.tuners.lora import LoraLayer

    switched = [m for name, m in model.named_modules()
                if isinstance(m, LoraLayer) and name.rsplit(".", 1)[-1] not in kept and not m.disable_adapters]
    for module in switched:
        module.enable_adapters(False)
    try:
        yield
    finally:
        for module in switched:
            module.enable_adapters(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--row-tokens", type=int, default=11000)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="the variants timed round after round, this many "
                        "times (a host that speeds up or slows down during the run then moves them all alike)")
    parser.add_argument("--compile", action="store_true", help="instead: without Liger, eager against every "
                        "decoder layer and vision block through torch.compile")
    parser.add_argument("--kernels", type=int, default=30, help="rows of the kernel table (0: none)")
    parser.add_argument("--cpu-profile", type=int, default=0, metavar="ROWS",
                        help="also print this many rows of cProfile's tables over three forward passes")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    from backend.training import packed

    device, dtype, _, model, _, dataset = set_up("profile-parts-", args.samples, args.dry_run,
                                                 fused_kernels=not args.compile)
    encoded = [dataset[i] for i in range(len(dataset))]
    prepared = [p for i in range(0, len(encoded), 16) for p in packed.prepare(model, encoded[i:i + 16], device, dtype)]
    rows = [packed.pack(r) for r in packed.split_rows(prepared, args.row_tokens)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    print(f"{len(rows)} rows, {sum(r.bounds[-1] for r in rows) / len(rows):.0f} tokens each on average", flush=True)

    adapters = getattr(model, "low_precision_adapters", None)

    def timed(label: str, loss_module, trainable, contexts=()) -> float:
        seconds, tokens_per_s, peak = measure(loss_module, trainable, contexts)
        print(f"{label}: {seconds * 1e3:.1f} ms per row, {tokens_per_s:.0f} tokens/s, peak {peak:.1f} GB", flush=True)
        return seconds

    def measure(loss_module, trainable, contexts=()) -> tuple[float, float, float]:
        """Seconds per row, tokens/s and peak GB over --iters rows, after two rows of warm-up."""
        def step(row):
            with adapters.step() if adapters is not None else nullcontext():  # as train() does
                with autocast:
                    loss = loss_module(row)
                loss.backward()
            return loss

        with ExitStack() as stack:
            for context in contexts:
                stack.enter_context(context)
            step(rows[0])  # warm-up (and compilation)
            step(rows[1 % len(rows)])
            sync()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0, tokens = time.perf_counter(), 0
            for i in range(args.iters):
                for p in trainable:
                    p.grad = None
                row = rows[i % len(rows)]
                step(row)
                tokens += row.bounds[-1]
            sync()
        seconds = (time.perf_counter() - t0) / args.iters
        peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else float("nan")
        return seconds, tokens / args.iters / seconds, peak

    def interleaved(variants: list) -> None:
        """(label, a function giving the variant's context managers) each timed once a round, for
        --rounds rounds; the median round of each, and every round's figure beside it."""
        times: dict[str, list[float]] = {label: [] for label, _ in variants}
        peaks: dict[str, float] = {}
        for _ in range(max(1, args.rounds)):
            for label, contexts in variants:
                seconds, _, peaks[label] = measure(loss_module, trainable, contexts())
                times[label].append(seconds)
        for label, seconds in times.items():
            rounds = " ".join(f"{s * 1e3:.1f}" for s in seconds)
            print(f"{label}: {statistics.median(seconds) * 1e3:.1f} ms per row (median of rounds: {rounds}), "
                  f"peak {peaks[label]:.1f} GB", flush=True)

    model.train()
    loss_module = packed.PackedLoss(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if args.compile:  # this model was built without Liger (its patches are class-wide, for the process)
        compare_compiled(model, loss_module, trainable, encoded, timed, sync, device, dtype)
        return
    # the first variant timed tends to pay a few ms more (the caching allocator still growing): the
    # median of several rounds leaves that out
    if device.type == "cuda":
        issue_times(loss_module, rows, autocast, sync)
    if args.cpu_profile:
        forward_cpu_profile(loss_module, rows, autocast, sync, args.cpu_profile)
    rms_norm_differences(model, device, dtype)
    interleaved([
        ("as built", lambda: []),
        ("LoRA as separate operations (not one node)", lambda: [lora_as_separate_operations(model)]),
        ("LoRA without joint products (product + in-place add)", lambda: [no_joint_products(model)]),
        ("A and B cast in each layer (not once a step)", lambda: [casts_in_each_layer(model)]),
        ("attention through torch's varlen_attn operator", lambda: [torchs_varlen_operator()]),
        ("RMSNorm by torch's kernel, rounded as transformers",
         lambda: [torchs_rms_norm(model, _rounded_as_transformers)]),
        ("RMSNorm by torch's kernel, one kernel", lambda: [torchs_rms_norm(model, _one_kernel)]),
        ("LoRA on q, o, gate and down only (k, v and up frozen)", lambda: [adapters_only_on(model)]),
        ("LoRA dropout off", lambda: [dropout_off(model)]),
        ("adapters off (frozen base, input gradients only)", lambda: [adapters_off(model)]),
    ])

    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=device.type == "cuda")
    for p in trainable:
        p.grad = torch.zeros_like(p)
    for i in range(args.iters + 2):
        if i == 2:
            sync()
            t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
    sync()
    print(f"clipping + AdamW step: {(time.perf_counter() - t0) / args.iters * 1e3:.1f} ms", flush=True)

    if args.kernels and device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for row in rows[:2]:
                with autocast:
                    loss = loss_module(row)
                loss.backward()
            sync()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.kernels, max_name_column_width=90))


def compare_compiled(model, loss_module, trainable, encoded, timed, sync, device, dtype) -> None:
    """Without Liger: eager, then every decoder layer and vision block through torch.compile."""
    from backend.training import packed

    def tower_ms() -> float:
        with torch.no_grad():
            for repeat in range(2):  # the first pass meets new shapes (and compiles)
                sync()
                t0 = time.perf_counter()
                for i in range(0, len(encoded), 16):
                    group = encoded[i:i + 16]
                    packed._image_features(
                        packed._inner(model), torch.cat([e.inputs["pixel_values"] for e in group]).to(device, dtype),
                        torch.cat([e.inputs["image_grid_thw"] for e in group]), device)
                sync()
                print(f"  vision tower pass {repeat + 1}: {(time.perf_counter() - t0) / len(encoded) * 1e3:.1f} ms "
                      "per picture", flush=True)
        return (time.perf_counter() - t0) / len(encoded) * 1e3

    timed("no Liger, eager", loss_module, trainable)
    print("vision tower, eager:", flush=True)
    tower_ms()
    for layer in packed._inner(model).language_model.layers:
        layer.compile(dynamic=True)
    t0 = time.perf_counter()
    timed("no Liger, decoder layers compiled", loss_module, trainable)
    print(f"  (with compilation: {time.perf_counter() - t0:.1f} s)", flush=True)
    for block in packed._inner(model).visual.blocks:
        block.compile(dynamic=True)
    print("vision tower, blocks compiled:", flush=True)
    try:
        tower_ms()
    except Exception as error:  # a tool: say what failed and finish
        print(f"  failed: {type(error).__name__}: {str(error)[:2000]}", flush=True)


if __name__ == "__main__":
    main()
