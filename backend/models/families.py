"""The model families Foodie Studio knows, one entry each: adding a family touches this file only.

A `Family` says, for one `model_type` of config.json:
- its model and processor classes (and whether the processor needs an image-only stand-in where
  torchvision is missing: processors.py);
- how to build its tiny test model (`TinyRecipe`: special tokens, chat template, a config shaped
  like the real checkpoint's with narrow widths, the processor), built by tiny.py;
- which modules LoRA targets: not a list here, but derived from the model's own module names
  (`lora_targets.py`: every linear layer of the language model by default, the vision tower's on
  request, and a list that misses a layer type is refused with the layers named);
- whether the training fast path applies (`fast_path`: "mrope" for Qwen-style M-RoPE positions,
  "1d" for plain positions, "" with the reason in `no_fast_path_why`);
- whether LMDeploy serves it;
- the published sizes a person picks from, with their parameter counts and, where a benchmark
  builds one, the published config values (`PublishedSize.config`).

Real config values below come from the checkpoints' published config.json files (hub model cards
and transformers' conversion scripts); the tiny configs keep their ratios (heads to KV heads, MLP to
hidden, layer types, patch and merge sizes, tied embeddings) at small widths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A random frozen lm_head with the default initializer_range of 0.02 squashes the logits so much
# that a LoRA on the language model barely moves them; 0.1 trains well (checked, see DESIGN.md).
INITIALIZER_RANGE = 0.1


@dataclass(frozen=True)
class TinySize:
    """Widths of a tiny model. The defaults are the demo model: small enough to answer in
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


# ----------------------------------------------------------------------------------------------
# Chat templates of our tiny tokenizers (real checkpoints bring their own)


def _parts(image: str) -> str:
    """A message's content: a string, or parts whose pictures become `image`."""
    return ("{% if message['content'] is string %}{{ message['content'] }}"
            "{% else %}{% for part in message['content'] %}"
            f"{{% if part['type'] == 'image' %}}{image}"
            "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}")


# Qwen's im_start/im_end layout. The {% generation %} markers let
# `apply_chat_template(return_assistant_tokens_mask=True)` tell the trainer which tokens are answers.
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

# Gemma 3's turns (google/gemma-3-4b-it's template, without its system-prompt folding): the picture is
# <start_of_image>, which the processor expands to the image's soft tokens.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    + _parts("<start_of_image>") + "<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# SmolVLM2's layout: "User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>\n".
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    + _parts("<image>") + "<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

# BLIP-2 (OPT) has no chat template: it was trained on "Question: ... Answer: ...". Its processor puts
# the picture's query tokens in front of the text, so the template writes no picture marker.
QUESTION_ANSWER_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %} "
    + _parts("") + "{{ eos_token }}\n{% else %}Question: " + _parts("") + " Answer:{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class Tokens:
    """What a family's tiny tokenizer holds: its special tokens, the ones the processor looks up by
    name, its end of turn, and its chat template."""

    special: tuple[str, ...]
    template: str
    end_of_turn: str = "<|im_end|>"
    pad: str = "<|endoftext|>"
    bos: str | None = None
    named: dict[str, str] = field(default_factory=dict)  # extra_special_tokens: the processor reads these


QWEN_VISION_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                      "<|image_pad|>", "<|video_pad|>")
QWEN_TOKENS = Tokens(QWEN_VISION_TOKENS, QWEN_STYLE_TEMPLATE.replace(
    "{{ IMAGE }}", "<|vision_start|><|image_pad|><|vision_end|>"))
INTERNVL_TOKENS = Tokens(
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
    QWEN_STYLE_TEMPLATE.replace("{{ IMAGE }}", "<IMG_CONTEXT>\n"),
    # InternVLProcessor reads these names off the tokenizer.
    named={"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
           "video_token": "<video>"})


@dataclass(frozen=True)
class TinyRecipe:
    """How to build a tiny model of a family: `config(tokenizer, size)` gives the transformers config,
    `processor(tokenizer, size)` the processor, both from the real classes."""

    family: str
    tokens: Tokens
    config: Callable[[Any, TinySize], Any]
    processor: Callable[[Any, TinySize], Any]
    size: TinySize = TinySize()
    note: str = ""  # which real checkpoint's shape it follows


@dataclass(frozen=True)
class PublishedSize:
    """A checkpoint a person can pick: its hub id and parameter count (billions); `config` (a
    function, so nothing is built at import) gives its published config values where a benchmark
    or the memory estimate builds it with random weights."""

    hub_id: str
    params_b: float
    config: Callable[[], dict] | None = None

    @property
    def name(self) -> str:
        return self.hub_id.split("/", 1)[-1]


