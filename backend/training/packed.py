"""Packed training: the fast path of the training program, for the families whose Family.fast_path
says so (families.py): "mrope" (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) and "1d" (InternVL).

The plain recipe pads every batch to its longest sample, runs the frozen vision tower on every
picture at every step, and computes logits over the whole vocabulary for every position. On
FoodieQA-shaped data (one photo of 400-1000 picture tokens, a question, an answer of 10-40 tokens)
most of that work is thrown away. This path keeps what is learned the same (the same samples in
the same steps, the same loss on the same answer tokens) and drops the waste:

- No padding: a step's samples are laid end to end in rows of up to `pack_tokens` tokens (the loss
  is normalised by the step's answer tokens, so the grouping changes only speed and memory). Each
  sample attends only to itself and keeps its own M-RoPE positions (`packed_sdpa`: one
  flash-attention varlen call per layer on CUDA, one SDPA call per sample elsewhere), so the maths
  equals the padded batch's (tests/test_training_packed.py checks losses and gradients).
- The vision tower and projector are frozen, so a picture's embeddings never change: they are
  computed once, the first time a sample is seen (a step's new pictures in one batch), and reused
  in later epochs (`PackedCache`, within a memory budget; beyond it they are recomputed).
- Logits only where there is an answer token: the hidden states of those positions go through the
  LM head, not the whole (tokens x 151,936) matrix.

Measured against the plain recipe in bench/README.md (bench/bench_train_speed.py).

Supported: language models that take image embeddings scattered into image-token places, with
- M-RoPE positions (3, T) worked out by the model's get_rope_index ("mrope": Qwen2-VL, Qwen2.5-VL,
  Qwen3-VL; Qwen3-VL's DeepStack features of each picture ride beside its embeddings, concatenated
  along the hidden dimension, and are added to the first layers' hidden states at the same places);
- or plain positions 0..T-1 per sample ("1d": InternVL, whose pictures are tiles of a fixed number
  of tokens each, found as runs of the image token).
Other families train on the padded path (model.why_padded says why in the job's log).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import types
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.training import flash_varlen
from backend.training.encoding import IGNORE_INDEX, Encoded, SampleDataset
from backend.training.errors import TrainingError
from backend.training.host_embeddings import HostEmbedding
from backend.training.vision_kernels import use_fused_vision_kernels

log = logging.getLogger("foodie.train")

def _packed_model_types() -> set[str]:
    from backend.models.families import FAMILIES

    return {f.model_type for f in FAMILIES.values() if f.fast_path}


PACKED_MODEL_TYPES = _packed_model_types()  # the families whose Family.fast_path says so
PACKED_ATTENTION = "foodie_packed_sdpa"


# ----------------------------------------------------------------------------------------------
# Attention with per-sample boundaries


def packed_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                doc_bounds: RowBounds | None = None, **kwargs):
    """Causal attention inside each packed sample, never across samples.

    Without `doc_bounds` (a padded batch, evaluation) this is plain SDPA with the mask transformers
    built. Shapes follow transformers' attention functions: query (1, heads, T, dim), key/value
    (1, kv_heads, T, dim) -> output (1, T, heads, dim)."""
    if doc_bounds is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if doc_bounds.cu is not None and flash_varlen.VARLEN_ATTENTION and dropout == 0.0:
        # One flash-attention call over the whole row: no per-length kernel plans, no loop (and no
        # custom-operator wrapper around it: flash_varlen.py). A full fine-tune's fp32 residual stream
        # makes the rotary tables fp32, so query and key come out fp32 beside a bf16 value: the kernel
        # takes one dtype, autocast's (as SDPA would cast them under autocast).
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else value.dtype
        query, key, value = (tensor.to(dtype) for tensor in (query, key, value))
        out = flash_varlen.flash_varlen(query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
                                        doc_bounds.cu, doc_bounds.longest, scaling, causal=True)
        return out[None], None
    grouped = query.shape[1] != key.shape[1]
    starts = doc_bounds.starts
    parts = [F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                            dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=grouped)
             for start, end in itertools.pairwise(starts)]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


@dataclass(frozen=True)
class RowBounds:
    """Where each sample of a packed row starts: Python ints for the SDPA loop (no GPU sync to read
    them) and, on CUDA, the same as an int32 tensor for the varlen kernel, made once per row."""

    starts: list[int]  # [0, end of sample 1, ..., T]
    cu: torch.Tensor | None
    longest: int  # a bound on the longest sample's length: the next power of two

    @classmethod
    def of(cls, starts: list[int], device: torch.device) -> RowBounds:
        cu = to_device(torch.tensor(starts, dtype=torch.int32), device) if device.type == "cuda" else None
        # The kernel needs only a bound on the longest sample (it sizes its grid by it; blocks past
        # a sample's end return at once). A power of two gives compiled layers one value to meet, not a
        # new one, and a recompilation, at every row.
        return cls(starts, cu, 1 << (max(b - a for a, b in itertools.pairwise(starts)) - 1).bit_length())


def use_packed_attention(model: torch.nn.Module) -> None:
    """Switch the language model (only: the vision tower keeps its own attention) to `packed_sdpa`.
    Registered with SDPA's mask builder, so padded calls still get their padding mask."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_sdpa)
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
    _inner(model).language_model.config._attn_implementation = PACKED_ATTENTION


