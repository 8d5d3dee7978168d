"""Which linear layers a job's LoRA goes on, read off the model's own module names.

A hard-coded list (q_proj, k_proj, v_proj, o_proj, ...) fits Llama-shaped layers and silently
misses others: three of Qwen3.5's four layers are Gated DeltaNet (linear attention) whose
projections are in_proj_qkv, in_proj_z, in_proj_b, in_proj_a and out_proj. So the default,
"all-linear", is every linear layer inside the language model's decoder layers, whatever it is
called (the LM head and the vision tower left out; `vision=True` adds the tower's and the
projector's). A list of names is checked against the model:
- a name that matches no linear layer of the language model is an error naming its linear layers;
- a list that reaches one layer type's own projections (Qwen3.5's full-attention q/k/v/o) but none
  of another's (its linear-attention in_proj_*), or leaves a layer type with no adapter at all, is an
  error naming the layers it misses.

The result is an explicit list of full module names, saved as the adapter's target_modules: explicit
names load everywhere (LMDeploy cannot read a pattern).
"""

from __future__ import annotations

import torch

from backend.training.errors import TrainingError
from backend.training.spec import ALL_LINEAR


def decoder_of(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """(full name, module) of the language model's decoder (the peft wrapper, if any, looked through)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if prefix is None:
        raise TrainingError("no_language_model", "Could not find the language model inside this model, so "
                            "LoRA cannot be placed on it.")
    return prefix, decoder


def decoder_layers(decoder: torch.nn.Module) -> tuple[str, list[torch.nn.Module]]:
    """(name inside the decoder, layers) of its stack of layers: the longest ModuleList of it."""
    stacks = [(name, module) for name, module in decoder.named_modules() if isinstance(module, torch.nn.ModuleList)]
    if not stacks:
        raise TrainingError("no_language_model", "Could not find the language model inside this model, so "
                            "LoRA cannot be placed on it.")
    name, stack = max(stacks, key=lambda pair: len(pair[1]))
    return name, list(stack)


def linear_names(module: torch.nn.Module) -> dict[str, str]:
    """{name inside `module`: short name} of its linear layers."""
    return {name: name.rsplit(".", 1)[-1] for name, sub in module.named_modules() if isinstance(sub, torch.nn.Linear)}


def lora_targets(model: torch.nn.Module, wanted: list[str], vision: bool = False) -> list[str]:
    """Full names of the linear layers LoRA goes on (see the module's docstring)."""
    prefix, decoder = decoder_of(model)
    stack_name, layers = decoder_layers(decoder)
    per_layer = [linear_names(layer) for layer in layers]  # layer -> {name in layer: short}
    everything = sorted({short for names in per_layer for short in names.values()})
    if ALL_LINEAR in wanted:
        chosen = set(everything)
    else:
        unmatched = [short for short in wanted if short not in everything]
        if unmatched:
            raise TrainingError("targets_not_linear", "None of the target modules ({targets}) is a linear layer of "
                                "the language model; its linear layers are called {linear}.",
                                targets=", ".join(unmatched), linear=", ".join(everything))
        chosen = set(wanted)
        check_layer_types(model, layers, per_layer, chosen)
    base = f"{prefix}.{stack_name}" if stack_name else prefix
    targets = [f"{base}.{i}.{name}" for i, names in enumerate(per_layer) for name, short in names.items()
               if short in chosen]
    if vision:
        targets += vision_linear(model, prefix)
    return targets


def check_layer_types(model, layers: list[torch.nn.Module], per_layer: list[dict[str, str]], chosen: set[str]) -> None:
    """Layers grouped by the names of their linear layers (Qwen3.5: linear-attention and full-attention
    layers); each group's own names are those the others lack. Refuse a choice that gives a group no
    adapter, or reaches one group's own projections and none of another's."""
    groups: dict[frozenset, list[int]] = {}
    for i, names in enumerate(per_layer):
        groups.setdefault(frozenset(names.values()), []).append(i)
    if len(groups) < 2:
        return
    shared = frozenset.intersection(*groups)
    own = {names: names - shared for names in groups}
    reaches_own = any(own[names] & chosen for names in groups)
    for names, indices in groups.items():
        if names & chosen and (not reaches_own or own[names] & chosen):
            continue
        kind = layer_kind(model, indices[0], layers[indices[0]], own[names] or names)
        raise TrainingError(
            "targets_miss_layers", "The LoRA target modules ({targets}) miss the {kind} layers ({count} of {total} "
            "layers: {layers}), whose own linear layers are called {linear}; add those names, or leave the "
            "targets at all-linear.", targets=", ".join(sorted(chosen)), kind=kind, count=len(indices),
            total=len(per_layer), layers=", ".join(map(str, indices)), linear=", ".join(sorted(own[names] or names)))


def layer_kind(model, index: int, layer: torch.nn.Module, own: frozenset) -> str:
    """What to call a layer type: the config's name for it (layer_types) or the class of the block
    that holds its own linear layers."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None)
    if layer_types and index < len(layer_types):
        return str(layer_types[index]).replace("_", " ")
    holder = next((module for name, module in layer.named_children()
                   if any(short in own for short in linear_names(module).values())), layer)
    return type(holder).__name__


def vision_linear(model: torch.nn.Module, decoder_prefix: str) -> list[str]:
    """The vision tower's and the projector's linear layers: every linear layer outside the language model
    (the LM head left out)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not name.startswith(decoder_prefix + ".")
            and name.rsplit(".", 1)[-1] != "lm_head"]
