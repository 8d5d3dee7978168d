"""Runs LMDeploy's CLI with its picture preprocessing made fit for bursts of photo questions.

    <lmdeploy's python> lmdeploy_launch.py --preprocess-threads 8 serve api_server MODEL ...
    (--keep-picture-dtype: leave the second change out)

Two changes to LMDeploy 0.18's `ImageEncoder` (lmdeploy/vl/engine.py), on the PyTorch backend only,
and otherwise LMDeploy's own CLI unchanged:
- It preprocesses every picture through the model's Hugging Face image processor in a pool of
  exactly one thread. For a burst of photo questions, such as scoring a benchmark, that one thread
  is where requests queue while the GPU waits; this script gives the pool more threads. (TurboMind
  also runs its vision model through the pool, so its pool is left alone.)
- For models with their own (older style) `preprocess`, such as Qwen2-VL's, the processor's float32
  patches are pickled as they are to the engine process, 19 MB for a 1036x756 photo, and only cast
  to the model's dtype in its forward. Casting them here, as LMDeploy's newer-style models already
  do (`mm_feature_dtype`), halves the bytes, and the hand-over of a 1036x756 photo takes 5.4 ms
  instead of 18.4 on a CPU (bench/bench_picture_handover.py); the values the vision tower sees are
  the same.

It runs under LMDeploy's interpreter (its own venv), so it imports nothing from this project.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor


def split_threads(argv: list[str]) -> tuple[int, list[str]]:
    """(threads, the rest of argv) from `--preprocess-threads N` anywhere in argv (default 1)."""
    rest, threads = [], 1
    items = iter(argv)
    for item in items:
        if item == "--preprocess-threads":
            threads = int(next(items))
        elif item.startswith("--preprocess-threads="):
            threads = int(item.split("=", 1)[1])
        else:
            rest.append(item)
    if threads < 1:
        raise SystemExit("--preprocess-threads must be at least 1")
    return threads, rest


def split_flag(argv: list[str], flag: str) -> tuple[bool, list[str]]:
    """(whether flag is in argv, argv without it)."""
    return flag in argv, [item for item in argv if item != flag]


PICTURE_KEYS = ("pixel_values", "pixel_values_videos")


def in_dtype(preprocess, dtype):
    """`preprocess` (an older-style LMDeploy vision model's) with its picture tensors cast to dtype."""
    import torch

    def run(messages):
        messages = preprocess(messages)
        for message in messages:
            if message.get("role") != "preprocess":
                continue
            for item in message["content"]:
                for key in PICTURE_KEYS:
                    value = item.get(key)
                    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
                        item[key] = value.to(dtype)
        return messages

    return run


def adapt_image_encoder(encoder_class: type, threads: int, cast: bool = True) -> None:
    """Make every new `encoder_class` (LMDeploy's ImageEncoder) on the PyTorch backend preprocess in
    `threads` threads and, with `cast`, hand over pictures in the model's dtype."""
    original_init = encoder_class.__init__

    def init(self, model_path, backend, *args, **kwargs):
        original_init(self, model_path, backend, *args, **kwargs)
        if backend != "pytorch":
            return
        if threads > 1:
            self.executor.shutdown(wait=False)
            self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess")
            print(f"foodie: pictures are preprocessed in {threads} threads", file=sys.stderr, flush=True)
        model, dtype = getattr(self, "model", None), getattr(self, "mm_feature_dtype", None)
        if cast and model is not None and dtype is not None and not getattr(self, "_uses_new_preprocess", True):
            model.preprocess = in_dtype(model.preprocess, dtype)
            print(f"foodie: pictures are handed to the engine in {dtype}", file=sys.stderr, flush=True)

    encoder_class.__init__ = init


def main() -> None:
    # Run as a script, its own folder comes first on sys.path; its modules (engine.py, ...) must
    # not stand in for anything LMDeploy or its dependencies import.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    threads, rest = split_threads(sys.argv[1:])
    keep_dtype, rest = split_flag(rest, "--keep-picture-dtype")  # LMDeploy's own way, for benchmarks
    from lmdeploy.vl.engine import ImageEncoder

    adapt_image_encoder(ImageEncoder, threads, cast=not keep_dtype)
    from lmdeploy.cli import run

    sys.argv = ["lmdeploy", *rest]
    run()


if __name__ == "__main__":
    main()
