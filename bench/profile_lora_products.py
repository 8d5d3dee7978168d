"""The products of one LoRA layer of the 2B model's language model, each timed alone on a GPU, with
the rate it reaches: which of LoRA's small products are slow, and what doing them another way gives.
A tool for finding what to speed up (bench_train_speed.py is the benchmark).

    python3 bench/profile_lora_products.py                 # a GPU, a row of 9,041 tokens, r=128
    python3 bench/profile_lora_products.py --dry-run       # a CPU, small sizes: checks it runs

For every adapted layer shape of Qwen2-VL-2B's language model (q, k, v, o, gate, up, down), the
operations LoraLinear (backend/training/lora_forward.py) does in the forward and backward pass, and
some alternatives for the same result:
- "x|low @ W|sB": the frozen product and the adapter's second product as one product over the input
  and the low-rank activation laid side by side (the weights side by side too), instead of a
  product and an in-place `addmm_` over the whole output;
- "grad @ W|sB": the input gradient of the frozen layer and the low-rank gradient as one product.
Each is checked against the operations it replaces.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

SHAPES = {"q": (1536, 1536), "k": (1536, 256), "v": (1536, 256), "o": (1536, 1536),
          "gate": (1536, 8960), "up": (1536, 8960), "down": (8960, 1536)}


def timed(fn, device, reps: int) -> float:
    """Milliseconds per call, the mean of `reps` calls after two untimed ones."""
    for _ in range(2):
        fn()
    if device.type != "cuda":
        return float("nan")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / reps


def layer_table(tokens: int, d_in: int, d_out: int, rank: int, device, dtype, reps: int) -> list[tuple]:
    torch.manual_seed(0)
    scale = 2.0
    x = torch.randn(tokens, d_in, device=device, dtype=dtype)
    w = torch.randn(d_out, d_in, device=device, dtype=dtype) / d_in ** 0.5
    a = torch.randn(rank, d_in, device=device, dtype=dtype) / d_in ** 0.5
    b = torch.randn(d_out, rank, device=device, dtype=dtype) / rank ** 0.5
    grad = torch.randn(tokens, d_out, device=device, dtype=dtype)
    low = x @ a.t()
    grad_low = grad @ b
    out = F.linear(x, w)
    wide_x = torch.cat([x, low], dim=1)
    wide_w = torch.cat([w, b * scale], dim=1)

    def dropout():
        return torch.native_dropout(x, 0.05, True) if device.type == "cuda" else F.dropout(x, 0.05)

    def mm(m, n, k):
        return 2.0 * m * n * k

    rows = [
        ("base forward  x @ W^T", lambda: F.linear(x, w), mm(tokens, d_out, d_in)),
        ("dropout(x)", dropout, 0.0),
        ("low = x @ A^T", lambda: x @ a.t(), mm(tokens, rank, d_in)),
        ("out += s low @ B^T (addmm_)", lambda: out.addmm_(low, b.t(), alpha=scale), mm(tokens, d_out, rank)),
        ("x|low @ W|sB (one product)", lambda: F.linear(wide_x, wide_w), mm(tokens, d_out, d_in + rank)),
        ("base input grad  grad @ W", lambda: grad @ w, mm(tokens, d_in, d_out)),
        ("grad_low = grad @ B", lambda: grad @ b, mm(tokens, rank, d_out)),
        ("grad @ W|sB (one product)", lambda: grad @ wide_w, mm(tokens, d_in + rank, d_out)),
        ("grad_A = grad_low^T @ x", lambda: grad_low.t() @ x, mm(rank, d_in, tokens)),
        ("grad_B = grad^T @ low", lambda: grad.t() @ low, mm(d_out, rank, tokens)),
        # both input gradients, as LoraLinear adds them (less the row above: what the adapter's adds)
        ("grad @ W, then += grad_low @ A", lambda: (grad @ w).addmm_(grad_low, a),
         mm(tokens, d_in, rank) + mm(tokens, d_in, d_out)),
    ]
    # the alternatives give what they replace (bf16 products, so to bf16 rounding)
    joined = F.linear(wide_x, wide_w)
    apart = F.linear(x, w).addmm_(low, b.t(), alpha=scale)
    both = grad @ wide_w
    diff = max(_relative(joined, apart), _relative(both[:, :d_in], grad @ w),
               _relative(both[:, d_in:], (grad @ b) * scale))
    return [(name, timed(fn, device, reps), flops) for name, fn, flops in rows], diff


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=9041)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    tokens = 64 if args.dry_run else args.tokens
    shapes = {name: (d_in // 16, d_out // 16) for name, (d_in, d_out) in SHAPES.items()} if args.dry_run else SHAPES
    name_width = 30
    for layer, (d_in, d_out) in shapes.items():
        rows, diff = layer_table(tokens, d_in, d_out, args.rank, device, dtype, args.reps)
        print(f"\n{layer} ({d_in} -> {d_out}, {tokens} tokens, r={args.rank}); one-product forms differ "
              f"from the separate ones by {diff:.2e} (relative norm)")
        for name, ms, flops in rows:
            rate = flops / (ms * 1e-3) / 1e12 if flops and ms == ms else float("nan")
            print(f"  {name:<{name_width}} {ms:8.3f} ms  {rate:7.1f} TFLOP/s")


if __name__ == "__main__":
    main()
