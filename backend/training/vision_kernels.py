"""Two Triton kernels for the frozen vision tower of Qwen2-VL-style models, used in training's first
epoch (every picture goes through the tower once, then its embeddings are cached).

In eager PyTorch the tower spends a third of its GPU time on element-wise passes over memory, not on
its matrix products (H200, `bench/profile_vision_tower.py`):
- the rotary embedding of q and k is done in fp32 by transformers: a cast, two multiplies, a
  negation, a concatenation, an add and a cast back, for q and for k, each a full pass;
- QuickGELU, `x * sigmoid(1.702 * x)`, is three passes over the MLP's widest activation.
Each kernel here does its part in one pass, with the same arithmetic: the rotary embedding in fp32
rounded once at the end (as transformers rounds it), QuickGELU rounded to the input's dtype after
each step (as the three eager operations round). Neither has a backward pass: they are used only
where no gradient is asked for (the tower is frozen and runs under no_grad); anything else takes
transformers' own code.
"""

from __future__ import annotations

import logging
import threading
import types

import torch

from backend.training import flash_varlen

log = logging.getLogger(__name__)

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the tower keeps transformers' code
    triton = None

if triton is not None:
    # Triton compiles a kernel again for each class of its integer arguments (divisible by 16 or not);
    # `tokens` changes with every batch of pictures, so a job met the second class mid-run and waited
    # for a compile there (bench_train_speed.py --ours-only --repeat 2 counts them). It only bounds
    # the rows' mask, which is the same along each row's contiguous columns either way, so the hint
    # gave the compiler nothing to vectorise with.
    @triton.jit(do_not_specialize=["tokens"])
    def _rotate_and_split_kernel(qkv_ptr, cos_ptr, sin_ptr, qk_ptr, v_ptr, tokens, plane,
                                 HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF_BLOCK: tl.constexpr,
                                 ROWS: tl.constexpr):
        # One program: ROWS tokens of one head. The two halves of a head are loaded apart, since the
        # rotation pairs element i with element i + HEAD_DIM/2.
        HALF: tl.constexpr = HEAD_DIM // 2
        head = tl.program_id(1)
        rows = (tl.program_id(0) * ROWS + tl.arange(0, ROWS))[:, None].to(tl.int64)
        cols = tl.arange(0, HALF_BLOCK)[None, :]
        mask = (rows < tokens) & (cols < HALF)
        angle = rows * HEAD_DIM + cols
        cos_a = tl.load(cos_ptr + angle, mask=mask)
        cos_b = tl.load(cos_ptr + angle + HALF, mask=mask)
        sin_a = tl.load(sin_ptr + angle, mask=mask)
        sin_b = tl.load(sin_ptr + angle + HALF, mask=mask)
        src = qkv_ptr + rows * (3 * HEADS * HEAD_DIM) + head * HEAD_DIM + cols
        dst = rows * (HEADS * HEAD_DIM) + head * HEAD_DIM + cols
        out_type = qk_ptr.dtype.element_ty
        for part in tl.static_range(2):  # q, then k
            a = tl.load(src + part * HEADS * HEAD_DIM, mask=mask).to(tl.float32)
            b = tl.load(src + part * HEADS * HEAD_DIM + HALF, mask=mask).to(tl.float32)
            # x * cos + rotate_half(x) * sin, where rotate_half(x) = (-b, a)
            tl.store(qk_ptr + part * plane + dst, (a * cos_a - b * sin_a).to(out_type), mask=mask)
            tl.store(qk_ptr + part * plane + dst + HALF, (b * cos_b + a * sin_b).to(out_type), mask=mask)
        v = src + 2 * HEADS * HEAD_DIM
        tl.store(v_ptr + dst, tl.load(v, mask=mask), mask=mask)
        tl.store(v_ptr + dst + HALF, tl.load(v + HALF, mask=mask), mask=mask)

    @triton.jit
    def _quick_gelu_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        x = tl.load(x_ptr + offsets, mask=mask)
        kind = x.dtype
        wide = x.to(tl.float32)
        scaled = (wide * 1.702).to(kind).to(tl.float32)
        gate = tl.sigmoid(scaled).to(kind).to(tl.float32)
        tl.store(y_ptr + offsets, (wide * gate).to(kind), mask=mask)