@dataclass(frozen=True)
class Family:
    model_type: str
    label: str
    model_class: str  # a transformers class name
    processor_class: str
    fast_path: str  # "mrope", "1d", or "" (padded batches; no_fast_path_why says why)
    lmdeploy: bool  # LMDeploy 0.18 serves it
    sizes: tuple[PublishedSize, ...]
    processor_has_video: bool = False  # its processor takes a video processor, which needs torchvision
    chat_template: str | None = None  # for checkpoints that ship none (BLIP-2)
    no_fast_path_why: str = ""
    image_only: Callable[[], type] | None = None  # a custom image-only processor class (SmolVLM)
    # One batch may mix adapters row by row (peft routes rows; OPT, BLIP-2's LM, flattens them first)
    mixed_adapter_batches: bool = True
    # One batch may mix prompts with and without pictures (BLIP-2's processor puts the picture's query
    # tokens in front of every prompt of a batch that has pictures)
    mixed_picture_batches: bool = True
    # Answers only with a picture: BLIP-2's forward and generate take pixel_values as required
    needs_picture: bool = False
    # Tokens one photo of `pixels` pixels becomes in the language model (config: the model's), for the
    # memory estimate (memory.py): at most, for a photo-shaped picture
    picture_tokens: Callable[[Any, int], int] = field(default=lambda config, pixels: 576)

    def model_cls(self) -> type:
        import transformers

        return getattr(transformers, self.model_class)

    def processor_cls(self) -> type:
        import transformers

        return getattr(transformers, self.processor_class)

    def image_only_processor_class(self) -> type:
        from backend.models.processors import image_only

        if self.image_only is not None:
            return self.image_only()
        if not self.processor_has_video:
            return self.processor_cls()
        return image_only(self.processor_cls())


# ----------------------------------------------------------------------------------------------
# Tiny configs and processors, family by family


def _ids(tokenizer):
    return tokenizer.convert_tokens_to_ids


def _mrope(half: int, real: tuple[int, int, int]) -> list[int]:
    """`real` M-RoPE sections (temporal, height, width) scaled to a rotary half-dimension `half`."""
    scaled = [max(1, round(part * half / sum(real))) for part in real[1:]]
    return [half - sum(scaled), *scaled]


def _qwen_vision_ids(tokenizer) -> dict:
    ids = _ids(tokenizer)
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))


def _qwen_text(tokenizer, size: TinySize, **more) -> dict:
    ids = _ids(tokenizer)
    return {**dict(vocab_size=size.vocab_size or len(tokenizer), hidden_size=size.hidden,
                   num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.kv_heads,
                   intermediate_size=size.mlp, max_position_embeddings=4096, initializer_range=INITIALIZER_RANGE,
                   bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                   pad_token_id=ids("<|endoftext|>")), **more}


def _qwen2_vl_config(tokenizer, size: TinySize):
    from transformers import Qwen2VLConfig

    head_dim = size.hidden // size.heads
    # mrope splits the rotary half-dimension between time, height and width (Qwen uses 16/24/24).
    quarter = head_dim // 2 // 4
    mrope = [head_dim // 2 - 3 * quarter, quarter + quarter // 2, quarter + quarter - quarter // 2]
    text = _qwen_text(tokenizer, size, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                        "mrope_section": mrope})
    vision = dict(depth=size.vision_depth, embed_dim=size.vision_width, hidden_size=size.hidden,
                  num_heads=size.vision_heads, mlp_ratio=size.vision_mlp_ratio, patch_size=14, spatial_merge_size=2,
                  initializer_range=INITIALIZER_RANGE)
    return Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=size.tie_embeddings,
                         **_qwen_vision_ids(tokenizer))


def _qwen2_5_vl_config(tokenizer, size: TinySize):
    from transformers import Qwen2_5_VLConfig

    head_dim = size.hidden // size.heads
    quarter = head_dim // 2 // 4
    mrope = [head_dim // 2 - 3 * quarter, quarter + quarter // 2, quarter + quarter - quarter // 2]
    text = _qwen_text(tokenizer, size, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                        "mrope_section": mrope})
    vision = dict(depth=size.vision_depth, hidden_size=size.vision_width, out_hidden_size=size.hidden,
                  intermediate_size=size.vision_width * 2, num_heads=4, patch_size=14,
                  spatial_merge_size=2, window_size=56, fullatt_block_indexes=[size.vision_depth - 1],
                  initializer_range=INITIALIZER_RANGE)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=size.tie_embeddings,
                            **_qwen_vision_ids(tokenizer))


