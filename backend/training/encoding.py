"""Samples -> model inputs with labels that count the answers only.

The loss must come from what the model says, never from what the user asked or from the picture:
training on the questions teaches the model to write questions. So every label is IGNORE_INDEX
except the tokens of each assistant turn (all turns, not just the last), which keep their own id.

Finding those tokens, two ways:
- The chat template marks answers with {% generation %} ... {% endgeneration %} (our tiny models'
  templates do): the processor's `apply_chat_template(return_assistant_tokens_mask=True)` says
  which tokens are answers, after it has expanded each picture into its many tokens.
- Otherwise (most real checkpoints): render the conversation up to each answer and through it; the
  difference is the answer's characters. Tokenize the text before picture expansion with offsets,
  mark the tokens inside those characters, then carry the marks across the expansion by walking the
  two token sequences side by side (expansion only inserts picture tokens). The marked token ids
  are checked to be identical on both sides, so a template we misread fails loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from backend.images import open_image
from backend.training.samples import Sample, SampleError

log = logging.getLogger(__name__)

# Labels equal to this add nothing to the loss (it is also torch's cross_entropy default).
IGNORE_INDEX = -100


def has_generation_markers(processor) -> bool:
    template = getattr(processor, "chat_template", None) or ""
    return "{% generation %}" in template or "{%- generation %}" in template


@dataclass
class Encoded:
    inputs: dict[str, torch.Tensor]  # input_ids (T,), attention_mask (T,), pixel_values, ...
    labels: torch.Tensor  # (T,) answer tokens keep their id, the rest are IGNORE_INDEX
    # Each picture's file, in order. Within a job every file is processed the same way, so equal
    # files mean equal pixels: FoodieQA asks several questions about one photo.
    pictures: tuple[str, ...] = ()

    @property
    def answer_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def pin_memory(self) -> Encoded:
        """The pictures' patches in page-locked memory (the DataLoader's pin_memory calls this), so
        their copy to the GPU (megabytes) runs in the background instead of holding up the training
        process. The rest stays as it is: prepare() reads it on the CPU, and the token ids' copy is
        a few kilobytes, which CUDA takes from pageable memory without waiting for the GPU. Each
        pinned tensor takes a page-locked block, reused once its copy is done: with all five of a
        sample's tensors pinned, a job's first epoch grew the pool by 272 blocks, with the pictures'
        alone by 49 (H200 host, 2026-11, bench/bench_train_speed.py --ours-only). The time in CUDA's
        allocation calls stayed ~0.7 s: it is the pictures' large blocks; the small ones cost next to
        nothing."""
        pixels = self.inputs.get("pixel_values")
        if pixels is None:
            return self
        return Encoded({**self.inputs, "pixel_values": pixels.pin_memory()}, self.labels, self.pictures)

    def with_pixels_as(self, dtype: torch.dtype) -> Encoded:
        """The same sample with its pictures' patches in `dtype` (the model's: half the bytes to hand
        over and copy in bf16; the model casts them to its dtype anyway)."""
        pixels = self.inputs.get("pixel_values")
        if pixels is None or pixels.dtype == dtype:
            return self
        return Encoded({**self.inputs, "pixel_values": pixels.to(dtype)}, self.labels, self.pictures)


def encode_sample(processor, sample: Sample, max_pixels: int, max_length: int) -> Encoded:
    """Apply the chat template (through the processor), tokenize, expand pictures, mask non-answers."""
    images = [open_image(path, max_pixels) for path in sample.images]
    mask = None
    if has_generation_markers(processor):
        ids, extra, mask = _encode_with_markers(processor, sample.messages, images)
    if mask is None or not marks_cover_answers(processor, ids, mask, sample.messages):
        # No markers, or markers that missed: transformers 5.17 maps them from characters to tokens
        # and can mark nothing (answers whose characters a byte-level tokenizer splits) or the
        # wrong tokens (seen: five <|image_pad|> tokens instead of the answer, so the demo model
        # learnt its Chinese answers and answered English questions in Chinese).
        ids, extra, mask = _encode_by_prefixes(processor, sample.messages, images)
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, IGNORE_INDEX))
    if len(ids) > max_length:
        ids, labels, extra = _truncate(processor, sample, ids, labels, extra, max_length)
    if not (labels != IGNORE_INDEX).any():
        raise SampleError(f"sample {sample.id}: no answer token is left after the first {max_length} tokens")
    return Encoded({"input_ids": ids, **extra}, labels, tuple(str(path) for path in sample.images))


def estimated_tokens(sample: Sample, max_pixels: int) -> int:
    """About how many tokens `sample` encodes to, from its pictures' headers (nothing is decoded): a
    picture's pixels, capped at `max_pixels`, at one token per 28x28 (Qwen2-VL's merged patches), and
    the text at one token per three characters. Only for sharing work evenly between GPUs."""
    from PIL import Image

    text = sum(len(part.get("text", "")) for message in sample.messages for part in message["content"])
    pixels = 0
    for path in sample.images:
        try:
            with Image.open(path) as picture:
                pixels += min(picture.width * picture.height, max_pixels)
        except Exception:  # an unreadable picture is reported when the sample is encoded
            continue
    return pixels // (28 * 28) + text // 3


def marks_cover_answers(processor, ids: torch.Tensor, mask: torch.Tensor, messages: list[dict]) -> bool:
    """Whether the marked tokens hold every answer's text (and so are the answers, not something else)."""
    if not mask.any():
        return False
    marked = processor.tokenizer.decode(ids[mask.bool()].tolist())
    answers = [part["text"].strip() for m in messages if m["role"] == "assistant"
               for part in m["content"] if part.get("type") == "text"]
    return all(answer in marked for answer in answers)


