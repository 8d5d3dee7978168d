"""Finding and loading a vision-language model: the demo model, a local folder or a hub id.

Every failure a person can cause (a folder that is not there, a text-only model, no network for
a hub id) becomes ModelLoadError with a sentence that says what to do.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.models.families import FAMILIES, supported_labels
from backend.problems import ProblemError

log = logging.getLogger(__name__)

# model_type in config.json -> what we call the family, from the registry (families.py). Only
# families whose chat and training paths are tested (on tiny models of the same classes) are there.
SUPPORTED_MODEL_TYPES = {model_type: model_type for model_type in FAMILIES}
FAMILY_LABELS = {model_type: family.label for model_type, family in FAMILIES.items()}
# The original InternVL2 layout (remote code): converted once to the -hf layout (convert_internvl.py).
ORIGINAL_INTERNVL = "internvl_chat"

# For processors that resize to a fixed square anyway, anything above this only costs memory.
DEFAULT_MAX_PIXELS = 1024 * 1024


class ModelLoadError(ProblemError, RuntimeError):
    """A model that cannot be used, with the reason in plain words (a Problem: the Train tab says a
    job's reason in the page's language, ui/train_problems.py)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from. `location` is a local folder or a hub id."""

    location: str
    family: str
    is_demo: bool = False
    is_tiny: bool = False  # random weights: its answers are gibberish until trained

    @property
    def label(self) -> str:
        if self.is_demo:
            return "demo: tiny Qwen2-VL, random weights"
        return f"{FAMILY_LABELS.get(self.family, self.family)}: {self.location}"


@dataclass
class LoadedModel:
    source: ModelSource
    model: torch.nn.Module
    processor: object
    device: torch.device
    dtype: torch.dtype
    max_pixels: int


def looks_like_path(spec: str) -> bool:
    """A hub id is 'owner/name'; anything else with a separator or a leading dot is a path."""
    if spec.startswith(("/", ".", "~")) or os.sep + os.sep in spec:
        return True
    return spec.count("/") != 1 or Path(spec).exists()


def resolve(spec: str) -> ModelSource:
    """Check `spec` (a folder or a hub id) names a supported VLM, before any weights load."""
    from transformers import AutoConfig

    if looks_like_path(spec):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ModelLoadError("model_folder_missing", "Model folder {folder} does not exist. Give --model a "
                                 "folder that holds config.json and the weights, or a hub id like "
                                 "Qwen/Qwen2-VL-2B-Instruct.", folder=str(folder))
        if not (folder / "config.json").is_file():
            raise ModelLoadError("model_no_config", "{folder} has no config.json, so it is not a transformers "
                                 "model folder.", folder=str(folder))
        spec = str(folder.resolve())
        refuse_original_internvl(folder)
    try:
        config = AutoConfig.from_pretrained(spec)
    except OSError as err:
        raise ModelLoadError(
            "model_config_unreadable", "Could not read the model config of {model}: {detail} If this server "
            "cannot reach the hub, download the model elsewhere and give its local folder instead.",
            model=spec, detail=first_line(err)) from None
    except ValueError as err:
        raise ModelLoadError("model_config_not_understood", "{model} has a config transformers does not "
                             "understand: {detail}", model=spec, detail=first_line(err)) from None
    family = SUPPORTED_MODEL_TYPES.get(config.model_type)
    if family is None:
        raise ModelLoadError(
            "model_not_supported", "{model} is a '{model_type}' model, not a vision-language model Foodie "
            "Studio supports ({supported}).", model=spec, model_type=config.model_type,
            supported=supported_labels())
    marker = Path(spec) / "foodie_studio.json"
    is_tiny = marker.is_file() and bool(json.loads(marker.read_text(encoding="utf-8")).get("tiny", False))
    return ModelSource(spec, family, is_tiny=is_tiny)


def refuse_original_internvl(folder: Path) -> None:
    """InternVL2 as OpenGVLab published it (model_type internvl_chat, remote code): one sentence on
    converting it, instead of transformers' question about running the folder's code."""
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return  # AutoConfig says what is wrong with it
    if model_type == ORIGINAL_INTERNVL:
        raise ModelLoadError(
            "model_original_internvl", "{folder} holds InternVL in its original remote-code layout. Convert it "
            "once to the transformers layout: python -m backend.models.convert_internvl {folder} {folder}-hf, then "
            "give the new folder.", folder=str(folder))


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__).rstrip(".") + "."


def pick_device(requested: str = "auto") -> torch.device:
    """`requested` (auto, cpu, cuda or cuda:N, as settings checked) as a device this machine has."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ModelLoadError("device_no_gpu", "--device {device}: torch sees no GPU on this machine; use "
                                 "--device cpu or auto.", device=requested)
        if (device.index or 0) >= count:
            raise ModelLoadError("device_no_such_gpu", "--device {device}: torch sees {count} GPU(s) here, "
                                 "cuda:0 to cuda:{last}.", device=requested, count=count, last=count - 1)
    return device


def pick_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_processor(source: ModelSource):
    """The model's own processor; without torchvision, the same class minus its video part."""
    from transformers import AutoProcessor

    family = FAMILIES[source.family]
    try:
        processor = AutoProcessor.from_pretrained(source.location)
    except Exception as err:  # transformers raises many kinds when torchvision is missing
        if not (family.processor_has_video or family.image_only):
            raise processor_error(source, err) from None
        # Usually torchvision missing for the video part (or num2words, SmolVLM's, for video
        # prompts); the image part is all we use.
        log.info("using the image-only processor (AutoProcessor: %s)", first_line(err)[:120])
        try:
            processor = family.image_only_processor_class().from_pretrained(source.location)
        except Exception as err:
            raise processor_error(source, err) from None
    if not getattr(processor, "chat_template", None) and family.chat_template:
        # BLIP-2 ships no chat template: it was trained on "Question: ... Answer: ..."
        processor.chat_template = family.chat_template
    return processor


def processor_error(source: ModelSource, err: BaseException) -> ModelLoadError:
    return ModelLoadError("processor_unloadable", "Could not load the processor of {model}: {detail}",
                          model=source.location, detail=first_line(err))


def max_pixels_of(processor) -> int:
    """How many pixels the processor keeps of a picture; more is wasted decoding work."""
    images = getattr(processor, "image_processor", None)
    size = getattr(images, "size", None)
    longest = getattr(size, "longest_edge", None) if size is not None else None
    if getattr(processor, "image_token", None) == "<|image_pad|>" and longest:
        return int(longest)  # Qwen2-VL keeps its pixel budget in size.longest_edge
    return DEFAULT_MAX_PIXELS


def load(source: ModelSource, device: str = "auto") -> LoadedModel:
    from transformers import AutoModelForImageTextToText

    target = pick_device(device)
    dtype = pick_dtype(target)
    processor = load_processor(source)
    try:
        model = AutoModelForImageTextToText.from_pretrained(source.location, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelLoadError("weights_unloadable", "Could not load the weights of {model}: {detail}",
                             model=source.location, detail=first_line(err)) from None
    model.to(target).eval()
    log.info("loaded %s on %s (%s)", source.label, target, dtype)
    return LoadedModel(source, model, processor, target, dtype, max_pixels_of(processor))