def _qwen3_vl_config(tokenizer, size: TinySize):
    """Qwen3-VL-2B-Instruct's layout: Qwen3 text (q/k norms, head_dim set, tied embeddings, interleaved
    M-RoPE 24/20/20 of 64, theta 5e6), a ViT of patch 16 with learned positions, and DeepStack: the
    merged features of three tower layers ([5, 11, 17] of 24) added to the first three text layers."""
    from transformers import Qwen3VLConfig

    head_dim = size.hidden // size.heads
    text = _qwen_text(tokenizer, size, head_dim=head_dim, tie_word_embeddings=size.tie_embeddings,
                      rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                       "mrope_section": _mrope(head_dim // 2, (24, 20, 20)),
                                       "mrope_interleaved": True})
    depth = max(size.vision_depth, 4)
    vision = dict(depth=depth, hidden_size=size.vision_width, intermediate_size=size.vision_width * 4,
                  num_heads=size.vision_heads, out_hidden_size=size.hidden, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0, 1, 2],
                  initializer_range=INITIALIZER_RANGE)
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=size.tie_embeddings,
                         **_qwen_vision_ids(tokenizer))


def _qwen3_5_config(tokenizer, size: TinySize):
    """Qwen3.5-2B's layout: three Gated DeltaNet (linear attention) layers to one gated full-attention
    layer, 8 query heads to 2 KV heads of head_dim 256 with a quarter of it rotary (M-RoPE 11/11/10,
    interleaved, theta 1e7), 16 key and 16 value heads of 128 in the linear layers, a conv kernel of 4,
    tied embeddings; a ViT of patch 16 without DeepStack."""
    from transformers import Qwen3_5Config

    heads, kv_heads = 4, 1  # 8:2 in the real model
    head_dim = size.hidden // heads
    rotary_half = int(head_dim * 0.25) // 2
    layers = [("full_attention" if (i + 1) % 4 == 0 else "linear_attention") for i in range(size.layers)]
    text = _qwen_text(tokenizer, size, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                      layer_types=layers, linear_num_key_heads=4, linear_num_value_heads=4,
                      linear_key_head_dim=head_dim, linear_value_head_dim=head_dim, linear_conv_kernel_dim=4,
                      tie_word_embeddings=size.tie_embeddings,
                      rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0,
                                       "partial_rotary_factor": 0.25, "mrope_interleaved": True,
                                       "mrope_section": _mrope(rotary_half, (11, 11, 10))})
    vision = dict(depth=size.vision_depth, hidden_size=size.vision_width, intermediate_size=size.vision_width * 4,
                  num_heads=size.vision_heads, out_hidden_size=size.hidden, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, num_position_embeddings=64, initializer_range=INITIALIZER_RANGE)
    return Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=size.tie_embeddings,
                         **_qwen_vision_ids(tokenizer))


def _qwen_processor(processor_class: str, patch: int, mean_std: float | None = None):
    def build(tokenizer, size: TinySize):
        import transformers
        from transformers import Qwen2VLImageProcessorPil

        from backend.models.processors import image_only

        extra = {} if mean_std is None else dict(image_mean=[mean_std] * 3, image_std=[mean_std] * 3)
        pixels = (patch * 4) ** 2  # Qwen2-VL's smallest picture, 56x56 at patch 14
        images = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=size.max_pixels, patch_size=patch,
                                          merge_size=2, temporal_patch_size=2, **extra)
        return image_only(getattr(transformers, processor_class))(image_processor=images, tokenizer=tokenizer,
                                                                  chat_template=tokenizer.chat_template)
    return build


def _llama_like_text(tokenizer, size: TinySize, model_type: str, **more) -> dict:
    ids = _ids(tokenizer)
    return dict(model_type=model_type, vocab_size=len(tokenizer), hidden_size=size.hidden,
                num_hidden_layers=size.layers, num_attention_heads=size.heads,
                num_key_value_heads=size.kv_heads, intermediate_size=size.mlp,
                max_position_embeddings=4096, initializer_range=INITIALIZER_RANGE,
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
                tie_word_embeddings=False, **more)


