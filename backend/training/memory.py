"""How much GPU memory a LoRA job needs, estimated before it starts; a job that cannot fit is refused at
Start with what to change.

The model is built on the meta device from its config (no weights read, ~0.1 s for a 2B model), so
the counts are the model's own: its parameters, the layers LoRA goes on (targets.py, which also
refuses a target list that matches nothing), the widths of each decoder layer. In bytes:

    weights      = parameters x 2                        (bf16; QLoRA: weight_bytes)
    LoRA + Adam  = LoRA parameters x 16                  (fp32 weight, gradient, Adam's two moments)
    activations  = tokens x layers x (2 x out + k x in + 2 x besides)  (every linear layer's output in bf16,
                   what LoRA keeps of each input: packed rows, in the model's dtype (keep_lora_inputs_in_model_dtype):
                   a dropout copy and its mask, k = 3 (2 without dropout); padded batches, peft's way: an
                   fp32 copy, the mask, the bf16 copy autocast makes, k = 7 (6 without dropout); and what else
                   the layer keeps, in bf16: each norm's input, the rotated queries and keys, the attention's
                   output (Shape.kept_besides)); a layer without softmax attention (Qwen3.5's Gated DeltaNet)
                   is traced instead: what autograd keeps of it, run on the meta device
      with checkpointing: tokens x layers x 2 x hidden (each layer's input) + one layer's activations
    logits       = tokens x vocab x 4                    (padded batches: bf16 logits and their gradient
                                                          at every position; packed rows: answers only)
    pictures     = the packed path's picture cache: pictures x picture tokens x hidden x 2 x (1 + DeepStack
                   levels), up to vision_cache_gb (QLoRA: in CPU memory); a job that scores its checkpoints
                   adds up to as much again for the held-out photos' features kept between scorings
                   (picture_memo.py)

`out` and `in` are the sums of out_features and in_features of a decoder layer's linear layers (the
mean over layers: Qwen3.5's linear-attention and full-attention layers differ). `tokens` is what one
forward pass holds: a packed row (a step's samples, up to pack_tokens) or a padded micro-batch (batch
x the longest sample), each sample a photo at the pixel budget plus ~100 text tokens. The vision
tower runs without gradients; its transient memory is smaller than the language model's.

Checked against the recorded measurements (H100, 2026-12-07, at the data's mean sample length): the fast
path on the Qwen2-VL-2B shape (bench/results-train-speed-h100.json) 10.5 GB estimated for 9.9 measured with
checkpointing, 43.3 for 43.9 without; on Qwen3-VL-2B (bench/results-family-qwen3_vl-h100.json) 10.9 for
10.2, and 38.6 for 45.0; on Qwen2.5-VL-7B (bench/results-qlora-h100.json) 19.1 for 19.1 in bf16 and 7.2 for
7.5 with QLoRA; the plain recipe (padded, and transformers' fp32 logits on top) 30.7 measured. On
InternVL3.5-2B (2026-12-08) 12.9 for 12.5 and 64.4 for 64.8; on Qwen3.5-2B, padded, 9.7 for 10.2 and 26.5
for 31.7 (its linear-attention layers counted, not traced: 19.5). tests/test_memory.py keeps these within
25%. bench/bench_train_speed.py --family prints the estimate beside the measured peak.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from backend.problems import Problem
from backend.training.spec import VISION_LORA, JobSpec

log = logging.getLogger(__name__)

GB = 1e9
TEXT_TOKENS = 100  # a question and an answer, around the picture
HEADROOM = 1.1  # the CUDA context and the allocator's fragmentation, beyond what is allocated


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model, read off it on the meta device."""

    model_type: str
    params: int  # every weight of the base model
    layers: int  # decoder layers
    hidden: int
    vocab: int
    linear_out: float  # per decoder layer: summed out_features of its linear layers (mean over layers)
    linear_in: float  # per decoder layer: summed in_features of its linear layers the targets reach
    lora_per_rank: int  # sum of (in + out) over the layers LoRA goes on: x rank = LoRA parameters
    # per decoder layer (mean over layers): widths of what it keeps for the backward pass besides its linear
    # layers' inputs and outputs: each norm's input (q/k norms: the queries' and keys' width), the rotated
    # queries and keys, and the attention's output
    kept_besides: float
    picture_width: int  # hidden x (1 + DeepStack levels): what the picture cache keeps a token as
    config: object
    # QLoRA (qlora.py): the weights bitsandbytes puts in 4 bits (every linear layer but the LM head and the
    # projector), the largest of those layers (dequantized to bf16 while its product runs), and the input
    # embedding table where it is the model's own (not tied to the LM head: kept in CPU memory)
    quantized: int = 0
    largest_quantized: int = 0
    own_embedding_table: int = 0


