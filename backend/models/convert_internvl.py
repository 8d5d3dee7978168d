"""InternVL2 in its original remote-code layout -> transformers' own InternVL layout, once.

    python -m backend.models.convert_internvl path/to/InternVL2-2B path/to/InternVL2-2B-hf

The course's InternVL2-2B was published with its own modeling code (model_type internvl_chat, an
InternViT tower, InternLM2 or Qwen2 text). transformers 5 has InternVL as a native class
(InternVLForConditionalGeneration), which every path of Foodie Studio supports: LoRA targets,
padded and packed training, merging, serving. So the original is converted, not run as remote code
(docs/training.md says why): the config is rewritten as InternVLConfig (InternLM2 text as Llama, as
transformers' own conversion does), the weights renamed, and the packed projections split:
- the tower's attention `qkv` is [q; k; v] of equal widths;
- InternLM2's `wqkv` groups by KV head: for each KV head, its query heads, then its key, then its
  value, each head_dim rows.
Every tensor of the original must find a place and every weight of the new model must be filled, or
the conversion stops with a sentence. The tokenizer is kept as a fast tokenizer (tokenizer.json, or
converted from sentencepiece's tokenizer.model where sentencepiece is installed), with every special
token checked to keep its id.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import torch

from backend.models.loading import ModelLoadError

log = logging.getLogger(__name__)

# InternVL2's chat layout (its internlm2-chat / Qwen template), with a picture as <IMG_CONTEXT>, which
# InternVLProcessor expands to <img>, the picture's tokens and </img>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<IMG_CONTEXT>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

VISION_RENAMES = [  # original -> transformers, inside vision_model. (order matters: attn.proj before attn)
    (r"^vision_model\.", "model.vision_tower."),
    (r"\.embeddings\.class_embedding$", ".embeddings.cls_token"),
    (r"\.embeddings\.patch_embedding\.", ".embeddings.patch_embeddings.projection."),
    (r"\.embeddings\.position_embedding$", ".embeddings.position_embeddings"),
    (r"\.encoder\.layers\.", ".encoder.layer."),
    (r"\.ls1$", ".lambda_1"), (r"\.ls2$", ".lambda_2"),
    (r"\.attn\.proj\.", ".attention.projection_layer."),
    (r"\.attn\.", ".attention."),
    (r"\.norm1\.", ".layernorm_before."), (r"\.norm2\.", ".layernorm_after."),
]
PROJECTOR_RENAMES = [(r"^mlp1\.0\.", "model.multi_modal_projector.layer_norm."),
                     (r"^mlp1\.1\.", "model.multi_modal_projector.linear_1."),
                     (r"^mlp1\.3\.", "model.multi_modal_projector.linear_2.")]
INTERNLM2_RENAMES = [
    (r"^language_model\.model\.", "model.language_model."), (r"^language_model\.output\.", "lm_head."),
    (r"\.tok_embeddings\.", ".embed_tokens."), (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."), (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."), (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
]
QWEN2_RENAMES = [(r"^language_model\.model\.", "model.language_model."), (r"^language_model\.lm_head\.", "lm_head.")]


def renamed(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def read_original(folder: Path) -> dict:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "internvl_chat":
        raise ModelLoadError("convert_not_original", "{folder} is not InternVL in its original layout (its config.json "
                             "says model_type {model_type!r}, not 'internvl_chat'); nothing to convert.",
                             folder=str(folder), model_type=config.get("model_type"))
    return config


def text_config(llm: dict) -> dict:
    """The language model's config as transformers' Llama (InternLM2) or Qwen2 config. It names its
    class, as the hub's -HF checkpoints do: LMDeploy picks the language model's code by it."""
    kind = llm.get("model_type")
    if kind == "internlm2":
        rope = {"rope_type": "default", "rope_theta": float(llm.get("rope_theta", 10000.0))}
        scaling = llm.get("rope_scaling") or {}
        if scaling:  # InternLM2 names the kind "type": dynamic NTK or linear
            rope.update(rope_type=scaling.get("type", scaling.get("rope_type", "default")),
                        factor=float(scaling.get("factor", 1.0)))
        return dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=llm["vocab_size"],
                    hidden_size=llm["hidden_size"],
                    intermediate_size=llm["intermediate_size"], num_hidden_layers=llm["num_hidden_layers"],
                    num_attention_heads=llm["num_attention_heads"],
                    num_key_value_heads=llm.get("num_key_value_heads", llm["num_attention_heads"]),
                    max_position_embeddings=llm.get("max_position_embeddings", 32768),
                    rms_norm_eps=llm.get("rms_norm_eps", 1e-5), rope_parameters=rope,
                    attention_bias=bool(llm.get("bias", False)), hidden_act=llm.get("hidden_act", "silu"),
                    bos_token_id=llm.get("bos_token_id"), eos_token_id=llm.get("eos_token_id"),
                    pad_token_id=llm.get("pad_token_id"), tie_word_embeddings=bool(llm.get("tie_word_embeddings")))
    if kind == "qwen2":
        keep = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "hidden_act", "bos_token_id",
                "eos_token_id", "tie_word_embeddings", "sliding_window", "use_sliding_window")
        out = {key: llm[key] for key in keep if key in llm}
        out["rope_parameters"] = {"rope_type": "default", "rope_theta": float(llm.get("rope_theta", 1_000_000.0))}
        return dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], **out)
    raise ModelLoadError("convert_unknown_text", "The language model of this InternVL is a '{kind}' model; the "
                         "converter knows InternLM2 and Qwen2.", kind=kind)


def vision_config(vision: dict, image_size: int) -> dict:
    """InternViT's config as InternVLVisionConfig."""
    return dict(hidden_size=vision["hidden_size"], num_hidden_layers=vision["num_hidden_layers"],
                num_attention_heads=vision["num_attention_heads"], intermediate_size=vision["intermediate_size"],
                attention_bias=bool(vision.get("qkv_bias", True)), use_qk_norm=bool(vision.get("qk_normalization")),
                norm_type=vision.get("norm_type", "layer_norm"), layer_norm_eps=vision.get("layer_norm_eps", 1e-6),
                hidden_act=vision.get("hidden_act", "gelu"), image_size=[image_size, image_size],
                patch_size=[vision["patch_size"]] * 2, layer_scale_init_value=vision.get("initializer_factor", 0.1),
                attention_dropout=vision.get("attention_dropout", 0.0), use_absolute_position_embeddings=True)