def _internvl_config(text_type: str, crop: bool = False):
    def build(tokenizer, size: TinySize):
        from transformers import InternVLConfig

        vision = dict(hidden_size=size.vision_width, num_hidden_layers=size.vision_depth,
                      num_attention_heads=4, intermediate_size=size.vision_width * 2,
                      image_size=[56, 56], patch_size=[14, 14], initializer_range=INITIALIZER_RANGE)
        more = dict(head_dim=size.hidden // size.heads) if text_type == "qwen3" else {}
        return InternVLConfig(
            vision_config=vision, text_config=_llama_like_text(tokenizer, size, text_type, **more),
            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
            image_seq_length=4, downsample_ratio=0.5, tie_word_embeddings=False,
        )
    return build


def _internvl_processor(crop: bool):
    def build(tokenizer, size: TinySize):
        from transformers import GotOcr2ImageProcessorPil, InternVLProcessor

        from backend.models.processors import image_only

        # InternVL tiles a photo into up to 12 squares plus a thumbnail (InternVLProcessor crops unless told
        # not to, whatever the image processor's own setting); the InternVL3.5 recipe keeps two.
        tiles = dict(crop_to_patches=True, min_patches=1, max_patches=2) if crop else dict(crop_to_patches=False)
        images = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, **tiles)
        return image_only(InternVLProcessor)(image_processor=images, tokenizer=tokenizer, image_seq_length=4,
                                             chat_template=tokenizer.chat_template)
    return build


def _llava_config(tokenizer, size: TinySize):
    from transformers import LlavaConfig

    vision = dict(model_type="clip_vision_model", hidden_size=size.vision_width,
                  intermediate_size=size.vision_width * 2, num_hidden_layers=size.vision_depth,
                  num_attention_heads=4, image_size=56, patch_size=14, projection_dim=size.hidden)
    return LlavaConfig(vision_config=vision, text_config=_llama_like_text(tokenizer, size, "llama"),
                       image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                       image_seq_length=16, vision_feature_layer=-1, tie_word_embeddings=False)


def _llava_processor(tokenizer, size: TinySize):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    images = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=14,
                          vision_feature_select_strategy="full", chat_template=tokenizer.chat_template)


def _gemma3_config(tokenizer, size: TinySize):
    """Gemma-3-4B-it's layout: five sliding-window layers to one global one, 8 heads to 4 KV heads of
    head_dim 256 (queries scaled by 256), global rope theta 1e6 with linear scaling 8, local 1e4,
    tied embeddings; a SigLIP tower (patch 14) whose patches are average-pooled to a fixed count of
    soft tokens per picture (256 of 4096 there, 4 of 16 here)."""
    from transformers import Gemma3Config

    ids = _ids(tokenizer)
    head_dim = size.hidden // size.heads
    layers = 6
    text = dict(vocab_size=len(tokenizer), hidden_size=size.hidden, num_hidden_layers=layers,
                num_attention_heads=size.heads, num_key_value_heads=size.kv_heads, head_dim=head_dim,
                intermediate_size=size.hidden * 4, query_pre_attn_scalar=head_dim, sliding_window=32,
                layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)],
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}},
                max_position_embeddings=4096, initializer_range=INITIALIZER_RANGE,
                pad_token_id=ids("<pad>"), bos_token_id=ids("<bos>"), eos_token_id=ids("<end_of_turn>"),
                tie_word_embeddings=True)
    vision = dict(hidden_size=size.vision_width, intermediate_size=size.vision_width * 2,
                  num_hidden_layers=size.vision_depth, num_attention_heads=4, image_size=56, patch_size=14,
                  vision_use_head=False)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                        boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
                        image_token_index=ids("<image_soft_token>"), initializer_range=INITIALIZER_RANGE,
                        tie_word_embeddings=True)


def _gemma3_processor(tokenizer, size: TinySize):
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor

    images = Gemma3ImageProcessorPil(size={"height": 56, "width": 56}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Gemma3Processor(image_processor=images, tokenizer=tokenizer, image_seq_length=4,
                           chat_template=tokenizer.chat_template)


def _smolvlm_config(tokenizer, size: TinySize):
    """SmolVLM2-256M-Video-Instruct's layout: SmolLM2 text (9 heads to 3 KV heads, MLP 2.7x, tied
    embeddings, theta 1e5), a SigLIP tower of patch 16 whose patches are pixel-shuffled by 4 (1024
    patches of a 512 tile become 64 tokens; 64 of a 128 tile become 4 here), photos split into tiles
    plus a global view."""
    from transformers import SmolVLMConfig

    ids = _ids(tokenizer)
    hidden = 96
    text = dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=size.layers,
                num_attention_heads=3, num_key_value_heads=1, intermediate_size=256, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 100_000.0}, initializer_range=INITIALIZER_RANGE,
                bos_token_id=ids("<|im_start|>"), eos_token_id=ids("<end_of_utterance>"),
                pad_token_id=ids("<|im_end|>"), tie_word_embeddings=True)
    vision = dict(hidden_size=size.vision_width, intermediate_size=size.vision_width * 4,
                  num_hidden_layers=size.vision_depth, num_attention_heads=4, image_size=128, patch_size=16)
    return SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=4,
                         image_token_id=ids("<image>"), tie_word_embeddings=True)


