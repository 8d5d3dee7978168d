"""What handing one preprocessed photo from LMDeploy's API server to its engine process costs, on a CPU.

    python3 bench/bench_picture_handover.py            # any machine; no GPU, no LMDeploy needed

LMDeploy 0.18 pickles each request, preprocessed pictures included, to its engine process over
ZeroMQ (lmdeploy/pytorch/engine/mp_engine/zmq_rpc.py). For Qwen2-VL a picture is the image
processor's output, float32 patches; the app's launcher (backend/inference/lmdeploy_launch.py)
casts them to the model's bf16 first. This times, side by side in one run, pickling and
unpickling the processor's output for photo-sized pictures as LMDeploy gets it (float32, the
baseline) and as the launcher hands it over (bf16, the cast included in its time).
"""

from __future__ import annotations

import argparse
import pickle
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from fake_foodieqa import picture  # noqa: E402


def median_ms(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    from transformers import AutoImageProcessor

    from backend.inference.lmdeploy_engine import PATCH_GRID, patch_grid_size
    from backend.models.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as folder:  # a Qwen2-VL processor: patches as the 2B model's
        processor = AutoImageProcessor.from_pretrained(build_tiny_model("qwen2_vl", Path(folder) / "m"))
    rng = random.Random(0)
    print(f"{'picture':>10} {'patches':>14} {'MB f32':>7} {'MB bf16':>7} {'f32 dumps+loads':>16} "
          f"{'bf16 cast+dumps+loads':>22} {'speed-up':>8}")
    for size in [(640, 480), (1024, 768)]:
        grid = patch_grid_size(*size, 1024 * 768, PATCH_GRID)
        # Qwen2-VL-2B's own budget (the tiny model's processor keeps pictures tiny); the picture is on
        # the patch grid already, as the app sends it, so it is not resized
        output = dict(processor(images=[picture(rng, grid)], return_tensors="pt", max_pixels=12845056))
        as_lmdeploy = pickle.dumps(output)

        def float32(output=output):
            pickle.loads(pickle.dumps(output))

        def bf16(output=output):
            cast = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in output.items()}
            pickle.loads(pickle.dumps(cast))

        bf16_bytes = len(pickle.dumps({k: v.to(torch.bfloat16) if v.is_floating_point() else v
                                       for k, v in output.items()}))
        base, ours = median_ms(float32, args.repeat), median_ms(bf16, args.repeat)
        print(f"{f'{grid[0]}x{grid[1]}':>10} {tuple(output['pixel_values'].shape)!s:>14} "
              f"{len(as_lmdeploy) / 1e6:7.1f} {bf16_bytes / 1e6:7.1f} {base:13.1f} ms {ours:19.1f} ms "
              f"{base / ours:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