def convert_weights(original: dict[str, torch.Tensor], llm: dict, vision: dict) -> dict[str, torch.Tensor]:
    """Original tensors -> the InternVLForConditionalGeneration's state dict (names as in the module)."""
    heads = llm["num_attention_heads"]
    kv_heads = llm.get("num_key_value_heads", heads)
    head_dim = llm["hidden_size"] // heads
    groups = heads // kv_heads
    text_rules = INTERNLM2_RENAMES if llm.get("model_type") == "internlm2" else QWEN2_RENAMES
    out: dict[str, torch.Tensor] = {}
    for key, tensor in original.items():
        if key.startswith("vision_model."):
            new = renamed(key, VISION_RENAMES)
            if ".attention.qkv." in new:  # [q; k; v], each the tower's width
                for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                    out[new.replace(".attention.qkv.", f".attention.{name}.")] = part.contiguous()
                continue
        elif key.startswith("mlp1."):
            new = renamed(key, PROJECTOR_RENAMES)
        elif key.startswith("language_model."):
            new = renamed(key, text_rules)
            if ".attention.wqkv." in new:  # per KV head: its `groups` query heads, its key, its value
                blocks = tensor.reshape(kv_heads, groups + 2, head_dim, *tensor.shape[1:])
                rest = tensor.shape[1:]
                out[new.replace(".attention.wqkv.", ".self_attn.q_proj.")] = blocks[:, :groups].reshape(-1, *rest)
                out[new.replace(".attention.wqkv.", ".self_attn.k_proj.")] = blocks[:, -2].reshape(-1, *rest)
                out[new.replace(".attention.wqkv.", ".self_attn.v_proj.")] = blocks[:, -1].reshape(-1, *rest)
                continue
        else:
            raise ModelLoadError("convert_unknown_weight", "The original checkpoint holds a weight the converter does "
                                 "not know where to put: {name}.", name=key)
        out[new] = tensor
    return out


def load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError("convert_no_weights", "{folder} holds no .safetensors weights to convert (a .bin "
                             "checkpoint can be re-saved as safetensors first).", folder=str(folder))
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(load_file(str(file)))
    return tensors