def _smolvlm_image_only() -> type:
    """SmolVLMProcessor without its video part. Its __init__ also insists on num2words, and its
    apply_chat_template reads the video processor's frame settings, both for video prompts only:
    this one sets what the image path reads and leaves those out."""
    from transformers import SmolVLMProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlySmolVLM(SmolVLMProcessor):
        def __init__(self, image_processor=None, tokenizer=None, image_seq_len: int = 169, chat_template=None,
                     **kwargs):
            self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
            self.image_token = getattr(tokenizer, "image_token", "<image>")
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", "<end_of_utterance>")
            self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
            self.image_seq_len = image_seq_len
            self.video_token = getattr(tokenizer, "video_token", "<video>")
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)
            self.video_processor = None

        def apply_chat_template(self, conversation, chat_template=None, **kwargs):
            # SmolVLMProcessor's own adds the video processor's frame settings first
            return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    ImageOnlySmolVLM.__name__ = ImageOnlySmolVLM.__qualname__ = "SmolVLMProcessor"
    return ImageOnlySmolVLM


_SMOLVLM_IMAGE_ONLY: list[type] = []


def smolvlm_image_only() -> type:
    if not _SMOLVLM_IMAGE_ONLY:  # one class for the process: transformers compares processor classes
        _SMOLVLM_IMAGE_ONLY.append(_smolvlm_image_only())
    return _SMOLVLM_IMAGE_ONLY[0]


def _smolvlm_processor(tokenizer, size: TinySize):
    from transformers import SmolVLMImageProcessorPil

    images = SmolVLMImageProcessorPil(size={"longest_edge": 256}, max_image_size={"longest_edge": 128},
                                      do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return smolvlm_image_only()(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                                chat_template=tokenizer.chat_template)


def _blip_2_config(tokenizer, size: TinySize):
    """BLIP-2 OPT-2.7b's layout: an EVA ViT-g tower (patch 14, 224 pixels), a Q-Former whose 32 learned
    queries cross-attend to it every second layer, a projection into OPT-2.7b (32 heads, pre-norm,
    tied embeddings). Here 8 queries."""
    from transformers import Blip2Config

    ids = _ids(tokenizer)
    vision = dict(hidden_size=size.vision_width, intermediate_size=size.vision_width * 4,
                  num_hidden_layers=size.vision_depth, num_attention_heads=4, image_size=56, patch_size=14)
    qformer = dict(hidden_size=size.vision_width, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=size.vision_width * 4, cross_attention_frequency=2,
                   encoder_hidden_size=size.vision_width)
    text = dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=size.hidden, num_hidden_layers=size.layers,
                ffn_dim=size.hidden * 4, num_attention_heads=size.heads, word_embed_proj_dim=size.hidden,
                max_position_embeddings=2048, do_layer_norm_before=True, init_std=INITIALIZER_RANGE,
                bos_token_id=ids("</s>"), eos_token_id=ids("</s>"), pad_token_id=ids("<pad>"),
                tie_word_embeddings=True)
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=8,
                       image_token_index=ids("<image>"), initializer_range=INITIALIZER_RANGE)


def _blip_2_processor(tokenizer, size: TinySize):
    from transformers import Blip2Processor, BlipImageProcessorPil

    images = BlipImageProcessorPil(size={"height": 56, "width": 56})
    processor = Blip2Processor(image_processor=images, tokenizer=tokenizer, num_query_tokens=8)
    processor.chat_template = tokenizer.chat_template
    return processor


# ----------------------------------------------------------------------------------------------
# Published configs the GPU benchmark builds with random weights (values as published)


def qwen2_vl_2b_config() -> dict:
    """Qwen/Qwen2-VL-2B-Instruct's config.json (shared/GPU.md, bench_training.SHAPE_2B)."""
    return {"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"],
            "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
            "vision_end_token_id": 151653, "tie_word_embeddings": True, "dtype": "bfloat16",
            "text_config": {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
                            "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                            "max_position_embeddings": 32768, "tie_word_embeddings": True,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                                "mrope_section": [16, 24, 24]}},
            "vision_config": {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4,
                              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}}


