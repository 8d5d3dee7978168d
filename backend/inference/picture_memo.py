"""Picture features kept between scorings of one job's checkpoints.

A job scores the same held-out questions, in the same batches, at every checkpoint. When the job
trains only the language model (the vision tower and projector frozen), a photo's features are the
same at every checkpoint, and the vision tower costs about as much as the language model's prefill
(it sees four times the tokens the language model does). So the first scoring keeps each batch's
features, and later scorings reuse them: only the language model runs again.

The memo sits in the model's own `get_image_features` (the method every transformers 5 vision
model routes its pictures through), keyed by the exact pixels, so a batch it has not seen, or
pixels that differ in any way, are computed as usual.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def picture_encoders(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules whose `get_image_features` does the work: the innermost ones that have it (an
    outer ForConditionalGeneration only hands the call on to its inner model)."""
    having = [m for m in model.modules() if callable(getattr(m, "get_image_features", None))]
    return [m for m in having if not any(c is not m and c in having for c in m.modules())]


def frozen_pictures(encoder: torch.nn.Module) -> bool:
    """Whether nothing that makes picture features can change: every parameter outside the language
    model is frozen (vision LoRA, a trained projector or a trained tower make features move)."""
    get_decoder = getattr(encoder, "get_decoder", None)
    language = get_decoder() if callable(get_decoder) else getattr(encoder, "language_model", None)
    text = {id(p) for p in language.parameters()} if isinstance(language, torch.nn.Module) else set()
    return not any(p.requires_grad for p in encoder.parameters() if id(p) not in text)


def _key(value: Any) -> Any:
    """A fingerprint of one argument: small tensors by value, large ones by shape, type and two sums
    taken in float64/float32 without a copy (two different photo batches agreeing in both is not a
    case to plan for)."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 4096:
            return ("t", tuple(value.shape), str(value.dtype), tuple(value.flatten().tolist()))
        total = torch.sum(value, dtype=torch.float64)
        spread = (torch.linalg.vector_norm(value, dtype=torch.float32) if value.is_floating_point()
                  else torch.count_nonzero(value))  # masks: bool or integer
        return ("T", tuple(value.shape), str(value.dtype), float(total), float(spread))
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def _size(value: Any) -> int:
    """Bytes of tensor data held by a features result (a tensor, a ModelOutput, tuples of them)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value)
    return 0


class PictureMemo:
    """Features of picture batches, kept up to `budget_bytes` (on the device they were made on)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.kept: dict[Any, Any] = {}
        self.used = 0
        self.hits = 0
        self.misses = 0

    @contextmanager
    def serving(self, model: torch.nn.Module) -> Iterator[bool]:
        """While inside, the model's picture features come from the memo where they can; yields
        whether it applies (False, and nothing changed, when a part that makes features trains)."""
        encoders = picture_encoders(model)
        if not encoders or not all(frozen_pictures(e) for e in encoders):
            yield False
            return
        for encoder in encoders:
            encoder.get_image_features = self._remembering(encoder.get_image_features)
        try:
            yield True
        finally:
            for encoder in encoders:
                del encoder.get_image_features  # the class's own method again

    def _remembering(self, compute):
        # the same signature as the method (generate reads it to pick the arguments it passes)
        @functools.wraps(compute)
        def get_image_features(*args, **kwargs):
            key = (_key(args), _key(sorted(kwargs.items())))
            if key in self.kept:
                self.hits += 1
                return self.kept[key]
            self.misses += 1
            features = compute(*args, **kwargs)
            size = _size(features)
            if self.used + size <= self.budget:
                self.kept[key] = features
                self.used += size
            return features

        return get_image_features
