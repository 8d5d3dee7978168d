"""Tiny, randomly initialised vision-language models of real architectures, built locally.

No machine of ours reaches a model hub, yet the app must run its whole loop out of the box and the
tests must prove that real checkpoints of every family we claim load and chat. So we build small
models from the real transformers classes (same code paths as a 2B checkpoint, just narrow), with a
byte-level BPE tokenizer trained here, and save them with `save_pretrained` exactly as a hub
checkpoint is laid out. Loading them goes through the same code as loading a real model.

Families: qwen2_vl (the demo model), qwen2_5_vl, internvl (HF-native), llava (llava-hf).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from backend.bundled import DISHES_FILE, EXAMPLES_DIR

log = logging.getLogger(__name__)

# A random frozen lm_head with the default initializer_range of 0.02 squashes the logits so much
# that a LoRA on the language model barely moves them; 0.1 trains well (checked, see DESIGN.md).
INITIALIZER_RANGE = 0.1

# Chat template for our own tokenizers (Qwen's im_start/im_end layout). The {% generation %}
# markers let `apply_chat_template(return_assistant_tokens_mask=True)` tell the trainer which
# tokens are answers. Real checkpoints bring their own template.
QWEN_STYLE_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>{% endgeneration %}\n"
    "{% else %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ IMAGE }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class FamilySpec:
    """What differs between families: special tokens and how an image appears in the prompt."""

    name: str
    special_tokens: tuple[str, ...]
    image_markup: str  # what the chat template writes for one image
    end_of_turn: str = "<|im_end|>"


FAMILIES: dict[str, FamilySpec] = {
    "qwen2_vl": FamilySpec(
        "qwen2_vl",
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
         "<|image_pad|>", "<|video_pad|>"),
        "<|vision_start|><|image_pad|><|vision_end|>",
    ),
    "internvl": FamilySpec(
        "internvl",
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
        "<IMG_CONTEXT>\n",
    ),
    "llava": FamilySpec(
        "llava",
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"),
        "<image>\n",
    ),
}
FAMILIES["qwen2_5_vl"] = FamilySpec("qwen2_5_vl", FAMILIES["qwen2_vl"].special_tokens,
                                    FAMILIES["qwen2_vl"].image_markup)


def tokenizer_corpus() -> list[str]:
    """Text the tokenizer learns its merges from: the bundled dishes in both languages, plus
    every CJK character of the bundled data so each is one token rather than three bytes."""
    lines: list[str] = []
    if DISHES_FILE.exists():
        for dish in json.loads(DISHES_FILE.read_text(encoding="utf-8")):
            lines.extend(str(v) for k, v in dish.items() if isinstance(v, str) and k != "id")
    for sample_file in sorted(EXAMPLES_DIR.glob("*_tidy.json")) + [EXAMPLES_DIR / "own_data.json"]:
        if sample_file.is_file():
            lines.append(sample_file.read_text(encoding="utf-8"))
    lines += [
        "这是什么菜？属于哪个菜系？味道怎么样？在哪里吃最地道？怎么摆盘？",
        "What dish is this? Which cuisine is it from? How does it taste? Where to eat it? How is it plated?",
        "请根据上图从所提供的选项中选择一个正确答案，为（A）（B）（C）（D）",
        "Answer with the option's letter from the given choices directly. (A) (B) (C) (D)",
    ]
    return lines


def train_tokenizer(spec: FamilySpec, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE: any text encodes (no unknown token), so a real user's question in any
    language still runs through the demo model."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(spec.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(tokenizer_corpus(), trainer=trainer)

    extra: dict[str, str] = {}
    if spec.name == "internvl":
        # InternVLProcessor reads these names off the tokenizer.
        extra = {"start_image_token": "<img>", "end_image_token": "</img>",
                 "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    elif spec.name == "llava":
        extra = {"image_token": "<image>"}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=spec.end_of_turn,
        pad_token="<|endoftext|>",
        extra_special_tokens=extra or None,
    )
    tokenizer.chat_template = QWEN_STYLE_TEMPLATE.replace("{{ IMAGE }}", spec.image_markup)
    return tokenizer


@dataclass(frozen=True)
class TinySize:
    """Widths of the tiny model. The defaults are the demo model: small enough to answer in
    milliseconds on a laptop CPU, large enough to memorise a few dozen dishes in a minute."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    mlp: int = 384
    vision_width: int = 64
    vision_depth: int = 2
    vocab: int = 2048
    vision_heads: int = 4
    vision_mlp_ratio: int = 2
    vocab_size: int | None = None  # embedding rows; None = the tokenizer's size (pad for real shapes)
    tie_embeddings: bool = False
    max_pixels: int = 112 * 112  # the processor's picture budget