def qwen3_vl_2b_config() -> dict:
    """Qwen/Qwen3-VL-2B-Instruct's config.json."""
    return {"model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"],
            "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
            "vision_end_token_id": 151653, "tie_word_embeddings": True, "dtype": "bfloat16",
            "text_config": {"model_type": "qwen3_vl_text", "vocab_size": 151936, "hidden_size": 2048,
                            "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
                            "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 262144,
                            "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "bos_token_id": 151643,
                            "eos_token_id": 151645,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000,
                                                "mrope_interleaved": True, "mrope_section": [24, 20, 20]}},
            "vision_config": {"model_type": "qwen3_vl", "depth": 24, "hidden_size": 1024, "intermediate_size": 4096,
                              "num_heads": 16, "out_hidden_size": 2048, "patch_size": 16, "spatial_merge_size": 2,
                              "temporal_patch_size": 2, "num_position_embeddings": 2304,
                              "deepstack_visual_indexes": [5, 11, 17], "hidden_act": "gelu_pytorch_tanh"}}


def qwen3_5_2b_config() -> dict:
    """Qwen/Qwen3.5-2B's config.json (text as published; the vision tower as Qwen3-VL-2B's without
    DeepStack, which the published Qwen3.5 configs of this size share)."""
    layers = 24
    return {"model_type": "qwen3_5", "architectures": ["Qwen3_5ForConditionalGeneration"],
            "image_token_id": 248056, "video_token_id": 248057, "vision_start_token_id": 248053,
            "vision_end_token_id": 248054, "tie_word_embeddings": True, "dtype": "bfloat16",
            "text_config": {"model_type": "qwen3_5_text", "vocab_size": 248320, "hidden_size": 2048,
                            "intermediate_size": 6144, "num_hidden_layers": layers, "num_attention_heads": 8,
                            "num_key_value_heads": 2, "head_dim": 256, "linear_num_key_heads": 16,
                            "linear_num_value_heads": 16, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
                            "linear_conv_kernel_dim": 4, "full_attention_interval": 4, "attn_output_gate": True,
                            "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention"
                                            for i in range(layers)],
                            "max_position_embeddings": 262144, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
                            "eos_token_id": 248044,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 10_000_000,
                                                "partial_rotary_factor": 0.25, "mrope_interleaved": True,
                                                "mrope_section": [11, 11, 10]}},
            "vision_config": {"model_type": "qwen3_5", "depth": 24, "hidden_size": 1024, "intermediate_size": 4096,
                              "num_heads": 16, "out_hidden_size": 2048, "patch_size": 16, "spatial_merge_size": 2,
                              "temporal_patch_size": 2, "num_position_embeddings": 2304,
                              "hidden_act": "gelu_pytorch_tanh"}}


def internvl3_5_2b_config() -> dict:
    """OpenGVLab/InternVL3_5-2B-HF's config.json: InternViT-300M (448 pixels, patch 14, pixel shuffle
    0.5: 256 tokens a tile) and Qwen3-1.7B."""
    return {"model_type": "internvl", "architectures": ["InternVLForConditionalGeneration"],
            "image_token_id": 151671, "image_seq_length": 256, "downsample_ratio": 0.5,
            "projector_hidden_act": "gelu", "vision_feature_layer": -1, "tie_word_embeddings": False,
            "vision_feature_select_strategy": "default", "dtype": "bfloat16",
            "text_config": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "vocab_size": 151936,
                            "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                            "num_attention_heads": 16, "num_key_value_heads": 8,
                            "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000},
                            "tie_word_embeddings": False, "eos_token_id": 151645},
            "vision_config": {"model_type": "internvl_vision", "hidden_size": 1024, "intermediate_size": 4096,
                              "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": [448, 448],
                              "patch_size": [14, 14], "attention_bias": True, "use_qk_norm": False,
                              "layer_scale_init_value": 0.1, "norm_type": "layer_norm",
                              "use_absolute_position_embeddings": True, "use_mean_pooling": True}}


# ----------------------------------------------------------------------------------------------
# Picture tokens, for the memory estimate


