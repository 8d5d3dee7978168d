"""Flash attention over a packed row (or a batch of pictures), called at the ATen level.

torch's `torch.nn.attention.varlen.varlen_attn` runs the same kernels through a `torch.library`
custom operator: its Python dispatch, argument defaults and autograd wrapper cost a few hundred
microseconds of CPU per call, and it fills a new tensor on the GPU each time. A packed training
step is bound by the CPU handing kernels to the GPU (bench/profile_step_parts.py: the forward pass
of a 10,215-token row took 93.7 ms to hand over and was done 0.1 ms later, on an H200), so that
overhead, once per layer each way, is time the GPU waits. Here the two ATen kernels are called
directly, inside one autograd node: the same kernels with the same arguments, so the same numbers.

Whether this torch has the kernel is `VARLEN_ATTENTION`. The packed path's attention (packed.py) and
the vision tower's fused kernels (vision_kernels.py) read it, and call `flash_varlen` and
`full_varlen_attention`, through this module when they run, so benchmarks and tests can switch them.
"""

from __future__ import annotations

import contextlib
import inspect

import torch


def _varlen_kernel():
    """torch's flash-attention varlen kernel (torch.nn.attention.varlen), where this torch has one.
    Its causal switch changed name across releases (is_causal=True, later window_size=(-1, 0))."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, {}
    accepted = inspect.signature(varlen_attn).parameters
    causal = {"is_causal": True} if "is_causal" in accepted else {"window_size": (-1, 0)}
    if "enable_gqa" in accepted:
        causal["enable_gqa"] = True
    return varlen_attn, causal


# torch's operator: where this torch has it, its kernels have the varlen form flash_varlen calls
# directly; also the reference the GPU test and profile_step_parts compare flash_varlen with
_varlen, _VARLEN_CAUSAL = _varlen_kernel()
# the same kernel attending both ways (the vision tower's attention inside each picture)
_VARLEN_FULL = {"is_causal": False} if "is_causal" in _VARLEN_CAUSAL else {"window_size": (-1, -1)}
# Used on CUDA when available; a switch so benchmarks and tests can compare it with the SDPA loop.
VARLEN_ATTENTION = _varlen is not None

_SPARE: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # per device, made once


def flash_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor,
                 longest: int, scale: float | None, causal: bool) -> torch.Tensor:
    """Attention inside each stretch cu_seqlens marks: query (tokens, heads, dim), key/value
    (tokens, kv_heads, dim) -> (tokens, heads, dim). Causal for the language model, both ways for a
    vision tower's pictures. Without a gradient to compute, no autograd node is made."""
    if not (query.requires_grad or key.requires_grad or value.requires_grad) or not torch.is_grad_enabled():
        return _forward(query, key, value, cu_seqlens, longest, scale, causal)[0]
    return FlashVarlen.apply(query, key, value, cu_seqlens, longest, scale, causal)


def full_varlen_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor,
                          longest: int, scaling: float | None) -> torch.Tensor:
    """Attention both ways inside each stretch of a batch (a vision tower's pictures): (patches,
    heads, dim) in and out."""
    return flash_varlen(query, key, value, cu_seqlens, longest, scaling, causal=False)


def _window(causal: bool) -> tuple[int, int]:
    return (-1, 0) if causal else (-1, -1)


def _forward(query, key, value, cu_seqlens, longest, scale, causal):
    left, right = _window(causal)
    out, lse, _, _, _ = torch.ops.aten._flash_attention_forward(
        query, key, value, cu_seqlens, cu_seqlens, longest, longest, 0.0, causal, False, scale=scale,
        window_size_left=left, window_size_right=right)
    return out, lse


def _spare(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The random-state and unused arguments of the backward kernel, which ignores both without
    dropout (torch's varlen_attn passes zeros and an empty tensor): made once per device."""
    if device not in _SPARE:
        _SPARE[device] = (torch.zeros(2, dtype=torch.uint64, device=device), torch.empty(0, device=device))
    return _SPARE[device]


class FlashVarlen(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, cu_seqlens, longest: int, scale, causal: bool):
        out, lse = _forward(query, key, value, cu_seqlens, longest, scale, causal)
        ctx.save_for_backward(query, key, value, out, lse, cu_seqlens)
        ctx.longest, ctx.scale, ctx.causal = longest, scale, causal
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out, lse, cu_seqlens = ctx.saved_tensors
        rng_state, unused = _spare(query.device)
        left, right = _window(ctx.causal)
        with _strict_if_deterministic():
            dq, dk, dv = torch.ops.aten._flash_attention_backward(
                grad_out.contiguous(), query, key, value, out, lse, cu_seqlens, cu_seqlens, ctx.longest,
                ctx.longest, 0.0, ctx.causal, rng_state, unused, scale=ctx.scale, window_size_left=left,
                window_size_right=right)
        return dq, dk, dv, None, None, None, None


@contextlib.contextmanager
def _strict_if_deterministic():
    """A deterministic job (lora.be_deterministic) asks torch for deterministic algorithms but only warns
    where an operation has none; flash attention's backward kernel, though, takes its deterministic form
    (no atomic adds into dq) only when torch is strict. So strict around it, and back after."""
    lenient = torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    if lenient:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        if lenient:
            torch.use_deterministic_algorithms(True, warn_only=True)
