"""The model a job trains: the base model frozen (in 4 bits with QLoRA: qlora.py), LoRA and modules
trained whole where the spec's `trains` puts them (trained_parts.py) or, for a sharded full fine-tune
(`full_language_model`), the whole language model trained; and what the job's path needs. Packed rows
(packed.py: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL) get attention that keeps samples apart, a faster
vision tower, one-product LoRA layers (lora_forward.py) and, on a GPU, Liger's fused kernels; padded
batches take the model as transformers and peft make it. Which path a job takes is packs(), asked
once by the training program (lora.py)."""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch

from backend.training.errors import TrainingError
from backend.training.host_embeddings import keep_embeddings_on_host
from backend.training.lora_forward import (
    LowPrecisionAdapters,
    fold_lora_scaling,
    join_frozen_and_adapter_weights,
    keep_lora_inputs_in_model_dtype,
)
from backend.training.packed import (
    PACKED_MODEL_TYPES,
    apply_fused_kernels,
    compile_decoder_layers,
    speed_up_vision_tower,
    use_packed_attention,
)
from backend.training.qlora import load_kwargs
from backend.training.spec import PROJECTOR, VISION_LORA, JobSpec
from backend.training.targets import lora_targets
from backend.training.trained_parts import (
    family_parts,
    load_projector,
    place,
    projector_modules,
    train_whole_in_fp32,
)
from backend.training.vision_kernels import start_triton_early

log = logging.getLogger("foodie.train")


def language_model_targets(model: torch.nn.Module, short_names: list[str], vision: bool = False) -> list[str]:
    """Full names of the linear layers LoRA goes on: the language model's, by short name or all of them
    ("all-linear"), and the vision tower's with `vision` (targets.py checks the choice against the
    model's layers)."""
    return lora_targets(model, short_names, vision)


class BuiltModel(NamedTuple):
    model: torch.nn.Module  # the peft model
    processor: object
    source: object  # the ModelSource it was loaded from
    packed: bool  # whether it is made ready for packed rows (packs())


def trains_full_language_model(spec: JobSpec) -> bool:
    """Whether every weight of the language model trains instead of LoRA adapters: the one place that
    asks, so that a "what trains" choice can answer it when there is one."""
    return spec.full_language_model


def train_language_model(model: torch.nn.Module, frozen_dtype: torch.dtype) -> None:
    """The language model (embeddings, layers, final norm) and its LM head trainable, the rest (vision
    tower, projector) frozen. The trained weights stay in the dtype they were loaded in (fp32: the
    optimizer's master weights; bf16 autocast does the products); the frozen ones move to
    `frozen_dtype`, as in a LoRA job, since nothing updates them."""
    model.get_decoder().requires_grad_(True)
    model.get_output_embeddings().requires_grad_(True)
    for parameter in model.parameters():
        if not parameter.requires_grad:
            parameter.data = parameter.data.to(frozen_dtype)