# Qwen2-VL-2B-Instruct's shape (see shared/GPU.md): speed does not depend on weight values, so a
# random model of this shape measures what the real one costs, without a download.
QWEN2_VL_2B = TinySize(hidden=1536, layers=28, heads=12, kv_heads=2, mlp=8960, vision_width=1280,
                       vision_depth=32, vision_heads=16, vision_mlp_ratio=4, vocab_size=151936,
                       tie_embeddings=True, max_pixels=1024 * 768)


def _qwen_vl_config(family: str, tokenizer, size: TinySize):
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    head_dim = size.hidden // size.heads
    # mrope splits the rotary half-dimension between time, height and width (Qwen uses 16/24/24).
    quarter = head_dim // 2 // 4
    mrope = [head_dim // 2 - 3 * quarter, quarter + quarter // 2, quarter + quarter - quarter // 2]
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=size.vocab_size or len(tokenizer), hidden_size=size.hidden, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, num_key_value_heads=size.kv_heads,
        intermediate_size=size.mlp, max_position_embeddings=4096,
        initializer_range=INITIALIZER_RANGE,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
    )
    common = dict(
        text_config=text,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=size.tie_embeddings,
    )
    if family == "qwen2_vl":
        vision = dict(depth=size.vision_depth, embed_dim=size.vision_width, hidden_size=size.hidden,
                      num_heads=size.vision_heads, mlp_ratio=size.vision_mlp_ratio, patch_size=14,
                      spatial_merge_size=2,
                      initializer_range=INITIALIZER_RANGE)
        return Qwen2VLConfig(vision_config=vision, **common)
    vision = dict(depth=size.vision_depth, hidden_size=size.vision_width, out_hidden_size=size.hidden,
                  intermediate_size=size.vision_width * 2, num_heads=4, patch_size=14,
                  spatial_merge_size=2, window_size=56, fullatt_block_indexes=[size.vision_depth - 1],
                  initializer_range=INITIALIZER_RANGE)
    return Qwen2_5_VLConfig(vision_config=vision, **common)


def _llama_like_text(tokenizer, size: TinySize, model_type: str) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        model_type=model_type, vocab_size=len(tokenizer), hidden_size=size.hidden,
        num_hidden_layers=size.layers, num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads, intermediate_size=size.mlp,
        max_position_embeddings=4096, initializer_range=INITIALIZER_RANGE,
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )


