"""The same 2-GPU training job run by two versions of the code on one machine, one after the other:
an A/B check for when runs on different days (different hosts) cannot be compared. It runs the code
of the folder it is started from, on a model and data prepared once. Used on 2026-11-30 as:

    export PYTHONPATH=/tmp/site                       # liger-kernel, as for the other benchmarks
    git archive dc976b3 | tar -x -C /tmp/old          # the code before
    python3 bench/ab_training_job.py prepare /tmp/ab  # the 2B-shaped model, 256 photos, 8 for warming up
    (cd /tmp/old && python3 $OLDPWD/bench/ab_training_job.py warm /tmp/ab old \
                 && python3 $OLDPWD/bench/ab_training_job.py run /tmp/ab old)
    python3 bench/ab_training_job.py run /tmp/ab new

`warm` runs a short 1-GPU job (Triton's kernel cache, shared by both); `run` the 3-epoch 2-GPU job
(python -m backend.training.lora under torchrun, as the worker starts it) and prints its samples/s;
`run <work> <label> 1` runs it on one GPU (python -m backend.training.lora). Run each version twice,
alternating, to see drift of the host apart from a difference of the code.
"""

import json
import os
import sys
from pathlib import Path

TREE = Path(os.getcwd())  # the code under test: the folder this is started from
sys.path.insert(0, str(TREE))
sys.path.insert(0, str(TREE / "bench"))

from bench_train_speed import run_program, spec_for  # noqa: E402
from bench_training import SHAPE_2B, build_2b_shape, make_photo_samples  # noqa: E402


def main() -> None:
    mode, work = sys.argv[1], Path(sys.argv[2])
    if mode == "prepare":
        paths = {"model": str(build_2b_shape(work / "model", SHAPE_2B)),
                 "data": str(make_photo_samples(work / "photos", count=256)),
                 "warm": str(make_photo_samples(work / "warm", count=8, seed=1))}
        (work / "paths.json").write_text(json.dumps(paths))
        return
    label = sys.argv[3]
    paths = {key: Path(value) for key, value in json.loads((work / "paths.json").read_text()).items()}
    if mode == "warm":
        run_program(spec_for(paths["model"], paths["warm"], work / f"warm-{label}", 1, False, gpus=1), 1, False)
        return
    gpus = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    run = run_program(spec_for(paths["model"], paths["data"], work / f"on-{gpus}-{label}", 3, False, gpus=gpus),
                      gpus, False)
    print(f"RESULT {label}: {256 * 3 / run['seconds']:.2f} samples/s whole run, "
          f"{run['later_epochs_samples_per_s']:.2f} after epoch 1, {run['seconds']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
