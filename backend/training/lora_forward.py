"""Leaner LoRA linear layers for the packed (fast) path: no dtype round trip, fewer passes over memory.

peft computes a LoRA layer as `base(x) + lora_B(lora_A(dropout(x))) * scaling`: after the small
products come a multiply and an add over the whole (tokens x out_features) output, and in the
backward pass the multiply's gradient and the sum of x's two gradients, each a full pass through
memory. With adapters on every linear layer of the 2B model (gate/up are 8,960 wide) those passes
add up. Here the scaling and the add are folded into the second product, and on the default path
the whole layer is one autograd node (`LoraLinear`) whose products add into their results in place,
so the sums come out of the products' epilogues. Dropout stays where peft puts it, one mask per
layer from the same generator, so what is learned does not change. Measured on an H200
(bench/README.md): the kernel time of a step fell by 8% with the node.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def fold_lora_scaling(model: torch.nn.Module, fused_backward: bool = True) -> int:
    """Give every plain LoRA linear layer the folded forward; with `fused_backward`, as one autograd
    node (LoraLinear) whose input gradient needs no separate add. Returns how many layers got it."""
    from peft.tuners.lora import Linear

    changed = 0
    for module in model.modules():
        if type(module) is Linear:  # not the quantised or DoRA variants, which subclass or wrap it
            module.forward = types.MethodType(_folded_forward, module)
            module.fused_backward = fused_backward
            changed += 1
    return changed


def _folded_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    names = self.active_adapters
    name = names[0] if len(names) == 1 else None
    plain = (name is not None and not args and not kwargs and not self.disable_adapters and not self.merged
             and name in self.lora_A and name not in self.lora_variant and self.lora_B[name].bias is None
             # without autocast, a bf16 input and fp32 adapter weights need peft's own cast
             and (torch.is_autocast_enabled(x.device.type) or x.dtype == self.lora_A[name].weight.dtype))
    if not plain:  # anything unusual (several adapters, merged, mixed batches): peft's own forward
        return type(self).forward(self, x, *args, **kwargs)
    dropout = self.lora_dropout[name]
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    base = self.base_layer
    if (getattr(self, "fused_backward", False) and isinstance(base, torch.nn.Linear)
            and isinstance(dropout, (torch.nn.Dropout, torch.nn.Identity))
            and not any(t is not None and t.requires_grad for t in (base.weight, base.bias))):
        flat = x.reshape(-1, x.shape[-1])
        out = LoraLinear.apply(flat, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                               self.scaling[name], p)
        return out.view(*x.shape[:-1], out.shape[-1])
    result = base(x)
    low_rank = self.lora_A[name](dropout(x))  # (..., r)
    folded = torch.addmm(result.reshape(-1, result.shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]),
                         self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return folded.view(result.shape)


class LoraLinear(torch.autograd.Function):
    """y = x W^T + bias + scaling * (dropout(x) A^T) B^T with W frozen, as one autograd node.

    Autograd, given the same maths as separate operations, sums x's gradient from its two branches
    (the frozen layer and the adapter) with an extra add over the whole (tokens x in_features)
    input gradient, and `torch.addmm` first copies its addend into a new tensor, in the forward and
    in the backward pass: full passes over memory for every adapted layer. Here the products add
    into tensors made a moment before (`addmm_`), so each sum comes out of the product's epilogue.
    The dropout is torch's: its mask comes from the same generator, so peft's layer would draw the
    same one."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, p: float):
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        a, b = lora_a.to(dtype), lora_b.to(dtype)
        dropped, mask = _dropout(x, p)
        low = dropped @ a.t()  # (tokens, r)
        # In place: torch.addmm into a new tensor first copies its addend there, a full pass more.
        out = F.linear(x, weight, bias).addmm_(low, b.t(), alpha=scaling)
        ctx.save_for_backward(dropped, mask, low, weight, a, b)
        ctx.scaling, ctx.p = scaling, p
        ctx.dtypes = (lora_a.dtype, lora_b.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        dropped, mask, low, weight, a, b = ctx.saved_tensors
        grad = grad.to(low.dtype)
        grad_low = (grad @ b).mul_(ctx.scaling)  # (tokens, r)
        grad_a = (grad_low.t() @ dropped).to(ctx.dtypes[0])
        grad_b = (grad.t() @ low).mul_(ctx.scaling).to(ctx.dtypes[1])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _dropout_backward(grad_low @ a, mask, ctx.p).addmm_(grad, weight)
        return grad_x, None, None, grad_a, grad_b, None, None


def _dropout(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(dropout(x), what the backward pass needs), drawing from the generator as F.dropout does: the
    fused kernel's byte mask on a GPU, the scaled Bernoulli noise on a CPU."""
    if p == 0.0:
        return x, None
    if x.is_cuda:
        return torch.native_dropout(x, p, True)
    noise = torch.empty_like(x).bernoulli_(1 - p).div_(1 - p)
    return x * noise, noise


def _dropout_backward(grad: torch.Tensor, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    if mask is None:
        return grad
    if mask.dtype == torch.bool:
        return torch.ops.aten.native_dropout_backward(grad, mask, 1.0 / (1.0 - p))
    return grad * mask


def keep_lora_inputs_in_model_dtype(model) -> None:
    """peft casts each LoRA layer's input to the adapter's fp32 before dropout, and autocast casts it
    back to bf16 for the matmul: two full-size copies per layer, forward and backward, which were a
    fifth of a step's GPU time on the 2B model. Without the cast the maths is the same bf16 matmul
    (autocast still runs it in bf16, the adapter's fp32 weights still get fp32 gradients)."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.cast_input_dtype_enabled = False