def _encode_with_markers(processor, messages: list[dict], images: list) -> tuple[torch.Tensor, dict, torch.Tensor]:
    with_images = _attach_images(messages, images)
    out = processor.apply_chat_template(with_images, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True, return_tensors="pt")
    mask = torch.as_tensor(out.pop("assistant_masks"))[0]
    return _split_output(dict(out), mask)


def _encode_by_prefixes(processor, messages: list[dict], images: list) -> tuple[torch.Tensor, dict, torch.Tensor]:
    text = processor.apply_chat_template(messages, tokenize=False)
    spans = answer_char_spans(processor, messages, text)

    # Token marks on the text as written (each picture still one placeholder token).
    plain = processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    plain_ids = plain["input_ids"]
    plain_mask = [any(start < end_char and end > start_char for start_char, end_char in spans)
                  for start, end in plain["offset_mapping"]]

    out = processor(text=[text], images=images or None, return_tensors="pt")
    ids = out["input_ids"][0].tolist()
    mask = _carry_marks(plain_ids, plain_mask, ids)
    return _split_output(dict(out), torch.tensor(mask, dtype=torch.long))


def answer_char_spans(processor, messages: list[dict], text: str) -> list[tuple[int, int]]:
    """Character spans of the answers in `text`, found by rendering the conversation up to each
    answer (with the generation prompt) and through it. Trailing whitespace after an answer's end
    token is left out: the model should learn to stop, not to print a newline."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = processor.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        through = processor.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise SampleError("the chat template renders earlier turns differently once later turns "
                              "follow, so the answers cannot be located; use a template with "
                              "{% generation %} markers")
        end = len(through.rstrip())
        if end > len(before):
            spans.append((len(before), end))
    return spans


def _carry_marks(plain_ids: list[int], plain_mask: list[bool], ids: list[int]) -> list[int]:
    """Marks on the unexpanded tokens -> marks on the processor's tokens, where each picture
    placeholder has become many tokens. Tokens that only exist after expansion are never answers."""
    mask = [0] * len(ids)
    j = 0
    for i, token in enumerate(ids):
        if j < len(plain_ids) and token == plain_ids[j]:
            mask[i] = int(plain_mask[j])
            j += 1
    marked_plain = [t for t, m in zip(plain_ids, plain_mask) if m]
    marked = [t for t, m in zip(ids, mask) if m]
    if j != len(plain_ids) or marked != marked_plain:
        raise SampleError("the answers could not be lined up with the processor's tokens "
                          "(its picture expansion changes the text around them)")
    return mask


def _attach_images(messages: list[dict], images: list) -> list[dict]:
    """Copy of `messages` with each {"type": "image"} part carrying its opened picture."""
    pictures = iter(images)
    return [{**m, "content": [({"type": "image", "image": next(pictures)} if part.get("type") == "image"
                               else part) for part in m["content"]]}
            for m in messages]


def _split_output(out: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Processor output (batch of one) -> 1-D token tensors and the picture tensors as they are."""
    ids = torch.as_tensor(out.pop("input_ids"))[0]
    extra = {}
    for key, value in out.items():
        value = torch.as_tensor(value)
        is_per_token = value.dim() == 2 and value.shape == (1, len(ids))
        extra[key] = value[0] if is_per_token else value
    return ids, extra, mask


