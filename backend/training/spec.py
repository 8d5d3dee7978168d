"""One training job, fully described: a typed spec, checked before it is queued, saved beside its outputs.

The UI builds a JobSpec (usually from a preset plus the fields a person changed), calls
`problems()` to show what is wrong in plain sentences, and submits it. The training program reads
the same spec back from the job folder, so a job can always be rebuilt from what is on disk.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backend.problems import Problem

# LoRA goes on every linear layer of the language model's decoder layers, whatever the family calls
# them (attention, linear attention, MLP: targets.py reads them off the model). A list of short names
# (q_proj, v_proj, ...) is checked against the model before training starts. The vision tower has
# modules with the same short names; they are only matched under the language model.
ALL_LINEAR = "all-linear"
DEFAULT_TARGET_MODULES = (ALL_LINEAR,)

DEVICES = ("auto", "cpu", "cuda")

# What a job trains (`trains`: parts joined by "+", trained_parts.py places each on the model):
LANGUAGE_LORA = "language-lora"  # LoRA on the language model's linear layers (the default)
VISION_LORA = "vision-lora"  # LoRA on the vision tower's linear layers too
PROJECTOR = "projector"  # the projector between tower and language model, trained whole
LANGUAGE_FULL = "language-full"  # the language model's decoder layers trained whole (no LoRA on them)
TRAINED_PARTS = (LANGUAGE_LORA, VISION_LORA, PROJECTOR, LANGUAGE_FULL)
# The Train tab's choice; other combinations (LLaVA's stage 1 trains the projector alone) come from
# presets or spec.json.
TRAINS_CHOICES = (LANGUAGE_LORA, f"{LANGUAGE_LORA}+{VISION_LORA}", f"{LANGUAGE_LORA}+{PROJECTOR}", LANGUAGE_FULL)
SCHEDULES = ("cosine", "constant")
SCORE_TASKS = ("sivqa", "mivqa", "textqa")  # the multiple-choice tasks a job's checkpoints can be scored on
SCORE_METHODS = ("letter", "reply")  # how checkpoints are scored: backend/evaluation/scoring.py METHODS

# Settings this program no longer has: the value each had by default, and why any other value
# cannot be honoured. Every field is saved in a job's spec.json, so older job folders hold them; at
# the old default a retired setting asked for nothing and is dropped without a word.
RETIRED_SETTINGS: dict[str, tuple[Any, Problem]] = {
    # never run anywhere; a fine-tune beyond one GPU is sharded by torch's own FSDP2 ("shard")
    "deepspeed": ("", Problem("deepspeed_retired", "DeepSpeed is no longer supported: to split a model across GPUs, "
                              "remove \"deepspeed\" from the spec and set \"shard\": true (torch's FSDP2).")),
}

# Qwen2-VL's smallest picture is 56x56; below that no processor can make patches of it.
MIN_IMAGE_PIXELS = 56 * 56
# Far beyond any processor's budget (Qwen2-VL's largest is 12.8 MP); more is certainly a typo.
MAX_IMAGE_PIXELS = 50_000_000
MAX_NAME_LENGTH = 64  # a job's name, as a training set's (backend/data/library.py)


class SpecError(ValueError):
    """A spec that cannot run, with every reason in plain sentences."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


