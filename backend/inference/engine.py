"""The one interface every inference engine offers, and the types that cross it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from backend.problems import ProblemError


@dataclass(frozen=True)
class Turn:
    """One message of a conversation. Pictures are file paths; the engine opens them."""

    role: str  # "user" or "assistant"
    text: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy: the same question gets the same answer
    top_p: float = 0.9

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 8192:
            raise ValueError("max new tokens must be between 1 and 8192")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top-p must be above 0 and at most 1")


@dataclass
class Cancel:
    """Set by whoever reads a stream to make the engine stop generating for it."""

    event: threading.Event = field(default_factory=threading.Event)

    def set(self) -> None:
        self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


class AdapterError(ValueError):
    """A checkpoint folder that cannot be loaded, said in a sentence."""


def check_adapter_folder(folder: str) -> None:
    """Read the adapter's config and every tensor header; AdapterError if anything is off.

    A checkpoint whose copy was cut short, or whose folder was half deleted, must be refused
    with a sentence, not half-loaded into the one model every visitor shares."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    path = Path(folder)
    whole = is_whole_model(folder)
    try:
        json.loads((path / ("config.json" if whole else "adapter_config.json")).read_text(encoding="utf-8"))
        files = sorted(path.glob("*.safetensors")) if whole else [path / "adapter_model.safetensors"]
        if not files:
            raise ValueError("it holds no weights")
        for file in files:
            with safe_open(str(file), "pt") as weights:
                if not list(weights.keys()):
                    raise ValueError("it holds no weights")
    except Exception as err:  # json, OS and safetensors errors alike mean the same to a person
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AdapterError(f"The checkpoint in {folder} cannot be loaded ({reason}); it may be "
                           "incomplete or damaged. Pick another checkpoint.") from None


class AdapterMismatch(ProblemError, AdapterError):
    """A checkpoint trained on another base model than the one this app serves."""


def is_whole_model(folder: str) -> bool:
    """Whether a checkpoint is a whole model folder (a full fine-tune with `full_language_model`: config
    and weights, loaded by from_pretrained), not a peft adapter."""
    from pathlib import Path

    return (Path(folder) / "config.json").is_file() and not (Path(folder) / "adapter_config.json").is_file()


def tensor_shapes(folder: str) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of every safetensors file in a model folder, from the headers ({} if none)."""
    from pathlib import Path

    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), "pt") as weights:
            names = weights.keys()
            shapes.update({key: tuple(weights.get_slice(key).get_shape()) for key in names})
    return shapes


def check_whole_model_fits(folder: str, served: str) -> None:
    """AdapterMismatch unless a whole-model checkpoint is the served model's shape: the same model_type,
    and every tensor of its weights one of the served model's with the same shape (where the served
    model's folder is here to read)."""
    theirs, ours = tensor_shapes(folder), tensor_shapes(served)
    wrong = [name for name, shape in theirs.items() if ours and ours.get(name) != shape]
    if not wrong and not _other_model_type(folder, served):
        return
    raise AdapterMismatch("adapter_other_base", "The checkpoint in {folder} was trained on {base}, not on the "
                          "model this app serves ({served}): {count} of its {total} layers do not fit. Pick a "
                          "checkpoint trained on this model.", folder=folder, base="another model", served=served,
                          count=len(wrong) or len(theirs), total=len(theirs))


def adapter_layers(folder: str) -> dict[str, tuple[int, int]]:
    """{module name in the base model: (in_features, out_features)} of a LoRA adapter, from its
    tensors' headers (peft saves lora_A as (r, in) and lora_B as (out, r) under base_model.model.)."""
    from pathlib import Path

    from safetensors import safe_open

    shapes: dict[str, dict[str, list[int]]] = {}
    with safe_open(str(Path(folder) / "adapter_model.safetensors"), "pt") as weights:
        names = weights.keys()  # safe_open has no __iter__
        for key in names:
            for part in ("lora_A", "lora_B"):
                marker = f".{part}."
                if marker in key:
                    module = key.split(marker)[0].removeprefix("base_model.model.")
                    shapes.setdefault(module, {})[part] = list(weights.get_slice(key).get_shape())
    return {module: (parts["lora_A"][1], parts["lora_B"][0]) for module, parts in shapes.items()
            if "lora_A" in parts and "lora_B" in parts}