def _truncate(processor, sample: Sample, ids, labels, extra, max_length: int):
    """Cut the end of a long sample, but never through a picture: a picture cut in half cannot be
    fed to the model at all."""
    image_token_id = getattr(processor, "image_token_id", None)
    if image_token_id is not None:
        positions = (ids == image_token_id).nonzero()
        if len(positions) and int(positions[-1]) >= max_length:
            raise SampleError(
                f"sample {sample.id} needs {int(positions[-1]) + 1} tokens just to show its pictures, more "
                f"than the {max_length}-token limit; raise max length or lower the picture size")
    log.warning("sample %s is %d tokens; training on its first %d", sample.id, len(ids), max_length)
    extra = {k: (v[:max_length] if v.dim() == 1 and len(v) == len(ids) else v) for k, v in extra.items()}
    return ids[:max_length], labels[:max_length], extra


def collate(batch: list[Encoded], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad token sequences on the right to the longest in the batch; stack picture tensors.

    Per-token tensors (input_ids, attention_mask, mm_token_type_ids, labels) become (B, T_max):
    input_ids padded with the pad token, labels with IGNORE_INDEX, masks with 0. Picture tensors
    are concatenated along their first dimension (patches or pictures), which is how every
    processor batches them (Qwen2-VL: (patches, dim) + image_grid_thw (pictures, 3))."""
    length = max(len(e.labels) for e in batch)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.cat([t, t.new_full((length - len(t),), value)])

    out: dict[str, torch.Tensor] = {"labels": torch.stack([pad(e.labels, IGNORE_INDEX) for e in batch])}
    keys = {k for e in batch for k in e.inputs}
    for key in sorted(keys):
        values = [e.inputs[key] for e in batch if key in e.inputs]
        seq_len = [len(e.labels) for e in batch if key in e.inputs]
        if all(v.dim() == 1 and len(v) == n for v, n in zip(values, seq_len)) and len(values) == len(batch):
            fill = pad_token_id if key == "input_ids" else 0
            out[key] = torch.stack([pad(v, fill) for v in values])
        else:
            out[key] = torch.cat(values, dim=0)
    return out


class SampleDataset(torch.utils.data.Dataset):
    """Encodes lazily: a picture becomes tensors only when its batch is due, so a large dataset of
    large photos never sits in memory at once (a 1024x768 picture is ~19 MB of Qwen2-VL patches).
    With `cache`, each sample is encoded once and kept: for small sets trained for many epochs
    (the demo: 72 small pictures, ~20 MB), which then spend their time training, not decoding."""

    def __init__(self, samples: list[Sample], processor, max_pixels: int, max_length: int,
                 cache: bool = False) -> None:
        self.samples, self.processor = samples, processor
        self.max_pixels, self.max_length = max_pixels, max_length
        self.cache: dict[int, Encoded] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Encoded:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        encoded = encode_sample(self.processor, self.samples[index], self.max_pixels, self.max_length)
        if self.cache is not None:
            self.cache[index] = encoded
        return encoded
