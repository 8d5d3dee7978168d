"""What a training step's gradient sync costs between the GPUs of this machine: NCCL all_reduce of
as many numbers as the 2B preset's LoRA weights (147.7 M), as fp32 (what DDP sends by default) and
as bf16, side by side in one run; and whether the GPUs reach each other directly (peer access).

    torchrun --nproc-per-node 2 bench/bench_allreduce.py
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=float, default=147.7e6)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", rank))
    world = dist.get_world_size()
    if rank == 0:
        peers = [torch.cuda.can_device_access_peer(0, other) for other in range(1, torch.cuda.device_count())]
        nccl = {k: v for k, v in os.environ.items() if k.startswith("NCCL_")}
        print(f"{world} GPUs, peer access from GPU 0: {peers}; NCCL settings: {nccl or 'none'}", flush=True)
    for dtype in (torch.float32, torch.bfloat16):
        tensor = torch.ones(int(args.numbers), device="cuda", dtype=dtype)
        for _ in range(3):
            dist.all_reduce(tensor)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeat):
            dist.all_reduce(tensor)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.repeat
        size = tensor.numel() * tensor.element_size()
        # bus bandwidth, NCCL's convention: what each GPU's links carried for a ring all-reduce
        bus = size * 2 * (world - 1) / world / seconds
        if rank == 0:
            print(f"all_reduce of {size / 1e6:.0f} MB ({dtype}): {seconds * 1e3:.2f} ms, bus bandwidth "
                  f"{bus / 1e9:.0f} GB/s", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