# "flash" in the name is what makes transformers' vision towers hand over each picture's bounds
# (cu_seqlens) instead of splitting the batch into one attention call per picture.
PACKED_VISION_ATTENTION = "foodie_flash_varlen_vision"


def vision_varlen(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0,
                  cu_seq_lens_q=None, cu_seq_lens_k=None, max_length_q=None, max_length_k=None, **kwargs):
    """Attention inside each picture of a batch of pictures, in one flash-attention varlen call.
    query/key/value (1, heads, patches, dim) -> (1, patches, heads, dim)."""
    out = flash_varlen.full_varlen_attention(query[0].transpose(0, 1), key[0].transpose(0, 1),
                                             value[0].transpose(0, 1), cu_seq_lens_q, max_length_q, scaling)
    return out[None], None


def speed_up_vision_tower(model: torch.nn.Module, on_cuda: bool) -> None:
    """The frozen vision tower runs once per picture (then its output is cached), but in the first
    epoch it is a large part of a step. The same maths, done faster:
    - the patch embedding is a Conv3d whose kernel equals its stride, i.e. one matrix product over
      flattened patches: done as that product (cuDNN's 3-D convolution was far slower here, and
      every step's new patch count is a new shape for it);
    - on CUDA, attention inside each picture is one flash-attention varlen call per layer instead of
      one SDPA call per picture, with a GPU sync per layer to split them;
    - on CUDA with Triton, the fp32 rotary embedding with the q/k/v split, and QuickGELU, are one
      kernel each instead of a chain of element-wise passes (vision_kernels.py). (torch.compile on
      the same two parts was slower: 20.9 ms per picture against 16.9 eager; H200, 2026-11,
      bench/profile_vision_tower.py.)"""
    from transformers import AttentionInterface

    visual = getattr(_inner(model), "visual", None)
    if visual is None:  # InternVL's tower: runs once per picture as transformers writes it
        return
    embed = visual.patch_embed
    if isinstance(getattr(embed, "proj", None), torch.nn.Conv3d) and embed.proj.kernel_size == embed.proj.stride:
        embed.forward = types.MethodType(_patch_embed_as_product, embed)
    if on_cuda and flash_varlen.VARLEN_ATTENTION:
        AttentionInterface.register(PACKED_VISION_ATTENTION, vision_varlen)
        visual.config._attn_implementation = PACKED_VISION_ATTENTION
        # our Triton kernels are written for Qwen2-VL's and Qwen2.5-VL's tower blocks
        if type(visual).__name__ in QWEN2_TOWERS and use_fused_vision_kernels(visual):
            log.info("the vision tower's rotary embedding and QuickGELU run as fused Triton kernels")


QWEN2_TOWERS = ("Qwen2VisionTransformerPretrainedModel", "Qwen2_5_VisionTransformerPretrainedModel")


def _patch_embed_as_product(self, pixels: torch.Tensor) -> torch.Tensor:
    weight = self.proj.weight  # (embed, channels, temporal, patch, patch)
    flat = weight.reshape(weight.shape[0], -1)
    return F.linear(pixels.reshape(-1, flat.shape[1]).to(weight.dtype), flat, self.proj.bias)


