"""Where the time of scoring 256 photo questions through LMDeploy goes, on a GPU (the bar: 10 s,
bench/README.md). A tool for choosing the LMDeploy server's settings; bench_serving_gpu.py is the benchmark.

    python3 bench/profile_scoring_gpu.py --workdir /tmp/serve          # a GPU machine with LMDeploy

It times, in this process, what each picture costs on a CPU (our client's load-resize-encode, the
server's decode, the Hugging Face image processor LMDeploy runs), then starts the server once per
setting in --configs and times the same 256-question scoring run (one warm-up run first). Each
config is `label:key=value,...` over ServerOptions fields plus three of ours: `concurrent` (requests
in flight; the engine's default, the server's max batch size, when not given), `send_paths` (0: every
picture loaded, resized and sent as JPEG data, the engine's way before file URLs) and `batch` (the
scorer's batch size, 256 unless given; the Compare tab's default is 16). An empty config is the
app's defaults.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_serving_gpu import build  # noqa: E402

# LMDeploy's own defaults spelled out (ServerOptions' defaults are the app's choice, from these runs),
# then the app's defaults less one change at a time
LMDEPLOY_DEFAULTS = "max_prefill_tokens=8192,preprocess_threads=1,cast_pictures=0"
DEFAULT_CONFIGS = (f"lmdeploy-defaults:{LMDEPLOY_DEFAULTS},send_paths=0;"
                   "data-urls:send_paths=0;"
                   "float32-pictures:cast_pictures=0;"
                   "app-defaults:")


def parse_configs(text: str) -> list[tuple[str, dict]]:
    configs = []
    for item in filter(None, text.split(";")):
        label, _, pairs = item.partition(":")
        values = {}
        for pair in filter(None, pairs.split(",")):
            key, _, value = pair.partition("=")
            values[key] = float(value) if "." in value else int(value)
        configs.append((label, values))
    return configs


def per_picture_costs(data_dir: Path, model_dir: Path, count: int) -> dict:
    """Milliseconds per picture, one thread: our client's work, the server's decode, the processor."""
    from PIL import Image
    from transformers import AutoProcessor

    from backend.inference.lmdeploy_engine import PATCH_GRID, image_url, picture_reference

    paths = sorted((data_dir / "images").iterdir())[:count]
    processor = AutoProcessor.from_pretrained(model_dir).image_processor
    start = time.perf_counter()
    urls = [image_url(str(p), 1024 * 768, PATCH_GRID) for p in paths]
    client = (time.perf_counter() - start) / count
    start = time.perf_counter()
    references = [picture_reference(str(p), 1024 * 768, PATCH_GRID) for p in paths]
    client_reference = (time.perf_counter() - start) / count
    file_urls = sum(r.startswith("file:") for r in references)
    start = time.perf_counter()
    pictures = [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).convert("RGB") for u in urls]
    decode = (time.perf_counter() - start) / count
    processor(images=[pictures[0]], return_tensors="pt")  # warm-up
    start = time.perf_counter()
    for picture in pictures:
        processor(images=[picture], return_tensors="pt")
    process = (time.perf_counter() - start) / count
    with ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        list(pool.map(lambda p: processor(images=[p], return_tensors="pt"), pictures))
        process8 = (time.perf_counter() - start) / count
    return {"image_processor": type(processor).__name__, "picture_size": list(pictures[0].size),
            "client_ms": 1000 * client, "client_reference_ms": 1000 * client_reference,
            "sent_as_file_urls": f"{file_urls}/{count}", "server_decode_ms": 1000 * decode,
            "processor_ms": 1000 * process, "processor_8_threads_ms_per_picture": 1000 * process8,
            "torch_threads": __import__("torch").get_num_threads(), "cpus": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/serve"))
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--out", type=Path, default=Path("scoring-profile.json"))
    args = parser.parse_args()
    from backend.data import read_foodieqa_folder
    from backend.evaluation.scoring import score
    from backend.inference.lmdeploy_engine import LMDeployEngine
    from backend.inference.lmdeploy_server import LMDeployServer, ServerOptions

    model_dir, data_dir = build(args.workdir)
    results: dict = {"per_picture": per_picture_costs(data_dir, model_dir, 64), "runs": {}}
    print(json.dumps(results, indent=2), flush=True)
    records = read_foodieqa_folder(data_dir).records
    for label, values in parse_configs(args.configs):
        concurrent = values.pop("concurrent", None)
        send_paths = bool(values.pop("send_paths", 1))
        batch = int(values.pop("batch", 256))
        server = LMDeployServer(ServerOptions(model=str(model_dir), workdir=args.workdir / label, **values))
        start = time.perf_counter()
        server.start(timeout=600)
        engine = LMDeployEngine(server, max_pixels=1024 * 768)
        engine.max_concurrent = int(concurrent or engine.max_concurrent)
        engine.send_paths = send_paths
        run = {"server_start_s": time.perf_counter() - start, "concurrent": engine.max_concurrent,
               "send_paths": send_paths, "batch": batch, **values}
        try:
            run["warm_up_s"] = score(engine, records, batch_size=batch).seconds
            times = [score(engine, records, batch_size=batch).seconds for _ in range(2)]
            run["score256_s"] = statistics.median(times)
            run["score256_runs"] = times
        except Exception as err:  # keep the other configs' figures
            run["error"] = f"{type(err).__name__}: {err}"[:400]
        finally:
            engine.close()
        results["runs"][label] = run
        print(label, json.dumps(run), flush=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