def check_adapter_fits(folder: str, served_layers: dict[str, tuple[int, int]], served: str) -> None:
    """AdapterMismatch unless the adapter belongs on the served model: the base it names (when that folder
    is here to read) is of the same model_type, and every layer it changes is a layer of the served model
    with the same widths. A checkpoint of another family or size is refused before the one shared model
    is touched. `served_layers`: {name: (in, out)} of the served model's linear layers."""
    import json
    from pathlib import Path

    try:
        base = json.loads((Path(folder) / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path") or ""
    except (OSError, ValueError):
        base = ""
    adapter = adapter_layers(folder)
    # modules trained whole: each linear layer in them (a 2-D weight) must be one of the served model's
    for name, shape in whole_module_shapes(folder).items():
        module, _, kind = name.rpartition(".")
        if kind == "weight" and len(shape) == 2:
            adapter[module] = (shape[1], shape[0])
    wrong = [name for name, widths in adapter.items() if served_layers.get(name) != widths]
    if not wrong and not _other_model_type(base, served):
        return
    raise AdapterMismatch("adapter_other_base", "The checkpoint in {folder} was trained on {base}, not on the "
                          "model this app serves ({served}): {count} of its {total} layers do not fit. Pick a "
                          "checkpoint trained on this model.", folder=folder, base=base or "another model",
                          served=served, count=len(wrong) if wrong else len(adapter), total=len(adapter))


def _other_model_type(base: str, served: str) -> bool:
    """Whether the adapter's base folder (where it can be read here) is of another model_type than the
    served model (same widths do not make a Qwen2-VL adapter a LLaVA one)."""
    import json
    from pathlib import Path

    def model_type(location: str) -> str | None:
        try:
            return json.loads((Path(location) / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            return None

    theirs, ours = model_type(base) if base else None, model_type(served)
    return theirs is not None and ours is not None and theirs != ours


def whole_module_shapes(folder: str) -> dict[str, tuple[int, ...]]:
    """{parameter name in the base model: shape} of the modules a checkpoint trained whole (peft's
    modules_to_save, saved in full beside the LoRA weights)."""
    from pathlib import Path

    from safetensors import safe_open

    with safe_open(str(Path(folder) / "adapter_model.safetensors"), "pt") as weights:
        names = weights.keys()
        return {key.removeprefix("base_model.model."): tuple(weights.get_slice(key).get_shape()) for key in names
                if ".lora_" not in key}


def language_lora_only(folder: str, decoder_prefix: str) -> bool:
    """Whether a checkpoint is LoRA on the language model and nothing more: no module trained whole (a
    projector, the whole decoder) and no LoRA layer outside the decoder at `decoder_prefix` (the vision
    tower). Such a checkpoint is served beside the base as it is; any other is served as a merged model
    by LMDeploy, and not mixed row by row with others in one batch by transformers (a picture's patches
    are not rows of the batch, nor are whole decoder layers routed per row by peft)."""
    if whole_module_shapes(folder):
        return False
    return all(name.startswith(decoder_prefix + ".") for name in adapter_layers(folder))


def trains_decoder_whole(folder: str, decoder_prefix: str) -> bool:
    """Whether a checkpoint trained modules of the language model's decoder whole ("language-full")."""
    return any(name.startswith(decoder_prefix + ".") for name in whole_module_shapes(folder))


def decoder_prefix(model) -> str:
    """The full name of the language model's decoder in `model` (peft's wrapper looked through)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    return next((name for name, module in base.named_modules() if module is decoder), "")


def linear_layers(model) -> dict[str, tuple[int, int]]:
    """{name: (in_features, out_features)} of a model's linear layers (peft's wrapped ones too)."""
    import torch

    found = {}
    for name, module in model.named_modules():
        base = getattr(module, "base_layer", module)
        if isinstance(base, torch.nn.Linear):
            found[name.removeprefix("base_model.model.")] = (base.in_features, base.out_features)
    return found


def layers_of_folder(folder: str) -> tuple[dict[str, tuple[int, int]], str]:
    """linear_layers of the model in `folder` and its decoder's name (decoder_prefix), built on the meta
    device from its config (no weights read: an engine that does not hold the model in this process,
    LMDeploy's, checks adapters this way)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder))
    return linear_layers(model), decoder_prefix(model)


class Engine(Protocol):
    name: str

    def stream(self, turns: list[Turn], settings: GenerationSettings,
               cancel: Cancel | None = None, adapter: str | None = None) -> Iterator[str]:
        """Yield the answer to the last user turn piece by piece, as text. `adapter` names a
        loaded LoRA adapter; None is the base model."""
        ...

    def generate_batch(self, conversations: list[list[Turn]], settings: GenerationSettings,
                       adapter: str | None = None) -> list[str]:
        """Answer many conversations at once; for scoring."""
        ...

    def stream_many(self, requests: list[tuple[list[Turn], str | None]], settings: GenerationSettings,
                    cancel: Cancel | None = None) -> Iterator[tuple[int, str]]:
        """Answer several (conversation, adapter) pairs together; yield (index, text piece)."""
        ...

    def load_adapter(self, name: str, folder: str) -> None:
        """Make a LoRA adapter available under `name`, beside the one base model."""
        ...
