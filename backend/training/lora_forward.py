"""Leaner LoRA linear layers for the packed (fast) path: no dtype round trip, one product fewer.

peft computes a LoRA layer as `base(x) + lora_B(lora_A(dropout(x))) * scaling`: after the small
products come a multiply and an add over the whole (tokens x out_features) output, and in the
backward pass the multiply's gradient, each a full pass through memory. With adapters on every
linear layer of the 2B model (gate/up are 8,960 wide) those passes add up. Folding the scaling and
the add into the second product (`torch.addmm(base, a, B^T, alpha=scaling)`) does the same maths
in one matrix product with its epilogue, and the gradients come out of the product's own backward.
Dropout stays where peft puts it, one mask per layer, so what is learned does not change.
Measured on an H200 (bench/README.md): no change beyond the drift between runs (34.96 against
35.23 samples/s without gradient checkpointing, 23.03 against 21.23 with it).
"""

from __future__ import annotations

import types

import torch


def fold_lora_scaling(model: torch.nn.Module) -> int:
    """Give every plain LoRA linear layer the folded forward. Returns how many layers got it."""
    from peft.tuners.lora import Linear

    changed = 0
    for module in model.modules():
        if type(module) is Linear:  # not the quantised or DoRA variants, which subclass or wrap it
            module.forward = types.MethodType(_folded_forward, module)
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
    result = self.base_layer(x)
    low_rank = self.lora_A[name](self.lora_dropout[name](x))  # (..., r)
    folded = torch.addmm(result.reshape(-1, result.shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]),
                         self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return folded.view(result.shape)


def keep_lora_inputs_in_model_dtype(model) -> None:
    """peft casts each LoRA layer's input to the adapter's fp32 before dropout, and autocast casts it
    back to bf16 for the matmul: two full-size copies per layer, forward and backward, which were a
    fifth of a step's GPU time on the 2B model. Without the cast the maths is the same bf16 matmul
    (autocast still runs it in bf16, the adapter's fp32 weights still get fp32 gradients)."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.cast_input_dtype_enabled = False