def build_config(family: str, tokenizer, size: TinySize):
    if family in ("qwen2_vl", "qwen2_5_vl"):
        return _qwen_vl_config(family, tokenizer, size)
    if family == "internvl":
        from transformers import InternVLConfig

        vision = dict(hidden_size=size.vision_width, num_hidden_layers=size.vision_depth,
                      num_attention_heads=4, intermediate_size=size.vision_width * 2,
                      image_size=[56, 56], patch_size=[14, 14], initializer_range=INITIALIZER_RANGE)
        return InternVLConfig(
            vision_config=vision, text_config=_llama_like_text(tokenizer, size, "qwen2"),
            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
            image_seq_length=4, downsample_ratio=0.5, tie_word_embeddings=False,
        )
    if family == "llava":
        from transformers import LlavaConfig

        vision = dict(model_type="clip_vision_model", hidden_size=size.vision_width,
                      intermediate_size=size.vision_width * 2, num_hidden_layers=size.vision_depth,
                      num_attention_heads=4, image_size=56, patch_size=14, projection_dim=size.hidden)
        return LlavaConfig(
            vision_config=vision, text_config=_llama_like_text(tokenizer, size, "llama"),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            image_seq_length=16, vision_feature_layer=-1, tie_word_embeddings=False,
        )
    raise ValueError(f"unknown family {family!r}; known: {', '.join(sorted(FAMILIES))}")


def build_processor(family: str, tokenizer, max_pixels: int = 112 * 112):
    """The family's real processor class, with PIL image processors (no torchvision needed) and
    a small pixel budget so a picture costs a few dozen tokens."""
    from backend.models.processors import no_video_processor_class

    if family in ("qwen2_vl", "qwen2_5_vl"):
        from transformers import Qwen2VLImageProcessorPil

        images = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=max_pixels)
        return no_video_processor_class(family)(image_processor=images, tokenizer=tokenizer,
                                                chat_template=tokenizer.chat_template)
    if family == "internvl":
        from transformers import GotOcr2ImageProcessorPil

        images = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=False)
        return no_video_processor_class(family)(image_processor=images, tokenizer=tokenizer,
                                                image_seq_length=4, chat_template=tokenizer.chat_template)
    if family == "llava":
        from transformers import CLIPImageProcessorPil, LlavaProcessor

        images = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
        return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=14,
                              vision_feature_select_strategy="full", chat_template=tokenizer.chat_template)
    raise ValueError(f"unknown family {family!r}")


def build_model_class(family: str):
    import transformers

    return {
        "qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
        "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
        "internvl": transformers.InternVLForConditionalGeneration,
        "llava": transformers.LlavaForConditionalGeneration,
    }[family]


def _save_video_processor_if_possible(family: str, folder: Path, max_pixels: int) -> None:
    """Real Qwen checkpoints ship a video processor config, and some loaders (LMDeploy's
    AutoProcessor call) insist on it. It needs torchvision, so it is written where that imports."""
    if family not in ("qwen2_vl", "qwen2_5_vl"):
        return
    try:
        from transformers import Qwen2VLVideoProcessor

        Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=max_pixels).save_pretrained(folder)
    except Exception as err:  # no torchvision here: the image-only processor serves
        log.debug("no video processor written (%s)", err)


def build_tiny_model(family: str, out_dir: Path, size: TinySize = TinySize(), seed: int = 0,
                     device: str = "cpu", dtype: torch.dtype = torch.float32) -> Path:
    """Build a random model of `family` and save it at out_dir as a hub checkpoint would be.

    Tiny by default; `size=QWEN2_VL_2B, device="cuda", dtype=torch.bfloat16` builds a real-size
    one for benchmarks. Written to a temporary sibling folder and renamed at the end, so an
    interrupted build never leaves a half-written model that later looks valid."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(FAMILIES[family], vocab_size=size.vocab)
    config = build_config(family, tokenizer, size)
    config.dtype = dtype  # saved in config.json: loaders (LMDeploy too) then keep this dtype
    with torch.device(device):
        model = build_model_class(family)(config).to(dtype).eval()
    processor = build_processor(family, tokenizer, size.max_pixels)

    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    _save_video_processor_if_possible(family, tmp, size.max_pixels)
    (tmp / "foodie_studio.json").write_text(
        json.dumps({"family": family, "tiny": True, "size": size.__dict__, "seed": seed}, indent=2),
        encoding="utf-8")
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info("built tiny %s model (%d parameters) at %s", family,
             sum(p.numel() for p in model.parameters()), out_dir)
    return out_dir
