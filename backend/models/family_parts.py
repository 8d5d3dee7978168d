"""Where each family keeps its vision tower and its projector: what "what trains" (backend/training/
trained_parts.py) reaches for when a job trains more than the language model's LoRA.

Kept beside the registry (families.py) rather than in it, as one small table by model_type, so that
either can change without the other. Names are module paths in transformers 5's layout, as
`model.named_modules()` gives them. A path that names a ModuleList stands for its elements (Qwen3-VL's
three DeepStack mergers): a list is never called itself, so peft must wrap each element.

A family with no projector here says why (`no_projector_why`); jobs that would train one are refused
with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Parts:
    vision_tower: str  # the vision encoder's module; its linear layers get LoRA with "vision-lora"
    projector: tuple[str, ...] = ()  # the modules between the tower and the language model
    no_projector_why: str = ""


QWEN_TOWER = Parts("model.visual", ("model.visual.merger",))

PARTS: dict[str, Parts] = {
    "qwen2_vl": QWEN_TOWER,  # the PatchMerger (2x2 patches -> the LM's width) sits inside the tower
    "qwen2_5_vl": QWEN_TOWER,
    # DeepStack: three more mergers feed tower layers' features into the first text layers
    "qwen3_vl": Parts("model.visual", ("model.visual.merger", "model.visual.deepstack_merger_list")),
    "qwen3_5": QWEN_TOWER,
    "internvl": Parts("model.vision_tower", ("model.multi_modal_projector",)),
    "gemma3": Parts("model.vision_tower", ("model.multi_modal_projector",)),
    "smolvlm": Parts("model.vision_model", ("model.connector",)),
    "llava": Parts("model.vision_tower", ("model.multi_modal_projector",)),
    "blip-2": Parts("vision_model", no_projector_why=(
        "BLIP-2 reaches its language model through a Q-Former whose learned query tokens are a bare "
        "parameter, not a module a checkpoint can carry whole")),
}
