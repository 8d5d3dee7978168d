"""Serving on a GPU: LMDeploy through our engine vs. LMDeploy called directly vs. transformers.

    python bench/bench_serving_gpu.py --workdir /tmp/serve     # on a GPU machine with LMDeploy
    python bench/bench_serving_gpu.py --family qwen3_vl --out serving-qwen3_vl.json   # (or internvl, qwen3_5)

Builds (once) a random-weight model of Qwen2-VL-2B-Instruct's shape in bf16 (speed does not depend
on weight values; see shared/GPU.md) and FoodieQA-shaped data (bench/fake_foodieqa.py), starts
`lmdeploy serve api_server` through our LMDeployServer, and measures, in one run:

1. one chat stream with a 448x448 photo, 128 new tokens (ignore_eos): first-token time and
   tokens/s, through our LMDeployEngine (the app's chat path) vs. a bare HTTP client on the same
   server (LMDeploy called directly); tokens/s against the bandwidth bound (weight bytes / 3 TB/s);
2. 32 chats at once through our engine vs. transformers' batched generate on the same model;
3. scoring 256 single-image questions (image encoding included) through our scorer;
4. base + one LoRA adapter served from one engine: do their answers differ? (both answers, and
   transformers + peft's answers for the same adapter, recorded)

With --family, the published 2B checkpoint of that family (bench/published_models.py: Qwen3-VL-2B,
InternVL3.5-2B-HF or Qwen3.5-2B, random weights) instead, and parts 1 and 3 only: one stream against
the bandwidth bound, and scoring 256 photo questions.

Prints a table and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import torch  # noqa: E402

from backend.inference.engine import GenerationSettings, Turn  # noqa: E402
from backend.inference.lmdeploy_engine import (  # noqa: E402
    PATCH_GRID,
    LMDeployEngine,
    request_body,
    stream_pieces,
    to_openai_messages,
)
from backend.inference.lmdeploy_server import LMDeployServer, ServerOptions  # noqa: E402

NEW_TOKENS = 128
BANDWIDTH = 3.0e12  # H100 SXM HBM3, bytes/s (about; the H200 has 4.8e12)


def build(workdir: Path, family: str | None = None) -> tuple[Path, Path]:
    from backend.models.tiny import QWEN2_VL_2B, build_tiny_model
    sys.path.insert(0, str(ROOT / "bench"))
    from fake_foodieqa import make
    from published_models import build_published
    from transformers import AutoTokenizer

    model_dir, data_dir = workdir / (f"{family}-2b-random" if family else "qwen2vl-2b-random"), workdir / "data"
    if not (model_dir / "config.json").exists():
        start = time.perf_counter()
        if family:
            build_published(family, model_dir)
        else:
            build_tiny_model("qwen2_vl", model_dir, QWEN2_VL_2B, device="cuda", dtype=torch.bfloat16)
        only_text_tokens(model_dir, AutoTokenizer.from_pretrained(model_dir))
        print(f"built the 2B model in {time.perf_counter() - start:.1f}s", flush=True)
    if not (data_dir / "sivqa_tidy.json").exists():
        make(data_dir, 256, 256, AutoTokenizer.from_pretrained(model_dir))
    return model_dir, data_dir


def only_text_tokens(model_dir: Path, tokenizer) -> None:
    """Zero the (tied) embedding rows of every id that is no plain text token: ids past the tokenizer
    (the built model's vocabulary is Qwen2-VL's 151,936, its tokenizer far smaller) and special or
    added tokens. A random model otherwise mostly picks ids that decode to nothing, and an empty
    answer hides both the stream's pieces and any difference an adapter makes (seen on the H200).
    Speed does not depend on these values."""
    from safetensors.torch import load_file, save_file

    for shard in model_dir.glob("*.safetensors"):
        weights = load_file(str(shard))
        for name in [n for n in weights if n.endswith(("embed_tokens.weight", "lm_head.weight"))]:
            keep = torch.zeros(weights[name].shape[0], dtype=torch.bool)
            keep[:len(tokenizer)] = True
            keep[[i for i in tokenizer.added_tokens_decoder if i < len(keep)]] = False
            weights[name][~keep] = 0
        save_file(weights, str(shard), metadata={"format": "pt"})


def photo(data_dir: Path) -> str:
    from PIL import Image

    path = data_dir / "photo-448.jpg"
    Image.open(next((data_dir / "images").iterdir())).convert("RGB").resize((448, 448)).save(path)
    return str(path)


def time_stream(pieces) -> tuple[float, float, int]:
    """(first-token seconds, total seconds, pieces) of an iterator of text pieces."""
    start = time.perf_counter()
    first, count = None, 0
    for _ in pieces:
        count += 1
        if first is None:
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start, count


def direct_stream(url: str, turns, max_pixels: int, settings: GenerationSettings):
    """The thinnest client: one HTTP request, the event stream read line by line."""
    body = request_body(to_openai_messages(turns, max_pixels), settings, LMDeployServer.BASE_NAME, stream=True,
                        extra={"ignore_eos": True})
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as response:
        yield from stream_pieces(response.iter_lines())


def make_adapter(model_dir: Path, adapter_dir: Path) -> Path:
    """A random LoRA adapter (B not zero) on the layers our training targets, saved by peft."""
    if not adapter_dir.exists():
        from peft import LoraConfig, get_peft_model
        from transformers import Qwen2VLForConditionalGeneration

        from backend.training.model import language_model_targets
        from backend.training.spec import DEFAULT_TARGET_MODULES

        base = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.bfloat16)
        targets = language_model_targets(base, list(DEFAULT_TARGET_MODULES))
        torch.manual_seed(0)
        get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=targets,
                                        init_lora_weights=False)).save_pretrained(adapter_dir)
        del base
    return adapter_dir


def score_photo_questions(engine: LMDeployEngine, data_dir: Path, results: dict) -> None:
    """Scoring 256 single-image questions, pictures opened and sent inside the timing, as the engine is
    set to resize them; then the same prompts without their pictures (the language model's share)."""
    from backend.data import read_foodieqa_folder
    from backend.evaluation.multiple_choice import prompt_turn
    from backend.evaluation.scoring import SCORING_SETTINGS, scorable, score

    engine.extra = {}
    records = read_foodieqa_folder(data_dir).records
    run = score(engine, records, batch_size=256)
    results["score256_s"] = run.seconds
    results["score256_questions"] = len(run.questions)
    text_only = [[Turn("user", prompt_turn(r, "zh").text)] for r in scorable(records)][:256]
    start = time.perf_counter()
    engine.generate_batch(text_only, SCORING_SETTINGS)
    results["score256_text_only_s"] = time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/serve"))
    parser.add_argument("--out", type=Path, default=Path("serving.json"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--family", choices=("qwen3_vl", "internvl", "qwen3_5"),
                        help="a published 2B checkpoint of this family; one stream and scoring only")
    args = parser.parse_args()
    results: dict = {"device": torch.cuda.get_device_name(0), "family": args.family or "qwen2_vl"}
    model_dir, data_dir = build(args.workdir, args.family)
    picture = photo(data_dir)
    weight_bytes = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    turns = [Turn("user", "这是什么菜？请详细介绍。", (picture,))]

    server = LMDeployServer(ServerOptions(model=str(model_dir), workdir=args.workdir, cache_share=0.5))
    start = time.perf_counter()
    server.start(timeout=900)
    results["server_start_s"] = time.perf_counter() - start
    engine = LMDeployEngine(server, max_pixels=1024 * 768)
    engine.extra = {"ignore_eos": True}
    try:
        # 1. one stream: ours vs direct, interleaved so drift hits both alike
        time_stream(engine.stream(turns, settings))  # warm-up
        ours, direct = [], []
        for _ in range(args.repeat):
            ours.append(time_stream(engine.stream(turns, settings)))
            direct.append(time_stream(direct_stream(server.url, turns, 1024 * 768, settings)))
        for name, runs in (("ours", ours), ("direct", direct)):
            results[f"single_{name}_first_token_ms"] = 1000 * statistics.median(r[0] for r in runs)
            results[f"single_{name}_tok_s"] = statistics.median(NEW_TOKENS / (r[1] - r[0]) for r in runs)
        bound = BANDWIDTH / weight_bytes
        results["bandwidth_bound_tok_s"] = bound
        results["single_ours_share_of_bound"] = results["single_ours_tok_s"] / bound

        if args.family:
            score_photo_questions(engine, data_dir, results)
            return
        # 2. 32 chats at once through our engine
        many = [(turns, None)] * 32
        start = time.perf_counter()
        counts = [0] * 32
        for row, _ in engine.stream_many(many, settings):
            counts[row] += 1
        results["concurrent32_ours_tok_s"] = 32 * NEW_TOKENS / (time.perf_counter() - start)

        # 3. scoring 256 single-image questions, pictures encoded inside the timing; then the same
        #    with pictures resized here to the patch grid, and with no pictures (the language model's share)
        engine.patch_multiple = 0  # pictures resized by LMDeploy's processor, one at a time
        score_photo_questions(engine, data_dir, results)
        engine.patch_multiple = PATCH_GRID  # the engine's default for Qwen2-VL: resized here, in threads
        from backend.data import read_foodieqa_folder
        from backend.evaluation.scoring import score
        results["score256_resized_here_s"] = score(engine, read_foodieqa_folder(data_dir).records,
                                                   batch_size=256).seconds

        # 4. base + one adapter from one engine: answers and the first tokens' log-probabilities
        adapter_dir = make_adapter(model_dir, args.workdir / "random-adapter")
        short = GenerationSettings(max_new_tokens=16)
        results["adapter_base_answer"] = engine.generate_batch([turns], short)[0]
        start = time.perf_counter()
        engine.load_adapter("food", str(adapter_dir))
        results["adapter_restart_s"] = time.perf_counter() - start
        results["adapter_tuned_answer"] = engine.generate_batch([turns], short, adapter="food")[0]
        results["adapter_answers_differ"] = results["adapter_base_answer"] != results["adapter_tuned_answer"]
        results["adapter_base_still_same"] = engine.generate_batch([turns], short)[0] == results["adapter_base_answer"]
    except Exception as err:  # keep what was measured; say where it stopped
        results["lmdeploy_error"] = f"{type(err).__name__}: {err}"[:500]
    finally:
        engine.close()
        args.out.write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2), flush=True)
    if args.family:
        return

    # 2b. transformers' batched generate on the same model, same prompt, 32 at once
    from backend.inference.transformers_engine import TransformersEngine
    from backend.models.loading import load, resolve

    hf = TransformersEngine(load(resolve(str(model_dir))))
    short = GenerationSettings(max_new_tokens=16)
    results["hf_base_answer"] = hf.generate_batch([turns], short)[0]
    hf.load_adapter("food", str(make_adapter(model_dir, args.workdir / "random-adapter")))
    results["hf_tuned_answer"] = hf.generate_batch([turns], short, adapter="food")[0]
    inputs = hf.prepare_batch([turns] * 32)
    with torch.inference_mode():
        hf.loaded.model.generate(**inputs, max_new_tokens=8, do_sample=False)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        hf.loaded.model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
        torch.cuda.synchronize()
    results["concurrent32_transformers_tok_s"] = 32 * NEW_TOKENS / (time.perf_counter() - start)
    if "concurrent32_ours_tok_s" in results:
        results["concurrent32_ratio"] = results["concurrent32_ours_tok_s"] / results["concurrent32_transformers_tok_s"]

    args.out.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
