"""Runs LMDeploy's CLI with its picture preprocessing spread over several threads.

    <lmdeploy's python> lmdeploy_launch.py --preprocess-threads 8 serve api_server MODEL ...

LMDeploy 0.18's server preprocesses every picture (decoded elsewhere, in a thread pool) through
the model's Hugging Face image processor in a pool of exactly one thread (`ImageEncoder.executor`
in lmdeploy/vl/engine.py). For a burst of photo questions, such as scoring a benchmark, that one
thread is where requests queue while the GPU waits. This script gives that pool more threads and
otherwise runs LMDeploy's own CLI unchanged. It only widens the pool on the PyTorch backend, where
the pool does nothing but preprocessing (TurboMind also runs its vision model through it).

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


def widen_preprocessing(encoder_class: type, threads: int) -> None:
    """Make every new `encoder_class` (LMDeploy's ImageEncoder) preprocess in `threads` threads."""
    original_init = encoder_class.__init__

    def init(self, model_path, backend, *args, **kwargs):
        original_init(self, model_path, backend, *args, **kwargs)
        if backend == "pytorch" and threads > 1:
            self.executor.shutdown(wait=False)
            self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess")
            print(f"foodie: pictures are preprocessed in {threads} threads", file=sys.stderr, flush=True)

    encoder_class.__init__ = init


def main() -> None:
    # Run as a script, its own folder comes first on sys.path; its modules (engine.py, ...) must
    # not stand in for anything LMDeploy or its dependencies import.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    threads, rest = split_threads(sys.argv[1:])
    if threads > 1:
        from lmdeploy.vl.engine import ImageEncoder

        widen_preprocessing(ImageEncoder, threads)
    from lmdeploy.cli import run

    sys.argv = ["lmdeploy", *rest]
    run()


if __name__ == "__main__":
    main()