def shape_of(config, target_modules: list[str], lora_vision: bool = False) -> Shape:
    """Build the model on the meta device and count (TrainingError for a target list that does not fit)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from backend.training.host_embeddings import tied
    from backend.training.qlora import kept_in_bf16
    from backend.training.targets import decoder_layers, decoder_of, lora_targets

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    targets = set(lora_targets(model, target_modules, lora_vision))
    modules = dict(model.named_modules())
    prefix, decoder = decoder_of(model)
    stack, layers = decoder_layers(decoder)
    base = f"{prefix}.{stack}" if stack else prefix
    text = config.get_text_config()
    outs, ins, besides = 0, 0, 0
    traced = {}  # bytes a token, by kind of layer without softmax attention: traced rather than counted
    for i, layer in enumerate(layers):
        linear = {}
        for name, module in layer.named_modules():
            if isinstance(module, torch.nn.Linear):
                linear[name.rsplit(".", 1)[-1]] = module
                ins += module.in_features if f"{base}.{i}.{name}" in targets else 0
        kind = None if _has_softmax_attention(linear) else (type(layer).__name__, _mixer_of(layer))
        if kind is not None and kind not in traced:
            traced[kind] = traced_bytes_per_token(layer, text.hidden_size)
        if kind is not None and traced[kind] is not None:
            besides += traced[kind] / 2  # in bf16 widths, as the counts are
        else:
            outs += sum(module.out_features for module in linear.values())
            besides += _kept_besides(layer, linear)
    levels = len(getattr(getattr(config, "vision_config", None), "deepstack_visual_indexes", None) or [])
    kept = kept_in_bf16(config.model_type)
    quantized = [module.weight.numel() for name, module in modules.items()
                 if isinstance(module, torch.nn.Linear) and not any(key in name for key in kept)]
    table = model.get_input_embeddings().weight
    return Shape(config.model_type, sum(p.numel() for p in model.parameters()), len(layers), text.hidden_size,
                 text.vocab_size, outs / len(layers), ins / len(layers),
                 sum(modules[name].in_features + modules[name].out_features for name in targets),
                 besides / len(layers), text.hidden_size * (1 + levels), config, sum(quantized),
                 max(quantized, default=0), 0 if tied(model) else table.numel())


def _has_softmax_attention(linear: dict) -> bool:
    return all(name in linear for name in ("q_proj", "k_proj", "o_proj"))


def _mixer_of(layer) -> str:
    """The class of what mixes a layer's tokens, where it is not softmax attention (Qwen3.5: Gated DeltaNet)."""
    for name, module in layer.named_children():
        if "attn" in name or "mixer" in name:
            return type(module).__name__
    return "?"


