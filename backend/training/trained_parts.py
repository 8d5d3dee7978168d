"""What a job trains, placed on the model: which linear layers get LoRA and which modules train whole.

A spec's `trains` (spec.py) is made of parts: LoRA on the language model (the default), LoRA on the
vision tower, the projector trained whole, the language model's decoder trained whole. Where the
family keeps its tower and projector comes from backend/models/family_parts.py; a part the model
does not have is refused with a sentence before anything trains.

Modules trained whole become peft's `modules_to_save`: peft keeps a trainable copy beside the frozen
original and saves the copy's full weights in the adapter file, so a checkpoint is still one peft
adapter folder that loads anywhere peft does, base beside tuned in one engine included. peft needs a
LoRA target list even when nothing gets LoRA (a projector alone, or the whole language model): its
placeholder `DUMMY_TARGET_MODULES` says exactly that, and such an adapter loads and merges as usual.

The whole language model means its decoder layers and the modules after them (the final norm), not
the embeddings and the LM head: they stay frozen, so a model whose LM head shares the embedding
matrix (tied) still has one matrix after merging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.models.family_parts import PARTS, Parts
from backend.training.errors import TrainingError
from backend.training.spec import LANGUAGE_FULL, LANGUAGE_LORA, PROJECTOR, VISION_LORA, JobSpec
from backend.training.targets import decoder_layers, decoder_of, lora_targets


@dataclass(frozen=True)
class Placement:
    lora: list[str]  # full names of the linear layers that get LoRA
    whole: list[str]  # full names of the modules trained whole (peft's modules_to_save)

    def peft_targets(self) -> list[str] | str:
        """LoraConfig's target_modules: the LoRA layers, or peft's placeholder when there are none."""
        from peft.utils.constants import DUMMY_TARGET_MODULES

        return self.lora or DUMMY_TARGET_MODULES


def place(model: torch.nn.Module, spec: JobSpec) -> Placement:
    """Where the spec's parts go on `model` (the base, before peft wraps it)."""
    parts = spec.parts
    lora: list[str] = []
    whole: list[str] = []
    if LANGUAGE_LORA in parts:
        lora += lora_targets(model, spec.target_modules)
    if LANGUAGE_FULL in parts:
        whole += language_model_modules(model)
    if VISION_LORA in parts or PROJECTOR in parts:
        family = family_parts(model)
        projector = projector_modules(model, family) if PROJECTOR in parts or VISION_LORA in parts else []
        if VISION_LORA in parts:
            lora += tower_linear(model, family, projector)
        if PROJECTOR in parts:
            whole += projector
    return Placement(lora, whole)


def family_parts(model: torch.nn.Module) -> Parts:
    model_type = model.config.model_type
    found = PARTS.get(model_type)
    if found is None:
        raise TrainingError("trains_unknown_family", "Foodie Studio does not know where a {model_type} model keeps "
                            "its vision tower and projector, so only its language model can train.",
                            model_type=model_type)
    return found


def projector_modules(model: torch.nn.Module, family: Parts) -> list[str]:
    """The projector's module names (a ModuleList's elements in its place); refused when the family has none."""
    if not family.projector:
        raise TrainingError("no_projector", "This {model_type} model has no projector to train: {why}.",
                            model_type=model.config.model_type, why=family.no_projector_why)
    return [name for path in family.projector for name in _expanded(model, path, "projector")]


def tower_linear(model: torch.nn.Module, family: Parts, projector: list[str]) -> list[str]:
    """The vision tower's linear layers, the projector's left out (Qwen's merger sits inside the tower)."""
    tower = _module(model, family.vision_tower, "vision tower")
    inside = tuple(name + "." for name in projector)
    names = [f"{family.vision_tower}.{name}" for name, module in tower.named_modules()
             if isinstance(module, torch.nn.Linear)]
    return [name for name in names if not name.startswith(inside)]


def language_model_modules(model: torch.nn.Module) -> list[str]:
    """The decoder's layers, one by one, and its other modules with weights after them (the final norm);
    its embeddings and rotary tables left out."""
    prefix, decoder = decoder_of(model)
    stack_name, layers = decoder_layers(decoder)
    base = f"{prefix}.{stack_name}" if stack_name else prefix
    names = [f"{base}.{i}" for i in range(len(layers))]
    for child_name, child in decoder.named_children():
        if child_name == stack_name.split(".")[0] or "embed" in child_name or isinstance(child, torch.nn.Embedding):
            continue
        if any(True for _ in child.parameters()):
            names.append(f"{prefix}.{child_name}")
    return names


def _module(model: torch.nn.Module, path: str, what: str) -> torch.nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise TrainingError("part_missing", "This {model_type} model has no {what} where its family keeps it "
                            "({path}), so it cannot train.", model_type=model.config.model_type, what=what,
                            path=path) from None


def _expanded(model: torch.nn.Module, path: str, what: str) -> list[str]:
    module = _module(model, path, what)
    if isinstance(module, torch.nn.ModuleList):  # never called itself: peft wraps each element
        return [f"{path}.{i}" for i in range(len(module))]
    return [path]


def train_whole_in_fp32(peft_model: torch.nn.Module) -> int:
    """The trainable copies of modules trained whole in fp32 (as LoRA's weights are): a bf16 weight
    would round away updates smaller than 1/256 of itself. Returns how many parameters that made."""
    from peft.utils.other import ModulesToSaveWrapper

    count = 0
    for module in peft_model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            for copy in module.modules_to_save.values():
                copy.float()
                count += sum(p.numel() for p in copy.parameters())
    return count


def load_projector(peft_model: torch.nn.Module, folder, projector: list[str]) -> int:
    """Start the projector (its module names: `projector`) from the one trained in the checkpoint `folder`
    (LLaVA's stage 2 from stage 1). Returns how many tensors were taken; refused when the checkpoint
    holds no projector, or one of another shape."""
    from pathlib import Path

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(folder) / "adapter_model.safetensors"
    if not path.is_file():
        raise TrainingError("projector_from_missing", "The checkpoint {folder} to take the projector from is not "
                            "there (has its job finished?).", folder=str(folder))
    under = tuple(f"base_model.model.{name}." for name in projector)
    weights = {key: value for key, value in load_file(str(path)).items() if key.startswith(under)
               and ".lora_" not in key}
    if not weights:
        raise TrainingError("projector_from_empty", "The checkpoint {folder} holds no trained projector to start "
                            "from.", folder=str(folder))
    try:
        result = set_peft_model_state_dict(peft_model, weights)
    except RuntimeError:  # load_state_dict: a tensor of another shape
        result, unexpected = None, list(weights)
    else:
        unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise TrainingError("projector_from_other_model", "The projector in {folder} does not fit this model "
                            "({count} tensors have no place in it).", folder=str(folder), count=len(unexpected))
    return len(weights)
