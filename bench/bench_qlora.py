"""QLoRA on a 7B shape, on a GPU: our QLoRA's peak memory against our bf16 LoRA's, and its speed against
the plain peft + bitsandbytes recipe, in one process and one run, on the same data and settings.

    python3 bench/bench_qlora.py             # H100: Qwen2.5-VL-7B's shape, 48 samples x 2 epochs, ~4 min
    python3 bench/bench_qlora.py --dry-run   # a narrow model on a CPU: everything but the 4-bit kernels

Model: Qwen2.5-VL-7B-Instruct's published config with random weights (speed and memory do not depend on
weight values), built here and saved once under the work folder. Data: photo-sized pictures (640x480 ..
1024x768) with 10-40 token answers (bench_training.make_photo_samples), the shape of FoodieQA's
questions. Settings for all three runs: the 7b-qlora-24gb preset (LoRA r=16, alpha=32 on every linear
layer of the language model, gradient checkpointing, AdamW lr 1e-4), batch 4, no accumulation.

Runs, each after the one before has freed the GPU:
1. ours, bf16 LoRA: backend/training/lora.py's train() with qlora off (the fast path: packed rows,
   cached pictures, logits on answers only);
2. ours, QLoRA: the same with qlora on (qlora.py: NF4 base, LoRA as one node over dequantized weights);
3. the plain peft + bitsandbytes recipe (plain_loop.py with qlora: the same 4-bit base, peft's
   prepare_model_for_kbit_training, padded batches, the model's own forward with labels).
Peak memory is torch's max_memory_allocated from the model's loading to the last step. Speed is
samples/s after the first two steps of each run (first-use costs: kernels loading, the allocator).

Bars (issue 30): QLoRA's peak <= 40% of bf16 LoRA's and <= 22 GB; QLoRA's samples/s >= 1.5x the plain
recipe's. Checks: the first step's loss (adapters still zero: the base's loss) of our QLoRA and the
plain recipe agree within 1e-2 (relative); a small QLoRA job (the narrow model, in 4 bits) with merge
on: its merged model (bf16, from the dequantized base) gives the loss that the 4-bit base + adapter
give on one batch, within 1e-2.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_training import make_photo_samples  # noqa: E402

# Qwen/Qwen2.5-VL-7B-Instruct's config.json (values as published)
QWEN2_5_VL_7B = dict(
    text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
              num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
              rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
              tie_word_embeddings=False),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu"))
# The same layout, narrow, for --dry-run on a CPU
DRY = dict(
    text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=4096, max_position_embeddings=32768, rms_norm_eps=1e-6,
              rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 6, 6]},
              tie_word_embeddings=False),
    vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
                tokens_per_second=2, hidden_act="silu"))


def build_shape(folder: Path, shape: dict) -> Path:
    """A Qwen2.5-VL model of `shape` with random bf16 weights, saved as a checkpoint is, with a processor
    keeping up to 1024x768 pixels and a chat template without generation markers (as the real one)."""
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLConfig, Qwen2VLImageProcessorPil

    from backend.models.families import no_video_processor_class
    from backend.models.tiny import FAMILIES, train_tokenizer

    if (folder / "config.json").is_file():
        return folder
    tokenizer = train_tokenizer(FAMILIES["qwen2_5_vl"])
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=dict(shape["text"], bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                         pad_token_id=ids("<|endoftext|>")),
        vision_config=shape["vision"], image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    images = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=1024 * 768)
    processor = no_video_processor_class("qwen2_5_vl")(image_processor=images, tokenizer=tokenizer,
                                                       chat_template=tokenizer.chat_template)
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    partial.rename(folder)
    print(f"built a random Qwen2.5-VL model ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters) "
          f"at {folder}", flush=True)
    return folder


def spec_for(model: Path, data: Path, out: Path, epochs: int, dry_run: bool, **changes):
    from backend.training.spec import preset

    settings = dict(model=str(model), data_file=str(data), output_dir=str(out), epochs=epochs, batch_size=4,
                    grad_accum=1, save_every=0, device="auto")
    if dry_run:  # no 4-bit on a CPU: every run goes the same way but with the base in full precision
        settings.update(qlora=False, max_image_pixels=224 * 224, data_workers=0)
    return preset("7b-qlora-24gb", **{**settings, **changes})


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")


def samples_per_s(step_ends: list[float], step_samples: list[int], skip: int = 2) -> float:
    """Samples per second over the steps after the first `skip` (their first-use costs left out)."""
    if len(step_ends) <= skip:
        return float("nan")
    return sum(step_samples[skip:]) / (step_ends[-1] - step_ends[skip - 1])


def run_ours(spec, device: torch.device) -> dict:
    from backend.training.job_folder import JobFiles, read_metrics
    from backend.training.lora import train
    from backend.training.processes import StopFlag

    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    reset_peak(device)
    started = time.monotonic()
    if train(spec, files, StopFlag()) != 0:
        raise SystemExit(f"our training program failed; see {files.log}")
    records = [r for r in read_metrics(files.metrics) if "loss" in r]
    return {"losses": [r["loss"] for r in records], "peak_gb": peak_gb(device),
            "samples_per_s": samples_per_s([r["elapsed_s"] for r in records], [r["samples"] for r in records]),
            "process_s": time.monotonic() - started,
            # what memory.py's estimate needs: samples and tokens over the run
            "counts": {"samples": sum(r["samples"] for r in records), "tokens": sum(r["tokens"] for r in records)}}


def run_plain(spec, device: torch.device) -> dict:
    from backend.training.plain_loop import train_plain

    reset_peak(device)
    started = time.monotonic()
    run = train_plain(spec, device)
    result = {"losses": run.losses, "peak_gb": peak_gb(device), "process_s": time.monotonic() - started,
              "samples_per_s": samples_per_s(run.step_ends, [spec.batch_size] * len(run.step_ends))}
    del run
    return result


def merge_check(model: Path, data: Path, workdir: Path, device: torch.device, dry_run: bool) -> float:
    """A small QLoRA job with merge on: its merged model (bf16, from the dequantized base) against the 4-bit
    base + its adapter, on the same batch. Returns the relative difference of the two losses. (A dry run
    has no 4-bit base: the same check, in fp32.)"""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from backend.models.loading import load_processor, resolve
    from backend.training.encoding import SampleDataset, collate
    from backend.training.qlora import four_bit_config
    from backend.training.samples import read_samples
    from backend.training.steps import answer_loss

    spec = spec_for(model, data, workdir / "merge-check", 2, dry_run, merge=True, learning_rate=1e-2)
    run_ours(spec, device)
    samples, _ = read_samples(data, spec.images_dir)
    processor = load_processor(resolve(str(model)))
    encoded = SampleDataset(samples[:4], processor, spec.max_image_pixels, spec.max_length)
    batch = collate([encoded[i] for i in range(4)], processor.tokenizer.pad_token_id)
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch.pop("labels")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def loss_of(network) -> float:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return float(answer_loss(network(**batch).logits, labels) / (labels[:, 1:] != -100).sum())

    four_bit = {} if dry_run else dict(device_map={"": str(device)}, quantization_config=four_bit_config("qwen2_5_vl"))
    base = AutoModelForImageTextToText.from_pretrained(model, dtype=dtype, **four_bit).to(device).eval()
    untrained = loss_of(base)
    trained = loss_of(PeftModel.from_pretrained(base, str(Path(spec.output_dir) / "adapter")).eval())
    del base
    reset_peak(device)
    merged = loss_of(AutoModelForImageTextToText.from_pretrained(Path(spec.output_dir) / "merged",
                                                                 dtype=dtype).to(device).eval())
    print(f"merge check: loss {untrained:.5f} without the adapter, {trained:.5f} with it, {merged:.5f} merged",
          flush=True)
    return abs(merged - trained) / abs(trained)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="work folder (default: a fresh temporary one)")
    parser.add_argument("--dry-run", action="store_true", help="a narrow model and 8 samples, to check it on a CPU")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-qlora-"))
    count = 8 if args.dry_run else args.samples
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    t0 = time.monotonic()
    model = build_shape(workdir / "models" / ("dry" if args.dry_run else "qwen2.5-vl-7b-shape"),
                        DRY if args.dry_run else QWEN2_5_VL_7B)
    data = make_photo_samples(workdir / "photos", count=count)
    small = make_photo_samples(workdir / "merge-photos", count=8, seed=1)
    print(f"model and data ready in {time.monotonic() - t0:.0f} s", flush=True)

    results = {}
    for label, qlora in (("ours, bf16 LoRA", False), ("ours, QLoRA", True)):
        results[label] = run_ours(spec_for(model, data, workdir / label.replace(", ", "-").replace(" ", "-"),
                                           args.epochs, args.dry_run, qlora=qlora and not args.dry_run), device)
        print(f"{label}: {results[label]['process_s']:.0f} s", flush=True)
    label = "plain peft + bitsandbytes"
    results[label] = run_plain(spec_for(model, data, workdir / "plain", args.epochs, args.dry_run,
                                        qlora=not args.dry_run), device)
    print(f"{label}: {results[label]['process_s']:.0f} s", flush=True)
    # the merge check's numbers do not depend on size: the narrow model, in 4 bits on a GPU
    merged_diff = merge_check(build_shape(workdir / "models" / "dry", DRY), small, workdir, device, args.dry_run)

    machine = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run: no 4-bit)"
    print(f"\n{machine}, torch {torch.__version__}; {count} samples x {args.epochs} epochs, batch 4; total "
          f"{time.monotonic() - t0:.0f} s\n")
    print("| run | samples/s | peak GPU memory | loss, first step / last step |")
    print("|---|---:|---:|---|")
    for name, run in results.items():
        print(f"| {name} | {run['samples_per_s']:.2f} | {run['peak_gb']:.1f} GB | "
              f"{run['losses'][0]:.4f} / {run['losses'][-1]:.4f} |")
    ours, bf16, plain = results["ours, QLoRA"], results["ours, bf16 LoRA"], results[label]
    first = abs(ours["losses"][0] - plain["losses"][0]) / abs(plain["losses"][0])
    print(f"\nQLoRA peak {ours['peak_gb']:.1f} GB = {ours['peak_gb'] / bf16['peak_gb']:.0%} of bf16 LoRA's "
          f"(bars: 40% and 22 GB); samples/s {ours['samples_per_s'] / plain['samples_per_s']:.2f}x the plain "
          f"recipe's (bar 1.5x)")
    print(f"first step's loss, ours against the plain recipe: relative difference {first:.1e} (bar 1e-2)")
    print(f"merged QLoRA model against {'the base' if args.dry_run else '4-bit base'} + adapter, one batch: "
          f"relative loss difference {merged_diff:.1e} (bar 1e-2)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "first_step_difference": first,
                                         "merged_difference": merged_diff}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # as the training program sets it
    main()