def build_model(spec: JobSpec, device: torch.device, dtype: torch.dtype, processor=None,
                packed: bool | None = None) -> BuiltModel:
    """Base model (frozen) + what the spec trains (LoRA on the language model by default), or the
    language model itself trained (trains_full_language_model), made ready for the path it trains on:
    `packed` rows as train() chose them, or (None) as packs() chooses from the model's config. `dtype`
    is the frozen weights' (bf16 on a GPU); trained weights are fp32."""
    from transformers import AutoModelForImageTextToText

    from backend.models.loading import load_processor, resolve

    source = resolve(spec.model)
    processor = processor or load_processor(source)
    if packed is None:
        packed = packs(spec, model_type_of(spec))
    compiled = packed and spec.compile_layers and device.type == "cuda"
    full = trains_full_language_model(spec)
    if packed:
        # The first Triton kernel a process runs costs ~0.4 s (vision_kernels.py): paid beside the
        # weights' loading, not in the first step. train() has opened its first loader by now: a
        # child forked while this thread works could inherit its locks.
        start_triton_early(device)
    # QLoRA: the linear layers are quantized to 4 bits as they arrive on the GPU (qlora.py)
    model = AutoModelForImageTextToText.from_pretrained(source.location, dtype=torch.float32 if full else dtype,
                                                        **load_kwargs(spec, source.family, device))
    if packed and model.config.model_type not in PACKED_MODEL_TYPES:  # it was read from config.json before
        raise TrainingError("config_changed", "The config.json of {model} changed while the job was loading it; "
                            "start the job again.", model=spec.model)
    model.requires_grad_(False)  # vision tower, projector, embeddings, lm_head: all frozen
    # The KV cache only helps generation. In transformers 5 the text config keeps its own use_cache
    # (True), which this does not reach: our forward passes say use_cache=False themselves, where
    # the plain loop (plain_loop.py) keeps the plain recipe's default.
    model.config.use_cache = False

    # -- the packed path, before LoRA wraps the layers: attention inside each sample, a faster vision tower --
    if packed:
        use_packed_attention(model)
        speed_up_vision_tower(model, on_cuda=device.type == "cuda")
        # Liger's kernels cannot be traced by torch.compile (dynamo fails on their autograd functions);
        # compiled layers get inductor's own fused kernels instead. Nor are they used on a full
        # fine-tune's fp32 weights: its rotary tables are fp32 beside bf16 queries and keys, a mix
        # their rotary kernel was not checked with (tests/test_gpu_kernels.py checks a bf16 model).
        if (spec.fused_kernels and device.type == "cuda" and not compiled and not full
                and apply_fused_kernels(model)):
            log.info("Liger's fused RMSNorm, SwiGLU and rotary kernels are on")

    # -- what trains: the whole language model, or LoRA on its linear layers --
    if full:
        train_language_model(model, dtype)
        log.info("full fine-tune of the language model: %.1f M weights train, in fp32",
                 sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)
    else:
        model = add_lora(model, spec)
        # the packed path's LoRA layers: one product where peft makes two (lora_forward.py)
        if packed:
            keep_lora_inputs_in_model_dtype(model)
            # compiled layers keep separate operations, which inductor fuses (and its dropout mask is
            # regenerated in the backward pass instead of stored)
            fold_lora_scaling(model, fused_backward=not compiled)
    if compiled:
        compile_decoder_layers(model)
        log.info("decoder layers go through torch.compile (the first steps include compiling them)")
    if spec.gradient_checkpointing:
        # Non-reentrant checkpointing works with a frozen embedding layer (no input grads needed).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(device)  # a QLoRA base is there already (device_map); its LoRA weights follow it
    if spec.qlora:  # the memory-first recipe: its frozen embedding table is looked up in CPU memory
        keep_embeddings_on_host(model, device)
    # The joint weights are views of one tensor, which FSDP's shards of each weight cannot be.
    if packed and not compiled and not full and not spec.shard:
        join_frozen_and_adapter_weights(model)  # after the move, which makes new weights
        model.low_precision_adapters = LowPrecisionAdapters(model, dtype)  # used by steps.PackedSteps
    return BuiltModel(model, processor, source, packed)


def add_lora(model: torch.nn.Module, spec: JobSpec) -> torch.nn.Module:
    """The peft model: LoRA and modules trained whole where the spec's `trains` puts them."""
    from peft import LoraConfig, get_peft_model

    placement = place(model, spec)
    config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=placement.peft_targets(), modules_to_save=placement.whole or None,
                        bias="none", task_type="CAUSAL_LM")
    # peft saves target_modules condensed to the shortest name suffixes that still match only these
    # layers (e.g. "q_proj" when the vision tower has none): still explicit names, never a pattern.
    model = get_peft_model(model, config)  # LoRA weights are created in fp32 even on a bf16 base
    whole = train_whole_in_fp32(model)
    log.info("trains %s: LoRA r=%d alpha=%d on %d linear layers (%s); %.1f M parameters trained whole in %d "
             "module(s)%s", spec.trains, spec.lora_r, spec.lora_alpha, len(placement.lora),
             ", ".join(sorted({name.rsplit(".", 1)[-1] for name in placement.lora})) or "none", whole / 1e6,
             len(placement.whole), "; base in 4-bit NF4 (QLoRA)" if spec.qlora else "")
    if spec.projector_from:  # LLaVA's stage 2 starts from stage 1's projector
        taken = load_projector(model, spec.projector_from, projector_modules(model.get_base_model(),
                                                                             family_parts(model.get_base_model())))
        log.info("the projector starts from %s (%d tensors)", spec.projector_from, taken)
    return model


def packs(spec: JobSpec, model_type: str) -> bool:
    """Whether this job trains on packed rows (packed.py): asked for, a family the fast path serves
    (families.py: Family.fast_path), and a frozen vision tower and projector (their embeddings are
    computed once)."""
    return spec.packed and model_type in PACKED_MODEL_TYPES and not spec.parts & {VISION_LORA, PROJECTOR}


def why_padded(spec: JobSpec, model_type: str) -> str | None:
    """Why a job that asked for packed rows trains on padded batches (a line for its log), or None."""
    from backend.models.families import FAMILIES

    if not spec.packed or packs(spec, model_type):
        return None
    if spec.parts & {VISION_LORA, PROJECTOR}:
        return "a trained vision tower or projector changes the picture embeddings every step, so they cannot " \
               "be computed once"
    found = FAMILIES.get(model_type)
    if found is None:
        return f"the fast path does not know the model type {model_type or '(unreadable)'}"
    return f"{found.label}: {found.no_fast_path_why}"


def model_type_of(spec: JobSpec) -> str:
    """The model_type in the job's model config ("" when it cannot be read), without loading it."""
    from transformers import AutoConfig

    from backend.models.loading import resolve

    try:
        return AutoConfig.from_pretrained(resolve(spec.model).location).model_type
    except Exception:  # an error path's helper: the advice falls back to the padded path's
        return ""