@dataclass
class JobSpec:
    # --- what to train, on what ---
    model: str = ""  # local model folder or hub id (the demo model's folder for the demo preset)
    data_file: str = ""  # training samples, LLaVA/XTuner JSON: [{"image": ..., "conversations": [...]}]
    image_root: str = ""  # image paths in the data are relative to this folder ("" = the data file's folder)
    eval_file: str = ""  # held-out samples in the same format ("" = no evaluation)
    output_dir: str = ""  # where everything is written; the job store sets it to <work>/jobs/<id>
    name: str = ""  # shown in the job list
    # A teaching job (Chat's "Train on my notes", teach.py): the taste notes it learned, and the saved
    # set whose samples were mixed in so the model does not forget the rest ("" and 0: none).
    notes: list[str] = field(default_factory=list)
    replay_set: str = ""
    replay_samples: int = 0

    # --- LoRA ---
    lora_r: int = 64  # rank of the update matrices
    lora_alpha: int = 128  # scale = alpha / r; alpha = 2r is the usual choice
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    # what trains: parts of TRAINED_PARTS joined by "+"; anything beyond the language model's LoRA
    # takes padded batches (a trained tower or projector changes the picture embeddings every step)
    trains: str = LANGUAGE_LORA
    # QLoRA: the frozen base's linear layers in 4-bit NF4 (bitsandbytes, on a GPU), LoRA computed in
    # bf16 on top; paged: bitsandbytes' paged AdamW, whose state moves to CPU memory under pressure
    qlora: bool = False
    paged_optimizer: bool = False
    # two stages (LLaVA, two_stage.py): the job this one waits for, and a checkpoint whose trained
    # projector this one starts from ("": none)
    after_job: str = ""
    projector_from: str = ""
    # Instead of any of `trains`: every weight of the language model trains (embeddings, layers, LM
    # head) in fp32 master weights, the vision tower and projector frozen, saved as whole model folders:
    # the sharded full fine-tune (with `shard`) of a model whose optimizer state one GPU cannot hold.
    # `trains`' "language-full" is the one-GPU way: the decoder layers in a peft adapter folder.
    full_language_model: bool = False

    # --- optimisation ---
    learning_rate: float = 1e-4  # peak learning rate, reached after warmup
    lr_schedule: str = "cosine"  # "cosine" decays to 0 by the last step; "constant" stays at the peak
    warmup_ratio: float = 0.03  # fraction of all steps spent ramping up linearly from 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # clip the gradient norm; 0 turns clipping off
    epochs: int = 1
    batch_size: int = 4  # samples per device per forward pass
    grad_accum: int = 1  # forward passes per optimiser step (effective batch = batch x accum x GPUs)
    seed: int = 42
    # every kernel in its deterministic form (torch.use_deterministic_algorithms): two runs of the same
    # job on the same GPU give the same losses, at some cost in speed. Off, a GPU's sums that add in a
    # varying order (attention's backward pass) make two runs drift apart by ~1e-4 relative.
    deterministic: bool = False

    # --- inputs ---
    max_image_pixels: int = 1024 * 768  # pictures are downscaled to at most this many pixels
    max_length: int = 2048  # tokens per sample, picture tokens included; longer answers are cut

    # --- checkpoints and evaluation ---
    save_every: int = 100  # optimiser steps between checkpoints (0 = only at the end)
    # Each checkpoint scored on multiple-choice questions right after it is written
    # (checkpoint_scores.py): a saved training set's folder (its held-out questions) or a FoodieQA
    # folder (its `score_task` questions); "" = not scored.
    score_set: str = ""
    score_task: str = "sivqa"
    score_lang: str = "zh"  # the language the questions are asked in
    score_batch: int = 16  # questions per batch
    # how a choice is read (backend/evaluation/scoring.py): "letter", the likeliest letter after the
    # answer's opening (one forward pass, no decoding), or "reply", parsed from a generated reply
    score_method: str = "letter"
    keep_best: bool = False  # the final adapter is the checkpoint with the best held-out accuracy
    early_stop_patience: int = 0  # stop after this many scorings without a better accuracy (0 = never)
    keep_last: int = 2  # checkpoints kept; older ones are deleted
    eval_every: int = 0  # optimiser steps between evaluations (0 = once per epoch)
    log_every: int = 1  # optimiser steps between lines of metrics.jsonl
    merge: bool = False  # also write base + adapter merged into one model folder (merged/)

    # --- hardware ---
    device: str = "auto"  # "auto" (a GPU when there is one), "cpu" or "cuda"
    gpus: int = 1  # GPUs for this job; more than one runs torchrun with DDP (or FSDP2 with shard)
    # FSDP2 (torch's fully_shard): the language model's weights, gradients and optimizer state split
    # across the job's processes instead of whole on each (sharding.py). For what one GPU cannot hold.
    shard: bool = False
    bf16: bool = True  # bf16 autocast on GPUs that support it (ignored on CPU, which trains in fp32)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    # Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL (families.py: fast_path): micro-batches packed end to end
    # without padding, picture embeddings computed once and reused across epochs, logits only for answer
    # tokens (packed.py). Off = padded batches.
    packed: bool = True
    # memory on the training device for those picture embeddings (and, in a job that scores its
    # checkpoints, as much again for the held-out photos' features: picture_memo.py)
    vision_cache_gb: float = 4.0
    pack_tokens: int = 16384  # tokens per packed row: a step's samples go through in rows this long
    fused_kernels: bool = True  # Liger's Triton RMSNorm/SwiGLU/rotary on GPUs, when liger-kernel is installed
    # packed path on a GPU: each decoder layer through torch.compile (fuses LoRA's dropout and the
    # elementwise work; takes the place of Liger's kernels and the one-node LoRA layers). Off: slower
    # than the default path since those (16.3 s against 13.9 s on an H200, 2026-12-01, plus 10-40 s
    # compiling; docs/training.md, bench/bench_train_speed.py --pack-tokens 16384:compile).
    compile_layers: bool = False
    data_workers: int = 2  # DataLoader processes decoding pictures (0 = in the training process)
    threads: int = 0  # CPU threads for torch (0 = torch's default: all cores)

    # ---- (de)serialisation ----

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Build a spec from JSON-like data; unknown names, wrong types and retired settings asking
        for something are SpecErrors."""
        data = _renamed_settings(data)
        known = {f.name: f for f in fields(cls)}
        problems = [Problem("unknown_setting", "There is no setting called {name!r}.", name=key)
                    for key in data if key not in known and key not in RETIRED_SETTINGS]
        problems += [RETIRED_SETTINGS[key][1] for key, value in data.items()
                     if key in RETIRED_SETTINGS and value != RETIRED_SETTINGS[key][0]]
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            default = getattr(cls(), key)
            try:
                values[key] = _coerce(value, default)
            except (TypeError, ValueError):
                kind = type(default).__name__
                if value is None:  # what an emptied number field in the Train tab sends
                    problems.append(Problem("empty_value", "{name} must be {kind_words}, it is empty.",
                                            name=key, kind=kind, kind_words=_type_word(default)))
                else:
                    problems.append(Problem("wrong_type", "{name} must be {kind_words}, not {value!r}.",
                                            name=key, kind=kind, kind_words=_type_word(default), value=value))
        if problems:
            raise SpecError(problems)
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> JobSpec:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    # ---- derived values ----

    @property
    def parts(self) -> frozenset[str]:
        """What trains, as a set of TRAINED_PARTS."""
        return trained_parts(self.trains)

    @property
    def lora_on_language(self) -> bool:
        return LANGUAGE_LORA in self.parts

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.gpus

    @property
    def images_dir(self) -> Path:
        return Path(self.image_root) if self.image_root else Path(self.data_file).parent

    def with_changes(self, **changes: Any) -> JobSpec:
        return replace(self, **changes)

    # ---- checks ----

    def problems(self, check_files: bool = True) -> list[Problem]:
        """Everything that makes this spec impossible to run, one sentence each (empty when fine)."""
        p: list[Problem] = []

        def add(key: str, sentence: str, **values: Any) -> None:
            p.append(Problem(key, sentence, **values))

        if not self.model.strip():
            add("no_model", "Choose a model: a local model folder or a hub id.")
        elif check_files and _looks_like_path(self.model) and not Path(self.model).expanduser().is_dir():
            add("model_missing", "The model folder {path} does not exist.", path=self.model)
        if not self.data_file.strip():
            add("no_data", "Choose the training data (a JSON file of conversations).")
        elif check_files and not Path(self.data_file).is_file():
            add("data_missing", "The training data file {path} does not exist.", path=self.data_file)
        if check_files and self.image_root and not Path(self.image_root).is_dir():
            add("images_missing", "The image folder {path} does not exist.", path=self.image_root)
        if check_files and self.eval_file and not Path(self.eval_file).is_file():
            add("heldout_missing", "The held-out data file {path} does not exist.", path=self.eval_file)

        if len(self.name) > MAX_NAME_LENGTH or any(c in "/\\" or unicodedata.category(c)[0] == "C" for c in self.name):
            add("job_name", "A job's name may have at most {limit} characters, and no '/', '\\' or control characters "
                "such as a line break.", limit=MAX_NAME_LENGTH)
        if self.lora_r < 1:
            add("lora_r", "The LoRA rank must be at least 1 (it is {value}).", value=self.lora_r)
        if self.lora_alpha <= 0:
            add("lora_alpha", "LoRA alpha must be above 0 (it is {value}).", value=self.lora_alpha)
        if not 0.0 <= self.lora_dropout < 1.0:
            add("lora_dropout", "LoRA dropout must be at least 0 and below 1 (it is {value}).", value=self.lora_dropout)
        if not self.target_modules:
            add("no_targets", "Name at least one target module for LoRA (for example q_proj, v_proj).")
        elif not all(isinstance(m, str) and (m.isidentifier() or m == ALL_LINEAR) for m in self.target_modules):
            add("bad_targets", "Target modules must be plain module names such as q_proj (no patterns or dots).")

        p += trains_problems(self)

        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            add("learning_rate", "The learning rate must be above 0 (it is {value}).", value=self.learning_rate)
        elif self.learning_rate > 1:
            add("learning_rate_huge", "A learning rate of {value} would destroy the model; use something "
                "like 1e-4 (LoRA on a 2B model) to 2e-3 (the demo model).", value=self.learning_rate)
        if self.lr_schedule not in SCHEDULES:
            add("schedule", "The learning-rate schedule must be one of {choices}.", choices=", ".join(SCHEDULES))
        if not 0.0 <= self.warmup_ratio < 1.0:
            add("warmup", "The warmup ratio must be at least 0 and below 1 (it is {value}).", value=self.warmup_ratio)
        if self.weight_decay < 0:
            add("weight_decay", "Weight decay cannot be negative.")
        if self.max_grad_norm < 0:
            add("grad_norm", "The gradient clipping norm cannot be negative (0 turns clipping off).")
        if self.epochs < 1:
            add("epochs", "Train for at least 1 epoch (it is {value}).", value=self.epochs)
        if self.batch_size < 1:
            add("batch_size", "The batch size must be at least 1 (it is {value}).", value=self.batch_size)
        if self.grad_accum < 1:
            add("grad_accum", "Gradient accumulation must be at least 1 step (it is {value}).", value=self.grad_accum)

        if self.max_image_pixels < MIN_IMAGE_PIXELS:
            add("pixels_small", "Pictures of {value} pixels are too small to see anything; allow at "
                "least {least} (56x56), better 448x448 or more.", value=self.max_image_pixels, least=MIN_IMAGE_PIXELS)
        elif self.max_image_pixels > MAX_IMAGE_PIXELS:
            add("pixels_huge", "{value} pixels per picture is far more than any model uses; "
                "1024x768 (786432) is plenty.", value=self.max_image_pixels)
        if self.max_length < 64:
            add("max_length", "A sample must be allowed at least 64 tokens (it is {value}).", value=self.max_length)

        if self.save_every < 0:
            add("save_every", "Save every N steps needs N of 0 (only at the end) or more.")
        if self.keep_last < 1:
            add("keep_last", "Keep at least the last checkpoint (keep last must be 1 or more).")
        if self.eval_every < 0:
            add("eval_every", "Evaluate every N steps needs N of 0 (once per epoch) or more.")
        if self.log_every < 1:
            add("log_every", "Log every N steps needs N of 1 or more.")
        if check_files and self.score_set and not Path(self.score_set).is_dir():
            add("score_set_missing", "The evaluation set's folder {path} does not exist.", path=self.score_set)
        if self.score_task not in SCORE_TASKS:
            add("score_task", "The evaluation task must be one of {choices}.", choices=", ".join(SCORE_TASKS))
        if self.score_lang not in ("zh", "en"):
            add("score_lang", "The evaluation questions are asked in zh or en (not {value!r}).", value=self.score_lang)
        if self.score_method not in SCORE_METHODS:
            add("score_method", "Checkpoints are scored by the likeliest letter (letter) or by reading replies "
                "(reply), not {value!r}.", value=self.score_method)
        if self.score_batch < 1:
            add("score_batch", "Score at least 1 question per batch (it is {value}).", value=self.score_batch)
        if self.early_stop_patience < 0:
            add("early_stop_patience", "Early stopping's patience cannot be negative (0 turns it off).")
        if (self.keep_best or self.early_stop_patience) and not self.score_set:
            add("best_needs_scores", "Keeping the best checkpoint and stopping early need an evaluation set to "
                "score the checkpoints on.")
        if self.score_set and (self.shard or self.full_language_model):
            add("scores_need_lora", "Checkpoints are scored while training only in LoRA jobs that are not sharded; "
                "score this job's checkpoints in Compare after it ends.")
        if self.merge and self.full_language_model:
            add("merge_full", "A full fine-tune of the language model writes a whole model already; there is no "
                "adapter to merge (turn merge off).")
        elif self.merge and self.shard:
            add("merge_sharded", "A sharded job writes its adapter only; merge it into the base after the job "
                "ends (turn merge off).")
        if self.shard and self.compile_layers:
            add("shard_compiled", "Compiled layers and sharding cannot be combined yet; turn one of them off.")
        if self.full_language_model and (self.trains != LANGUAGE_LORA or self.qlora):
            add("full_and_trains", "A full fine-tune of the language model already trains all of it; leave what "
                "trains at the language model's LoRA and QLoRA off.")
        if self.shard and (self.trains != LANGUAGE_LORA or self.qlora):
            add("shard_trains", "A sharded job trains the language model's LoRA or, with full_language_model, the "
                "whole language model; other choices of what trains, and QLoRA, run unsharded.")

        if self.device not in DEVICES:
            add("device", "The device must be one of {choices} (it is {value!r}).",
                choices=", ".join(DEVICES), value=self.device)
        if self.gpus < 1:
            add("gpus", "A job needs at least 1 GPU slot (use device cpu to train without a GPU).")
        elif self.gpus > 1 and self.device == "cpu":
            add("gpus_on_cpu", "Several GPUs were asked for, but the device is cpu.")
        if self.pack_tokens < 1:
            add("pack_tokens", "Tokens per packed row must be at least 1.")
        if not (self.vision_cache_gb >= 0 and math.isfinite(self.vision_cache_gb)):
            add("vision_cache", "The picture-embedding cache size cannot be negative (0 turns the cache off).")
        if self.data_workers < 0:
            add("data_workers", "Data workers cannot be negative.")
        if self.threads < 0:
            add("threads", "CPU threads cannot be negative (0 means all cores).")
        return p

    def validate(self, check_files: bool = True) -> JobSpec:
        """Raise SpecError listing every problem; return self when the spec can run."""
        problems = self.problems(check_files)
        if problems:
            raise SpecError(problems)
        return self


def trained_parts(trains: str) -> frozenset[str]:
    return frozenset(part.strip() for part in trains.split("+") if part.strip())


def trains_problems(spec: JobSpec) -> list[Problem]:
    """What is wrong with the spec's `trains`, `qlora`, `paged_optimizer` and two-stage settings
    (whether the model has the parts asked for is known once it loads: trained_parts.py)."""
    p: list[Problem] = []
    parts = spec.parts
    unknown = sorted(parts - set(TRAINED_PARTS))
    if unknown or not parts:
        p.append(Problem("trains_unknown", "What trains is made of {choices} joined by +; {value!r} is not.",
                         choices=", ".join(TRAINED_PARTS), value=spec.trains))
    if {LANGUAGE_LORA, LANGUAGE_FULL} <= parts:
        p.append(Problem("trains_language_twice", "The language model trains either with LoRA or whole, not both."))
    if spec.qlora and LANGUAGE_FULL in parts:
        p.append(Problem("qlora_full", "QLoRA keeps the base model in 4 bits, so the whole language model cannot "
                         "train with it: choose LoRA on the language model, or turn QLoRA off."))
    if spec.qlora and spec.device == "cpu":
        p.append(Problem("qlora_cpu", "QLoRA needs a GPU (bitsandbytes' 4-bit kernels run on CUDA); set Device to "
                         "auto or cuda, or turn QLoRA off."))
    if spec.paged_optimizer and not spec.qlora:
        p.append(Problem("paged_without_qlora", "The paged optimizer comes with QLoRA (bitsandbytes); turn QLoRA on "
                         "or the paged optimizer off."))
    if spec.projector_from and PROJECTOR not in parts:
        p.append(Problem("projector_from_untrained", "Starting from another checkpoint's projector needs the "
                         "projector among what trains (add +projector)."))
    return p


def _renamed_settings(data: dict[str, Any]) -> dict[str, Any]:
    """Older spec.json files said `lora_vision: true` for what `trains` now says."""
    if "lora_vision" not in data:
        return data
    data = dict(data)
    vision = data.pop("lora_vision")
    if vision is True and "trains" not in data:
        data["trains"] = f"{LANGUAGE_LORA}+{VISION_LORA}"
    elif not isinstance(vision, bool):
        data["lora_vision"] = vision  # reported as an unknown setting: a typo, not an old file
    return data


def _looks_like_path(location: str) -> bool:
    # A hub id is "owner/name" and nothing else; anything else is meant as a folder.
    return location.startswith(("/", ".", "~")) or location.count("/") != 1 or Path(location).exists()


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise TypeError
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError
        return value
    if isinstance(default, list):
        if isinstance(value, str):
            value = [part.strip() for part in value.replace(",", " ").split() if part.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise TypeError
        return list(value)
    return value


def _type_word(default: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text",
            list: "a list of names"}.get(type(default), type(default).__name__)


# ---- presets -------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # The demo model (a tiny Qwen2-VL) on the bundled 36 pictures, on a laptop CPU in about a minute.
    # Tuned (bench/bench_training.py) so the tuned model answers >= 90% of the trained questions exactly.
    "demo-cpu": dict(
        lora_r=32, lora_alpha=64, lora_dropout=0.0,
        learning_rate=3e-3, lr_schedule="cosine", warmup_ratio=0.05, weight_decay=0.0,
        epochs=10, batch_size=8, grad_accum=1,
        max_image_pixels=112 * 112, max_length=256,
        save_every=30, keep_last=2, eval_every=0,
        device="cpu", gpus=1, bf16=False, gradient_checkpointing=False, data_workers=0,
        # One thread: on a busy 2-core box a second thread mostly spins waiting for the first
        # (measured: 8-10 s vs 10-20 s of training at load 4; 8 s vs 5 s when the box is idle).
        threads=1,
    ),
    # A 2B model (InternVL2-2B, Qwen2-VL-2B) on one GPU, as the course trained it.
    "2b-gpu": dict(
        lora_r=128, lora_alpha=256, lora_dropout=0.05,
        learning_rate=3e-5, lr_schedule="cosine", warmup_ratio=0.03, weight_decay=0.0,
        epochs=3, batch_size=4, grad_accum=4,
        max_image_pixels=1024 * 768, max_length=2048,
        save_every=100, keep_last=3, eval_every=0,
        # Checkpointing on, so the 2B recipe fits a 16-24 GB card: with packed rows (Qwen2-VL)
        # 9.9 GB peak at 4.2x the plain recipe's speed; off, 1.5x faster again at 44 GB (H100,
        # 2026-12-07, bench/README.md "The training fast path against the plain recipe").
        device="cuda", gpus=1, bf16=True, gradient_checkpointing=True, data_workers=4,
    ),
    # A 7B/8B model (Qwen2.5-VL-7B, Qwen3-VL-8B, LLaVA-1.5-7B) on one 24 GB GPU: the base's linear layers
    # in 4-bit NF4 (QLoRA), LoRA r=16 on every linear layer of the language model, checkpointing on.
    # Measured: bench/bench_qlora.py (bench/README.md "QLoRA").
    "7b-qlora-24gb": dict(
        qlora=True, paged_optimizer=False,
        lora_r=16, lora_alpha=32, lora_dropout=0.05,
        learning_rate=1e-4, lr_schedule="cosine", warmup_ratio=0.03, weight_decay=0.0,
        epochs=3, batch_size=4, grad_accum=4,
        max_image_pixels=1024 * 768, max_length=2048,
        save_every=100, keep_last=3, eval_every=0,
        device="cuda", gpus=1, bf16=True, gradient_checkpointing=True, data_workers=4, vision_cache_gb=1.0,
    ),
    # LLaVA's two stages (two_stage.py): these are stage 2's settings, LoRA on the language model and the
    # projector trained on, from stage 1's projector; stage 1 first trains the projector alone on
    # caption pairs (two_stage.STAGE_1). LLaVA-1.5's LoRA recipe: r=128, alpha=256, lr 2e-4.
    "llava-two-stage": dict(
        trains="language-lora+projector",
        lora_r=128, lora_alpha=256, lora_dropout=0.05,
        learning_rate=2e-4, lr_schedule="cosine", warmup_ratio=0.03, weight_decay=0.0,
        epochs=1, batch_size=4, grad_accum=4,
        max_image_pixels=336 * 336, max_length=2048,
        save_every=100, keep_last=2, eval_every=0,
        device="auto", gpus=1, bf16=True, gradient_checkpointing=True,
    ),
}
TWO_STAGE_PRESETS = ("llava-two-stage",)  # presets whose Start queues two jobs (two_stage.py)


def preset(preset_name: str, /, **overrides: Any) -> JobSpec:
    """A spec from a named preset, with `overrides` (model, data_file, ...) applied on top."""
    if preset_name not in PRESETS:
        raise SpecError([Problem("unknown_preset", "There is no preset called {name!r}; choose one of {choices}.",
                                 name=preset_name, choices=", ".join(PRESETS))])
    return JobSpec.from_dict({**PRESETS[preset_name], **overrides})