def _merged_patches(config, pixels: int) -> int:
    """Qwen-VL: one token per (patch x merge)^2 pixels (28x28 for Qwen2-VL, 32x32 for Qwen3-VL)."""
    vision = config.vision_config
    side = vision.patch_size * vision.spatial_merge_size
    return max(4, pixels // (side * side))


def _internvl_tiles(config, pixels: int) -> int:
    """InternVL tiles a photo into up to 12 squares and a thumbnail (its processor's default), each
    image_seq_length tokens: a photo larger than one tile is 13 tiles of a 4:3 grid."""
    side = config.vision_config.image_size[0]
    return config.image_seq_length * (1 if pixels <= side * side else 13)


def _smolvlm_tiles(config, pixels: int) -> int:
    """SmolVLM splits a photo into tiles of its tower's size plus a global view: 4 x 3 + 1 for a 4:3 photo
    at its default size, each (image_size / patch)^2 / scale^2 tokens."""
    vision = config.vision_config
    per_tile = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor ** 2
    return per_tile * (1 if pixels <= vision.image_size ** 2 else 13)


# ----------------------------------------------------------------------------------------------
# The registry


FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("qwen2_vl", "Qwen2-VL", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", fast_path="mrope",
           lmdeploy=True, processor_has_video=True, picture_tokens=_merged_patches,
           sizes=(PublishedSize("Qwen/Qwen2-VL-2B-Instruct", 2.21, qwen2_vl_2b_config),
                  PublishedSize("Qwen/Qwen2-VL-7B-Instruct", 8.29))),
    Family("qwen2_5_vl", "Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
           fast_path="mrope", lmdeploy=True, processor_has_video=True, picture_tokens=_merged_patches,
           sizes=(PublishedSize("Qwen/Qwen2.5-VL-3B-Instruct", 3.75),
                  PublishedSize("Qwen/Qwen2.5-VL-7B-Instruct", 8.29))),
    Family("qwen3_vl", "Qwen3-VL", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", fast_path="mrope",
           lmdeploy=True, processor_has_video=True, picture_tokens=_merged_patches,
           sizes=(PublishedSize("Qwen/Qwen3-VL-2B-Instruct", 2.13, qwen3_vl_2b_config),
                  PublishedSize("Qwen/Qwen3-VL-4B-Instruct", 4.44), PublishedSize("Qwen/Qwen3-VL-8B-Instruct", 8.77))),
    Family("qwen3_5", "Qwen3.5", "Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor", fast_path="",
           lmdeploy=True, processor_has_video=True, picture_tokens=_merged_patches,
           no_fast_path_why="three of its four layers are Gated DeltaNet (linear attention), whose recurrence and "
                            "short convolution would run across packed samples without a varlen kernel "
                            "(flash-linear-attention with cu_seqlens), which this machine does not have",
           sizes=(PublishedSize("Qwen/Qwen3.5-0.8B", 0.87), PublishedSize("Qwen/Qwen3.5-2B", 2.27, qwen3_5_2b_config),
                  PublishedSize("Qwen/Qwen3.5-4B", 4.66), PublishedSize("Qwen/Qwen3.5-9B", 9.65))),
    Family("internvl", "InternVL", "InternVLForConditionalGeneration", "InternVLProcessor", fast_path="1d",
           lmdeploy=True, processor_has_video=True, picture_tokens=_internvl_tiles,
           sizes=(PublishedSize("OpenGVLab/InternVL3_5-1B-HF", 1.06),
                  PublishedSize("OpenGVLab/InternVL3_5-2B-HF", 2.35, internvl3_5_2b_config),
                  PublishedSize("OpenGVLab/InternVL3_5-4B-HF", 4.73),
                  PublishedSize("OpenGVLab/InternVL3-2B-hf", 2.09))),
    Family("gemma3", "Gemma 3", "Gemma3ForConditionalGeneration", "Gemma3Processor", fast_path="", lmdeploy=True,
           picture_tokens=lambda config, pixels: config.mm_tokens_per_image,
           no_fast_path_why="its picture tokens attend to each other both ways and half its layers use sliding "
                            "windows; packed rows would need both masks per sample",
           sizes=(PublishedSize("google/gemma-3-4b-it", 4.30),)),
    Family("smolvlm", "SmolVLM2", "SmolVLMForConditionalGeneration", "SmolVLMProcessor", fast_path="",
           lmdeploy=False, processor_has_video=True, image_only=smolvlm_image_only, picture_tokens=_smolvlm_tiles,
           no_fast_path_why="small enough that padded batches are not the bottleneck; not ported",
           sizes=(PublishedSize("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", 0.26),
                  PublishedSize("HuggingFaceTB/SmolVLM2-500M-Video-Instruct", 0.51),
                  PublishedSize("HuggingFaceTB/SmolVLM2-2.2B-Instruct", 2.25))),
    Family("blip-2", "BLIP-2", "Blip2ForConditionalGeneration", "Blip2Processor", fast_path="", lmdeploy=False,
           chat_template=QUESTION_ANSWER_TEMPLATE, mixed_adapter_batches=False, mixed_picture_batches=False,
           needs_picture=True, picture_tokens=lambda config, pixels: config.num_query_tokens,
           no_fast_path_why="its picture goes through a Q-Former into a fixed 32 query tokens; not ported",
           sizes=(PublishedSize("Salesforce/blip2-opt-2.7b", 3.74),)),
    Family("llava", "LLaVA", "LlavaForConditionalGeneration", "LlavaProcessor", fast_path="", lmdeploy=True,
           picture_tokens=lambda config, pixels: config.image_seq_length,
           no_fast_path_why="not ported (1-D positions like InternVL; its tower is CLIP)",
           sizes=(PublishedSize("llava-hf/llava-1.5-7b-hf", 7.06),)),
)}

