"""Leaner LoRA linear layers for the packed (fast) path: no dtype round trip, fewer passes over memory.

peft computes a LoRA layer as `base(x) + lora_B(lora_A(dropout(x))) * scaling`: after the small
products come a multiply and an add over the whole (tokens x out_features) output, and in the
backward pass the multiply's gradient and the sum of x's two gradients, each a full pass through
memory. With adapters on every linear layer of the 2B model (gate/up are 8,960 wide) those passes
add up. Here the scaling and the add are folded into the second product, and on the default path
the whole layer is one autograd node (`LoraLinear`) whose products add into their results in place,
so the sums come out of the products' epilogues. Dropout stays where peft puts it, one mask per
layer from the same generator, so what is learned does not change. Why it is worth it: the kernel
time of a step fell by 8% with the node (H200, 2026-11, bench/profile_lora_products.py).

Two more steps, once a step's forward pass turned out to be bound by the CPU handing kernels over:
layers wider out than in get a joint weight [W | scaling B] and do their forward pass as one
product (`join_frozen_and_adapter_weights`), and every layer's A and B are cast to the compute
dtype once a step for all layers together (`LowPrecisionAdapters`) instead of in each layer.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def fold_lora_scaling(model: torch.nn.Module, fused_backward: bool = True) -> int:
    """Give every plain LoRA linear layer the folded forward; with `fused_backward`, as one autograd
    node (LoraLinear) whose input gradient needs no separate add. Returns how many layers got it."""
    from peft.tuners.lora import Linear

    folded = (Linear, _peft_4bit_linear())  # not the DoRA or 8-bit variants, which subclass or wrap them
    changed = 0
    for module in model.modules():
        if type(module) in folded:
            module.forward = types.MethodType(_folded_forward, module)
            module.fused_backward = fused_backward
            changed += 1
    return changed


def _peft_4bit_linear() -> type | None:
    """peft's LoRA layer over a bitsandbytes 4-bit linear layer (QLoRA), where bitsandbytes is installed."""
    from backend.training.qlora import bitsandbytes_installed

    if not bitsandbytes_installed():
        return None
    from peft.tuners.lora import bnb

    return getattr(bnb, "Linear4bit", None)


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
        adapters, joint = getattr(self, "low_precision", None), _joint_weight(self, name)
        quantized = _dequantized(base)  # QLoRA: the weight is 4-bit, dequantized when a product needs it
        out = LoraLinear.apply(flat, None if quantized else base.weight, base.bias, self.lora_A[name].weight,
                               self.lora_B[name].weight, self.scaling[name], p, joint,
                               adapters.ready(self, name, x, joint) if adapters is not None else None, quantized)
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
    With a joint weight (`join_frozen_and_adapter_weights`), the forward is one product over x and
    the low-rank activation side by side. The dropout is torch's: its mask comes from the same
    generator, so peft's layer would draw the same one."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, p: float, joint=None, ready=None,
                quantized=None):
        # ready: (A, B, whether B is scaled) already in the compute dtype (LowPrecisionAdapters), or None.
        # quantized: where `weight` is None, what gives the frozen weight on demand (qlora.Dequantized):
        # made for the product and dropped, made again for the input gradient, never kept in between
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        # Cast only what differs: `.to()` of a tensor already in the dtype returns it, but its
        # dispatch still costs CPU time, and this forward pass is bound by the CPU (class docstring)
        x = _in(x, dtype)
        weight = quantized.weight(dtype) if quantized is not None else _in(weight, dtype)
        bias = None if bias is None else _in(bias, dtype)
        if ready is not None:
            a, b, b_scaled = ready
        elif joint is not None and joint.dtype == dtype:
            # B changes at every optimizer step: its columns of the joint weight are written here,
            # scaled before the one rounding to the joint weight's dtype
            a, b, b_scaled = _in(lora_a, dtype), joint[:, x.shape[1]:].copy_(lora_b * scaling), True
        else:
            a, b, b_scaled = _in(lora_a, dtype), _in(lora_b, dtype), False
        dropped, mask = _dropout(x, p)
        low = dropped @ a.t()  # (tokens, r)
        if b_scaled:
            # [x | low] [W | scaling B]^T: the frozen product and the adapter's second product in
            # one, summed in the product's fp32 accumulator
            out = F.linear(torch.cat([x, low], dim=1), joint, bias)
        else:
            # In place: torch.addmm into a new tensor first copies its addend there, a full pass more.
            out = F.linear(x, weight, bias).addmm_(low, b.t(), alpha=scaling)
        ctx.save_for_backward(dropped, mask, low, None if quantized is not None else weight, a, b)
        ctx.scaling, ctx.p, ctx.b_scaled, ctx.quantized = scaling, p, b_scaled, quantized
        ctx.dtypes = (lora_a.dtype, lora_b.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        dropped, mask, low, weight, a, b = ctx.saved_tensors
        grad = _in(grad, low.dtype)
        grad_low = grad @ b  # (tokens, r)
        if not ctx.b_scaled:
            grad_low.mul_(ctx.scaling)
        grad_a = (grad_low.t() @ dropped).to(ctx.dtypes[0])
        grad_b = (grad.t() @ low).mul_(ctx.scaling).to(ctx.dtypes[1])
        grad_x = None
        if ctx.needs_input_grad[0]:
            if ctx.quantized is not None:
                weight = ctx.quantized.weight(grad.dtype)
            grad_x = _dropout_backward(grad_low @ a, mask, ctx.p).addmm_(grad, weight)
        return grad_x, None, None, grad_a, grad_b, None, None, None, None, None


def _in(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


class LowPrecisionAdapters:
    """Every folded layer's A and B in the compute dtype (bf16 on a GPU), cast for all layers at once
    after the optimizer has changed them, instead of in each layer's forward pass.

    The forward pass of a packed step is bound by the CPU handing kernels to the GPU (an H200 was
    done 0.1 ms after a 10,215-token row's forward pass was handed over, at 93.7 ms;
    bench/profile_step_parts.py), and each layer cast A and B (and, with a joint weight, scaled B
    and copied it in): kernels handed over one by one from Python, 196 layers a row. `refresh()`
    does them as a few multi-tensor calls once a step. The copies are used only inside `step()`
    (a fused AdamW step does not move the weights' version counters, so they cannot tell by
    themselves that the optimizer has changed A and B): outside it, and for a layer whose weights
    were changed in place inside it (their version counters moved), each layer casts its own as
    before. B goes straight into a joint weight's columns, scaled, where the layer has one."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.layers: dict[int, _CastLayer] = {}  # by id() of the LoRA module
        for module in model.modules():
            if not getattr(module, "fused_backward", False) or len(module.active_adapters) != 1:
                continue
            name = module.active_adapters[0]
            if name not in module.lora_A or not isinstance(module.scaling.get(name), (int, float)):
                continue
            a, b = module.lora_A[name].weight, module.lora_B[name].weight
            joint = _joint_weight(module, name)
            scaled = joint is not None and joint.dtype == dtype
            b_copy = joint[:, module.base_layer.in_features:] if scaled else torch.empty_like(b, dtype=dtype)
            self.layers[id(module)] = _CastLayer(name, a, b, torch.empty_like(a, dtype=dtype), b_copy, scaled,
                                                 float(module.scaling[name]))
            module.low_precision = self
        self.versions: dict[int, tuple[int, int]] = {}
        self.valid = False

    @contextlib.contextmanager
    def step(self):
        """The copies, fresh, for the forward and backward passes inside (one training step: the
        optimizer changes A and B after it)."""
        self.refresh()
        try:
            yield
        finally:
            self.valid = False

    def refresh(self) -> None:
        """Cast every layer's A and B again; valid until the end of the step (see `step()`)."""
        layers = list(self.layers.values())
        if not layers:
            return
        plain = [layer for layer in layers if not layer.b_scaled]
        scaled = [layer for layer in layers if layer.b_scaled]
        with torch.no_grad():
            torch._foreach_copy_([layer.a_copy for layer in layers], [layer.a for layer in layers])
            if plain:
                torch._foreach_copy_([layer.b_copy for layer in plain], [layer.b for layer in plain])
            if scaled:
                products = torch._foreach_mul([layer.b for layer in scaled], [layer.scaling for layer in scaled])
                torch._foreach_copy_([layer.b_copy for layer in scaled], products)
        self.versions = {key: layer.versions() for key, layer in self.layers.items()}
        self.valid = True

    def ready(self, module: torch.nn.Module, name: str, x: torch.Tensor,
              joint: torch.Tensor | None = None) -> tuple | None:
        """(A, B, whether B is scaled) for this layer, if refreshed since its weights last changed and
        in the dtype this forward pass computes in (and, for a scaled B, the layer still has the joint
        weight holding it: `joint`); else None."""
        layer = self.layers.get(id(module))
        if (not self.valid or layer is None or layer.name != name or (layer.b_scaled and joint is None)
                or self.versions.get(id(module)) != layer.versions()):
            return None
        autocast = torch.is_autocast_enabled(x.device.type)
        if (torch.get_autocast_dtype(x.device.type) if autocast else x.dtype) != self.dtype:
            return None
        return layer.a_copy, layer.b_copy, layer.b_scaled


@dataclass(frozen=True)
class _CastLayer:
    """One LoRA layer's weights and their copies in the compute dtype."""

    name: str  # the adapter
    a: torch.Tensor  # lora_A's weight (fp32, trained)
    b: torch.Tensor  # lora_B's weight
    a_copy: torch.Tensor
    b_copy: torch.Tensor  # B, or scaling * B in the joint weight's last columns
    b_scaled: bool
    scaling: float

    def versions(self) -> tuple[int, int]:
        return self.a._version, self.b._version


def join_frozen_and_adapter_weights(model: torch.nn.Module) -> int:
    """Give each folded LoRA layer that is at least as wide out as in (q, k, v, o, gate and up of
    Qwen2's decoder; not down) a joint weight [W | scaling B], whose first columns become the frozen
    weight itself (a view: no second copy), so LoraLinear's forward is one product over [x | low]
    instead of a product and an in-place add over the whole (tokens x out_features) output.
    On an H200 at 9,041 tokens, gate's forward took 0.320 ms + 0.137 ms for the add, and 0.345 ms
    as one product; k's 0.022 + 0.023 ms, and 0.018 ms (bench/profile_lora_products.py). The
    input x is copied into [x | low] (tokens x in_features), which is why down (8,960 wide in) keeps
    the add. Call it after the model has moved to its device: moving makes new weights, and a layer
    whose weight is no longer the joint one's view takes the add path again. Returns how many layers
    got one."""
    joined = 0
    for module in model.modules():
        if not hasattr(module, "fused_backward") or len(module.active_adapters) != 1:
            continue
        name = module.active_adapters[0]
        base = module.base_layer
        if (name not in module.lora_A or not isinstance(base, torch.nn.Linear) or base.weight.requires_grad
                or base.in_features > base.out_features or _dequantized(base) is not None):
            continue
        weight = base.weight
        rank = module.lora_A[name].weight.shape[0]
        joint = weight.new_empty(weight.shape[0], weight.shape[1] + rank)
        joint[:, :weight.shape[1]].copy_(weight)
        weight.data = joint[:, :weight.shape[1]]  # the frozen weight now lives inside the joint one
        module.joint_weight = (name, joint)
        joined += 1
    return joined


def _dequantized(base: torch.nn.Module):
    """qlora.Dequantized over a 4-bit base layer (its weight has a quant_state), else None."""
    if not hasattr(base.weight, "quant_state"):
        return None
    from backend.training.qlora import Dequantized

    return Dequantized(base)


def _joint_weight(module: torch.nn.Module, name: str) -> torch.Tensor | None:
    """The layer's joint weight, if it has one for this adapter and the frozen weight still lives in it."""
    joint = getattr(module, "joint_weight", None)
    if joint is None or joint[0] != name or module.base_layer.weight.data_ptr() != joint[1].data_ptr():
        return None
    return joint[1]


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
