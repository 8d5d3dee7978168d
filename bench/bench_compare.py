"""Compare-tab costs: memory of base + two adapters, and batched vs one-at-a-time scoring.

    python bench/bench_compare.py                  # demo model, CPU, 64 questions
    python bench/bench_compare.py --questions 128 --batch 32

Memory: the bytes of every parameter and buffer the model holds, with the base alone and then
with two LoRA adapters loaded beside it (r=16 on all language-model projections, the shape our
training writes), against the bar: base + the adapters' own weights + 5%. Process RSS is shown
too, but it is noisy (allocator caching), so the bar is judged on tensor bytes.

Scoring: the same questions (the bundled single-image sample, repeated to --questions) scored
with batch 1 and with --batch, greedy, in the same run; the ratio is the speed-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.data import read_bundled_sample  # noqa: E402
from backend.evaluation.scoring import score  # noqa: E402
from backend.inference.transformers_engine import TransformersEngine  # noqa: E402
from backend.models.demo import ensure_demo_model  # noqa: E402
from backend.models.loading import load, resolve  # noqa: E402


def tensor_bytes(model: torch.nn.Module) -> int:
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total


def language_model_projections(model: torch.nn.Module) -> list[str]:
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    return [n for n, m in model.named_modules() if ".language_model." in f".{n}" and n.endswith(names)
            and isinstance(m, torch.nn.Linear)]


def write_adapter(model_dir: str, out: Path, seed: int) -> int:
    from peft import LoraConfig, get_peft_model

    base = load(resolve(model_dir)).model
    torch.manual_seed(seed)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=language_model_projections(base),
                        init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out)
    return sum(f.stat().st_size for f in out.glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    process = psutil.Process(os.getpid())

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = ensure_demo_model(tmp / "work")
        adapter_bytes = [write_adapter(source.location, tmp / f"adapter{i}", i) for i in range(2)]

        engine = TransformersEngine(load(source))
        base_bytes, base_rss = tensor_bytes(engine.loaded.model), process.memory_info().rss
        for i in range(2):
            engine.load_adapter(f"adapter{i}", str(tmp / f"adapter{i}"))
        both_bytes, both_rss = tensor_bytes(engine.loaded.model), process.memory_info().rss
        bar = (base_bytes + sum(adapter_bytes)) * 1.05

        questions = [r for r in read_bundled_sample().records if r.task == "sivqa"]
        questions = (questions * (args.questions // len(questions) + 1))[: args.questions]
        score(engine, questions[:4], batch_size=4)  # warm-up: first calls pay one-off costs
        one = score(engine, questions, batch_size=1)
        batched = score(engine, questions, batch_size=args.batch)
        assert [q.reply for q in one.questions] == [q.reply for q in batched.questions], "batching changed replies"

    mib = 1024 * 1024
    print("| memory (demo model, CPU) | bytes |")
    print("|---|---|")
    print(f"| base alone: tensors | {base_bytes / mib:.2f} MiB (RSS {base_rss / mib:.0f} MiB) |")
    print(f"| two adapters' own weights (safetensors) | {sum(adapter_bytes) / mib:.2f} MiB |")
    print(f"| base + two adapters loaded: tensors | {both_bytes / mib:.2f} MiB (RSS {both_rss / mib:.0f} MiB) |")
    print(f"| bar: base + adapters + 5% | {bar / mib:.2f} MiB: {'met' if both_bytes <= bar else 'NOT met'} |")
    print()
    print(f"| scoring {len(questions)} single-image questions | seconds | questions/s |")
    print("|---|---|---|")
    print(f"| one at a time (baseline) | {one.seconds:.2f} | {len(questions) / one.seconds:.1f} |")
    print(f"| batched, {args.batch} at a time | {batched.seconds:.2f} | {len(questions) / batched.seconds:.1f} |")
    print(f"| speed-up | {one.seconds / batched.seconds:.1f}x | |")


if __name__ == "__main__":
    main()