# Tiny models of the real classes, by name: the tests' and the demo's. A family can have several
# (InternVL with Qwen2 text as InternVL3, with Qwen3 text and tiles as InternVL3.5).
GEMMA_TOKENS = Tokens(("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                       "<end_of_image>", "<image_soft_token>"), GEMMA_TEMPLATE, end_of_turn="<end_of_turn>",
                      pad="<pad>", bos="<bos>",
                      named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                             "image_token": "<image_soft_token>"})
SMOLVLM_TOKENS = Tokens(("<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
                         "<global-img>")
                        + tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
                        SMOLVLM_TEMPLATE, end_of_turn="<end_of_utterance>", pad="<|im_end|>", bos="<|im_start|>",
                        named={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                               "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"})
BLIP_2_TOKENS = Tokens(("<pad>", "</s>", "<image>"), QUESTION_ANSWER_TEMPLATE, end_of_turn="</s>", pad="<pad>",
                       bos="</s>")  # Blip2Processor adds <image> itself (an AddedToken, not a name)

TINY: dict[str, TinyRecipe] = {
    "qwen2_vl": TinyRecipe("qwen2_vl", QWEN_TOKENS, _qwen2_vl_config, _qwen_processor("Qwen2VLProcessor", 14)),
    "qwen2_5_vl": TinyRecipe("qwen2_5_vl", QWEN_TOKENS, _qwen2_5_vl_config, _qwen_processor("Qwen2_5_VLProcessor", 14)),
    "internvl": TinyRecipe("internvl", INTERNVL_TOKENS, _internvl_config("qwen2"), _internvl_processor(crop=False),
                           note="InternVL3-hf: Qwen2 text, photos tiled (InternVLProcessor crops by default)"),
    "llava": TinyRecipe("llava", Tokens(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"),
                                        QWEN_STYLE_TEMPLATE.replace("{{ IMAGE }}", "<image>\n"),
                                        named={"image_token": "<image>"}),
                        _llava_config, _llava_processor),
    "qwen3_vl": TinyRecipe("qwen3_vl", QWEN_TOKENS, _qwen3_vl_config, _qwen_processor("Qwen3VLProcessor", 16, 0.5),
                           TinySize(tie_embeddings=True), note="Qwen3-VL-2B-Instruct"),
    "qwen3_5": TinyRecipe("qwen3_5", QWEN_TOKENS, _qwen3_5_config, _qwen_processor("Qwen3VLProcessor", 16, 0.5),
                          TinySize(tie_embeddings=True), note="Qwen3.5-2B"),
    "internvl3_5": TinyRecipe("internvl", INTERNVL_TOKENS, _internvl_config("qwen3"), _internvl_processor(crop=True),
                              note="InternVL3_5-2B-HF: Qwen3 text, up to two tiles and a thumbnail"),
    "gemma3": TinyRecipe("gemma3", GEMMA_TOKENS, _gemma3_config, _gemma3_processor, note="gemma-3-4b-it"),
    "smolvlm": TinyRecipe("smolvlm", SMOLVLM_TOKENS, _smolvlm_config, _smolvlm_processor,
                          note="SmolVLM2-256M-Video-Instruct"),
    "blip_2": TinyRecipe("blip-2", BLIP_2_TOKENS, _blip_2_config, _blip_2_processor, note="blip2-opt-2.7b"),
}


def family(model_type: str) -> Family:
    return FAMILIES[model_type]


def no_video_processor_class(model_type: str) -> type:
    """The processor class of a family that works without torchvision (processors.py)."""
    return FAMILIES[model_type].image_only_processor_class()


def supported_labels() -> str:
    """The families a person can load, for sentences: 'Qwen2-VL, Qwen2.5-VL, ...'."""
    return ", ".join(f.label for f in FAMILIES.values())
