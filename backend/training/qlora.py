"""QLoRA: the frozen base's linear layers in 4-bit NF4 (bitsandbytes), LoRA on top computed in bf16.

What is quantized: every linear layer of the language model's decoder and of the vision tower (as
transformers' own 4-bit loading does); not the LM head (the loss reads it for every answer token),
not the projector (small, and trained whole with "+projector"), and never the embeddings
(bitsandbytes quantizes linear layers only). NF4 with double quantization of the block scales, as
the QLoRA paper does; a 7B model's decoder then takes ~3.4 GB instead of 13 GB.

bitsandbytes' 4-bit kernels run on CUDA, so a QLoRA job needs a GPU and the package: both are said
in a sentence before the job is queued (`qlora_shortfall`) and again by the training program.

The fast path keeps its LoRA layers as one autograd node over a 4-bit base (lora_forward.py): the
frozen weight is dequantized to bf16 for the forward product and again for the input gradient, as
bitsandbytes' own matmul does, and never kept between the two.

A merged model (`spec.merge`) is written in bf16 from the dequantized base, the weights the adapter
was trained against, not from re-quantized ones (`write_merged_bf16`).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from backend.models.family_parts import PARTS
from backend.problems import Problem
from backend.training.errors import TrainingError
from backend.training.spec import JobSpec

# torch only where a function runs: the worker imports this module (qlora_shortfall) and restarts in
# well under a second without torch, ~7 s with it on a busy 2-core box (bench/bench_soak.py)
if TYPE_CHECKING:
    import torch

log = logging.getLogger("foodie.train")


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def qlora_shortfall(spec: JobSpec, gpus: list[str]) -> Problem | None:
    """Why a worker with `gpus` could never run this QLoRA job (no GPU, no bitsandbytes), or None."""
    if not spec.qlora:
        return None
    if not gpus:
        return Problem("qlora_no_gpu", "QLoRA needs a GPU (bitsandbytes' 4-bit kernels run on CUDA), and the "
                       "training worker sees none on this machine; turn QLoRA off to train in full precision.")
    if not bitsandbytes_installed():
        return Problem("qlora_no_bitsandbytes", "QLoRA needs the bitsandbytes package, which is not installed here: "
                       "pip install bitsandbytes (on a machine without internet, from a wheel downloaded elsewhere), "
                       "or turn QLoRA off.")
    return None


def why_not_offered(gpus: list[str]) -> Problem | None:
    """Why the Train tab cannot offer QLoRA on this machine, or None where it can."""
    return qlora_shortfall(JobSpec(qlora=True), gpus)


def check_runnable(device: torch.device) -> None:
    """The training program's own check, for a job queued some other way than the Train tab."""
    if device.type != "cuda":
        raise TrainingError("qlora_job_on_cpu", "QLoRA needs a GPU (bitsandbytes' 4-bit kernels run on CUDA), "
                            "and this job runs on the CPU; turn QLoRA off to train in full precision.")
    if not bitsandbytes_installed():
        raise TrainingError("qlora_no_bitsandbytes", "QLoRA needs the bitsandbytes package, which is not installed "
                            "here: pip install bitsandbytes (on a machine without internet, from a wheel downloaded "
                            "elsewhere), or turn QLoRA off.")


def kept_in_bf16(model_type: str) -> list[str]:
    """Modules left unquantized: the LM head and the family's projector."""
    parts = PARTS.get(model_type)
    return ["lm_head", *(parts.projector if parts else ())]


def four_bit_config(model_type: str):
    """transformers' BitsAndBytesConfig for NF4 with double quantization and bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.uint8,
                              llm_int8_skip_modules=kept_in_bf16(model_type))


def load_kwargs(spec: JobSpec, model_type: str, device: torch.device) -> dict:
    """from_pretrained's extra arguments for this job: the 4-bit config and its device (bitsandbytes
    quantizes as the weights arrive on the GPU), or nothing without QLoRA."""
    if not spec.qlora:
        return {}
    check_runnable(device)
    return {"quantization_config": four_bit_config(model_type), "device_map": {"": str(device)}}


def is_4bit(module: torch.nn.Module) -> bool:
    return hasattr(getattr(module, "weight", None), "quant_state")


class Dequantized:
    """A 4-bit linear layer's weight, dequantized on demand (LoraLinear asks in the forward pass and
    again in the backward pass, so a layer's bf16 weight lives only while its product runs)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        self.layer = layer

    def weight(self, dtype: torch.dtype) -> torch.Tensor:
        from bitsandbytes.functional import dequantize_4bit

        weight = self.layer.weight
        return dequantize_4bit(weight.data, weight.quant_state).to(dtype)


def optimizer_for(spec: JobSpec, trainable: list[torch.Tensor], on_gpu: bool) -> torch.optim.Optimizer:
    """AdamW: bitsandbytes' paged one with `paged_optimizer` (its state moves to CPU memory when the GPU
    runs short, instead of failing), else torch's, fused on a GPU (one kernel for all tensors)."""
    import torch

    options = dict(lr=spec.learning_rate, weight_decay=spec.weight_decay, betas=(0.9, 0.999))
    if spec.paged_optimizer:
        from bitsandbytes.optim import PagedAdamW

        return PagedAdamW(trainable, **options)
    return torch.optim.AdamW(trainable, fused=on_gpu or None, **options)


def write_merged_bf16(peft_model, spec: JobSpec, adapter: Path, folder: Path, processor) -> None:
    """The merged model of a QLoRA job, in bf16: the base loaded again unquantized on the CPU, each layer
    that trained in 4 bits given its dequantized weight (what the adapter learned against), the adapter
    applied and merged, and saved."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from backend.models.loading import resolve

    plain = AutoModelForImageTextToText.from_pretrained(resolve(spec.model).location, dtype=torch.bfloat16)
    replaced = 0
    for name, module in peft_model.named_modules():
        if not is_4bit(module):
            continue
        target = name.removeprefix("base_model.model.").replace(".base_layer", "")
        plain.get_submodule(target).weight.data = Dequantized(module).weight(torch.bfloat16).cpu()
        replaced += 1
    merged = PeftModel.from_pretrained(plain, str(adapter)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(folder)
    processor.save_pretrained(folder)
    log.info("merged in bf16 from the dequantized 4-bit base (%d layers dequantized), not re-quantized", replaced)