def traced_bytes_per_token(layer, hidden: int, tokens: int = 256) -> float | None:
    """What autograd keeps of one frozen decoder layer for the backward pass, per token, in bf16: the layer
    runs on the meta device (shapes only, no arithmetic, milliseconds) with the saved tensors counted once
    per storage. For layers whose keepings the counting does not describe: Qwen3.5's Gated DeltaNet, in
    transformers' PyTorch version (used without flash-linear-attention), keeps fp32 copies of its queries,
    keys and values, a state for each 64-token chunk and more, 4x what counting its linear layers gives
    (tests/test_memory.py compares the trace with a run on real tensors). None where the layer does not
    run so."""
    import torch

    layer = layer.to(torch.bfloat16).requires_grad_(False)
    # a meta storage has no address: the storage object's identity tells views of one storage apart
    weights = {parameter.untyped_storage()._cdata for parameter in layer.parameters()}
    kept: dict[int, int] = {}

    def count(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in weights:
            kept.setdefault(storage._cdata, storage.nbytes())
        return tensor

    states = torch.zeros(1, tokens, hidden, dtype=torch.bfloat16, device="meta", requires_grad=True)
    try:
        with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
            layer(states, position_embeddings=None, attention_mask=None,
                  position_ids=torch.arange(tokens, device="meta")[None])
    except Exception as error:  # an unknown layer's signature: counted as the others are
        log.info("could not trace %s for the memory estimate (%s); counting its linear layers",
                 type(layer).__name__, error)
        return None
    return sum(kept.values()) / tokens


def _kept_besides(layer, linear: dict) -> int:
    """Shape.kept_besides of one decoder layer (`linear`: its linear layers by short name)."""
    import torch

    q, k, o = (linear.get(name) for name in ("q_proj", "k_proj", "o_proj"))
    widths = {"q_norm": q.out_features if q else 0, "k_norm": k.out_features if k else 0}
    kept = 0
    for name, module in layer.named_modules():
        weight = getattr(module, "weight", None)
        if "norm" in type(module).__name__.lower() and isinstance(weight, torch.Tensor) and weight.dim() == 1:
            kept += widths.get(name.rsplit(".", 1)[-1], weight.shape[0])
    if q and k and o:  # softmax attention: rotary's queries and keys, and its output
        kept += q.out_features + k.out_features + o.in_features
    return kept


@dataclass(frozen=True)
class Estimate:
    """GPU memory of one job, in bytes, by part."""

    weights: float
    lora: float
    activations: float
    logits: float
    pictures: float
    tokens: int  # in one forward pass
    checkpointing: bool

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.activations + self.logits + self.pictures

    def parts(self) -> str:
        return (f"weights {self.weights / GB:.1f}, LoRA and optimizer {self.lora / GB:.1f}, activations "
                f"{(self.activations + self.logits) / GB:.1f}, pictures {self.pictures / GB:.1f} GB")


def estimate(shape: Shape, spec: JobSpec, packed: bool, samples: int | None = None,
             per_sample: int | None = None) -> Estimate:
    """The job's peak, as the module's docstring counts it. `samples`: how many the data holds (the
    picture cache holds at most one picture each; unknown: as many as the cache budget takes).
    `per_sample`: tokens a sample holds (default: a photo at the pixel budget and TEXT_TOKENS)."""
    from backend.models.families import FAMILIES

    picture = FAMILIES[shape.model_type].picture_tokens(shape.config, spec.max_image_pixels)
    per_sample = per_sample or picture + TEXT_TOKENS
    if packed:  # a row holds the step's samples, up to pack_tokens (a longer sample has a row of its own)
        tokens = min(max(spec.pack_tokens, per_sample), spec.batch_size * spec.grad_accum * per_sample)
    else:
        tokens = spec.batch_size * per_sample
    kept = (3 if packed else 7) - (0 if spec.lora_dropout > 0 else 1)  # bytes of each LoRA input kept
    per_token_layer = 2 * shape.linear_out + kept * shape.linear_in + 2 * shape.kept_besides
    if spec.gradient_checkpointing:
        activations = tokens * (shape.layers * 2 * shape.hidden + per_token_layer)
    else:
        activations = tokens * shape.layers * per_token_layer
    if packed:  # the LM head on answer tokens only (up to 40 a sample), fp32 logits and their gradient
        logits = spec.batch_size * spec.grad_accum * 40 * shape.vocab * 8
    else:
        logits = tokens * shape.vocab * 4
    pictures = 0.0
    if packed and not spec.qlora:  # QLoRA keeps them in CPU memory
        one = picture * shape.picture_width * 2
        pictures = min(spec.vision_cache_gb * 2**30, one * (samples if samples is not None else 10**9))
    if spec.score_set:
        pictures += spec.vision_cache_gb * 2**30
    return Estimate(weight_bytes(shape, spec.qlora), shape.lora_per_rank * spec.lora_r * 16, activations, logits,
                    pictures, tokens, spec.gradient_checkpointing)


def weight_bytes(shape: Shape, qlora: bool) -> float:
    """The frozen base's bytes on the GPU: bf16; with QLoRA, its linear layers in NF4 (half a byte a weight, and
    a block scale of 8 bits for every 64 weights, itself quantized: double quantization) plus one layer dequantized
    at a time, the rest in bf16 but the input embedding table (CPU memory, unless tied: host_embeddings.py)."""
    if not qlora:
        return shape.params * 2
    rest = shape.params - shape.quantized - shape.own_embedding_table
    return shape.quantized * (0.5 + 1 / 64) + shape.largest_quantized * 2 + rest * 2


@functools.lru_cache(maxsize=16)
def _shape_of_folder(location: str, targets: tuple[str, ...], vision: bool) -> Shape:
    from transformers import AutoConfig

    return shape_of(AutoConfig.from_pretrained(location), list(targets), vision)


def job_shape(spec: JobSpec) -> tuple[Shape, int | None]:
    """The job's model, counted (TrainingError for targets that do not fit it), and its sample count."""
    from backend.models.loading import resolve

    shape = _shape_of_folder(resolve(spec.model).location, tuple(spec.target_modules), VISION_LORA in spec.parts)
    try:
        samples = len(json.loads(Path(spec.data_file).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        samples = None
    return shape, samples


def job_estimate(spec: JobSpec) -> Estimate:
    """The estimate for a job as specified (its model folder's config, its data's sample count)."""
    from backend.training.model import packs

    shape, samples = job_shape(spec)
    return estimate(shape, spec, packs(spec, shape.model_type), samples)


# The changes memory_shortfall tries, cheapest first: each adds to the one before, but QLoRA (tried where this
# machine can run it, before the pictures are made smaller) is checkpointing and the base in 4 bits.
def _changes(spec: JobSpec, qlora_possible: bool = False) -> list[tuple[str, str, dict]]:
    tries = []
    if not spec.gradient_checkpointing:
        tries.append(("memory_change_checkpointing", "turn gradient checkpointing on (about {gb} GB)",
                      {"gradient_checkpointing": True}))
    for batch in sorted({spec.batch_size // 2, spec.batch_size // 4, 1}, reverse=True):
        if 1 <= batch < spec.batch_size:
            tries.append(("memory_change_batch", "turn gradient checkpointing on and set the batch size to {batch} and "
                          "gradient accumulation to {accum}, the same effective batch (about {gb} GB)",
                          {"gradient_checkpointing": True, "batch_size": batch,
                           "grad_accum": spec.grad_accum * spec.batch_size // batch}))
    if qlora_possible and not spec.qlora and not spec.with_changes(qlora=True).problems():
        tries.append(("memory_change_qlora", "turn QLoRA on, the base model in 4 bits, with gradient checkpointing "
                      "(about {gb} GB)", {"gradient_checkpointing": True, "qlora": True}))
    if spec.max_image_pixels > 448 * 448:
        tries.append(("memory_change_pictures", "turn gradient checkpointing on, set the batch size to 1 and lower "
                      "the pictures to 448x448 pixels (about {gb} GB)",
                      {"gradient_checkpointing": True, "batch_size": 1, "grad_accum": spec.grad_accum * spec.batch_size,
                       "max_image_pixels": 448 * 448}))
    return tries


def memory_shortfall(spec: JobSpec, gpu_bytes: float, qlora_possible: bool = False) -> Problem | None:
    """Why a job would run out of the memory of a GPU of `gpu_bytes`, and what to change, or None; QLoRA is
    among the changes where it is `qlora_possible` here (a GPU and bitsandbytes). (TrainingError for LoRA
    targets that do not fit the model: said before anything is queued.)"""
    from backend.training.model import packs

    shape, samples = job_shape(spec)
    needed = estimate(shape, spec, packs(spec, shape.model_type), samples)
    if needed.total * HEADROOM <= gpu_bytes:
        return None
    change = Problem("memory_change_model", "pick a smaller model or a GPU with more memory")
    for key, sentence, changes in _changes(spec, qlora_possible):
        changed = spec.with_changes(**changes)
        fits = estimate(shape, changed, packs(changed, shape.model_type), samples)
        if fits.total * HEADROOM <= gpu_bytes:
            values = {"batch": changes.get("batch_size"), "accum": changes.get("grad_accum")} if "{batch}" in sentence \
                else {}
            change = Problem(key, sentence, **values, gb=f"{fits.total * HEADROOM / GB:.0f}")
            break
    return Problem("memory_shortfall", "This job needs about {need} GB of GPU memory ({parts}), more than the "
                   "{have} GB the GPU has. To fit: {change}.", need=f"{needed.total * HEADROOM / GB:.0f}",
                   parts=needed.parts(), have=f"{gpu_bytes / GB:.0f}", change=change)


def start_shortfall(spec: JobSpec, gpus: list[str], totals_mb: dict[str, int] | None = None) -> Problem | None:
    """At Start (the Train tab, beside worker.gpu_shortfall): the job's estimate against the smallest GPU
    the worker may give it, or None (a CPU job, or no GPU seen). `totals_mb`: GPU id -> MiB (default:
    nvidia-smi's). TrainingError for LoRA targets that do not fit the model, whatever the device."""
    from backend.models.loading import looks_like_path
    from backend.training.qlora import why_not_offered
    from backend.training.views import gpu_memory
    from backend.training.worker import wants_gpu

    if spec.problems() or not looks_like_path(spec.model):
        return None  # the job store says what is wrong with the spec; a hub id is read when its job starts
    job_shape(spec)  # LoRA targets that match nothing, or miss a layer type: said now, for CPU jobs too
    if not wants_gpu(spec, gpus):
        return None
    if totals_mb is None:
        totals_mb = {str(gpu.index): gpu.total_mb for gpu in gpu_memory()}
    sizes = [mb for gpu, mb in totals_mb.items() if gpu in gpus]
    return memory_shortfall(spec, min(sizes) * 2**20, why_not_offered(gpus) is None) if sizes else None


# ---- the model picker: families, sizes, and what a LoRA job on each needs ----------------------


@dataclass(frozen=True)
class PickerRow:
    family: str  # its label
    name: str  # the checkpoint's name
    hub_id: str
    params_b: float
    with_checkpointing_gb: float | None  # the 2b-gpu preset; None where no config is at hand
    without_checkpointing_gb: float | None


@functools.lru_cache(maxsize=1)
def picker_rows() -> tuple[PickerRow, ...]:
    """Every published size the registry lists, with the 2b-gpu preset's estimate (batch 4 x 4,
    1024x768 pictures, LoRA r=128 on every linear layer of the language model) where its config is
    in the registry; the Train tab estimates any model folder at Start."""
    from transformers import AutoConfig

    from backend.models.families import FAMILIES
    from backend.training.model import PACKED_MODEL_TYPES
    from backend.training.spec import preset

    spec = preset("2b-gpu", model="-", data_file="-")
    rows = []
    for family in FAMILIES.values():
        for size in family.sizes:
            gb = (None, None)
            if size.config is not None:
                values = size.config()
                config = AutoConfig.for_model(values.pop("model_type"), **values)
                shape = shape_of(config, spec.target_modules)
                packed = spec.packed and family.model_type in PACKED_MODEL_TYPES
                gb = tuple(estimate(shape, spec.with_changes(gradient_checkpointing=ckpt), packed, 256).total
                           * HEADROOM / GB for ckpt in (True, False))
            rows.append(PickerRow(family.label, size.name, size.hub_id, size.params_b, *gb))
    return tuple(rows)


def picker_text() -> str:
    """The picker as text, for --model's help: each family's sizes, with the GPU memory a LoRA job on
    it needs with and without gradient checkpointing where the registry has its config."""
    families: dict[str, list[str]] = {}
    for row in picker_rows():
        memory = (f" ~{row.with_checkpointing_gb:.0f}/~{row.without_checkpointing_gb:.0f} GB"
                  if row.with_checkpointing_gb else "")
        families.setdefault(row.family, []).append(f"{row.hub_id} {row.params_b:.1f}B{memory}")
    return ("; ".join(f"{family}: {', '.join(sizes)}" for family, sizes in families.items())
            + ". GB: a LoRA job with/without gradient checkpointing at the 2b-gpu preset (batch 4 x 4, 1024x768 "
            "photos, r=128); any model is estimated when its job starts")