def convert_tokenizer(folder: Path):
    """The original tokenizer as a fast tokenizer with InternVLProcessor's named tokens; every special
    token of tokenizer_config.json keeps its id."""
    from transformers import PreTrainedTokenizerFast

    settings = {}
    if (folder / "tokenizer_config.json").is_file():
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}
    special = {k: settings.get(k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
               if isinstance(settings.get(k), str)}
    if (folder / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                            extra_special_tokens=named, **special)
    elif (folder / "tokenizer.model").is_file():
        try:
            from transformers import LlamaTokenizerFast

            tokenizer = LlamaTokenizerFast(vocab_file=str(folder / "tokenizer.model"), legacy=False,
                                           add_bos_token=True, extra_special_tokens=named, **special)
        except Exception as err:  # sentencepiece or protobuf missing, or a model it cannot read
            raise ModelLoadError("convert_tokenizer", "The tokenizer of {folder} is a sentencepiece model, and turning "
                                 "it into a fast tokenizer failed ({detail}); pip install sentencepiece protobuf, then "
                                 "convert again.", folder=str(folder), detail=str(err)[:200]) from None
    else:
        raise ModelLoadError("convert_no_tokenizer", "{folder} holds no tokenizer (tokenizer.json or tokenizer.model).",
                             folder=str(folder))
    added = {int(i): token["content"] for i, token in settings.get("added_tokens_decoder", {}).items()}
    missing = [content for content in named.values() if content != "<video>" and content not in tokenizer.get_vocab()]
    if missing:
        raise ModelLoadError("convert_tokens_missing", "The tokenizer of {folder} lacks InternVL's picture tokens "
                             "{tokens}.", folder=str(folder), tokens=", ".join(missing))
    moved = [f"{content} ({i} -> {tokenizer.convert_tokens_to_ids(content)})" for i, content in added.items()
             if tokenizer.convert_tokens_to_ids(content) != i]
    if moved:
        raise ModelLoadError("convert_token_ids", "The converted tokenizer gives special tokens other ids than the "
                             "original: {tokens}; the converter cannot keep this tokenizer.", tokens=", ".join(moved))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def convert(source: Path, target: Path) -> Path:
    """Write the transformers-layout copy of the original InternVL in `source` to `target`."""
    from transformers import (
        GenerationConfig,
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
    )

    from backend.models.families import family

    source, target = Path(source), Path(target)
    original = read_original(source)
    llm, vision = original["llm_config"], original["vision_config"]
    image_size = int(original.get("force_image_size") or vision.get("image_size", 448))
    ratio = float(original.get("downsample_ratio", 0.5))
    tokens_per_tile = int((image_size // vision["patch_size"]) ** 2 * ratio * ratio)
    tokenizer = convert_tokenizer(source)
    config = InternVLConfig(
        text_config=text_config(llm), vision_config=vision_config(vision, image_size),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=tokens_per_tile,
        downsample_ratio=ratio, projector_hidden_act="gelu", vision_feature_layer=int(original.get("select_layer", -1)),
        vision_feature_select_strategy="default", tie_word_embeddings=bool(llm.get("tie_word_embeddings")))
    config.architectures = ["InternVLForConditionalGeneration"]
    config.dtype = original.get("torch_dtype") or llm.get("torch_dtype") or "bfloat16"
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    state = convert_weights(load_tensors(source), llm, vision)
    expected = set(model.state_dict())
    missing, unknown = sorted(expected - set(state)), sorted(set(state) - expected)
    if config.text_config.tie_word_embeddings:
        missing = [name for name in missing if name != "lm_head.weight"]
    if missing or unknown:
        raise ModelLoadError("convert_mismatch", "The converted weights do not fit transformers' InternVL: missing "
                             "{missing}; left over {unknown}.", missing=", ".join(missing[:5]) or "none",
                             unknown=", ".join(unknown[:5]) or "none")
    model.load_state_dict(state, strict=False, assign=True)
    if config.text_config.tie_word_embeddings:
        model.tie_weights()
    model.eval()

    max_tiles = int(original.get("max_dynamic_patch", 12)) if original.get("dynamic_image_size", True) else 1
    images = GotOcr2ImageProcessorPil(size={"height": image_size, "width": image_size}, crop_to_patches=max_tiles > 1,
                                      min_patches=int(original.get("min_dynamic_patch", 1)), max_patches=max_tiles,
                                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    processor = family("internvl").image_only_processor_class()(
        image_processor=images, tokenizer=tokenizer, image_seq_length=tokens_per_tile, chat_template=CHAT_TEMPLATE)

    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        import shutil

        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    GenerationConfig(eos_token_id=end if isinstance(end, int) and end >= 0 else tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id).save_pretrained(partial)
    (partial / "foodie_studio.json").write_text(json.dumps({"converted_from": str(source.resolve())}, indent=2),
                                                encoding="utf-8")
    partial.rename(target)
    log.info("converted %s to %s (%d tensors)", source, target, len(state))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the original InternVL2 folder (config.json says internvl_chat)")
    parser.add_argument("target", type=Path, help="where the transformers-layout copy goes (must not exist)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.target.exists():
        print(f"error: {args.target} exists; choose a new folder", file=sys.stderr)
        return 2
    try:
        convert(args.source, args.target)
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"converted; use it with --model {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