def rotate_and_split(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused qkv projection's output (tokens, 3 * heads * head_dim) -> q and k with the rotary
    embedding applied, and v, each (tokens, heads, head_dim) and contiguous (as the varlen kernel
    takes them). cos and sin: (tokens, head_dim), fp32."""
    tokens = qkv.shape[0]
    head_dim = qkv.shape[1] // (3 * heads)
    qk = qkv.new_empty((2, tokens, heads, head_dim))
    v = qkv.new_empty((tokens, heads, head_dim))
    rows = 32
    _rotate_and_split_kernel[(triton.cdiv(tokens, rows), heads)](
        qkv, cos, sin, qk, v, tokens, tokens * heads * head_dim, HEADS=heads, HEAD_DIM=head_dim,
        HALF_BLOCK=triton.next_power_of_2(head_dim // 2), ROWS=rows, enable_fp_fusion=False)
    return qk[0], qk[1], v


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 * x) in one pass, written over x (the MLP's activation is not used again)."""
    block = 2048
    _quick_gelu_kernel[(triton.cdiv(x.numel(), block),)](x, x, x.numel(), BLOCK=block)
    return x


def start_triton_early(device: torch.device) -> threading.Thread | None:
    """Starts Triton in a background thread, to run beside the model's loading: the first Triton
    kernel a process calls costs about 0.4 s before it runs (Triton imports its compiler and hashes
    its own sources for its cache key; py-spy of a job on an H200), which otherwise lands in the
    first training step. Runs QuickGELU on zeros, the same compiled variant the tower uses; Liger's
    kernels then start without that cost too. Returns the thread (None without Triton or CUDA)."""
    if triton is None or device.type != "cuda":
        return None

    def run() -> None:
        try:
            torch.cuda.set_device(device)  # a thread starts on device 0
            quick_gelu(torch.zeros(2048, device=device, dtype=torch.bfloat16))
            torch.cuda.synchronize(device)
        except Exception as error:  # only a head start: the first step would meet the same problem
            log.debug("Triton's early start failed: %s", error)

    thread = threading.Thread(target=run, name="triton-early-start", daemon=True)
    thread.start()
    return thread


class FusedQuickGELU(torch.nn.Module):
    """Stands in for transformers' QuickGELUActivation; its own code wherever a gradient is needed."""

    def __init__(self, original: torch.nn.Module) -> None:
        super().__init__()
        self.original = original

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad or not x.is_cuda or not x.is_contiguous():
            return self.original(x)
        return quick_gelu(x)


def _fused_attention_forward(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                             position_embeddings=None, max_seqlen: int | None = None, **kwargs) -> torch.Tensor:
    """The vision attention of transformers' Qwen2-VL, with the rotary embedding and the q/k/v split
    in one kernel, and attention inside each picture in one flash-attention varlen call."""
    qkv = self.qkv(hidden_states)
    if position_embeddings is None or qkv.requires_grad or not qkv.is_contiguous():
        # no backward pass here: transformers' own code (which projects again; training never comes
        # here, its frozen tower runs under no_grad)
        return type(self).forward(self, hidden_states, cu_seqlens, position_embeddings=position_embeddings,
                                  max_seqlen=max_seqlen, **kwargs)
    cos, sin = (t.float().contiguous() for t in position_embeddings)
    q, k, v = rotate_and_split(qkv, cos, sin, self.num_heads)
    if max_seqlen is None:
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    out = flash_varlen.full_varlen_attention(q, k, v, cu_seqlens, max_seqlen, self.scaling)
    return self.proj(out.reshape(hidden_states.shape[0], -1))


def use_fused_vision_kernels(visual: torch.nn.Module) -> bool:
    """Give each block of a Qwen2-VL vision tower the fused kernels (on CUDA, with Triton and the
    varlen kernel). Returns whether it did; a tower of another build is left as it is."""
    from transformers.activations import QuickGELUActivation

    blocks = getattr(visual, "blocks", None)
    if triton is None or not flash_varlen.VARLEN_ATTENTION or not blocks:
        return False
    attentions = [block.attn for block in blocks]
    if not all(hasattr(a, "qkv") and hasattr(a, "num_heads") and (a.qkv.out_features // a.num_heads) % 6 == 0
               for a in attentions):  # the kernel pairs the halves of each head
        return False
    for block in blocks:
        block.attn.forward = types.MethodType(_fused_attention_forward, block.attn)
        act = getattr(getattr(block, "mlp", None), "act", None)
        if isinstance(act, QuickGELUActivation):
            block.mlp.act = FusedQuickGELU(act)
    return True


def undo_fused_vision_kernels(visual: torch.nn.Module) -> None:
    """Back to transformers' code (for benchmarks comparing the two in one process)."""
    for block in getattr(visual, "blocks", []):
        block.attn.__dict__.pop("forward", None)
        if isinstance(block.mlp.act, FusedQuickGELU):
            block.mlp.act = block.mlp.act.original