def _head(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its LM head (the peft wrapper removed)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The Qwen2VLModel (InternVLModel, ...) inside (the LM head removed too)."""
    return _head(model).model


def positions_kind(model: torch.nn.Module) -> str:
    """"mrope" or "1d": how the model's language model takes positions (families.py: Family.fast_path)."""
    from backend.models.families import FAMILIES

    return FAMILIES[_head(model).config.model_type].fast_path


# ----------------------------------------------------------------------------------------------
# Samples, prepared once


@dataclass
class PackedSample:
    input_ids: torch.Tensor  # (T,)
    targets: torch.Tensor  # (T,) the token each position must predict; IGNORE_INDEX where it is no answer
    positions: torch.Tensor  # (3, T) M-RoPE positions (temporal, height, width), or (T,): from 0 for each sample
    # The frozen vision tower's output for each picture, in order, (picture tokens, hidden) each (hidden
    # x 4 for Qwen3-VL: its embeddings and three DeepStack levels side by side): the same tensor for
    # every sample that shows the same picture.
    pictures: tuple[torch.Tensor, ...]
    answer_at: torch.Tensor  # positions whose target counts, on the CPU: packing reads them without a GPU sync
    host_ids: torch.Tensor  # input_ids on the CPU, for an embedding table kept there (host_embeddings.py)

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def token_bytes(self) -> int:
        """Bytes of its own tensors (its pictures' embeddings may be shared, so they are counted apart)."""
        return sum(t.numel() * t.element_size() for t in (self.input_ids, self.targets, self.positions))


@torch.no_grad()
def prepare(model: torch.nn.Module, encoded: list[Encoded], device: torch.device, dtype: torch.dtype,
            cache: PackedCache | None = None) -> list[PackedSample]:
    """Run the frozen parts once for these samples: the vision tower and projector on all their
    pictures that are not done yet (in `cache`, or earlier in this list: FoodieQA asks several
    questions about one photo), in one batch, and the positions (M-RoPE's on the CPU, where the index
    arithmetic is cheap, instead of as hundreds of tiny GPU kernels)."""
    image_token = _head(model).config.image_token_id
    kind = positions_kind(model)
    done: dict = {}  # picture -> its embeddings, for this call
    todo: dict = {}  # picture -> (its pixels, its grid row or tile count), in the order first met
    keys_of = []
    for e in encoded:
        parts = _picture_parts(model, kind, e, image_token)
        # A sample whose pictures are not named one by one keeps them to itself.
        keys = list(e.pictures) if len(e.pictures) == len(parts) else [(id(e), i) for i in range(len(parts))]
        keys_of.append(keys)
        for key, (part, shape) in zip(keys, parts):
            if key in done or key in todo:
                continue
            found = cache.picture(key) if cache is not None and isinstance(key, str) else None
            if found is not None:
                done[key] = found
            else:
                todo[key] = (part, shape)
    if todo:
        # Each picture copied on its own and joined on the GPU: from the loader's page-locked memory
        # the copies run in the background; a join on the CPU would be one more pass over ~10 MB each.
        pixels = torch.cat([part.to(device, dtype, non_blocking=True) for part, _ in todo.values()])
        shapes = [shape for _, shape in todo.values()]
        if kind == "mrope":
            grids = torch.stack(shapes)
            counts = (grids.prod(-1) // _inner(model).visual.spatial_merge_size ** 2).tolist()
            features = _image_features(_inner(model), pixels, grids, device)
        else:
            per_tile = _head(model).config.image_seq_length
            counts = [tiles * per_tile for tiles in shapes]
            features = _tile_features(_inner(model), pixels)
        if features.shape[0] != sum(counts):
            raise ValueError(f"the vision tower gave {features.shape[0]} picture embeddings for {sum(counts)} "
                             "picture tokens")
        for key, part in zip(todo, features.split(counts)):
            done[key] = part.to(dtype)
            if cache is not None and isinstance(key, str):
                done[key] = cache.put_picture(key, done[key])
    samples = []
    for e, keys in zip(encoded, keys_of):
        ids, labels = e.inputs["input_ids"], e.labels
        pictures = tuple(done[key] for key in keys)
        if sum(p.shape[0] for p in pictures) != int((ids == image_token).sum()):
            raise ValueError(f"a sample has {int((ids == image_token).sum())} picture tokens for "
                             f"{sum(p.shape[0] for p in pictures)} picture embeddings")
        targets = torch.cat([labels[1:], labels.new_full((1,), IGNORE_INDEX)])
        grid = e.inputs.get("image_grid_thw")
        if kind != "mrope":
            positions = torch.arange(len(ids))  # (T,): each sample from 0
        elif grid is None:
            positions = torch.arange(len(ids)).expand(3, -1)
        else:
            positions = _rope_positions(model, e, ids, grid)
        samples.append(PackedSample(ids.to(device, non_blocking=True), targets.to(device, non_blocking=True),
                                    positions.to(device, non_blocking=True), pictures,
                                    (targets != IGNORE_INDEX).nonzero()[:, 0], ids))
    return samples


def _picture_parts(model, kind: str, e: Encoded, image_token: int) -> list[tuple[torch.Tensor, object]]:
    """Each picture of a sample: (its pixels, its shape), in order. M-RoPE families: its patches and its
    grid row (t, h, w). InternVL: its tiles and their count, read off the runs of image tokens (one run
    of image_seq_length tokens a tile per picture: the processor does not return the counts)."""
    pixels = e.inputs.get("pixel_values")
    if pixels is None:
        return []
    if kind == "mrope":
        grid = e.inputs["image_grid_thw"]
        return list(zip(pixels.split(grid.prod(-1).tolist()), grid))
    per_tile = _head(model).config.image_seq_length
    is_image = (e.inputs["input_ids"] == image_token).int()
    starts = (is_image[1:] > is_image[:-1]).nonzero()[:, 0] + 1
    ends = (is_image[1:] < is_image[:-1]).nonzero()[:, 0] + 1
    starts = ([0] if is_image[0] else []) + starts.tolist()
    ends = ends.tolist() + ([len(is_image)] if is_image[-1] else [])
    tiles = [(end - start) // per_tile for start, end in zip(starts, ends)]
    if sum(tiles) != len(pixels):
        raise ValueError(f"a sample's picture tokens make {sum(tiles)} tiles of {per_tile} tokens, and its pixels "
                         f"{len(pixels)}")
    return list(zip(pixels.split(tiles), tiles))


def _tile_features(inner, pixels: torch.Tensor) -> torch.Tensor:
    """InternVL's tower, pixel shuffle and projector on tiles (tiles, 3, H, W) -> (tiles x tokens, hidden)."""
    config = inner.config
    out = inner.get_image_features(pixel_values=pixels, vision_feature_layer=config.vision_feature_layer,
                                   vision_feature_select_strategy=config.vision_feature_select_strategy)
    features = getattr(out, "pooler_output", out)
    return features.reshape(-1, features.shape[-1])


def _image_features(inner, pixels: torch.Tensor, grid: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The vision tower and projector on these pictures' patches; `grid` (pictures x 3) on the CPU.
    Qwen3-VL's DeepStack features (one per level, each the width of the embeddings) come beside
    each token's embedding: (tokens, hidden x (1 + levels))."""
    known = _tower_inputs(inner, grid, device)
    # transformers 5 returned a tuple of per-picture tensors at first, an output object later.
    out = inner.get_image_features(pixel_values=pixels, image_grid_thw=grid if known else grid.to(device), **known)
    features = getattr(out, "pooler_output", out)
    if isinstance(features, (list, tuple)):
        features = torch.cat(list(features), dim=0)
    levels = getattr(out, "deepstack_features", None)
    if levels:
        features = torch.cat([features] + [torch.cat(list(level), dim=0) if isinstance(level, (list, tuple))
                                           else level for level in levels], dim=-1)
    return features


def _tower_inputs(inner, grid: torch.Tensor, device: torch.device) -> dict:
    """The Qwen2-VL vision tower's rotary positions and attention bounds, worked out from the grid on
    the CPU and handed to the GPU without waiting. From a grid on the GPU, transformers reads the
    grid back (`.tolist()`) before the tower and after it, and our attention read the longest
    picture back in every block: each a wait for the GPU, so the CPU could not queue the language
    model's forward pass while the tower ran. Empty (transformers' own way) where this
    transformers does not take them precomputed, or for another tower."""
    try:
        from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids
    except ImportError:
        return {}
    visual = inner.visual
    if (type(visual).__name__ != "Qwen2VisionTransformerPretrainedModel"
            or "kwargs" not in inspect.signature(get_vision_position_ids).parameters):
        return {}
    bounds = get_vision_cu_seqlens(grid)
    return {"position_ids": to_device(get_vision_position_ids(grid, visual.spatial_merge_size), device),
            "cu_seqlens": to_device(bounds, device), "max_seqlen": int((bounds[1:] - bounds[:-1]).max())}


def _rope_positions(model, encoded: Encoded, ids: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The model's own M-RoPE positions for one sample, (3, T). get_rope_index's arguments changed
    across transformers 5 releases: pass what this one takes."""
    inner = _inner(model)
    accepted = inspect.signature(inner.get_rope_index).parameters
    kwargs = {"image_grid_thw": grid}
    if "mm_token_type_ids" in accepted:
        types = encoded.inputs.get("mm_token_type_ids")
        if types is None:
            types = (ids == _head(model).config.image_token_id).int()
        kwargs["mm_token_type_ids"] = types.to(ids.device)[None]
    positions, _ = inner.get_rope_index(ids[None], **kwargs)
    return positions[:, 0]


class PackedCache:
    """Prepared samples and pictures' embeddings kept between epochs, up to `budget_bytes` in all
    (picture embeddings are most of it: ~3 MB for a 1024x768 photo on a 2B model, kept once however
    many samples show it). Beyond the budget, samples are prepared again each time.

    `on_host` (QLoRA's memory-first recipe): the embeddings are kept in page-locked CPU memory and go
    back to the GPU as a row is packed, a few MB a picture, instead of holding the GPU's memory."""

    def __init__(self, budget_bytes: int, on_host: bool = False) -> None:
        self.budget, self.used, self.on_host = budget_bytes, 0, on_host
        self.samples: dict[int, PackedSample] = {}
        self.pictures: dict[str, torch.Tensor] = {}
        self._counted: set[int] = set()  # id() of each picture tensor whose bytes are in `used`
        self.over_budget = False
        self.computed = self.reused = 0  # samples prepared / taken from the cache, for the log
        self.pictures_computed = self.pictures_reused = 0  # pictures through the tower / found here
        self.picture_slots = 0  # pictures shown by the samples prepared

    def get(self, index: int) -> PackedSample | None:
        sample = self.samples.get(index)
        self.reused += sample is not None
        return sample

    def put(self, index: int, sample: PackedSample) -> None:
        self.computed += 1
        self.picture_slots += len(sample.pictures)
        new_pictures = [p for p in sample.pictures if id(p) not in self._counted]
        if self._take(sample.token_bytes + sum(p.nbytes for p in new_pictures)):
            self.samples[index] = sample
            self._counted.update(id(p) for p in new_pictures)

    def picture(self, key: str) -> torch.Tensor | None:
        found = self.pictures.get(key)
        self.pictures_reused += found is not None
        return found

    def put_picture(self, key: str, embeds: torch.Tensor) -> torch.Tensor:
        """Keeps `embeds` if the budget allows; returns what the step's samples should hold: the kept copy
        (in CPU memory with `on_host`), or `embeds` itself."""
        self.pictures_computed += 1
        if not self._take(embeds.nbytes):
            return embeds
        if self.on_host and embeds.is_cuda:
            # The copy runs behind the CPU's back; nothing on the CPU reads it, and the copy back to the GPU
            # (pack) is queued after it on the same stream.
            kept = torch.empty(embeds.shape, dtype=embeds.dtype, pin_memory=True)
            embeds = kept.copy_(embeds, non_blocking=True)
        self.pictures[key] = embeds
        self._counted.add(id(embeds))
        return embeds

    def _take(self, size: int) -> bool:
        if self.used + size > self.budget:
            if not self.over_budget:
                log.info("the picture-embedding cache is full (%.1f GB); later samples are recomputed each "
                         "epoch", self.used / 2**30)
            self.over_budget = True
            return False
        self.used += size
        return True


# ----------------------------------------------------------------------------------------------
# One packed row


class UnpreparedSamples(torch.utils.data.Dataset):
    """What the packed path's loader hands over: (index, encoded sample with its pictures already in
    the model's dtype), or (index, None) for a sample whose prepared form is cached, so its picture is
    not decoded again."""

    def __init__(self, dataset: SampleDataset, prepared: set[int], pixel_dtype: torch.dtype) -> None:
        self.dataset, self.prepared, self.pixel_dtype = dataset, prepared, pixel_dtype

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, None if index in self.prepared else self.dataset[index].with_pixels_as(self.pixel_dtype)


def prepared_samples(cache: PackedCache, items: list, model, device, dtype) -> list:
    """The step's samples ready to pack, in order: from the cache, or prepared now (all of the
    step's new pictures through the vision tower together) and cached."""
    found = {index: cache.get(index) for index, _ in items}
    new = [(index, encoded) for index, encoded in items if found[index] is None]
    if any(encoded is None for _, encoded in new):  # cached when the loader started: cannot be dropped since
        raise TrainingError("sample_lost", "A sample was neither in the picture cache nor decoded by the data "
                            "loader (a fault of the training program); resume the job to continue.")
    if new:
        for (index, _), sample in zip(new, prepare(model, [encoded for _, encoded in new], device, dtype, cache)):
            cache.put(index, sample)
            found[index] = sample
    return [found[index] for index, _ in items]


@dataclass
class PackedRow:
    input_ids: torch.Tensor  # (T,) all samples end to end
    targets: torch.Tensor  # (T,)
    positions: torch.Tensor  # (3, T) M-RoPE, or (T,)
    image_embeds: torch.Tensor | None
    answer_at: torch.Tensor  # positions whose target counts, on the row's device
    answer_tokens: int
    attention: RowBounds  # where each sample starts, for packed_sdpa
    host_ids: torch.Tensor  # input_ids on the CPU

    @property
    def bounds(self) -> list[int]:
        """[0, end of sample 1, end of sample 2, ..., T]"""
        return self.attention.starts

    @property
    def samples(self) -> int:
        return len(self.bounds) - 1


def pack(samples: list[PackedSample]) -> PackedRow:
    bounds = [0]
    for sample in samples:
        bounds.append(bounds[-1] + sample.length)
    pictures = [picture for s in samples for picture in s.pictures]
    device = samples[0].input_ids.device
    answer_at = torch.cat([s.answer_at + start for s, start in zip(samples, bounds)])
    # pictures kept in CPU memory (PackedCache.on_host) join the others on the row's device
    pictures = [picture.to(device, non_blocking=True) for picture in pictures]
    return PackedRow(torch.cat([s.input_ids for s in samples]), torch.cat([s.targets for s in samples]),
                     torch.cat([s.positions for s in samples], dim=-1), torch.cat(pictures) if pictures else None,
                     to_device(answer_at, device), len(answer_at), RowBounds.of(bounds, device),
                     torch.cat([s.host_ids for s in samples]))


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor onto `device` without making the CPU wait for the GPU's queued work (a
    plain copy from pageable memory would)."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def split_rows(samples: list[PackedSample], max_tokens: int) -> list[list[PackedSample]]:
    """Consecutive samples grouped into rows of at most `max_tokens` tokens (a longer sample gets a
    row of its own), in their order, so a run is the same whatever the row size."""
    rows: list[list[PackedSample]] = []
    length = 0
    for sample in samples:
        if rows and length + sample.length <= max_tokens:
            rows[-1].append(sample)
            length += sample.length
        else:
            rows.append([sample])
            length = sample.length
    return rows


def split_rows_further(rows: list[list[PackedSample]], count: int) -> list[list[PackedSample]]:
    """`rows` split until there are `count` of them (or each holds one sample): the row of most tokens
    among those of several samples is cut where its tokens are halved, the samples keeping their
    order. A sharded job's ranks must all run as many passes as the rank with most rows (sharding.py)."""
    rows = [list(row) for row in rows]
    while len(rows) < count:
        splittable = [i for i, row in enumerate(rows) if len(row) > 1]
        if not splittable:
            break
        i = max(splittable, key=lambda j: sum(sample.length for sample in rows[j]))
        lengths = [sample.length for sample in rows[i]]
        cut = min(range(1, len(lengths)), key=lambda k: abs(2 * sum(lengths[:k]) - sum(lengths)))
        rows[i : i + 1] = [rows[i][:cut], rows[i][cut:]]
    return rows


class PackedLoss(torch.nn.Module):
    """Summed cross-entropy of one packed row's answer tokens. A module of its own so DDP can wrap
    it: the LoRA weights inside get their gradients reduced across GPUs as usual."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, row: PackedRow) -> torch.Tensor:
        inner, head = _inner(self.model), _head(self.model)
        table = inner.get_input_embeddings()
        # a table in CPU memory (QLoRA) reads the CPU's copy of the ids: no wait for the GPU to hand them back
        embeds = table(row.host_ids if isinstance(table, HostEmbedding) else row.input_ids)[None]  # (1, T, hidden)
        more = {}
        if row.image_embeds is not None:
            where = (row.input_ids == head.config.image_token_id)[None, :, None]
            pictures = row.image_embeds.to(embeds.dtype)
            if pictures.shape[-1] > embeds.shape[-1]:  # Qwen3-VL: the embeddings, then each DeepStack level
                pictures, *levels = pictures.split(embeds.shape[-1], dim=-1)
                more = {"visual_pos_masks": where[..., 0], "deepstack_visual_embeds": levels}
            embeds = embeds.masked_scatter(where, pictures)
        # use_cache=False: the text config's own default (True) has every layer append its keys and
        # values to a cache nobody reads, which made a row's passes 15% slower (9,041 tokens, no
        # Liger: 278 ms with it, 241 ms without; H200, 2026-11, bench/profile_step_parts.py)
        hidden = inner.language_model(inputs_embeds=embeds, position_ids=row.positions.unsqueeze(-2), use_cache=False,
                                      doc_bounds=row.attention, **more).last_hidden_state[0]  # (T, hidden)
        # Index by known positions, not by a mask: a mask's count would be read back from the GPU.
        logits = head.lm_head(hidden.index_select(0, row.answer_at)).float()  # (answers, vocab), fp32 loss
        return F.cross_entropy(logits, row.targets.index_select(0, row.answer_at), reduction="sum")


def compile_decoder_layers(model: torch.nn.Module) -> None:
    """Each decoder layer of the language model through torch.compile, with dynamic shapes (rows
    change length every step). All layers share one compiled graph (their weights are its inputs).
    Inductor fuses what eager mode runs as separate passes over memory: LoRA's dropout (its mask
    regenerated in the backward pass, not stored), the residual adds, RMSNorm, SwiGLU and rotary."""
    for layer in _inner(model).language_model.layers:
        layer.compile(dynamic=True)


def apply_fused_kernels(model: torch.nn.Module) -> bool:
    """Liger's Triton kernels for RMSNorm and SwiGLU (less activation memory, fewer kernel launches)
    when liger-kernel is installed and the model is on a GPU. Returns whether they were applied."""
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2_5_vl, apply_liger_kernel_to_qwen2_vl
    except ImportError:
        return False
    apply = {"qwen2_vl": apply_liger_kernel_to_qwen2_vl,
             "qwen2_5_vl": apply_liger_kernel_to_qwen2_5_vl}.get(model.config.model_type)
    if apply is None:
        return False
    # Liger's rope switch patches apply_multimodal_rotary_pos_emb, which transformers 5 no longer
    # calls (M-RoPE's sections are merged in the rotary embedding): the plain rotary kernel is put
    # where it is called instead. The loss is ours (answer positions only), so no fused cross-entropy.
    options = dict(rope=False, cross_entropy=False, fused_linear_cross_entropy=False, rms_norm=True,
                   swiglu=True, model=model)
    if "layer_norm" in inspect.signature(apply).parameters:
        options["layer_norm"] = False  # the vision tower's: it runs once per picture, not worth patching
    apply(**options)
    _use_fused_rotary(model.config.model_type)
    return True


def _use_fused_rotary(model_type: str) -> bool:
    """Liger's rotary kernel for the language model's q and k: one pass each way instead of a
    chain of multiplies, a negation and a concatenation. Only where the text attention calls the
    plain `apply_rotary_pos_emb` with cos/sin whose two halves repeat (M-RoPE merged beforehand)."""
    import importlib

    from liger_kernel.transformers.rope import liger_rotary_pos_emb

    modeling = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    if not hasattr(modeling, "apply_rotary_pos_emb") or hasattr(modeling, "apply_multimodal_rotary_pos_emb"):
        return False
    modeling.apply_rotary_pos_emb = liger_rotary_pos_emb
    return True
