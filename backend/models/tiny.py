"""Tiny, randomly initialised vision-language models of real architectures, built locally.

No machine of ours reaches a model hub, yet the app must run its whole loop out of the box and the
tests must prove that real checkpoints of every family we claim load and chat. So we build small
models from the real transformers classes (same code paths as a 2B checkpoint, just narrow), with a
byte-level BPE tokenizer trained here, and save them with `save_pretrained` exactly as a hub
checkpoint is laid out. Loading them goes through the same code as loading a real model.

Which models: families.TINY, one recipe per family (and variants), from the family registry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from backend.bundled import DISHES_FILE, EXAMPLES_DIR
from backend.models.families import INITIALIZER_RANGE, QWEN2_VL_2B, QWEN_STYLE_TEMPLATE, TINY, TinySize, Tokens

log = logging.getLogger(__name__)

__all__ = ["FAMILIES", "INITIALIZER_RANGE", "QWEN2_VL_2B", "QWEN_STYLE_TEMPLATE", "TinySize", "build_tiny_model",
           "train_tokenizer"]

# Each tiny model's tokens (its special tokens, named tokens and chat template), by tiny model name.
FAMILIES: dict[str, Tokens] = {name: recipe.tokens for name, recipe in TINY.items()}


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


def train_tokenizer(tokens: Tokens, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE: any text encodes (no unknown token), so a real user's question in any
    language still runs through the demo model."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(tokens.special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=tokens.end_of_turn,
        pad_token=tokens.pad,
        bos_token=tokens.bos,
        extra_special_tokens=dict(tokens.named) or None,
    )
    tokenizer.chat_template = tokens.template
    return tokenizer


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


def build_tiny_model(name: str, out_dir: Path, size: TinySize | None = None, seed: int = 0,
                     device: str = "cpu", dtype: torch.dtype = torch.float32) -> Path:
    """Build a random model from the tiny recipe `name` (families.TINY: a family's name, or a variant
    such as internvl3_5) and save it at out_dir as a hub checkpoint would be.

    Tiny by default; `size=QWEN2_VL_2B, device="cuda", dtype=torch.bfloat16` builds a real-size
    one for benchmarks. Written to a temporary sibling folder and renamed at the end, so an
    interrupted build never leaves a half-written model that later looks valid."""
    from backend.models.families import family as family_of

    if name not in TINY:
        raise ValueError(f"unknown tiny model {name!r}; known: {', '.join(sorted(TINY))}")
    recipe = TINY[name]
    size = size or recipe.size
    family = recipe.family
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(recipe.tokens, vocab_size=size.vocab)
    config = recipe.config(tokenizer, size)
    config.dtype = dtype  # saved in config.json: loaders (LMDeploy too) then keep this dtype
    with torch.device(device):
        model = family_of(family).model_cls()(config).to(dtype).eval()
    processor = recipe.processor(tokenizer, size)

    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    _save_video_processor_if_possible(family, tmp, size.max_pixels)
    (tmp / "foodie_studio.json").write_text(
        json.dumps({"family": family, "tiny": name, "size": size.__dict__, "seed": seed}, indent=2),
        encoding="utf-8")
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info("built tiny %s model (%d parameters) at %s", name,
             sum(p.numel() for p in model.parameters()), out_dir)
    return out_dir
