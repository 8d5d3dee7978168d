"""Random-weight models of published checkpoints, built from their config values (no download), for
the GPU benchmarks: speed and memory do not depend on weight values.

    from published_models import FAMILY_RUNS, build_published
    build_published("qwen3_vl", Path("models/qwen3-vl-2b"))

The configs are the registry's (backend/models/families.py: qwen3_vl_2b_config, internvl3_5_2b_config,
qwen3_5_2b_config); the tokenizer is our locally trained BPE, so the picture and turn tokens take its
ids (the embedding table keeps the published vocabulary size). The processors are the checkpoints'
own settings: Qwen's 16-pixel patches merged 2x2 with a 1024x768 budget; InternVL's 448-pixel tiles
(256 tokens each), up to `max_tiles` and a thumbnail. The chat templates have no generation markers,
like the real checkpoints', so the training program finds answers by rendered prefixes.

With dry_run, the family's tiny model (families.TINY) stands in: the same code paths on a CPU.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.models import families


@dataclass(frozen=True)
class FamilyRun:
    """One --family run of bench_train_speed.py: what it builds, and a data size that keeps the run,
    the plain recipe included, within ~4 minutes on one H100."""

    label: str
    config: object  # a function giving the published config values
    tiny: str  # the tiny recipe a --dry-run builds instead
    samples: int
    epochs: int
    max_tiles: int = 12  # InternVL only: tiles a photo at most (plus a thumbnail)


FAMILY_RUNS = {
    "qwen3_vl": FamilyRun("Qwen3-VL-2B-Instruct", families.qwen3_vl_2b_config, "qwen3_vl", samples=128, epochs=2),
    # 6 tiles and a thumbnail: 1,792 picture tokens a photo (12 would make 3,328, and the plain recipe's
    # run alone several minutes)
    "internvl": FamilyRun("InternVL3_5-2B-HF", families.internvl3_5_2b_config, "internvl3_5", samples=96, epochs=2,
                          max_tiles=6),
    # no fast path (its linear attention), and transformers' PyTorch fallback for it on this GPU box
    "qwen3_5": FamilyRun("Qwen3.5-2B", families.qwen3_5_2b_config, "qwen3_5", samples=64, epochs=2),
}


def _no_markers(tokenizer):
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}",
                                                                                               "")
    return tokenizer


def build_published(family: str, folder: Path, dry_run: bool = False, max_pixels: int = 1024 * 768) -> Path:
    """The published checkpoint of `family` (a FAMILY_RUNS key) with random weights, saved at `folder`
    (kept if it is there): bf16 on the GPU, or its tiny stand-in with `dry_run`."""
    import torch
    from transformers import AutoConfig

    from backend.models.families import TINY
    from backend.models.families import family as family_of
    from backend.models.processors import image_only
    from backend.models.tiny import build_tiny_model, train_tokenizer

    if (folder / "config.json").is_file():
        return folder
    run = FAMILY_RUNS[family]
    recipe = TINY[run.tiny]
    if dry_run:
        from dataclasses import replace

        build_tiny_model(run.tiny, folder, replace(recipe.size, max_pixels=224 * 224))
        processor_file = folder / "chat_template.jinja"
        processor_file.write_text(processor_file.read_text().replace("{% generation %}", "")
                                  .replace("{% endgeneration %}", ""), encoding="utf-8")
        return folder
    tokenizer = _no_markers(train_tokenizer(recipe.tokens))
    ids = tokenizer.convert_tokens_to_ids
    values = run.config()
    model_type = values.pop("model_type")
    text = values["text_config"]
    if model_type == "internvl":
        values["image_token_id"] = ids("<IMG_CONTEXT>")
    else:
        values.update(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                      vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    text.update(bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"))
    config = AutoConfig.for_model(model_type, **values)
    config.dtype = torch.bfloat16
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = family_of(model_type).model_cls()(config).to(torch.bfloat16)
    if model_type == "internvl":
        from transformers import GotOcr2ImageProcessorPil, InternVLProcessor

        images = GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1,
                                          max_patches=run.max_tiles, image_mean=[0.485, 0.456, 0.406],
                                          image_std=[0.229, 0.224, 0.225])
        processor = image_only(InternVLProcessor)(image_processor=images, tokenizer=tokenizer,
                                                  image_seq_length=config.image_seq_length,
                                                  chat_template=tokenizer.chat_template)
    else:
        from transformers import Qwen2VLImageProcessorPil, Qwen3VLProcessor

        images = Qwen2VLImageProcessorPil(min_pixels=64 * 64, max_pixels=max_pixels, patch_size=16, merge_size=2,
                                          temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        processor = image_only(Qwen3VLProcessor)(image_processor=images, tokenizer=tokenizer,
                                                 chat_template=tokenizer.chat_template)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_video_settings(folder, model_type)
    print(f"built a random {run.label} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters) "
          f"at {folder}", flush=True)
    del model
    return folder


def write_video_settings(folder: Path, model_type: str) -> None:
    """The video processor's settings that the published checkpoints carry beside the image processor's
    (video_preprocessor_config.json): LMDeploy's preprocessors load the whole processor, video part
    included. Written as JSON, since the video processor classes need torchvision to be built; the
    values it does not name are the class's defaults, as in the published files."""
    import json

    if model_type == "internvl":
        settings = {"video_processor_type": "InternVLVideoProcessor", "processor_class": "InternVLProcessor",
                    "size": {"height": 448, "width": 448}, "image_mean": [0.485, 0.456, 0.406],
                    "image_std": [0.229, 0.224, 0.225], "resample": 3, "initial_shift": True}
    else:
        settings = {"video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
                    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5] * 3,
                    "image_std": [0.5] * 3, "size": {"shortest_edge": 128 * 32 * 32, "longest_edge": 768 * 32 * 32},
                    "fps": 2, "min_frames": 4, "max_frames": 768, "do_sample_frames": True}
    (folder / "video_preprocessor_config.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
